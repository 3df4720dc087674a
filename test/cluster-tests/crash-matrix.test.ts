// Issue 10's crash matrix: the analyzer is killed (SIGKILL) right after each kind of action it
// performs, and a new one carries on from what the cluster says. Every release still ends as its
// canary deserves: promoted or rolled back, no canary left, no stray weight, no step out of order.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { apply, deployment, getJson, kubectl, namespace, readyPods, service, waitFor } from '../helpers/kube.ts';
import { fast, recordWeights, setImage, startAnalyzer, waitForPhase } from '../helpers/release.ts';

interface Checks {
  teardown(fn: () => unknown): void;
  pass(message: string): void;
  fail(message: string): void;
}

interface Vs {
  spec: { http: { route: { destination: { subset: string }; weight?: number }[] }[] };
}

/** One analyzer per kind, each killed right after its first action of that kind; then one that finishes. */
async function crashAfterEach(
  t: Checks,
  scope: string,
  kinds: string[],
  before: Record<string, () => Promise<void>> = {},
): Promise<void> {
  for (const kind of kinds) {
    await before[kind]?.();
    const analyzer = await startAnalyzer({
      scope,
      identity: `${kind}-${randomBytes(2).toString('hex')}`,
      env: { WEIR_TEST_CRASH_AFTER: kind },
      waitReady: false,
    });
    t.teardown(() => analyzer.kill());
    const ended = await Promise.race([
      analyzer.exited,
      new Promise((resolve) => setTimeout(() => resolve('still running'), 120_000)),
    ]);
    if (ended === 'SIGKILL') t.pass(`killed right after its first ${kind}`);
    else t.fail(`no ${kind} before its time ran out (${String(ended)})`);
  }
  const last = await startAnalyzer({ scope, identity: `last-${randomBytes(2).toString('hex')}` });
  t.teardown(() => last.kill());
}

async function setUp(t: Checks, extra: Record<string, string> = {}): Promise<{ ns: string; scope: string }> {
  const scope = randomBytes(4).toString('hex');
  // Created before the opt-in, so that labelling stable pods in place is one of the actions.
  const ns = await namespace(t);
  await kubectl(['label', 'namespace', ns, `weir.dev/test-analyzer=${scope}`]);
  await apply(ns, service('web', { rps: 100 }));
  await apply(ns, deployment('web', { replicas: 2, image: 'example.com/web:v1', annotations: { ...fast, ...extra } }));
  await waitFor('2 Ready pods', async () => (await readyPods(ns, 'app=web')) === 2, 60_000);
  await kubectl(['label', 'namespace', ns, 'weir.dev/canary=enabled']);
  return { ns, scope };
}

async function leftovers(ns: string): Promise<{ canaries: string; weight: number | undefined }> {
  const canaries = (
    await kubectl(['get', 'deployment', '-n', ns, '-l', 'weir.dev/canary-of=web', '-o', 'name'])
  ).trim();
  const vs = await getJson<Vs>(['get', 'virtualservice', 'weir-web', '-n', ns]);
  return { canaries, weight: vs.spec.http[0]?.route.find((d) => d.destination.subset === 'canary')?.weight };
}

t.test(
  'a healthy release through a crash after each kind of action: promoted, in step order, nothing left',
  async (t) => {
    const { ns, scope } = await setUp(t, { 'weir.dev/step-pause': '4s' });
    await setImage(ns, 'web', 'example.com/web:v2');
    let recorder: ReturnType<typeof recordWeights> | undefined;
    await crashAfterEach(
      t,
      scope,
      [
        'status',
        'labelStablePods',
        'ensureBackends',
        'ensureCanary',
        'clearRequest',
        'setWeight',
        'event',
        'setPhase',
        'unpause',
        'deleteCanary',
        'retireRouting',
        'retireBackends',
      ],
      {
        // The owned VirtualService exists once the subsets are made: record from then on.
        ensureCanary: async () => {
          recorder = recordWeights(ns, 'weir-web', 'canary');
        },
        // A person's request, so that clearing it is one of the actions.
        clearRequest: async () => {
          await kubectl(['annotate', 'deployment', 'web', '-n', ns, '--overwrite', 'weir.dev/request=promote']);
        },
      },
    );
    const done = await waitForPhase(ns, 'web', 'Stable');
    await recorder?.stop();
    t.equal(done.spec.template.spec.containers[0]?.image, 'example.com/web:v2', 'promoted');
    t.notOk(done.spec.paused, 'resumed');
    const weights = (recorder?.weights ?? []).filter((w, i, all) => i === 0 || w !== all[i - 1]);
    t.same(weights, [0, 10, 50, 100, 0], 'each weight once, in order');
    t.same(await leftovers(ns), { canaries: '', weight: 0 }, 'no canary, no stray weight');
  },
);

t.test('a bad release through a crash after each action of its rollback: rolled back, nothing left', async (t) => {
  const { ns, scope } = await setUp(t);
  await setImage(ns, 'web', 'example.com/web:v2-bad', { 'sim.weir.dev/error-rate': '0.3' });
  await crashAfterEach(t, scope, ['setWeight', 'event', 'status', 'setWeight', 'deleteCanary', 'setPhase']);
  const done = await waitForPhase(ns, 'web', 'RolledBack');
  t.equal(done.spec.paused, true, 'the stable half keeps serving');
  t.same(await leftovers(ns), { canaries: '', weight: 0 }, 'no canary, no stray weight');
});
