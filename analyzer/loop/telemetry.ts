// The analyzer's own metrics, on its own prom-client registry, and its HTTP endpoints.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { phases } from '../../contract/names.ts';
import type { Phase } from '../../contract/names.ts';

export class Telemetry {
  readonly registry = new Registry();
  readonly phase = new Gauge({
    name: 'weir_release_phase',
    help: '1 for the phase each guarded Deployment is in',
    labelNames: ['namespace', 'deployment', 'phase'],
    registers: [this.registry],
  });
  readonly weight = new Gauge({
    name: 'weir_canary_weight',
    help: 'Canary weight, in percent',
    labelNames: ['namespace', 'deployment'],
    registers: [this.registry],
  });
  readonly checks = new Counter({
    name: 'weir_checks_total',
    help: 'Analysis checks by result',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly promotions = new Counter({
    name: 'weir_promotions_total',
    help: 'Releases promoted',
    registers: [this.registry],
  });
  readonly rollbacks = new Counter({
    name: 'weir_rollbacks_total',
    help: 'Releases rolled back',
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'weir_reconcile_duration_seconds',
    help: 'Time to reconcile every active release once',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: 'weir_reconcile_errors_total',
    help: 'Reconciles of one release that failed',
    registers: [this.registry],
  });
  readonly queryDuration = new Histogram({
    name: 'weir_prometheus_query_duration_seconds',
    help: 'Prometheus query duration',
    labelNames: ['result'],
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
    registers: [this.registry],
  });
  readonly apiDuration = new Histogram({
    name: 'weir_api_request_duration_seconds',
    help: 'Time the Kubernetes API took to answer a request outside the watches',
    labelNames: ['method', 'resource'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly apiWrites = new Counter({
    name: 'weir_api_writes_total',
    help: 'Writes to the Kubernetes API, by action',
    labelNames: ['action'],
    registers: [this.registry],
  });
  readonly unguarded = new Counter({
    name: 'weir_unguarded_updates_total',
    help: 'Pod template updates admitted without weir (webhook unreachable)',
    registers: [this.registry],
  });
  readonly certificateExpiry = new Gauge({
    name: 'weir_webhook_certificate_expiry_timestamp_seconds',
    help: "When the webhook's serving certificate kept by the analyzer ends (runtime TLS)",
    registers: [this.registry],
  });
  readonly certificateSteps = new Counter({
    name: 'weir_webhook_certificate_steps_total',
    help: 'Steps taken to keep the webhook certificate: createAuthority, trustAuthority, issueServing',
    labelNames: ['step'],
    registers: [this.registry],
  });
  readonly queueWait = new Histogram({
    name: 'weir_queue_wait_seconds',
    help: 'How long a release waited past its due time (a pause or check ending, a change seen) for a pass to take it',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'weir_queue_depth',
    help: 'Releases queued for a pass: due now, or waiting for a pause, a check or a retry backoff',
    registers: [this.registry],
  });

  readonly cachedObjects = new Gauge({
    name: 'weir_cached_objects',
    help: "Objects in the analyzer's watch caches, by kind",
    labelNames: ['kind'],
    registers: [this.registry],
  });
  readonly apiRequests = new Counter({
    name: 'weir_api_requests_total',
    help: 'Requests the analyzer sent to the API server outside its watches, by method and resource',
    labelNames: ['method', 'resource'],
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'weir_leader',
    help: '1 while this analyzer is the leader',
    registers: [this.registry],
  });
  readonly notifications = new Counter({
    name: 'weir_notifications_total',
    help: 'Notifications by receiver and result: sent, failed (after its retries) or dropped (queue full)',
    labelNames: ['receiver', 'result'],
    registers: [this.registry],
  });
  readonly notificationQueue = new Gauge({
    name: 'weir_notification_queue_depth',
    help: 'Notifications waiting to be sent',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'weir_analyzer_' });
  }

  setPhase(namespace: string, deployment: string, phase: Phase): void {
    for (const p of phases) this.phase.set({ namespace, deployment, phase: p }, p === phase ? 1 : 0);
  }

  /**
   * Serves /metrics, /healthz (fails while the loop has not finished a pass for too long: a wedged
   * leader is restarted) and /readyz (ready once the watches have synced).
   */
  serve(host: string, port: number, ready: () => boolean, live: () => string | undefined = () => undefined): Server {
    const server = createServer((req, res) => {
      if (req.url === '/metrics') {
        this.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
          () => res.writeHead(500).end(),
        );
      } else if (req.url === '/healthz') {
        const wedged = live();
        res.writeHead(wedged === undefined ? 200 : 503).end(wedged ?? 'ok');
      } else if (req.url === '/readyz') res.writeHead(ready() ? 200 : 503).end(ready() ? 'ok' : 'watches not synced');
      else res.writeHead(404).end();
    });
    server.listen(port, host);
    return server;
  }
}
