// The chat app: sign in, channels and DMs, history, live events, threads, reactions,
// uploads, search, typing and presence. Plain DOM, no framework, so it runs under the
// page's strict CSP with nothing to build.

import { api, fileUrl, loadedFileUrl, session } from './api.js';
import { $, avatar, day, el, time, toast } from './dom.js';
import { Live } from './live.js';

const REACTIONS = ['👍', '❤️', '😂', '🎉', '😮', '👀'];

const state = {
  me: null,
  channels: new Map(), // id → channel from /api/channels/me, kept up to date by events
  seen: {}, // channel id → the highest event seq applied; what `resume` asks to continue from
  current: null,
  conversations: new Map(), // channel id → { messages: Map(id → message), older, loading }
  thread: null, // { parent, replies: Map } of the open thread
  online: new Map(), // user id → bool
  typing: new Map(), // channel id → Map(user id → { name, until })
  pending: [], // uploads waiting in the composer
  editing: null, // id of the message being edited
  live: null,
  lastTyping: 0,
};

// ---------- small helpers ----------

// Every API failure ends here, so none is swallowed.
function fail(error) {
  if (error?.status === 401 && !session.token) return; // already sent to sign in, with its message
  toast(error?.message || String(error));
}

// DMs and group DMs share the sidebar's "Direct messages" list.
function isDm(channel) { return channel.kind === 'dm' || channel.kind === 'group_dm'; }

function dmPeer(channel) {
  const names = channel.name.replace(/^dm:/, '').split(':');
  const other = names.find((n) => n.toLowerCase() !== state.me.username.toLowerCase());
  return other ?? state.me.username;
}

function channelLabel(channel) {
  if (!isDm(channel)) return `# ${channel.name}`;
  if (channel.kind === 'group_dm') return channel.name;
  const peer = dmPeer(channel);
  return peer === state.me.username ? `${peer} (you)` : peer;
}

function conversation(id) {
  if (!state.conversations.has(id)) state.conversations.set(id, { messages: new Map(), older: undefined, loading: false });
  return state.conversations.get(id);
}

// ---------- auth ----------

let registering = false;

function showAuth(notice) {
  $('#chat').hidden = true;
  $('#auth').hidden = false;
  $('#auth-notice').hidden = !notice;
  $('#auth-notice').textContent = notice || '';
  $('#auth-username').focus();
}

function setAuthMode(register) {
  registering = register;
  $('#tab-login').classList.toggle('active', !register);
  $('#tab-register').classList.toggle('active', register);
  $('#tab-login').setAttribute('aria-selected', String(!register));
  $('#tab-register').setAttribute('aria-selected', String(register));
  for (const field of document.querySelectorAll('.register-only')) field.hidden = !register;
  $('#auth-email').required = register;
  $('#auth-password').autocomplete = register ? 'new-password' : 'current-password';
  $('#auth-submit').textContent = register ? 'Create account' : 'Sign in';
  $('#auth-error').hidden = true;
}

async function submitAuth(event) {
  event.preventDefault();
  const username = $('#auth-username').value.trim();
  const password = $('#auth-password').value;
  $('#auth-submit').disabled = true;
  $('#auth-error').hidden = true;
  try {
    const reply = registering
      ? await api.register({ username, password, email: $('#auth-email').value.trim(), display_name: $('#auth-display').value.trim() || undefined })
      : await api.login(username, password);
    session.set(reply.access_token);
    $('#auth-password').value = '';
    await enterChat();
  } catch (error) {
    $('#auth-error').textContent = error.message;
    $('#auth-error').hidden = false;
  } finally {
    $('#auth-submit').disabled = false;
  }
}

function signOut(notice) {
  state.live?.stop();
  state.live = null;
  session.set(null);
  Object.assign(state, { me: null, current: null, thread: null, seen: {}, pending: [], editing: null });
  state.channels.clear();
  state.conversations.clear();
  showAuth(notice);
}

// ---------- entering the app ----------

