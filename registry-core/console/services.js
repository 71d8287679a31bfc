// Services: server-side paged list with search, and one service's instances (health, weight
// and enabled editable) and subscribers. Route: `#/services` or `#/services/<group>/<name>`.

import { session, get, call, put } from './api.js';
import { h, table, pager, dialog, form, attempt } from './ui.js';

const PAGE_SIZE = 20;
const ns = () => session.namespace || 'public';

export async function servicesPage(main) {
  const [, group, name] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (group && name) return serviceDetail(main, group, name);
  const search = h('input', { type: 'search', placeholder: 'Service name contains…', 'aria-label': 'Service name' });
  const groupInput = h('input', { type: 'search', placeholder: 'Group', 'aria-label': 'Group' });
  const results = h('div');
  const load = async (pageNo = 1) => {
    const r = await get('/nacos/v1/ns/catalog/services', {
      namespaceId: ns(), pageNo, pageSize: PAGE_SIZE, serviceNameParam: search.value.trim(),
      groupNameParam: groupInput.value.trim() || undefined,
    });
    results.replaceChildren(
      table([
        ['Service', (s) => h('a', { href: `#/services/${encodeURIComponent(s.groupName)}/${encodeURIComponent(s.name)}` }, s.name)],
        ['Group', (s) => s.groupName],
        ['Clusters', (s) => s.clusterCount],
        ['Instances', (s) => s.ipCount],
        ['Healthy', (s) => h(`span.badge.${s.healthyInstanceCount > 0 || s.ipCount === 0 ? 'ok' : 'bad'}`, {},
          `${s.healthyInstanceCount} / ${s.ipCount}`)],
      ], r.serviceList || [], 'No services match.'),
      pager(r.count || 0, pageNo, PAGE_SIZE, load));
  };
  let timer;
  const debounced = () => { clearTimeout(timer); timer = setTimeout(() => load(1), 250); };
  search.addEventListener('input', debounced);
  groupInput.addEventListener('input', debounced);
  main.replaceChildren(h('div.toolbar', {}, search, groupInput), results);
  await load(1);
}

async function serviceDetail(main, group, name) {
  const service = { serviceName: name, groupName: group, namespaceId: ns() };
  const instancesBox = h('div');
  const subscribersBox = h('div');
  const loadInstances = async (pageNo = 1) => {
    const r = await get('/nacos/v1/ns/catalog/instances', { ...service, pageNo, pageSize: PAGE_SIZE });
    instancesBox.replaceChildren(
      table([
        ['Address', (i) => h('code', {}, `${i.ip}:${i.port}`)],
        ['Cluster', (i) => i.clusterName],
        ['Ephemeral', (i) => (i.ephemeral ? 'yes' : 'no')],
        ['Weight', (i) => i.weight],
        ['Health', (i) => h(`span.badge.${i.healthy ? 'ok' : 'bad'}`, {}, i.healthy ? 'healthy' : 'unhealthy')],
        ['Enabled', (i) => h('input', { type: 'checkbox', checked: i.enabled, 'aria-label': `enabled ${i.ip}:${i.port}`,
          onchange: async (e) => {
            const ok = await attempt(() => call('PATCH', '/nacos/v1/ns/instance', { ...identity(service, i), enabled: e.target.checked }),
              e.target.checked ? 'Instance enabled' : 'Instance disabled');
            if (ok === undefined) e.target.checked = !e.target.checked;
          } })],
        ['Metadata', (i) => h('span.meta', {}, Object.entries(i.metadata || {}).map(([k, v]) => `${k}=${v}`).join(', '))],
        ['', (i) => h('button.link', { onclick: () => editInstance(service, i, () => loadInstances(pageNo)) }, 'Edit')],
      ], r.list || [], 'No instances.'),
      pager(r.count || 0, pageNo, PAGE_SIZE, loadInstances));
  };
  const loadSubscribers = async (pageNo = 1) => {
    const r = await get('/nacos/v1/ns/service/subscribers', { ...service, pageNo, pageSize: PAGE_SIZE });
    subscribersBox.replaceChildren(
      table([['Address', (s) => h('code', {}, s.addrStr)], ['Agent', (s) => s.agent], ['App', (s) => s.app]],
        r.subscribers || [], 'No subscribers.'),
      pager(r.count || 0, pageNo, PAGE_SIZE, loadSubscribers));
  };
  main.replaceChildren(
    h('p', {}, h('a', { href: '#/services' }, '‹ All services')),
    h('h2', {}, `${group} / ${name}`),
    h('section.card', {}, h('h3', {}, 'Instances'), instancesBox),
    h('section.card', {}, h('h3', {}, 'Subscribers'), subscribersBox));
  await Promise.all([loadInstances(1), loadSubscribers(1)]);
}

const identity = (service, i) => ({ ...service, ip: i.ip, port: i.port, clusterName: i.clusterName, ephemeral: i.ephemeral });

function editInstance(service, i, done) {
  const f = form([
    ['weight', 'Weight', { type: 'number', value: i.weight }],
    ['enabled', 'Enabled', { type: 'checkbox', value: i.enabled }],
    ['healthy', 'Healthy (instances without health checks)', { type: 'checkbox', value: i.healthy }],
  ]);
  const close = dialog(`Instance ${i.ip}:${i.port}`, f, [['Save', async () => {
    const v = f.values();
    const id = identity(service, i);
    let ok = await attempt(() => call('PATCH', '/nacos/v1/ns/instance', { ...id, weight: v.weight, enabled: v.enabled }));
    if (ok !== undefined && v.healthy !== i.healthy) {
      ok = await attempt(() => put('/nacos/v1/ns/health/instance', { ...id, healthy: v.healthy }));
    }
    if (ok !== undefined) { close(); done(); }
  }]]);
}
