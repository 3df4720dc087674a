// The Gateway API router's pure half (ADR 17): which rule weir steers, the weights it reads and
// writes (and nothing else of the route), the webhook keeping them through a re-apply, and which
// router a Deployment's annotations choose.
import t from 'tap';
import jsonPatch from 'fast-json-patch';
import { mutate } from '../../webhook/mutate.ts';
import type { AdmissionInput } from '../../webhook/mutate.ts';
import {
  backendServiceSpec,
  findRule,
  keepRuleWeights,
  ownedRouteSpec,
  readRuleWeight,
  steerRule,
} from '../../contract/gateway.ts';
import { parseWeights } from '../../contract/steering.ts';
import type { HTTPRoute } from '../../contract/gateway.ts';
import { ruleWeightPatch } from '../../analyzer/adapters/gateway.ts';
import type { GatewayTarget } from '../../analyzer/ports/router.ts';
import { chooseRouter, routeTarget } from '../../analyzer/core/target.ts';
import { resolveRouting } from '../../analyzer/core/policy.ts';
import { orphanedRoutes } from '../../analyzer/loop/orphans.ts';
import type { V1Deployment } from '@kubernetes/client-node';

const now = new Date('2026-11-29T12:00:00Z');
const steered = { rule: 'primary', stableService: 'myapp-stable', canaryService: 'myapp-canary' };

/** A north-south route as a user keeps it in git: a Gateway parent, a redirect rule, the steered rule. */
function userRoute(weights: [number, number] = [100, 0], annotations?: Record<string, string>): HTTPRoute {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'myapp', namespace: 'shop', resourceVersion: '11', ...(annotations ? { annotations } : {}) },
    spec: {
      parentRefs: [{ name: 'public', namespace: 'infra', sectionName: 'https' }],
      hostnames: ['myapp.example.com'],
      rules: [
        {
          name: 'legacy',
          matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
          filters: [
            { type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplaceFullPath', replaceFullPath: '/' } } },
          ],
        },
        {
          name: 'primary',
          matches: [{ path: { type: 'PathPrefix', value: '/' } }],
          filters: [
            { type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'x-via', value: 'gw' }] } },
          ],
          backendRefs: [
            { name: 'myapp-stable', port: 80, weight: weights[0] },
            { name: 'myapp-canary', port: 80, weight: weights[1] },
          ],
        },
      ],
    },
  };
}

const target: GatewayTarget = {
  kind: 'HTTPRoute',
  namespace: 'shop',
  httpRoute: 'myapp',
  route: 'primary',
  stableService: 'myapp-stable',
  canaryService: 'myapp-canary',
};
const weightsAt10 = { 'weir.dev/weights': '{"primary":{"stable":"myapp-stable","canary":"myapp-canary","weight":10}}' };

t.test('the steered rule: by name; unnamed, the only rule or the one rule that sends to stable', async (t) => {
  t.match(findRule(userRoute(), 'primary', 'myapp-stable'), { index: 1 });
  t.match(findRule(userRoute(), 'missing', 'myapp-stable'), { error: /no rule named "missing"/ });
  t.match(findRule(userRoute(), undefined, 'myapp-stable'), { index: 1 }, 'the one rule sending to stable');
  const two = userRoute();
  two.spec?.rules?.push({ backendRefs: [{ name: 'myapp-stable', port: 80 }] });
  t.match(findRule(two, undefined, 'myapp-stable'), { error: /3 rules and 2 of them send to Service myapp-stable/ });
});

