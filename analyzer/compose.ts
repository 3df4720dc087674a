// The analyzer's composition root: builds its edges (API clients with timeouts, router, metrics
// provider, leader election), its watches and its loop from settings, and runs them. `main.ts`
// reads the settings and handles signals; nothing here reads the environment.
import { randomUUID } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { keepCertificates } from './loop/certificates.ts';
import type { KubernetesObject, V1Deployment, V1Namespace, V1Service } from '@kubernetes/client-node';
import { labels, ownedRoutingName } from '../contract/names.ts';
import { unguardedRevision } from '../contract/revision.ts';
import type { ActContext } from './loop/act.ts';
import { eventRecorder } from './loop/kube.ts';
import { Rest, admissionApi, appsApi, coreApi, customApi, groupsApi, leaseApi } from './loop/rest.ts';
import type { CoreApi, GroupsApi, KubeAccess } from './loop/rest.ts';
import type { EventRecorder } from './loop/kube.ts';
import { describeError } from '../contract/api.ts';
import { LeaderElector, safetyMarginMs } from './loop/leader.ts';
import type { Clock } from './ports/clock.ts';
import { PrometheusProvider } from './adapters/prometheus.ts';
import { optedOut, releaseKey } from './loop/observe.ts';
import { unweightOrphans } from './loop/orphans.ts';
import type { RouteKind, TouchedRoutes } from './loop/orphans.ts';
import { resolveRouting } from './core/policy.ts';
import { IstioRouter } from './adapters/istio.ts';
import { GatewayRouter } from './adapters/gateway.ts';
import { RouterByKind } from './ports/router.ts';
import type { TrafficRouter } from './ports/router.ts';
import { gatewayGroup, gatewayVersion } from '../contract/gateway.ts';
import type { HTTPRoute } from '../contract/gateway.ts';
import { parseScope } from './core/scope.ts';
import type { Scope } from './core/scope.ts';
import { Telemetry } from './loop/telemetry.ts';
import { Notifier } from './adapters/notify.ts';
import { noticeOf } from './core/notifications.ts';
import { namespacedWatch, watch } from './loop/watch.ts';
import type { NamespacedWatch, Watch } from './loop/watch.ts';
import { active, ready as passReady, requeue, tick } from './loop/reconcile.ts';
import { WorkQueue } from './loop/queue.ts';
import { scheduler } from './loop/schedule.ts';
import type { LoopDeps } from './loop/reconcile.ts';
import { selects } from '../contract/selector.ts';
import type { AnalyzerSettings } from './settings.ts';
import type { LabelSelector } from '../contract/selector.ts';

export type Log = (message: string, fields?: Record<string, unknown>) => void;

/** `namespace/name` of the guarded Deployments whose routing names this routing object (any kind). */
export function steeredBy(all: readonly V1Deployment[], object: KubernetesObject): string[] {
  const namespace = object.metadata?.namespace ?? '';
  const name = object.metadata?.name ?? '';
  return all
    .filter((d) => {
      if (d.metadata?.namespace !== namespace) return false;
      const routing = resolveRouting(d.metadata.annotations ?? {});
      return (
        routing.virtualService === name ||
        routing.destinationRule === name ||
        routing.httpRoute === name ||
        ownedRoutingName(d.metadata.name ?? '') === name
      );
    })
    .map((d) => `${namespace}/${d.metadata?.name ?? ''}`);
}

/**
 * The test seam of docs/design.md: before actions of `kind` are carried out, and while `file`
 * exists, wait (having written `<file>.held`), so a test can change the cluster between decide
 * and act. Off unless both WEIR_TEST_HOLD_BEFORE and WEIR_TEST_HOLD_FILE are set.
 */
function holdWhileFileExists(
  kind: string,
  file: string,
): (view: unknown, actions: { kind: string }[]) => Promise<void> {
  return async (_view, actions) => {
    if (!actions.some((a) => a.kind === kind) || !existsSync(file)) return;
    writeFileSync(`${file}.held`, new Date().toISOString());
    while (existsSync(file)) await new Promise((resolve) => setTimeout(resolve, 100));
  };
}

