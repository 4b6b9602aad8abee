// One capture: what it targets, its per-pod targets with live counters and kernel drops, a
// packets-per-second chart, the first 100 packets decoded by the server, downloads (merged
// pcapng or pcap, each file), the live-stream command, stop and delete, and share links.
// While the capture is scheduled or running the page refreshes itself.

import {
  ApiError, capturePath, del, download, get, post,
} from '../api.js';
import { packetRateChart } from '../chart.js';
import {
  RUNNING_PHASES, announce, confirmDialog, copyText, errorBox, formatBytes, formatCount, formatDuration,
  h, phaseBadge, replace, timeElement, tableHead
} from '../ui.js';
import { summarize } from './capture-list.js';

const REFRESH_MS = 2000;
const CHART_REFRESH_MS = 4000;
const PREVIEW_ROWS = 100;
// A capture across many pods carries only its first 100 targets inline (status.targetsOmitted
// says how many more): the Pods table then pages through GET .../targets, this many at a time.
const TARGET_PAGE = 100;

/** "TCP 80, 443 · UDP 53 with 10.96.0.10", or "every packet". */
export function describeFilters(filters) {
  if (!filters || filters.length === 0) return 'every packet';
  return filters.map((rule) => {
    const ports = (rule.ports || []).map((port) => String(port).replace(':', '-')).join(', ');
    const peers = (rule.peers || []).length ? `with ${rule.peers.join(', ')}` : '';
    const protocol = rule.protocol || (ports ? 'any port-bearing protocol' : 'any protocol');
    return [protocol, ports, peers].filter(Boolean).join(' ');
  }).join(' · ');
}

/** The packets a capture spec keeps: its rules, and its pcap-filter expression if any. */
export function describePackets(spec = {}) {
  const rules = describeFilters(spec.filters);
  if (!spec.bpfFilter) return rules;
  return [rules, ' and matching ', h('code', { class: 'bpf-filter' }, spec.bpfFilter)];
}

/** "app=web, tier in (a, b)", or "every pod in the namespace". */
export function describeSelector(selector = {}) {
  const parts = Object.entries(selector.matchLabels || {}).map(([key, value]) => `${key}=${value}`);
  for (const expression of selector.matchExpressions || []) {
    const values = (expression.values || []).join(', ');
    parts.push({
      In: `${expression.key} in (${values})`,
      NotIn: `${expression.key} notin (${values})`,
      Exists: expression.key,
      DoesNotExist: `!${expression.key}`,
    }[expression.operator] || `${expression.key} ${expression.operator} (${values})`);
  }
  return parts.length ? parts.join(', ') : 'every pod in the namespace';
}

