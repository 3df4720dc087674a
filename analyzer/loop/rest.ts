// The analyzer's Kubernetes client (ADR 22): plain REST over one undici pool, typed with
// client-node's own types, which cost nothing at run time. Importing client-node's generated
// clients costs a process about 75 MiB before its first request (all models and their
// serializer: 41 → 117 MiB RSS measured), more than a hundred releases hold; the analyzer makes
// about thirty kinds of call, each a line below.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { Pool } from 'undici';
import { parse } from 'yaml';
import type {
  AdmissionregistrationV1Api,
  ApisApi,
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubernetesListObject,
  KubernetesObject,
} from '@kubernetes/client-node';

/** Where the API server is and who the analyzer is to it: from a kubeconfig or the pod's service account. */
export interface KubeAccess {
  server: string;
  ca?: string;
  cert?: string;
  key?: string;
  /** Skips verifying the server's certificate (a kubeconfig's `insecure-skip-tls-verify`). */
  insecure?: boolean;
  servername?: string;
  /** The bearer token, read when needed: a projected service-account token rotates. */
  token?: () => string | undefined;
}

const serviceAccount = '/var/run/secrets/kubernetes.io/serviceaccount';

type Entry = Record<string, unknown>;
const isEntry = (v: unknown): v is Entry => v !== null && typeof v === 'object' && !Array.isArray(v);
const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** The `name`d entry of a kubeconfig list (`clusters`, `users`, `contexts`), its inner object. */
function named(config: Entry, list: string, inner: string, name: string | undefined): Entry {
  const entries = Array.isArray(config[list]) ? (config[list] as unknown[]) : [];
  const found = entries.find((e) => isEntry(e) && e.name === name);
  const value = isEntry(found) ? found[inner] : undefined;
  if (!isEntry(value)) throw new Error(`the kubeconfig has no ${inner} "${name ?? ''}"`);
  return value;
}

/** A file's text, or inline base64 data: kubeconfig's `<field>` and `<field>-data`, paths relative to the file. */
function material(entry: Entry, field: string, base: string): string | undefined {
  const data = text(entry[`${field}-data`]);
  if (data) return Buffer.from(data, 'base64').toString('utf8');
  const path = text(entry[field]);
  return path ? readFileSync(isAbsolute(path) ? path : join(base, path), 'utf8') : undefined;
}

/** A token file read at most once a minute, as client-go does: a rotated token is picked up. */
function tokenFile(path: string): () => string | undefined {
  let token: string | undefined;
  let readAt = 0;
  return () => {
    if (Date.now() - readAt > 60_000) {
      token = readFileSync(path, 'utf8').trim();
      readAt = Date.now();
    }
    return token;
  };
}

/** Reads a kubeconfig file: its current context's cluster and user (certificates or a token). */
export function accessFromKubeconfig(file: string): KubeAccess {
  const config: unknown = parse(readFileSync(file, 'utf8'));
  if (!isEntry(config)) throw new Error(`${file} is not a kubeconfig`);
  const base = dirname(file);
  const context = named(config, 'contexts', 'context', text(config['current-context']));
  const cluster = named(config, 'clusters', 'cluster', text(context.cluster));
  const user = text(context.user) === undefined ? {} : named(config, 'users', 'user', text(context.user));
  const server = text(cluster.server);
  if (!server) throw new Error(`${file}: the current cluster has no server`);
  for (const unsupported of ['exec', 'auth-provider', 'username'])
    if (user[unsupported] !== undefined)
      throw new Error(`${file}: the analyzer authenticates with a client certificate or a token, not "${unsupported}"`);
  const token = text(user.token);
  const tokenPath = text(user.tokenFile);
  const access: KubeAccess = { server };
  const ca = material(cluster, 'certificate-authority', base);
  const cert = material(user, 'client-certificate', base);
  const key = material(user, 'client-key', base);
  const servername = text(cluster['tls-server-name']);
  if (ca) access.ca = ca;
  if (cert) access.cert = cert;
  if (key) access.key = key;
  if (servername) access.servername = servername;
  if (cluster['insecure-skip-tls-verify'] === true) access.insecure = true;
  if (token) access.token = () => token;
  else if (tokenPath) access.token = tokenFile(isAbsolute(tokenPath) ? tokenPath : join(base, tokenPath));
  return access;
}

/**
 * Where client-node's `loadFromDefault` looks, in its order: `$KUBECONFIG` (its first file),
 * `~/.kube/config`, then the pod's service account.
 */
