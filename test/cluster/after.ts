// tap `after`: runs whether the tests passed or failed, and stops the cluster this run started.
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { clusterDir, down } from './cluster.ts';

const startedHere = await access(join(clusterDir, 'started-by-test-run')).then(
  () => true,
  () => false,
);
// A cluster from `npm run cluster:up` (no marker) is left running: only a test run's own goes.
if (process.env.WEIR_NO_CLUSTER !== '1' && process.env.WEIR_REUSE_CLUSTER !== '1' && startedHere) await down();
