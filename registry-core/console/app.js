// Shell of the console: sign-in, the navigation, the namespace selector and a hash router
// (`#/configs`, `#/services`, ...) that renders one page module at a time.

import { session, post, get } from './api.js';
import { h, toast } from './ui.js';
import { namespacesPage } from './namespaces.js';
import { servicesPage } from './services.js';
import { configsPage } from './configs.js';
import { clusterPage } from './cluster.js';
import { usersPage } from './users.js';

const PAGES = {
  configs: ['Configurations', configsPage],
  services: ['Services', servicesPage],
  namespaces: ['Namespaces', namespacesPage],
  cluster: ['Cluster', clusterPage],
  users: ['Users & roles', usersPage],
};

const app = document.getElementById('app');

function loginPage() {
  const user = h('input', { name: 'username', autocomplete: 'username', value: 'nacos', required: true });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p.error');
  const submit = async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const login = await post('/nacos/v1/auth/login', { username: user.value, password: pass.value });
      session.signIn(login);
      location.hash = '#/configs';
    } catch (err) {
      error.textContent = err.message;
    }
  };
  app.replaceChildren(h('div.login', {},
    h('form.card', { onsubmit: submit },
      h('h1', {}, 'Registry'),
      h('p.muted', {}, 'Sign in to the console'),
      h('label.field', {}, h('span', {}, 'User name'), user),
      h('label.field', {}, h('span', {}, 'Password'), pass),
      error,
      h('button.primary', { type: 'submit' }, 'Sign in'))));
  pass.focus();
}

async function namespaceSelect() {
  const select = h('select#ns', { 'aria-label': 'Namespace', onchange: () => { session.namespace = select.value; route(); } });
  try {
    const list = (await get('/nacos/v1/console/namespaces')).data || [];
    for (const n of list) {
      const id = n.namespace || '';
      select.append(h('option', { value: id, selected: id === session.namespace }, n.namespaceShowName || id || 'public'));
    }
  } catch (e) {
    toast(e.message, 'error');
  }
  return select;
}

// Each navigation's number: a render whose data arrives after a newer navigation is dropped.
let navigation = 0;

async function route() {
  const mine = ++navigation;
  if (!session.token) { loginPage(); return; }
  const name = (location.hash.replace(/^#\/?/, '').split('/')[0]) || 'configs';
  if (name === 'login') { loginPage(); return; }
  const [title, render] = PAGES[name] || PAGES.configs;
  const main = h('main.content');
  const user = session.user || {};
  const signOut = () => { session.signOut(); location.hash = '#/login'; };
  const select = await namespaceSelect();
  if (mine !== navigation) return;
  session.namespace = select.value; // a namespace deleted meanwhile falls back to the first
  app.replaceChildren(h('div.shell', {},
    h('nav.side', {},
      h('div.brand', {}, 'Registry'),
      Object.entries(PAGES).map(([key, [label]]) =>
        h(`a${key === name ? '.active' : ''}`, { href: `#/${key}` }, label))),
    h('div.main', {},
      h('header.top', {},
        h('h1', {}, title),
        h('div.top-right', {}, select,
          h('span.user', {}, user.username || ''),
          h('button.ghost', { onclick: signOut }, 'Sign out'))),
      main)));
  try {
    await render(main);
  } catch (e) {
    main.append(h('p.error', {}, e.message));
  }
}

window.addEventListener('hashchange', route);
route();
