// The mesh simulator: the one simulated part, standing in for Envoy. It sends synthetic requests
// the way the mesh would route them and exports Istio's standard metrics for Prometheus to scrape.
// With `--istiod`, requests are routed by what istiod pushes to the simulator's proxies over xDS
// (test/cluster/xds-view, read by envoy.ts); without it, by its own reading of the live
// VirtualServices, DestinationRules and HTTPRoutes (routing.ts), the fast path.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { KubeConfig, CoreV1Api, CustomObjectsApi, makeInformer } from '@kubernetes/client-node';
import type { Informer, KubernetesListObject, KubernetesObject, ObjectCache, V1Pod } from '@kubernetes/client-node';
import { Counter, Histogram, Registry } from 'prom-client';
import { routeRequest, fqdn } from './routing.ts';
import { routeByProxies } from './envoy.ts';
import type { ProxyView } from './envoy.ts';
import type {
  MeshSnapshot,
  SimPod,
  SimVirtualService,
  SimDestinationRule,
  SimHTTPRoute,
  SimRequest,
  HttpRoute,
  Routed,
  RoutedRequest,
} from './routing.ts';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '15090' },
    'mesh-rps': { type: 'string', default: '20' },
    'gateway-rps': { type: 'string', default: '20' },
    'poll-ms': { type: 'string', default: '500' },
    /** istiod's plaintext xDS address: route by what it pushes. */
    istiod: { type: 'string' },
    /** The xds-view program (test/cluster/xds-view), the simulator's proxies' xDS client. */
    'xds-view': { type: 'string' },
  },
});

// Istio's default request-duration buckets, in milliseconds.
const istioBuckets = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
];
const labelNames = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'destination_workload',
  'destination_workload_namespace',
  'destination_version',
  'destination_app',
  'destination_canonical_service',
  'response_code',
  'response_flags',
  'request_protocol',
] as const;
type MetricLabels = Record<(typeof labelNames)[number], string>;

const registry = new Registry();
const requests = new Counter({
  name: 'istio_requests_total',
  help: 'Requests, as Istio reports them',
  labelNames,
  registers: [registry],
});
const duration = new Histogram({
  name: 'istio_request_duration_milliseconds',
  help: 'Request duration, as Istio reports it',
  labelNames,
  buckets: istioBuckets,
  registers: [registry],
});

const kc = new KubeConfig();
kc.loadFromDefault();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);

let snapshot: MeshSnapshot = { services: [], pods: [], virtualServices: [], destinationRules: [] };
const serviceRps = new Map<string, number>();
const gatewayHosts = new Map<string, number>();
let synced = false;

const num = (value: string | undefined, fallback: number): number => {
  const n = value === undefined ? NaN : Number(value);
  return Number.isFinite(n) ? n : fallback;
};

