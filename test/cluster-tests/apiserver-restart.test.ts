// Issue 10: kube-apiserver restarted mid-release, and the release completes. On a cluster of its
// own (like the teardown tests), so that no other test sees its API server go away.
import t from 'tap';
import { npm } from '../helpers/kube.ts';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kubectl, restartProcess, waitFor } from '../cluster/cluster.ts';
import type { ClusterState } from '../cluster/cluster.ts';
import { deployment, service } from '../helpers/kube.ts';
import { fast } from '../helpers/release.ts';
import { parseStatus } from '../../contract/status.ts';

interface Dep {
  metadata: { annotations?: Record<string, string> };
  spec: { paused?: boolean; template: { spec: { containers: { image: string }[] } } };
  status?: { readyReplicas?: number };
}

t.test('kube-apiserver restarted mid-release: the release completes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weir-restart-'));
  const env = { WEIR_CLUSTER_DIR: dir };
  t.teardown(async () => {
    await npm(['run', 'cluster:down'], env);
    await rm(dir, { recursive: true, force: true });
  });
  const up = await npm(['run', 'cluster:up'], env);
  t.equal(up.code, 0, 'a cluster of its own', { output: up.output.slice(-2000) });
  const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as ClusterState;
  const k = (args: string[], input?: string): Promise<string> =>
    kubectl(join(state.binDir, 'kubectl'), state.kubeconfig, args, input);
  const web = async (): Promise<Dep> =>
    JSON.parse(await k(['get', 'deployment', 'web', '-n', 'shop', '-o', 'json'])) as Dep;
  await k(['create', 'namespace', 'shop']);
  await k(['label', 'namespace', 'shop', 'weir.dev/canary=enabled']);
  await waitFor(
    'the default ServiceAccount',
    async () => (await k(['get', 'sa', 'default', '-n', 'shop', '-o', 'name'])) !== '',
  );
  await k(['apply', '-n', 'shop', '-f', '-'], JSON.stringify(service('web', { rps: 50 })));
  await k(
    ['apply', '-n', 'shop', '-f', '-'],
    JSON.stringify(deployment('web', { replicas: 2, image: 'example.com/web:v1', annotations: fast })),
  );
  await waitFor('v1 ready', async () => (await web()).status?.readyReplicas === 2, 60_000);
  await k(['set', 'image', 'deployment/web', '-n', 'shop', 'app=example.com/web:v2']);
  await waitFor(
    'the canary at 10 %',
    async () => parseStatus((await web()).metadata.annotations?.['weir.dev/status'])?.weight === 10,
    90_000,
  );
  await restartProcess(dir, 'kube-apiserver');
  await waitFor('the API server back', async () => (await k(['get', '--raw', '/readyz'])).trim() === 'ok', 90_000, 500);
  await waitFor(
    'the release Stable',
    async () => (await web()).metadata.annotations?.['weir.dev/phase'] === 'Stable',
    180_000,
    500,
  );
  const done = await web();
  t.equal(done.spec.template.spec.containers[0]?.image, 'example.com/web:v2', 'promoted');
  t.notOk(done.spec.paused, 'resumed');
  t.equal(
    (await k(['get', 'deployment', '-n', 'shop', '-l', 'weir.dev/canary-of=web', '-o', 'name'])).trim(),
    '',
    'no canary left',
  );
});
