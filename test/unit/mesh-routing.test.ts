// The simulator's routing is what every traffic assertion rests on, so it is tested alone.
import t from 'tap';
import { route, resolveService, routeRequest } from '../mesh/routing.ts';
import type { HTTPRouteRule, MeshSnapshot, ParentRef, Routed, SimPod } from '../mesh/routing.ts';
import { seededRandom } from '../helpers/model.ts';

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

// HTTPRoute, as the Gateway API spec describes it (its "Traffic splitting" and "HTTP routing"
// guides, and HTTPRouteRule's precedence and weight rules), at a Gateway and in the mesh (GAMMA).
const routeSnapshot = (rules: HTTPRouteRule[], parent: ParentRef = { name: 'gw' }): MeshSnapshot => ({
  services: ['foo-v1', 'foo-v2', 'foo-empty', 'web'].map((name) => ({
    namespace: 'ns',
    name,
    selector: { app: 'web', ...(name === 'web' ? {} : { version: name }) },
  })),
  pods: [
    pod('v1-0', { version: 'foo-v1' }),
    pod('v2-0', { version: 'foo-v2' }),
    pod('v2-1', { version: 'foo-v2' }, false),
  ],
  destinationRules: [],
  virtualServices: [],
  httpRoutes: [{ namespace: 'ns', name: 'foo-route', parentRefs: [parent], hostnames: ['foo.example.com'], rules }],
});

const workloadOf = (r: Routed): string => (r.kind === 'pod' ? r.pod.workload : r.kind);
const counts = (s: MeshSnapshot, entry: 'mesh' | 'gateway', h: string, path = '/', n = 2000): Map<string, number> => {
  let i = 0;
  const random = (): number => (((i++ * 0.6180339887) % 1) + 1) % 1;
  const seen = new Map<string, number>();
  for (let k = 0; k < n; k++) {
    const w = workloadOf(route(s, entry, h, path, random));
    seen.set(w, (seen.get(w) ?? 0) + 1);
  }
  return seen;
};

t.test('HTTPRoute traffic splitting: weights 90/10 split requests 90/10 across the two Services', async (t) => {
  const s = routeSnapshot([
    {
      backendRefs: [
        { name: 'foo-v1', port: 8080, weight: 90 },
        { name: 'foo-v2', port: 8080, weight: 10 },
      ],
    },
  ]);
  const seen = counts(s, 'gateway', 'foo.example.com');
  t.ok(Math.abs((seen.get('v1') ?? 0) / 2000 - 0.9) < 0.02, `foo-v1 ≈ 90 % (${seen.get('v1') ?? 0})`);
  t.ok(Math.abs((seen.get('v2') ?? 0) / 2000 - 0.1) < 0.02, `foo-v2 ≈ 10 % (${seen.get('v2') ?? 0})`);
  t.notOk(seen.has('no-route'), 'only the hostname the route names: no other');
  t.same([...counts(s, 'gateway', 'bar.example.com', '/', 10).keys()], ['no-route']);
});

t.test('HTTPRoute weights: unset is 1, 0 sends nothing, all 0 is a 500', async (t) => {
  const equal = counts(
    routeSnapshot([{ backendRefs: [{ name: 'foo-v1' }, { name: 'foo-v2' }] }]),
    'gateway',
    'foo.example.com',
  );
  t.ok(Math.abs((equal.get('v1') ?? 0) - 1000) < 50, 'two unset weights split evenly');
  const zero = counts(
    routeSnapshot([
      {
        backendRefs: [
          { name: 'foo-v1', weight: 100 },
          { name: 'foo-v2', weight: 0 },
        ],
      },
    ]),
    'gateway',
    'foo.example.com',
  );
  t.same([...zero.keys()], ['v1'], 'weight 0 gets no request');
  const none = counts(
    routeSnapshot([
      {
        backendRefs: [
          { name: 'foo-v1', weight: 0 },
          { name: 'foo-v2', weight: 0 },
        ],
      },
    ]),
    'gateway',
    'foo.example.com',
  );
  t.same([...none.keys()], ['invalid-backend']);
});

