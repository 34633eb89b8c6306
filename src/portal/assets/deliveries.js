// Deliveries: the message log (filters, cursor paging), one message with its state per
// subscription and every attempt, retry, and recovering a subscription's failures.

import { allSubscriptions, eventTypes, get, post, query, seg } from './api.js';
import { attemptRows } from './subscriptions.js';
import {
  attempt, empty, errorBox, fill, field, fold, h, httpStatus, localInput, localToIso, notice, status, table, time,
} from './ui.js';

const STATUSES = ['pending', 'failed', 'delivered', 'exhausted'];

export async function render(main) {
  const [catalogue, subs] = await Promise.all([eventTypes(), allSubscriptions()]);
  const urls = new Map(subs.map((s) => [s.id, s.url]));
  const label = (id) => urls.get(id) || `${id} (deleted)`;

  const eventType = select('Any event type', catalogue.map((t) => [t, t]));
  const state = select('Any status', STATUSES.map((s) => [s, s]));
  const subscription = select('Any subscription', subs.map((s) => [s.id, s.url]));
  const since = h('input', { type: 'datetime-local' });
  const until = h('input', { type: 'datetime-local' });
  const slot = h('div', { class: 'slot' });
  const log = h('div');
  const page = h('div');
  let cursors = [undefined]; // cursors[i] opens page i; newest first

  const filters = h('form', {
    class: 'panel filters',
    onsubmit: (event) => { event.preventDefault(); cursors = [undefined]; load(); },
  },
  field('Event type', eventType), field('Status', state), field('Subscription', subscription),
  field('From', since), field('To', until),
  h('div', { class: 'actions' },
    h('button', { type: 'submit' }, 'Apply'),
    h('button', { type: 'reset', class: 'secondary', onclick: () => setTimeout(() => { cursors = [undefined]; load(); }) }, 'Clear')));

  fill(page,
    h('h1', {}, 'Deliveries'),
    h('p', { class: 'muted' }, 'Every event sent out, newest first, with where it stands for each subscription.'),
    filters, slot, log, recoverPanel(subs));
  fill(main, page);

  async function load() {
    const filter = {
      event_type: eventType.value, status: state.value, subscription_id: subscription.value,
      since: localToIso(since.value), until: localToIso(until.value), limit: 25,
      cursor: cursors[cursors.length - 1],
    };
    const result = await attempt(slot, () => get(`/webhooks/logs${query(filter)}`));
    if (!result) return fill(log);
    if (result.items.length === 0) {
      return fill(log, empty('No messages match.', cursors.length > 1
        ? 'This is past the last page: go back to newer messages.'
        : 'Widen the filters, or send a test from a subscription’s page.'));
    }
    fill(log,
      table([
        { title: 'Time', cell: (m) => time(m.created_at) },
        { title: 'Event type', cell: (m) => h('code', {}, m.event_type) },
        { title: 'Deliveries', cell: (m) => deliverySummary(m, label) },
        { title: 'Message', cell: (m) => h('button', { type: 'button', class: 'link', onclick: () => open(m) }, m.id) },
      ], result.items, 'Messages'),
      h('div', { class: 'actions' },
        cursors.length > 1 && h('button', { type: 'button', class: 'secondary', onclick: () => { cursors.pop(); load(); } }, 'Newer'),
        result.next_cursor && h('button', {
          type: 'button', class: 'secondary', onclick: () => { cursors.push(result.next_cursor); load(); },
        }, 'Older')));
  }

  function open(message) {
    const view = h('div');
    fill(main, view);
    messageDetail(view, message, label, () => { fill(main, page); load(); });
  }

  await load();
}

function select(any, options) {
  return h('select', {}, h('option', { value: '' }, any), options.map(([value, text]) => h('option', { value }, text)));
}

function deliverySummary(message, label) {
  if (message.deliveries.length === 0) return h('span', { class: 'muted' }, 'No subscription wanted it');
  return h('ul', { class: 'plain' }, message.deliveries.map((d) => h('li', {},
    status(d.status), ' ', h('span', { class: 'url small' }, label(d.subscription_id)))));
}

