// Namespaces: list with config counts, create, edit, delete (administrators).

import { get, post, put, del } from './api.js';
import { h, table, dialog, form, attempt, confirmThen } from './ui.js';

const PATH = '/nacos/v1/console/namespaces';

export async function namespacesPage(main) {
  const list = (await get(PATH)).data || [];
  const reload = () => { window.dispatchEvent(new HashChangeEvent('hashchange')); };
  const edit = (n) => {
    const f = form([
      ['namespace', 'Namespace id', { value: n ? n.namespace : '', placeholder: 'generated when empty', readonly: !!n }],
      ['name', 'Name', { value: n ? n.namespaceShowName : '' }],
      ['desc', 'Description', { value: n ? n.namespaceDesc : '' }],
    ]);
    const close = dialog(n ? 'Edit namespace' : 'Create namespace', f, [[n ? 'Save' : 'Create', async () => {
      const v = f.values();
      const ok = n
        ? await attempt(() => put(PATH, { namespace: v.namespace, namespaceShowName: v.name, namespaceDesc: v.desc }), 'Namespace saved')
        : await attempt(() => post(PATH, { customNamespaceId: v.namespace, namespaceName: v.name, namespaceDesc: v.desc }), 'Namespace created');
      if (ok !== undefined) { close(); reload(); }
    }]]);
  };
  main.replaceChildren(
    h('div.toolbar', {}, h('button.primary', { onclick: () => edit(null) }, 'Create namespace')),
    table([
      ['Name', (n) => h('strong', {}, n.namespaceShowName || 'public')],
      ['Id', (n) => h('code', {}, n.namespace || '(public)')],
      ['Description', (n) => n.namespaceDesc || ''],
      ['Configs', (n) => `${n.configCount ?? 0} / ${n.quota ?? '∞'}`],
      ['', (n) => (n.type === 0 || !n.namespace ? h('span.muted', {}, 'built in') : h('span.row-actions', {},
        h('button.link', { onclick: () => edit(n) }, 'Edit'),
        h('button.link.danger', { onclick: () => confirmThen(`Delete namespace ${n.namespace}?`, async () => {
          if (await attempt(() => del(PATH, { namespaceId: n.namespace }), 'Namespace deleted') !== undefined) reload();
        }) }, 'Delete')))],
    ], list));
}
