// The webhook's HTTPS server: routes, metrics, TLS that follows its files on disk. It wires the
// pure pieces (review envelope, mutate) together and holds no decision of its own.
import { readFileSync, watchFile, unwatchFile } from 'node:fs';
import Fastify, { LogController } from 'fastify';
import type { FastifyInstance, FastifyServerOptions, FastifyError } from 'fastify';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { mutate } from './mutate.ts';
import { parseReview, allow } from './review.ts';

const logLevels = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity } as const;
/** pino's numeric order, so the hot path builds no log fields that would be dropped. */
const enabled = (level: keyof typeof logLevels, current: string): boolean =>
  logLevels[level] >= (logLevels[current as keyof typeof logLevels] ?? logLevels.info);

/** The API server accepts requests up to 3 MiB; a review carries the object and the old object. */
export const maxObjectBytes = 3 * 1024 * 1024;
export const bodyLimit = 2 * maxObjectBytes + 64 * 1024;

export interface AppOptions {
  tls: { certFile: string; keyFile: string; reloadIntervalMs?: number };
  weirNamespace?: string;
  logger?: FastifyServerOptions['logger'];
  now?: () => Date;
  /** True while the process drains before exit: not ready, yet still answering reviews. */
  draining?: () => boolean;
}

function webhookMetrics(registry: Registry): {
  admissions: Counter<'operation' | 'outcome'>;
  latency: Histogram<'operation'>;
  reloads: Counter<'result'>;
} {
  collectDefaultMetrics({ register: registry, prefix: 'weir_webhook_' });
  return {
    admissions: new Counter({
      name: 'weir_admissions_total',
      help: 'Admission reviews answered, by operation and outcome',
      labelNames: ['operation', 'outcome'],
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'weir_admission_duration_seconds',
      help: 'Time to answer an admission review',
      labelNames: ['operation'],
      registers: [registry],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    }),
    reloads: new Counter({
      name: 'weir_webhook_certificate_reloads_total',
      help: 'Serving certificate reloads from disk, by result',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}

const reviewSchema = {
  type: 'object',
  properties: {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    response: {
      type: 'object',
      properties: {
        uid: { type: 'string' },
        allowed: { type: 'boolean' },
        patchType: { type: 'string' },
        patch: { type: 'string' },
        warnings: { type: 'array', items: { type: 'string' } },
      },
    },
  },
} as const;
const errorSchema = { type: 'object', properties: { error: { type: 'string' }, message: { type: 'string' } } } as const;
const textSchema = { type: 'string' } as const;

/** The operations of AdmissionReview v1: the only values the `operation` label takes, besides `other`. */
const knownOperations = new Set(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);

/** Certificate rotation without a restart: new connections get the new pair. Returns the unwatch. */
function followCertificates(
  app: FastifyInstance,
  tls: AppOptions['tls'],
  readTls: () => { cert: Buffer; key: Buffer },
  reloads: Counter<'result'>,
): () => void {
  const reload = (): void => {
    try {
      const pair = readTls();
      (app.server as unknown as { setSecureContext(o: object): void }).setSecureContext({
        ...pair,
        minVersion: 'TLSv1.2',
      });
      reloads.inc({ result: 'ok' });
      app.log.info({ certFile: tls.certFile }, 'serving certificate reloaded');
    } catch (error) {
      reloads.inc({ result: 'error' });
      app.log.error({ err: error }, 'serving certificate reload failed; keeping the previous one');
    }
  };
  const interval = tls.reloadIntervalMs ?? 5000;
  watchFile(tls.certFile, { interval }, reload);
  watchFile(tls.keyFile, { interval }, reload);
  return () => {
    unwatchFile(tls.certFile, reload);
    unwatchFile(tls.keyFile, reload);
  };
}

/** Builds the server without listening, so tests can `inject` or listen on port 0. */
export function buildApp(options: AppOptions): FastifyInstance {
  const readTls = (): { cert: Buffer; key: Buffer } => ({
    cert: readFileSync(options.tls.certFile),
    key: readFileSync(options.tls.keyFile),
  });
  const app = Fastify({
    https: { ...readTls(), minVersion: 'TLSv1.2' },
    bodyLimit,
    logger: options.logger ?? { level: 'info' },
    // One structured line per admission (below) says more than fastify's per-request lines.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
  });
  const registry = new Registry();
  const metrics = webhookMetrics(registry);
  const now = options.now ?? ((): Date => new Date());
  let closing = false;

  const stopFollowing = followCertificates(app, options.tls, readTls, metrics.reloads);
  app.addHook('onClose', (_app, done) => {
    closing = true;
    stopFollowing();
    done();
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode ?? 500;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    else request.log.warn({ reason: error.message }, 'bad request');
    return reply.code(status).send({ error: error.code ?? 'Error', message: error.message });
  });

  app.post(
    '/mutate',
    { schema: { body: { type: 'object' }, response: { 200: reviewSchema, 400: errorSchema } } },
    async (request, reply) => {
      const started = process.hrtime.bigint();
      const parsed = parseReview(request.body);
      if (!parsed.ok) {
        metrics.admissions.inc({ operation: 'unknown', outcome: 'rejected' });
        request.log.warn({ reason: parsed.error }, 'malformed AdmissionReview');
        return reply.code(400).send({ error: 'BadAdmissionReview', message: parsed.error });
      }
      const req = parsed.request;
      const result = mutate(req, {
        now: now(),
        ...(options.weirNamespace ? { weirNamespace: options.weirNamespace } : {}),
      });
      const level = result.outcome === 'invalid' ? 'warn' : result.outcome === 'patched' ? 'info' : 'debug';
      if (enabled(level, request.log.level)) {
        const fields = {
          uid: req.uid,
          namespace: req.namespace,
          name: req.name,
          operation: req.operation,
          dryRun: req.dryRun ?? false,
          outcome: result.outcome,
          reason: result.reason,
        };
        request.log[level](
          fields,
          result.outcome === 'invalid' ? 'admitted a Deployment weir cannot read' : 'admission',
        );
      }
      // A label value from the request body is bounded: anyone who reaches the port must not mint series.
      const operation = knownOperations.has(req.operation) ? req.operation : 'other';
      metrics.admissions.inc({ operation, outcome: result.outcome });
      metrics.latency.observe({ operation }, Number(process.hrtime.bigint() - started) / 1e9);
      return allow(req.uid, result.patch, result.warnings);
    },
  );

  app.get('/healthz', { schema: { response: { 200: textSchema } } }, async () => 'ok');
  app.get('/readyz', { schema: { response: { 200: textSchema, 503: textSchema } } }, async (_req, reply) =>
    closing || options.draining?.() === true ? reply.code(503).send('shutting down') : 'ok',
  );
  app.get('/metrics', { schema: { response: { 200: textSchema } } }, async (_req, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });
  return app;
}
