// A release's policy: named policies from the config file, overridden per Deployment by
// annotations. A bad value is an error that names the annotation, never a silent default.
import { parse as parseYaml } from 'yaml';
import { policyAnnotations, prefix } from '../../contract/names.ts';
import { isHeaderMatch } from '../../contract/steering.ts';
import type { HeaderMatch } from '../../contract/steering.ts';

export interface MetricPolicy {
  name: string;
  /** `error-rate` is Istio's 5xx ratio; otherwise a PromQL template that yields one value. */
  query: string;
  /** Highest passing value. */
  max: number;
  /** At or above this value the release rolls back at once. */
  ceiling?: number;
  /** Judge against the stable half in the same window: pass while canary ≤ stable + margin. */
  relativeMargin?: number;
}

export interface Policy {
  /** Canary weights, in percent, strictly rising, ending at 100. */
  steps: number[];
  /**
   * A shadow step before the first weight: this percent of the steered route's requests is
   * copied to the canary (answers discarded) and judged like any step. Absent: no shadow step.
   */
  mirror?: number;
  /** Requests with this header reach the canary for the whole release (the testers' route). */
  canaryHeader?: HeaderMatch;
  /** Scale the stable half down as the canary's weight grows (ADR 19). */
  dynamicStableScale?: boolean;
  stepPauseMs: number;
  intervalMs: number;
  failureLimit: number;
  /** Fewer canary requests than this in a window: inconclusive. */
  minRequests: number;
  /**
   * Checks in a row without a verdict (no data, too few requests, Prometheus unreachable) after
   * which traffic goes back to stable and the release is RolledBack: no canary carries traffic
   * unjudged for long (ADR 9).
   */
  unjudgedLimit: number;
  /** Time with 0 % canary weight before a canary is removed, so the mesh stops sending to it. */
  drainMs: number;
  metrics: MetricPolicy[];
  /**
   * `threshold` judges the error rate of each window against `max` (the seed's way); `sequential`
   * tests the canary against stable over the whole release (issue 14), at `alpha` and `margin`.
   */
  analysis: { kind: 'threshold' } | { kind: 'sequential'; alpha: number; margin: number };
}

export interface Routing {
  /** `weir.dev/router` as written; checked where the target is resolved (core/target.ts). */
  router?: string;
  virtualService?: string;
  httpRoute?: string;
  stableService?: string;
  canaryService?: string;
  route?: string;
  destinationRule?: string;
  service?: string;
  stableSubset: string;
  canarySubset: string;
}

/** The seed's numbers: 10 → 50 → 100 %, 5 min pauses, a check every 60 s, ≤ 5 % 5xx, 3 failures. */
export const defaultPolicy: Policy = {
  steps: [10, 50, 100],
  stepPauseMs: 5 * 60_000,
  intervalMs: 60_000,
  failureLimit: 3,
  minRequests: 20,
  unjudgedLimit: 5,
  drainMs: 10_000,
  metrics: [{ name: 'error-rate', query: 'error-rate', max: 0.05, ceiling: 0.5 }],
  analysis: { kind: 'threshold' },
};

/** The sequential test's defaults: a 1 % chance of a false verdict; 50 % worse than stable matters. */
export const sequentialDefaults = { alpha: 0.01, margin: 0.5 } as const;

export type Parsed<T> = { ok: true; value: T } | { ok: false; errors: string[] };

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `500ms`, `30s`, `5m`, `1h` → milliseconds; undefined when it is not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  const unit = m?.[2] ? units[m[2]] : undefined;
  return m?.[1] && unit ? Math.round(Number(m[1]) * unit) : undefined;
}

/**
 * `10,50,100`, or with a shadow step first: `mirror,10,50,100` (all requests copied) or
 * `mirror:25,10,50,100` (a quarter of them).
 */
