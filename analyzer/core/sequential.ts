// A sequential test of the canary against the stable half (issue 14). Pure.
//
// Each check window gives, for both halves, the requests they served and the errors among them.
// Given the errors of a window, which half each came from is a coin whose odds are fixed by the
// two halves' shares of requests and their error rates: with r = canary rate / stable rate,
//   θ(r) = c·r / (c·r + s)   (c, s: requests of the canary and of the stable half),
// and the canary's errors are Binomial(errors, θ(r)). The likelihood ratio of an alternative r'
// against the boundary r₀, multiplied over windows, is a test martingale under r₀ (and a
// supermartingale on the far side of it); a mean of such martingales is one too. By Ville's
// inequality, the chance it ever reaches 1/α is at most α, however often it is looked at — so
// the test may be checked every interval without inflating false alarms (Ramdas et al., "Game-
// theoretic statistics and safe anytime-valid inference", 2023; Lindon et al., KDD 2022).
//
// Two such tests run side by side:
// - worse:     H₀ r ≤ 1 (the canary is no worse) against r' ≥ 1 + margin; at 1/α: roll back.
// - not worse: H₀ r ≥ 1 + margin against r' ≤ 1; at 1/α: the canary may pass its step.
// Windows with no errors carry no evidence about r; for a canary that makes no errors at all, a
// third e-value (Poisson, canary alone) shows its rate is below the tolerable one, so a quiet,
// low-traffic service still finishes.
// "Not worse" is final once reached: stopping a test at its first crossing of 1/α is what Ville's
// inequality licenses, while looking on lets the product drift back under the bar — at a 100 %
// step, where stable serves nothing, it could never climb again. "Worse" keeps running.
import type { Evidence, HalfCounts } from '../../contract/status.ts';

export type { Evidence, HalfCounts };

export interface WindowCounts {
  canary: HalfCounts;
  stable: HalfCounts;
}

export interface SequentialPolicy {
  /** The chance of a false verdict the test allows, in each direction. */
  alpha: number;
  /** How much worse than stable matters: 0.5 means a canary error rate above 1.5× stable's. */
  margin: number;
  /** An error rate any canary may have while stable shows none to compare with (the threshold's `max`). */
  tolerable: number;
}

export type SequentialDecision = 'worse' | 'not-worse' | 'not-yet';

export interface SequentialVerdict {
  decision: SequentialDecision;
  evidence: Evidence;
  /** 1 − 1/e of the decision taken (of "worse" while not yet decided): at least 1 − α once decided. */
  confidence: number;
  /** The same for each test, decided or not. */
  leaning: { worse: number; notWorse: number };
}

/** Alternatives, as multiples of the boundary: a spread, so both small and large effects are found quickly. */
const worseRatios = [1, 1.5, 2, 4, 10];
const notWorseRatios = [1, 0.75, 0.5, 0.25];

export const noEvidence = (): Evidence => ({
  canary: { requests: 0, errors: 0 },
  stable: { requests: 0, errors: 0 },
  worse: worseRatios.map(() => 0),
  notWorse: notWorseRatios.map(() => 0),
});

const share = (canaryRequests: number, stableRequests: number, ratio: number): number =>
  (canaryRequests * ratio) / (canaryRequests * ratio + stableRequests);

/** Log likelihood ratio of θ' against θ₀ for `ec` canary errors out of `e`. */
function logRatio(ec: number, e: number, theta: number, theta0: number): number {
  return ec * Math.log(theta / theta0) + (e - ec) * Math.log((1 - theta) / (1 - theta0));
}

const logMeanExp = (logs: number[]): number => {
  const top = Math.max(...logs);
  return top + Math.log(logs.reduce((sum, l) => sum + Math.exp(l - top), 0) / logs.length);
};

