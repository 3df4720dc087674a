// Label selectors over namespace labels, with Kubernetes' semantics (matchLabels and
// matchExpressions, all terms ANDed). The webhook configuration's namespaceSelector and the
// analyzer's opt-in check read the same selector, so a custom selector in the chart means the
// same thing to both halves.
import { namespaceOptIn } from './names.ts';

export interface SelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: SelectorRequirement[];
}

/** The default opt-in: `weir.dev/canary=enabled` on the namespace. */
export const optInSelector: LabelSelector = { matchLabels: { [namespaceOptIn.key]: namespaceOptIn.value } };

function meets(requirement: SelectorRequirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, requirement.key);
  const values = requirement.values ?? [];
  switch (requirement.operator) {
    case 'In':
      return has && values.includes(labels[requirement.key] ?? '');
    case 'NotIn':
      return !has || !values.includes(labels[requirement.key] ?? '');
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
  }
}

/** Does the selector select an object with these labels? An empty selector selects everything. */
export function selects(selector: LabelSelector, labels: Record<string, string>): boolean {
  const pairs = Object.entries(selector.matchLabels ?? {});
  return (
    pairs.every(([key, value]) => Object.hasOwn(labels, key) && labels[key] === value) &&
    (selector.matchExpressions ?? []).every((r) => meets(r, labels))
  );
}

const operators: readonly string[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');

/** A selector from JSON (the chart passes `webhook.namespaceSelector` this way), or why it is not one. */
export function parseSelector(text: string): { ok: true; value: LabelSelector } | { ok: false; error: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  if (!isObject(value)) return { ok: false, error: 'not an object with matchLabels or matchExpressions' };
  const { matchLabels, matchExpressions } = value;
  if (
    matchLabels !== undefined &&
    (!isObject(matchLabels) || !Object.values(matchLabels).every((v) => typeof v === 'string'))
  )
    return { ok: false, error: 'matchLabels must map keys to strings' };
  if (matchExpressions !== undefined) {
    if (!Array.isArray(matchExpressions)) return { ok: false, error: 'matchExpressions must be a list' };
    for (const r of matchExpressions) {
      if (
        !isObject(r) ||
        typeof r.key !== 'string' ||
        typeof r.operator !== 'string' ||
        !operators.includes(r.operator)
      )
        return {
          ok: false,
          error: 'each of matchExpressions needs a key and an operator In, NotIn, Exists or DoesNotExist',
        };
      if (r.values !== undefined && !isStrings(r.values))
        return { ok: false, error: `values of ${r.key} must be strings` };
    }
  }
  return { ok: true, value };
}