export function parseSteps(text: string): { steps: number[]; mirror?: number } | undefined {
  const tokens = text.split(',').map((s) => s.trim());
  const shadow = /^mirror(?::(\d{1,3}))?$/.exec(tokens[0] ?? '');
  const mirror = shadow ? Number(shadow[1] ?? 100) : undefined;
  if (mirror !== undefined && (mirror < 1 || mirror > 100)) return undefined;
  const steps = tokens.slice(shadow ? 1 : 0).map(Number);
  const valid =
    steps.length > 0 &&
    steps.every((s, i) => Number.isInteger(s) && s > 0 && s <= 100 && (i === 0 || s > (steps[i - 1] ?? 0)));
  if (!valid || steps[steps.length - 1] !== 100) return undefined;
  return mirror === undefined ? { steps } : { steps, mirror };
}

/** `x-canary=always` → the header testers send to reach the canary. */
export function parseHeaderMatch(text: string): HeaderMatch | undefined {
  const at = text.indexOf('=');
  const match = { name: text.slice(0, at).trim(), value: text.slice(at + 1).trim() };
  return at > 0 && isHeaderMatch(match) ? match : undefined;
}

type Field = { key: string; text: string };

function fraction(f: Field, errors: string[]): number | undefined {
  const n = Number(f.text);
  if (f.text.trim() !== '' && Number.isFinite(n) && n >= 0 && n <= 1) return n;
  errors.push(`${f.key}: "${f.text}" is not a fraction between 0 and 1 (5 % is 0.05)`);
  return undefined;
}

function positive(f: Field, errors: string[]): number | undefined {
  const n = Number(f.text);
  if (f.text.trim() !== '' && Number.isFinite(n) && n >= 0) return n;
  errors.push(`${f.key}: "${f.text}" is not a number of at least 0 (0.5 is 50 % worse)`);
  return undefined;
}

function analysisOf(f: Field | undefined, policy: Policy, errors: string[]): 'threshold' | 'sequential' | undefined {
  if (!f) return undefined;
  if (f.text === 'threshold' || f.text === 'sequential') return f.text;
  errors.push(`${f.key}: "${f.text}" is not threshold or sequential (the policy's is ${policy.analysis.kind})`);
  return undefined;
}

function count(f: Field, errors: string[], min: number): number | undefined {
  const n = Number(f.text);
  if (Number.isInteger(n) && n >= min) return n;
  errors.push(`${f.key}: "${f.text}" is not a whole number of at least ${min}`);
  return undefined;
}

function duration(f: Field, errors: string[]): number | undefined {
  const ms = parseDuration(f.text);
  if (ms !== undefined && ms > 0) return ms;
  errors.push(`${f.key}: "${f.text}" is not a duration such as 30s or 5m`);
  return undefined;
}

/** The release's shape from annotations: its steps (and shadow step), the testers' header, dynamic stable scale. */
function applyShape(policy: Policy, field: (key: string) => Field | undefined, errors: string[]): void {
  const steps = field(policyAnnotations.steps);
  if (steps) {
    const parsed = parseSteps(steps.text);
    if (parsed) {
      policy.steps = parsed.steps;
      if (parsed.mirror === undefined) delete policy.mirror;
      else policy.mirror = parsed.mirror;
    } else
      errors.push(
        `${steps.key}: "${steps.text}" must be rising percentages ending at 100, such as 10,50,100, ` +
          'optionally after a shadow step: mirror,10,50,100 or mirror:25,10,50,100',
      );
  }
  const dynamic = field(policyAnnotations.dynamicStableScale);
  if (dynamic?.text === 'true' || dynamic?.text === 'false') policy.dynamicStableScale = dynamic.text === 'true';
  else if (dynamic) errors.push(`${dynamic.key}: "${dynamic.text}" is not true or false`);
  const header = field(policyAnnotations.canaryHeader);
  if (header) {
    const parsed = parseHeaderMatch(header.text);
    if (parsed) policy.canaryHeader = parsed;
    else
      errors.push(
        `${header.key}: "${header.text}" is not <header>=<value> with a lower-case header, such as x-canary=always`,
      );
  }
}

