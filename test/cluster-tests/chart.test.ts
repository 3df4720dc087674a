// Issue 5's acceptance: the Helm chart lints, renders, installs on the API server, upgrades
// without a new CA, refuses bad values, and its RBAC is exactly what the analyzer needs.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { parseAllDocuments } from 'yaml';
import { Agent, request } from 'undici';
import { chart, helm, isolated, serviceAccountKubeconfig } from '../helpers/chart.ts';
import { systemNamespaces, webhookConfiguration } from '../../webhook/registration.ts';
import { parseSelector } from '../../contract/selector.ts';
import { settingsFromEnv } from '../../analyzer/settings.ts';
import {
  apply,
  cluster,
  deployment,
  getJson,
  kubectl,
  kubectlRaw,
  namespace,
  service,
  waitFor,
} from '../helpers/kube.ts';
import { events, fast, setImage, startAnalyzer, waitForPhase } from '../helpers/release.ts';

t.test('helm lint is clean', async (t) => {
  const r = await helm(['lint', chart, '--strict']);
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.notMatch(r.stdout, /\[(WARNING|ERROR)\]/);
});

t.test('renders with default and cert-manager values; the API server accepts the render', async (t) => {
  const ns = await namespace(t, { prefix: 'chart' });
  const id = randomBytes(3).toString('hex');
  const plain = await helm(['template', `r${id}`, chart, '-n', ns, ...isolated(id)]);
  t.equal(plain.code, 0, plain.stderr);
  const cm = await helm(['template', `r${id}`, chart, '-n', ns, '--set', 'tls.mode=cert-manager', ...isolated(id)]);
  t.equal(cm.code, 0, cm.stderr);
  t.match(cm.stdout, /cert-manager\.io\/inject-ca-from/);
  t.match(cm.stdout, /kind: Certificate/);
  t.notMatch(cm.stdout, /kind: Secret/, 'cert-manager makes the Secret');
  // Whoever makes the certificate, it names the same Service names.
  const certificate = parseAllDocuments(cm.stdout)
    .map((d) => d.toJS() as { kind?: string; metadata?: { name?: string }; spec?: { dnsNames?: string[] } })
    .find((d) => d.kind === 'Certificate' && d.metadata?.name === `r${id}-weir`);
  const runtimeNames = plain.stdout.match(/name: WEIR_TLS_NAMES, value: "([^"]+)"/)?.[1]?.split(',');
  t.same(certificate?.spec?.dnsNames, runtimeNames, "cert-manager's Certificate and runtime TLS name the same hosts");
  const dry = await kubectlRaw(['apply', '-n', ns, '--dry-run=server', '-f', '-'], plain.stdout);
  t.equal(dry.code, 0, `server dry run: ${dry.stderr}`);
  // The cluster has no cert-manager CRDs: its kinds aside, the cert-manager render must be accepted too.
  const docs = cm.stdout
    .split(/^---$/m)
    .filter((d) => !/apiVersion: cert-manager\.io/.test(d))
    .join('\n---\n');
  const dryCm = await kubectlRaw(['apply', '-n', ns, '--dry-run=server', '-f', '-'], docs);
  t.equal(dryCm.code, 0, `server dry run (cert-manager): ${dryCm.stderr}`);
});

t.test('a value that breaks the schema fails with a clear message', async (t) => {
  const r = await helm(['template', 'x', chart, '--set', 'webhook.failurePolicy=Sometimes']);
  t.not(r.code, 0);
  t.match(r.stderr, /failurePolicy.*Ignore.*Fail/);
  const d = await helm(['template', 'x', chart, '--set', 'policies.default.stepPause=soon']);
  t.match(d.stderr, /stepPause/);
});

