// Issue 4's acceptance, faults: Prometheus down, an analyzer killed mid-step, two replicas.
// Each test runs analyzers of its own, scoped to its namespace, so it can kill them.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { apply, deployment, getJson, kubectl, namespace, service } from '../helpers/kube.ts';
import {
  analyzerMetric,
  events,
  fast,
  getDeployment,
  releaseStatus,
  ownPrometheus,
  recordWeights,
  setImage,
  startAnalyzer,
  waitForPhase,
  waitForWeight,
} from '../helpers/release.ts';
import type { Analyzer } from '../helpers/release.ts';
import { waitFor } from '../cluster/cluster.ts';

interface Vs {
  spec: { http: { route: { destination: { subset: string }; weight?: number }[] }[] };
}

async function scopedRelease(
  t: { teardown(fn: () => unknown): void },
  extra: Record<string, string> = {},
): Promise<{ ns: string; scope: string }> {
  const scope = randomBytes(4).toString('hex');
  const ns = await namespace(t, { optIn: true });
  await kubectl(['label', 'namespace', ns, `weir.dev/test-analyzer=${scope}`]);
  await apply(ns, service('web', { rps: 150 }));
  await apply(ns, deployment('web', { replicas: 3, image: 'example.com/web:v1', annotations: { ...fast, ...extra } }));
  return { ns, scope };
}

t.test('Prometheus stopped mid-release: the release holds and never promotes; back, it completes', async (t) => {
  const prometheus = await ownPrometheus();
  t.teardown(() => prometheus.remove());
  // An outage shorter than the unjudged limit: the release holds through it.
  const { ns, scope } = await scopedRelease(t, { 'weir.dev/unjudged-limit': '30' });
  const analyzer = await startAnalyzer({ scope, identity: `a-${scope}`, prometheusUrl: prometheus.url });
  t.teardown(() => analyzer.kill());
  await setImage(ns, 'web', 'example.com/web:v2');
  await waitForWeight(ns, 'web', 10, 60_000);
  await prometheus.stop();
  await waitFor(
    'two MetricsUnavailable warnings',
    async () => (await events(ns, 'web')).filter((e) => e.reason === 'MetricsUnavailable').length >= 2,
    60_000,
    500,
  );
  const held = await getDeployment(ns, 'web');
  t.equal(held.metadata.annotations?.['weir.dev/phase'], 'Progressing', 'holding');
  t.ok(((await releaseStatus(ns, 'web'))?.weight ?? 0) <= 50, 'no promotion while the metrics are unknown');
  t.equal(held.spec.paused, true);
  await prometheus.start();
  await waitForPhase(ns, 'web', 'Stable');
  t.pass('Prometheus back: the release completes');
});

t.test(
  'Prometheus stopped for longer than the unjudged limit: traffic back to stable, RolledBack for the outage; ' +
    'back and retried, it completes',
  async (t) => {
    const prometheus = await ownPrometheus();
    t.teardown(() => prometheus.remove());
    const { ns, scope } = await scopedRelease(t, { 'weir.dev/unjudged-limit': '3' });
    const analyzer = await startAnalyzer({ scope, identity: `a-${scope}`, prometheusUrl: prometheus.url });
    t.teardown(() => analyzer.kill());
    await setImage(ns, 'web', 'example.com/web:v2');
    await waitForWeight(ns, 'web', 10, 60_000);
    await prometheus.stop();
    const rolled = await waitForPhase(ns, 'web', 'RolledBack', 60_000);
    t.match(
      rolled.metadata.annotations?.['weir.dev/reason'],
      /metrics were unavailable for 3 checks in a row.*weir retry web/,
      'the reason names the outage and what to do',
    );
    t.equal((await releaseStatus(ns, 'web'))?.weight, 0, 'no weight on the unjudged canary');
    await prometheus.start();
    await kubectl(['annotate', 'deployment', 'web', '-n', ns, 'weir.dev/request=retry']);
    await waitForPhase(ns, 'web', 'Stable');
    t.pass('retried with Prometheus back: the release completes');
  },
);

t.test('a canary with too little traffic is rolled back at the same bound, with a reason that says so', async (t) => {
  const { ns, scope } = await scopedRelease(t, { 'weir.dev/unjudged-limit': '3', 'weir.dev/min-requests': '100000' });
  const analyzer = await startAnalyzer({ scope, identity: `a-${scope}` });
  t.teardown(() => analyzer.kill());
  await setImage(ns, 'web', 'example.com/web:v2');
  const rolled = await waitForPhase(ns, 'web', 'RolledBack', 90_000);
  t.match(
    rolled.metadata.annotations?.['weir.dev/reason'],
    /too little canary traffic or no data.*lower weir.dev\/min-requests/,
  );
});

