// The webhook's decision: from one admission request to a JSON Patch. Pure — no I/O, no clock
// (the caller passes `now`), so every behaviour in docs/design.md is a unit test.
import { isDeepStrictEqual } from 'node:util';
import jsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { annotations, labels, pointer, releaseAnnotations, tracks, isPhase, isWeirKey } from '../contract/names.ts';
import type { Phase } from '../contract/names.ts';
import { templateRevision } from '../contract/revision.ts';
import { parseStatus } from '../contract/status.ts';
import { guardRouting, routingKind } from './routing.ts';

export interface AdmissionInput {
  operation: string;
  namespace?: string;
  subResource?: string;
  kind: { group: string; version: string; kind: string };
  object?: unknown;
  oldObject?: unknown;
}

export interface MutateOptions {
  now: Date;
  /** weir's own namespace: never touched. */
  weirNamespace?: string;
}

/** What the webhook decided, why (for logs and metrics), and the patch that carries it out. */
export interface Mutation {
  outcome: 'skipped' | 'unchanged' | 'patched' | 'invalid';
  reason: string;
  patch: Operation[];
  warnings: string[];
}

interface Metadata {
  name?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: string;
}

interface Deployment {
  metadata?: Metadata;
  spec?: { paused?: boolean; replicas?: number; template?: { metadata?: Metadata } };
}

const skipped = (reason: string): Mutation => ({ outcome: 'skipped', reason, patch: [], warnings: [] });

/** Each predicate names why a request is none of weir's business, or returns undefined. */
const skipRules: ((input: AdmissionInput, options: MutateOptions) => string | undefined)[] = [
  (i) =>
    i.kind.group === 'apps' && i.kind.version === 'v1' && i.kind.kind === 'Deployment'
      ? undefined
      : 'not an apps/v1 Deployment',
  (i) => (i.subResource ? `subresource ${i.subResource} is never intercepted` : undefined),
  (i) => (i.operation === 'CREATE' || i.operation === 'UPDATE' ? undefined : `operation ${i.operation} is not handled`),
  (i, o) => (o.weirNamespace && i.namespace === o.weirNamespace ? "weir's own namespace" : undefined),
  (i) =>
    asDeployment(i.object)?.metadata?.annotations?.[annotations.optOut] === 'disabled'
      ? `opted out with ${annotations.optOut}: disabled`
      : undefined,
  (i) => (asDeployment(i.object)?.metadata?.labels?.[labels.canaryOf] ? 'the canary half of a release' : undefined),
  (i) => (asDeployment(i.object)?.metadata?.deletionTimestamp ? 'being deleted' : undefined),
];

/** Why this request is skipped, or undefined when weir must look at it. */
export function skipReason(input: AdmissionInput, options: MutateOptions): string | undefined {
  for (const rule of skipRules) {
    const reason = rule(input, options);
    if (reason) return reason;
  }
  return undefined;
}

function asDeployment(value: unknown): Deployment | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
}

function problem(object: Deployment | undefined): string | undefined {
  if (!object) return 'the object is not a JSON object';
  const template = object.spec?.template;
  if (template === null || typeof template !== 'object') return 'spec.template is missing';
  if (template.metadata?.labels !== undefined && typeof template.metadata.labels !== 'object')
    return 'spec.template.metadata.labels is not a map';
  return undefined;
}

function weirEntries(map: Record<string, string> | undefined): [string, string][] {
  return Object.entries(map ?? {}).filter(([k]) => isWeirKey(k));
}

/**
 * weir's own keys survive an apply that omits them (a server-side apply of a GitOps manifest
 * drops what the webhook set in the applier's name): the track label always, and the release
 * annotations when `weir.dev/phase` is gone — weir's own writes always carry the phase, and may
 * remove another annotation on purpose. The user's own `weir.dev/` settings (opt-out, policy,
 * routing) are theirs to remove: they are never put back.
 */
function carryOver(next: Deployment, old: Deployment | undefined): void {
  if (!old) return;
  next.metadata ??= {};
  if (next.metadata.annotations?.[annotations.phase] === undefined) {
    const record = Object.entries(old.metadata?.annotations ?? {}).filter(([k]) => releaseAnnotations.includes(k));
    for (const [key, value] of record) {
      next.metadata.annotations ??= {};
      next.metadata.annotations[key] ??= value;
    }
  }
  const template = next.spec?.template;
  if (!template) return;
  template.metadata ??= {};
  for (const [key, value] of weirEntries(old.spec?.template?.metadata?.labels)) {
    template.metadata.labels ??= {};
    template.metadata.labels[key] ??= value;
  }
}

