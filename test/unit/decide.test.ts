// The release state machine, driven through whole releases without any I/O: a small model of
// the cluster applies each action the way the analyzer's edges would.
import t from 'tap';
import { decide, checkDue, canaryReplicas, isFinding, urgency, wakeAt } from '../../analyzer/core/decide.ts';
import type { Action, Observed } from '../../analyzer/core/decide.ts';
import { lookBackMs } from '../../analyzer/core/analysis.ts';
import type { Measurement } from '../../analyzer/core/analysis.ts';
import { defaultPolicy } from '../../analyzer/core/policy.ts';
import type { Policy } from '../../analyzer/core/policy.ts';
import { applyActions, releaseWorld } from '../helpers/model.ts';
import { meshPropagationMs } from '../../contract/timing.ts';

const policy: Policy = { ...defaultPolicy, stepPauseMs: 30_000, intervalMs: 10_000, drainMs: 5_000 };

/** The same policy under dynamic stable scale (ADR 19). */
const scaled: Policy = { ...policy, dynamicStableScale: true };
const world = (overrides: Partial<Observed> = {}): Observed => releaseWorld(policy, overrides);
const apply = applyActions;

/** Runs the loop once a second for `seconds`, measuring with `measure` whenever a check is due. */
function run(o: Observed, seconds: number, measure: (t: number) => Measurement[], log: string[], start = 0): number {
  for (let s = start; s < start + seconds; s++) {
    const now = new Date(s * 1000);
    const measured = checkDue(o, now) ? measure(s) : undefined;
    apply(o, decide(o, measured, now), log);
  }
  return start + seconds;
}

const errorRate =
  (value: number | undefined, requests = 500): (() => Measurement[]) =>
  () => [{ metric: 'error-rate', ...(value === undefined ? {} : { canary: value }), requests }];
const weights = (log: string[]): string[] => log.filter((l) => l.startsWith('weight'));

/** `first` and `then` are both in the log, `first` earlier: a missing entry fails, never passes. */
function inOrder(
  t: { ok: (value: boolean, message: string) => void },
  log: string[],
  first: string,
  then: string,
  message: string,
): void {
  const a = log.indexOf(first);
  const b = log.indexOf(then);
  t.ok(a >= 0 && b >= 0 && a < b, `${message} (${first} at ${a}, ${then} at ${b})`);
}

t.test('a healthy canary goes 10 → 50 → 100, is promoted, then traffic returns to stable', async (t) => {
  const o = world();
  const log: string[] = [];
  run(o, 200, errorRate(0.01), log);
  t.same(weights(log), ['weight 10', 'weight 50', 'weight 100', 'weight 0']);
  inOrder(t, log, 'weight 100', 'unpause', 'unpaused after the last step');
  inOrder(t, log, 'weight 0', 'delete canary', 'canary removed only after weight left it');
  t.equal(o.phase, 'Stable');
  t.equal(o.stableRevision, 'c1');
  t.equal(o.canary, undefined);
  t.ok(log.includes('event Promoted'));
});

t.test('each step holds for its pause; the last one needs only a passing check', async (t) => {
  const o = world();
  const log: string[] = [];
  const at: Record<string, number> = {};
  for (let s = 0; s < 200; s++) {
    const before = log.length;
    const now = new Date(s * 1000);
    apply(o, decide(o, checkDue(o, now) ? errorRate(0)() : undefined, now), log);
    for (const l of log.slice(before)) if (l.startsWith('weight') || l === 'unpause') at[l] ??= s;
  }
  t.ok((at['weight 50'] ?? 0) - (at['weight 10'] ?? 0) >= 30, 'the 10 % step lasted its 30 s pause');
  t.ok(
    (at['unpause'] ?? 0) - (at['weight 100'] ?? 0) >= 10 && (at['unpause'] ?? 0) - (at['weight 100'] ?? 0) < 30,
    'promotion after one check at 100 %',
  );
});

t.test('a bad canary is rolled back after the failure limit, stable first', async (t) => {
  const o = world();
  const log: string[] = [];
  run(o, 120, errorRate(0.3), log);
  t.same(weights(log), ['weight 10', 'weight 0']);
  t.equal(log.filter((l) => l === 'event CheckFailed').length, 2, 'two failures, the third rolls back');
  t.equal(o.phase, 'RolledBack');
  t.equal(o.canary, undefined);
  t.ok(o.paused, 'the Deployment stays paused on its old ReplicaSet');
  t.match(o.status?.message, /error-rate: 30\.00% > 5\.00%/, 'the reason names the metric, value and threshold');
});

t.test(
  'CheckPassed is recorded once per step and again after a check that did not pass; every check counts',
  async (t) => {
    const o = world();
    const log: string[] = [];
    const verdicts: string[] = [];
    let measured = 0;
    for (let s = 0; s < 200 && o.phase === 'Progressing'; s++) {
      const now = new Date(s * 1000);
      // The second check of the release fails; every other passes.
      const m = checkDue(o, now) ? errorRate(++measured === 2 ? 0.3 : 0.01)() : undefined;
      const actions = decide(o, m, now);
      for (const a of actions) if (a.kind === 'checked') verdicts.push(a.verdict);
      apply(o, actions, log);
    }
    t.same(weights(log), ['weight 10', 'weight 50', 'weight 100']);
    const passes = verdicts.filter((v) => v === 'pass').length;
    t.equal(
      log.filter((l) => l === 'event CheckPassed').length,
      4,
      `one at each of the three steps, one after the failure (of ${passes} passing checks)`,
    );
    t.ok(passes > 4, 'later passes at a step are checks all the same');
    t.equal(log.filter((l) => l === 'event CheckFailed').length, 1);
    t.equal(o.status?.checks.at(-1)?.verdict, 'pass', "the status record keeps every check, the last one's too");
  },
);

t.test('a hard failure rolls back at the first check', async (t) => {
  const o = world();
  const log: string[] = [];
  run(o, 40, errorRate(1), log);
  t.equal(log.filter((l) => l === 'event CheckFailed').length, 0);
  t.ok(log.includes('event RollingBack'));
  t.equal(o.phase, 'RolledBack');
  t.match(o.status?.message, /hard ceiling/);
});

