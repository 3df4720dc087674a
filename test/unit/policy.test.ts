// Policies: the seed's defaults, annotation overrides, and errors that name the bad annotation.
import t from 'tap';
import {
  defaultPolicy,
  parseDuration,
  parsePolicyFile,
  resolvePolicy,
  resolveRouting,
} from '../../analyzer/core/policy.ts';
import { judge, combine } from '../../analyzer/core/analysis.ts';

t.test('the default policy holds the seed numbers', async (t) => {
  t.same(defaultPolicy.steps, [10, 50, 100]);
  t.equal(defaultPolicy.stepPauseMs, 300_000);
  t.equal(defaultPolicy.intervalMs, 60_000);
  t.equal(defaultPolicy.failureLimit, 3);
  t.equal(defaultPolicy.metrics[0]?.max, 0.05);
});

t.test('annotations override the named policy', async (t) => {
  const r = resolvePolicy(
    {
      'weir.dev/steps': '20,100',
      'weir.dev/step-pause': '30s',
      'weir.dev/analysis-interval': '5s',
      'weir.dev/max-error-rate': '0.1',
      'weir.dev/failure-limit': '2',
      'weir.dev/min-requests': '0',
    },
    { default: defaultPolicy },
  );
  if (!r.ok) return t.fail(r.errors.join());
  t.same(r.value.steps, [20, 100]);
  t.equal(r.value.stepPauseMs, 30_000);
  t.equal(r.value.intervalMs, 5000);
  t.equal(r.value.metrics[0]?.max, 0.1);
  t.equal(r.value.failureLimit, 2);
  t.equal(r.value.minRequests, 0);
  t.equal(defaultPolicy.metrics[0]?.max, 0.05, 'the named policy is not changed');
});

t.test('bad values are errors that name the annotation', async (t) => {
  const r = resolvePolicy(
    {
      'weir.dev/steps': '50,10',
      'weir.dev/step-pause': 'soon',
      'weir.dev/max-error-rate': '5',
      'weir.dev/failure-limit': '0',
    },
    { default: defaultPolicy },
  );
  t.equal(r.ok, false);
  if (r.ok) return;
  t.equal(r.errors.length, 4);
  t.match(r.errors.join('\n'), /weir\.dev\/steps: "50,10"/);
  t.match(r.errors.join('\n'), /weir\.dev\/step-pause: "soon" is not a duration/);
  t.match(r.errors.join('\n'), /weir\.dev\/max-error-rate: "5" is not a fraction/);
  const unknown = resolvePolicy({ 'weir.dev/policy': 'fast' }, { default: defaultPolicy });
  t.match(unknown.ok ? '' : unknown.errors[0], /no policy named "fast"/);
});

t.test('durations', async (t) => {
  t.equal(parseDuration('5m'), 300_000);
  t.equal(parseDuration('1.5s'), 1500);
  t.equal(parseDuration('250ms'), 250);
  t.equal(parseDuration('5'), undefined);
});

t.test('the policy file: named policies with custom metrics', async (t) => {
  const buckets = 'istio_request_duration_milliseconds_bucket{destination_workload="{{canary}}"}';
  const r = parsePolicyFile(`policies:
  fast:
    steps: [25, 100]
    stepPause: 1m
    metrics:
      - name: latency-p99
        query: histogram_quantile(0.99, sum(rate(${buckets}[{{interval}}])) by (le))
        max: 500
`);
  if (!r.ok) return t.fail(r.errors.join());
  t.same(r.value.fast?.steps, [25, 100]);
  t.equal(r.value.fast?.metrics[0]?.name, 'latency-p99');
  t.ok(r.value.default, 'default is always there');
  const bad = parsePolicyFile('policies:\n  x:\n    steps: [10, 5]\n');
  t.match(bad.ok ? '' : bad.errors[0], /policies\.x: steps/);
  t.equal(parsePolicyFile(':::').ok, false);
});