function toPod(pod: V1Pod): SimPod {
  const labels = pod.metadata?.labels ?? {};
  const annotations = pod.metadata?.annotations ?? {};
  const owner = pod.metadata?.ownerReferences?.find((o) => o.controller);
  const hash = labels['pod-template-hash'];
  const workload =
    owner?.kind === 'ReplicaSet' && hash && owner.name.endsWith(`-${hash}`)
      ? owner.name.slice(0, -hash.length - 1)
      : (owner?.name ?? pod.metadata?.name ?? 'unknown');
  const ejected = annotations['sim.weir.dev/ejected'] === 'true';
  return {
    namespace: pod.metadata?.namespace ?? '',
    name: pod.metadata?.name ?? '',
    labels,
    ip: pod.status?.podIP,
    ejected,
    // An ejected pod is Ready to Kubernetes, but the callers' proxies (outlier detection) send it nothing.
    ready:
      !pod.metadata?.deletionTimestamp &&
      !ejected &&
      (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    workload,
    errorRate: Math.min(1, Math.max(0, num(annotations['sim.weir.dev/error-rate'], 0))),
    latencyMs: Math.max(0, num(annotations['sim.weir.dev/latency-ms'], 3)),
    refuses: annotations['sim.weir.dev/refuse-connections'] === 'true',
  };
}

interface IstioObject extends KubernetesObject {
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  spec?: {
    hosts?: string[];
    gateways?: string[];
    http?: HttpRoute[];
    host?: string;
    subsets?: { name: string; labels?: Record<string, string> }[];
  };
}

interface HTTPRouteObject extends KubernetesObject {
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  spec?: Partial<Pick<SimHTTPRoute, 'parentRefs' | 'hostnames' | 'rules'>>;
}

/**
 * The objects routing reads, from watches: listing them all every poll cost the API server and
 * this process most of a core with 1,000 Services (the scale benchmark's cluster).
 */
let changed = true;
function follow<T extends KubernetesObject>(
  path: string,
  list: () => Promise<KubernetesListObject<T>>,
): Informer<T> & ObjectCache<T> {
  const informer = makeInformer(kc, path, list);
  for (const event of ['add', 'update', 'delete'] as const)
    informer.on(event, () => {
      changed = true;
    });
  informer.on('error', (error: unknown) => {
    process.stderr.write(`mesh: watch of ${path} failed (${String(error)}); restarting\n`);
    setTimeout(() => void informer.start().catch(() => undefined), 1000);
  });
  return informer;
}

const customList =
  <T extends KubernetesObject>(group: string, plural: string) =>
  async (): Promise<KubernetesListObject<T>> =>
    (await custom.listClusterCustomObject({ group, version: 'v1', plural })) as KubernetesListObject<T>;
const watched = {
  services: follow('/api/v1/services', () => core.listServiceForAllNamespaces()),
  pods: follow('/api/v1/pods', () => core.listPodForAllNamespaces()),
  virtualServices: follow(
    '/apis/networking.istio.io/v1/virtualservices',
    customList<IstioObject>('networking.istio.io', 'virtualservices'),
  ),
  destinationRules: follow(
    '/apis/networking.istio.io/v1/destinationrules',
    customList<IstioObject>('networking.istio.io', 'destinationrules'),
  ),
  httpRoutes: follow(
    '/apis/gateway.networking.k8s.io/v1/httproutes',
    customList<HTTPRouteObject>('gateway.networking.k8s.io', 'httproutes'),
  ),
};
/** HTTPRoutes are none where the cluster does not serve the Gateway API. */
let gatewayApi = true;

/** Rebuilds the routing snapshot from the watches, when one of them changed since the last. */
function refresh(): void {
  if (!changed) return;
  changed = false;
  const services = watched.services.list();
  const pods = watched.pods.list();
  const vss = watched.virtualServices.list();
  const drs = watched.destinationRules.list();
  const hrs = gatewayApi ? watched.httpRoutes.list() : [];
  const meshDefault = num(args['mesh-rps'], 20);
  const gatewayDefault = num(args['gateway-rps'], 20);
  serviceRps.clear();
  gatewayHosts.clear();
  const simServices = services
    // Every Service with a selector gets traffic, in `default` too (the seed's manifests land there);
    // selector-less Services (the API server's own `kubernetes`) have no pods to route to.
    .filter((s) => s.spec?.selector !== undefined && Object.keys(s.spec.selector).length > 0)
    .map((s) => {
      const svc = {
        namespace: s.metadata?.namespace ?? '',
        name: s.metadata?.name ?? '',
        selector: s.spec?.selector ?? {},
        ports: (s.spec?.ports ?? []).map((p) => p.port),
      };
      // A Service that selects one half (weir.dev/track) stands behind the Service callers address;
      // one Istio made for a Gateway API Gateway's proxies is where north-south traffic enters.
      const half = s.spec?.selector?.['weir.dev/track'] !== undefined;
      const gateway = s.metadata?.labels?.[gatewayNameLabel] !== undefined;
      if (!half && !gateway) serviceRps.set(fqdn(svc), num(s.metadata?.annotations?.['sim.weir.dev/rps'], meshDefault));
      return svc;
    });
  const virtualServices: SimVirtualService[] = vss.map((vs) => {
    const gateways = vs.spec?.gateways ?? [];
    for (const host of vs.spec?.hosts ?? []) {
      if (gateways.some((g) => g !== 'mesh') && !host.includes('*'))
        gatewayHosts.set(host, num(vs.metadata?.annotations?.['sim.weir.dev/rps'], gatewayDefault));
    }
    return {
      namespace: vs.metadata?.namespace ?? '',
      name: vs.metadata?.name ?? '',
      hosts: vs.spec?.hosts ?? [],
      gateways,
      http: vs.spec?.http ?? [],
    };
  });
  const destinationRules: SimDestinationRule[] = drs.map((dr) => ({
    namespace: dr.metadata?.namespace ?? '',
    host: dr.spec?.host ?? '',
    subsets: (dr.spec?.subsets ?? []).map((s) => ({ name: s.name, labels: s.labels ?? {} })),
  }));
  const httpRoutes: SimHTTPRoute[] = hrs.map((r) => {
    const route = {
      namespace: r.metadata?.namespace ?? '',
      name: r.metadata?.name ?? '',
      parentRefs: r.spec?.parentRefs ?? [],
      hostnames: r.spec?.hostnames ?? [],
      rules: r.spec?.rules ?? [],
    };
    // A route bound to a Gateway brings north-south traffic for each of its own hostnames.
    const toGateway = route.parentRefs.some((p) => (p.kind ?? 'Gateway') === 'Gateway');
    for (const host of route.hostnames)
      if (toGateway && !host.includes('*'))
        gatewayHosts.set(host, num(r.metadata?.annotations?.['sim.weir.dev/rps'], gatewayDefault));
    return route;
  });
  // Callers address a Service, not the halves behind it: a backend of an HTTPRoute is reached through the route.
  for (const route of httpRoutes)
    for (const rule of route.rules)
      for (const ref of rule.backendRefs ?? [])
        if ((ref.group ?? '') === '' && (ref.kind ?? 'Service') === 'Service')
          serviceRps.delete(fqdn({ name: ref.name, namespace: ref.namespace ?? route.namespace }));
  snapshot = { services: simServices, pods: pods.map(toPod), virtualServices, destinationRules, httpRoutes };
  podsByIp = new Map(snapshot.pods.flatMap((p) => (p.ip ? [[p.ip, p] as const] : [])));
  if (xds) followRouters(pods);
  synced = true;
}

// Routing by istiod (--istiod): what each of the simulator's proxies was last sent, by entry.
const gatewayNameLabel = 'gateway.networking.k8s.io/gateway-name';
const xds = args.istiod !== undefined && args['xds-view'] !== undefined ? startXdsView() : undefined;
const views = new Map<string, ProxyView>();
/** When each cluster a proxy holds first reached it, by entry then cluster: the push a test awaits. */
const clustersSeen = new Map<string, Map<string, number>>();
/** When a route of the proxy first sent requests to each cluster (a weight above 0, a mirror). */
const clustersRouted = new Map<string, Map<string, number>>();
let podsByIp = new Map<string, SimPod>();

/** Runs the simulator's xDS client; its stdin takes the gateway proxies to follow, its stdout brings their config. */
function startXdsView(): { routers: (line: string) => void } {
  let child: ReturnType<typeof spawn> | undefined;
  let last = '';
  const begin = (): void => {
    const c = spawn(args['xds-view'] ?? '', ['--istiod', args.istiod ?? ''], { stdio: ['pipe', 'pipe', 'inherit'] });
    child = c;
    // A write to a client that just exited is lost, not fatal: the restarted one is sent the list.
    c.stdin?.on('error', () => undefined);
    if (last) c.stdin?.write(`${last}\n`);
    createInterface({ input: c.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        received(JSON.parse(line) as ProxyView);
      } catch (error) {
        process.stderr.write(`mesh: unreadable xds-view line: ${String(error)}\n`);
      }
    });
    c.on('exit', (code) => {
      process.stderr.write(`mesh: xds-view exited (${String(code)}); restarting\n`);
      setTimeout(begin, 1000);
    });
  };
  begin();
  process.on('exit', () => child?.kill());
  return {
    routers: (line: string): void => {
      if (line === last) return;
      last = line;
      child?.stdin?.write(`${line}\n`);
    },
  };
}

