// Small DOM and formatting helpers shared by the views. Elements are built with `h`, which
// only ever sets text (never HTML), so names and labels from the API cannot inject markup.

/**
 * h('a', {href: '#/x', class: 'y', onclick: fn}, 'text', child, [more]) → element.
 * Attributes that are false, null or undefined are left out; `true` sets an empty attribute.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      element.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (key === 'value' && 'value' in element) {
      element.value = value;
    } else if (key === 'checked' || key === 'selected' || key === 'disabled') {
      element[key] = Boolean(value);
    } else {
      element.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** The console's address of a capture's page. */
export function captureHref(namespace, name) {
  return `#/captures/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
}

/** The console's address of a schedule's page. */
export function scheduleHref(namespace, name) {
  return `#/schedules/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
}

/** A table head of column headers `titles` (scope=col, for screen readers). */
export function tableHead(titles) {
  return h('thead', {}, h('tr', {}, titles.map((title) => h('th', { scope: 'col' }, title))));
}

/** Replaces everything in `element` with `children`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/** Says `message` to screen readers (the page's polite live region). */
export function announce(message) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  // A fresh text node after a tick so the same message twice is announced twice.
  setTimeout(() => { region.textContent = message; }, 30);
}

/** An alert box for an error (role=alert is read out at once). */
export function errorBox(error, prefix = '') {
  const text = error?.message || String(error);
  return h('div', { class: 'alert alert-error', role: 'alert' }, prefix ? `${prefix}: ${text}` : text);
}

export function notice(text) {
  return h('div', { class: 'alert alert-info', role: 'status' }, text);
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
export function formatBytes(bytes) {
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatCount(value) {
  return (Number(value) || 0).toLocaleString('en-US');
}

/** "3m 05s", "2h 10m", "4d 3h" */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** "3m ago" from an RFC 3339 time. */
export function formatAge(time, now = Date.now()) {
  if (!time) return '';
  return `${formatDuration((now - Date.parse(time)) / 1000)} ago`;
}

/** Local date and time, to the second, with the zone; the ISO time in a tooltip. */
export function timeElement(time) {
  if (!time) return h('span', { class: 'muted' }, '—');
  const date = new Date(time);
  return h('time', { datetime: time, title: time }, date.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }));
}

export function phaseBadge(phase) {
  const value = phase || 'Unknown';
  return h('span', { class: `badge badge-${value.toLowerCase()}` }, value);
}

export const RUNNING_PHASES = new Set(['Scheduled', 'Capturing']);

/**
 * Asks for confirmation in a modal <dialog>; resolves true when confirmed. The dialog traps
 * focus and Escape cancels, as native dialogs do.
 */
export function confirmDialog({ title, body, confirm = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    const heading = h('h2', { id: 'confirm-title' }, title);
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': 'confirm-title' },
      h('form', { method: 'dialog' },
        heading,
        h('p', {}, body),
        h('div', { class: 'actions' },
          h('button', { type: 'submit', value: 'cancel', class: 'button' }, 'Cancel'),
          h('button', { type: 'submit', value: 'confirm', class: danger ? 'button button-danger' : 'button button-primary' }, confirm))));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'confirm');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Calls `fn` at most once per `ms`, with the latest arguments. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** A labelled form field: <div><label for=id>...</label> control <p hint> <p error></div>. */
export function field({ id, label, control, hint, wide = false }) {
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const describedBy = [hintId, errorId].filter(Boolean).join(' ');
  control.setAttribute('aria-describedby', describedBy);
  return h('div', { class: wide ? 'field field-wide' : 'field', dataset: { field: id } },
    h('label', { for: id }, label),
    control,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    h('p', { class: 'field-error', id: errorId, hidden: true }));
}

/** Shows `message` under the control with id `id` and marks it invalid. */
export function setFieldError(id, message) {
  const control = document.getElementById(id);
  const slot = document.getElementById(`${id}-error`);
  if (!control || !slot) return false;
  control.setAttribute('aria-invalid', 'true');
  slot.textContent = message;
  slot.hidden = false;
  return true;
}

export function clearFieldErrors(root) {
  root.querySelectorAll('[aria-invalid="true"]').forEach((control) => control.removeAttribute('aria-invalid'));
  root.querySelectorAll('.field-error').forEach((slot) => {
    slot.textContent = '';
    slot.hidden = true;
  });
}

/** Copies `text` to the clipboard; falls back to selecting it when the page may not write. */
export async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    announce('Copied to the clipboard');
    return true;
  } catch {
    if (fallbackInput) {
      fallbackInput.focus();
      fallbackInput.select();
    }
    announce('Select and copy the text');
    return false;
  }
}
