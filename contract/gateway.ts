// The fields weir owns in a Gateway API HTTPRoute (ADR 17): the `weight` of the two backendRefs
// of ONE rule — a Service that selects the stable half and one that selects the canary half —
// and nothing else. Both halves read this: the analyzer steers with it, the webhook keeps a
// re-apply from undoing it (ADR 8). Pure: no I/O.
import { labels } from './names.ts';
import { headerRouteName, isHeaderRouteName, parseWeights, routeKey, routingAnnotations } from './steering.ts';
import type { HeaderMatch, RoutingMetadata, SteeredRoute, Track } from './steering.ts';

export const gatewayGroup = 'gateway.networking.k8s.io';
export const gatewayVersion = 'v1';

export interface BackendRef {
  group?: string;
  kind?: string;
  name?: string;
  namespace?: string;
  port?: number;
  weight?: number;
  [key: string]: unknown;
}
export interface HTTPHeaderMatch {
  type?: string;
  name: string;
  value: string;
}
export interface HTTPRouteMatch {
  headers?: HTTPHeaderMatch[];
  [key: string]: unknown;
}
export interface RouteFilter {
  type?: string;
  requestMirror?: {
    backendRef?: BackendRef;
    percent?: number;
    fraction?: { numerator?: number; denominator?: number };
  };
  [key: string]: unknown;
}
export interface RouteRule {
  name?: string;
  matches?: HTTPRouteMatch[];
  filters?: RouteFilter[];
  backendRefs?: BackendRef[];
  [key: string]: unknown;
}
export interface ParentRef {
  group?: string;
  kind?: string;
  name?: string;
  namespace?: string;
  port?: number;
  [key: string]: unknown;
}
export interface HTTPRoute {
  apiVersion?: string;
  kind?: string;
  metadata?: RoutingMetadata;
  spec?: { parentRefs?: ParentRef[]; hostnames?: string[]; rules?: RouteRule[]; [key: string]: unknown };
  [key: string]: unknown;
}

/** The two backends of the steered rule: Services in the route's own namespace. */
export interface SteeredRule {
  /** The rule's `name`; absent means the documented fallback (see `findRule`). */
  rule?: string | undefined;
  stableService: string;
  canaryService: string;
}

/** A backendRef that names a core Service of the route's own namespace: its name, else undefined. */
function serviceName(ref: BackendRef, namespace: string | undefined): string | undefined {
  const core = (ref.group ?? '') === '' && (ref.kind ?? 'Service') === 'Service';
  const local = ref.namespace === undefined || ref.namespace === namespace;
  return core && local ? ref.name : undefined;
}

const routeName = (route: HTTPRoute): string =>
  `HTTPRoute ${route.metadata?.namespace ? `${route.metadata.namespace}/` : ''}${route.metadata?.name ?? ''}`;

/**
 * The rule weir steers: the one named `rule`; with no name, the only rule, else the one rule
 * whose backendRefs name the stable Service (rule names are optional in the API).
 */
export function findRule(
  route: HTTPRoute,
  rule: string | undefined,
  stableService: string,
): { index: number; rule: RouteRule } | { error: string } {
  const rules = route.spec?.rules ?? [];
  const namespace = route.metadata?.namespace;
  const sendsToStable = (r: RouteRule): boolean =>
    (r.backendRefs ?? []).some((b) => serviceName(b, namespace) === stableService);
  // weir's testers' rules are never the steered one.
  const users = rules.flatMap((r, i) => (isHeaderRouteName(r.name) ? [] : [i]));
  let index: number;
  if (rule !== undefined) index = rules.findIndex((r) => r.name === rule && !isHeaderRouteName(r.name));
  else if (users.length === 1) index = users[0] ?? -1;
  else {
    const candidates = users.filter((i) => rules[i] !== undefined && sendsToStable(rules[i]));
    index = candidates.length === 1 ? (candidates[0] ?? -1) : -1;
    if (index < 0)
      return {
        error:
          `${routeName(route)} has ${users.length} rules and ${candidates.length} of them send to Service ` +
          `${stableService}; name the rule to steer (its \`name\`) with weir.dev/route`,
      };
  }
  const found = rules[index];
  if (found) return { index, rule: found };
  return {
    error:
      rule === undefined
        ? `${routeName(route)} has no rules`
        : `${routeName(route)} has no rule named "${rule}"; give the rule that name, or fix weir.dev/route`,
  };
}

