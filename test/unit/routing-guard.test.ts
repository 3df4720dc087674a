// The routing objects weir steers keep weir's fields through a re-apply (issue 9, ADR 8): the
// webhook's pure guard, the contract's steering functions, and the analyzer's patch builders.
import t from 'tap';
import jsonPatch from 'fast-json-patch';
import { mutate } from '../../webhook/mutate.ts';
import type { AdmissionInput } from '../../webhook/mutate.ts';
import { keepSubsets, keepWeights, parseSubsets, steerWeight } from '../../contract/istio.ts';
import { parseWeights } from '../../contract/steering.ts';
import type { DestinationRule, VirtualService } from '../../contract/istio.ts';
import { readWeight, subsetPatch, subsetsInPlace, weightPatch } from '../../analyzer/adapters/istio.ts';
import type { MeshTarget } from '../../analyzer/ports/router.ts';
import { orphanedRoutes } from '../../analyzer/loop/orphans.ts';
import type { V1Deployment } from '@kubernetes/client-node';

const now = new Date('2026-11-28T12:00:00Z');
const host = 'myapp.shop.svc.cluster.local';

/** The seed's VirtualService as the user keeps it in git. */
function seedVs(weights: [number, number] = [100, 0], annotations?: Record<string, string>): VirtualService {
  return {
    apiVersion: 'networking.istio.io/v1alpha3',
    kind: 'VirtualService',
    metadata: {
      name: 'myapp-virtualservice',
      namespace: 'shop',
      resourceVersion: '7',
      ...(annotations ? { annotations } : {}),
    },
    spec: {
      hosts: ['myapp.example.com'],
      gateways: ['myapp-gateway'],
      http: [
        {
          name: 'primary',
          route: [
            { destination: { host, subset: 'v1' }, weight: weights[0] },
            { destination: { host, subset: 'v2' }, weight: weights[1] },
          ],
        },
      ],
    },
  };
}

function seedDr(annotations?: Record<string, string>): DestinationRule {
  return {
    apiVersion: 'networking.istio.io/v1alpha3',
    kind: 'DestinationRule',
    metadata: {
      name: 'myapp-destinationrule',
      namespace: 'shop',
      resourceVersion: '9',
      ...(annotations ? { annotations } : {}),
    },
    spec: {
      host,
      trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } },
      subsets: [
        { name: 'v1', labels: { version: 'v1' } },
        { name: 'v2', labels: { version: 'v2' } },
      ],
    },
  };
}

const target: MeshTarget = {
  kind: 'VirtualService',
  namespace: 'shop',
  virtualService: 'myapp-virtualservice',
  route: 'primary',
  destinationRule: 'myapp-destinationrule',
  stableSubset: 'v1',
  canarySubset: 'v2',
};
const weightsAt10 = { 'weir.dev/weights': '{"primary":{"stable":"v1","canary":"v2","weight":10}}' };
const subsetsRecord = { 'weir.dev/subsets': '{"v1":"stable","v2":"canary"}' };

const review = (kind: string, operation: string, object: unknown, oldObject?: unknown): AdmissionInput => ({
  operation,
  namespace: 'shop',
  kind: { group: 'networking.istio.io', version: 'v1alpha3', kind },
  object,
  ...(oldObject ? { oldObject } : {}),
});
const admitted = <T>(input: AdmissionInput): T =>
  jsonPatch.applyPatch(structuredClone(input.object), mutate(input, { now }).patch, true, false).newDocument as T;

t.test('a re-apply of the VirtualService from git keeps the weights weir recorded; nothing else changes', async (t) => {
  const stored = seedVs([90, 10], weightsAt10);
  // kubectl apply sends the user's weights; the annotation weir wrote stays in the merged object.
  const applied = seedVs([100, 0], weightsAt10);
  const input = review('VirtualService', 'UPDATE', applied, stored);
  const m = mutate(input, { now });
  t.equal(m.outcome, 'patched');
  t.same(
    m.patch.map((op) => op.path).sort(),
    ['/spec/http/0/route/0/weight', '/spec/http/0/route/1/weight'],
    'only the two weights',
  );
  t.same(admitted<VirtualService>(input), stored, 'the admitted object is the stored one: a no-op update');
});

