// Argo CD without a fight (issue 16): the health check the chart ships, run by the Lua runtime
// Argo CD embeds on Deployments recorded from the local cluster in every phase, and weir's writes
// attributed to its one field manager, which Argo CD's ignoreDifferences can name.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { binaries, repoRoot } from '../cluster/cluster.ts';
import { apply, cluster, deployment, getJson, kubectl, namespace, waitFor } from '../helpers/kube.ts';
import { fast, waitForPhase, waitForWeight } from '../helpers/release.ts';
import { seedDeployment, seedMesh } from '../../demo/seed.ts';

interface Recorded {
  metadata: {
    name: string;
    annotations?: Record<string, string>;
    managedFields?: unknown;
    [key: string]: unknown;
  };
  spec?: { paused?: boolean };
  status?: unknown;
  [key: string]: unknown;
}

/** The Deployment as it is now, without what Argo CD's live state never carries. */
async function snapshot(ns: string, name: string): Promise<Recorded> {
  const d = await getJson<Recorded>(['get', 'deployment', name, '-n', ns]);
  delete d.metadata.managedFields;
  return d;
}

/** Every state of a Deployment seen through a watch, in order: phases that last a moment are caught too. */
async function recordStates(ns: string, name: string): Promise<{ states: Recorded[]; stop: () => void }> {
  const kc = new KubeConfig();
  kc.loadFromFile((await cluster()).kubeconfig);
  const states: Recorded[] = [];
  const request = await new Watch(kc).watch(
    `/apis/apps/v1/namespaces/${ns}/deployments`,
    { fieldSelector: `metadata.name=${name}` },
    (type: string, object: Recorded) => {
      if (type !== 'ADDED' && type !== 'MODIFIED') return;
      delete object.metadata.managedFields;
      states.push(object);
    },
    () => undefined,
  );
  return { states, stop: () => request.abort() };
}

const phase = (d: Recorded): string | undefined => d.metadata.annotations?.['weir.dev/phase'];

interface Case {
  name: string;
  object: Recorded;
  want: { status: string; message: string };
}

/** Runs the chart's health.lua over the cases with the Lua harness, in Argo CD's test-case layout. */
async function runHealthCheck(t: { teardown(fn: () => unknown): void }, cases: Case[]): Promise<Map<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-argocd-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'testdata'));
  for (const c of cases) await writeFile(join(dir, 'testdata', `${c.name}.yaml`), stringify(c.object));
  const tests = { tests: cases.map((c) => ({ healthStatus: c.want, inputPath: `testdata/${c.name}.yaml` })) };
  await writeFile(join(dir, 'health_test.yaml'), stringify(tests));
  const bin = (await binaries()).luaHealth ?? '';
  const script = join(repoRoot, 'charts/weir/argocd/health.lua');
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(bin, ['-script', script, '-tests', join(dir, 'health_test.yaml')], (error, out, err) =>
      error ? reject(new Error(`lua-health: ${err}`)) : resolve(out),
    ),
  );
  const results = new Map<string, unknown>();
  for (const line of stdout.trim().split('\n')) {
    const r = JSON.parse(line) as { inputPath: string };
    results.set(r.inputPath.replace(/^testdata\/|\.yaml$/g, ''), r);
  }
  return results;
}

