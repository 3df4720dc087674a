// Turning measurements into a verdict. Pure. No data is never a pass and never a failure.
import type { MetricPolicy, Policy } from './policy.ts';
import type { Evidence, HalfCounts, ReleaseStatus, Verdict } from '../../contract/status.ts';
import { accumulate, decideSequential, describeVerdict, gained, latch, noEvidence } from './sequential.ts';

/** One metric measured for one release in one window. */
export interface Measurement {
  metric: string;
  /** The canary's value; undefined when Prometheus had no data (or NaN). */
  canary?: number;
  /** The stable half's value in the same window, for relative metrics. */
  stable?: number;
  /** Canary requests in the window, when the metric knows it. */
  requests?: number;
  /** The window's length in seconds, when it was asked for one. */
  windowSeconds?: number;
  /** The built-in error rate's counter totals of both halves now, for the sequential test. */
  totals?: { canary: HalfCounts; stable: HalfCounts };
  /** Prometheus could not be asked: unreachable, timed out, or answered with an error. */
  error?: string;
}

export interface Judgement {
  metric: string;
  verdict: Verdict;
  /** A failure at or above the metric's ceiling: roll back now. */
  hard: boolean;
  value?: number;
  threshold: number;
  reason: string;
  /** The sequential test found the canary worse: roll back now, whatever the failure limit. */
  worse?: boolean;
  /** A sequential check that gained evidence, though not yet enough: holding is progress, not "unjudged". */
  progressed?: boolean;
}

const pct = (v: number): string => `${(v * 100).toFixed(2)}%`;
const show = (metric: MetricPolicy, v: number): string =>
  metric.query === 'error-rate' ? pct(v) : String(Number(v.toPrecision(6)));

/**
 * How far back a check looks: after n checks in a row that gave no verdict, the n + 1 intervals
 * since the last one that did, rounded down to a power of two (1, 2, 4, 8 …). A quiet service's
 * requests add up until there are enough to judge, instead of each window falling short on its
 * own and the release ending at the unjudged limit (issue 14, ADR 20); judged windows never
 * overlap; and releases share a handful of windows, each one Prometheus query for all of them.
 */
export const lookBackMs = (policy: Pick<Policy, 'intervalMs' | 'unjudgedLimit'>, s?: ReleaseStatus): number =>
  policy.intervalMs * 2 ** Math.floor(Math.log2(1 + Math.min(s?.unjudged ?? 0, policy.unjudgedLimit)));

type Timed = Pick<ReleaseStatus, 'lastCheckAt' | 'lastVerdict' | 'stepStartedAt'>;

/**
 * Checks fall on shared instants, every half interval counted from the epoch (ADR 23): releases
 * that began their steps at different moments are checked in the same passes with the same
 * windows, so Prometheus is asked once per window however many releases are in flight. Half an
 * interval keeps a step's first check within 1.5 intervals of its start.
 */
export const checkSlotMs = (policy: Pick<Policy, 'intervalMs'>): number => policy.intervalMs / 2;
const slotFloor = (t: number, slot: number): number => Math.floor(t / slot) * slot;
const slotCeil = (t: number, slot: number): number => Math.ceil(t / slot) * slot;
const minWindowMs = 10_000;
const parsed = (iso: string | undefined): number => (iso ? Date.parse(iso) : NaN);

/** A check was made in this step: a check time with its verdict. */
const checked = (s: Timed): boolean => s.lastCheckAt !== undefined && s.lastVerdict !== undefined;

/**
 * Where the step's analysis (re)started: its start, or a routing repair — a check time with no
 * verdict (decide's `repairRouting`), after which only traffic on the repaired route is judged.
 */
const analysisStart = (s: Timed): number =>
  s.lastCheckAt !== undefined && s.lastVerdict === undefined ? parsed(s.lastCheckAt) : parsed(s.stepStartedAt);

/** When a step's next check is due (epoch ms): an interval after the last check's slot, or a slot an interval in. */
export function nextCheckAt(policy: Pick<Policy, 'intervalMs'>, s: Timed): number {
  const slot = checkSlotMs(policy);
  if (checked(s)) return slotFloor(parsed(s.lastCheckAt), slot) + policy.intervalMs;
  return slotCeil(analysisStart(s) + policy.intervalMs, slot);
}

/**
 * A check's two look-backs (ms), both whole slots so that releases share them. `counts` (the
 * halves' requests and errors) reaches back to the last check, or to where the analysis started
 * (up to a slot before it: the same canary's traffic), and no less than `lookBackMs`. `callers`
 * (requests that reached no pod) never reaches before the analysis started: failures while the
 * last step drained, or while the route was broken before a repair, are not this canary's doing.
 * `counts` is never under 10 s, so a rate has samples to work with; `callers` never under two
 * seconds, so a range holds two scrapes.
 */
export function checkWindows(
  policy: Pick<Policy, 'intervalMs' | 'unjudgedLimit'>,
  s: ReleaseStatus | undefined,
  now: Date,
): { counts: number; callers: number } {
  const slot = checkSlotMs(policy);
  const lookBack = lookBackMs(policy, s);
  const started = s ? analysisStart(s) : NaN;
  if (!s || !Number.isFinite(started))
    return { counts: Math.max(minWindowMs, lookBack), callers: Math.max(2000, lookBack) };
  const since = checked(s) ? slotFloor(parsed(s.lastCheckAt), slot) : started;
  const span = slotCeil(slotFloor(now.getTime(), slot) - since, slot);
  const counts = Math.max(minWindowMs, lookBack, Number.isFinite(span) ? span : 0);
  const age = slotFloor(now.getTime() - started, slot);
  return { counts, callers: Math.max(2000, Math.min(counts, age)) };
}