t.test("a real edit of another field of the VirtualService goes through, weir's weights stay", async (t) => {
  const stored = seedVs([50, 50], { 'weir.dev/weights': '{"primary":{"stable":"v1","canary":"v2","weight":50}}' });
  const edited = seedVs([100, 0], stored.metadata?.annotations);
  const primary = edited.spec?.http?.[0];
  if (!primary) return t.fail('route');
  primary.retries = { attempts: 3, perTryTimeout: '2s' };
  edited.spec?.http?.push({ name: 'admin', route: [{ destination: { host, subset: 'v1' } }] });
  const out = admitted<VirtualService>(review('VirtualService', 'UPDATE', edited, stored));
  t.same(out.spec?.http?.[0]?.retries, { attempts: 3, perTryTimeout: '2s' }, 'the retry policy as written');
  t.equal(out.spec?.http?.length, 2, 'the new route as written');
  t.same(
    out.spec?.http?.[0]?.route?.map((d) => d.weight),
    [50, 50],
    "weir's weights",
  );
});

t.test("weir's own write, which changes the record with the weights, passes unchanged", async (t) => {
  const stored = seedVs([90, 10], weightsAt10);
  const patch = weightPatch(stored, target, { weight: 50 });
  const next = jsonPatch.applyPatch(structuredClone(stored), patch, true, false).newDocument;
  const m = mutate(review('VirtualService', 'UPDATE', next, stored), { now });
  t.equal(m.outcome, 'unchanged');
  t.same(m.patch, []);
});

t.test('a VirtualService weir never steered is none of its business', async (t) => {
  const m = mutate(review('VirtualService', 'CREATE', seedVs()), { now });
  t.equal(m.outcome, 'skipped');
  t.match(m.reason, /no weir.dev\/weights record/);
});

t.test('a re-apply of the DestinationRule keeps the subsets selecting the two halves', async (t) => {
  const stored = keepSubsets(seedDr(subsetsRecord));
  const input = review('DestinationRule', 'UPDATE', seedDr(subsetsRecord), stored);
  const out = admitted<DestinationRule>(input);
  t.same(out, stored, 'no-op update');
  t.same(
    out.spec?.subsets?.map((s) => s.labels),
    [{ 'weir.dev/track': 'stable' }, { 'weir.dev/track': 'canary' }],
  );
  t.same(out.spec?.trafficPolicy, { tls: { mode: 'ISTIO_MUTUAL' } }, 'the traffic policy as applied');
});

t.test('a subset removed from the manifest is put back; a subset weir does not steer stays as applied', async (t) => {
  const dr = seedDr(subsetsRecord);
  dr.spec = {
    host,
    subsets: [
      { name: 'v1', labels: { version: 'v1' } },
      { name: 'legacy', labels: { tier: 'old' } },
    ],
  };
  const out = keepSubsets(dr);
  t.same(out.spec?.subsets, [
    { name: 'v1', labels: { 'weir.dev/track': 'stable' } },
    { name: 'legacy', labels: { tier: 'old' } },
    { name: 'v2', labels: { 'weir.dev/track': 'canary' } },
  ]);
});

t.test("status updates, DELETE and weir's own namespace are never touched; a non-object is invalid", async (t) => {
  t.equal(
    mutate(
      {
        ...review('VirtualService', 'UPDATE', seedVs([100, 0], weightsAt10), seedVs([90, 10], weightsAt10)),
        subResource: 'status',
      },
      { now },
    ).outcome,
    'skipped',
  );
  t.equal(mutate(review('VirtualService', 'DELETE', undefined), { now }).outcome, 'skipped');
  t.equal(
    mutate(review('VirtualService', 'UPDATE', seedVs([100, 0], weightsAt10)), { now, weirNamespace: 'shop' }).outcome,
    'skipped',
  );
  t.equal(mutate(review('DestinationRule', 'CREATE', ['not', 'an', 'object']), { now }).outcome, 'invalid');
  t.equal(
    mutate({ ...review('Gateway', 'CREATE', {}) }, { now }).outcome,
    'skipped',
    'other Istio kinds are not guarded',
  );
});

t.test('records that cannot be read are ignored, never half-applied', async (t) => {
  for (const text of [
    '',
    'not json',
    '[]',
    '{"primary":{"stable":"v1","canary":"v1","weight":10}}',
    '{"primary":{"stable":"v1","canary":"v2","weight":101}}',
    '{"primary":{"stable":"v1","canary":"v2","weight":1.5}}',
  ]) {
    t.equal(parseWeights(text), undefined, `weights ${JSON.stringify(text)}`);
    const vs = seedVs([100, 0], { 'weir.dev/weights': text });
    t.same(keepWeights(vs), vs, 'kept as applied');
  }
  for (const text of ['{"v1":"blue"}', '{"":"stable"}', 'null'])
    t.equal(parseSubsets(text), undefined, `subsets ${text}`);
  t.same(
    [...(parseWeights('{"__proto__":{"stable":"a","canary":"b","weight":1}}') ?? new Map()).keys()],
    ['__proto__'],
    'a hostile key is just a key',
  );
});

