// act: carry out decide's actions with the API server, in order, stopping at the first failure
// (the next reconcile starts again from what the cluster then says). Writes only while leader.
import type { V1Deployment, V1ObjectReference } from '@kubernetes/client-node';
import { annotations, canaryName, labels, pointer, tracks } from '../../contract/names.ts';
import { formatStatus } from '../../contract/status.ts';
import { isFinding } from '../core/decide.ts';
import type { Action } from '../core/decide.ts';
import { fieldManager, maybe } from '../../contract/api.ts';
import type { PatchOp } from '../../contract/api.ts';
import { isOurCanary, releaseKey, unlabelledStablePods } from './observe.ts';
import { selectorQuery } from './selector.ts';
import { meshPropagationMs } from '../../contract/timing.ts';
import type { Edges, ReleaseView } from './observe.ts';
import type { Traffic } from '../ports/router.ts';

/** The traffic a setWeight action asks the router for. */
const trafficOf = ({ weight, mirror, header }: Extract<Action, { kind: 'setWeight' }>): Traffic => ({
  weight,
  ...(mirror ? { mirror } : {}),
  ...(header ? { header } : {}),
});

export interface ActContext extends Edges {
  /** False once leadership is lost: no more writes, at once. */
  mayWrite: () => boolean;
  /** Hands an Event that was recorded to the notifications (issue 16); queues, never waits. */
  notify?: (event: {
    namespace: string;
    deployment: string;
    type: 'Normal' | 'Warning';
    reason: string;
    message: string;
  }) => void;
  now: () => Date;
  onAction?: (view: ReleaseView, action: Action) => void;
}

/** The canary half: the user's template with the canary track, the same selector, owned by the user's Deployment. */
export function canaryManifest(d: V1Deployment, replicas: number): V1Deployment {
  const name = d.metadata?.name ?? '';
  const template = structuredClone(d.spec?.template ?? {});
  template.metadata ??= {};
  template.metadata.labels = { ...(template.metadata.labels ?? {}), [labels.track]: tracks.canary };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: canaryName(name),
      namespace: d.metadata?.namespace ?? '',
      labels: { ...(d.metadata?.labels ?? {}), [labels.canaryOf]: name },
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          name,
          uid: d.metadata?.uid ?? '',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      replicas,
      selector: structuredClone(d.spec?.selector ?? { matchLabels: {} }),
      template,
      ...(d.spec?.strategy ? { strategy: structuredClone(d.spec.strategy) } : {}),
      // Weight goes only to Available canary pods: Ready long enough for the mesh to know them.
      minReadySeconds: Math.max(d.spec?.minReadySeconds ?? 0, Math.ceil(meshPropagationMs / 1000)),
    },
  };
}

/**
 * The fence (ADR 10): a write to the user's Deployment lands only on the spec and the release it
 * was decided on — same generation, same canary revision — or fails as a conflict, and the next
 * pass observes again. A decision about revision B can never unpause revision C.
 */
export function fence(d: V1Deployment): PatchOp[] {
  const guard: PatchOp[] = [{ op: 'test', path: '/metadata/generation', value: d.metadata?.generation }];
  const revision = d.metadata?.annotations?.[annotations.canaryRevision];
  if (revision)
    guard.push({ op: 'test', path: `/metadata/annotations/${pointer(annotations.canaryRevision)}`, value: revision });
  return guard;
}

/** Every write to the user's Deployment: fenced; the view moves on to what this write produced, and nothing else. */
async function patchDeployment(ctx: ActContext, view: ReleaseView, ops: PatchOp[]): Promise<void> {
  const d = view.deployment;
  const namespace = d.metadata?.namespace ?? '';
  const name = d.metadata?.name ?? '';
  view.deployment = await ctx.apps.patchNamespacedDeployment({
    namespace,
    name,
    body: [...fence(d), ...ops],
    fieldManager,
  });
}

function annotationOps(values: Record<string, string | undefined>, current: Record<string, string>): PatchOp[] {
  const ops: PatchOp[] =
    Object.keys(current).length === 0 ? [{ op: 'add', path: '/metadata/annotations', value: {} }] : [];
  for (const [key, value] of Object.entries(values)) {
    const path = `/metadata/annotations/${pointer(key)}`;
    if (value !== undefined) ops.push({ op: 'add', path, value });
    else if (key in current) ops.push({ op: 'remove', path });
  }
  return ops;
}