function received(view: ProxyView): void {
  if (view.gone) {
    views.delete(view.entry);
    clustersSeen.delete(view.entry);
    clustersRouted.delete(view.entry);
    return;
  }
  views.set(view.entry, view);
  track(clustersSeen, view, new Set(view.clusters ?? []));
  track(clustersRouted, view, routedClusters(view));
}

/** Keeps, per cluster present now, the push it first arrived with; forgets those gone. */
function track(times: Map<string, Map<string, number>>, view: ProxyView, now: Set<string>): void {
  const since = times.get(view.entry) ?? new Map<string, number>();
  for (const name of now) if (!since.has(name)) since.set(name, view.pushedAt);
  for (const name of since.keys()) if (!now.has(name)) since.delete(name);
  times.set(view.entry, since);
}

function routedClusters(view: ProxyView): Set<string> {
  const routes = (view.routes ?? []).flatMap((c) => (c.virtualHosts ?? []).flatMap((vh) => vh.routes ?? []));
  return new Set(
    routes.flatMap((r) => [
      ...(r.cluster ? [r.cluster] : []),
      ...(r.weightedClusters ?? []).filter((c) => c.weight > 0).map((c) => c.name),
      ...(r.mirrors ?? []).filter((m) => m.percent > 0).map((m) => m.cluster),
    ]),
  );
}

