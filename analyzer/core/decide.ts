// The release state machine: (observed state, measurements, now, policy) → actions. Pure.
// Every "what happens when…" about a release is answered in this file.
import { annotations, policyAnnotations, requests } from '../../contract/names.ts';
import type { Phase, Request } from '../../contract/names.ts';
import { keptChecks } from '../../contract/status.ts';
import type {
  CheckRecord,
  DrainOutcome,
  Evidence,
  ReleaseStatus,
  Rollback,
  RouteRecord,
  Verdict,
} from '../../contract/status.ts';
import { combine, judge, judgeSequential, lookBackMs, nextCheckAt } from './analysis.ts';
import type { Judgement, Measurement } from './analysis.ts';
import type { Policy } from './policy.ts';
import type { HeaderMatch } from '../../contract/steering.ts';
import {
  canaryReplicas,
  desiredReplicas,
  mustRestore,
  restoreLimitMs,
  restoring,
  scaleDown,
  scaleDownAt,
  scaling,
  stableReplicas,
  stableScaled,
  toTotal,
  unscaled,
} from './stable-scale.ts';
import { meshPropagationMs } from '../../contract/timing.ts';

export interface CanaryObserved {
  revision: string;
  replicas: number;
  readyReplicas: number;
  /** Its controller has seen its latest spec. */
  current: boolean;
}

/** Everything decide needs about one Deployment, read from the cluster. */
export interface Observed {
  namespace: string;
  name: string;
  phase: Phase;
  canaryRevision?: string;
  stableRevision?: string;
  /** The namespace lost its label or the Deployment was annotated `weir.dev/canary: disabled`. */
  optedOut: boolean;
  /** `spec.replicas`: the user's total, or the stable size weir wrote under dynamic stable scale. */
  replicas: number;
  /** Available pods of the user's Deployment: the stable half (the canary is another Deployment). */
  stableAvailable?: number;
  paused: boolean;
  /** The user's Deployment has rolled out its template and all of it is available. */
  rolledOut: boolean;
  /** The release's progress: the record on the Deployment, or the analyzer's later passes on top of it (ADR 26). */
  status?: ReleaseStatus;
  /** When the latest check on the record itself was made, when `status` holds later ones the record does not. */
  recordedCheckAt?: string;
  canary?: CanaryObserved;
  /**
   * The canary weight on the route — with the share mirrored to it and the testers' header route,
   * where the router has them — or why it cannot be read or written.
   */
  routing:
    | {
        ok: true;
        canaryWeight: number;
        mirror?: number;
        mirroredElsewhere?: string;
        header?: HeaderMatch;
        /** In-mesh callers of the Service bypass the route (bound to gateways only). */
        meshUnsteered?: boolean;
      }
    | { ok: false; error: string };
  backendsReady: boolean;
  /**
   * The backends are weir's own objects the user's route names (an HTTPRoute's backend Services
   * the user does not name): made before the first release, so the route has somewhere to send.
   */
  ownBackends?: boolean;
  unlabelledStablePods: number;
  policy: { ok: true; value: Policy } | { ok: false; errors: string[] };
  /** The named policy the Deployment asks for (`default` unless `weir.dev/policy` names another). */
  policyName: string;
  /** Where the release's traffic is steered, once the routing objects are known. */
  route?: RouteRecord;
  /** The Service the steered route sends to: callers' failures to reach it count against the canary. */
  service?: { namespace: string; name: string };
  /** An object weir would create or change exists under weir's name but is not weir's: nothing of it is touched. */
  nameConflict?: string;
  /** `weir.dev/status` is there but is not weir's record (edited by hand, or by a hostile party). */
  unreadableStatus?: string;
  /** A person's request from `weir promote|abort|retry`, or text that is not one. */
  request?: Request | { invalid: string };
}

export type Action =
  | { kind: 'labelStablePods' }
  | { kind: 'ensureBackends' }
  | { kind: 'ensureCanary'; replicas: number }
  /**
   * `spec.replicas` of the user's Deployment (the stable half's size under dynamic stable scale),
   * written in one patch with the record that says it is weir's: the webhook keeps a size only
   * against a re-apply, never against weir's own next size.
   */
  | { kind: 'scaleStable'; replicas: number; status: ReleaseStatus }
  /** The route's traffic for the canary: a weight, a mirrored share and the testers' route (absent: none). */
  | { kind: 'setWeight'; weight: number; mirror?: number; header?: HeaderMatch }
  | { kind: 'deleteCanary' }
  /** The release is over: routing takes its between-releases shape (the router says what that is). */
  | { kind: 'retireRouting' }
  /** The retired route is out of the mesh: what only it named goes (the router says what that is). */
  | { kind: 'retireBackends' }
  | { kind: 'unpause' }
  | { kind: 'setPhase'; phase: Phase; reason: string; promotedRevision?: string }
  | { kind: 'event'; type: 'Normal' | 'Warning'; reason: string; message: string; once?: true }
  | { kind: 'status'; status: ReleaseStatus }
  /** A pass that repeats the last one: the analyzer keeps it and writes it later (ADR 26). */
  | { kind: 'remember'; status: ReleaseStatus }
  | { kind: 'clearRequest' }
  // Findings: no I/O, what metrics count. Decided here as data, never read back from event text.
  | { kind: 'checked'; verdict: Verdict }
  | { kind: 'released'; outcome: 'promoted' | 'rolledBack' };

/**
 * How soon a release's actions should reach the API server when many wait for it (smaller first):
 * traffic moves (a rollback's 0 %, a step's weight) before the other writes, and those before
 * findings and kept passes, which write nothing. A pass takes its releases in this order.
 */
