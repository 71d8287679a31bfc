// Users, role bindings and permissions (`namespace:group:type` resources, r / w / rw).

import { get, post, put, del } from './api.js';
import { h, table, pager, dialog, form, attempt, confirmThen } from './ui.js';

const PAGE_SIZE = 20;
const reload = () => window.dispatchEvent(new HashChangeEvent('hashchange'));

export async function usersPage(main) {
  const users = h('section.card', {});
  const roles = h('section.card', {});
  const perms = h('section.card', {});
  main.replaceChildren(users, roles, perms);
  await Promise.all([usersSection(users, 1), rolesSection(roles, 1), permissionsSection(perms, 1)]);
}

async function usersSection(box, pageNo) {
  const r = await get('/nacos/v1/auth/users', { pageNo, pageSize: PAGE_SIZE });
  const create = () => {
    const f = form([['username', 'User name'], ['password', 'Password', { type: 'password' }]]);
    const close = dialog('Create user', f, [['Create', async () => {
      if (await attempt(() => post('/nacos/v1/auth/users', f.values()), 'User created') !== undefined) { close(); reload(); }
    }]]);
  };
  const password = (u) => {
    const f = form([['newPassword', 'New password', { type: 'password' }]]);
    const close = dialog(`Password of ${u.username}`, f, [['Save', async () => {
      if (await attempt(() => put('/nacos/v1/auth/users', { username: u.username, ...f.values() }), 'Password changed') !== undefined) close();
    }]]);
  };
  box.replaceChildren(
    h('div.section-head', {}, h('h3', {}, 'Users'), h('button.primary', { onclick: create }, 'Create user')),
    table([
      ['User', (u) => h('strong', {}, u.username)],
      ['', (u) => h('span.row-actions', {},
        h('button.link', { onclick: () => password(u) }, 'Change password'),
        h('button.link.danger', { onclick: () => confirmThen(`Delete user ${u.username}?`, async () => {
          if (await attempt(() => del('/nacos/v1/auth/users', { username: u.username }), 'User deleted') !== undefined) reload();
        }) }, 'Delete'))],
    ], r.pageItems || []),
    pager(r.totalCount || 0, pageNo, PAGE_SIZE, (n) => usersSection(box, n)));
}

async function rolesSection(box, pageNo) {
  const r = await get('/nacos/v1/auth/roles', { pageNo, pageSize: PAGE_SIZE });
  const bind = () => {
    const f = form([['role', 'Role'], ['username', 'User name']]);
    const close = dialog('Bind a role', f, [['Bind', async () => {
      if (await attempt(() => post('/nacos/v1/auth/roles', f.values()), 'Role bound') !== undefined) { close(); reload(); }
    }]]);
  };
  box.replaceChildren(
    h('div.section-head', {}, h('h3', {}, 'Roles'), h('button.primary', { onclick: bind }, 'Bind role')),
    table([
      ['Role', (x) => h('strong', {}, x.role)],
      ['User', (x) => x.username],
      ['', (x) => h('button.link.danger', { onclick: () => confirmThen(`Unbind ${x.role} from ${x.username}?`, async () => {
        if (await attempt(() => del('/nacos/v1/auth/roles', { role: x.role, username: x.username }), 'Role unbound') !== undefined) reload();
      }) }, 'Unbind')],
    ], r.pageItems || []),
    pager(r.totalCount || 0, pageNo, PAGE_SIZE, (n) => rolesSection(box, n)));
}

async function permissionsSection(box, pageNo) {
  const r = await get('/nacos/v1/auth/permissions', { pageNo, pageSize: PAGE_SIZE });
  const add = () => {
    const f = form([['role', 'Role'], ['resource', 'Resource', { placeholder: 'namespace:group:naming/*' }],
      ['action', 'Action', { options: ['r', 'w', 'rw'], value: 'r' }]]);
    const close = dialog('Grant a permission', f, [['Grant', async () => {
      if (await attempt(() => post('/nacos/v1/auth/permissions', f.values()), 'Permission granted') !== undefined) { close(); reload(); }
    }]]);
  };
  box.replaceChildren(
    h('div.section-head', {}, h('h3', {}, 'Permissions'), h('button.primary', { onclick: add }, 'Grant permission')),
    table([
      ['Role', (x) => h('strong', {}, x.role)],
      ['Resource', (x) => h('code', {}, x.resource)],
      ['Action', (x) => x.action],
      ['', (x) => h('button.link.danger', { onclick: () => confirmThen(`Revoke ${x.action} on ${x.resource} from ${x.role}?`, async () => {
        if (await attempt(() => del('/nacos/v1/auth/permissions', x), 'Permission revoked') !== undefined) reload();
      }) }, 'Revoke')],
    ], r.pageItems || []),
    pager(r.totalCount || 0, pageNo, PAGE_SIZE, (n) => permissionsSection(box, n)));
}
