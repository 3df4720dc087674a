// Issue 4's acceptance around a release's edges: a Deployment older than the opt-in, opting out
// mid-release, and deleting the Deployment mid-release.
import t from 'tap';
import { apply, countUhFromNow, deployment, getJson, kubectl, namespace, readyPods, service } from '../helpers/kube.ts';
import { fast, getDeployment, guardedWeb, images, setImage, waitForPhase, waitForWeight } from '../helpers/release.ts';
import { waitFor } from '../cluster/cluster.ts';

interface Pods {
  items: { metadata: { uid: string; name: string; labels: Record<string, string>; deletionTimestamp?: string } }[];
}

t.test('a Deployment from before the opt-in: its first release is protected, no pod restarts for labels', async (t) => {
  const ns = await namespace(t);
  await apply(ns, service('web', { rps: 100 }));
  await apply(ns, deployment('web', { replicas: 3, image: 'example.com/web:v1', annotations: fast }));
  await waitFor('3 Ready pods', async () => (await readyPods(ns, 'app=web')) === 3, 60_000);
  const uh = await countUhFromNow(ns);
  const before = (await getJson<Pods>(['get', 'pods', '-n', ns, '-l', 'app=web'])).items
    .map((p) => p.metadata.uid)
    .sort();
  t.notOk((await getDeployment(ns, 'web')).spec.template.metadata.labels['weir.dev/track'], 'no weir label yet');
  await kubectl(['label', 'namespace', ns, 'weir.dev/canary=enabled']);
  await setImage(ns, 'web', 'example.com/web:v2');
  t.equal((await getDeployment(ns, 'web')).spec.paused, true, 'the first release is guarded');
  await waitFor(
    'the running stable pods to be labelled in place',
    async () => {
      const pods = (await getJson<Pods>(['get', 'pods', '-n', ns, '-l', 'app=web,weir.dev/track=stable'])).items;
      return pods.length === 3;
    },
    60_000,
  );
  const labelled = (await getJson<Pods>(['get', 'pods', '-n', ns, '-l', 'app=web,weir.dev/track=stable'])).items
    .map((p) => p.metadata.uid)
    .sort();
  t.same(labelled, before, 'the same pods, labelled, not restarted');
  await waitForPhase(ns, 'web', 'Stable');
  t.same(await images(ns, 'app=web'), ['example.com/web:v2', 'example.com/web:v2', 'example.com/web:v2']);
  t.equal(await uh(), 0, 'no 503 UH at any point once the pods were Ready');
});

/** A release held at its first step (long pauses), for tests that interrupt it. */
async function atFirstStep(t: { teardown(fn: () => unknown): void }, rps: number): Promise<string> {
  const ns = await guardedWeb(t, { replicas: 2, rps, annotations: { 'weir.dev/step-pause': '30s' } });
  await setImage(ns, 'web', 'example.com/web:v2');
  await waitForWeight(ns, 'web', 10, 60_000);
  return ns;
}

t.test('opting out mid-release: stable traffic, no canary, the Deployment resumed', async (t) => {
  const ns = await atFirstStep(t, 100);
  await kubectl(['label', 'namespace', ns, 'weir.dev/canary-']);
  const d = await waitForPhase(ns, 'web', 'Stable');
  t.match(d.metadata.annotations?.['weir.dev/reason'], /^OptedOut/);
  // The phase is written first (the webhook keeps a Progressing release paused), the resume next.
  await waitFor(
    'the Deployment resumed',
    async () =>
      (await getJson<{ spec: { paused?: boolean } }>(['get', 'deployment', 'web', '-n', ns])).spec.paused !== true,
    10_000,
  );
  await waitFor(
    'no canary',
    async () =>
      (await kubectl(['get', 'deployment', '-n', ns, '-l', 'weir.dev/canary-of=web', '-o', 'name'])).trim() === '',
  );
  const vs = await getJson<{ spec: { http: { route: { destination: { subset: string }; weight?: number }[] }[] } }>([
    'get',
    'virtualservice',
    'weir-web',
    '-n',
    ns,
  ]);
  t.equal(
    vs.spec.http[0]?.route.find((r) => r.destination.subset === 'canary')?.weight,
    0,
    'no weight left on the canary',
  );
});

t.test('deleting the Deployment mid-release leaves no canary and no stray weights', async (t) => {
  const ns = await atFirstStep(t, 50);
  await kubectl(['delete', 'deployment', 'web', '-n', ns]);
  await waitFor(
    'the canary and the owned routing to be collected',
    async () => {
      const left = await kubectl(['get', 'deployment,virtualservice,destinationrule', '-n', ns, '-o', 'name']);
      return left.trim() === '';
    },
    60_000,
  );
  t.pass('nothing left behind');
});
