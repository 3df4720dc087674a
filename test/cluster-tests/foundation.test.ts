// Issue 2's acceptance: the local cluster behaves like a real one, and the mesh simulator
// routes by the live Istio config (as istiod pushes it, by default) and reports Istio's metrics.
import t from 'tap';
import { request } from 'undici';
import {
  apply,
  cluster,
  deployment,
  getJson,
  kubectl,
  kubectlRaw,
  namespace,
  promQuery,
  readyPods,
  service,
  waitFor,
} from '../helpers/kube.ts';

t.test('a Deployment of 3 replicas gets a ReplicaSet and 3 Ready pods', async (t) => {
  const ns = await namespace(t);
  await apply(ns, deployment('web', { replicas: 3 }));
  await waitFor('3 Ready pods', async () => (await readyPods(ns, 'app=web')) === 3, 60_000);
  const rs = await getJson<{ items: { metadata: { ownerReferences?: { kind: string; name: string }[] } }[] }>([
    'get',
    'rs',
    '-n',
    ns,
  ]);
  t.equal(rs.items.length, 1, 'one ReplicaSet');
  t.equal(rs.items[0]?.metadata.ownerReferences?.[0]?.name, 'web', 'owned by the Deployment');
});

const virtualService = (weight: unknown): Record<string, unknown> => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name: 'web' },
  spec: { hosts: ['web'], http: [{ name: 'primary', route: [{ destination: { host: 'web', subset: 'a' }, weight }] }] },
});

t.test("Istio's real CRD schema rejects an invalid VirtualService and accepts a valid one", async (t) => {
  const ns = await namespace(t);
  const bad = await kubectlRaw(['apply', '-n', ns, '-f', '-'], JSON.stringify(virtualService('eighty')));
  t.not(bad.code, 0, 'a weight given as a string is rejected');
  t.match(bad.stderr, /weight/, 'the error names the field');
  const good = await kubectlRaw(['apply', '-n', ns, '-f', '-'], JSON.stringify(virtualService(100)));
  t.equal(good.code, 0, good.stderr);
});

function destinationRule(subsets: Record<string, Record<string, string>>): Record<string, unknown> {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'DestinationRule',
    metadata: { name: 'web' },
    spec: { host: 'web', subsets: Object.entries(subsets).map(([name, labels]) => ({ name, labels })) },
  };
}

/** The VirtualService `web` for host `web`, with these HTTP routes. */
const webVs = (http: Record<string, unknown>[]): Record<string, unknown> => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name: 'web' },
  spec: { hosts: ['web'], http },
});

const splitVs = (weights: Record<string, number>): Record<string, unknown> =>
  webVs([
    {
      name: 'primary',
      route: Object.entries(weights).map(([subset, weight]) => ({ destination: { host: 'web', subset }, weight })),
    },
  ]);

t.test('the mesh splits traffic by VirtualService weights and reports 5xx per workload', async (t) => {
  const ns = await namespace(t);
  const rates = { 'web-a': 0.05, 'web-b': 0.4 };
  for (const [name, rate] of Object.entries(rates)) {
    const track = name.slice(-1);
    await apply(
      ns,
      deployment(name, {
        replicas: 2,
        labels: { app: 'web', track },
        selector: { app: 'web', track },
        podAnnotations: { 'sim.weir.dev/error-rate': String(rate) },
      }),
    );
  }
  await apply(ns, destinationRule({ a: { track: 'a' }, b: { track: 'b' } }));
  await apply(ns, splitVs({ a: 80, b: 20 }));
  await waitFor('4 Ready pods', async () => (await readyPods(ns, 'app=web')) === 4, 60_000);
  await apply(ns, service('web', { rps: 300 }));
  const sel = `reporter="destination",destination_workload_namespace="${ns}"`;
  let byWorkload = new Map<string, { all: number; errors: number }>();
  await waitFor(
    '3000 requests in Prometheus',
    async () => {
      const samples = await promQuery(`sum by (destination_workload, response_code) (istio_requests_total{${sel}})`);
      byWorkload = new Map();
      for (const s of samples) {
        const w = byWorkload.get(s.metric.destination_workload ?? '') ?? { all: 0, errors: 0 };
        w.all += s.value;
        if ((s.metric.response_code ?? '').startsWith('5')) w.errors += s.value;
        byWorkload.set(s.metric.destination_workload ?? '', w);
      }
      return [...byWorkload.values()].reduce((n, w) => n + w.all, 0) >= 3000;
    },
    120_000,
    1000,
  );
  const a = byWorkload.get('web-a');
  const b = byWorkload.get('web-b');
  if (!a || !b) return t.fail(`both workloads report: ${JSON.stringify([...byWorkload])}`);
  const total = a.all + b.all;
  // Binomial noise at these counts is < 1 percentage point for the split; 3 points is safe.
  t.ok(Math.abs(a.all / total - 0.8) < 0.03, `split ${(a.all / total).toFixed(3)} is 0.80 ± 0.03`);
  t.ok(
    Math.abs(a.errors / a.all - rates['web-a']) < 0.03,
    `web-a 5xx ratio ${(a.errors / a.all).toFixed(3)} is 0.05 ± 0.03`,
  );
  t.ok(
    Math.abs(b.errors / b.all - rates['web-b']) < 0.08,
    `web-b 5xx ratio ${(b.errors / b.all).toFixed(3)} is 0.40 ± 0.08`,
  );
  const rate = (filter: string): string => `sum by (destination_workload) (rate(istio_requests_total{${filter}}[30s]))`;
  const ratio = await promQuery(`${rate(`${sel},response_code=~"5.."`)} / ${rate(sel)}`);
  t.equal(ratio.length, 2, 'the usual 5xx-ratio PromQL answers per workload');
});

