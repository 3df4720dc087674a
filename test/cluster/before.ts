// tap `before`: one cluster for the whole test run. An already running cluster is reused
// when WEIR_REUSE_CLUSTER=1 (handy while iterating on one test).
import { up, readState } from './cluster.ts';

if (process.env.WEIR_REUSE_CLUSTER === '1' && (await readState())) {
  process.stderr.write('[cluster] reusing the running cluster\n');
} else {
  await up();
}