t.test(
  'no data, too few requests, or no Prometheus: holds, never promotes, never fails — up to the unjudged limit',
  async (t) => {
    for (const [name, measure, why] of [
      ['no data', errorRate(undefined), /too little canary traffic or no data to judge.*lower weir.dev\/min-requests/],
      ['few requests', errorRate(0, 3), /too little canary traffic or no data to judge/],
      [
        'unreachable',
        () => [{ metric: 'error-rate', error: 'connect ECONNREFUSED' }],
        /metrics were unavailable for 5 checks in a row.*once Prometheus answers again, `weir retry web`/,
      ],
    ] as [string, () => Measurement[], RegExp][]) {
      const o = world();
      const log: string[] = [];
      // Step 1 starts at 1 s; with a check every 10 s, the 5th unjudged check is due at 51 s.
      const end = run(o, 50, measure, log);
      t.same(weights(log), ['weight 10'], `${name}: stays at the first step`);
      t.equal(o.phase, 'Progressing', `${name}: no promotion, no rollback yet`);
      t.equal(o.status?.failures, 0, `${name}: never a failure`);
      run(o, 30, measure, log, end);
      t.same(weights(log), ['weight 10', 'weight 0'], `${name}: past the limit, traffic back to stable`);
      t.equal(o.phase, 'RolledBack', `${name}: rolled back`);
      t.match(o.status?.message, why, `${name}: the reason names the cause and what to do`);
    }
    const o = world();
    const log: string[] = [];
    const end = run(o, 40, () => [{ metric: 'error-rate', error: 'down' }], log);
    t.ok(log.includes('event MetricsUnavailable'));
    run(o, 200, errorRate(0), log, end);
    t.equal(o.phase, 'Stable', 'Prometheus back within the limit: the release completes');
  },
);

t.test(
  "a quiet canary's requests add up: a check with too few looks back further, and the release finishes",
  async (t) => {
    const o = world();
    const log: string[] = [];
    const windows: number[] = [];
    const said: string[] = [];
    // 12 canary requests an interval, 20 needed: one window alone never has enough.
    for (let s = 0; s < 400; s++) {
      const now = new Date(s * 1000);
      const intervals = lookBackMs(policy, o.status) / policy.intervalMs;
      if (checkDue(o, now)) windows.push(intervals);
      const actions = decide(o, checkDue(o, now) ? errorRate(0, 12 * intervals)() : undefined, now);
      for (const a of actions) if (a.kind === 'event' && a.reason === 'CheckInconclusive') said.push(a.message);
      apply(o, actions, log);
    }
    t.equal(o.phase, 'Stable', 'promoted, not rolled back at the unjudged limit');
    t.same(weights(log), ['weight 10', 'weight 50', 'weight 100', 'weight 0']);
    t.same([...new Set(windows)].sort(), [1, 2], 'one interval, then two; back to one after each verdict');
    t.match(said[0], /12 canary requests .*fewer than the 20 needed; the next check looks back 2 intervals/);
    t.equal(o.status?.unjudged, 0);
  },
);

t.test('relative metrics do not roll back a canary for an outage both halves share', async (t) => {
  const relative: Policy = {
    ...policy,
    metrics: [{ name: 'error-rate', query: 'error-rate', max: 0.05, ceiling: 0.5, relativeMargin: 0.05 }],
  };
  const o = world({ policy: { ok: true, value: relative } });
  const log: string[] = [];
  run(o, 200, () => [{ metric: 'error-rate', canary: 0.2, stable: 0.2, requests: 500 }], log);
  t.equal(o.phase, 'Stable', 'promoted');
  const bad = world({ policy: { ok: true, value: relative } });
  run(bad, 100, () => [{ metric: 'error-rate', canary: 0.35, stable: 0.2, requests: 500 }], []);
  t.equal(bad.phase, 'RolledBack', 'worse than stable plus the margin still rolls back');
});

t.test('weight waits for a Ready canary', async (t) => {
  const o = world();
  apply(o, decide(o, undefined, new Date(0)), []);
  const ensure = decide(o, undefined, new Date(1000));
  t.same(
    ensure.find((a) => a.kind === 'ensureCanary'),
    { kind: 'ensureCanary', replicas: 1 },
  );
  o.canary = { revision: 'c1', replicas: 1, readyReplicas: 0, current: true };
  const waiting = decide(o, undefined, new Date(2000));
  t.notOk(
    waiting.some((a) => a.kind === 'setWeight'),
    'no weight while the canary is not Ready',
  );
  o.canary.readyReplicas = 1;
  t.ok(decide(o, undefined, new Date(3000)).some((a) => a.kind === 'setWeight'));
  t.equal(canaryReplicas(4, 50), 2);
  t.equal(canaryReplicas(3, 10), 1);
});

t.test('stable pods from before the opt-in are labelled and subsets set before any weight', async (t) => {
  const o = world({ unlabelledStablePods: 3, backendsReady: false });
  const log: string[] = [];
  run(o, 10, errorRate(0), log);
  inOrder(t, log, 'label stable pods', 'subsets', 'stable pods labelled before the subsets select them');
  inOrder(t, log, 'subsets', 'weight 10', 'subsets before any weight');
});

t.test('a newer template mid-release drains the old canary and restarts the steps', async (t) => {
  const o = world();
  const log: string[] = [];
  const end = run(o, 60, errorRate(0), log);
  t.same(weights(log), ['weight 10', 'weight 50']);
  o.canaryRevision = 'c2';
  run(o, 300, errorRate(0), log, end);
  t.same(weights(log), ['weight 10', 'weight 50', 'weight 0', 'weight 10', 'weight 50', 'weight 100', 'weight 0']);
  t.ok(log.includes('event Superseded'));
  t.equal(o.stableRevision, 'c2');
});

t.test('a revert mid-release (phase Stable from the webhook) takes weight off and removes the canary', async (t) => {
  const o = world();
  const log: string[] = [];
  const end = run(o, 20, errorRate(0), log);
  o.phase = 'Stable';
  o.canaryRevision = undefined;
  run(o, 20, errorRate(0), log, end);
  t.same(weights(log), ['weight 10', 'weight 0']);
  t.equal(o.canary, undefined);
});

t.test('opting out mid-release hands the Deployment back: stable traffic, no canary, resumed', async (t) => {
  const o = world();
  const log: string[] = [];
  const end = run(o, 20, errorRate(0), log);
  o.optedOut = true;
  run(o, 20, errorRate(0), log, end);
  t.same(weights(log), ['weight 10', 'weight 0']);
  t.equal(o.canary, undefined);
  t.equal(o.paused, false);
  t.equal(o.phase, 'Stable');
});

