// Which routing objects steer one release (ADR 17): the router a Deployment asks for, or the one
// the object it names implies, and the names of everything, resolved from annotations and the
// Service that selects its pods. Pure: a bad combination is an error that says what to fix.
import { ownedRoutingName, policyAnnotations, routers } from '../../contract/names.ts';
import type { RouterName } from '../../contract/names.ts';
import type { Routing } from './policy.ts';
import type { GatewayTarget, MeshTarget, RouteOwner, RouteTarget } from '../ports/router.ts';

const a = policyAnnotations;

/** The router: `weir.dev/router` when set, else the kind of the object named, else Istio. */
export function chooseRouter(routing: Routing): RouterName | { error: string } {
  if (routing.virtualService && routing.httpRoute)
    return {
      error:
        `both ${a.virtualService} and ${a.httpRoute} are set; ` +
        `keep the one that routes this Deployment's traffic (or set ${a.router})`,
    };
  const named = routing.httpRoute ? 'gateway-api' : routing.virtualService ? 'istio' : undefined;
  if (routing.router === undefined) return named ?? 'istio';
  const chosen = routers.find((r) => r === routing.router);
  if (!chosen) return { error: `${a.router}: "${routing.router}" is not ${routers.join(' or ')}` };
  if (named && named !== chosen)
    return {
      error:
        `${a.router} is ${chosen} but ${named === 'istio' ? a.virtualService : a.httpRoute} names ` +
        `${named === 'istio' ? 'a VirtualService' : 'an HTTPRoute'}; remove one of the two`,
    };
  return chosen;
}

const ownerOf = (owner: { name: string; uid: string }): RouteOwner => ({
  owner: { apiVersion: 'apps/v1', kind: 'Deployment', name: owner.name, uid: owner.uid },
});

function meshTarget(
  namespace: string,
  routing: Routing,
  service: string | undefined,
  owner: { name: string; uid: string },
): MeshTarget | { error: string } {
  const common = {
    kind: 'VirtualService' as const,
    namespace,
    stableSubset: routing.stableSubset,
    canarySubset: routing.canarySubset,
    ...(routing.route ? { route: routing.route } : {}),
  };
  if (routing.virtualService) {
    if (!routing.destinationRule)
      return { error: `${a.virtualService} is set; name its DestinationRule with ${a.destinationRule} too` };
    return {
      ...common,
      virtualService: routing.virtualService,
      destinationRule: routing.destinationRule,
      ...(service ? { host: service } : {}),
    };
  }
  if (!service)
    return {
      error:
        `no Service selects these pods; name one with ${a.service}, ` +
        `or name the VirtualService with ${a.virtualService}`,
    };
  const name = ownedRoutingName(owner.name);
  return {
    ...common,
    virtualService: name,
    destinationRule: routing.destinationRule ?? name,
    host: service,
    owned: ownerOf(owner),
  };
}

function gatewayTarget(
  namespace: string,
  routing: Routing,
  service: string | undefined,
  owner: { name: string; uid: string },
): GatewayTarget | { error: string } {
  if (Boolean(routing.stableService) !== Boolean(routing.canaryService))
    return { error: `name both backend Services, with ${a.stableService} and ${a.canaryService}, or neither` };
  const stableService = routing.stableService ?? (service ? `${service}-stable` : undefined);
  const canaryService = routing.canaryService ?? (service ? `${service}-canary` : undefined);
  if (!stableService || !canaryService || (!routing.httpRoute && !service))
    return {
      error:
        `no Service selects these pods; name one with ${a.service}` +
        (routing.httpRoute ? `, or name the backend Services with ${a.stableService} and ${a.canaryService}` : ''),
    };
  const common = {
    kind: 'HTTPRoute' as const,
    namespace,
    stableService,
    canaryService,
    ...(routing.stableService === undefined ? { ownedServices: ownerOf(owner) } : {}),
    ...(service ? { host: service } : {}),
  };
  if (routing.httpRoute)
    return { ...common, httpRoute: routing.httpRoute, ...(routing.route ? { route: routing.route } : {}) };
  return {
    ...common,
    httpRoute: ownedRoutingName(owner.name),
    route: routing.route ?? 'weir',
    owned: ownerOf(owner),
  };
}

/** Resolves the objects that route a release: the names the user gave, or weir-owned ones. */
export function routeTarget(
  namespace: string,
  routing: Routing,
  service: string | undefined,
  owner: { name: string; uid: string },
): RouteTarget | { error: string } {
  const router = chooseRouter(routing);
  if (typeof router !== 'string') return router;
  return router === 'istio'
    ? meshTarget(namespace, routing, service, owner)
    : gatewayTarget(namespace, routing, service, owner);
}
