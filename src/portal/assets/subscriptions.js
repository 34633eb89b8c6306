// Subscriptions: the table, create (secret shown once), and one subscription's page with
// its health, its attempts and every action (test, enable/disable, edit, rotate, delete).

import { allSubscriptions, del, eventTypes, get, post, put, query, seg } from './api.js';
import {
  attempt, confirm, empty, errorBox, field, fill, fold, h, httpStatus, notice, secretPanel, status, table, time,
} from './ui.js';

const BASE = '/webhooks/subscriptions';

export async function render(main, ctx) {
  if (ctx.rest[0]) return detail(main, ctx, ctx.rest[0]);
  return list(main, ctx);
}

function subscriptionStatus(sub, stats) {
  if (sub.enabled) return status('enabled');
  if (sub.paused_reason) {
    return h('span', {}, status('auto-paused'), h('span', { class: 'reason' }, sub.paused_reason));
  }
  return status('disabled');
}

const payloadWords = { full: 'Full resource', id_only: 'Identifiers only', fhir: 'FHIR R4 resource' };

function types(list) {
  return list.length === 0 ? h('span', { class: 'muted' }, 'All events') : h('span', { class: 'types' }, list.join(', '));
}

async function list(main, ctx) {
  const delivery = h('div', { class: 'delivery-status' });
  const slot = h('div', { class: 'slot' });
  const formSlot = h('div');
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const openForm = async () => {
    const form = await subscriptionForm('Create', async (input) => {
      const created = await post(BASE, input);
      fill(formSlot, secretPanel('Subscription created', created.secret, () => fill(formSlot), created.feed_token));
      refresh();
    }, () => fill(formSlot));
    fill(formSlot, form);
    form.querySelector('input').focus();
  };
  fill(main,
    h('div', { class: 'title' },
      h('h1', {}, 'Subscriptions'),
      h('button', { type: 'button', onclick: openForm }, 'New subscription')),
    h('p', { class: 'muted' }, 'Systems that receive a signed POST for each event (lab, pharmacy, SMS, analytics).'),
    delivery, slot, formSlot, body);

  async function refresh() {
    get('/webhooks/status').then((state) => fill(delivery, deliveryPanel(state)), () => fill(delivery));
    const subs = await attempt(slot, allSubscriptions);
    if (!subs) return fill(body);
    if (subs.length === 0) {
      return fill(body, empty('No subscriptions yet.', 'Choose “New subscription” to send events to a partner system.'));
    }
    const stats = await Promise.all(subs.map((s) => get(`${BASE}/${seg(s.id)}/failure-stats`).catch(() => null)));
    const rows = subs.map((sub, i) => ({ sub, stats: stats[i] }));
    fill(body, table([
      { title: 'URL', cell: ({ sub }) => h('a', { href: `/portal/subscriptions/${sub.id}`, onclick: ctx.link, class: 'url' }, sub.url) },
      { title: 'Description', cell: ({ sub }) => sub.description || h('span', { class: 'muted' }, '—') },
      { title: 'Event types', cell: ({ sub }) => types(sub.event_types) },
      { title: 'Payload', cell: ({ sub }) => payloadWords[sub.payload] || sub.payload },
      { title: 'Status', cell: ({ sub, stats }) => subscriptionStatus(sub, stats) },
      { title: 'Failures in a row', cell: ({ stats }) => stats ? failures(stats.consecutive_failures) : '—' },
      { title: 'Last success', cell: ({ stats }) => time(stats && stats.last_success_at) },
    ], rows, 'Subscriptions'));
  }
  await refresh();
}

