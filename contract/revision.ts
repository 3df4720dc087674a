// A release is named by the hash of a pod template, weir's own labels and annotations left out,
// so stamping `weir.dev/track` never makes a new revision.
import { createHash } from 'node:crypto';
import { annotations, isWeirKey } from './names.ts';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function canonical(value: unknown): Json {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === 'object') {
    const out: { [key: string]: Json } = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = canonical(v);
    }
    return out;
  }
  return value as Json;
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
  return createHash('sha256').update(body).digest('hex').slice(0, 10);
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
