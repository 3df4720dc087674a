// Weight without a release: a route weir steers that still gives its canary traffic while no
// release of any Deployment naming it is in progress — the Deployment was deleted, or deleted and
// re-created (`kubectl replace --force`), while no analyzer was watching. Its callers would get
// 503s from a canary that is gone; the route goes back to 100 % stable, with an event.
import type { KubernetesObject, V1Deployment } from '@kubernetes/client-node';
import type { EventRecorder } from './kube.ts';
import { annotations, ownedRoutingName } from '../../contract/names.ts';
import { parseWeights, routingAnnotations } from '../../contract/steering.ts';
import type { VirtualService } from '../../contract/istio.ts';
import { resolveRouting } from '../core/policy.ts';
import { describeError } from '../../contract/api.ts';
import type { MeshTarget, TrafficRouter } from '../ports/router.ts';
import type { Watch } from './watch.ts';

const inRelease = (d: V1Deployment): boolean => {
  const phase = d.metadata?.annotations?.[annotations.phase];
  return phase === 'Progressing' || phase === 'Promoting';
};

/** Route targets of this VirtualService that hold canary weight with no release in progress to own it. Pure. */
export function orphanedRoutes(vs: VirtualService, deployments: readonly V1Deployment[]): MeshTarget[] {
  const namespace = vs.metadata?.namespace ?? '';
  const name = vs.metadata?.name ?? '';
  const record = parseWeights(vs.metadata?.annotations?.[routingAnnotations.weights]);
  if (!record) return [];
  const owned = deployments.some(
    (d) => d.metadata?.namespace === namespace && inRelease(d) && namesVirtualService(d, name),
  );
  if (owned) return [];
  return [...record]
    .filter(([, r]) => r.weight > 0)
    .map(([route, r]) => ({
      kind: 'VirtualService' as const,
      namespace,
      virtualService: name,
      destinationRule: '',
      stableSubset: r.stable,
      canarySubset: r.canary,
      ...(route === '' ? {} : { route }),
    }));
}

function namesVirtualService(d: V1Deployment, vs: string): boolean {
  const routing = resolveRouting(d.metadata?.annotations ?? {});
  return routing.virtualService === vs || ownedRoutingName(d.metadata?.name ?? '') === vs;
}

export interface OrphanEdges {
  router: TrafficRouter;
  events: EventRecorder;
  mayWrite: () => boolean;
  now: () => Date;
  log: (message: string, fields?: Record<string, unknown>) => void;
}

/** For each VirtualService that changed (`namespace/name` keys, drained), puts orphaned weight back on stable. */
export async function unweightOrphans(
  edges: OrphanEdges,
  virtualServices: Watch<KubernetesObject>,
  deployments: readonly V1Deployment[],
  keys: Set<string>,
  inScope: (namespace: string) => boolean,
): Promise<void> {
  // Only a leader drains the keys: what changed before it led is looked at once it does.
  if (!edges.mayWrite()) return;
  const pending = [...keys];
  keys.clear();
  for (const key of pending) {
    const [namespace = '', name = ''] = key.split('/');
    const vs = virtualServices.get(name, namespace) as VirtualService | undefined;
    if (!vs || !inScope(namespace)) continue;
    for (const target of orphanedRoutes(vs, deployments)) {
      try {
        await edges.router.setWeight(target, 0);
        const involved = {
          apiVersion: 'networking.istio.io/v1',
          kind: 'VirtualService',
          name,
          namespace,
          uid: typeof vs.metadata?.uid === 'string' ? vs.metadata.uid : '',
        };
        const route = target.route ?? 'the only route';
        await edges.events(
          involved,
          'Warning',
          'OrphanedWeight',
          `route ${route} gave subset ${target.canarySubset} canary weight with no release in progress; ` +
            `100 % back on ${target.stableSubset}`,
          edges.now(),
        );
      } catch (error) {
        keys.add(key);
        edges.log('could not reset orphaned canary weight; trying again', {
          namespace,
          name,
          error: describeError(error),
        });
      }
    }
  }
}
