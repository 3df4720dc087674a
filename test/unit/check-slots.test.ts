// Checks on shared slots (ADR 23): when a check falls due and what it looks back over. Pure.
import t from 'tap';
import { checkSlotMs, checkWindows, nextCheckAt } from '../../analyzer/core/analysis.ts';
import type { ReleaseStatus } from '../../contract/status.ts';

const policy = { intervalMs: 60_000, unjudgedLimit: 5 };
const at = (iso: string): number => Date.parse(iso);
const held = (fields: Partial<ReleaseStatus>): ReleaseStatus => ({
  revision: 'r',
  step: 0,
  weight: 10,
  failures: 0,
  checks: [],
  message: '',
  ...fields,
});

t.test('a step that began between slots is first checked on the slot an interval after its start', async (t) => {
  t.equal(checkSlotMs(policy), 30_000, 'a slot every half interval');
  const due = nextCheckAt(policy, { stepStartedAt: '2026-11-29T12:00:07.250Z' });
  t.equal(due, at('2026-11-29T12:01:30Z'), 'the first slot at or after 12:01:07.25');
  t.equal(
    nextCheckAt(policy, { stepStartedAt: '2026-11-29T12:00:00Z' }),
    at('2026-11-29T12:01:00Z'),
    'on a slot: one interval',
  );
  const starts = Array.from({ length: 100 }, (_, i) => new Date(at('2026-11-29T12:00:00Z') + i * 293).toISOString());
  const dues = new Set(starts.map((s) => nextCheckAt(policy, { stepStartedAt: s })));
  t.same(
    [...dues].sort(),
    [at('2026-11-29T12:01:00Z'), at('2026-11-29T12:01:30Z')],
    '100 steps begun within 30 s: two instants',
  );
  for (const s of starts) {
    const wait = (nextCheckAt(policy, { stepStartedAt: s }) - at(s)) / policy.intervalMs;
    if (wait < 1 || wait > 1.5) t.fail(`a first check ${wait} intervals after its step began`);
  }
});

t.test('later checks come an interval after the slot of the last one, however late its pass ran', async (t) => {
  const started = '2026-11-29T12:00:07Z';
  t.equal(
    nextCheckAt(policy, { stepStartedAt: started, lastCheckAt: '2026-11-29T12:01:30.480Z', lastVerdict: 'pass' }),
    at('2026-11-29T12:02:30Z'),
  );
  t.equal(
    nextCheckAt(policy, { stepStartedAt: started, lastCheckAt: '2026-11-29T12:02:00.100Z', lastVerdict: 'fail' }),
    at('2026-11-29T12:03:00Z'),
    'a pass that ran a slot late keeps to the grid from there',
  );
});

t.test("a check looks back to the last one, or to its step's start, in whole slots", async (t) => {
  const first = held({ stepStartedAt: '2026-11-29T12:00:07Z' });
  const now = new Date('2026-11-29T12:01:30.400Z');
  t.same(
    checkWindows(policy, first, now),
    { counts: 90_000, callers: 60_000 },
    "the first check counts since its step began (83 s, rounded up to slots); callers' failures only within it",
  );
  const later = held({
    stepStartedAt: '2026-11-29T12:00:07Z',
    lastCheckAt: '2026-11-29T12:01:30.400Z',
    lastVerdict: 'pass',
  });
  t.same(checkWindows(policy, later, new Date('2026-11-29T12:02:30.900Z')), { counts: 60_000, callers: 60_000 });
  const quiet = held({
    stepStartedAt: '2026-11-29T12:00:07Z',
    lastCheckAt: '2026-11-29T12:02:30.900Z',
    lastVerdict: 'inconclusive',
    unjudged: 2,
  });
  t.same(
    checkWindows(policy, quiet, new Date('2026-11-29T12:03:30.100Z')),
    { counts: 120_000, callers: 120_000 },
    'after checks with no verdict it looks back further (ADR 20)',
  );
  const young = held({
    stepStartedAt: '2026-11-29T12:02:50Z',
    lastCheckAt: '2026-11-29T12:02:55Z',
    lastVerdict: 'inconclusive',
    unjudged: 3,
  });
  t.same(
    checkWindows(policy, young, new Date('2026-11-29T12:03:30.100Z')),
    { counts: 240_000, callers: 30_000 },
    "looking back past the step's start, callers' failures still come only from within it (40 s, whole slots)",
  );
});

t.test('windows are shared: 200 releases begun at random moments ask for a handful', async (t) => {
  const fast = { intervalMs: 10_000, unjudgedLimit: 30 };
  const base = at('2026-11-29T12:00:00Z');
  const counts = new Set<number>();
  const callers = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const started = base + ((i * 7919) % 60_000);
    const s = held({ stepStartedAt: new Date(started).toISOString() });
    const due = nextCheckAt(fast, s);
    const w = checkWindows(fast, s, new Date(due + 120));
    counts.add(w.counts);
    callers.add(w.callers);
    const next = held({ ...s, lastCheckAt: new Date(due + 120).toISOString(), lastVerdict: 'pass' });
    const w2 = checkWindows(fast, next, new Date(nextCheckAt(fast, next) + 300));
    counts.add(w2.counts);
    callers.add(w2.callers);
  }
  t.same([...counts].sort(), [10_000, 15_000], 'counts: one interval, or one and a half for a first check');
  t.same([...callers].sort(), [10_000, 15_000], "callers' failures: the same, never more than the step's age");
});

t.test('nothing recorded yet: the plain look-back, and never under 10 s or two seconds', async (t) => {
  t.same(checkWindows({ intervalMs: 2_000, unjudgedLimit: 3 }, undefined, new Date()), {
    counts: 10_000,
    callers: 2_000,
  });
  t.same(checkWindows({ intervalMs: 1_000, unjudgedLimit: 3 }, undefined, new Date()), {
    counts: 10_000,
    callers: 2_000,
  });
  const s = held({ stepStartedAt: '2026-11-29T12:00:00Z' });
  t.same(checkWindows({ intervalMs: 2_000, unjudgedLimit: 3 }, s, new Date('2026-11-29T12:00:00.300Z')), {
    counts: 10_000,
    callers: 2_000,
  });
});

t.test('after a routing repair the analysis starts again there, as at a step start', async (t) => {
  // A check time with no verdict is a repair (decide's repairRouting): nothing from before it is judged.
  const repaired = held({
    stepStartedAt: '2026-11-29T12:00:07Z',
    lastCheckAt: '2026-11-29T12:02:41Z',
    lastVerdict: undefined,
  });
  const due = nextCheckAt(policy, repaired);
  t.equal(due, at('2026-11-29T12:04:00Z'), 'the first slot an interval after the repair (12:03:41)');
  t.same(
    checkWindows(policy, repaired, new Date(due + 200)),
    { counts: 90_000, callers: 60_000 },
    "counts since the repair in whole slots; callers' failures (a broken route's 503s) never from before it",
  );
});