t.test('an invalid policy or unreadable routing holds with one Warning', async (t) => {
  const o = world({ policy: { ok: false, errors: ['weird.dev/steps: "x" must be rising'] } });
  const log: string[] = [];
  run(o, 10, errorRate(0), log);
  t.same(
    log.filter((l) => l.startsWith('event')),
    ['event InvalidPolicy'],
  );
  t.same(weights(log), []);
  const r = world({ routing: { ok: false, error: 'route primary not found' } });
  const log2: string[] = [];
  run(r, 10, errorRate(0), log2);
  t.same(log2, ['event RoutingError']);
});

/** Applies a request the way the analyzer's edges would (the request annotation is then cleared). */
function requestOnce(o: Observed, request: Observed['request'], at: number, log: string[]): void {
  o.request = request;
  const actions = decide(o, undefined, new Date(at * 1000));
  if (actions.some((a) => a.kind === 'clearRequest')) o.request = undefined;
  apply(o, actions, log);
}

t.test('promote ends the current pause; promote --full skips to promotion', async (t) => {
  const o = world({ policy: { ok: true, value: { ...policy, stepPauseMs: 3_600_000 } } });
  const log: string[] = [];
  const end = run(o, 5, errorRate(0), log);
  t.same(weights(log), ['weight 10']);
  requestOnce(o, 'promote', end, log);
  const next = run(o, 2, errorRate(0), log, end + 1);
  t.same(weights(log), ['weight 10', 'weight 50'], 'the pause ended early: the canary is scaled, then weighted');
  t.ok(log.includes('event PromoteRequested'));
  requestOnce(o, 'promote-full', next, log);
  t.equal(o.phase, 'Promoting', 'remaining steps skipped');
  t.equal(o.paused, false);
});

t.test('abort rolls back at once; retry starts the steps again', async (t) => {
  const o = world();
  const log: string[] = [];
  const end = run(o, 5, errorRate(0), log);
  requestOnce(o, 'abort', end, log);
  t.same(weights(log), ['weight 10', 'weight 0'], '100 % on stable within one reconcile');
  const after = run(o, 10, errorRate(0), log, end + 1);
  t.equal(o.phase, 'RolledBack');
  t.equal(o.canary, undefined);
  requestOnce(o, 'retry', after, log);
  t.equal(o.phase, 'Progressing');
  run(o, 200, errorRate(0), log, after + 1);
  t.equal(o.phase, 'Stable', 'the retried release completes');
});

t.test('requests that do not apply are refused with a Warning and cleared', async (t) => {
  const o = world({ phase: 'Stable' });
  const log: string[] = [];
  requestOnce(o, 'promote', 0, log);
  t.same(log, ['event RequestRefused']);
  t.equal(o.request, undefined);
  requestOnce(o, { invalid: 'please' }, 1, log);
  t.same(log, ['event RequestRefused', 'event RequestRefused']);
  const r = world();
  const retried: string[] = [];
  requestOnce(r, 'retry', 0, retried);
  t.same(retried, ['event RequestRefused'], 'retry of a release that did not roll back is refused');
  t.equal(r.status, undefined, 'and starts nothing');
});

t.test("weights changed behind weir's back mid-step are put back at once, and the step is judged afresh", async (t) => {
  const o = world();
  const log: string[] = [];
  const at = run(o, 16, errorRate(0.01), log);
  t.equal(o.status?.weight, 10, 'holding step 1');
  t.ok(o.status?.lastCheckAt, 'and checked at it');
  const checksBefore = o.status?.lastCheckAt;
  // A re-apply that bypassed the webhook put the route back to 100/0.
  o.routing = { ok: true, canaryWeight: 0 };
  const now = new Date(at * 1000);
  const actions = decide(o, errorRate(0.5)(), now);
  t.same(
    actions.filter((a) => a.kind !== 'status' && a.kind !== 'event'),
    [{ kind: 'setWeight', weight: 10 }],
    "the weight goes back to the step's",
  );
  const repaired = actions.find((a) => a.kind === 'event');
  t.match(repaired, { type: 'Warning', reason: 'RoutingRepaired', message: /gave the canary 0% instead of 10%/ });
  t.notOk(
    actions.some((a) => a.kind === 'event' && a.reason.startsWith('Check')),
    'the measurement taken on 0 % is not counted',
  );
  apply(o, actions, log);
  t.equal(o.status?.failures, 0);
  t.equal(o.status?.lastVerdict, undefined, 'the next step needs a fresh passing check');
  t.not(o.status?.lastCheckAt, checksBefore, 'the analysis window restarts at the repair');
  run(o, 200, errorRate(0.01), log, at + 1);
  t.equal(o.phase, 'Stable', 'the release then completes');
});

t.test("subsets changed behind weir's back are put back mid-step and after the release", async (t) => {
  const o = world();
  const log: string[] = [];
  const at = run(o, 15, errorRate(0.01), log);
  o.backendsReady = false;
  const mid = decide(o, undefined, new Date(at * 1000));
  t.same(
    mid.map((a) => a.kind),
    ['ensureBackends', 'event', 'status'],
  );
  apply(o, mid, log);
  const end = run(o, 200, errorRate(0.01), log, at + 1);
  t.equal(o.phase, 'Stable');
  o.backendsReady = false;
  const after = decide(o, undefined, new Date(end * 1000));
  t.same(
    after.map((a) => a.kind),
    ['ensureBackends', 'event'],
    'after the release too',
  );
  t.match(after[1], { reason: 'RoutingRepaired' });
  t.same(decide({ ...o, optedOut: true }, undefined, new Date(end * 1000)), [], 'not once opted out');
  t.same(decide({ ...o, status: undefined }, undefined, new Date(end * 1000)), [], 'never before weir steered it');
  const own = decide({ ...o, status: undefined, ownBackends: true }, undefined, new Date(end * 1000));
  t.same(
    own.map((a) => a.kind),
    ['ensureBackends', 'event'],
    "but weir's own backends (an HTTPRoute's Services) are made before any release",
  );
  t.match(own[1], { type: 'Normal', reason: 'BackendsCreated' });
});

t.test(
  "a stranger under the canary's name holds the release with NameConflict; nothing of it is touched",
  async (t) => {
    const o = world({ nameConflict: 'Deployment web-canary' });
    const actions = decide(o, undefined, new Date(0));
    t.match(actions[0], {
      kind: 'event',
      type: 'Warning',
      reason: 'NameConflict',
      message: /Deployment web-canary exists and is not weir's canary of web/,
    });
    t.notOk(
      actions.some((a) => a.kind === 'ensureCanary' || a.kind === 'deleteCanary' || a.kind === 'setWeight'),
      'no write to it',
    );
    apply(o, actions, []);
    t.same(decide(o, undefined, new Date(1000)), [], 'one Warning, then a quiet hold');
    t.same(decide({ ...o, phase: 'Stable' }, undefined, new Date(1000)), [], 'after a release, never deleted either');
  },
);

