// `npm run cluster:down`: stops every process the cluster started and removes its state.
import { down } from './cluster.ts';

await down();
process.stdout.write('cluster is down\n');
