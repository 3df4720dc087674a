// The loop's pure parts, without a cluster: which Deployments a pass looks at (`active`), which
// namespaces an analyzer serves (`parseScope`), and how one tick's checks are asked of a metrics
// provider together (`measureAll`, against an in-memory provider behind the port).
import t from 'tap';
import type { V1Deployment } from '@kubernetes/client-node';
import { active } from '../../analyzer/loop/reconcile.ts';
import { measureAll } from '../../analyzer/loop/measure.ts';
import { parseScope } from '../../analyzer/core/scope.ts';
import { defaultPolicy } from '../../analyzer/core/policy.ts';
import { judge } from '../../analyzer/core/analysis.ts';
import type { Observed } from '../../analyzer/core/decide.ts';
import type { MetricsProvider, RequestCounts } from '../../analyzer/ports/metrics.ts';
import { annotations, labels } from '../../contract/names.ts';
import { formatStatus } from '../../contract/status.ts';
import type { ReleaseStatus } from '../../contract/status.ts';

const d = (name: string, a: Record<string, string>, extra: Partial<V1Deployment['metadata']> = {}): V1Deployment => ({
  metadata: { name, namespace: 'ns', annotations: a, ...extra },
});
const names = (list: V1Deployment[]): string[] => list.map((x) => x.metadata?.name ?? '');

t.test('active: releases in flight, leftovers of one, and touched routing — nothing else', async (t) => {
  const settled = formatStatus({ revision: 'r', step: 0, weight: 0, failures: 0, checks: [], message: '' });
  const draining = formatStatus({
    revision: 'r',
    step: 0,
    weight: 0,
    failures: 0,
    checks: [],
    message: '',
    drainingSince: '2026-11-28T00:00:00Z',
  });
  const all = [
    d('never', {}),
    d('progressing', { [annotations.phase]: 'Progressing' }),
    d('promoting', { [annotations.phase]: 'Promoting' }),
    d('asked', { [annotations.phase]: 'Stable', [annotations.request]: 'retry' }),
    d('stable', { [annotations.phase]: 'Stable', [annotations.status]: settled }),
    d('draining', { [annotations.phase]: 'RolledBack', [annotations.status]: draining }),
    d('left-canary', { [annotations.phase]: 'Stable' }),
    d('left-canary-canary', { [annotations.phase]: 'Progressing' }, { labels: { [labels.canaryOf]: 'left-canary' } }),
    d('touched', { [annotations.phase]: 'Stable', [annotations.status]: settled }),
    d('deleting', { [annotations.phase]: 'Progressing' }, { deletionTimestamp: new Date() }),
  ];
  t.same(names(active(all, new Set(['ns/touched']))), [
    'progressing',
    'promoting',
    'asked',
    'draining',
    'left-canary',
    'touched',
  ]);
  t.same(
    names(active(all)),
    ['progressing', 'promoting', 'asked', 'draining', 'left-canary'],
    'untouched: not looked at',
  );
});

t.test('parseScope: equality, inequality, existence, absence; comma is and; empty is everything', async (t) => {
  const scope = parseScope('team=a, env!=dev, mesh, !frozen');
  t.ok(scope({ team: 'a', mesh: '' }));
  t.ok(scope({ team: 'a', mesh: 'x', env: 'prod' }));
  t.notOk(scope({ team: 'b', mesh: '' }));
  t.notOk(scope({ team: 'a', mesh: '', env: 'dev' }));
  t.notOk(scope({ team: 'a' }));
  t.notOk(scope({ team: 'a', mesh: '', frozen: 'yes' }));
  t.ok(parseScope('')({}));
  t.ok(parseScope('team==a')({ team: 'a' }), '== as kubectl spells it');
});

/** A provider behind the metrics port, answering from tables, recording what it was asked. */
class TableProvider implements MetricsProvider {
  readonly windows: number[] = [];
  readonly queries: string[] = [];
  private readonly counts: Map<string, RequestCounts> | Error;
  private readonly values: Record<string, number>;
  constructor(counts: Map<string, RequestCounts> | Error, values: Record<string, number> = {}) {
    this.counts = counts;
    this.values = values;
  }
  readonly totalsAsked: number[] = [];
  callers = new Map<string, number>();
  readonly callerWindows: (number | undefined)[] = [];
  async callerFailures(windowSeconds?: number): Promise<Map<string, number>> {
    this.callerWindows.push(windowSeconds);
    if (this.counts instanceof Error) throw this.counts;
    return this.callers;
  }
  async requestTotals(): Promise<Map<string, RequestCounts>> {
    this.totalsAsked.push(1);
    if (this.counts instanceof Error) throw this.counts;
    return this.counts;
  }
  async requestCounts(windowSeconds: number): Promise<Map<string, RequestCounts>> {
    this.windows.push(windowSeconds);
    if (this.counts instanceof Error) throw this.counts;
    return this.counts;
  }
  async value(query: string): Promise<number | undefined> {
    this.queries.push(query);
    if (query.includes('fail')) throw new Error('bad query');
    return this.values[query];
  }
}