export function urgency(actions: readonly Action[]): number {
  if (actions.some((a) => a.kind === 'setWeight')) return 0;
  return actions.some((a) => !isFinding(a) && a.kind !== 'remember') ? 1 : 2;
}

/** A finding is what metrics count; it writes nothing. */
export const isFinding = (a: Action): a is Extract<Action, { kind: 'checked' | 'released' }> =>
  a.kind === 'checked' || a.kind === 'released';

const ms = (iso: string | undefined): number => (iso ? Date.parse(iso) : NaN);
const event = (type: 'Normal' | 'Warning', reason: string, message: string): Action => ({
  kind: 'event',
  type,
  reason,
  message,
});

export { canaryReplicas } from './stable-scale.ts';

/** What the canary gets in one step: a share of the requests, or (the shadow step) a copy of a share. */
export interface StepTraffic {
  weight: number;
  mirror: number;
}

/** The release's steps in order: the shadow step first when the policy has one (issue 17). */
export const stepsOf = (policy: Policy): StepTraffic[] => [
  ...(policy.mirror ? [{ weight: 0, mirror: policy.mirror }] : []),
  ...policy.steps.map((weight) => ({ weight, mirror: 0 })),
];

/** Where a step stands in words: `10%`, or `mirror 100%` in the shadow step. */
const at = (s: ReleaseStatus): string => (s.mirror ? `mirror ${s.mirror}%` : `${s.weight}%`);

const stepText = (t: StepTraffic): string =>
  t.mirror > 0
    ? `shadow: ${t.mirror}% of requests mirrored to the canary, none of its answers reach callers`
    : `${t.weight}% to the canary`;

/** The testers' header route, wanted whenever a release holds traffic on the route. */
const testersHeader = (o: Observed): HeaderMatch | undefined => (o.policy.ok ? o.policy.value.canaryHeader : undefined);

const sameHeader = (a: HeaderMatch | undefined, b: HeaderMatch | undefined): boolean =>
  a?.name === b?.name && a?.value === b?.value;

/** The write that gives the route a step's traffic for the canary. */
function steerTo(o: Observed, weight: number, mirror: number): Action {
  const header = testersHeader(o);
  return { kind: 'setWeight', weight, ...(mirror > 0 ? { mirror } : {}), ...(header ? { header } : {}) };
}

/** The route already carries that traffic (weight, mirror and testers' route). */
function routeCarries(o: Observed, weight: number, mirror: number): boolean {
  if (!o.routing.ok) return false;
  return (
    o.routing.canaryWeight === weight &&
    (o.routing.mirror ?? 0) === mirror &&
    sameHeader(o.routing.header, testersHeader(o))
  );
}

/** The route sends the canary anything at all: weight, a mirrored copy, or testers' requests. */
const exposed = (o: Observed): boolean =>
  o.routing.ok && (o.routing.canaryWeight > 0 || (o.routing.mirror ?? 0) > 0 || o.routing.header !== undefined);

function fresh(revision: string, weight: number): ReleaseStatus {
  return { revision, step: 0, weight, failures: 0, checks: [], message: 'preparing the canary' };
}

// When each timed wait ends (epoch ms). decide compares them with now; wakeAt sleeps until them.
const checkAt = (s: ReleaseStatus, policy: Policy): number => nextCheckAt(policy, s);
/** The last step holds no pause: it promotes at its first passing check. */
const pauseEndsAt = (s: ReleaseStatus, policy: Policy): number =>
  ms(s.stepStartedAt) + (s.step >= stepsOf(policy).length - 1 ? 0 : policy.stepPauseMs);
/** Never remove a canary before the mesh can have stopped sending to it. */
const drainEndsAt = (o: Observed, s: ReleaseStatus): number =>
  ms(s.drainingSince) + Math.max(o.policy.ok ? o.policy.value.drainMs : 10_000, meshPropagationMs);

/** A retired route's backends go once the mesh can have stopped routing by it. */
const backendsRetireAt = (s: ReleaseStatus): number => ms(s.retiredAt) + meshPropagationMs;

/** Is a check due? Only while a step's weight is set and nothing is draining. */
export function checkDue(o: Observed, now: Date): boolean {
  const s = o.status;
  if (
    o.phase !== 'Progressing' ||
    !o.policy.ok ||
    !s ||
    s.revision !== o.canaryRevision ||
    s.drainingSince ||
    !s.stepStartedAt
  )
    return false;
  return now.getTime() >= checkAt(s, o.policy.value);
}

/** Time a newly rolled-out stable half is given before traffic returns to it, for the mesh to learn its endpoints. */
export const settleMs = meshPropagationMs;

/**
 * The next moment decide's answer can change with nothing observed changing — a drain or a
 * settle ends, a check falls due, a step's pause ends — strictly after `now`; undefined when only
 * a change in the cluster can move the release. The loop sleeps until then unless a watch wakes it.
 */
