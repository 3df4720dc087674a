// Issue 4's acceptance, healthy releases: the weights step up in order, the Deployment ends
// unpaused on the new version, the canary is gone, and the VirtualService is as the user wrote it.
import t from 'tap';
import {
  apply,
  countUhFromNow,
  deployment,
  getJson,
  kubectl,
  namespace,
  readyPods,
  service,
  waitFor,
} from '../helpers/kube.ts';
import { seedDeployment, seedMesh } from '../../demo/seed.ts';
import {
  events,
  passedAt,
  fast,
  getDeployment,
  waitForWeight,
  images,
  releaseStatus,
  recordWeights,
  setImage,
  waitForPhase,
} from '../helpers/release.ts';
import { analyzeAtSteps, validate } from '../helpers/istio.ts';

function userVirtualService(): Record<string, unknown> {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'web', annotations: { 'team.example.com/owner': 'payments' } },
    spec: {
      hosts: ['web'],
      http: [
        {
          name: 'admin',
          match: [{ uri: { prefix: '/admin' } }],
          route: [{ destination: { host: 'web', subset: 'stable' } }],
          timeout: '3s',
        },
        {
          name: 'primary',
          retries: { attempts: 3, perTryTimeout: '2s', retryOn: '5xx,connect-failure' },
          timeout: '10s',
          headers: { response: { set: { 'x-served-by': 'web' } } },
          route: [
            {
              destination: { host: 'web', subset: 'stable', port: { number: 80 } },
              weight: 100,
              headers: { request: { set: { 'x-track': 'stable' } } },
            },
          ],
        },
      ],
    },
  };
}

const destinationRule = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name: 'web' },
  spec: {
    host: 'web',
    trafficPolicy: { connectionPool: { http: { http1MaxPendingRequests: 100 } } },
    subsets: [
      { name: 'legacy', labels: { tier: 'old' } },
      { name: 'stable', labels: { app: 'web' } },
    ],
  },
};

t.test('a healthy version: 10 → 50 → 100, promoted, VirtualService untouched but for weights, no UH', async (t) => {
  const ns = await namespace(t, { optIn: true });
  await apply(ns, service('web', { rps: 0 }));
  await apply(ns, userVirtualService());
  await apply(ns, destinationRule);
  await apply(ns, {
    ...deployment('web', {
      replicas: 3,
      image: 'example.com/web:v1',
      annotations: {
        ...fast,
        'weir.dev/virtual-service': 'web',
        'weir.dev/route': 'primary',
        'weir.dev/destination-rule': 'web',
      },
    }),
  });
  // Mesh traffic to the host goes through the user's VirtualService.
  await waitFor('3 Ready pods', async () => (await readyPods(ns, 'app=web')) === 3, 60_000);
  await kubectl(['annotate', 'service', 'web', '-n', ns, '--overwrite', 'sim.weir.dev/rps=100']);
  const uh = await countUhFromNow(ns);
  const before = await getJson<{ metadata: Record<string, unknown>; spec: unknown }>([
    'get',
    'virtualservice',
    'web',
    '-n',
    ns,
  ]);
  const recorder = recordWeights(ns, 'web', 'canary', 'primary');
  await recorder.ready;
  await setImage(ns, 'web', 'example.com/web:v2');
  t.equal((await getDeployment(ns, 'web')).metadata.annotations?.['weir.dev/phase'], 'Progressing');
  const done = await waitForPhase(ns, 'web', 'Stable');
  await recorder.stop();
  t.same(recorder.weights, [0, 10, 50, 100, 0], 'weights went 10 → 50 → 100, then back to stable');
  t.notOk(done.spec.paused, 'unpaused');
  t.equal(
    done.metadata.annotations?.['weir.dev/stable-revision'],
    (await releaseStatus(ns, 'web'))?.revision,
    'the new revision is stable',
  );
  t.same(
    await images(ns, 'app=web'),
    ['example.com/web:v2', 'example.com/web:v2', 'example.com/web:v2'],
    'all replicas run the new image',
  );
  t.equal(
    (await kubectl(['get', 'deployment', '-n', ns, '-l', 'weir.dev/canary-of=web', '-o', 'name'])).trim(),
    '',
    'the canary is gone',
  );
  const after = await getJson<{
    metadata: Record<string, unknown>;
    spec: { http: { route: { weight?: number }[] }[] };
  }>(['get', 'virtualservice', 'web', '-n', ns]);
  const primary = after.spec.http[1];
  if (!primary) return t.fail('primary route');
  t.equal(primary.route[0]?.weight, 100, '100 % stable');
  const withoutCanary = structuredClone(after.spec) as { http: { route: unknown[] }[] };
  withoutCanary.http[1]?.route.splice(1);
  t.equal(
    JSON.stringify(withoutCanary),
    JSON.stringify(before.spec),
    'every other field and route unchanged, byte for byte (the added canary destination aside)',
  );
  const annotations = (after.metadata.annotations ?? {}) as Record<string, string>;
  const users = Object.fromEntries(Object.entries(annotations).filter(([k]) => !k.startsWith('weir.dev/')));
  t.same(users, before.metadata.annotations, "the user's annotations stay as they were");
  t.same(
    Object.keys(annotations).filter((k) => k.startsWith('weir.dev/')),
    ['weir.dev/weights'],
    "beside them only weir's record of the weights it set (ADR 8)",
  );
  const dr = await getJson<{ spec: { trafficPolicy: unknown; subsets: { name: string }[] } }>([
    'get',
    'destinationrule',
    'web',
    '-n',
    ns,
  ]);
  t.same(dr.spec.trafficPolicy, destinationRule.spec.trafficPolicy, 'the traffic policy stays');
  t.ok(
    dr.spec.subsets.some((s) => s.name === 'legacy'),
    'other subsets stay',
  );
  t.equal(await uh(), 0, 'the mesh counted no 503 UH during the whole release');
  const reasons = (await events(ns, 'web')).map((e) => e.reason);
  for (const r of ['ReleaseStarted', 'WeightSet', 'CheckPassed', 'Promoting', 'Promoted'])
    t.ok(reasons.includes(r), `event ${r}`);
});