/** An update admitted while the webhook was unreachable rolled out unguarded: say so, once per revision. */
function unguardedReporter(deps: {
  events: EventRecorder;
  notify: ActContext['notify'];
  optIn: LabelSelector;
  telemetry: Telemetry;
  log: Log;
  mayWrite: () => boolean;
  namespace: (name: string) => V1Namespace | undefined;
  inScope: (labels: Record<string, string>) => boolean;
}): (d: V1Deployment) => void {
  return (d) => {
    const revision = unguardedRevision(d.metadata?.annotations ?? {}, d.spec?.template);
    const ns = deps.namespace(d.metadata?.namespace ?? '');
    if (!revision || !deps.mayWrite() || !deps.inScope(ns?.metadata?.labels ?? {}) || optedOut(d, ns, deps.optIn))
      return;
    const involved = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: d.metadata?.name ?? '',
      namespace: d.metadata?.namespace ?? '',
      uid: d.metadata?.uid ?? '',
    };
    const message =
      `pod template revision ${revision} was admitted without weir (its webhook was unreachable) ` +
      'and rolled out with no canary; failurePolicy Ignore let it through. ' +
      'Check the webhook, then apply again to release a new template under weir';
    void deps
      .events(involved, 'Warning', 'Unguarded', message, new Date(), true)
      .then((recorded) => {
        if (!recorded) return;
        deps.telemetry.unguarded.inc();
        deps.notify?.({
          namespace: involved.namespace,
          deployment: involved.name,
          type: 'Warning',
          reason: 'Unguarded',
          message,
        });
      })
      .catch((e: unknown) => deps.log('could not record an Unguarded event', { error: describeError(e) }));
  };
}

interface Edges {
  ctx: ActContext;
  notifier?: Notifier;
  core: CoreApi;
  router: TrafficRouter;
  routers: { istio: IstioRouter; gateway: GatewayRouter };
  /** The watches' own requests: their lists may take longer on a big cluster, and are not reads of a release. */
  watches: Rest;
  groups: GroupsApi;
  telemetry: Telemetry;
  provider: PrometheusProvider;
  leader: LeaderElector;
}

/** API clients, router, metrics provider and leader election. */
function buildEdges(access: KubeAccess, settings: AnalyzerSettings, log: Log): Edges {
  // Requests that read or write one release end within the lease's safety margin; the watches'
  // lists of whole kinds may take longer on a big cluster.
  const margin = safetyMarginMs(settings.leaseSeconds);
  const telemetry = new Telemetry();
  // Every request outside the watches is counted: steady state should send none (ADR 14).
  const counted = (method: string, resource: string): void => telemetry.apiRequests.inc({ method, resource });
  const rest = new Rest(access, {
    timeoutMs: margin,
    onRequest: counted,
    onDone: (method, resource, seconds) => telemetry.apiDuration.observe({ method, resource }, seconds),
  });
  const apps = appsApi(rest);
  const core = coreApi(rest);
  const custom = customApi(rest);
  const routers = { istio: new IstioRouter(custom), gateway: new GatewayRouter(custom, core) };
  const router = new RouterByKind({ VirtualService: routers.istio, HTTPRoute: routers.gateway });
  // The watches' own lists (a relist is part of a watch, not a read of a release).
  const watches = new Rest(access, { timeoutMs: 60_000 });
  const groups = groupsApi(new Rest(access, { timeoutMs: 10_000 }));
  const clock: Clock = { wall: () => Date.now() + settings.clockOffsetMs, monotonic: () => performance.now() };
  const provider = new PrometheusProvider({
    ...settings.prometheus,
    observe: (s, ok) => telemetry.queryDuration.observe({ result: ok ? 'ok' : 'error' }, s),
  });
  const leader = new LeaderElector(leaseApi(rest), {
    namespace: settings.namespace,
    name: settings.leaseName,
    identity: settings.identity,
    leaseSeconds: settings.leaseSeconds,
    renewMs: settings.renewMs,
    log,
    clock,
    onChange: (leading) => telemetry.leader.set(leading ? 1 : 0),
  });
  const { secretDir, ...config } = settings.notifications;
  const notifier =
    config.receivers.length > 0
      ? new Notifier(config, {
          secretDir,
          result: (receiver, result) => telemetry.notifications.inc({ receiver, result }),
          depth: (queued) => telemetry.notificationQueue.set(queued),
          log,
        })
      : undefined;
  const ctx: ActContext = {
    ...(notifier
      ? {
          notify: (about) => {
            const notice = noticeOf(about, new Date(clock.wall()), randomUUID());
            if (notice) notifier.notify(notice);
          },
        }
      : {}),
    apps,
    core,
    router,
    podsLabelled: new Map(),
    unrecorded: new Map(),
    events: eventRecorder(core, settings.reportingInstance),
    policies: settings.policies,
    optIn: settings.optIn,
    mayWrite: () => leader.mayWrite(),
    now: () => new Date(clock.wall()),
    onAction: (_view, action) => {
      // A pass kept in memory (ADR 26) writes nothing.
      if (action.kind !== 'status' && action.kind !== 'remember') telemetry.apiWrites.inc({ action: action.kind });
      // The crash-matrix seam (docs/design.md, "Test seams"): die the hardest way, mid-release.
      if (action.kind === settings.crashAfter) process.kill(process.pid, 'SIGKILL');
    },
  };
  return {
    ctx,
    core,
    router,
    routers,
    watches,
    groups,
    telemetry,
    provider,
    leader,
    ...(notifier ? { notifier } : {}),
  };
}