t.test('install, then upgrade keeps the CA bundle; RBAC is least privilege and sufficient', async (t) => {
  const ns = await namespace(t, { prefix: 'weir' });
  const id = randomBytes(3).toString('hex');
  const release = `w${id}`;
  t.teardown(() => helm(['uninstall', release, '-n', ns]));
  // Helm's own certificate (self-managed): kept across upgrades through `lookup`.
  const selfManaged = ['--set', 'tls.mode=self-managed'];
  const install = await helm(['install', release, chart, '-n', ns, ...isolated(id), ...selfManaged, '--wait=false']);
  t.equal(install.code, 0, install.stderr);
  const bundle = async (): Promise<string> =>
    (
      await getJson<{ webhooks: { clientConfig: { caBundle: string } }[] }>([
        'get',
        'mutatingwebhookconfiguration',
        `${release}-weir`,
      ])
    ).webhooks[0]?.clientConfig.caBundle ?? '';
  const before = await bundle();
  t.ok(before.length > 100, 'a CA bundle is set');
  const upgrade = await helm([
    'upgrade',
    release,
    chart,
    '-n',
    ns,
    ...isolated(id),
    ...selfManaged,
    '--set',
    'replicaCount=3',
  ]);
  t.equal(upgrade.code, 0, upgrade.stderr);
  t.equal(await bundle(), before, 'the same CA after helm upgrade');

  const sa = `system:serviceaccount:${ns}:${release}-weir`;
  const can = async (verb: string, resource: string, where: string[] = ['-A']): Promise<boolean> =>
    (await kubectlRaw(['auth', 'can-i', verb, resource, '--as', sa, ...where])).stdout.trim() === 'yes';
  for (const [verb, resource] of [
    ['get', 'secrets'],
    ['list', 'secrets'],
    ['delete', 'pods'],
    ['create', 'namespaces'],
    ['update', 'deployments'],
    ['delete', 'virtualservices.networking.istio.io'],
    ['create', 'clusterroles'],
    ['get', 'configmaps'],
  ]) {
    t.notOk(await can(verb as string, resource as string), `cannot ${verb} ${resource}`);
  }
  for (const [verb, resource] of [
    ['patch', 'deployments.apps'],
    ['create', 'deployments.apps'],
    ['patch', 'pods'],
    ['create', 'events'],
    ['patch', 'virtualservices.networking.istio.io'],
    ['patch', 'httproutes.gateway.networking.k8s.io'],
    ['create', 'services'],
    ['watch', 'destinationrules.networking.istio.io'],
    ['watch', 'namespaces'],
  ]) {
    t.ok(await can(verb as string, resource as string), `can ${verb} ${resource}`);
  }
  t.ok(await can('update', 'leases.coordination.k8s.io', ['-n', ns]), 'can update its Lease');
  t.notOk(await can('update', 'leases.coordination.k8s.io', ['-n', 'kube-system']), 'but no Lease elsewhere');

  // The analyzer, authenticated as the chart's ServiceAccount, completes a release and a rollback.
  const { token, kubeconfig, caData } = await serviceAccountKubeconfig(t, ns, `${release}-weir`);
  const state = await cluster();
  // Straight to the API with the analyzer's own token: a JSON Patch, as the analyzer writes.
  const dispatcher = new Agent({ connect: { ca: Buffer.from(caData, 'base64').toString() } });
  t.teardown(() => dispatcher.close());
  const asAnalyzer = async (
    method: 'PATCH' | 'POST',
    path: string,
    body: unknown,
  ): Promise<{ code: number; message: string }> => {
    const res = await request(`${state.apiServer}${path}`, {
      method,
      dispatcher,
      body: JSON.stringify(body),
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': method === 'PATCH' ? 'application/json-patch+json' : 'application/json',
      },
    });
    const reply = (await res.body.json()) as { message?: string };
    return { code: res.statusCode, message: reply.message ?? '' };
  };
  // The API server loads a new policy within a moment: the release below runs under it.
  await waitFor(
    'the admission policy in force',
    async () =>
      (
        await asAnalyzer(
          'POST',
          '/apis/apps/v1/namespaces/kube-system/deployments',
          deployment('probe', { image: 'evil.example.com/x' }),
        )
      ).message.includes('weir analyzer policy'),
    30_000,
    500,
  );
  const scope = randomBytes(4).toString('hex');
  const analyzer = await startAnalyzer({ scope, identity: `sa-${scope}`, kubeconfig, leaseNamespace: ns });
  t.teardown(() => analyzer.kill());
  for (const [name, podAnnotations, phase] of [
    ['good', {}, 'Stable'],
    ['bad', { 'sim.weir.dev/error-rate': '1' }, 'RolledBack'],
  ] as const) {
    const app = await namespace(t, { optIn: true });
    // Opted in as this install's namespaceSelector says (isolated): the admission policy reads the same selector.
    await kubectl(['label', 'namespace', app, `weir.dev/test-analyzer=${scope}`, `weir-chart-test=${id}`]);
    await apply(app, service('web', { rps: 100 }));
    await apply(app, deployment('web', { replicas: 2, image: 'example.com/web:v1', annotations: fast }));
    await setImage(app, 'web', 'example.com/web:v2', podAnnotations);
    await waitForPhase(app, 'web', phase);
    t.ok((await events(app, 'web')).length > 0, `${name}: ${phase} as the ServiceAccount, with events`);
  }

  // What a stolen analyzer token can do: what RBAC allows, the admission policy confines.
  const app = await namespace(t, { optIn: true });
  await kubectl(['label', 'namespace', app, `weir-chart-test=${id}`]);
  const elsewhere = await namespace(t);
  for (const where of [app, elsewhere])
    await apply(where, deployment('web', { replicas: 1, image: 'example.com/web:v1' }));
  await apply(app, {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'web' },
    spec: {
      hosts: ['web'],
      http: [{ name: 'primary', route: [{ destination: { host: 'web', subset: 'stable' }, weight: 100 }] }],
    },
  });
  await apply(app, {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'web' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'web' }],
      rules: [
        {
          name: 'primary',
          backendRefs: [
            { name: 'web-stable', port: 80, weight: 100 },
            { name: 'web-canary', port: 80, weight: 0 },
          ],
        },
      ],
    },
  });
  await apply(app, service('web'));
  await waitFor(
    'a pod of web',
    async () => (await kubectl(['get', 'pods', '-n', app, '-l', 'app=web', '-o', 'name'])).trim() !== '',
  );
  const pod = (await kubectl(['get', 'pods', '-n', app, '-l', 'app=web', '-o', 'name'])).trim().split('\n')[0] ?? '';
  const podPath = `/api/v1/namespaces/${app}/pods/${pod.replace('pod/', '')}`;
  const denied: [string, 'PATCH' | 'POST', string, unknown, RegExp][] = [
    [
      "a Pod's image",
      'PATCH',
      podPath,
      [{ op: 'replace', path: '/spec/containers/0/image', value: 'evil.example.com/x' }],
      /on a Pod, only the weir.dev\/track label may change/,
    ],
    [
      'a label other than weir.dev/track on a Pod',
      'PATCH',
      podPath,
      [{ op: 'add', path: '/metadata/labels/evil', value: '1' }],
      /on a Pod, only the weir.dev\/track label may change/,
    ],
    [
      "a user's Deployment's image",
      'PATCH',
      `/apis/apps/v1/namespaces/${app}/deployments/web`,
      [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: 'evil.example.com/x' }],
      /on a user's Deployment only spec.paused, weir.dev\/\* annotations and spec.replicas while it stays paused/,
    ],
    [
      "the replicas of a user's Deployment no release holds (not paused)",
      'PATCH',
      `/apis/apps/v1/namespaces/${app}/deployments/web`,
      [{ op: 'replace', path: '/spec/replicas', value: 0 }],
      /spec.replicas while it stays paused \(a release holds it\) or grows while Promoting may change/,
    ],
    [
      'a Deployment in a namespace without the opt-in label',
      'PATCH',
      `/apis/apps/v1/namespaces/${elsewhere}/deployments/web`,
      [{ op: 'replace', path: '/spec/paused', value: true }],
      /writes only in namespaces the webhook's namespaceSelector opts in/,
    ],
    [
      "a field of a user's VirtualService other than a weight",
      'PATCH',
      `/apis/networking.istio.io/v1/namespaces/${app}/virtualservices/web`,
      [{ op: 'replace', path: '/spec/hosts/0', value: 'evil' }],
      /in a user's VirtualService only the weights/,
    ],
    [
      "a mirror of a user's VirtualService to a service the route does not send to",
      'PATCH',
      `/apis/networking.istio.io/v1/namespaces/${app}/virtualservices/web`,
      [{ op: 'add', path: '/spec/http/0/mirror', value: { host: 'evil.example.com' } }],
      /in a user's VirtualService only the weights/,
    ],
    [
      "a testers' route to a service the VirtualService does not send to",
      'PATCH',
      `/apis/networking.istio.io/v1/namespaces/${app}/virtualservices/web`,
      [{ op: 'add', path: '/spec/http/0', value: testersRoute({ host: 'evil.example.com' }) }],
      /a testers' route \(weir-canary-header\*\) matches on a header/,
    ],
    [
      "a testers' route that matches every request",
      'PATCH',
      `/apis/networking.istio.io/v1/namespaces/${app}/virtualservices/web`,
      [{ op: 'add', path: '/spec/http/0', value: { ...testersRoute({ host: 'web', subset: 'stable' }), match: [{}] } }],
      /a testers' route \(weir-canary-header\*\) matches on a header/,
    ],
    [
      "a backend of a user's HTTPRoute",
      'PATCH',
      `/apis/gateway.networking.k8s.io/v1/namespaces/${app}/httproutes/web`,
      [{ op: 'replace', path: '/spec/rules/0/backendRefs/1/name', value: 'evil' }],
      /in a user's HTTPRoute only the weights of backendRefs may change/,
    ],
    [
      "a mirror of a user's HTTPRoute rule to a Service the rule does not send to",
      'PATCH',
      `/apis/gateway.networking.k8s.io/v1/namespaces/${app}/httproutes/web`,
      [{ op: 'add', path: '/spec/rules/0/filters', value: [mirrorFilter('evil')] }],
      /in a user's HTTPRoute only the weights of backendRefs may change/,
    ],
    [
      "a testers' rule to a Service the HTTPRoute does not send to",
      'PATCH',
      `/apis/gateway.networking.k8s.io/v1/namespaces/${app}/httproutes/web`,
      [{ op: 'add', path: '/spec/rules/0', value: testersRule('evil') }],
      /a testers' rule \(weir-canary-header\*\) matches on a header/,
    ],
    [
      "a Service that is not weir's own backend",
      'POST',
      `/api/v1/namespaces/${app}/services`,
      service('evil'),
      /only weir's own backend Services/,
    ],
    [
      'a Deployment in kube-system',
      'POST',
      '/apis/apps/v1/namespaces/kube-system/deployments',
      deployment('evil', { image: 'evil.example.com/x' }),
      /never kube-system/,
    ],
  ];
  for (const [what, method, path, body, message] of denied) {
    const r = await asAnalyzer(method, path, body);
    t.equal(r.code, 403, `denied: ${what}`);
    t.match(r.message, message, `the denial names its rule: ${what}`);
  }
  const allowed = await asAnalyzer('PATCH', podPath, [
    { op: 'add', path: '/metadata/labels/weir.dev~1track', value: 'stable' },
  ]);
  t.equal(allowed.code, 200, `the track label is still allowed: ${allowed.message}`);
  const weight = await asAnalyzer('PATCH', `/apis/gateway.networking.k8s.io/v1/namespaces/${app}/httproutes/web`, [
    { op: 'replace', path: '/spec/rules/0/backendRefs/1/weight', value: 10 },
  ]);
  t.equal(weight.code, 200, `an HTTPRoute backend weight is allowed: ${weight.message}`);
  // The shadow step and the testers' route, as the analyzer writes them (issue 17).
  const vsPath = `/apis/networking.istio.io/v1/namespaces/${app}/virtualservices/web`;
  const canary = { host: 'web', subset: 'canary' };
  const shadow = await asAnalyzer('PATCH', vsPath, [
    { op: 'add', path: '/spec/http/0/route/-', value: { destination: canary, weight: 0 } },
    { op: 'add', path: '/spec/http/0/mirror', value: canary },
    { op: 'add', path: '/spec/http/0/mirrorPercentage', value: { value: 100 } },
  ]);
  t.equal(shadow.code, 200, `a mirror to the route's canary destination is allowed: ${shadow.message}`);
  const testers = await asAnalyzer('PATCH', vsPath, [{ op: 'add', path: '/spec/http/0', value: testersRoute(canary) }]);
  t.equal(testers.code, 200, `a testers' route to the canary is allowed: ${testers.message}`);
  const gone = await asAnalyzer('PATCH', vsPath, [
    { op: 'remove', path: '/spec/http/0' },
    { op: 'remove', path: '/spec/http/0/mirror' },
    { op: 'remove', path: '/spec/http/0/mirrorPercentage' },
  ]);
  t.equal(gone.code, 200, `and both may go again: ${gone.message}`);
  const routePath = `/apis/gateway.networking.k8s.io/v1/namespaces/${app}/httproutes/web`;
  const routeShadow = await asAnalyzer('PATCH', routePath, [
    { op: 'add', path: '/spec/rules/0/filters', value: [mirrorFilter('web-canary')] },
    { op: 'add', path: '/spec/rules/0', value: testersRule('web-canary') },
  ]);
  t.equal(
    routeShadow.code,
    200,
    `on an HTTPRoute, a mirror to the rule's canary and a testers' rule: ${routeShadow.message}`,
  );
  const routeGone = await asAnalyzer('PATCH', routePath, [
    { op: 'remove', path: '/spec/rules/0' },
    { op: 'remove', path: '/spec/rules/0/filters' },
  ]);
  t.equal(routeGone.code, 200, `and both may go again: ${routeGone.message}`);
  // A promotion's hand-over (dynamic stable scale): replicas may grow, and only grow, while Promoting.
  const deploymentPath = `/apis/apps/v1/namespaces/${app}/deployments/web`;
  await kubectl(['annotate', 'deployment/web', '-n', app, 'weir.dev/phase=Promoting']);
  const replicas = (value: number): unknown[] => [{ op: 'replace', path: '/spec/replicas', value }];
  const shrink = await asAnalyzer('PATCH', deploymentPath, replicas(0));
  t.equal(shrink.code, 403, 'an unpaused Deployment shrunk while Promoting: denied');
  t.match(shrink.message, /or grows while Promoting may change/);
  const grow = await asAnalyzer('PATCH', deploymentPath, replicas(2));
  t.equal(grow.code, 200, `grown while Promoting: allowed (${grow.message})`);
  const leaving = await asAnalyzer('PATCH', deploymentPath, [
    ...replicas(3),
    { op: 'replace', path: '/metadata/annotations/weir.dev~1phase', value: 'Stable' },
  ]);
  t.equal(leaving.code, 403, 'grown in the write that ends Promoting: denied');
});