async function enterChat() {
  try {
    state.me = await api.me();
  } catch (error) {
    if (error.status !== 401) showAuth(error.message);
    return;
  }
  $('#auth').hidden = true;
  $('#chat').hidden = false;
  $('#me-name').textContent = state.me.display_name;
  $('#me-username').textContent = `@${state.me.username}`;
  $('#me-avatar').replaceWith(Object.assign(avatar(state.me), { id: 'me-avatar' }));
  try {
    await refreshChannels();
  } catch (error) {
    fail(error);
  }
  for (const channel of state.channels.values()) state.seen[channel.id] = channel.last_seq ?? 0;
  state.live = new Live({
    token: session.token,
    lastSeq: () => ({ ...state.seen }),
    // One frame at a time, in arrival order: a handler that awaits (a channel list refresh)
    // must not let a later frame overtake it.
    onEvent: (frame) => { frames = frames.then(() => handleFrame(frame)).catch(fail); },
    onState: showConnection,
    onSignedOut: signOut,
    checkToken: async () => {
      try { await api.me(); return true; } catch (error) { return error.status !== 401; }
    },
  });
  showConnection('connecting');
  state.live.start();
  const last = localStorage.getItem('chat.channel');
  const first = state.channels.get(last) ?? [...state.channels.values()].find((c) => !isDm(c));
  if (first) openChannel(first.id, { focusPane: window.innerWidth > 720 });
}

async function refreshChannels() {
  const items = await api.myChannels();
  const fresh = new Map(items.map((c) => [c.id, c]));
  for (const [id, channel] of fresh) {
    const known = state.channels.get(id);
    if (known && id === state.current) channel.unread_count = 0;
    // Until the server reports mention_count, the app counts mentions itself; a refresh
    // must not forget them.
    channel.mentions_local = typeof channel.mention_count !== 'number';
    if (channel.mentions_local) channel.mention_count = known?.mention_count ?? 0;
    if (!(id in state.seen)) state.seen[id] = channel.last_seq ?? 0;
  }
  state.channels = fresh;
  renderChannelList();
  // Presence of DM partners: the socket reports changes, this gives the starting point.
  for (const channel of fresh.values()) {
    if (channel.kind !== 'dm') continue;
    const peer = dmPeer(channel);
    api.user(peer).then((user) => { state.online.set(user.id, user.online); channel.peer_id = user.id; renderChannelList(); renderHeader(); }).catch(() => {});
  }
}

function showConnection(status, seconds) {
  const banner = $('#connection');
  if (status === 'online') { banner.hidden = true; return; }
  banner.hidden = false;
  banner.textContent = status === 'connecting' ? 'Connecting…' : `Reconnecting… (next try in ${Math.max(1, seconds)} s)`;
}

// ---------- sidebar ----------

function renderChannelList() {
  const channels = [...state.channels.values()].filter((c) => !isDm(c)).sort((a, b) => a.name.localeCompare(b.name));
  const dms = [...state.channels.values()].filter(isDm).sort((a, b) => channelLabel(a).localeCompare(channelLabel(b)));
  const item = (channel) => {
    const unread = channel.id === state.current ? 0 : channel.unread_count || 0;
    const mentions = channel.id === state.current ? 0 : channel.mention_count || 0;
    const online = channel.peer_id ? state.online.get(channel.peer_id) : undefined;
    return el('li', { class: `channel${channel.id === state.current ? ' active' : ''}${unread ? ' unread' : ''}`, dataset: { channelId: channel.id } },
      el('button', { type: 'button', onclick: () => openChannel(channel.id) },
        channel.kind === 'dm' ? el('span', { class: `presence${online ? ' on' : ''}`, title: online ? 'online' : 'offline' }) : null,
        el('span', { class: 'channel-name', text: isDm(channel) ? channelLabel(channel) : channel.name }),
        channel.is_private && !isDm(channel) ? el('span', { class: 'lock', title: 'private', text: '🔒' }) : null,
        mentions ? el('span', { class: 'badge mention', title: `${mentions} mentions`, text: `@${mentions}` }) : null,
        unread ? el('span', { class: 'badge', title: `${unread} unread`, text: unread > 99 ? '99+' : String(unread) }) : null));
  };
  $('#channel-list').replaceChildren(...channels.map(item));
  $('#dm-list').replaceChildren(...dms.map(item));
  if (!channels.length) $('#channel-list').append(el('li', { class: 'muted', text: 'No channels yet' }));
}

// ---------- a conversation ----------

async function openChannel(id, { focusPane = true } = {}) {
  const channel = state.channels.get(id);
  if (!channel) return;
  state.current = id;
  state.editing = null;
  localStorage.setItem('chat.channel', id);
  if (focusPane) $('#chat').dataset.pane = 'conversation';
  $('#channel-title').textContent = channelLabel(channel);
  $('#composer').hidden = false;
  $('#message-input').placeholder = `Message ${channelLabel(channel)}`;
  closeThread();
  renderHeader();
  renderChannelList();
  renderTyping();
  const conv = conversation(id);
  if (conv.older === undefined && !conv.loading) {
    renderMessages({ stick: true });
    await loadHistory(id);
  }
  renderMessages({ stick: true });
  markRead();
  if (focusPane) $('#message-input').focus();
}

