// tap `before`: one cluster for the whole test run. With WEIR_REUSE_CLUSTER=1 a cluster that is
// already running is used and left running (handy while iterating on one test file).
// `npm run test:unit` (WEIR_NO_CLUSTER=1) loads nothing of the cluster scripts: no cluster, no delay.
if (process.env.WEIR_NO_CLUSTER !== '1') {
  const { writeFile } = await import('node:fs/promises');
  const path = await import('node:path');
  const { alive, up, readState, clusterDir } = await import('./cluster.ts');
  if (process.env.WEIR_REUSE_CLUSTER === '1' && (await readState())) {
    process.stderr.write('[cluster] reusing the running cluster\n');
  } else if (Object.values((await readState())?.pids ?? {}).some(alive)) {
    // Someone's running cluster (`npm run cluster:up`, another test run) is never torn down from under them.
    process.stderr.write(
      '[cluster] a local cluster is already running: set WEIR_REUSE_CLUSTER=1 to test against it, ' +
        'or `npm run cluster:down` first\n',
    );
    process.exit(1);
  } else {
    await up();
    // after.ts stops what this run started, and only that.
    await writeFile(path.join(clusterDir, 'started-by-test-run'), String(process.pid));
  }
}
