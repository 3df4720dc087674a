// The Prometheus adapter's windowed counts, judged by a real Prometheus scraping counters this test
// controls. A proxy creates a series at its first request with a given label set: a new canary's
// 5xx series is born after its 2xx series, inside the window a check looks at. `increase()` needs
// two samples of a series and counts nothing before its first one, so on its own it drops exactly
// the first errors of a new canary — the checks that matter most.
import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Registry } from 'prom-client';
import { PrometheusProvider } from '../../analyzer/adapters/prometheus.ts';
import { ownPrometheus } from '../helpers/release.ts';
import { waitFor } from '../cluster/cluster.ts';

const registry = new Registry();
const requests = new Counter({
  name: 'istio_requests_total',
  help: 'Istio standard metric (the labels weir reads).',
  labelNames: [
    'reporter',
    'destination_workload_namespace',
    'destination_workload',
    'destination_service_namespace',
    'destination_service_name',
    'response_code',
    'response_flags',
  ],
  registers: [registry],
});
const canary = (code: string) => ({
  reporter: 'destination',
  destination_workload_namespace: 'shop',
  destination_workload: 'web-canary',
  destination_service_namespace: 'shop',
  destination_service_name: 'web',
  response_code: code,
  response_flags: '-',
});
const unreachable = {
  reporter: 'source',
  destination_workload_namespace: 'unknown',
  destination_workload: 'unknown',
  destination_service_namespace: 'shop',
  destination_service_name: 'web',
  response_code: '503',
  response_flags: 'UH',
};

const exporter = createServer((_req, res) => {
  void registry.metrics().then((text) => {
    res.setHeader('content-type', registry.contentType);
    res.end(text);
  });
});
await new Promise<void>((resolve) => exporter.listen(0, '127.0.0.1', resolve));
const prometheus = await ownPrometheus(`127.0.0.1:${(exporter.address() as AddressInfo).port}`);
const provider = new PrometheusProvider({ url: prometheus.url });
t.teardown(async () => {
  await provider.close();
  await prometheus.remove();
  await new Promise((resolve) => exporter.close(resolve));
});

// A steady canary answering 200s, 10 a second.
requests.inc(canary('200'), 0);
const steady = setInterval(() => requests.inc(canary('200')), 100);
t.teardown(() => clearInterval(steady));

/** Waits until Prometheus holds at least `n` samples of a series in the last 30 s. */
const scraped = (selector: string, n: number): Promise<void> =>
  waitFor(
    `${n} samples of ${selector}`,
    async () => ((await provider.value(`count_over_time(${selector}[30s])`)) ?? 0) >= n,
    30_000,
    200,
  );

const sel = (labels: Record<string, string>): string =>
  `istio_requests_total{${Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',')}}`;

t.test('a series born inside the window is counted from zero, not from its first sample', async (t) => {
  await scraped(sel(canary('200')), 6);
  // The first errors arrive at once and no more follow: the series is born holding all of them.
  const born = Date.now();
  requests.inc(canary('500'), 7);
  requests.inc(unreachable, 4);
  await scraped(sel(canary('500')), 3);
  await scraped(sel(unreachable), 3);
  // A window that began a little before the birth, however long the scrapes took to arrive.
  const since = (): number => Math.ceil((Date.now() - born) / 1000) + 2;
  const counts = (await provider.requestCounts(since())).get('shop/web-canary');
  t.equal(counts?.errors, 7, "the new series' first errors are in the window");
  t.ok((counts?.requests ?? 0) > 7 + 20, 'the steady 200s are counted as well');
  t.equal((await provider.callerFailures(since())).get('shop/web'), 4, "so are the callers' first failures");
  // A window longer than Prometheus' 5 min lookback asks whether a series existed before it differently.
  t.equal((await provider.requestCounts(400)).get('shop/web-canary')?.errors, 7, 'in a window of 400 s too');
});

t.test('a series older than the window counts only what it gained in the window', async (t) => {
  // The 500 series is at 7 and stays there past a whole window: none of it is in the next one.
  await waitFor(
    'a window with no new errors',
    async () => (await provider.requestCounts(5)).get('shop/web-canary')?.errors === 0,
    30_000,
    500,
  );
  t.equal((await provider.callerFailures(5)).get('shop/web') ?? 0, 0, "nor old callers' failures");
  requests.inc(canary('500'), 3);
  await waitFor('the 3 scraped', async () => (await provider.value(sel(canary('500')))) === 10, 30_000, 200);
  const errors = (await provider.requestCounts(5)).get('shop/web-canary')?.errors ?? 0;
  // increase() extrapolates to the window's edges: about 3, never the series' 10.
  t.ok(errors >= 2.5 && errors <= 5, `the 3 new errors, not the series' total (${errors})`);
});
