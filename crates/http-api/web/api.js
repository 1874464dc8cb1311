// The REST client: one `request` that adds the bearer token and turns every API error
// (`{"detail", "code", "errors"?}`) into an ApiError whose message is a sentence for people.

const TOKEN_KEY = 'chat.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let token = localStorage.getItem(TOKEN_KEY);
let onUnauthorized = () => {};

export const session = {
  get token() { return token; },
  set(value) {
    token = value;
    if (value) localStorage.setItem(TOKEN_KEY, value); else localStorage.removeItem(TOKEN_KEY);
  },
  // Called when an authenticated request comes back 401: the token expired or was revoked.
  onUnauthorized(handler) { onUnauthorized = handler; },
};

async function errorFrom(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: fall back to the status text */ }
  let message = body && typeof body.detail === 'string' ? body.detail : `The server answered ${response.status} ${response.statusText}.`;
  if (body && Array.isArray(body.errors) && body.errors.length) {
    message += ' ' + body.errors.map((e) => `${e.field}: ${e.message}`).join('; ');
  }
  if (response.status === 429) {
    const retry = response.headers.get('retry-after');
    if (retry) message += ` Try again in ${retry} s.`;
  }
  return new ApiError(response.status, body?.code ?? 'http_' + response.status, message);
}

// `body` is sent as JSON unless it is FormData. Returns the parsed JSON, or null for 204.
export async function request(method, path, body, { auth = true } = {}) {
  const headers = {};
  if (auth && token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload });
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection and try again.');
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && auth && token) onUnauthorized(error.message);
    throw error;
  }
  if (response.status === 204) return null;
  return response.json();
}

// Downloads need the bearer token too, so images are fetched as blobs and shown through
// object URLs (allowed by the page's `img-src blob:`).
const blobs = new Map();
const loaded = new Map();
export function fileUrl(id) {
  if (!blobs.has(id)) {
    const promise = fetch(`/api/files/${id}`, { headers: { Authorization: `Bearer ${token}` } }).then(async (response) => {
      if (!response.ok) throw await errorFrom(response);
      const url = URL.createObjectURL(await response.blob());
      loaded.set(id, url);
      return url;
    });
    promise.catch(() => blobs.delete(id));
    blobs.set(id, promise);
  }
  return blobs.get(id);
}

// The object URL of a file already downloaded, so a re-render shows it without a flicker.
export function loadedFileUrl(id) { return loaded.get(id); }

export const api = {
  register: (body) => request('POST', '/api/auth/register', body, { auth: false }),
  login: (username, password) => request('POST', '/api/auth/login', { username, password }, { auth: false }),
  logout: () => request('POST', '/api/auth/logout'),
  me: () => request('GET', '/api/auth/me'),
  myChannels: async () => {
    const all = [];
    let after = null;
    do {
      const page = await request('GET', `/api/channels/me?limit=200${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      all.push(...page.items);
      after = page.next_cursor;
    } while (after);
    return all;
  },
  publicChannels: () => request('GET', '/api/channels?limit=200'),
  createChannel: (body) => request('POST', '/api/channels', body),
  join: (id) => request('POST', `/api/channels/${id}/join`),
  dm: (username) => request('POST', `/api/channels/dm/${encodeURIComponent(username)}`),
  markRead: (id, seq) => request('PUT', `/api/channels/${id}/read`, { seq }),
  history: (id, before) => request('GET', `/api/chat/channels/${id}/messages?limit=50${before ? `&before=${encodeURIComponent(before)}` : ''}`),
  message: (id) => request('GET', `/api/chat/messages/${id}`),
  replies: (id, after) => request('GET', `/api/chat/messages/${id}/replies?limit=200${after ? `&after=${encodeURIComponent(after)}` : ''}`),
  send: (body) => request('POST', '/api/chat/messages', body),
  edit: (id, content) => request('PATCH', `/api/chat/messages/${id}`, { content }),
  remove: (id) => request('DELETE', `/api/chat/messages/${id}`),
  react: (id, emoji) => request('POST', `/api/chat/messages/${id}/reactions`, { emoji }),
  unreact: (id, emoji) => request('DELETE', `/api/chat/messages/${id}/reactions/${encodeURIComponent(emoji)}`),
  upload: (file) => { const form = new FormData(); form.append('file', file, file.name); return request('POST', '/api/files', form); },
  search: (q) => request('GET', `/api/search/messages?limit=50&q=${encodeURIComponent(q)}`),
  user: (username) => request('GET', `/api/users/${encodeURIComponent(username)}`),
};
