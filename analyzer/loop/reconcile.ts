// The reconcile loop: observe → (measure) → decide → act for every active release, once a tick,
// and only while leader. Thin glue; the decisions are in decide.ts.
import type { V1Deployment, V1Namespace } from '@kubernetes/client-node';
import { annotations, labels } from '../../contract/names.ts';
import { parseStatus } from '../../contract/status.ts';
import { act } from './act.ts';
import type { ActContext } from './act.ts';
import { checkDue, decide } from '../core/decide.ts';
import type { Action, Observed } from '../core/decide.ts';
import { describeError, isConflict } from '../../contract/api.ts';
import { measureAll } from './measure.ts';
import type { MetricsProvider } from '../ports/metrics.ts';
import { observe } from './observe.ts';
import type { ReleaseView } from './observe.ts';
import type { Telemetry } from './telemetry.ts';
import type { Watch } from './watch.ts';
import type { Scope } from '../core/scope.ts';

export interface LoopDeps {
  ctx: ActContext;
  provider: MetricsProvider;
  telemetry: Telemetry;
  deployments: Watch<V1Deployment>;
  namespaces: Watch<V1Namespace>;
  log: (message: string, fields?: Record<string, unknown>) => void;
  /** A test seam (docs/design.md, "Test seams"): awaited between decide and act. */
  beforeAct?: (view: ReleaseView, actions: Action[]) => Promise<void>;
  /** Deployments whose routing objects changed since the last pass (`namespace/name`); drained by each pass. */
  touched?: Set<string>;
  concurrency?: number;
  scope?: Scope;
}

/**
 * Deployments with something for the analyzer to do: a release, or leftovers of one, or — for
 * keys in `touched` (`namespace/name`) — routing objects that changed after their release.
 */
export function active(all: readonly V1Deployment[], touched: ReadonlySet<string> = new Set()): V1Deployment[] {
  const key = (namespace: string | undefined, name: string | undefined): string => `${namespace ?? ''}/${name ?? ''}`;
  const canaryOwners = new Set(
    all.flatMap((d) => {
      const owner = d.metadata?.labels?.[labels.canaryOf];
      return owner ? [key(d.metadata?.namespace, owner)] : [];
    }),
  );
  const inRelease = (a: Record<string, string>): boolean =>
    a[annotations.phase] === 'Progressing' ||
    a[annotations.phase] === 'Promoting' ||
    a[annotations.request] !== undefined;
  return all.filter((d) => {
    const a = d.metadata?.annotations ?? {};
    if (!a[annotations.phase] || d.metadata?.labels?.[labels.canaryOf] || d.metadata?.deletionTimestamp) return false;
    const id = key(d.metadata?.namespace, d.metadata?.name);
    if (inRelease(a) || canaryOwners.has(id)) return true;
    if (a[annotations.status] !== undefined && touched.has(id)) return true;
    return parseStatus(a[annotations.status])?.drainingSince !== undefined;
  });
}

/** Metrics from the findings decide returned: counted as decided, never parsed back from event text. */
function count(deps: LoopDeps, actions: Action[]): void {
  for (const a of actions) {
    if (a.kind === 'checked') deps.telemetry.checks.inc({ result: a.verdict });
    if (a.kind === 'released' && a.outcome === 'promoted') deps.telemetry.promotions.inc();
    if (a.kind === 'released' && a.outcome === 'rolledBack') deps.telemetry.rollbacks.inc();
  }
}

async function inBatches<T>(items: T[], size: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

/** One pass over every active release. */
export async function tick(deps: LoopDeps): Promise<void> {
  if (!deps.ctx.mayWrite() || !deps.deployments.synced() || !deps.namespaces.synced()) return;
  const stop = deps.telemetry.reconcileDuration.startTimer();
  const views: ReleaseView[] = [];
  const concurrency = deps.concurrency ?? 16;
  const inScope = (d: V1Deployment): boolean =>
    !deps.scope || deps.scope(deps.namespaces.get(d.metadata?.namespace ?? '')?.metadata?.labels ?? {});
  const touched = new Set(deps.touched);
  deps.touched?.clear();
  await inBatches(active(deps.deployments.list(), touched).filter(inScope), concurrency, async (d) => {
    try {
      views.push(await observe(deps.ctx, structuredClone(d), deps.namespaces.get(d.metadata?.namespace ?? '')));
    } catch (error) {
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
  const measured = due.length > 0 ? await measureAll(deps.provider, due) : new Map<Observed, never>();
  await inBatches(views, concurrency, async (view) => {
    const o = view.observed;
    deps.telemetry.setPhase(o.namespace, o.name, o.phase);
    deps.telemetry.weight.set(
      { namespace: o.namespace, deployment: o.name },
      o.routing.ok ? o.routing.canaryWeight : 0,
    );
    // One release's failure — in decide or in act — never ends the pass for the others.
    try {
      const actions = decide(o, measured.get(o), now);
      await deps.beforeAct?.(view, actions);
      const done = await act(deps.ctx, view, actions);
      count(deps, actions.slice(0, done));
    } catch (error) {
      // A fenced write that lost a race is how the fence works (ADR 10), not a failure.
      if (isConflict(error)) {
        deps.log('the release changed since it was observed; observing again', {
          namespace: o.namespace,
          name: o.name,
          error: describeError(error),
        });
        return;
      }
      deps.telemetry.reconcileErrors.inc();
      deps.log('reconcile failed; will retry', { namespace: o.namespace, name: o.name, error: describeError(error) });
    }
  });
  stop();
}
