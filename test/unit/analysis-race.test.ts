// The benchmark's release model (test/bench/analysis.ts) is checked here, so its figures are
// figures of the real state machine: a few seeded releases, no I/O.
import t from 'tap';
import { analysisPolicies, race, runRelease, quantile } from '../bench/analysis.ts';
import { seededRandom } from '../helpers/model.ts';

t.test('a canary failing every request is taken out of traffic by both policies', async (t) => {
  for (const kind of ['threshold', 'sequential'] as const) {
    const run = runRelease(analysisPolicies[kind], 0.01, 1, 20, seededRandom(3));
    t.equal(run.outcome, 'rolledBack', kind);
    // The ceiling (50 %) fails by the second check: the first falls on the slot 1 to 1.5 intervals
    // into the step (ADR 23), the next an interval later.
    t.ok((run.rollbackAfterS ?? Infinity) <= 155, `${kind}: back to 0 % in ${run.rollbackAfterS} s`);
  }
});

t.test('the seed policy promotes an equal canary after both pauses', async (t) => {
  const run = runRelease(analysisPolicies.threshold, 0.01, 0.01, 20, seededRandom(5));
  t.equal(run.outcome, 'promoted');
  t.ok((run.promotedAfterS ?? 0) >= 600, `two 5 min pauses at least (${run.promotedAfterS} s)`);
});

t.test('a race row counts every release once and sorts its times', async (t) => {
  const row = race('sequential', 0.01, 20, 20, 5, 9);
  t.equal(row.rolledBack + row.promoted <= row.releases, true);
  t.equal(row.rolledBack, 5, 'a canary at 20 % errors beside 1 % is always rolled back');
  t.same(
    row.rollbackTimes,
    [...row.rollbackTimes].sort((a, b) => a - b),
  );
  t.equal(quantile([], 0.5), undefined);
  t.equal(quantile([1, 2, 3, 4], 0.5), 3);
});
