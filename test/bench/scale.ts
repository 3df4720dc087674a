// Scale benchmark (issue 13): a cluster with many Deployments, a share of them guarded, and N
// releases at once, driven by one analyzer of the working tree. What is measured is the analyzer's
// cost — memory, API reads, Prometheus queries, step lag — against the same run's baselines: its
// own RSS in an empty cluster, and its reads with the polling seam (the design before ADR 14/16).
import { copyFile, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, KubeConfig } from '@kubernetes/client-node';
import type { V1Deployment } from '@kubernetes/client-node';
import { parseStatus } from '../../contract/status.ts';
import { pooled } from '../../analyzer/loop/reconcile.ts';
import { benchRouting, down, up, waitFor } from '../cluster/cluster.ts';
import type { ClusterState } from '../cluster/cluster.ts';
import { deployment, jsonPatch, service } from '../helpers/kube.ts';
import { analyzerMetric as metric, apiReads, followObjects, metricSamples, startAnalyzer } from '../helpers/release.ts';
import type { Analyzer } from '../helpers/release.ts';
import { kubectlApply, percentile, watchWeights } from './analyzer.ts';

export interface ScaleOptions {
  /** Deployments in the cluster, guarded or not. */
  deployments: number;
  /** Of them, in opted-in namespaces with one replica each. */
  guarded: number;
  /** Releases started at once, one run each, in this order. */
  releases: number[];
}

export interface ScaleRow {
  releases: number;
  /** GETs and LISTs per second outside the watches (the Lease excluded) while every release holds a step. */
  readsPerSecond: number;
  queriesPerInterval: number;
  /** End of a pause to the next weight, at 10 → 50 % (after a check at 10 %) and at 50 → 100 %. */
  lag10: { p50: number; p99: number };
  lag50: { p50: number; p99: number };
  /** The loop's own part: from the moment a step could advance (pause over, latest check passed) to its next weight. */
  loop10: { p50: number; p99: number };
  loop50: { p50: number; p99: number };
  /** The analyzer's largest RSS seen during the run. */
  peakMiB: number;
  /** A canary failing every request, started while the N releases hold: first weight to 0 %. */
  badToZeroSeconds: number;
  /** Releases that reached Stable within the run's time limit. */
  promoted: number;
  /** Cores kept busy, on average over the run, by the analyzer and by each part of the cluster. */
  cores: Record<string, number>;
  /** The API server's mean answer time to the analyzer's writes over the run (ms). */
  writeMs: number;
  /** A release's pass that failed (and was retried after a backoff that doubles, up to 30 s). */
  failedPasses: number;
  /** The busiest 10 s of the run: cores kept busy by every part together, and by the API server. */
  busiest: { all: number; apiserver: number };
  /** Due releases waiting for a pass to take them, and passes' durations, p99 (s; bucket bounds). */
  queueWaitP99: number;
  passP99: number;
}

export interface ScaleResult {
  options: ScaleOptions;
  idleEmptyMiB: number;
  idleFullMiB: number;
  cachedDeployments: number;
  rows: ScaleRow[];
  polling?: { releases: number; readsPerSecond: number; newReadsPerSecond: number };
  /** The first N whose run did not finish on this machine, and why. */
  notCarried?: { releases: number; why: string };
  /** Annotation writes to guarded Deployments the API server answered per second, 16 at a time. */
  writeCeiling?: number;
}

const pauseMs = 60_000;
export const scaleIntervalMs = 10_000;
const annotations = {
  'weir.dev/step-pause': '60s',
  'weir.dev/analysis-interval': '10s',
  'weir.dev/min-requests': '1',
  'weir.dev/drain': '1s',
  // The loop is measured here, not the analysis: a quiet window holds the step instead of rolling back.
  'weir.dev/unjudged-limit': '30',
};
const perNamespace = 100;
const scope = 'bench-scale';

/** GETs and LISTs the analyzer sent outside its watches, the Lease excluded, all resources together. */
const reads = async (url: string): Promise<number> => Object.values(await apiReads(url)).reduce((sum, n) => sum + n, 0);

