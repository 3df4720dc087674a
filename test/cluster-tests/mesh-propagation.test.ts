// Issue 18's acceptance on the local cluster, routing by what istiod pushes: the subset weir makes
// reaches the mesh client's proxy before any route sends it a request, and a DestinationRule the
// user changes mid-step reaches the proxies by istiod's push while every request is answered.
import t from 'tap';
import { request } from 'undici';
import { apply, cluster, countUhFromNow, deployment, kubectl, namespace, service, waitFor } from '../helpers/kube.ts';
import { seedDeployment, seedMesh } from '../../demo/seed.ts';
import { fast, releaseStatus, setImage, waitForWeight } from '../helpers/release.ts';
import { policyAnnotations } from '../../contract/names.ts';

/** What the simulator's proxies hold: when each cluster first reached them, and when a route first used it. */
interface ProxyTimes {
  pushedAt: number;
  clusters: Record<string, number>;
  routed: Record<string, number>;
}

async function proxies(): Promise<Record<string, ProxyTimes>> {
  const res = await request(`${(await cluster()).meshUrl}/xds`);
  if (res.statusCode !== 200) throw new Error(`the simulator does not route by istiod (/xds: ${res.statusCode})`);
  return (await res.body.json()) as Record<string, ProxyTimes>;
}

const ingress = 'router:istio-system/istio-ingressgateway';

t.test('the local cluster routes by istiod', async (t) => {
  t.equal((await cluster()).meshRouting, 'istiod', 'npm test routes by istiod unless WEIR_MESH_ROUTING=local');
  const held = await proxies();
  t.ok(held.mesh, "the mesh client's sidecar has its config");
  t.ok(held[ingress], "the ingress gateway's proxy has its config");
});

t.test("weir's canary subset reaches the mesh client's proxy before any route sends to it", async (t) => {
  const ns = await namespace(t, { optIn: true, mesh: true });
  await apply(ns, service('web', { rps: 40 }));
  await apply(ns, deployment('web', { replicas: 2, image: 'example.com/web:v1', annotations: fast }));
  const unrouted = await countUhFromNow(ns);
  await setImage(ns, 'web', 'example.com/web:v2');
  await waitForWeight(ns, 'web', 10);
  const route = (await releaseStatus(ns, 'web'))?.route;
  t.ok(route?.canarySubset, `the release names its canary subset (${route?.canarySubset ?? 'none'})`);
  const canary = `outbound|80|${route?.canarySubset ?? ''}|web.${ns}.svc.cluster.local`;
  // The weight is on the VirtualService now; the push that carries it reaches the proxy a moment later.
  await waitFor('a route of the mesh client sending to the canary', async () => {
    return (await proxies()).mesh?.routed[canary] !== undefined;
  });
  const mesh = (await proxies()).mesh;
  const seen = mesh?.clusters[canary] ?? Infinity;
  const routed = mesh?.routed[canary] ?? -Infinity;
  t.ok(seen < routed, `the canary's cluster arrived ${routed - seen} ms before the first route to it`);
  t.comment(`istiod pushed the canary subset ${routed - seen} ms before the weight that names it`);
  t.equal(await unrouted(), 0, 'no request met a subset the proxy did not have (NC) or an empty one (UH)');
});

t.test('a DestinationRule the user changes mid-step reaches the proxies by push; no request fails', async (t) => {
  const ns = await namespace(t, { optIn: true, mesh: true });
  const host = `myapp-${ns}.example.com`;
  // The seed's objects, with a host of this namespace's own (every seed test shares the gateway).
  const mesh = seedMesh(ns).map((o) => {
    const spec = o.spec as { hosts?: string[]; servers?: { hosts: string[] }[] };
    if (o.kind === 'VirtualService') return { ...o, spec: { ...spec, hosts: [host] } };
    if (o.kind === 'Gateway')
      return { ...o, spec: { ...spec, servers: spec.servers?.map((s) => ({ ...s, hosts: [host] })) } };
    return o;
  });
  for (const o of mesh) await apply(ns, o);
  const holding = { ...fast, [policyAnnotations.stepPause]: '10m' };
  await apply(ns, seedDeployment('v1', holding));
  const unrouted = await countUhFromNow(ns);
  await apply(ns, seedDeployment('v2', holding));
  await waitForWeight(ns, 'myapp', 10);
  const cluster = (subset: string): string => `outbound|8080|${subset}|myapp.${ns}.svc.cluster.local`;
  await waitFor('the gateway sending to the canary', async () => {
    return (await proxies())[ingress]?.routed[cluster('v2')] !== undefined;
  });
  const before = (await proxies())[ingress];

  // The user's change, applied as they would: a subset for the next version.
  const dr = mesh.find((o) => o.kind === 'DestinationRule') as { spec: { subsets: unknown[] } };
  const changed = {
    ...dr,
    spec: { ...dr.spec, subsets: [...dr.spec.subsets, { name: 'v3', labels: { version: 'v3' } }] },
  };
  const applied = Date.now();
  await kubectl(['apply', '-n', ns, '-f', '-'], JSON.stringify(changed));
  await waitFor('the new subset at the gateway', async () => {
    return (await proxies())[ingress]?.clusters[cluster('v3')] !== undefined;
  });
  const after = (await proxies())[ingress];
  const arrived = after?.clusters[cluster('v3')] ?? Infinity;
  t.ok(arrived >= applied, `istiod's push reached the gateway ${arrived - applied} ms after the apply`);
  t.comment(`a DestinationRule change reached the gateway's proxy ${arrived - applied} ms after kubectl apply`);
  t.equal(after?.clusters[cluster('v2')], before?.clusters[cluster('v2')], "the canary's cluster never left the proxy");
  t.equal(after?.routed[cluster('v2')], before?.routed[cluster('v2')], 'nor did its route');
  const status = await releaseStatus(ns, 'myapp');
  t.equal(status?.weight, 10, 'the step holds its weight');
  t.equal(await unrouted(), 0, 'no request met a missing (NC) or empty (UH) subset');
});
