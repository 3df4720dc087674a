// The analyzer's settings, all from the environment (docs/design.md, "Settings"). A missing or
// bad value is an error that names the variable, at start-up, never a silent default.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { hostname } from 'node:os';
import { optInSelector, parseSelector } from '../contract/selector.ts';
import type { LabelSelector } from '../contract/selector.ts';
import { defaultPolicy, parseDuration, parsePolicyFile } from './core/policy.ts';
import type { Policy } from './core/policy.ts';
import { noNotifications, parseNotifications } from './core/notifications.ts';
import type { Notifications } from './core/notifications.ts';

export interface AnalyzerSettings {
  prometheus: {
    url: string;
    timeoutMs: number;
    bearerToken?: string;
    basicAuth?: { username: string; password: string };
    caFile?: string;
  };
  policies: Record<string, Policy>;
  /** The policy file's `notifications:`, and where the Secret with receiver URLs and passwords is mounted. */
  notifications: Notifications & { secretDir: string };
  namespace: string;
  leaseName: string;
  identity: string;
  leaseSeconds: number;
  renewMs: number;
  /** The heartbeat, and how soon a release that just changed something is looked at again. */
  tickMs: number;
  /** Every release in flight is queued again this often, whatever the watches said (a missed event heals). */
  resyncMs: number;
  /** Changes that arrive within this window are handled in one pass (one Prometheus query for all). */
  batchMs: number;
  /** /healthz fails when no pass has finished for this long. */
  livenessMs: number;
  /** Test seam: this process's wall clock runs this far ahead (or behind) of the machine's. */
  clockOffsetMs: number;
  /** Test seam: hold before carrying out actions of this kind while `file` exists. */
  hold?: { kind: string; file: string };
  /** Test seam: the process kills itself (SIGKILL) right after its first action of this kind. */
  crashAfter?: string;
  /**
   * Benchmark seam: the design before ADR 14 and 16, for comparison in the same run — no caches
   * for releases (every read is a GET or LIST) and every release in flight looked at every tick.
   */
  polling?: true;
  host: string;
  port: number;
  scope: string;
  /** Namespaces opted in: the webhook configuration's namespaceSelector, which the chart passes as JSON. */
  optIn: LabelSelector;
  /** This process's name in the Events it records (the pod's name in the chart). */
  reportingInstance: string;
  /** Runtime TLS (ADR 13): the webhook's certificate kept in a Secret; absent when TLS is managed elsewhere. */
  certificates?: {
    secret: string;
    webhookConfiguration: string;
    names: string[];
    servingValidityMs: number;
    authorityValidityMs: number;
  };
}

function certificates(env: NodeJS.ProcessEnv): Pick<AnalyzerSettings, 'certificates'> {
  const secret = env.WEIR_TLS_SECRET;
  if (!secret) return {};
  const webhookConfiguration = env.WEIR_WEBHOOK_CONFIGURATION;
  if (!webhookConfiguration)
    throw new Error('WEIR_WEBHOOK_CONFIGURATION must name the MutatingWebhookConfiguration whose caBundle weir keeps');
  const names = (env.WEIR_TLS_NAMES ?? '')
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  if (names.length === 0) throw new Error('WEIR_TLS_NAMES must list the DNS names the webhook answers to');
  return {
    certificates: {
      secret,
      webhookConfiguration,
      names,
      servingValidityMs: duration(env, 'WEIR_TLS_VALIDITY', '2160h'),
      authorityValidityMs: duration(env, 'WEIR_TLS_AUTHORITY_VALIDITY', '87600h'),
    },
  };
}