export function wakeAt(o: Observed, now: Date): number | undefined {
  const s = o.status;
  if (!s) return undefined;
  const times: number[] = [];
  if (s.drainingSince) times.push(drainEndsAt(o, s));
  if (o.phase === 'Promoting' && s.rolledOutAt) times.push(ms(s.rolledOutAt) + settleMs);
  // The hand-over (handOver): the canary shrinks, or the weight moves, once the mesh knows.
  if (o.phase === 'Promoting' && s.stableReplicas !== undefined)
    times.push(scaleDownAt(s), ms(s.restoredAt) + meshPropagationMs);
  if (o.phase === 'Progressing' && o.policy.ok && s.stepStartedAt && !s.drainingSince)
    times.push(checkAt(s, o.policy.value), pauseEndsAt(s, o.policy.value), ...(scaling(o) ? [scaleDownAt(s)] : []));
  if (s.restoring) times.push(ms(s.drainingSince) + restoreLimitMs, ms(s.restoredAt) + settleMs);
  if ((o.phase === 'Stable' || o.phase === 'RolledBack') && s.retiredAt) times.push(backendsRetireAt(s));
  const later = times.filter((t) => Number.isFinite(t) && t > now.getTime());
  return later.length > 0 ? Math.min(...later) : undefined;
}

/** Starts draining: all traffic to stable now (weight, mirror, testers' route); then the canary goes. */
function drain(o: Observed, s: ReleaseStatus, now: Date, outcome: DrainOutcome, message: string): Action[] {
  const next: ReleaseStatus = {
    ...s,
    weight: 0,
    mirror: undefined,
    drainingSince: now.toISOString(),
    outcome,
    message,
  };
  if (mustRestore(o, s)) {
    // Never move traffic onto a stable half that cannot carry it yet (Argo Rollouts #4828): scale first.
    const total = desiredReplicas(o, s);
    const restoring: ReleaseStatus = { ...next, restoring: true, message: `${message}; stable back to ${total} first` };
    return [o.replicas < total ? toTotal(restoring, total) : { kind: 'status', status: restoring }];
  }
  // The record first, then the route: a crash in between still drains (whileDraining sets 0).
  return [{ kind: 'status', status: next }, ...(exposed(o) ? [{ kind: 'setWeight', weight: 0 } as Action] : [])];
}

/** Starts draining a release that rolls back, recording why. */
function rollBack(o: Observed, s: ReleaseStatus, now: Date, rollback: Rollback): Action[] {
  return drain(o, { ...s, rollback }, now, 'rollback', `RolledBack: ${rollback.detail}`);
}

function finishDrain(o: Observed, s: ReleaseStatus, now: Date): Action[] {
  const retiredAt = now.toISOString();
  const done = (phase: Phase, reason: string, extra: Action[] = [], promotedRevision?: string): Action[] => [
    ...(o.canary ? [{ kind: 'deleteCanary' } as Action] : []),
    { kind: 'retireRouting' },
    { kind: 'setPhase', phase, reason, ...(promotedRevision ? { promotedRevision } : {}) },
    ...extra,
    { kind: 'status', status: { ...s, drainingSince: undefined, retiredAt, message: reason } },
  ];
  switch (s.outcome) {
    case 'promote':
      return done(
        'Stable',
        `Promoted: revision ${s.revision} is stable`,
        [
          event('Normal', 'Promoted', `revision ${s.revision} is stable on all replicas; canary removed`),
          { kind: 'released', outcome: 'promoted' },
        ],
        s.revision,
      );
    case 'rollback': {
      // What happened, then what to do: `kubectl describe` is where people read this.
      const next =
        'Next: apply a fixed template to start a new release, apply the stable template again to end this one, ' +
        `or \`weir retry ${o.name}\``;
      const detail = s.rollback?.detail ?? s.message;
      return done('RolledBack', `RolledBack: ${detail}. ${next}`, [
        event('Warning', 'RolledBack', `${detail}; traffic is on stable and the canary was removed. ${next}`),
        { kind: 'released', outcome: 'rolledBack' },
      ]);
    }
    case 'opt-out':
      return done('Stable', 'OptedOut: weir stopped guarding this Deployment; Kubernetes rolls out the applied spec', [
        { kind: 'unpause' },
        event('Warning', 'OptedOut', 'weir no longer guards this Deployment: canary removed, Deployment resumed'),
      ]);
    case 'settle':
      return [
        ...(o.canary ? [{ kind: 'deleteCanary' } as Action] : []),
        { kind: 'retireRouting' },
        { kind: 'status', status: { ...s, drainingSince: undefined, retiredAt } },
      ];
    default:
      return [
        { kind: 'status', status: { ...fresh(s.revision, 0), message: 'canary replaced; restarting the steps' } },
      ];
  }
}

function describeChecks(judgements: Judgement[]): string {
  return judgements.map((j) => `${j.metric}: ${j.reason}`).join('; ');
}

/**
 * Why a canary that could not be judged is taken out of traffic, and what to do: a metrics outage
 * and too little traffic are different problems with different fixes.
 */
function unjudgedReason(verdict: 'inconclusive' | 'error', checks: number, name: string): string {
  return verdict === 'error'
    ? `the metrics were unavailable for ${checks} checks in a row (the unjudged limit), so no verdict was possible; ` +
        `once Prometheus answers again, \`weir retry ${name}\``
    : `${checks} checks in a row had too little canary traffic or no data to judge (the unjudged limit); ` +
        `raise the traffic the canary gets, lower ${policyAnnotations.minRequests}, or \`weir retry ${name}\``;
}

/** Every metric judged: by its threshold, or the built-in error rate by the sequential test. */
function judgeAll(
  s: ReleaseStatus,
  policy: Policy,
  measured: Measurement[],
): { judgements: Judgement[]; evidence?: Evidence } {
  let evidence: Evidence | undefined;
  const judgements = policy.metrics.map((metric) => {
    const m = measured.find((x) => x.metric === metric.name) ?? { metric: metric.name };
    if (policy.analysis.kind !== 'sequential' || metric.query !== 'error-rate')
      return judge(metric, m, policy.minRequests);
    const sequential = judgeSequential(metric, m, s.evidence, policy.analysis);
    evidence = sequential.evidence ?? evidence;
    return sequential.judgement;
  });
  return { judgements, ...(evidence ? { evidence } : {}) };
}

