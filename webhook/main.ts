// The webhook process: read settings from the environment, listen over HTTPS, stop cleanly.
import { buildApp } from './app.ts';

export interface WebhookSettings {
  certFile: string;
  keyFile: string;
  host: string;
  port: number;
  weirNamespace?: string;
}

/** Reads settings from the environment; a missing or bad value is an error that names it. */
export function settingsFromEnv(env: NodeJS.ProcessEnv): WebhookSettings {
  const certFile = env.WEIR_TLS_CERT;
  const keyFile = env.WEIR_TLS_KEY;
  if (!certFile || !keyFile) throw new Error('WEIR_TLS_CERT and WEIR_TLS_KEY must name the serving certificate and key files');
  const port = Number(env.WEIR_PORT ?? '8443');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`WEIR_PORT=${env.WEIR_PORT} is not a port number`);
  return { certFile, keyFile, port, host: env.WEIR_HOST ?? '0.0.0.0', ...(env.WEIR_NAMESPACE ? { weirNamespace: env.WEIR_NAMESPACE } : {}) };
}

async function main(): Promise<void> {
  const settings = settingsFromEnv(process.env);
  const app = buildApp({ tls: { certFile: settings.certFile, keyFile: settings.keyFile }, ...(settings.weirNamespace ? { weirNamespace: settings.weirNamespace } : {}) });
  const stop = (signal: string): void => {
    app.log.info({ signal }, 'shutting down');
    app.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await app.listen({ host: settings.host, port: settings.port });
}

main().catch((error: unknown) => {
  process.stderr.write(`weir webhook: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
