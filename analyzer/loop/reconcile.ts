// The reconcile pass: observe → (measure) → decide → act for the releases whose keys are due,
// and only while leader. Thin glue; the decisions are in decide.ts, the scheduling in queue.ts.
import type { V1Deployment, V1Namespace } from '@kubernetes/client-node';
import { annotations, canaryName, labels, policyAnnotations } from '../../contract/names.ts';
import { parseStatus } from '../../contract/status.ts';
import { act } from './act.ts';
import type { ActContext } from './act.ts';
import { checkDue, decide, isFinding, urgency, wakeAt } from '../core/decide.ts';
import type { Measurement } from '../core/analysis.ts';
import type { Action, Observed } from '../core/decide.ts';
import { describeError, isConflict } from '../../contract/api.ts';
import { measureAll } from './measure.ts';
import type { MetricsProvider } from '../ports/metrics.ts';
import { observe, releaseKey } from './observe.ts';
import type { ReleaseView } from './observe.ts';
import type { Telemetry } from './telemetry.ts';
import type { Watch } from './watch.ts';
import type { Scope } from '../core/scope.ts';
import type { WorkQueue } from './queue.ts';

export interface LoopDeps {
  ctx: ActContext;
  provider: MetricsProvider;
  telemetry: Telemetry;
  deployments: Watch<V1Deployment>;
  namespaces: Watch<V1Namespace>;
  log: (message: string, fields?: Record<string, unknown>) => void;
  /** A test seam (docs/design.md, "Test seams"): awaited between decide and act. */
  beforeAct?: (view: ReleaseView, actions: Action[]) => Promise<void>;
  concurrency?: number;
  scope?: Scope;
}

/**
 * Deployments with something for the analyzer to do: a release, or leftovers of one, or — for
 * keys in `touched` (`namespace/name`) — routing objects that changed after their release.
 */
export function active(all: readonly V1Deployment[], touched: ReadonlySet<string> = new Set()): V1Deployment[] {
  const canaryOwners = new Set(
    all.flatMap((d) => {
      const owner = d.metadata?.labels?.[labels.canaryOf];
      return owner ? [releaseKey(d.metadata?.namespace, owner)] : [];
    }),
  );
  const inRelease = (a: Record<string, string>): boolean =>
    a[annotations.phase] === 'Progressing' ||
    a[annotations.phase] === 'Promoting' ||
    a[annotations.request] !== undefined;
  return all.filter((d) => {
    const a = d.metadata?.annotations ?? {};
    const id = releaseKey(d.metadata?.namespace, d.metadata?.name);
    if (d.metadata?.labels?.[labels.canaryOf] || d.metadata?.deletionTimestamp) return false;
    // A guarded Deployment whose HTTPRoute names backend Services weir owns: they are made before
    // its first release (ADR 17), whenever it or its namespace's routing changes.
    if (touched.has(id) && ownsBackends(d)) return true;
    if (!a[annotations.phase]) return false;
    if (inRelease(a) || canaryOwners.has(id)) return true;
    if (a[annotations.status] !== undefined && touched.has(id)) return true;
    // Draining, or a retired route's backends still to go: the release's work is not over.
    const status = parseStatus(a[annotations.status]);
    return status?.drainingSince !== undefined || status?.retiredAt !== undefined;
  });
}

/** Guarded (the webhook stamped its template), naming an HTTPRoute but not the Services it sends to. */
const ownsBackends = (d: V1Deployment): boolean => {
  const a = d.metadata?.annotations ?? {};
  return (
    d.spec?.template.metadata?.labels?.[labels.track] !== undefined &&
    a[policyAnnotations.httpRoute] !== undefined &&
    a[policyAnnotations.stableService] === undefined
  );
};

/** Metrics from the findings decide returned: counted as decided, never parsed back from event text. */
function count(deps: LoopDeps, actions: Action[]): void {
  for (const a of actions) {
    if (a.kind === 'checked') deps.telemetry.checks.inc({ result: a.verdict });
    if (a.kind === 'released' && a.outcome === 'promoted') deps.telemetry.promotions.inc();
    if (a.kind === 'released' && a.outcome === 'rolledBack') deps.telemetry.rollbacks.inc();
  }
}

