// The console's entry point: a hash router (#/captures, #/captures/{ns}/{name}, #/new,
// #/schedules, #/schedules/{ns}/{name}, #/signin) that mounts one view at a time into <main>,
// sends signed-out users to sign in, and stops the previous view's timers on every change.

import { onUnauthorized, setToken, token } from './api.js';
import { errorBox, h, replace } from './ui.js';
import captureDetail from './views/capture-detail.js';
import captureList from './views/capture-list.js';
import newCapture from './views/new-capture.js';
import scheduleDetail from './views/schedule-detail.js';
import scheduleList from './views/schedule-list.js';
import signIn from './views/sign-in.js';

const routes = [
  { pattern: /^\/signin$/, view: signIn, section: null, public: true },
  { pattern: /^\/captures$/, view: captureList, section: 'captures' },
  { pattern: /^\/captures\/([^/]+)\/([^/]+)$/, view: captureDetail, section: 'captures' },
  { pattern: /^\/new$/, view: newCapture, section: 'new' },
  { pattern: /^\/schedules$/, view: scheduleList, section: 'schedules' },
  { pattern: /^\/schedules\/([^/]+)\/([^/]+)$/, view: scheduleDetail, section: 'schedules' },
];

let cleanup = null;
let generation = 0;

/** Goes to `hash` (e.g. '#/captures'); `replaceEntry` keeps it out of the history. */
export function navigate(hash, { replaceEntry = false } = {}) {
  if (replaceEntry) {
    history.replaceState(null, '', hash);
    render();
  } else if (location.hash === hash) {
    render();
  } else {
    location.hash = hash;
  }
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/captures';
  const [path, search = ''] = raw.split('?');
  return { path, query: new URLSearchParams(search) };
}

async function render() {
  const main = document.getElementById('main');
  const { path, query } = parseHash();
  if (typeof cleanup === 'function') cleanup();
  cleanup = null;
  const current = ++generation;
  const route = routes.find((candidate) => candidate.pattern.test(path));
  document.getElementById('sign-out').hidden = !token();
  if (!route) {
    replace(main, errorBox({ message: `There is no page ${path}.` }));
    return;
  }
  if (!route.public && !token()) {
    navigate(`#/signin?next=${encodeURIComponent(`#${path}${query.toString() ? `?${query}` : ''}`)}`, { replaceEntry: true });
    return;
  }
  document.querySelectorAll('#main-nav a').forEach((link) => {
    if (link.dataset.section === route.section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  });
  const params = path.match(route.pattern).slice(1).map(decodeURIComponent);
  replace(main);
  try {
    const result = await route.view({ main, params, query, navigate, isCurrent: () => current === generation });
    if (current === generation) cleanup = result || null;
    else if (typeof result === 'function') result();
  } catch (error) {
    if (current === generation) replace(main, ...failurePage(error));
  }
  if (current === generation) {
    const heading = main.querySelector('h1');
    // Moves focus to the new page's heading so keyboard and screen-reader users start there.
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: true });
    }
  }
}

/** What a page that could not load shows: a heading saying what happened, and the API's reason. */
function failurePage(error) {
  const headings = { 403: 'Not allowed', 404: 'Not found' };
  const help = error.status === 403
    ? 'Sign in with a token that may read this namespace, or go back to the captures.'
    : 'Go back to the captures.';
  return [
    h('h1', {}, headings[error.status] || 'Something went wrong'),
    errorBox(error),
    h('p', {}, help, ' ', h('a', { href: '#/captures' }, 'Captures')),
  ];
}

onUnauthorized((error) => {
  setToken(null);
  const { path } = parseHash();
  if (path !== '/signin') {
    navigate(`#/signin?reason=${encodeURIComponent(error.message)}&next=${encodeURIComponent(location.hash)}`, { replaceEntry: true });
  }
});

document.getElementById('sign-out').addEventListener('click', () => {
  setToken(null);
  navigate('#/signin');
});

window.addEventListener('hashchange', render);
render();
