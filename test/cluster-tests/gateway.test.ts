// Issue 15's acceptance on the local cluster: releases steered through Gateway API HTTPRoutes —
// the user's own route bound to a Gateway (north–south), weir's own mesh route (GAMMA), and routes
// weir must refuse to steer — with the same story as the VirtualService releases.
import t from 'tap';
import {
  apply,
  countUhFromNow,
  deployment,
  getJson,
  kubectl,
  kubectlRaw,
  namespace,
  service,
  waitFor,
} from '../helpers/kube.ts';
import {
  events,
  fast,
  images,
  passedAt,
  recordRuleWeights,
  setImage,
  waitForPhase,
  waitForWeight,
} from '../helpers/release.ts';
import { analyzeAtSteps, validate } from '../helpers/istio.ts';

interface Route {
  metadata: { resourceVersion: string; annotations?: Record<string, string> };
  spec: { rules: { name?: string; backendRefs?: { name: string; weight?: number }[] }[] };
}

const gateway = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  metadata: { name: 'public' },
  spec: { gatewayClassName: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
};

/** The user's route in git: a Gateway parent, a redirect rule, and the rule weir steers. */
function userRoute(ns: string, rule: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'web', annotations: { 'team.example.com/owner': 'payments', 'sim.weir.dev/rps': '60' } },
    spec: {
      parentRefs: [{ name: 'public', sectionName: 'http' }],
      hostnames: [`web-${ns}.example.com`],
      rules: [
        {
          name: 'legacy',
          matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
          filters: [
            {
              type: 'RequestRedirect',
              requestRedirect: { statusCode: 301, path: { type: 'ReplaceFullPath', replaceFullPath: '/' } },
            },
          ],
        },
        {
          name: 'primary',
          matches: [{ path: { type: 'PathPrefix', value: '/' } }],
          timeouts: { request: '10s' },
          backendRefs: [
            { name: 'web-stable', port: 80, weight: 100 },
            { name: 'web-canary', port: 80, weight: 0 },
          ],
          ...rule,
        },
      ],
    },
  };
}

const getRoute = (ns: string, name = 'web'): Promise<Route> => getJson<Route>(['get', 'httproute', name, '-n', ns]);
const exists = async (ns: string, kind: string, name: string): Promise<boolean> =>
  (await kubectlRaw(['get', kind, name, '-n', ns, '-o', 'name'])).code === 0;
/** What weir creates or changes in a Gateway API release of `web` steered by `route`. */
const weirObjects = (route: string): string[] => [
  `HTTPRoute ${route}`,
  'Service web-stable',
  'Service web-canary',
  'Deployment web',
  'Deployment web-canary',
];
/** The route's spec with every weight left out: what must stay byte-identical. */
const withoutWeights = (r: Route): string =>
  JSON.stringify(r.spec, (k, v: unknown) => (k === 'weight' ? undefined : v));

t.test(
  "a user's HTTPRoute bound to a Gateway: 10 → 50 → 100 promoted, the route untouched but for two weights, no UH; " +
    'a bad version goes back to 100 % stable',
  async (t) => {
    const ns = await namespace(t, { optIn: true, mesh: true });
    // Callers come only through the Gateway: no mesh traffic straight to the Service.
    await apply(ns, service('web', { rps: 0 }));
    await apply(ns, gateway);
    await apply(ns, userRoute(ns));
    await apply(ns, {
      ...deployment('web', {
        replicas: 2,
        image: 'example.com/web:v1',
        annotations: { ...fast, 'weir.dev/http-route': 'web', 'weir.dev/route': 'primary' },
      }),
    });
    // The route names Services weir owns: weir makes them before any release, selecting each half.
    await waitFor(
      'the backend Services',
      async () => (await exists(ns, 'service', 'web-stable')) && (await exists(ns, 'service', 'web-canary')),
      60_000,
    );
    const stable = await getJson<{ spec: { selector: Record<string, string> } }>([
      'get',
      'service',
      'web-stable',
      '-n',
      ns,
    ]);
    t.same(stable.spec.selector, { app: 'web', 'weir.dev/track': 'stable' }, 'web-stable selects the stable half');
    t.ok(
      (await events(ns, 'web')).some((e) => e.reason === 'BackendsCreated'),
      'with an event that says so',
    );
    const uh = await countUhFromNow(ns);
    const before = await getRoute(ns);
    const recorder = recordRuleWeights(ns, 'web', 'web-canary', 'primary');
    await recorder.ready;
    const verdicts = analyzeAtSteps(ns, 'web', weirObjects('web'));
    await setImage(ns, 'web', 'example.com/web:v2');
    await waitForPhase(ns, 'web', 'Stable');
    for (const v of await verdicts) t.same(v.caused, [], `istioctl analyze at ${v.at}: nothing about weir's objects`);
    t.same(recorder.weights.slice(), [0, 10, 50, 100, 0], 'weights went 10 → 50 → 100, then back to stable');
    t.same(await images(ns, 'app=web'), ['example.com/web:v2', 'example.com/web:v2'], 'promoted');
    const after = await getRoute(ns);
    t.equal(withoutWeights(after), withoutWeights(before), 'every rule, filter, match and parent byte-identical');
    t.same(
      after.spec.rules[1]?.backendRefs?.map((b) => b.weight),
      [100, 0],
      '100 % stable',
    );
    const users = Object.entries(after.metadata.annotations ?? {}).filter(([k]) => !k.startsWith('weir.dev/'));
    t.same(Object.fromEntries(users), before.metadata.annotations, "the user's annotations stay");
    t.equal(await uh(), 0, 'no 503 UH during the release');
    t.same(await passedAt(ns, 'web'), [10, 50, 100], 'a check passed on gateway traffic at each step');

    await setImage(ns, 'web', 'example.com/web:v3', { 'sim.weir.dev/error-rate': '1' });
    await waitForPhase(ns, 'web', 'RolledBack');
    await waitFor('the canary gone', async () => !(await exists(ns, 'deployment', 'web-canary')), 60_000);
    await recorder.stop();
    t.same(recorder.weights.slice(5), [10, 0], 'v3: 10 %, then rolled back');
    t.same(
      (await getRoute(ns)).spec.rules[1]?.backendRefs?.map((b) => b.weight),
      [100, 0],
      '100 % stable',
    );
    t.equal(await uh(), 0, 'no 503 UH through the rollback');
  },
);