async function ensureCanary(ctx: ActContext, d: V1Deployment, replicas: number): Promise<void> {
  const wantedCanary = canaryManifest(d, replicas);
  const namespace = d.metadata?.namespace ?? '';
  const existing = await maybe(() =>
    ctx.apps.readNamespacedDeployment({ namespace, name: wantedCanary.metadata?.name ?? '' }),
  );
  if (!existing) {
    await ctx.apps.createNamespacedDeployment({ namespace, body: wantedCanary, fieldManager });
    return;
  }
  // Decided on a view that saw no stranger; checked again right before the write.
  if (!isOurCanary(existing, d))
    throw new Error(`Deployment ${namespace}/${existing.metadata?.name ?? ''} is not weir's canary; not changed`);
  // The canary is weir's own: fenced by its resourceVersion alone.
  await ctx.apps.patchNamespacedDeployment({
    namespace,
    name: existing.metadata?.name ?? '',
    fieldManager,
    body: [
      { op: 'test', path: '/metadata/resourceVersion', value: existing.metadata?.resourceVersion },
      { op: 'replace', path: '/spec/template', value: wantedCanary.spec?.template },
      { op: 'replace', path: '/spec/replicas', value: replicas },
    ],
  });
}

/** Stable pods from before the opt-in get the track label in place: no restart. */
async function labelStablePods(ctx: ActContext, d: V1Deployment): Promise<void> {
  const namespace = d.metadata?.namespace ?? '';
  const add: PatchOp = { op: 'add', path: `/metadata/labels/${pointer(labels.track)}`, value: tracks.stable };
  const labelSelector = selectorQuery(d.spec?.selector);
  if (!labelSelector) return;
  const replicaSets = await ctx.apps.listNamespacedReplicaSet({ namespace, labelSelector });
  for (const rs of replicaSets.items) {
    const owned = rs.metadata?.ownerReferences?.some((o) => o.uid === d.metadata?.uid);
    if (!owned || rs.spec?.template?.metadata?.labels?.[labels.track]) continue;
    // Pods the ReplicaSet makes from now on (a restart, a lost node) carry the label too.
    await ctx.apps.patchNamespacedReplicaSet({
      namespace,
      name: rs.metadata?.name ?? '',
      body: [{ ...add, path: `/spec/template/metadata/labels/${pointer(labels.track)}` }],
      fieldManager,
    });
  }
  // Only pods of the Deployment's own ReplicaSets: a bystander that matches the selector keeps its labels.
  const pods = await unlabelledStablePods(ctx, d);
  for (const pod of pods.items) {
    await ctx.core.patchNamespacedPod({ namespace, name: pod.metadata?.name ?? '', body: [add], fieldManager });
  }
}

/** Deletes weir's canary only: its uid is the precondition, so a stranger by that name is never deleted. */
async function deleteCanary(ctx: ActContext, d: V1Deployment): Promise<void> {
  const namespace = d.metadata?.namespace ?? '';
  const name = canaryName(d.metadata?.name ?? '');
  const canary = await maybe(() => ctx.apps.readNamespacedDeployment({ namespace, name }));
  if (!canary || !isOurCanary(canary, d)) return;
  const uid = canary.metadata?.uid ?? '';
  await maybe(() =>
    ctx.apps.deleteNamespacedDeployment({
      namespace,
      name,
      propagationPolicy: 'Background',
      body: { preconditions: { uid } },
    }),
  );
}

function phaseOps(d: V1Deployment, action: Extract<Action, { kind: 'setPhase' }>): PatchOp[] {
  const values: Record<string, string | undefined> = {
    [annotations.phase]: action.phase,
    [annotations.reason]: action.reason,
  };
  if (action.promotedRevision)
    Object.assign(values, {
      [annotations.stableRevision]: action.promotedRevision,
      [annotations.canaryRevision]: undefined,
    });
  return annotationOps(values, d.metadata?.annotations ?? {});
}

function statusOps(d: V1Deployment, action: Extract<Action, { kind: 'status' }>): PatchOp[] {
  return annotationOps({ [annotations.status]: formatStatus(action.status) }, d.metadata?.annotations ?? {});
}

const reference = (d: V1Deployment): V1ObjectReference => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  name: d.metadata?.name ?? '',
  namespace: d.metadata?.namespace ?? '',
  uid: d.metadata?.uid ?? '',
});

