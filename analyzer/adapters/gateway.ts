// The Gateway API behind the TrafficRouter port (ADR 17). What weir may touch, and nothing else:
// - in the user's HTTPRoute, the `weight` of the stable and canary backendRefs of ONE rule;
// - the two backend Services (one per half) and the mesh route, when weir creates them because
//   the user named none — owned by the Deployment, removed once the release has settled.
// Writes to the user's route are JSON Patches guarded by resourceVersion and the rule's name,
// computed from the watches' view: the guard is what makes that safe (ADR 14).
import type { V1Service } from '@kubernetes/client-node';
import type { CoreApi, CustomApi } from '../loop/rest.ts';
import jsonPatchLib from 'fast-json-patch';
import { policyAnnotations, tracks } from '../../contract/names.ts';
import { meshPropagationMs } from '../../contract/timing.ts';
import {
  backendServiceSpec,
  gatewayGroup as group,
  gatewayVersion as version,
  ownedRouteSpec,
  readRuleWeight,
  ruleRecord,
  selectsTrack,
  steerRule,
} from '../../contract/gateway.ts';
import type { HTTPRoute, SteeredRule } from '../../contract/gateway.ts';
import { formatWeights, parseWeights, routingAnnotations, withAnnotation } from '../../contract/steering.ts';
import type { SteeredRoute, Track } from '../../contract/steering.ts';
import { fieldManager, maybe } from '../../contract/api.ts';
import type { PatchOp } from '../../contract/api.ts';
import type { GatewayTarget, RouteOwner, RouteRead, RouteTarget, Traffic, TrafficRouter } from '../ports/router.ts';
import { StaleViews, viewKey } from './stale.ts';

const plural = 'httproutes';

const steeredOf = (target: GatewayTarget): SteeredRule => ({
  rule: target.route,
  stableService: target.stableService,
  canaryService: target.canaryService,
});

/**
 * The JSON Patch that sets the canary's share of the steered rule (stable gets the rest) and
 * records it in `weir.dev/weights` for the webhook to keep: two weights and that record only.
 */
export function ruleWeightPatch(route: HTTPRoute, target: GatewayTarget, traffic: Traffic): PatchOp[] {
  const steered = steeredOf(target);
  const next = steerRule(route, steered, traffic);
  if (!next.ok) throw new Error(next.error);
  const record =
    parseWeights(route.metadata?.annotations?.[routingAnnotations.weights]) ?? new Map<string, SteeredRoute>();
  const [key, entry] = ruleRecord(steered, traffic);
  record.set(key, entry);
  const guard: PatchOp[] = [{ op: 'test', path: '/metadata/resourceVersion', value: route.metadata?.resourceVersion }];
  const name = route.spec?.rules?.[next.index]?.name;
  if (name !== undefined) guard.push({ op: 'test', path: `/spec/rules/${next.index}/name`, value: name });
  return [
    ...guard,
    ...jsonPatchLib.compare(route, withAnnotation(next.route, routingAnnotations.weights, formatWeights(record))),
  ];
}

/** Routing objects from the analyzer's watches; `unknown` when that namespace is not cached. */
export interface GatewayCache {
  route: (namespace: string, name: string) => HTTPRoute | undefined | 'unknown';
  service: (namespace: string, name: string) => V1Service | undefined | 'unknown';
}

/** An object weir created for this Deployment: an owner reference to its uid. */
function ownedBy(object: { metadata?: object }, owner: RouteOwner | undefined): boolean {
  const refs = (object.metadata as { ownerReferences?: { uid?: string }[] } | undefined)?.ownerReferences ?? [];
  return owner !== undefined && owner.owner.uid !== '' && refs.some((r) => r.uid === owner.owner.uid);
}

const nameConflict = (kind: string, namespace: string, name: string): string =>
  `NameConflict: ${kind} ${namespace}/${name} exists and is not weir's; nothing of it is changed. ` +
  `Name your own with ${kind === 'HTTPRoute' ? policyAnnotations.httpRoute : policyAnnotations.stableService}, ` +
  'or rename it';

const managedBy = { 'app.kubernetes.io/managed-by': 'weir' };

export class GatewayRouter implements TrafficRouter {
  private readonly custom: CustomApi;
  private readonly core: CoreApi;
  private cache: GatewayCache | undefined;
  private readonly stale = new StaleViews();

  constructor(custom: CustomApi, core: CoreApi) {
    this.custom = custom;
    this.core = core;
  }

  /** Reads, and the writes computed from them, come from the watches from now on (ADR 14). */
  useCache(cache: GatewayCache): void {
    this.cache = cache;
  }

  private getRoute(namespace: string, name: string): Promise<HTTPRoute | undefined> {
    return maybe(
      () => this.custom.getNamespacedCustomObject({ group, version, plural, namespace, name }) as Promise<HTTPRoute>,
    );
  }