t.test("reading the canary's share: relative weights, and what weir cannot steer", async (t) => {
  t.same(readRuleWeight(userRoute([90, 10]), steered), {
    ok: true,
    canaryWeight: 10,
    host: 'myapp-canary',
    meshUnsteered: true,
  });
  t.same(readRuleWeight(userRoute([3, 1]), steered), {
    ok: true,
    canaryWeight: 25,
    host: 'myapp-canary',
    meshUnsteered: true,
  });
  const gamma = userRoute([90, 10]);
  if (gamma.spec) gamma.spec.parentRefs = [{ group: '', kind: 'Service', name: 'myapp' }];
  t.same(
    readRuleWeight(gamma, steered),
    { ok: true, canaryWeight: 10, host: 'myapp-canary' },
    'a mesh route steers the mesh',
  );
  const unset = userRoute();
  for (const b of unset.spec?.rules?.[1]?.backendRefs ?? []) delete b.weight;
  t.match(readRuleWeight(unset, steered), { ok: true, canaryWeight: 50 }, 'weight 1 each when unset');
  t.match(readRuleWeight(userRoute([0, 0]), steered), { ok: false, error: /both backendRefs .* weight 0/ });
  const third = userRoute();
  third.spec?.rules?.[1]?.backendRefs?.push({ name: 'myapp-debug', port: 80, weight: 1 });
  t.match(readRuleWeight(third, steered), { ok: false, error: /sends to Service myapp-debug besides Services/ });
  const foreign = userRoute();
  const ref = foreign.spec?.rules?.[1]?.backendRefs?.[1];
  if (ref) ref.namespace = 'other';
  t.match(readRuleWeight(foreign, steered), { ok: false, error: /Service other\/myapp-canary besides/ });
  const noCanary = userRoute();
  noCanary.spec?.rules?.[1]?.backendRefs?.splice(1);
  t.match(readRuleWeight(noCanary, steered), { ok: false, error: /no backendRef to Service myapp-canary; add it/ });
});

t.test("the analyzer's patch: guarded, the two weights and weir's record, nothing else", async (t) => {
  const route = userRoute();
  const patch = ruleWeightPatch(route, target, { weight: 10 });
  t.same(patch.slice(0, 2), [
    { op: 'test', path: '/metadata/resourceVersion', value: '11' },
    { op: 'test', path: '/spec/rules/1/name', value: 'primary' },
  ]);
  t.same(
    patch
      .slice(2)
      .map((op) => op.path)
      .sort(),
    ['/metadata/annotations', '/spec/rules/1/backendRefs/0/weight', '/spec/rules/1/backendRefs/1/weight'],
  );
  const out = jsonPatch.applyPatch(structuredClone(route), patch, true, false).newDocument;
  t.same(out.metadata?.annotations, weightsAt10);
  const withoutWeights = (r: HTTPRoute): unknown =>
    JSON.parse(JSON.stringify(r.spec, (k, v: unknown) => (k === 'weight' ? undefined : v)));
  t.same(withoutWeights(out), withoutWeights(route), 'every other field byte-identical');
  t.throws(() => ruleWeightPatch(route, { ...target, route: 'gone' }, { weight: 10 }), /no rule named "gone"/);
});

const review = (operation: string, object: unknown, oldObject?: unknown): AdmissionInput => ({
  operation,
  namespace: 'shop',
  kind: { group: 'gateway.networking.k8s.io', version: 'v1', kind: 'HTTPRoute' },
  object,
  ...(oldObject ? { oldObject } : {}),
});

t.test('a re-apply of the HTTPRoute keeps the weights weir recorded; a real edit goes through', async (t) => {
  const stored = steerRule(userRoute([100, 0], weightsAt10), steered, { weight: 10 });
  if (!stored.ok) return t.fail(stored.error);
  const applied = userRoute([100, 0], weightsAt10);
  applied.spec?.hostnames?.push('www.myapp.example.com');
  const m = mutate(review('UPDATE', applied, stored.route), { now });
  t.equal(m.outcome, 'patched');
  t.same(m.patch.map((op) => op.path).sort(), [
    '/spec/rules/1/backendRefs/0/weight',
    '/spec/rules/1/backendRefs/1/weight',
  ]);
  const out = jsonPatch.applyPatch(structuredClone(applied), m.patch, true, false).newDocument;
  t.same(out.spec?.hostnames, ['myapp.example.com', 'www.myapp.example.com'], 'the edit as written in git');
  t.same(keepRuleWeights(out), out, 'admitted: nothing more to keep');
  t.equal(mutate(review('CREATE', userRoute()), { now }).outcome, 'skipped', 'a route weir never steered');
  const istioGroup = {
    ...review('UPDATE', applied, stored.route),
    kind: { group: 'x.io', version: 'v1', kind: 'HTTPRoute' },
  };
  t.equal(mutate(istioGroup, { now }).outcome, 'skipped', 'an HTTPRoute of another API group is not ours');
});

