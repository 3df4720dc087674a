// measure: the checks due in one tick, asked of Prometheus together — one query per window for
// the built-in error rate of every threshold release, one of counter totals for every sequential
// release, one per custom metric per release.
import { canaryName } from '../../contract/names.ts';
import { checkWindows } from '../core/analysis.ts';
import type { Measurement } from '../core/analysis.ts';
import type { Observed } from '../core/decide.ts';
import type { MetricsProvider, RequestCounts } from '../ports/metrics.ts';
import { workloadKey } from '../ports/metrics.ts';

/** Prometheus ranges are asked in whole seconds. */
const seconds = (ms: number): number => Math.round(ms / 1000);

const builtIn = (o: Observed): boolean => o.policy.ok && o.policy.value.metrics.some((m) => m.query === 'error-rate');
const sequential = (o: Observed): boolean => o.policy.ok && o.policy.value.analysis.kind === 'sequential';

export function render(template: string, o: Observed, workload: string, window: number): string {
  return template
    .replaceAll('{{namespace}}', o.namespace)
    .replaceAll('{{name}}', o.name)
    .replaceAll('{{canary}}', workload)
    .replaceAll('{{interval}}', `${window}s`);
}

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** The workloads' request counts and the callers' failures per Service, from one point in time. */
interface Counted {
  workloads: Map<string, RequestCounts>;
  callers: Map<string, number>;
}

async function asked(
  workloads: Promise<Map<string, RequestCounts>>,
  callers: Promise<Map<string, number>>,
): Promise<Counted | Error> {
  try {
    const [w, c] = await Promise.all([workloads, callers]);
    return { workloads: w, callers: c };
  } catch (e) {
    return new Error(message(e));
  }
}

/**
 * The canary's counts with the requests callers sent to the release's Service that never reached a
 * healthy pod (UH, UF, URX, NR, NC): checks run only while the canary holds weight, and weir keeps the
 * stable subset selecting the running pods, so such failures are the canary's (issue 14).
 */
function withCallers(c: RequestCounts, counted: Counted, o: Observed): RequestCounts {
  const failed = o.service ? (counted.callers.get(workloadKey(o.service.namespace, o.service.name)) ?? 0) : 0;
  return { requests: c.requests + failed, errors: c.errors + failed };
}

function errorRate(
  counted: Counted,
  namespace: string,
  workload: string,
  canaryOf?: Observed,
): { value?: number; requests: number } {
  const own = counted.workloads.get(workloadKey(namespace, workload)) ?? { requests: 0, errors: 0 };
  const c = canaryOf ? withCallers(own, counted, canaryOf) : own;
  if (c.requests <= 0) return { requests: c.requests };
  return { value: c.errors / c.requests, requests: c.requests };
}

/** A check's two windows: of the workloads' counts, and of the callers' failures. */
interface Windows {
  w: number;
  callers: number;
}
const countsKey = (x: Windows): string => `${x.w}/${x.callers}`;

/** One query per distinct window of counts and of callers' failures, keyed by `countsKey`. */
async function countsByWindow(provider: MetricsProvider, windows: Windows[]): Promise<Map<string, Counted | Error>> {
  const once = <T>(asks: Map<number, Promise<T>>, w: number, ask: (w: number) => Promise<T>): Promise<T> => {
    const known = asks.get(w);
    if (known) return known;
    const asking = ask(w);
    asks.set(w, asking);
    return asking;
  };
  const workloads = new Map<number, Promise<Map<string, RequestCounts>>>();
  const callers = new Map<number, Promise<Map<string, number>>>();
  const keys = new Map(windows.map((x) => [countsKey(x), x]));
  const counted = await Promise.all(
    [...keys].map(
      async ([key, x]) =>
        [
          key,
          await asked(
            once(workloads, x.w, (w) => provider.requestCounts(w)),
            once(callers, x.callers, (w) => provider.callerFailures(w)),
          ),
        ] as const,
    ),
  );
  return new Map(counted);
}

/** Measures every due release; a failed query becomes an `error` measurement, never a throw. */
export async function measureAll(
  provider: MetricsProvider,
  due: Observed[],
  now: Date = new Date(),
): Promise<Map<Observed, Measurement[]>> {
  // Only releases judged by the built-in error rate need the counts queries: one per window.
  const windowsOf = (o: Observed): Windows | undefined => {
    if (!o.policy.ok || !builtIn(o) || sequential(o)) return undefined;
    const w = checkWindows(o.policy.value, o.status, now);
    return { w: seconds(w.counts), callers: seconds(w.callers) };
  };
  const totals = due.some((o) => builtIn(o) && sequential(o))
    ? asked(provider.requestTotals(), provider.callerFailures())
    : undefined;
  const counts = await countsByWindow(
    provider,
    due.flatMap((o) => windowsOf(o) ?? []),
  );
  const totalsNow = await totals;
  const out = new Map<Observed, Measurement[]>();
  await Promise.all(
    due.map(async (o) => {
      if (!o.policy.ok) return;
      const w = seconds(checkWindows(o.policy.value, o.status, now).counts);
      const canary = canaryName(o.name);
      const measurements = await Promise.all(
        o.policy.value.metrics.map(async (metric): Promise<Measurement> => {
          if (metric.query === 'error-rate' && sequential(o)) {
            if (!totalsNow || totalsNow instanceof Error)
              return { metric: metric.name, error: totalsNow?.message ?? 'no answer' };
            const half = (workload: string): RequestCounts =>
              totalsNow.workloads.get(workloadKey(o.namespace, workload)) ?? { requests: 0, errors: 0 };
            return {
              metric: metric.name,
              totals: { canary: withCallers(half(canary), totalsNow, o), stable: half(o.name) },
            };
          }
          if (metric.query === 'error-rate') {
            const windows = windowsOf(o);
            const c = windows && counts.get(countsKey(windows));
            if (!c || c instanceof Error) return { metric: metric.name, error: c?.message ?? 'no answer' };
            const ofCanary = errorRate(c, o.namespace, canary, o);
            const ofStable = errorRate(c, o.namespace, o.name);
            return {
              metric: metric.name,
              requests: ofCanary.requests,
              windowSeconds: w,
              ...(ofCanary.value !== undefined ? { canary: ofCanary.value } : {}),
              ...(ofStable.value !== undefined ? { stable: ofStable.value } : {}),
            };
          }
          try {
            const value = await provider.value(render(metric.query, o, canary, w));
            const stable =
              metric.relativeMargin !== undefined
                ? await provider.value(render(metric.query, o, o.name, w))
                : undefined;
            return {
              metric: metric.name,
              ...(value !== undefined ? { canary: value } : {}),
              ...(stable !== undefined ? { stable } : {}),
            };
          } catch (error) {
            return { metric: metric.name, error: message(error) };
          }
        }),
      );
      out.set(o, measurements);
    }),
  );
  return out;
}
