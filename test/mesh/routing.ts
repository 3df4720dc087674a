// How Envoy would route one request, as a pure function of the live mesh config. The simulator
// feeds it snapshots of Services, Pods, VirtualServices, DestinationRules and Gateway API HTTPRoutes.

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
  /** The pod's address, by which an endpoint istiod sends is found. */
  ip?: string;
  /** Ready to Kubernetes, but the callers' proxies (outlier detection) send it nothing. */
  ejected?: boolean;
}

export interface SimService {
  namespace: string;
  name: string;
  selector: Labels;
  /** The Service's ports, in order: a mesh caller addresses the first. */
  ports?: number[];
}

export interface HttpDestination {
  destination?: { host?: string; subset?: string };
  weight?: number;
}

/** Istio's StringMatch: exactly one of exact, prefix, regex (RE2, whole value). */
export interface StringMatch {
  exact?: string;
  prefix?: string;
  regex?: string;
}

export interface HttpRoute {
  name?: string;
  match?: { uri?: StringMatch; headers?: Record<string, StringMatch> }[];
  route?: HttpDestination[];
  /** A copy of each request (of `mirrorPercentage`, all when absent) goes here; its answer is dropped. */
  mirror?: { host?: string; subset?: string };
  mirrorPercentage?: { value?: number };
}

