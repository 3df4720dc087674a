// Issue 17 on the local cluster: the seed's best practices built in — a shadow step on mirrored
// traffic before any caller's request reaches the canary, and a header route for testers — on
// the seed's own VirtualService, judged by istioctl and kept through a user's re-apply.
import t from 'tap';
import { request } from 'undici';
import { apply, cluster, getJson, meshRequests, namespace, waitFor } from '../helpers/kube.ts';
import { seedDeployment, seedGatewayMesh, seedGatewayRouting, seedMesh } from '../../demo/seed.ts';
import { events, fast, releaseStatus, waitForPhase } from '../helpers/release.ts';
import { analyze, weirCaused } from '../helpers/istio.ts';
import type { VirtualService } from '../../contract/istio.ts';
import type { HTTPRoute } from '../../contract/gateway.ts';

/**
 * The seed's objects with a host of this namespace's own: the simulator's gateway picks the first
 * route for a host, and other tests run the seed beside this one.
 */
function ownHost<T>(objects: T[], ns: string): T[] {
  return JSON.parse(JSON.stringify(objects).replaceAll('myapp.apsissolutions.com', hostOf(ns))) as T[];
}
const hostOf = (ns: string): string => `${ns}.apsissolutions.com`;

/**
 * Requests through the ingress gateway (the seed's route) that the canary's pods answered, as one
 * reporter saw them, from the simulator's own counters. In-mesh callers of the seed's Service are
 * not counted: its VirtualService is bound to the gateway only, so they reach every pod the
 * Service selects, as in any mesh — weir steers the route it is given.
 */
const answered = (ns: string, reporter: 'source' | 'destination'): Promise<number> =>
  meshRequests({
    destination_workload_namespace: ns,
    destination_workload: 'myapp-canary',
    source_workload: 'istio-ingressgateway',
    reporter,
  });

/** One request as a tester sends it through the ingress gateway; the workload that answered. */
async function testerRequest(ns: string, header?: string): Promise<string | undefined> {
  const query = new URLSearchParams({ entry: 'gateway', host: hostOf(ns), path: '/' });
  if (header) query.append('header', header);
  const res = await request(`${(await cluster()).meshUrl}/request?${query.toString()}`);
  return ((await res.body.json()) as { workload?: string }).workload;
}

const routes = async (ns: string): Promise<VirtualService> =>
  getJson<VirtualService>(['get', 'virtualservice', 'myapp-virtualservice', '-n', ns, '-o', 'json']);

t.test(
  'a bad canary is rolled back in the shadow step: judged on mirrored requests, no caller ever reached it',
  async (t) => {
    const ns = await namespace(t, { optIn: true, mesh: true });
    for (const manifest of ownHost(seedMesh(ns), ns)) await apply(ns, manifest);
    const shadow = { ...fast, 'weir.dev/steps': 'mirror,50,100' };
    await apply(ns, seedDeployment('v1', shadow));
    await apply(ns, seedDeployment('v2', shadow, { 'sim.weir.dev/error-rate': '1' }));
    await waitFor('the shadow step', async () => (await releaseStatus(ns, 'myapp'))?.mirror === 100, 120_000, 200);
    const vs = await routes(ns);
    t.same(vs.spec?.http?.[0]?.mirror, { host: `myapp.${ns}.svc.cluster.local`, subset: 'v2' }, 'a copy to the canary');
    t.same(
      weirCaused(
        await analyze(ns),
        ['VirtualService', 'DestinationRule'].map((k) => `${k} ${ns}/myapp-${k.toLowerCase()}`),
      ),
      [],
      "istioctl analyze: nothing about weir's mirror",
    );
    const d = await waitForPhase(ns, 'myapp', 'RolledBack', 120_000);
    t.match(d.metadata.annotations?.['weir.dev/reason'], /RolledBack: hard ceiling reached/);
    const reasons = (await events(ns, 'myapp')).map((e) => e.reason);
    t.ok(reasons.includes('MirrorSet'), 'the shadow step was announced');
    t.notOk(reasons.includes('WeightSet'), 'no weight was ever given');
    t.ok(reasons.includes('MeshCallersUnsteered'), "the seed's route is bound to its gateway only, and weir says so");
    t.ok(
      (await answered(ns, 'destination')) > 0,
      "the canary's pods answered mirrored requests, and were judged on them",
    );
    t.equal(await answered(ns, 'source'), 0, "no caller's proxy ever got an answer from the canary");
    const after = await routes(ns);
    t.equal(after.spec?.http?.[0]?.mirror, undefined, 'the mirror is gone');
    t.equal(after.spec?.http?.[0]?.mirrorPercentage, undefined);
  },
);

