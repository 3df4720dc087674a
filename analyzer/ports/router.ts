// The traffic router port: the one interface the analyzer moves traffic through, with one adapter
// per routing API (ADR 17): Istio's VirtualService and DestinationRule (adapters/istio.ts) and the
// Gateway API's HTTPRoute (adapters/gateway.ts). decide sees only weights and "backends ready".

/** The Deployment weir-owned routing objects belong to (an owner reference: collected with it). */
export interface RouteOwner {
  owner: { apiVersion: string; kind: string; name: string; uid: string };
}

interface TargetCommon {
  namespace: string;
  /** The steered route (VirtualService) or rule (HTTPRoute) by name; absent: the documented fallback. */
  route?: string;
  /** The Service the route is for: the host of owned objects, the parent of an owned HTTPRoute. */
  host?: string;
  /** weir creates the objects (none was named). */
  owned?: RouteOwner;
}

/** Istio: one HTTP route of a VirtualService over two subsets of a DestinationRule. */
export interface MeshTarget extends TargetCommon {
  kind: 'VirtualService';
  virtualService: string;
  destinationRule: string;
  stableSubset: string;
  canarySubset: string;
}

/** Gateway API: one rule of an HTTPRoute over two backend Services, one per half. */
export interface GatewayTarget extends TargetCommon {
  kind: 'HTTPRoute';
  httpRoute: string;
  stableService: string;
  canaryService: string;
  /** weir creates the two backend Services (the user named none), owned by the Deployment. */
  ownedServices?: RouteOwner;
}

/** Which objects route one release, after resolving names and defaults. */
export type RouteTarget = MeshTarget | GatewayTarget;

/** The canary weight on the route, and the Service its canary share reaches (for callers' errors, issue 14). */
export type RouteRead = { ok: true; canaryWeight: number; host?: string } | { ok: false; error: string };

/** The one interface the analyzer moves traffic through. */
export interface TrafficRouter {
  read(target: RouteTarget): Promise<RouteRead>;
  setWeight(target: RouteTarget, canaryWeight: number): Promise<void>;
  /**
   * The backends (subsets, or Services) have their shape: in flight, each selects its half;
   * between releases, the router's settled shape (the canary subset on the stable half, no weir
   * mesh route) — so no backend a route names is ever left selecting nothing.
   */
  backendsReady(target: RouteTarget, inFlight: boolean): Promise<boolean>;
  /** Gives the backends that shape, creating weir-owned objects when none are named. */
  ensureBackends(target: RouteTarget, inFlight: boolean): Promise<void>;
  /** The release is over (weight 0): the settled shape, and nothing left that only a release needs. */
  retire(target: RouteTarget): Promise<void>;
}

/** One router over both adapters: each target goes to the adapter of its kind. */
export class RouterByKind implements TrafficRouter {
  private readonly adapters: { [K in RouteTarget['kind']]: TrafficRouter };

  constructor(adapters: { [K in RouteTarget['kind']]: TrafficRouter }) {
    this.adapters = adapters;
  }

  read(target: RouteTarget): Promise<RouteRead> {
    return this.adapters[target.kind].read(target);
  }
  setWeight(target: RouteTarget, canaryWeight: number): Promise<void> {
    return this.adapters[target.kind].setWeight(target, canaryWeight);
  }
  backendsReady(target: RouteTarget, inFlight: boolean): Promise<boolean> {
    return this.adapters[target.kind].backendsReady(target, inFlight);
  }
  ensureBackends(target: RouteTarget, inFlight: boolean): Promise<void> {
    return this.adapters[target.kind].ensureBackends(target, inFlight);
  }
  retire(target: RouteTarget): Promise<void> {
    return this.adapters[target.kind].retire(target);
  }
}
