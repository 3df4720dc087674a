// The MutatingWebhookConfiguration that tells the API server to call weir. The Helm chart
// renders the same shape (test/cluster-tests/chart.test.ts fails when the two differ); the
// local cluster registers it by URL.
import { labels, namespaceOptIn, prefix } from '../contract/names.ts';

export interface Registration {
  name?: string;
  caBundle: string;
  /** Either a URL (local runs) or a Service in the cluster. */
  target: { url: string } | { service: { name: string; namespace: string; port: number } };
  failurePolicy?: 'Ignore' | 'Fail';
  timeoutSeconds?: number;
  /** weir's own namespace, never sent to the webhook. */
  weirNamespace?: string;
}

/**
 * `deployments` alone leaves out deployments/scale: scaling is never intercepted. The routing
 * objects are guarded in every served version (Istio's v1alpha3, v1beta1, v1 share one shape, as
 * do the Gateway API's v1beta1 and v1 HTTPRoute).
 */
export const webhookRules = [
  {
    apiGroups: ['apps'],
    apiVersions: ['v1'],
    operations: ['CREATE', 'UPDATE'],
    resources: ['deployments'],
    scope: 'Namespaced',
  },
  {
    apiGroups: ['networking.istio.io'],
    apiVersions: ['*'],
    operations: ['CREATE', 'UPDATE'],
    resources: ['virtualservices', 'destinationrules'],
    scope: 'Namespaced',
  },
  {
    apiGroups: ['gateway.networking.k8s.io'],
    apiVersions: ['*'],
    operations: ['CREATE', 'UPDATE'],
    resources: ['httproutes'],
    scope: 'Namespaced',
  },
];

/** Namespaces weir never guards, whatever a selector says: the control plane's own. */
export const systemNamespaces = ['kube-system', 'kube-public', 'kube-node-lease'];

/** weir's own canary halves never reach the webhook. */
export const objectSelector = { matchExpressions: [{ key: labels.canaryOf, operator: 'DoesNotExist' }] };

/** `weir.dev/` annotations of `o` that `other` lacks or holds with another value (CEL). */
const weirAnnotationsOf = (o: string, other: string): string =>
  `(has(${o}.metadata.annotations) && ${o}.metadata.annotations.exists(k, k.startsWith('${prefix}') && ` +
  `!(has(${other}.metadata.annotations) && k in ${other}.metadata.annotations && ` +
  `${other}.metadata.annotations[k] == ${o}.metadata.annotations[k])))`;

/**
 * The API server calls weir only for a request whose answer could be a patch (ADR 15): a CREATE,
 * or an UPDATE that changes the spec or a `weir.dev/` annotation. An UPDATE that changes neither
 * (a server-side apply of an unchanged manifest, a label or a foreign annotation edited) leaves
 * weir's answer "unchanged" by construction: mutate reads nothing else of the object.
 */
export const matchConditions = [
  {
    name: 'may-change-a-release',
    expression:
      "request.operation != 'UPDATE' || object.spec != oldObject.spec || " +
      `${weirAnnotationsOf('object', 'oldObject')} || ${weirAnnotationsOf('oldObject', 'object')}`,
  },
];

export function webhookConfiguration(r: Registration): Record<string, unknown> {
  const clientConfig =
    'url' in r.target
      ? { url: r.target.url, caBundle: r.caBundle }
      : { service: { ...r.target.service, path: '/mutate' }, caBundle: r.caBundle };
  const matchExpressions: Record<string, unknown>[] = [
    { key: namespaceOptIn.key, operator: 'In', values: [namespaceOptIn.value] },
    {
      key: 'kubernetes.io/metadata.name',
      operator: 'NotIn',
      values: [...systemNamespaces, ...(r.weirNamespace ? [r.weirNamespace] : [])],
    },
  ];
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: r.name ?? 'weir' },
    webhooks: [
      {
        name: 'deployments.weir.dev',
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        // A broken weir must never block a cluster's deploys.
        failurePolicy: r.failurePolicy ?? 'Ignore',
        timeoutSeconds: r.timeoutSeconds ?? 5,
        reinvocationPolicy: 'Never',
        clientConfig,
        namespaceSelector: { matchExpressions },
        objectSelector,
        matchConditions,
        rules: webhookRules,
      },
    ],
  };
}
