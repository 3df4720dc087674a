// Istio behind the TrafficRouter interface. What weir may touch, and nothing else:
// - in the VirtualService, the `weight` of the stable and canary destinations of ONE route
//   (adding the canary destination to it when missing);
// - in the DestinationRule, the `labels` of the stable and canary subsets (adding them when missing).
// Every write is a JSON Patch guarded by `test` ops on resourceVersion and the route's name, so a
// concurrent edit is a conflict, retried on the next reconcile, never a silent overwrite. Writes
// are computed from the watches' view: the guard is what makes that safe (ADR 14).
import type { CustomApi } from '../loop/rest.ts';
import jsonPatchLib from 'fast-json-patch';
import { policyAnnotations, tracks } from '../../contract/names.ts';
import { meshPropagationMs } from '../../contract/timing.ts';
import {
  findRoute,
  formatSubsets,
  parseSubsets,
  readCanaryWeight,
  steerSubsets,
  steerWeight,
  subsetsSelect,
  trackSelector,
} from '../../contract/istio.ts';
import type { DestinationRule, VirtualService } from '../../contract/istio.ts';
import { formatWeights, parseWeights, routeKey, routingAnnotations, withAnnotation } from '../../contract/steering.ts';
import type { SteeredRoute, Track } from '../../contract/steering.ts';
import { fieldManager, maybe } from '../../contract/api.ts';
import type { PatchOp } from '../../contract/api.ts';
import type { MeshTarget, RouteRead, RouteTarget, Traffic, TrafficRouter } from '../ports/router.ts';
import { StaleViews, viewKey } from './stale.ts';

export type { DestinationRule, VirtualService } from '../../contract/istio.ts';
export { findRoute } from '../../contract/istio.ts';

/** Reads the canary weight of a route; the route may only hold the stable and canary subsets. */
export const readWeight = (vs: VirtualService, target: MeshTarget): RouteRead => readCanaryWeight(vs, target);

/**
 * The JSON Patch that sets the canary weight (stable gets the rest) and records it in
 * `weir.dev/weights` for the webhook to keep: weights and that record only.
 */
export function weightPatch(vs: VirtualService, target: MeshTarget, traffic: Traffic): PatchOp[] {
  const steered: SteeredRoute = {
    stable: target.stableSubset,
    canary: target.canarySubset,
    weight: traffic.weight,
    ...(traffic.mirror ? { mirror: traffic.mirror } : {}),
    ...(traffic.header ? { header: traffic.header } : {}),
  };
  const next = steerWeight(vs, target.route, steered);
  if (!next.ok) throw new Error(next.error);
  const found = findRoute(vs, target.route);
  const record =
    parseWeights(vs.metadata?.annotations?.[routingAnnotations.weights]) ?? new Map<string, SteeredRoute>();
  // One entry per route: another key naming the same route (by name, or as "the only route") goes.
  for (const key of record.keys()) {
    const other = findRoute(vs, key === '' ? undefined : key);
    if (!('error' in other) && !('error' in found) && other.index === found.index) record.delete(key);
  }
  record.set(routeKey(target.route), steered);
  const guard: PatchOp[] = [{ op: 'test', path: '/metadata/resourceVersion', value: vs.metadata?.resourceVersion }];
  if (!('error' in found) && found.route.name !== undefined)
    guard.push({ op: 'test', path: `/spec/http/${found.index}/name`, value: found.route.name });
  return [
    ...guard,
    ...jsonPatchLib.compare(vs, withAnnotation(next.vs, routingAnnotations.weights, formatWeights(record))),
  ];
}

/**
 * The track each subset selects: in a release, its own half; between releases the canary subset
 * selects the stable half too, so it never selects nothing (Istio's IST0173, a 503 waiting to
 * happen) and a weight that leaks onto it still reaches running pods — as Argo Rollouts does.
 */
const wanted = (target: MeshTarget, inFlight = true): Map<string, Track> =>
  new Map<string, Track>([
    [target.stableSubset, tracks.stable],
    [target.canarySubset, inFlight ? tracks.canary : tracks.stable],
  ]);

/** The subsets weir keeps on this DestinationRule: those already recorded, and this release's two. */
function subsetRecord(dr: DestinationRule, target: MeshTarget, inFlight: boolean): Map<string, Track> {
  const record = parseSubsets(dr.metadata?.annotations?.[routingAnnotations.subsets]) ?? new Map<string, Track>();
  for (const [name, track] of wanted(target, inFlight)) record.set(name, track);
  return record;
}