function renderHeader() {
  const channel = state.channels.get(state.current);
  if (!channel) return;
  let meta;
  if (channel.kind === 'dm') {
    const online = channel.peer_id ? state.online.get(channel.peer_id) : undefined;
    meta = online === undefined ? 'Direct message' : online ? 'Online' : 'Offline';
  } else {
    meta = `${channel.member_count} member${channel.member_count === 1 ? '' : 's'}${channel.description ? ` · ${channel.description}` : ''}`;
  }
  $('#channel-meta').textContent = meta;
}

async function loadHistory(id, before) {
  const conv = conversation(id);
  if (conv.loading) return;
  conv.loading = true;
  try {
    const page = await api.history(id, before);
    for (const message of page.items) if (!conv.messages.has(message.id)) conv.messages.set(message.id, message);
    conv.older = page.next_cursor;
  } catch (error) {
    if (conv.older === undefined) conv.older = null;
    fail(error);
  } finally {
    conv.loading = false;
  }
}

async function loadOlder() {
  const conv = state.current && conversation(state.current);
  if (!conv || !conv.older || conv.loading) return;
  const box = $('#messages');
  const fromBottom = box.scrollHeight - box.scrollTop;
  const id = state.current;
  await loadHistory(id, conv.older);
  if (state.current !== id) return;
  renderMessages();
  box.scrollTop = box.scrollHeight - fromBottom;
}

function sorted(messages) {
  return [...messages.values()].sort((a, b) => a.seq - b.seq);
}