t.test("the seed's myapp manifests work with annotations and nothing else; Istio's analyzers agree", async (t) => {
  const ns = await namespace(t, { optIn: true, mesh: true });
  for (const manifest of seedMesh(ns)) await apply(ns, manifest);
  await apply(ns, seedDeployment('v1', fast));
  const recorder = recordWeights(ns, 'myapp-virtualservice', 'v2', 'primary');
  await recorder.ready;
  const weirs = ['VirtualService myapp-virtualservice', 'DestinationRule myapp-destinationrule', 'Deployment myapp'];
  const verdicts = analyzeAtSteps(ns, 'myapp', [...weirs, 'Deployment myapp-canary']);
  await apply(ns, seedDeployment('v2', fast));
  await waitForPhase(ns, 'myapp', 'Stable');
  for (const v of await verdicts) {
    t.same(v.caused, [], `istioctl analyze at ${v.at}: nothing about weir's objects`);
    const others = v.info.filter((m) => !v.caused.includes(m)).map((m) => `${m.code} ${m.origin}`);
    if (others.length > 0) t.comment(`at ${v.at}, about the user's own objects: ${others.join('; ')}`);
  }
  await recorder.stop();
  t.same(recorder.weights, [0, 10, 50, 100, 0]);
  t.same(await images(ns, 'app=myapp'), [
    'jamaldevsecops/myapp:v2',
    'jamaldevsecops/myapp:v2',
    'jamaldevsecops/myapp:v2',
  ]);
  t.same(await passedAt(ns, 'myapp'), [10, 50, 100], 'a check passed on gateway traffic at each step');
});

t.test("weir's own VirtualService and DestinationRule: Istio validates them and its analyzers agree", async (t) => {
  const ns = await namespace(t, { optIn: true, mesh: true });
  await apply(ns, service('web', { rps: 60 }));
  await apply(ns, deployment('web', { replicas: 2, image: 'example.com/web:v1', annotations: fast }));
  const weirs = ['VirtualService weir-web', 'DestinationRule weir-web', 'Deployment web', 'Deployment web-canary'];
  const verdicts = analyzeAtSteps(ns, 'web', weirs);
  await setImage(ns, 'web', 'example.com/web:v2');
  await waitForWeight(ns, 'web', 10);
  const valid = await validate(ns, ['virtualservice/weir-web', 'destinationrule/weir-web']);
  t.ok(valid.ok, `istioctl validate accepts what weir created: ${valid.output}`);
  await waitForPhase(ns, 'web', 'Stable');
  for (const v of await verdicts) t.same(v.caused, [], `istioctl analyze at ${v.at}: nothing about weir's objects`);
});