/**
 * The gateway proxies: one per gateway workload with a Ready pod (the ingress gateway, and each
 * Deployment Istio made for a Gateway API Gateway), identified to istiod as that pod.
 */
function followRouters(pods: readonly V1Pod[]): void {
  const routers = new Map<string, { key: string; id: string; namespace: string; labels: Record<string, string> }>();
  for (const pod of pods) {
    const labels = pod.metadata?.labels ?? {};
    const ip = pod.status?.podIP;
    const ns = pod.metadata?.namespace ?? '';
    const workload = labels[gatewayNameLabel] ?? (labels.istio === 'ingressgateway' ? labels.app : undefined);
    if (!workload || !ip || pod.metadata?.deletionTimestamp) continue;
    const key = `${ns}/${workload}`;
    if (routers.has(key)) continue;
    const id = `router~${ip}~${pod.metadata?.name ?? workload}.${ns}~${ns}.svc.cluster.local`;
    routers.set(key, { key, id, namespace: ns, labels });
  }
  xds?.routers(JSON.stringify({ routers: [...routers.values()].sort((a, b) => a.key.localeCompare(b.key)) }));
}

/** Routes one request by istiod's config or by the simulator's own reading of the objects. */
function routeOne(entry: 'mesh' | 'gateway', host: string, request: SimRequest): RoutedRequest {
  return xds
    ? routeByProxies(views, snapshot, podsByIp, entry, host, request, Math.random)
    : routeRequest(snapshot, entry, host, request, Math.random);
}

const callers = {
  mesh: { source_workload: 'mesh-client', source_workload_namespace: 'weir-mesh' },
  gateway: { source_workload: 'istio-ingressgateway', source_workload_namespace: 'istio-system' },
} as const;

