// The new capture form: namespace, pod selector with a live preview of the pods it matches,
// filter rows (protocol, ports and peers) and a pcap-filter expression, when to capture (now, at a time, or on a cron schedule with its next five runs
// computed by the server before saving) and limits. The server does all validation; its
// `invalidParams` land next to the fields they name.

import { ApiError, get, post } from '../api.js';
import {
  announce, clearFieldErrors, debounce, errorBox, field, h, replace, setFieldError, captureHref, scheduleHref
} from '../ui.js';

const PROTOCOLS = ['TCP', 'UDP', 'SCTP', 'UDPLite', 'ICMP', 'ICMPv6'];
const PORTLESS = new Set(['ICMP', 'ICMPv6']);
const SIZE_UNITS = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3, t: 1e12, tb: 1e12, tib: 1024 ** 4 };

/** "100 MiB" → 104857600; "" → undefined; a bad size → throws with a message. */
export function parseSize(text) {
  const trimmed = text.trim();
  if (!trimmed) return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(trimmed);
  const factor = match && SIZE_UNITS[match[2].toLowerCase()];
  if (!match || !factor) throw new Error(`"${trimmed}" is not a size: write e.g. 500 MiB, 2 GB or 1048576`);
  return Math.round(Number(match[1]) * factor);
}

