// One schedule: its cron line and zone, the capture it runs, the next five runs, the history
// of runs with links to their captures, suspend/resume (PUT of the spec with `suspend`
// flipped) and delete with confirmation.

import { ApiError, del, get, put, schedulePath } from '../api.js';
import {
  announce, confirmDialog, errorBox, h, phaseBadge, replace, timeElement, tableHead, captureHref
} from '../ui.js';
import { describePackets, describeSelector } from './capture-detail.js';

const REFRESH_MS = 5000;

export default async function scheduleDetail({ main, params, navigate, isCurrent }) {
  const [namespace, name] = params;
  const path = schedulePath(namespace, name);
  document.title = `${name} · schedules · podcap`;
  const status = h('div', { class: 'form-status' });
  const content = h('div', {});
  replace(main,
    h('p', { class: 'breadcrumbs' }, h('a', { href: '#/schedules' }, 'Schedules'), ' / ', namespace),
    content);
  let timer = null;

  const render = (schedule) => {
    const { spec = {}, status: state = {} } = schedule;
    const template = spec.template || {};
    const toggle = h('button', {
      type: 'button',
      class: 'button',
      onclick: async () => {
        replace(status);
        try {
          const updated = await put(path, { ...schedule, spec: { ...spec, suspend: !spec.suspend } });
          announce(updated.spec.suspend ? 'Schedule suspended' : 'Schedule resumed');
          render(updated);
        } catch (error) {
          replace(status, errorBox(error, 'Could not change the schedule'));
        }
      },
    }, spec.suspend ? 'Resume' : 'Suspend');
    const remove = h('button', {
      type: 'button',
      class: 'button button-danger',
      onclick: async () => {
        replace(status);
        if (!await confirmDialog({ title: `Delete ${name}?`, body: 'The schedule and every capture it made, with their files, are deleted.', confirm: 'Delete schedule', danger: true })) return;
        try {
          await del(path);
          announce(`Schedule ${name} deleted`);
          navigate('#/schedules');
        } catch (error) {
          replace(status, errorBox(error, 'Could not delete the schedule'));
        }
      },
    }, 'Delete schedule');
    const history = state.history || [];
    replace(content,
      h('div', { class: 'page-head' },
        h('div', {}, h('h1', {}, name, ' ', spec.suspend ? h('span', { class: 'badge badge-stopped' }, 'Suspended') : h('span', { class: 'badge badge-capturing' }, 'Active')),
          h('p', { class: 'muted' }, `Namespace ${namespace}`)),
        h('div', { class: 'actions' }, toggle, remove)),
      status,
      h('section', { class: 'card', 'aria-labelledby': 'schedule-facts' },
        h('h2', { id: 'schedule-facts' }, 'What it runs'),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Schedule'), h('dd', {}, h('code', {}, spec.schedule), ` (${spec.timeZone || 'UTC'})`),
          h('dt', {}, 'Each run'), h('dd', {}, template.duration || '—'),
          h('dt', {}, 'Pods'), h('dd', {}, describeSelector(template.podSelector)),
          h('dt', {}, 'Packets'), h('dd', {}, describePackets(template)),
          h('dt', {}, 'Overlapping runs'), h('dd', {}, spec.concurrencyPolicy || 'Forbid'),
          h('dt', {}, 'Runs kept'), h('dd', {}, String(spec.historyLimit ?? 3)))),
      h('section', { class: 'card', 'aria-labelledby': 'schedule-next' },
        h('h2', { id: 'schedule-next' }, 'Next runs'),
        spec.suspend ? h('p', { class: 'muted' }, 'Suspended: no runs until it is resumed.')
          : h('ol', { class: 'run-list', id: 'next-runs' }, (state.nextScheduleTimes || []).map((time) => h('li', {}, timeElement(time))))),
      h('section', { class: 'card', 'aria-labelledby': 'schedule-history' },
        h('h2', { id: 'schedule-history' }, 'History'),
        history.length === 0 ? h('p', { class: 'muted' }, 'No runs yet.') : h('div', { class: 'table-wrap' }, h('table', { class: 'data-table responsive', id: 'schedule-history-table' },
          h('caption', { class: 'visually-hidden' }, 'Runs of this schedule'),
          tableHead(['Capture', 'Scheduled for', 'Phase']),
          h('tbody', {}, [...history].reverse().map((run) => h('tr', {},
            h('th', { scope: 'row', 'data-label': 'Capture' }, h('a', { href: captureHref(namespace, run.name) }, run.name)),
            h('td', { 'data-label': 'Scheduled for' }, timeElement(run.scheduledFor)),
            h('td', { 'data-label': 'Phase' }, phaseBadge(run.phase)))))))));
  };

  const refresh = async (first) => {
    try {
      const schedule = await get(path);
      if (!isCurrent()) return;
      // Re-rendering must not pull a control from under the keyboard: skip it while one is focused.
      const focused = document.activeElement;
      const busy = content.contains(focused) && focused.matches('button, input, select, textarea, a');
      if (first || !busy) render(schedule);
    } catch (error) {
      if (!isCurrent()) return;
      if (first) {
        replace(content, h('h1', {}, name), errorBox(error));
        if (error instanceof ApiError && error.status === 404) return;
      } else {
        replace(status, errorBox(error, 'Could not refresh'));
      }
    }
    timer = setTimeout(() => refresh(false), REFRESH_MS);
  };
  await refresh(true);
  return () => clearTimeout(timer);
}