function record(entry: 'mesh' | 'gateway', routed: Routed): void {
  const source = callers[entry];
  if (routed.kind === 'no-route') return;
  if (routed.kind === 'invalid-backend') {
    // Envoy answers itself, with no upstream cluster to name: only the source reports.
    const labels: MetricLabels = {
      ...source,
      reporter: 'source',
      destination_service: 'unknown',
      destination_service_name: 'unknown',
      destination_service_namespace: 'unknown',
      destination_workload: 'unknown',
      destination_workload_namespace: 'unknown',
      destination_version: 'unknown',
      destination_app: 'unknown',
      destination_canonical_service: 'unknown',
      response_code: '500',
      response_flags: 'NC',
      request_protocol: 'http',
    };
    requests.inc(labels);
    duration.observe(labels, 0.2);
    return;
  }
  const service = routed.service;
  const base = {
    ...source,
    destination_service: service ? fqdn(service) : 'unknown',
    destination_service_name: service?.name ?? 'unknown',
    destination_service_namespace: service?.namespace ?? 'unknown',
    request_protocol: 'http',
  };
  const refused = routed.kind === 'pod' && routed.pod.refuses === true;
  if (routed.kind === 'no-healthy-upstream' || routed.kind === 'no-cluster' || refused) {
    // No upstream answered, so only the source side reports, as in a real mesh: UH when there was
    // no healthy endpoint, NC when the route named a cluster the proxy lacks, UF when the chosen
    // endpoint refused the connection.
    const labels: MetricLabels = {
      ...base,
      reporter: 'source',
      destination_workload: 'unknown',
      destination_workload_namespace: 'unknown',
      destination_version: 'unknown',
      destination_app: 'unknown',
      destination_canonical_service: 'unknown',
      response_code: '503',
      response_flags: refused ? 'UF' : routed.kind === 'no-cluster' ? 'NC' : 'UH',
    };
    requests.inc(labels);
    duration.observe(labels, 0.2);
    return;
  }
  answer(base, routed.pod, ['source', 'destination']);
}

type PodLabels = `destination_${'workload' | 'workload_namespace' | 'version' | 'app' | 'canonical_service'}`;
/** A request's labels before a pod answers it. */
type RequestLabels = Omit<MetricLabels, 'reporter' | PodLabels | 'response_code' | 'response_flags'>;

/**
 * A pod answers: both proxies report it, or — for a mirrored copy, whose answer Envoy drops
 * before the caller — only the pod's own proxy. Returns whether it failed.
 */
function answer(base: RequestLabels, pod: SimPod, reporters: ('source' | 'destination')[]): boolean {
  const failed = Math.random() < pod.errorRate;
  const latency = pod.latencyMs * (0.5 + Math.random());
  for (const reporter of reporters) {
    const labels: MetricLabels = {
      ...base,
      reporter,
      destination_workload: pod.workload,
      destination_workload_namespace: pod.namespace,
      destination_version: pod.labels.version ?? 'unknown',
      destination_app: pod.labels.app ?? 'unknown',
      destination_canonical_service: pod.labels['service.istio.io/canonical-name'] ?? pod.labels.app ?? pod.workload,
      response_code: failed ? '500' : '200',
      response_flags: '-',
    };
    requests.inc(labels);
    duration.observe(labels, latency);
  }
  return failed;
}

/** Sends one request and its mirrored copy, if any; the copy's answer is reported by its pod alone. */
function sendOne(entry: 'mesh' | 'gateway', sent: RoutedRequest): void {
  record(entry, sent.routed);
  const copy = sent.mirrored;
  if (copy?.kind !== 'pod') return;
  answer(
    {
      ...callers[entry],
      destination_service: fqdn(copy.service),
      destination_service_name: copy.service.name,
      destination_service_namespace: copy.service.namespace,
      request_protocol: 'http',
    },
    copy.pod,
    ['destination'],
  );
}

