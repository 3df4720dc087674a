// Notifications (issue 16): which release events go to which receiver, and what each receiver is
// sent. Pure: the configuration's parsing, the routing of one notice, and the payloads. Sending
// (queue, retries, timeouts, secrets) is adapters/notify.ts. Receiver URLs and passwords are never
// in the configuration: it names keys of a Secret.
import type { Parsed } from './policy.ts';

export const notificationEvents = [
  'started',
  'step',
  'checkFailed',
  'rollingBack',
  'rolledBack',
  'promoted',
  'unguarded',
] as const;
export type NotificationEvent = (typeof notificationEvents)[number];

/** The Event reasons weir records (docs/design.md, "Events") that are worth a notification. */
const byReason: Record<string, NotificationEvent> = {
  ReleaseStarted: 'started',
  Superseded: 'started',
  WeightSet: 'step',
  MirrorSet: 'step',
  CheckFailed: 'checkFailed',
  RollingBack: 'rollingBack',
  RolledBack: 'rolledBack',
  Promoted: 'promoted',
  Unguarded: 'unguarded',
};

/** The notification event of an Event reason, if it is one. */
export const notificationEventOf = (reason: string): NotificationEvent | undefined =>
  Object.hasOwn(byReason, reason) ? byReason[reason] : undefined;

export const receiverTypes = ['webhook', 'slack', 'teams', 'email'] as const;
export type ReceiverType = (typeof receiverTypes)[number];

export interface Receiver {
  name: string;
  type: ReceiverType;
  /** The Secret key holding the URL (webhook, slack, teams). */
  urlKey?: string;
  email?: {
    host: string;
    port: number;
    /** TLS from the first byte (port 465); otherwise STARTTLS when the server offers it. */
    secure: boolean;
    from: string;
    to: string[];
    usernameKey?: string;
    passwordKey?: string;
  };
}

export interface NotificationRoute {
  receiver: string;
  events: NotificationEvent[];
  /** Only releases in these namespaces; all when absent. */
  namespaces?: string[];
}

export interface Notifications {
  receivers: Receiver[];
  routes: NotificationRoute[];
}

export const noNotifications: Notifications = { receivers: [], routes: [] };

/** One release event, as every receiver is told of it. */
export interface Notice {
  id: string;
  event: NotificationEvent;
  namespace: string;
  deployment: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  time: string;
}

/** The notice of an Event weir records, when its reason is worth one; `id` is unique per notice. */
export function noticeOf(
  about: { namespace: string; deployment: string; type: 'Normal' | 'Warning'; reason: string; message: string },
  time: Date,
  id: string,
): Notice | undefined {
  const event = notificationEventOf(about.reason);
  return event ? { id, event, ...about, time: time.toISOString() } : undefined;
}

/** The receivers a notice goes to: every route that takes its event (and namespace), once each. */
export function receiversFor(config: Notifications, n: Notice): Receiver[] {
  const names = new Set(
    config.routes
      .filter((r) => r.events.includes(n.event) && (!r.namespaces || r.namespaces.includes(n.namespace)))
      .map((r) => r.receiver),
  );
  return config.receivers.filter((r) => names.has(r.name));
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isKey = (v: unknown): v is string => typeof v === 'string' && /^[-._a-zA-Z0-9]{1,253}$/.test(v);
const strings = (v: unknown): string[] | undefined =>
  Array.isArray(v) && v.every((s): s is string => typeof s === 'string') ? v : undefined;

function readReceiver(raw: unknown, where: string, errors: string[]): Receiver | undefined {
  if (!isRecord(raw) || typeof raw.name !== 'string' || raw.name === '') {
    errors.push(`${where}: a receiver needs a name`);
    return undefined;
  }
  const type = receiverTypes.find((t) => t === raw.type);
  if (!type) {
    errors.push(`${where} (${raw.name}): type "${String(raw.type)}" is not ${receiverTypes.join(', ')}`);
    return undefined;
  }
  if (type !== 'email') {
    if (!isKey(raw.urlKey)) {
      errors.push(`${where} (${raw.name}): urlKey must name the key of the notifications Secret that holds the URL`);
      return undefined;
    }
    return { name: raw.name, type, urlKey: raw.urlKey };
  }
  const email = readEmail(raw.email, `${where} (${raw.name})`, errors);
  return email ? { name: raw.name, type, email } : undefined;
}

function readEmail(e: unknown, where: string, errors: string[]): Receiver['email'] {
  const to = isRecord(e) ? strings(e.to) : undefined;
  if (!isRecord(e) || typeof e.host !== 'string' || typeof e.from !== 'string' || !to || to.length === 0) {
    errors.push(`${where}: email needs host, from and a list of to`);
    return undefined;
  }
  const port = e.port ?? 587;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    errors.push(`${where}: email.port ${JSON.stringify(port)} is not a port`);
    return undefined;
  }
  for (const key of ['usernameKey', 'passwordKey'] as const)
    if (e[key] !== undefined && !isKey(e[key])) errors.push(`${where}: email.${key} is not a Secret key`);
  return {
    host: e.host,
    port,
    secure: e.secure === true,
    from: e.from,
    to,
    ...(isKey(e.usernameKey) ? { usernameKey: e.usernameKey } : {}),
    ...(isKey(e.passwordKey) ? { passwordKey: e.passwordKey } : {}),
  };
}

