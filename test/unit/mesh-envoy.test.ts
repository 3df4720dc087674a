// Routing by istiod's pushed config (issue 18): the reader of xds-view's output is tested alone,
// on config of the shape istiod sends (names and domains as Istio writes them).
import t from 'tap';
import { parseCluster, routeByProxies, routeMatches, virtualHostFor } from '../mesh/envoy.ts';
import type { ProxyView, XdsRoute, XdsRouteConfig } from '../mesh/envoy.ts';
import type { MeshSnapshot, SimPod } from '../mesh/routing.ts';
import { seededRandom } from '../helpers/model.ts';

const host = 'web.ns.svc.cluster.local';
const cluster = (subset: string): string => `outbound|8080|${subset}|${host}`;

const pod = (name: string, ip: string, extra: Partial<SimPod> = {}): SimPod => ({
  namespace: 'ns',
  name,
  labels: { app: 'web' },
  ready: true,
  workload: name.replace(/-\d$/, ''),
  errorRate: 0,
  latencyMs: 1,
  ip,
  ...extra,
});

const pods = [pod('stable-0', '10.244.0.1'), pod('canary-0', '10.244.0.2'), pod('canary-1', '10.244.0.3')];
const snapshot: MeshSnapshot = {
  services: [{ namespace: 'ns', name: 'web', selector: { app: 'web' }, ports: [8080] }],
  pods,
  virtualServices: [],
  destinationRules: [],
};
const podsByIp = new Map(pods.map((p) => [p.ip ?? '', p]));

const meshView = (routes: XdsRoute[], extra: Partial<ProxyView> = {}): ProxyView => ({
  entry: 'mesh',
  // A sniffed port's route configuration is the Service's own, with one catch-all virtual host.
  routes: [{ name: `${host}:8080`, virtualHosts: [{ name: `${host}:8080`, domains: ['*'], routes }] }],
  clusters: [cluster(''), cluster('stable'), cluster('canary'), cluster('empty')],
  endpoints: {
    [cluster('')]: [{ address: '10.244.0.1', port: 80, healthy: true }],
    [cluster('stable')]: [{ address: '10.244.0.1', port: 80, healthy: true }],
    [cluster('canary')]: [
      { address: '10.244.0.2', port: 80, healthy: true },
      { address: '10.244.0.3', port: 80, healthy: true },
    ],
    [cluster('empty')]: null,
  },
  pushedAt: 0,
  ...extra,
});

const sendMany = (view: ProxyView, n: number, seed = 7): Map<string, number> => {
  const random = seededRandom(seed);
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const { routed } = routeByProxies(
      new Map([['mesh', view]]),
      snapshot,
      podsByIp,
      'mesh',
      host,
      { path: '/' },
      random,
    );
    const key = routed.kind === 'pod' ? routed.pod.workload : routed.kind;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
};

t.test('weighted clusters split traffic by their weights, within sampling error', async (t) => {
  const view = meshView([
    {
      match: { prefix: '/' },
      weightedClusters: [
        { name: cluster('stable'), weight: 90 },
        { name: cluster('canary'), weight: 10 },
      ],
    },
  ]);
  const counts = sendMany(view, 20_000);
  const share = (counts.get('canary') ?? 0) / 20_000;
  t.ok(Math.abs(share - 0.1) < 0.01, `canary share ${share.toFixed(3)} is 0.10 ± 0.01`);
  t.equal(counts.get('stable'), 20_000 - (counts.get('canary') ?? 0), 'the rest went to stable');
});

t.test('a cluster istiod did not send is 503 NC; one with no endpoint is 503 UH', async (t) => {
  t.same([...sendMany(meshView([{ match: { prefix: '/' }, cluster: cluster('v9') }]), 10)], [['no-cluster', 10]]);
  t.same(
    [...sendMany(meshView([{ match: { prefix: '/' }, cluster: cluster('empty') }]), 10)],
    [['no-healthy-upstream', 10]],
  );
  const ejected = new Map(podsByIp);
  ejected.set('10.244.0.1', pod('stable-0', '10.244.0.1', { ejected: true }));
  const view = meshView([{ match: { prefix: '/' }, cluster: cluster('stable') }]);
  const { routed } = routeByProxies(
    new Map([['mesh', view]]),
    snapshot,
    ejected,
    'mesh',
    host,
    { path: '/' },
    Math.random,
  );
  t.equal(routed.kind, 'no-healthy-upstream', 'an endpoint the callers ejected takes no request');
  const unhealthy = meshView([{ match: { prefix: '/' }, cluster: cluster('stable') }], {
    endpoints: { [cluster('stable')]: [{ address: '10.244.0.1', port: 80, healthy: false }] },
  });
  t.same([...sendMany(unhealthy, 5)], [['no-healthy-upstream', 5]], 'an unhealthy endpoint takes none either');
});

