// The fields weir owns in a user's Istio objects (ADR 5), and the record of them that weir keeps
// on the objects themselves (ADR 8). Both halves read this: the analyzer steers with it, and the
// webhook keeps a re-apply (kubectl, Flux, Argo CD) from undoing it. Pure: no I/O.
import { labels, tracks } from './names.ts';
import {
  headerRouteName,
  isHeaderRouteName,
  isName,
  isObject,
  parseJson,
  parseWeights,
  routingAnnotations,
} from './steering.ts';
import type { HeaderMatch, RoutingMetadata, SteeredRoute, Track } from './steering.ts';

export interface Destination {
  destination?: { host?: string; subset?: string; port?: unknown };
  weight?: number;
  [key: string]: unknown;
}
export interface HttpRoute {
  name?: string;
  match?: { headers?: Record<string, unknown>; [key: string]: unknown }[];
  route?: Destination[];
  mirror?: { host?: string; subset?: string; port?: unknown };
  mirrorPercentage?: { value?: number };
  [key: string]: unknown;
}
export interface VirtualService {
  metadata?: RoutingMetadata;
  spec?: { hosts?: string[]; gateways?: string[]; http?: HttpRoute[]; [key: string]: unknown };
  [key: string]: unknown;
}
export interface Subset {
  name: string;
  labels?: Record<string, string>;
  [key: string]: unknown;
}
export interface DestinationRule {
  metadata?: RoutingMetadata;
  spec?: { host?: string; subsets?: Subset[]; [key: string]: unknown };
  [key: string]: unknown;
}

/** The subsets record; undefined when absent or unreadable. */
export function parseSubsets(text: string | undefined): Map<string, Track> | undefined {
  const parsed = parseJson(text);
  if (!parsed) return undefined;
  const subsets = new Map<string, Track>();
  for (const [subset, track] of Object.entries(parsed)) {
    if (!isName(subset) || (track !== tracks.stable && track !== tracks.canary)) return undefined;
    subsets.set(subset, track);
  }
  return subsets;
}

export function formatSubsets(subsets: Map<string, Track>): string {
  return JSON.stringify(Object.fromEntries([...subsets.entries()].sort(([a], [b]) => a.localeCompare(b))));
}

const isWeirRoute = (r: HttpRoute): boolean => isHeaderRouteName(r.name);

/** Finds the route weir steers: the named one, else the only one (weir's testers' routes aside). */
export function findRoute(
  vs: VirtualService,
  name: string | undefined,
): { index: number; route: HttpRoute } | { error: string } {
  const routes = vs.spec?.http ?? [];
  const users = routes.flatMap((r, i) => (isWeirRoute(r) ? [] : [i]));
  const index =
    name === undefined ? (users.length === 1 ? (users[0] ?? -1) : -1) : routes.findIndex((r) => r.name === name);
  const route = routes[index];
  if (route && !isWeirRoute(route)) return { index, route };
  const vsName = vs.metadata?.name ?? '';
  return {
    error:
      name === undefined
        ? `VirtualService ${vsName} has ${users.length} HTTP routes; name one with weir.dev/route`
        : `VirtualService ${vsName} has no HTTP route named "${name}"`,
  };
}

/** What a steered route gives the canary now. */
export interface RouteReading {
  ok: true;
  canaryWeight: number;
  /** Percent of requests mirrored to the canary subset (the shadow step); absent: none. */
  mirror?: number;
  /** The host of the user's own mirror on the route (not weir's shadow step). */
  mirroredElsewhere?: string;
  /**
   * The route is bound to gateways only: the Service's in-mesh callers do not go through it and
   * reach every pod the Service selects, the canary's included, whatever the weight.
   */
  meshUnsteered?: true;
  header?: HeaderMatch;
  host?: string;
}

/** Bound to gateways and not to `mesh`: sidecars of in-mesh callers never see this VirtualService. */
const gatewayOnly = (vs: VirtualService): boolean => {
  const gateways = vs.spec?.gateways ?? [];
  return gateways.length > 0 && !gateways.includes('mesh');
};

/** The share a route mirrors to `subset` (Istio mirrors all when `mirrorPercentage` is absent); 0: none. */
const mirrorTo = (route: HttpRoute, subset: string): number =>
  route.mirror?.subset === subset ? (route.mirrorPercentage?.value ?? 100) : 0;

