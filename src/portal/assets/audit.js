// Audit, in two pages: webhook changes (who changed which subscription, and when; newest
// first, paged by offset) at /portal/audit, and patient access (access.js) at
// /portal/audit/access.

import { allSubscriptions, get, query } from './api.js';
import { empty, errorBox, field, fill, fold, h, table, time } from './ui.js';
import * as access from './access.js';
import { pages } from './access.js';

const PAGE = 50;

export async function render(main, ctx) {
  if (ctx.rest[0] === 'access') return access.render(main, ctx);
  const subs = await allSubscriptions();
  const urls = new Map(subs.map((s) => [s.id, s.url]));
  const subscription = h('select', {}, h('option', { value: '' }, 'Any subscription'),
    subs.map((s) => h('option', { value: s.id }, s.url)));
  const list = h('div');
  let offset = 0;
  fill(main,
    h('h1', {}, 'Audit'),
    pages('changes', ctx.link),
    h('p', { class: 'muted' }, 'Every change to webhook subscriptions: by whom, when, and what. Secrets are never recorded.'),
    h('form', { class: 'panel filters', onsubmit: (event) => { event.preventDefault(); offset = 0; load(); } },
      field('Subscription', subscription),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Apply'))),
    list);

  async function load() {
    let page;
    try {
      page = await get(`/webhooks/audit${query({ subscription_id: subscription.value, limit: PAGE, offset })}`);
    } catch (error) {
      return fill(list, errorBox(error));
    }
    if (page.items.length === 0) {
      return fill(list, empty('Nothing recorded yet.', 'Changes made here or through the API appear as they happen.'));
    }
    fill(list,
      table([
        { title: 'Time', cell: (e) => time(e.created_at) },
        { title: 'Who', cell: (e) => e.actor },
        { title: 'Action', cell: (e) => h('code', {}, e.action) },
        { title: 'Subscription', cell: (e) => (e.subscription_id ? h('span', { class: 'url small' }, urls.get(e.subscription_id) || e.subscription_id) : '—') },
        { title: 'Details', cell: (e) => fold(Object.keys(e.details || {}).length ? e.details : '', 60) },
      ], page.items, 'Audit trail'),
      h('div', { class: 'actions' },
        h('span', { class: 'muted' }, `${offset + 1}–${offset + page.items.length} of ${page.total}`),
        offset > 0 && h('button', { type: 'button', class: 'secondary', onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, 'Newer'),
        offset + page.items.length < page.total && h('button', { type: 'button', class: 'secondary', onclick: () => { offset += PAGE; load(); } }, 'Older')));
  }

  await load();
}