/** A RequestMirror filter as weir writes it for the shadow step. */
function mirrorFilter(service: string): Record<string, unknown> {
  return { type: 'RequestMirror', requestMirror: { backendRef: { name: service, port: 80 }, percent: 100 } };
}

/** A testers' rule as weir writes it on an HTTPRoute. */
function testersRule(service: string): Record<string, unknown> {
  return {
    name: 'weir-canary-header-primary',
    matches: [{ headers: [{ type: 'Exact', name: 'x-canary', value: 'always' }] }],
    backendRefs: [{ name: service, port: 80 }],
  };
}

/** A testers' route as weir writes it: a header match, one destination. */
function testersRoute(destination: { host: string; subset?: string }): Record<string, unknown> {
  return {
    name: 'weir-canary-header-primary',
    match: [{ headers: { 'x-canary': { exact: 'always' } } }],
    route: [{ destination }],
  };
}

t.test(
  'a selector without the opt-in label fails to render with failurePolicy Fail; ' +
    'kube-system is excluded in every render',
  async (t) => {
    const refused = await helm([
      'template',
      'r',
      chart,
      '-n',
      'weir-system',
      '--set',
      'webhook.failurePolicy=Fail',
      '--set',
      'webhook.namespaceSelector.matchLabels=null',
    ]);
    t.not(refused.code, 0, 'helm template fails');
    t.match(
      refused.stderr,
      new RegExp(
        'webhook\\.namespaceSelector must require the opt-in label weir\\.dev/canary=enabled ' +
          'when webhook\\.failurePolicy is Fail',
      ),
    );
    const other = await helm([
      'template',
      'r',
      chart,
      '-n',
      'weir-system',
      '--set',
      'webhook.failurePolicy=Fail',
      '--set',
      'webhook.namespaceSelector.matchLabels=null',
      '--set-json',
      'webhook.namespaceSelector.matchExpressions=[{"key":"team","operator":"Exists"}]',
    ]);
    t.not(other.code, 0, 'a selector on another label is refused too');
    for (const extra of [
      [],
      ['--set', 'tls.mode=cert-manager'],
      ['--set', 'webhook.namespaceSelector.matchLabels=null'],
      ['--set', 'webhook.failurePolicy=Fail'],
    ]) {
      const r = await helm(['template', 'r', chart, '-n', 'weir-system', ...extra]);
      t.equal(r.code, 0, r.stderr);
      const excluded =
        webhookOf(r.stdout).namespaceSelector.matchExpressions?.find(
          (e) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'NotIn',
        )?.values ?? [];
      t.same(
        excluded,
        [...systemNamespaces, 'weir-system'],
        `kube-system, kube-public, kube-node-lease and weir's namespace excluded (${extra.join(' ') || 'defaults'})`,
      );
    }
  },
);

