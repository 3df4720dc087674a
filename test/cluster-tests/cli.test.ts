// Issue 6's acceptance: `weir get|promote|abort|retry` against releases on the local cluster,
// their error cases and exit codes, and the demo's scenario end to end.
import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot, waitFor } from '../cluster/cluster.ts';
import { apply, cluster, deployment, getJson, namespace, service } from '../helpers/kube.ts';
import {
  events,
  fast,
  getDeployment,
  images,
  runWeir,
  setImage,
  waitForPhase,
  waitForWeight,
} from '../helpers/release.ts';
import type { Run } from '../helpers/release.ts';
import type { ReleaseSummary } from '../../cli/view.ts';

const weir = runWeir;

async function held(t: { teardown(fn: () => unknown): void }, pause = '1h'): Promise<string> {
  const ns = await namespace(t, { optIn: true });
  await apply(ns, service('web', { rps: 100 }));
  await apply(
    ns,
    deployment('web', {
      replicas: 2,
      image: 'example.com/web:v1',
      annotations: { ...fast, 'weir.dev/step-pause': pause },
    }),
  );
  await setImage(ns, 'web', 'example.com/web:v2');
  await waitForWeight(ns, 'web', 10, 60_000);
  await waitFor(
    'a passed check',
    async () => (await events(ns, 'web')).some((e) => e.reason === 'CheckPassed'),
    60_000,
    500,
  );
  return ns;
}

t.test('get, get -A and -o json show a release in progress', async (t) => {
  const ns = await held(t);
  const one = await weir(['get', 'web', '-n', ns]);
  t.equal(one.code, 0, one.stderr);
  for (const field of [
    'Phase:       Progressing',
    'Step:        1/3',
    'desired 10%   actual 10%',
    'Stable:      example.com/web:v1',
    'Canary:      example.com/web:v2',
    'ready 2/2',
    'ready 1/1',
    'In step:',
    'Reason:      Started',
    'error-rate   pass',
  ]) {
    t.match(one.stdout, field, `shows ${field}`);
  }
  const all = await weir(['get', '-A']);
  t.match(
    all.stdout,
    new RegExp(`${ns}\\s+web\\s+Progressing\\s+1/3\\s+10%`),
    'get -A lists it with namespace, phase, step and weight',
  );
  const json = await weir(['get', 'web', '-n', ns, '-o', 'json']);
  const view = JSON.parse(json.stdout) as ReleaseSummary;
  t.match(view, {
    namespace: ns,
    name: 'web',
    phase: 'Progressing',
    step: 1,
    steps: 3,
    desiredWeight: 10,
    actualWeight: 10,
    stableImages: ['example.com/web:v1'],
    canaryImages: ['example.com/web:v2'],
    stableReady: { ready: 2, desired: 2 },
    canaryReady: { ready: 1, desired: 1 },
  });
  t.ok(
    view.checks.length > 0 && typeof view.secondsInStep === 'number' && view.stableRevision && view.canaryRevision,
    'checks, time in step and revisions',
  );
  const yaml = await weir(['get', '-n', ns, '-o', 'yaml']);
  t.match(yaml.stdout, /phase: Progressing/);
});

t.test('promote ends a pause early; promote --full skips to promotion', async (t) => {
  const ns = await held(t);
  const r = await weir(['promote', 'web', '-n', ns]);
  t.equal(r.code, 0, r.stderr);
  await waitForWeight(ns, 'web', 50, 60_000);
  t.ok(
    (await events(ns, 'web')).some((e) => e.reason === 'PromoteRequested'),
    'the request is recorded in an event',
  );
  t.notOk((await getDeployment(ns, 'web')).metadata.annotations?.['weir.dev/request'], 'and cleared');
  const full = await weir(['promote', 'web', '-n', ns, '--full']);
  t.equal(full.code, 0, full.stderr);
  await waitForPhase(ns, 'web', 'Stable');
  t.same(await images(ns, 'app=web'), ['example.com/web:v2', 'example.com/web:v2']);
});

