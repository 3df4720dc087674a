// Every label and annotation weir reads or writes. docs/design.md is the user-facing copy.
import { createHash } from 'node:crypto';

export const prefix = 'weir.dev/';

/** Namespace label that opts a namespace in: `weir.dev/canary=enabled`. */
export const namespaceOptIn = { key: 'weir.dev/canary', value: 'enabled' } as const;

export const labels = {
  /** Pod-template label that the Istio subsets select: `stable` or `canary`. */
  track: 'weir.dev/track',
  /** On a canary Deployment: the name of the user's Deployment it belongs to. */
  canaryOf: 'weir.dev/canary-of',
} as const;

export const tracks = { stable: 'stable', canary: 'canary' } as const;

export const annotations = {
  /** `disabled` on a Deployment: weir leaves it alone. */
  optOut: 'weir.dev/canary',
  phase: 'weir.dev/phase',
  stableRevision: 'weir.dev/stable-revision',
  canaryRevision: 'weir.dev/canary-revision',
  releaseStarted: 'weir.dev/release-started',
  /** Why the phase last changed, in words a person can act on. */
  reason: 'weir.dev/reason',
  /** The analyzer's compact progress record (JSON) for `kubectl describe` and the CLI. */
  status: 'weir.dev/status',
  /** A person's request to the analyzer (`weir promote|abort|retry`); removed once handled. */
  request: 'weir.dev/request',
} as const;

/**
 * The release annotations weir itself writes (the webhook and the analyzer), as opposed to the
 * user's own `weir.dev/` settings (opt-out, policy, routing) and a person's `request`.
 */
export const releaseAnnotations: readonly string[] = [
  annotations.phase,
  annotations.stableRevision,
  annotations.canaryRevision,
  annotations.releaseStarted,
  annotations.reason,
  annotations.status,
];

/** The `reportingComponent` of every Event the analyzer records. */
export const reportingComponent = 'weir.dev/analyzer';

export const requests = ['promote', 'promote-full', 'abort', 'retry'] as const;
export type Request = (typeof requests)[number];

export function isRequest(value: unknown): value is Request {
  return typeof value === 'string' && (requests as readonly string[]).includes(value);
}

export const phases = ['Stable', 'Progressing', 'Promoting', 'RolledBack'] as const;
export type Phase = (typeof phases)[number];

export function isPhase(value: unknown): value is Phase {
  return typeof value === 'string' && (phases as readonly string[]).includes(value);
}

/** A key (`weir.dev/track`) as one JSON Pointer segment (`weir.dev~1track`), for patch paths. */
export const pointer = (key: string): string => key.replaceAll('~', '~0').replaceAll('/', '~1');

/** True for a label or annotation key that belongs to weir. */
export const isWeirKey = (key: string): boolean => key.startsWith(prefix);

/** The routing objects (VirtualService and DestinationRule, or HTTPRoute) weir owns when none is named. */
export const ownedRoutingName = (deployment: string): string => `weir-${deployment}`.slice(0, 253);

/** `<name>-canary`, shortened with a hash when it would pass 63 characters. */
export function canaryName(name: string): string {
  const plain = `${name}-canary`;
  if (plain.length <= 63) return plain;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${name.slice(0, 63 - 1 - hash.length - '-canary'.length)}-${hash}-canary`;
}

/** Per-Deployment policy and routing annotations (docs/design.md, "Policy" and "Routing"). */
export const policyAnnotations = {
  policy: 'weir.dev/policy',
  steps: 'weir.dev/steps',
  stepPause: 'weir.dev/step-pause',
  interval: 'weir.dev/analysis-interval',
  maxErrorRate: 'weir.dev/max-error-rate',
  failureLimit: 'weir.dev/failure-limit',
  minRequests: 'weir.dev/min-requests',
  unjudgedLimit: 'weir.dev/unjudged-limit',
  /** `threshold` (the seed's: a max per window) or `sequential` (canary against stable, issue 14). */
  analysis: 'weir.dev/analysis',
  /** The sequential test's false-verdict level, e.g. 0.01. */
  alpha: 'weir.dev/alpha',
  /** How much worse than stable matters to the sequential test: 0.5 is 1.5× stable's error rate. */
  margin: 'weir.dev/margin',
  drain: 'weir.dev/drain',
  /** `true`: the stable half is scaled down as the canary's weight grows, and back up before weight returns. */
  dynamicStableScale: 'weir.dev/dynamic-stable-scale',
  /** `<header>=<value>`: testers' requests with that header reach the canary for the whole release (issue 17). */
  canaryHeader: 'weir.dev/canary-header',
  /** `istio` (VirtualService, the default) or `gateway-api` (HTTPRoute); inferred from the object named. */
  router: 'weir.dev/router',
  virtualService: 'weir.dev/virtual-service',
  route: 'weir.dev/route',
  destinationRule: 'weir.dev/destination-rule',
  service: 'weir.dev/service',
  stableSubset: 'weir.dev/stable-subset',
  canarySubset: 'weir.dev/canary-subset',
  /** The user's HTTPRoute (Gateway API); its rule is named by `weir.dev/route`. */
  httpRoute: 'weir.dev/http-route',
  /** The backend Services of the steered rule, one per half (default `<service>-stable`, `<service>-canary`). */
  stableService: 'weir.dev/stable-service',
  canaryService: 'weir.dev/canary-service',
} as const;

/** The values of `weir.dev/router`. */
export const routers = ['istio', 'gateway-api'] as const;
export type RouterName = (typeof routers)[number];