t.test('a route weir cannot steer is left as applied', async (t) => {
  const vs = seedVs([100, 0], { 'weir.dev/weights': '{"gone":{"stable":"v1","canary":"v2","weight":10}}' });
  t.same(keepWeights(vs), vs);
  const noStable = steerWeight(seedVs(), 'primary', { stable: 'blue', canary: 'v2', weight: 10 });
  t.notOk(noStable.ok);
  t.match(noStable.ok ? '' : noStable.error, /no destination with subset blue/);
  t.match(readWeight(seedVs(), { ...target, route: 'other' }), { ok: false, error: /no HTTP route named "other"/ });
});

t.test("the analyzer's weight patch is guarded, changes only the weights and the record", async (t) => {
  const vs = seedVs();
  const patch = weightPatch(vs, target, { weight: 10 });
  t.same(patch.slice(0, 2), [
    { op: 'test', path: '/metadata/resourceVersion', value: '7' },
    { op: 'test', path: '/spec/http/0/name', value: 'primary' },
  ]);
  const out = jsonPatch.applyPatch(structuredClone(vs), patch, true, false).newDocument;
  t.same(
    out.spec?.http?.[0]?.route?.map((d) => d.weight),
    [90, 10],
  );
  t.same(out.metadata?.annotations, weightsAt10);
  t.same(readWeight(out, target), {
    ok: true,
    canaryWeight: 10,
    host: 'myapp.shop.svc.cluster.local',
    meshUnsteered: true,
  });
  const meshToo = structuredClone(out);
  if (meshToo.spec) meshToo.spec.gateways = ['myapp-gateway', 'mesh'];
  t.same(
    readWeight(meshToo, target),
    { ok: true, canaryWeight: 10, host },
    'bound to the mesh too: in-mesh callers steered',
  );
  const withoutCanary = seedVs();
  withoutCanary.spec?.http?.[0]?.route?.splice(1);
  const added = jsonPatch.applyPatch(
    structuredClone(withoutCanary),
    weightPatch(withoutCanary, target, { weight: 0 }),
    true,
    false,
  ).newDocument;
  t.same(
    added.spec?.http?.[0]?.route?.[1],
    { destination: { host, subset: 'v2' }, weight: 0 },
    'the canary destination is added, copied from stable',
  );
  t.throws(
    () => weightPatch(seedVs(), { ...target, stableSubset: 'blue' }, { weight: 10 }),
    /no destination with subset blue/,
  );
});

t.test("the analyzer's subset patch points the two subsets at the halves and records them", async (t) => {
  const dr = seedDr();
  t.notOk(subsetsInPlace(dr, target));
  const out = jsonPatch.applyPatch(structuredClone(dr), subsetPatch(dr, target), true, false).newDocument;
  t.ok(subsetsInPlace(out, target));
  t.same(out.metadata?.annotations, subsetsRecord);
  t.same(
    subsetPatch(out, target),
    [{ op: 'test', path: '/metadata/resourceVersion', value: '9' }],
    'nothing more to do',
  );
  const labelsOnly = keepSubsets(seedDr(subsetsRecord));
  labelsOnly.metadata = { ...labelsOnly.metadata, annotations: {} };
  t.notOk(
    subsetsInPlace(labelsOnly, target),
    'selectors without the record are not in place: the webhook could not keep them',
  );
  // Between releases the canary subset selects the stable half: never a subset with no pods.
  const settled = jsonPatch.applyPatch(structuredClone(out), subsetPatch(out, target, false), true, false).newDocument;
  t.same(
    settled.spec?.subsets?.map((s) => [s.name, s.labels]),
    [
      ['v1', { 'weir.dev/track': 'stable' }],
      ['v2', { 'weir.dev/track': 'stable' }],
    ],
  );
  t.same(settled.metadata?.annotations, { 'weir.dev/subsets': '{"v1":"stable","v2":"stable"}' });
  t.ok(subsetsInPlace(settled, target, false), 'in place between releases');
  t.notOk(subsetsInPlace(settled, target), 'but not for a release: the canary subset goes back to the canary');
  t.same(keepSubsets(settled), settled, 'the webhook keeps the settled shape through a re-apply');
});