function stampStable(d: Deployment): void {
  const template = d.spec?.template;
  if (!template) return;
  template.metadata ??= {};
  template.metadata.labels = { ...(template.metadata.labels ?? {}), [labels.track]: tracks.stable };
}

function setAnnotations(d: Deployment, values: Record<string, string | undefined>): void {
  d.metadata ??= {};
  const current = { ...(d.metadata.annotations ?? {}) };
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) delete current[key];
    else current[key] = value;
  }
  d.metadata.annotations = current;
}

function phaseOf(d: Deployment): Phase {
  const value = d.metadata?.annotations?.[annotations.phase];
  return isPhase(value) ? value : 'Stable';
}

const previousCanary = (old: Deployment): string =>
  old.metadata?.annotations?.[annotations.canaryRevision] ?? 'the previous canary';

/** A template change: start, supersede or end (revert) a release. Returns the reason. */
function onTemplateChange(
  next: Deployment,
  old: Deployment,
  revisions: { old: string; new: string },
  now: Date,
): string {
  const oldRevision = revisions.old;
  const newRevision = revisions.new;
  const phase = phaseOf(old);
  const inRelease = phase !== 'Stable';
  const stableRevision =
    (inRelease ? old.metadata?.annotations?.[annotations.stableRevision] : undefined) ?? oldRevision;
  stampStable(next);
  next.spec ??= {};
  if (inRelease && newRevision === stableRevision) {
    next.spec.paused = false;
    setAnnotations(next, {
      [annotations.phase]: 'Stable',
      [annotations.canaryRevision]: undefined,
      [annotations.reason]: `Reverted: the template is the stable revision ${stableRevision} again; no canary`,
    });
    return `revert to the stable revision ${stableRevision} ends the release`;
  }
  next.spec.paused = true;
  setAnnotations(next, {
    [annotations.phase]: 'Progressing',
    [annotations.stableRevision]: stableRevision,
    [annotations.canaryRevision]: newRevision,
    [annotations.releaseStarted]: now.toISOString(),
    [annotations.reason]: inRelease
      ? `Superseded: canary revision ${newRevision} replaces ${previousCanary(old)}`
      : `Started: canary revision ${newRevision} against stable revision ${stableRevision}`,
  });
  return inRelease
    ? `release superseded by canary revision ${newRevision}`
    : `release started for canary revision ${newRevision}`;
}

/**
 * A copy in which weir may change what it changes — metadata maps, spec.paused and the template's
 * labels — without cloning the rest (the admission path is hot; managedFields and containers are large).
 */
function editableCopy(d: Deployment): Deployment {
  const copyMaps = (m: Metadata | undefined): Metadata => ({
    ...m,
    ...(m?.labels ? { labels: { ...m.labels } } : {}),
    ...(m?.annotations ? { annotations: { ...m.annotations } } : {}),
  });
  const template = d.spec?.template;
  return {
    ...d,
    metadata: copyMaps(d.metadata),
    ...(d.spec
      ? {
          spec: {
            ...d.spec,
            ...(template ? { template: { ...template, metadata: copyMaps(template.metadata) } } : {}),
          },
        }
      : {}),
  };
}

/**
 * No template change. While a release holds the stable half (Progressing, RolledBack), an apply
 * that drops `paused` (server-side apply of a manifest without it) does not resume the rollout:
 * weir keeps it paused. Opting out (`weir.dev/canary: disabled`) is how to take it back.
 */
function holdRelease(next: Deployment, old: Deployment): string {
  const phase = phaseOf(old);
  const kept: string[] = [];
  if ((phase === 'Progressing' || phase === 'RolledBack') && old.spec?.paused === true && next.spec?.paused !== true) {
    next.spec = { ...next.spec, paused: true };
    kept.push(`kept paused: the ${phase} release holds the stable half`);
  }
  const size = keptStableSize(next, old, phase);
  if (size !== undefined) {
    next.spec = { ...next.spec, replicas: size };
    kept.push(`kept the stable half at ${size} replicas (dynamic stable scale; the total stays as applied)`);
  }
  return kept.length > 0 ? `pod template unchanged; ${kept.join('; ')}` : 'pod template unchanged: no release';
}

