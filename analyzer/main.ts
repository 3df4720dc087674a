// The analyzer process: settings from the environment, watches, leader election, the loop.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { AppsV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import type { CoreV1Api as CoreApi, KubernetesListObject, KubernetesObject, V1Deployment, V1Namespace } from '@kubernetes/client-node';
import { annotations, ownedRoutingName } from '../contract/names.ts';
import { apiClient, describeError, recordEvent } from './kube.ts';
import { unguardedRevision } from '../contract/revision.ts';
import { optedOut } from './observe.ts';
import { LeaderElector, safetyMarginMs } from './leader.ts';
import { PrometheusProvider } from './metrics/prometheus.ts';
import { defaultPolicy, parseDuration, parsePolicyFile, resolveRouting } from './policy.ts';
import type { Policy } from './policy.ts';
import { tick } from './reconcile.ts';
import { unweightOrphans } from './orphans.ts';
import { IstioRouter, routeTarget } from './router/istio.ts';
import { Telemetry } from './telemetry.ts';
import { watch } from './watch.ts';
import { parseScope } from './scope.ts';

export interface AnalyzerSettings {
  prometheus: { url: string; timeoutMs: number; bearerToken?: string; basicAuth?: { username: string; password: string }; caFile?: string };
  policies: Record<string, Policy>;
  namespace: string;
  leaseName: string;
  identity: string;
  leaseSeconds: number;
  renewMs: number;
  tickMs: number;
  /** /healthz fails when no pass has finished for this long. */
  livenessMs: number;
  /** Test seam: this process's wall clock runs this far ahead (or behind) of the machine's. */
  clockOffsetMs: number;
  /** Test seam: hold before carrying out actions of this kind while `file` exists. */
  hold?: { kind: string; file: string };
  host: string;
  port: number;
  scope: string;
}

function duration(env: NodeJS.ProcessEnv, key: string, fallback: string): number {
  const text = env[key] ?? fallback;
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) throw new Error(`${key}=${text} is not a duration such as 1s or 500ms`);
  return ms;
}

function clockOffset(text: string | undefined): number {
  if (!text) return 0;
  const ms = parseDuration(text.replace(/^[-+]/, ''));
  if (ms === undefined) throw new Error(`WEIR_TEST_CLOCK_OFFSET=${text} is not a duration such as 60s or -60s`);
  return text.startsWith('-') ? -ms : ms;
}

function testSeam(env: NodeJS.ProcessEnv): Pick<AnalyzerSettings, 'hold'> {
  const kind = env.WEIR_TEST_HOLD_BEFORE;
  const file = env.WEIR_TEST_HOLD_FILE;
  return kind && file ? { hold: { kind, file } } : {};
}

/** Reads settings from the environment; a missing or bad value is an error that names it. */
export function settingsFromEnv(env: NodeJS.ProcessEnv): AnalyzerSettings {
  const url = env.WEIR_PROMETHEUS_URL;
  if (!url) throw new Error('WEIR_PROMETHEUS_URL must name the Prometheus to ask, e.g. http://prometheus.istio-system:9090');
  let policies: Record<string, Policy> = { default: defaultPolicy };
  if (env.WEIR_POLICY_FILE) {
    const parsed = parsePolicyFile(readFileSync(env.WEIR_POLICY_FILE, 'utf8'));
    if (!parsed.ok) throw new Error(`${env.WEIR_POLICY_FILE}: ${parsed.errors.join('; ')}`);
    policies = parsed.value;
  }
  const token = env.WEIR_PROMETHEUS_TOKEN ?? (env.WEIR_PROMETHEUS_TOKEN_FILE ? readFileSync(env.WEIR_PROMETHEUS_TOKEN_FILE, 'utf8').trim() : undefined);
  const port = Number(env.WEIR_ANALYZER_PORT ?? '8081');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`WEIR_ANALYZER_PORT=${env.WEIR_ANALYZER_PORT} is not a port number`);
  const leaseSeconds = Math.round(duration(env, 'WEIR_LEASE_DURATION', '15s') / 1000);
  return {
    prometheus: {
      url,
      timeoutMs: duration(env, 'WEIR_PROMETHEUS_TIMEOUT', '10s'),
      ...(token ? { bearerToken: token } : {}),
      ...(env.WEIR_PROMETHEUS_USERNAME ? { basicAuth: { username: env.WEIR_PROMETHEUS_USERNAME, password: env.WEIR_PROMETHEUS_PASSWORD ?? '' } } : {}),
      ...(env.WEIR_PROMETHEUS_CA ? { caFile: env.WEIR_PROMETHEUS_CA } : {}),
    },
    policies,
    namespace: env.WEIR_NAMESPACE ?? 'weir-system',
    leaseName: env.WEIR_LEASE_NAME ?? 'weir-analyzer',
    identity: env.WEIR_IDENTITY ?? `${hostname()}-${process.pid}`,
    leaseSeconds: Math.max(2, leaseSeconds),
    renewMs: duration(env, 'WEIR_LEASE_RENEW', `${Math.max(1, Math.floor(leaseSeconds / 3))}s`),
    tickMs: duration(env, 'WEIR_TICK', '1s'),
    livenessMs: duration(env, 'WEIR_LIVENESS_TIMEOUT', '60s'),
    ...testSeam(env),
    clockOffsetMs: clockOffset(env.WEIR_TEST_CLOCK_OFFSET),
    host: env.WEIR_ANALYZER_HOST ?? '0.0.0.0',
    port,
    scope: env.WEIR_SCOPE ?? '',
  };
}