t.test(
  "testers reach the canary with their header from the shadow step on; a user's re-apply keeps their route",
  async (t) => {
    const ns = await namespace(t, { optIn: true, mesh: true });
    for (const manifest of ownHost(seedMesh(ns), ns)) await apply(ns, manifest);
    const annotations = {
      ...fast,
      'weir.dev/step-pause': '15s',
      'weir.dev/steps': 'mirror:50,50,100',
      'weir.dev/canary-header': 'x-canary=always',
    };
    await apply(ns, seedDeployment('v1', annotations));
    await apply(ns, seedDeployment('v2', annotations));
    await waitFor('the shadow step', async () => (await releaseStatus(ns, 'myapp'))?.mirror === 50, 120_000, 200);
    t.same(
      (await routes(ns)).spec?.http?.map((r) => r.name),
      ['weir-canary-header-primary', 'primary'],
      "the testers' route sits just before the steered one",
    );
    // The mesh learns a new route within its propagation time, as Envoy does from istiod.
    await waitFor(
      'a tester with the header reaching the canary',
      async () => (await testerRequest(ns, 'x-canary=always')) === 'myapp-canary',
      10_000,
      200,
    );
    t.pass('a tester with the header reaches the canary');
    t.equal(await testerRequest(ns), 'myapp', 'everyone else reaches stable: no weight in the shadow step');
    // A GitOps re-apply of the seed's VirtualService, as in git: no mirror, no testers' route.
    const mesh = ownHost(seedMesh(ns), ns).find((m) => m.kind === 'VirtualService');
    await apply(ns, mesh);
    const kept = await routes(ns);
    t.same(
      kept.spec?.http?.map((r) => r.name),
      ['weir-canary-header-primary', 'primary'],
      'kept through the re-apply',
    );
    t.same(kept.spec?.http?.[1]?.mirrorPercentage, { value: 50 }, 'the mirror too');
    t.same(
      weirCaused(await analyze(ns), [`VirtualService ${ns}/myapp-virtualservice`]),
      [],
      "istioctl analyze: nothing about weir's testers' route",
    );
    await waitForPhase(ns, 'myapp', 'Stable', 180_000);
    const over = await routes(ns);
    t.same(
      over.spec?.http?.map((r) => r.name),
      ['primary'],
      "the testers' route left with the release",
    );
    t.equal(over.spec?.http?.[0]?.mirror, undefined);
    t.equal(await testerRequest(ns, 'x-canary=always'), 'myapp', 'testers are back on the (promoted) stable half');
  },
);

t.test(
  'on the Gateway API: the shadow step mirrors on the steered rule, testers have their rule, both leave after',
  async (t) => {
    const ns = await namespace(t, { optIn: true, mesh: true });
    const objects = ownHost(seedGatewayMesh(), ns);
    for (const manifest of objects) await apply(ns, manifest);
    const annotations = {
      ...fast,
      'weir.dev/step-pause': '15s',
      'weir.dev/steps': 'mirror,50,100',
      'weir.dev/canary-header': 'x-canary=always',
    };
    await apply(ns, seedDeployment('v1', annotations, {}, seedGatewayRouting));
    await apply(ns, seedDeployment('v2', annotations, {}, seedGatewayRouting));
    await waitFor('the shadow step', async () => (await releaseStatus(ns, 'myapp'))?.mirror === 100, 120_000, 200);
    const route = await getJson<HTTPRoute>(['get', 'httproute', 'myapp-route', '-n', ns, '-o', 'json']);
    t.same(
      route.spec?.rules?.map((r) => r.name),
      ['weir-canary-header-primary', 'primary'],
    );
    t.same(route.spec?.rules?.[1]?.filters, [
      {
        type: 'RequestMirror',
        requestMirror: { backendRef: { group: '', kind: 'Service', name: 'myapp-canary', port: 8080 }, percent: 100 },
      },
    ]);
    await waitFor(
      'a tester with the header reaching the canary',
      async () => (await testerRequest(ns, 'x-canary=always')) === 'myapp-canary',
      10_000,
      200,
    );
    t.equal(await testerRequest(ns), 'myapp', 'everyone else reaches stable');
    await waitFor(
      'mirrored requests answered by the canary',
      async () => (await answered(ns, 'destination')) > 0,
      10_000,
      200,
    );
    // The user's re-apply from git: the webhook keeps both.
    await apply(
      ns,
      objects.find((o) => o.kind === 'HTTPRoute'),
    );
    const kept = await getJson<HTTPRoute>(['get', 'httproute', 'myapp-route', '-n', ns, '-o', 'json']);
    t.same(
      kept.spec?.rules?.map((r) => r.name),
      ['weir-canary-header-primary', 'primary'],
      'kept through a re-apply',
    );
    await waitForPhase(ns, 'myapp', 'Stable', 180_000);
    const over = await getJson<HTTPRoute>(['get', 'httproute', 'myapp-route', '-n', ns, '-o', 'json']);
    t.same(
      over.spec?.rules?.map((r) => r.name),
      ['primary'],
      "the testers' rule left with the release",
    );
    t.equal(over.spec?.rules?.[0]?.filters, undefined, 'and the mirror');
  },
);
