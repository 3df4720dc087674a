// `npm run cluster:up`: starts the local cluster and prints how to use it.
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { up, clusterDir } from './cluster.ts';

const { values } = parseArgs({
  options: { 'scrape-interval': { type: 'string', default: '1s' }, 'no-weir': { type: 'boolean', default: false } },
});
try {
  const state = await up({ scrapeInterval: values['scrape-interval'], weir: !values['no-weir'] });
  process.stdout.write(
    `cluster is up\n  source ${join(clusterDir, 'env')}\n  KUBECONFIG=${state.kubeconfig}\n` +
      `  PROMETHEUS_URL=${state.prometheusUrl}\n`,
  );
} catch (error) {
  process.stderr.write(`cluster:up failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