/** Judges one metric's measurement against its policy. */
export function judge(metric: MetricPolicy, m: Measurement, minRequests: number): Judgement {
  const base = { metric: metric.name, hard: false, threshold: metric.max };
  if (m.error !== undefined) return { ...base, verdict: 'error', reason: `Prometheus could not be asked: ${m.error}` };
  const value = m.canary;
  if (value === undefined || !Number.isFinite(value))
    return { ...base, verdict: 'inconclusive', reason: 'no data for the canary in the window' };
  if (m.requests !== undefined && m.requests < minRequests) {
    return {
      ...base,
      value,
      verdict: 'inconclusive',
      reason:
        `${Math.round(m.requests)} canary requests in ` +
        `${m.windowSeconds === undefined ? 'the window' : `the last ${m.windowSeconds} s`}, ` +
        `fewer than the ${minRequests} needed`,
    };
  }
  if (metric.ceiling !== undefined && value >= metric.ceiling) {
    return {
      ...base,
      value,
      verdict: 'fail',
      hard: true,
      threshold: metric.ceiling,
      reason: `${show(metric, value)} is at or above the hard ceiling ${show(metric, metric.ceiling)}`,
    };
  }
  if (metric.relativeMargin !== undefined && m.stable !== undefined && Number.isFinite(m.stable)) {
    const threshold = m.stable + metric.relativeMargin;
    const verdict = value <= threshold ? 'pass' : 'fail';
    const relation = verdict === 'pass' ? 'within' : 'above';
    return {
      ...base,
      value,
      verdict,
      threshold,
      reason:
        `${show(metric, value)} is ${relation} stable ${show(metric, m.stable)} ` +
        `+ margin ${show(metric, metric.relativeMargin)}`,
    };
  }
  const verdict = value <= metric.max ? 'pass' : 'fail';
  return {
    ...base,
    value,
    verdict,
    reason: `${show(metric, value)} ${verdict === 'pass' ? '≤' : '>'} ${show(metric, metric.max)}`,
  };
}

/**
 * The built-in error rate under `analysis: sequential` (issue 14): the requests and errors of
 * both halves since the last check (differences of their counters) join the release's evidence,
 * and the sequential test decides. The first check takes the baseline; a counter that went down
 * (pods replaced) starts a new one. The hard ceiling stays.
 */
export function judgeSequential(
  metric: MetricPolicy,
  m: Measurement,
  before: Evidence | undefined,
  analysis: { alpha: number; margin: number },
): { judgement: Judgement; evidence?: Evidence } {
  const base = { metric: metric.name, hard: false, threshold: metric.max };
  if (m.error !== undefined)
    return { judgement: { ...base, verdict: 'error', reason: `Prometheus could not be asked: ${m.error}` } };
  if (!m.totals) return { judgement: { ...base, verdict: 'inconclusive', reason: 'no data for the canary' } };
  const last = before?.last;
  const held = { ...(before ?? noEvidence()), last: m.totals };
  const window = last ? difference(m.totals, last) : undefined;
  if (!window)
    return {
      evidence: held,
      judgement: {
        ...base,
        verdict: 'inconclusive',
        progressed: true,
        reason: last ? "a half's counters went down (pods replaced): a new baseline" : 'baseline taken',
      },
    };
  if (window.canary.requests <= 0)
    return {
      evidence: held,
      judgement: { ...base, verdict: 'inconclusive', reason: 'no canary requests since the last check' },
    };
  const value = window.canary.errors / window.canary.requests;
  if (metric.ceiling !== undefined && value >= metric.ceiling)
    return { evidence: held, judgement: judge(metric, { metric: metric.name, canary: value }, 0) };
  const policy = { ...analysis, tolerable: metric.max };
  const prior = before ?? noEvidence();
  const grown = { ...accumulate(prior, window, analysis), last: m.totals };
  const verdict = decideSequential(grown, policy);
  const evidence = latch(grown, verdict);
  const judged: Verdict =
    verdict.decision === 'worse' ? 'fail' : verdict.decision === 'not-worse' ? 'pass' : 'inconclusive';
  const waiting = verdict.decision === 'not-yet' && !gained(prior, grown, policy);
  const idleStable = waiting && window.stable.requests <= 0 ? '; stable served no requests to compare with' : '';
  return {
    evidence,
    judgement: {
      ...base,
      value,
      verdict: judged,
      reason: describeVerdict(verdict, analysis) + idleStable,
      ...(verdict.decision === 'worse' ? { worse: true } : {}),
      ...(verdict.decision === 'not-yet' && !waiting ? { progressed: true } : {}),
    },
  };
}

type Totals = { canary: HalfCounts; stable: HalfCounts };

/** Counts since `last`; undefined when a counter went down (a reset: the window cannot be known). */
function difference(now: Totals, last: Totals): Totals | undefined {
  const half = (a: HalfCounts, b: HalfCounts): HalfCounts => ({
    requests: a.requests - b.requests,
    errors: a.errors - b.errors,
  });
  const window = { canary: half(now.canary, last.canary), stable: half(now.stable, last.stable) };
  const counts = [window.canary.requests, window.canary.errors, window.stable.requests, window.stable.errors];
  return counts.every((c) => c >= 0) ? window : undefined;
}

/** One check's verdict over all metrics: any failure fails, then any error, then any inconclusive. */
export function combine(judgements: Judgement[]): Verdict {
  const order: Verdict[] = ['fail', 'error', 'inconclusive'];
  for (const v of order) if (judgements.some((j) => j.verdict === v)) return v;
  return judgements.length > 0 ? 'pass' : 'inconclusive';
}
