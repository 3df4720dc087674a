// Issue 14 on the local cluster: the sequential test of canary against stable, through the real
// path (Prometheus counts of both halves, exact windows, evidence kept in the status record).
import t from 'tap';
import {
  apply,
  countUhFromNow,
  deployment,
  kubectl,
  kubectlRaw,
  namespace,
  service,
  waitFor,
} from '../helpers/kube.ts';
import { seedDeployment, seedMesh } from '../../demo/seed.ts';
import {
  events,
  fast,
  getDeployment,
  guardedRelease as release,
  releaseStatus,
  setImage,
  waitForPhase,
} from '../helpers/release.ts';

const sequential = { 'weir.dev/analysis': 'sequential', 'weir.dev/steps': '50,100' };
t.test(
  'a canary at 2 % beside a stable at 1 %: sequential rolls it back, the seed threshold promotes it',
  async (t) => {
    const [judged, seed] = await Promise.all([
      release(t, sequential, 0.01, 0.02, 300),
      release(t, { 'weir.dev/steps': '50,100' }, 0.01, 0.02, 300),
    ]);
    const [rolledBack, promoted] = await Promise.all([
      waitForPhase(judged, 'web', 'RolledBack', 400_000),
      waitForPhase(seed, 'web', 'Stable', 400_000),
    ]);
    t.match(rolledBack.metadata.annotations?.['weir.dev/reason'], /sequential test found the canary worse/);
    t.equal((await releaseStatus(judged, 'web'))?.rollback?.cause, 'worse');
    const warning = (await events(judged, 'web')).find((e) => e.reason === 'RolledBack');
    t.match(
      warning?.message,
      /canary errors \d+\.\d\d % vs stable \d+\.\d\d % over [\d,]+ requests: worse with 99(\.\d)? % confidence/,
      'the evidence in words',
    );
    t.match(promoted.metadata.annotations?.['weir.dev/reason'], /^Promoted/, '2 % is under the threshold of 5 %');
  },
);

t.test('an equal canary is promoted by the sequential policy, the evidence kept between checks', async (t) => {
  const ns = await release(t, sequential, 0.1, 0.1, 300);
  let most = 0;
  const d = await waitForPhase(ns, 'web', 'Stable', 400_000);
  const passed = (await events(ns, 'web')).filter((e) => e.reason === 'CheckPassed');
  t.ok(passed.length > 0, 'checks passed');
  for (const e of passed) {
    const requests = Number(/over ([\d,]+) requests/.exec(e.message)?.[1]?.replaceAll(',', '') ?? 0);
    t.ok(requests >= most, `evidence grows from check to check (${requests})`);
    most = requests;
  }
  t.match(passed[0]?.message, /not worse with 99(\.\d)? % confidence/);
  t.match(d.metadata.annotations?.['weir.dev/reason'], /^Promoted/);
});

for (const [flag, annotation, why] of [
  ['UF', 'sim.weir.dev/refuse-connections', 'its pods refuse connections'],
  ['UH', 'sim.weir.dev/ejected', "the callers' proxies ejected every pod of its subset"],
] as const)
  t.test(
    `a canary callers cannot reach (503 ${flag}: ${why}, which no pod reports) is out of traffic within two checks`,
    async (t) => {
      const ns = await namespace(t, { optIn: true });
      await apply(ns, service('web', { rps: 100 }));
      await apply(ns, deployment('web', { replicas: 2, image: 'example.com/web:v1', annotations: fast }));
      // Only the callers' proxies see it, as 503 with the flag; no pod reports a request.
      await setImage(ns, 'web', 'example.com/web:v2', { [annotation]: 'true' });
      await waitForPhase(ns, 'web', 'RolledBack', 120_000);
      const evs = await events(ns, 'web');
      const rollingBack = evs.findIndex((e) => e.reason === 'RollingBack');
      const checks = evs
        .slice(0, rollingBack)
        .filter((e) => ['CheckPassed', 'CheckFailed', 'CheckInconclusive', 'MetricsUnavailable'].includes(e.reason));
      t.ok(rollingBack >= 0, 'rolled back');
      t.ok(checks.length <= 1, `judged on the callers' errors: ${checks.length} check(s) before the rollback, then it`);
      t.match(evs[rollingBack]?.message, /error-rate: 100\.00% is at or above the hard ceiling/);
    },
  );

t.test(
  "the seed's manifests applied as written in default: a healthy version promoted, a bad one rolled back",
  async (t) => {
    // The seed's folder lands in `default`; opting it in is the one step a user takes.
    const ns = 'default';
    await kubectl(['label', 'namespace', ns, 'weir.dev/canary=enabled', '--overwrite']);
    const objects = [...seedMesh(ns), seedDeployment('v1', fast)];
    t.teardown(async () => {
      await kubectlRaw(
        ['delete', '-n', ns, '-f', '-', '--ignore-not-found', '--wait=false'],
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'List',
          items: objects,
        }),
      );
      await kubectl(['label', 'namespace', ns, 'weir.dev/canary-']);
    });
    for (const o of objects) await apply(ns, o);
    await waitFor('myapp v1 ready', async () => (await getDeployment(ns, 'myapp')).status?.readyReplicas === 3, 60_000);
    const newUh = await countUhFromNow(ns);
    await apply(ns, seedDeployment('v2', fast));
    await waitForPhase(ns, 'myapp', 'Progressing', 30_000);
    const promoted = await waitForPhase(ns, 'myapp', 'Stable', 180_000);
    t.match(promoted.metadata.annotations?.['weir.dev/reason'], /^Promoted/);
    await apply(ns, seedDeployment('v3', fast, { 'sim.weir.dev/error-rate': '0.3' }));
    await waitForPhase(ns, 'myapp', 'Progressing', 30_000);
    const rolledBack = await waitForPhase(ns, 'myapp', 'RolledBack', 180_000);
    t.match(rolledBack.metadata.annotations?.['weir.dev/reason'], /^RolledBack/);
    t.equal(await newUh(), 0, 'the gateway answered no 503 UH from the first release to the end');
  },
);
