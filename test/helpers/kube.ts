// Helpers for tests on the local cluster: kubectl, a namespace per test, PromQL, waiting.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { request } from 'undici';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { readState, repoRoot, waitFor } from '../cluster/cluster.ts';
import type { ClusterState } from '../cluster/cluster.ts';

export { waitFor };

/** client-node's option for a JSON Patch body (it would send a merge patch's content type otherwise). */
export const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);

export async function cluster(): Promise<ClusterState> {
  const state = await readState();
  if (!state)
    throw new Error(
      'no local cluster is running: tap starts one (test/cluster/before.ts), or run `npm run cluster:up`',
    );
  return state;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs kubectl against the local cluster; never throws, the caller reads the exit code. */
export async function kubectlRaw(args: string[], input?: string): Promise<KubectlResult> {
  const state = await cluster();
  return new Promise((resolve) => {
    const child = execFile(
      join(state.binDir, 'kubectl'),
      ['--kubeconfig', state.kubeconfig, ...args],
      { maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Runs kubectl and throws with its stderr when it fails. */
export async function kubectl(args: string[], input?: string): Promise<string> {
  const result = await kubectlRaw(args, input);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

export async function getJson<T = Record<string, unknown>>(args: string[]): Promise<T> {
  return JSON.parse(await kubectl([...args, '-o', 'json'])) as T;
}

export const apply = (namespace: string, manifest: unknown, extra: string[] = []): Promise<string> =>
  kubectl(
    ['apply', '-n', namespace, ...extra, '-f', '-'],
    typeof manifest === 'string' ? manifest : JSON.stringify(manifest),
  );

interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * A fresh namespace for one test, deleted when the test ends. `mesh`: labelled as a namespace of
 * Istio's ambient mesh, so Istio's analyzers judge it as one (the local cluster injects no sidecars).
 */
export async function namespace(
  t: Teardown,
  options: { optIn?: boolean; prefix?: string; mesh?: boolean } = {},
): Promise<string> {
  const name = `${options.prefix ?? 't'}-${randomBytes(4).toString('hex')}`;
  await kubectl(['create', 'namespace', name]);
  if (options.optIn) await kubectl(['label', 'namespace', name, 'weir.dev/canary=enabled']);
  if (options.mesh) await kubectl(['label', 'namespace', name, 'istio.io/dataplane-mode=ambient']);
  t.teardown(() => kubectl(['delete', 'namespace', name, '--wait=false']).catch(() => undefined));
  await waitFor(
    `ServiceAccount default in ${name}`,
    async () => (await kubectlRaw(['get', 'sa', 'default', '-n', name])).code === 0,
  );
  return name;
}

export interface Sample {
  metric: Record<string, string>;
  value: number;
}

/** An instant PromQL query on the local Prometheus. */
export async function promQuery(query: string): Promise<Sample[]> {
  const state = await cluster();
  const res = await request(`${state.prometheusUrl}/api/v1/query?${new URLSearchParams({ query }).toString()}`);
  const body = (await res.body.json()) as {
    status: string;
    data?: { result?: { metric: Record<string, string>; value: [number, string] }[] };
  };
  if (body.status !== 'success') throw new Error(`PromQL ${query} failed: ${JSON.stringify(body)}`);
  return (body.data?.result ?? []).map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

/** A plain Deployment manifest, as a user would write it. */
export function deployment(
  name: string,
  options: {
    image?: string;
    replicas?: number;
    labels?: Record<string, string>;
    selector?: Record<string, string>;
    podAnnotations?: Record<string, string>;
    annotations?: Record<string, string>;
  } = {},
): Record<string, unknown> {
  const labels = { app: name, ...(options.labels ?? {}) };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, annotations: options.annotations ?? {} },
    spec: {
      replicas: options.replicas ?? 2,
      selector: { matchLabels: options.selector ?? { app: labels.app } },
      template: {
        metadata: { labels, annotations: options.podAnnotations ?? {} },
        spec: {
          containers: [{ name: 'app', image: options.image ?? 'example.com/app:v1', ports: [{ containerPort: 8080 }] }],
        },
      },
    },
  };
}

export function service(
  name: string,
  options: { rps?: number; selector?: Record<string, string> } = {},
): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, annotations: options.rps === undefined ? {} : { 'sim.weir.dev/rps': String(options.rps) } },
    spec: { selector: options.selector ?? { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
  };
}

/** Ready pods of a Deployment-like selector, by `kubectl get pods`. */
export async function readyPods(namespace: string, selector: string): Promise<number> {
  const pods = await getJson<{
    items: {
      status?: { conditions?: { type: string; status: string }[] };
      metadata?: { deletionTimestamp?: string };
    }[];
  }>(['get', 'pods', '-n', namespace, '-l', selector]);
  return pods.items.filter(
    (p) =>
      !p.metadata?.deletionTimestamp &&
      (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
  ).length;
}

/**
 * Requests the mesh simulator has answered for a namespace's services with these Envoy response
 * flags (`UH`, or `-` for a normal answer), read from its own counters: exact, with no scrape lag.
 */
export const meshCount = (ns: string, flags: string): Promise<number> =>
  meshRequests({ destination_service_namespace: ns, response_flags: flags });

/**
 * Requests the mesh simulator counted (`istio_requests_total`) with all of these label values
 * (a list: any of them), from one read of its counters.
 */
export async function meshRequests(labels: Record<string, string | string[]>): Promise<number> {
  const text = await (await request(`${(await cluster()).meshUrl}/metrics`)).body.text();
  const wanted = Object.entries(labels).map(([k, v]) => (Array.isArray(v) ? v : [v]).map((one) => `${k}="${one}"`));
  return text
    .split('\n')
    .filter((l) => l.startsWith('istio_requests_total{') && wanted.every((any) => any.some((w) => l.includes(w))))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

/**
 * Counts the 503s of a mesh with nowhere to send a request from now on: `UH` (no healthy endpoint)
 * and `NC` (a route naming a cluster the proxy was not sent yet: a subset istiod has not pushed).
 * Before a Service's first pods are Ready any mesh answers UH, so this waits for a request
 * answered in the namespace from now on (not one answered before: a namespace such as `default`
 * keeps its counters across test runs) and counts from there.
 */
export async function countUhFromNow(ns: string): Promise<() => Promise<number>> {
  const answered = await meshCount(ns, '-');
  await waitFor(`the mesh answering requests in ${ns}`, async () => (await meshCount(ns, '-')) > answered, 30_000, 200);
  const unrouted = (): Promise<number> =>
    meshRequests({ destination_service_namespace: ns, response_flags: ['UH', 'NC'] });
  const before = await unrouted();
  return async () => (await unrouted()) - before;
}

/** Runs an npm script from the repository with extra environment; never throws. */
export function npm(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      'npm',
      args,
      { cwd: repoRoot, env: { ...process.env, ...env }, maxBuffer: 32 * 1024 * 1024 },
      (error, stdout, stderr) => resolve({ code: error ? 1 : 0, output: stdout + stderr }),
    );
  });
}
