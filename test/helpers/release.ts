// Helpers for release tests: manifests with short timings, waiting on phases, recording the
// canary weights a route (VirtualService or HTTPRoute) goes through, reading events, and running private analyzers.
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { analyzerNodeOptions, clusterDir, freePort, prometheusConfig, repoRoot, waitFor } from '../cluster/cluster.ts';
import { openSync } from 'node:fs';
import { apply, cluster, deployment, getJson, kubectl, kubectlRaw, namespace, service } from './kube.ts';
import { annotations, policyAnnotations } from '../../contract/names.ts';
import { parseStatus } from '../../contract/status.ts';
import type { ReleaseStatus } from '../../contract/status.ts';

/** Seconds instead of minutes: the policy fields users set with annotations. */
export const fast: Record<string, string> = {
  [policyAnnotations.stepPause]: '3s',
  [policyAnnotations.interval]: '2s',
  [policyAnnotations.minRequests]: '5',
  [policyAnnotations.drain]: '2s',
};

export interface Dep {
  metadata: { generation: number; uid: string; annotations?: Record<string, string> };
  spec: {
    paused?: boolean;
    replicas: number;
    template: {
      metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
      spec: { containers: { image: string }[] };
    };
  };
  status?: { observedGeneration?: number; readyReplicas?: number; updatedReplicas?: number; replicas?: number };
}

export const getDeployment = (ns: string, name: string): Promise<Dep> =>
  getJson<Dep>(['get', 'deployment', name, '-n', ns]);
export const annotation = async (ns: string, name: string, key: string): Promise<string | undefined> =>
  (await getDeployment(ns, name)).metadata.annotations?.[key];

/** The analyzer's progress record on a Deployment. */
export const releaseStatus = async (ns: string, name: string): Promise<ReleaseStatus | undefined> =>
  parseStatus((await getDeployment(ns, name)).metadata.annotations?.[annotations.status]);

/** Waits until the analyzer records `weight` as the canary weight of the current step. */
export async function waitForWeight(ns: string, name: string, weight: number, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    `${ns}/${name} at ${weight}%`,
    async () => (await releaseStatus(ns, name))?.weight === weight,
    timeoutMs,
  );
}

export async function waitForPhase(ns: string, name: string, phase: string, timeoutMs = 120_000): Promise<Dep> {
  let last: Dep | undefined;
  await waitFor(
    `${ns}/${name} to reach phase ${phase}`,
    async () => {
      last = await getDeployment(ns, name);
      return last.metadata.annotations?.[annotations.phase] === phase;
    },
    timeoutMs,
    250,
  ).catch((error: unknown) => {
    const status = last?.metadata.annotations?.[annotations.status] ?? 'none';
    throw new Error(`${error instanceof Error ? error.message : String(error)}; last status: ${status}`);
  });
  if (!last) throw new Error('unreachable');
  return last;
}

export interface EventRecord {
  type: string;
  reason: string;
  message: string;
}

export async function events(ns: string, name: string): Promise<EventRecord[]> {
  const list = await getJson<{
    items: (EventRecord & {
      involvedObject: { name: string };
      firstTimestamp?: string;
      metadata: { creationTimestamp: string };
    })[];
  }>(['get', 'events', '-n', ns, '--field-selector', `involvedObject.name=${name}`]);
  return list.items
    .sort((a, b) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp))
    .map((e) => ({ type: e.type, reason: e.reason, message: e.message }));
}

/** The weights at which a CheckPassed Event was recorded (one per step, and one after a check that did not pass). */
export async function passedAt(ns: string, name: string): Promise<number[]> {
  const passed = (await events(ns, name)).filter((e) => e.reason === 'CheckPassed');
  return [...new Set(passed.map((e) => Number(/^at (\d+)%/.exec(e.message)?.[1])))].sort((a, b) => a - b);
}

interface Vs {
  spec: { http: { name?: string; route: { destination: { subset: string }; weight?: number }[] }[] };
}
interface HttpRoute {
  spec: { rules?: { name?: string; backendRefs?: { name: string; weight?: number }[] }[] };
}