t.test('an analyzer killed with SIGKILL mid-step: a new one finishes, no step out of order', async (t) => {
  const { ns, scope } = await scopedRelease(t, { 'weir.dev/step-pause': '5s' });
  const first = await startAnalyzer({ scope, identity: `first-${scope}` });
  t.teardown(() => first.kill());
  const recorder = recordWeights(ns, 'weir-web', 'canary');
  await recorder.ready;
  await setImage(ns, 'web', 'example.com/web:v2');
  await waitForWeight(ns, 'web', 50, 90_000);
  await first.kill('SIGKILL');
  const second = await startAnalyzer({ scope, identity: `second-${scope}` });
  t.teardown(() => second.kill());
  await waitForPhase(ns, 'web', 'Stable');
  await recorder.stop();
  t.same(recorder.weights, [0, 10, 50, 100, 0], 'each weight once, in order');
  t.equal((await events(ns, 'web')).filter((e) => e.reason === 'Promoted').length, 1, 'promoted once');
});

t.test('two analyzers at once: only the leader writes; kill it and the other finishes', async (t) => {
  const { ns, scope } = await scopedRelease(t, { 'weir.dev/step-pause': '5s' });
  const a = await startAnalyzer({ scope, identity: `a-${scope}` });
  const b = await startAnalyzer({ scope, identity: `b-${scope}` });
  t.teardown(() => Promise.all([a.kill(), b.kill()]));
  let leader: Analyzer | undefined;
  await waitFor(
    'a leader',
    async () => {
      const [la, lb] = await Promise.all([analyzerMetric(a.url, 'weir_leader'), analyzerMetric(b.url, 'weir_leader')]);
      leader = la === 1 ? a : lb === 1 ? b : undefined;
      return leader !== undefined && la + lb === 1;
    },
    30_000,
  );
  const follower = leader === a ? b : a;
  await setImage(ns, 'web', 'example.com/web:v2');
  await waitForWeight(ns, 'web', 50, 90_000);
  t.ok((await analyzerMetric(leader?.url ?? '', 'weir_api_writes_total')) > 0, 'the leader writes');
  t.equal(await analyzerMetric(follower.url, 'weir_api_writes_total'), 0, 'the other does not');
  await leader?.kill('SIGKILL');
  await waitForPhase(ns, 'web', 'Stable');
  t.ok((await analyzerMetric(follower.url, 'weir_api_writes_total')) > 0, 'the other took over and finished');
});

t.test(
  'the promotion race: a newer template between decide and act is never unpaused without its own steps; ' +
    'a held loop fails /healthz',
  async (t) => {
    const { ns, scope } = await scopedRelease(t);
    const hold = join(tmpdir(), `weir-hold-${scope}`);
    await writeFile(hold, '');
    t.teardown(() => rm(hold, { force: true }));
    // The seam (docs/design.md): the analyzer waits before actions that unpause, while the file exists.
    const analyzer = await startAnalyzer({
      scope,
      identity: `a-${scope}`,
      env: { WEIR_TEST_HOLD_BEFORE: 'unpause', WEIR_TEST_HOLD_FILE: hold, WEIR_LIVENESS_TIMEOUT: '3s' },
    });
    t.teardown(() => analyzer.kill());
    await setImage(ns, 'web', 'example.com/web:v2');
    await waitForWeight(ns, 'web', 10, 60_000);
    const revisionB = (await getDeployment(ns, 'web')).metadata.annotations?.['weir.dev/canary-revision'];
    await kubectl(['annotate', 'deployment', 'web', '-n', ns, 'weir.dev/request=promote-full']);
    await waitFor(
      'the analyzer holding before it unpauses revision B',
      async () =>
        await stat(`${hold}.held`).then(
          () => true,
          () => false,
        ),
      60_000,
      100,
    );
    await waitFor(
      '/healthz failing while the loop is held',
      async () => (await request(`${analyzer.url}/healthz`)).statusCode === 503,
      20_000,
      200,
    );
    // Revision C arrives between the decision about B and its writes.
    await setImage(ns, 'web', 'example.com/web:v3');
    const revisionC = (await getDeployment(ns, 'web')).metadata.annotations?.['weir.dev/canary-revision'];
    t.not(revisionC, revisionB);
    const samples: { paused: boolean; phase: string; image: string }[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const d = await getDeployment(ns, 'web');
        samples.push({
          paused: d.spec.paused === true,
          phase: d.metadata.annotations?.['weir.dev/phase'] ?? '',
          image: d.spec.template.spec.containers[0]?.image ?? '',
        });
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
    })();
    const recorder = recordWeights(ns, 'weir-web', 'canary');
    await recorder.ready;
    await rm(hold);
    const done = await waitForPhase(ns, 'web', 'Stable');
    sampling = false;
    await sampler;
    await recorder.stop();
    t.equal(done.metadata.annotations?.['weir.dev/stable-revision'], revisionC, 'revision C ends stable');
    t.notOk(
      samples.some((s) => !s.paused && s.phase === 'Progressing'),
      'never unpaused while a release of C was Progressing',
    );
    t.same(recorder.weights.slice(-4), [10, 50, 100, 0], "C's release went through every step of its own");
    const reasons = (await events(ns, 'web')).map((e) => e.reason);
    t.ok(reasons.includes('Superseded'), 'C superseded B');
    t.ok(reasons.includes('RequestRefused'), 'the promote request about B was not applied to C');
    t.equal((await request(`${analyzer.url}/healthz`)).statusCode, 200, '/healthz passes again once the loop runs');
  },
);