t.test("the chart's webhook configuration and the local cluster's registration agree", async (t) => {
  const r = await helm(['template', 'r', chart, '-n', 'weir-system']);
  t.equal(r.code, 0, r.stderr);
  const rendered = webhookOf(r.stdout);
  const registered = (
    webhookConfiguration({
      caBundle: 'x',
      target: { service: { name: 'r-weir', namespace: 'weir-system', port: 443 } },
      weirNamespace: 'weir-system',
    }) as { webhooks: Webhook[] }
  ).webhooks[0];
  if (!registered) return t.fail('no webhook in the registration');
  for (const field of [
    'name',
    'admissionReviewVersions',
    'sideEffects',
    'failurePolicy',
    'timeoutSeconds',
    'reinvocationPolicy',
    'rules',
    'objectSelector',
    'matchConditions',
  ] as const) {
    t.same(rendered[field], registered[field], field);
  }
  t.same(selectorTerms(rendered.namespaceSelector), selectorTerms(registered.namespaceSelector), 'the same namespaces');
  t.same(rendered.clientConfig.service, { ...registered.clientConfig.service, port: 443 }, 'the same path and port');
});

interface Expression {
  key: string;
  operator: string;
  values?: string[];
}
interface Webhook {
  name: string;
  admissionReviewVersions: string[];
  sideEffects: string;
  failurePolicy: string;
  timeoutSeconds: number;
  reinvocationPolicy: string;
  rules: unknown[];
  objectSelector: unknown;
  matchConditions: unknown;
  namespaceSelector: { matchLabels?: Record<string, string>; matchExpressions?: Expression[] };
  clientConfig: { service?: Record<string, unknown> };
}

