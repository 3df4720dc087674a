// The analyzer's own API plumbing: clients whose requests time out within the leader's safety
// margin, and Events that `kubectl describe` shows. Shared helpers are in contract/api.ts.
import { ServerConfiguration, createConfiguration } from '@kubernetes/client-node';
import type {
  ApiType,
  Configuration,
  CoreV1Api,
  KubeConfig,
  RequestContext,
  SecurityAuthentication,
  V1ObjectReference,
} from '@kubernetes/client-node';
import { reportingComponent } from '../../contract/names.ts';

/** The resource a request is about, from its URL: `deployments`, `virtualservices`, `leases`, … */
export function resourceOf(url: string): string {
  const path = new URL(url).pathname.split('/').filter(Boolean);
  const rest = path[0] === 'api' ? path.slice(2) : path.slice(3);
  return (rest[0] === 'namespaces' && rest.length >= 3 ? rest[2] : rest[0]) ?? 'unknown';
}

const shared = new WeakMap<KubeConfig, SecurityAuthentication>();

/**
 * The kubeconfig's authentication with one connection pool for every request. client-node gives
 * each request a dispatcher of its own — a new TLS connection and handshake per request, measured
 * as the analyzer's largest source of garbage at 100 releases. Headers (tokens, which rotate) are
 * still applied per request; the TLS material is read once, as client-go's transport cache does.
 */
function pooled(kc: KubeConfig): SecurityAuthentication {
  const known = shared.get(kc);
  if (known) return known;
  let dispatcher: ReturnType<RequestContext['getDispatcher']>;
  const auth: SecurityAuthentication = {
    getName: () => 'kubeconfig, one connection pool',
    applySecurityAuthentication: async (context) => {
      await kc.applySecurityAuthentication(context);
      dispatcher ??= context.getDispatcher();
      if (dispatcher) context.setDispatcher(dispatcher);
    },
  };
  shared.set(kc, auth);
  return auth;
}

/**
 * An API client like `kc.makeApiClient`, whose every request is abandoned after `timeoutMs`: a
 * write the leader started can never land after its lease could have passed to another (ADR 10).
 */
export function apiClient<T extends ApiType>(
  kc: KubeConfig,
  api: new (config: Configuration) => T,
  timeoutMs: number,
  onRequest?: (method: string, resource: string) => void,
): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig names no current cluster');
  const config = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: pooled(kc) },
    promiseMiddleware: [
      {
        pre: (context) => {
          context.setSignal(AbortSignal.timeout(timeoutMs));
          onRequest?.(context.getHttpMethod(), resourceOf(context.getUrl()));
          context.setHeaderParam('User-Agent', 'weir-analyzer');
          return Promise.resolve(context);
        },
        post: (response) => Promise.resolve(response),
      },
    ],
  });
  return new api(config);
}

/** Events recorded with `once`, by object, reason and message: a hold repeated every tick is one event. */
const recent = new Map<string, number>();
const repeatAfterMs = 10 * 60_000;

function repeated(key: string, now: Date): boolean {
  const last = recent.get(key);
  if (last !== undefined && now.getTime() - last < repeatAfterMs) return true;
  recent.delete(key);
  recent.set(key, now.getTime());
  // Oldest first in a Map: drop the oldest past a bound, so memory stays flat.
  if (recent.size > 10_000) recent.delete(recent.keys().next().value ?? '');
  return false;
}

/** A short random suffix, so two events in the same millisecond get different names. */
const uniqueSuffix = (): string => Math.floor(Math.random() * 4096).toString(16);

/** Records an Event; with `once`, the same event about the same object is recorded once per ten minutes. */
export type EventRecorder = (
  involved: V1ObjectReference,
  type: 'Normal' | 'Warning',
  reason: string,
  message: string,
  now: Date,
  once?: boolean,
) => Promise<boolean>;

/** The Event recorder of one analyzer process; `instance` names it in every Event (the pod's name). */
export function eventRecorder(core: CoreV1Api, instance: string): EventRecorder {
  return async (involved, type, reason, message, now, once = false) => {
    if (once && repeated(`${involved.uid ?? involved.name ?? ''}|${reason}|${message}`, now)) return false;
    const namespace = involved.namespace ?? 'default';
    await core.createNamespacedEvent({
      namespace,
      body: {
        metadata: {
          name: `${involved.name ?? 'weir'}.${now.getTime().toString(16)}${uniqueSuffix()}`,
          namespace,
        },
        involvedObject: involved,
        reason,
        message: message.slice(0, 1024),
        type,
        source: { component: 'weir-analyzer' },
        reportingComponent: reportingComponent,
        reportingInstance: instance,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      },
    });
    return true;
  };
}