/** Records one check and decides: carry on, roll back, or hold. */
function onCheck(
  o: Observed,
  s: ReleaseStatus,
  policy: Policy,
  measured: Measurement[],
  now: Date,
): { status: ReleaseStatus; actions: Action[]; rollback?: Rollback } {
  const { judgements, evidence } = judgeAll(s, policy, measured);
  const verdict = combine(judgements);
  const records: CheckRecord[] = judgements.map((j) => ({
    at: now.toISOString(),
    metric: j.metric,
    verdict: j.verdict,
    threshold: j.threshold,
    reason: j.reason,
    ...(j.value !== undefined ? { value: j.value } : {}),
  }));
  const failures = s.failures + (verdict === 'fail' ? 1 : 0);
  // A sequential check that gained evidence is progress towards a verdict, not a missing one.
  const progressed = verdict === 'inconclusive' && judgements.some((j) => j.progressed);
  const unjudged = (verdict === 'inconclusive' && !progressed) || verdict === 'error' ? (s.unjudged ?? 0) + 1 : 0;
  const status: ReleaseStatus = {
    ...s,
    ...(evidence ? { evidence } : {}),
    lastCheckAt: now.toISOString(),
    lastVerdict: verdict,
    failures,
    unjudged,
    checks: [...s.checks, ...records].slice(-keptChecks),
  };
  const text = describeChecks(judgements);
  const checked: Action = { kind: 'checked', verdict };
  const rollback = rollbackFor(o, s, policy, {
    verdict,
    failures,
    unjudged,
    hard: judgements.some((j) => j.hard),
    worse: judgements.some((j) => j.worse),
  });
  if (rollback) {
    const detail = `${rollback.detail}; ${text}`;
    return {
      status,
      rollback: { ...rollback, detail },
      actions: [
        checked,
        event('Warning', 'RollingBack', `rolling back revision ${s.revision} at ${s.weight}%: ${detail}`),
      ],
    };
  }
  const eventFor: Record<typeof verdict, Action> = {
    pass: event('Normal', 'CheckPassed', `at ${s.weight}%: ${text}`),
    fail: event('Warning', 'CheckFailed', `at ${s.weight}% (${failures}/${policy.failureLimit} failures): ${text}`),
    inconclusive: event(
      'Warning',
      'CheckInconclusive',
      `at ${s.weight}%, holding: ${text}${lookingBack(policy, status)}`,
    ),
    error: event(
      'Warning',
      'MetricsUnavailable',
      `at ${s.weight}%, holding and never promoting while the metrics are unknown: ${text}`,
    ),
  };
  // A pass after a pass at the same step would repeat its Event: the status record and
  // weir_checks_total keep every check, the Events what changed (one write per check, not two).
  const repeated = verdict === 'pass' && s.lastVerdict === 'pass';
  return {
    status: {
      ...status,
      message: `step ${s.step + 1}/${stepsOf(policy).length} at ${at(s)}: last check ${verdict}`,
    },
    actions: repeated ? [checked] : [checked, eventFor[verdict]],
  };
}

/** What the next check of a threshold release will look at, once this one gave no verdict. */
const lookingBack = (policy: Policy, s: ReleaseStatus): string =>
  policy.analysis.kind === 'threshold'
    ? `; the next check looks back ${Math.round(lookBackMs(policy, s) / policy.intervalMs)} intervals`
    : '';

/** Whether this check ends the release, and why; undefined while it carries on. */
function rollbackFor(
  o: Observed,
  s: ReleaseStatus,
  policy: Policy,
  check: { verdict: Verdict; failures: number; unjudged: number; hard: boolean; worse: boolean },
): Rollback | undefined {
  if (check.verdict === 'fail' && check.hard) return { cause: 'ceiling', detail: 'hard ceiling reached' };
  if (check.verdict === 'fail' && check.worse)
    return { cause: 'worse', detail: 'the sequential test found the canary worse than stable' };
  if (check.verdict === 'fail' && check.failures >= policy.failureLimit)
    return {
      cause: 'failed-checks',
      detail: `${check.failures} failed checks reached the failure limit ${policy.failureLimit}`,
    };
  if ((check.verdict === 'inconclusive' || check.verdict === 'error') && check.unjudged >= policy.unjudgedLimit)
    return { cause: 'unjudged', detail: unjudgedReason(check.verdict, check.unjudged, o.name) };
  return undefined;
}