function webhookOf(rendered: string): Webhook {
  const config = parseAllDocuments(rendered)
    .map((d) => d.toJS() as { kind?: string; webhooks?: Webhook[] })
    .find((d) => d.kind === 'MutatingWebhookConfiguration');
  const webhook = config?.webhooks?.[0];
  if (!webhook) throw new Error('the render has no MutatingWebhookConfiguration');
  return webhook;
}

/** A selector as sorted terms, matchLabels written as `In` expressions: equal terms, equal meaning. */
function selectorTerms(selector: Webhook['namespaceSelector']): string[] {
  const labels = Object.entries(selector.matchLabels ?? {}).map(([key, value]) => ({
    key,
    operator: 'In',
    values: [value],
  }));
  return [...labels, ...(selector.matchExpressions ?? [])]
    .map((e) => `${e.key} ${e.operator} ${(e.values ?? []).join(',')}`)
    .sort();
}

t.test("the analyzer's opt-in is the webhook's namespaceSelector, custom selectors too", async (t) => {
  const custom = [
    '--set',
    'webhook.namespaceSelector.matchLabels=null',
    '--set-json',
    'webhook.namespaceSelector.matchExpressions=[{"key":"mesh","operator":"In","values":["istio"]}]',
  ];
  for (const extra of [[], custom]) {
    const r = await helm(['template', 'r', chart, '-n', 'weir-system', ...extra]);
    t.equal(r.code, 0, r.stderr);
    type Env = { name: string; value?: string };
    const analyzer = parseAllDocuments(r.stdout)
      .map(
        (d) =>
          d.toJS() as { kind?: string; spec?: { template: { spec: { containers: { name: string; env?: Env[] }[] } } } },
      )
      .find((d) => d.kind === 'Deployment')
      ?.spec?.template.spec.containers.find((c) => c.name === 'analyzer');
    const text = analyzer?.env?.find((e) => e.name === 'WEIR_NAMESPACE_SELECTOR')?.value ?? '';
    const parsed = parseSelector(text);
    if (!parsed.ok) return t.fail(`WEIR_NAMESPACE_SELECTOR=${text}: ${parsed.error}`);
    const settings = settingsFromEnv({ WEIR_PROMETHEUS_URL: 'http://p', WEIR_NAMESPACE_SELECTOR: text });
    const webhook = webhookOf(r.stdout).namespaceSelector;
    // The webhook's own exclusions (system namespaces, weir's) come on top; the rest is the same selector.
    const userTerms = selectorTerms({
      ...webhook,
      matchExpressions: (webhook.matchExpressions ?? []).filter((e) => e.key !== 'kubernetes.io/metadata.name'),
    });
    t.same(selectorTerms(settings.optIn), userTerms, extra.join(' ') || 'defaults');
  }
});

