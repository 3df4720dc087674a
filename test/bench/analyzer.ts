// Analyzer benchmark: N releases at once on a local cluster of its own, driven by one analyzer.
import { AppsV1Api, KubeConfig } from '@kubernetes/client-node';
import { benchRouting, down, up, waitFor } from '../cluster/cluster.ts';
import type { ClusterState } from '../cluster/cluster.ts';
import { deployment, jsonPatch, service } from '../helpers/kube.ts';
import { analyzerMetric as metric, followObjects } from '../helpers/release.ts';

export interface AnalyzerResult {
  releases: number;
  queriesPerInterval: number;
  writesPerStep: number;
  lagP50: number;
  lagP99: number;
  rssMiB: number;
  seconds: number;
  badToZeroSeconds: number;
}

const pauseMs = 5000;
const intervalMs = 2000;
const annotations = {
  'weir.dev/step-pause': '5s',
  'weir.dev/analysis-interval': '2s',
  'weir.dev/min-requests': '1',
  'weir.dev/drain': '1s',
};

/** Every canary-weight change of every VirtualService in a namespace, with the time it was seen. */
export async function watchWeights(
  kc: KubeConfig,
  ns: string,
): Promise<{ changes: Map<string, { weight: number; at: number }[]>; ends: string[]; stop: () => void }> {
  const changes = new Map<string, { weight: number; at: number }[]>();
  // Each time the watch ended and was started again, and why: changes in between were not seen.
  const ends: string[] = [];
  type Routed = {
    metadata: { name: string };
    spec: { http: { route: { destination: { subset: string }; weight?: number }[] }[] };
  };
  const stop = await followObjects<Routed>(
    kc,
    `/apis/networking.istio.io/v1/namespaces/${ns}/virtualservices`,
    (obj) => {
      const weight = obj.spec.http[0]?.route.find((r) => r.destination.subset === 'canary')?.weight ?? 0;
      const list = changes.get(obj.metadata.name) ?? [];
      if (list[list.length - 1]?.weight !== weight) list.push({ weight, at: Date.now() });
      changes.set(obj.metadata.name, list);
    },
    {},
    (error) => ends.push(error instanceof Error ? error.message.slice(0, 60) : 'ended by the server'),
  );
  return { changes, ends, stop };
}

export const percentile = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? NaN;

async function phases(apps: AppsV1Api, ns: string): Promise<string[]> {
  const list = await apps.listNamespacedDeployment({ namespace: ns, labelSelector: 'bench=weir' });
  return list.items.map((d) => d.metadata?.annotations?.['weir.dev/phase'] ?? '');
}

export async function kubectlApply(state: ClusterState, ns: string, items: unknown[]): Promise<void> {
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => {
    const child = execFile(
      `${state.binDir}/kubectl`,
      ['--kubeconfig', state.kubeconfig, 'apply', '-n', ns, '-f', '-'],
      { maxBuffer: 64 * 1024 * 1024 },
      (e) => (e ? reject(new Error(e.message)) : resolve()),
    );
    child.stdin?.end(JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  });
}