/** One message: its state for each subscription and every attempt made for it. */
async function messageDetail(target, message, label, back) {
  const slot = h('div', { class: 'slot' });
  const undelivered = message.deliveries.some((d) => d.status !== 'delivered');
  const retry = async (subscriptionId) => {
    const body = subscriptionId ? { subscription_id: subscriptionId } : undefined;
    const done = await attempt(slot, () => post(`/webhooks/logs/${seg(message.id)}/retry`, body),
      (r) => `Queued again for ${r.subscription_ids.length} subscription${r.subscription_ids.length === 1 ? '' : 's'}.`);
    if (done) setTimeout(refresh, 1000); // the attempt shows once the engine has made it
  };
  const sections = h('div');
  fill(target,
    h('p', {}, h('button', { type: 'button', class: 'link', onclick: back }, '← Back to the log')),
    h('div', { class: 'title' }, h('h1', {}, message.event_type),
      h('div', { class: 'actions' },
        undelivered && message.deliveries.length > 1 && h('button', { type: 'button', onclick: () => retry() }, 'Retry all undelivered'),
        h('button', { type: 'button', class: 'secondary', onclick: () => refresh() }, 'Refresh'))),
    h('dl', { class: 'facts' },
      fact('Message', h('code', {}, message.id)), fact('Event', h('code', {}, message.event_id)),
      fact('Created', time(message.created_at))),
    slot, sections);

  async function refresh() {
    // The log has no single-message route: find this message again in the log, by time.
    const created = new Date(message.created_at).getTime();
    const span = { since: new Date(created).toISOString(), until: new Date(created + 1).toISOString(), limit: 200 };
    try {
      const found = await get(`/webhooks/logs${query(span)}`);
      message = found.items.find((m) => m.id === message.id) || message;
    } catch (error) {
      fill(slot, errorBox(error));
    }
    await draw();
  }

  async function draw() {
    if (message.deliveries.length === 0) {
      return fill(sections, empty('No subscription wanted this event.', 'Subscriptions created later do not receive older events.'));
    }
    const parts = await Promise.all(message.deliveries.map(async (d) => {
      const attempts = await attemptsFor(message, d.subscription_id).catch(() => null);
      return h('section', { class: 'panel' },
        h('div', { class: 'title' },
          h('h2', { class: 'url' }, label(d.subscription_id)),
          h('button', { type: 'button', onclick: () => retry(d.subscription_id) }, 'Retry')),
        h('dl', { class: 'facts' },
          fact('Status', status(d.status)),
          fact('Attempts', d.attempts === null ? '—' : String(d.attempts)),
          fact('Last answer', httpStatus(d.last_status_code, d.last_error)),
          d.last_error && fact('Last error', fold(d.last_error)),
          d.next_attempt_at && fact('Next attempt', time(d.next_attempt_at)),
          d.sequence !== null && fact('Sequence', String(d.sequence))),
        attempts === null ? notice('Cannot load the attempts.', 'error')
          : attempts.length === 0 ? h('p', { class: 'muted' }, 'No attempt yet.')
            : attemptRows(attempts));
    }));
    fill(sections, parts);
  }

  await draw();
}

/** This message's attempts for one subscription: its attempt log, newest first, read back
 * to the message's creation (a few pages at most). */
async function attemptsFor(message, subscriptionId) {
  const found = [];
  let cursor;
  for (let pages = 0; pages < 5; pages += 1) {
    const page = await get(`/webhooks/logs/${seg(subscriptionId)}${query({ limit: 200, cursor })}`);
    found.push(...page.items.filter((a) => a.message_id === message.id));
    const last = page.items[page.items.length - 1];
    if (!page.next_cursor || !last || last.attempted_at < message.created_at) break;
    cursor = page.next_cursor;
  }
  return found;
}

function fact(term, value) {
  return [h('dt', {}, term), h('dd', {}, value)];
}

/** Queue again a subscription's failed and exhausted deliveries since a chosen time. */
function recoverPanel(subs) {
  const subscription = h('select', {}, subs.map((s) => h('option', { value: s.id }, s.url)));
  const since = h('input', { type: 'datetime-local', required: true, value: localInput(24) });
  const slot = h('div', { class: 'slot' });
  const onsubmit = async (event) => {
    event.preventDefault();
    await attempt(slot, () => post(`/webhooks/subscriptions/${seg(subscription.value)}/recover`, { since: localToIso(since.value) }),
      (r) => (r.requeued === null ? 'Recovery started.' : `${r.requeued} deliver${r.requeued === 1 ? 'y' : 'ies'} queued again.`));
  };
  if (subs.length === 0) return null;
  return h('form', { class: 'panel', onsubmit },
    h('h2', {}, 'Recover failures'),
    h('p', { class: 'muted' }, 'Send again every failed or exhausted delivery of one subscription since a time, for example after its outage is fixed.'),
    field('Recover subscription', subscription), field('Failed since', since),
    slot,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Recover')));
}
