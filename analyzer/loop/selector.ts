// Label selectors with their full meaning (matchLabels and matchExpressions), for every list
// weir makes of pods and ReplicaSets. A selector that would select everything selects nothing.
import type { V1LabelSelector, V1Pod } from '@kubernetes/client-node';

function expression(e: { key: string; operator: string; values?: string[] }): string | undefined {
  const values = `(${(e.values ?? []).join(',')})`;
  switch (e.operator) {
    case 'In':
      return `${e.key} in ${values}`;
    case 'NotIn':
      return `${e.key} notin ${values}`;
    case 'Exists':
      return e.key;
    case 'DoesNotExist':
      return `!${e.key}`;
    default:
      return undefined;
  }
}

/**
 * The selector as a `labelSelector` query (`app=web,tier in (front),!weir.dev/track`), with extra
 * terms; undefined when it has no term of its own or an operator it does not know.
 */
export function selectorQuery(selector: V1LabelSelector | undefined, ...extra: string[]): string | undefined {
  const terms = Object.entries(selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of selector?.matchExpressions ?? []) {
    const term = expression(e);
    if (term === undefined) return undefined;
    terms.push(term);
  }
  return terms.length > 0 ? [...terms, ...extra].join(',') : undefined;
}

/** The pod was made by a ReplicaSet of the Deployment named `deployment` (`<deployment>-<pod-template-hash>`). */
export function ownedByDeployment(pod: V1Pod, deployment: string): boolean {
  const hash = pod.metadata?.labels?.['pod-template-hash'];
  const owner = pod.metadata?.ownerReferences?.find((o) => o.controller === true);
  return hash !== undefined && owner?.kind === 'ReplicaSet' && owner.name === `${deployment}-${hash}`;
}
