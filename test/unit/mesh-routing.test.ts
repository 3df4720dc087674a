// The simulator's routing is what every traffic assertion rests on, so it is tested alone.
import t from 'tap';
import { route, resolveService } from '../mesh/routing.ts';
import type { MeshSnapshot, SimPod } from '../mesh/routing.ts';

const pod = (name: string, labels: Record<string, string>, ready = true): SimPod => ({
  namespace: 'ns',
  name,
  labels: { app: 'web', ...labels },
  ready,
  workload: name.replace(/-\d$/, ''),
  errorRate: 0,
  latencyMs: 1,
});

const snapshot = (weights: [string, number][]): MeshSnapshot => ({
  services: [{ namespace: 'ns', name: 'web', selector: { app: 'web' } }],
  pods: [
    pod('stable-0', { track: 'stable' }),
    pod('canary-0', { track: 'canary' }),
    pod('canary-1', { track: 'canary' }, false),
  ],
  destinationRules: [
    {
      namespace: 'ns',
      host: 'web',
      subsets: [
        { name: 'stable', labels: { track: 'stable' } },
        { name: 'canary', labels: { track: 'canary' } },
        { name: 'none', labels: { track: 'none' } },
      ],
    },
  ],
  virtualServices: [
    {
      namespace: 'ns',
      name: 'web',
      hosts: ['web'],
      gateways: [],
      http: [
        {
          route: weights.map(([subset, weight]) => ({
            destination: { host: 'web.ns.svc.cluster.local', subset },
            weight,
          })),
        },
      ],
    },
  ],
});

const host = 'web.ns.svc.cluster.local';

t.test('hosts resolve in short, namespaced and full form', async (t) => {
  const s = snapshot([]);
  t.equal(resolveService(s, 'web', 'ns')?.name, 'web');
  t.equal(resolveService(s, 'web.ns', 'other')?.name, 'web');
  t.equal(resolveService(s, 'web.ns.svc.cluster.local', 'other')?.name, 'web');
  t.equal(resolveService(s, 'web', 'other'), undefined);
});

t.test('weights pick the subset; only Ready pods of the subset answer', async (t) => {
  const s = snapshot([
    ['stable', 90],
    ['canary', 10],
  ]);
  const low = route(s, 'mesh', host, '/', () => 0.5);
  t.equal(low.kind === 'pod' && low.pod.name, 'stable-0');
  const high = route(s, 'mesh', host, '/', () => 0.95);
  t.equal(high.kind === 'pod' && high.pod.name, 'canary-0', 'the unready canary pod is never picked');
});

t.test('an empty or unknown subset is no healthy upstream', async (t) => {
  t.equal(route(snapshot([['none', 100]]), 'mesh', host, '/', Math.random).kind, 'no-healthy-upstream');
  t.equal(route(snapshot([['missing', 100]]), 'mesh', host, '/', Math.random).kind, 'no-healthy-upstream');
});

t.test('gateway-bound VirtualServices apply at the gateway only', async (t) => {
  const s = snapshot([['canary', 100]]);
  const vs = s.virtualServices[0];
  if (!vs) return t.fail('fixture');
  vs.gateways = ['myapp-gateway'];
  vs.hosts = ['myapp.example.com'];
  const viaGateway = route(s, 'gateway', 'myapp.example.com', '/', () => 0);
  t.equal(viaGateway.kind === 'pod' && viaGateway.pod.name, 'canary-0');
  const viaMesh = route(s, 'mesh', host, '/', () => 0);
  t.equal(viaMesh.kind === 'pod' && viaMesh.pod.name, 'stable-0', 'mesh traffic has no VirtualService: all Ready pods');
  t.equal(route(s, 'gateway', 'nobody.example.com', '/', () => 0).kind, 'no-route');
});