t.test('an unreadable weir.dev/status holds its release with a Warning and is never overwritten', async (t) => {
  const o = world({ unreadableStatus: '{not json' });
  const actions = decide(o, undefined, new Date(0));
  t.equal(actions.length, 1);
  t.match(actions[0], { kind: 'event', type: 'Warning', reason: 'InvalidStatus', message: /weir.dev\/status-/ });
});

t.test(
  "a crash between weir's record and its route write completes the step or the drain, never undoes it",
  async (t) => {
    // Step 2 is decided; only its first action (the record) lands before the crash.
    const o = world();
    const log: string[] = [];
    let s = 0;
    for (; o.status?.step !== 1 || o.status.stepStartedAt === undefined; s++) {
      const actions = decide(o, checkDue(o, new Date(s * 1000)) ? errorRate(0.01)() : undefined, new Date(s * 1000));
      const stepping = actions.findIndex(
        (a) => a.kind === 'status' && a.status.step === 1 && a.status.stepStartedAt !== undefined,
      );
      apply(o, stepping >= 0 ? actions.slice(0, stepping + 1) : actions, log);
    }
    t.equal(o.routing.ok && o.routing.canaryWeight, 10, 'the route still at step 1');
    const after = decide(o, undefined, new Date(s * 1000));
    t.same(after, [{ kind: 'setWeight', weight: 50 }], 'the restarted analyzer completes step 2, without a warning');
    // A rollback decided; only the record (draining) lands before the crash.
    const bad = world();
    const end = run(bad, 15, errorRate(0.01), []);
    const held = bad.status;
    if (!held) return t.fail('a release in progress');
    bad.status = {
      ...held,
      weight: 0,
      drainingSince: new Date(end * 1000).toISOString(),
      outcome: 'rollback',
      message: 'RolledBack: test',
    };
    t.same(
      decide(bad, undefined, new Date((end + 1) * 1000)),
      [{ kind: 'setWeight', weight: 0 }],
      'the drain still takes the weight off',
    );
  },
);

/** Every action decide returned over a run, in order, with the world applied as the edges would. */
function actionsOf(o: Observed, seconds: number, measure: () => Measurement[], start = 0): Action[] {
  const all: Action[] = [];
  for (let s = start; s < start + seconds; s++) {
    const now = new Date(s * 1000);
    const actions = decide(o, checkDue(o, now) ? measure() : undefined, now);
    all.push(...actions);
    apply(o, actions, []);
  }
  return all;
}

const findings = (actions: Action[]): string[] =>
  actions.flatMap((a) =>
    a.kind === 'checked' ? [`checked ${a.verdict}`] : a.kind === 'released' ? [`released ${a.outcome}`] : [],
  );

t.test('metrics findings are data: one per check with its verdict, one per release outcome', async (t) => {
  const healthy = findings(actionsOf(world(), 200, errorRate(0.01)));
  t.ok(healthy.length >= 3, 'a check at each step');
  t.same(new Set(healthy.slice(0, -1)), new Set(['checked pass']), 'every check passed');
  t.equal(healthy.at(-1), 'released promoted');
  const bad = findings(actionsOf(world(), 120, errorRate(0.3)));
  t.same(bad, ['checked fail', 'checked fail', 'checked fail', 'released rolledBack'], 'the third failure rolls back');
  const silent = findings(actionsOf(world(), 200, errorRate(undefined)));
  t.same(
    new Set(silent.slice(0, -1)),
    new Set(['checked inconclusive']),
    'an unjudged rollback counts inconclusive checks, never failed ones',
  );
  t.equal(silent.at(-1), 'released rolledBack');
});

t.test('an abort is a rollback with its own cause and counts no check', async (t) => {
  const o = world();
  actionsOf(o, 5, errorRate(0));
  o.request = 'abort';
  const aborted = actionsOf(o, 1, errorRate(0), 5);
  o.request = undefined;
  const rest = actionsOf(o, 20, errorRate(0), 6);
  t.same(findings([...aborted, ...rest]), ['released rolledBack']);
  t.same(o.status?.rollback, { cause: 'aborted', detail: 'aborted by request at 10%' });
  t.equal(o.phase, 'RolledBack');
});

t.test('the cause of a rollback is recorded, and the RolledBack event reads it rather than the message', async (t) => {
  const failing = world();
  const actions = actionsOf(failing, 120, errorRate(0.3));
  t.equal(failing.status?.rollback?.cause, 'failed-checks');
  t.match(failing.status?.rollback?.detail, /^3 failed checks reached the failure limit 3; error-rate: 30\.00%/);
  const rolledBack = actions.find((a) => a.kind === 'event' && a.reason === 'RolledBack');
  t.ok(rolledBack?.kind === 'event' && rolledBack.message.startsWith('3 failed checks'), 'no "RolledBack: " prefix');
  const hard = world();
  actionsOf(hard, 40, errorRate(1));
  t.equal(hard.status?.rollback?.cause, 'ceiling');
  const unjudged = world();
  actionsOf(unjudged, 200, errorRate(undefined));
  t.equal(unjudged.status?.rollback?.cause, 'unjudged');
});

t.test('every record written names its policy, steps and route, for readers that know no policy', async (t) => {
  const route = { kind: 'VirtualService' as const, name: 'web', stableSubset: 'stable', canarySubset: 'canary' };
  const o = world({ policyName: 'relative', policy: { ok: true, value: { ...policy, steps: [5, 25, 100] } }, route });
  const records = actionsOf(o, 60, errorRate(0)).flatMap((a) =>
    a.kind === 'status' || a.kind === 'remember' ? [a.status] : [],
  );
  t.ok(records.length > 3);
  for (const r of records) {
    t.equal(r.policy, 'relative');
    t.same(r.steps, [5, 25, 100]);
    t.same(r.route, route);
  }
});