export function loadAccess(env: NodeJS.ProcessEnv = process.env): KubeAccess {
  const listed = (env.KUBECONFIG ?? '').split(':').find((f) => f !== '' && existsSync(f));
  if (listed) return accessFromKubeconfig(listed);
  const home = join(homedir(), '.kube', 'config');
  if (existsSync(home)) return accessFromKubeconfig(home);
  const host = env.KUBERNETES_SERVICE_HOST;
  if (host && existsSync(join(serviceAccount, 'token'))) {
    return {
      server: `https://${host.includes(':') ? `[${host}]` : host}:${env.KUBERNETES_SERVICE_PORT ?? '443'}`,
      ca: readFileSync(join(serviceAccount, 'ca.crt'), 'utf8'),
      token: tokenFile(join(serviceAccount, 'token')),
    };
  }
  throw new Error('no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a pod: nowhere to find the API server');
}

/** An answer of the API server other than 2xx: its HTTP status and its Status object. */
export class KubeError extends Error {
  readonly code: number;
  readonly body: unknown;

  constructor(code: number, body: unknown, what: string) {
    const message = isEntry(body) && typeof body.message === 'string' ? body.message : `HTTP ${code}`;
    super(`${what}: ${message}`);
    this.code = code;
    this.body = body;
  }
}

/** The resource a request is about, from its path: `deployments`, `virtualservices`, `leases`, … */
export function resourceOf(path: string): string {
  const parts = new URL(path, 'https://api').pathname.split('/').filter(Boolean);
  const rest = parts[0] === 'api' ? parts.slice(2) : parts.slice(3);
  return (rest[0] === 'namespaces' && rest.length >= 3 ? rest[2] : rest[0]) ?? 'unknown';
}

interface RestOptions {
  /** Every request is abandoned after this: a write the leader started can never land after its lease (ADR 10). */
  timeoutMs: number;
  /** Counts a request (not a watch) as it is sent. */
  onRequest?: (method: string, resource: string) => void;
  /** Times a request (not a watch), from sent to answered, failed or abandoned. */
  onDone?: (method: string, resource: string, seconds: number) => void;
}

type Query = Record<string, string | number | boolean | undefined>;

/** One TLS connection pool per API server, shared by every client of the process. */
const pools = new WeakMap<KubeAccess, Pool>();

function poolOf(access: KubeAccess): Pool {
  const known = pools.get(access);
  if (known) return known;
  const pool = new Pool(new URL(access.server).origin, {
    connect: {
      ...(access.ca ? { ca: access.ca } : {}),
      ...(access.cert ? { cert: access.cert } : {}),
      ...(access.key ? { key: access.key } : {}),
      ...(access.servername ? { servername: access.servername } : {}),
      rejectUnauthorized: access.insecure !== true,
    },
  });
  pools.set(access, pool);
  return pool;
}

function withQuery(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
  const search = params.toString();
  return search === '' ? path : `${path}?${search}`;
}

/** A JSON answer, or its text when it is not JSON (a proxy's page), for the error. */
function parseAnswer(answer: string): unknown {
  if (answer === '') return undefined;
  try {
    return JSON.parse(answer);
  } catch {
    return answer;
  }
}

/** One watch event as the API server streams it. */
export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

/**
 * A watch's body as events: one JSON object per line, lines and characters split anywhere across
 * the chunks the network delivers.
 */
export async function* events<T>(chunks: AsyncIterable<Uint8Array | string>): AsyncGenerator<WatchEvent<T>> {
  let pending = '';
  const decoder = new TextDecoder();
  for await (const chunk of chunks) {
    pending += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let end = pending.indexOf('\n');
    while (end >= 0) {
      const line = pending.slice(0, end).trim();
      pending = pending.slice(end + 1);
      if (line !== '') yield JSON.parse(line) as WatchEvent<T>;
      end = pending.indexOf('\n');
    }
  }
}

/** JSON requests to the API server; every write weir makes is a JSON Patch, a create, a replace or a delete. */
export class Rest {
  private readonly access: KubeAccess;
  private readonly options: RestOptions;
  private readonly prefix: string;

  constructor(access: KubeAccess, options: RestOptions) {
    this.access = access;
    this.options = options;
    // A server URL may carry a path (a proxy in front of the API server).
    this.prefix = new URL(access.server).pathname.replace(/\/$/, '');
  }