type Recorder = { weights: number[]; ready: Promise<void>; stop: () => Promise<void> };

/**
 * Records every distinct canary weight a VirtualService route shows, until stopped — through a
 * watch, so a state that lasts only milliseconds (weir putting a route back) is seen too.
 * `ready` resolves once the watch has shown the current state (or the route does not exist yet).
 */
export function recordWeights(ns: string, vs: string, canarySubset: string, route?: string): Recorder {
  return recordRoute(
    ns,
    { kind: 'virtualservice', path: 'networking.istio.io/v1', plural: 'virtualservices' },
    vs,
    (o: Vs) => {
      const found = route ? o.spec.http.find((h) => h.name === route) : o.spec.http[0];
      return found?.route.find((d) => d.destination.subset === canarySubset)?.weight ?? 0;
    },
  );
}

/** The same for an HTTPRoute rule: the canary Service's share of the rule's weights, in percent. */
export function recordRuleWeights(ns: string, name: string, canaryService: string, rule: string): Recorder {
  const api = { kind: 'httproute', path: 'gateway.networking.k8s.io/v1', plural: 'httproutes' };
  return recordRoute(ns, api, name, (o: HttpRoute) => {
    const refs = o.spec.rules?.find((r) => r.name === rule)?.backendRefs ?? [];
    const total = refs.reduce((sum, b) => sum + (b.weight ?? 1), 0);
    const canary = refs.find((b) => b.name === canaryService)?.weight ?? 0;
    return total > 0 ? Math.round((100 * canary) / total) : 0;
  });
}

/**
 * Hears every object of a list path as it changes (`type` as the watch says it), the watch started
 * again whenever it ends; returns its stop. A loaded API server can refuse the new watch too (429,
 * a timeout): it is tried again until taken, or the listener would be deaf for the rest of the run.
 */
