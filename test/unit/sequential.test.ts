// The sequential test on synthetic counts (issue 14): seeded, in-process, no I/O. Releases are
// checked at every window, as the analyzer checks them, and the false-alarm bound must hold.
import t from 'tap';
import { accumulate, decideSequential, describeVerdict, noEvidence } from '../../analyzer/core/sequential.ts';
import type { SequentialPolicy } from '../../analyzer/core/sequential.ts';
import { judgeSequential } from '../../analyzer/core/analysis.ts';
import type { Measurement } from '../../analyzer/core/analysis.ts';
import { poisson, seededRandom as random } from '../helpers/model.ts';

const policy: SequentialPolicy = { alpha: 0.01, margin: 0.5, tolerable: 0.05 };

interface Outcome {
  decision: 'worse' | 'not-worse' | 'not-yet';
  canaryRequests: number;
}

/** One release: windows of 1,000 requests at 10 % then 50 % to the canary, checked after each. */
function release(rand: () => number, stableRate: number, canaryRate: number, windows = 60): Outcome {
  let evidence = noEvidence();
  for (let w = 0; w < windows; w++) {
    const canaryShare = w < 30 ? 0.1 : 0.5;
    const c = Math.round(1000 * canaryShare);
    const s = 1000 - c;
    evidence = accumulate(
      evidence,
      {
        canary: { requests: c, errors: poisson(rand, c * canaryRate) },
        stable: { requests: s, errors: poisson(rand, s * stableRate) },
      },
      policy,
    );
    const verdict = decideSequential(evidence, policy);
    if (verdict.decision === 'worse') return { decision: 'worse', canaryRequests: evidence.canary.requests };
  }
  return { decision: decideSequential(evidence, policy).decision, canaryRequests: evidence.canary.requests };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

t.test(
  'a canary equal to stable is rolled back in at most alpha of 10,000 releases, looked at every window',
  async (t) => {
    const rand = random(20261128);
    let falseRollbacks = 0;
    const n = 10_000;
    for (let i = 0; i < n; i++) if (release(rand, 0.01, 0.01).decision === 'worse') falseRollbacks++;
    t.comment(`false rollbacks: ${falseRollbacks} of ${n} (${((falseRollbacks / n) * 100).toFixed(2)} %, alpha 1 %)`);
    t.ok(falseRollbacks / n <= policy.alpha, `${falseRollbacks / n} ≤ ${policy.alpha}`);
  },
);

t.test('a canary at twice the stable error rate is found, and the requests it takes are reported', async (t) => {
  const rand = random(7);
  const found: number[] = [];
  const n = 1000;
  for (let i = 0; i < n; i++) {
    const outcome = release(rand, 0.01, 0.02);
    if (outcome.decision === 'worse') found.push(outcome.canaryRequests);
  }
  t.comment(`2× found in ${found.length} of ${n} releases; median canary requests needed: ${median(found)}`);
  t.ok(found.length / n >= 0.95, `found in ${((found.length / n) * 100).toFixed(1)} % of releases`);
});

t.test('an equal canary is shown not worse; a worse one never is', async (t) => {
  const rand = random(11);
  let notWorse = 0;
  let wronglyPassed = 0;
  // Showing "not worse than 1.5× stable" takes more evidence than finding 2×: 130 windows, 2,000+ errors.
  for (let i = 0; i < 500; i++) {
    if (release(rand, 0.01, 0.01, 130).decision === 'not-worse') notWorse++;
    if (release(rand, 0.01, 0.03, 130).decision === 'not-worse') wronglyPassed++;
  }
  t.ok(notWorse / 500 >= 0.9, `equal canaries shown not worse in ${((notWorse / 500) * 100).toFixed(1)} %`);
  t.ok(wronglyPassed / 500 <= policy.alpha, `3× canaries passed in ${wronglyPassed} of 500`);
});

t.test('a quiet canary with no errors passes once it served enough requests; no requests, no verdict', async (t) => {
  let evidence = noEvidence();
  t.equal(decideSequential(evidence, policy).decision, 'not-yet', 'nothing seen: not yet');
  // A low-traffic service: 2 requests/s, 10 % to the canary, a check every 60 s.
  let windows = 0;
  while (decideSequential(evidence, policy).decision === 'not-yet' && windows < 1000) {
    evidence = accumulate(
      evidence,
      { canary: { requests: 12, errors: 0 }, stable: { requests: 108, errors: 0 } },
      policy,
    );
    windows++;
  }
  t.equal(decideSequential(evidence, policy).decision, 'not-worse');
  t.comment(`passed after ${windows} windows, ${evidence.canary.requests} canary requests`);
  // The mixture of three alternatives costs a factor 3: ln(3/α) / 5 % = 114 requests.
  const needed = Math.log(3 / policy.alpha) / policy.tolerable;
  t.ok(evidence.canary.requests - 12 < needed && evidence.canary.requests >= needed, `about ${Math.ceil(needed)}`);
});

t.test('the summary says what a person needs: both rates, the requests, the confidence', async (t) => {
  let evidence = noEvidence();
  for (let i = 0; i < 40; i++)
    evidence = accumulate(
      evidence,
      { canary: { requests: 500, errors: 25 }, stable: { requests: 500, errors: 5 } },
      policy,
    );
  const verdict = decideSequential(evidence, policy);
  t.equal(verdict.decision, 'worse');
  t.match(
    describeVerdict(verdict, policy),
    /^canary errors 5\.00 % vs stable 1\.00 % over 40,000 requests: worse with 99\.9 % confidence$/,
  );
  t.match(describeVerdict(decideSequential(noEvidence(), policy), policy), /not yet decided/);
});

/** The built-in error rate under the seed's numbers, and the sequential test's defaults. */
const metric = { name: 'error-rate', query: 'error-rate', max: 0.05, ceiling: 0.5 };
const analysis = { alpha: 0.01, margin: 0.5 };

/** A check's counter totals of both halves, as Prometheus gives them. */
const totals = (cr: number, ce: number, sr: number, se: number): Measurement => ({
  metric: 'error-rate',
  totals: { canary: { requests: cr, errors: ce }, stable: { requests: sr, errors: se } },
});

t.test('judging one check: a baseline first, differences next, a reset starts anew, the ceiling stays', async (t) => {
  const first = judgeSequential(metric, totals(100, 1, 900, 9), undefined, analysis);
  t.match(first.judgement, { verdict: 'inconclusive', progressed: true, reason: 'baseline taken' });
  t.equal(first.evidence?.canary.requests, 0, 'what came before the first check is not evidence');
  const second = judgeSequential(metric, totals(300, 3, 2700, 27), first.evidence, analysis);
  t.equal(second.evidence?.canary.requests, 200, 'the difference since the last check');
  t.equal(second.evidence?.stable.errors, 18);
  const reset = judgeSequential(metric, totals(50, 0, 2800, 28), second.evidence, analysis);
  t.match(reset.judgement, { verdict: 'inconclusive', progressed: true, reason: /new baseline/ });
  t.equal(reset.evidence?.canary.requests, 200, 'a reset adds nothing');
  const idle = judgeSequential(metric, totals(50, 0, 2900, 29), reset.evidence, analysis);
  t.match(idle.judgement, { verdict: 'inconclusive', reason: /no canary requests/ });
  t.notOk(idle.judgement.progressed, 'no canary traffic is no progress: it counts toward the unjudged limit');
  const burning = judgeSequential(metric, totals(150, 60, 3000, 30), idle.evidence, analysis);
  t.match(burning.judgement, { verdict: 'fail', hard: true }, '60 % of the window failed: the ceiling');
  t.match(judgeSequential(metric, { metric: 'error-rate', error: 'down' }, undefined, analysis).judgement, {
    verdict: 'error',
  });
});

t.test('"not worse" holds once reached; at 100 % a canary stable cannot be compared with is waiting', async (t) => {
  const at = totals;
  // Both halves at 10 % errors, 50 % weight: enough windows for "not worse".
  let step = judgeSequential(metric, at(0, 0, 0, 0), undefined, analysis);
  let canary = { requests: 0, errors: 0 };
  let stable = { requests: 0, errors: 0 };
  for (let i = 0; i < 200 && step.judgement.verdict !== 'pass'; i++) {
    canary = { requests: canary.requests + 600, errors: canary.errors + 60 };
    stable = { requests: stable.requests + 600, errors: stable.errors + 60 };
    step = judgeSequential(
      metric,
      at(canary.requests, canary.errors, stable.requests, stable.errors),
      step.evidence,
      analysis,
    );
  }
  t.equal(step.judgement.verdict, 'pass', 'an equal canary is shown not worse at 50 %');
  t.equal(step.evidence?.cleared, true, 'and the verdict is kept');
  // At 100 % stable serves nothing; the canary's errors drift up a little, still inside the margin.
  canary = { requests: canary.requests + 1200, errors: canary.errors + 140 };
  const full = judgeSequential(
    metric,
    at(canary.requests, canary.errors, stable.requests, stable.errors),
    step.evidence,
    analysis,
  );
  t.equal(full.judgement.verdict, 'pass', 'still not worse at 100 %: a stopped test keeps its verdict');
  // The same windows without the latch: nothing can be learned, and holding is not progress.
  const unlatched = { ...(step.evidence ?? noEvidence()), cleared: false, notWorse: [0, 0, 0, 0] };
  const idle = judgeSequential(
    metric,
    at(canary.requests + 1200, canary.errors + 140, stable.requests, stable.errors),
    { ...unlatched, last: { canary, stable } },
    analysis,
  );
  t.equal(idle.judgement.verdict, 'inconclusive');
  t.notOk(idle.judgement.progressed, 'no evidence gained counts toward the unjudged limit');
  t.match(idle.judgement.reason, /stable served no requests to compare with/);
  // A worse canary is still found after "not worse" was reached.
  let late = step;
  let c = canary;
  let s = stable;
  for (let i = 0; i < 200 && late.judgement.verdict !== 'fail'; i++) {
    c = { requests: c.requests + 600, errors: c.errors + 200 };
    s = { requests: s.requests + 600, errors: s.errors + 60 };
    late = judgeSequential(metric, at(c.requests, c.errors, s.requests, s.errors), late.evidence, analysis);
  }
  t.match(late.judgement, { verdict: 'fail', worse: true }, '"worse" keeps running after "not worse"');
});
