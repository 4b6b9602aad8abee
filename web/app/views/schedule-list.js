// Schedules: every PacketCaptureSchedule the token may read, with its cron line, whether it is
// suspended, its last and next runs, and a link to create one (the new capture form's "On a
// schedule" mode).

import { get } from '../api.js';
import { errorBox, h, replace, timeElement, tableHead, scheduleHref } from '../ui.js';

export default async function scheduleList({ main }) {
  document.title = 'Schedules · podcap';
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading schedules…'));
  replace(main,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Schedules'),
      h('a', { class: 'button button-primary', href: '#/new?when=schedule' }, 'New schedule')),
    body);
  let namespaces;
  try {
    namespaces = ((await get('/namespaces')).items || []).map((item) => item.name);
  } catch (error) {
    replace(body, errorBox(error, 'Could not list namespaces'));
    return;
  }
  const lists = await Promise.all(namespaces.map((namespace) => get(`/namespaces/${encodeURIComponent(namespace)}/schedules`)
    .then((answer) => answer.items || [])
    .catch(() => [])));
  const items = lists.flat();
  if (items.length === 0) {
    replace(body, h('div', { class: 'empty' }, h('p', {}, 'No schedules yet.'), h('a', { href: '#/new?when=schedule' }, 'Create one')));
    return;
  }
  replace(body, h('div', { class: 'table-wrap' }, h('table', { class: 'data-table responsive' },
    h('caption', { class: 'visually-hidden' }, `${items.length} schedules`),
    tableHead(['Name', 'Namespace', 'Schedule', 'State', 'Last run', 'Next run', 'Runs kept']),
    h('tbody', {}, items.map(({ metadata, spec = {}, status = {} }) => h('tr', { dataset: { name: metadata.name } },
      h('th', { scope: 'row', 'data-label': 'Name' }, h('a', { href: scheduleHref(metadata.namespace, metadata.name) }, metadata.name)),
      h('td', { 'data-label': 'Namespace' }, metadata.namespace),
      h('td', { 'data-label': 'Schedule' }, h('code', {}, spec.schedule), spec.timeZone ? h('span', { class: 'muted' }, ` ${spec.timeZone}`) : null),
      h('td', { 'data-label': 'State' }, spec.suspend ? h('span', { class: 'badge badge-stopped' }, 'Suspended') : h('span', { class: 'badge badge-capturing' }, 'Active')),
      h('td', { 'data-label': 'Last run' }, timeElement(status.lastScheduleTime)),
      h('td', { 'data-label': 'Next run' }, spec.suspend ? h('span', { class: 'muted' }, 'suspended') : timeElement(status.nextScheduleTime)),
      h('td', { 'data-label': 'Runs kept', class: 'num' }, (status.history || []).length)))))));
}