t.test('one record entry per route: a route named and "the only route" are the same route', async (t) => {
  // A weir-owned VirtualService has one route named `weir`; the release names no route.
  const owned = seedVs([100, 0], { 'weir.dev/weights': '{"weir":{"stable":"v1","canary":"v2","weight":0}}' });
  const route = owned.spec?.http?.[0];
  if (route) route.name = 'weir';
  const unnamed = { ...target, route: undefined } as MeshTarget;
  delete unnamed.route;
  const out = jsonPatch.applyPatch(
    structuredClone(owned),
    weightPatch(owned, unnamed, { weight: 10 }),
    true,
    false,
  ).newDocument;
  t.same(out.metadata?.annotations, { 'weir.dev/weights': '{"":{"stable":"v1","canary":"v2","weight":10}}' });
  const m = mutate(review('VirtualService', 'UPDATE', out, owned), { now });
  t.equal(m.outcome, 'unchanged', "the webhook keeps weir's own new weight");
});

t.test('weight with no release in progress to own it is orphaned; weight during a release is not', async (t) => {
  const vs = seedVs([50, 50], { 'weir.dev/weights': '{"primary":{"stable":"v1","canary":"v2","weight":50}}' });
  const myapp = (phase?: string): V1Deployment => ({
    metadata: {
      name: 'myapp',
      namespace: 'shop',
      annotations: {
        'weir.dev/virtual-service': 'myapp-virtualservice',
        ...(phase ? { 'weir.dev/phase': phase } : {}),
      },
    },
  });
  t.same(
    orphanedRoutes('VirtualService', vs, []),
    [
      {
        namespace: 'shop',
        virtualService: 'myapp-virtualservice',
        destinationRule: '',
        kind: 'VirtualService',
        stableSubset: 'v1',
        canarySubset: 'v2',
        route: 'primary',
      },
    ],
    'Deployment gone',
  );
  t.equal(orphanedRoutes('VirtualService', vs, [myapp()]).length, 1, 're-created without a release');
  t.equal(orphanedRoutes('VirtualService', vs, [myapp('Stable')]).length, 1, 'a Stable release');
  t.same(orphanedRoutes('VirtualService', vs, [myapp('Progressing')]), [], 'a release in progress owns its weight');
  const shadow = seedVs([100, 0], {
    'weir.dev/weights': JSON.stringify({ primary: { stable: 'v1', canary: 'v2', weight: 0, mirror: 100 } }),
  });
  t.equal(orphanedRoutes('VirtualService', shadow, []).length, 1, 'a mirror left by a deleted Deployment is orphaned');
  const testers = seedVs([100, 0], {
    'weir.dev/weights': JSON.stringify({
      primary: { stable: 'v1', canary: 'v2', weight: 0, header: { name: 'x', value: '1' } },
    }),
  });
  t.equal(orphanedRoutes('VirtualService', testers, []).length, 1, "so is a testers' route");
  t.same(
    orphanedRoutes('VirtualService', vs, [
      { ...myapp('Progressing'), metadata: { ...myapp('Progressing').metadata, namespace: 'other' } },
    ]).length,
    1,
    'only a Deployment of the same namespace counts',
  );
  t.same(
    orphanedRoutes(
      'VirtualService',
      seedVs([100, 0], { 'weir.dev/weights': '{"primary":{"stable":"v1","canary":"v2","weight":0}}' }),
      [],
    ),
    [],
    'no weight, nothing to do',
  );
  t.same(orphanedRoutes('VirtualService', seedVs([50, 50]), []), [], 'a VirtualService weir never steered');
});

