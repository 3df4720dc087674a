// Dynamic stable scale (issue 17, ADR 19): the stable half — the user's own Deployment — shrinks
// to its share once a step's weight moved off it, and is whole, available and known to the mesh
// again before weight returns. The total stays the user's. Pure: decide composes these.
import type { ReleaseStatus } from '../../contract/status.ts';
import { meshPropagationMs } from '../../contract/timing.ts';
import type { Action, Observed } from './decide.ts';

const ms = (iso: string | undefined): number => (iso ? Date.parse(iso) : NaN);
/** The event every size weir gives the stable half is told by. */
export const stableScaled = (type: 'Normal' | 'Warning', message: string): Action => ({
  kind: 'event',
  type,
  reason: 'StableScaled',
  message,
});

/** Dynamic stable scale is on (ADR 19). */
export const scaling = (o: Observed): boolean => o.policy.ok && o.policy.value.dynamicStableScale === true;

/**
 * The replicas wanted in total: `spec.replicas`, unless it is the stable size weir itself wrote —
 * then the total recorded beside it. A `kubectl scale`, an HPA or a git change is the new total.
 */
export function desiredReplicas(o: Observed, s: ReleaseStatus | undefined): number {
  return s?.stableReplicas !== undefined && o.replicas === s.stableReplicas ? (s.replicas ?? o.replicas) : o.replicas;
}

/** Canary pods for a weight: its share of the Deployment's replicas, at least one. */
export function canaryReplicas(replicas: number, weight: number): number {
  return Math.max(1, Math.ceil((replicas * weight) / 100));
}

/** Stable pods for the share of requests stable keeps; none at 100 %. */
export const stableReplicas = (replicas: number, weight: number): number =>
  weight >= 100 ? 0 : Math.max(1, Math.ceil((replicas * (100 - weight)) / 100));

/** The longest a rollback waits for the stable half to be available again before moving traffic anyway. */
export const restoreLimitMs = 60_000;

/** The status without weir's scaling record: the Deployment has its total again. */
export const unscaled = (s: ReleaseStatus): ReleaseStatus => ({
  ...s,
  replicas: undefined,
  stableReplicas: undefined,
  restoring: undefined,
  restoredAt: undefined,
});

/** Stable back to the total, recorded as weir's size until the release lets go of it. */
export const toTotal = (s: ReleaseStatus, total: number): Action => ({
  kind: 'scaleStable',
  replicas: total,
  status: { ...s, replicas: total, stableReplicas: total },
});

/** Weir scaled stable in this release and it is short of the total: scale back before weight returns. */
export const mustRestore = (o: Observed, s: ReleaseStatus): boolean =>
  s.stableReplicas !== undefined &&
  (o.replicas < desiredReplicas(o, s) || (o.stableAvailable ?? 0) < desiredReplicas(o, s));

/** When the stable half may shrink for the step's weight: once the mesh has moved the weight off it. */
export const scaleDownAt = (s: ReleaseStatus): number => ms(s.stepStartedAt) + meshPropagationMs;

/**
 * Dynamic stable scale while a step holds its weight: stable sized for the share it keeps, only
 * after the weight moved away from it (and the mesh had time to learn that).
 */
export function scaleDown(o: Observed, s: ReleaseStatus, now: Date): Action[] | undefined {
  // Turned off mid-release: the total back at once (growing stable is always safe).
  if (!scaling(o) && s.stableReplicas !== undefined) {
    const total = desiredReplicas(o, s);
    return [
      o.replicas !== total
        ? { kind: 'scaleStable', replicas: total, status: unscaled(s) }
        : { kind: 'status', status: unscaled(s) },
    ];
  }
  if (!scaling(o) || s.weight <= 0 || s.mirror || now.getTime() < scaleDownAt(s)) return undefined;
  const total = desiredReplicas(o, s);
  const size = stableReplicas(total, s.weight);
  if (o.replicas === size && s.stableReplicas === size && s.replicas === total) return undefined;
  const status: ReleaseStatus = { ...s, replicas: total, stableReplicas: size };
  return [
    o.replicas !== size ? { kind: 'scaleStable', replicas: size, status } : { kind: 'status', status },
    stableScaled('Normal', `stable scaled to ${size} of ${total} replicas for its ${100 - s.weight}% share`),
  ];
}

/**
 * A drain waiting for the stable half to be back at its total: the weight moves once it is
 * available, or after `restoreLimitMs` with a Warning; the drain time counts from the move.
 */
export function restoring(o: Observed, s: ReleaseStatus, now: Date, exposed: boolean): Action[] {
  const total = desiredReplicas(o, s);
  const waited = now.getTime() - ms(s.drainingSince);
  const ready = o.replicas >= total && (o.stableAvailable ?? 0) >= total;
  if (!ready && waited < restoreLimitMs) return o.replicas < total ? [toTotal(s, total)] : [];
  // Available is not yet known to the mesh: give it the time it takes to learn new endpoints.
  if (ready && !s.restoredAt) return [{ kind: 'status', status: { ...s, restoredAt: now.toISOString() } }];
  if (ready && now.getTime() < ms(s.restoredAt) + meshPropagationMs) return [];
  const moved: ReleaseStatus = { ...unscaled(s), drainingSince: now.toISOString(), message: s.message };
  return [
    { kind: 'status', status: moved },
    ...(exposed ? [{ kind: 'setWeight', weight: 0 } as Action] : []),
    ready
      ? stableScaled('Normal', `stable back to ${total} replicas, all available; traffic returns to it`)
      : stableScaled(
          'Warning',
          `stable has ${o.stableAvailable ?? 0}/${total} available replicas after ${restoreLimitMs / 1000} s; ` +
            'traffic returns to it anyway',
        ),
  ];
}
