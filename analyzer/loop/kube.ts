// Events that `kubectl describe` shows, recorded by the analyzer. Its API client is rest.ts;
// shared helpers are in contract/api.ts.
import type { V1ObjectReference } from '@kubernetes/client-node';
import { reportingComponent } from '../../contract/names.ts';
import type { CoreApi } from './rest.ts';

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
export function eventRecorder(core: Pick<CoreApi, 'createNamespacedEvent'>, instance: string): EventRecorder {
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