/** Brings the canary to its step's size and, once it is Ready, gives it the step's weight. */
function enterStep(o: Observed, s: ReleaseStatus, policy: Policy, now: Date): Action[] {
  const steps = stepsOf(policy);
  const target = steps[s.step] ?? { weight: 100, mirror: 0 };
  // A mirrored share is load like a weight: the canary is sized for it.
  const replicas = canaryReplicas(desiredReplicas(o, s), Math.max(target.weight, target.mirror));
  const canary = o.canary;
  if (!canary || canary.revision !== s.revision || canary.replicas !== replicas) {
    return [
      { kind: 'ensureCanary', replicas },
      { kind: 'status', status: { ...s, message: `scaling the canary to ${replicas} for ${stepText(target)}` } },
    ];
  }
  if (!canary.current || canary.readyReplicas < replicas) {
    const ready = `${canary.readyReplicas}/${replicas}`;
    const message = `waiting for the canary to be Ready (${ready}) before step ${s.step + 1} (${stepText(target)})`;
    return s.message === message ? [] : [{ kind: 'status', status: { ...s, message } }];
  }
  const next: ReleaseStatus = {
    ...s,
    weight: target.weight,
    mirror: target.mirror > 0 ? target.mirror : undefined,
    stepStartedAt: now.toISOString(),
    lastCheckAt: undefined,
    lastVerdict: undefined,
    message: `step ${s.step + 1}/${steps.length}: ${stepText(target)}`,
  };
  const shadow = target.mirror > 0;
  // The record first, then the route: after a crash in between, the step is completed, never undone.
  return [
    { kind: 'status', status: next },
    ...(routeCarries(o, target.weight, target.mirror) ? [] : [steerTo(o, target.weight, target.mirror)]),
    event(
      'Normal',
      shadow ? 'MirrorSet' : 'WeightSet',
      shadow
        ? `step ${s.step + 1}/${steps.length}: ${stepText(target)} (revision ${s.revision})`
        : `step ${s.step + 1}/${steps.length}: canary weight ${target.weight}% (revision ${s.revision})`,
    ),
  ];
}

function promote(o: Observed, s: ReleaseStatus): Action[] {
  if (handsOver(o, s)) {
    // The old stable pods go first (scaleDown does it once the mesh moved the weight off them), so the
    // rollout of the new revision starts from none and grows only as the canary shrinks (handOver).
    if (o.replicas > 0) {
      const message = 'promoting once the old stable pods are gone: the new revision then takes over step by step';
      return s.message === message ? [] : [{ kind: 'status', status: { ...s, message } }];
    }
    return unpaused(o, { ...s, message: 'promoting: the new revision takes over from the canary' });
  }
  // Otherwise the total first, so the rollout makes every replica the user asked for; then the
  // phase (the webhook keeps a Progressing release paused).
  const total = desiredReplicas(o, s);
  return [
    ...(s.stableReplicas !== undefined && o.replicas !== total
      ? [{ kind: 'scaleStable', replicas: total, status: unscaled(s) } as Action]
      : []),
    ...unpaused(o, { ...unscaled(s), message: 'promoting: waiting for the Deployment to roll out' }),
  ];
}

/** Phase Promoting and the Deployment unpaused: it rolls out the canary's revision; `status` follows. */
function unpaused(o: Observed, status: ReleaseStatus): Action[] {
  return [
    {
      kind: 'setPhase',
      phase: 'Promoting',
      reason:
        `Promoting: every step passed; the Deployment rolls out revision ${status.revision} ` +
        'while the canary serves',
    },
    { kind: 'unpause' },
    event('Normal', 'Promoting', `every step passed; ${o.name} rolls out revision ${status.revision}`),
    { kind: 'status', status },
  ];
}

const backendsLost = 'the stable and canary backends (subsets or Services) no longer select the two halves; put back';

/**
 * Routing changed behind weir's back while a step holds its weight (the webhook was bypassed, or
 * the object was replaced): put it back at once, and judge the step only on traffic after that.
 */
function repairRouting(o: Observed, s: ReleaseStatus, now: Date, weight: number): Action[] | undefined {
  const mirror = s.mirror ?? 0;
  const carries = routeCarries(o, s.weight, mirror);
  const what = !o.backendsReady
    ? backendsLost
    : weight !== s.weight
      ? `the route gave the canary ${weight}% instead of ${s.weight}%; put back to ${s.weight}%`
      : !carries
        ? `the route's mirror to the canary or the testers' header route was changed; put back`
        : undefined;
  if (!what) return undefined;
  // No check yet in this step: weir's own step write has not reached the route (a conflict, or a
  // crash after the record): finish it, nothing to warn about.
  if (o.backendsReady && s.lastCheckAt === undefined) return [steerTo(o, s.weight, mirror)];
  const restarted = o.phase === 'Progressing' ? "; the step's checks start again" : '';
  return [
    ...(o.backendsReady ? [] : [{ kind: 'ensureBackends' } as Action]),
    ...(carries ? [] : [steerTo(o, s.weight, mirror)]),
    event('Warning', 'RoutingRepaired', `${what}${restarted}`),
    {
      kind: 'status',
      status: { ...s, lastCheckAt: now.toISOString(), lastVerdict: undefined, message: `routing repaired: ${what}` },
    },
  ];
}

function progressing(
  o: Observed,
  s: ReleaseStatus,
  policy: Policy,
  measured: Measurement[] | undefined,
  now: Date,
  weight: number,
): Action[] {
  if (o.unlabelledStablePods > 0) return [{ kind: 'labelStablePods' }];
  const target = stepsOf(policy)[s.step] ?? { weight: 100, mirror: 0 };
  const holding = s.stepStartedAt !== undefined && s.weight === target.weight && (s.mirror ?? 0) === target.mirror;
  // A check on traffic the canary did not get is never counted: repair first.
  const repair = holding ? repairRouting(o, s, now, weight) : undefined;
  if (repair) return repair;
  if (!o.backendsReady) return [{ kind: 'ensureBackends' }];
  if (!holding) return enterStep(o, s, policy, now);
  const resized = scaleDown(o, s, now);
  if (resized) return resized;
  let status = s;
  const actions: Action[] = [];
  if (measured) {
    const check = onCheck(o, s, policy, measured, now);
    // Traffic off the canary first, then the Event that says why: the weight does not wait for it.
    if (check.rollback) return [...rollBack(o, check.status, now, check.rollback), ...check.actions];
    status = check.status;
    actions.push(...check.actions);
  }
  const isLast = s.step >= stepsOf(policy).length - 1;
  const pauseOver = now.getTime() >= pauseEndsAt(status, policy);
  if (pauseOver && status.lastVerdict === 'pass') {
    if (isLast) return [...actions, ...promote(o, status)];
    const next: ReleaseStatus = {
      ...status,
      step: status.step + 1,
      stepStartedAt: undefined,
      lastCheckAt: undefined,
      lastVerdict: undefined,
    };
    return [...actions, ...enterStep(o, next, policy, now)];
  }
  if (!measured) return actions;
  return [
    ...actions,
    unrecorded(o, s, status, policy, now) ? { kind: 'remember', status } : { kind: 'status', status },
  ];
}

