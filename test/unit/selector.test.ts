// Label selectors with their full meaning, as weir lists pods and ReplicaSets (issue 10).
import t from 'tap';
import { ownedByDeployment, selectorQuery } from '../../analyzer/loop/selector.ts';

t.test('matchLabels and every matchExpressions operator become one labelSelector query', async (t) => {
  t.equal(selectorQuery({ matchLabels: { app: 'web' } }), 'app=web');
  t.equal(
    selectorQuery(
      {
        matchLabels: { app: 'web' },
        matchExpressions: [
          { key: 'tier', operator: 'In', values: ['front', 'edge'] },
          { key: 'env', operator: 'NotIn', values: ['dev'] },
          { key: 'team', operator: 'Exists' },
          { key: 'legacy', operator: 'DoesNotExist' },
        ],
      },
      '!weir.dev/track',
    ),
    'app=web,tier in (front,edge),env notin (dev),team,!legacy,!weir.dev/track',
  );
  t.equal(
    selectorQuery({ matchExpressions: [{ key: 'app', operator: 'In', values: ['web'] }] }),
    'app in (web)',
    'matchExpressions alone',
  );
});

t.test('a selector that would select everything, or that weir cannot read, selects nothing', async (t) => {
  t.equal(selectorQuery(undefined, '!weir.dev/track'), undefined);
  t.equal(selectorQuery({}, '!weir.dev/track'), undefined, 'extra terms alone never make a selector');
  t.equal(selectorQuery({ matchExpressions: [{ key: 'app', operator: 'Near', values: ['x'] }] }), undefined);
});

t.test("a pod belongs to a Deployment only through that Deployment's ReplicaSet", async (t) => {
  const pod = (
    owner: { kind: string; name: string; controller?: boolean } | undefined,
    hash = 'abc12',
  ): Parameters<typeof ownedByDeployment>[0] => ({
    metadata: {
      labels: { 'pod-template-hash': hash },
      ownerReferences: owner ? [{ apiVersion: 'apps/v1', uid: 'u', controller: true, ...owner }] : [],
    },
  });
  t.ok(ownedByDeployment(pod({ kind: 'ReplicaSet', name: 'web-abc12' }), 'web'));
  t.notOk(ownedByDeployment(pod({ kind: 'ReplicaSet', name: 'web-canary-abc12' }), 'web'), "the canary's pods");
  t.notOk(ownedByDeployment(pod({ kind: 'ReplicaSet', name: 'other-abc12' }), 'web'), "another Deployment's pods");
  t.notOk(ownedByDeployment(pod(undefined), 'web'), 'a bare pod');
  t.notOk(
    ownedByDeployment(pod({ kind: 'ReplicaSet', name: 'web-abc12', controller: false }), 'web'),
    'not the controller',
  );
});