function readRoute(raw: unknown, where: string, known: Set<string>, errors: string[]): NotificationRoute | undefined {
  if (!isRecord(raw) || typeof raw.receiver !== 'string' || !known.has(raw.receiver)) {
    errors.push(`${where}: receiver "${isRecord(raw) ? String(raw.receiver) : ''}" is not one of the receivers`);
    return undefined;
  }
  const events = strings(raw.events);
  const unknown = (events ?? []).filter((e) => !notificationEvents.some((n) => n === e));
  if (!events || events.length === 0 || unknown.length > 0) {
    errors.push(
      `${where} (${raw.receiver}): events must list some of ${notificationEvents.join(', ')}` +
        (unknown.length > 0 ? ` (not: ${unknown.join(', ')})` : ''),
    );
    return undefined;
  }
  const namespaces = raw.namespaces === undefined ? undefined : strings(raw.namespaces);
  if (raw.namespaces !== undefined && !namespaces) errors.push(`${where}: namespaces must be a list of names`);
  return {
    receiver: raw.receiver,
    events: events.filter((e): e is NotificationEvent => notificationEvents.some((n) => n === e)),
    ...(namespaces ? { namespaces } : {}),
  };
}

/** The `notifications:` section of the policy file; absent is no notifications. */
export function parseNotifications(raw: unknown): Parsed<Notifications> {
  if (raw === undefined || raw === null) return { ok: true, value: noNotifications };
  if (!isRecord(raw)) return { ok: false, errors: ['notifications: expected receivers and routes'] };
  const errors: string[] = [];
  const receivers = (Array.isArray(raw.receivers) ? raw.receivers : []).flatMap((r, i) => {
    const read = readReceiver(r, `notifications.receivers[${i}]`, errors);
    return read ? [read] : [];
  });
  const names = new Set(receivers.map((r) => r.name));
  if (names.size !== receivers.length) errors.push('notifications.receivers: names must be unique');
  const routes = (Array.isArray(raw.routes) ? raw.routes : []).flatMap((r, i) => {
    const read = readRoute(r, `notifications.routes[${i}]`, names, errors);
    return read ? [read] : [];
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: { receivers, routes } };
}

const title = (n: Notice): string => `weir: ${n.namespace}/${n.deployment} ${n.reason}`;

/**
 * What an HTTP receiver is sent. `webhook`: a CloudEvents 1.0 event in structured mode, type
 * `dev.weir.release.<event>`, the notice as `data`. `slack`: an incoming webhook's `text`.
 * `teams`: an incoming webhook's MessageCard.
 */
export function httpPayload(type: Exclude<ReceiverType, 'email'>, n: Notice): { contentType: string; body: string } {
  switch (type) {
    case 'webhook':
      return {
        contentType: 'application/cloudevents+json',
        body: JSON.stringify({
          specversion: '1.0',
          id: n.id,
          source: `weir/${n.namespace}/${n.deployment}`,
          type: `dev.weir.release.${n.event}`,
          time: n.time,
          datacontenttype: 'application/json',
          data: {
            event: n.event,
            namespace: n.namespace,
            deployment: n.deployment,
            type: n.type,
            reason: n.reason,
            message: n.message,
          },
        }),
      };
    case 'slack':
      return {
        contentType: 'application/json',
        body: JSON.stringify({ text: `${n.type === 'Warning' ? ':warning: ' : ''}*${title(n)}*\n${n.message}` }),
      };
    case 'teams':
      return {
        contentType: 'application/json',
        body: JSON.stringify({
          '@type': 'MessageCard',
          '@context': 'https://schema.org/extensions',
          summary: title(n),
          themeColor: n.type === 'Warning' ? 'D83B01' : '2E7D32',
          title: title(n),
          text: n.message,
        }),
      };
  }
}

/** What an email receiver is sent. */
export function emailPayload(n: Notice): { subject: string; text: string } {
  return {
    subject: title(n),
    text:
      `${n.message}\n\nnamespace: ${n.namespace}\ndeployment: ${n.deployment}\n` +
      `event: ${n.event}\ntime: ${n.time}\n`,
  };
}