t.test('a rollback moves traffic before it says why, and a pass carries weight moves out first', async (t) => {
  const o = world();
  const log: string[] = [];
  run(o, 12, errorRate(0.01), log);
  t.equal(o.status?.weight, 10, 'holding at 10 %');
  const holding = o.status;
  const failing: Action[][] = [];
  for (let s = 12; s < 120 && o.phase === 'Progressing' && !o.status?.drainingSince; s++) {
    const now = new Date(s * 1000);
    const actions = decide(o, checkDue(o, now) ? errorRate(0.3)() : undefined, now);
    failing.push(actions);
    apply(o, actions, log);
  }
  const rollback = failing.find((a) => a.some((x) => x.kind === 'event' && x.reason === 'RollingBack')) ?? [];
  const kinds = rollback.map((a) => (a.kind === 'event' ? a.reason : a.kind));
  t.ok(
    kinds.indexOf('setWeight') >= 0 && kinds.indexOf('setWeight') < kinds.indexOf('RollingBack'),
    `the weight goes to 0 before the Event (${kinds.join(', ')})`,
  );
  const held = failing.find((a) => a.some((x) => x.kind === 'status') && !a.some((x) => x.kind === 'setWeight')) ?? [];
  t.ok(held.length > 0, 'a failed check before the limit writes its record only');
  t.ok(urgency(rollback) < urgency(held), 'a rollback goes before a record');
  t.ok(urgency(held) < urgency([{ kind: 'checked', verdict: 'pass' }]), 'a record goes before a finding');
  if (holding)
    t.ok(
      urgency(held) <
        urgency([
          { kind: 'remember', status: holding },
          { kind: 'checked', verdict: 'pass' },
        ]),
      'and before a kept pass, which writes nothing',
    );
  else t.fail('no status while holding');
});

t.test('a pass after a pass is kept in memory, not written, until the record is a minute old (ADR 26)', async (t) => {
  // A 3 min pause at 10 % and checks every 10 s: a run of passes on one step.
  const o = world({ policy: { ok: true, value: { ...policy, stepPauseMs: 180_000 } } });
  const writes: { at: number; kind: string; checks: number }[] = [];
  for (let s = 0; s < 150; s++) {
    const now = new Date(s * 1000);
    const actions = decide(o, checkDue(o, now) ? errorRate(0)() : undefined, now);
    for (const a of actions)
      if (a.kind === 'status' || a.kind === 'remember')
        writes.push({ at: s, kind: a.kind, checks: a.status.lastCheckAt ? 1 : 0 });
    apply(o, actions, []);
  }
  const checks = writes.filter((w) => w.checks === 1);
  const written = checks.filter((w) => w.kind === 'status').map((w) => w.at);
  const kept = checks.filter((w) => w.kind === 'remember').map((w) => w.at);
  t.ok(checks.length >= 12, `a check every 10 s (${checks.length})`);
  t.equal(checks[0]?.kind, 'status', 'the first pass is written: it follows no pass');
  t.ok(kept.length >= 8, `later passes are kept (${kept.length})`);
  for (let i = 1; i < written.length; i++)
    t.ok(
      (written[i] ?? 0) - (written[i - 1] ?? 0) <= 70,
      `a pass is written at least every minute and a slot (${written.join(', ')})`,
    );
  t.ok(written.length >= 3, `the record still moves on (${written.join(', ')})`);
  t.equal(o.status?.checks.length, 5, 'the status the analyzer holds carries every recent check');
});

t.test(
  'a check that changes the record is always written: a failure after kept passes, and checks a minute apart',
  async (t) => {
    const long = { ...policy, stepPauseMs: 600_000 };
    const o = world({ policy: { ok: true, value: long } });
    const records: { kind: string; verdict?: string }[] = [];
    const step = (s: number, value: number): void => {
      const now = new Date(s * 1000);
      const actions = decide(o, checkDue(o, now) ? errorRate(value)() : undefined, now);
      for (const a of actions)
        if (a.kind === 'status' || a.kind === 'remember') records.push({ kind: a.kind, verdict: a.status.lastVerdict });
      apply(o, actions, []);
    };
    for (let s = 0; s < 60; s++) step(s, 0);
    t.ok(
      records.some((r) => r.kind === 'remember'),
      'passes were kept',
    );
    for (let s = 60; s < 80; s++) step(s, 0.5);
    const failed = records.filter((r) => r.verdict === 'fail');
    t.ok(failed.length >= 1, `failed checks (${failed.length})`);
    t.ok(
      failed.every((r) => r.kind === 'status'),
      'each failure is written, never kept',
    );
    t.equal(o.recordedCheckAt, undefined, 'and nothing is held beyond the record');

    const minute = world({ policy: { ok: true, value: { ...long, intervalMs: 60_000 } } });
    const kept: string[] = [];
    for (let s = 0; s < 400; s++) {
      const now = new Date(s * 1000);
      const actions = decide(minute, checkDue(minute, now) ? errorRate(0)() : undefined, now);
      kept.push(...actions.filter((a) => a.kind === 'remember').map((a) => a.kind));
      apply(minute, actions, []);
    }
    t.ok((minute.status?.checks.length ?? 0) >= 5, 'checks a minute apart ran');
    t.same(kept, [], "checks a minute apart (the seed's) are all written");
  },
);

t.test('an analyzer that lost its memory checks again at once, over the time since the record', async (t) => {
  const o = world({ policy: { ok: true, value: { ...policy, stepPauseMs: 600_000 } } });
  let last = 0;
  for (let s = 0; s < 45; s++) {
    const now = new Date(s * 1000);
    const actions = decide(o, checkDue(o, now) ? errorRate(0)() : undefined, now);
    if (actions.some((a) => a.kind === 'remember')) last = s;
    apply(o, actions, []);
  }
  t.ok(last > 0 && o.recordedCheckAt !== undefined, `a pass was kept at ${last} s`);
  const recordedAt = Date.parse(o.recordedCheckAt ?? '');
  const soon = new Date((last + 5) * 1000);
  t.notOk(checkDue(o, soon), 'with its memory, the next check waits for its slot');
  // A restart: the record as written, and nothing else.
  const record = structuredClone(o.status);
  if (record) {
    record.lastCheckAt = o.recordedCheckAt;
    const restarted: Observed = { ...o, status: record };
    delete restarted.recordedCheckAt;
    t.ok(checkDue(restarted, soon), 'without it, a check is due at once');
    t.ok(recordedAt < last * 1000, 'the record is older than the kept pass');
  } else t.fail('a release with no status');
});

/**
 * The halves' counter totals as Prometheus gives them to the sequential test: each check adds one
 * interval of traffic at the weight of the moment.
 */