export default async function captureDetail({ main, params, navigate, isCurrent }) {
  const [namespace, name] = params;
  const path = capturePath(namespace, name);
  document.title = `${name} · podcap`;

  const header = h('div', { class: 'page-head' });
  const overview = h('section', { 'aria-labelledby': 'overview-title', class: 'card' });
  const chartSection = h('div', { id: 'chart' }, h('p', { class: 'muted' }, 'Loading the chart…'));
  const targetsSection = h('div', { id: 'targets' });
  const previewSection = h('div', { id: 'preview' }, h('p', { class: 'muted' }, 'Loading packets…'));
  const downloadsSection = h('div', { id: 'downloads' });
  const sharesSection = h('div', { id: 'shares' });
  const liveSection = h('div', { id: 'live' });
  const pageStatus = h('div', { class: 'form-status', id: 'page-status' });
  replace(main,
    h('p', { class: 'breadcrumbs' }, h('a', { href: '#/captures' }, 'Captures'), ' / ', namespace),
    header,
    pageStatus,
    overview,
    h('section', { class: 'card', 'aria-labelledby': 'targets-title' }, h('h2', { id: 'targets-title' }, 'Pods'), targetsSection),
    h('section', { class: 'card', 'aria-labelledby': 'chart-title' }, h('h2', { id: 'chart-title' }, 'Packets per second'), chartSection),
    h('section', { class: 'card', 'aria-labelledby': 'downloads-title' }, h('h2', { id: 'downloads-title' }, 'Downloads'), downloadsSection),
    h('section', { class: 'card', 'aria-labelledby': 'live-title' }, h('h2', { id: 'live-title' }, 'Watch live'), liveSection),
    h('section', { class: 'card', 'aria-labelledby': 'shares-title' }, h('h2', { id: 'shares-title' }, 'Share links'), sharesSection),
    h('section', { class: 'card', 'aria-labelledby': 'preview-title' }, h('h2', { id: 'preview-title' }, `First ${PREVIEW_ROWS} packets`), previewSection));

  let capture;
  try {
    capture = await get(path);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      replace(main, h('h1', {}, name), errorBox(error), h('p', {}, h('a', { href: '#/captures' }, 'Back to the captures')));
      return undefined;
    }
    throw error;
  }

  const timers = new Set();
  const later = (fn, ms) => {
    const timer = setTimeout(() => { timers.delete(timer); fn(); }, ms);
    timers.add(timer);
  };
  let previewDone = false;
  let lastPhase = null;
  let downloadsShownFor = null;
  // Paging of the Pods table, when the capture omits targets: the continue token of every page
  // up to the one shown (null for the first), and the page shown.
  const pageTokens = [null];
  let targetPage = null;

  const loadTargetPage = async () => {
    const page = await get(`${path}/targets`, { query: { limit: TARGET_PAGE, continue: pageTokens[pageTokens.length - 1] } });
    targetPage = { items: page.items || [], next: page.metadata?.continue || null };
  };

  const act = async (label, fn) => {
    replace(pageStatus);
    try {
      await fn();
    } catch (error) {
      replace(pageStatus, errorBox(error, label));
    }
  };

  const renderHeader = () => {
    const { status = {} } = capture;
    const running = RUNNING_PHASES.has(status.phase);
    replace(header,
      h('div', {}, h('h1', {}, name, ' ', phaseBadge(status.phase)), h('p', { class: 'muted' }, `Namespace ${namespace}`)),
      h('div', { class: 'actions' },
        running ? h('button', {
          type: 'button',
          class: 'button',
          onclick: () => act('Could not stop the capture', async () => {
            if (!await confirmDialog({ title: `Stop ${name}?`, body: 'Capturing ends now on every pod. The files captured so far are kept.', confirm: 'Stop capture' })) return;
            capture = await post(`${path}/stop`);
            announce(`Capture ${name} stopped`);
            update();
          }),
        }, 'Stop capture') : null,
        h('button', {
          type: 'button',
          class: 'button button-danger',
          onclick: () => act('Could not delete the capture', async () => {
            if (!await confirmDialog({ title: `Delete ${name}?`, body: 'The capture and all its files are deleted on every node, and its share links stop working. This cannot be undone.', confirm: 'Delete capture', danger: true })) return;
            await del(path);
            announce(`Capture ${name} deleted`);
            navigate('#/captures');
          }),
        }, 'Delete capture')));
  };

  const renderOverview = () => {
    const { spec = {}, status = {}, metadata = {} } = capture;
    const totals = summarize(status);
    const started = status.startedAt ? Date.parse(status.startedAt) : null;
    const ended = status.finishedAt ? Date.parse(status.finishedAt) : Date.now();
    const facts = [
      ['Pods', describeSelector(spec.podSelector)],
      ['Packets', describePackets(spec)],
      ['Captured', spec.capturePoint === 'podNetns'
        ? "inside each pod's network namespace (podNetns)"
        : "on each pod's host-side veth (hostVeth)"],
      ['Window', [timeElement(spec.startTime), ' → ', timeElement(spec.endTime)]],
      ['Started', timeElement(status.startedAt)],
      ['Finished', timeElement(status.finishedAt)],
      ['Ran for', started ? formatDuration((ended - started) / 1000) : '—'],
      ['Format', `${spec.format || 'pcapng'}, snap length ${formatCount(spec.snapLength || 262144)}`],
      ['Created', timeElement(metadata.creationTimestamp)],
    ];
    if (spec.maxBytes) facts.push(['Stops at', formatBytes(spec.maxBytes)]);
    if (spec.maxPackets) facts.push(['Stops after', `${formatCount(spec.maxPackets)} packets`]);
    replace(overview,
      h('h2', { id: 'overview-title', class: 'visually-hidden' }, 'Overview'),
      h('dl', { class: 'stats' },
        stat('Packets', formatCount(totals.packets), 'stat-packets'),
        stat('Bytes', formatBytes(totals.bytes), 'stat-bytes'),
        stat('Kernel drops', formatCount(totals.drops), 'stat-drops', totals.drops > 0),
        stat('Pods', formatCount(totals.pods), 'stat-pods')),
      status.message ? h('p', { class: 'message' }, status.message) : null,
      h('dl', { class: 'facts' }, facts.map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)])));
  };

  const showTargetPage = (move) => act('Could not load the pods', async () => {
    if (move > 0 && targetPage?.next) pageTokens.push(targetPage.next);
    if (move < 0 && pageTokens.length > 1) pageTokens.pop();
    await loadTargetPage();
    renderTargets();
  });

  const targetPager = () => {
    const total = (capture.status?.targets || []).length + capture.status.targetsOmitted;
    const first = (pageTokens.length - 1) * TARGET_PAGE + 1;
    const shown = targetPage ? targetPage.items.length : TARGET_PAGE;
    return h('div', { class: 'actions left', id: 'targets-pager' },
      h('span', { class: 'muted' }, `Pod interfaces ${formatCount(first)}–${formatCount(first + shown - 1)} of ${formatCount(total)}`),
      h('button', { type: 'button', class: 'button', disabled: pageTokens.length === 1, onclick: () => showTargetPage(-1) }, 'Previous'),
      h('button', { type: 'button', class: 'button', disabled: !(targetPage ? targetPage.next : true), onclick: () => showTargetPage(1) }, 'Next'));
  };

  const renderTargets = () => {
    const paged = (capture.status?.targetsOmitted || 0) > 0;
    if (paged && !targetPage) showTargetPage(0);
    const targets = (paged && targetPage ? targetPage.items : capture.status?.targets) || [];
    if (targets.length === 0) {
      replace(targetsSection, h('p', { class: 'muted' }, RUNNING_PHASES.has(capture.status?.phase)
        ? 'No pod matches yet; pods that start while the capture runs join it.'
        : 'No pod was captured.'));
      return;
    }
    replace(targetsSection, h('div', { class: 'table-wrap' }, h('table', { class: 'data-table responsive' },
      h('caption', { class: 'visually-hidden' }, 'Captured pod interfaces'),
      tableHead(['Pod', 'Node', 'Interface', 'State', 'Packets', 'Bytes', 'Drops', 'Files']),
      h('tbody', {}, targets.map((target) => h('tr', {},
        h('th', { scope: 'row', 'data-label': 'Pod' }, target.pod, target.error ? h('p', { class: 'field-error' }, target.error) : null),
        h('td', { 'data-label': 'Node' }, target.node),
        h('td', { 'data-label': 'Interface' }, h('code', {}, target.interface)),
        h('td', { 'data-label': 'State' }, target.state),
        h('td', { 'data-label': 'Packets', class: 'num' }, formatCount(target.packets)),
        h('td', { 'data-label': 'Bytes', class: 'num' }, formatBytes(target.bytes)),
        h('td', { 'data-label': 'Drops', class: target.drops > 0 ? 'num warn' : 'num' }, formatCount(target.drops)),
        h('td', { 'data-label': 'Files', class: 'num' }, formatCount((target.files || []).length))))))),
      paged ? targetPager() : null);
  };

  const renderDownloads = () => {
    const targets = capture.status?.targets || [];
    const files = targets.flatMap((target) => (target.files || []).map((file) => ({ ...file, pod: target.pod, node: target.node })));
    const key = JSON.stringify(files.map((file) => [file.id, file.size]));
    if (key === downloadsShownFor) return;
    downloadsShownFor = key;
    const downloadButton = (label, options, extra = {}) => h('button', {
      type: 'button',
      class: 'button',
      ...extra,
      onclick: () => act('Could not start the download', async () => {
        await download(namespace, name, options);
        announce('Download started');
      }),
    }, label);
    replace(downloadsSection,
      h('p', {}, 'Every pod\'s files merged into one time-ordered capture; each pod is an interface named after it.'),
      h('div', { class: 'actions left' },
        downloadButton('Download merged pcapng', { format: 'pcapng' }, { class: 'button button-primary', disabled: files.length === 0 }),
        downloadButton('Download merged pcap', { format: 'pcap' }, { disabled: files.length === 0 })),
      files.length === 0 ? h('p', { class: 'muted' }, 'No files yet.') : h('div', { class: 'table-wrap' }, h('table', { class: 'data-table responsive' },
        h('caption', {}, `${files.length} file${files.length === 1 ? '' : 's'}`),
        tableHead(['File', 'Pod', 'Size', 'Packets', 'First packet', '']),
        h('tbody', {}, files.map((file) => h('tr', {},
          h('th', { scope: 'row', 'data-label': 'File' }, h('code', {}, file.name)),
          h('td', { 'data-label': 'Pod' }, file.pod),
          h('td', { 'data-label': 'Size', class: 'num' }, formatBytes(file.size)),
          h('td', { 'data-label': 'Packets', class: 'num' }, formatCount(file.packets)),
          h('td', { 'data-label': 'First packet' }, timeElement(file.firstPacketAt)),
          h('td', {}, downloadButton('Download', { file: file.id }, { class: 'button button-small', 'aria-label': `Download ${file.name}` }))))))));
  };

  const renderLive = () => {
    const running = capture.status?.phase === 'Capturing';
    const command = `curl -sN -H "Authorization: Bearer $PODCAP_TOKEN" '${location.origin}/api/v1${path}/live' | wireshark -k -i -`;
    const input = h('input', { type: 'text', readonly: true, value: command, id: 'live-command', class: 'code-input', 'aria-label': 'Live stream command' });
    replace(liveSection,
      h('p', {}, running
        ? 'Paste into a terminal to watch the packets in Wireshark as they arrive (set PODCAP_TOKEN to your token first):'
        : 'While the capture runs, this streams its packets into Wireshark as they arrive (set PODCAP_TOKEN to your token first):'),
      h('div', { class: 'copy-row' }, input, h('button', { type: 'button', class: 'button', onclick: () => copyText(command, input) }, 'Copy command')));
  };

  const renderShares = async () => {
    let shares;
    try {
      shares = (await get(`${path}/shares`)).items || [];
    } catch (error) {
      replace(sharesSection, errorBox(error, error.status === 403 ? 'Your token may not share this capture' : 'Could not list share links'));
      return;
    }
    const expiry = h('select', { id: 'share-expiry' },
      h('option', { value: '1h' }, '1 hour'), h('option', { value: '24h', selected: true }, '1 day'), h('option', { value: '7d' }, '7 days'));
    const created = h('div', { id: 'share-created', 'aria-live': 'polite' });
    replace(sharesSection,
      h('p', {}, 'Anyone with a link can download the merged capture without a token until it expires or is revoked.'),
      h('form', {
        class: 'inline-form',
        onsubmit: (event) => {
          event.preventDefault();
          act('Could not create a share link', async () => {
            const share = await post(`${path}/shares`, { expiresIn: expiry.value });
            await renderShares();
            const url = h('input', { type: 'text', readonly: true, value: share.url, id: 'share-url', class: 'code-input', 'aria-label': 'New share link' });
            replace(document.getElementById('share-created'),
              h('p', {}, 'New link (shown once; podcap keeps only its hash):'),
              h('div', { class: 'copy-row' }, url, h('button', { type: 'button', class: 'button', onclick: () => copyText(share.url, url) }, 'Copy link')));
            url.focus();
            url.select();
            announce('Share link created');
          });
        },
      },
      h('label', { for: 'share-expiry' }, 'Expires after'), expiry,
      h('button', { type: 'submit', class: 'button button-primary' }, 'Create share link')),
      created,
      shares.length === 0 ? h('p', { class: 'muted' }, 'No share links.') : h('div', { class: 'table-wrap' }, h('table', { class: 'data-table responsive', id: 'share-table' },
        h('caption', { class: 'visually-hidden' }, 'Share links'),
        tableHead(['Link', 'State', 'Created', 'Expires', 'Downloads', '']),
        h('tbody', {}, shares.map((share) => h('tr', { dataset: { share: share.id } },
          h('th', { scope: 'row', 'data-label': 'Link' }, h('code', {}, share.id)),
          h('td', { 'data-label': 'State' }, share.state),
          h('td', { 'data-label': 'Created' }, timeElement(share.createdAt)),
          h('td', { 'data-label': 'Expires' }, timeElement(share.expiresAt)),
          h('td', { 'data-label': 'Downloads', class: 'num' }, formatCount(share.downloads)),
          h('td', {}, share.state === 'Active' ? h('button', {
            type: 'button',
            class: 'button button-small button-danger',
            'aria-label': `Revoke link ${share.id}`,
            onclick: () => act('Could not revoke the link', async () => {
              if (!await confirmDialog({ title: 'Revoke this link?', body: 'Downloads through it stop at once.', confirm: 'Revoke', danger: true })) return;
              await del(`${path}/shares/${encodeURIComponent(share.id)}`);
              announce('Share link revoked');
              await renderShares();
            }),
          }, 'Revoke') : null)))))));
  };

  const refreshChart = async () => {
    try {
      const timeline = await get(`${path}/timeline`);
      if (!isCurrent()) return;
      replace(chartSection, packetRateChart(timeline, chartSection.clientWidth));
    } catch (error) {
      if (isCurrent()) replace(chartSection, errorBox(error, 'Could not draw the chart'));
    }
    if (isCurrent() && RUNNING_PHASES.has(capture.status?.phase)) later(refreshChart, CHART_REFRESH_MS);
  };

  const refreshPreview = async () => {
    if (previewDone) return;
    let rows;
    try {
      rows = (await get(`${path}/packets`, { query: { limit: PREVIEW_ROWS } })).items || [];
    } catch (error) {
      if (isCurrent()) replace(previewSection, errorBox(error, 'Could not read the packets'));
      return;
    }
    if (!isCurrent()) return;
    previewDone = rows.length >= PREVIEW_ROWS || !RUNNING_PHASES.has(capture.status?.phase);
    replace(previewSection, rows.length === 0 ? h('p', { class: 'muted' }, 'No packets yet.') : h('div', { class: 'table-wrap' }, h('table', { class: 'data-table packets', id: 'packet-table' },
      h('caption', { class: 'visually-hidden' }, `The first ${rows.length} packets, decoded`),
      tableHead(['No.', 'Time', 'Pod', 'Source', 'Destination', 'Protocol', 'Length', 'Info']),
      h('tbody', {}, rows.map((row) => h('tr', {},
        h('td', { class: 'num' }, row.number),
        h('td', { class: 'num', title: row.time }, row.relativeSeconds.toFixed(6)),
        h('td', {}, row.target.split(' on ')[0].split('/').pop(), row.direction ? h('span', { class: 'muted' }, row.direction === 'in' ? ' ←' : ' →') : null),
        h('td', {}, row.source),
        h('td', {}, row.destination),
        h('td', {}, row.protocol),
        h('td', { class: 'num' }, row.length),
        h('td', { class: 'info' }, row.info)))))));
    if (!previewDone) later(refreshPreview, CHART_REFRESH_MS);
  };

  const update = () => {
    const phase = capture.status?.phase;
    renderHeader();
    renderOverview();
    renderTargets();
    renderDownloads();
    if (phase !== lastPhase) {
      renderLive();
      if (lastPhase !== null && !RUNNING_PHASES.has(phase)) {
        // It just finished: the chart and preview get their final state.
        previewDone = false;
        refreshChart();
        refreshPreview();
        announce(`Capture ${name} is ${phase}`);
      }
      lastPhase = phase;
    }
  };

  const poll = async () => {
    try {
      capture = await get(path);
      if ((capture.status?.targetsOmitted || 0) > 0) await loadTargetPage();
    } catch (error) {
      if (!isCurrent()) return;
      if (error instanceof ApiError && error.status === 404) {
        replace(pageStatus, errorBox({ message: 'This capture was deleted.' }));
        return;
      }
      replace(pageStatus, errorBox(error, 'Could not refresh'));
    }
    if (!isCurrent()) return;
    update();
    if (RUNNING_PHASES.has(capture.status?.phase)) later(poll, REFRESH_MS);
  };

  update();
  refreshChart();
  refreshPreview();
  renderShares();
  if (RUNNING_PHASES.has(capture.status?.phase)) later(poll, REFRESH_MS);
  return () => timers.forEach(clearTimeout);
}

function stat(label, value, id, warn = false) {
  return h('div', { class: warn ? 'stat warn' : 'stat' }, h('dt', {}, label), h('dd', { id }, value));
}
