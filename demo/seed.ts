// The seed's myapp example (an Argo Rollouts + Istio setup) as plain manifests: its Gateway,
// Service, DestinationRule and VirtualService unchanged, and the Rollout turned back into a
// Deployment that names them with weir's annotations — nothing else.
import { policyAnnotations } from '../contract/names.ts';

export const seedRouting: Record<string, string> = {
  [policyAnnotations.virtualService]: 'myapp-virtualservice',
  [policyAnnotations.route]: 'primary',
  [policyAnnotations.destinationRule]: 'myapp-destinationrule',
  [policyAnnotations.stableSubset]: 'v1',
  [policyAnnotations.canarySubset]: 'v2',
};

/** Gateway, Service, DestinationRule and VirtualService of the seed, for namespace `ns`. */
export function seedMesh(ns: string): Record<string, unknown>[] {
  const host = `myapp.${ns}.svc.cluster.local`;
  return [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'myapp-gateway' },
      spec: {
        selector: { istio: 'ingressgateway' },
        servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['myapp.apsissolutions.com'] }],
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'myapp' },
      spec: { selector: { app: 'myapp' }, ports: [{ port: 8080, targetPort: 80 }] },
    },
    {
      apiVersion: 'networking.istio.io/v1alpha3',
      kind: 'DestinationRule',
      metadata: { name: 'myapp-destinationrule' },
      spec: {
        host,
        subsets: [
          { name: 'v1', labels: { version: 'v1' } },
          { name: 'v2', labels: { version: 'v2' } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1alpha3',
      kind: 'VirtualService',
      metadata: { name: 'myapp-virtualservice' },
      spec: {
        hosts: ['myapp.apsissolutions.com'],
        gateways: ['myapp-gateway'],
        http: [
          {
            name: 'primary',
            route: [
              { destination: { host, subset: 'v1' }, weight: 100 },
              { destination: { host, subset: 'v2' }, weight: 0 },
            ],
          },
        ],
      },
    },
  ];
}

/** The seed's myapp as a Deployment of `version`, with weir's annotations. */
export function seedDeployment(
  version: string,
  annotations: Record<string, string> = {},
  podAnnotations: Record<string, string> = {},
): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'myapp', annotations: { ...seedRouting, ...annotations } },
    spec: {
      replicas: 3,
      revisionHistoryLimit: 2,
      selector: { matchLabels: { app: 'myapp' } },
      template: {
        metadata: { labels: { app: 'myapp', version }, annotations: podAnnotations },
        spec: {
          containers: [{ name: 'myapp', image: `jamaldevsecops/myapp:${version}`, ports: [{ containerPort: 80 }] }],
        },
      },
    },
  };
}
