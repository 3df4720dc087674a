// Watches that heal themselves: a client-node informer stops for good on any error but 410, so
// each one is restarted with backoff. Handlers must be idempotent (a relist replays adds).
// Cached objects keep only what the analyzer reads: managedFields and kubectl's last-applied copy
// are dropped as they arrive. Kinds weir only needs in opted-in namespaces are watched per
// namespace (`namespacedWatch`), so memory follows weir's namespaces, not the cluster (ADR 14).
import { makeInformer } from '@kubernetes/client-node';
import type {
  Informer,
  KubeConfig,
  KubernetesListObject,
  KubernetesObject,
  ObjectCache,
} from '@kubernetes/client-node';
import { describeError } from '../../contract/api.ts';

export interface Watch<T extends KubernetesObject> {
  list(): readonly T[];
  get(name: string, namespace?: string): T | undefined;
  synced(): boolean;
  stop(): Promise<void>;
}

const lastApplied = 'kubectl.kubernetes.io/last-applied-configuration';

/** Drops what the analyzer never reads and what often outweighs the rest of an object. */
function slim(object: KubernetesObject): void {
  const metadata = object.metadata;
  if (!metadata) return;
  delete metadata.managedFields;
  if (metadata.annotations && lastApplied in metadata.annotations) delete metadata.annotations[lastApplied];
}

export function watch<T extends KubernetesObject>(
  kc: KubeConfig,
  path: string,
  list: () => Promise<KubernetesListObject<T>>,
  handlers: {
    change?: (obj: T) => void;
    remove?: (obj: T) => void;
    log: (message: string, fields?: Record<string, unknown>) => void;
  },
): Watch<T> {
  const informer: Informer<T> & ObjectCache<T> = makeInformer(kc, path, list);
  // First of the callbacks, on the very object the cache holds: it is stored lean.
  informer.on('add', slim);
  informer.on('update', slim);
  let synced = false;
  let stopped = false;
  let backoffMs = 500;
  let restart: NodeJS.Timeout | undefined;
  informer.on('add', (o) => handlers.change?.(o));
  informer.on('update', (o) => handlers.change?.(o));
  informer.on('delete', (o) => handlers.remove?.(o));
  informer.on('connect', () => {
    synced = true;
    backoffMs = 500;
  });
  informer.on('error', (error: unknown) => {
    synced = false;
    if (stopped) return;
    handlers.log('watch failed; restarting', { path, error: describeError(error), inMs: backoffMs });
    restart = setTimeout(() => void begin(), backoffMs);
    backoffMs = Math.min(backoffMs * 2, 30_000);
  });
  const begin = async (): Promise<void> => {
    try {
      await informer.start();
      synced = true;
    } catch (error) {
      if (stopped) return;
      handlers.log('watch could not start; retrying', { path, error: describeError(error), inMs: backoffMs });
      restart = setTimeout(() => void begin(), backoffMs);
      backoffMs = Math.min(backoffMs * 2, 30_000);
    }
  };
  void begin();
  return {
    list: () => informer.list(),
    get: (name, namespace) => informer.get(name, namespace),
    synced: () => synced,
    stop: async () => {
      stopped = true;
      if (restart) clearTimeout(restart);
      await informer.stop();
    },
  };
}

export interface NamespacedWatch<T extends KubernetesObject> extends Watch<T> {
  /** From now on, watches exactly these namespaces: starts the new ones, stops the others. */
  follow(namespaces: ReadonlySet<string>): void;
  /** How many namespaces are watched now. */
  watched(): number;
  /** The cached objects of one namespace. */
  in(namespace: string): readonly T[];
  /** This namespace is watched and its cache complete. */
  covers(namespace: string): boolean;
}

/** One healing watch per namespace followed, presented as one watch. */
export function namespacedWatch<T extends KubernetesObject>(
  kc: KubeConfig,
  path: (namespace: string) => string,
  list: (namespace: string) => Promise<KubernetesListObject<T>>,
  handlers: Parameters<typeof watch<T>>[3],
): NamespacedWatch<T> {
  const watches = new Map<string, Watch<T>>();
  let following = false;
  return {
    follow: (namespaces) => {
      following = true;
      for (const [namespace, w] of watches)
        if (!namespaces.has(namespace)) {
          watches.delete(namespace);
          void w.stop();
        }
      for (const namespace of namespaces)
        if (!watches.has(namespace))
          watches.set(
            namespace,
            watch(kc, path(namespace), () => list(namespace), handlers),
          );
    },
    watched: () => watches.size,
    in: (namespace) => watches.get(namespace)?.list() ?? [],
    covers: (namespace) => watches.get(namespace)?.synced() === true,
    list: () => [...watches.values()].flatMap((w) => w.list()),
    get: (name, namespace) => (namespace === undefined ? undefined : watches.get(namespace)?.get(name, namespace)),
    synced: () => following && [...watches.values()].every((w) => w.synced()),
    stop: async () => {
      const all = [...watches.values()];
      watches.clear();
      await Promise.allSettled(all.map((w) => w.stop()));
    },
  };
}
