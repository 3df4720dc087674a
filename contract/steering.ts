// weir's record of what it set on a routing object it steers (ADR 8), whichever router steers it:
// the analyzer writes it beside its change, and the webhook keeps a re-apply from undoing it. Pure.
import type { tracks } from './names.ts';

/** Annotations weir writes on the routing objects it steers: what it set, for the webhook to keep. */
export const routingAnnotations = {
  /**
   * VirtualService and HTTPRoute: `{"<route>": {"stable": "<backend>", "canary": "<backend>", "weight": <canary %>}}`;
   * a backend is a subset (VirtualService) or a Service (HTTPRoute). A VirtualService route may
   * also carry `"mirror": <% copied to the canary>` (the shadow step) and `"header": {"name", "value"}`
   * (the testers' route to the canary, issue 17).
   */
  weights: 'weir.dev/weights',
  /** DestinationRule: `{"<subset>": "stable" | "canary"}`, the track each subset selects. */
  subsets: 'weir.dev/subsets',
} as const;

/** A request header that sends a tester's request to the canary: `name` (lower case) equal to `value`. */
export interface HeaderMatch {
  name: string;
  value: string;
}

/** One steered route; the key `""` in a record means "the only HTTP route". */
export interface SteeredRoute {
  stable: string;
  canary: string;
  weight: number;
  /** Percent of the route's requests copied to the canary, whose answers nobody sees; absent: none. */
  mirror?: number;
  /** Requests with this header go to the canary, whatever the weight; absent: no such route. */
  header?: HeaderMatch;
}

const isPercent = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 100;

/** An HTTP header name as Istio matches it (lower case), and a value to equal. */
export const isHeaderMatch = (v: unknown): v is HeaderMatch =>
  isObject(v) &&
  typeof v.name === 'string' &&
  /^[a-z0-9!#$%&'*+.^_`|~-]{1,100}$/.test(v.name) &&
  typeof v.value === 'string' &&
  v.value.length > 0 &&
  v.value.length <= 256;
export type Track = (typeof tracks)[keyof typeof tracks];

export const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);
export const isName = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 253;

/** The weights record; undefined when absent or unreadable (then the webhook keeps nothing). */
export function parseWeights(text: string | undefined): Map<string, SteeredRoute> | undefined {
  const parsed = parseJson(text);
  if (!parsed) return undefined;
  const routes = new Map<string, SteeredRoute>();
  for (const [route, value] of Object.entries(parsed)) {
    if (!isObject(value) || !isName(value.stable) || !isName(value.canary) || value.stable === value.canary)
      return undefined;
    const { weight, mirror, header } = value;
    if (!isPercent(weight) || (mirror !== undefined && !isPercent(mirror))) return undefined;
    if (header !== undefined && !isHeaderMatch(header)) return undefined;
    routes.set(route, {
      stable: value.stable,
      canary: value.canary,
      weight,
      ...(mirror ? { mirror } : {}),
      ...(header ? { header: { name: header.name, value: header.value } } : {}),
    });
  }
  return routes;
}

export function parseJson(text: string | undefined): Record<string, unknown> | undefined {
  if (!text) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Sorted keys, so the same record always reads the same (no diff for GitOps tools to see). */
export function formatWeights(routes: Map<string, SteeredRoute>): string {
  const entries = [...routes.entries()].sort(([a], [b]) => a.localeCompare(b));
  return JSON.stringify(
    Object.fromEntries(
      entries.map(([k, r]) => [
        k,
        {
          stable: r.stable,
          canary: r.canary,
          weight: r.weight,
          ...(r.mirror ? { mirror: r.mirror } : {}),
          ...(r.header ? { header: { name: r.header.name, value: r.header.value } } : {}),
        },
      ]),
    ),
  );
}

/** weir's testers' routes (VirtualService) and rules (HTTPRoute) are named with this prefix, left to weir. */
export const headerRoutePrefix = 'weir-canary-header';
/** The testers' route (rule) weir puts before the steered one, `route` by name (absent: the fallback). */
export const headerRouteName = (route: string | undefined): string =>
  route === undefined ? headerRoutePrefix : `${headerRoutePrefix}-${route}`;
export const isHeaderRouteName = (name: string | undefined): boolean => name?.startsWith(headerRoutePrefix) === true;

/** The record key of a route: its name, or `""` for "the only route". */
export const routeKey = (name: string | undefined): string => name ?? '';

/** With a record annotation set (or replaced) on a copy's metadata. */
/** The metadata weir reads on a routing object it steers. */
export interface RoutingMetadata {
  name?: string;
  namespace?: string;
  resourceVersion?: string;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

export function withAnnotation<T extends { metadata?: RoutingMetadata }>(object: T, key: string, value: string): T {
  return {
    ...object,
    metadata: { ...object.metadata, annotations: { ...object.metadata?.annotations, [key]: value } },
  };
}