t.test("the pod's readiness is the webhook's alone; replicas spread across nodes", async (t) => {
  const r = await helm(['template', 'r', chart, '-n', 'weir-system']);
  t.equal(r.code, 0, r.stderr);
  type Container = {
    name: string;
    readinessProbe?: unknown;
    livenessProbe?: unknown;
    env?: { name: string; value?: string }[];
  };
  const pod = parseAllDocuments(r.stdout)
    .map(
      (d) =>
        d.toJS() as {
          kind?: string;
          spec?: {
            template: { spec: { containers: Container[]; topologySpreadConstraints?: { topologyKey: string }[] } };
          };
        },
    )
    .find((d) => d.kind === 'Deployment')?.spec?.template.spec;
  const byName = (name: string): Container | undefined => pod?.containers.find((c) => c.name === name);
  t.ok(byName('webhook')?.readinessProbe, 'the webhook has a readiness probe');
  t.notOk(
    byName('analyzer')?.readinessProbe,
    'the analyzer has none: its watches never take the webhook out of service',
  );
  t.ok(byName('analyzer')?.livenessProbe, 'a wedged analyzer is restarted by its liveness probe');
  t.equal(pod?.topologySpreadConstraints?.[0]?.topologyKey, 'kubernetes.io/hostname');
  t.equal(
    byName('analyzer')?.env?.find((e) => e.name === 'NODE_OPTIONS')?.value,
    '--max-semi-space-size=4 --max-old-space-size=256',
    "the analyzer runs with the chart's Node options (tests and benches read the same value)",
  );
  t.notOk(
    byName('webhook')?.env?.some((e) => e.name === 'NODE_OPTIONS'),
    "the webhook's throughput keeps Node's defaults",
  );
});

