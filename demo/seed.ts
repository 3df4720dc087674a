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

/** The same story on the Gateway API (issue 15): the route named, and its rule. */
export const seedGatewayRouting: Record<string, string> = {
  [policyAnnotations.httpRoute]: 'myapp-route',
  [policyAnnotations.route]: 'primary',
};

/**
 * The seed's Gateway, Service and routing translated to the Gateway API, as an Istio user moving
 * to it would write them: a Gateway of class `istio`, and an HTTPRoute whose `primary` rule sends
 * to one Service per half (weir creates `myapp-stable` and `myapp-canary` for it).
 */
export function seedGatewayMesh(): Record<string, unknown>[] {
  return [
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'myapp-gateway' },
      spec: {
        gatewayClassName: 'istio',
        listeners: [{ name: 'http', port: 80, protocol: 'HTTP', hostname: 'myapp.apsissolutions.com' }],
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'myapp' },
      spec: { selector: { app: 'myapp' }, ports: [{ name: 'http', port: 8080, targetPort: 80 }] },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'myapp-route' },
      spec: {
        parentRefs: [{ name: 'myapp-gateway' }],
        hostnames: ['myapp.apsissolutions.com'],
        rules: [
          {
            name: 'primary',
            backendRefs: [
              { name: 'myapp-stable', port: 8080, weight: 100 },
              { name: 'myapp-canary', port: 8080, weight: 0 },
            ],
          },
        ],
      },
    },
  ];
}

/** The seed's myapp as a Deployment of `version`, with weir's annotations (Istio routing unless told). */
export function seedDeployment(
  version: string,
  annotations: Record<string, string> = {},
  podAnnotations: Record<string, string> = {},
  routing: Record<string, string> = seedRouting,
): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'myapp', annotations: { ...routing, ...annotations } },
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
