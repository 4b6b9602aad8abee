// Sign-in: the user pastes a bearer token; it is checked against the API before it is kept
// (in this tab's sessionStorage only), and a refused token says why.

import { ApiError, get, setToken } from '../api.js';
import { errorBox, field, h, notice, replace } from '../ui.js';

export default async function signIn({ main, query, navigate }) {
  document.title = 'Sign in · podcap';
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true });
  const status = h('div', { class: 'form-status' });
  const reason = query.get('reason');
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', {}, 'Sign in to podcap'),
    reason ? notice(`Please sign in again: ${reason}`) : null,
    field({
      id: 'token',
      label: 'API token',
      control: input,
      hint: 'Standalone: a token from `capture-api token create`, or admin-token in the data directory. In a cluster: your Kubernetes bearer token (RBAC decides what you may see). It is kept in this browser tab only.',
      wide: true,
    }),
    status,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button button-primary' }, 'Sign in')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    replace(status);
    if (!value) {
      replace(status, errorBox({ message: 'Paste a token first.' }));
      input.focus();
      return;
    }
    setToken(value);
    try {
      await get('/namespaces');
    } catch (error) {
      setToken(null);
      const message = error instanceof ApiError && error.status === 401
        ? `The server did not accept this token: ${error.message}`
        : error.message;
      replace(status, errorBox({ message }));
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    const next = query.get('next');
    navigate(next && next.startsWith('#/') && !next.startsWith('#/signin') ? next : '#/captures');
  });
  replace(main, form);
  input.focus();
}
