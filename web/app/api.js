// The console's one way to the API: the bearer token (kept in this tab's sessionStorage, gone
// when the tab closes), JSON in and out, and RFC 7807 problems turned into ApiError so a view
// can put each `invalidParams` reason next to the field it names.

const TOKEN_KEY = 'podcap.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer that was not 2xx, with the problem document when the server sent one. */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem?.detail || problem?.title || `the server answered ${status}`;
    super(detail);
    this.status = status;
    this.problem = problem || {};
  }

  /** `invalidParams` as [{name, reason}]. */
  get fields() {
    return Array.isArray(this.problem.invalidParams) ? this.problem.invalidParams : [];
  }
}

/** Listeners told when the token is refused, so the app can send the user to sign in. */
const unauthorizedListeners = new Set();
export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

/**
 * Calls `method path` under /api/v1 with an optional JSON body; resolves to the parsed JSON
 * (or null for 204), rejects with ApiError.
 */
export async function call(method, path, { body, query, signal } = {}) {
  const url = new URL(`/api/v1${path}`, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, value);
  }
  const headers = { Accept: 'application/json, application/problem+json' };
  const current = token();
  if (current) headers.Authorization = `Bearer ${current}`;
  const init = { method, headers, signal, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, { detail: `could not reach the podcap server (${error.message}); check that it is running` });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = response.ok ? text : { detail: text.slice(0, 300) };
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, parsed);
    if (response.status === 401) unauthorizedListeners.forEach((listener) => listener(error));
    throw error;
  }
  return parsed;
}

export const get = (path, options) => call('GET', path, options);
export const post = (path, body, options) => call('POST', path, { ...options, body });
export const put = (path, body, options) => call('PUT', path, { ...options, body });
export const del = (path, options) => call('DELETE', path, options);

/** `/namespaces/{ns}/captures/{name}` with both parts escaped. */
export function capturePath(namespace, name) {
  return `/namespaces/${encodeURIComponent(namespace)}/captures/${encodeURIComponent(name)}`;
}

export function schedulePath(namespace, name) {
  return `/namespaces/${encodeURIComponent(namespace)}/schedules/${encodeURIComponent(name)}`;
}

/**
 * Starts a browser download of a capture (merged in `format`, or one file by id) through a
 * one-time ticket, so the browser streams it to disk whatever its size.
 */
export async function download(namespace, name, { format, file } = {}) {
  const ticket = await post(`${capturePath(namespace, name)}/downloads`, file ? { file } : { format: format || 'pcapng' });
  const link = document.createElement('a');
  link.href = ticket.url;
  link.rel = 'noopener';
  link.download = '';
  document.body.append(link);
  link.click();
  link.remove();
}