/** The header of weir's testers' route before the steered one, if it is there and sends to the canary. */
function readHeader(vs: VirtualService, routeName: string | undefined, canary: string): HeaderMatch | undefined {
  const route = (vs.spec?.http ?? []).find((r) => r.name === headerRouteName(routeName));
  if (route?.route?.length !== 1 || route.route[0]?.destination?.subset !== canary) return undefined;
  const headers = route.match?.[0]?.headers ?? {};
  const [name] = Object.keys(headers);
  const condition = name === undefined ? undefined : headers[name];
  const value = isObject(condition) ? condition.exact : undefined;
  return name !== undefined && typeof value === 'string' ? { name, value } : undefined;
}

/** The canary weight of a route, or why it cannot be read; the route may hold only the two subsets. */
export function readCanaryWeight(
  vs: VirtualService,
  steered: { route?: string | undefined; stableSubset: string; canarySubset: string },
): RouteReading | { ok: false; error: string } {
  const found = findRoute(vs, steered.route);
  if ('error' in found) return { ok: false, error: found.error };
  const destinations = found.route.route ?? [];
  const subsets = `subsets ${steered.stableSubset}/${steered.canarySubset}`;
  const name = found.route.name ?? found.index;
  const subsetOf = (d: (typeof destinations)[number]): string | undefined => d.destination?.subset;
  if (destinations.some((d) => subsetOf(d) !== steered.stableSubset && subsetOf(d) !== steered.canarySubset))
    return { ok: false, error: `route "${name}" sends traffic to destinations other than ${subsets}` };
  if (!destinations.some((d) => subsetOf(d) === steered.stableSubset))
    return { ok: false, error: `route "${name}" has no destination with subset ${steered.stableSubset}` };
  const canary = destinations.find((d) => subsetOf(d) === steered.canarySubset);
  const host = destinations.find((d) => subsetOf(d) === steered.stableSubset)?.destination?.host;
  const header = readHeader(vs, steered.route, steered.canarySubset);
  const mirror = mirrorTo(found.route, steered.canarySubset);
  const theirs = mirror === 0 ? found.route.mirror?.host : undefined;
  return {
    ok: true,
    canaryWeight: canary?.weight ?? 0,
    ...(mirror > 0 ? { mirror } : {}),
    ...(theirs !== undefined ? { mirroredElsewhere: theirs } : {}),
    ...(gatewayOnly(vs) ? { meshUnsteered: true as const } : {}),
    ...(header ? { header } : {}),
    ...(host ? { host } : {}),
  };
}

/**
 * A copy of the VirtualService whose steered route gives `weight` % to the canary subset and the
 * rest to the stable subset (adding the canary destination, copied from the stable one, when
 * missing). Every other field stays as it was. An error when the route cannot be steered.
 */
export function steerWeight(
  vs: VirtualService,
  routeName: string | undefined,
  steered: SteeredRoute,
): { ok: true; vs: VirtualService } | { ok: false; error: string } {
  const found = findRoute(vs, routeName);
  if ('error' in found) return { ok: false, error: found.error };
  const destinations = found.route.route ?? [];
  const stableIndex = destinations.findIndex((d) => d.destination?.subset === steered.stable);
  const stable = destinations[stableIndex];
  if (!stable)
    return {
      ok: false,
      error: `route "${found.route.name ?? found.index}" has no destination with subset ${steered.stable}`,
    };
  const next = destinations.map((d, i) =>
    i === stableIndex
      ? { ...d, weight: 100 - steered.weight }
      : d.destination?.subset === steered.canary
        ? { ...d, weight: steered.weight }
        : d,
  );
  const canary = { ...stable.destination, subset: steered.canary };
  if (!destinations.some((d) => d.destination?.subset === steered.canary)) {
    next.push({ destination: canary, weight: steered.weight });
  }
  const mirrored = steerMirror({ ...found.route, route: next }, canary, steered.mirror ?? 0);
  if ('error' in mirrored) return { ok: false, error: mirrored.error };
  const http = (vs.spec?.http ?? []).map((r, i) => (i === found.index ? mirrored.route : r));
  return { ok: true, vs: { ...vs, spec: { ...vs.spec, http: steerHeader(http, routeName, canary, steered.header) } } };
}

