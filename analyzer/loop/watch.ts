// Watches that heal themselves: a client-node informer stops for good on any error but 410, so
// each one is restarted with backoff. Handlers must be idempotent (a relist replays adds).
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
