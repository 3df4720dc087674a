// observe: read everything that matters about one release into one plain value for decide.
import { createHash } from 'node:crypto';
import type { AppsV1Api, CoreV1Api, V1Deployment, V1Namespace } from '@kubernetes/client-node';
import { annotations, isPhase, labels, namespaceOptIn } from '../contract/names.ts';
import type { Phase } from '../contract/names.ts';
import { parseStatus } from '../contract/status.ts';
import { templateRevision } from '../contract/revision.ts';
import type { Observed } from './decide.ts';
import { maybe } from './kube.ts';
import { resolvePolicy, resolveRouting } from './policy.ts';
import type { Policy } from './policy.ts';
import { routeTarget } from './router/istio.ts';
import type { RouteTarget, TrafficRouter } from './router/istio.ts';

export interface Edges {
  apps: AppsV1Api;
  core: CoreV1Api;
  router: TrafficRouter;
  policies: Record<string, Policy>;
}

/** `<name>-canary`, shortened with a hash when it would pass 63 characters. */
export function canaryName(name: string): string {
  const plain = `${name}-canary`;
  if (plain.length <= 63) return plain;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${name.slice(0, 63 - 1 - hash.length - '-canary'.length)}-${hash}-canary`;
}

/** `app=web,tier=front` for a Deployment's matchLabels, plus extra terms. */
export function selectorOf(d: V1Deployment, ...extra: string[]): string {
  return [...Object.entries(d.spec?.selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`), ...extra].join(',');
}

export interface ReleaseView {
  observed: Observed;
  deployment: V1Deployment;
  target?: RouteTarget;
}

async function findService(edges: Edges, d: V1Deployment): Promise<string | undefined> {
  const namespace = d.metadata?.namespace ?? '';
  const named = d.metadata?.annotations?.['weir.dev/service'];
  if (named) return named;
  const podLabels = d.spec?.template.metadata?.labels ?? {};
  const services = await edges.core.listNamespacedService({ namespace });
  const match = services.items.find((s) => {
    const selector = s.spec?.selector;
    return selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => podLabels[k] === v);
  });
  return match?.metadata?.name;
}

function rolledOut(d: V1Deployment): boolean {
  const want = d.spec?.replicas ?? 1;
  const s = d.status;
  return !d.spec?.paused && (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) && s?.updatedReplicas === want && s.replicas === want && s.availableReplicas === want;
}

/** Reads one release: the Deployment, its canary, its pods and its routing. */
export async function observe(edges: Edges, d: V1Deployment, ns: V1Namespace | undefined): Promise<ReleaseView> {
  const namespace = d.metadata?.namespace ?? '';
  const name = d.metadata?.name ?? '';
  const a = d.metadata?.annotations ?? {};
  const rawPhase = a[annotations.phase];
  const phase: Phase = isPhase(rawPhase) ? rawPhase : 'Stable';
  const policy = resolvePolicy(a, edges.policies);
  const service = a[annotations.phase] ? await findService(edges, d) : undefined;
  const resolved = routeTarget(namespace, resolveRouting(a), service, { name, uid: d.metadata?.uid ?? '' });
  const target = 'error' in resolved ? undefined : resolved;
  const [canary, routing, subsetsReady, unlabelled] = await Promise.all([
    maybe(() => edges.apps.readNamespacedDeployment({ namespace, name: canaryName(name) })),
    target ? edges.router.read(target) : Promise.resolve({ ok: false as const, error: 'error' in resolved ? resolved.error : '' }),
    target ? edges.router.subsetsReady(target) : Promise.resolve(false),
    phase === 'Progressing' ? edges.core.listNamespacedPod({ namespace, labelSelector: selectorOf(d, `!${labels.track}`) }) : Promise.resolve({ items: [] }),
  ]);
  const observed: Observed = {
    namespace,
    name,
    phase,
    optedOut: ns?.metadata?.labels?.[namespaceOptIn.key] !== namespaceOptIn.value || a[annotations.optOut] === 'disabled',
    replicas: d.spec?.replicas ?? 1,
    paused: d.spec?.paused === true,
    rolledOut: rolledOut(d),
    routing,
    subsetsReady,
    unlabelledStablePods: unlabelled.items.filter((p) => !p.metadata?.deletionTimestamp).length,
    policy: policy.ok ? { ok: true, value: policy.value } : { ok: false, errors: policy.errors },
    ...(a[annotations.canaryRevision] ? { canaryRevision: a[annotations.canaryRevision] } : {}),
    ...(a[annotations.stableRevision] ? { stableRevision: a[annotations.stableRevision] } : {}),
  };
  const status = parseStatus(a[annotations.status]);
  if (status) observed.status = status;
  if (canary) {
    observed.canary = {
      revision: templateRevision(canary.spec?.template),
      replicas: canary.spec?.replicas ?? 1,
      readyReplicas: canary.status?.readyReplicas ?? 0,
      // Old canary pods of a superseded revision must be gone before the Ready count means anything.
      current: (canary.status?.observedGeneration ?? 0) >= (canary.metadata?.generation ?? 0) && (canary.status?.updatedReplicas ?? 0) >= (canary.spec?.replicas ?? 1) && canary.status?.replicas === canary.spec?.replicas,
    };
  }
  return { observed, deployment: d, ...(target ? { target } : {}) };
}