function renderMessages({ stick = false } = {}) {
  const box = $('#messages');
  const atBottom = stick || box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const conv = state.current ? conversation(state.current) : null;
  const nodes = [];
  if (conv) {
    if (conv.older) nodes.push(el('button', { type: 'button', class: 'older', text: 'Load older messages', onclick: loadOlder }));
    else if (conv.older === null) nodes.push(el('div', { class: 'start', text: 'This is the beginning of the conversation.' }));
    if (conv.loading && !conv.messages.size) nodes.push(el('div', { class: 'muted center', text: 'Loading…' }));
    let previous = null;
    for (const message of sorted(conv.messages)) {
      if (!previous || day(previous.created_at) !== day(message.created_at)) nodes.push(el('div', { class: 'day', text: day(message.created_at) }));
      const grouped = previous && previous.user_id === message.user_id && !previous.deleted && day(previous.created_at) === day(message.created_at)
        && new Date(message.created_at) - new Date(previous.created_at) < 5 * 60000;
      nodes.push(renderMessage(message, { grouped }));
      previous = message;
    }
  } else {
    nodes.push(el('div', { class: 'empty', text: 'Pick a channel on the left, or create one with +.' }));
  }
  box.replaceChildren(...nodes);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function richText(text) {
  // Mentions and links are made as elements from plain text; nothing is parsed as HTML.
  const parts = [];
  const pattern = /(@[A-Za-z0-9_.-]{3,32})|(https?:\/\/[^\s<]+)/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) parts.push(text.slice(last, match.index));
    if (match[1]) {
      const mine = match[1].slice(1).toLowerCase() === state.me.username.toLowerCase();
      parts.push(el('span', { class: `mention${mine ? ' me' : ''}`, text: match[1] }));
    } else {
      parts.push(el('a', { href: match[2], target: '_blank', rel: 'noopener noreferrer', text: match[2] }));
    }
    last = match.index + match[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

function renderAttachment(file) {
  if (file.content_type?.startsWith('image/')) {
    const img = el('img', { class: 'preview', alt: file.filename, title: file.filename, src: loadedFileUrl(file.id) });
    if (!img.src) fileUrl(file.id).then((url) => { img.src = url; }).catch((error) => { img.replaceWith(el('span', { class: 'error', text: `${file.filename}: ${error.message}` })); });
    return el('a', { class: 'image', href: '#', onclick: (event) => { event.preventDefault(); download(file); } }, img);
  }
  return el('button', { type: 'button', class: 'file', onclick: () => download(file) },
    el('span', { text: '📄 ' }), el('span', { text: file.filename }), el('small', { text: ` ${Math.max(1, Math.round(file.size / 1024))} KB` }));
}

async function download(file) {
  try {
    const url = await fileUrl(file.id);
    el('a', { href: url, download: file.filename }).click();
  } catch (error) {
    fail(error);
  }
}

function renderMessage(message, { grouped = false, inThread = false } = {}) {
  const own = message.user_id === state.me.id;
  const channel = state.channels.get(message.channel_id);
  const mayDelete = own || channel?.owner_id === state.me.id;
  const node = el('article', {
    class: `message${grouped ? ' grouped' : ''}${own ? ' own' : ''}${message.deleted ? ' deleted' : ''}`,
    dataset: { id: message.id, seq: String(message.seq) },
  });
  const main = el('div', { class: 'message-main' });
  if (!grouped) {
    main.append(el('header', {},
      el('strong', { class: 'author', text: message.user?.display_name || message.user?.username || 'someone' }),
      el('time', { datetime: message.created_at, title: new Date(message.created_at).toLocaleString(), text: time(message.created_at) }),
      message.edited_at && !message.deleted ? el('span', { class: 'edited', text: '(edited)' }) : null));
  }
  if (message.deleted) {
    main.append(el('div', { class: 'message-body muted', text: 'This message was deleted.' }));
  } else if (state.editing === message.id) {
    const editor = el('textarea', { class: 'editor', 'aria-label': 'Edit message', rows: 2 });
    editor.value = message.content;
    const save = async () => {
      const content = editor.value.trim();
      if (!content || content === message.content) { state.editing = null; rerender(); return; }
      try {
        mergeMessage(await api.edit(message.id, content));
        state.editing = null;
        rerender();
      } catch (error) { fail(error); }
    };
    editor.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) { event.preventDefault(); save(); }
      if (event.key === 'Escape') { event.stopPropagation(); state.editing = null; rerender(); }
    });
    main.append(editor, el('small', { class: 'hint', text: 'Enter saves · Escape cancels' }));
    setTimeout(() => { editor.focus(); editor.setSelectionRange(editor.value.length, editor.value.length); });
  } else {
    if (message.content) main.append(el('div', { class: 'message-body' }, richText(message.content)));
    if (message.attachments?.length) main.append(el('div', { class: 'attachments' }, message.attachments.map(renderAttachment)));
  }
  if (message.reactions?.length && !message.deleted) {
    main.append(el('div', { class: 'reactions' }, message.reactions.map((r) => el('button', {
      type: 'button', class: `reaction${r.me ? ' mine' : ''}`, title: r.me ? 'Remove your reaction' : 'React',
      onclick: () => toggleReaction(message, r.emoji, r.me),
    }, el('span', { text: r.emoji }), el('span', { class: 'count', text: String(r.count) })))));
  }
  if (!inThread && !message.parent_id && message.reply_count > 0) {
    main.append(el('button', { type: 'button', class: 'thread-link', onclick: () => openThread(message.id),
      text: `${message.reply_count} ${message.reply_count === 1 ? 'reply' : 'replies'}` }));
  }
  node.append(grouped ? el('span', { class: 'gutter', text: time(message.created_at) }) : avatar(message.user), main);
  if (!message.deleted && state.editing !== message.id) {
    const actions = el('div', { class: 'actions' });
    const picker = el('div', { class: 'picker', hidden: true },
      REACTIONS.map((emoji) => el('button', { type: 'button', text: emoji, title: `React with ${emoji}`, onclick: () => { picker.hidden = true; toggleReaction(message, emoji, message.reactions?.some((r) => r.emoji === emoji && r.me)); } })));
    actions.append(el('button', { type: 'button', class: 'react', title: 'Add reaction', 'aria-label': 'Add reaction', text: '☺', onclick: () => { picker.hidden = !picker.hidden; } }));
    if (!inThread && !message.parent_id) actions.append(el('button', { type: 'button', class: 'reply', title: 'Reply in thread', 'aria-label': 'Reply in thread', text: '💬', onclick: () => openThread(message.id) }));
    if (own) actions.append(el('button', { type: 'button', class: 'edit', title: 'Edit', 'aria-label': 'Edit', text: '✎', onclick: () => { state.editing = message.id; rerender(); } }));
    if (mayDelete) actions.append(el('button', { type: 'button', class: 'delete', title: 'Delete', 'aria-label': 'Delete', text: '🗑', onclick: () => deleteMessage(message) }));
    node.append(actions, picker);
  }
  return node;
}

function rerender() {
  renderMessages();
  renderThread();
}

async function toggleReaction(message, emoji, mine) {
  try {
    if (mine) await api.unreact(message.id, emoji);
    else await api.react(message.id, emoji);
    await refreshReactions(message.id);
  } catch (error) {
    fail(error);
  }
}

// Reaction events carry one change; the count shown comes from the server's list, so a
// replayed event or our own request never counts twice.
const reactionFetches = new Map();
function refreshReactions(id) {
  if (!reactionFetches.has(id)) {
    reactionFetches.set(id, (async () => {
      try {
        const reactions = await api.message(id).then((m) => m.reactions);
        updateEverywhere(id, (m) => { m.reactions = reactions; });
        rerender();
      } catch (error) {
        if (error.status !== 404) fail(error);
      } finally {
        reactionFetches.delete(id);
      }
    })());
  }
  return reactionFetches.get(id);
}

