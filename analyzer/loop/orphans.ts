// Weight without a release: a route weir steers (a VirtualService's route, an HTTPRoute's rule)
// that still gives its canary traffic while no release of any Deployment naming it is in progress
// — the Deployment was deleted, or deleted and re-created (`kubectl replace --force`), while no
// analyzer was watching. Its callers would get errors from a canary that is gone; the route goes
// back to 100 % stable, with an event.
import type { KubernetesObject, V1Deployment } from '@kubernetes/client-node';
import type { EventRecorder } from './kube.ts';
import { annotations, ownedRoutingName } from '../../contract/names.ts';
import { parseWeights, routingAnnotations } from '../../contract/steering.ts';
import type { SteeredRoute } from '../../contract/steering.ts';
import { gatewayGroup } from '../../contract/gateway.ts';
import { resolveRouting } from '../core/policy.ts';
import { describeError } from '../../contract/api.ts';
import type { RouteTarget, TrafficRouter } from '../ports/router.ts';
import type { Watch } from './watch.ts';

const inRelease = (d: V1Deployment): boolean => {
  const phase = d.metadata?.annotations?.[annotations.phase];
  return phase === 'Progressing' || phase === 'Promoting';
};

export type RouteKind = RouteTarget['kind'];

/** The weighted entries of a route's record, when no release in progress of its namespace names it. Pure. */
function orphaned(
  kind: RouteKind,
  object: KubernetesObject,
  deployments: readonly V1Deployment[],
): [string, SteeredRoute][] {
  const namespace = object.metadata?.namespace ?? '';
  const name = object.metadata?.name ?? '';
  const record = parseWeights(object.metadata?.annotations?.[routingAnnotations.weights]);
  if (!record) return [];
  const owned = deployments.some(
    (d) => d.metadata?.namespace === namespace && inRelease(d) && namesRoute(d, kind, name),
  );
  // A mirror or a testers' route is canary traffic too (issue 17): it goes with the weight.
  return owned ? [] : [...record].filter(([, r]) => r.weight > 0 || (r.mirror ?? 0) > 0 || r.header !== undefined);
}

/** Route targets of this route that hold canary weight with no release in progress to own it. Pure. */
export function orphanedRoutes(
  kind: RouteKind,
  object: KubernetesObject,
  deployments: readonly V1Deployment[],
): RouteTarget[] {
  const namespace = object.metadata?.namespace ?? '';
  const name = object.metadata?.name ?? '';
  return orphaned(kind, object, deployments).map(([route, r]) =>
    kind === 'VirtualService'
      ? {
          kind,
          namespace,
          virtualService: name,
          destinationRule: '',
          stableSubset: r.stable,
          canarySubset: r.canary,
          ...(route === '' ? {} : { route }),
        }
      : {
          kind,
          namespace,
          httpRoute: name,
          stableService: r.stable,
          canaryService: r.canary,
          ...(route === '' ? {} : { route }),
        },
  );
}

function namesRoute(d: V1Deployment, kind: RouteKind, name: string): boolean {
  const routing = resolveRouting(d.metadata?.annotations ?? {});
  const named = kind === 'VirtualService' ? routing.virtualService : routing.httpRoute;
  return named === name || ownedRoutingName(d.metadata?.name ?? '') === name;
}

export interface OrphanEdges {
  router: TrafficRouter;
  events: EventRecorder;
  mayWrite: () => boolean;
  now: () => Date;
  log: (message: string, fields?: Record<string, unknown>) => void;
}

/** Routes of one kind that changed (`namespace/name` keys, drained as they are looked at). */
export interface TouchedRoutes {
  kind: RouteKind;
  watch: Watch<KubernetesObject>;
  keys: Set<string>;
}

const apiVersions: Record<RouteKind, string> = {
  VirtualService: 'networking.istio.io/v1',
  HTTPRoute: `${gatewayGroup}/v1`,
};

/** For each route that changed, puts orphaned weight back on stable. */
export async function unweightOrphans(
  edges: OrphanEdges,
  touched: TouchedRoutes,
  deployments: readonly V1Deployment[],
  inScope: (namespace: string) => boolean,
): Promise<void> {
  // Only a leader drains the keys: what changed before it led is looked at once it does.
  if (!edges.mayWrite()) return;
  const { kind, watch, keys } = touched;
  const pending = [...keys];
  keys.clear();
  for (const key of pending) {
    const [namespace = '', name = ''] = key.split('/');
    const object = watch.get(name, namespace);
    if (!object || !inScope(namespace)) continue;
    for (const target of orphanedRoutes(kind, object, deployments)) {
      try {
        await edges.router.steer(target, { weight: 0 });
        const involved = {
          apiVersion: apiVersions[kind],
          kind,
          name,
          namespace,
          uid: typeof object.metadata?.uid === 'string' ? object.metadata.uid : '',
        };
        const [canary, stable] =
          target.kind === 'VirtualService'
            ? [`subset ${target.canarySubset}`, target.stableSubset]
            : [`Service ${target.canaryService}`, target.stableService];
        await edges.events(
          involved,
          'Warning',
          'OrphanedWeight',
          `${kind === 'VirtualService' ? 'route' : 'rule'} ${target.route ?? `the only one`} gave ${canary} ` +
            `canary weight with no release in progress; 100 % back on ${stable}`,
          edges.now(),
        );
      } catch (error) {
        keys.add(key);
        edges.log('could not reset orphaned canary weight; trying again', {
          kind,
          namespace,
          name,
          error: describeError(error),
        });
      }
    }
  }
}