function counted(o: Observed, rps: number, canaryRate: number, stableRate: number, seconds = 10): () => Measurement[] {
  const totals = { canary: { requests: 0, errors: 0 }, stable: { requests: 0, errors: 0 } };
  return () => {
    const share = (o.routing.ok ? o.routing.canaryWeight : 0) / 100;
    const canary = Math.round(rps * seconds * share);
    const stable = Math.round(rps * seconds * (1 - share));
    totals.canary.requests += canary;
    totals.canary.errors += Math.round(canary * canaryRate);
    totals.stable.requests += stable;
    totals.stable.errors += Math.round(stable * stableRate);
    return [{ metric: 'error-rate', totals: structuredClone(totals) }];
  };
}

const sequential: Policy = { ...policy, analysis: { kind: 'sequential', alpha: 0.01, margin: 0.5 } };

t.test(
  'a canary at 2 % beside a stable at 1 %: the sequential policy rolls it back, the threshold one promotes it',
  async (t) => {
    const judged = world({ policy: { ok: true, value: sequential } });
    actionsOf(judged, 600, counted(judged, 100, 0.02, 0.01));
    t.equal(judged.phase, 'RolledBack');
    t.equal(judged.status?.rollback?.cause, 'worse');
    t.match(
      judged.status?.rollback?.detail,
      /canary errors 2\.00 % vs stable 1\.00 % over [\d,]+ requests: worse with 99/,
    );
    const seed = world();
    actionsOf(seed, 600, errorRate(0.02));
    t.equal(seed.phase, 'Stable', '2 % is under the seed threshold of 5 %: promoted');
  },
);

t.test('the sequential policy promotes an equal canary, and a quiet low-traffic one finishes', async (t) => {
  const equal = world({ policy: { ok: true, value: sequential } });
  actionsOf(equal, 900, counted(equal, 100, 0.01, 0.01));
  t.equal(equal.phase, 'Stable', 'equal error rates: promoted');
  // 2 requests/s and no errors: windows hold "not yet" (never unjudged) until the evidence suffices.
  const quiet = world({ policy: { ok: true, value: { ...sequential, unjudgedLimit: 2 } } });
  const actions = actionsOf(quiet, 3600, counted(quiet, 2, 0, 0));
  t.equal(quiet.phase, 'Stable', 'the release finished instead of holding or rolling back');
  t.notOk(
    actions.some((a) => a.kind === 'event' && a.reason === 'RollingBack'),
    'never rolled back as unjudged',
  );
});

t.test('a new release starts with no evidence', async (t) => {
  const o = world({ policy: { ok: true, value: sequential } });
  actionsOf(o, 30, counted(o, 100, 0.01, 0.01));
  t.ok((o.status?.evidence?.canary.requests ?? 0) > 0, 'evidence gathered');
  o.canaryRevision = 'c2';
  actionsOf(o, 2, counted(o, 100, 0.01, 0.01), 30);
  t.equal(o.status?.revision, 'c2');
  t.equal(o.status?.evidence, undefined, "the superseded release's evidence is not carried over");
});

/**
 * The analyzer's queue in miniature: a release is looked at again one second after it changed
 * something, else only at wakeAt. Returns what happened, second by second, and how many looks.
 */
function eventDriven(o: Observed, seconds: number, measure: () => Measurement[]): { log: string[]; looks: number } {
  const log: string[] = [];
  let looks = 0;
  for (let s = 0; s < seconds;) {
    const now = new Date(s * 1000);
    const actions = decide(o, checkDue(o, now) ? measure() : undefined, now);
    looks++;
    const before = log.length;
    apply(o, actions, log);
    for (let i = before; i < log.length; i++) log[i] = `${s}: ${log[i] ?? ''}`;
    if (actions.some((a) => !isFinding(a))) s += 1;
    else {
      const wake = wakeAt(o, now);
      if (wake === undefined) break;
      s = Math.ceil(wake / 1000);
    }
  }
  return { log, looks };
}

/** The same release looked at every second, as the loop did before its queue. */
function everySecond(o: Observed, seconds: number, measure: () => Measurement[]): string[] {
  const log: string[] = [];
  for (let s = 0; s < seconds; s++) {
    const before = log.length;
    const now = new Date(s * 1000);
    apply(o, decide(o, checkDue(o, now) ? measure() : undefined, now), log);
    for (let i = before; i < log.length; i++) log[i] = `${s}: ${log[i] ?? ''}`;
  }
  return log;
}

t.test('waking only at wakeAt and after changes does what looking every second does', async (t) => {
  for (const [name, measure] of [
    ['healthy', errorRate(0.01)],
    ['failing', errorRate(0.3)],
    ['no data', errorRate(undefined)],
  ] as const) {
    const polled = everySecond(world(), 400, measure);
    const driven = eventDriven(world(), 400, measure);
    t.same(driven.log, polled, `${name}: the same weights, phases and events at the same seconds`);
    t.ok(driven.looks < 400 / 3, `${name}: ${driven.looks} looks instead of 400`);
  }
});

t.test('wakeAt: the next pause end, check or drain end, strictly later; nothing while settled', async (t) => {
  const at = (seconds: number): string => new Date(seconds * 1000).toISOString();
  const holding = world({
    status: { revision: 'c1', step: 0, weight: 10, failures: 0, checks: [], message: '', stepStartedAt: at(0) },
  });
  t.equal(wakeAt(holding, new Date(0)), 10_000, 'the first check, before the pause ends');
  const base = holding.status;
  if (!base) return t.fail('no status');
  const checked = world({ status: { ...base, lastCheckAt: at(25) } });
  t.equal(wakeAt(checked, new Date(26_000)), 30_000, 'the pause ends before the next check');
  t.equal(wakeAt(checked, new Date(31_000)), 35_000, 'the pause is over: the next check');
  const draining = world({ status: { ...base, drainingSince: at(100) } });
  t.equal(wakeAt(draining, new Date(101_000)), 100_000 + policy.drainMs, 'the drain ends');
  t.equal(wakeAt(draining, new Date(200_000)), undefined, 'a drain already over is not a wake-up');
  t.equal(wakeAt(world({ phase: 'Stable' }), new Date(0)), undefined, 'no record: only a change can wake it');
});