/** The camp's uplink as the engine judges it, and the private ranges subscriptions may reach. */
function deliveryPanel(state) {
  const uplink = state.uplink;
  const link = !uplink ? null : uplink.state === 'down'
    ? notice(h('span', {}, h('strong', {}, 'The camp\'s internet is down'), ` since ${new Date(uplink.down_since).toLocaleString()}. `,
      'Deliveries wait: no retry is used and no subscription is paused for it. They go out in order when the link returns.'), 'warn')
    : h('p', { class: 'uplink' }, 'Internet: ', status('up', 'ok'),
      uplink.outages > 0 ? h('span', { class: 'muted' }, ` (${uplink.outages} outage${uplink.outages === 1 ? '' : 's'} since the server started)`) : '');
  const ranges = (list) => list.length === 0 ? h('span', { class: 'muted' }, 'none') : h('code', {}, list.join(', '));
  return h('div', {},
    link,
    h('p', { class: 'subnets' }, 'Camp network ranges allowed: ', ranges(state.allowed_subnets),
      '; plain http:// allowed in: ', ranges(state.allow_http_subnets),
      h('span', { class: 'muted' }, ' (EHRS_WEBHOOK_ALLOWED_SUBNETS, EHRS_WEBHOOK_ALLOW_HTTP_SUBNETS)')));
}

function failures(count) {
  return h('span', { class: count > 0 ? 'count bad' : 'count' }, String(count));
}

/** The create and edit form; `submit` gets the request body. */
async function subscriptionForm(action, submit, cancel, sub = {}) {
  const catalogue = await eventTypes();
  const chosen = new Set(sub.event_types || []);
  const url = h('input', { type: 'url', required: true, value: sub.url || '', placeholder: 'https://lab.example.org/webhooks' });
  const description = h('input', { value: sub.description || '', maxlength: '500' });
  const payload = h('select', {},
    h('option', { value: 'full', selected: sub.payload === 'full' }, 'full: the resource after the write'),
    h('option', { value: 'id_only', selected: sub.payload === 'id_only' }, 'id_only: identifiers only, no clinical fields'),
    h('option', { value: 'fhir', selected: sub.payload === 'fhir' }, 'fhir: the HL7 FHIR R4 resource (full clinical content)'));
  const boxes = catalogue.map((type) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', value: type, checked: chosen.has(type) }), type));
  const slot = h('div', { class: 'slot' });
  const onsubmit = async (event) => {
    event.preventDefault();
    const input = {
      url: url.value.trim(),
      description: description.value.trim(),
      event_types: boxes.map((b) => b.firstChild).filter((b) => b.checked).map((b) => b.value),
      payload: payload.value,
    };
    await attempt(slot, () => submit(input));
  };
  return h('form', { class: 'panel', onsubmit },
    h('h2', {}, action === 'Create' ? 'New subscription' : 'Edit subscription'),
    field('URL', url, 'Where the signed POSTs go. Must be https:// in production.'),
    field('Description', description),
    h('fieldset', {},
      h('legend', {}, 'Event types'),
      h('p', { class: 'hint' }, 'Leave all unticked to receive every event type.'),
      h('div', { class: 'checks' }, boxes)),
    field('Payload', payload),
    slot,
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, action),
      h('button', { type: 'button', class: 'secondary', onclick: cancel }, 'Cancel')));
}