t.test("Argo CD's Lua runtime gives each recorded phase of a release its health", async (t) => {
  const ns = await namespace(t, { optIn: true });
  const plain = await namespace(t);
  // A Deployment weir does not guard reads as Argo CD's own check reads it.
  await apply(plain, deployment('web', { replicas: 2, image: 'example.com/web:v1' }));
  await waitFor('plain web rolled out', async () => (await snapshot(plain, 'web')).status !== undefined, 60_000);
  await waitFor('plain web available', async () => {
    const s = (await snapshot(plain, 'web')).status as { availableReplicas?: number } | undefined;
    return s?.availableReplicas === 2;
  });
  const cases: Case[] = [
    { name: 'unguarded-healthy', object: await snapshot(plain, 'web'), want: { status: 'Healthy', message: '' } },
  ];
  await kubectl(['rollout', 'pause', 'deployment/web', '-n', plain]);
  cases.push({
    name: 'unguarded-paused',
    object: await snapshot(plain, 'web'),
    want: { status: 'Suspended', message: 'Deployment is paused' },
  });

  // The seed's myapp: a healthy v2 all the way, then a bad v3.
  for (const m of seedMesh(ns)) await apply(ns, m);
  await apply(ns, seedDeployment('v1', fast));
  await waitFor('myapp v1 available', async () => {
    const s = (await snapshot(ns, 'myapp')).status as { availableReplicas?: number } | undefined;
    return s?.availableReplicas === 3;
  });
  cases.push({ name: 'guarded-stable', object: await snapshot(ns, 'myapp'), want: { status: 'Healthy', message: '' } });
  const watched = await recordStates(ns, 'myapp');
  t.teardown(watched.stop);
  await apply(ns, seedDeployment('v2', fast));
  await waitForWeight(ns, 'myapp', 10);
  const progressing = await snapshot(ns, 'myapp');
  t.equal(progressing.spec?.paused, true, 'mid-release the Deployment is paused: Argo CD alone would say Suspended');
  const reasonOf = (d: Recorded): string => d.metadata.annotations?.['weir.dev/reason'] ?? '';
  cases.push({
    name: 'release-progressing',
    object: progressing,
    want: { status: 'Progressing', message: `weir: ${reasonOf(progressing)}` },
  });
  await waitForPhase(ns, 'myapp', 'Stable');
  await waitFor('v2 rolled out', async () => {
    const s = (await snapshot(ns, 'myapp')).status as { updatedReplicas?: number; availableReplicas?: number };
    return s.updatedReplicas === 3 && s.availableReplicas === 3;
  });
  const promoting = watched.states.find((d) => phase(d) === 'Promoting');
  t.ok(promoting, 'the watch saw the Promoting phase');
  if (promoting)
    cases.push({
      name: 'release-promoting',
      object: promoting,
      want: { status: 'Progressing', message: `weir: ${reasonOf(promoting)}` },
    });
  cases.push({ name: 'promoted', object: await snapshot(ns, 'myapp'), want: { status: 'Healthy', message: '' } });
  await apply(ns, seedDeployment('v3', fast, { 'sim.weir.dev/error-rate': '0.6' }));
  await waitForPhase(ns, 'myapp', 'RolledBack');
  const rolledBack = await snapshot(ns, 'myapp');
  cases.push({
    name: 'rolled-back',
    object: rolledBack,
    want: { status: 'Degraded', message: `weir: ${reasonOf(rolledBack)}` },
  });
  watched.stop();

  const results = await runHealthCheck(t, cases);
  for (const c of cases) {
    const r = results.get(c.name) as { got: { status: string; message: string }; error?: string } | undefined;
    t.notOk(r?.error, `${c.name}: the script runs in Argo CD's sandbox (${r?.error ?? 'no error'})`);
    t.equal(r?.got.status, c.want.status, `${c.name}: ${c.want.status}`);
    t.equal(r?.got.message, c.want.message, `${c.name}: the message`);
  }
  t.match(
    (results.get('rolled-back') as { got: { message: string } } | undefined)?.got.message,
    /RolledBack: .*error-rate/,
    'a rollback says why, in the Degraded message',
  );
});

t.test('every routing field weir writes is attributed to its field manager, `weir`', async (t) => {
  const ns = await namespace(t, { optIn: true });
  for (const m of seedMesh(ns)) await apply(ns, m);
  await apply(ns, seedDeployment('v1', fast));
  await apply(ns, seedDeployment('v2', { ...fast, 'weir.dev/step-pause': '1h' }));
  await waitForWeight(ns, 'myapp', 10);
  type Managed = { metadata: { managedFields?: { manager?: string; operation?: string; fieldsV1?: unknown }[] } };
  const entry = async (kind: string, name: string): Promise<string> => {
    const o = await getJson<Managed>(['get', kind, name, '-n', ns, '--show-managed-fields']);
    return JSON.stringify(o.metadata.managedFields?.find((f) => f.manager === 'weir' && f.operation === 'Update'));
  };
  const vs = await entry('virtualservice', 'myapp-virtualservice');
  t.match(vs, /"f:weir.dev\/weights"/, "the VirtualService's weights record is weir's");
  t.match(vs, /"f:http"/, 'and its routes (an atomic list in the CRD schema) are written by weir');
  const dr = await entry('destinationrule', 'myapp-destinationrule');
  t.match(dr, /"f:weir.dev\/subsets"/, "the DestinationRule's subsets record is weir's");
  t.match(dr, /"f:subsets"/, 'and its subsets');
  const d = await entry('deployment', 'myapp');
  t.match(d, /"f:weir.dev\/status"/, "the Deployment's release record is weir's");
});