/**
 * Under dynamic stable scale (ADR 19) a re-apply of the same total is not a change: the stable
 * size weir wrote stays. Another total is the user's (or an HPA's) and goes through as applied.
 */
function keptStableSize(next: Deployment, old: Deployment, phase: Phase): number | undefined {
  // Promoting too: the new revision's stable pods grow step by step as the canary hands over.
  if (phase !== 'Progressing' && phase !== 'Promoting') return undefined;
  // The record as it will be: weir writes a new size with a record of it; a re-apply leaves it as it was.
  const status = parseStatus(next.metadata?.annotations?.[annotations.status]);
  const size = status?.stableReplicas;
  if (size === undefined || old.spec?.replicas !== size) return undefined;
  return next.spec?.replicas === status?.replicas && next.spec?.replicas !== size ? size : undefined;
}

const field = (value: unknown, key: string): unknown =>
  value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)[key]
    : undefined;

/** The operations that turn the value at `path` in `original` into the one in `next`. */
function diffAt(original: unknown, next: unknown, path: string[]): Operation[] {
  let a = original;
  let b = next;
  let at = '';
  for (const key of path) {
    const [av, bv] = [field(a, key), field(b, key)];
    at += `/${pointer(key)}`;
    if (av === undefined && bv === undefined) return [];
    if (av === undefined) return [{ op: 'add', path: at, value: bv }];
    if (bv === undefined) return [{ op: 'remove', path: at }];
    [a, b] = [av, bv];
  }
  if (a !== null && typeof a === 'object' && b !== null && typeof b === 'object')
    return jsonPatch.compare(a, b).map((op) => ({ ...op, path: at + op.path }));
  return a === b ? [] : [{ op: 'replace', path: at, value: b }];
}

/**
 * The patch from the request's object to weir's answer. They differ only where weir writes — the
 * annotations, `spec.paused`, the template's labels — so only those are compared, never the
 * whole object (the admission path is hot; a Deployment is mostly containers).
 */
function patchOf(original: Deployment, next: Deployment): Operation[] {
  return [
    ...diffAt(original, next, ['metadata', 'annotations']),
    ...diffAt(original, next, ['spec', 'paused']),
    ...diffAt(original, next, ['spec', 'replicas']),
    ...diffAt(original, next, ['spec', 'template', 'metadata', 'labels']),
  ];
}

/** Decides what to do with one Deployment CREATE or UPDATE and returns the patch for it. */
export function mutate(input: AdmissionInput, options: MutateOptions): Mutation {
  const routing = routingKind(input.kind);
  if (routing) return guardRouting(input, routing, options.weirNamespace);
  const reason = skipReason(input, options);
  if (reason) return skipped(reason);
  const original = asDeployment(input.object);
  const old = input.operation === 'UPDATE' ? asDeployment(input.oldObject) : undefined;
  const bad = problem(original) ?? (input.operation === 'UPDATE' ? problem(old) : undefined);
  if (bad || !original) {
    const message = `weir could not read this Deployment (${bad ?? 'no object'}); it was admitted without a canary`;
    return { outcome: 'invalid', reason: bad ?? 'no object', patch: [], warnings: [message] };
  }
  const next = editableCopy(original);
  let why: string;
  if (!old) {
    stampStable(next);
    why = 'first version: stamped the stable track';
  } else {
    carryOver(next, old);
    // Equal templates are one revision: no hashing for the common update (replicas, a re-apply).
    const same = isDeepStrictEqual(old.spec?.template, next.spec?.template);
    const revisions = same
      ? undefined
      : { old: templateRevision(old.spec?.template), new: templateRevision(next.spec?.template) };
    why =
      revisions && revisions.new !== revisions.old
        ? onTemplateChange(next, old, revisions, options.now)
        : holdRelease(next, old);
  }
  const patch = patchOf(original, next);
  return { outcome: patch.length > 0 ? 'patched' : 'unchanged', reason: why, patch, warnings: [] };
}
