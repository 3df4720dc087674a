// No cluster process outlives `npm run cluster:down`, nor a test run that failed.
import t from 'tap';
import { npm } from '../helpers/kube.ts';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alive, waitFor } from '../cluster/cluster.ts';

t.test('cluster:down stops every process that cluster:up started', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weir-cluster-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const env = { WEIR_CLUSTER_DIR: dir };
  const started = await npm(['run', 'cluster:up', '--', '--no-weir'], env);
  t.equal(started.code, 0, 'cluster:up succeeded', { output: started.output });
  const pids = Object.values(
    (JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as { pids: Record<string, number> }).pids,
  );
  t.ok(pids.length >= 7, `${pids.length} processes started`);
  t.ok(pids.every(alive), 'all running while up');
  const stopped = await npm(['run', 'cluster:down'], env);
  t.equal(stopped.code, 0, 'cluster:down succeeded', { output: stopped.output });
  await waitFor('every cluster process to exit', () => Promise.resolve(!pids.some(alive)), 20_000, 100);
  t.pass('no process is left');
});

t.test('a failing test run leaves no cluster process behind', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'weir-cluster-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pidsFile = join(dir, '..', `${dir.split('/').pop() ?? 'x'}-pids.json`);
  t.teardown(() => rm(pidsFile, { force: true }));
  const run = await npm(
    ['exec', '--', 'tap', '--disable-coverage', '--reporter=silent', 'test/fixtures/failing-run/fails.fixture.ts'],
    {
      WEIR_CLUSTER_DIR: dir,
      WEIR_PIDS_OUT: pidsFile,
      WEIR_REUSE_CLUSTER: '0',
    },
  );
  t.not(run.code, 0, 'the run failed');
  const pids = Object.values(JSON.parse(await readFile(pidsFile, 'utf8')) as Record<string, number>);
  t.ok(pids.length >= 7, `the failing run had a cluster of ${pids.length} processes`);
  await waitFor('every cluster process to exit', () => Promise.resolve(!pids.some(alive)), 20_000, 100);
  t.pass('no process is left');
});
