// The analysis race (issue 14): how fast each policy takes a bad canary out of traffic, and how
// often it wrongly rolls back a good one. Releases run in virtual time through the analyzer's
// own state machine (decide), with traffic routed request by request by the mesh simulator's
// routing (the VirtualService and DestinationRule weir would write) and pods that fail at their
// error rate, as the simulator's pods do. Seeded: every run draws the same requests.
import { decide, checkDue } from '../../analyzer/core/decide.ts';
import type { Action, Observed } from '../../analyzer/core/decide.ts';
import { checkWindows } from '../../analyzer/core/analysis.ts';
import type { Measurement } from '../../analyzer/core/analysis.ts';
import { defaultPolicy, sequentialDefaults } from '../../analyzer/core/policy.ts';
import type { Policy } from '../../analyzer/core/policy.ts';
import { labels, tracks } from '../../contract/names.ts';
import { route } from '../mesh/routing.ts';
import type { MeshSnapshot, SimPod } from '../mesh/routing.ts';
import { applyActions, releaseWorld, seededRandom } from '../helpers/model.ts';

export type AnalysisKind = 'threshold' | 'sequential';

export const analysisPolicies: Record<AnalysisKind, Policy> = {
  threshold: defaultPolicy,
  sequential: { ...defaultPolicy, analysis: { kind: 'sequential', ...sequentialDefaults } },
};

export interface ReleaseRun {
  outcome: 'promoted' | 'rolledBack' | 'unfinished';
  /** Seconds from the canary's first request to 0 % canary weight, when rolled back. */
  rollbackAfterS?: number;
  /** Seconds from the canary's first request to the end of the release, when promoted. */
  promotedAfterS?: number;
  /** Why it was rolled back (the status record's cause). */
  cause?: string;
}

interface Half {
  requests: number;
  errors: number;
}

const host = 'myapp.example.com';

function snapshot(o: Observed, stableRate: number, canaryRate: number): MeshSnapshot {
  const pod = (track: string, i: number, errorRate: number): SimPod => ({
    namespace: o.namespace,
    name: `${o.name}-${track}-${i}`,
    labels: { app: o.name, [labels.track]: track },
    ready: true,
    workload: track === tracks.canary ? `${o.name}-canary` : o.name,
    errorRate,
    latencyMs: 10,
  });
  const canaryPods = o.canary?.readyReplicas ?? 0;
  const weight = o.routing.ok ? o.routing.canaryWeight : 0;
  const destination = (
    subset: string,
    w: number,
  ): { destination: { host: string; subset: string }; weight: number } => ({
    destination: { host: o.name, subset },
    weight: w,
  });
  return {
    services: [{ namespace: o.namespace, name: o.name, selector: { app: o.name } }],
    pods: [
      ...Array.from({ length: o.replicas }, (_, i) => pod(tracks.stable, i, stableRate)),
      ...Array.from({ length: canaryPods }, (_, i) => pod(tracks.canary, i, canaryRate)),
    ],
    virtualServices: [
      {
        namespace: o.namespace,
        name: o.name,
        hosts: [host],
        gateways: ['myapp-gateway'],
        http: [{ route: [destination('stable', 100 - weight), destination('canary', weight)] }],
      },
    ],
    destinationRules: [
      {
        namespace: o.namespace,
        host: o.name,
        subsets: [
          { name: 'stable', labels: { [labels.track]: tracks.stable } },
          { name: 'canary', labels: { [labels.track]: tracks.canary } },
        ],
      },
    ],
  };
}

/**
 * One release, a second at a time for at most `horizonS`: the gateway sends `rps` requests a
 * second, the routing picks a pod, the pod fails at its rate; a due check is measured as the
 * analyzer measures it (the canary's ratio since the last judged check, and both halves' counters).
 */
export function runRelease(
  policy: Policy,
  stableRate: number,
  canaryRate: number,
  rps: number,
  rand: () => number,
  horizonS = 3600,
): ReleaseRun {
  const o = releaseWorld(policy);
  const totals = { canary: { requests: 0, errors: 0 }, stable: { requests: 0, errors: 0 } };
  const perSecond: Half[] = [];
  let firstCanaryS: number | undefined;
  let rollbackAfterS: number | undefined;
  let owed = 0;
  const ignored: string[] = [];
  for (let s = 0; s < horizonS; s++) {
    const mesh = snapshot(o, stableRate, canaryRate);
    const canary: Half = { requests: 0, errors: 0 };
    for (owed += rps; owed >= 1; owed--) {
      const routed = route(mesh, 'gateway', host, '/', rand);
      if (routed.kind !== 'pod') continue;
      const failed = rand() < routed.pod.errorRate;
      const half = routed.pod.labels[labels.track] === tracks.canary ? totals.canary : totals.stable;
      half.requests++;
      if (failed) half.errors++;
      if (half === totals.canary) {
        canary.requests++;
        if (failed) canary.errors++;
      }
    }
    perSecond.push(canary);
    if (canary.requests > 0) firstCanaryS ??= s;
    const now = new Date(s * 1000);
    const windowS = Math.round(checkWindows(policy, o.status, now).counts / 1000);
    const actions: Action[] = decide(o, checkDue(o, now) ? measure(perSecond, windowS, totals) : undefined, now);
    applyActions(o, actions, ignored);
    ignored.length = 0;
    const since = s - (firstCanaryS ?? s);
    const back = o.status?.rollback !== undefined;
    if (back && rollbackAfterS === undefined && o.routing.ok && o.routing.canaryWeight === 0) rollbackAfterS = since;
    for (const a of actions) {
      if (a.kind !== 'released') continue;
      if (a.outcome === 'promoted') return { outcome: 'promoted', promotedAfterS: since };
      const cause = o.status?.rollback?.cause;
      return { outcome: 'rolledBack', rollbackAfterS: rollbackAfterS ?? since, ...(cause ? { cause } : {}) };
    }
  }
  return { outcome: 'unfinished' };
}