function due(name: string, intervalMs: number, metrics = defaultPolicy.metrics): Observed {
  return {
    namespace: 'ns',
    name,
    phase: 'Progressing',
    optedOut: false,
    replicas: 2,
    paused: true,
    rolledOut: false,
    routing: { ok: true, canaryWeight: 10 },
    backendsReady: true,
    unlabelledStablePods: 0,
    policy: { ok: true, value: { ...defaultPolicy, intervalMs, metrics } },
    policyName: 'default',
  };
}

t.test('measureAll: one count query per window for every release, canary and stable apart', async (t) => {
  const provider = new TableProvider(
    new Map([
      ['ns/a-canary', { requests: 100, errors: 5 }],
      ['ns/a', { requests: 900, errors: 9 }],
      ['ns/b-canary', { requests: 0, errors: 0 }],
    ]),
  );
  const a = due('a', 60_000);
  const b = due('b', 60_000);
  const c = due('c', 5_000);
  const measured = await measureAll(provider, [a, b, c]);
  t.same(provider.windows.sort(), [10, 60], 'two windows, two queries, for three releases');
  t.same(measured.get(a), [{ metric: 'error-rate', requests: 100, windowSeconds: 60, canary: 0.05, stable: 0.01 }]);
  t.same(measured.get(b), [{ metric: 'error-rate', requests: 0, windowSeconds: 60 }], 'no requests: no value, never 0');
  t.same(measured.get(c), [{ metric: 'error-rate', requests: 0, windowSeconds: 10 }], 'no series at all: the same');
  t.same(provider.totalsAsked, [], 'no totals query without a sequential release');
});

t.test("measureAll: callers' failures from before the step began are not the canary's", async (t) => {
  const provider = new TableProvider(new Map([['ns/a-canary', { requests: 40, errors: 0 }]]));
  provider.callers.set('ns/web', 40);
  const now = new Date('2026-11-29T12:00:10Z');
  const status = (startedSecondsAgo: number): ReleaseStatus => ({
    revision: 'r',
    step: 0,
    weight: 10,
    failures: 0,
    checks: [],
    message: '',
    stepStartedAt: new Date(now.getTime() - startedSecondsAgo * 1000).toISOString(),
  });
  const young = { ...due('a', 2_000), status: status(3) };
  const old = { ...due('b', 2_000), status: status(30) };
  await measureAll(provider, [young, old], now);
  t.same(
    provider.windows.sort((x, y) => x - y),
    [10, 30],
    'counts: 10 s at least; a step 30 s old and never checked, since it began',
  );
  t.same(
    provider.callerWindows.sort((x, y) => (x ?? 0) - (y ?? 0)),
    [3, 30],
    "a step 3 s old counts the callers' failures of its 3 s only; an older one its whole window",
  );
});

t.test('measureAll: a check after checks with no verdict looks back to the last judged one', async (t) => {
  const provider = new TableProvider(new Map([['ns/a-canary', { requests: 12, errors: 0 }]]), {
    'p99{w="a-canary",i="240s"}': 0.3,
  });
  const custom = { name: 'latency', query: 'p99{w="{{canary}}",i="{{interval}}"}', max: 0.5 };
  const held = (name: string, unjudged: number, metrics = defaultPolicy.metrics): Observed => ({
    ...due(name, 60_000, metrics),
    status: { revision: 'r', step: 0, weight: 10, failures: 0, checks: [], unjudged, message: '' },
  });
  const a = held('a', 3);
  const b = held('b', 3);
  const c = held('c', 0);
  const two = held('e', 2);
  const never = held('d', 99);
  const latency = held('a', 3, [custom]);
  const measured = await measureAll(provider, [a, b, c, two, never, latency]);
  t.same(provider.windows.sort(), [120, 240, 60], 'one query per look-back, shared by the releases that have it');
  t.same(measured.get(a), [{ metric: 'error-rate', requests: 12, windowSeconds: 240, canary: 0 }], 'four intervals');
  t.equal(measured.get(two)?.[0]?.windowSeconds, 120, 'three intervals since a verdict: two, a power of two');
  t.equal(measured.get(never)?.[0]?.windowSeconds, 240, 'never further back than the unjudged limit allows');
  t.same(measured.get(latency), [{ metric: 'latency', canary: 0.3 }], "a custom metric's {{interval}} looks back too");
});

