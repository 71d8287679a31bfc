// Cluster: every member as it reports itself (role, term, applied index, lag behind the
// leader, Distro digest) and whether the members' ephemeral views agree. Refreshes itself.

import { get } from './api.js';
import { h, table } from './ui.js';

const REFRESH_MS = 3000;

export async function clusterPage(main) {
  const box = h('div');
  main.replaceChildren(box);
  const load = async () => {
    const c = (await get('/nacos/v1/console/cluster')).data;
    const leader = c.members.find((m) => m.role === 'leader');
    box.replaceChildren(
      h('div.stats', {},
        stat('Members', c.members.length),
        stat('Leader', leader ? `node ${leader.nodeId}` : 'none'),
        stat('Term', c.term),
        stat('Distro', c.distroAgree ? 'in agreement' : 'differs', c.distroAgree ? 'ok' : 'bad'),
        c.standalone && stat('Mode', 'standalone')),
      table([
        ['Node', (m) => h('strong', {}, m.nodeId)],
        ['Address', (m) => h('code', {}, m.httpAddress || m.address)],
        ['Role', (m) => h(`span.badge.role-${m.role}`, {}, m.role)],
        ['State', (m) => h(`span.badge.${m.state === 'UP' ? 'ok' : 'bad'}`, {}, m.state)],
        ['Term', (m) => m.term ?? '–'],
        ['Applied', (m) => m.lastApplied ?? '–'],
        ['Lag', (m) => (m.lag ?? '–')],
        ['Distro digest', (m) => h('code.digest', { title: m.digest || '' }, (m.digest || '–').slice(0, 12))],
        ['Clients', (m) => m.clients ?? '–'],
        ['', (m) => (m.error ? h('span.error', {}, m.error) : '')],
      ], c.members));
  };
  await load();
  const timer = setInterval(() => {
    if (!document.body.contains(box)) { clearInterval(timer); return; }
    load().catch(() => {});
  }, REFRESH_MS);
}

function stat(label, value, kind = '') {
  return h(`div.stat${kind ? `.${kind}` : ''}`, {}, h('span.stat-label', {}, label), h('span.stat-value', {}, value));
}