t.test(
  'analyzer stopped at 50 %, the Deployment deleted and re-created with the stable template: ' +
    'the user-named VirtualService is back to 100 % stable',
  async (t) => {
    const scope = randomBytes(4).toString('hex');
    const ns = await namespace(t, { optIn: true });
    await kubectl(['label', 'namespace', ns, `weir.dev/test-analyzer=${scope}`]);
    await apply(ns, service('web', { rps: 50 }));
    await apply(ns, {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'web-subsets' },
      spec: {
        host: 'web',
        subsets: [
          { name: 'stable', labels: { app: 'web' } },
          { name: 'canary', labels: { app: 'web' } },
        ],
      },
    });
    await apply(ns, {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'web-routes' },
      spec: {
        hosts: ['web'],
        http: [{ name: 'primary', route: [{ destination: { host: 'web', subset: 'stable' }, weight: 100 }] }],
      },
    });
    const routing = {
      'weir.dev/virtual-service': 'web-routes',
      'weir.dev/route': 'primary',
      'weir.dev/destination-rule': 'web-subsets',
    };
    const v1 = deployment('web', {
      replicas: 2,
      image: 'example.com/web:v1',
      annotations: { ...fast, ...routing, 'weir.dev/steps': '50,100', 'weir.dev/step-pause': '1h' },
    });
    await apply(ns, v1);
    const first = await startAnalyzer({ scope, identity: `first-${scope}` });
    t.teardown(() => first.kill());
    await setImage(ns, 'web', 'example.com/web:v2');
    // The route itself at 50 % (weir records a step before it writes the route).
    const canaryWeight = async (): Promise<number | undefined> => {
      const vs = await getJson<Vs>(['get', 'virtualservice', 'web-routes', '-n', ns]);
      return vs.spec.http[0]?.route.find((d) => d.destination.subset === 'canary')?.weight;
    };
    await waitFor('the route at 50 %', async () => (await canaryWeight()) === 50, 90_000);
    await first.kill('SIGKILL');
    // While no analyzer runs: the Deployment is deleted and re-created from the stable manifest.
    await kubectl(['replace', '--force', '-n', ns, '-f', '-'], JSON.stringify(v1));
    const second = await startAnalyzer({ scope, identity: `second-${scope}` });
    t.teardown(() => second.kill());
    await waitFor('the route back to 100 % stable', async () => (await canaryWeight()) === 0, 30_000);
    t.ok(
      (await events(ns, 'web-routes')).some((e) => e.reason === 'OrphanedWeight'),
      'an OrphanedWeight event on the VirtualService',
    );
  },
);

t.test('two analyzers whose clocks disagree by a minute: never two leaders, never two writers', async (t) => {
  const { ns, scope } = await scopedRelease(t, { 'weir.dev/step-pause': '5s' });
  const a = await startAnalyzer({ scope, identity: `a-${scope}` });
  t.teardown(() => a.kill());
  await waitFor('a leading', async () => (await analyzerMetric(a.url, 'weir_leader')) === 1, 30_000, 200);
  // b's wall clock runs a minute ahead: by its clock, a's renewTime is always long expired.
  const b = await startAnalyzer({ scope, identity: `b-${scope}`, env: { WEIR_TEST_CLOCK_OFFSET: '60s' } });
  t.teardown(() => b.kill());
  let bLed = false;
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      if ((await analyzerMetric(b.url, 'weir_leader')) === 1) bLed = true;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  await setImage(ns, 'web', 'example.com/web:v2');
  await waitForPhase(ns, 'web', 'Stable');
  watching = false;
  await watcher;
  t.notOk(bLed, 'b never became leader while a renewed');
  t.equal(await analyzerMetric(b.url, 'weir_api_writes_total'), 0, 'b never wrote');
  t.ok((await analyzerMetric(a.url, 'weir_api_writes_total')) > 0, 'a carried the release');
});
