// observe: read everything that matters about one release into one plain value for decide.
import type { V1Deployment, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import type { AppsApi, CoreApi } from './rest.ts';
import { annotations, canaryName, isPhase, isRequest, labels } from '../../contract/names.ts';
import { selects } from '../../contract/selector.ts';
import type { LabelSelector } from '../../contract/selector.ts';
import { ownedByDeployment, selectorQuery } from './selector.ts';
import { parseStatus } from '../../contract/status.ts';
import type { ReleaseStatus, RouteRecord } from '../../contract/status.ts';
import { templateRevision } from '../../contract/revision.ts';
import type { CanaryObserved, Observed } from '../core/decide.ts';
import { maybe } from '../../contract/api.ts';
import type { EventRecorder } from './kube.ts';
import { policyAnnotations } from '../../contract/names.ts';
import { resolvePolicy, resolveRouting } from '../core/policy.ts';
import type { Policy } from '../core/policy.ts';
import { routeTarget } from '../core/target.ts';
import type { RouteTarget, TrafficRouter } from '../ports/router.ts';

export interface Edges {
  apps: AppsApi;
  core: CoreApi;
  router: TrafficRouter;
  policies: Record<string, Policy>;
  /** Records the Events `kubectl describe` shows. */
  events: EventRecorder;
  /** Which namespaces are opted in: the same selector as the webhook configuration's namespaceSelector. */
  optIn: LabelSelector;
  /** The watches' caches, when the analyzer runs them: observe then sends no reads (ADR 14). */
  cache?: {
    deployment: (namespace: string, name: string) => V1Deployment | undefined;
    services: (namespace: string) => readonly V1Service[];
  };
  /**
   * Releases (by namespace/name) whose stable pods were all found labelled before the first
   * weight, with the canary revision then: pods from before the opt-in are listed once per
   * release, not on every pass while the canary comes up.
   */
  podsLabelled?: Map<string, string>;
  /**
   * Passes not written yet (ADR 26), by namespace/name: the record they follow (its text) and the
   * status holding them. Any other write of the record makes them stale, and they are dropped.
   */
  unrecorded?: Map<string, { basis: string; status: ReleaseStatus }>;
}

/** A release's key in the work queue and the analyzer's maps: `namespace/name` of its Deployment. */
export const releaseKey = (namespace: string | undefined, name: string | undefined): string =>
  `${namespace ?? ''}/${name ?? ''}`;

export interface ReleaseView {
  observed: Observed;
  deployment: V1Deployment;
  target?: RouteTarget;
}

/** The Service the routing is for; undefined (and no list) when the user's own objects name everything. */
async function findService(edges: Edges, d: V1Deployment): Promise<string | undefined> {
  const namespace = d.metadata?.namespace ?? '';
  const a = d.metadata?.annotations ?? {};
  if (a[policyAnnotations.service]) return a[policyAnnotations.service];
  // A user-named VirtualService, or HTTPRoute over user-named Services, needs no Service.
  if (a[policyAnnotations.virtualService]) return undefined;
  if (a[policyAnnotations.httpRoute] && a[policyAnnotations.stableService] && a[policyAnnotations.canaryService])
    return undefined;
  const podLabels = d.spec?.template.metadata?.labels ?? {};
  const services = edges.cache
    ? edges.cache.services(namespace)
    : (await edges.core.listNamespacedService({ namespace })).items;
  const match = services.find((s) => {
    const selector = s.spec?.selector;
    return (
      selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => podLabels[k] === v)
    );
  });
  return match?.metadata?.name;
}