  private headers(contentType?: string): Record<string, string> {
    const token = this.access.token?.();
    return {
      accept: 'application/json',
      'user-agent': 'weir-analyzer',
      ...(contentType ? { 'content-type': contentType } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    };
  }

  async call<T>(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    path: string,
    query?: Query,
    body?: unknown,
  ): Promise<T> {
    const resource = resourceOf(path);
    this.options.onRequest?.(method, resource);
    const started = performance.now();
    const contentType =
      body === undefined ? undefined : method === 'PATCH' ? 'application/json-patch+json' : 'application/json';
    try {
      const response = await poolOf(this.access).request({
        method,
        path: this.prefix + withQuery(path, query),
        headers: this.headers(contentType),
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      const parsed = parseAnswer(await response.body.text());
      if (response.statusCode >= 200 && response.statusCode < 300) return parsed as T;
      throw new KubeError(response.statusCode, parsed, `${method} ${path}`);
    } finally {
      this.options.onDone?.(method, resource, (performance.now() - started) / 1000);
    }
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.call<T>('GET', path, query);
  }

  /**
   * A watch from `resourceVersion`, event by event, until the server ends it (`timeoutSeconds`),
   * the connection fails, or `signal` aborts. Not counted: a watch is not a read of a release.
   */
  async *watch<T>(path: string, resourceVersion: string, signal: AbortSignal): AsyncGenerator<WatchEvent<T>> {
    const timeoutSeconds = 240 + Math.floor(Math.random() * 240);
    const response = await poolOf(this.access).request({
      method: 'GET',
      path: this.prefix + withQuery(path, { watch: true, resourceVersion, allowWatchBookmarks: true, timeoutSeconds }),
      headers: this.headers(),
      signal,
      // The server ends the watch after timeoutSeconds: silence for longer than that is a dead connection.
      bodyTimeout: (timeoutSeconds + 60) * 1000,
    });
    if (response.statusCode !== 200)
      throw new KubeError(response.statusCode, parseAnswer(await response.body.text()), `watch ${path}`);
    yield* events<T>(response.body);
  }

  /** Closes the shared pool: the process is stopping. */
  static async close(access: KubeAccess): Promise<void> {
    const pool = pools.get(access);
    pools.delete(access);
    await pool?.close();
  }
}

const core = '/api/v1';
const apps = '/apis/apps/v1';
const ns = (namespace: string): string => `/namespaces/${encodeURIComponent(namespace)}`;
const at = (name: string): string => `/${encodeURIComponent(name)}`;

/** The calls the analyzer makes, by the names client-node gives them (so call sites read the same). */
export type AppsApi = Pick<
  AppsV1Api,
  | 'readNamespacedDeployment'
  | 'createNamespacedDeployment'
  | 'patchNamespacedDeployment'
  | 'deleteNamespacedDeployment'
  | 'listNamespacedReplicaSet'
  | 'patchNamespacedReplicaSet'
>;
export type CoreApi = Pick<
  CoreV1Api,
  | 'listNamespacedPod'
  | 'patchNamespacedPod'
  | 'readNamespacedService'
  | 'listNamespacedService'
  | 'createNamespacedService'
  | 'replaceNamespacedService'
  | 'deleteNamespacedService'
  | 'readNamespacedSecret'
  | 'createNamespacedSecret'
  | 'replaceNamespacedSecret'
  | 'createNamespacedEvent'
>;
export type CustomApi = Pick<
  CustomObjectsApi,
  | 'getNamespacedCustomObject'
  | 'createNamespacedCustomObject'
  | 'patchNamespacedCustomObject'
  | 'deleteNamespacedCustomObject'
>;
export type LeaseApi = Pick<
  CoordinationV1Api,
  'readNamespacedLease' | 'createNamespacedLease' | 'replaceNamespacedLease'
>;
export type AdmissionApi = Pick<
  AdmissionregistrationV1Api,
  'readMutatingWebhookConfiguration' | 'patchMutatingWebhookConfiguration'
>;
export type GroupsApi = Pick<ApisApi, 'getAPIVersions'>;

export function appsApi(rest: Rest): AppsApi {
  const deployments = (namespace: string): string => `${apps}${ns(namespace)}/deployments`;
  const replicaSets = (namespace: string): string => `${apps}${ns(namespace)}/replicasets`;
  return {
    readNamespacedDeployment: ({ namespace, name }) => rest.get(deployments(namespace) + at(name)),
    createNamespacedDeployment: ({ namespace, body, fieldManager }) =>
      rest.call('POST', deployments(namespace), { fieldManager }, body),
    patchNamespacedDeployment: ({ namespace, name, body, fieldManager }) =>
      rest.call('PATCH', deployments(namespace) + at(name), { fieldManager }, body),
    deleteNamespacedDeployment: ({ namespace, name, body, propagationPolicy }) =>
      rest.call('DELETE', deployments(namespace) + at(name), { propagationPolicy }, body ?? {}),
    listNamespacedReplicaSet: ({ namespace, labelSelector }) => rest.get(replicaSets(namespace), { labelSelector }),
    patchNamespacedReplicaSet: ({ namespace, name, body, fieldManager }) =>
      rest.call('PATCH', replicaSets(namespace) + at(name), { fieldManager }, body),
  };
}

export function coreApi(rest: Rest): CoreApi {
  const of = (namespace: string, plural: string): string => `${core}${ns(namespace)}/${plural}`;
  return {
    listNamespacedPod: ({ namespace, labelSelector }) => rest.get(of(namespace, 'pods'), { labelSelector }),
    patchNamespacedPod: ({ namespace, name, body, fieldManager }) =>
      rest.call('PATCH', of(namespace, 'pods') + at(name), { fieldManager }, body),
    readNamespacedService: ({ namespace, name }) => rest.get(of(namespace, 'services') + at(name)),
    listNamespacedService: ({ namespace, labelSelector }) => rest.get(of(namespace, 'services'), { labelSelector }),
    createNamespacedService: ({ namespace, body, fieldManager }) =>
      rest.call('POST', of(namespace, 'services'), { fieldManager }, body),
    replaceNamespacedService: ({ namespace, name, body, fieldManager }) =>
      rest.call('PUT', of(namespace, 'services') + at(name), { fieldManager }, body),
    deleteNamespacedService: ({ namespace, name, body }) =>
      rest.call('DELETE', of(namespace, 'services') + at(name), {}, body ?? {}),
    readNamespacedSecret: ({ namespace, name }) => rest.get(of(namespace, 'secrets') + at(name)),
    createNamespacedSecret: ({ namespace, body, fieldManager }) =>
      rest.call('POST', of(namespace, 'secrets'), { fieldManager }, body),
    replaceNamespacedSecret: ({ namespace, name, body, fieldManager }) =>
      rest.call('PUT', of(namespace, 'secrets') + at(name), { fieldManager }, body),
    createNamespacedEvent: ({ namespace, body }) => rest.call('POST', of(namespace, 'events'), {}, body),
  };
}

export function customApi(rest: Rest): CustomApi {
  const of = (group: string, version: string, namespace: string, plural: string): string =>
    `/apis/${group}/${version}${ns(namespace)}/${plural}`;
  return {
    getNamespacedCustomObject: ({ group, version, namespace, plural, name }) =>
      rest.get(of(group, version, namespace, plural) + at(name)),
    createNamespacedCustomObject: ({ group, version, namespace, plural, body, fieldManager }) =>
      rest.call('POST', of(group, version, namespace, plural), { fieldManager }, body),
    patchNamespacedCustomObject: ({ group, version, namespace, plural, name, body, fieldManager }) =>
      rest.call('PATCH', of(group, version, namespace, plural) + at(name), { fieldManager }, body),
    deleteNamespacedCustomObject: ({ group, version, namespace, plural, name, body }) =>
      rest.call('DELETE', of(group, version, namespace, plural) + at(name), {}, body ?? {}),
  };
}

export function leaseApi(rest: Rest): LeaseApi {
  const of = (namespace: string): string => `/apis/coordination.k8s.io/v1${ns(namespace)}/leases`;
  return {
    readNamespacedLease: ({ namespace, name }) => rest.get(of(namespace) + at(name)),
    createNamespacedLease: ({ namespace, body }) => rest.call('POST', of(namespace), {}, body),
    replaceNamespacedLease: ({ namespace, name, body }) => rest.call('PUT', of(namespace) + at(name), {}, body),
  };
}

export function admissionApi(rest: Rest): AdmissionApi {
  const of = (name: string): string => `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations${at(name)}`;
  return {
    readMutatingWebhookConfiguration: ({ name }) => rest.get(of(name)),
    patchMutatingWebhookConfiguration: ({ name, body, fieldManager }) =>
      rest.call('PATCH', of(name), { fieldManager }, body),
  };
}

export function groupsApi(rest: Rest): GroupsApi {
  return { getAPIVersions: () => rest.get('/apis') };
}

/** A whole list, page by page: one huge answer would hold the API server and this process at once. */
export async function listAll<T extends KubernetesObject>(rest: Rest, path: string): Promise<KubernetesListObject<T>> {
  const items: T[] = [];
  let next: string | undefined;
  let resourceVersion: string | undefined;
  do {
    const page = await rest.get<KubernetesListObject<T>>(path, { limit: 500, continue: next });
    items.push(...page.items);
    // Raw JSON says `continue`; client-node's type renames it `_continue`.
    next = (page.metadata as { continue?: string } | undefined)?.continue;
    resourceVersion = page.metadata?.resourceVersion;
  } while (next);
  return { apiVersion: 'v1', kind: 'List', metadata: { ...(resourceVersion ? { resourceVersion } : {}) }, items };
}