t.test('a subset with no Ready pod answers 503 with response_flags UH', async (t) => {
  const ns = await namespace(t);
  await apply(ns, deployment('web', { replicas: 1, labels: { app: 'web', track: 'a' } }));
  await apply(ns, destinationRule({ a: { track: 'a' }, empty: { track: 'nobody' } }));
  await apply(ns, splitVs({ empty: 100 }));
  await apply(ns, service('web', { rps: 50 }));
  await waitFor(
    'UH 503s in Prometheus',
    async () => {
      const uh = await promQuery(
        `sum(istio_requests_total{destination_service_namespace="${ns}",response_code="503",response_flags="UH"})`,
      );
      return (uh[0]?.value ?? 0) > 0;
    },
    60_000,
    1000,
  );
  const ok = await promQuery(`sum(istio_requests_total{destination_service_namespace="${ns}",response_code="200"})`);
  t.equal(ok.length, 0, 'no request reached a pod');
  t.pass('the no-healthy-upstream 503s are reported with UH');
  await kubectl(['delete', 'virtualservice', 'web', '-n', ns]);
});

t.test('the first matching route wins: path and header matches, in the order written', async (t) => {
  const ns = await namespace(t);
  for (const track of ['a', 'b', 'c'])
    await apply(
      ns,
      deployment(`web-${track}`, { replicas: 1, labels: { app: 'web', track }, selector: { app: 'web', track } }),
    );
  await apply(ns, destinationRule({ a: { track: 'a' }, b: { track: 'b' }, c: { track: 'c' } }));
  const to = (subset: string): Record<string, unknown>[] => [{ destination: { host: 'web', subset } }];
  await apply(
    ns,
    webVs([
      { name: 'testers', match: [{ headers: { 'x-tester': { exact: 'yes' } } }], route: to('c') },
      { name: 'admin', match: [{ uri: { prefix: '/admin' } }], route: to('b') },
      // Never reached by /admin: the route above matches first.
      { name: 'admin-shadowed', match: [{ uri: { exact: '/admin/x' } }], route: to('c') },
      { name: 'rest', route: to('a') },
    ]),
  );
  await waitFor('3 Ready pods', async () => (await readyPods(ns, 'app=web')) === 3, 60_000);
  await apply(ns, service('web', { rps: 0 }));
  const host = `web.${ns}.svc.cluster.local`;
  const send = async (path: string, header?: string): Promise<string | undefined> => {
    const query = new URLSearchParams({ host, path, ...(header ? { header } : {}) });
    const res = await request(`${(await cluster()).meshUrl}/request?${query.toString()}`);
    return ((await res.body.json()) as { workload?: string }).workload;
  };
  // The proxies learn the route a moment after the apply: wait until the catch-all answers.
  await waitFor('the route at the proxy', async () => (await send('/')) === 'web-a', 30_000, 200);
  t.equal(await send('/admin/x'), 'web-b', 'the prefix route before the exact one takes /admin/x');
  t.equal(await send('/admin/x', 'x-tester=yes'), 'web-c', 'the header route, written first, wins over the path');
  t.equal(await send('/other'), 'web-a', 'the route without a match takes the rest');
});
