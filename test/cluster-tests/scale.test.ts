// Issue 13's narrowing (ADR 14): the analyzer caches only the namespaces it serves, and a release
// holding a step costs no API reads — everything it decides on comes from its watches, and so do
// the writes that move it on, fenced by the resourceVersion of the view they were computed from.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { IstioRouter } from '../../analyzer/adapters/istio.ts';
import type { VirtualService } from '../../analyzer/adapters/istio.ts';
import type { MeshTarget } from '../../analyzer/ports/router.ts';
import { Rest, accessFromKubeconfig, customApi } from '../../analyzer/loop/rest.ts';
import { isConflict } from '../../contract/api.ts';
import { apply, cluster, deployment, kubectl, kubectlRaw, namespace, service, waitFor } from '../helpers/kube.ts';
import {
  apiReads as reads,
  fast,
  metricSamples as samples,
  releaseStatus,
  setImage,
  startAnalyzer,
  waitForPhase,
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
  const before = await reads(analyzer.url);
  // Passes in a row on a step that holds for 60 s: several ticks of steady state. A pass after a
  // pass is kept by the analyzer, not written (ADR 26): the record moves when something must change.
  const checks = async (): Promise<{ pass: number; other: number }> => {
    const all = await samples(analyzer.url, 'weir_checks_total');
    const sum = (pass: boolean): number =>
      all.filter((s) => (s.labels.result === 'pass') === pass).reduce((n, s) => n + s.value, 0);
    return { pass: sum(true), other: sum(false) };
  };
  // The window opens after a pass (the first pass after anything else is written) and closes
  // three passes later; a check of another verdict opens it again.
  let start: { pass: number; other: number; sent: number } | undefined;
  let afterPass = false;
  await waitFor(
    'three passes in a row',
    async () => {
      const c = await checks();
      const sent = (await patches()).sent ?? 0;
      if (!start || c.other !== start.other || (!afterPass && c.pass > start.pass)) {
        afterPass = start !== undefined && c.other === start.other;
        start = { ...c, sent };
        return false;
      }
      return afterPass && c.pass >= start.pass + 3;
    },
    45_000,
  );
  t.same(await reads(analyzer.url), before, 'no GET or LIST of any release object while the step holds');
  t.equal((await patches()).sent ?? 0, start?.sent, 'and no write: the passes after a pass are kept, not recorded');
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

t.test(
  'a release moves through its steps without reading its routing objects: writes come from the view',
  async (t) => {
    const scope = randomBytes(4).toString('hex');
    const served = await namespace(t, { optIn: true });
    await kubectl(['label', 'namespace', served, `weir.dev/test-analyzer=${scope}`]);
    await apply(served, service('web', { rps: 50 }));
    await apply(served, deployment('web', { replicas: 2, image: 'example.com/web:v1', annotations: fast }));
    const analyzer = await startAnalyzer({ scope, identity: `steps-${scope}` });
    t.teardown(() => analyzer.kill());
    const pods = async (): Promise<number> => (await reads(analyzer.url)).pods ?? 0;
    const podsBefore = await pods();
    await setImage(served, 'web', 'example.com/web:v2');
    await waitForWeight(served, 'web', 10);
    t.equal(
      (await pods()) - podsBefore,
      1,
      'its stable pods listed once while the canary came up: none lacked the label, so none could',
    );
    const routing = async (): Promise<number> => {
      const r = await reads(analyzer.url);
      return (r.virtualservices ?? 0) + (r.destinationrules ?? 0);
    };
    const before = await routing();
    const d = await waitForPhase(served, 'web', 'Stable');
    t.match(d.metadata.annotations?.['weir.dev/reason'], /^Promoted/);
    t.equal(await routing(), before, 'weights 50 and 100, and the subsets retired: no GET of a routing object');
  },
);

t.test('a write computed from a view that is behind loses its guard; that object is then read fresh', async (t) => {
  const ns = await namespace(t);
  const vs: VirtualService = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'web' },
    spec: {
      hosts: ['web'],
      http: [{ name: 'primary', route: [{ destination: { host: 'web', subset: 'stable' }, weight: 100 }] }],
    },
  };
  await apply(ns, vs);
  const get = async (): Promise<VirtualService> =>
    JSON.parse(await kubectl(['get', 'virtualservice', 'web', '-n', ns, '-o', 'json'])) as VirtualService;
  let view = await get();
  // Someone edits the route after the watch's view was taken, and the view has not caught up.
  await kubectl(['annotate', 'virtualservice', 'web', '-n', ns, 'team.example.com/owner=payments']);
  const sent: string[] = [];
  const rest = new Rest(accessFromKubeconfig((await cluster()).kubeconfig), {
    timeoutMs: 10_000,
    onRequest: (method, resource) => sent.push(`${method} ${resource}`),
  });
  const router = new IstioRouter(customApi(rest));
  router.useCache((plural) => (plural === 'virtualservices' ? view : undefined));
  const target: MeshTarget = {
    kind: 'VirtualService',
    namespace: ns,
    route: 'primary',
    virtualService: 'web',
    destinationRule: 'web',
    stableSubset: 'stable',
    canarySubset: 'canary',
  };
  const canaryWeight = (v: VirtualService): number | undefined =>
    v.spec?.http?.[0]?.route?.find((r) => r.destination?.subset === 'canary')?.weight;

  const lost = await router.steer(target, { weight: 10 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(isConflict(lost), `the fence held: ${String(lost)}`);
  t.same(sent, ['PATCH virtualservices'], 'computed from the view: no read');
  const untouched = await get();
  t.equal(canaryWeight(untouched), undefined, 'nothing landed from the stale view');
  t.equal(untouched.metadata?.annotations?.['team.example.com/owner'], 'payments', "the other's edit stands");

  sent.length = 0;
  await router.steer(target, { weight: 10 });
  t.same(sent, ['GET virtualservices', 'PATCH virtualservices'], 'the view lost: a fresh read, then the write');
  const steered = await get();
  t.equal(canaryWeight(steered), 10, 'the weight, on the current object');
  t.equal(steered.metadata?.annotations?.['team.example.com/owner'], 'payments', "and the other's edit kept");

  sent.length = 0;
  await router.steer(target, { weight: 50 });
  t.same(
    sent,
    ['GET virtualservices', 'PATCH virtualservices'],
    'fresh reads while the view shows the version that lost',
  );

  // The watch catches up.
  view = await get();
  sent.length = 0;
  await router.steer(target, { weight: 100 });
  t.same(sent, ['PATCH virtualservices'], 'once the view has moved on, writes come from it again');
  t.equal(canaryWeight(await get()), 100);
});
