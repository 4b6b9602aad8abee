// The captures list: every capture the token may read, filtered by namespace and phase (kept
// in the URL so a filtered view can be bookmarked), refreshing itself every 2 s while any
// capture is scheduled or running and every 15 s otherwise.

import { get } from '../api.js';
import {
  RUNNING_PHASES, errorBox, formatAge, formatBytes, formatCount, h, phaseBadge, replace, timeElement, tableHead, captureHref
} from '../ui.js';

const PHASES = ['Scheduled', 'Capturing', 'Completed', 'Stopped', 'Failed'];
const FAST_REFRESH_MS = 2000;
const SLOW_REFRESH_MS = 15000;

/**
 * Totals and the number of distinct pods of a capture's status: the server's totals where it
 * gives them (they cover every target, also those a large capture leaves out of `targets`),
 * else sums over `targets`.
 */
export function summarize(status = {}) {
  const targets = status.targets || [];
  const pods = new Set(targets.map((t) => `${t.namespace}/${t.pod}`));
  const sum = (key) => status[key] ?? targets.reduce((total, t) => total + (Number(t[key]) || 0), 0);
  return { pods: status.pods ?? pods.size, packets: sum('packets'), bytes: sum('bytes'), drops: sum('drops') };
}

export default async function captureList({ main, query, navigate, isCurrent }) {
  document.title = 'Captures · podcap';
  const namespace = query.get('namespace') || '';
  const phase = query.get('phase') || '';

  const namespaceSelect = h('select', { id: 'filter-namespace', name: 'namespace' },
    h('option', { value: '' }, 'All namespaces'));
  const phaseSelect = h('select', { id: 'filter-phase', name: 'phase' },
    h('option', { value: '' }, 'Any phase'),
    PHASES.map((value) => h('option', { value, selected: value === phase }, value)));
  const applyFilters = () => {
    const next = new URLSearchParams();
    if (namespaceSelect.value) next.set('namespace', namespaceSelect.value);
    if (phaseSelect.value) next.set('phase', phaseSelect.value);
    navigate(`#/captures${next.toString() ? `?${next}` : ''}`);
  };
  namespaceSelect.addEventListener('change', applyFilters);
  phaseSelect.addEventListener('change', applyFilters);

  const updated = h('p', { class: 'muted small', 'aria-live': 'off' });
  const body = h('div', { id: 'capture-table' }, h('p', { class: 'muted' }, 'Loading captures…'));
  replace(main,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Captures'),
      h('a', { class: 'button button-primary', href: '#/new' }, 'New capture')),
    h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter captures', onsubmit: (e) => e.preventDefault() },
      h('div', { class: 'field' }, h('label', { for: 'filter-namespace' }, 'Namespace'), namespaceSelect),
      h('div', { class: 'field' }, h('label', { for: 'filter-phase' }, 'Phase'), phaseSelect)),
    body,
    updated);

  get('/namespaces').then((answer) => {
    const names = new Set((answer.items || []).map((item) => item.name));
    if (namespace) names.add(namespace);
    for (const name of [...names].sort()) {
      namespaceSelect.append(h('option', { value: name, selected: name === namespace }, name));
    }
  }).catch(() => {});

  let timer = null;
  const controller = new AbortController();
  const refresh = async () => {
    let items;
    try {
      const path = namespace ? `/namespaces/${encodeURIComponent(namespace)}/captures` : '/captures';
      const answer = await get(path, { query: { phase, limit: namespace ? 1000 : undefined }, signal: controller.signal });
      items = answer.items || [];
    } catch (error) {
      if (error.name === 'AbortError' || !isCurrent()) return;
      replace(body, errorBox(error, 'Could not list captures'));
      timer = setTimeout(refresh, SLOW_REFRESH_MS);
      return;
    }
    if (!isCurrent()) return;
    if (namespace) items.reverse();
    replace(body, table(items));
    const running = items.some((item) => RUNNING_PHASES.has(item.status?.phase));
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}${running ? ' · refreshing every 2 s while captures run' : ''}`;
    timer = setTimeout(refresh, running ? FAST_REFRESH_MS : SLOW_REFRESH_MS);
  };
  await refresh();
  return () => {
    clearTimeout(timer);
    controller.abort();
  };
}

function table(items) {
  if (items.length === 0) {
    return h('div', { class: 'empty' },
      h('p', {}, 'No captures match.'),
      h('a', { href: '#/new' }, 'Start a capture'));
  }
  const now = Date.now();
  const header = ['Name', 'Namespace', 'Phase', 'Pods', 'Packets', 'Bytes', 'Drops', 'Started', 'Age'];
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'data-table responsive' },
      h('caption', { class: 'visually-hidden' }, `${items.length} captures`),
      tableHead(header),
      h('tbody', {}, items.map((item) => {
        const { metadata, status = {} } = item;
        const totals = summarize(status);
        return h('tr', { dataset: { name: metadata.name, namespace: metadata.namespace } },
          h('th', { scope: 'row', 'data-label': 'Name' }, h('a', { href: captureHref(metadata.namespace, metadata.name) }, metadata.name)),
          h('td', { 'data-label': 'Namespace' }, metadata.namespace),
          h('td', { 'data-label': 'Phase' }, phaseBadge(status.phase)),
          h('td', { 'data-label': 'Pods', class: 'num' }, formatCount(totals.pods)),
          h('td', { 'data-label': 'Packets', class: 'num' }, formatCount(totals.packets)),
          h('td', { 'data-label': 'Bytes', class: 'num' }, formatBytes(totals.bytes)),
          h('td', { 'data-label': 'Drops', class: totals.drops > 0 ? 'num warn' : 'num' }, formatCount(totals.drops)),
          h('td', { 'data-label': 'Started' }, timeElement(status.startedAt)),
          h('td', { 'data-label': 'Age' }, formatAge(metadata.creationTimestamp, now)));
      }))));
}
