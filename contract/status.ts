// The analyzer's progress record, kept in the `weir.dev/status` annotation. It is all the
// analyzer needs to carry on after a restart, and what the CLI and `kubectl describe` show.

/** A check's outcome: judged pass or fail, or no verdict (too little data, or the metrics unreachable). */
export type Verdict = 'pass' | 'fail' | 'inconclusive' | 'error';

export interface CheckRecord {
  at: string;
  metric: string;
  verdict: Verdict;
  value?: number;
  threshold: number;
  reason: string;
}

export type DrainOutcome = 'promote' | 'rollback' | 'restart' | 'opt-out' | 'settle';

/** Why a release rolls back: failed checks, a hard ceiling, the sequential test, no verdict, or an abort. */
export type RollbackCause = 'failed-checks' | 'ceiling' | 'worse' | 'unjudged' | 'aborted';

export interface HalfCounts {
  requests: number;
  errors: number;
}

/** The sequential test's accumulated evidence (analyzer/core/sequential.ts), kept between checks. */
export interface Evidence {
  canary: HalfCounts;
  stable: HalfCounts;
  /** Log e-values of the "worse" alternatives. */
  worse: number[];
  /** Log e-values of the "not worse" alternatives. */
  notWorse: number[];
  /** The halves' counter totals at the last check: the next window is the difference. */
  last?: { canary: HalfCounts; stable: HalfCounts };
  /** "Not worse" reached 1/α: a test stopped at its first crossing keeps its guarantee, so it holds. */
  cleared?: boolean;
}

export interface Rollback {
  cause: RollbackCause;
  /** The same in words a person can act on. */
  detail: string;
}

/** Where the release's traffic is steered, so a reader can see the weight on the route itself. */
export interface RouteRecord {
  kind: 'VirtualService' | 'HTTPRoute';
  name: string;
  /** The steered HTTP route (VirtualService) or rule (HTTPRoute) by name; absent: the documented fallback. */
  route?: string;
  /** The two backends: subsets of the DestinationRule (VirtualService), or Services (HTTPRoute). */
  stableSubset: string;
  canarySubset: string;
}

export interface ReleaseStatus {
  /** The canary revision this record is about; another revision means a new release. */
  revision: string;
  /** The named policy the release runs under (`default` unless `weir.dev/policy` names another). */
  policy?: string;
  /** The policy's steps, canary weights in percent: what a reader needs without knowing the policy. */
  steps?: number[];
  route?: RouteRecord;
  /** Index of the current step; the weight of a step is set once its canary is Ready. */
  step: number;
  /** Canary weight last written to the route. */
  weight: number;
  /** In the shadow step: the percent of requests last mirrored to the canary (issue 17). */
  mirror?: number;
  stepStartedAt?: string;
  lastCheckAt?: string;
  lastVerdict?: Verdict;
  failures: number;
  /** Checks in a row with no verdict (inconclusive or error); bounded by the policy's unjudged limit. */
  unjudged?: number;
  /** Set while weight is 0 and the canary waits to be removed; `outcome` says what follows. */
  drainingSince?: string;
  outcome?: DrainOutcome;
  /**
   * When the release's routing was retired: what only that route named (weir's own backend
   * Services) goes once the mesh can have forgotten the route, never in the same breath.
   */
  retiredAt?: string;
  /** Set when the release rolls back (outcome `rollback`). */
  rollback?: Rollback;
  /** Under `analysis: sequential`: the counts and e-values so far in this release. */
  evidence?: Evidence;
  /**
   * Dynamic stable scale (issue 17, ADR 19): the replicas the user (or an HPA) wants in total, and
   * the stable size weir last wrote to `spec.replicas`. A `spec.replicas` other than that is
   * someone else's: the new total.
   */
  replicas?: number;
  stableReplicas?: number;
  /** Draining, but the stable half is scaled back up first: the weight waits until it can carry it. */
  restoring?: boolean;
  /**
   * When the stable half was first seen at its size and available — restored for a drain, or grown
   * for a promotion's hand-over step: from then the mesh is given time to learn its endpoints.
   */
  restoredAt?: string;
  /** When the promoted Deployment was first seen fully rolled out and available. */
  rolledOutAt?: string;
  /** The last few checks, newest last. */
  checks: CheckRecord[];
  message: string;
}

export const keptChecks = 5;

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Reads the annotation; anything unreadable is treated as no record (the release restarts its steps). */
export function parseStatus(text: string | undefined): ReleaseStatus | undefined {
  if (!text) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    if (!isObject(v) || typeof v.revision !== 'string' || typeof v.step !== 'number' || typeof v.weight !== 'number')
      return undefined;
    return {
      ...(v as unknown as ReleaseStatus),
      failures: typeof v.failures === 'number' ? v.failures : 0,
      checks: Array.isArray(v.checks) ? (v.checks as CheckRecord[]) : [],
      message: typeof v.message === 'string' ? v.message : '',
    };
  } catch {
    return undefined;
  }
}

export function formatStatus(status: ReleaseStatus): string {
  return JSON.stringify(status);
}