  private getService(namespace: string, name: string): Promise<V1Service | undefined> {
    return maybe(() => this.core.readNamespacedService({ namespace, name }));
  }

  /** From the watches when they cover the namespace, unless a write's guard found that view behind. */
  private async look<T>(
    key: string,
    cached: T | undefined | 'unknown',
    read: () => Promise<T | undefined>,
  ): Promise<T | undefined> {
    return this.cache === undefined || cached === 'unknown' || this.stale.behind(key, cached) ? read() : cached;
  }

  private lookRoute(namespace: string, name: string): Promise<HTTPRoute | undefined> {
    return this.look(viewKey(plural, namespace, name), this.cache?.route(namespace, name), () =>
      this.getRoute(namespace, name),
    );
  }

  private lookService(namespace: string, name: string): Promise<V1Service | undefined> {
    return this.look(viewKey('services', namespace, name), this.cache?.service(namespace, name), () =>
      this.getService(namespace, name),
    );
  }

  /** Objects a write needs: a view that lacks one (the watch may lag its creation) is asked again. */
  private async presentRoute(namespace: string, name: string): Promise<HTTPRoute | undefined> {
    return (await this.lookRoute(namespace, name)) ?? this.getRoute(namespace, name);
  }

  private async presentService(namespace: string, name: string): Promise<V1Service | undefined> {
    return (await this.lookService(namespace, name)) ?? this.getService(namespace, name);
  }

  private static gateway(target: RouteTarget): GatewayTarget {
    if (target.kind !== 'HTTPRoute') throw new Error(`the Gateway API router cannot steer a ${target.kind}`);
    return target;
  }

  async read(routeTarget: RouteTarget): Promise<RouteRead> {
    const target = GatewayRouter.gateway(routeTarget);
    const route = await this.lookRoute(target.namespace, target.httpRoute);
    if (!route)
      return target.owned
        ? { ok: true, canaryWeight: 0 }
        : { ok: false, error: `HTTPRoute ${target.namespace}/${target.httpRoute} not found` };
    if (target.owned && !ownedBy(route, target.owned))
      return { ok: false, error: nameConflict('HTTPRoute', target.namespace, target.httpRoute) };
    return readRuleWeight(route, steeredOf(target));
  }

  async steer(routeTarget: RouteTarget, traffic: Traffic): Promise<void> {
    const target = GatewayRouter.gateway(routeTarget);
    const route = await this.presentRoute(target.namespace, target.httpRoute);
    if (!route) throw new Error(`HTTPRoute ${target.namespace}/${target.httpRoute} not found`);
    const body = ruleWeightPatch(route, target, traffic);
    await this.stale.fenced(viewKey(plural, target.namespace, target.httpRoute), route, () =>
      this.custom.patchNamespacedCustomObject({
        group,
        version,
        plural,
        namespace: target.namespace,
        name: target.httpRoute,
        body,
        fieldManager,
      }),
    );
  }

  /** Both backend Services select their half (and weir's own route exists, when weir owns it). */
  async backendsReady(routeTarget: RouteTarget, inFlight: boolean): Promise<boolean> {
    const target = GatewayRouter.gateway(routeTarget);
    const [stable, canary, route] = await Promise.all([
      this.lookService(target.namespace, target.stableService),
      this.lookService(target.namespace, target.canaryService),
      target.owned ? this.lookRoute(target.namespace, target.httpRoute) : Promise.resolve(true),
    ]);
    // Between releases weir's own mesh route is retired: no route, and nothing to repair.
    if (!inFlight && target.owned && route === undefined) return true;
    return (
      route !== undefined &&
      selectsTrack(stable?.spec?.selector, tracks.stable) &&
      selectsTrack(canary?.spec?.selector, tracks.canary)
    );
  }

  async ensureBackends(routeTarget: RouteTarget, inFlight: boolean): Promise<void> {
    const target = GatewayRouter.gateway(routeTarget);
    // Between releases weir's own mesh route and its Services are retired: nothing to make.
    if (!inFlight && target.owned) return;
    const made = await Promise.all([
      this.ensureService(target, target.stableService, tracks.stable),
      this.ensureService(target, target.canaryService, tracks.canary),
    ]);
    if (!target.owned) return;
    // Make before break: the mesh must know both backends before a route names them, or it answers 500.
    const youngest = Math.min(...made.map((s) => Date.now() - new Date(s.metadata?.creationTimestamp ?? 0).getTime()));
    if (youngest < meshPropagationMs) return;
    const existing = await this.presentRoute(target.namespace, target.httpRoute);
    if (existing) {
      if (!ownedBy(existing, target.owned))
        throw new Error(nameConflict('HTTPRoute', target.namespace, target.httpRoute));
      return;
    }
    const frontend = await this.frontend(target);
    const port = frontend.spec?.ports?.[0]?.port;
    if (port === undefined) throw new Error(`Service ${target.namespace}/${target.host ?? ''} has no port to route`);
    const steered = steeredOf(target);
    const [key, entry] = ruleRecord(steered, { weight: 0 });
    const body: HTTPRoute = {
      apiVersion: `${group}/${version}`,
      kind: 'HTTPRoute',
      metadata: this.metadata(target, target.httpRoute, target.owned, {
        [routingAnnotations.weights]: formatWeights(new Map([[key, entry]])),
      }),
      spec: ownedRouteSpec(target.host ?? '', port, steered),
    };
    await this.stale.fenced(viewKey(plural, target.namespace, target.httpRoute), undefined, () =>
      this.custom.createNamespacedCustomObject({
        group,
        version,
        plural,
        namespace: target.namespace,
        body,
        fieldManager,
      }),
    );
  }

