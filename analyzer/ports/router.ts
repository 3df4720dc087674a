// The traffic router port: the one interface the analyzer moves traffic through, with one adapter
// per routing API (ADR 17): Istio's VirtualService and DestinationRule (adapters/istio.ts) and the
// Gateway API's HTTPRoute (adapters/gateway.ts). decide sees only weights and "backends ready".
import type { HeaderMatch } from '../../contract/steering.ts';
import type { RouteReading } from '../../contract/istio.ts';

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

/**
 * The canary weight on the route, and the Service its canary share reaches (for callers' errors,
 * issue 14); on Istio also the share mirrored to the canary and the testers' header route (issue 17).
 */
export type RouteRead = RouteReading | { ok: false; error: string };

/** What the route gives the canary: a weight; on Istio also a mirrored share and the testers' route. */
export interface Traffic {
  weight: number;
  /** Percent of requests copied to the canary (the shadow step); absent: none. */
  mirror?: number;
  /** Requests with this header go to the canary; absent: no testers' route. */
  header?: HeaderMatch;
}

/** The one interface the analyzer moves traffic through. */
export interface TrafficRouter {
  read(target: RouteTarget): Promise<RouteRead>;
  /** Gives the route this traffic for the canary; what is absent from it (a mirror, a testers' route) goes. */
  steer(target: RouteTarget, traffic: Traffic): Promise<void>;
  /**
   * The backends (subsets, or Services) have their shape: in flight, each selects its half;
   * between releases, the router's settled shape (the canary subset on the stable half, no weir
   * mesh route) — so no backend a route names is ever left selecting nothing.
   */
  backendsReady(target: RouteTarget, inFlight: boolean): Promise<boolean>;
  /** Gives the backends that shape, creating weir-owned objects when none are named. */
  ensureBackends(target: RouteTarget, inFlight: boolean): Promise<void>;
  /** The release is over (weight 0): the route takes its settled shape. */
  retire(target: RouteTarget): Promise<void>;
  /**
   * Called once the mesh can have forgotten the retired route (decide waits for it): what only
   * that route named goes, so nothing of a release is left and no live route names a gone backend.
   */
  retireBackends(target: RouteTarget): Promise<void>;
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
  steer(target: RouteTarget, traffic: Traffic): Promise<void> {
    return this.adapters[target.kind].steer(target, traffic);
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
  retireBackends(target: RouteTarget): Promise<void> {
    return this.adapters[target.kind].retireBackends(target);
  }
}
