// Istio behind the TrafficRouter interface. What weir may touch, and nothing else:
// - in the VirtualService, the `weight` of the stable and canary destinations of ONE route
//   (adding the canary destination to it when missing);
// - in the DestinationRule, the `labels` of the stable and canary subsets (adding them when missing).
// Every write is a JSON Patch guarded by `test` ops on resourceVersion and the route's name, so a
// concurrent edit is a conflict, retried on the next reconcile, never a silent overwrite.
import type { CustomObjectsApi } from '@kubernetes/client-node';
import { labels as weirLabels, tracks } from '../../contract/names.ts';
import { jsonPatch, maybe } from '../kube.ts';
import type { PatchOp } from '../kube.ts';
import type { Routing } from '../policy.ts';

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
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  spec?: { hosts?: string[]; gateways?: string[]; http?: HttpRoute[] };
}
export interface DestinationRule {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  spec?: { host?: string; subsets?: { name: string; labels?: Record<string, string>; [key: string]: unknown }[] };
}

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

export type RouteRead = { ok: true; canaryWeight: number } | { ok: false; error: string };

/** The one interface the analyzer moves traffic through. */
export interface TrafficRouter {
  read(target: RouteTarget): Promise<RouteRead>;
  setWeight(target: RouteTarget, canaryWeight: number): Promise<void>;
  subsetsReady(target: RouteTarget): Promise<boolean>;
  ensureSubsets(target: RouteTarget): Promise<void>;
}

/** Finds the route weir steers: the named one, else the only one. */
export function findRoute(vs: VirtualService, name: string | undefined): { index: number; route: HttpRoute } | { error: string } {
  const routes = vs.spec?.http ?? [];
  const index = name === undefined ? (routes.length === 1 ? 0 : -1) : routes.findIndex((r) => r.name === name);
  const route = routes[index];
  if (!route) {
    return { error: name === undefined ? `VirtualService ${vs.metadata?.name ?? ''} has ${routes.length} HTTP routes; name one with weir.dev/route` : `VirtualService ${vs.metadata?.name ?? ''} has no HTTP route named "${name}"` };
  }
  return { index, route };
}

/** Reads the canary weight of a route; the route may only hold the stable and canary subsets. */
export function readWeight(vs: VirtualService, target: RouteTarget): RouteRead {
  const found = findRoute(vs, target.route);
  if ('error' in found) return { ok: false, error: found.error };
  const destinations = found.route.route ?? [];
  const strangers = destinations.filter((d) => d.destination?.subset !== target.stableSubset && d.destination?.subset !== target.canarySubset);
  if (strangers.length > 0) return { ok: false, error: `route "${found.route.name ?? found.index}" sends traffic to destinations other than subsets ${target.stableSubset}/${target.canarySubset}` };
  if (!destinations.some((d) => d.destination?.subset === target.stableSubset)) return { ok: false, error: `route "${found.route.name ?? found.index}" has no destination with subset ${target.stableSubset}` };
  const canary = destinations.find((d) => d.destination?.subset === target.canarySubset);
  return { ok: true, canaryWeight: canary?.weight ?? 0 };
}

/** The JSON Patch that sets the canary weight (stable gets the rest): weights only. */
export function weightPatch(vs: VirtualService, target: RouteTarget, canaryWeight: number): PatchOp[] {
  const found = findRoute(vs, target.route);
  if ('error' in found) throw new Error(found.error);
  const base = `/spec/http/${found.index}`;
  const ops: PatchOp[] = [{ op: 'test', path: '/metadata/resourceVersion', value: vs.metadata?.resourceVersion }];
  if (found.route.name !== undefined) ops.push({ op: 'test', path: `${base}/name`, value: found.route.name });
  const destinations = found.route.route ?? [];
  const stableIndex = destinations.findIndex((d) => d.destination?.subset === target.stableSubset);
  const stable = destinations[stableIndex];
  if (!stable) throw new Error(`no destination with subset ${target.stableSubset}`);
  ops.push({ op: 'add', path: `${base}/route/${stableIndex}/weight`, value: 100 - canaryWeight });
  const canaryIndex = destinations.findIndex((d) => d.destination?.subset === target.canarySubset);
  if (canaryIndex >= 0) ops.push({ op: 'add', path: `${base}/route/${canaryIndex}/weight`, value: canaryWeight });
  else ops.push({ op: 'add', path: `${base}/route/-`, value: { destination: { ...stable.destination, subset: target.canarySubset }, weight: canaryWeight } });
  return ops;
}

const wanted = (target: RouteTarget): Record<string, Record<string, string>> => ({
  [target.stableSubset]: { [weirLabels.track]: tracks.stable },
  [target.canarySubset]: { [weirLabels.track]: tracks.canary },
});

const sameLabels = (a: Record<string, string> | undefined, b: Record<string, string>): boolean =>
  JSON.stringify(Object.entries(a ?? {}).sort()) === JSON.stringify(Object.entries(b).sort());

/** The JSON Patch that points the two subsets at the two halves; other subsets stay. */
export function subsetPatch(dr: DestinationRule, target: RouteTarget): PatchOp[] {
  const subsets = dr.spec?.subsets ?? [];
  const ops: PatchOp[] = [{ op: 'test', path: '/metadata/resourceVersion', value: dr.metadata?.resourceVersion }];
  if (!dr.spec?.subsets) ops.push({ op: 'add', path: '/spec/subsets', value: [] });
  for (const [name, labels] of Object.entries(wanted(target))) {
    const index = subsets.findIndex((s) => s.name === name);
    if (index < 0) ops.push({ op: 'add', path: '/spec/subsets/-', value: { name, labels } });
    else if (!sameLabels(subsets[index]?.labels, labels)) {
      ops.push({ op: 'test', path: `/spec/subsets/${index}/name`, value: name }, { op: 'add', path: `/spec/subsets/${index}/labels`, value: labels });
    }
  }
  return ops;
}