/** Where each of the two Services sits in the rule, or what the user must fix first. */
function locate(
  route: HTTPRoute,
  steered: SteeredRule,
): { index: number; stable: number; canary: number; refs: BackendRef[] } | { error: string } {
  const found = findRule(route, steered.rule, steered.stableService);
  if ('error' in found) return found;
  const refs = found.rule.backendRefs ?? [];
  const label = `rule "${found.rule.name ?? found.index}" of ${routeName(route)}`;
  const names = refs.map((b) => serviceName(b, route.metadata?.namespace));
  const unknown = refs.filter((_, i) => {
    const n = names[i];
    return n !== steered.stableService && n !== steered.canaryService;
  });
  if (unknown.length > 0) {
    const what = unknown.map((b) => `${b.kind ?? 'Service'} ${b.namespace ? `${b.namespace}/` : ''}${b.name ?? '?'}`);
    return {
      error:
        `${label} sends to ${what.join(', ')} besides Services ${steered.stableService} and ` +
        `${steered.canaryService}; weir steers a rule with exactly those two backendRefs`,
    };
  }
  const stable = names.indexOf(steered.stableService);
  const canary = names.indexOf(steered.canaryService);
  const missing = [stable < 0 ? steered.stableService : '', canary < 0 ? steered.canaryService : ''].filter(Boolean);
  if (missing.length > 0)
    return {
      error:
        `${label} has no backendRef to Service ${missing.join(' or ')}; add ` +
        `${missing.length === 1 ? 'it' : 'them'} (weir changes only the weights, the canary's starts at 0)`,
    };
  if (names.lastIndexOf(steered.stableService) !== stable || names.lastIndexOf(steered.canaryService) !== canary)
    return { error: `${label} names the same Service in two backendRefs; weir steers one of each` };
  return { index: found.index, stable, canary, refs };
}

/** The canary's share of the rule, in percent (backend weights are relative; 1 when unset). */
export function readRuleWeight(route: HTTPRoute, steered: SteeredRule): RuleReading | { ok: false; error: string } {
  const at = locate(route, steered);
  if ('error' in at) return { ok: false, error: at.error };
  const rule = route.spec?.rules?.[at.index] ?? {};
  const mirror = mirrorOf(rule, steered.canaryService);
  const theirs = (rule.filters ?? []).find((f) => f.type === 'RequestMirror' && !mirrorsTo(f, steered.canaryService));
  const header = readTestersRule(route, steered);
  // A route whose parents are all Gateways is north–south only; in-mesh callers need a Service parent (GAMMA).
  const meshUnsteered = !(route.spec?.parentRefs ?? []).some((p) => (p.group ?? '') === '' && p.kind === 'Service');
  const weightOf = (i: number): number => at.refs[i]?.weight ?? 1;
  const total = weightOf(at.stable) + weightOf(at.canary);
  if (total <= 0)
    return { ok: false, error: `both backendRefs of the steered rule have weight 0: the rule sends nowhere` };
  return {
    ok: true,
    canaryWeight: Math.round((100 * weightOf(at.canary)) / total),
    host: steered.canaryService,
    ...(mirror > 0 ? { mirror } : {}),
    ...(theirs ? { mirroredElsewhere: theirs.requestMirror?.backendRef?.name ?? '?' } : {}),
    ...(header ? { header } : {}),
    ...(meshUnsteered ? { meshUnsteered: true as const } : {}),
  };
}

/** What the steered rule gives the canary now (the same shape as a VirtualService route's reading). */
export interface RuleReading {
  ok: true;
  canaryWeight: number;
  host?: string;
  mirror?: number;
  mirroredElsewhere?: string;
  header?: HeaderMatch;
  meshUnsteered?: true;
}

