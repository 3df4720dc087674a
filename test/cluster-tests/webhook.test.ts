// Issue 3's acceptance on the local control plane: the API server calls weir's webhook over TLS.
import t from 'tap';
import type { Test } from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { Agent, request } from 'undici';
import { apply, deployment, getJson, kubectl, kubectlRaw, namespace, waitFor } from '../helpers/kube.ts';
import { freePort, repoRoot } from '../cluster/cluster.ts';
import { buildApp } from '../../webhook/app.ts';
import { writeWebhookCerts } from '../../certs/main.ts';
import { webhookConfiguration } from '../../webhook/registration.ts';

interface Dep {
  metadata: { generation: number; annotations?: Record<string, string> };
  spec: { paused?: boolean; replicas: number; template: { metadata: { labels: Record<string, string> } } };
  status?: { observedGeneration?: number; readyReplicas?: number };
}
interface RsList {
  items: { metadata: { name: string } }[];
}

const get = (ns: string): Promise<Dep> => getJson<Dep>(['get', 'deployment', 'web', '-n', ns]);
const replicaSets = async (ns: string): Promise<RsList['items']> =>
  (await getJson<RsList>(['get', 'rs', '-n', ns])).items;
/** The Deployment controller has seen the latest spec: what it did (or did not do) is final. */
const observed = (ns: string): Promise<void> =>
  waitFor(
    'the Deployment controller to observe the change',
    async () => {
      const d = await get(ns);
      return d.status?.observedGeneration === d.metadata.generation;
    },
    30_000,
  );
const v = (image: string, replicas = 2): Record<string, unknown> => deployment('web', { image, replicas });

/**
 * Registers a webhook at `url` for `ns` alone (a private label selects it), so other tests keep
 * the shared weir; removed with the test.
 */
async function privateRegistration(
  t: Test,
  ns: string,
  caBundle: string,
  url: string,
  failurePolicy?: 'Fail',
): Promise<void> {
  const id = randomBytes(4).toString('hex');
  await kubectl(['label', 'namespace', ns, `weir-test-${id}=on`]);
  const config = webhookConfiguration({
    name: `weir-${id}`,
    caBundle,
    ...(failurePolicy ? { failurePolicy } : {}),
    target: { url },
  }) as { webhooks: { namespaceSelector: unknown }[] };
  for (const w of config.webhooks) w.namespaceSelector = { matchLabels: { [`weir-test-${id}`]: 'on' } };
  await apply(ns, config);
  t.teardown(() => kubectl(['delete', 'mutatingwebhookconfiguration', `weir-${id}`, '--ignore-not-found']));
}

/**
 * weir's webhook served in this process with a fresh certificate, registered for a namespace of
 * its own, and answering (a probe Deployment got the track label). `onMutate` sees every review.
 */