  /** A weir-owned mesh route goes once the release has settled; its Services wait (retireBackends). */
  async retire(routeTarget: RouteTarget): Promise<void> {
    const target = GatewayRouter.gateway(routeTarget);
    if (!target.owned) return;
    const route = await this.lookRoute(target.namespace, target.httpRoute);
    if (!route || !ownedBy(route, target.owned)) return;
    const uid = (route.metadata as { uid?: string } | undefined)?.uid;
    await maybe(() =>
      this.custom.deleteNamespacedCustomObject({
        group,
        version,
        plural,
        namespace: target.namespace,
        name: target.httpRoute,
        body: { preconditions: { uid } },
      }),
    );
  }

  /**
   * The Services weir made for its own mesh route, once that route is out of the mesh: deleted in
   * the same breath, a proxy could hold a route to a cluster that is gone and answer 503 NC.
   */
  async retireBackends(routeTarget: RouteTarget): Promise<void> {
    const target = GatewayRouter.gateway(routeTarget);
    if (!target.owned) return;
    // A route back (a new release began) names them again: they stay.
    const route = await this.lookRoute(target.namespace, target.httpRoute);
    if (route) return;
    for (const name of [target.canaryService, target.stableService]) {
      const service = await this.lookService(target.namespace, name);
      if (!service || !ownedBy(service, target.ownedServices)) continue;
      await maybe(() =>
        this.core.deleteNamespacedService({
          namespace: target.namespace,
          name,
          body: { preconditions: { uid: service.metadata?.uid ?? '' } },
        }),
      );
    }
  }

  private metadata(
    target: GatewayTarget,
    name: string,
    owner: RouteOwner,
    annotations: Record<string, string> = {},
  ): HTTPRoute['metadata'] & object {
    return {
      name,
      namespace: target.namespace,
      labels: managedBy,
      annotations,
      ownerReferences: [{ ...owner.owner, controller: false, blockOwnerDeletion: false }],
    };
  }

  private async frontend(target: GatewayTarget): Promise<V1Service> {
    const service = target.host ? await this.presentService(target.namespace, target.host) : undefined;
    if (!service) throw new Error(`no Service ${target.namespace}/${target.host ?? ''} to derive the backends from`);
    return service;
  }

  /** One backend Service: the user's (which must select its half), or weir's own, created when missing. */
  private async ensureService(target: GatewayTarget, name: string, track: Track): Promise<V1Service> {
    const existing = await this.presentService(target.namespace, name);
    if (existing) {
      if (selectsTrack(existing.spec?.selector, track)) return existing;
      if (!ownedBy(existing, target.ownedServices))
        throw new Error(
          target.ownedServices
            ? nameConflict('Service', target.namespace, name)
            : `Service ${target.namespace}/${name} does not select weir.dev/track=${track}; add it to its selector`,
        );
    }
    if (!target.ownedServices)
      throw new Error(`Service ${target.namespace}/${name} not found; create it, selecting weir.dev/track=${track}`);
    const frontend = await this.frontend(target);
    const spec = backendServiceSpec(
      { selector: frontend.spec?.selector ?? {}, ports: frontend.spec?.ports ?? [] },
      track,
    );
    const body: V1Service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: this.metadata(target, name, target.ownedServices),
      spec,
    };
    // weir's own Service selecting the wrong half (edited by hand): put back, fenced by its
    // resourceVersion. A whole-object replace is sent from a fresh read, never from the trimmed view.
    const current = existing ? await this.getService(target.namespace, name) : undefined;
    return this.stale.fenced(viewKey('services', target.namespace, name), existing, () =>
      current
        ? this.core.replaceNamespacedService({
            namespace: target.namespace,
            name,
            body: { ...current, spec: { ...current.spec, selector: spec.selector } },
            fieldManager,
          })
        : this.core.createNamespacedService({ namespace: target.namespace, body, fieldManager }),
    );
  }
}
