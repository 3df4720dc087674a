// The webhook process: read settings from the environment, listen over HTTPS, stop cleanly.
import { existsSync } from 'node:fs';
import { buildApp } from './app.ts';

export interface WebhookSettings {
  certFile: string;
  keyFile: string;
  host: string;
  port: number;
  weirNamespace?: string;
  /** After SIGTERM: not ready, still serving, for this long, so endpoints drop the pod first. */
  drainMs: number;
  /** pino level of the request log (`LOG_LEVEL`, default info). */
  logLevel: string;
}

/** Reads settings from the environment; a missing or bad value is an error that names it. */
export function settingsFromEnv(env: NodeJS.ProcessEnv): WebhookSettings {
  const certFile = env.WEIR_TLS_CERT;
  const keyFile = env.WEIR_TLS_KEY;
  if (!certFile || !keyFile)
    throw new Error('WEIR_TLS_CERT and WEIR_TLS_KEY must name the serving certificate and key files');
  const port = Number(env.WEIR_PORT ?? '8443');
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`WEIR_PORT=${env.WEIR_PORT} is not a port number`);
  const drainSeconds = Number(env.WEIR_DRAIN_SECONDS ?? '10');
  if (!Number.isFinite(drainSeconds) || drainSeconds < 0)
    throw new Error(`WEIR_DRAIN_SECONDS=${env.WEIR_DRAIN_SECONDS} is not a number of seconds`);
  return {
    certFile,
    keyFile,
    port,
    host: env.WEIR_HOST ?? '0.0.0.0',
    drainMs: drainSeconds * 1000,
    logLevel: env.LOG_LEVEL ?? 'info',
    ...(env.WEIR_NAMESPACE ? { weirNamespace: env.WEIR_NAMESPACE } : {}),
  };
}

/**
 * Under runtime TLS (ADR 13) the certificate appears once the analyzer has issued it and the
 * kubelet has synced the Secret: wait for it rather than crash-loop.
 */
async function certificateFiles(files: string[]): Promise<void> {
  for (let waited = 0; !files.every((f) => existsSync(f)); waited++) {
    if (waited % 30 === 0)
      process.stdout.write(
        `${JSON.stringify({ level: 30, time: Date.now(), msg: 'waiting for the serving certificate', files })}\n`,
      );
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function main(): Promise<void> {
  const settings = settingsFromEnv(process.env);
  await certificateFiles([settings.certFile, settings.keyFile]);
  let draining = false;
  const app = buildApp({
    tls: { certFile: settings.certFile, keyFile: settings.keyFile },
    draining: () => draining,
    logger: { level: settings.logLevel },
    ...(settings.weirNamespace ? { weirNamespace: settings.weirNamespace } : {}),
  });
  // Every rollout of weir itself: report not-ready and keep answering until the API server's
  // endpoints have moved on, then close (finishing what is in flight) and exit.
  const stop = (signal: string): void => {
    if (draining) return;
    draining = true;
    app.log.info({ signal, drainMs: settings.drainMs }, 'draining: not ready, still serving');
    setTimeout(() => {
      app.log.info('drained; shutting down');
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    }, settings.drainMs);
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await app.listen({ host: settings.host, port: settings.port });
}

main().catch((error: unknown) => {
  process.stderr.write(`weir webhook: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
