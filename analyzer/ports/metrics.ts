// The metrics provider port: the one interface the analyzer asks metrics through. Prometheus is
// its adapter (adapters/prometheus.ts).
export interface RequestCounts {
  requests: number;
  errors: number;
}

/** The one interface the analyzer asks metrics through. */
export interface MetricsProvider {
  /** Requests and 5xx per `namespace/workload` over the window, for every workload, in one query. */
  requestCounts(windowSeconds: number): Promise<Map<string, RequestCounts>>;
  /**
   * Requests and 5xx per `namespace/workload` since each series began (the counters themselves),
   * for every workload, in one query: differences between two checks are exact, whatever scrapes
   * were missed in between (the sequential test's windows, issue 14).
   */
  requestTotals(): Promise<Map<string, RequestCounts>>;
  /**
   * Requests callers sent to a Service that never reached a healthy pod (Envoy's UH, UF, URX, NR, NC,
   * reported by the source side only), per `namespace/service`: over the window, or since each
   * series began when no window is given.
   */
  callerFailures(windowSeconds?: number): Promise<Map<string, number>>;
  /** A PromQL query that yields one number; undefined when it yields nothing or NaN. */
  value(query: string): Promise<number | undefined>;
}

/** The key of one workload's counts: `namespace/workload`. */
export const workloadKey = (namespace: string, workload: string): string => `${namespace}/${workload}`;
