// Audit › Access: who saw or changed which patient's record (GET /audit/patient-access),
// newest first, filtered by book number, user and time, paged by cursor.

import { get, query } from './api.js';
import { empty, errorBox, field, fill, h, localToIso, table, time } from './ui.js';

const PAGE = 50;

/** The links between the Audit view's two pages (this one and audit.js's); the current one is marked. */
export function pages(current, link) {
  const to = (href, title, name) => h('a', { href, onclick: link, 'aria-current': name === current ? 'page' : undefined }, title);
  return h('nav', { class: 'tabs', 'aria-label': 'Audit pages' },
    to('/portal/audit', 'Webhook changes', 'changes'),
    to('/portal/audit/access', 'Access', 'access'));
}

const ACTIONS = { read: 'Read', list: 'List', write: 'Write' };

export async function render(main, ctx) {
  const bookNo = h('input', { name: 'book_no', autocomplete: 'off', placeholder: 'e.g. PUNE-0042' });
  const user = h('input', { name: 'user', autocomplete: 'off', placeholder: 'username or user id' });
  const from = h('input', { type: 'datetime-local', name: 'from' });
  const to = h('input', { type: 'datetime-local', name: 'to' });
  const list = h('div');
  // The cursors of the pages before this one, to go back to newer entries.
  let cursors = [];
  fill(main,
    h('h1', {}, 'Audit'),
    pages('access', ctx.link),
    h('p', { class: 'muted' },
      'Every read, list and change of a patient\'s record: who, as which role, through which route, when and from where. ',
      'Filter by book number to see who saw a record, by user to see what they looked at. ',
      'Entries appear within about a second, and cannot be changed or deleted.'),
    h('form', { class: 'panel filters', onsubmit: (event) => { event.preventDefault(); cursors = []; load(); } },
      field('Book number', bookNo),
      field('User', user),
      field('From', from),
      field('To', to),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Apply'))),
    list);

  async function load() {
    const cursor = cursors[cursors.length - 1];
    let page;
    try {
      page = await get(`/audit/patient-access${query({
        book_no: bookNo.value.trim(), user: user.value.trim(),
        from: localToIso(from.value), to: localToIso(to.value), cursor, limit: PAGE,
      })}`);
    } catch (error) {
      return fill(list, errorBox(error));
    }
    if (page.items.length === 0) {
      return fill(list, empty('No access recorded.', 'Reads and changes of patients\' records appear here as they happen.'));
    }
    fill(list,
      table([
        { title: 'Time', cell: (e) => time(e.at) },
        { title: 'Who', cell: (e) => [e.username, ' ', h('span', { class: 'muted small' }, `(${e.role})`)] },
        { title: 'Action', cell: (e) => ACTIONS[e.action] || e.action },
        { title: 'Route', cell: (e) => h('code', {}, `${e.method} ${e.route}`) },
        { title: 'Patients', cell: (e) => patients(e.book_nos) },
        { title: 'From', cell: (e) => h('code', {}, e.client_address) },
      ], page.items, 'Patient access'),
      h('div', { class: 'actions' },
        cursors.length > 0 && h('button', { type: 'button', class: 'secondary', onclick: () => { cursors.pop(); load(); } }, 'Newer'),
        page.next_cursor && h('button', { type: 'button', class: 'secondary', onclick: () => { cursors.push(page.next_cursor); load(); } }, 'Older')));
  }

  await load();
}

/** The book numbers an entry showed; a long list is folded behind its count. */
function patients(bookNos) {
  if (bookNos.length === 0) return h('span', { class: 'muted' }, 'none');
  if (bookNos.length <= 3) return bookNos.join(', ');
  return h('details', {}, h('summary', {}, `${bookNos.length} patients`), bookNos.join(', '));
}