interface Watches {
  deployments: NamespacedWatch<V1Deployment>;
  namespaces: Watch<V1Namespace>;
  virtualServices: NamespacedWatch<KubernetesObject>;
  destinationRules: NamespacedWatch<KubernetesObject>;
  /** Followed only where the cluster serves the Gateway API (found once, at start). */
  httpRoutes: NamespacedWatch<KubernetesObject>;
  services: NamespacedWatch<V1Service>;
  /** Routes that changed (`namespace/name`), by kind, for the orphaned-weight check. */
  touched: TouchedRoutes[];
  /** Follows the namespaces weir serves now (ADR 14); called on namespace changes and each pass. */
  follow: () => void;
}

/**
 * The namespaces whose objects the analyzer caches: opted in and in scope, plus any that still
 * hold a release in flight (an opt-out mid-release must still drain).
 */
export function servedNamespaces(
  namespaces: readonly V1Namespace[],
  deployments: readonly V1Deployment[],
  served: (labels: Record<string, string>) => boolean,
): Set<string> {
  const wanted = new Set<string>();
  for (const ns of namespaces) if (served(ns.metadata?.labels ?? {})) wanted.add(ns.metadata?.name ?? '');
  for (const d of active(deployments)) wanted.add(d.metadata?.namespace ?? '');
  return wanted;
}

/** What a watch's change wakes: one release, every release of a namespace, or the orphan check. */
interface Wake {
  release: (key: string) => void;
  namespace: (namespace: string) => void;
  orphans: () => void;
}

/**
 * A change to a Deployment or to its canary half wakes the release it belongs to; a deleted one
 * also puts its route's weight back on stable, and a Deployment changed past the webhook is reported.
 */
function deploymentHandlers(
  edges: Edges,
  scope: Scope,
  log: Log,
  wake: Wake,
  namespace: (name: string) => V1Namespace | undefined,
  touch: (kind: RouteKind, key: string) => void,
): { change: (d: V1Deployment) => void; remove: (d: V1Deployment) => void } {
  const { leader } = edges;
  const owner = (d: V1Deployment): string =>
    releaseKey(d.metadata?.namespace, d.metadata?.labels?.[labels.canaryOf] ?? d.metadata?.name);
  const reportUnguarded = unguardedReporter({
    events: edges.ctx.events,
    notify: edges.ctx.notify,
    optIn: edges.ctx.optIn,
    telemetry: edges.telemetry,
    log,
    mayWrite: () => leader.mayWrite(),
    namespace,
    inScope: (labels) => scope(labels),
  });
  return {
    change: (d) => {
      reportUnguarded(d);
      wake.release(owner(d));
    },
    remove: (d) => {
      wake.release(owner(d));
      // Its canary goes with it (owner reference), and so do weir's own routing objects; a route of
      // the user's it named is looked at for weight left on the canary (the orphaned-weight check).
      const routing = resolveRouting(d.metadata?.annotations ?? {});
      const ns = d.metadata?.namespace ?? '';
      if (routing.virtualService) touch('VirtualService', `${ns}/${routing.virtualService}`);
      if (routing.httpRoute) touch('HTTPRoute', `${ns}/${routing.httpRoute}`);
    },
  };
}

