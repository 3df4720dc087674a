// The webhook's second job: the Istio routing objects weir steers keep weir's fields through a
// re-apply. A mutation made inside the applier's own request is invisible to drift detection
// (kubectl diff, Flux's and Argo CD's server-side dry runs get it too), where a later write by
// the analyzer is what the next re-apply would undo (ADR 8). Pure, like mutate.
import jsonPatch from 'fast-json-patch';
import { keepSubsets, keepWeights } from '../contract/istio.ts';
import { routingAnnotations } from '../contract/steering.ts';
import type { DestinationRule, VirtualService } from '../contract/istio.ts';
import type { AdmissionInput, Mutation } from './mutate.ts';

export const routingGroup = 'networking.istio.io';
const guarded = { VirtualService: routingAnnotations.weights, DestinationRule: routingAnnotations.subsets } as const;
type GuardedKind = keyof typeof guarded;

/** The kind, when it is a routing object weir may guard (any served version: the shape is the same). */
export function routingKind(kind: AdmissionInput['kind']): GuardedKind | undefined {
  if (kind.group !== routingGroup) return undefined;
  return kind.kind === 'VirtualService' || kind.kind === 'DestinationRule' ? kind.kind : undefined;
}

const result = (outcome: Mutation['outcome'], reason: string, patch: Mutation['patch'] = []): Mutation => ({
  outcome,
  reason,
  patch,
  warnings: [],
});

/** Keeps weir's recorded weights (VirtualService) or subset selectors (DestinationRule); all else as applied. */
export function guardRouting(input: AdmissionInput, kind: GuardedKind, weirNamespace: string | undefined): Mutation {
  if (input.operation !== 'CREATE' && input.operation !== 'UPDATE')
    return result('skipped', `operation ${input.operation} is not handled`);
  if (input.subResource) return result('skipped', `subresource ${input.subResource} is never intercepted`);
  if (weirNamespace && input.namespace === weirNamespace) return result('skipped', "weir's own namespace");
  const object = input.object;
  if (object === null || typeof object !== 'object' || Array.isArray(object))
    return result('invalid', 'the object is not a JSON object');
  const record = (object as { metadata?: { annotations?: Record<string, unknown> } }).metadata?.annotations?.[
    guarded[kind]
  ];
  if (record === undefined) return result('skipped', `no ${guarded[kind]} record: not steered by weir`);
  const kept =
    kind === 'VirtualService' ? keepWeights(object as VirtualService) : keepSubsets(object as DestinationRule);
  const patch = jsonPatch.compare(object, kept);
  if (patch.length === 0) return result('unchanged', `${kind}: weir's fields are as recorded`);
  const what = kind === 'VirtualService' ? 'canary weights' : 'subset selectors';
  return result('patched', `${kind}: kept weir's ${what} from ${guarded[kind]}`, patch);
}