/** Applies the per-Deployment annotation overrides to a named policy. */
export function resolvePolicy(annotations: Record<string, string>, policies: Record<string, Policy>): Parsed<Policy> {
  const errors: string[] = [];
  const name = annotations[policyAnnotations.policy] ?? 'default';
  // An own property only: a name such as `constructor` or `__proto__` must not find Object's.
  const base = Object.hasOwn(policies, name) ? policies[name] : undefined;
  if (!base)
    return {
      ok: false,
      errors: [`${policyAnnotations.policy}: no policy named "${name}" (known: ${Object.keys(policies).join(', ')})`],
    };
  const policy: Policy = structuredClone(base);
  const field = (key: string): Field | undefined =>
    annotations[key] === undefined ? undefined : { key, text: annotations[key] };
  applyShape(policy, field, errors);
  const set = <K extends keyof Policy>(key: K, value: Policy[K] | undefined): void => {
    if (value !== undefined) policy[key] = value;
  };
  const f = (key: string, read: (f: Field) => number | undefined): number | undefined => {
    const x = field(key);
    return x ? read(x) : undefined;
  };
  set(
    'stepPauseMs',
    f(policyAnnotations.stepPause, (x) => duration(x, errors)),
  );
  set(
    'intervalMs',
    f(policyAnnotations.interval, (x) => duration(x, errors)),
  );
  set(
    'drainMs',
    f(policyAnnotations.drain, (x) => duration(x, errors)),
  );
  set(
    'failureLimit',
    f(policyAnnotations.failureLimit, (x) => count(x, errors, 1)),
  );
  set(
    'minRequests',
    f(policyAnnotations.minRequests, (x) => count(x, errors, 0)),
  );
  set(
    'unjudgedLimit',
    f(policyAnnotations.unjudgedLimit, (x) => count(x, errors, 1)),
  );
  const analysis = analysisOf(field(policyAnnotations.analysis), policy, errors);
  const alpha = f(policyAnnotations.alpha, (x) => fraction(x, errors));
  const margin = f(policyAnnotations.margin, (x) => positive(x, errors));
  if (analysis === 'sequential' || (analysis === undefined && policy.analysis.kind === 'sequential')) {
    const base = policy.analysis.kind === 'sequential' ? policy.analysis : sequentialDefaults;
    policy.analysis = { kind: 'sequential', alpha: alpha ?? base.alpha, margin: margin ?? base.margin };
  } else if (analysis === 'threshold') policy.analysis = { kind: 'threshold' };
  const maxErrorRate = f(policyAnnotations.maxErrorRate, (x) => fraction(x, errors));
  if (maxErrorRate !== undefined) {
    for (const m of policy.metrics) if (m.query === 'error-rate') m.max = maxErrorRate;
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: policy };
}

export function resolveRouting(annotations: Record<string, string>): Routing {
  const pick = (key: string): Record<string, string> => (annotations[key] ? { v: annotations[key] } : {});
  const routing: Routing = {
    stableSubset: annotations[policyAnnotations.stableSubset] ?? 'stable',
    canarySubset: annotations[policyAnnotations.canarySubset] ?? 'canary',
  };
  const optional = {
    router: policyAnnotations.router,
    virtualService: policyAnnotations.virtualService,
    httpRoute: policyAnnotations.httpRoute,
    stableService: policyAnnotations.stableService,
    canaryService: policyAnnotations.canaryService,
    route: policyAnnotations.route,
    destinationRule: policyAnnotations.destinationRule,
    service: policyAnnotations.service,
  } as const;
  for (const [field, key] of Object.entries(optional) as [keyof typeof optional, string][]) {
    const value = pick(key).v;
    if (value) routing[field] = value;
  }
  return routing;
}