t.test('routing annotations, with the seed names', async (t) => {
  t.same(resolveRouting({}), { stableSubset: 'stable', canarySubset: 'canary' });
  t.same(
    resolveRouting({
      'weir.dev/virtual-service': 'myapp-virtualservice',
      'weir.dev/route': 'primary',
      'weir.dev/destination-rule': 'myapp-destinationrule',
      'weir.dev/stable-subset': 'v1',
      'weir.dev/canary-subset': 'v2',
    }),
    {
      stableSubset: 'v1',
      canarySubset: 'v2',
      virtualService: 'myapp-virtualservice',
      route: 'primary',
      destinationRule: 'myapp-destinationrule',
    },
  );
});

t.test('verdicts: NaN and no data are inconclusive; errors are errors', async (t) => {
  const m = { name: 'error-rate', query: 'error-rate', max: 0.05, ceiling: 0.5 };
  t.equal(judge(m, { metric: 'error-rate', canary: NaN }, 10).verdict, 'inconclusive');
  t.equal(judge(m, { metric: 'error-rate' }, 10).verdict, 'inconclusive');
  t.equal(judge(m, { metric: 'error-rate', canary: 0.01, requests: 5 }, 10).verdict, 'inconclusive');
  t.equal(judge(m, { metric: 'error-rate', error: 'timeout' }, 10).verdict, 'error');
  t.equal(judge(m, { metric: 'error-rate', canary: 0.05, requests: 50 }, 10).verdict, 'pass');
  t.equal(judge(m, { metric: 'error-rate', canary: 0.06, requests: 50 }, 10).verdict, 'fail');
  t.equal(judge(m, { metric: 'error-rate', canary: 0.6, requests: 50 }, 10).hard, true);
  t.equal(combine([]), 'inconclusive');
});

t.test('a policy name that is a property of every object (constructor, __proto__) names no policy', async (t) => {
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    const r = resolvePolicy({ 'weir.dev/policy': name }, { default: defaultPolicy });
    t.notOk(r.ok, name);
    t.match(r.ok ? '' : r.errors[0], new RegExp(`no policy named "${name.replace(/_/g, '_')}" \\(known: default\\)`));
  }
  const file = parsePolicyFile('policies:\n  __proto__:\n    steps: [50, 100]\n  Bad_Name: {}\n');
  t.notOk(file.ok, 'the policy file refuses names that are not DNS labels');
  t.match(file.ok ? [] : file.errors, [/"__proto__" is not a policy name/, /"Bad_Name" is not a policy name/]);
});

t.test('analysis: threshold by default; sequential with alpha and margin from annotations or the file', async (t) => {
  const plain = resolvePolicy({}, { default: defaultPolicy });
  t.same(plain.ok && plain.value.analysis, { kind: 'threshold' });
  const seq = resolvePolicy({ 'weir.dev/analysis': 'sequential' }, { default: defaultPolicy });
  t.same(seq.ok && seq.value.analysis, { kind: 'sequential', alpha: 0.01, margin: 0.5 });
  const tuned = resolvePolicy(
    { 'weir.dev/analysis': 'sequential', 'weir.dev/alpha': '0.05', 'weir.dev/margin': '0.2' },
    { default: defaultPolicy },
  );
  t.same(tuned.ok && tuned.value.analysis, { kind: 'sequential', alpha: 0.05, margin: 0.2 });
  const bad = resolvePolicy(
    { 'weir.dev/analysis': 'bayesian', 'weir.dev/alpha': '2', 'weir.dev/margin': '-1' },
    { default: defaultPolicy },
  );
  t.notOk(bad.ok);
  if (!bad.ok) {
    t.match(bad.errors.join('\n'), /weir\.dev\/analysis: "bayesian" is not threshold or sequential/);
    t.match(bad.errors.join('\n'), /weir\.dev\/alpha: "2" is not a fraction/);
    t.match(bad.errors.join('\n'), /weir\.dev\/margin: "-1" is not a number of at least 0/);
  }
  const file = parsePolicyFile('policies:\n  careful:\n    analysis: sequential\n    alpha: 0.001\n');
  t.same(file.ok && file.value.careful?.analysis, { kind: 'sequential', alpha: 0.001, margin: 0.5 });
  const back = resolvePolicy(
    { 'weir.dev/policy': 'careful', 'weir.dev/analysis': 'threshold' },
    file.ok ? file.value : {},
  );
  t.same(back.ok && back.value.analysis, { kind: 'threshold' }, 'an annotation turns a sequential policy back');
});