async function deleteMessage(message) {
  if (!window.confirm('Delete this message? This cannot be undone.')) return;
  try {
    await api.remove(message.id);
    updateEverywhere(message.id, (m) => { m.deleted = true; m.content = ''; m.attachments = []; m.reactions = []; });
    rerender();
  } catch (error) {
    fail(error);
  }
}

function updateEverywhere(id, change) {
  for (const conv of state.conversations.values()) { const m = conv.messages.get(id); if (m) change(m); }
  if (state.thread) {
    if (state.thread.parent?.id === id) change(state.thread.parent);
    const reply = state.thread.replies.get(id);
    if (reply) change(reply);
  }
}

// A newer copy of a message (an edit, a send's reply) replaces the one we have.
function mergeMessage(message) {
  if (message.parent_id) {
    if (state.thread?.parent?.id === message.parent_id) state.thread.replies.set(message.id, message);
  } else {
    const conv = state.conversations.get(message.channel_id);
    if (conv) conv.messages.set(message.id, message);
  }
  if (state.thread?.parent?.id === message.id) state.thread.parent = message;
}

// ---------- sending ----------

async function send(event) {
  event?.preventDefault();
  const input = $('#message-input');
  const content = input.value.trim();
  const files = state.pending.filter((p) => p.file).map((p) => p.file.id);
  if (!state.current || (!content && !files.length)) return;
  if (state.pending.some((p) => !p.file)) { toast('Wait until the uploads have finished.', 'info'); return; }
  const channel = state.current;
  const saved = { text: input.value, pending: state.pending };
  input.value = '';
  state.pending = [];
  renderPending();
  autosize(input);
  try {
    const message = await api.send({ channel_id: channel, content, attachment_ids: files.length ? files : undefined, nonce: crypto.randomUUID() });
    if (!conversation(channel).messages.has(message.id)) conversation(channel).messages.set(message.id, message);
    if (state.current === channel) renderMessages({ stick: true });
  } catch (error) {
    if (!input.value) { input.value = saved.text; state.pending = saved.pending; renderPending(); autosize(input); }
    fail(error);
  }
}

async function sendReply(event) {
  event?.preventDefault();
  const input = $('#thread-input');
  const content = input.value.trim();
  if (!content || !state.thread?.parent) return;
  const parent = state.thread.parent;
  input.value = '';
  try {
    const reply = await api.send({ channel_id: parent.channel_id, content, parent_id: parent.id, nonce: crypto.randomUUID() });
    if (state.thread?.parent?.id === parent.id && !state.thread.replies.has(reply.id)) {
      state.thread.replies.set(reply.id, reply);
      renderThread({ stick: true });
    }
  } catch (error) {
    if (!input.value) input.value = content;
    fail(error);
  }
}

function autosize(textarea) {
  textarea.style.height = 'auto';
  textarea.style.height = `${Math.min(textarea.scrollHeight, 200)}px`;
}

function composerKeys(submit) {
  return (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  };
}

function typed() {
  autosize($('#message-input'));
  const now = Date.now();
  if (state.current && $('#message-input').value && now - state.lastTyping > 3000) {
    state.lastTyping = now;
    state.live?.send('typing', { channel_id: state.current });
  }
}

async function attach(files) {
  for (const file of files) {
    const entry = { name: file.name, local: file.type.startsWith('image/') ? URL.createObjectURL(file) : null, file: null };
    state.pending.push(entry);
    renderPending();
    try {
      entry.file = await api.upload(file);
    } catch (error) {
      state.pending = state.pending.filter((p) => p !== entry);
      fail(new Error(`${file.name}: ${error.message}`));
    }
    renderPending();
  }
}

function renderPending() {
  $('#pending').replaceChildren(...state.pending.map((entry) => el('div', { class: `chip${entry.file ? '' : ' uploading'}` },
    entry.local ? el('img', { src: entry.local, alt: '' }) : el('span', { text: '📄' }),
    el('span', { class: 'chip-name', text: entry.file ? entry.name : `${entry.name} (uploading…)` }),
    el('button', { type: 'button', 'aria-label': `Remove ${entry.name}`, text: '×', onclick: () => { state.pending = state.pending.filter((p) => p !== entry); renderPending(); } }))));
  $('#send').disabled = state.pending.some((p) => !p.file);
}

// ---------- read markers ----------