t.test('a mesh route (GAMMA) weir creates when none is named: promoted, and nothing of weir left behind', async (t) => {
  const ns = await namespace(t, { optIn: true, mesh: true });
  await apply(ns, service('web', { rps: 60 }));
  await apply(ns, {
    ...deployment('web', {
      replicas: 2,
      image: 'example.com/web:v1',
      annotations: { ...fast, 'weir.dev/router': 'gateway-api' },
    }),
  });
  const uh = await countUhFromNow(ns);
  const recorder = recordRuleWeights(ns, 'weir-web', 'web-canary', 'weir');
  await recorder.ready;
  const verdicts = analyzeAtSteps(ns, 'web', weirObjects('weir-web'));
  await setImage(ns, 'web', 'example.com/web:v2');
  await waitFor('the route weir owns', () => exists(ns, 'httproute', 'weir-web'), 60_000);
  await waitForWeight(ns, 'web', 10);
  const valid = await validate(ns, ['httproute/weir-web', 'service/web-stable', 'service/web-canary']);
  t.ok(valid.ok, `istioctl validate accepts the route and Services weir created: ${valid.output}`);
  const owned = await getJson<{ spec: unknown; metadata: { ownerReferences?: { kind: string; name: string }[] } }>([
    'get',
    'httproute',
    'weir-web',
    '-n',
    ns,
  ]);
  t.match(owned.metadata.ownerReferences, [{ kind: 'Deployment', name: 'web' }], 'owned by the Deployment');
  t.match(owned.spec, { parentRefs: [{ kind: 'Service', name: 'web', port: 80 }] }, 'a mesh route for the Service');
  await waitForPhase(ns, 'web', 'Stable');
  for (const v of await verdicts) t.same(v.caused, [], `istioctl analyze at ${v.at}: nothing about weir's objects`);
  await waitFor('the route retired', async () => !(await exists(ns, 'httproute', 'weir-web')), 60_000);
  // Break after make: the Services wait until the mesh can have forgotten the route (5 s).
  t.ok(await exists(ns, 'service', 'web-stable'), 'the Services outlive the route they back');
  await recorder.stop();
  t.same(recorder.weights, [0, 10, 50, 100, 0], 'weights went 10 → 50 → 100, then back to stable');
  await waitFor('the canary Service retired', async () => !(await exists(ns, 'service', 'web-canary')), 60_000);
  await waitFor('the stable Service retired', async () => !(await exists(ns, 'service', 'web-stable')), 60_000);
  t.pass('no Service of weir left: the Service routes as before');
  t.same(await images(ns, 'app=web'), ['example.com/web:v2', 'example.com/web:v2']);
  t.equal(await uh(), 0, 'no 503 UH from the first request to the end');
});