function measure(perSecond: Half[], windowS: number, totals: { canary: Half; stable: Half }): Measurement[] {
  const window = perSecond
    .slice(-windowS)
    .reduce((sum, h) => ({ requests: sum.requests + h.requests, errors: sum.errors + h.errors }), {
      requests: 0,
      errors: 0,
    });
  return [
    {
      metric: 'error-rate',
      requests: window.requests,
      ...(window.requests > 0 ? { canary: window.errors / window.requests } : {}),
      totals: structuredClone(totals),
    },
  ];
}

export interface RaceRow {
  kind: AnalysisKind;
  /** The canary's error rate as a multiple of the stable's. */
  multiplier: number;
  rps: number;
  releases: number;
  rolledBack: number;
  promoted: number;
  /** Seconds to 0 % canary weight of the releases rolled back, sorted. */
  rollbackTimes: number[];
  /** Seconds to promotion of the releases promoted, sorted. */
  promotionTimes: number[];
}

/** `releases` seeded releases of one policy with the canary at `multiplier` × the stable's errors. */
export function race(
  kind: AnalysisKind,
  stableRate: number,
  multiplier: number,
  rps: number,
  releases: number,
  seed: number,
): RaceRow {
  const rand = seededRandom(seed);
  const row: RaceRow = {
    kind,
    multiplier,
    rps,
    releases,
    rolledBack: 0,
    promoted: 0,
    rollbackTimes: [],
    promotionTimes: [],
  };
  for (let i = 0; i < releases; i++) {
    const run = runRelease(analysisPolicies[kind], stableRate, Math.min(1, stableRate * multiplier), rps, rand);
    if (run.outcome === 'rolledBack') {
      row.rolledBack++;
      row.rollbackTimes.push(run.rollbackAfterS ?? NaN);
    }
    if (run.outcome === 'promoted') {
      row.promoted++;
      row.promotionTimes.push(run.promotedAfterS ?? NaN);
    }
  }
  row.rollbackTimes.sort((a, b) => a - b);
  row.promotionTimes.sort((a, b) => a - b);
  return row;
}

/** The q-quantile of sorted values, or undefined when there are none. */
export function quantile(sorted: number[], q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const f = (n: number | undefined, digits = 0): string =>
  n === undefined || Number.isNaN(n)
    ? '—'
    : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const cells = (...values: (string | number)[]): string => `| ${values.join(' | ')} |`;
const share = (n: number, of: number): string => `${f(n)} (${f((100 * n) / of, 1)} %)`;

/** The race as a Markdown section body: both policies, side by side, on the same seeded traffic. */
export function analysisSection(releases: number, stableRate = 0.01): string {
  const scenarios: { multiplier: number; rps: number }[] = [
    { multiplier: 1, rps: 20 },
    { multiplier: 2, rps: 20 },
    { multiplier: 5, rps: 20 },
    { multiplier: 20, rps: 20 },
    { multiplier: 1, rps: 2 },
    { multiplier: 20, rps: 2 },
  ];
  const rows = scenarios.flatMap(({ multiplier, rps }, i) =>
    (['threshold', 'sequential'] as const).map((kind) => {
      const r = race(kind, stableRate, multiplier, rps, releases, 1000 + i);
      const back = `${f(quantile(r.rollbackTimes, 0.5))} / ${f(quantile(r.rollbackTimes, 0.9))}`;
      const promoted = `${f(quantile(r.promotionTimes, 0.5))} / ${f(quantile(r.promotionTimes, 0.9))}`;
      const unfinished = r.releases - r.rolledBack - r.promoted;
      return cells(
        multiplier === 1
          ? `equal (${f(stableRate * 100)} %)`
          : `${multiplier}× (${f(stableRate * multiplier * 100)} %)`,
        rps,
        kind,
        share(r.rolledBack, r.releases),
        back,
        share(r.promoted, r.releases),
        promoted,
        share(unfinished, r.releases),
      );
    }),
  );
  return `${f(releases)} seeded releases per row, each run in virtual time for at most an hour through the
analyzer's state machine (\`decide\`), with every request routed by the mesh simulator's routing over the
VirtualService and DestinationRule weir writes, to pods that fail at their error rate. The stable half
fails ${f(stableRate * 100)} % of requests; the seed's steps and timing (10 → 50 → 100 %, 5 min pauses, a
check every 60 s). **threshold**: the seed's policy (canary ≤ 5 % over each minute, roll back after 3
failed checks). **sequential**: \`analysis: sequential\`, α = 0.01, margin 0.5 (50 % worse than stable
matters). Times count from the canary's first request. For an equal canary, "rolled back" is the false
rollback rate.

${cells(
  'canary errors',
  'requests/s',
  'policy',
  'rolled back',
  'to 0 % weight p50 / p90 (s)',
  'promoted',
  'promoted in p50 / p90 (s)',
  'unfinished after 1 h',
)}
${cells('---', '---:', '---', '---:', '---:', '---:', '---:', '---:')}
${rows.join('\n')}
`;
}