function rolledOut(d: V1Deployment): boolean {
  const want = d.spec?.replicas ?? 1;
  const s = d.status;
  return (
    !d.spec?.paused &&
    (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
    // The API leaves counts of 0 out: a Deployment rolled out at 0 replicas (a promotion's hand-over) has none.
    (s?.updatedReplicas ?? 0) === want &&
    (s?.replicas ?? 0) === want &&
    (s?.availableReplicas ?? 0) === want
  );
}

function canaryView(canary: V1Deployment): CanaryObserved {
  const want = canary.spec?.replicas ?? 1;
  const s = canary.status;
  return {
    revision: templateRevision(canary.spec?.template),
    replicas: want,
    // Available, not just Ready: see the canary's minReadySeconds.
    readyReplicas: s?.availableReplicas ?? 0,
    // Old canary pods of a superseded revision must be gone before the Ready count means anything.
    current:
      (s?.observedGeneration ?? 0) >= (canary.metadata?.generation ?? 0) &&
      (s?.updatedReplicas ?? 0) >= want &&
      s?.replicas === want,
  };
}

/** The namespace no longer matches the opt-in selector, or the Deployment is annotated `disabled`. */
export function optedOut(d: V1Deployment, ns: V1Namespace | undefined, optIn: LabelSelector): boolean {
  return (
    !ns || !selects(optIn, ns.metadata?.labels ?? {}) || d.metadata?.annotations?.[annotations.optOut] === 'disabled'
  );
}

/** Where the release is steered, and the Service its route sends to. */
function routeFields(
  target: RouteTarget | undefined,
  routing: Observed['routing'] & { host?: string },
  namespace: string,
): Pick<Observed, 'route' | 'service' | 'ownBackends'> {
  if (!target) return {};
  return {
    route: routeRecord(target),
    // A user's HTTPRoute over backend Services weir makes: they exist before any release.
    ...(target.kind === 'HTTPRoute' && target.ownedServices && !target.owned ? { ownBackends: true } : {}),
    ...serviceOf(routing.ok ? (routing.host ?? target.host) : undefined, namespace),
  };
}

/** A Service host as a route names it (`web`, `web.shop`, `web.shop.svc.cluster.local`). */
function serviceOf(host: string | undefined, namespace: string): Pick<Observed, 'service'> {
  if (!host) return {};
  const [name = '', ns] = host.split('.');
  return { service: { namespace: ns ?? namespace, name } };
}

/** The policy the Deployment asks for, resolved, and its name. */
function policyFields(
  a: Record<string, string>,
  policies: Record<string, Policy>,
): Pick<Observed, 'policy' | 'policyName'> {
  const policy = resolvePolicy(a, policies);
  return {
    policy: policy.ok ? { ok: true, value: policy.value } : { ok: false, errors: policy.errors },
    policyName: a[policyAnnotations.policy] ?? 'default',
  };
}

/** The route record a reader needs to see the weight on the route itself. */
const routeRecord = (target: RouteTarget): RouteRecord => ({
  kind: target.kind,
  name: target.kind === 'VirtualService' ? target.virtualService : target.httpRoute,
  ...(target.route !== undefined ? { route: target.route } : {}),
  stableSubset: target.kind === 'VirtualService' ? target.stableSubset : target.stableService,
  canarySubset: target.kind === 'VirtualService' ? target.canarySubset : target.canaryService,
});

/** The revisions, status and phase weir recorded on the Deployment. */
function recorded(
  a: Record<string, string>,
): Pick<Observed, 'phase' | 'canaryRevision' | 'stableRevision' | 'status' | 'request' | 'unreadableStatus'> {
  const rawPhase = a[annotations.phase];
  const text = a[annotations.status];
  const status = parseStatus(text);
  const request = a[annotations.request];
  return {
    ...(text !== undefined && text !== '' && !status ? { unreadableStatus: text.slice(0, 80) } : {}),
    ...(request === undefined ? {} : { request: isRequest(request) ? request : { invalid: request } }),
    phase: isPhase(rawPhase) ? rawPhase : 'Stable',
    ...(a[annotations.canaryRevision] ? { canaryRevision: a[annotations.canaryRevision] } : {}),
    ...(a[annotations.stableRevision] ? { stableRevision: a[annotations.stableRevision] } : {}),
    ...(status ? { status } : {}),
  };
}

/** The record, or the passes the analyzer kept on top of it while it is the same record (ADR 26). */
function withUnrecorded(
  edges: Edges,
  key: string,
  a: Record<string, string>,
  rec: ReturnType<typeof recorded>,
): ReturnType<typeof recorded> & Pick<Observed, 'recordedCheckAt'> {
  const kept = edges.unrecorded?.get(key);
  if (!kept) return rec;
  if (kept.basis !== a[annotations.status]) {
    edges.unrecorded?.delete(key);
    return rec;
  }
  return {
    ...rec,
    status: kept.status,
    ...(rec.status?.lastCheckAt ? { recordedCheckAt: rec.status.lastCheckAt } : {}),
  };
}

/**
 * Pods from before the opt-in are labelled before the first weight of a release; after it, every
 * stable pod comes from a template that carries the label, so there is nothing to list (ADR 3).
 */
const beforeFirstWeight = (rec: Pick<Observed, 'status' | 'canaryRevision'>): boolean =>
  rec.status?.revision !== rec.canaryRevision || (rec.status?.step === 0 && rec.status.stepStartedAt === undefined);

/** Running pods of the Deployment's own ReplicaSets that lack the track label (pods from before the opt-in). */
export async function unlabelledStablePods(edges: Pick<Edges, 'core'>, d: V1Deployment): Promise<{ items: V1Pod[] }> {
  const labelSelector = selectorQuery(d.spec?.selector, `!${labels.track}`);
  if (!labelSelector) return { items: [] };
  const pods = await edges.core.listNamespacedPod({ namespace: d.metadata?.namespace ?? '', labelSelector });
  return {
    items: pods.items.filter((p) => !p.metadata?.deletionTimestamp && ownedByDeployment(p, d.metadata?.name ?? '')),
  };
}

/** weir's own canary half of `d`: its mark, and an owner reference to this very Deployment (its uid). */
export function isOurCanary(canary: V1Deployment, d: V1Deployment): boolean {
  const uid = d.metadata?.uid;
  return (
    canary.metadata?.labels?.[labels.canaryOf] === d.metadata?.name &&
    uid !== undefined &&
    (canary.metadata?.ownerReferences ?? []).some((o) => o.kind === 'Deployment' && o.uid === uid)
  );
}

/** The canary half as decide sees it: weir's own, or a name conflict with a stranger. */
function canaryFields(canary: V1Deployment | undefined, d: V1Deployment): Pick<Observed, 'canary' | 'nameConflict'> {
  if (!canary) return {};
  return isOurCanary(canary, d)
    ? { canary: canaryView(canary) }
    : { nameConflict: `Deployment ${canary.metadata?.name ?? ''}` };
}

/** The canary half under weir's name: from the watch's cache when there is one. */
function canaryOf(edges: Edges, namespace: string, name: string): Promise<V1Deployment | undefined> {
  if (edges.cache) return Promise.resolve(edges.cache.deployment(namespace, canaryName(name)));
  return maybe(() => edges.apps.readNamespacedDeployment({ namespace, name: canaryName(name) }));
}

/** The user's Deployment as the stable half: its size, what of it is available, paused, rolled out. */
function halfFields(d: V1Deployment): Pick<Observed, 'replicas' | 'stableAvailable' | 'paused' | 'rolledOut'> {
  return {
    replicas: d.spec?.replicas ?? 1,
    stableAvailable: d.status?.availableReplicas ?? 0,
    paused: d.spec?.paused === true,
    rolledOut: rolledOut(d),
  };
}

/** Stable pods still to label, listed only before the release's first weight and until none is left. */
async function podsToLabel(
  edges: Edges,
  d: V1Deployment,
  rec: ReturnType<typeof recorded>,
): Promise<{ items: V1Pod[] }> {
  const key = releaseKey(d.metadata?.namespace, d.metadata?.name);
  if (rec.phase !== 'Progressing' || !beforeFirstWeight(rec)) {
    edges.podsLabelled?.delete(key);
    return { items: [] };
  }
  if (rec.canaryRevision && edges.podsLabelled?.get(key) === rec.canaryRevision) return { items: [] };
  const pods = await unlabelledStablePods(edges, d);
  // Once none lacks the label, none appears before the first weight: the Deployment is paused (ADR 3).
  if (pods.items.length === 0 && rec.canaryRevision) edges.podsLabelled?.set(key, rec.canaryRevision);
  return pods;
}

/** Reads one release: the Deployment, its canary, its pods and its routing. */
export async function observe(edges: Edges, d: V1Deployment, ns: V1Namespace | undefined): Promise<ReleaseView> {
  const namespace = d.metadata?.namespace ?? '';
  const name = d.metadata?.name ?? '';
  const a = d.metadata?.annotations ?? {};
  const rec = withUnrecorded(edges, releaseKey(namespace, name), a, recorded(a));
  const service = await findService(edges, d);
  const resolved = routeTarget(namespace, resolveRouting(a), service, { name, uid: d.metadata?.uid ?? '' });
  const target = 'error' in resolved ? undefined : resolved;
  const noRoute = { ok: false as const, error: 'error' in resolved ? resolved.error : '' };
  const [canary, routing, backendsReady, unlabelled] = await Promise.all([
    canaryOf(edges, namespace, name),
    target ? edges.router.read(target) : Promise.resolve(noRoute),
    target
      ? edges.router.backendsReady(target, rec.phase === 'Progressing' || rec.phase === 'Promoting')
      : Promise.resolve(false),
    podsToLabel(edges, d, rec),
  ]);
  const observed: Observed = {
    namespace,
    name,
    ...rec,
    optedOut: optedOut(d, ns, edges.optIn),
    ...halfFields(d),
    routing,
    backendsReady,
    unlabelledStablePods: unlabelled.items.length,
    ...policyFields(a, edges.policies),
    ...routeFields(target, routing, namespace),
    ...canaryFields(canary, d),
  };
  return { observed, deployment: d, ...(target ? { target } : {}) };
}