t.test("a retired route's backends go only once the mesh can have forgotten the route", async (t) => {
  for (const [name, measure] of [
    ['promoted', errorRate(0.01)],
    ['rolled back', errorRate(0.3)],
  ] as const) {
    const o = world();
    const at = new Map<string, number>();
    for (let s = 0; s < 300; s++) {
      const now = new Date(s * 1000);
      const log: string[] = [];
      apply(o, decide(o, checkDue(o, now) ? measure() : undefined, now), log);
      for (const entry of log) if (!at.has(entry)) at.set(entry, s);
    }
    const routing = at.get('retire routing');
    const backends = at.get('retire backends');
    t.ok(routing !== undefined && backends !== undefined, `${name}: both retired (${routing}, ${backends})`);
    t.ok(
      routing !== undefined && backends !== undefined && (backends - routing) * 1000 >= meshPropagationMs,
      `${name}: backends ${(backends ?? NaN) - (routing ?? NaN)} s after the route, not before ${meshPropagationMs} ms`,
    );
    t.equal(o.status?.retiredAt, undefined, `${name}: nothing left to retire`);
    const quiet = decide(o, undefined, new Date(400_000));
    t.same(quiet, [], `${name}: then nothing to do`);
    t.equal(wakeAt(o, new Date(400_000)), undefined, `${name}: and nothing to wake for`);
  }
});

t.test('a shadow step: the canary is judged on mirrored requests before any user request reaches it', async (t) => {
  const shadow: Policy = { ...policy, mirror: 100 };
  const passing = releaseWorld(shadow);
  const log: string[] = [];
  run(passing, 250, errorRate(0.01), log);
  t.same(weights(log), ['weight 0 mirror 100', 'weight 10', 'weight 50', 'weight 100', 'weight 0']);
  t.ok(log.includes('event MirrorSet'), 'the shadow step is announced');
  t.equal(passing.phase, 'Stable');
  t.same(passing.status?.steps, [0, 10, 50, 100], 'readers see the shadow step as a step without weight');

  const failing = releaseWorld(shadow);
  const failed: string[] = [];
  run(failing, 120, errorRate(0.3), failed);
  t.same(weights(failed), ['weight 0 mirror 100', 'weight 0'], 'rolled back from the shadow step: weight never given');
  t.equal(failing.phase, 'RolledBack');
  t.notOk(failing.routing.ok && failing.routing.mirror, 'the mirror is gone');
});

t.test('a partial mirror sizes the canary for its share; the steps count it', async (t) => {
  const o = releaseWorld({ ...policy, mirror: 25 }, { replicas: 8 });
  const log: string[] = [];
  apply(o, decide(o, undefined, new Date(0)), log);
  t.match(decide(o, undefined, new Date(0)), [{ kind: 'ensureCanary', replicas: canaryReplicas(8, 25) }]);
  run(o, 5, errorRate(0), log);
  t.match(o.status?.message, /^step 1\/4: shadow: 25% of requests mirrored/);
});

t.test("the testers' header route rides with every step's write and leaves with the weight", async (t) => {
  const header = { name: 'x-canary', value: 'always' };
  const o = releaseWorld({ ...policy, canaryHeader: header });
  const log: string[] = [];
  run(o, 200, errorRate(0.01), log);
  t.same(weights(log), [
    'weight 10 header x-canary',
    'weight 50 header x-canary',
    'weight 100 header x-canary',
    'weight 0',
  ]);
  t.equal(o.phase, 'Stable');
});

t.test("a mirror or testers' route taken off the route mid-step is put back, and the checks start again", async (t) => {
  const o = releaseWorld({ ...policy, mirror: 100 });
  const log: string[] = [];
  run(o, 16, errorRate(0), log);
  t.equal(o.routing.ok && o.routing.mirror, 100);
  t.ok(o.status?.lastCheckAt, 'checked at the step');
  o.routing = { ok: true, canaryWeight: 0 };
  const repair = decide(o, undefined, new Date(16_000));
  t.match(repair, [
    { kind: 'setWeight', weight: 0, mirror: 100 },
    { kind: 'event', reason: 'RoutingRepaired' },
  ]);
});

t.test(
  "a shadow step on a route that mirrors elsewhere holds with a RoutingError: the user's mirror stays",
  async (t) => {
    const o = releaseWorld(
      { ...policy, mirror: 100 },
      {
        routing: { ok: true, canaryWeight: 0, mirroredElsewhere: 'audit.shop.svc.cluster.local' },
        status: { revision: 'c1', step: 0, weight: 0, failures: 0, checks: [], message: '' },
      },
    );
    const actions = decide(o, undefined, new Date(0));
    t.match(actions, [{ kind: 'event', type: 'Warning', reason: 'RoutingError', message: /already mirrors to audit/ }]);
    t.notOk(actions.some((a) => a.kind === 'setWeight'));
    // Without a shadow step, their mirror is no concern of weir's.
    const plain = releaseWorld(policy, { routing: { ok: true, canaryWeight: 0, mirroredElsewhere: 'audit' } });
    t.notOk(decide(plain, undefined, new Date(0)).some((a) => a.kind === 'event' && a.reason === 'RoutingError'));
  },
);

t.test('a release on a route bound to gateways only says, once, that in-mesh callers are not steered', async (t) => {
  const o = releaseWorld(policy, { routing: { ok: true, canaryWeight: 0, meshUnsteered: true } });
  const log: string[] = [];
  run(o, 200, errorRate(0.01), log);
  t.equal(log.filter((l) => l === 'event MeshCallersUnsteered').length, 1, 'once, at the start');
  t.equal(o.phase, 'Stable', 'and the release runs as before');
  const steered = releaseWorld(policy);
  const quiet: string[] = [];
  run(steered, 200, errorRate(0.01), quiet);
  t.notOk(quiet.includes('event MeshCallersUnsteered'), 'not for a route the mesh goes through');
});