t.test("what weir creates when nothing is named: a mesh route on the Service's port, Services per half", async (t) => {
  t.same(ownedRouteSpec('myapp', 8080, { ...steered, rule: 'weir' }), {
    parentRefs: [{ group: '', kind: 'Service', name: 'myapp', port: 8080 }],
    rules: [
      {
        name: 'weir',
        backendRefs: [
          { name: 'myapp-stable', port: 8080, weight: 100 },
          { name: 'myapp-canary', port: 8080, weight: 0 },
        ],
      },
    ],
  });
  t.same(
    backendServiceSpec(
      { selector: { app: 'myapp' }, ports: [{ name: 'http', port: 8080, targetPort: 'web', nodePort: 1 } as never] },
      'canary',
    ),
    {
      selector: { app: 'myapp', 'weir.dev/track': 'canary' },
      ports: [{ name: 'http', port: 8080, targetPort: 'web' }],
    },
  );
});

t.test('the router: asked for, or implied by the object named; a contradiction is an error', async (t) => {
  const choose = (a: Record<string, string>): unknown => chooseRouter(resolveRouting(a));
  t.equal(choose({}), 'istio', 'Istio by default, as before');
  t.equal(choose({ 'weir.dev/http-route': 'r' }), 'gateway-api');
  t.equal(choose({ 'weir.dev/router': 'gateway-api' }), 'gateway-api');
  t.match(choose({ 'weir.dev/router': 'nginx' }), { error: /"nginx" is not istio or gateway-api/ });
  t.match(choose({ 'weir.dev/http-route': 'r', 'weir.dev/virtual-service': 'v' }), { error: /both/ });
  t.match(choose({ 'weir.dev/router': 'istio', 'weir.dev/http-route': 'r' }), { error: /remove one of the two/ });
  const owner = { name: 'myapp', uid: 'u1' };
  const resolve = (a: Record<string, string>, service?: string): unknown =>
    routeTarget('shop', resolveRouting(a), service, owner);
  t.match(resolve({ 'weir.dev/router': 'gateway-api' }, 'myapp'), {
    kind: 'HTTPRoute',
    httpRoute: 'weir-myapp',
    route: 'weir',
    stableService: 'myapp-stable',
    canaryService: 'myapp-canary',
    owned: { owner: { uid: 'u1' } },
    ownedServices: { owner: { uid: 'u1' } },
  });
  t.match(resolve({ 'weir.dev/http-route': 'r', 'weir.dev/stable-service': 'a', 'weir.dev/canary-service': 'b' }), {
    kind: 'HTTPRoute',
    httpRoute: 'r',
    stableService: 'a',
    canaryService: 'b',
  });
  const named = resolve({ 'weir.dev/http-route': 'r', 'weir.dev/stable-service': 'a', 'weir.dev/canary-service': 'b' });
  t.notOk(Object.hasOwn(named as object, 'ownedServices'), "Services the user names are never weir's");
  t.match(resolve({ 'weir.dev/http-route': 'r', 'weir.dev/stable-service': 'a' }, 'myapp'), { error: /name both/ });
  t.match(resolve({ 'weir.dev/router': 'gateway-api' }), { error: /no Service selects these pods/ });
});

t.test("an HTTPRoute's weight with no release in progress to own it is orphaned", async (t) => {
  const route = userRoute([90, 10], weightsAt10);
  const myapp = (phase?: string): V1Deployment => ({
    metadata: {
      name: 'myapp',
      namespace: 'shop',
      annotations: { 'weir.dev/http-route': 'myapp', ...(phase ? { 'weir.dev/phase': phase } : {}) },
    },
  });
  t.same(orphanedRoutes('HTTPRoute', route, []), [
    {
      kind: 'HTTPRoute',
      namespace: 'shop',
      httpRoute: 'myapp',
      stableService: 'myapp-stable',
      canaryService: 'myapp-canary',
      route: 'primary',
    },
  ]);
  t.same(orphanedRoutes('HTTPRoute', route, [myapp('Progressing')]), [], 'a release in progress owns its weight');
  t.equal(orphanedRoutes('HTTPRoute', route, [myapp('Stable')]).length, 1, 'a settled one does not');
  t.same(orphanedRoutes('HTTPRoute', userRoute(), []), [], 'a route weir never steered');
});