export async function followObjects<T>(
  kc: KubeConfig,
  path: string,
  onObject: (obj: T, type: string) => void,
  query: Record<string, string> = {},
  onEnd: (error: unknown) => void = () => undefined,
): Promise<() => void> {
  let request: AbortController | undefined;
  let stopped = false;
  const start = async (): Promise<void> => {
    if (stopped) return;
    // A watch started again lists the current state first.
    request = await new Watch(kc).watch(
      path,
      query,
      (type: string, obj: T) => onObject(obj, type),
      (error: unknown) => {
        if (stopped) return;
        onEnd(error);
        void restart();
      },
    );
  };
  const restart = async (): Promise<void> => {
    for (let delay = 250; !stopped; delay = Math.min(delay * 2, 5000))
      try {
        return await start();
      } catch {
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
  };
  await start();
  return () => {
    stopped = true;
    request?.abort();
  };
}

function recordRoute<T>(
  ns: string,
  api: { kind: string; path: string; plural: string },
  name: string,
  weightOf: (object: T) => number,
): Recorder {
  const weights: number[] = [];
  let unfollow: (() => void) | undefined;
  let running = true;
  const record = (object: T): void => {
    const w = weightOf(object);
    if (weights[weights.length - 1] !== w) weights.push(w);
  };
  let seen = (): void => undefined;
  const firstEvent = new Promise<void>((resolve) => (seen = resolve));
  const ready = (async () => {
    const kc = new KubeConfig();
    kc.loadFromFile((await cluster()).kubeconfig);
    unfollow = await followObjects<T>(
      kc,
      `/apis/${api.path}/namespaces/${ns}/${api.plural}`,
      (object, type) => {
        if (type === 'ADDED' || type === 'MODIFIED') record(object);
        seen();
      },
      { fieldSelector: `metadata.name=${name}` },
    );
    // Stopped while the watch was being started: end it now.
    if (!running) unfollow();
    // A route that exists shows up as the watch's first event; one that does not, later.
    const r = await kubectlRaw(['get', api.kind, name, '-n', ns, '-o', 'name']);
    if (r.code === 0) await firstEvent;
  })();
  return {
    weights,
    ready,
    stop: async () => {
      running = false;
      await ready.catch(() => undefined);
      unfollow?.();
    },
  };
}

export interface Analyzer {
  process: ChildProcess;
  url: string;
  /** Where its log goes: beside the cluster's. */
  logFile: string;
  kill: (signal?: NodeJS.Signals) => Promise<void>;
  /** Resolves with the signal (or exit code) the process ended with. */
  exited: Promise<NodeJS.Signals | number | null>;
}

/** Runs an analyzer of the test's own for namespaces labelled `weir.dev/test-analyzer=<scope>`. */
export async function startAnalyzer(options: {
  scope: string;
  identity: string;
  prometheusUrl?: string;
  leaseSeconds?: number;
  kubeconfig?: string;
  leaseNamespace?: string;
  env?: Record<string, string>;
  /** Off for an analyzer that may die before it answers (the crash matrix). */
  waitReady?: boolean;
}): Promise<Analyzer> {
  const state = await cluster();
  const port = await freePort();
  const logFile = join(clusterDir, 'logs', `analyzer-${options.identity}.log`);
  const child = spawn(join(repoRoot, 'node_modules/.bin/node'), [join(repoRoot, 'analyzer/main.ts')], {
    env: {
      ...process.env,
      NODE_OPTIONS: await analyzerNodeOptions(),
      KUBECONFIG: options.kubeconfig ?? state.kubeconfig,
      WEIR_PROMETHEUS_URL: options.prometheusUrl ?? state.prometheusUrl,
      WEIR_NAMESPACE: options.leaseNamespace ?? 'weir-system',
      WEIR_ANALYZER_HOST: '127.0.0.1',
      WEIR_ANALYZER_PORT: String(port),
      WEIR_SCOPE: `weir.dev/test-analyzer=${options.scope}`,
      WEIR_LEASE_NAME: `weir-test-${options.scope}`,
      WEIR_IDENTITY: options.identity,
      WEIR_LEASE_DURATION: `${options.leaseSeconds ?? 4}s`,
      WEIR_LEASE_RENEW: '1s',
      WEIR_PROMETHEUS_TIMEOUT: '2s',
      ...options.env,
    },
    // Its log goes beside the cluster's, for reading after a failure.
    stdio: ['ignore', openSync(logFile, 'a'), 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? code)),
  );
  if (options.waitReady === false) return { process: child, url, logFile, kill: killer(child), exited };
  await waitFor(
    `analyzer ${options.identity} /readyz`,
    async () => (await request(`${url}/readyz`)).statusCode === 200,
    30_000,
  );
  return { process: child, url, logFile, kill: killer(child), exited };
}

function killer(child: ChildProcess): (signal?: NodeJS.Signals) => Promise<void> {
  return async (signal = 'SIGKILL') => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  };
}

/** Reads one counter or gauge from an analyzer's /metrics, summed over its labels. */
export async function analyzerMetric(url: string, name: string): Promise<number> {
  const text = await (await request(`${url}/metrics`)).body.text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name) && !l.startsWith('#'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

/** Every sample of a metric, with its labels, from an analyzer's /metrics. */
export async function metricSamples(
  url: string,
  name: string,
): Promise<{ labels: Record<string, string>; value: number }[]> {
  const text = await (await request(`${url}/metrics`)).body.text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .map((l) => {
      const labels = Object.fromEntries([...l.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1] ?? '', m[2] ?? '']));
      return { labels, value: Number(l.split(' ').pop()) };
    });
}

/** GETs and LISTs the analyzer sent outside its watches, but for its Lease (leader election renews it). */
export async function apiReads(url: string): Promise<Record<string, number>> {
  const counted = await metricSamples(url, 'weir_api_requests_total');
  const out: Record<string, number> = {};
  for (const s of counted)
    if (s.labels.method === 'GET' && s.labels.resource !== 'leases')
      out[s.labels.resource ?? ''] = (out[s.labels.resource ?? ''] ?? 0) + s.value;
  return out;
}