/** A process's resident memory from the kernel, in MiB: now (`VmRSS`) or its peak (`VmHWM`). */
async function memory(a: Analyzer, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${a.process.pid ?? 0}/status`, 'utf8');
  const kib = Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return kib / 1024;
}

/** Starts a new peak (Linux: writing 5 to clear_refs resets `VmHWM`), without asking the process anything. */
const resetPeak = (a: Analyzer): Promise<void> => writeFile(`/proc/${a.process.pid ?? 0}/clear_refs`, '5');

/** Idle RSS: after the analyzer has had a few resyncs to settle (V8 grows its heap lazily). */
async function idleRss(a: Analyzer): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 20_000));
  return memory(a, 'VmRSS');
}

const guardedNamespace = (i: number): string => `${scope}-guarded-${Math.floor(i / perNamespace)}`;
const guardedName = (i: number): string => `app-${i}`;
/** The namespaces of the first `n` guarded Deployments. */
const guardedNamespaces = (n: number): string[] => [
  ...new Set(Array.from({ length: n }, (_, i) => guardedNamespace(i))),
];

async function populate(state: ClusterState, o: ScaleOptions, log: (l: string) => void): Promise<void> {
  const plain = o.deployments - o.guarded;
  for (let ns = 0; ns * 1000 < plain; ns++) {
    const name = `${scope}-plain-${ns}`;
    await kubectlApply(state, 'default', [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }]);
    const count = Math.min(1000, plain - ns * 1000);
    for (let i = 0; i < count; i += 500) {
      const items = Array.from({ length: Math.min(500, count - i) }, (_, j) =>
        deployment(`idle-${i + j}`, { replicas: 0 }),
      );
      await kubectlApply(state, name, items);
    }
    log(`${ns * 1000 + count} Deployments not under weir`);
  }
  for (let first = 0; first < o.guarded; first += perNamespace) {
    const ns = guardedNamespace(first);
    await kubectlApply(state, 'default', [
      {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: ns, labels: { 'weir.dev/canary': 'enabled', 'weir.dev/test-analyzer': scope } },
      },
    ]);
    const items = Array.from({ length: Math.min(perNamespace, o.guarded - first) }, (_, j) => {
      const name = guardedName(first + j);
      return [service(name, { rps: 2 }), deployment(name, { replicas: 1, annotations })];
    }).flat();
    await kubectlApply(state, ns, items);
  }
  log(`${o.guarded} guarded Deployments applied`);
}

async function available(apps: AppsV1Api, namespaces: string[], want: number): Promise<void> {
  await waitFor(
    `${want} guarded Deployments available`,
    async () => {
      let n = 0;
      for (const ns of namespaces)
        n += (await apps.listNamespacedDeployment({ namespace: ns })).items.filter(
          (d) => (d.status?.availableReplicas ?? 0) >= 1 && !d.metadata?.labels?.['weir.dev/canary-of'],
        ).length;
      return n >= want;
    },
    900_000,
    5000,
  );
}

/** Starts N releases (a new image each), 20 patches at a time. */
async function release(apps: AppsV1Api, n: number, image: string): Promise<void> {
  const patch = [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: image }];
  for (let i = 0; i < n; i += 20)
    await Promise.all(
      Array.from({ length: Math.min(20, n - i) }, (_, j) =>
        apps.patchNamespacedDeployment(
          { namespace: guardedNamespace(i + j), name: guardedName(i + j), body: patch },
          jsonPatch,
        ),
      ),
    );
}

type Weights = Awaited<ReturnType<typeof watchWeights>>;

type Change = { weight: number; at: number };

/** Every step that left weight `from` for a higher one: the route, and the two weight changes. */
function* stepsFrom(watches: Weights[], from: number): Generator<{ route: string; prev: Change; cur: Change }> {
  for (const w of watches)
    for (const [route, list] of w.changes)
      for (let i = 1; i < list.length; i++) {
        const prev = list[i - 1];
        const cur = list[i];
        if (prev && cur && prev.weight === from && cur.weight > prev.weight) yield { route, prev, cur };
      }
}

const p50p99 = (xs: number[]): { p50: number; p99: number } => ({
  p50: percentile(xs, 0.5),
  p99: percentile(xs, 0.99),
});

function lags(watches: Weights[], from: number): { p50: number; p99: number } {
  return p50p99([...stepsFrom(watches, from)].map(({ prev, cur }) => (cur.at - prev.at - pauseMs) / 1000));
}

/** The checks each release recorded (the records in its status annotation), by Deployment name, in order. */
type Checks = Map<string, { at: number; verdict: string }[]>;

async function watchChecks(kc: KubeConfig, ns: string): Promise<{ checks: Checks; stop: () => void }> {
  const checks: Checks = new Map();
  const stop = await followObjects<V1Deployment>(kc, `/apis/apps/v1/namespaces/${ns}/deployments`, (d) => {
    // The records ride along in every status write, so a check that advanced its step is seen too.
    const records = parseStatus(d.metadata?.annotations?.['weir.dev/status'])?.checks ?? [];
    const list = checks.get(d.metadata?.name ?? '') ?? [];
    for (const r of records) {
      const at = Date.parse(r.at);
      if (!list.some((c) => c.at === at)) list.push({ at, verdict: r.verdict });
    }
    list.sort((x, y) => x.at - y.at);
    checks.set(d.metadata?.name ?? '', list);
  });
  return { checks, stop };
}

/**
 * The loop's own lag: a step advances once its pause is over and its latest check passed; a quiet
 * canary's inconclusive checks make it wait for a passing one (the analysis, by design). From the
 * later of the two moments to the next weight.
 */
function loopLags(watches: Weights[], checks: Checks[], from: number): { p50: number; p99: number } {
  const all = new Map(checks.flatMap((c) => [...c]));
  const xs: number[] = [];
  for (const { route, prev, cur } of stepsFrom(watches, from)) {
    const pauseEnd = prev.at + pauseMs;
    // The step's checks: after its weight was set (the one that set it came before), up to the next.
    const step = (all.get(route.replace(/^weir-/, '')) ?? []).filter((c) => c.at > prev.at && c.at <= cur.at);
    const before = step.filter((c) => c.at <= pauseEnd).at(-1);
    const ready = before?.verdict === 'pass' ? pauseEnd : step.find((c) => c.at > pauseEnd && c.verdict === 'pass')?.at;
    if (ready !== undefined) xs.push((cur.at - ready) / 1000);
  }
  return p50p99(xs);
}

/** Routes whose canary weight is now `weight`, having changed since the watch began. */
const count = (watches: Weights[], test: (list: { weight: number }[]) => boolean): number =>
  watches.reduce((sum, w) => sum + [...w.changes.values()].filter(test).length, 0);
/** Every release's route has shown `weight` (releases started one after another move on at their own pace). */
const reached = (watches: Weights[], n: number, weight: number): boolean =>
  count(watches, (list) => list.some((c) => c.weight === weight)) >= n;
/** Promoted: the canary reached 100 % and traffic is back on the (new) stable subset. */
const finished = (list: { weight: number }[]): boolean =>
  list.some((c) => c.weight === 100) && list.at(-1)?.weight === 0;
/** Guarded Deployments whose release is over, either way, and drained; and of them, promoted (Stable). */
async function settled(
  apps: AppsV1Api,
  namespaces: string[],
): Promise<{ over: number; promoted: number; causes: Map<string, number> }> {
  const n = { over: 0, promoted: 0, causes: new Map<string, number>() };
  for (const namespace of namespaces)
    for (const d of (await apps.listNamespacedDeployment({ namespace })).items) {
      const a = d.metadata?.annotations ?? {};
      const done = a['weir.dev/phase'] === 'Stable' || a['weir.dev/phase'] === 'RolledBack';
      const drained = !(a['weir.dev/status'] ?? '').includes('drainingSince');
      if (!done || !drained || d.metadata?.labels?.['weir.dev/canary-of']) continue;
      n.over++;
      if (a['weir.dev/phase'] === 'Stable') n.promoted++;
      // Why each rollback happened, as the release recorded it: a healthy canary rolled back is news.
      const cause = parseStatus(a['weir.dev/status'])?.rollback?.cause ?? 'unknown';
      if (a['weir.dev/phase'] === 'RolledBack') n.causes.set(cause, (n.causes.get(cause) ?? 0) + 1);
    }
  return n;
}

/** One canary failing every request, in its own namespace, while the others hold: first weight to 0 %. */
async function badToZero(state: ClusterState, kc: KubeConfig, round: number): Promise<number> {
  const apps = kc.makeApiClient(AppsV1Api);
  const ns = `${scope}-bad-${round}`;
  await kubectlApply(state, 'default', [
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: ns, labels: { 'weir.dev/canary': 'enabled', 'weir.dev/test-analyzer': scope } },
    },
  ]);
  await kubectlApply(state, ns, [service('bad', { rps: 20 }), deployment('bad', { replicas: 1, annotations })]);
  await waitFor(
    'bad available',
    async () => (await apps.readNamespacedDeployment({ namespace: ns, name: 'bad' })).status?.availableReplicas === 1,
    300_000,
  );
  const weights = await watchWeights(kc, ns);
  const started = { op: 'add', path: '/spec/template/metadata/annotations', value: { 'sim.weir.dev/error-rate': '1' } };
  await apps.patchNamespacedDeployment({ namespace: ns, name: 'bad', body: [started] }, jsonPatch);
  await waitFor(
    'the bad canary back to 0 %',
    async () => {
      const list = weights.changes.get('weir-bad') ?? [];
      return list.some((c) => c.weight > 0) && list.at(-1)?.weight === 0;
    },
    300_000,
    200,
  );
  weights.stop();
  const list = weights.changes.get('weir-bad') ?? [];
  const first = list.find((c) => c.weight > 0);
  const zero = list.at(-1);
  return first && zero ? (zero.at - first.at) / 1000 : NaN;
}

/** The parts of the local cluster whose CPU time is counted, by their command line. */
const parts: [string, RegExp][] = [
  ['kube-apiserver', /kube-apiserver/],
  ['etcd', /\/etcd\b/],
  ['mesh simulator', /test\/mesh\/main\.ts/],
  ['weir webhook', /webhook\/main\.ts/],
  ['prometheus', /\/prometheus\b/],
  ['controllers, scheduler, kwok', /kube-controller-manager|kube-scheduler|kwok/],
];

/** CPU seconds used so far by the measured analyzer and by each part of the cluster (Linux /proc, 100 ticks/s). */
async function cpuSeconds(analyzerPid: number): Promise<Map<string, number>> {
  const used = new Map<string, number>();
  for (const pid of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(pid)) continue;
    const [cmdline, stat] = await Promise.all([
      readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''),
      readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''),
    ]);
    const name = Number(pid) === analyzerPid ? 'analyzer' : parts.find(([, re]) => re.test(cmdline))?.[0];
    // utime and stime: fields 14 and 15, counted after the command's closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (!name) continue;
    used.set(name, (used.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100);
  }
  return used;
}

/** Samples every part's CPU seconds once a second until stopped: the busiest 10 s are read from them. */
function cpuSampler(analyzerPid: number): { stop: () => Promise<{ all: number; apiserver: number }> } {
  const samples: { at: number; used: Map<string, number> }[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      samples.push({ at: Date.now(), used: await cpuSeconds(analyzerPid) });
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  const total = (m: Map<string, number>): number => [...m.values()].reduce((sum, x) => sum + x, 0);
  return {
    stop: async () => {
      stopped = true;
      await loop;
      let best = { all: 0, apiserver: 0 };
      for (const [i, a] of samples.entries()) {
        const b = samples.slice(i).find((x) => x.at - a.at >= 10_000);
        if (!b) break;
        const seconds = (b.at - a.at) / 1000;
        const all = (total(b.used) - total(a.used)) / seconds;
        const key = 'kube-apiserver';
        if (all > best.all) best = { all, apiserver: ((b.used.get(key) ?? 0) - (a.used.get(key) ?? 0)) / seconds };
      }
      return best;
    },
  };
}

/** The analyzer's histogram buckets (cumulative counts by upper bound). */
async function buckets(url: string, name: string): Promise<Map<string, number>> {
  const samples = await metricSamples(url, `${name}_bucket`);
  return new Map(samples.map((x) => [x.labels.le ?? '', x.value]));
}

/** The p-quantile of what a histogram observed between two readings, as its bucket's upper bound. */
function bucketQuantile(before: Map<string, number>, after: Map<string, number>, p: number): number {
  const deltas = [...after].map(
    ([le, n]) => [le === '+Inf' ? Infinity : Number(le), n - (before.get(le) ?? 0)] as const,
  );
  deltas.sort((x, y) => x[0] - y[0]);
  const count = deltas.at(-1)?.[1] ?? 0;
  return deltas.find(([, n]) => n >= p * count)?.[0] ?? NaN;
}

/** Cores each part kept busy between two readings. */
const coresBetween = (a: Map<string, number>, b: Map<string, number>, seconds: number): Record<string, number> =>
  Object.fromEntries([...b].map(([name, s]) => [name, (s - (a.get(name) ?? 0)) / seconds]));

/** The API server's mean answer time to the analyzer's writes (PATCH and POST), from its histogram. */
async function writeSeconds(url: string): Promise<{ sum: number; count: number }> {
  const sum = async (name: string): Promise<number> =>
    (await metric(url, `${name}{method="PATCH"`)) + (await metric(url, `${name}{method="POST"`));
  return {
    sum: await sum('weir_api_request_duration_seconds_sum'),
    count: await sum('weir_api_request_duration_seconds_count'),
  };
}

/** The analyzer's failed passes so far, counted by their error, most frequent first (from its log). */
async function failureReasons(a: Analyzer): Promise<string> {
  const text = await readFile(a.logFile, 'utf8').catch(() => '');
  const counts = new Map<string, number>();
  for (const line of text.split('\n'))
    if (line.includes('reconcile failed')) {
      const error = /"error":"([^"]{0,70})/.exec(line)?.[1] ?? 'unknown';
      counts.set(error, (counts.get(error) ?? 0) + 1);
    }
  const top = [...counts].sort((x, y) => y[1] - x[1]).slice(0, 4);
  return top.length > 0 ? top.map(([e, n]) => `${n} × ${e}`).join('; ') : 'none';
}

/**
 * What this machine's API server carries: `n` annotation writes to guarded Deployments, 16 at a
 * time as the analyzer's pool sends them, per second. The annotation is not weir's, so the webhook is
 * not called (matchConditions): a ceiling above what weir's own record writes can reach. Like
 * theirs, each bumps the Deployment's generation, so the controller writes its status once more.
 */
async function writeCeiling(apps: AppsV1Api, guarded: number, n: number): Promise<number> {
  const begun = Date.now();
  await pooled([...Array(n).keys()], 16, async (i) => {
    const patch = [{ op: 'add', path: '/metadata/annotations/bench.weir.dev~1ping', value: String(i) }];
    const at = i % guarded;
    await apps.patchNamespacedDeployment(
      { namespace: guardedNamespace(at), name: guardedName(at), body: patch },
      jsonPatch,
    );
  });
  return n / ((Date.now() - begun) / 1000);
}

/** One row's run: N releases on the cluster, measured through analyzer `a`. */
interface Run {
  state: ClusterState;
  kc: KubeConfig;
  a: Analyzer;
  n: number;
  round: number;
  log: (l: string) => void;
}

async function run(r: Run): Promise<ScaleRow> {
  const namespaces = guardedNamespaces(r.n);
  const watches = await Promise.all(namespaces.map((ns) => watchWeights(r.kc, ns)));
  const recorded = await Promise.all(namespaces.map((ns) => watchChecks(r.kc, ns)));
  try {
    return await measureRun(r, { namespaces, watches, recorded });
  } finally {
    for (const w of [...watches, ...recorded]) w.stop();
  }
}

async function measureRun(
  { state, kc, a, n, round, log }: Run,
  w: { namespaces: string[]; watches: Weights[]; recorded: Awaited<ReturnType<typeof watchChecks>>[] },
): Promise<ScaleRow> {
  const { namespaces, watches, recorded } = w;
  const apps = kc.makeApiClient(AppsV1Api);
  await resetPeak(a);
  const [cpu0, writes0, failed0, waits0, passes0, begun] = [
    await cpuSeconds(a.process.pid ?? 0),
    await writeSeconds(a.url),
    await metric(a.url, 'weir_reconcile_errors_total'),
    await buckets(a.url, 'weir_queue_wait_seconds'),
    await buckets(a.url, 'weir_reconcile_duration_seconds'),
    Date.now(),
  ];
  const sampler = cpuSampler(a.process.pid ?? 0);
  await release(apps, n, `example.com/app:r${round}`);
  await waitFor(`${n} releases at 10 %`, async () => Promise.resolve(reached(watches, n, 10)), 600_000, 500);
  log(`${n} releases hold at 10 %`);
  const [reads0, queries0] = [
    await apiReads(a.url),
    await metric(a.url, 'weir_prometheus_query_duration_seconds_count'),
  ];
  const windowMs = 20_000;
  const bad = badToZero(state, kc, round);
  await new Promise((resolve) => setTimeout(resolve, windowMs));
  const [reads1, queries1] = [
    await apiReads(a.url),
    await metric(a.url, 'weir_prometheus_query_duration_seconds_count'),
  ];
  const readsBy = Object.entries(reads1).map(
    ([resource, count]) => [resource, count - (reads0[resource] ?? 0)] as const,
  );
  log(`reads while holding, by resource: ${readsBy.map(([r, c]) => `${r} ${c}`).join(', ')}`);
  const badToZeroSeconds = await bad;
  // Over when every Deployment is Stable or RolledBack and drained (read from the API, not from
  // the watches, which only time the steps).
  let over: Awaited<ReturnType<typeof settled>> = { over: 0, promoted: 0, causes: new Map() };
  await waitFor(
    `${n} releases over`,
    async () => {
      over = await settled(apps, namespaces);
      return over.over >= n;
    },
    900_000,
    2000,
  ).catch((e: unknown) => log(String(e)));
  const ends = watches.flatMap((w) => w.ends);
  const reasons = [...new Set(ends)].map((e) => `${ends.filter((x) => x === e).length} × ${e}`).join('; ');
  log(
    `route watches saw ${count(watches, finished)} of ${n} promotions live; ` +
      `they were started again ${ends.length} times${reasons ? ` (${reasons})` : ''}`,
  );
  const causes = [...over.causes].map(([cause, k]) => `${k} × ${cause}`).join(', ');
  log(`rolled back: ${causes || 'none'}`);
  const promoted = over.promoted;
  const [cpu1, writes1, failed1, waits1, passes1, busiest] = [
    await cpuSeconds(a.process.pid ?? 0),
    await writeSeconds(a.url),
    await metric(a.url, 'weir_reconcile_errors_total'),
    await buckets(a.url, 'weir_queue_wait_seconds'),
    await buckets(a.url, 'weir_reconcile_duration_seconds'),
    await sampler.stop(),
  ];
  log(`failed passes, by error: ${await failureReasons(a)}`);
  const checks = recorded.map((r) => r.checks);
  return {
    releases: n,
    readsPerSecond: readsBy.reduce((sum, [, c]) => sum + c, 0) / (windowMs / 1000),
    // The bad release's own queries ride along with the others' (one query per metric and window).
    queriesPerInterval: (queries1 - queries0) / (windowMs / scaleIntervalMs),
    lag10: lags(watches, 10),
    lag50: lags(watches, 50),
    loop10: loopLags(watches, checks, 10),
    loop50: loopLags(watches, checks, 50),
    peakMiB: await memory(a, 'VmHWM'),
    badToZeroSeconds,
    promoted,
    cores: coresBetween(cpu0, cpu1, (Date.now() - begun) / 1000),
    writeMs: ((writes1.sum - writes0.sum) / Math.max(1, writes1.count - writes0.count)) * 1000,
    failedPasses: failed1 - failed0,
    busiest,
    queueWaitP99: bucketQuantile(waits0, waits1, 0.99),
    passP99: bucketQuantile(passes0, passes1, 0.99),
  };
}

/** The polling seam's reads for the same N releases holding a step, then the new design's, same cluster. */
async function pollingReads(kc: KubeConfig, n: number, round: number, log: (l: string) => void): Promise<number> {
  const apps = kc.makeApiClient(AppsV1Api);
  const a = await startAnalyzer({ scope, identity: `bench-polling-${round}`, env: { WEIR_TEST_POLLING: '1' } });
  try {
    const namespaces = guardedNamespaces(n);
    const watches = await Promise.all(namespaces.map((ns) => watchWeights(kc, ns)));
    await release(apps, n, `example.com/app:r${round}`);
    await waitFor(`${n} releases at 10 %`, async () => Promise.resolve(reached(watches, n, 10)), 600_000, 500);
    const r0 = await reads(a.url);
    await new Promise((resolve) => setTimeout(resolve, 20_000));
    const perSecond = ((await reads(a.url)) - r0) / 20;
    for (const w of watches) w.stop();
    log(`polling seam: ${perSecond.toFixed(1)} reads/s at ${n} releases`);
    return perSecond;
  } finally {
    await a.kill();
  }
}

export async function benchScale(o: ScaleOptions, log: (l: string) => void): Promise<ScaleResult> {
  const pods = o.guarded * 2 + 100;
  const state = await up({
    nodes: Math.max(2, Math.ceil(pods / 450)),
    scrapeInterval: '2s',
    log,
    meshRouting: benchRouting(),
  });
  try {
    const kc = new KubeConfig();
    kc.loadFromFile(state.kubeconfig);
    let a = await startAnalyzer({ scope, identity: 'bench-scale' });
    const idleEmptyMiB = await idleRss(a);
    log(`idle in an empty cluster: ${idleEmptyMiB.toFixed(0)} MiB`);
    await populate(state, o, log);
    const namespaces = guardedNamespaces(o.guarded);
    await available(kc.makeApiClient(AppsV1Api), namespaces, o.guarded);
    // A fresh analyzer, so the figure is what a restart in this cluster costs, not the growth so far.
    await a.kill();
    a = await startAnalyzer({ scope, identity: 'bench-scale-full' });
    const idleFullMiB = await idleRss(a);
    const cachedDeployments = await metric(a.url, 'weir_cached_objects{kind="Deployment"}');
    log(`idle with ${o.deployments} Deployments: ${idleFullMiB.toFixed(0)} MiB, ${cachedDeployments} cached`);
    const ceiling = await writeCeiling(kc.makeApiClient(AppsV1Api), o.guarded, 2000);
    log(`the API server answers ${ceiling.toFixed(0)} Deployment annotation writes/s (16 at a time)`);
    const rows: ScaleRow[] = [];
    let round = 1;
    let notCarried: ScaleResult['notCarried'];
    for (const n of o.releases) {
      log(`${n} releases`);
      try {
        rows.push(await run({ state, kc, a, n: Math.min(n, o.guarded), round: round++, log }));
      } catch (error) {
        // The rows so far stand; what the machine did not carry is reported, not lost with them.
        notCarried = { releases: n, why: error instanceof Error ? error.message : String(error) };
        log(`${n} releases not carried: ${notCarried.why}`);
        // The polling seam below must find only its own releases in flight.
        const started = guardedNamespaces(Math.min(n, o.guarded));
        const apps = kc.makeApiClient(AppsV1Api);
        await waitFor('the releases over', async () => (await settled(apps, started)).over >= n, 900_000, 5000).catch(
          (e: unknown) => log(String(e)),
        );
        break;
      }
    }
    await a.kill();
    // The cluster's directory goes with it: the analyzer's log of the rows is kept for reading after.
    const kept = join(tmpdir(), 'weir-bench-scale-analyzer.log');
    await copyFile(a.logFile, kept).then(
      () => log(`the analyzer's log: ${kept}`),
      () => undefined,
    );
    const smallest = Math.min(...o.releases, o.guarded);
    const readsPerSecond = await pollingReads(kc, smallest, round++, log);
    const newReadsPerSecond = rows.find((r) => r.releases === smallest)?.readsPerSecond ?? NaN;
    return {
      options: o,
      idleEmptyMiB,
      idleFullMiB,
      cachedDeployments,
      rows,
      polling: { releases: smallest, readsPerSecond, newReadsPerSecond },
      writeCeiling: ceiling,
      ...(notCarried ? { notCarried } : {}),
    };
  } finally {
    await down();
  }
}