function optIn(text: string | undefined): LabelSelector {
  if (!text) return optInSelector;
  const parsed = parseSelector(text);
  if (!parsed.ok) throw new Error(`WEIR_NAMESPACE_SELECTOR is not a label selector: ${parsed.error}`);
  return parsed.value;
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

function testSeam(env: NodeJS.ProcessEnv): Pick<AnalyzerSettings, 'hold' | 'crashAfter' | 'polling'> {
  const kind = env.WEIR_TEST_HOLD_BEFORE;
  const file = env.WEIR_TEST_HOLD_FILE;
  const crashAfter = env.WEIR_TEST_CRASH_AFTER;
  return {
    ...(kind && file ? { hold: { kind, file } } : {}),
    ...(crashAfter ? { crashAfter } : {}),
    ...(env.WEIR_TEST_POLLING === '1' ? { polling: true as const } : {}),
  };
}

/** The policy file's policies and notifications; with no file, the seed's policy and no notifications. */
function policyFile(path: string | undefined): { policies: Record<string, Policy>; notifications: Notifications } {
  if (!path) return { policies: { default: defaultPolicy }, notifications: noNotifications };
  const text = readFileSync(path, 'utf8');
  const parsed = parsePolicyFile(text);
  if (!parsed.ok) throw new Error(`${path}: ${parsed.errors.join('; ')}`);
  const notified = parseNotifications((parseYaml(text) as { notifications?: unknown } | null)?.notifications);
  if (!notified.ok) throw new Error(`${path}: ${notified.errors.join('; ')}`);
  return { policies: parsed.value, notifications: notified.value };
}

/** Reads settings from the environment; a missing or bad value is an error that names it. */
export function settingsFromEnv(env: NodeJS.ProcessEnv): AnalyzerSettings {
  const url = env.WEIR_PROMETHEUS_URL;
  if (!url)
    throw new Error('WEIR_PROMETHEUS_URL must name the Prometheus to ask, e.g. http://prometheus.istio-system:9090');
  const { policies, notifications } = policyFile(env.WEIR_POLICY_FILE);
  const token =
    env.WEIR_PROMETHEUS_TOKEN ??
    (env.WEIR_PROMETHEUS_TOKEN_FILE ? readFileSync(env.WEIR_PROMETHEUS_TOKEN_FILE, 'utf8').trim() : undefined);
  const port = Number(env.WEIR_ANALYZER_PORT ?? '8081');
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`WEIR_ANALYZER_PORT=${env.WEIR_ANALYZER_PORT} is not a port number`);
  const leaseSeconds = Math.round(duration(env, 'WEIR_LEASE_DURATION', '15s') / 1000);
  return {
    prometheus: {
      url,
      timeoutMs: duration(env, 'WEIR_PROMETHEUS_TIMEOUT', '10s'),
      ...(token ? { bearerToken: token } : {}),
      ...(env.WEIR_PROMETHEUS_USERNAME
        ? { basicAuth: { username: env.WEIR_PROMETHEUS_USERNAME, password: env.WEIR_PROMETHEUS_PASSWORD ?? '' } }
        : {}),
      ...(env.WEIR_PROMETHEUS_CA ? { caFile: env.WEIR_PROMETHEUS_CA } : {}),
    },
    policies,
    notifications: { ...notifications, secretDir: env.WEIR_NOTIFICATIONS_SECRET_DIR ?? '/etc/weir/notifications' },
    namespace: env.WEIR_NAMESPACE ?? 'weir-system',
    leaseName: env.WEIR_LEASE_NAME ?? 'weir-analyzer',
    identity: env.WEIR_IDENTITY ?? `${hostname()}-${process.pid}`,
    leaseSeconds: Math.max(2, leaseSeconds),
    renewMs: duration(env, 'WEIR_LEASE_RENEW', `${Math.max(1, Math.floor(leaseSeconds / 3))}s`),
    tickMs: duration(env, 'WEIR_TICK', '1s'),
    resyncMs: duration(env, 'WEIR_RESYNC', '30s'),
    batchMs: duration(env, 'WEIR_BATCH_WINDOW', '100ms'),
    livenessMs: duration(env, 'WEIR_LIVENESS_TIMEOUT', '60s'),
    ...testSeam(env),
    clockOffsetMs: clockOffset(env.WEIR_TEST_CLOCK_OFFSET),
    host: env.WEIR_ANALYZER_HOST ?? '0.0.0.0',
    port,
    scope: env.WEIR_SCOPE ?? '',
    optIn: optIn(env.WEIR_NAMESPACE_SELECTOR),
    reportingInstance: env.HOSTNAME ?? 'weir-analyzer',
    ...certificates(env),
  };
}
