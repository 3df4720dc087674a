// Issue 17 on the local cluster: dynamic stable scale (ADR 19) — the stable half shrinks as the
// canary's weight grows, the user's total stays the source of truth (a re-apply keeps weir's
// size, `kubectl scale` sets a new total), and traffic never returns to a stable half that cannot
// carry it: the 503s at the end of Argo Rollouts' dynamicStableScale (#4828) are the test.
import t from 'tap';
import { setTimeout as delay } from 'node:timers/promises';
import { apply, countUhFromNow, deployment, getJson, kubectl, namespace, service, waitFor } from '../helpers/kube.ts';
import { events, fast, getDeployment, releaseStatus, setImage, waitForPhase } from '../helpers/release.ts';

const replicasOf = async (ns: string): Promise<number> => (await getDeployment(ns, 'web')).spec.replicas;

/** Samples the pods of both halves (not being deleted) every 200 ms until stopped; the most seen at once. */
function podPeak(ns: string): { stop: () => Promise<number> } {
  let running = true;
  let most = 0;
  const sampling = (async () => {
    while (running) {
      const pods = await getJson<{ items: { metadata: { deletionTimestamp?: string } }[] }>([
        'get',
        'pods',
        '-n',
        ns,
        '-l',
        'app=web',
        '-o',
        'json',
      ]);
      most = Math.max(most, pods.items.filter((p) => !p.metadata.deletionTimestamp).length);
      await delay(200);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await sampling;
      return most;
    },
  };
}

/** A namespace with a Service at 100 requests/s and `web` under dynamic stable scale (steps 50, 100). */
async function scaled(
  t: { teardown(fn: () => unknown): void },
  replicas: number,
  extra: Record<string, string>,
): Promise<{ ns: string; manifest: Record<string, unknown> }> {
  const ns = await namespace(t, { optIn: true });
  await apply(ns, service('web', { rps: 100 }));
  const annotations = { ...fast, 'weir.dev/steps': '50,100', 'weir.dev/dynamic-stable-scale': 'true', ...extra };
  const manifest = deployment('web', { replicas, image: 'example.com/web:v1', annotations });
  await apply(ns, manifest);
  return { ns, manifest };
}

t.test(
  'stable shrinks after each weight; a re-apply keeps its size, kubectl scale sets a new total; ' +
    'promotion hands over a step at a time',
  async (t) => {
    const { ns, manifest } = await scaled(t, 4, { 'weir.dev/step-pause': '20s' });
    const uh = await countUhFromNow(ns);
    const peak = podPeak(ns);
    await setImage(ns, 'web', 'example.com/web:v2');
    await waitFor('stable scaled to 2 of 4 at 50 %', async () => (await replicasOf(ns)) === 2, 60_000, 200);
    const most = await peak.stop();
    t.ok(most <= 4 + 2, `both halves together: at most the 4 replicas and one step of the canary, 2 (saw ${most})`);
    const promotion = podPeak(ns);
    t.match(await releaseStatus(ns, 'web'), { weight: 50, replicas: 4, stableReplicas: 2 });
    // GitOps re-applies the folder: the same total, 4, is no change.
    const reapplied = structuredClone(manifest) as {
      spec: { template: { spec: { containers: { image: string }[] } } };
    };
    const container = reapplied.spec.template.spec.containers[0];
    if (container) container.image = 'example.com/web:v2';
    await apply(ns, reapplied);
    t.equal(await replicasOf(ns), 2, "a re-apply of the same total keeps weir's stable size");
    // A person scales the Deployment: that is the new total, split the same way.
    await kubectl(['scale', 'deployment/web', '-n', ns, '--replicas=6']);
    await waitFor('stable at 3 of the new 6', async () => (await replicasOf(ns)) === 3, 30_000, 200);
    t.match(await releaseStatus(ns, 'web'), { replicas: 6, stableReplicas: 3 });
    const d = await waitForPhase(ns, 'web', 'Stable', 180_000);
    const most6 = await promotion.stop();
    t.ok(most6 <= 6 + 3, `to the end of the promotion: at most the 6 replicas and one step, 3 (saw ${most6})`);
    t.equal(d.spec.replicas, 6, 'promoted with the whole total');
    t.equal(await uh(), 0, 'not one request met a half without pods');
    const evs = await events(ns, 'web');
    const reasons = evs.filter((e) => e.reason === 'StableScaled').map((e) => e.message);
    // The old stable pods go before the promotion's rollout, which then grows as the canary shrinks.
    t.same(reasons.filter((r) => r.startsWith('stable scaled')).sort(), [
      'stable scaled to 0 of 6 replicas for its 0% share',
      'stable scaled to 2 of 4 replicas for its 50% share',
      'stable scaled to 3 of 6 replicas for its 50% share',
    ]);
    t.same(
      reasons.filter((r) => r.startsWith('promotion')).map((r) => r.replace(/revision [^)\s]+/, 'revision v2')),
      ['promotion: stable (revision v2) grows to 3 of 6', 'promotion: stable (revision v2) grows to 6 of 6'],
    );
    t.same(
      evs.filter((e) => e.reason === 'HandedOver').map((e) => e.message),
      ['promotion: canary weight 50% as stable holds 3 of 6 replicas'],
    );
  },
);

for (const [at, size] of [
  [50, 2],
  [100, 0],
] as const)
  t.test(
    `rolled back at ${at} % with stable at ${size} of 3: stable is whole and available before weight returns, ` +
      'not one 503',
    async (t) => {
      // Checks are never conclusive: the unjudged limit rolls the release back where it stands.
      const { ns } = await scaled(t, 3, { 'weir.dev/min-requests': '100000000', 'weir.dev/unjudged-limit': '5' });
      const uh = await countUhFromNow(ns);
      await setImage(ns, 'web', 'example.com/web:v2');
      await waitFor('the 50 % step', async () => (await releaseStatus(ns, 'web'))?.weight === 50, 60_000, 200);
      if (at === 100)
        await kubectl(['annotate', 'deployment/web', '-n', ns, 'weir.dev/request=promote', '--overwrite']);
      await waitFor(`stable at ${size} behind ${at} %`, async () => (await replicasOf(ns)) === size, 60_000, 200);
      const d = await waitForPhase(ns, 'web', 'RolledBack', 120_000);
      t.equal(d.spec.replicas, 3, 'stable has its replicas again');
      t.equal(await uh(), 0, 'no request met a stable half without pods');
      const evs = await events(ns, 'web');
      const back = evs.findIndex(
        (e) => e.reason === 'StableScaled' && /stable back to 3 replicas, all available/.test(e.message),
      );
      const rolled = evs.findIndex((e) => e.reason === 'RolledBack');
      t.ok(back >= 0 && rolled > back, 'stable whole and available, then the canary went');
    },
  );
