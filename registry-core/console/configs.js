// Configurations: paged search, create and edit with a highlighting editor, history with a
// diff against the current content and rollback, beta (gray by client IP) and listeners.
// Routes: `#/configs`, `#/configs/edit/<group>/<dataId>` (`new` for a new one),
// `#/configs/history/<group>/<dataId>`.

import { session, get, post, del } from './api.js';
import { h, fill, table, pager, dialog, attempt, confirmThen, codeEditor, diffView, fmtTime, toast } from './ui.js';

const CS = '/nacos/v1/cs/configs';
const PAGE_SIZE = 20;
const TYPES = ['text', 'json', 'yaml', 'properties', 'xml', 'html', 'toml'];
const tenant = () => session.namespace;
const link = (view, group, dataId) => `#/configs/${view}/${encodeURIComponent(group)}/${encodeURIComponent(dataId)}`;

export async function configsPage(main) {
  const [, view, group, dataId] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (view === 'edit') return editPage(main, group, dataId);
  if (view === 'new') return editPage(main, '', '');
  if (view === 'history') return historyPage(main, group, dataId);
  return listPage(main);
}

async function listPage(main) {
  const dataId = h('input', { type: 'search', placeholder: 'Data id contains…', 'aria-label': 'Data id' });
  const group = h('input', { type: 'search', placeholder: 'Group contains…', 'aria-label': 'Group' });
  const results = h('div');
  const load = async (pageNo = 1) => {
    const wild = (v) => (v.trim() ? `*${v.trim()}*` : '');
    const r = await get(CS, { search: 'blur', dataId: wild(dataId.value), group: wild(group.value), tenant: tenant(), pageNo, pageSize: PAGE_SIZE });
    results.replaceChildren(
      table([
        ['Data id', (c) => h('a', { href: link('edit', c.group, c.dataId) }, c.dataId)],
        ['Group', (c) => c.group],
        ['Type', (c) => h('span.badge', {}, c.type || 'text')],
        ['App', (c) => c.appName || ''],
        ['', (c) => h('span.row-actions', {},
          h('a.link', { href: link('edit', c.group, c.dataId) }, 'Edit'),
          h('a.link', { href: link('history', c.group, c.dataId) }, 'History'),
          h('button.link', { onclick: () => showListeners(c) }, 'Listeners'),
          h('button.link.danger', { onclick: () => confirmThen(`Delete ${c.dataId} (${c.group})?`, async () => {
            if (await attempt(() => del(CS, { dataId: c.dataId, group: c.group, tenant: tenant() }), 'Config deleted') !== undefined) load(pageNo);
          }) }, 'Delete'))],
      ], r.pageItems || [], 'No configurations match.'),
      pager(r.totalCount || 0, pageNo, PAGE_SIZE, load));
  };
  let timer;
  const debounced = () => { clearTimeout(timer); timer = setTimeout(() => load(1), 250); };
  dataId.addEventListener('input', debounced);
  group.addEventListener('input', debounced);
  main.replaceChildren(
    h('div.toolbar', {}, dataId, group, h('span.grow'), h('a.button.primary', { href: '#/configs/new' }, 'Create configuration')),
    results);
  await load(1);
}

async function editPage(main, group, dataId) {
  const isNew = !dataId;
  let current = { dataId, group: group || 'DEFAULT_GROUP', content: '', type: 'text', desc: '', appName: '' };
  if (!isNew) current = await get(CS, { dataId, group, tenant: tenant(), show: 'all' });
  const idInput = h('input', { name: 'dataId', value: current.dataId, readonly: !isNew, placeholder: 'application.yaml' });
  const groupInput = h('input', { name: 'group', value: current.group, readonly: !isNew });
  const typeSelect = h('select', { name: 'type' }, TYPES.map((t) => h('option', { value: t, selected: t === (current.type || 'text') }, t)));
  const desc = h('input', { name: 'desc', value: current.desc || '' });
  const editor = codeEditor(current.content || '', current.type || 'text');
  typeSelect.addEventListener('change', () => editor.setType(typeSelect.value));
  const key = () => ({ dataId: idInput.value.trim(), group: groupInput.value.trim() || 'DEFAULT_GROUP', tenant: tenant() });
  const publish = async () => {
    const k = key();
    if (!k.dataId) { toast('A data id is needed', 'error'); return; }
    const ok = await attempt(() => post(CS, { ...k, content: editor.value, type: typeSelect.value, desc: desc.value }), 'Published');
    if (ok !== undefined && isNew) location.hash = link('edit', k.group, k.dataId);
  };
  const beta = h('section.card', {});
  fill(main,
    h('p', {}, h('a', { href: '#/configs' }, '‹ All configurations')),
    h('section.card', {},
      h('div.form.grid', {},
        h('label.field', {}, h('span', {}, 'Data id'), idInput),
        h('label.field', {}, h('span', {}, 'Group'), groupInput),
        h('label.field', {}, h('span', {}, 'Format'), typeSelect),
        h('label.field', {}, h('span', {}, 'Description'), desc)),
      h('label.field', {}, h('span', {}, 'Content'), editor),
      h('div.actions', {},
        h('button.primary', { onclick: publish }, 'Publish'),
        !isNew && h('a.button.ghost', { href: link('history', current.group, current.dataId) }, 'History'),
        !isNew && h('span.muted', {}, `md5 ${current.md5 || ''} · modified ${fmtTime(current.modifyTime)}`))),
    !isNew && beta);
  if (!isNew) await betaSection(beta, key(), editor);
}