/** How long a run of passing checks may go unwritten (ADR 26): what `kubectl get` shows is at most this old. */
export const recordPassesEveryMs = 60_000;

/**
 * A pass after a pass on the same step changes nothing a decision or a restart needs but the time
 * of the last check: it is kept by the analyzer, not written, until the record's latest check is a
 * minute old. A restart that loses it checks again at once. Checks a minute apart are all written.
 */
function unrecorded(o: Observed, before: ReleaseStatus, after: ReleaseStatus, policy: Policy, now: Date): boolean {
  const repeated =
    after.lastVerdict === 'pass' &&
    before.lastVerdict === 'pass' &&
    after.failures === before.failures &&
    (after.unjudged ?? 0) === (before.unjudged ?? 0) &&
    JSON.stringify(after.evidence) === JSON.stringify(before.evidence);
  const recordedAt = ms(o.recordedCheckAt ?? before.lastCheckAt);
  return repeated && policy.intervalMs < recordPassesEveryMs && now.getTime() - recordedAt < recordPassesEveryMs;
}

/**
 * Phases Stable and RolledBack: no canary weight, no canary left behind, and — once weir has
 * steered this Deployment's backends, or before any release when they are weir's own — backends
 * that still select the stable half.
 */
function settled(o: Observed, s: ReleaseStatus | undefined, now: Date, weight: number): Action[] {
  const base = s ?? fresh(o.canaryRevision ?? o.stableRevision ?? 'none', weight);
  if (exposed(o)) return drain(o, base, now, 'settle', `${o.phase}: traffic back to stable`);
  if (base.drainingSince) return [];
  // Break after make's mirror image: a route the mesh may still hold must not name a gone backend.
  if (s?.retiredAt && now.getTime() >= backendsRetireAt(s))
    return [{ kind: 'retireBackends' }, { kind: 'status', status: { ...s, retiredAt: undefined } }];
  if (s?.stableReplicas !== undefined && o.replicas === s.stableReplicas && s.replicas !== undefined)
    return [{ kind: 'scaleStable', replicas: s.replicas, status: unscaled(s) }];
  return settledBackends(o, s) ?? (o.canary ? [{ kind: 'deleteCanary' }] : []);
}

/** Between releases: weir's own backends made before the first release, or lost ones put back. */
function settledBackends(o: Observed, s: ReleaseStatus | undefined): Action[] | undefined {
  if (o.backendsReady || o.optedOut) return undefined;
  if (!s && o.ownBackends)
    return [
      { kind: 'ensureBackends' },
      event('Normal', 'BackendsCreated', 'created the backend Services the route names, one for each half'),
    ];
  return s ? [{ kind: 'ensureBackends' }, event('Warning', 'RoutingRepaired', backendsLost)] : undefined;
}

/** While weight is 0 and the canary waits to go; undefined when not draining or a new revision arrived. */
function whileDraining(o: Observed, s: ReleaseStatus, now: Date): Action[] | undefined {
  if (s.restoring) return restoring(o, s, now, exposed(o));
  if (now.getTime() < drainEndsAt(o, s)) return exposed(o) ? [{ kind: 'setWeight', weight: 0 }] : [];
  // A revert (phase set by the webhook) mid-drain only needs the canary gone.
  if (o.phase === 'Stable' || o.phase === 'RolledBack') return finishDrain(o, { ...s, outcome: 'settle' }, now);
  return s.revision === o.canaryRevision ? finishDrain(o, s, now) : undefined;
}

const mirrorTaken = (host: string): string =>
  `the steered route already mirrors to ${host}; a shadow step would replace the user's mirror, so it holds`;

/** Routing or policy that cannot be used: hold, with one Warning per distinct problem. */
function blocked(o: Observed, weight: number): Action[] | undefined {
  if (o.unreadableStatus !== undefined) return unreadable(o);
  const problem =
    o.nameConflict !== undefined
      ? {
          reason: 'NameConflict',
          message:
            `${o.nameConflict} exists and is not weir's canary of ${o.name}; holding, nothing of it is changed. ` +
            `Rename or remove it, or opt ${o.name} out`,
          text: '',
        }
      : !o.routing.ok
        ? { reason: 'RoutingError', message: `routing: ${o.routing.error}`, text: o.routing.error }
        : !o.policy.ok
          ? { reason: 'InvalidPolicy', message: `invalid policy, holding: ${o.policy.errors.join('; ')}`, text: '' }
          : o.policy.value.mirror && o.routing.mirroredElsewhere !== undefined
            ? {
                reason: 'RoutingError',
                message: `routing: ${mirrorTaken(o.routing.mirroredElsewhere)}`,
                text: mirrorTaken(o.routing.mirroredElsewhere),
              }
            : undefined;
  if (!problem) return undefined;
  if (o.status?.message === problem.message) return [];
  const status = { ...(o.status ?? fresh(o.canaryRevision ?? 'none', weight)), message: problem.message };
  return [event('Warning', problem.reason, problem.text || problem.message), { kind: 'status', status }];
}

