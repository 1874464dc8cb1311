// DOM helpers with no app state: element building, avatars, dates and notices.

export const $ = (selector) => document.querySelector(selector);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'text') node.textContent = value;
    else if (key in node && typeof value !== 'string') node[key] = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function initials(name) {
  return (name || '?').split(/[\s._-]+/).filter(Boolean).slice(0, 2).map((part) => part[0].toUpperCase()).join('') || '?';
}

function hue(text) {
  let h = 0;
  for (const c of text || '') h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}

export function avatar(user) {
  // The colour comes from a class (one of 12 hues), never an inline style: CSP forbids those.
  return el('span', { class: `avatar hue-${hue(user?.username) % 12}`, 'aria-hidden': 'true', text: initials(user?.display_name || user?.username) });
}

export function time(iso) {
  const date = new Date(iso);
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function day(iso) {
  const date = new Date(iso);
  const today = new Date();
  if (date.toDateString() === today.toDateString()) return 'Today';
  const yesterday = new Date(today.getTime() - 86400000);
  if (date.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return date.toLocaleDateString([], { weekday: 'long', month: 'long', day: 'numeric' });
}

export function toast(message, kind = 'error') {
  const item = el('div', { class: `toast ${kind}`, text: message });
  const close = el('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', text: '×', onclick: () => item.remove() });
  item.append(close);
  $('#toasts').append(item);
  setTimeout(() => item.remove(), 8000);
}