t.test("the shadow step writes only the steered route's mirror, records it, and takes only its own back", async (t) => {
  const vs = seedVs();
  const out = jsonPatch.applyPatch(
    structuredClone(vs),
    weightPatch(vs, target, { weight: 0, mirror: 25 }),
    true,
    false,
  ).newDocument;
  t.same(out.spec?.http?.[0]?.mirror, { host, subset: 'v2' }, 'a copy to the canary subset');
  t.same(out.spec?.http?.[0]?.mirrorPercentage, { value: 25 });
  t.same(
    out.spec?.http?.[0]?.route?.map((d) => d.weight),
    [100, 0],
    'no weight moved',
  );
  t.same(parseWeights(out.metadata?.annotations?.['weir.dev/weights'])?.get('primary'), {
    stable: 'v1',
    canary: 'v2',
    weight: 0,
    mirror: 25,
  });
  t.match(readWeight(out, target), { ok: true, canaryWeight: 0, mirror: 25 });
  const ended = jsonPatch.applyPatch(
    structuredClone(out),
    weightPatch(out, target, { weight: 10 }),
    true,
    false,
  ).newDocument;
  t.equal(ended.spec?.http?.[0]?.mirror, undefined, 'the next step takes the mirror away');
  t.equal(ended.spec?.http?.[0]?.mirrorPercentage, undefined);
  // The user's own mirror, to another service, is theirs: never replaced, never removed.
  const theirs = seedVs();
  const route0 = theirs.spec?.http?.[0];
  if (route0) route0.mirror = { host: 'audit.shop.svc.cluster.local' };
  t.throws(() => weightPatch(theirs, target, { weight: 0, mirror: 100 }), /mirrors to audit.shop.svc.cluster.local/);
  const kept = jsonPatch.applyPatch(
    structuredClone(theirs),
    weightPatch(theirs, target, { weight: 10 }),
    true,
    false,
  ).newDocument;
  t.same(kept.spec?.http?.[0]?.mirror, { host: 'audit.shop.svc.cluster.local' });
  const read = readWeight(theirs, target);
  t.ok(read.ok && read.mirror === undefined, "their mirror is not weir's shadow step");
  t.match(read, { mirroredElsewhere: 'audit.shop.svc.cluster.local' }, 'and it is reported as theirs');
});

t.test("the testers' route goes just before the steered one, with its matches and the header", async (t) => {
  const vs = seedVs();
  const steered = vs.spec?.http?.[0];
  if (steered) steered.match = [{ uri: { prefix: '/api' } }, { uri: { exact: '/health' } }];
  vs.spec?.http?.unshift({ name: 'first', route: [{ destination: { host: 'other' } }] });
  const header = { name: 'x-canary', value: 'always' };
  const out = jsonPatch.applyPatch(
    structuredClone(vs),
    weightPatch(vs, target, { weight: 10, header }),
    true,
    false,
  ).newDocument;
  t.same(
    out.spec?.http?.map((r) => r.name),
    ['first', 'weir-canary-header-primary', 'primary'],
  );
  t.same(out.spec?.http?.[1], {
    name: 'weir-canary-header-primary',
    match: [
      { uri: { prefix: '/api' }, headers: { 'x-canary': { exact: 'always' } } },
      { uri: { exact: '/health' }, headers: { 'x-canary': { exact: 'always' } } },
    ],
    route: [{ destination: { host, subset: 'v2' } }],
  });
  t.match(readWeight(out, target), { ok: true, canaryWeight: 10, header });
  // Re-applied from git without it: the webhook puts it back from the record.
  const reapplied = structuredClone(vs);
  reapplied.metadata = { ...reapplied.metadata, annotations: out.metadata?.annotations ?? {} };
  t.same(keepWeights(reapplied).spec?.http, out.spec?.http, 'kept through a re-apply');
  // The release is over: the route goes, the rest is as the user wrote it.
  const over = jsonPatch.applyPatch(
    structuredClone(out),
    weightPatch(out, target, { weight: 0 }),
    true,
    false,
  ).newDocument;
  t.same(
    over.spec?.http?.map((r) => r.name),
    ['first', 'primary'],
  );
  t.same(over.spec?.http?.[1]?.match, steered?.match);
});

t.test("the only route stays the only route while weir's testers' route sits beside it", async (t) => {
  const unnamed: MeshTarget = { ...target, route: undefined };
  const vs = seedVs();
  delete vs.spec?.http?.[0]?.name;
  const header = { name: 'x-canary', value: '1' };
  const out = jsonPatch.applyPatch(
    structuredClone(vs),
    weightPatch(vs, unnamed, { weight: 50, header }),
    true,
    false,
  ).newDocument;
  t.same(
    out.spec?.http?.map((r) => r.name),
    ['weir-canary-header', undefined],
  );
  t.match(readWeight(out, unnamed), { ok: true, canaryWeight: 50, header });
  t.same(
    out.spec?.http?.[1]?.route?.map((d) => d.weight),
    [50, 50],
  );
});

t.test('a record with a bad mirror or header is no record', async (t) => {
  for (const entry of [
    { stable: 'a', canary: 'b', weight: 0, mirror: 101 },
    { stable: 'a', canary: 'b', weight: 0, mirror: 2.5 },
    { stable: 'a', canary: 'b', weight: 0, header: { name: 'X-Upper', value: '1' } },
    { stable: 'a', canary: 'b', weight: 0, header: { name: 'x-canary', value: '' } },
    { stable: 'a', canary: 'b', weight: 0, header: 'x-canary=1' },
  ])
    t.equal(parseWeights(JSON.stringify({ r: entry })), undefined, JSON.stringify(entry));
});