async function once(state: ClusterState, kc: KubeConfig, n: number): Promise<AnalyzerResult> {
  const apps = kc.makeApiClient(AppsV1Api);
  const ns = `bench-${n}`;
  await kubectlApply(state, 'default', [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'weir.dev/canary': 'enabled' } } },
  ]);
  const names = Array.from({ length: n }, (_, i) => `app-${i}`);
  await kubectlApply(
    state,
    ns,
    names.flatMap((name) => [
      service(name, { rps: 4 }),
      { ...deployment(name, { replicas: 1, annotations }), metadata: { name, annotations, labels: { bench: 'weir' } } },
    ]),
  );
  await waitFor(
    `${n} Deployments available`,
    async () =>
      (await apps.listNamespacedDeployment({ namespace: ns })).items.filter((d) => d.status?.availableReplicas === 1)
        .length === n,
    300_000,
    1000,
  );
  const weights = await watchWeights(kc, ns);
  const [queries0, writes0] = [
    await metric(state.analyzerUrl ?? '', 'weir_prometheus_query_duration_seconds_count'),
    await metric(state.analyzerUrl ?? '', 'weir_api_writes_total'),
  ];
  const started = Date.now();
  const patch = [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'example.com/app:v2' }];
  for (let i = 0; i < n; i += 20)
    await Promise.all(
      names
        .slice(i, i + 20)
        .map((name) => apps.patchNamespacedDeployment({ namespace: ns, name, body: patch }, jsonPatch)),
    );
  await waitFor(
    `${n} releases promoted`,
    async () => (await phases(apps, ns)).every((p) => p === 'Stable'),
    600_000,
    1000,
  );
  const seconds = (Date.now() - started) / 1000;
  const [queries1, writes1, rss] = [
    await metric(state.analyzerUrl ?? '', 'weir_prometheus_query_duration_seconds_count'),
    await metric(state.analyzerUrl ?? '', 'weir_api_writes_total'),
    await metric(state.analyzerUrl ?? '', 'weir_analyzer_process_resident_memory_bytes'),
  ];
  weights.stop();
  const lags: number[] = [];
  for (const list of weights.changes.values()) {
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1];
      const cur = list[i];
      if (prev && cur && prev.weight > 0 && prev.weight < 100 && cur.weight > prev.weight)
        lags.push((cur.at - prev.at - pauseMs) / 1000);
    }
  }
  return {
    releases: n,
    queriesPerInterval: (queries1 - queries0) / ((seconds * 1000) / intervalMs),
    writesPerStep: (writes1 - writes0) / (n * 3),
    lagP50: percentile(lags, 0.5),
    lagP99: percentile(lags, 0.99),
    rssMiB: rss / 2 ** 20,
    seconds,
    badToZeroSeconds: 0,
  };
}

/** From the first canary weight of a version that fails every request, to 0 % canary weight. */
async function badToZero(state: ClusterState, kc: KubeConfig): Promise<number> {
  const apps = kc.makeApiClient(AppsV1Api);
  const ns = 'bench-bad';
  await kubectlApply(state, 'default', [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'weir.dev/canary': 'enabled' } } },
  ]);
  await kubectlApply(state, ns, [
    service('bad', { rps: 50 }),
    {
      ...deployment('bad', { replicas: 2, annotations }),
      metadata: { name: 'bad', annotations, labels: { bench: 'weir' } },
    },
  ]);
  await waitFor(
    'bad available',
    async () => (await apps.readNamespacedDeployment({ namespace: ns, name: 'bad' })).status?.availableReplicas === 2,
    120_000,
  );
  const weights = await watchWeights(kc, ns);
  await apps.patchNamespacedDeployment(
    {
      namespace: ns,
      name: 'bad',
      body: [{ op: 'add', path: '/spec/template/metadata/annotations', value: { 'sim.weir.dev/error-rate': '1' } }],
    },
    jsonPatch,
  );
  await waitFor(
    'weight back to 0',
    async () => {
      const list = weights.changes.get('weir-bad') ?? [];
      return list.some((c) => c.weight > 0) && list[list.length - 1]?.weight === 0;
    },
    120_000,
    200,
  );
  weights.stop();
  const list = weights.changes.get('weir-bad') ?? [];
  const first = list.find((c) => c.weight > 0);
  const zero = list[list.length - 1];
  return first && zero ? (zero.at - first.at) / 1000 : NaN;
}

export async function benchAnalyzer(sizes: number[]): Promise<AnalyzerResult[]> {
  const state = await up({ log: (l) => process.stderr.write(`[cluster] ${l}\n`), meshRouting: benchRouting() });
  try {
    const kc = new KubeConfig();
    kc.loadFromFile(state.kubeconfig);
    const results: AnalyzerResult[] = [];
    for (const n of sizes) {
      process.stderr.write(`[bench] ${n} releases\n`);
      results.push(await once(state, kc, n));
    }
    const bad = await badToZero(state, kc);
    for (const r of results) r.badToZeroSeconds = bad;
    return results;
  } finally {
    await down();
  }
}
