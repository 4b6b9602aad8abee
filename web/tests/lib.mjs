// Helpers of podcap's browser tests: playwright-core driving Debian's chromium against a running
// `capture-api --standalone`. Plain ESM, no test framework: a script is a sequence of `step`s
// inside `main`, and exits non-zero on the first failure (with screenshots of every open page).
//
// Environment (set by tests/web_ui.rs; set them yourself to run a script by hand):
//   PODCAP_URL        base URL of the server, e.g. http://127.0.0.1:8080 (required)
//   PODCAP_TOKEN      the admin bearer token (data-dir/admin-token)
//   PODCAP_ARTIFACTS  where screenshots go (default: web/tests/artifacts)
//   PODCAP_CHROMIUM   the browser (default: /usr/bin/chromium)
//   PODCAP_TIMEOUT_MS the bound of every wait and action (default: 15000)
//   PODCAP_HEADED=1   show the browser window (needs a display)

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

export const BASE_URL = (process.env.PODCAP_URL ?? '').replace(/\/+$/, '');
export const TOKEN = process.env.PODCAP_TOKEN ?? '';
export const ARTIFACTS = process.env.PODCAP_ARTIFACTS || join(here, 'artifacts');
export const CHROMIUM = process.env.PODCAP_CHROMIUM || '/usr/bin/chromium';
export const TIMEOUT = Number(process.env.PODCAP_TIMEOUT_MS) || 15_000;

// Debian's chromium, headless, with nothing that reaches for the network on its own: this machine's
// network is closed, and Chromium's background connections are refused (many at a time) without
// these flags. Playwright gives it a fresh temporary profile (user-data dir) and removes it on close.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

const script = basename(process.argv[1] ?? 'script', '.mjs');
const started = performance.now();

// Logs a line with the script's name and the seconds since it started.
export function log(...parts) {
  const seconds = ((performance.now() - started) / 1000).toFixed(1).padStart(5);
  console.log(`[${script} ${seconds}s]`, ...parts);
}

// An absolute URL of the server under test: url('/'), url('/api/v1/captures').
export function url(path = '/') {
  assert.ok(BASE_URL, 'PODCAP_URL is not set: the base URL of a running capture-api, e.g. http://127.0.0.1:8080');
  return BASE_URL + (path.startsWith('/') ? path : `/${path}`);
}

// Starts the browser. Prefer `main`, which also closes it.
export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: process.env.PODCAP_HEADED !== '1',
    args: CHROMIUM_ARGS,
    timeout: 60_000,
  });
}

// Every page made by newPage and still open: `step` photographs them all when it fails.
const openPages = new Set();
// Uncaught exceptions of each page's scripts (see pageErrors).
const errorsOf = new WeakMap();
// The requests of each page not yet answered (for the failure report).
const pendingOf = new WeakMap();

