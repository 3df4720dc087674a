// Issue 13's narrowing (ADR 14): the analyzer caches only the namespaces it serves, and a release
// holding a step costs no API reads — everything it decides on comes from its watches.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { apply, deployment, kubectl, kubectlRaw, namespace, service, waitFor } from '../helpers/kube.ts';
import {
  apiReads as reads,
  fast,
  metricSamples as samples,
  releaseStatus,
  setImage,
  startAnalyzer,
  waitForWeight,
} from '../helpers/release.ts';

t.test('only served namespaces are cached; a release holding a step sends no API reads', async (t) => {
  const scope = randomBytes(4).toString('hex');
  const served = await namespace(t, { optIn: true });
  const notOptedIn = await namespace(t);
  for (const ns of [served, notOptedIn]) await kubectl(['label', 'namespace', ns, `weir.dev/test-analyzer=${scope}`]);
  // Twenty Deployments that are not under weir, with no pods to schedule.
  for (let i = 0; i < 20; i++) await apply(notOptedIn, deployment(`idle-${i}`, { replicas: 0 }));
  await apply(served, service('web', { rps: 50 }));
  const annotations = { ...fast, 'weir.dev/step-pause': '60s' };
  await apply(served, deployment('web', { replicas: 2, image: 'example.com/web:v1', annotations }));
  const analyzer = await startAnalyzer({ scope, identity: `scale-${scope}` });
  t.teardown(() => analyzer.kill());
  const cached = async (kind: string): Promise<number | undefined> =>
    (await samples(analyzer.url, 'weir_cached_objects')).find((s) => s.labels.kind === kind)?.value;
  await waitFor('the caches filled', async () => (await cached('Deployment')) === 1, 30_000);
  t.equal(
    await cached('Service'),
    (await kubectl(['get', 'services', '-n', served, '-o', 'name'])).trim().split('\n').length,
  );

  await setImage(served, 'web', 'example.com/web:v2');
  await waitForWeight(served, 'web', 10);
  await waitFor(
    'the canary and its first check',
    async () => (await releaseStatus(served, 'web'))?.lastCheckAt !== undefined,
    30_000,
  );
  t.equal(await cached('Deployment'), 2, 'the Deployment and its canary half: nothing of the other namespace');
  const before = await reads(analyzer.url);
  const checked = (await releaseStatus(served, 'web'))?.lastCheckAt;
  // Two more checks (every 2 s) on a step that holds for 60 s: several ticks of steady state.
  await waitFor(
    'two more checks',
    async () => {
      const status = await releaseStatus(served, 'web');
      return status?.lastCheckAt !== checked && (status?.checks.length ?? 0) >= 3;
    },
    30_000,
  );
  t.same(await reads(analyzer.url), before, 'no GET or LIST of any release object while the step holds');
  // Every request counted is timed too: in one scrape (no write in flight), its duration histogram
  // counts the same writes.
  const patches = async (): Promise<{ sent?: number; timed?: number }> => {
    const lines = (await (await request(`${analyzer.url}/metrics`)).body.text()).split('\n');
    const value = (name: string): number | undefined => {
      const line = lines.find(
        (l) => l.startsWith(`${name}{`) && l.includes('method="PATCH"') && l.includes('resource="deployments"'),
      );
      return line === undefined ? undefined : Number(line.split(' ').pop());
    };
    return { sent: value('weir_api_requests_total'), timed: value('weir_api_request_duration_seconds_count') };
  };
  let last: { sent?: number; timed?: number } = {};
  await waitFor(
    'each write timed',
    async () => {
      last = await patches();
      return (last.sent ?? 0) > 0 && last.timed === last.sent;
    },
    10_000,
  ).catch(() => undefined);
  t.ok((last.sent ?? 0) > 0, `the release's record was written (${last.sent ?? 0} PATCHes)`);
  t.equal(last.timed, last.sent, 'and each of those writes was timed');
  t.equal((await releaseStatus(served, 'web'))?.weight, 10, 'still holding the step');
});

t.test('a VirtualService edited by hand mid-step is seen through its watch, not at the next check', async (t) => {
  const scope = randomBytes(4).toString('hex');
  const served = await namespace(t, { optIn: true });
  await kubectl(['label', 'namespace', served, `weir.dev/test-analyzer=${scope}`]);
  await apply(served, service('web', { rps: 20 }));
  // A check a minute and a resync every ten: nothing but the watch can wake the release sooner.
  const annotations = { ...fast, 'weir.dev/step-pause': '10m', 'weir.dev/interval': '60s' };
  await apply(served, deployment('web', { replicas: 2, image: 'example.com/web:v1', annotations }));
  const analyzer = await startAnalyzer({ scope, identity: `watch-${scope}`, env: { WEIR_RESYNC: '10m' } });
  t.teardown(() => analyzer.kill());
  await setImage(served, 'web', 'example.com/web:v2');
  await waitForWeight(served, 'web', 10);
  const stepStarted = Date.parse((await releaseStatus(served, 'web'))?.stepStartedAt ?? '');
  // `kubectl replace` of the route with the canary at 0 % and without weir's record: the webhook
  // has nothing to keep, so the change lands as a person made it.
  const vs = JSON.parse(await kubectl(['get', 'virtualservice', 'weir-web', '-n', served, '-o', 'json'])) as {
    metadata: { annotations?: Record<string, string>; resourceVersion?: string };
    spec: { http: { route: { destination: { subset: string }; weight: number }[] }[] };
  };
  delete vs.metadata.annotations?.['weir.dev/weights'];
  for (const r of vs.spec.http[0]?.route ?? []) r.weight = r.destination.subset.endsWith('canary') ? 0 : 100;
  await kubectlRaw(['replace', '-n', served, '-f', '-'], JSON.stringify(vs));
  const edited = Date.now();
  await waitForWeight(served, 'web', 10, 20_000);
  const status = await releaseStatus(served, 'web');
  t.ok(
    Date.now() < stepStarted + 60_000,
    `put back ${Date.now() - edited} ms after the edit, before any check was due`,
  );
  t.equal(status?.checks.length ?? 0, 0, 'no check ran: the watch woke the release, not the check timer');
});
