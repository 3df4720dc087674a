// Thin helpers over @kubernetes/client-node: JSON Patch with its content type set explicitly,
// 404 as undefined, and Events that `kubectl describe` shows.
import {
  ApiException,
  PatchStrategy,
  ServerConfiguration,
  createConfiguration,
  setHeaderOptions,
} from '@kubernetes/client-node';
import type { ApiType, Configuration, CoreV1Api, KubeConfig, V1ObjectReference } from '@kubernetes/client-node';
import type { Operation } from 'fast-json-patch';

export const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);

export type PatchOp = Operation;

/** The one field manager of every write weir makes, so `managedFields` attributes weir's fields to weir. */
export const fieldManager = 'weir';

/**
 * An API client like `kc.makeApiClient`, whose every request is abandoned after `timeoutMs`: a
 * write the leader started can never land after its lease could have passed to another (ADR 10).
 */
export function apiClient<T extends ApiType>(
  kc: KubeConfig,
  api: new (config: Configuration) => T,
  timeoutMs: number,
): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig names no current cluster');
  const config = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: [
      {
        pre: (context) => {
          context.setSignal(AbortSignal.timeout(timeoutMs));
          context.setHeaderParam('User-Agent', 'weir-analyzer');
          return Promise.resolve(context);
        },
        post: (response) => Promise.resolve(response),
      },
    ],
  });
  return new api(config);
}

/** JSON Pointer escaping of one key ("/" → "~1", "~" → "~0"). */
export const pointer = (key: string): string => key.replaceAll('~', '~0').replaceAll('/', '~1');

export const isNotFound = (error: unknown): boolean => error instanceof ApiException && error.code === 404;
export const isConflict = (error: unknown): boolean =>
  error instanceof ApiException && (error.code === 409 || error.code === 422);

/** Reads an object, with 404 as undefined. */
export async function maybe<T>(read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** A short description of an API error for logs and events. */
export function describeError(error: unknown): string {
  if (error instanceof ApiException) {
    const body = error.body as { message?: string } | string | undefined;
    const message =
      typeof body === 'object' && body?.message
        ? body.message
        : typeof body === 'string'
          ? body.slice(0, 300)
          : error.message;
    return `${error.code}: ${message}`;
  }
  return error instanceof Error ? error.message : String(error);
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
export async function recordEvent(
  core: CoreV1Api,
  involved: V1ObjectReference,
  type: 'Normal' | 'Warning',
  reason: string,
  message: string,
  now: Date,
  once = false,
): Promise<boolean> {
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
      reportingComponent: 'weir.dev/analyzer',
      reportingInstance: process.env.HOSTNAME ?? 'weir-analyzer',
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    },
  });
  return true;
}
