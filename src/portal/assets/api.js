// The portal's only way to the server: the JSON API under /api/v1 with the bearer token.
// The token lives in sessionStorage (gone when the tab closes) and is dropped on sign-out
// and on any 401, after which the sign-in form comes back.

const TOKEN_KEY = 'ehrs.portal.token';

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  save: (token) => sessionStorage.setItem(TOKEN_KEY, token),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

let signedOut = () => {};

/** Called with a message when the server refuses the token (expired, revoked). */
export function onSignedOut(callback) {
  signedOut = callback;
}

/** An answer that was not 2xx, carrying the API's {"error": {code, message, details}}. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

/** A fresh key for one write: 128 random bits in hex (`crypto.randomUUID` needs HTTPS). */
function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends a request. A write carries an `Idempotency-Key`, and when its answer is lost on
 * the way (flaky Wi-Fi) or the server says the first try is still running, it is sent
 * again with the same key: the server writes it once and gives the first answer back.
 */
export async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const token = session.token();
  if (token) headers.authorization = `Bearer ${token}`;
  if (method !== 'GET') headers['idempotency-key'] = newIdempotencyKey();
  const tries = method === 'GET' ? 1 : 3;
  let response;
  for (let attempt = 1; ; attempt += 1) {
    try {
      response = await fetch(`/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      if (attempt < tries) {
        await pause(1000 * attempt);
        continue;
      }
      throw new ApiError(0, 'unreachable', 'Cannot reach the server. Check the connection and try again.');
    }
    if (response.status === 409 && attempt < tries && response.headers.get('retry-after')) {
      const clone = response.clone();
      const code = await clone.json().then((j) => j && j.error && j.error.code, () => null);
      if (code === 'request_in_progress') {
        await pause(1000 * Number(response.headers.get('retry-after')));
        continue;
      }
    }
    break;
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (response.status === 401 && token) {
    session.clear();
    signedOut('Your session has ended. Sign in again.');
  }
  if (!response.ok) {
    const error = json && json.error;
    throw new ApiError(
      response.status,
      error ? error.code : `http_${response.status}`,
      error ? error.message : `The server answered ${response.status} ${response.statusText}.`,
      error ? error.details : {},
    );
  }
  return json === null ? {} : json; // 204: an empty success, still truthy for callers
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/** Path segment for an id (ids are plain, but never trust a string in a URL). */
export const seg = (id) => encodeURIComponent(id);

let catalogue;

/** The outbound event types, from the `webhooks` object of this server's OpenAPI document. */
export async function eventTypes() {
  if (!catalogue) {
    catalogue = fetch('/openapi.json')
      .then((response) => (response.ok ? response.json() : Promise.reject(response)))
      .then((doc) => Object.keys(doc.webhooks || {}).sort())
      .catch(() => {
        catalogue = undefined;
        throw new ApiError(0, 'catalogue', 'Cannot load the event catalogue from /openapi.json.');
      });
  }
  return catalogue;
}

/** Every subscription (the list is paged by offset; portals have tens, not thousands). */
export async function allSubscriptions() {
  const items = [];
  for (let offset = 0; ; offset += 200) {
    const page = await get(`/webhooks/subscriptions${query({ limit: 200, offset })}`);
    items.push(...page.items);
    if (items.length >= page.total || page.items.length === 0) return items;
  }
}
