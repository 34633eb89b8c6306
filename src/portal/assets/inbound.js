// Inbound: partner sources (create with the secret shown once, edit, activate/deactivate,
// rotate, delete) and the events they sent, with their job's status; retry a failed job.

import { del, get, post, put, query, seg } from './api.js';
import {
  attempt, confirm, empty, errorBox, field, fill, fold, h, notice, secretPanel, status, table, time,
} from './ui.js';

const SOURCES = '/webhooks/inbound-sources';
const EVENTS = '/webhooks/inbound-events';
const ACTIONS = ['lab.result.ready', 'pharmacy.stock.update'];
const PAGE = 25;

export async function render(main) {
  const slot = h('div', { class: 'slot' });
  const formSlot = h('div');
  const sources = h('div');
  const events = h('div');
  let known = [];

  const openForm = (source) => {
    fill(formSlot, sourceForm(source, async (input) => {
      if (source) {
        await put(`${SOURCES}/${seg(source.id)}`, input);
        fill(formSlot, notice('Saved.'));
      } else {
        const created = await post(SOURCES, input);
        fill(formSlot, secretPanel('Source created', created.secret, () => fill(formSlot)));
      }
      await loadSources();
    }, () => fill(formSlot)));
    formSlot.querySelector('input').focus();
  };

  fill(main,
    h('div', { class: 'title' }, h('h1', {}, 'Inbound'),
      h('button', { type: 'button', onclick: () => openForm() }, 'New source')),
    h('p', { class: 'muted' }, 'Partner systems (a lab, a pharmacy) that push signed events in, and what became of each event.'),
    slot, formSlot,
    h('h2', {}, 'Sources'), sources,
    h('h2', {}, 'Received events'), events);

  async function loadSources() {
    let page;
    try {
      page = await get(`${SOURCES}${query({ limit: 200 })}`);
    } catch (error) {
      return fill(sources, errorBox(error));
    }
    known = page.items;
    if (known.length === 0) {
      return fill(sources, empty('No sources yet.', 'Choose “New source” to let a partner system send events in.'));
    }
    fill(sources, table([
      { title: 'Name', cell: (s) => h('strong', {}, s.name) },
      { title: 'Allowed event types', cell: (s) => h('span', { class: 'types' }, s.allowed_event_types.join(', ')) },
      { title: 'Action mapping', cell: (s) => mappingText(s) },
      { title: 'Status', cell: (s) => status(s.is_active ? 'active' : 'inactive') },
      { title: 'Id', cell: (s) => h('code', {}, s.id) },
      { title: 'Actions', cell: (s) => h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => openForm(s) }, 'Edit'),
        h('button', { type: 'button', class: 'secondary', onclick: () => setActive(s, !s.is_active) }, s.is_active ? 'Deactivate' : 'Activate'),
        h('button', { type: 'button', class: 'secondary', onclick: () => rotate(s) }, 'Rotate secret'),
        h('button', { type: 'button', class: 'danger', onclick: () => remove(s) }, 'Delete')) },
    ], known, 'Inbound sources'));
  }

  async function setActive(source, active) {
    const body = { name: source.name, allowed_event_types: source.allowed_event_types, is_active: active };
    if (await attempt(slot, () => put(`${SOURCES}/${seg(source.id)}`, body),
      active ? `${source.name} is active.` : `${source.name} is inactive: its events are refused with 404.`)) await loadSources();
  }

  async function rotate(source) {
    if (!await confirm(`Make a new secret for ${source.name}? The current one stops working at once.`, 'Rotate secret')) return;
    const rotated = await attempt(slot, () => post(`${SOURCES}/${seg(source.id)}/rotate-secret`));
    if (rotated) fill(formSlot, secretPanel(`New secret for ${source.name}`, rotated.secret, () => fill(formSlot)));
  }

  async function remove(source) {
    if (!await confirm(`Delete the source ${source.name}? Its events stay listed below.`, 'Delete')) return;
    if (await attempt(slot, () => del(`${SOURCES}/${seg(source.id)}`), `${source.name} deleted.`)) await loadSources();
  }

  await loadSources();
  await eventLog(events, () => known);
}

function mappingText(source) {
  const entries = Object.entries(source.action_mapping);
  if (entries.length === 0) return h('span', { class: 'muted' }, 'Event types are action names');
  return h('ul', { class: 'plain' }, entries.map(([from, to]) => h('li', {}, h('code', {}, from), ' → ', h('code', {}, to))));
}