let readTimer = null;
function markRead() {
  clearTimeout(readTimer);
  readTimer = setTimeout(async () => {
    const id = state.current;
    const channel = state.channels.get(id);
    if (!channel || document.visibilityState !== 'visible') return;
    const seq = Math.max(state.seen[id] ?? 0, ...[...conversation(id).messages.values()].map((m) => m.seq));
    channel.unread_count = 0;
    channel.mention_count = channel.mention_count ? 0 : channel.mention_count;
    renderChannelList();
    if (seq > (channel.last_read_seq ?? 0)) {
      channel.last_read_seq = seq;
      try { await api.markRead(id, seq); } catch (error) { fail(error); }
    }
  }, 300);
}

// ---------- threads ----------

async function openThread(id) {
  $('#results').hidden = true;
  $('#thread').hidden = false;
  state.thread = { parent: null, replies: new Map(), id };
  renderThread();
  try {
    const parent = await api.message(id);
    if (state.thread?.id !== id) return;
    state.thread.parent = parent;
    let after = null;
    do {
      const page = await api.replies(id, after);
      for (const reply of page.items) state.thread?.replies.set(reply.id, reply);
      after = page.next_cursor;
    } while (after && state.thread?.id === id);
    renderThread({ stick: true });
    $('#thread-input').focus();
  } catch (error) {
    fail(error);
    closeThread();
  }
}

function closeThread() {
  state.thread = null;
  $('#thread').hidden = true;
}

function renderThread({ stick = false } = {}) {
  if (!state.thread) return;
  const box = $('#thread-messages');
  const atBottom = stick || box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const { parent, replies } = state.thread;
  if (!parent) { box.replaceChildren(el('div', { class: 'muted center', text: 'Loading…' })); return; }
  const list = sorted(replies);
  box.replaceChildren(renderMessage(parent, { inThread: true }),
    el('div', { class: 'day', text: `${list.length} ${list.length === 1 ? 'reply' : 'replies'}` }),
    ...list.map((m) => renderMessage(m, { inThread: true })));
  if (atBottom) box.scrollTop = box.scrollHeight;
}

// ---------- search ----------

async function search(event) {
  event.preventDefault();
  const q = $('#search-input').value.trim();
  if (!q) return;
  closeThread();
  $('#results').hidden = false;
  $('#results-title').textContent = `Results for “${q}”`;
  $('#results-list').replaceChildren(el('li', { class: 'muted', text: 'Searching…' }));
  try {
    const page = await api.search(q);
    $('#results-list').replaceChildren(...page.items.map((m) => {
      const channel = state.channels.get(m.channel_id);
      return el('li', { class: 'result', dataset: { id: m.id } },
        el('button', { type: 'button', onclick: () => openResult(m) },
          el('div', { class: 'result-head' },
            el('strong', { text: m.user?.display_name || m.user?.username }),
            el('span', { class: 'muted', text: ` in ${channel ? channelLabel(channel) : 'a channel'} · ${day(m.created_at)} ${time(m.created_at)}` })),
          el('div', { class: 'result-body', text: m.content })));
    }));
    if (!page.items.length) $('#results-list').append(el('li', { class: 'muted', text: 'No messages match.' }));
  } catch (error) {
    $('#results-list').replaceChildren(el('li', { class: 'error', text: error.message }));
  }
}

async function openResult(message) {
  $('#results').hidden = true;
  await openChannel(message.channel_id);
  if (message.parent_id) { openThread(message.parent_id); return; }
  const node = document.querySelector(`#messages .message[data-id="${message.id}"]`);
  if (node) { node.scrollIntoView({ block: 'center' }); node.classList.add('highlight'); setTimeout(() => node.classList.remove('highlight'), 2000); }
}

// ---------- live events ----------

function renderTyping() {
  const now = Date.now();
  const typers = [...(state.typing.get(state.current)?.values() ?? [])].filter((t) => t.until > now).map((t) => t.name);
  $('#typing').textContent = typers.length === 0 ? '' : typers.length === 1 ? `${typers[0]} is typing…` : `${typers.slice(0, 3).join(', ')} are typing…`;
}
setInterval(renderTyping, 1000);

function isNew(data) {
  const { channel_id: channel, seq } = data;
  if (typeof seq !== 'number') return true;
  if (seq <= (state.seen[channel] ?? 0)) return false; // a replay of something already applied
  state.seen[channel] = seq;
  return true;
}

let frames = Promise.resolve();