/**
 * weir's record cannot be read: weir no longer knows the step, so it holds and says how to go on.
 * The record is never overwritten silently: it may be a person's edit worth reading first.
 */
function unreadable(o: Observed): Action[] {
  const message =
    `${annotations.status} is not weir's progress record ("${o.unreadableStatus ?? ''}…"); holding. ` +
    `Remove the annotation to restart this release's steps ` +
    `(kubectl annotate deployment ${o.name} ${annotations.status}-)`;
  // Nothing is written to the Deployment, so nothing else remembers that this was said.
  return [{ ...event('Warning', 'InvalidStatus', message), once: true } as Action];
}

/**
 * Said once a release: callers the route never sees reach the canary's pods through the Service
 * as soon as they are Ready. weir steers the route it is given; this says what it does not cover.
 */
function unsteeredCallers(o: Observed): Action[] {
  if (!o.routing.ok || !o.routing.meshUnsteered) return [];
  const route = o.route ? `${o.route.kind} ${o.route.name}` : 'the steered route';
  return [
    event(
      'Warning',
      'MeshCallersUnsteered',
      `${route} is bound to gateways only: in-mesh callers of the Service reach every pod it selects, ` +
        "the canary's included, whatever the weight; bind the route to the mesh as well " +
        '(a VirtualService: gateways [..., mesh] and the Service in hosts; an HTTPRoute: the Service as a parentRef)',
    ),
  ];
}

/** A revision with no record yet: a new release, or a newer canary superseding the running one. */
function begin(o: Observed, previous: ReleaseStatus | undefined, now: Date, weight: number): Action[] {
  const revision = o.canaryRevision ?? 'none';
  const superseded = previous !== undefined && o.phase === 'Progressing' && (exposed(o) || o.canary !== undefined);
  // A superseded release may have scaled stable: its record goes on, so the drain scales it back.
  const scaled =
    previous?.stableReplicas !== undefined
      ? { replicas: previous.replicas, stableReplicas: previous.stableReplicas }
      : {};
  const start: ReleaseStatus = { ...fresh(revision, weight), ...scaled };
  const started = superseded
    ? event(
        'Normal',
        'Superseded',
        `revision ${revision} replaces canary ${previous.revision}; weight back to stable, steps restart`,
      )
    : event(
        'Normal',
        'ReleaseStarted',
        `release of revision ${revision} started against stable ${o.stableRevision ?? 'unknown'}`,
      );
  if (superseded && exposed(o))
    return [started, ...drain(o, start, now, 'restart', 'superseded: draining the previous canary')];
  return [started, ...unsteeredCallers(o), { kind: 'status', status: start }];
}

function promoting(o: Observed, s: ReleaseStatus, now: Date, weight: number): Action[] {
  const repair = repairRouting(o, s, now, weight);
  if (repair) return repair;
  if (o.paused) return [{ kind: 'unpause' }];
  if (s.stableReplicas !== undefined) return handOver(o, s, now);
  if (o.rolledOut && !s.rolledOutAt)
    return [
      {
        kind: 'status',
        status: {
          ...s,
          rolledOutAt: now.toISOString(),
          message: 'promoting: rolled out; letting the mesh learn the new endpoints',
        },
      },
    ];
  if (o.rolledOut && now.getTime() - ms(s.rolledOutAt) >= settleMs)
    return drain(o, s, now, 'promote', 'promoted: traffic back to the stable subset, now the new revision');
  if (o.rolledOut) return [];
  const message = 'promoting: waiting for the Deployment to roll out';
  return s.message === message ? [] : [{ kind: 'status', status: { ...s, message } }];
}

/**
 * Promotion under dynamic stable scale (issue 17): the new revision's stable pods take the canary's
 * share back a step at a time — stable grows to the next lower step's share, is available and known
 * to the mesh, then the weight moves and, once the mesh has that too, the canary shrinks — so both
 * halves together never hold more than the total and one step's worth. At stable's whole total the
 * record lets go and the plain promotion (settle, drain) finishes.
 */
function handOver(o: Observed, s: ReleaseStatus, now: Date): Action[] {
  const total = desiredReplicas(o, s);
  const share = canaryReplicas(total, s.weight);
  // The canary gives up its pods once the mesh has moved the weight off them; stable grows after.
  if (o.canary && o.canary.replicas > share)
    return now.getTime() >= scaleDownAt(s) ? [{ kind: 'ensureCanary', replicas: share }] : [];
  const next = [...(s.steps ?? [])].reverse().find((w) => w < s.weight) ?? 0;
  // A canary deleted by hand has nothing left to hand over: stable grows whole before weight leaves it.
  const size = next > 0 && scaling(o) && o.canary ? stableReplicas(total, next) : total;
  if (o.replicas < size) {
    const status: ReleaseStatus = { ...s, replicas: total, stableReplicas: size, restoredAt: undefined };
    return [
      { kind: 'scaleStable', replicas: size, status: { ...status, message: `promoting: stable grows to ${size}` } },
      stableScaled('Normal', `promotion: stable (revision ${s.revision}) grows to ${size} of ${total}`),
    ];
  }
  if (!o.rolledOut) {
    const message = `promoting: waiting for ${o.replicas} stable pods of revision ${s.revision} to be available`;
    return s.message === message ? [] : [{ kind: 'status', status: { ...s, message } }];
  }
  if (!s.restoredAt) return [{ kind: 'status', status: { ...s, restoredAt: now.toISOString() } }];
  if (now.getTime() < ms(s.restoredAt) + meshPropagationMs) return [];
  if (size >= total) return [{ kind: 'status', status: { ...unscaled(s), message: 'promoting: stable is whole' } }];
  const moved: ReleaseStatus = {
    ...s,
    weight: next,
    stepStartedAt: now.toISOString(),
    restoredAt: undefined,
    message: `promoting: canary ${next}%, stable ${size} of ${total}`,
  };
  return [
    { kind: 'status', status: moved },
    steerTo(o, next, 0),
    event('Normal', 'HandedOver', `promotion: canary weight ${next}% as stable holds ${size} of ${total} replicas`),
  ];
}

