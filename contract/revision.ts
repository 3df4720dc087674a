// A release is named by the hash of a pod template, weir's own labels and annotations left out,
// so stamping `weir.dev/track` never makes a new revision.
import { hash } from 'node:crypto';
import { annotations, isWeirKey } from './names.ts';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const sorted = (keys: string[]): boolean => keys.every((k, i) => i === 0 || (keys[i - 1] ?? '') <= k);

/**
 * The value with every object's keys in sorted order, for a hash that no key order can change.
 * Copies only what is out of order (most of a template's small objects are sorted already): the
 * admission path hashes two templates per review. `JSON.stringify` drops undefined members itself.
 */
function canonical(value: unknown): Json {
  if (value === null || typeof value !== 'object') return value as Json;
  if (Array.isArray(value)) {
    let copy: Json[] | undefined;
    value.forEach((item: unknown, i) => {
      const c = canonical(item);
      if (c !== item) copy ??= (value as Json[]).slice(0, i);
      copy?.push(c);
    });
    return copy ?? (value as Json[]);
  }
  const object = value as Record<string, unknown>;
  const keys = Object.keys(object);
  const order = sorted(keys) ? keys : [...keys].sort();
  let changed = order !== keys;
  const values = order.map((k) => {
    const v = object[k];
    const c = canonical(v);
    if (c !== v) changed = true;
    return c;
  });
  if (!changed) return object as Json;
  const out: { [key: string]: Json } = {};
  order.forEach((k, i) => {
    const v = values[i];
    if (v !== undefined) out[k] = v;
  });
  return out;
}

function withoutWeirKeys(map: unknown): Record<string, unknown> | undefined {
  if (map === null || typeof map !== 'object') return undefined;
  const kept = Object.entries(map).filter(([k]) => !isWeirKey(k));
  return kept.length > 0 ? Object.fromEntries(kept) : undefined;
}

/** The revision of a pod template: 10 hex digits of SHA-256 over its canonical JSON. */
export function templateRevision(template: unknown): string {
  const t = (template ?? {}) as { metadata?: Record<string, unknown> };
  const metadata = { ...(t.metadata ?? {}) };
  metadata.labels = withoutWeirKeys(metadata.labels);
  metadata.annotations = withoutWeirKeys(metadata.annotations);
  const body = JSON.stringify(canonical({ ...t, metadata }));
  // One-shot: no Hash object per call (the admission path hashes two templates per release start).
  return hash('sha256', body).slice(0, 10);
}

/**
 * The pod template's revision when weir never saw it: a release was recorded, yet the template is
 * neither its stable nor its canary revision — an update admitted while the webhook was
 * unreachable (failurePolicy Ignore). Undefined otherwise, and before any release.
 */
export function unguardedRevision(recorded: Record<string, string>, template: unknown): string | undefined {
  const stable = recorded[annotations.stableRevision];
  if (!stable) return undefined;
  const revision = templateRevision(template);
  return revision === stable || revision === recorded[annotations.canaryRevision] ? undefined : revision;
}
