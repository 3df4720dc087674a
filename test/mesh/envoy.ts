// How Envoy routes one request by the configuration istiod pushed to it, as a pure function of
// that configuration (what test/cluster/xds-view prints for each proxy: route configurations,
// clusters, endpoints) and of the pods behind the endpoint addresses. No Istio object is read
// here: istiod has already turned VirtualServices, DestinationRules and HTTPRoutes into these.
import { fqdn } from './routing.ts';
import type { MeshSnapshot, Routed, RoutedRequest, SimPod, SimRequest, SimService } from './routing.ts';

export interface XdsStringMatch {
  exact?: string;
  prefix?: string;
  suffix?: string;
  contains?: string;
  regex?: string;
  ignoreCase?: boolean;
}

export interface XdsHeaderMatch {
  name: string;
  string?: XdsStringMatch;
  present?: boolean;
  invert?: boolean;
}

export interface XdsRoute {
  name?: string;
  match: { prefix?: string; path?: string; regex?: string; pathSeparatedPrefix?: string; headers?: XdsHeaderMatch[] };
  cluster?: string;
  weightedClusters?: { name: string; weight: number }[];
  mirrors?: { cluster: string; percent: number }[];
  /** The route answers itself (a direct response, a redirect) with this status. */
  directStatus?: number;
}

export interface XdsVirtualHost {
  name: string;
  domains: string[] | null;
  routes: XdsRoute[] | null;
}

export interface XdsRouteConfig {
  name: string;
  virtualHosts: XdsVirtualHost[] | null;
}

/** What one proxy holds. Go's empty lists arrive as null. */
export interface ProxyView {
  /** `mesh` (the mesh client's sidecar) or `router:<namespace>/<workload>` (a gateway). */
  entry: string;
  routes: XdsRouteConfig[] | null;
  clusters: string[] | null;
  endpoints: Record<string, { address: string; port: number; healthy: boolean }[] | null>;
  pushedAt: number;
  gone?: boolean;
}

/** The Service and subset an Istio outbound cluster stands for: `outbound|<port>|<subset>|<host>`. */
export function parseCluster(name: string): { port: number; subset: string; host: string } | undefined {
  const [direction, port, subset, host] = name.split('|');
  if (direction !== 'outbound' || port === undefined || subset === undefined || !host) return undefined;
  return { port: Number(port), subset, host };
}

function stringHolds(m: XdsStringMatch, value: string): boolean {
  const v = m.ignoreCase ? value.toLowerCase() : value;
  const p = (s: string): string => (m.ignoreCase ? s.toLowerCase() : s);
  if (m.exact !== undefined) return v === p(m.exact);
  if (m.prefix !== undefined) return v.startsWith(p(m.prefix));
  if (m.suffix !== undefined) return v.endsWith(p(m.suffix));
  if (m.contains !== undefined) return v.includes(p(m.contains));
  if (m.regex !== undefined) return new RegExp(`^(?:${m.regex})$`, m.ignoreCase ? 'i' : '').test(value);
  return true;
}

function headerHolds(h: XdsHeaderMatch, headers: Record<string, string>): boolean {
  const value = headers[h.name];
  let holds: boolean;
  if (h.present !== undefined) holds = (value !== undefined) === h.present;
  else holds = value !== undefined && (h.string === undefined || stringHolds(h.string, value));
  return h.invert ? !holds : holds;
}

/** Envoy's RouteMatch: one path specifier (the path without its query), then every header matcher. */
export function routeMatches(r: XdsRoute, request: SimRequest, authority: string): boolean {
  const path = request.path.split('?')[0] ?? '/';
  const m = r.match;
  if (m.prefix !== undefined && !path.startsWith(m.prefix)) return false;
  if (m.path !== undefined && path !== m.path) return false;
  if (m.regex !== undefined && !new RegExp(`^(?:${m.regex})$`).test(path)) return false;
  if (m.pathSeparatedPrefix !== undefined) {
    const p = m.pathSeparatedPrefix;
    if (path !== p && !path.startsWith(`${p}/`)) return false;
  }
  const headers = { ...request.headers, ':authority': authority, ':path': request.path };
  return (m.headers ?? []).every((h) => headerHolds(h, headers));
}

/**
 * Envoy's virtual host selection: an exact domain, then the longest `*.suffix`, then the longest
 * `prefix*`, then `*` (unless `catchAll` is false). `authorities` are the Host values tried (with
 * and without the port).
 */
export function virtualHostFor(
  config: XdsRouteConfig,
  authorities: string[],
  catchAll = true,
): XdsVirtualHost | undefined {
  const hosts = config.virtualHosts ?? [];
  const domains = (vh: XdsVirtualHost): string[] => vh.domains ?? [];
  for (const a of authorities) {
    const exact = hosts.find((vh) => domains(vh).includes(a));
    if (exact) return exact;
  }
  let best: { vh: XdsVirtualHost; rank: number } | undefined;
  for (const vh of hosts)
    for (const d of domains(vh)) {
      const suffix = d.startsWith('*') && d.length > 1 && authorities.some((a) => a.endsWith(d.slice(1)));
      const prefix = d.endsWith('*') && d.length > 1 && authorities.some((a) => a.startsWith(d.slice(0, -1)));
      // Suffix wildcards outrank prefix wildcards; within a kind, the longer one wins.
      const rank = suffix ? 2_000 + d.length : prefix ? 1_000 + d.length : 0;
      if (rank > (best?.rank ?? 0)) best = { vh, rank };
    }
  return best?.vh ?? (catchAll ? hosts.find((vh) => domains(vh).includes('*')) : undefined);
}

