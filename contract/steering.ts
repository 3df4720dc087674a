// weir's record of what it set on a routing object it steers (ADR 8), whichever router steers it:
// the analyzer writes it beside its change, and the webhook keeps a re-apply from undoing it. Pure.
import type { tracks } from './names.ts';

/** Annotations weir writes on the routing objects it steers: what it set, for the webhook to keep. */
export const routingAnnotations = {
  /**
   * VirtualService and HTTPRoute: `{"<route>": {"stable": "<backend>", "canary": "<backend>", "weight": <canary %>}}`;
   * a backend is a subset (VirtualService) or a Service (HTTPRoute).
   */
  weights: 'weir.dev/weights',
  /** DestinationRule: `{"<subset>": "stable" | "canary"}`, the track each subset selects. */
  subsets: 'weir.dev/subsets',
} as const;

/** One steered route; the key `""` in a record means "the only HTTP route". */
export interface SteeredRoute {
  stable: string;
  canary: string;
  weight: number;
}
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
    const weight = value.weight;
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > 100) return undefined;
    routes.set(route, { stable: value.stable, canary: value.canary, weight });
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
    Object.fromEntries(entries.map(([k, r]) => [k, { stable: r.stable, canary: r.canary, weight: r.weight }])),
  );
}

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