export function subsetsInPlace(dr: DestinationRule, target: RouteTarget): boolean {
  return Object.entries(wanted(target)).every(([name, labels]) => sameLabels(dr.spec?.subsets?.find((s) => s.name === name)?.labels, labels));
}

/**
 * Time the mesh is given to learn of a new object before anything depends on it. Config reaches
 * Envoy in seconds, slower under load; creationTimestamp has 1 s resolution, so this is a floor.
 */
export const meshPropagationMs = 5000;

const group = 'networking.istio.io';
const version = 'v1';

export class IstioRouter implements TrafficRouter {
  private readonly api: CustomObjectsApi;

  constructor(api: CustomObjectsApi) {
    this.api = api;
  }

  private get<T>(plural: string, namespace: string, name: string): Promise<T | undefined> {
    return maybe(() => this.api.getNamespacedCustomObject({ group, version, plural, namespace, name }) as Promise<T>);
  }

  private async patch(plural: string, namespace: string, name: string, body: PatchOp[]): Promise<void> {
    await this.api.patchNamespacedCustomObject({ group, version, plural, namespace, name, body }, jsonPatch);
  }

  async read(target: RouteTarget): Promise<RouteRead> {
    const vs = await this.get<VirtualService>('virtualservices', target.namespace, target.virtualService);
    if (!vs) return target.owned ? { ok: true, canaryWeight: 0 } : { ok: false, error: `VirtualService ${target.namespace}/${target.virtualService} not found` };
    return readWeight(vs, target);
  }

  async setWeight(target: RouteTarget, canaryWeight: number): Promise<void> {
    const vs = await this.get<VirtualService>('virtualservices', target.namespace, target.virtualService);
    if (!vs) throw new Error(`VirtualService ${target.namespace}/${target.virtualService} not found`);
    await this.patch('virtualservices', target.namespace, target.virtualService, weightPatch(vs, target, canaryWeight));
  }

  async subsetsReady(target: RouteTarget): Promise<boolean> {
    const dr = await this.get<DestinationRule>('destinationrules', target.namespace, target.destinationRule);
    const vs = target.owned ? await this.get<VirtualService>('virtualservices', target.namespace, target.virtualService) : true;
    return dr !== undefined && vs !== undefined && subsetsInPlace(dr, target);
  }

  async ensureSubsets(target: RouteTarget): Promise<void> {
    if (target.owned) await this.createOwned(target);
    const dr = await this.get<DestinationRule>('destinationrules', target.namespace, target.destinationRule);
    if (!dr) throw new Error(`DestinationRule ${target.namespace}/${target.destinationRule} not found`);
    const ops = subsetPatch(dr, target);
    if (ops.length > 1) await this.patch('destinationrules', target.namespace, target.destinationRule, ops);
  }

  /** With no VirtualService named, weir creates and owns one pair for the Service. */
  private async createOwned(target: RouteTarget): Promise<void> {
    const owner = target.owned?.owner;
    const host = target.host;
    if (!owner || !host) throw new Error('no Service host to route');
    const metadata = (name: string): Record<string, unknown> => ({ name, namespace: target.namespace, labels: { 'app.kubernetes.io/managed-by': 'weir' }, ownerReferences: [{ ...owner, controller: false, blockOwnerDeletion: false }] });
    const create = async (plural: string, name: string, spec: unknown): Promise<void> => {
      if (await this.get(plural, target.namespace, name)) return;
      const kind = plural === 'virtualservices' ? 'VirtualService' : 'DestinationRule';
      await this.api.createNamespacedCustomObject({ group, version, plural, namespace: target.namespace, body: { apiVersion: `${group}/${version}`, kind, metadata: metadata(name), spec } });
    };
    await create('destinationrules', target.destinationRule, { host, subsets: Object.entries(wanted(target)).map(([name, labels]) => ({ name, labels })) });
    // Make before break: the mesh must know the subsets before a route names them, or it answers 503.
    const dr = await this.get<DestinationRule & { metadata?: { creationTimestamp?: string } }>('destinationrules', target.namespace, target.destinationRule);
    const age = Date.now() - new Date(dr?.metadata?.creationTimestamp ?? Date.now()).getTime();
    if (age < meshPropagationMs) return;
    await create('virtualservices', target.virtualService, {
      hosts: [host],
      http: [{ name: target.route ?? 'weir', route: [{ destination: { host, subset: target.stableSubset }, weight: 100 }, { destination: { host, subset: target.canarySubset }, weight: 0 }] }],
    });
  }
}

/** Resolves the objects that route a release: the names the user gave, or weir-owned ones. */
export function routeTarget(namespace: string, routing: Routing, service: string | undefined, owner: { name: string; uid: string }): RouteTarget | { error: string } {
  const common = { namespace, stableSubset: routing.stableSubset, canarySubset: routing.canarySubset, ...(routing.route ? { route: routing.route } : {}) };
  if (routing.virtualService) {
    if (!routing.destinationRule) return { error: 'weir.dev/virtual-service is set; name its DestinationRule with weir.dev/destination-rule too' };
    return { ...common, virtualService: routing.virtualService, destinationRule: routing.destinationRule, ...(service ? { host: service } : {}) };
  }
  if (!service) return { error: 'no Service selects these pods; name one with weir.dev/service, or name the VirtualService with weir.dev/virtual-service' };
  const name = `weir-${owner.name}`.slice(0, 253);
  return { ...common, virtualService: name, destinationRule: routing.destinationRule ?? name, host: service, owned: { owner: { apiVersion: 'apps/v1', kind: 'Deployment', name: owner.name, uid: owner.uid } } };
}
