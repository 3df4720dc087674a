// The opt-in selector: the webhook configuration's namespaceSelector, read by the analyzer with
// Kubernetes' own meaning (issue 11: a custom selector must not make releases drain as opted out).
import t from 'tap';
import { optInSelector, parseSelector, selects } from '../../contract/selector.ts';

t.test('matchLabels and every operator mean what they mean to the API server', async (t) => {
  t.ok(selects(optInSelector, { 'weir.dev/canary': 'enabled' }));
  t.notOk(selects(optInSelector, { 'weir.dev/canary': 'disabled' }));
  t.notOk(selects(optInSelector, {}));
  t.ok(selects({}, { anything: 'x' }), 'an empty selector selects everything');
  const team = {
    matchLabels: { mesh: 'istio' },
    matchExpressions: [
      { key: 'tier', operator: 'In' as const, values: ['web', 'api'] },
      { key: 'env', operator: 'NotIn' as const, values: ['dev'] },
      { key: 'owner', operator: 'Exists' as const },
      { key: 'frozen', operator: 'DoesNotExist' as const },
    ],
  };
  t.ok(selects(team, { mesh: 'istio', tier: 'api', owner: 'a' }));
  t.ok(selects(team, { mesh: 'istio', tier: 'api', owner: 'a', env: 'prod' }));
  t.notOk(selects(team, { mesh: 'istio', tier: 'db', owner: 'a' }), 'In');
  t.notOk(selects(team, { mesh: 'istio', tier: 'api', owner: 'a', env: 'dev' }), 'NotIn');
  t.notOk(selects(team, { mesh: 'istio', tier: 'api' }), 'Exists');
  t.notOk(selects(team, { mesh: 'istio', tier: 'api', owner: 'a', frozen: '' }), 'DoesNotExist');
  t.notOk(selects(team, { tier: 'api', owner: 'a' }), 'matchLabels');
  t.notOk(selects({ matchLabels: { constructor: 'x' } }, {}), 'keys are own keys, never inherited ones');
});

t.test('a selector from the chart is parsed, and a bad one says what is wrong', async (t) => {
  t.same(parseSelector('{"matchLabels":{"team":"a"}}'), { ok: true, value: { matchLabels: { team: 'a' } } });
  t.match(parseSelector('team=a'), { ok: false, error: 'not JSON' });
  t.match(parseSelector('[]'), { ok: false, error: /not an object/ });
  t.match(parseSelector('{"matchLabels":{"a":1}}'), { ok: false, error: /strings/ });
  t.match(parseSelector('{"matchExpressions":[{"key":"a","operator":"Gt"}]}'), { ok: false, error: /operator/ });
  t.match(parseSelector('{"matchExpressions":[{"key":"a","operator":"In","values":[1]}]}'), {
    ok: false,
    error: /values of a/,
  });
});
