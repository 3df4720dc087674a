// The fields weir owns in a user's Istio objects (ADR 5), and the record of them that weir keeps
// on the objects themselves (ADR 8). Both halves read this: the analyzer steers with it, and the
// webhook keeps a re-apply (kubectl, Flux, Argo CD) from undoing it. Pure: no I/O.
import { labels, tracks } from './names.ts';
import { isName, parseJson, parseWeights, routingAnnotations } from './steering.ts';
import type { RoutingMetadata, SteeredRoute, Track } from './steering.ts';

export interface Destination {
  destination?: { host?: string; subset?: string; port?: unknown };
  weight?: number;
  [key: string]: unknown;
}
export interface HttpRoute {
  name?: string;
  route?: Destination[];
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

/** Finds the route weir steers: the named one, else the only one. */
export function findRoute(
  vs: VirtualService,
  name: string | undefined,
): { index: number; route: HttpRoute } | { error: string } {
  const routes = vs.spec?.http ?? [];
  const index = name === undefined ? (routes.length === 1 ? 0 : -1) : routes.findIndex((r) => r.name === name);
  const route = routes[index];
  if (route) return { index, route };
  const vsName = vs.metadata?.name ?? '';
  return {
    error:
      name === undefined
        ? `VirtualService ${vsName} has ${routes.length} HTTP routes; name one with weir.dev/route`
        : `VirtualService ${vsName} has no HTTP route named "${name}"`,
  };
}

/** The canary weight of a route, or why it cannot be read; the route may hold only the two subsets. */
export function readCanaryWeight(
  vs: VirtualService,
  steered: { route?: string | undefined; stableSubset: string; canarySubset: string },
): { ok: true; canaryWeight: number; host?: string } | { ok: false; error: string } {
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
  return { ok: true, canaryWeight: canary?.weight ?? 0, ...(host ? { host } : {}) };
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
  if (!destinations.some((d) => d.destination?.subset === steered.canary)) {
    next.push({ destination: { ...stable.destination, subset: steered.canary }, weight: steered.weight });
  }
  const http = (vs.spec?.http ?? []).map((r, i) => (i === found.index ? { ...r, route: next } : r));
  return { ok: true, vs: { ...vs, spec: { ...vs.spec, http } } };
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