/** Beta: a variant served only to the listed client IPs, diffed against the release. */
async function betaSection(box, key, editor) {
  const [r, released] = await Promise.all([get(CS, { ...key, beta: true }), get(CS, { ...key, show: 'all' })]);
  const ips = h('input', { placeholder: '10.0.0.5,10.0.0.6', value: r.data ? r.data.betaIps : '', 'aria-label': 'Beta IPs' });
  const publish = async () => {
    if (!ips.value.trim()) { toast('List the client IPs of the beta', 'error'); return; }
    if (await attempt(() => post(CS, { ...key, content: editor.value }, { betaIps: ips.value.trim() }), 'Beta published') !== undefined) {
      await betaSection(box, key, editor);
    }
  };
  const stop = async () => {
    if (await attempt(() => del(CS, { ...key, beta: true }), 'Beta stopped') !== undefined) await betaSection(box, key, editor);
  };
  fill(box,
    h('h3', {}, 'Beta release'),
    r.data
      ? h('p', {}, 'Serving a beta to ', h('code', {}, r.data.betaIps), '.')
      : h('p.muted', {}, 'No beta: publish the editor content to selected client IPs only.'),
    h('div.toolbar', {}, ips, h('button.ghost', { onclick: publish }, 'Publish as beta'), r.data && h('button.danger', { onclick: stop }, 'Stop beta')),
    r.data && diffView(released.content || '', r.data.content, ['released', 'beta']));
}

async function historyPage(main, group, dataId) {
  const key = { dataId, group, tenant: tenant() };
  const current = await get(CS, { ...key, show: 'all' }).catch(() => ({ content: '' }));
  const detail = h('div');
  const results = h('div');
  const load = async (pageNo = 1) => {
    const r = await get('/nacos/v1/cs/history', { search: 'accurate', ...key, pageNo, pageSize: PAGE_SIZE });
    results.replaceChildren(
      table([
        ['Version', (e) => h('code', {}, e.id)],
        ['Operation', (e) => ({ I: 'created', U: 'updated', D: 'deleted' }[String(e.opType).trim()] || e.opType)],
        ['By', (e) => [e.srcUser, e.srcIp].filter(Boolean).join(' @ ')],
        ['When', (e) => fmtTime(e.lastModifiedTime || e.createdTime)],
        ['', (e) => h('span.row-actions', {},
          h('button.link', { onclick: () => showEntry(e) }, 'Diff'),
          h('button.link', { onclick: () => rollback(e) }, 'Roll back'))],
      ], r.pageItems || [], 'No history.'),
      pager(r.totalCount || 0, pageNo, PAGE_SIZE, load));
  };
  const showEntry = async (e) => {
    const entry = await get('/nacos/v1/cs/history', { ...key, nid: e.id });
    detail.replaceChildren(h('section.card', {},
      h('h3', {}, `Version ${e.id} against the current content`),
      diffView(entry.content, current.content || '', [`version ${e.id}`, 'current'])));
  };
  const rollback = (e) => confirmThen(`Roll ${dataId} back to version ${e.id}?`, async () => {
    if (await attempt(() => post('/nacos/v1/cs/history/rollback', { nid: e.id }), 'Rolled back') !== undefined) {
      location.hash = link('edit', group, dataId);
    }
  });
  main.replaceChildren(
    h('p', {}, h('a', { href: link('edit', group, dataId) }, `‹ ${dataId}`)),
    h('h2', {}, `History of ${group} / ${dataId}`),
    results, detail);
  await load(1);
}

async function showListeners(c) {
  const r = await attempt(() => get('/nacos/v1/console/configs/listeners', { dataId: c.dataId, group: c.group, tenant: tenant() }));
  if (!r) return;
  const d = r.data;
  dialog(`Listeners of ${c.dataId}`, h('div', {},
    table([['Connection', (l) => h('code', {}, l.connectionId)], ['Client IP', (l) => l.clientIp || ''], ['App', (l) => l.appName || ''],
      ['Version', (l) => l.version || '']], d.listeners, 'No gRPC listener on this member.'),
    h('p.muted', {}, `Long-polls held on this member (all configs): ${d.longPollsHeld}`)));
}