async function detail(main, ctx, id) {
  const path = `${BASE}/${seg(id)}`;
  const slot = h('div', { class: 'slot' });
  const panel = h('div');
  const summary = h('div');
  const actions = h('div', { class: 'actions' });
  const attempts = h('div');
  fill(main,
    h('p', {}, h('a', { href: '/portal/subscriptions', onclick: ctx.link }, '← All subscriptions')),
    summary, actions, slot, panel,
    h('h2', {}, 'Recent attempts'), attempts);

  let sub;
  async function refresh() {
    const [fresh, stats] = await Promise.all([get(path), get(`${path}/failure-stats`)]);
    sub = fresh;
    document.title = `${sub.url} · EHRS admin portal`;
    fill(summary,
      h('div', { class: 'title' }, h('h1', { class: 'url' }, sub.url), subscriptionStatus(sub, stats)),
      sub.description && h('p', {}, sub.description),
      h('dl', { class: 'facts' },
        fact('Event types', types(sub.event_types)),
        fact('Payload', payloadWords[sub.payload] || sub.payload),
        fact('Heartbeat', sub.heartbeat_interval ? `every ${sub.heartbeat_interval} of silence` : h('span', { class: 'muted' }, 'off')),
        fact('Failures in a row', failures(stats.consecutive_failures)),
        fact('Last failure', time(stats.last_failure_at)),
        fact('Last success', time(stats.last_success_at)),
        fact('Waiting deliveries', String(stats.pending_deliveries)),
        sub.paused_reason && fact('Paused', h('span', {}, sub.paused_reason, ' · ', time(sub.paused_at))),
        fact('Created', time(sub.created_at)),
        fact('Id', h('code', {}, sub.id))));
    fill(actions,
      h('button', { type: 'button', onclick: sendTest }, 'Send test'),
      h('button', { type: 'button', class: 'secondary', onclick: toggle }, sub.enabled ? 'Disable' : 'Enable'),
      h('button', { type: 'button', class: 'secondary', onclick: edit }, 'Edit'),
      h('button', { type: 'button', class: 'secondary', onclick: rotate }, 'Rotate secret'),
      h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete'));
    await attemptsTable(attempts, path.replace(BASE, '/webhooks/logs'));
  }

  async function sendTest() {
    fill(panel);
    const sent = await attempt(slot, () => post(`${path}/test`));
    if (!sent) return;
    const a = sent.attempt;
    fill(panel, h('section', { class: 'panel', 'aria-label': 'Test delivery' },
      h('h2', {}, 'Test delivery'),
      a ? h('p', {}, 'The receiver answered ', httpStatus(a.status_code, a.error), ` in ${a.duration_ms} ms.`)
        : h('p', {}, 'Sent; the attempt is not recorded yet. It will appear under Recent attempts.'),
      a && a.error && errorBox({ message: a.error }),
      a && h('div', {}, h('span', { class: 'muted' }, 'Response body: '), fold(a.response_body))));
    await refresh().catch((error) => fill(slot, errorBox(error)));
  }

  async function toggle() {
    const enable = !sub.enabled;
    const done = await attempt(slot, () => put(`${path}/toggle`, { enabled: enable }),
      enable ? 'Enabled: held deliveries go out now, oldest first.' : 'Disabled: new events are not queued for it.');
    if (done) await refresh();
  }

  async function edit() {
    const form = await subscriptionForm('Save', async (input) => {
      await put(path, input);
      fill(panel);
      fill(slot, notice('Saved.'));
      await refresh();
    }, () => fill(panel), sub);
    fill(slot);
    fill(panel, form);
  }

  async function rotate() {
    if (!await confirm('Make a new signing secret? The current one keeps signing alongside it for a while (24 hours by default), so receivers can switch.', 'Rotate secret')) return;
    const rotated = await attempt(slot, () => post(`${path}/rotate-secret`));
    if (rotated) fill(panel, secretPanel('New signing secret', rotated.secret, () => fill(panel), rotated.feed_token));
  }

  async function remove() {
    if (!await confirm(`Delete the subscription to ${sub.url}? Its deliveries and attempts are deleted with it.`, 'Delete')) return;
    if (await attempt(slot, () => del(path))) ctx.navigate('/portal/subscriptions');
  }

  await refresh();
}

function fact(term, value) {
  return [h('dt', {}, term), h('dd', {}, value)];
}

/** One subscription's attempts, newest first, with "Older attempts" following the cursor. */
async function attemptsTable(target, path, cursor) {
  const page = await get(`${path}${query({ limit: 20, cursor })}`);
  if (page.items.length === 0 && !cursor) {
    return fill(target, empty('No attempts yet.', 'Choose “Send test”, or wait for the next event.'));
  }
  fill(target,
    attemptRows(page.items),
    page.next_cursor && h('button', {
      type: 'button', class: 'secondary', onclick: () => attemptsTable(target, path, page.next_cursor),
    }, 'Older attempts'),
    cursor && h('button', { type: 'button', class: 'secondary', onclick: () => attemptsTable(target, path) }, 'Newest attempts'));
}

export function attemptRows(items) {
  return table([
    { title: 'Time', cell: (a) => time(a.attempted_at) },
    { title: 'Status', cell: (a) => httpStatus(a.status_code, a.error) },
    { title: 'Duration', cell: (a) => `${a.duration_ms} ms` },
    { title: 'Error', cell: (a) => fold(a.error) },
    { title: 'Response body', cell: (a) => fold(a.response_body) },
    { title: 'Message', cell: (a) => h('code', {}, a.message_id) },
  ], items, 'Attempts');
}
