// What `weir get` shows is built from weir's record alone (issue 11): the steps come from the
// record, so a Deployment on any named policy shows them, and no policy is resolved here.
import t from 'tap';
import type { V1Deployment } from '@kubernetes/client-node';
import { buildSummary, renderDetail, renderTable } from '../../cli/view.ts';
import { annotations, policyAnnotations } from '../../contract/names.ts';
import { formatStatus } from '../../contract/status.ts';
import type { ReleaseStatus } from '../../contract/status.ts';
import { templateRevision } from '../../contract/revision.ts';

const now = new Date('2026-11-28T12:00:30Z');

const template = { spec: { containers: [{ name: 'app', image: 'web:2' }] } };

function deployment(status: ReleaseStatus, extra: Record<string, string> = {}): V1Deployment {
  return {
    metadata: {
      name: 'web',
      namespace: 'shop',
      uid: 'u1',
      annotations: {
        [annotations.phase]: 'Progressing',
        [annotations.canaryRevision]: templateRevision(template),
        [annotations.stableRevision]: 's1',
        [annotations.status]: formatStatus(status),
        ...extra,
      },
    },
    spec: { replicas: 4, selector: {}, template },
    status: { readyReplicas: 4 },
  };
}

const record: ReleaseStatus = {
  revision: templateRevision(template),
  policy: 'relative',
  steps: [5, 25, 100],
  step: 1,
  weight: 25,
  stepStartedAt: '2026-11-28T12:00:00Z',
  failures: 0,
  checks: [],
  message: 'step 2/3: 25% to the canary',
};

t.test('steps and desired weight come from the record, under any named policy', async (t) => {
  // The annotation names a policy this process has never heard of: nothing needs to resolve it.
  const summary = buildSummary(deployment(record, { [policyAnnotations.policy]: 'relative' }), undefined, [], 25, now);
  t.equal(summary.step, 2);
  t.equal(summary.steps, 3);
  t.equal(summary.desiredWeight, 25);
  t.equal(summary.actualWeight, 25);
  t.equal(summary.policy, 'relative');
  t.equal(summary.secondsInStep, 30);
  t.match(renderDetail(summary), /Step:\s+2\/3/);
  t.match(renderDetail(summary), /Policy:\s+relative/);
  t.match(renderTable([summary], false), /web\s+Progressing\s+2\/3\s+25%/);
});

t.test('a hostile policy annotation does not stop the summary', async (t) => {
  const summary = buildSummary(
    deployment(record, { [policyAnnotations.steps]: 'not,steps', [policyAnnotations.policy]: '__proto__' }),
    undefined,
    [],
    undefined,
    now,
  );
  t.equal(summary.steps, 3, 'the record says what the analyzer runs');
  t.equal(summary.actualWeight, undefined);
  t.match(renderTable([summary], true), /shop\s+web/);
});

t.test('a record from before steps were recorded shows the step without a total', async (t) => {
  const old: ReleaseStatus = { ...record };
  delete old.steps;
  delete old.policy;
  const summary = buildSummary(deployment(old), undefined, [], 25, now);
  t.equal(summary.step, 2);
  t.equal(summary.steps, undefined);
  t.match(renderTable([summary], false), /2\/\?/);
});

t.test(
  'the shadow step and a scaled stable half show in weir get (and the dashboard, from the same summary)',
  async (t) => {
    const shadow: ReleaseStatus = { ...record, steps: [0, 10, 100], step: 0, weight: 0, mirror: 100 };
    const first = buildSummary(deployment(shadow), undefined, [], 0, now);
    t.equal(first.mirror, 100);
    t.match(renderTable([first], false), /web\s+Progressing\s+1\/3\s+0% \+mirror 100%/);
    t.match(renderDetail(first), /actual 0% \+mirror 100%/);
    const scaled: ReleaseStatus = { ...record, replicas: 8, stableReplicas: 6 };
    const d = deployment(scaled);
    if (d.spec) d.spec.replicas = 6;
    const summary = buildSummary(d, undefined, [], 25, now);
    t.equal(summary.stableTotal, 8);
    t.match(renderTable([summary], false), /4\/6 of 8/);
    t.match(renderDetail(summary), /ready 4\/6 of 8/);
    t.equal(
      buildSummary(deployment(record), undefined, [], 25, now).stableTotal,
      undefined,
      'not scaled: no total shown',
    );
  },
);