t.test("a shadow step in weir.dev/steps, and the testers' header; bad ones name the annotation", async (t) => {
  const ok = (a: Record<string, string>) => {
    const r = resolvePolicy(a, { default: defaultPolicy });
    return r.ok ? r.value : undefined;
  };
  t.match(ok({ 'weir.dev/steps': 'mirror,10,50,100' }), { steps: [10, 50, 100], mirror: 100 });
  t.match(ok({ 'weir.dev/steps': 'mirror:25, 50,100' }), { steps: [50, 100], mirror: 25 });
  t.equal(ok({ 'weir.dev/steps': '10,100' })?.mirror, undefined);
  t.same(ok({ 'weir.dev/canary-header': 'x-canary=always' })?.canaryHeader, { name: 'x-canary', value: 'always' });
  for (const [key, text] of [
    ['weir.dev/steps', 'mirror'],
    ['weir.dev/steps', 'mirror:0,100'],
    ['weir.dev/steps', 'mirror:101,100'],
    ['weir.dev/steps', '10,mirror,100'],
    ['weir.dev/canary-header', 'X-Canary=1'],
    ['weir.dev/canary-header', 'x-canary'],
    ['weir.dev/canary-header', '=1'],
  ] as const) {
    const r = resolvePolicy({ [key]: text }, { default: defaultPolicy });
    t.match(r, { ok: false, errors: [new RegExp(`^${key}: "${text}"`)] }, `${key}: ${text}`);
  }
  const file = parsePolicyFile('policies:\n  shadow:\n    steps: [mirror, 10, 100]\n    canaryHeader: x-canary=1\n');
  t.match(file, { ok: true, value: { shadow: { steps: [10, 100], mirror: 100, canaryHeader: { name: 'x-canary' } } } });
  // A policy with a shadow step, overridden by steps without one: no shadow step.
  const named = file.ok ? file.value : {};
  const plain = resolvePolicy({ 'weir.dev/policy': 'shadow', 'weir.dev/steps': '50,100' }, named);
  t.equal(plain.ok && plain.value.mirror, undefined);
});

t.test('weir.dev/dynamic-stable-scale: true or false, from annotations or the policy file', async (t) => {
  const on = resolvePolicy({ 'weir.dev/dynamic-stable-scale': 'true' }, { default: defaultPolicy });
  t.equal(on.ok && on.value.dynamicStableScale, true);
  t.equal(defaultPolicy.dynamicStableScale, undefined, 'off by default');
  t.match(resolvePolicy({ 'weir.dev/dynamic-stable-scale': 'yes' }, { default: defaultPolicy }), {
    ok: false,
    errors: [/^weir.dev\/dynamic-stable-scale: "yes" is not true or false/],
  });
  const file = parsePolicyFile('policies:\n  lean:\n    dynamicStableScale: true\n');
  t.match(file, { ok: true, value: { lean: { dynamicStableScale: true } } });
  const off = resolvePolicy(
    { 'weir.dev/policy': 'lean', 'weir.dev/dynamic-stable-scale': 'false' },
    file.ok ? file.value : {},
  );
  t.equal(off.ok && off.value.dynamicStableScale, false, 'an annotation turns it off for one Deployment');
});
