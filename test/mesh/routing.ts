// How Envoy would route one request, as a pure function of the live mesh config. The simulator
// feeds it snapshots of Services, Pods, VirtualServices and DestinationRules.

export interface Labels {
  [key: string]: string;
}

export interface SimPod {
  namespace: string;
  name: string;
  labels: Labels;
  ready: boolean;
  workload: string;
  errorRate: number;
  latencyMs: number;
  /** Refuses connections (a wrong port, a crashed listener): callers see 503 UF, the pod reports nothing. */
  refuses?: boolean;
}

export interface SimService {
  namespace: string;
  name: string;
  selector: Labels;
}

export interface HttpDestination {
  destination?: { host?: string; subset?: string };
  weight?: number;
}

export interface HttpRoute {
  name?: string;
  match?: { uri?: { prefix?: string; exact?: string; regex?: string } }[];
  route?: HttpDestination[];
}

export interface SimVirtualService {
  namespace: string;
  name: string;
  hosts: string[];
  gateways: string[];
  http: HttpRoute[];
}

export interface SimDestinationRule {
  namespace: string;
  host: string;
  subsets: { name: string; labels: Labels }[];
}

export interface MeshSnapshot {
  services: SimService[];
  pods: SimPod[];
  virtualServices: SimVirtualService[];
  destinationRules: SimDestinationRule[];
}

/** Where a request went: a pod, or an Envoy-made failure with its response flag. */
export type Routed =
  | { kind: 'pod'; service: SimService; pod: SimPod }
  | { kind: 'no-healthy-upstream'; service: SimService | undefined }
  | { kind: 'no-route' };

export const fqdn = (s: { name: string; namespace: string }): string => `${s.name}.${s.namespace}.svc.cluster.local`;

/** Resolves a VirtualService/DestinationRule host (short, namespaced or FQDN) to a Service. */
export function resolveService(snapshot: MeshSnapshot, host: string, fromNamespace: string): SimService | undefined {
  const parts = host.split('.');
  const name = parts[0];
  const namespace = parts.length >= 2 ? parts[1] : fromNamespace;
  if (parts.length > 2 && !host.endsWith('.svc.cluster.local') && parts.slice(2).join('.') !== 'svc') return undefined;
  return snapshot.services.find((s) => s.name === name && s.namespace === namespace);
}

const matches = (labels: Labels, selector: Labels): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

function uriMatches(route: HttpRoute, path: string): boolean {
  if (!route.match || route.match.length === 0) return true;
  return route.match.some((m) => {
    const uri = m.uri;
    if (!uri) return Object.keys(m).length === 0;
    if (uri.exact !== undefined) return path === uri.exact;
    if (uri.prefix !== undefined) return path.startsWith(uri.prefix);
    if (uri.regex !== undefined) return new RegExp(`^${uri.regex}$`).test(path);
    return true;
  });
}

function pickWeighted(destinations: HttpDestination[], random: () => number): HttpDestination | undefined {
  if (destinations.length === 1) return destinations[0];
  const total = destinations.reduce((sum, d) => sum + (d.weight ?? 0), 0);
  if (total <= 0) return undefined;
  let point = random() * total;
  for (const d of destinations) {
    point -= d.weight ?? 0;
    if (point < 0) return d;
  }
  return destinations[destinations.length - 1];
}

function subsetLabels(snapshot: MeshSnapshot, service: SimService, subset: string | undefined): Labels | undefined {
  if (subset === undefined) return {};
  for (const rule of snapshot.destinationRules) {
    if (resolveService(snapshot, rule.host, rule.namespace) !== service) continue;
    const found = rule.subsets.find((s) => s.name === subset);
    if (found) return found.labels;
  }
  return undefined;
}

/** Load-balances over the Ready endpoints of `service` restricted to `subset`. */
export function pickEndpoint(
  snapshot: MeshSnapshot,
  service: SimService,
  subset: string | undefined,
  random: () => number,
): Routed {
  const labels = subsetLabels(snapshot, service, subset);
  // Envoy has no cluster for an unknown subset: no healthy upstream, same as an empty one.
  if (labels === undefined) return { kind: 'no-healthy-upstream', service };
  const endpoints = snapshot.pods.filter(
    (p) =>
      p.namespace === service.namespace && p.ready && matches(p.labels, service.selector) && matches(p.labels, labels),
  );
  const pod = endpoints[Math.floor(random() * endpoints.length)];
  return pod ? { kind: 'pod', service, pod } : { kind: 'no-healthy-upstream', service };
}

function hostMatches(
  vs: SimVirtualService,
  snapshot: MeshSnapshot,
  host: string,
  service: SimService | undefined,
): boolean {
  return vs.hosts.some(
    (h) => h === host || (service !== undefined && resolveService(snapshot, h, vs.namespace) === service),
  );
}

/** The VirtualService that applies to `host` for the given entry (`mesh` or a gateway's name). */
export function virtualServiceFor(
  snapshot: MeshSnapshot,
  entry: 'mesh' | 'gateway',
  host: string,
): SimVirtualService | undefined {
  const service = entry === 'mesh' ? snapshot.services.find((s) => fqdn(s) === host) : undefined;
  return snapshot.virtualServices.find((vs) => {
    const boundToMesh = vs.gateways.length === 0 || vs.gateways.includes('mesh');
    const boundToGateway = vs.gateways.some((g) => g !== 'mesh');
    if (entry === 'mesh' ? !boundToMesh : !boundToGateway) return false;
    return hostMatches(vs, snapshot, host, service);
  });
}

/** Routes one request for `host` entering at `entry`, the way Envoy would. */
export function route(
  snapshot: MeshSnapshot,
  entry: 'mesh' | 'gateway',
  host: string,
  path: string,
  random: () => number,
): Routed {
  const vs = virtualServiceFor(snapshot, entry, host);
  if (!vs) {
    const service = snapshot.services.find((s) => fqdn(s) === host);
    return service ? pickEndpoint(snapshot, service, undefined, random) : { kind: 'no-route' };
  }
  const httpRoute = vs.http.find((r) => uriMatches(r, path));
  const chosen = pickWeighted(httpRoute?.route ?? [], random);
  const destinationHost = chosen?.destination?.host;
  if (!destinationHost) return { kind: 'no-route' };
  const service = resolveService(snapshot, destinationHost, vs.namespace);
  if (!service) return { kind: 'no-healthy-upstream', service: undefined };
  return pickEndpoint(snapshot, service, chosen.destination?.subset, random);
}
