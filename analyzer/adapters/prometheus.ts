// Prometheus behind the MetricsProvider interface: instant queries over its HTTP API with undici.
// No data is `undefined`, never 0; an unreachable Prometheus is an error, never a verdict.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { workloadKey } from '../ports/metrics.ts';
import type { MetricsProvider, RequestCounts } from '../ports/metrics.ts';

export interface PrometheusOptions {
  url: string;
  timeoutMs?: number;
  bearerToken?: string;
  basicAuth?: { username: string; password: string };
  caFile?: string;
  /** Called with each query's duration in seconds and whether it succeeded. */
  observe?: (seconds: number, ok: boolean) => void;
}

interface VectorResult {
  status: string;
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

/**
 * What each series of `selection` gained in the last `windowSeconds`. A proxy creates a series at
 * the first request with its labels, so a new canary's 5xx series is born after its 2xx series,
 * inside a check's window; `increase()` counts nothing before a series' first sample (and nothing
 * at all from one sample), which dropped exactly a new canary's first errors. A series with no
 * sample for a while before the window is such a newborn: it counts whole, from zero.
 * (A while: an instant query's 5 min lookback, or the window if longer, so that a Prometheus
 * outage the window covers does not make every series look newborn. The instant selector where it
 * is enough: it reads one sample a series, a range of 5 min reads them all.)
 */
export function inWindow(selection: string, windowSeconds: number): string {
  const w = Math.max(1, Math.round(windowSeconds));
  const before = w <= 300 ? `${selection} offset ${w}s` : `last_over_time(${selection}[${w}s] offset ${w}s)`;
  return `(increase(${selection}[${w}s]) and ${before}) or (${selection} unless ${before})`;
}

export class PrometheusProvider implements MetricsProvider {
  private readonly dispatcher: Agent;
  private readonly headers: Record<string, string> = {};
  private readonly options: PrometheusOptions;

  constructor(options: PrometheusOptions) {
    this.options = options;
    this.dispatcher = new Agent({
      connect: options.caFile ? { ca: readFileSync(options.caFile) } : {},
      headersTimeout: options.timeoutMs ?? 10_000,
      bodyTimeout: options.timeoutMs ?? 10_000,
    });
    if (options.bearerToken) this.headers.authorization = `Bearer ${options.bearerToken}`;
    else if (options.basicAuth) {
      const { username, password } = options.basicAuth;
      this.headers.authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    }
  }

  private async query(promql: string): Promise<VectorResult['data']> {
    const started = process.hrtime.bigint();
    let ok = false;
    try {
      const timeout = this.options.timeoutMs ?? 10_000;
      const params = new URLSearchParams({ query: promql, timeout: `${Math.ceil(timeout / 1000)}s` });
      const url = `${this.options.url.replace(/\/$/, '')}/api/v1/query?${params.toString()}`;
      const res = await request(url, {
        dispatcher: this.dispatcher,
        headers: this.headers,
        signal: AbortSignal.timeout(timeout),
      });
      const text = await res.body.text();
      let body: VectorResult;
      try {
        body = JSON.parse(text) as VectorResult;
      } catch {
        throw new Error(`Prometheus answered ${res.statusCode} with a body that is not JSON`);
      }
      if (res.statusCode !== 200 || body.status !== 'success')
        throw new Error(`Prometheus answered ${res.statusCode}: ${body.error ?? text.slice(0, 200)}`);
      ok = true;
      return body.data;
    } finally {
      this.options.observe?.(Number(process.hrtime.bigint() - started) / 1e9, ok);
    }
  }

  async requestCounts(windowSeconds: number): Promise<Map<string, RequestCounts>> {
    return this.byWorkload(inWindow('istio_requests_total{reporter="destination"}', windowSeconds));
  }

  async requestTotals(): Promise<Map<string, RequestCounts>> {
    return this.byWorkload('istio_requests_total{reporter="destination"}');
  }

  async callerFailures(windowSeconds?: number): Promise<Map<string, number>> {
    const selection = 'istio_requests_total{reporter="source",response_flags=~"UH|UF|URX|NR|NC"}';
    const data = await this.query(
      'sum by (destination_service_namespace, destination_service_name) ' +
        `(${windowSeconds === undefined ? selection : inWindow(selection, windowSeconds)})`,
    );
    const failures = new Map<string, number>();
    for (const r of data?.result ?? []) {
      const n = Number(r.value[1]);
      const key = workloadKey(r.metric.destination_service_namespace ?? '', r.metric.destination_service_name ?? '');
      if (Number.isFinite(n)) failures.set(key, (failures.get(key) ?? 0) + n);
    }
    return failures;
  }

  /** Requests and 5xx of a selection of `istio_requests_total`, summed per workload. */
  private async byWorkload(selection: string): Promise<Map<string, RequestCounts>> {
    const data = await this.query(
      `sum by (destination_workload_namespace, destination_workload, response_code) (${selection})`,
    );
    const counts = new Map<string, RequestCounts>();
    for (const r of data?.result ?? []) {
      const key = workloadKey(r.metric.destination_workload_namespace ?? '', r.metric.destination_workload ?? '');
      const n = Number(r.value[1]);
      if (!Number.isFinite(n)) continue;
      const c = counts.get(key) ?? { requests: 0, errors: 0 };
      c.requests += n;
      if ((r.metric.response_code ?? '').startsWith('5')) c.errors += n;
      counts.set(key, c);
    }
    return counts;
  }

  async value(promql: string): Promise<number | undefined> {
    const data = await this.query(promql);
    if (data?.resultType === 'scalar') {
      const scalar = (data as unknown as { result: [number, string] }).result;
      const n = Number(scalar[1]);
      return Number.isFinite(n) ? n : undefined;
    }
    const first = data?.result[0];
    const n = first ? Number(first.value[1]) : NaN;
    return Number.isFinite(n) ? n : undefined;
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