/** Promotion hands over step by step: dynamic stable scale shrank stable in this release (ADR 19). */
const handsOver = (o: Observed, s: ReleaseStatus): boolean => scaling(o) && s.stableReplicas !== undefined;

/** A person's request: carried out now when it applies, refused with a Warning when it does not; always cleared. */
function onRequest(o: Observed, s: ReleaseStatus | undefined, now: Date, weight: number): Action[] | undefined {
  const request = o.request;
  if (request === undefined) return undefined;
  const clear: Action = { kind: 'clearRequest' };
  const refuse = (why: string): Action[] => [clear, event('Warning', 'RequestRefused', why)];
  if (typeof request === 'object')
    return refuse(`${annotations.request}: "${request.invalid}" is not one of ${requests.join(', ')}`);
  const current = s && s.revision === o.canaryRevision ? s : undefined;
  if (request === 'retry') {
    if (o.phase !== 'RolledBack' || !o.canaryRevision)
      return refuse(`retry: only a RolledBack release can be retried (phase is ${o.phase})`);
    return [
      clear,
      {
        kind: 'setPhase',
        phase: 'Progressing',
        reason: `Retried: revision ${o.canaryRevision} starts its steps again`,
      },
      event('Normal', 'Retried', `retry requested: revision ${o.canaryRevision} starts its steps again`),
      { kind: 'status', status: { ...fresh(o.canaryRevision, weight), message: 'retried: preparing the canary' } },
    ];
  }
  if (o.phase !== 'Progressing' || !current || current.drainingSince || !o.policy.ok)
    return refuse(
      `${request}: no release in progress to ${request === 'abort' ? 'abort' : 'promote'} (phase ${o.phase})`,
    );
  if (request === 'abort') {
    const rollback: Rollback = { cause: 'aborted', detail: `aborted by request at ${current.weight}%` };
    return [
      clear,
      event(
        'Warning',
        'RollingBack',
        `abort requested: rolling back revision ${current.revision} at ${current.weight}%`,
      ),
      ...rollBack(o, current, now, rollback),
    ];
  }
  if (request === 'promote-full')
    return [
      clear,
      event('Normal', 'PromoteRequested', 'promote --full requested: skipping the remaining steps'),
      ...promote(o, current),
    ];
  const policy = o.policy.value;
  if (!current.stepStartedAt)
    return refuse('promote: the current step has not started yet (waiting for the canary to be Ready)');
  const isLast = current.step >= stepsOf(policy).length - 1;
  const actions: Action[] = [
    clear,
    event(
      'Normal',
      'PromoteRequested',
      `promote requested: ending step ${current.step + 1}/${stepsOf(policy).length} early`,
    ),
  ];
  if (isLast) return [...actions, ...promote(o, current)];
  return [
    ...actions,
    ...enterStep(
      o,
      { ...current, step: current.step + 1, stepStartedAt: undefined, lastCheckAt: undefined, lastVerdict: undefined },
      policy,
      now,
    ),
  ];
}

/** The next actions for one Deployment. `measured` is given when a check was due and ran. */
export function decide(o: Observed, measured: Measurement[] | undefined, now: Date): Action[] {
  return described(o, next(o, measured, now));
}

/**
 * Every record written carries what a reader needs without knowing weir's policies: the policy's
 * name and steps, and where the traffic is steered.
 */
function described(o: Observed, actions: Action[]): Action[] {
  const about = {
    policy: o.policyName,
    ...(o.policy.ok ? { steps: stepsOf(o.policy.value).map((t) => t.weight) } : {}),
    ...(o.route ? { route: o.route } : {}),
  };
  return actions.map((a) =>
    a.kind === 'status' || a.kind === 'scaleStable' || a.kind === 'remember'
      ? { ...a, status: { ...a.status, ...about } }
      : a,
  );
}

function next(o: Observed, measured: Measurement[] | undefined, now: Date): Action[] {
  const weight = o.routing.ok ? o.routing.canaryWeight : 0;
  const s = o.status;
  const requested = o.routing.ok ? onRequest(o, s, now, weight) : undefined;
  if (requested) return requested;
  const draining = s?.drainingSince && o.routing.ok ? whileDraining(o, s, now) : undefined;
  if (draining) return draining;
  if (o.phase === 'Stable' || o.phase === 'RolledBack') return o.routing.ok ? settled(o, s, now, weight) : [];
  const hold = blocked(o, weight);
  if (hold) return hold;
  if (!s || s.revision !== (o.canaryRevision ?? 'none')) return begin(o, s, now, weight);
  if (o.optedOut) return drain(o, s, now, 'opt-out', 'opted out: traffic back to stable');
  if (o.phase === 'Promoting') return promoting(o, s, now, weight);
  return o.policy.ok ? progressing(o, s, o.policy.value, measured, now, weight) : [];
}
