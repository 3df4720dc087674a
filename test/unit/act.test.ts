// The pure builders of act.ts: the canary half's manifest, and the fence every write carries.
import t from 'tap';
import type { V1Deployment } from '@kubernetes/client-node';
import { canaryManifest, fence } from '../../analyzer/loop/act.ts';
import { parseStatus, formatStatus } from '../../contract/status.ts';
import { templateRevision, unguardedRevision } from '../../contract/revision.ts';

const web: V1Deployment = {
  metadata: {
    name: 'web',
    namespace: 'shop',
    uid: 'uid-1',
    generation: 7,
    labels: { team: 'a' },
    annotations: { 'weir.dev/canary-revision': 'c1' },
  },
  spec: {
    replicas: 4,
    selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['web'] }] },
    template: {
      metadata: { labels: { app: 'web', 'weir.dev/track': 'stable' } },
      spec: { containers: [{ name: 'app', image: 'web:v2' }] },
    },
  },
};

t.test("the canary half: weir's mark, a controller reference to the user's Deployment, the canary track", async (t) => {
  const canary = canaryManifest(web, 2);
  t.equal(canary.metadata?.name, 'web-canary');
  t.same(canary.metadata?.labels, { team: 'a', 'weir.dev/canary-of': 'web' });
  t.match(canary.metadata?.ownerReferences?.[0], { kind: 'Deployment', name: 'web', uid: 'uid-1', controller: true });
  t.equal(canary.spec?.template.metadata?.labels?.['weir.dev/track'], 'canary');
  t.same(canary.spec?.selector, web.spec?.selector, 'the same selector, matchExpressions included');
  t.equal(canary.spec?.replicas, 2);
  t.ok((canary.spec?.minReadySeconds ?? 0) >= 5, 'Available only once the mesh can know it');
  t.equal(web.spec?.template.metadata?.labels?.['weir.dev/track'], 'stable', "the user's template is not changed");
});

t.test('the fence: the generation and the canary revision the decision was made on', async (t) => {
  t.same(fence(web), [
    { op: 'test', path: '/metadata/generation', value: 7 },
    { op: 'test', path: '/metadata/annotations/weir.dev~1canary-revision', value: 'c1' },
  ]);
  t.same(
    fence({ metadata: { generation: 3 } }),
    [{ op: 'test', path: '/metadata/generation', value: 3 }],
    'no release recorded: the generation alone',
  );
});

t.test('the status record reads back what it wrote, and refuses what it did not', async (t) => {
  const status = { revision: 'c1', step: 1, weight: 50, failures: 0, unjudged: 2, checks: [], message: 'step 2/3' };
  t.same(parseStatus(formatStatus(status)), status);
  for (const text of ['', '{', '[]', '{"revision":1,"step":0,"weight":0}'])
    t.equal(parseStatus(text), undefined, JSON.stringify(text));
  t.same(
    parseStatus('{"revision":"c","step":0,"weight":0}'),
    { revision: 'c', step: 0, weight: 0, failures: 0, checks: [], message: '' },
    'defaults',
  );
});

t.test('an unguarded template: neither the recorded stable nor the canary revision', async (t) => {
  const template = web.spec?.template;
  const revision = templateRevision(template);
  t.equal(unguardedRevision({}, template), undefined, 'no release recorded yet');
  t.equal(unguardedRevision({ 'weir.dev/stable-revision': revision }, template), undefined);
  t.equal(
    unguardedRevision({ 'weir.dev/stable-revision': 'old', 'weir.dev/canary-revision': revision }, template),
    undefined,
  );
  t.equal(unguardedRevision({ 'weir.dev/stable-revision': 'old' }, template), revision);
});