const tickMs = 100;
const owed = new Map<string, number>();
function send(entry: 'mesh' | 'gateway', host: string, rps: number): void {
  const key = `${entry}|${host}`;
  let due = (owed.get(key) ?? 0) + (rps * tickMs) / 1000;
  for (; due >= 1; due--) sendOne(entry, routeOne(entry, host, { path: '/' }));
  owed.set(key, due);
}

setInterval(() => {
  for (const [host, rps] of serviceRps) send('mesh', host, rps);
  for (const [host, rps] of gatewayHosts) send('gateway', host, rps);
}, tickMs);

/**
 * One request on purpose, as a tester would send it (`/request?host=…&entry=mesh|gateway&path=/&header=name=value`):
 * routed and reported like the synthetic ones, and answered with where it went.
 */
function testerRequest(url: string): { kind: Routed['kind']; workload?: string; mirroredTo?: string } {
  const query = new URL(url, 'http://mesh').searchParams;
  const entry = query.get('entry') === 'gateway' ? 'gateway' : 'mesh';
  const headers = Object.fromEntries(
    query.getAll('header').map((h) => [h.slice(0, h.indexOf('=')).toLowerCase(), h.slice(h.indexOf('=') + 1)]),
  );
  const sent = routeOne(entry, query.get('host') ?? '', { path: query.get('path') ?? '/', headers });
  sendOne(entry, sent);
  const routed = sent.routed;
  const mirrored = sent.mirrored?.kind === 'pod' ? { mirroredTo: sent.mirrored.pod.workload } : {};
  return routed.kind === 'pod'
    ? { kind: routed.kind, workload: routed.pod.workload, ...mirrored }
    : { kind: routed.kind, ...mirrored };
}

/** Starts the watches (each lists once, then follows), retrying until the API server answers. */
async function startWatches(): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const { httpRoutes, ...always } = watched;
      await Promise.all(Object.values(always).map((w) => w.start()));
      await httpRoutes.start().catch((error: unknown) => {
        if ((error as { code?: number }).code !== 404) throw error;
        gatewayApi = false;
      });
      return;
    } catch (error) {
      if (attempt % 20 === 1)
        process.stderr.write(`mesh: watches not started: ${error instanceof Error ? error.message : String(error)}\n`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

let failures = 0;
function poll(): void {
  try {
    refresh();
    failures = 0;
  } catch (error) {
    if (++failures % 20 === 1)
      process.stderr.write(`mesh: refresh failed: ${error instanceof Error ? error.message : String(error)}\n`);
  }
  setTimeout(poll, num(args['poll-ms'], 500));
}
void startWatches().then(poll);

const server = createServer((req, res) => {
  if (req.url === '/metrics') {
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) => res.writeHead(500).end(String(error)),
    );
  } else if (req.url === '/healthz') {
    // Routing by istiod waits for the mesh client's first push too.
    const ready = synced && (!xds || views.has('mesh'));
    res.writeHead(ready ? 200 : 503).end(ready ? 'ok' : 'not synced');
  } else if (req.url?.startsWith('/xds?entry=')) {
    // One proxy's whole config, as the simulator routes by it: for a person debugging a route.
    const view = views.get(new URL(req.url, 'http://mesh').searchParams.get('entry') ?? '');
    res.writeHead(view ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(view ?? null));
  } else if (req.url === '/xds') {
    // Each proxy's last push, when each of its clusters first reached it, and when a route first
    // sent requests to each (ms since the epoch).
    const body = Object.fromEntries(
      [...views].map(([entry, v]) => [
        entry,
        {
          pushedAt: v.pushedAt,
          clusters: Object.fromEntries(clustersSeen.get(entry) ?? []),
          routed: Object.fromEntries(clustersRouted.get(entry) ?? []),
        },
      ]),
    );
    res.writeHead(xds ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  } else if (req.url?.startsWith('/request?')) {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(testerRequest(req.url)));
  } else {
    res.writeHead(404).end();
  }
});
server.listen(Number(args.port), '127.0.0.1');
const stop = (): void => void server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
