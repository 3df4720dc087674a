// The analyzer process: settings from the environment (settings.ts), then the composition root
// (compose.ts) started, and stopped on a signal.
import { buildAnalyzer } from './compose.ts';
import { loadAccess } from './loop/rest.ts';
import { settingsFromEnv } from './settings.ts';

const log = (message: string, fields: Record<string, unknown> = {}): void => {
  process.stdout.write(
    `${JSON.stringify({ time: new Date().toISOString(), component: 'analyzer', msg: message, ...fields })}\n`,
  );
};

async function main(): Promise<void> {
  const settings = settingsFromEnv(process.env);
  const analyzer = buildAnalyzer(loadAccess(), settings, log);
  analyzer.start();
  log('analyzer started', {
    identity: settings.identity,
    prometheus: settings.prometheus.url,
    policies: Object.keys(settings.policies),
  });
  const stop = (signal: string): void => {
    log('shutting down', { signal });
    void analyzer.stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) {
  main().catch((error: unknown) => {
    process.stderr.write(`weir analyzer: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