/** A Deployment deleted mid-release: its canary goes with it (owner reference); its weight must too. */
async function unweightDeleted(router: IstioRouter, d: V1Deployment): Promise<void> {
  const phase = d.metadata?.annotations?.[annotations.phase];
  if (phase !== 'Progressing' && phase !== 'Promoting') return;
  const target = routeTarget(d.metadata?.namespace ?? '', resolveRouting(d.metadata?.annotations ?? {}), undefined, { name: d.metadata?.name ?? '', uid: d.metadata?.uid ?? '' });
  // weir's own routing objects are owned by the Deployment and collected with it.
  if ('error' in target || target.owned) return;
  const read = await router.read(target);
  if (read.ok && read.canaryWeight > 0) await router.setWeight(target, 0);
}

/** `namespace/name` of the guarded Deployments whose routing names this VirtualService or DestinationRule. */
export function steeredBy(all: readonly V1Deployment[], object: KubernetesObject): string[] {
  const namespace = object.metadata?.namespace ?? '';
  const name = object.metadata?.name ?? '';
  return all.filter((d) => {
    if (d.metadata?.namespace !== namespace) return false;
    const routing = resolveRouting(d.metadata.annotations ?? {});
    return routing.virtualService === name || routing.destinationRule === name || ownedRoutingName(d.metadata.name ?? '') === name;
  }).map((d) => `${namespace}/${d.metadata?.name ?? ''}`);
}

async function listIstio(custom: CustomObjectsApi, plural: string): Promise<KubernetesListObject<KubernetesObject>> {
  return (await custom.listClusterCustomObject({ group: 'networking.istio.io', version: 'v1', plural })) as KubernetesListObject<KubernetesObject>;
}

/**
 * The test seam of docs/design.md: before actions of `kind` are carried out, and while `file`
 * exists, wait (having written `<file>.held`), so a test can change the cluster between decide
 * and act. Off unless both WEIR_TEST_HOLD_BEFORE and WEIR_TEST_HOLD_FILE are set.
 */
function holdWhileFileExists(kind: string, file: string): (view: unknown, actions: { kind: string }[]) => Promise<void> {
  return async (_view, actions) => {
    if (!actions.some((a) => a.kind === kind) || !existsSync(file)) return;
    writeFileSync(`${file}.held`, new Date().toISOString());
    while (existsSync(file)) await new Promise((resolve) => setTimeout(resolve, 100));
  };
}

