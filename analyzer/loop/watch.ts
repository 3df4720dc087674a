// Watches that heal themselves: list, then watch from the list's resourceVersion; a watch the
// server ends is resumed from the last version seen, one that expired (410) or failed lists again
// after a backoff. Handlers must be idempotent (a relist replays changes). Cached objects keep
// only what the analyzer reads: managedFields and kubectl's last-applied copy are dropped as they
// arrive. Kinds weir only needs in opted-in namespaces are watched per namespace
// (`namespacedWatch`), so memory follows weir's namespaces, not the cluster (ADR 14).
import type { KubernetesObject } from '@kubernetes/client-node';
import { describeError } from '../../contract/api.ts';
import { KubeError, listAll } from './rest.ts';
import type { Rest } from './rest.ts';

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

/** The server says the version a watch resumes from is gone: list again. */
class Expired extends Error {}

/** An ERROR event's Status: 410 means the version is gone (list again), anything else a failure. */
function watchError(object: unknown): Error {
  const status = object as { code?: number; message?: string };
  return status.code === 410
    ? new Expired(status.message ?? 'resourceVersion too old')
    : new Error(`watch error ${status.code ?? ''}: ${status.message ?? ''}`);
}

const keyOf = (o: KubernetesObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
const versionOf = (o: KubernetesObject): string | undefined => o.metadata?.resourceVersion;

/** Caches an object, lean; true when it is news (a relist replays every object). */
function store<T extends KubernetesObject>(cache: Map<string, T>, object: T): boolean {
  slim(object);
  const known = cache.get(keyOf(object));
  cache.set(keyOf(object), object);
  return !known || versionOf(known) !== versionOf(object);
}

/** A whole list in place of the cache: what changed, and what is gone since. */
function replaceAll<T extends KubernetesObject>(cache: Map<string, T>, items: T[]): { changed: T[]; gone: T[] } {
  const seen = new Set(items.map(keyOf));
  const changed = items.filter((object) => store(cache, object));
  const gone = [...cache].filter(([key]) => !seen.has(key)).map(([, object]) => object);
  for (const object of gone) cache.delete(keyOf(object));
  return { changed, gone };
}

export function watch<T extends KubernetesObject>(
  rest: Rest,
  path: string,
  handlers: {
    change?: (obj: T) => void;
    remove?: (obj: T) => void;
    log: (message: string, fields?: Record<string, unknown>) => void;
  },
): Watch<T> {
  const cache = new Map<string, T>();
  let synced = false;
  let stopped = false;
  let backoffMs = 500;
  let restart: NodeJS.Timeout | undefined;
  let abort = new AbortController();

  const put = (object: T): void => {
    if (store(cache, object)) handlers.change?.(object);
  };
  const drop = (object: T): void => {
    cache.delete(keyOf(object));
    handlers.remove?.(object);
  };

  // The handlers hear of a relist once the cache is complete: one that waits for `synced()` is
  // never told before it would act.
  const relist = async (): Promise<string> => {
    const list = await listAll<T>(rest, path);
    const { changed, gone } = replaceAll(cache, list.items);
    synced = true;
    for (const object of changed) handlers.change?.(object);
    for (const object of gone) handlers.remove?.(object);
    return list.metadata?.resourceVersion ?? '';
  };

  const follow = async (from: string): Promise<void> => {
    let version = from;
    while (!stopped) {
      const started = Date.now();
      let events = 0;
      for await (const event of rest.watch<T>(path, version, abort.signal)) {
        events++;
        if (event.type === 'ERROR') throw watchError(event.object);
        if (event.type === 'ADDED' || event.type === 'MODIFIED') put(event.object);
        else if (event.type === 'DELETED') drop(event.object);
        version = versionOf(event.object) ?? version;
      }
      // A watch the server ends at once, again and again, goes through the backoff, not a tight loop.
      if (events === 0 && Date.now() - started < 1000) throw new Error('the watch ended as soon as it began');
    }
  };

  const begin = async (): Promise<void> => {
    try {
      const version = await relist();
      backoffMs = 500;
      await follow(version);
    } catch (error) {
      synced = false;
      if (stopped) return;
      // An expired version is routine (the watch was away too long): list again at once.
      const expired = error instanceof Expired || (error instanceof KubeError && error.code === 410);
      const inMs = expired ? 0 : backoffMs;
      if (!expired) {
        handlers.log('watch failed; listing again', { path, error: describeError(error), inMs });
        backoffMs = Math.min(backoffMs * 2, 30_000);
      }
      abort = new AbortController();
      restart = setTimeout(() => void begin(), inMs);
    }
  };
  void begin();
  return {
    list: () => [...cache.values()],
    get: (name, namespace) => cache.get(`${namespace ?? ''}/${name}`),
    synced: () => synced,
    stop: () => {
      stopped = true;
      if (restart) clearTimeout(restart);
      abort.abort();
      return Promise.resolve();
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
  rest: Rest,
  path: (namespace: string) => string,
  handlers: Parameters<typeof watch<T>>[2],
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
        if (!watches.has(namespace)) watches.set(namespace, watch(rest, path(namespace), handlers));
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