t.test('HTTPRoute backends: no Ready endpoint is 503 UH; a Service that does not exist is a 500', async (t) => {
  const empty = routeSnapshot([{ backendRefs: [{ name: 'foo-empty', port: 8080 }] }]);
  t.same([...counts(empty, 'gateway', 'foo.example.com', '/', 10).keys()], ['no-healthy-upstream']);
  const missing = routeSnapshot([{ backendRefs: [{ name: 'foo-gone', port: 8080 }] }]);
  t.same([...counts(missing, 'gateway', 'foo.example.com', '/', 10).keys()], ['invalid-backend']);
  const foreign = routeSnapshot([
    { backendRefs: [{ name: 'foo-v1', kind: 'ServiceImport', group: 'multicluster.x-k8s.io' }] },
  ]);
  t.same([...counts(foreign, 'gateway', 'foo.example.com', '/', 10).keys()], ['invalid-backend']);
});

t.test(
  'HTTPRoute matches: Exact beats the longest PathPrefix, which beats a shorter one; prefixes are whole elements',
  async (t) => {
    const s = routeSnapshot([
      { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [{ name: 'foo-v1' }] },
      { matches: [{ path: { type: 'PathPrefix', value: '/login' } }], backendRefs: [{ name: 'foo-v2' }] },
      { matches: [{ path: { type: 'Exact', value: '/login/admin' } }], backendRefs: [{ name: 'foo-empty' }] },
    ]);
    const one = (path: string): string => [...counts(s, 'gateway', 'foo.example.com', path, 5).keys()].join();
    t.equal(one('/login'), 'v2');
    t.equal(one('/login/x'), 'v2');
    t.equal(one('/loginx'), 'v1', '/login does not match /loginx');
    t.equal(one('/login/admin'), 'no-healthy-upstream', 'the Exact match wins');
    t.equal(one('/other'), 'v1');
    const unmatched = routeSnapshot([
      { matches: [{ path: { type: 'Exact', value: '/a' } }], backendRefs: [{ name: 'foo-v1' }] },
    ]);
    t.equal([...counts(unmatched, 'gateway', 'foo.example.com', '/b', 5).keys()].join(), 'no-route', 'no rule matches');
    const tie = routeSnapshot([
      { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [{ name: 'foo-v1' }] },
      { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [{ name: 'foo-v2' }] },
    ]);
    t.equal([...counts(tie, 'gateway', 'foo.example.com', '/api', 5).keys()].join(), 'v1', 'a tie: the first rule');
  },
);

t.test(
  'GAMMA: a route whose parent is a Service steers mesh traffic to that Service, not gateway traffic',
  async (t) => {
    const s = routeSnapshot(
      [
        {
          backendRefs: [
            { name: 'foo-v1', weight: 50 },
            { name: 'foo-v2', weight: 50 },
          ],
        },
      ],
      { group: '', kind: 'Service', name: 'web' },
    );
    const mesh = counts(s, 'mesh', 'web.ns.svc.cluster.local');
    t.ok(Math.abs((mesh.get('v1') ?? 0) - 1000) < 50 && Math.abs((mesh.get('v2') ?? 0) - 1000) < 50, 'split 50/50');
    t.same([...counts(s, 'gateway', 'foo.example.com', '/', 5).keys()], ['no-route'], 'no Gateway parent');
    const direct = counts(s, 'mesh', 'foo-v1.ns.svc.cluster.local', '/', 20);
    t.same([...direct.keys()], ['v1'], 'a Service no route names is reached directly');
    const routed = route(s, 'mesh', 'web.ns.svc.cluster.local', '/', () => 0);
    t.equal(routed.kind === 'pod' ? routed.service.name : '', 'foo-v1', 'the request reaches the backend Service');
  },
);