/** The parts of a request routing reads. Header names are lower case, as Envoy sees them. */
export interface SimRequest {
  path: string;
  headers?: Record<string, string>;
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

/** A Gateway API reference to a parent (a Gateway, or a Service for mesh routes: GAMMA). */
export interface ParentRef {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
}

export interface BackendRef {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
  port?: number;
  weight?: number;
}

export interface HTTPRouteMatch {
  path?: { type?: string; value?: string };
  headers?: { type?: string; name: string; value: string }[];
}

export interface HTTPRouteRule {
  name?: string;
  matches?: HTTPRouteMatch[];
  filters?: {
    type?: string;
    requestMirror?: {
      backendRef?: BackendRef;
      percent?: number;
      fraction?: { numerator?: number; denominator?: number };
    };
  }[];
  backendRefs?: BackendRef[];
}

export interface SimHTTPRoute {
  namespace: string;
  name: string;
  parentRefs: ParentRef[];
  hostnames: string[];
  rules: HTTPRouteRule[];
}

export interface MeshSnapshot {
  services: SimService[];
  pods: SimPod[];
  virtualServices: SimVirtualService[];
  destinationRules: SimDestinationRule[];
  httpRoutes?: SimHTTPRoute[];
}

/** Where a request went: a pod, or an Envoy-made failure with its response flag. */
export type Routed =
  | { kind: 'pod'; service: SimService; pod: SimPod }
  | { kind: 'no-healthy-upstream'; service: SimService | undefined }
  /** A route names a cluster the proxy was not sent (a subset istiod has not pushed yet): Envoy's 503 NC. */
  | { kind: 'no-cluster'; service: SimService | undefined }
  /** A backendRef that resolves to no Service (or every weight 0): the Gateway API's 500. */
  | { kind: 'invalid-backend' }
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

function stringMatches(m: StringMatch, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (m.exact !== undefined) return value === m.exact;
  if (m.prefix !== undefined) return value.startsWith(m.prefix);
  if (m.regex !== undefined) return new RegExp(`^(?:${m.regex})$`).test(value);
  return true;
}

/** A route applies when any of its match blocks does; within a block, every condition must hold. */
function requestMatches(route: HttpRoute, request: SimRequest): boolean {
  if (!route.match || route.match.length === 0) return true;
  return route.match.some(
    (m) =>
      (m.uri === undefined || stringMatches(m.uri, request.path)) &&
      Object.entries(m.headers ?? {}).every(([name, match]) =>
        stringMatches(match, request.headers?.[name.toLowerCase()]),
      ),
  );
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

const isGateway = (p: ParentRef): boolean =>
  (p.group ?? 'gateway.networking.k8s.io') === 'gateway.networking.k8s.io' && (p.kind ?? 'Gateway') === 'Gateway';
const isService = (p: ParentRef): boolean => (p.group ?? '') === '' && p.kind === 'Service';

/**
 * The HTTPRoute that applies to `host`: at a gateway, one bound to a Gateway whose hostnames hold
 * the host; in the mesh (GAMMA), one whose parent is the Service itself. Of several, the oldest
 * wins in the spec; the snapshot keeps the API server's order (by namespace and name).
 */
export function httpRouteFor(
  snapshot: MeshSnapshot,
  entry: 'mesh' | 'gateway',
  host: string,
): SimHTTPRoute | undefined {
  const routes = snapshot.httpRoutes ?? [];
  if (entry === 'gateway')
    return routes.find((r) => r.parentRefs.some(isGateway) && r.hostnames.some((h) => h === host));
  const service = snapshot.services.find((s) => fqdn(s) === host);
  if (!service) return undefined;
  return routes.find((r) =>
    r.parentRefs.some(
      (p) => isService(p) && p.name === service.name && (p.namespace ?? r.namespace) === service.namespace,
    ),
  );
}

/** How well a path match fits (Gateway API precedence): Exact over the longest PathPrefix; undefined: no match. */
function pathRank(match: { path?: { type?: string; value?: string } }, path: string): number | undefined {
  const type = match.path?.type ?? 'PathPrefix';
  const value = match.path?.value ?? '/';
  if (type === 'Exact') return path === value ? Number.MAX_SAFE_INTEGER : undefined;
  if (type === 'RegularExpression') return new RegExp(`^${value}$`).test(path) ? 0 : undefined;
  // PathPrefix matches whole path elements: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
  const prefix = value.endsWith('/') && value !== '/' ? value.slice(0, -1) : value;
  const fits = prefix === '/' || path === prefix || path.startsWith(`${prefix}/`);
  return fits ? prefix.length : undefined;
}

/** Every header condition holds (Exact, or RegularExpression on the whole value); names are case-insensitive. */
function headersHold(m: HTTPRouteMatch, headers: Record<string, string> | undefined): boolean {
  return (m.headers ?? []).every((h) => {
    const value = headers?.[h.name.toLowerCase()];
    if (value === undefined) return false;
    return (h.type ?? 'Exact') === 'RegularExpression' ? new RegExp(`^(?:${h.value})$`).test(value) : value === h.value;
  });
}

/**
 * The rule a request takes, by the Gateway API's precedence: the best path match (Exact, then the
 * longest prefix), then the most header matches; the first such rule on a tie.
 */
export function ruleFor(
  route: SimHTTPRoute,
  path: string,
  headers?: Record<string, string>,
): HTTPRouteRule | undefined {
  let best: { rule: HTTPRouteRule; rank: number; headers: number } | undefined;
  for (const rule of route.rules) {
    const matches = rule.matches && rule.matches.length > 0 ? rule.matches : [{}];
    for (const m of matches) {
      const rank = pathRank(m, path);
      if (rank === undefined || !headersHold(m, headers)) continue;
      const count = m.headers?.length ?? 0;
      if (best === undefined || rank > best.rank || (rank === best.rank && count > best.headers))
        best = { rule, rank, headers: count };
    }
  }
  return best?.rule;
}

/** The Service a core backendRef names, in the route's namespace unless it says another. */
function backendService(
  snapshot: MeshSnapshot,
  route: SimHTTPRoute,
  ref: BackendRef | undefined,
): SimService | undefined {
  const core = ref && (ref.group ?? '') === '' && (ref.kind ?? 'Service') === 'Service';
  return core
    ? snapshot.services.find((s) => s.name === ref.name && s.namespace === (ref.namespace ?? route.namespace))
    : undefined;
}

/** The copy a rule's RequestMirror filter sends, if this request is in its share (`percent`, `fraction`, else all). */
function mirrorOfRule(
  snapshot: MeshSnapshot,
  route: SimHTTPRoute,
  rule: HTTPRouteRule,
  random: () => number,
): Routed | undefined {
  const mirror = rule.filters?.find((f) => f.type === 'RequestMirror')?.requestMirror;
  if (!mirror) return undefined;
  const f = mirror.fraction;
  const share = mirror.percent ?? (f?.numerator !== undefined ? (100 * f.numerator) / (f.denominator ?? 100) : 100);
  if (random() * 100 >= share) return undefined;
  const service = backendService(snapshot, route, mirror.backendRef);
  return service ? pickEndpoint(snapshot, service, undefined, random) : undefined;
}

/** Routes by an HTTPRoute: a weighted backendRef (weight 1 when unset), then that Service's Ready endpoints. */
function routeByHTTPRoute(
  snapshot: MeshSnapshot,
  route: SimHTTPRoute,
  request: SimRequest,
  random: () => number,
): RoutedRequest {
  const rule = ruleFor(route, request.path, request.headers);
  if (!rule) return { routed: { kind: 'no-route' } };
  const refs = rule.backendRefs ?? [];
  const total = refs.reduce((sum, b) => sum + (b.weight ?? 1), 0);
  if (total <= 0) return { routed: { kind: 'invalid-backend' } };
  let point = random() * total;
  const chosen = refs.find((b) => (point -= b.weight ?? 1) < 0) ?? refs[refs.length - 1];
  const service = backendService(snapshot, route, chosen);
  const routed: Routed = service ? pickEndpoint(snapshot, service, undefined, random) : { kind: 'invalid-backend' };
  const mirrored = mirrorOfRule(snapshot, route, rule, random);
  return mirrored ? { routed, mirrored } : { routed };
}

/** Routes one request for `host` entering at `entry`, the way Envoy would. */
export function route(
  snapshot: MeshSnapshot,
  entry: 'mesh' | 'gateway',
  host: string,
  path: string,
  random: () => number,
): Routed {
  return routeRequest(snapshot, entry, host, { path }, random).routed;
}

/** Where one request went, and where its mirrored copy went, if the route mirrors it. */
export interface RoutedRequest {
  routed: Routed;
  /** The copy Envoy sends to the route's mirror: its answer never reaches the caller. */
  mirrored?: Routed;
}

/** Sends to a VirtualService destination: its Service's Ready endpoints in the subset. */
function toDestination(
  snapshot: MeshSnapshot,
  vs: SimVirtualService,
  destination: { host?: string; subset?: string } | undefined,
  random: () => number,
): Routed {
  if (!destination?.host) return { kind: 'no-route' };
  const service = resolveService(snapshot, destination.host, vs.namespace);
  if (!service) return { kind: 'no-healthy-upstream', service: undefined };
  return pickEndpoint(snapshot, service, destination.subset, random);
}

/** Routes one request, headers and all, and its mirrored copy (Istio's `mirror` and `mirrorPercentage`). */
export function routeRequest(
  snapshot: MeshSnapshot,
  entry: 'mesh' | 'gateway',
  host: string,
  request: SimRequest,
  random: () => number,
): RoutedRequest {
  const vs = virtualServiceFor(snapshot, entry, host);
  const gatewayRoute = vs ? undefined : httpRouteFor(snapshot, entry, host);
  if (gatewayRoute) return routeByHTTPRoute(snapshot, gatewayRoute, request, random);
  if (!vs) {
    const service = snapshot.services.find((s) => fqdn(s) === host);
    return { routed: service ? pickEndpoint(snapshot, service, undefined, random) : { kind: 'no-route' } };
  }
  // The first route whose match holds wins, in the order written.
  const httpRoute = vs.http.find((r) => requestMatches(r, request));
  const routed = toDestination(snapshot, vs, pickWeighted(httpRoute?.route ?? [], random)?.destination, random);
  const share = httpRoute?.mirror ? (httpRoute.mirrorPercentage?.value ?? 100) : 0;
  if (!httpRoute?.mirror || random() * 100 >= share) return { routed };
  return { routed, mirrored: toDestination(snapshot, vs, httpRoute.mirror, random) };
}
