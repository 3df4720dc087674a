// What `weir get` shows: one plain value per release, built from what the cluster says, and
// its renderings (table, detail, JSON). Pure: no I/O here.
import type { V1Deployment, V1ReplicaSet } from '@kubernetes/client-node';
import { annotations } from '../contract/names.ts';
import { parseStatus } from '../contract/status.ts';
import type { CheckRecord, ReleaseStatus } from '../contract/status.ts';
import { templateRevision, unguardedRevision } from '../contract/revision.ts';

export interface ReleaseSummary {
  namespace: string;
  name: string;
  phase: string;
  /** The named policy the release runs under, as weir recorded it. */
  policy?: string;
  step?: number;
  steps?: number;
  desiredWeight?: number;
  actualWeight?: number;
  /** In the shadow step: the share of requests mirrored to the canary. */
  mirror?: number;
  /** Under dynamic stable scale: the total the stable half is a share of (its desired is the share). */
  stableTotal?: number;
  stableRevision?: string;
  canaryRevision?: string;
  stableImages: string[];
  canaryImages: string[];
  stableReady: { ready: number; desired: number };
  canaryReady: { ready: number; desired: number };
  stepStartedAt?: string;
  secondsInStep?: number;
  reason?: string;
  message?: string;
  checks: CheckRecord[];
  /** A template revision admitted while weir's webhook was unreachable: it rolled out with no canary. */
  unguardedRevision?: string;
}

const imagesOf = (t: { spec?: { containers?: { image?: string }[] } } | undefined): string[] =>
  (t?.spec?.containers ?? []).map((c) => c.image ?? '');

/** The revision of a ReplicaSet's template, as weir names revisions (the hash label left out). */
export function replicaSetRevision(rs: V1ReplicaSet): string {
  const template = structuredClone(rs.spec?.template ?? {});
  if (template.metadata?.labels) delete template.metadata.labels['pod-template-hash'];
  return templateRevision(template);
}

/** Step, desired weight and time in step, while the record is about the release in progress. */
function stepFields(status: ReleaseStatus, steps: number[] | undefined, now: Date): Partial<ReleaseSummary> {
  const fields: Partial<ReleaseSummary> = {
    step: status.step + 1,
    ...(status.mirror ? { mirror: status.mirror } : {}),
    ...(status.stableReplicas !== undefined && status.replicas !== undefined ? { stableTotal: status.replicas } : {}),
  };
  if (steps) Object.assign(fields, { steps: steps.length, desiredWeight: steps[status.step] });
  if (status.stepStartedAt) {
    fields.stepStartedAt = status.stepStartedAt;
    fields.secondsInStep = Math.max(0, Math.round((now.getTime() - Date.parse(status.stepStartedAt)) / 1000));
  }
  return fields;
}

/** The entries whose value is set (optional fields stay absent rather than undefined). */
function defined(entries: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(entries).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ''),
  );
}

/** Names, and the Ready pods of the two halves. */
function halves(
  d: V1Deployment,
  canary: V1Deployment | undefined,
): Pick<ReleaseSummary, 'namespace' | 'name' | 'stableReady' | 'canaryReady'> {
  return {
    namespace: d.metadata?.namespace ?? '',
    name: d.metadata?.name ?? '',
    stableReady: { ready: d.status?.readyReplicas ?? 0, desired: d.spec?.replicas ?? 1 },
    canaryReady: { ready: canary?.status?.readyReplicas ?? 0, desired: canary?.spec?.replicas ?? 0 },
  };
}

export function buildSummary(
  d: V1Deployment,
  canary: V1Deployment | undefined,
  replicaSets: V1ReplicaSet[],
  actualWeight: number | undefined,
  now: Date,
): ReleaseSummary {
  const a = d.metadata?.annotations ?? {};
  const status = parseStatus(a[annotations.status]);
  const stableRevision = a[annotations.stableRevision];
  const canaryRevision = a[annotations.canaryRevision];
  const stableRs = replicaSets.find((rs) => stableRevision !== undefined && replicaSetRevision(rs) === stableRevision);
  const inRelease = status !== undefined && status.revision === canaryRevision;
  return {
    ...halves(d, canary),
    phase: a[annotations.phase] ?? 'Stable',
    stableImages: imagesOf(stableRs?.spec?.template ?? (inRelease ? undefined : d.spec?.template)),
    canaryImages: imagesOf(canary?.spec?.template),
    checks: status?.checks ?? [],
    ...defined({ stableRevision, canaryRevision, reason: a[annotations.reason] }),
    ...(actualWeight !== undefined ? { actualWeight } : {}),
    ...defined({ unguardedRevision: unguardedRevision(a, d.spec?.template) }),
    ...(status ? { message: status.message } : {}),
    ...defined({ policy: status?.policy }),
    ...(inRelease ? stepFields(status, status.steps, now) : {}),
  };
}

