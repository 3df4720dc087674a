// The traffic router port: the one interface the analyzer moves traffic through. Istio is its
// adapter today (adapters/istio.ts); a second router implements the same four calls.
/** Which objects route one release, after resolving names and defaults. */
export interface RouteTarget {
  namespace: string;
  virtualService: string;
  route?: string;
  destinationRule: string;
  /** The Service host, for owned objects and for the canary destination added to a route. */
  host?: string;
  stableSubset: string;
  canarySubset: string;
  /** weir creates the objects (no VirtualService was named). */
  owned?: { owner: { apiVersion: string; kind: string; name: string; uid: string } };
}

/** The canary weight on the route, and the Service host it sends to (for callers' errors, issue 14). */
export type RouteRead = { ok: true; canaryWeight: number; host?: string } | { ok: false; error: string };

/** The one interface the analyzer moves traffic through. */
export interface TrafficRouter {
  read(target: RouteTarget): Promise<RouteRead>;
  setWeight(target: RouteTarget, canaryWeight: number): Promise<void>;
  subsetsReady(target: RouteTarget): Promise<boolean>;
  ensureSubsets(target: RouteTarget): Promise<void>;
}