const log = (message: string, fields: Record<string, unknown> = {}): void => {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), component: 'analyzer', msg: message, ...fields })}\n`);
};

/** An update admitted while the webhook was unreachable rolled out unguarded: say so, once per revision. */
function unguardedReporter(deps: {
  core: CoreApi; telemetry: Telemetry; log: typeof log; mayWrite: () => boolean;
  namespace: (name: string) => V1Namespace | undefined; inScope: (labels: Record<string, string>) => boolean;
}): (d: V1Deployment) => void {
  return (d) => {
    const revision = unguardedRevision(d.metadata?.annotations ?? {}, d.spec?.template);
    const ns = deps.namespace(d.metadata?.namespace ?? '');
    if (!revision || !deps.mayWrite() || !deps.inScope(ns?.metadata?.labels ?? {}) || optedOut(d, ns)) return;
    const involved = { apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata?.name ?? '', namespace: d.metadata?.namespace ?? '', uid: d.metadata?.uid ?? '' };
    const message = `pod template revision ${revision} was admitted without weir (its webhook was unreachable) and rolled out with no canary; `
      + 'failurePolicy Ignore let it through. Check the webhook, then apply again to release a new template under weir';
    void recordEvent(deps.core, involved, 'Warning', 'Unguarded', message, new Date(), true)
      .then((recorded) => { if (recorded) deps.telemetry.unguarded.inc(); })
      .catch((e: unknown) => deps.log('could not record an Unguarded event', { error: describeError(e) }));
  };
}


async function main(): Promise<void> {
  const settings = settingsFromEnv(process.env);
  const kc = new KubeConfig();
  kc.loadFromDefault();
  // Requests that read or write one release end within the lease's safety margin; the watches'
  // lists of whole kinds may take longer on a big cluster.
  const margin = safetyMarginMs(settings.leaseSeconds);
  const apps = apiClient(kc, AppsV1Api, margin);
  const core = apiClient(kc, CoreV1Api, margin);
  const custom = apiClient(kc, CustomObjectsApi, margin);
  const lists = { apps: apiClient(kc, AppsV1Api, 60_000), core: apiClient(kc, CoreV1Api, 60_000), custom: apiClient(kc, CustomObjectsApi, 60_000) };
  const router = new IstioRouter(custom);
  const clock = { wall: () => Date.now() + settings.clockOffsetMs, monotonic: () => performance.now() };
  const telemetry = new Telemetry();
  const provider = new PrometheusProvider({ ...settings.prometheus, observe: (s, ok) => telemetry.queryDuration.observe({ result: ok ? 'ok' : 'error' }, s) });
  const leader = new LeaderElector(apiClient(kc, CoordinationV1Api, margin), {
    namespace: settings.namespace, name: settings.leaseName, identity: settings.identity, leaseSeconds: settings.leaseSeconds, renewMs: settings.renewMs, log, clock,
    onChange: (leading) => telemetry.leader.set(leading ? 1 : 0),
  });
  const ctx = {
    apps, core, router, policies: settings.policies, mayWrite: () => leader.mayWrite(), now: () => new Date(clock.wall()),
    onAction: (_view: unknown, action: { kind: string }) => { if (action.kind !== 'status') telemetry.apiWrites.inc({ action: action.kind }); },
  };
  const scope = parseScope(settings.scope);
  const onDelete = (d: V1Deployment): void => {
    if (!leader.mayWrite() || !scope(namespaces.get(d.metadata?.namespace ?? '')?.metadata?.labels ?? {})) return;
    void unweightDeleted(router, d).catch((e: unknown) => log('could not reset the weight of a deleted release', { error: describeError(e) }));
  };
  const onDeployment = unguardedReporter({
    core, telemetry, log, mayWrite: () => leader.mayWrite(), namespace: (name) => namespaces.get(name), inScope: (labels) => scope(labels),
  });
  const deployments = watch<V1Deployment>(kc, '/apis/apps/v1/deployments', () => lists.apps.listDeploymentForAllNamespaces(), { change: onDeployment, remove: onDelete, log });
  const namespaces = watch<V1Namespace>(kc, '/api/v1/namespaces', () => lists.core.listNamespace(), { log });
  // A routing object that changes after its release is looked at again on the next pass.
  const touched = new Set<string>();
  const touchedVirtualServices = new Set<string>();
  const onRoutingChange = (object: KubernetesObject): void => {
    for (const key of steeredBy(deployments.list(), object)) touched.add(key);
  };
  const virtualServices = watch<KubernetesObject>(kc, '/apis/networking.istio.io/v1/virtualservices', () => listIstio(lists.custom, 'virtualservices'), {
    change: (vs) => {
      onRoutingChange(vs);
      touchedVirtualServices.add(`${vs.metadata?.namespace ?? ''}/${vs.metadata?.name ?? ''}`);
    },
    remove: onRoutingChange, log,
  });
  const destinationRules = watch<KubernetesObject>(kc, '/apis/networking.istio.io/v1/destinationrules', () => listIstio(lists.custom, 'destinationrules'), {
    change: onRoutingChange, remove: onRoutingChange, log,
  });
  const routingWatches = [virtualServices, destinationRules];
  const namespaceInScope = (namespace: string): boolean => scope(namespaces.get(namespace)?.metadata?.labels ?? {});
  let lastPass = Date.now();
  const live = (): string | undefined => {
    const since = Date.now() - lastPass;
    return since > settings.livenessMs ? `no reconcile pass has finished for ${Math.round(since / 1000)}s` : undefined;
  };
  const server = telemetry.serve(settings.host, settings.port, () => deployments.synced() && namespaces.synced(), live);
  const beforeAct = settings.hold ? holdWhileFileExists(settings.hold.kind, settings.hold.file) : undefined;
  leader.start();
  let timer: NodeJS.Timeout | undefined;
  let stopping = false;
  const loop = (): void => {
    void tick({ ctx, provider, telemetry, deployments, namespaces, log, scope, touched, ...(beforeAct ? { beforeAct } : {}) })
      .then(() => (deployments.synced() && virtualServices.synced()
        ? unweightOrphans({ ...ctx, log }, virtualServices, deployments.list(), touchedVirtualServices, namespaceInScope)
        : undefined))
      .catch((e: unknown) => log('tick failed', { error: describeError(e) })).finally(() => {
        lastPass = Date.now();
        if (!stopping) timer = setTimeout(loop, settings.tickMs);
    });
  };
  loop();
  log('analyzer started', { identity: settings.identity, prometheus: settings.prometheus.url, policies: Object.keys(settings.policies) });
  const stop = (signal: string): void => {
    stopping = true;
    log('shutting down', { signal });
    if (timer) clearTimeout(timer);
    void Promise.allSettled([leader.stop(), deployments.stop(), namespaces.stop(), ...routingWatches.map((w) => w.stop()), provider.close()]).then(() => server.close(() => process.exit(0)));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) {
  main().catch((error: unknown) => {
    process.stderr.write(`weir analyzer: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