/**
 * The route mirroring `percent` % of its requests to the canary (the shadow step), or with weir's
 * mirror removed at 0. A mirror of the user's own (to another destination) is never replaced.
 */
function steerMirror(
  route: HttpRoute,
  canary: NonNullable<Destination['destination']>,
  percent: number,
): { route: HttpRoute } | { error: string } {
  const theirs = route.mirror !== undefined && route.mirror.subset !== canary.subset;
  if (theirs && percent > 0)
    return {
      error: `route "${route.name ?? ''}" mirrors to ${route.mirror?.host ?? '?'}; a shadow step would replace that`,
    };
  if (theirs || (percent === 0 && route.mirror === undefined)) return { route };
  const rest = { ...route };
  delete rest.mirror;
  delete rest.mirrorPercentage;
  return { route: percent > 0 ? { ...rest, mirror: canary, mirrorPercentage: { value: percent } } : rest };
}

/**
 * The routes with weir's testers' route just before the steered one when `header` is given: the
 * steered route's own matches, each also requiring the header, all to the canary. Without
 * `header`, that route is taken out.
 */
function steerHeader(
  http: HttpRoute[],
  routeName: string | undefined,
  canary: NonNullable<Destination['destination']>,
  header: HeaderMatch | undefined,
): HttpRoute[] {
  const name = headerRouteName(routeName);
  const others = http.filter((r) => r.name !== name);
  if (!header) return others;
  const steered = others.findIndex((r) => (routeName === undefined ? !isWeirRoute(r) : r.name === routeName));
  const base = others[steered] ?? {};
  // Testers get what everyone else gets from the route (rewrites, timeouts, retries…), but on the canary.
  const behaviour = { ...base };
  for (const key of ['name', 'match', 'route', 'mirror', 'mirrorPercentage'] as const) delete behaviour[key];
  const testers: HttpRoute = {
    ...behaviour,
    name,
    match: (base.match ?? [{}]).map((m) => ({
      ...m,
      headers: { ...m.headers, [header.name]: { exact: header.value } },
    })),
    route: [{ destination: canary }],
  };
  return [...others.slice(0, steered), testers, ...others.slice(steered)];
}

/** The labels a subset of `track` selects. */
export const trackSelector = (track: Track): Record<string, string> => ({ [labels.track]: track });

const sameLabels = (a: Record<string, string> | undefined, b: Record<string, string>): boolean =>
  JSON.stringify(Object.entries(a ?? {}).sort()) === JSON.stringify(Object.entries(b).sort());

/** A copy of the DestinationRule whose subsets select their tracks (added when missing); other subsets stay. */
export function steerSubsets(dr: DestinationRule, subsets: Map<string, Track>): DestinationRule {
  const current = dr.spec?.subsets ?? [];
  const next = current.map((s) => {
    const track = subsets.get(s.name);
    return track && !sameLabels(s.labels, trackSelector(track)) ? { ...s, labels: trackSelector(track) } : s;
  });
  for (const [name, track] of subsets) {
    if (!current.some((s) => s.name === name)) next.push({ name, labels: trackSelector(track) });
  }
  return { ...dr, spec: { ...dr.spec, subsets: next } };
}

/** Do the subsets select their tracks? */
export function subsetsSelect(dr: DestinationRule, subsets: Map<string, Track>): boolean {
  return [...subsets].every(([name, track]) =>
    sameLabels(dr.spec?.subsets?.find((s) => s.name === name)?.labels, trackSelector(track)),
  );
}

/**
 * What the webhook admits for a VirtualService: the applied object, with the weights its own
 * record names (the record travels in the object, from weir's last write). Routes that cannot be
 * steered are left as applied; the analyzer reports them.
 */
export function keepWeights(vs: VirtualService): VirtualService {
  const routes = parseWeights(vs.metadata?.annotations?.[routingAnnotations.weights]);
  if (!routes) return vs;
  let kept = vs;
  for (const [key, steered] of routes) {
    const next = steerWeight(kept, key === '' ? undefined : key, steered);
    if (next.ok) kept = next.vs;
  }
  return kept;
}

/** What the webhook admits for a DestinationRule: the applied object, with weir's subset selectors. */
export function keepSubsets(dr: DestinationRule): DestinationRule {
  const subsets = parseSubsets(dr.metadata?.annotations?.[routingAnnotations.subsets]);
  return subsets ? steerSubsets(dr, subsets) : dr;
}