t.test('abort puts 100 % on stable at once; retry starts it again', async (t) => {
  const ns = await held(t, '4s');
  const r = await weir(['abort', 'web', '-n', ns]);
  t.equal(r.code, 0, r.stderr);
  await waitFor(
    'weight back on stable',
    async () => {
      const vs = await getJson<{ spec: { http: { route: { destination: { subset: string }; weight?: number }[] }[] } }>(
        ['get', 'virtualservice', 'weir-web', '-n', ns],
      );
      return vs.spec.http[0]?.route.find((d) => d.destination.subset === 'canary')?.weight === 0;
    },
    5_000,
    100,
  );
  await waitForPhase(ns, 'web', 'RolledBack');
  const again = await weir(['retry', 'web', '-n', ns]);
  t.equal(again.code, 0, again.stderr);
  await waitForPhase(ns, 'web', 'Stable');
  t.ok((await events(ns, 'web')).some((e) => e.reason === 'Retried'));
  t.same(await images(ns, 'app=web'), ['example.com/web:v2', 'example.com/web:v2'], 'the retried release was promoted');
});

t.test('errors are clear, with documented exit codes', async (t) => {
  const ns = await namespace(t, { optIn: true });
  await apply(ns, deployment('plain', { replicas: 1 }));
  const unguarded = await namespace(t);
  await apply(unguarded, deployment('other', { replicas: 1 }));
  const cases: [string[], number, RegExp][] = [
    [['get', 'missing', '-n', ns], 3, /deployment .*\/missing not found/],
    [['promote', 'missing', '-n', ns], 3, /not found/],
    [['get', 'other', '-n', unguarded], 3, /not under weir/],
    [['abort', 'plain', '-n', ns], 4, /no release in progress \(phase Stable\)/],
    [['retry', 'plain', '-n', ns], 4, /no rolled-back release to retry/],
    [['promote'], 2, /needs the name of a Deployment/],
    [['frobnicate'], 2, /unknown command/],
    [['get', '--bogus'], 2, /Unknown option/],
    [['get', 'plain', '-n', ns, '-o', 'xml'], 2, /use json or yaml/],
  ];
  for (const [args, code, message] of cases) {
    const r = await weir(args);
    t.equal(r.code, code, `weir ${args.join(' ')} exits ${code}`);
    t.match(r.stderr, message);
  }
});

for (const flags of [[], ['--gateway-api']])
  t.test(`the demo's scenario (${['npm run demo', ...flags].join(' -- ')}), end to end, tells the truth`, async (t) => {
    const ns = `demo-${Math.random().toString(16).slice(2, 8)}`;
    t.teardown(async () => {
      const state = await cluster();
      execFile(join(state.binDir, 'kubectl'), [
        '--kubeconfig',
        state.kubeconfig,
        'delete',
        'namespace',
        ns,
        '--wait=false',
      ]);
    });
    const run = await new Promise<Run>((resolve) => {
      execFile(
        join(repoRoot, 'node_modules/.bin/node'),
        [join(repoRoot, 'demo/main.ts'), ...flags],
        {
          env: { ...process.env, WEIR_DEMO_REUSE: '1', WEIR_DEMO_NAMESPACE: ns, WEIR_DEMO_PLAIN: '1' },
          timeout: 400_000,
          maxBuffer: 16 * 1024 * 1024,
        },
        (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr }),
      );
    });
    t.equal(run.code, 0, run.stderr);
    t.match(run.stdout, 'v1 is running: jamaldevsecops/myapp:v1');
    t.match(run.stdout, 'v2 promoted; now running: jamaldevsecops/myapp:v2');
    t.match(run.stdout, 'v3 rolled back; still running: jamaldevsecops/myapp:v2');
    t.match(run.stdout, /Phase:\s+Progressing[\s\S]*Weight:\s+desired 50%/, 'the live view showed the steps');
    t.match(run.stdout, /Warning\s+RolledBack\s+.*error-rate/, 'the summary names the failed metric');
    const d = await getDeployment(ns, 'myapp');
    t.equal(d.metadata.annotations?.['weir.dev/phase'], 'RolledBack', 'the cluster agrees: v3 rolled back');
    t.same(
      await images(ns, 'app=myapp'),
      ['jamaldevsecops/myapp:v2', 'jamaldevsecops/myapp:v2', 'jamaldevsecops/myapp:v2'],
      'and v2 serves',
    );
  });