t.test('measureAll: an unreachable Prometheus and a failing query are error measurements, never a throw', async (t) => {
  const down = new TableProvider(new Error('connect ECONNREFUSED'));
  const a = due('a', 60_000);
  t.same((await measureAll(down, [a])).get(a), [{ metric: 'error-rate', error: 'connect ECONNREFUSED' }]);
  const custom = [
    {
      name: 'latency',
      query: 'p99{w="{{canary}}",ns="{{namespace}}",i="{{interval}}"}',
      max: 0.5,
      relativeMargin: 0.1,
    },
    { name: 'broken', query: 'fail', max: 1 },
  ];
  const provider = new TableProvider(new Map(), {
    'p99{w="a-canary",ns="ns",i="60s"}': 0.3,
    'p99{w="a",ns="ns",i="60s"}': 0.2,
  });
  const b = due('a', 60_000, custom);
  t.same((await measureAll(provider, [b])).get(b), [
    { metric: 'latency', canary: 0.3, stable: 0.2 },
    { metric: 'broken', error: 'bad query' },
  ]);
  t.same(provider.windows, [], 'no count query when no release uses the built-in error rate');
});

t.test("measureAll: sequential releases get their halves' counter totals, in one query for all", async (t) => {
  const provider = new TableProvider(
    new Map([
      ['ns/a-canary', { requests: 100, errors: 5 }],
      ['ns/a', { requests: 900, errors: 9 }],
    ]),
  );
  const sequentialPolicy = { kind: 'sequential' as const, alpha: 0.01, margin: 0.5 };
  const a = {
    ...due('a', 60_000),
    policy: { ok: true as const, value: { ...defaultPolicy, analysis: sequentialPolicy } },
  };
  const b = { ...due('b', 60_000), policy: a.policy };
  const measured = await measureAll(provider, [a, b]);
  t.same(provider.totalsAsked, [1], 'one totals query');
  t.same(provider.windows, [], 'no windowed query');
  t.same(measured.get(a), [
    { metric: 'error-rate', totals: { canary: { requests: 100, errors: 5 }, stable: { requests: 900, errors: 9 } } },
  ]);
  const none = { requests: 0, errors: 0 };
  t.same(measured.get(b), [{ metric: 'error-rate', totals: { canary: none, stable: none } }], 'no series: zeros');
});

t.test("measureAll: callers' failures to reach the release's Service count against the canary", async (t) => {
  const provider = new TableProvider(
    new Map([
      ['ns/a-canary', { requests: 100, errors: 0 }],
      ['ns/a', { requests: 900, errors: 9 }],
    ]),
  );
  provider.callers = new Map([['ns/web', 100]]);
  const a = { ...due('a', 60_000), service: { namespace: 'ns', name: 'web' } };
  t.same((await measureAll(provider, [a])).get(a), [
    { metric: 'error-rate', requests: 200, windowSeconds: 60, canary: 0.5, stable: 0.01 },
  ]);
  const other = { ...due('a', 60_000), service: { namespace: 'ns', name: 'api' } };
  t.same(
    (await measureAll(provider, [other])).get(other),
    [{ metric: 'error-rate', requests: 100, windowSeconds: 60, canary: 0, stable: 0.01 }],
    "another Service's failures are not this canary's",
  );
  const sequentialPolicy = { kind: 'sequential' as const, alpha: 0.01, margin: 0.5 };
  const b = { ...a, policy: { ok: true as const, value: { ...defaultPolicy, analysis: sequentialPolicy } } };
  t.same((await measureAll(provider, [b])).get(b), [
    { metric: 'error-rate', totals: { canary: { requests: 200, errors: 100 }, stable: { requests: 900, errors: 9 } } },
  ]);
});

t.test("measureAll: a relative latency metric asks the canary's p99 and the stable half's, same window", async (t) => {
  const p99 = 'histogram_quantile(0.99, rate(b{workload="{{canary}}",ns="{{namespace}}"}[{{interval}}]))';
  const provider = new TableProvider(new Map(), {
    'histogram_quantile(0.99, rate(b{workload="a-canary",ns="ns"}[60s]))': 180,
    'histogram_quantile(0.99, rate(b{workload="a",ns="ns"}[60s]))': 120,
  });
  const a = due('a', 60_000, [{ name: 'p99-vs-stable', query: p99, max: 2000, relativeMargin: 50 }]);
  const measured = (await measureAll(provider, [a])).get(a);
  t.same(measured, [{ metric: 'p99-vs-stable', canary: 180, stable: 120 }]);
  const verdict = judge(
    { name: 'p99-vs-stable', query: p99, max: 2000, relativeMargin: 50 },
    measured?.[0] ?? { metric: '' },
    0,
  );
  t.equal(verdict.verdict, 'fail', '180 ms is above stable 120 ms + 50 ms');
});
