// Issue 10's acceptance, the parts about what weir may touch: a stranger under the canary's
// name, a Deployment selected by matchExpressions only, and hostile or broken annotations that
// hold their own release while every other release carries on.
import t from 'tap';
import { apply, cluster, deployment, getJson, kubectl, namespace, service, waitFor } from '../helpers/kube.ts';
import { analyzerMetric, events, fast, runWeir, setImage, waitForPhase } from '../helpers/release.ts';

interface Obj {
  metadata: { resourceVersion: string; generation?: number; labels?: Record<string, string> };
  spec: unknown;
  status?: { readyReplicas?: number };
}

t.test(
  "a user's own Deployment named <name>-canary is left byte-identical and running; the release holds with NameConflict",
  async (t) => {
    const ns = await namespace(t, { optIn: true });
    // Theirs: a hand-made canary from before weir, with a selector of its own.
    await apply(
      ns,
      deployment('web-canary', {
        replicas: 1,
        image: 'example.com/web:handmade',
        labels: { track: 'handmade' },
        selector: { app: 'web-canary' },
      }),
    );
    await waitFor(
      'their canary ready',
      async () => (await getJson<Obj>(['get', 'deployment', 'web-canary', '-n', ns])).status?.readyReplicas === 1,
    );
    const before = await getJson<Obj>(['get', 'deployment', 'web-canary', '-n', ns]);
    await apply(ns, service('web', { rps: 20 }));
    await apply(ns, deployment('web', { replicas: 2, image: 'example.com/web:v1', annotations: fast }));
    await setImage(ns, 'web', 'example.com/web:v2');
    await waitFor(
      'a NameConflict warning',
      async () =>
        (await events(ns, 'web')).some(
          (e) => e.type === 'Warning' && e.reason === 'NameConflict' && e.message.includes('web-canary'),
        ),
      60_000,
      500,
    );
    // Several passes later, still nothing of theirs has changed.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const after = await getJson<Obj>(['get', 'deployment', 'web-canary', '-n', ns]);
    t.equal(after.metadata.resourceVersion, before.metadata.resourceVersion, 'never written: the same resourceVersion');
    t.same(after.spec, before.spec);
    t.equal(after.status?.readyReplicas, 1, 'still running');
    const web = await getJson<{ metadata: { annotations: Record<string, string> } }>([
      'get',
      'deployment',
      'web',
      '-n',
      ns,
    ]);
    t.equal(web.metadata.annotations['weir.dev/phase'], 'Progressing', 'the release holds');
    t.match(web.metadata.annotations['weir.dev/status'], /NameConflict|not weir's canary/);
    // Abort is the way out; it must not delete theirs either.
    await kubectl(['annotate', 'deployment', 'web', '-n', ns, 'weir.dev/request=abort']);
    await waitForPhase(ns, 'web', 'RolledBack', 60_000);
    t.equal(
      (await getJson<Obj>(['get', 'deployment', 'web-canary', '-n', ns])).metadata.resourceVersion,
      before.metadata.resourceVersion,
      'not deleted by the rollback',
    );
  },
);

t.test(
  'a Deployment selected by matchExpressions only: its release completes; a bystander pod keeps its labels',
  async (t) => {
    const ns = await namespace(t);
    const web = deployment('mx', { replicas: 2, image: 'example.com/mx:v1', annotations: fast });
    (web.spec as { selector: unknown }).selector = {
      matchExpressions: [{ key: 'app', operator: 'In', values: ['mx'] }],
    };
    // Created before the opt-in: its pods have no track label, and weir labels them in place.
    await apply(ns, web);
    await apply(ns, service('mx', { rps: 40 }));
    await apply(ns, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'bystander', labels: { app: 'bystander' } },
      spec: { containers: [{ name: 'c', image: 'example.com/other:v1' }] },
    });
    await waitFor(
      'mx ready',
      async () => (await getJson<Obj>(['get', 'deployment', 'mx', '-n', ns])).status?.readyReplicas === 2,
    );
    await kubectl(['label', 'namespace', ns, 'weir.dev/canary=enabled']);
    await setImage(ns, 'mx', 'example.com/mx:v2');
    await waitForPhase(ns, 'mx', 'Stable');
    const bystander = await getJson<Obj>(['get', 'pod', 'bystander', '-n', ns]);
    t.same(bystander.metadata.labels, { app: 'bystander' }, 'the bystander was not labelled');
    t.ok(
      (await events(ns, 'mx')).some((e) => e.reason === 'Promoted'),
      'promoted',
    );
  },
);

