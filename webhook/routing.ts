// The webhook's second job: the routing objects weir steers keep weir's fields through a
// re-apply. A mutation made inside the applier's own request is invisible to drift detection
// (kubectl diff, Flux's and Argo CD's server-side dry runs get it too), where a later write by
// the analyzer is what the next re-apply would undo (ADR 8). Pure, like mutate.
import jsonPatch from 'fast-json-patch';
import { keepSubsets, keepWeights } from '../contract/istio.ts';
import { gatewayGroup, keepRuleWeights } from '../contract/gateway.ts';
import type { HTTPRoute } from '../contract/gateway.ts';
import { routingAnnotations } from '../contract/steering.ts';
import type { DestinationRule, VirtualService } from '../contract/istio.ts';
import type { AdmissionInput, Mutation } from './mutate.ts';

export const routingGroup = 'networking.istio.io';
const guarded = {
  VirtualService: { group: routingGroup, record: routingAnnotations.weights, what: 'canary weights' },
  DestinationRule: { group: routingGroup, record: routingAnnotations.subsets, what: 'subset selectors' },
  HTTPRoute: { group: gatewayGroup, record: routingAnnotations.weights, what: 'backend weights' },
} as const;
type GuardedKind = keyof typeof guarded;

/** The kind, when it is a routing object weir may guard (any served version: the shape is the same). */
export function routingKind(kind: AdmissionInput['kind']): GuardedKind | undefined {
  const known = Object.hasOwn(guarded, kind.kind) ? (kind.kind as GuardedKind) : undefined;
  return known && guarded[known].group === kind.group ? known : undefined;
}

/** The object as admitted: as applied, with weir's recorded fields. */
function keep(kind: GuardedKind, object: object): object {
  switch (kind) {
    case 'VirtualService':
      return keepWeights(object as VirtualService);
    case 'DestinationRule':
      return keepSubsets(object as DestinationRule);
    case 'HTTPRoute':
      return keepRuleWeights(object as HTTPRoute);
  }
}

const result = (outcome: Mutation['outcome'], reason: string, patch: Mutation['patch'] = []): Mutation => ({
  outcome,
  reason,
  patch,
  warnings: [],
});

/** Keeps weir's recorded weights (VirtualService, HTTPRoute) or subset selectors (DestinationRule). */
export function guardRouting(input: AdmissionInput, kind: GuardedKind, weirNamespace: string | undefined): Mutation {
  if (input.operation !== 'CREATE' && input.operation !== 'UPDATE')
    return result('skipped', `operation ${input.operation} is not handled`);
  if (input.subResource) return result('skipped', `subresource ${input.subResource} is never intercepted`);
  if (weirNamespace && input.namespace === weirNamespace) return result('skipped', "weir's own namespace");
  const object = input.object;
  if (object === null || typeof object !== 'object' || Array.isArray(object))
    return result('invalid', 'the object is not a JSON object');
  const { record: key, what } = guarded[kind];
  const record = (object as { metadata?: { annotations?: Record<string, unknown> } }).metadata?.annotations?.[key];
  if (record === undefined) return result('skipped', `no ${key} record: not steered by weir`);
  const patch = jsonPatch.compare(object, keep(kind, object));
  if (patch.length === 0) return result('unchanged', `${kind}: weir's fields are as recorded`);
  return result('patched', `${kind}: kept weir's ${what} from ${key}`, patch);
}