async function inProcessWebhook(
  t: Test,
  onMutate: () => void = () => undefined,
): Promise<{ ns: string; close: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-private-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { caBundle } = await writeWebhookCerts(dir, 'weir', 'weir-system', ['127.0.0.1']);
  const app = buildApp({ tls: { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') }, logger: false });
  // The API server adds `?timeout=…` to the path.
  app.addHook('onRequest', async (request) => {
    if (request.url.split('?')[0] === '/mutate') onMutate();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => (closed ??= app.close());
  t.teardown(close);
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const ns = await namespace(t);
  await privateRegistration(t, ns, caBundle, `https://127.0.0.1:${port}/mutate`);
  await waitFor(
    'the private webhook to be called',
    async () => {
      await kubectl(['delete', 'deployment', 'probe', '-n', ns, '--ignore-not-found']);
      await apply(ns, deployment('probe'));
      const d = await getJson<Dep>(['get', 'deployment', 'probe', '-n', ns]);
      return d.spec.template.metadata.labels['weir.dev/track'] === 'stable';
    },
    30_000,
    500,
  );
  return { ns, close };
}

t.test('in an opted-in namespace: stamp, hold, record, pass replicas, end on revert', async (t) => {
  const ns = await namespace(t, { optIn: true });
  await apply(ns, v('example.com/web:v1'));
  t.equal((await get(ns)).spec.template.metadata.labels['weir.dev/track'], 'stable', 'CREATE stamps the stable track');
  await observed(ns);
  const [stableRs] = await replicaSets(ns);

  await apply(ns, v('example.com/web:v2'));
  const held = await get(ns);
  t.equal(held.spec.paused, true, 'a new image pauses the Deployment');
  t.equal(held.metadata.annotations?.['weir.dev/phase'], 'Progressing');
  t.ok(held.metadata.annotations?.['weir.dev/canary-revision'], 'the canary revision is recorded');
  await observed(ns);
  const during = await replicaSets(ns);
  t.same(
    during.map((rs) => rs.metadata.name),
    [stableRs?.metadata.name],
    'no new ReplicaSet: pods stay on the stable one',
  );

  await apply(ns, v('example.com/web:v2', 3));
  const scaled = await get(ns);
  t.equal(scaled.spec.replicas, 3, 'a replicas-only change passes');
  t.equal(
    scaled.metadata.annotations?.['weir.dev/canary-revision'],
    held.metadata.annotations?.['weir.dev/canary-revision'],
    'and is not a release',
  );
  t.equal(
    scaled.metadata.annotations?.['weir.dev/release-started'],
    held.metadata.annotations?.['weir.dev/release-started'],
  );

  await apply(ns, v('example.com/web:v1', 3));
  const reverted = await get(ns);
  t.notOk(reverted.spec.paused, 'a revert unpauses');
  t.equal(reverted.metadata.annotations?.['weir.dev/phase'], 'Stable', 'and ends the release');
  await observed(ns);
  t.equal((await replicaSets(ns)).length, 1, 'still one ReplicaSet: nothing rolled');
});

t.test('a namespace without the label is left alone', async (t) => {
  const ns = await namespace(t);
  await apply(ns, v('example.com/web:v1'));
  await apply(ns, v('example.com/web:v2'));
  const d = await get(ns);
  t.notOk(d.spec.template.metadata.labels['weir.dev/track'], 'no label');
  t.notOk(d.spec.paused, 'not paused');
  t.notOk(d.metadata.annotations?.['weir.dev/phase'], 'no release');
});

t.test('kubectl apply --dry-run=server and --server-side both work', async (t) => {
  const ns = await namespace(t, { optIn: true });
  await apply(ns, v('example.com/web:v1'));
  const dry = JSON.parse(await apply(ns, v('example.com/web:v2'), ['--dry-run=server', '-o', 'json'])) as Dep;
  t.equal(dry.spec.paused, true, 'the dry run shows the answer');
  t.equal(dry.metadata.annotations?.['weir.dev/phase'], 'Progressing');
  t.notOk((await get(ns)).spec.paused, 'and stores nothing');
  await apply(ns, v('example.com/web:v2'), ['--server-side', '--force-conflicts']);
  const ssa = await get(ns);
  t.equal(ssa.spec.paused, true, 'server-side apply starts the release');
  t.equal(ssa.spec.template.metadata.labels['weir.dev/track'], 'stable', 'and keeps the track label');
  // The analyzer records the release (annotations bump a Deployment's generation); with no Service
  // here it then holds quietly on a RoutingError, and nothing else writes.
  await waitFor('the analyzer holding', async () =>
    (await getJson<{ items: { reason: string }[] }>(['get', 'events', '-n', ns])).items.some(
      (e) => e.reason === 'RoutingError',
    ),
  );
  const generation = (await get(ns)).metadata.generation;
  await apply(ns, v('example.com/web:v2'), ['--server-side', '--force-conflicts']);
  t.equal((await get(ns)).metadata.generation, generation, 're-applying the same manifest changes nothing');
});

t.test('with the webhook stopped, kubectl apply still succeeds (failurePolicy Ignore)', async (t) => {
  const { ns, close } = await inProcessWebhook(t);
  await close();
  await apply(ns, v('example.com/web:v1'));
  await apply(ns, v('example.com/web:v2'));
  t.equal(
    ((await get(ns)).spec.template as unknown as { spec: { containers: { image: string }[] } }).spec.containers[0]
      ?.image,
    'example.com/web:v2',
    'the update is stored',
  );
  t.notOk((await get(ns)).spec.paused, 'the update went through unguarded rather than blocked');
});

t.test(
  'SIGTERM: the webhook reports not-ready and keeps answering the API server through its drain, then exits',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-drain-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const { caBundle } = await writeWebhookCerts(dir, 'weir', 'weir-system', ['127.0.0.1']);
    const port = await freePort();
    const child = spawn(join(repoRoot, 'node_modules/.bin/node'), [join(repoRoot, 'webhook/main.ts')], {
      env: {
        ...process.env,
        WEIR_TLS_CERT: join(dir, 'tls.crt'),
        WEIR_TLS_KEY: join(dir, 'tls.key'),
        WEIR_PORT: String(port),
        WEIR_HOST: '127.0.0.1',
        WEIR_DRAIN_SECONDS: '6',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    t.teardown(() => child.kill('SIGKILL'));
    const dispatcher = new Agent({ connect: { ca: await readFile(join(dir, 'ca.crt'), 'utf8') } });
    t.teardown(() => dispatcher.close());
    const readyz = async (): Promise<number> =>
      (await request(`https://127.0.0.1:${port}/readyz`, { dispatcher })).statusCode;
    await waitFor('the webhook ready', async () => (await readyz()) === 200, 30_000, 200);
    // A private registration that fails closed: an admission this webhook does not answer fails the apply.
    const ns = await namespace(t);
    await privateRegistration(t, ns, caBundle, `https://127.0.0.1:${port}/mutate`, 'Fail');
    await waitFor(
      'the private webhook answering',
      async () => {
        await apply(ns, v('example.com/web:v0'));
        return (await get(ns)).spec.template.metadata.labels['weir.dev/track'] === 'stable';
      },
      30_000,
      300,
    );
    const results: { code: number; draining: boolean }[] = [];
    let draining = false;
    let running = true;
    const loop = (async () => {
      for (let i = 1; running; i++) {
        const r = await kubectlRaw(['apply', '-n', ns, '-f', '-'], JSON.stringify(v(`example.com/web:v${i}`)));
        results.push({ code: r.code, draining });
      }
    })();
    await waitFor('a few applies', () => Promise.resolve(results.length >= 3), 30_000, 100);
    child.kill('SIGTERM');
    await waitFor('not ready while draining', async () => (await readyz()) === 503, 5_000, 100);
    draining = true;
    const before = results.length;
    await waitFor('applies during the drain', () => Promise.resolve(results.length >= before + 3), 5_000, 100);
    running = false;
    await loop;
    t.same(
      results.filter((r) => r.code !== 0),
      [],
      'no apply failed: every admission was answered',
    );
    t.ok(
      results.filter((r) => r.draining).length >= 3,
      `${results.filter((r) => r.draining).length} applies answered during the drain`,
    );
    t.equal(await exited, 0, 'then it exits cleanly');
  },
);

t.test('the API server itself skips weir for updates whose answer cannot be a patch (matchConditions)', async (t) => {
  let calls = 0;
  const { ns } = await inProcessWebhook(t, () => calls++);
  // Admission is part of the request: when kubectl returns, weir was called or it never will be.
  await apply(ns, v('example.com/web:v1'));
  const callsAfter = async (what: string, change: () => Promise<unknown>): Promise<number> => {
    const before = calls;
    await change();
    t.comment(`${what}: ${calls - before} call(s)`);
    return calls - before;
  };
  const sideways = (...args: string[]): Promise<string> => kubectl([...args, '-n', ns]);
  t.equal(await callsAfter('a label', () => sideways('label', 'deployment', 'web', 'team=a')), 0, 'a label: no call');
  t.equal(
    await callsAfter('a foreign annotation', () => sideways('annotate', 'deployment', 'web', 'example.com/note=x')),
    0,
    "another tool's annotation: no call",
  );
  const manifest = JSON.stringify(v('example.com/web:v1'));
  t.equal(
    await callsAfter('an unchanged server-side apply', () =>
      kubectlRaw(['apply', '--server-side', '--field-manager', 'flux', '-n', ns, '-f', '-'], manifest),
    ),
    0,
    'a server-side apply of the same manifest by another manager: no call',
  );
  t.equal(
    await callsAfter('a weir annotation', () => sideways('annotate', 'deployment', 'web', 'weir.dev/canary=disabled')),
    1,
    'a weir.dev/ annotation: called',
  );
  await sideways('annotate', 'deployment', 'web', 'weir.dev/canary-');
  t.equal(
    await callsAfter('scale', () => sideways('scale', 'deployment', 'web', '--replicas=3')),
    0,
    'the scale subresource: no call',
  );
  t.equal(
    await callsAfter('a new image', () => apply(ns, v('example.com/web:v2', 3))),
    1,
    'a template change: called, and the release starts',
  );
  t.equal((await get(ns)).metadata.annotations?.['weir.dev/phase'], 'Progressing');
});