/** The JSON Patch that points the two subsets at their tracks and records it; other subsets stay. */
export function subsetPatch(dr: DestinationRule, target: MeshTarget, inFlight = true): PatchOp[] {
  const record = subsetRecord(dr, target, inFlight);
  const next = withAnnotation(steerSubsets(dr, record), routingAnnotations.subsets, formatSubsets(record));
  return [
    { op: 'test', path: '/metadata/resourceVersion', value: dr.metadata?.resourceVersion },
    ...jsonPatchLib.compare(dr, next),
  ];
}

/** The subsets select their tracks, and the record that keeps them so is in place. */
export function subsetsInPlace(dr: DestinationRule, target: MeshTarget, inFlight = true): boolean {
  const recorded = parseSubsets(dr.metadata?.annotations?.[routingAnnotations.subsets]);
  const want = wanted(target, inFlight);
  return subsetsSelect(dr, want) && [...want].every(([name, track]) => recorded?.get(name) === track);
}

const group = 'networking.istio.io';
const version = 'v1';

/** Routing objects from the analyzer's watches; `unknown` when that namespace is not cached. */
export type RoutingCache = (
  plural: 'virtualservices' | 'destinationrules',
  namespace: string,
  name: string,
) => object | undefined | 'unknown';

export class IstioRouter implements TrafficRouter {
  private readonly api: CustomApi;
  private cache: RoutingCache | undefined;
  private readonly stale = new StaleViews();

  constructor(api: CustomApi) {
    this.api = api;
  }

  /** Reads, and the writes computed from them, come from the watches from now on (ADR 14). */
  useCache(cache: RoutingCache): void {
    this.cache = cache;
  }

  private get<T>(plural: string, namespace: string, name: string): Promise<T | undefined> {
    return maybe(() => this.api.getNamespacedCustomObject({ group, version, plural, namespace, name }) as Promise<T>);
  }

  /** From the cache when it has the namespace, unless a write's guard found that view behind. */
  private look<T>(
    plural: 'virtualservices' | 'destinationrules',
    namespace: string,
    name: string,
  ): Promise<T | undefined> {
    const cached = this.cache?.(plural, namespace, name);
    if (cached === 'unknown' || this.cache === undefined || this.stale.behind(viewKey(plural, namespace, name), cached))
      return this.get<T>(plural, namespace, name);
    return Promise.resolve(cached as T | undefined);
  }

  /** An object a write needs: a view that lacks it (the watch may lag its creation) is asked again. */
  private async present<T>(
    plural: 'virtualservices' | 'destinationrules',
    namespace: string,
    name: string,
  ): Promise<T | undefined> {
    return (await this.look<T>(plural, namespace, name)) ?? this.get<T>(plural, namespace, name);
  }

  /** A patch computed from `view`, fenced by its resourceVersion. */
  private async patch(plural: string, namespace: string, name: string, view: object, body: PatchOp[]): Promise<void> {
    await this.stale.fenced(viewKey(plural, namespace, name), view, () =>
      this.api.patchNamespacedCustomObject({ group, version, plural, namespace, name, body, fieldManager }),
    );
  }

  private static mesh(target: RouteTarget): MeshTarget {
    if (target.kind !== 'VirtualService') throw new Error(`the Istio router cannot steer an ${target.kind}`);
    return target;
  }

  async read(routeTarget: RouteTarget): Promise<RouteRead> {
    const target = IstioRouter.mesh(routeTarget);
    const vs = await this.look<VirtualService>('virtualservices', target.namespace, target.virtualService);
    if (!vs)
      return target.owned
        ? { ok: true, canaryWeight: 0 }
        : { ok: false, error: `VirtualService ${target.namespace}/${target.virtualService} not found` };
    if (target.owned) {
      const dr = await this.look<DestinationRule>('destinationrules', target.namespace, target.destinationRule);
      const stranger = [vs, dr].find((o) => o !== undefined && !ownedBy(o, target));
      if (stranger) return { ok: false, error: nameConflict(stranger, target) };
    }
    return readWeight(vs, target);
  }

  async steer(routeTarget: RouteTarget, traffic: Traffic): Promise<void> {
    const target = IstioRouter.mesh(routeTarget);
    const vs = await this.present<VirtualService>('virtualservices', target.namespace, target.virtualService);
    if (!vs) throw new Error(`VirtualService ${target.namespace}/${target.virtualService} not found`);
    await this.patch('virtualservices', target.namespace, target.virtualService, vs, weightPatch(vs, target, traffic));
  }

  async backendsReady(routeTarget: RouteTarget, inFlight: boolean): Promise<boolean> {
    const target = IstioRouter.mesh(routeTarget);
    const dr = await this.look<DestinationRule>('destinationrules', target.namespace, target.destinationRule);
    const vs = target.owned
      ? await this.look<VirtualService>('virtualservices', target.namespace, target.virtualService)
      : true;
    return dr !== undefined && vs !== undefined && subsetsInPlace(dr, target, inFlight);
  }