/** What weir gives the canary on a rule: a weight; a mirrored share and the testers' rule (issue 17). */
export interface RuleTraffic {
  weight: number;
  mirror?: number;
  header?: HeaderMatch;
}

/** A RequestMirror filter to the Service `service` (of the route's namespace). */
const mirrorsTo = (f: RouteFilter, service: string): boolean =>
  f.type === 'RequestMirror' &&
  f.requestMirror?.backendRef?.name === service &&
  (f.requestMirror.backendRef.group ?? '') === '' &&
  (f.requestMirror.backendRef.kind ?? 'Service') === 'Service';

/** The percent a rule mirrors to `service`: `percent`, else `fraction`, else all (the API's default); 0: none. */
function mirrorOf(rule: RouteRule, service: string): number {
  const m = (rule.filters ?? []).find((f) => mirrorsTo(f, service))?.requestMirror;
  if (!m) return 0;
  if (m.percent !== undefined) return m.percent;
  const f = m.fraction;
  return f?.numerator !== undefined ? Math.round((100 * f.numerator) / (f.denominator ?? 100)) : 100;
}

/** The header of weir's testers' rule for the steered rule, when it is there and sends to the canary only. */
function readTestersRule(route: HTTPRoute, steered: SteeredRule): HeaderMatch | undefined {
  const rule = (route.spec?.rules ?? []).find((r) => r.name === headerRouteName(steered.rule));
  const refs = rule?.backendRefs ?? [];
  if (refs.length !== 1 || refs[0]?.name !== steered.canaryService) return undefined;
  const last = rule?.matches?.[0]?.headers?.at(-1);
  return last && (last.type ?? 'Exact') === 'Exact' ? { name: last.name, value: last.value } : undefined;
}

/**
 * A copy of the route whose steered rule carries `traffic`: its two weights, weir's mirror to the
 * canary Service (the shadow step; removed at 0), and weir's testers' rule just before it (removed
 * without a header). A mirror of the user's own, to another backend, is never replaced.
 */
export function steerRule(
  route: HTTPRoute,
  steered: SteeredRule,
  traffic: RuleTraffic,
): { ok: true; route: HTTPRoute; index: number } | { ok: false; error: string } {
  const at = locate(route, steered);
  if ('error' in at) return { ok: false, error: at.error };
  const { weight } = traffic;
  const refs = at.refs.map((b, i) =>
    i === at.stable ? { ...b, weight: 100 - weight } : i === at.canary ? { ...b, weight } : b,
  );
  const rule = route.spec?.rules?.[at.index] ?? {};
  // The canary's own backendRef as the user wrote it (group, kind, port), without its weight.
  const canary: BackendRef = { ...at.refs[at.canary], name: steered.canaryService };
  delete canary.weight;
  const filters = (rule.filters ?? []).filter((f) => !mirrorsTo(f, steered.canaryService));
  const mirror = traffic.mirror ?? 0;
  if (mirror > 0 && filters.some((f) => f.type === 'RequestMirror'))
    return {
      ok: false,
      error: `rule "${rule.name ?? at.index}" mirrors to another backend; a shadow step would replace that`,
    };
  if (mirror > 0) filters.push({ type: 'RequestMirror', requestMirror: { backendRef: canary, percent: mirror } });
  const next: RouteRule = { ...rule, backendRefs: refs };
  // Only weir's mirror comes and goes: a rule that had no filters but it has none again.
  if (filters.length > 0) next.filters = filters;
  else if ((rule.filters ?? []).length > 0) delete next.filters;
  const rules = (route.spec?.rules ?? []).map((r, i) => (i === at.index ? next : r));
  const steeredRules = testersRule(rules, steered, at.index, canary, traffic.header);
  return { ok: true, route: { ...route, spec: { ...route.spec, rules: steeredRules } }, index: at.index };
}

/**
 * The rules with weir's testers' rule just before the steered one when `header` is given: the
 * steered rule's matches, each also requiring the header (a more specific match wins in the
 * Gateway API's precedence too), its filters but weir's mirror, to the canary Service alone.
 */
