// The analyzer's progress record, kept in the `weir.dev/status` annotation. It is all the
// analyzer needs to carry on after a restart, and what the CLI and `kubectl describe` show.

export interface CheckRecord {
  at: string;
  metric: string;
  verdict: 'pass' | 'fail' | 'inconclusive' | 'error';
  value?: number;
  threshold: number;
  reason: string;
}

export type DrainOutcome = 'promote' | 'rollback' | 'restart' | 'opt-out' | 'settle';

export interface ReleaseStatus {
  /** The canary revision this record is about; another revision means a new release. */
  revision: string;
  /** Index of the current step; the weight of a step is set once its canary is Ready. */
  step: number;
  /** Canary weight last written to the VirtualService. */
  weight: number;
  stepStartedAt?: string;
  lastCheckAt?: string;
  lastVerdict?: CheckRecord['verdict'];
  failures: number;
  /** Checks in a row with no verdict (inconclusive or error); bounded by the policy's unjudged limit. */
  unjudged?: number;
  /** Set while weight is 0 and the canary waits to be removed; `outcome` says what follows. */
  drainingSince?: string;
  outcome?: DrainOutcome;
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