t.test(
  'hostile or broken annotations hold their own release with a Warning; a healthy release elsewhere completes; ' +
    'weir get -A lists all',
  async (t) => {
    const hostile = await namespace(t, { optIn: true });
    const healthy = await namespace(t, { optIn: true });
    await apply(healthy, service('web', { rps: 40 }));
    await apply(healthy, deployment('web', { replicas: 2, image: 'example.com/web:v1', annotations: fast }));
    const cases: [string, Record<string, string>][] = [
      ['ctor', { 'weir.dev/policy': 'constructor' }],
      ['proto', { 'weir.dev/policy': '__proto__' }],
      ['broken', {}],
    ];
    for (const [name, annotations] of cases) {
      await apply(hostile, service(name, { rps: 10 }));
      await apply(
        hostile,
        deployment(name, { replicas: 1, image: `example.com/${name}:v1`, annotations: { ...fast, ...annotations } }),
      );
    }
    await kubectl(['annotate', 'deployment', 'broken', '-n', hostile, 'weir.dev/status={"revision": broken']);
    for (const [name] of cases) await setImage(hostile, name, `example.com/${name}:v2`);
    await setImage(healthy, 'web', 'example.com/web:v2');
    for (const [name, reason] of [
      ['ctor', 'InvalidPolicy'],
      ['proto', 'InvalidPolicy'],
      ['broken', 'InvalidStatus'],
    ] as const) {
      await waitFor(
        `${name}: a ${reason} warning`,
        async () => (await events(hostile, name)).some((e) => e.type === 'Warning' && e.reason === reason),
        60_000,
        500,
      );
      t.pass(`${name} holds with ${reason}`);
    }
    t.match(
      (await events(hostile, 'ctor')).find((e) => e.reason === 'InvalidPolicy')?.message,
      /no policy named "constructor"/,
    );
    await waitForPhase(healthy, 'web', 'Stable');
    t.pass('the healthy release completed meanwhile');
    const broken = await getJson<{ metadata: { annotations: Record<string, string> } }>([
      'get',
      'deployment',
      'broken',
      '-n',
      hostile,
    ]);
    t.equal(
      broken.metadata.annotations['weir.dev/status'],
      '{"revision": broken',
      'the unreadable record was not overwritten',
    );
    const all = await runWeir(['get', '-A']);
    t.equal(all.code, 0, `weir get -A succeeds: ${all.stderr}`);
    for (const name of ['ctor', 'proto', 'broken'])
      t.match(all.stdout, new RegExp(`${hostile}\\s+${name}\\s`), `lists ${name}`);
    t.match(all.stdout, new RegExp(`${healthy}\\s+web\\s+Stable`), 'lists the healthy release');
  },
);

interface WebhookConfig {
  webhooks: { namespaceSelector: { matchExpressions?: { key: string; values?: string[] }[] } }[];
}

/**
 * The shared webhook stops seeing one namespace, as if unreachable for its requests; undone by the
 * returned function.
 */
async function webhookBlindTo(ns: string): Promise<() => Promise<void>> {
  const exclude = { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: [ns] };
  await kubectl([
    'patch',
    'mutatingwebhookconfiguration',
    'weir',
    '--type=json',
    '-p',
    JSON.stringify([{ op: 'add', path: '/webhooks/0/namespaceSelector/matchExpressions/-', value: exclude }]),
  ]);
  return async () => {
    const config = await getJson<WebhookConfig>(['get', 'mutatingwebhookconfiguration', 'weir']);
    const index = config.webhooks[0]?.namespaceSelector.matchExpressions?.findIndex((e) => e.values?.[0] === ns) ?? -1;
    if (index >= 0)
      await kubectl([
        'patch',
        'mutatingwebhookconfiguration',
        'weir',
        '--type=json',
        '-p',
        JSON.stringify([{ op: 'remove', path: `/webhooks/0/namespaceSelector/matchExpressions/${index}` }]),
      ]);
  };
}

t.test(
  'an update admitted while the webhook could not see it: an Unguarded warning, the metric, and weir get says so',
  async (t) => {
    const state = await cluster();
    const ns = await namespace(t, { optIn: true });
    await apply(ns, service('web', { rps: 20 }));
    await apply(ns, deployment('web', { replicas: 1, image: 'example.com/web:v1', annotations: fast }));
    await setImage(ns, 'web', 'example.com/web:v2');
    await waitForPhase(ns, 'web', 'Stable');
    const before = await analyzerMetric(state.analyzerUrl ?? '', 'weir_unguarded_updates_total');
    const restore = await webhookBlindTo(ns);
    t.teardown(restore);
    const v3 = JSON.stringify({
      spec: { template: { spec: { containers: [{ name: 'app', image: 'example.com/web:v3' }] } } },
    });
    await waitFor(
      'the webhook no longer answering for the namespace',
      async () => {
        const dry = await getJson<{ metadata: { annotations?: Record<string, string> } }>([
          'patch',
          'deployment',
          'web',
          '-n',
          ns,
          '--type=strategic',
          '--dry-run=server',
          '-p',
          v3,
        ]);
        return dry.metadata.annotations?.['weir.dev/phase'] === 'Stable';
      },
      30_000,
      500,
    );
    await kubectl(['patch', 'deployment', 'web', '-n', ns, '--type=strategic', '-p', v3]);
    await restore();
    await waitFor(
      'an Unguarded warning',
      async () => (await events(ns, 'web')).some((e) => e.type === 'Warning' && e.reason === 'Unguarded'),
      30_000,
      500,
    );
    t.ok(
      (await analyzerMetric(state.analyzerUrl ?? '', 'weir_unguarded_updates_total')) > before,
      'counted in weir_unguarded_updates_total',
    );
    const get = await runWeir(['get', 'web', '-n', ns]);
    t.match(get.stdout, /Unguarded:\s+revision \w+ was admitted while weir's webhook was unreachable/);
    const all = await runWeir(['get', '-n', ns]);
    t.match(all.stdout, /web\s+Stable \(unguarded\)/);
  },
);
