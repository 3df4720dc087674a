// tap `before`: one cluster for the whole test run. With WEIR_REUSE_CLUSTER=1 a cluster that is
// already running is used and left running (handy while iterating on one test file).
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { alive, up, readState, clusterDir } from './cluster.ts';

if (process.env.WEIR_NO_CLUSTER === '1') {
  // `npm run test:unit`: pure tests, no cluster started or stopped.
} else if (process.env.WEIR_REUSE_CLUSTER === '1' && (await readState())) {
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
  await writeFile(join(clusterDir, 'started-by-test-run'), String(process.pid));
}