t.test(
  "the optional NetworkPolicy is accepted by the API server; the ServiceMonitor verifies TLS with weir's CA",
  async (t) => {
    const ns = await namespace(t, { prefix: 'chart' });
    const r = await helm([
      'template',
      'r',
      chart,
      '-n',
      ns,
      '--set',
      'networkPolicy.enabled=true',
      '--set',
      'serviceMonitor.enabled=true',
      '--show-only',
      'templates/networkpolicy.yaml',
    ]);
    t.equal(r.code, 0, r.stderr);
    const dry = await kubectlRaw(['apply', '--dry-run=server', '-n', ns, '-f', '-'], r.stdout);
    t.equal(dry.code, 0, `server dry run: ${dry.stderr}`);
    const policy = parseAllDocuments(r.stdout).map(
      (d) => d.toJS() as { spec?: { ingress: { ports: { port: number }[] }[] } },
    )[0];
    t.same(
      policy?.spec?.ingress.map((i) => i.ports.map((p) => p.port)),
      [[8443], [8081, 8443]],
      'the webhook port, and metrics',
    );
    const monitor = await helm([
      'template',
      'r',
      chart,
      '-n',
      ns,
      '--set',
      'serviceMonitor.enabled=true',
      '--show-only',
      'templates/servicemonitor.yaml',
    ]);
    t.notMatch(monitor.stdout, /insecureSkipVerify/);
    t.match(monitor.stdout, /ca: \{secret: \{name: r-weir-tls, key: ca\.crt\}\}/);
  },
);