// A page in a fresh browser context (its own cookies and sessionStorage, as a new browser would
// have) with a viewport of `width` x `height`. Console errors and uncaught exceptions of the page
// are logged; `pageErrors(page)` lists the exceptions. Close it with `closePage(page)`.
export async function newPage(browser, { width = 1280, height = 800, ...contextOptions } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, ...contextOptions });
  context.setDefaultTimeout(TIMEOUT);
  context.setDefaultNavigationTimeout(TIMEOUT);
  const page = await context.newPage();
  const errors = [];
  errorsOf.set(page, errors);
  openPages.add(page);
  page.on('close', () => openPages.delete(page));
  page.on('pageerror', (error) => {
    errors.push(error);
    log(`page error: ${error.stack ?? error}`);
  });
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') {
      const where = message.location()?.url;
      log(`console ${message.type()}: ${message.text()}${where ? ` (${where})` : ''}`);
    }
  });
  const pending = new Set();
  pendingOf.set(page, pending);
  page.on('request', (request) => pending.add(`${request.method()} ${request.url()}`));
  page.on('requestfinished', (request) => pending.delete(`${request.method()} ${request.url()}`));
  page.on('requestfailed', (request) => {
    pending.delete(`${request.method()} ${request.url()}`);
    log(`request failed: ${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
  });
  page.on('crash', () => log('the page crashed (renderer process gone)'));
  return page;
}

// Closes a page made by newPage together with its browser context.
export async function closePage(page) {
  openPages.delete(page);
  await page.context().close();
}

// The uncaught exceptions thrown by the page's scripts so far.
export function pageErrors(page) {
  return [...(errorsOf.get(page) ?? [])];
}

// Fails if the page's scripts threw any uncaught exception.
export function expectNoPageErrors(page) {
  const errors = pageErrors(page);
  assert.equal(errors.length, 0, `the page threw:\n${errors.map((e) => e.stack ?? String(e)).join('\n')}`);
}

function fileName(name) {
  const safe = name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'page';
  return safe.endsWith('.png') ? safe : `${safe}.png`;
}

// Saves a full-page PNG of `page` as ARTIFACTS/<name>.png and returns its path.
export async function screenshot(page, name, { fullPage = true } = {}) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, fileName(name));
  await page.screenshot({ path, fullPage, animations: 'disabled', timeout: TIMEOUT });
  log(`screenshot ${path}`);
  return path;
}

let failures = 0;

// Runs one named step of a script. On failure, saves a screenshot of every open page
// (failure-<step>[-n].png) and rethrows, so the script stops at the first failed step.
export async function step(name, fn) {
  const begun = performance.now();
  log(`> ${name}`);
  try {
    const result = await fn();
    log(`ok ${name} (${Math.round(performance.now() - begun)} ms)`);
    return result;
  } catch (error) {
    log(`FAILED ${name} (${Math.round(performance.now() - begun)} ms)`);
    failures += 1;
    let n = 0;
    const states = [];
    for (const page of openPages) {
      const suffix = openPages.size > 1 ? `-${++n}` : '';
      states.push(`page${suffix}: ${await pageState(page)}`);
      try {
        await screenshot(page, `failure-${name}${suffix}`);
      } catch (shotError) {
        log(`  (no screenshot: ${shotError.message})`);
      }
    }
    // What the pages showed goes into the error itself, so it is printed with the FAILED line that
    // ends the script's output (CI excerpts often start there).
    if (error instanceof Error && states.length) error.message += `\n${states.join('\n')}`;
    throw error;
  }
}

// The body of a script: starts the browser, runs `body(browser)`, closes the browser, and sets
// the exit code (0 when every step passed, 1 otherwise, with the error printed).
export async function main(body) {
  let browser;
  try {
    log(`PODCAP_URL=${BASE_URL || '(unset)'} artifacts=${ARTIFACTS}`);
    browser = await launch();
    log(`browser ${browser.version()} (${CHROMIUM})`);
    await body(browser);
    log('passed');
  } catch (error) {
    process.exitCode = 1;
    console.error(`[${script}] FAILED: ${error?.stack ?? error}`);
  } finally {
    await browser?.close().catch((error) => console.error(`[${script}] closing the browser: ${error}`));
  }
  if (failures > 0) process.exitCode = 1;
}

// One line on where a page is and what it shows: its URL, the document's readyState, the
// requests still unanswered, and the start of <main>'s text.
async function pageState(page) {
  const pending = pendingOf.get(page) ?? new Set();
  const shown = await page
    .evaluate(() => ({
      readyState: document.readyState,
      main: (document.getElementById('main')?.innerText ?? '(no #main)').slice(0, 300),
    }))
    .then(({ readyState, main }) => `readyState ${readyState}, #main shows ${JSON.stringify(main)}`)
    .catch((error) => `(page not readable: ${error.message.split('\n')[0]})`);
  const waiting = pending.size ? `; unanswered: ${[...pending].join(', ')}` : '';
  return `at ${page.url()}, ${shown}${waiting}`;
}

function describe(locator) {
  return locator.toString();
}

// Waits (at most `timeout` ms) until some element of `locator` is visible and shows `expected`:
// a substring (case-sensitive) or a RegExp. Fails with what the elements show instead.
export async function expectText(locator, expected, { timeout = TIMEOUT } = {}) {
  const pattern =
    expected instanceof RegExp ? expected : new RegExp(expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  try {
    await locator.filter({ hasText: pattern }).first().waitFor({ state: 'visible', timeout });
  } catch (error) {
    const shown = await locator.allInnerTexts().catch(() => []);
    throw new assert.AssertionError({
      message:
        `expected ${describe(locator)} to show ${expected instanceof RegExp ? expected : JSON.stringify(expected)} within ${timeout} ms; ` +
        (shown.length ? `it shows ${JSON.stringify(shown)}` : 'no such element') +
        `\n(${error.message.split('\n')[0]})`,
    });
  }
}

// Waits (at most `timeout` ms) until the first element of `locator` is visible.
export async function expectVisible(locator, { timeout = TIMEOUT } = {}) {
  try {
    await locator.first().waitFor({ state: 'visible', timeout });
  } catch (error) {
    throw new assert.AssertionError({
      message: `expected ${describe(locator)} to be visible within ${timeout} ms\n(${error.message.split('\n')[0]})`,
    });
  }
}

// Waits (at most `timeout` ms) until no element of `locator` is visible (absent or hidden).
export async function expectHidden(locator, { timeout = TIMEOUT } = {}) {
  try {
    await locator.first().waitFor({ state: 'hidden', timeout });
  } catch (error) {
    throw new assert.AssertionError({
      message: `expected ${describe(locator)} to be hidden within ${timeout} ms\n(${error.message.split('\n')[0]})`,
    });
  }
}

// Calls the REST API directly (for a test's setup and checks, not the UI): `path` under the
// server, a JSON `body` if given, the admin token unless `token` is given ('' = no header).
// Returns { status, headers, body } with body parsed when it is JSON.
export async function api(path, { method = 'GET', body, token = TOKEN, headers = {} } = {}) {
  const request = { method, headers: { ...headers }, signal: AbortSignal.timeout(TIMEOUT) };
  if (token) request.headers.authorization = `Bearer ${token}`;
  if (body !== undefined) {
    request.headers['content-type'] = 'application/json';
    request.body = JSON.stringify(body);
  }
  const response = await fetch(url(path), request);
  const type = response.headers.get('content-type') ?? '';
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    body: type.includes('json') && text ? JSON.parse(text) : text,
  };
}
