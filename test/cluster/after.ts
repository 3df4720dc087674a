// tap `after`: runs whether the tests passed or failed, and stops the cluster this run started.
// A cluster from `npm run cluster:up` (no marker) is left running: only a test run's own goes.
if (process.env.WEIR_NO_CLUSTER !== '1' && process.env.WEIR_REUSE_CLUSTER !== '1') {
  const { access } = await import('node:fs/promises');
  const path = await import('node:path');
  const { clusterDir, down } = await import('./cluster.ts');
  const startedHere = await access(path.join(clusterDir, 'started-by-test-run')).then(
    () => true,
    () => false,
  );
  if (startedHere) await down();
}
