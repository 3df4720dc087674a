import t from 'tap';
import { route } from '../mesh/routing.ts';
import type { MeshSnapshot } from '../mesh/routing.ts';

t.test('trivial', async (t) => {
  const snap: MeshSnapshot = { services: [], pods: [], virtualServices: [], destinationRules: [] };
  t.same(route(snap, 'mesh', 'x.y.svc.cluster.local', '/', Math.random), { kind: 'no-route' });
});