/** The watches the loop reads, with the handlers that queue the releases a change concerns. */
function startWatches(edges: Edges, scope: Scope, log: Log, wake: Wake): Watches {
  const { watches: rest } = edges;
  // Routes that changed, by kind, for the orphaned-weight check.
  const touched = { VirtualService: new Set<string>(), HTTPRoute: new Set<string>() };
  const touch = (kind: RouteKind, key: string): void => {
    touched[kind].add(key);
    wake.orphans();
  };
  const onDeployment = deploymentHandlers(edges, scope, log, wake, (name) => namespaces.get(name), touch);
  const deployments = namespacedWatch<V1Deployment>(
    rest,
    (namespace) => `/apis/apps/v1/namespaces/${namespace}/deployments`,
    { ...onDeployment, log },
  );
  // A Service decides which routes a release steers (and may be a backend): every release of its namespace looks again.
  const onService = (svc: V1Service): void => wake.namespace(svc.metadata?.namespace ?? '');
  const services = namespacedWatch<V1Service>(rest, (namespace) => `/api/v1/namespaces/${namespace}/services`, {
    change: onService,
    remove: onService,
    log,
  });
  // A routing object that changes — a person's edit mid-step, or after the release — wakes its releases.
  const onRoutingChange = (object: KubernetesObject): void => {
    // Routing objects steer Deployments of their own namespace only.
    for (const key of steeredBy(deployments.in(object.metadata?.namespace ?? ''), object)) wake.release(key);
  };
  const onRoute =
    (kind: RouteKind) =>
    (route: KubernetesObject): void => {
      onRoutingChange(route);
      touch(kind, `${route.metadata?.namespace ?? ''}/${route.metadata?.name ?? ''}`);
    };
  const routing = (
    group: string,
    plural: string,
    change: (o: KubernetesObject) => void,
  ): NamespacedWatch<KubernetesObject> =>
    namespacedWatch<KubernetesObject>(rest, (namespace) => `/apis/${group}/v1/namespaces/${namespace}/${plural}`, {
      change,
      remove: onRoutingChange,
      log,
    });
  const virtualServices = routing('networking.istio.io', 'virtualservices', onRoute('VirtualService'));
  const destinationRules = routing('networking.istio.io', 'destinationrules', onRoutingChange);
  const httpRoutes = routing(gatewayGroup, 'httproutes', onRoute('HTTPRoute'));
  const gatewayApi = gatewayApiServed(edges.groups, log);
  const served = (labels: Record<string, string>): boolean => selects(edges.ctx.optIn, labels) && scope(labels);
  const follow = (): void => {
    // Until every namespace is known, "not served" cannot be told from "not seen yet".
    if (!namespaces.synced()) return;
    const wanted = servedNamespaces(namespaces.list(), deployments.list(), served);
    for (const w of [deployments, services, virtualServices, destinationRules]) w.follow(wanted);
    httpRoutes.follow(gatewayApi.served() ? wanted : new Set());
  };
  gatewayApi.known.then(follow, () => undefined);
  // A label change can opt a namespace out mid-release: its releases drain.
  const onNamespace = (ns: V1Namespace): void => {
    follow();
    wake.namespace(ns.metadata?.name ?? '');
  };
  const namespaces = watch<V1Namespace>(rest, '/api/v1/namespaces', {
    change: onNamespace,
    remove: onNamespace,
    log,
  });
  return {
    deployments,
    namespaces,
    virtualServices,
    destinationRules,
    httpRoutes,
    services,
    touched: [
      { kind: 'VirtualService', watch: virtualServices, keys: touched.VirtualService },
      { kind: 'HTTPRoute', watch: httpRoutes, keys: touched.HTTPRoute },
    ],
    follow,
  };
}

/**
 * Whether the cluster serves HTTPRoute (`gateway.networking.k8s.io/v1`), asked once at start until
 * an answer comes: without it, no HTTPRoute is watched, and a Deployment naming one hears why.
 */