/** Create and edit: name, allowed event types, and an action for each type. */
function sourceForm(source, submit, cancel) {
  const name = h('input', { required: true, maxlength: '200', value: source ? source.name : '' });
  const allowed = h('input', {
    required: true, value: source ? source.allowed_event_types.join(', ') : ACTIONS.join(', '),
    placeholder: 'lab.result.ready, results.final',
  });
  const mapping = { ...(source ? source.action_mapping : {}) };
  const actions = h('div', { class: 'mapping' });
  const typesOf = () => allowed.value.split(/[\s,]+/).filter(Boolean);
  const drawMapping = () => fill(actions, typesOf().map((type) => {
    const choice = h('select', { onchange: () => { if (choice.value) mapping[type] = choice.value; else delete mapping[type]; } },
      h('option', { value: '' }, ACTIONS.includes(type) ? 'its own name' : 'no action (refused)'),
      ACTIONS.map((action) => h('option', { value: action, selected: mapping[type] === action }, action)));
    return field(`Action for ${type}`, choice);
  }));
  allowed.addEventListener('input', drawMapping);
  drawMapping();
  const slot = h('div', { class: 'slot' });
  const onsubmit = async (event) => {
    event.preventDefault();
    const types = typesOf();
    const action_mapping = Object.fromEntries(Object.entries(mapping).filter(([type]) => types.includes(type)));
    await attempt(slot, () => submit({ name: name.value.trim(), allowed_event_types: types, action_mapping }));
  };
  return h('form', { class: 'panel', onsubmit },
    h('h2', {}, source ? `Edit ${source.name}` : 'New source'),
    field('Name', name),
    field('Allowed event types', allowed, 'The event types this partner may send, separated by commas. Anything else is refused with 422.'),
    h('fieldset', {}, h('legend', {}, 'Action mapping'), actions),
    slot,
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, source ? 'Save' : 'Create'),
      h('button', { type: 'button', class: 'secondary', onclick: cancel }, 'Cancel')));
}

/** Received events, newest first, filtered by source and job status, paged by offset. */
async function eventLog(target, sources) {
  const source = h('select', {}, h('option', { value: '' }, 'Any source'),
    sources().map((s) => h('option', { value: s.id }, s.name)));
  const state = h('select', {}, h('option', { value: '' }, 'Any status'),
    ['queued', 'running', 'succeeded', 'failed'].map((s) => h('option', { value: s }, s)));
  const slot = h('div', { class: 'slot' });
  const list = h('div');
  let offset = 0;
  const filters = h('form', { class: 'panel filters', onsubmit: (event) => { event.preventDefault(); offset = 0; load(); } },
    field('Source', source), field('Job status', state),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Apply')));
  fill(target, filters, slot, list);

  async function load() {
    let page;
    try {
      page = await get(`${EVENTS}${query({ source_id: source.value, status: state.value, limit: PAGE, offset })}`);
    } catch (error) {
      return fill(list, errorBox(error));
    }
    if (page.items.length === 0) {
      return fill(list, empty('No events received.', offset > 0 ? 'This is past the last page.'
        : 'Give a partner its source id and secret; what it sends shows here.'));
    }
    fill(list,
      table([
        { title: 'Received', cell: (e) => time(e.received_at) },
        { title: 'Source', cell: (e) => e.source_name || h('span', { class: 'muted' }, 'deleted source') },
        { title: 'Event', cell: (e) => h('span', {}, h('code', {}, e.event_type), h('br'), h('span', { class: 'muted small' }, e.event_id)) },
        { title: 'Action', cell: (e) => h('code', {}, e.action) },
        { title: 'Job status', cell: (e) => status(e.status, e.status === 'failed' ? 'bad' : undefined) },
        { title: 'Attempts', cell: (e) => `${e.attempts} of ${e.max_attempts}` },
        { title: 'Last error', cell: (e) => fold(e.last_error) },
        { title: '', cell: (e) => e.status === 'failed' && h('button', { type: 'button', onclick: () => retry(e) }, 'Retry') },
      ], page.items, 'Received events'),
      h('div', { class: 'actions' },
        h('span', { class: 'muted' }, `${offset + 1}–${offset + page.items.length} of ${page.total}`),
        offset > 0 && h('button', { type: 'button', class: 'secondary', onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, 'Newer'),
        offset + page.items.length < page.total && h('button', { type: 'button', class: 'secondary', onclick: () => { offset += PAGE; load(); } }, 'Older')));
  }

  async function retry(event) {
    if (await attempt(slot, () => post(`${EVENTS}/${seg(event.id)}/retry`), `The job of ${event.event_id} is queued again.`)) {
      await load();
      setTimeout(load, 1500); // show the outcome once the job has run
    }
  }

  await load();
}