t.test('routes weir cannot steer: a RoutingError Warning that says what to fix, and nothing changed', async (t) => {
  const ns = await namespace(t, { optIn: true });
  await apply(ns, service('web', { rps: 0 }));
  const half = (track: string): Record<string, unknown> =>
    service(`web-${track}`, { selector: { app: 'web', 'weir.dev/track': track } });
  await apply(ns, half('stable'));
  await apply(ns, half('canary'));
  await apply(ns, service('web-debug', { selector: { app: 'debug' } }));
  const cases: [string, Record<string, unknown>, Record<string, string>, RegExp][] = [
    [
      'a third backend',
      {
        backendRefs: [
          { name: 'web-stable', port: 80, weight: 90 },
          { name: 'web-canary', port: 80, weight: 0 },
          { name: 'web-debug', port: 80, weight: 10 },
        ],
      },
      {},
      /sends to Service web-debug besides Services web-stable and web-canary/,
    ],
    ['a missing rule', {}, { 'weir.dev/route': 'main' }, /has no rule named "main"/],
    [
      'a backend weir cannot identify',
      {
        backendRefs: [
          { name: 'web-stable', port: 80, weight: 100 },
          { group: 'multicluster.x-k8s.io', kind: 'ServiceImport', name: 'web-canary', port: 80 },
        ],
      },
      {},
      /sends to ServiceImport web-canary besides/,
    ],
  ];
  for (const [what, rule, extra, message] of cases) {
    const name = `web-${cases.findIndex((c) => c[0] === what)}`;
    const route = userRoute(ns, rule);
    await apply(ns, { ...route, metadata: { ...(route.metadata as object), name } });
    await apply(ns, {
      ...deployment(name, {
        replicas: 1,
        image: 'example.com/web:v1',
        labels: { app: 'web', release: name },
        selector: { app: 'web', release: name },
        annotations: {
          ...fast,
          'weir.dev/http-route': name,
          'weir.dev/route': 'primary',
          'weir.dev/stable-service': 'web-stable',
          'weir.dev/canary-service': 'web-canary',
          ...extra,
        },
      }),
    });
    const before = await getRoute(ns, name);
    await setImage(ns, name, 'example.com/web:v2');
    await waitFor(
      `${what}: a RoutingError`,
      async () => (await events(ns, name)).some((e) => e.reason === 'RoutingError'),
      60_000,
    );
    const warning = (await events(ns, name)).find((e) => e.reason === 'RoutingError');
    t.match(warning?.message, message, `${what}: the Warning says what to fix`);
    t.equal(warning?.type, 'Warning');
    t.equal(
      (await getRoute(ns, name)).metadata.resourceVersion,
      before.metadata.resourceVersion,
      `${what}: the route is unchanged`,
    );
    t.notOk(await exists(ns, 'deployment', `${name}-canary`), `${what}: no canary serves traffic`);
  }
});

/** A release of web on the user's Gateway-bound route, started and held at its first step. */
async function releaseOnUserRoute(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const ns = await namespace(t, { optIn: true });
  await apply(ns, service('web', { rps: 0 }));
  await apply(ns, gateway);
  await apply(ns, userRoute(ns));
  await apply(ns, {
    ...deployment('web', {
      replicas: 1,
      image: 'example.com/web:v1',
      annotations: { ...fast, 'weir.dev/step-pause': '1h', 'weir.dev/http-route': 'web', 'weir.dev/route': 'primary' },
    }),
  });
  await waitFor('the backend Services', () => exists(ns, 'service', 'web-canary'), 60_000);
  await setImage(ns, 'web', 'example.com/web:v2');
  return ns;
}

t.test('a re-apply of the HTTPRoute mid-release keeps the weight weir set', async (t) => {
  const ns = await releaseOnUserRoute(t);
  await waitFor(
    '10 % on the canary',
    async () => (await getRoute(ns)).spec.rules[1]?.backendRefs?.[1]?.weight === 10,
    60_000,
  );
  for (const how of [['--server-side', '--force-conflicts'], []]) {
    await apply(ns, userRoute(ns), how);
    t.same(
      (await getRoute(ns)).spec.rules[1]?.backendRefs?.map((b) => b.weight),
      [90, 10],
      `kubectl apply ${how.join(' ')}: 90/10 kept`,
    );
  }
  t.equal(
    (await getJson<{ metadata: { annotations: Record<string, string> } }>(['get', 'deployment', 'web', '-n', ns]))
      .metadata.annotations['weir.dev/phase'],
    'Progressing',
  );
  await kubectl(['annotate', 'deployment', 'web', '-n', ns, 'weir.dev/request=abort']);
  await waitForPhase(ns, 'web', 'RolledBack');
});

t.test('the Deployment deleted mid-release with its HTTPRoute in git: the weight goes back to stable', async (t) => {
  const ns = await releaseOnUserRoute(t);
  const weights = async (): Promise<(number | undefined)[] | undefined> =>
    (await getRoute(ns)).spec.rules[1]?.backendRefs?.map((b) => b.weight);
  await waitFor('10 % on the canary', async () => (await weights())?.[1] === 10, 60_000);
  // The route is the user's: it outlives the Deployment, and must not keep sending to a canary that is gone.
  await kubectl(['delete', 'deployment', 'web', '-n', ns, '--wait=false']);
  await waitFor('the canary weight back to 0', async () => (await weights())?.[1] === 0, 30_000);
  t.same(await weights(), [100, 0], '100 % on the stable Service');
  await waitFor(
    'an OrphanedWeight event on the route',
    async () => {
      const list = await getJson<{ items: { reason: string; involvedObject: { kind: string; name: string } }[] }>([
        'get',
        'events',
        '-n',
        ns,
      ]);
      return list.items.some((e) => e.reason === 'OrphanedWeight' && e.involvedObject.kind === 'HTTPRoute');
    },
    30_000,
  );
  t.pass('an OrphanedWeight Warning on the route says what happened');
});