/** Runs `fn` over `items`, at most `limit` at once; the next starts as one ends (no batch waits for its slowest). */
export async function pooled<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  // One iterator shared by the workers: each takes the next item when it is free.
  const queue = items.values();
  const worker = async (): Promise<void> => {
    for (const item of queue) await fn(item);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

/**
 * What a pass did with one release, for the queue: `idle` (nothing to do; wake at `wakeAt`, or on
 * a change), `worked` (something changed: look again soon), `failed` (retry with backoff).
 */
export type Outcome = { kind: 'idle'; wakeAt?: number } | { kind: 'worked' } | { kind: 'failed' };

/** Whether a pass can run at all: leader, with every cache it reads complete. */
export const ready = (deps: LoopDeps): boolean =>
  deps.ctx.mayWrite() && deps.deployments.synced() && deps.namespaces.synced();

/**
 * One pass over the releases named by `keys` (`namespace/name`) that have something to do. Keys
 * of a Deployment after its release count as touched: their routing may need settling again.
 */
export async function tick(deps: LoopDeps, keys: ReadonlySet<string>): Promise<Map<string, Outcome>> {
  const outcomes = new Map<string, Outcome>();
  if (!ready(deps)) return outcomes;
  const stop = deps.telemetry.reconcileDuration.startTimer();
  const views: ReleaseView[] = [];
  const concurrency = deps.concurrency ?? 16;
  const inScope = (d: V1Deployment): boolean =>
    !deps.scope || deps.scope(deps.namespaces.get(d.metadata?.namespace ?? '')?.metadata?.labels ?? {});
  const candidates = [...keys].flatMap((key) => {
    const [namespace = '', name = ''] = key.split('/');
    const d = deps.deployments.get(name, namespace);
    const canary = deps.deployments.get(canaryName(name), namespace);
    // Passes kept for a Deployment that is gone have no record left to join (ADR 26).
    if (!d) deps.ctx.unrecorded?.delete(key);
    return d ? [d, ...(canary ? [canary] : [])] : [];
  });
  await pooled(active(candidates, keys).filter(inScope), concurrency, async (d) => {
    try {
      views.push(await observe(deps.ctx, structuredClone(d), deps.namespaces.get(d.metadata?.namespace ?? '')));
    } catch (error) {
      outcomes.set(releaseKey(d.metadata?.namespace, d.metadata?.name), { kind: 'failed' });
      deps.telemetry.reconcileErrors.inc();
      deps.log('could not observe a release', {
        namespace: d.metadata?.namespace,
        name: d.metadata?.name,
        error: describeError(error),
      });
    }
  });
  const now = deps.ctx.now();
  const due = views.filter((v) => checkDue(v.observed, now)).map((v) => v.observed);
  const measured = due.length > 0 ? await measureAll(deps.provider, due, now) : new Map<Observed, never>();
  // Decided first (pure, no I/O), then carried out most urgent first: with hundreds of releases in
  // one pass, a rollback or a step's weight does not wait behind the records of releases that hold.
  const planned = views
    .map((view) => ({ view, ...plan(view.observed, measured.get(view.observed), now) }))
    .sort((a, b) => urgency(a.actions ?? []) - urgency(b.actions ?? []));
  await pooled(planned, concurrency, async ({ view, actions: decided, error: failed }) => {
    const o = view.observed;
    deps.telemetry.setPhase(o.namespace, o.name, o.phase);
    deps.telemetry.weight.set(
      { namespace: o.namespace, deployment: o.name },
      o.routing.ok ? o.routing.canaryWeight : 0,
    );
    const key = releaseKey(o.namespace, o.name);
    // One release's failure — in decide or in act — never ends the pass for the others.
    try {
      if (!decided) throw failed;
      const actions = decided;
      await deps.beforeAct?.(view, actions);
      const done = await act(deps.ctx, view, actions);
      count(deps, actions.slice(0, done));
      const worked = actions.some((a) => !isFinding(a));
      const wake = wakeAt(o, now);
      const idle: Outcome = { kind: 'idle', ...(wake === undefined ? {} : { wakeAt: wake }) };
      outcomes.set(key, worked ? { kind: 'worked' } : idle);
    } catch (error) {
      // A fenced write that lost a race is how the fence works (ADR 10), not a failure.
      if (isConflict(error)) {
        outcomes.set(key, { kind: 'worked' });
        deps.log('the release changed since it was observed; observing again', {
          namespace: o.namespace,
          name: o.name,
          error: describeError(error),
        });
        return;
      }
      outcomes.set(key, { kind: 'failed' });
      deps.telemetry.reconcileErrors.inc();
      deps.log('reconcile failed; will retry', { namespace: o.namespace, name: o.name, error: describeError(error) });
    }
  });
  stop();
  return outcomes;
}

/** decide, with a failure kept for the release's own outcome rather than thrown at the pass. */
function plan(o: Observed, measured: Measurement[] | undefined, now: Date): { actions?: Action[]; error?: unknown } {
  try {
    return { actions: decide(o, measured, now) };
  } catch (error) {
    return { error };
  }
}

/** Queues each release again as its outcome asks; a key with nothing to do and no wake-up is dropped. */
export function requeue(queue: WorkQueue, outcomes: Map<string, Outcome>, now: number, soonMs: number): void {
  for (const [key, outcome] of outcomes) {
    if (outcome.kind === 'failed') {
      queue.retry(key, now);
      continue;
    }
    queue.forget(key);
    if (outcome.kind === 'worked') queue.addAt(key, now + soonMs);
    else if (outcome.wakeAt !== undefined) queue.addAt(key, outcome.wakeAt);
  }
}