t.test("Istio's header matches and mirroring, as documented (VirtualService HTTPMatchRequest, mirror)", async (t) => {
  const pods: SimPod[] = [
    {
      namespace: 'ns',
      name: 's',
      labels: { app: 'web', track: 'stable' },
      ready: true,
      workload: 'web',
      errorRate: 0,
      latencyMs: 1,
    },
    {
      namespace: 'ns',
      name: 'c',
      labels: { app: 'web', track: 'canary' },
      ready: true,
      workload: 'web-canary',
      errorRate: 0,
      latencyMs: 1,
    },
  ];
  const host = 'web.ns.svc.cluster.local';
  const snapshot = (http: MeshSnapshot['virtualServices'][number]['http']): MeshSnapshot => ({
    services: [{ namespace: 'ns', name: 'web', selector: { app: 'web' } }],
    pods,
    virtualServices: [{ namespace: 'ns', name: 'web', hosts: ['web'], gateways: [], http }],
    destinationRules: [
      {
        namespace: 'ns',
        host: 'web',
        subsets: [
          { name: 'stable', labels: { track: 'stable' } },
          { name: 'canary', labels: { track: 'canary' } },
        ],
      },
    ],
  });
  const workload = (r: Routed): string => (r.kind === 'pod' ? r.pod.workload : r.kind);
  const random = seededRandom(7);
  // Conditions within one match block all hold (AND); blocks are alternatives (OR); the first route that matches wins.
  const matching = snapshot([
    {
      name: 'testers',
      match: [
        { uri: { prefix: '/api' }, headers: { 'x-canary': { exact: 'always' } } },
        { headers: { 'x-tester': { regex: 'ann|bob' } } },
      ],
      route: [{ destination: { host: 'web', subset: 'canary' } }],
    },
    { name: 'primary', route: [{ destination: { host: 'web', subset: 'stable' }, weight: 100 }] },
  ]);
  const to = (path: string, headers: Record<string, string>): string =>
    workload(routeRequest(matching, 'mesh', host, { path, headers }, random).routed);
  t.equal(to('/api/x', { 'x-canary': 'always' }), 'web-canary', 'path and header both hold');
  t.equal(to('/other', { 'x-canary': 'always' }), 'web', 'the header alone is not the block');
  t.equal(to('/api/x', { 'x-canary': 'sometimes' }), 'web', 'exact means exact');
  t.equal(to('/', { 'x-tester': 'bob' }), 'web-canary', 'the second block, a whole-value regex');
  t.equal(to('/', { 'x-tester': 'bobby' }), 'web', 'a regex matches the whole value');
  t.equal(to('/api/x', {}), 'web', 'no header, no match');

  // mirror without mirrorPercentage copies every request; the caller's answer still comes from the route.
  const all = snapshot([
    {
      name: 'primary',
      route: [{ destination: { host: 'web', subset: 'stable' }, weight: 100 }],
      mirror: { host: 'web', subset: 'canary' },
    },
  ]);
  const sent = Array.from({ length: 200 }, () => routeRequest(all, 'mesh', host, { path: '/' }, random));
  t.ok(
    sent.every((s) => workload(s.routed) === 'web'),
    'callers are answered by stable',
  );
  t.ok(
    sent.every((s) => s.mirrored && workload(s.mirrored) === 'web-canary'),
    'each request copied to the canary',
  );
  // mirrorPercentage: that share of requests is copied.
  const quarter = snapshot([
    {
      name: 'primary',
      route: [{ destination: { host: 'web', subset: 'stable' }, weight: 100 }],
      mirror: { host: 'web', subset: 'canary' },
      mirrorPercentage: { value: 25 },
    },
  ]);
  const copies = Array.from({ length: 4000 }, () => routeRequest(quarter, 'mesh', host, { path: '/' }, random)).filter(
    (s) => s.mirrored,
  ).length;
  t.ok(Math.abs(copies / 4000 - 0.25) < 0.03, `about a quarter copied (${copies} of 4000)`);
  // A mirror to a subset with no endpoints copies nowhere: Envoy drops it, the caller never knows.
  const empty = snapshot([
    {
      name: 'primary',
      route: [{ destination: { host: 'web', subset: 'stable' }, weight: 100 }],
      mirror: { host: 'web', subset: 'none' },
    },
  ]);
  const lost = routeRequest(empty, 'mesh', host, { path: '/' }, random);
  t.equal(workload(lost.routed), 'web');
  t.equal(lost.mirrored?.kind, 'no-healthy-upstream');
});