async function handleFrame(frame) {
  const { type, data } = frame;
  switch (type) {
    case 'ready':
      if (data.channels?.some((c) => !state.channels.has(c.id))) refreshChannels().catch(fail);
      return;
    case 'message': {
      if (!isNew(data)) return;
      if (!state.channels.has(data.channel_id)) { await refreshChannels().catch(fail); }
      const channel = state.channels.get(data.channel_id);
      state.typing.get(data.channel_id)?.delete(data.user_id);
      renderTyping();
      if (data.parent_id) {
        if (state.thread?.parent?.id === data.parent_id && !state.thread.replies.has(data.id)) {
          state.thread.replies.set(data.id, data);
          renderThread();
        }
        updateEverywhere(data.parent_id, (m) => { m.reply_count = (m.reply_count || 0) + 1; });
        if (data.channel_id === state.current) renderMessages();
        return;
      }
      const conv = state.conversations.get(data.channel_id);
      if (conv && !conv.messages.has(data.id)) conv.messages.set(data.id, data);
      if (data.channel_id === state.current) renderMessages();
      if (data.channel_id === state.current && document.visibilityState === 'visible') markRead();
      else if (channel && data.user_id !== state.me.id) {
        // The list's counts already include events up to its last_seq.
        const counted = data.seq <= (channel.last_seq ?? 0);
        if (!counted) channel.unread_count = (channel.unread_count || 0) + 1;
        // The server resolved who the message mentions (docs/api.md section 11).
        const mentioned = data.mentions_everyone || (data.mentions ?? []).some((m) => m.id === state.me.id);
        if (mentioned && (channel.mentions_local || !counted)) channel.mention_count = (channel.mention_count || 0) + 1;
        renderChannelList();
      }
      if (channel) channel.last_seq = Math.max(channel.last_seq ?? 0, data.seq);
      return;
    }
    case 'message_updated':
      if (!isNew(data)) return;
      updateEverywhere(data.message.id, (m) => Object.assign(m, data.message));
      rerender();
      return;
    case 'message_deleted':
      if (!isNew(data)) return;
      updateEverywhere(data.message_id, (m) => { m.deleted = true; m.content = ''; m.attachments = []; m.reactions = []; });
      rerender();
      return;
    case 'reaction_added':
    case 'reaction_removed':
      if (!isNew(data)) return;
      refreshReactions(data.message_id);
      return;
    case 'message_pinned':
    case 'message_unpinned':
      if (!isNew(data)) return;
      updateEverywhere(data.message_id, (m) => { m.pinned = type === 'message_pinned'; });
      rerender();
      return;
    case 'member_joined':
    case 'member_left':
    case 'member_banned':
    case 'member_unbanned':
    case 'member_removed':
    case 'member_role_changed':
    case 'channel_owner_changed':
    case 'channel_updated':
      if (!isNew(data)) return;
      if (data.user?.id === state.me.id && (type === 'member_banned' || type === 'member_removed')) toast(`You were removed from ${channelLabel(state.channels.get(data.channel_id) ?? { name: 'a channel' })}.`, 'info');
      await refreshChannels().catch(fail);
      if (data.channel_id === state.current && !state.channels.has(state.current)) leaveCurrent();
      else renderHeader();
      return;
    case 'channel_deleted':
      if (!isNew(data)) return;
      state.conversations.delete(data.channel_id);
      await refreshChannels().catch(fail);
      if (data.channel_id === state.current) { toast('This channel was deleted.', 'info'); leaveCurrent(); }
      return;
    case 'resync_required': {
      // More was missed than the server keeps: start the channel over from REST.
      state.conversations.delete(data.channel_id);
      await refreshChannels().catch(fail);
      state.seen[data.channel_id] = state.channels.get(data.channel_id)?.last_seq ?? 0;
      if (data.channel_id === state.current) openChannel(data.channel_id);
      return;
    }
    case 'typing': {
      if (data.user.id === state.me.id) return;
      if (!state.typing.has(data.channel_id)) state.typing.set(data.channel_id, new Map());
      state.typing.get(data.channel_id).set(data.user.id, { name: data.user.display_name || data.user.username, until: Date.now() + 5000 });
      renderTyping();
      return;
    }
    case 'presence':
      state.online.set(data.user_id, data.online);
      renderChannelList();
      renderHeader();
      return;
    case 'error':
      toast(data.detail || data.code);
      return;
    default:
  }
}

function leaveCurrent() {
  state.current = null;
  closeThread();
  $('#channel-title').textContent = 'No channel open';
  $('#channel-meta').textContent = '';
  $('#composer').hidden = true;
  renderMessages();
  renderChannelList();
}

// ---------- dialogs ----------

function dialogError(dialog, message) {
  let node = dialog.querySelector('.error');
  if (!node) { node = el('p', { class: 'error', role: 'alert' }); dialog.querySelector('form').append(node); }
  node.textContent = message || '';
  node.hidden = !message;
}