t.test(
  'dynamic stable scale: stable shrinks after the weight left it, and is back before weight returns',
  async (t) => {
    const o = releaseWorld(scaled, { replicas: 10 });
    const log: string[] = [];
    let peak = 0;
    for (let s = 0; s < 200; s++) {
      run(o, 1, errorRate(0.01), log, s);
      peak = Math.max(peak, o.replicas + (o.canary?.replicas ?? 0));
    }
    const moves = log.filter((l) => l.startsWith('weight') || l.startsWith('stable') || l === 'unpause');
    t.same(moves, [
      'weight 10',
      'stable 9',
      'weight 50',
      'stable 5',
      'weight 100',
      'stable 0',
      // Promotion hands over: the new stable pods grow a step before the canary's weight shrinks.
      'unpause',
      'stable 5',
      'weight 50',
      'stable 9',
      'weight 10',
      'stable 10',
      'weight 0',
    ]);
    t.equal(peak, 15, 'both halves together: never more than the 10 replicas and the largest step, 5');
    t.equal(o.phase, 'Stable');
    t.equal(o.status?.stableReplicas, undefined, 'the scaling record is gone');

    // A bad canary at 50 %: stable back to 10 and available before the weight leaves the canary.
    const bad = releaseWorld(scaled, { replicas: 10 });
    const rolled: string[] = [];
    let s = run(bad, 45, errorRate(0.01), rolled);
    t.equal(bad.replicas, 5, 'at 50 % stable holds 5 of 10');
    bad.stableAvailable = 5;
    const applyScale = (actions: Action[]): void => {
      // The stable pods take a while: spec first, availability later.
      for (const a of actions)
        if (a.kind === 'scaleStable') {
          bad.replicas = a.replicas;
          bad.status = a.status;
        }
      apply(
        bad,
        actions.filter((a) => a.kind !== 'scaleStable'),
        rolled,
      );
      bad.stableAvailable = Math.min(bad.stableAvailable ?? 0, bad.replicas);
    };
    for (let i = 0; i < 40 && bad.status?.restoring !== true; i++, s++) {
      const now = new Date(s * 1000);
      applyScale(decide(bad, checkDue(bad, now) ? errorRate(0.6)() : undefined, now));
    }
    t.equal(bad.status?.restoring, true, 'rolling back: restoring stable first');
    t.equal(bad.replicas, 10);
    t.ok(bad.routing.ok && bad.routing.canaryWeight === 50, 'the weight waits while stable is short');
    applyScale(decide(bad, undefined, new Date(++s * 1000)));
    t.ok(bad.routing.ok && bad.routing.canaryWeight === 50, 'still waiting');
    bad.stableAvailable = 10;
    applyScale(decide(bad, undefined, new Date(++s * 1000)));
    t.ok(bad.routing.ok && bad.routing.canaryWeight === 50, 'stable available: the mesh is given time to learn it');
    s += 5;
    applyScale(decide(bad, undefined, new Date(s * 1000)));
    t.ok(bad.routing.ok && bad.routing.canaryWeight === 0, 'then the weight returns');
    run(bad, 30, errorRate(0.6), rolled, s + 1);
    t.equal(bad.phase, 'RolledBack');
    t.equal(bad.replicas, 10, 'the Deployment has its replicas again');
  },
);

t.test(
  'dynamic stable scale: the hand-over waits for the new stable pods, and turned off it takes the total',
  async (t) => {
    const o = releaseWorld(scaled, { replicas: 10 });
    const log: string[] = [];
    let s = 0;
    for (; s < 200 && o.phase !== 'Promoting'; s++) run(o, 1, errorRate(0.01), log, s);
    t.equal(o.replicas, 0, 'unpaused with no old stable pods');
    // The new revision's pods come up slowly: the Deployment is not rolled out until they are available.
    const slow = (actions: Action[]): void => {
      apply(o, actions, log);
      if (actions.some((a) => a.kind === 'scaleStable')) o.rolledOut = false;
    };
    for (let i = 0; i < 3; i++, s++) slow(decide(o, undefined, new Date(s * 1000)));
    t.equal(o.replicas, 5, 'stable grows to the 50 % share');
    for (let i = 0; i < 20; i++, s++) slow(decide(o, undefined, new Date(s * 1000)));
    t.ok(o.routing.ok && o.routing.canaryWeight === 100, 'no weight moves to stable pods that are not available');
    t.match(o.status?.message, /waiting for 5 stable pods/);
    o.rolledOut = true;
    o.policy = { ok: true, value: { ...scaled, dynamicStableScale: false } };
    for (let i = 0; i < 10; i++, s++) apply(o, decide(o, undefined, new Date(s * 1000)), log);
    t.equal(o.replicas, 10, 'dynamic scale turned off mid-hand-over: stable takes the whole total next');
    run(o, 60, errorRate(0.01), log, s);
    t.equal(o.phase, 'Stable');
    t.equal(o.status?.stableReplicas, undefined);
  },
);

t.test('dynamic stable scale: a canary deleted mid-promotion gets no weight handed down to it', async (t) => {
  const o = releaseWorld(scaled, { replicas: 10 });
  const log: string[] = [];
  let s = 0;
  for (; s < 200 && o.phase !== 'Promoting'; s++) run(o, 1, errorRate(0.01), log, s);
  t.equal(o.replicas, 0, 'unpaused with no old stable pods');
  o.canary = undefined;
  const from = log.length;
  run(o, 60, errorRate(0.01), log, s);
  const moves = log.slice(from).filter((l) => l.startsWith('weight') || l.startsWith('stable'));
  t.same(moves, ['stable 10', 'weight 0'], 'stable grows whole, then the weight goes to it in one move');
  t.equal(o.phase, 'Stable');
});

t.test(
  'dynamic stable scale: a kubectl scale (or an HPA) is the new total; a stuck stable holds a rollback only so long',
  async (t) => {
    const o = releaseWorld(scaled, { replicas: 10 });
    const log: string[] = [];
    const s = run(o, 45, errorRate(0.01), log);
    t.equal(o.replicas, 5);
    o.replicas = 20; // kubectl scale --replicas=20
    run(o, 3, errorRate(0.01), log, s);
    t.equal(o.replicas, 10, 'stable is half of the new total at 50 %');
    t.equal(o.status?.replicas, 20);

    const stuck = releaseWorld(scaled, { replicas: 10 });
    const out: string[] = [];
    let at = run(stuck, 45, errorRate(0.01), out);
    t.equal(stuck.replicas, 5);
    apply(stuck, decide({ ...stuck, request: 'abort' }, undefined, new Date(at * 1000)), out);
    t.equal(stuck.status?.restoring, true);
    stuck.stableAvailable = 5; // the new stable pods never become available
    const weightAfter = (seconds: number): number => {
      for (let i = 0; i < seconds; i++) apply(stuck, decide(stuck, undefined, new Date(++at * 1000)), out);
      return stuck.routing.ok ? stuck.routing.canaryWeight : -1;
    };
    t.equal(weightAfter(30), 50, 'half a minute on: still waiting for stable');
    t.equal(weightAfter(35), 0, 'after the limit, traffic returns anyway');
    t.equal(stuck.status?.restoring, undefined);
  },
);

t.test('dynamic stable scale turned off mid-release: the stable half gets its total back at once', async (t) => {
  const o = releaseWorld({ ...policy, dynamicStableScale: true }, { replicas: 10 });
  const log: string[] = [];
  const s = run(o, 45, errorRate(0.01), log);
  t.equal(o.replicas, 5);
  o.policy = { ok: true, value: policy };
  run(o, 2, errorRate(0.01), log, s);
  t.equal(o.replicas, 10);
  t.equal(o.status?.stableReplicas, undefined);
});