function testersRule(
  rules: RouteRule[],
  steered: SteeredRule,
  index: number,
  canary: BackendRef,
  header: HeaderMatch | undefined,
): RouteRule[] {
  const name = headerRouteName(steered.rule);
  const target = rules[index];
  const others = rules.filter((r) => r.name !== name);
  if (!header || !target) return others;
  const behaviour: RouteRule = { ...target };
  for (const key of ['name', 'matches', 'backendRefs', 'filters'] as const) delete behaviour[key];
  const theirFilters = (target.filters ?? []).filter((f) => f.type !== 'RequestMirror');
  const testers: RouteRule = {
    ...behaviour,
    name,
    matches: (target.matches ?? [{}]).map((m) => ({
      ...m,
      headers: [
        ...(m.headers ?? []).filter((h) => h.name !== header.name),
        { type: 'Exact', name: header.name, value: header.value },
      ],
    })),
    ...(theirFilters.length > 0 ? { filters: theirFilters } : {}),
    backendRefs: [canary],
  };
  const at = others.indexOf(target);
  return [...others.slice(0, at), testers, ...others.slice(at)];
}

/** The record entry of a steered rule: its key (`""` for the fallback) and the two Services with the traffic. */
export const ruleRecord = (steered: SteeredRule, traffic: RuleTraffic): [string, SteeredRoute] => [
  routeKey(steered.rule),
  {
    stable: steered.stableService,
    canary: steered.canaryService,
    weight: traffic.weight,
    ...(traffic.mirror ? { mirror: traffic.mirror } : {}),
    ...(traffic.header ? { header: traffic.header } : {}),
  },
];

/**
 * What the webhook admits for an HTTPRoute: the applied object, with the weights its own record
 * names. Rules that cannot be steered are left as applied; the analyzer reports them.
 */
export function keepRuleWeights(route: HTTPRoute): HTTPRoute {
  const record = parseWeights(route.metadata?.annotations?.[routingAnnotations.weights]);
  if (!record) return route;
  let kept = route;
  for (const [key, s] of record) {
    const steered = { rule: key === '' ? undefined : key, stableService: s.stable, canaryService: s.canary };
    const next = steerRule(kept, steered, s);
    if (next.ok) kept = next.route;
  }
  return kept;
}

export interface ServicePort {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: string;
  appProtocol?: string;
}

/**
 * The backend Service weir creates for one half when the user names none: the Service's own
 * selector plus the track label, on the same ports (so Envoy reports the same protocol).
 */
export function backendServiceSpec(
  frontend: { selector: Record<string, string>; ports: ServicePort[] },
  track: Track,
): { selector: Record<string, string>; ports: ServicePort[] } {
  return {
    selector: { ...frontend.selector, [labels.track]: track },
    ports: frontend.ports.map((p) => ({
      ...(p.name !== undefined ? { name: p.name } : {}),
      port: p.port,
      ...(p.targetPort !== undefined ? { targetPort: p.targetPort } : {}),
      ...(p.protocol !== undefined ? { protocol: p.protocol } : {}),
      ...(p.appProtocol !== undefined ? { appProtocol: p.appProtocol } : {}),
    })),
  };
}

/** Does a Service select exactly the one half: the track label, with that track? */
export const selectsTrack = (selector: Record<string, string> | undefined, track: Track): boolean =>
  selector?.[labels.track] === track;

/**
 * The spec of the route weir creates for a Service when no route is named: a mesh (GAMMA) route
 * whose parent is the Service itself, one rule over the two backend Services on its first port.
 */
export function ownedRouteSpec(service: string, port: number, steered: SteeredRule): HTTPRoute['spec'] {
  return {
    parentRefs: [{ group: '', kind: 'Service', name: service, port }],
    rules: [
      {
        name: steered.rule ?? 'weir',
        backendRefs: [
          { name: steered.stableService, port, weight: 100 },
          { name: steered.canaryService, port, weight: 0 },
        ],
      },
    ],
  };
}