/** Records the Event `kubectl describe` shows, and hands it to the notifications. */
async function recordEvent(
  ctx: ActContext,
  d: V1Deployment,
  action: Extract<Action, { kind: 'event' }>,
): Promise<void> {
  const recorded = await ctx.events(reference(d), action.type, action.reason, action.message, ctx.now(), action.once);
  // An Event said once (deduplicated) is notified once too.
  if (!recorded) return;
  const { namespace = '', name = '' } = d.metadata ?? {};
  ctx.notify?.({ namespace, deployment: name, type: action.type, reason: action.reason, message: action.message });
}

/** A release is in flight: its routing has the shape of a release, not of the time between. */
export const inFlight = (phase: string): boolean => phase === 'Progressing' || phase === 'Promoting';

type RoutingAction = Extract<Action, { kind: 'ensureBackends' | 'retireRouting' | 'retireBackends' | 'setWeight' }>;

/** What goes through the traffic router; nothing when the release has no route to steer. */
function route(ctx: ActContext, view: ReleaseView, action: RoutingAction): Promise<void> | undefined {
  const target = view.target;
  if (!target) return undefined;
  switch (action.kind) {
    case 'ensureBackends':
      return ctx.router.ensureBackends(target, inFlight(view.observed.phase));
    case 'retireRouting':
      return ctx.router.retire(target);
    case 'retireBackends':
      return ctx.router.retireBackends(target);
    case 'setWeight':
      return ctx.router.steer(target, trafficOf(action));
  }
}

type RecordAction = Extract<
  Action,
  { kind: 'unpause' | 'scaleStable' | 'setPhase' | 'status' | 'remember' | 'clearRequest' }
>;

/** What is written on the user's Deployment: its record, its phase, its pause and size. */
function record(ctx: ActContext, view: ReleaseView, action: RecordAction): Promise<void> {
  const d = view.deployment;
  switch (action.kind) {
    case 'unpause':
      return patchDeployment(ctx, view, [{ op: 'replace', path: '/spec/paused', value: false }]);
    case 'scaleStable':
      // Fenced like every write: a `kubectl scale` in between is a conflict, read again next pass.
      return patchDeployment(ctx, view, [
        ...statusOps(d, { kind: 'status', status: action.status }),
        { op: 'replace', path: '/spec/replicas', value: action.replicas },
      ]);
    case 'setPhase':
      return patchDeployment(ctx, view, phaseOps(d, action));
    case 'status':
      return patchDeployment(ctx, view, statusOps(d, action));
    case 'remember':
      // Kept against the record it follows: a write of that record by anyone makes it stale (ADR 26).
      ctx.unrecorded?.set(releaseKey(d.metadata?.namespace, d.metadata?.name), {
        basis: d.metadata?.annotations?.[annotations.status] ?? '',
        status: action.status,
      });
      return Promise.resolve();
    case 'clearRequest':
      return patchDeployment(
        ctx,
        view,
        annotationOps({ [annotations.request]: undefined }, d.metadata?.annotations ?? {}),
      );
  }
}

async function perform(ctx: ActContext, view: ReleaseView, action: Action): Promise<void> {
  const d = view.deployment;
  switch (action.kind) {
    case 'labelStablePods':
      return labelStablePods(ctx, d);
    case 'ensureBackends':
    case 'retireRouting':
    case 'retireBackends':
    case 'setWeight':
      return route(ctx, view, action);
    case 'ensureCanary':
      return ensureCanary(ctx, d, action.replicas);
    case 'deleteCanary':
      return deleteCanary(ctx, d);
    case 'unpause':
    case 'scaleStable':
    case 'setPhase':
    case 'status':
    case 'remember':
    case 'clearRequest':
      return record(ctx, view, action);
    case 'event':
      return recordEvent(ctx, d, action);
    case 'checked':
    case 'released':
      // Findings for metrics: nothing to write.
      return;
  }
}

/** Carries out actions in order; returns how many were done before a failure or lost leadership. */
export async function act(ctx: ActContext, view: ReleaseView, actions: Action[]): Promise<number> {
  let done = 0;
  for (const action of actions) {
    if (!ctx.mayWrite()) return done;
    await perform(ctx, view, action);
    // The hook sees what was carried out against the cluster; findings only count.
    if (!isFinding(action)) ctx.onAction?.(view, action);
    done++;
  }
  return done;
}