function gatewayApiServed(apis: GroupsApi, log: Log): { served: () => boolean; known: Promise<void> } {
  let served = false;
  const ask = async (delayMs: number): Promise<void> => {
    try {
      const groups = await apis.getAPIVersions();
      const group = groups.groups.find((g) => g.name === gatewayGroup);
      served = group?.versions.some((v) => v.version === gatewayVersion) === true;
      log('Gateway API', { served, group: gatewayGroup, version: gatewayVersion });
    } catch (e) {
      log('could not ask which API groups are served; asking again', { error: describeError(e), inMs: delayMs });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return ask(Math.min(delayMs * 2, 30_000));
    }
  };
  return { served: () => served, known: ask(1000) };
}

/** Runtime TLS (ADR 13): a step every second while one is due, else a look every 15 s or less; leader only. */
function certificateKeeper(
  access: KubeAccess,
  s: NonNullable<AnalyzerSettings['certificates']> & { namespace: string },
  edges: Pick<Edges, 'leader' | 'telemetry'>,
  log: Log,
): { start: () => void; stop: () => void } {
  const rest = new Rest(access, { timeoutMs: 10_000 });
  const apis = { core: coreApi(rest), admission: admissionApi(rest) };
  const settings = {
    namespace: s.namespace,
    secret: s.secret,
    webhookConfiguration: s.webhookConfiguration,
    policy: { names: s.names, servingValidityMs: s.servingValidityMs, authorityValidityMs: s.authorityValidityMs },
  };
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const next = (ms: number): void => {
    if (!stopped) timer = setTimeout(run, ms);
  };
  const run = (): void => {
    if (!edges.leader.mayWrite()) return next(1000);
    keepCertificates(apis, settings, new Date()).then(
      ({ step, servingNotAfter }) => {
        if (servingNotAfter !== undefined) edges.telemetry.certificateExpiry.set(servingNotAfter);
        // Often enough that a renewal due with a third of the lifetime left is never found late.
        if (step.kind === 'keep') return next(Math.min(15_000, s.servingValidityMs / 12));
        edges.telemetry.certificateSteps.inc({ step: step.kind });
        log('webhook certificate', { step: step.kind, ...('reason' in step ? { reason: step.reason } : {}) });
        next(1000);
      },
      (e: unknown) => {
        log('could not keep the webhook certificate; retrying', { error: describeError(e) });
        next(5000);
      },
    );
  };
  return {
    start: () => next(0),
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

/**
 * One pass: the releases whose keys are due, then the orphaned-weight check if a VirtualService
 * changed. On becoming leader, and every resync period, every release in flight is queued again.
 */
function releasePass(p: {
  loopDeps: LoopDeps;
  w: Watches;
  queue: WorkQueue;
  settings: AnalyzerSettings;
  scope: Scope;
  log: Log;
}): () => Promise<void> {
  const { loopDeps, w, queue, settings } = p;
  const { ctx, telemetry } = loopDeps;
  let lastResync = -Infinity;
  let leading = false;
  let orphansRunning = false;
  const resync = (now: number): void => {
    lastResync = now;
    w.follow();
    for (const d of active(w.deployments.list())) queue.add(releaseKey(d.metadata?.namespace, d.metadata?.name), now);
    gauges();
  };
  const gauges = (): void => {
    telemetry.queueDepth.set(queue.size);
    for (const [kind, cached] of [
      ['Deployment', w.deployments],
      ['Service', w.services],
      ['VirtualService', w.virtualServices],
      ['DestinationRule', w.destinationRules],
      ['HTTPRoute', w.httpRoutes],
      ['Namespace', w.namespaces],
    ] as const)
      telemetry.cachedObjects.set({ kind }, cached.list().length);
  };
  const namespaceInScope = (namespace: string): boolean => p.scope(w.namespaces.get(namespace)?.metadata?.labels ?? {});
  return async () => {
    if (!passReady(loopDeps)) {
      leading = false;
      return;
    }
    const now = ctx.now().getTime();
    // The polling seam looks at every release in flight on every tick, as before ADR 16.
    if (!leading || settings.polling || now - lastResync >= settings.resyncMs) resync(now);
    leading = true;
    const keys = queue.take(now);
    if (keys.length > 0) {
      try {
        requeue(queue, await tick(loopDeps, new Set(keys)), ctx.now().getTime(), settings.tickMs);
      } finally {
        for (const key of keys) queue.done(key);
      }
      gauges();
    }
    // Every cache the check reads must be complete: a namespace not yet seen is not "out of scope".
    if (orphansRunning || !w.deployments.synced() || !w.namespaces.synced()) return;
    // One pass at a time looks for orphaned routes; passes may overlap.
    orphansRunning = true;
    try {
      for (const touched of w.touched) {
        if (touched.keys.size === 0 || !touched.watch.synced()) continue;
        await unweightOrphans({ ...ctx, log: p.log }, touched, w.deployments.list(), namespaceInScope);
      }
    } finally {
      orphansRunning = false;
    }
  };
}

export interface Analyzer {
  start(): void;
  stop(): Promise<void>;
}

/** The analyzer, built and not yet started. */
export function buildAnalyzer(access: KubeAccess, settings: AnalyzerSettings, log: Log): Analyzer {
  const edges = buildEdges(access, settings, log);
  const { ctx, telemetry, provider, leader } = edges;
  const scope = parseScope(settings.scope);
  const queue = new WorkQueue({
    baseDelayMs: settings.tickMs,
    maxDelayMs: 30_000,
    taken: (waitedMs) => telemetry.queueWait.observe(waitedMs / 1000),
  });
  const now = (): number => ctx.now().getTime();
  const wake: Wake = {
    release: (key) => {
      queue.add(key, now());
      passes.poke();
    },
    namespace: (namespace) => {
      for (const d of active(w.deployments.in(namespace))) wake.release(releaseKey(namespace, d.metadata?.name));
    },
    orphans: () => passes.poke(),
  };
  const w = startWatches(edges, scope, log, wake);
  // observe and the router read from the watches, and routing writes are computed from them, fenced (ADR 14).
  if (!settings.polling) {
    ctx.cache = {
      deployment: (namespace, name) => w.deployments.get(name, namespace),
      services: (namespace) => w.services.in(namespace),
    };
    edges.routers.istio.useCache((plural, namespace, name) => {
      const cached = plural === 'virtualservices' ? w.virtualServices : w.destinationRules;
      return cached.covers(namespace) ? cached.get(name, namespace) : 'unknown';
    });
    edges.routers.gateway.useCache({
      route: (namespace, name) =>
        w.httpRoutes.covers(namespace) ? (w.httpRoutes.get(name, namespace) as HTTPRoute | undefined) : 'unknown',
      service: (namespace, name) => (w.services.covers(namespace) ? w.services.get(name, namespace) : 'unknown'),
    });
  }
  let lastPass = Date.now();
  const live = (): string | undefined => {
    const since = Date.now() - lastPass;
    return since > settings.livenessMs ? `no reconcile pass has finished for ${Math.round(since / 1000)}s` : undefined;
  };
  const ready = (): boolean => w.deployments.synced() && w.namespaces.synced();
  const server = telemetry.serve(settings.host, settings.port, ready, live);
  const beforeAct = settings.hold ? holdWhileFileExists(settings.hold.kind, settings.hold.file) : undefined;
  const loopDeps = { ctx, provider, telemetry, ...w, log, scope, ...(beforeAct ? { beforeAct } : {}) };
  const passes = scheduler({
    tickMs: settings.tickMs,
    batchMs: settings.batchMs,
    now,
    nextDue: () => queue.nextDue(),
    pass: releasePass({ loopDeps, w, queue, settings, scope, log }),
    passed: () => (lastPass = Date.now()),
    log,
  });
  const certificates = settings.certificates
    ? certificateKeeper(access, { namespace: settings.namespace, ...settings.certificates }, edges, log)
    : undefined;
  return {
    start: () => {
      leader.start();
      passes.start();
      certificates?.start();
    },
    stop: async () => {
      passes.stop();
      certificates?.stop();
      edges.notifier?.close();
      const watches = [w.deployments, w.namespaces, w.virtualServices, w.destinationRules, w.httpRoutes, w.services];
      await Promise.allSettled([leader.stop(), ...watches.map((x) => x.stop()), provider.close()]);
      await new Promise((resolve) => server.close(resolve));
      await Rest.close(access);
    },
  };
}
