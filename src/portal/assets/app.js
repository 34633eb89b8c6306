// The portal's frame: sign-in, the administrators-only page, navigation, and which view
// the path shows (/portal/subscriptions, /portal/deliveries, /portal/inbound, /portal/audit,
// /portal/audit/access).

import { ApiError, get, onSignedOut, post, session } from './api.js';
import { errorBox, field, fill, h, notice } from './ui.js';
import * as subscriptions from './subscriptions.js';
import * as deliveries from './deliveries.js';
import * as inbound from './inbound.js';
import * as audit from './audit.js';

const VIEWS = [
  ['subscriptions', 'Subscriptions', subscriptions],
  ['deliveries', 'Deliveries', deliveries],
  ['inbound', 'Inbound', inbound],
  ['audit', 'Audit', audit],
];

const root = document.getElementById('app');
let user = null;

/** Goes to a portal path without reloading the page. */
export function navigate(path) {
  history.pushState(null, '', path);
  show();
}

function signIn(message) {
  user = null;
  const username = h('input', { name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const result = h('div', { class: 'slot' }, message && notice(message, 'warn'));
  const submit = async (event) => {
    event.preventDefault();
    fill(result);
    try {
      const answer = await post('/auth/login', { username: username.value, password: password.value });
      session.save(answer.access_token);
      start();
    } catch (error) {
      fill(result, errorBox(error));
    }
  };
  document.title = 'Sign in · EHRS admin portal';
  fill(root, h('main', { class: 'signin' },
    h('form', { class: 'panel', onsubmit: submit },
      h('h1', {}, 'EHRS admin portal'),
      h('p', { class: 'muted' }, 'Webhook subscriptions, deliveries and inbound partners.'),
      result,
      field('Username', username),
      field('Password', password),
      h('button', { type: 'submit' }, 'Sign in'))));
  username.focus();
}

function signOut() {
  session.clear();
  history.replaceState(null, '', '/portal');
  signIn('You are signed out.');
}

function header() {
  const current = viewName();
  return h('header', { class: 'top' },
    h('a', { class: 'brand', href: '/portal/subscriptions', onclick: link }, 'EHRS admin'),
    h('nav', { 'aria-label': 'Portal' },
      VIEWS.map(([name, title]) => h('a', {
        href: `/portal/${name}`, onclick: link, 'aria-current': name === current ? 'page' : undefined,
      }, title))),
    h('div', { class: 'who' },
      user && h('span', { class: 'muted' }, user.username),
      h('button', { type: 'button', class: 'secondary', onclick: signOut }, 'Sign out')));
}

/** Same-page navigation for links with an href under /portal. */
export function link(event) {
  if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(event.currentTarget.getAttribute('href'));
}

function viewName() {
  const parts = location.pathname.split('/').filter(Boolean);
  return parts[1] || 'subscriptions';
}

function adminsOnly() {
  document.title = 'Administrators only · EHRS admin portal';
  fill(root, h('main', { class: 'signin' },
    h('section', { class: 'panel' },
      h('h1', {}, 'Administrators only'),
      h('p', {}, `You are signed in as ${user.username} (${user.role}). This portal manages webhooks, which only administrators may do.`),
      h('p', {}, 'Ask an administrator for access, or sign in with an administrator account.'),
      h('button', { type: 'button', onclick: signOut }, 'Sign out'))));
}

/** Renders the view named by the path. */
async function show() {
  if (!user) return;
  const name = viewName();
  const view = VIEWS.find(([key]) => key === name);
  const main = h('main', { id: 'main', tabindex: '-1' });
  fill(root, header(), main);
  if (!view) {
    document.title = 'Not found · EHRS admin portal';
    fill(main, h('h1', {}, 'Page not found'), h('p', {}, 'Choose a page from the navigation above.'));
    return;
  }
  document.title = `${view[1]} · EHRS admin portal`;
  const rest = location.pathname.split('/').filter(Boolean).slice(2);
  try {
    await view[2].render(main, { rest, navigate, link });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    main.append(errorBox(error));
  }
}

async function start() {
  if (!session.token()) return signIn();
  try {
    user = await get('/auth/me');
  } catch (error) {
    if (error.status === 401) return; // onSignedOut has shown the form
    fill(root, h('main', { class: 'signin' }, errorBox(error)));
    return;
  }
  if (user.role !== 'admin') return adminsOnly();
  if (viewName() === 'subscriptions' && location.pathname.split('/').filter(Boolean).length < 2) {
    history.replaceState(null, '', '/portal/subscriptions');
  }
  show();
}

onSignedOut((message) => signIn(message));
window.addEventListener('popstate', show);
start();