  async ensureBackends(routeTarget: RouteTarget, inFlight: boolean): Promise<void> {
    const target = IstioRouter.mesh(routeTarget);
    if (target.owned) await this.createOwned(target);
    const dr = await this.present<DestinationRule>('destinationrules', target.namespace, target.destinationRule);
    if (!dr) throw new Error(`DestinationRule ${target.namespace}/${target.destinationRule} not found`);
    if (target.owned && !ownedBy(dr, target)) throw new Error(nameConflict(dr, target));
    const ops = subsetPatch(dr, target, inFlight);
    if (ops.length > 1) await this.patch('destinationrules', target.namespace, target.destinationRule, dr, ops);
  }

  /** Between releases the canary subset selects the stable half; the objects stay (weir's own hold the weight). */
  async retire(routeTarget: RouteTarget): Promise<void> {
    const target = IstioRouter.mesh(routeTarget);
    const dr = await this.present<DestinationRule>('destinationrules', target.namespace, target.destinationRule);
    if (!dr || (target.owned && !ownedBy(dr, target))) return;
    const ops = subsetPatch(dr, target, false);
    if (ops.length > 1) await this.patch('destinationrules', target.namespace, target.destinationRule, dr, ops);
  }

  /** The subsets stay between releases (the route names them): nothing to remove. */
  retireBackends(): Promise<void> {
    return Promise.resolve();
  }

  /** With no VirtualService named, weir creates and owns one pair for the Service. */
  private async createOwned(target: MeshTarget): Promise<void> {
    const owner = target.owned?.owner;
    const host = target.host;
    if (!owner || !host) throw new Error('no Service host to route');
    const metadata = (name: string, record: Record<string, string>): Record<string, unknown> => ({
      name,
      namespace: target.namespace,
      labels: { 'app.kubernetes.io/managed-by': 'weir' },
      annotations: record,
      ownerReferences: [{ ...owner, controller: false, blockOwnerDeletion: false }],
    });
    const create = async (
      plural: 'virtualservices' | 'destinationrules',
      name: string,
      record: Record<string, string>,
      spec: unknown,
    ): Promise<void> => {
      if (await this.present(plural, target.namespace, name)) return;
      const kind = plural === 'virtualservices' ? 'VirtualService' : 'DestinationRule';
      const body = { apiVersion: `${group}/${version}`, kind, metadata: metadata(name, record), spec };
      await this.stale.fenced(viewKey(plural, target.namespace, name), undefined, () =>
        this.api.createNamespacedCustomObject({
          group,
          version,
          plural,
          namespace: target.namespace,
          body,
          fieldManager,
        }),
      );
    };
    const subsets = wanted(target);
    await create(
      'destinationrules',
      target.destinationRule,
      { [routingAnnotations.subsets]: formatSubsets(subsets) },
      {
        host,
        subsets: [...subsets].map(([name, track]) => ({ name, labels: trackSelector(track) })),
      },
    );
    // Make before break: the mesh must know the subsets before a route names them, or it answers 503.
    const dr = await this.present<DestinationRule & { metadata?: { creationTimestamp?: string } }>(
      'destinationrules',
      target.namespace,
      target.destinationRule,
    );
    const age = Date.now() - new Date(dr?.metadata?.creationTimestamp ?? Date.now()).getTime();
    if (age < meshPropagationMs) return;
    const steered = new Map([
      [routeKey(target.route), { stable: target.stableSubset, canary: target.canarySubset, weight: 0 }],
    ]);
    await create(
      'virtualservices',
      target.virtualService,
      { [routingAnnotations.weights]: formatWeights(steered) },
      {
        hosts: [host],
        http: [
          {
            name: target.route ?? 'weir',
            route: [
              { destination: { host, subset: target.stableSubset }, weight: 100 },
              { destination: { host, subset: target.canarySubset }, weight: 0 },
            ],
          },
        ],
      },
    );
  }
}

/** A routing object weir created for this Deployment: an owner reference to its uid. */
function ownedBy(object: VirtualService | DestinationRule, target: MeshTarget): boolean {
  const uid = target.owned?.owner.uid;
  const refs = (object.metadata?.ownerReferences ?? []) as { uid?: string }[];
  return uid !== undefined && uid !== '' && refs.some((r) => r.uid === uid);
}

const nameConflict = (object: VirtualService | DestinationRule, target: MeshTarget): string =>
  `NameConflict: ${typeof object.kind === 'string' ? object.kind : 'object'} ` +
  `${target.namespace}/${object.metadata?.name ?? ''} exists and is not weir's; ` +
  `nothing of it is changed. Name your own routing with ${policyAnnotations.virtualService}, or rename it`;