t.test(
  'HTTPRoute header matches (the spec\'s "HTTP header matching" example) and precedence: more headers win a path tie',
  async (t) => {
    const s = routeSnapshot([
      {
        name: 'main',
        matches: [{ path: { type: 'PathPrefix', value: '/' } }],
        backendRefs: [{ name: 'foo-v1', port: 8080 }],
      },
      {
        name: 'testers',
        matches: [
          { path: { type: 'PathPrefix', value: '/' }, headers: [{ type: 'Exact', name: 'env', value: 'canary' }] },
        ],
        backendRefs: [{ name: 'foo-v2', port: 8080 }],
      },
      {
        name: 'pattern',
        matches: [
          {
            path: { type: 'Exact', value: '/x' },
            headers: [{ type: 'RegularExpression', name: 'user', value: 'a.*' }],
          },
        ],
        backendRefs: [{ name: 'foo-v2', port: 8080 }],
      },
    ]);
    const random = seededRandom(3);
    const to = (path: string, headers: Record<string, string>): string =>
      workloadOf(routeRequest(s, 'gateway', 'foo.example.com', { path, headers }, random).routed);
    t.equal(to('/', { env: 'canary' }), 'v2', 'the header rule wins a path tie, though written later');
    t.equal(to('/', { env: 'stable' }), 'v1', 'exact value only');
    t.equal(to('/', {}), 'v1');
    t.equal(to('/x', { user: 'ann' }), 'v2', 'a regular expression on the whole value');
    t.equal(to('/x', { user: 'bob' }), 'v1');
  },
);

t.test(
  'HTTPRoute RequestMirror: a copy to the mirror backend, in its percent; callers answered by the rule',
  async (t) => {
    const mirrorRule = (requestMirror: NonNullable<NonNullable<HTTPRouteRule['filters']>[number]['requestMirror']>) =>
      routeSnapshot([
        { backendRefs: [{ name: 'foo-v1', port: 8080 }], filters: [{ type: 'RequestMirror', requestMirror }] },
      ]);
    const random = seededRandom(5);
    const send = (s: MeshSnapshot, n: number) =>
      Array.from({ length: n }, () => routeRequest(s, 'gateway', 'foo.example.com', { path: '/' }, random));
    const all = send(mirrorRule({ backendRef: { name: 'foo-v2', port: 8080 } }), 200);
    t.ok(
      all.every((r) => workloadOf(r.routed) === 'v1'),
      'callers are answered by the rule',
    );
    t.ok(
      all.every((r) => r.mirrored && workloadOf(r.mirrored) === 'v2'),
      'no percent: every request copied',
    );
    const half = send(mirrorRule({ backendRef: { name: 'foo-v2', port: 8080 }, percent: 50 }), 4000).filter(
      (r) => r.mirrored,
    );
    t.ok(Math.abs(half.length / 4000 - 0.5) < 0.03, `percent 50 (${half.length} of 4000)`);
    const tenth = send(
      mirrorRule({ backendRef: { name: 'foo-v2', port: 8080 }, fraction: { numerator: 1, denominator: 10 } }),
      4000,
    ).filter((r) => r.mirrored);
    t.ok(Math.abs(tenth.length / 4000 - 0.1) < 0.02, `fraction 1/10 (${tenth.length} of 4000)`);
  },
);