async function openChannelDialog() {
  const dialog = $('#channel-dialog');
  dialogError(dialog, '');
  $('#create-channel').reset();
  dialog.showModal();
  $('#new-channel-name').focus();
  const list = $('#browse-list');
  list.replaceChildren(el('li', { class: 'muted', text: 'Loading…' }));
  try {
    const page = await api.publicChannels();
    list.replaceChildren(...page.items.filter((c) => c.kind !== 'dm').map((c) => {
      const member = state.channels.has(c.id);
      return el('li', {},
        el('span', { class: 'browse-name' }, el('strong', { text: `# ${c.name}` }), el('small', { class: 'muted', text: ` ${c.member_count} members` })),
        el('button', { type: 'button', class: member ? 'ghost' : 'primary join', dataset: { name: c.name }, text: member ? 'Open' : 'Join', onclick: () => join(c, member) }));
    }));
    if (!page.items.length) list.append(el('li', { class: 'muted', text: 'No public channels yet.' }));
  } catch (error) {
    list.replaceChildren(el('li', { class: 'error', text: error.message }));
  }
}

async function join(channel, member) {
  const dialog = $('#channel-dialog');
  try {
    if (!member) await api.join(channel.id);
    await refreshChannels();
    dialog.close();
    openChannel(channel.id);
  } catch (error) {
    dialogError(dialog, error.message);
  }
}

async function createChannel(event) {
  event.preventDefault();
  const dialog = $('#channel-dialog');
  try {
    const channel = await api.createChannel({
      name: $('#new-channel-name').value.trim(),
      description: $('#new-channel-description').value.trim() || undefined,
      is_private: $('#new-channel-private').checked,
    });
    await refreshChannels();
    dialog.close();
    openChannel(channel.id);
  } catch (error) {
    dialogError(dialog, error.message);
  }
}

async function createDm(event) {
  event.preventDefault();
  const dialog = $('#dm-dialog');
  try {
    const channel = await api.dm($('#dm-username').value.trim());
    await refreshChannels();
    dialog.close();
    openChannel(channel.id);
  } catch (error) {
    dialogError(dialog, error.message);
  }
}

// ---------- wiring ----------

function wire() {
  session.onUnauthorized(() => signOut('Your session has expired. Please sign in again.'));
  $('#tab-login').addEventListener('click', () => setAuthMode(false));
  $('#tab-register').addEventListener('click', () => setAuthMode(true));
  $('#auth-form').addEventListener('submit', submitAuth);
  $('#sign-out').addEventListener('click', async () => {
    try { await api.logout(); } catch (error) { if (error.status !== 401) fail(error); }
    signOut('You have signed out.');
  });
  $('#composer').addEventListener('submit', send);
  $('#message-input').addEventListener('keydown', composerKeys(send));
  $('#message-input').addEventListener('input', typed);
  $('#thread-composer').addEventListener('submit', sendReply);
  $('#thread-input').addEventListener('keydown', composerKeys(sendReply));
  $('#thread-close').addEventListener('click', closeThread);
  $('#results-close').addEventListener('click', () => { $('#results').hidden = true; });
  $('#attach').addEventListener('click', () => $('#file-input').click());
  $('#file-input').addEventListener('change', (event) => { attach([...event.target.files]); event.target.value = ''; });
  $('#messages').addEventListener('scroll', () => { if ($('#messages').scrollTop < 60) loadOlder(); });
  $('#messages').addEventListener('dragover', (event) => event.preventDefault());
  $('#messages').addEventListener('drop', (event) => { event.preventDefault(); if (state.current) attach([...event.dataTransfer.files]); });
  $('#search-form').addEventListener('submit', search);
  $('#new-channel').addEventListener('click', openChannelDialog);
  $('#new-dm').addEventListener('click', () => { dialogError($('#dm-dialog'), ''); $('#create-dm').reset(); $('#dm-dialog').showModal(); });
  $('#create-channel').addEventListener('submit', createChannel);
  $('#create-dm').addEventListener('submit', createDm);
  for (const button of document.querySelectorAll('.dialog-cancel')) button.addEventListener('click', () => button.closest('dialog').close());
  $('#back').addEventListener('click', () => { $('#chat').dataset.pane = 'sidebar'; });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && state.thread && !document.querySelector('dialog[open]')) closeThread();
    else if (event.key === 'Escape' && !$('#results').hidden) $('#results').hidden = true;
  });
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible' && state.current) markRead(); });
}

wire();
setAuthMode(false);
if (session.token) enterChat(); else showAuth();
