// tap `after`: runs whether the tests passed or failed, and stops the cluster.
import { down } from './cluster.ts';

if (process.env.WEIR_REUSE_CLUSTER !== '1') await down();