interface RawMetric {
  name?: unknown;
  query?: unknown;
  max?: unknown;
  ceiling?: unknown;
  relativeMargin?: unknown;
}
interface RawPolicy {
  analysis?: unknown;
  alpha?: unknown;
  margin?: unknown;
  steps?: unknown;
  canaryHeader?: unknown;
  dynamicStableScale?: unknown;
  stepPause?: unknown;
  interval?: unknown;
  failureLimit?: unknown;
  minRequests?: unknown;
  unjudgedLimit?: unknown;
  drain?: unknown;
  metrics?: unknown;
}

function readMetric(raw: RawMetric, where: string, errors: string[]): MetricPolicy | undefined {
  const query = raw.query ?? 'error-rate';
  if (typeof raw.name !== 'string' || typeof query !== 'string' || typeof raw.max !== 'number') {
    errors.push(`${where}: a metric needs a name, a max (number) and a query ("error-rate" or PromQL)`);
    return undefined;
  }
  const metric: MetricPolicy = { name: raw.name, query, max: raw.max };
  if (typeof raw.ceiling === 'number') metric.ceiling = raw.ceiling;
  if (typeof raw.relativeMargin === 'number') metric.relativeMargin = raw.relativeMargin;
  return metric;
}

function readPolicy(name: string, raw: RawPolicy, errors: string[]): Policy {
  const annotationsLike: Record<string, string> = {};
  const map: [keyof RawPolicy, string][] = [
    ['steps', policyAnnotations.steps],
    ['stepPause', policyAnnotations.stepPause],
    ['interval', policyAnnotations.interval],
    ['failureLimit', policyAnnotations.failureLimit],
    ['minRequests', policyAnnotations.minRequests],
    ['drain', policyAnnotations.drain],
    ['unjudgedLimit', policyAnnotations.unjudgedLimit],
    ['analysis', policyAnnotations.analysis],
    ['alpha', policyAnnotations.alpha],
    ['margin', policyAnnotations.margin],
    ['canaryHeader', policyAnnotations.canaryHeader],
    ['dynamicStableScale', policyAnnotations.dynamicStableScale],
  ];
  for (const [field, key] of map) {
    const v = raw[field];
    if (Array.isArray(v)) annotationsLike[key] = v.map((x) => String(x as number | string)).join(',');
    else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') annotationsLike[key] = String(v);
    else if (v !== undefined) errors.push(`policies.${name}.${field}: expected a string or number`);
  }
  const resolved = resolvePolicy(annotationsLike, { default: defaultPolicy });
  if (!resolved.ok) {
    errors.push(...resolved.errors.map((e) => `policies.${name}: ${e.replace(prefix, '')}`));
    return defaultPolicy;
  }
  const policy = resolved.value;
  if (Array.isArray(raw.metrics)) {
    policy.metrics = (raw.metrics as RawMetric[])
      .map((m, i) => readMetric(m, `policies.${name}.metrics[${i}]`, errors))
      .filter((m): m is MetricPolicy => m !== undefined);
  }
  return policy;
}

/** Reads the policy file (YAML: `policies: {name: {...}}`); `default` holds the seed's numbers unless redefined. */
export function parsePolicyFile(text: string): Parsed<Record<string, Policy>> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (error) {
    return {
      ok: false,
      errors: [`the policy file is not YAML: ${error instanceof Error ? error.message : String(error)}`],
    };
  }
  const raw = (doc as { policies?: unknown } | null)?.policies;
  if (raw === undefined || raw === null || typeof raw !== 'object')
    return { ok: false, errors: ['the policy file needs a `policies:` map'] };
  const errors: string[] = [];
  const policies: Record<string, Policy> = { default: defaultPolicy };
  for (const [name, p] of Object.entries(raw as Record<string, RawPolicy>)) {
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name))
      errors.push(`policies: "${name}" is not a policy name (lower-case letters, digits and "-")`);
    else policies[name] = readPolicy(name, p ?? {}, errors);
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: policies };
}