/** The Service behind a cluster's host, as the simulator knows it, or one named by the host alone. */
function serviceOf(snapshot: MeshSnapshot, host: string): SimService {
  const known = snapshot.services.find((s) => fqdn(s) === host);
  if (known) return known;
  const [name = host, namespace = ''] = host.split('.');
  return { name, namespace, selector: {} };
}

/**
 * A cluster's pick: one of its healthy endpoints, by address to a pod. A cluster istiod did not
 * send is Envoy's 503 NC; one with no endpoint left is 503 UH. Pods the callers' proxies ejected
 * (the simulator's outlier detection) are skipped.
 */
export function pickFromCluster(
  view: ProxyView,
  snapshot: MeshSnapshot,
  podsByIp: Map<string, SimPod>,
  cluster: string,
  random: () => number,
): Routed {
  const parsed = parseCluster(cluster);
  const service = parsed ? serviceOf(snapshot, parsed.host) : undefined;
  if (!(view.clusters ?? []).includes(cluster)) return { kind: 'no-cluster', service };
  const pods = (view.endpoints[cluster] ?? [])
    .filter((e) => e.healthy)
    .map((e) => podsByIp.get(e.address))
    .filter((p): p is SimPod => p !== undefined && !p.ejected);
  const pod = pods[Math.floor(random() * pods.length)];
  if (!pod || !service) return { kind: 'no-healthy-upstream', service };
  return { kind: 'pod', service, pod };
}

function pickCluster(r: XdsRoute, random: () => number): string | undefined {
  if (r.cluster) return r.cluster;
  const shares = r.weightedClusters ?? [];
  const total = shares.reduce((sum, c) => sum + c.weight, 0);
  if (total <= 0) return undefined;
  let point = random() * total;
  return (shares.find((c) => (point -= c.weight) < 0) ?? shares[shares.length - 1])?.name;
}

/** Where a request for `host` (at `port`, when known) goes through this route configuration, if it serves the host. */
function routeThrough(
  config: XdsRouteConfig,
  view: ProxyView,
  snapshot: MeshSnapshot,
  podsByIp: Map<string, SimPod>,
  target: { host: string; port?: number; catchAll?: boolean },
  request: SimRequest,
  random: () => number,
): RoutedRequest | undefined {
  const authorities = target.port === undefined ? [target.host] : [target.host, `${target.host}:${target.port}`];
  const vh = virtualHostFor(config, authorities, target.catchAll);
  if (!vh) return undefined;
  // The first route whose match holds wins, in the order istiod wrote them.
  const r = (vh.routes ?? []).find((candidate) => routeMatches(candidate, request, target.host));
  if (!r) return { routed: { kind: 'no-route' } };
  if (r.directStatus !== undefined)
    return { routed: r.directStatus >= 500 ? { kind: 'invalid-backend' } : { kind: 'no-route' } };
  const cluster = pickCluster(r, random);
  // A route with no cluster to send to is istiod's answer to a backend that does not resolve.
  const routed = cluster
    ? pickFromCluster(view, snapshot, podsByIp, cluster, random)
    : { kind: 'invalid-backend' as const };
  const mirror = (r.mirrors ?? []).find((m) => random() * 100 < m.percent);
  return mirror ? { routed, mirrored: pickFromCluster(view, snapshot, podsByIp, mirror.cluster, random) } : { routed };
}

/**
 * Routes one request the way the proxies istiod configured would. `mesh`: the mesh client's
 * sidecar, through the route configuration Istio names for the Service's port (`<host>:<port>`
 * for a port whose protocol is sniffed, `<port>` for an HTTP one). `gateway`: whichever gateway
 * proxy has a virtual host for the host.
 */
export function routeByProxies(
  views: ReadonlyMap<string, ProxyView>,
  snapshot: MeshSnapshot,
  podsByIp: Map<string, SimPod>,
  entry: 'mesh' | 'gateway',
  host: string,
  request: SimRequest,
  random: () => number,
): RoutedRequest {
  if (entry === 'mesh') {
    const view = views.get('mesh');
    const port = snapshot.services.find((s) => fqdn(s) === host)?.ports?.[0];
    if (!view || port === undefined) return { routed: { kind: 'no-route' } };
    for (const name of [`${host}:${port}`, String(port)]) {
      const config = (view.routes ?? []).find((c) => c.name === name);
      const sent = config && routeThrough(config, view, snapshot, podsByIp, { host, port }, request, random);
      if (sent) return sent;
    }
    return { routed: { kind: 'no-route' } };
  }
  // A gateway that names the host wins over one that takes any host (`*`).
  for (const catchAll of [false, true])
    for (const [name, view] of views) {
      if (!name.startsWith('router:')) continue;
      for (const config of view.routes ?? []) {
        const sent = routeThrough(config, view, snapshot, podsByIp, { host, catchAll }, request, random);
        if (sent) return sent;
      }
    }
  return { routed: { kind: 'no-route' } };
}
