// Small DOM helpers shared by the views. Text always goes in as text nodes, never as
// HTML, so nothing the API returns can become markup.

/** h('button', {class: 'x', onclick}, 'Label', child…) */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (key in element && typeof value !== 'string') element[key] = value;
    else element.setAttribute(key, value === true ? '' : value);
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's content. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** A time in the browser's time zone; the exact UTC instant is in the tooltip. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const date = new Date(iso);
  return h('time', { datetime: iso, title: date.toISOString() }, timeFormat.format(date));
}

/** A `datetime-local` value (local time) as an RFC 3339 instant, or undefined. */
export function localToIso(value) {
  return value ? new Date(value).toISOString() : undefined;
}

/** Now minus `hours`, as a `datetime-local` value. */
export function localInput(hoursAgo = 0) {
  const date = new Date(Date.now() - hoursAgo * 3600e3);
  date.setMinutes(date.getMinutes() - date.getTimezoneOffset());
  return date.toISOString().slice(0, 16);
}

// Status words and their tone; the word is always shown, the colour only supports it.
const TONES = {
  delivered: 'ok', enabled: 'ok', active: 'ok', succeeded: 'ok',
  pending: 'idle', queued: 'idle', running: 'info', disabled: 'idle', inactive: 'idle',
  failed: 'warn', 'auto-paused': 'bad', exhausted: 'bad', 'job failed': 'bad',
};

export function status(word, tone) {
  const label = word.charAt(0).toUpperCase() + word.slice(1);
  return h('span', { class: `status ${tone || TONES[word] || 'idle'}` }, label);
}

/** An HTTP status code as a coloured word: "200 OK". */
export function httpStatus(code, error) {
  if (code === null || code === undefined) return status(error ? 'No answer' : 'Not tried', error ? 'bad' : 'idle');
  const tone = code >= 200 && code < 300 ? 'ok' : code >= 500 ? 'bad' : 'warn';
  return h('span', { class: `status ${tone}` }, `${code} ${REASONS[code] || ''}`.trim());
}

const REASONS = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 400: 'Bad Request', 401: 'Unauthorized',
  403: 'Forbidden', 404: 'Not Found', 410: 'Gone', 429: 'Too Many Requests', 500: 'Internal Server Error',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/** Text that folds when long: the start shows, the rest opens on demand. */
export function fold(text, limit = 80) {
  if (text === null || text === undefined || text === '') return h('span', { class: 'muted' }, '—');
  const value = typeof text === 'string' ? text : JSON.stringify(text, null, 2);
  if (value.length <= limit && !value.includes('\n')) return h('code', { class: 'wrap' }, value);
  return h('details', { class: 'fold' },
    h('summary', {}, `${value.slice(0, limit).split('\n')[0]}…`),
    h('pre', {}, value));
}

/** A table that becomes labelled cards on a narrow screen (see portal.css). */
export function table(columns, rows, caption) {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      caption && h('caption', { class: 'sr-only' }, caption),
      h('thead', {}, h('tr', {}, columns.map((column) => h('th', { scope: 'col' }, column.title)))),
      h('tbody', {}, rows.map((row) => h('tr', {},
        columns.map((column) => h('td', { 'data-label': column.title }, column.cell(row))))))));
}

/** What to do when a list is empty. */
export function empty(title, next) {
  return h('div', { class: 'empty' }, h('p', { class: 'empty-title' }, title), h('p', {}, next));
}

/** An API error as its message (a 422's message already names every field). */
export function errorBox(error) {
  return h('div', { class: 'notice error', role: 'alert' }, error.message || String(error));
}

export function notice(message, kind = 'ok') {
  return h('div', { class: `notice ${kind}`, role: 'status' }, message);
}

/** Runs `action`, showing its error (or its success message) in `slot`. */
export async function attempt(slot, action, success) {
  fill(slot);
  try {
    const result = await action();
    if (success) fill(slot, notice(typeof success === 'function' ? success(result) : success));
    return result;
  } catch (error) {
    fill(slot, errorBox(error));
    return undefined;
  }
}

/** A labelled field: the label's text is the control's accessible name. */
export function field(label, control, hint) {
  const id = control.id || `f-${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${++fieldCount}`;
  control.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hint && h('p', { class: 'hint' }, hint));
}
let fieldCount = 0;

/** Asks before a destructive action; resolves true when confirmed. */
export function confirm(message, confirmLabel) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = message;
  document.getElementById('confirm-ok').textContent = confirmLabel;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

/** A read-only value with a button (`label`) that copies it. */
function copyable(value, label) {
  const input = h('input', { type: 'text', readonly: true, value, class: 'secret', spellcheck: 'false' });
  const copied = h('span', { class: 'muted', role: 'status' });
  const copy = async () => {
    input.select();
    let done = false;
    try {
      await navigator.clipboard.writeText(value);
      done = true;
    } catch {
      done = document.execCommand('copy'); // plain-http pages have no clipboard API
    }
    copied.textContent = done ? 'Copied.' : 'Selected: press Ctrl+C (or ⌘C) to copy.';
  };
  return { input, copy: [h('button', { type: 'button', onclick: copy }, label), copied] };
}

/** A secret shown this once, with a copy button and the warning; with a subscription's
 * feed token (the partner's credential for its catch-up feed) when the answer has one. */
export function secretPanel(title, secret, onDone, feedToken) {
  const signing = copyable(secret, 'Copy');
  const feed = feedToken && copyable(feedToken, 'Copy feed token');
  return h('section', { class: 'panel secret-panel', 'aria-label': title },
    h('h2', {}, title),
    h('p', { class: 'notice warn' }, 'This secret will not be shown again. Copy it now and store it in the receiving system.'),
    field('Signing secret', signing.input),
    feed && field('Feed token', feed.input,
      'The receiving system reads the events it missed with it (GET …/events, see the README). It changes with the secret, and can be computed from it.'),
    h('div', { class: 'actions' },
      signing.copy, feed && feed.copy,
      h('button', { type: 'button', class: 'secondary', onclick: onDone }, 'Done')));
}