t.test('the first route whose match holds wins, headers and paths as Envoy matches them', async (t) => {
  const routes: XdsRoute[] = [
    {
      name: 'testers',
      match: { prefix: '/', headers: [{ name: 'x-canary', string: { exact: 'yes' } }] },
      cluster: cluster('canary'),
    },
    { name: 'api', match: { pathSeparatedPrefix: '/api' }, cluster: cluster('empty') },
    { name: 'rest', match: { prefix: '/' }, cluster: cluster('stable') },
  ];
  const at = (path: string, headers: Record<string, string> = {}): string | undefined =>
    routes.find((r) => routeMatches(r, { path, headers }, host))?.name;
  t.equal(at('/', { 'x-canary': 'yes' }), 'testers');
  t.equal(at('/', { 'x-canary': 'no' }), 'rest');
  t.equal(at('/api/v1?x=1'), 'api', 'a path-separated prefix matches a deeper path, query aside');
  t.equal(at('/apiary'), 'rest', 'but not a longer path element');
  t.ok(
    routeMatches({ match: { regex: '/v[0-9]+/.*' } }, { path: '/v2/items' }, host),
    'a regex matches the whole path',
  );
  t.notOk(routeMatches({ match: { path: '/exact' } }, { path: '/exact/more' }, host), 'an exact path is exact');
  t.ok(
    routeMatches({ match: { headers: [{ name: 'x-debug', present: true, invert: true }] } }, { path: '/' }, host),
    'an inverted presence match holds on a request without the header',
  );
  t.ok(
    routeMatches(
      { match: { headers: [{ name: 'x-user', string: { prefix: 'QA-', ignoreCase: true } }] } },
      { path: '/', headers: { 'x-user': 'qa-7' } },
      host,
    ),
    'ignoreCase',
  );
});

t.test('a mirror policy sends copies of its share to its cluster', async (t) => {
  const view = meshView([
    { match: { prefix: '/' }, cluster: cluster('stable'), mirrors: [{ cluster: cluster('canary'), percent: 25 }] },
  ]);
  const random = seededRandom(3);
  let copies = 0;
  let toStable = 0;
  for (let i = 0; i < 8_000; i++) {
    const sent = routeByProxies(new Map([['mesh', view]]), snapshot, podsByIp, 'mesh', host, { path: '/' }, random);
    if (sent.mirrored?.kind === 'pod' && sent.mirrored.pod.workload === 'canary') copies++;
    if (sent.routed.kind === 'pod' && sent.routed.pod.workload === 'stable') toStable++;
  }
  t.equal(toStable, 8_000, 'every original went to its route');
  t.ok(Math.abs(copies / 8_000 - 0.25) < 0.02, `mirrored share ${(copies / 8_000).toFixed(3)} is 0.25 ± 0.02`);
});

t.test('virtual hosts: exact domain, then the longest suffix wildcard, then prefix, then *', async (t) => {
  const config: XdsRouteConfig = {
    name: '80',
    virtualHosts: [
      { name: 'any', domains: ['*'], routes: [] },
      { name: 'prefix', domains: ['web.*'], routes: [] },
      { name: 'short', domains: ['*.com'], routes: [] },
      { name: 'long', domains: ['*.example.com'], routes: [] },
      { name: 'exact', domains: ['web.example.com', 'web.example.com:80'], routes: [] },
    ],
  };
  t.equal(virtualHostFor(config, ['web.example.com'])?.name, 'exact');
  t.equal(virtualHostFor(config, ['api.example.com'])?.name, 'long');
  t.equal(virtualHostFor(config, ['web.example.org'])?.name, 'prefix');
  t.equal(virtualHostFor(config, ['other.org'])?.name, 'any');
  t.equal(virtualHostFor(config, ['other.org'], false), undefined, 'no catch-all when asked not to');
});

t.test('a gateway that names the host wins over a catch-all one; an unknown host has no route', async (t) => {
  const router = (entry: string, domains: string[], subset: string): ProxyView => ({
    ...meshView([]),
    entry,
    routes: [
      {
        name: 'http.80',
        virtualHosts: [{ name: 'vh', domains, routes: [{ match: { prefix: '/' }, cluster: cluster(subset) }] }],
      },
    ],
  });
  const views = new Map([
    ['router:istio-system/istio-ingressgateway', router('a', ['*'], 'stable')],
    ['router:ns/public', router('b', ['web.example.com'], 'canary')],
  ]);
  const to = (h: string): string | undefined => {
    const { routed } = routeByProxies(views, snapshot, podsByIp, 'gateway', h, { path: '/' }, Math.random);
    return routed.kind === 'pod' ? routed.pod.workload : routed.kind;
  };
  t.equal(to('web.example.com'), 'canary');
  t.equal(to('shop.example.com'), 'stable', 'the catch-all takes what no gateway names');
  views.delete('router:istio-system/istio-ingressgateway');
  t.equal(to('shop.example.com'), 'no-route');
  t.equal(
    routeByProxies(new Map(), snapshot, podsByIp, 'mesh', host, { path: '/' }, Math.random).routed.kind,
    'no-route',
    'no push yet: nowhere to go',
  );
});

t.test("Istio's cluster names", async (t) => {
  t.same(parseCluster(cluster('canary')), { port: 8080, subset: 'canary', host });
  t.same(parseCluster(cluster('')), { port: 8080, subset: '', host });
  t.equal(parseCluster('PassthroughCluster'), undefined);
  t.equal(parseCluster('inbound|80||'), undefined);
});