/** "10.96.0.10, 10.0.0.0/8 fd00::/8" → ["10.96.0.10", "10.0.0.0/8", "fd00::/8"]; the server checks each. */
export function parsePeers(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

/** "80, 443 8000-8100" → [80, 443, "8000:8100"]; tokens that are not ports go as typed so the server names them. */
export function parsePorts(text) {
  return text.split(/[\s,]+/).filter(Boolean).map((token) => {
    if (/^\d+$/.test(token)) return Number(token);
    const range = /^(\d+)\s*[-:]\s*(\d+)$/.exec(token);
    return range ? `${range[1]}:${range[2]}` : token;
  });
}

export default async function newCapture({ main, query, navigate }) {
  document.title = 'New capture · podcap';
  const namespaceInput = h('input', { type: 'text', value: query.get('namespace') || 'default', list: 'namespace-options', autocomplete: 'off', required: true, spellcheck: 'false' });
  const namespaceOptions = h('datalist', { id: 'namespace-options' });
  const nameInput = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'generated when empty' });
  const selectorInput = h('input', { type: 'text', value: query.get('selector') || '', autocomplete: 'off', spellcheck: 'false', placeholder: 'app=web,tier in (frontend,api)' });
  const preview = h('div', { id: 'selector-preview', class: 'preview', 'aria-live': 'polite' });

  get('/namespaces').then((answer) => {
    for (const item of answer.items || []) namespaceOptions.append(h('option', { value: item.name }));
  }).catch(() => {});

  // Filters editor: one row per rule.
  const filterRows = h('div', { class: 'filter-rows' });
  let nextRow = 0;
  const addFilter = (protocol = 'TCP', ports = '', peers = '') => {
    const index = nextRow++;
    const protocolSelect = h('select', { id: `f-filter-${index}-protocol`, 'aria-label': `Rule ${index + 1} protocol` },
      h('option', { value: '' }, 'Any protocol'),
      PROTOCOLS.map((p) => h('option', { value: p, selected: p === protocol }, p)));
    const portsInput = h('input', { type: 'text', id: `f-filter-${index}-ports`, value: ports, autocomplete: 'off', placeholder: '53, 443, 8000-8100', 'aria-label': `Rule ${index + 1} ports` });
    const peersInput = h('input', { type: 'text', id: `f-filter-${index}-peers`, value: peers, autocomplete: 'off', spellcheck: 'false', placeholder: 'any address; or 10.96.0.10, 10.0.0.0/8, fd00::/8', 'aria-label': `Rule ${index + 1} peers` });
    const syncPorts = () => {
      const portless = PORTLESS.has(protocolSelect.value);
      portsInput.disabled = portless;
      portsInput.placeholder = portless ? 'no ports for ICMP' : 'any port; or 53, 443, 8000-8100';
      if (portless) portsInput.value = '';
    };
    protocolSelect.addEventListener('change', syncPorts);
    syncPorts();
    const row = h('div', { class: 'filter-row', dataset: { index } },
      protocolSelect,
      portsInput,
      peersInput,
      h('button', { type: 'button', class: 'button button-small', 'aria-label': `Remove rule ${index + 1}`, onclick: () => { row.remove(); announce('Filter rule removed'); } }, 'Remove'),
      h('p', { class: 'field-error', id: `f-filter-${index}-protocol-error`, hidden: true }),
      h('p', { class: 'field-error', id: `f-filter-${index}-ports-error`, hidden: true }),
      h('p', { class: 'field-error', id: `f-filter-${index}-peers-error`, hidden: true }));
    portsInput.setAttribute('aria-describedby', `f-filter-${index}-ports-error`);
    peersInput.setAttribute('aria-describedby', `f-filter-${index}-peers-error`);
    protocolSelect.setAttribute('aria-describedby', `f-filter-${index}-protocol-error`);
    filterRows.append(row);
    return row;
  };

  // A pcap-filter expression, ANDed with the rules; libpcap's own message comes back at the field.
  const bpfInput = h('input', { type: 'text', value: query.get('bpf') || '', maxlength: 1024, autocomplete: 'off', spellcheck: 'false', placeholder: 'tcp[tcpflags] & tcp-syn != 0', class: 'code-input' });

  // When.
  const whenRadio = (value, label, checked = false) => h('label', { class: 'radio' },
    h('input', { type: 'radio', name: 'when', value, checked }), ` ${label}`);
  const durationInput = h('input', { type: 'text', value: '1m', autocomplete: 'off', placeholder: '90s, 10m, 1h' });
  const startInput = h('input', { type: 'datetime-local', step: 1 });
  const cronInput = h('input', { type: 'text', value: '0 2 * * *', autocomplete: 'off', spellcheck: 'false' });
  const zoneInput = h('input', { type: 'text', value: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC', autocomplete: 'off', spellcheck: 'false' });
  const concurrencySelect = h('select', {},
    h('option', { value: 'Forbid' }, 'Forbid: skip a run while the last one captures'),
    h('option', { value: 'Allow' }, 'Allow: runs may overlap'),
    h('option', { value: 'Replace' }, 'Replace: stop the running capture first'));
  const nextRuns = h('div', { id: 'next-runs', class: 'preview', 'aria-live': 'polite' });
  const startField = field({ id: 'f-start', label: 'Start at (your local time)', control: startInput });
  const scheduleFields = h('div', { class: 'grid' },
    field({ id: 'f-cron', label: 'Cron schedule', control: cronInput, hint: 'Five fields as in a Kubernetes CronJob (minute hour day month weekday), e.g. 0 2 * * * for 02:00 daily; six with seconds.' }),
    field({ id: 'f-timezone', label: 'Time zone', control: zoneInput, hint: 'An IANA zone such as Europe/Berlin or UTC.' }),
    field({ id: 'f-concurrency', label: 'Overlapping runs', control: concurrencySelect }),
    h('div', { class: 'field field-wide' }, h('span', { class: 'label' }, 'Next five runs'), nextRuns));

  // Limits.
  const snapInput = h('input', { type: 'number', min: 1, max: 262144, value: 262144, inputmode: 'numeric' });
  const maxBytesInput = h('input', { type: 'text', autocomplete: 'off', placeholder: 'no limit; e.g. 500 MiB' });
  const maxPacketsInput = h('input', { type: 'number', min: 1, inputmode: 'numeric', placeholder: 'no limit' });
  const formatSelect = h('select', {}, h('option', { value: 'pcapng' }, 'pcapng (pod names, drops, directions)'), h('option', { value: 'pcap' }, 'pcap (classic)'));
  const capturePointSelect = h('select', {},
    h('option', { value: 'hostVeth' }, "Host side: the pod's veth on the node (default)"),
    h('option', { value: 'podNetns' }, "Inside the pod: its eth0, in its network namespace"));

  const formStatus = h('div', { class: 'form-status' });
  const submit = h('button', { type: 'submit', class: 'button button-primary' }, 'Start capture');
  const form = h('form', { class: 'card form', novalidate: true, 'aria-labelledby': 'new-title' },
    h('h1', { id: 'new-title' }, 'New capture'),
    h('fieldset', {},
      h('legend', {}, 'Which pods'),
      h('div', { class: 'grid' },
        field({ id: 'f-namespace', label: 'Namespace', control: namespaceInput }),
        field({ id: 'f-name', label: 'Name (optional)', control: nameInput, hint: 'Lowercase letters, digits and -.' }),
        field({ id: 'f-selector', label: 'Pod selector', control: selectorInput, hint: 'Label syntax as in kubectl -l; empty selects every pod in the namespace.', wide: true }),
        h('div', { class: 'field field-wide' }, h('span', { class: 'label' }, 'Pods it matches now'), preview)),
      namespaceOptions),
    h('fieldset', {},
      h('legend', {}, 'Which packets'),
      h('p', { class: 'hint' }, 'Rules are OR\'ed; inside a rule protocol AND ports AND peers (addresses or CIDRs at either end). No rules captures everything.'),
      filterRows,
      h('button', { type: 'button', class: 'button button-small', onclick: () => { const row = addFilter('TCP', ''); row.querySelector('select').focus(); } }, 'Add filter rule'),
      h('div', { class: 'grid filter-expression' },
        field({ id: 'f-bpf', label: 'pcap-filter expression (optional)', control: bpfInput, wide: true, hint: 'As tcpdump takes it, e.g. tcp[tcpflags] & tcp-syn != 0 or net 10.96.0.0/12; ANDed with the rules above. Compiled by libpcap on the server, at most 1024 characters on one line.' }),
        field({ id: 'f-capture-point', label: 'Capture point', control: capturePointSelect, wide: true, hint: 'Inside the pod also sees what eBPF datapaths (Cilium, Calico eBPF) deliver straight to the pod past the host side; in a cluster the node agent needs the netns-fallback overlay for it. Either way, what the pod sends is "out".' }))),
    h('fieldset', { class: 'when' },
      h('legend', {}, 'When'),
      h('div', { class: 'radios', role: 'radiogroup', 'aria-label': 'When to capture' },
        whenRadio('now', 'Now', true), whenRadio('at', 'At a time'), whenRadio('schedule', 'On a schedule')),
      h('div', { class: 'grid' },
        field({ id: 'f-duration', label: 'For how long', control: durationInput, hint: 'e.g. 90s, 10m, 1h; each scheduled run lasts this long.' }),
        startField),
      scheduleFields),
    h('fieldset', {},
      h('legend', {}, 'Limits'),
      h('div', { class: 'grid' },
        field({ id: 'f-snaplen', label: 'Snap length (bytes per packet)', control: snapInput }),
        field({ id: 'f-maxbytes', label: 'Stop after this much data', control: maxBytesInput }),
        field({ id: 'f-maxpackets', label: 'Stop after this many packets', control: maxPacketsInput }),
        field({ id: 'f-format', label: 'File format', control: formatSelect }))),
    formStatus,
    h('div', { class: 'actions' }, h('a', { href: '#/captures', class: 'button' }, 'Cancel'), submit));

  const when = () => form.querySelector('input[name="when"]:checked').value;
  const syncWhen = () => {
    const mode = when();
    startField.hidden = mode !== 'at';
    scheduleFields.hidden = mode !== 'schedule';
    submit.textContent = mode === 'schedule' ? 'Create schedule' : 'Start capture';
    form.querySelector('#new-title').textContent = mode === 'schedule' ? 'New schedule' : 'New capture';
    document.title = `${mode === 'schedule' ? 'New schedule' : 'New capture'} · podcap`;
    if (mode === 'schedule') refreshRuns();
  };

  // Live selector preview, from the server's own selector parser.
  let previewRequest = null;
  const refreshPreview = debounce(async () => {
    const namespace = namespaceInput.value.trim();
    if (!namespace) {
      replace(preview, h('span', { class: 'muted' }, 'Enter a namespace.'));
      return;
    }
    previewRequest?.abort();
    previewRequest = new AbortController();
    try {
      const pods = await get(`/namespaces/${encodeURIComponent(namespace)}/pods`, { query: { selector: selectorInput.value.trim() }, signal: previewRequest.signal });
      selectorInput.removeAttribute('aria-invalid');
      document.getElementById('f-selector-error').hidden = true;
      replace(preview, pods.length === 0
        ? h('span', { class: 'muted' }, `No pods in ${namespace} match now; pods that start later while the capture runs are captured too.`)
        : [h('span', {}, `${pods.length} pod${pods.length === 1 ? '' : 's'}: `),
          h('ul', { class: 'pod-list' }, pods.map((pod) => h('li', {}, h('code', {}, pod.name), h('span', { class: 'muted' }, ` on ${pod.node || 'an unscheduled node'}${pod.interface ? ` (${pod.interface})` : ''}`))))]);
    } catch (error) {
      if (error.name === 'AbortError') return;
      const reason = error instanceof ApiError && error.fields.length ? error.fields[0].reason : error.message;
      replace(preview);
      setFieldError(selectorInput.id, reason);
    }
  }, 250);
  selectorInput.addEventListener('input', refreshPreview);
  namespaceInput.addEventListener('input', refreshPreview);

  // Next runs of the schedule, computed by the server (dry run) so they match what it will do.
  let runsRequest = null;
  const refreshRuns = debounce(async () => {
    runsRequest?.abort();
    runsRequest = new AbortController();
    const namespace = namespaceInput.value.trim() || 'default';
    for (const id of ['f-cron', 'f-timezone']) {
      document.getElementById(id)?.removeAttribute('aria-invalid');
      const slot = document.getElementById(`${id}-error`);
      if (slot) slot.hidden = true;
    }
    try {
      const answer = await post(`/namespaces/${encodeURIComponent(namespace)}/schedules`, {
        spec: { schedule: cronInput.value.trim(), timeZone: zoneInput.value.trim() || undefined, template: { duration: '1m' } },
      }, { query: { dryRun: 'All' }, signal: runsRequest.signal });
      const times = answer.status?.nextScheduleTimes || [];
      replace(nextRuns, h('ol', { class: 'run-list' }, times.map((time) => h('li', {},
        h('time', { datetime: time }, new Date(time).toLocaleString(undefined, { timeZone: zoneInput.value.trim() || undefined, dateStyle: 'medium', timeStyle: 'medium' })),
        h('span', { class: 'muted' }, ` (${zoneInput.value.trim() || 'UTC'})`)))));
    } catch (error) {
      if (error.name === 'AbortError') return;
      replace(nextRuns, h('span', { class: 'muted' }, 'Fix the schedule to see its next runs.'));
      showErrors(error, { quiet: true });
    }
  }, 300);
  cronInput.addEventListener('input', refreshRuns);
  zoneInput.addEventListener('input', refreshRuns);
  form.querySelectorAll('input[name="when"]').forEach((radio) => radio.addEventListener('change', syncWhen));

  /** Puts each invalid field's reason next to it; the rest go in the form's alert. */
  const showErrors = (error, { quiet = false } = {}) => {
    const leftover = [];
    let first = null;
    const scheduled = when() === 'schedule';
    for (const { name, reason } of error instanceof ApiError ? error.fields : []) {
      const id = fieldIdFor(name, scheduled);
      if (id && setFieldError(id, reason)) {
        first = first || id;
      } else {
        leftover.push(`${name}: ${reason}`);
      }
    }
    if (quiet) return;
    const marked = error instanceof ApiError ? error.fields.length - leftover.length : 0;
    let message = error.message;
    if (marked > 0 && leftover.length === 0) message = `Fix the ${marked === 1 ? 'field' : `${marked} fields`} marked above.`;
    else if (leftover.length > 0) message = `${error.message}: ${leftover.join('; ')}`;
    replace(formStatus, errorBox({ message }));
    document.getElementById(first)?.focus();
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    replace(formStatus);
    const namespace = namespaceInput.value.trim();
    if (!namespace) {
      setFieldError('f-namespace', 'Enter the namespace of the pods to capture.');
      namespaceInput.focus();
      return;
    }
    let spec;
    try {
      spec = captureSpec();
    } catch (error) {
      setFieldError(error.field, error.message);
      document.getElementById(error.field)?.focus();
      return;
    }
    const metadata = nameInput.value.trim() ? { name: nameInput.value.trim() } : {};
    submit.disabled = true;
    try {
      if (when() === 'schedule') {
        const { duration, startTime, ...template } = spec;
        const body = {
          metadata,
          spec: {
            schedule: cronInput.value.trim(),
            timeZone: zoneInput.value.trim() || undefined,
            concurrencyPolicy: concurrencySelect.value,
            template: { ...template, duration },
          },
        };
        const created = await post(`/namespaces/${encodeURIComponent(namespace)}/schedules`, body);
        announce(`Schedule ${created.metadata.name} created`);
        navigate(scheduleHref(namespace, created.metadata.name));
      } else {
        const created = await post(`/namespaces/${encodeURIComponent(namespace)}/captures`, { metadata, spec });
        announce(`Capture ${created.metadata.name} created`);
        navigate(captureHref(namespace, created.metadata.name));
      }
    } catch (error) {
      showErrors(error);
    } finally {
      submit.disabled = false;
    }
  });

  /** The spec from the form; throws {field, message} for what the browser can tell at once. */
  const captureSpec = () => {
    const spec = { podSelector: selectorInput.value.trim() };
    const filters = [];
    for (const row of filterRows.querySelectorAll('.filter-row')) {
      const protocol = row.querySelector('select').value;
      const ports = parsePorts(row.querySelector('input[id$="-ports"]').value);
      const peers = parsePeers(row.querySelector('input[id$="-peers"]').value);
      const rule = {};
      if (protocol) rule.protocol = protocol;
      if (ports.length) rule.ports = ports;
      if (peers.length) rule.peers = peers;
      // Each row's position in the request, so the server's errors find it again.
      row.dataset.position = String(filters.length);
      filters.push(rule);
    }
    if (filters.length) spec.filters = filters;
    const expression = bpfInput.value.trim();
    if (expression) spec.bpfFilter = expression;
    // Left out for the default, as the server writes it.
    if (capturePointSelect.value !== 'hostVeth') spec.capturePoint = capturePointSelect.value;
    const duration = durationInput.value.trim();
    if (duration) spec.duration = duration;
    if (when() === 'at') {
      if (!startInput.value) throw Object.assign(new Error('Pick the start date and time.'), { field: 'f-start' });
      spec.startTime = new Date(startInput.value).toISOString();
    }
    if (snapInput.value) spec.snapLength = Number(snapInput.value);
    try {
      const maxBytes = parseSize(maxBytesInput.value);
      if (maxBytes !== undefined) spec.maxBytes = maxBytes;
    } catch (error) {
      throw Object.assign(error, { field: 'f-maxbytes' });
    }
    if (maxPacketsInput.value) spec.maxPackets = Number(maxPacketsInput.value);
    spec.format = formatSelect.value;
    return spec;
  };

  /** The form control for an API field name such as spec.filters[1].ports[0]. */
  const fieldIdFor = (name, scheduled) => {
    const path = scheduled ? name.replace(/^spec\.template\./, 'spec.') : name;
    const rule = /^spec\.filters\[(\d+)\](?:\.(protocol|ports|peers))?/.exec(path);
    if (rule) {
      const row = filterRows.querySelector(`.filter-row[data-position="${rule[1]}"]`);
      return row ? `f-filter-${row.dataset.index}-${rule[2] || 'protocol'}` : null;
    }
    const table = [
      [/^metadata\.name/, 'f-name'],
      [/^spec\.podSelector/, 'f-selector'],
      [/^spec\.bpfFilter/, 'f-bpf'],
      [/^spec\.capturePoint/, 'f-capture-point'],
      [/^spec\.(duration|endTime)/, 'f-duration'],
      [/^spec\.startTime/, 'f-start'],
      [/^spec\.snapLength/, 'f-snaplen'],
      [/^spec\.maxBytes/, 'f-maxbytes'],
      [/^spec\.maxPackets/, 'f-maxpackets'],
      [/^spec\.format/, 'f-format'],
      [/^spec\.schedule/, 'f-cron'],
      [/^spec\.timeZone/, 'f-timezone'],
      [/^spec\.concurrencyPolicy/, 'f-concurrency'],
      [/^(namespace|metadata\.namespace)/, 'f-namespace'],
    ];
    return table.find(([pattern]) => pattern.test(path))?.[1] || null;
  };

  // ?filters=udp:53@10.96.0.10;tcp:443 (the CLI's --filter syntax, rules separated by ;).
  for (const rule of (query.get('filters') || '').split(';').filter(Boolean)) {
    const [head, peers = ''] = rule.split('@');
    const [protocol, ports = ''] = head.split(':');
    const name = protocol.toUpperCase() === 'ICMPV6' ? 'ICMPv6' : protocol.toUpperCase();
    addFilter(name, ports, peers);
  }
  replace(main, form);
  const requested = form.querySelector(`input[name="when"][value="${CSS.escape(query.get('when') || 'now')}"]`);
  if (requested) requested.checked = true;
  syncWhen();
  refreshPreview();
}