/**
 * A Prometheus of the test's own, scraping the shared mesh simulator — or `target` (host:port)
 * every second: it can be stopped and started.
 */
export async function ownPrometheus(target?: string): Promise<{
  url: string;
  start: () => Promise<void>;
  stop: () => Promise<void>;
  remove: () => Promise<void>;
}> {
  const state = await cluster();
  const dir = await mkdtemp(join(tmpdir(), 'weir-prom-'));
  const port = await freePort();
  const config = target ? join(dir, 'prometheus.yml') : (state.prometheusConfig ?? '');
  if (target) await writeFile(config, prometheusConfig('own', target, '1s'));
  const url = `http://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    child = spawn(
      state.prometheusBin ?? 'prometheus',
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=error',
      ],
      { stdio: 'ignore' },
    );
    await waitFor('own Prometheus ready', async () => (await request(`${url}/-/ready`)).statusCode === 200, 30_000);
  };
  const stop = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((resolve) => c.once('exit', resolve));
    c.kill('SIGTERM');
    await exited;
  };
  await start();
  return {
    url,
    start,
    stop,
    remove: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export const images = async (ns: string, selector: string): Promise<string[]> => {
  const pods = await getJson<{
    items: { metadata: { deletionTimestamp?: string }; spec: { containers: { image: string }[] } }[];
  }>(['get', 'pods', '-n', ns, '-l', selector]);
  return pods.items.filter((p) => !p.metadata.deletionTimestamp).map((p) => p.spec.containers[0]?.image ?? '');
};

export async function setImage(
  ns: string,
  name: string,
  image: string,
  podAnnotations?: Record<string, string>,
): Promise<void> {
  const patch: Record<string, unknown> = {
    spec: {
      template: {
        spec: { containers: [{ name: 'app', image }] },
        ...(podAnnotations ? { metadata: { annotations: podAnnotations } } : {}),
      },
    },
  };
  await kubectl(['patch', 'deployment', name, '-n', ns, '--type=strategic', '-p', JSON.stringify(patch)]);
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the `weir` CLI from the working tree against the local cluster; never throws. */
export async function runWeir(args: string[], env: NodeJS.ProcessEnv = {}, timeout = 30_000): Promise<Run> {
  const state = await cluster();
  return new Promise((resolve) => {
    execFile(
      join(repoRoot, 'node_modules/.bin/node'),
      [join(repoRoot, 'cli/main.ts'), '--kubeconfig', state.kubeconfig, ...args],
      { env: { ...process.env, ...env }, timeout },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

const errorRate = (rate: number): Record<string, string> => ({ 'sim.weir.dev/error-rate': String(rate) });

/** `web` in a namespace of its own that opted in: a Service at `rps`, a v1 Deployment with `fast` and `annotations`. */
export async function guardedWeb(
  t: { teardown(fn: () => unknown): void },
  o: { replicas: number; rps: number; annotations?: Record<string, string>; podAnnotations?: Record<string, string> },
): Promise<string> {
  const ns = await namespace(t, { optIn: true });
  await apply(ns, service('web', { rps: o.rps }));
  await apply(
    ns,
    deployment('web', {
      replicas: o.replicas,
      image: 'example.com/web:v1',
      annotations: { ...fast, ...o.annotations },
      podAnnotations: o.podAnnotations ?? {},
    }),
  );
  return ns;
}

/**
 * A guarded `web` (2 replicas, `fast` plus `annotations`, a Service at `rps`) whose stable half
 * fails at `stableRate`, then a release of a canary that fails at `canaryRate`; its namespace.
 */
export async function guardedRelease(
  t: { teardown(fn: () => unknown): void },
  annotations: Record<string, string>,
  stableRate: number,
  canaryRate: number,
  rps: number,
): Promise<string> {
  const ns = await guardedWeb(t, { replicas: 2, rps, annotations, podAnnotations: errorRate(stableRate) });
  await setImage(ns, 'web', 'example.com/web:v2', errorRate(canaryRate));
  return ns;
}
