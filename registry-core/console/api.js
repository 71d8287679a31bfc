// The one door to the server: every call carries the token from login and the selected
// namespace where the API takes one; failures become Errors with the server's message.

const TOKEN = 'registry.console.token';
const USER = 'registry.console.user';
const NAMESPACE = 'registry.console.namespace';

export const session = {
  get token() { return localStorage.getItem(TOKEN); },
  get user() { return JSON.parse(localStorage.getItem(USER) || 'null'); },
  get namespace() { return localStorage.getItem(NAMESPACE) || ''; },
  set namespace(id) { localStorage.setItem(NAMESPACE, id || ''); },
  signIn(login) {
    localStorage.setItem(TOKEN, login.accessToken);
    localStorage.setItem(USER, JSON.stringify({ username: login.username, globalAdmin: !!login.globalAdmin }));
  },
  signOut() {
    localStorage.removeItem(TOKEN);
    localStorage.removeItem(USER);
  },
};

/** An answer that was not 2xx: `status` and the server's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
  }
}

/**
 * Calls `path`: parameters in the query for GET and DELETE, as a form body otherwise.
 * Answers the parsed JSON (or the text when it is not JSON).
 */
export async function call(method, path, params = {}, headers = {}) {
  const pairs = Object.entries(params).filter(([, v]) => v !== undefined && v !== null);
  const form = new URLSearchParams(pairs.map(([k, v]) => [k, String(v)]));
  const init = { method, headers: { ...headers } };
  if (session.token) init.headers.accessToken = session.token;
  let url = path;
  if (method === 'GET' || method === 'DELETE') {
    if (pairs.length) url += `?${form}`;
  } else {
    init.body = form;
  }
  const answer = await fetch(url, init);
  const text = await answer.text();
  let body = text;
  try { body = JSON.parse(text); } catch { /* plain text answer */ }
  if (!answer.ok) {
    const message = typeof body === 'object' && body ? (body.data || body.message) : text;
    if (answer.status === 403 && /token/i.test(String(message))) {
      session.signOut();
      location.hash = '#/login';
    }
    throw new ApiError(answer.status, String(message).trim());
  }
  return body;
}

export const get = (path, params) => call('GET', path, params);
export const post = (path, params, headers) => call('POST', path, params, headers);
export const put = (path, params) => call('PUT', path, params);
export const del = (path, params) => call('DELETE', path, params);