export function bar(weight: number | undefined, width = 20): string {
  const w = Math.max(0, Math.min(100, weight ?? 0));
  const filled = Math.round((w / 100) * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

const pad = (rows: string[][]): string => {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('   ')).join('\n');
};

const pct = (v: number | undefined): string => (v === undefined ? '-' : `${v}%`);
/** The weight, and the mirrored share in the shadow step: `0% +mirror 100%`. */
const weightText = (v: ReleaseSummary): string => `${pct(v.actualWeight)}${v.mirror ? ` +mirror ${v.mirror}%` : ''}`;
/** Ready of desired pods, and the total a scaled stable half is a share of: `2/2 of 4`. */
const stableText = (v: ReleaseSummary): string =>
  `${v.stableReady.ready}/${v.stableReady.desired}${v.stableTotal !== undefined ? ` of ${v.stableTotal}` : ''}`;
const stepText = (v: ReleaseSummary): string => (v.step !== undefined ? `${v.step}/${v.steps ?? '?'}` : '-');

export function renderTable(views: ReleaseSummary[], allNamespaces: boolean): string {
  const head = [...(allNamespaces ? ['NAMESPACE'] : []), 'NAME', 'PHASE', 'STEP', 'WEIGHT', 'STABLE', 'CANARY'];
  const rows = views.map((v) => [
    ...(allNamespaces ? [v.namespace] : []),
    v.name,
    v.unguardedRevision ? `${v.phase} (unguarded)` : v.phase,
    stepText(v),
    weightText(v),
    stableText(v),
    `${v.canaryReady.ready}/${v.canaryReady.desired}`,
  ]);
  return pad([head, ...rows]);
}

function showValue(c: CheckRecord): string {
  if (c.value === undefined) return '-';
  return c.metric.includes('error') ? `${(c.value * 100).toFixed(2)}%` : String(Number(c.value.toPrecision(4)));
}

export function renderDetail(v: ReleaseSummary): string {
  const lines = [
    `Name:        ${v.name}`,
    `Namespace:   ${v.namespace}`,
    `Phase:       ${v.phase}`,
    `Policy:      ${v.policy ?? '-'}`,
    `Step:        ${stepText(v)}`,
    `Weight:      desired ${pct(v.desiredWeight)}   actual ${weightText(v)}   ${bar(v.actualWeight)}`,
    `Stable:      ${v.stableImages.join(', ') || '-'}  (revision ${v.stableRevision ?? '-'})  ` +
      `ready ${stableText(v)}`,
    `Canary:      ${v.canaryImages.join(', ') || '-'}  (revision ${v.canaryRevision ?? '-'})  ` +
      `ready ${v.canaryReady.ready}/${v.canaryReady.desired}`,
    `In step:     ${v.secondsInStep === undefined ? '-' : `${v.secondsInStep}s`}`,
    `Reason:      ${v.reason ?? '-'}`,
    ...(v.unguardedRevision
      ? [
          `Unguarded:   revision ${v.unguardedRevision} was admitted while weir's webhook was unreachable; ` +
            'it rolled out with no canary',
        ]
      : []),
    `Progress:    ${v.message ?? '-'}`,
    'Checks:',
  ];
  if (v.checks.length === 0) return [...lines, '  (none yet)'].join('\n');
  const rows = [
    ['TIME', 'METRIC', 'VERDICT', 'VALUE', 'THRESHOLD', 'REASON'],
    ...v.checks.map((c) => [
      c.at.slice(11, 19),
      c.metric,
      c.verdict,
      showValue(c),
      showValue({ ...c, value: c.threshold }),
      c.reason,
    ]),
  ];
  return [
    ...lines,
    pad(rows)
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n'),
  ].join('\n');
}