t.test(
  'the shadow step on an HTTPRoute: a RequestMirror filter to the canary Service on the steered rule only',
  async (t) => {
    const route = userRoute();
    const out = jsonPatch.applyPatch(
      structuredClone(route),
      ruleWeightPatch(route, target, { weight: 0, mirror: 25 }),
      true,
      false,
    ).newDocument;
    const rule = out.spec?.rules?.[1];
    t.same(
      rule?.filters,
      [
        { type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'x-via', value: 'gw' }] } },
        { type: 'RequestMirror', requestMirror: { backendRef: { name: 'myapp-canary', port: 80 }, percent: 25 } },
      ],
      "the user's filters first, weir's mirror after",
    );
    t.same(out.spec?.rules?.[0], route.spec?.rules?.[0], 'other rules untouched');
    t.match(readRuleWeight(out, steered), { ok: true, canaryWeight: 0, mirror: 25 });
    t.match(parseWeights(out.metadata?.annotations?.['weir.dev/weights'])?.get('primary'), { weight: 0, mirror: 25 });
    const next = jsonPatch.applyPatch(
      structuredClone(out),
      ruleWeightPatch(out, target, { weight: 10 }),
      true,
      false,
    ).newDocument;
    t.same(next.spec?.rules?.[1]?.filters, route.spec?.rules?.[1]?.filters, 'the next step takes only its mirror away');
    // Re-applied from git mid-step: the webhook keeps the mirror from the record.
    const applied = userRoute([100, 0], out.metadata?.annotations);
    t.same(keepRuleWeights(applied).spec?.rules, out.spec?.rules, 'kept through a re-apply');
    // The user's own mirror (to another backend) is theirs.
    const theirs = userRoute();
    theirs.spec?.rules?.[1]?.filters?.push({
      type: 'RequestMirror',
      requestMirror: { backendRef: { name: 'audit', port: 80 } },
    });
    t.match(readRuleWeight(theirs, steered), { ok: true, mirroredElsewhere: 'audit' });
    t.throws(() => ruleWeightPatch(theirs, target, { weight: 0, mirror: 100 }), /mirrors to another backend/);
    // The API's fraction form reads as a percent too.
    const fraction = userRoute();
    fraction.spec?.rules?.[1]?.filters?.push({
      type: 'RequestMirror',
      requestMirror: { backendRef: { name: 'myapp-canary', port: 80 }, fraction: { numerator: 1, denominator: 4 } },
    });
    t.match(readRuleWeight(fraction, steered), { mirror: 25 });
  },
);

t.test(
  "the testers' rule on an HTTPRoute: the steered rule's matches and filters, plus the header, to the canary",
  async (t) => {
    const route = userRoute();
    const header = { name: 'x-canary', value: 'always' };
    const out = jsonPatch.applyPatch(
      structuredClone(route),
      ruleWeightPatch(route, target, { weight: 10, header }),
      true,
      false,
    ).newDocument;
    t.same(
      out.spec?.rules?.map((r) => r.name),
      ['legacy', 'weir-canary-header-primary', 'primary'],
    );
    t.same(out.spec?.rules?.[1], {
      name: 'weir-canary-header-primary',
      matches: [
        { path: { type: 'PathPrefix', value: '/' }, headers: [{ type: 'Exact', name: 'x-canary', value: 'always' }] },
      ],
      filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { add: [{ name: 'x-via', value: 'gw' }] } }],
      backendRefs: [{ name: 'myapp-canary', port: 80 }],
    });
    t.match(readRuleWeight(out, steered), { ok: true, canaryWeight: 10, header });
    t.same(
      findRule(out, undefined, 'myapp-stable'),
      { index: 2, rule: out.spec?.rules?.[2] },
      "the fallback ignores weir's rule",
    );
    const over = jsonPatch.applyPatch(
      structuredClone(out),
      ruleWeightPatch(out, target, { weight: 0 }),
      true,
      false,
    ).newDocument;
    t.same(
      over.spec?.rules?.map((r) => r.name),
      ['legacy', 'primary'],
      'gone with the drain',
    );
  },
);