/** Adds one window's counts to the evidence. */
export function accumulate(before: Evidence, w: WindowCounts, policy: Pick<SequentialPolicy, 'margin'>): Evidence {
  const c = w.canary.requests;
  const s = w.stable.requests;
  const errors = w.canary.errors + w.stable.errors;
  const informative = c > 0 && s > 0 && errors > 0;
  const boundary = 1 + policy.margin;
  const worse = before.worse.map((l, i) =>
    informative
      ? l + logRatio(w.canary.errors, errors, share(c, s, boundary * (worseRatios[i] ?? 1)), share(c, s, 1))
      : l,
  );
  const notWorse = before.notWorse.map((l, i) =>
    informative ? l + logRatio(w.canary.errors, errors, share(c, s, notWorseRatios[i] ?? 1), share(c, s, boundary)) : l,
  );
  return {
    ...before,
    canary: { requests: before.canary.requests + c, errors: before.canary.errors + w.canary.errors },
    stable: { requests: before.stable.requests + s, errors: before.stable.errors + w.stable.errors },
    worse,
    notWorse,
  };
}

/**
 * Log e-value that the canary's own error rate is below the tolerable one (Poisson, canary
 * alone): for alternatives λ' below the tolerable λ₁, (λ'/λ₁)^errors · e^{(λ₁−λ')·requests}.
 */
function logBelowTolerable(e: Evidence, policy: SequentialPolicy): number {
  // Against stable's own rate when it has one; with no stable errors to compare with, the rate
  // any canary may have (the threshold policy's max), as the seed would judge it.
  const tolerable =
    e.stable.errors > 0 ? ((1 + policy.margin) * e.stable.errors) / e.stable.requests : policy.tolerable;
  const n = e.canary.requests;
  const k = e.canary.errors;
  const logs = [0, 0.25, 0.5].map((f) =>
    f === 0 ? (k === 0 ? tolerable * n : -Infinity) : k * Math.log(f) + (1 - f) * tolerable * n,
  );
  return logMeanExp(logs);
}

const percent = (h: HalfCounts): string => (h.requests > 0 ? `${((h.errors / h.requests) * 100).toFixed(2)} %` : 'n/a');

/** The decision the evidence supports now. */
export function decideSequential(e: Evidence, policy: SequentialPolicy): SequentialVerdict {
  const bar = Math.log(1 / policy.alpha);
  const worse = logMeanExp(e.worse);
  const notWorse = Math.max(logMeanExp(e.notWorse), logBelowTolerable(e, policy), e.cleared ? bar : -Infinity);
  const decision: SequentialDecision = worse >= bar ? 'worse' : notWorse >= bar ? 'not-worse' : 'not-yet';
  return {
    decision,
    evidence: e,
    confidence: level(decision === 'not-worse' ? notWorse : worse),
    leaning: { worse: level(worse), notWorse: level(notWorse) },
  };
}

/** The evidence with "not worse" held from its first crossing on (see the note at the top). */
export const latch = (e: Evidence, v: SequentialVerdict): Evidence =>
  v.decision === 'not-worse' && !e.cleared ? { ...e, cleared: true } : e;

/**
 * Whether a window moved the evidence: the comparison learned from it, or the canary's own rate
 * showed more clearly that it is tolerable. A window of errors while stable served nothing does
 * neither: holding on it is waiting, not progress.
 */
export function gained(before: Evidence, after: Evidence, policy: SequentialPolicy): boolean {
  const compared = after.worse.some((l, i) => l !== before.worse[i]);
  return compared || logBelowTolerable(after, policy) > logBelowTolerable(before, policy);
}

const level = (l: number): number => Math.min(1, Math.max(0, 1 - Math.exp(-l)));

/** The verdict in words a person reads (built only when shown: the decision needs none of it). */
export function describeVerdict(v: SequentialVerdict, policy: Pick<SequentialPolicy, 'alpha'>): string {
  const e = v.evidence;
  const counts =
    `canary errors ${percent(e.canary)} vs stable ${percent(e.stable)} ` +
    `over ${Math.round(e.canary.requests + e.stable.requests).toLocaleString('en-US')} requests`;
  // Never "100 %": evidence makes an error unlikely, never impossible.
  const confident = `${Math.min(99.9, Math.floor(v.confidence * 1000) / 10)} % confidence`;
  if (v.decision === 'worse') return `${counts}: worse with ${confident}`;
  if (v.decision === 'not-worse') return `${counts}: not worse with ${confident}`;
  return (
    `${counts}: not yet decided (worse ${(v.leaning.worse * 100).toFixed(1)} %, ` +
    `not worse ${(v.leaning.notWorse * 100).toFixed(1)} %; ${(100 * (1 - policy.alpha)).toFixed(0)} % needed)`
  );
}
