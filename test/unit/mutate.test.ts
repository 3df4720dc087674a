// Replays AdmissionReviews recorded from the real API server (test/fixtures/record.ts) through
// the pure mutate function: every behaviour of the webhook contract in docs/design.md.
import t from 'tap';
import { readFileSync } from 'node:fs';
import jsonPatch from 'fast-json-patch';
import { mutate } from '../../webhook/mutate.ts';
import type { AdmissionInput, Mutation } from '../../webhook/mutate.ts';
import { parseReview } from '../../webhook/review.ts';
import { templateRevision } from '../../contract/revision.ts';

interface Dep {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: {
    paused?: boolean;
    replicas?: number;
    template: { metadata: { labels: Record<string, string> }; spec: { containers: { image: string }[] } };
  };
}

const now = new Date('2026-11-26T12:00:00Z');

function fixture(name: string): AdmissionInput & { uid: string; dryRun?: boolean } {
  const parsed = parseReview(
    JSON.parse(readFileSync(new URL(`../fixtures/admission/${name}.json`, import.meta.url), 'utf8')),
  );
  if (!parsed.ok) throw new Error(`${name}: ${parsed.error}`);
  return parsed.request;
}

/** The object the API server stores after applying weir's patch. */
function applied(input: AdmissionInput, m: Mutation): Dep {
  return jsonPatch.applyPatch(structuredClone(input.object), m.patch, true, false).newDocument as Dep;
}

const dep = (o: unknown): Dep => o as Dep;

t.test('CREATE stamps the stable track on the pod template, never on the selector', async (t) => {
  const input = fixture('create');
  const m = mutate(input, { now });
  t.equal(m.outcome, 'patched');
  t.same(
    m.patch,
    [{ op: 'add', path: '/spec/template/metadata/labels/weir.dev~1track', value: 'stable' }],
    'the "/" in weir.dev/track is escaped as ~1',
  );
  const out = applied(input, m);
  t.equal(out.spec.template.metadata.labels['weir.dev/track'], 'stable');
  t.notOk(
    JSON.stringify((out.spec as unknown as { selector: unknown }).selector).includes('weir.dev'),
    'selector untouched',
  );
});

t.test('a replicas-only change, or metadata outside the template, passes untouched', async (t) => {
  for (const name of ['update-replicas', 'update-metadata', 'update-hand-paused-replicas']) {
    const m = mutate(fixture(name), { now });
    t.equal(m.outcome, 'unchanged', name);
    t.same(m.patch, [], `${name}: no patch`);
  }
});

t.test('a new pod template starts a release: paused, recorded, template as the user wrote it', async (t) => {
  const input = fixture('update-image');
  const m = mutate(input, { now });
  const out = applied(input, m);
  const old = dep(input.oldObject);
  t.equal(out.spec.paused, true, 'paused: the running ReplicaSet stays the stable half');
  const a = out.metadata.annotations ?? {};
  t.equal(a['weir.dev/phase'], 'Progressing');
  t.equal(a['weir.dev/stable-revision'], templateRevision(old.spec.template));
  t.equal(a['weir.dev/canary-revision'], templateRevision(dep(input.object).spec.template));
  t.equal(a['weir.dev/release-started'], now.toISOString());
  t.match(a['weir.dev/reason'], /^Started: canary revision/);
  t.same(out.spec.template, dep(input.object).spec.template, 'no drift in the template');
  t.ok(
    m.patch.every((op) => op.path === '/spec/paused' || op.path.startsWith('/metadata/annotations')),
    'only paused and weir annotations',
  );
});

t.test('yet another template during a release supersedes the canary', async (t) => {
  const input = fixture('update-image-during-release');
  const old = dep(input.oldObject);
  const out = applied(input, mutate(input, { now }));
  const a = out.metadata.annotations ?? {};
  t.equal(old.metadata.annotations?.['weir.dev/phase'], 'Progressing', 'recorded mid-release');
  t.equal(a['weir.dev/phase'], 'Progressing');
  t.equal(
    a['weir.dev/stable-revision'],
    old.metadata.annotations?.['weir.dev/stable-revision'],
    'the stable revision stays',
  );
  t.equal(a['weir.dev/canary-revision'], templateRevision(dep(input.object).spec.template));
  t.not(a['weir.dev/canary-revision'], old.metadata.annotations?.['weir.dev/canary-revision']);
  t.match(a['weir.dev/reason'], /^Superseded/);
  t.equal(out.spec.paused, true);
});

t.test('dry-run gets the same answer as the real request', async (t) => {
  const dry = fixture('dry-run-image');
  const real = fixture('update-image-during-release');
  t.equal(dry.dryRun, true);
  t.same(mutate(dry, { now }).patch, mutate(real, { now }).patch);
});

t.test('re-applying the same template changes nothing: no loop, no restart', async (t) => {
  const m = mutate(fixture('reapply-same-template'), { now });
  t.equal(m.outcome, 'unchanged');
  t.same(m.patch, []);
});

t.test('a template equal to the stable revision ends the release and unpauses', async (t) => {
  const input = fixture('revert-to-stable');
  const out = applied(input, mutate(input, { now }));
  const a = out.metadata.annotations ?? {};
  t.equal(out.spec.paused, false);
  t.equal(a['weir.dev/phase'], 'Stable');
  t.notOk('weir.dev/canary-revision' in a, 'no canary revision left');
  t.equal(templateRevision(out.spec.template), a['weir.dev/stable-revision']);
  t.match(a['weir.dev/reason'], /^Reverted/);
});

t.test('a revert after a rolled-back release also ends it', async (t) => {
  const input = fixture('revert-to-stable');
  const old = dep(input.oldObject);
  old.metadata.annotations = { ...old.metadata.annotations, 'weir.dev/phase': 'RolledBack' };
  const out = applied(input, mutate(input, { now }));
  t.equal(out.spec.paused, false);
  t.equal(out.metadata.annotations?.['weir.dev/phase'], 'Stable');
});

t.test('server-side apply that omits weir keys keeps them and starts a release', async (t) => {
  const input = fixture('server-side-apply-image');
  const out = applied(input, mutate(input, { now }));
  t.equal(out.spec.template.metadata.labels['weir.dev/track'], 'stable');
  t.equal(out.metadata.annotations?.['weir.dev/phase'], 'Progressing');
  t.equal(out.spec.paused, true);
});

t.test('weir labels an apply dropped are restored, so no template change restarts pods', async (t) => {
  const input = fixture('update-replicas');
  const object = dep(input.object);
  delete object.spec.template.metadata.labels['weir.dev/track'];
  const m = mutate(input, { now });
  t.same(m.patch, [{ op: 'add', path: '/spec/template/metadata/labels/weir.dev~1track', value: 'stable' }]);
});

t.test('a Deployment from before the opt-in gets no label on a replicas change', async (t) => {
  const input = fixture('update-replicas');
  delete dep(input.object).spec.template.metadata.labels['weir.dev/track'];
  delete dep(input.oldObject).spec.template.metadata.labels['weir.dev/track'];
  t.same(mutate(input, { now }).patch, [], 'adding the label would restart every pod');
});

t.test('skipped: canary half, opt-out, subresources, other kinds, weir namespace, DELETE', async (t) => {
  t.equal(mutate(fixture('create-canary-half'), { now }).reason, 'the canary half of a release');
  t.match(mutate(fixture('create-opted-out'), { now }).reason, /opted out/);
  const base = fixture('update-replicas');
  t.match(mutate({ ...base, subResource: 'scale' }, { now }).reason, /never intercepted/);
  t.match(
    mutate({ ...base, kind: { group: 'apps', version: 'v1', kind: 'StatefulSet' } }, { now }).reason,
    /not an apps\/v1 Deployment/,
  );
  t.match(mutate(base, { now, weirNamespace: base.namespace ?? '' }).reason, /own namespace/);
  t.match(mutate({ ...base, operation: 'DELETE' }, { now }).reason, /not handled/);
  for (const name of ['create-canary-half', 'create-opted-out'])
    t.same(mutate(fixture(name), { now }).patch, [], `${name}: no patch`);
});

t.test('a hand-paused Deployment with no release stays as the user left it', async (t) => {
  const input = fixture('create-hand-paused');
  const out = applied(input, mutate(input, { now }));
  t.equal(out.spec.paused, true);
  t.notOk(out.metadata.annotations?.['weir.dev/phase'], 'no release');
});

t.test('a Deployment weir cannot read is admitted with a warning and no patch', async (t) => {
  const base = fixture('update-image');
  const noTemplate = structuredClone(base.object) as { spec: Record<string, unknown> };
  delete noTemplate.spec.template;
  const m = mutate({ ...base, object: noTemplate }, { now });
  t.equal(m.outcome, 'invalid');
  t.same(m.patch, []);
  t.match(m.warnings[0], /spec\.template is missing/);
  t.equal(mutate({ ...base, object: [] }, { now }).outcome, 'invalid');
});

t.test('template revisions ignore weir keys and see everything else', async (t) => {
  const template = dep(fixture('create').object).spec.template;
  const labelled = structuredClone(template);
  labelled.metadata.labels['weir.dev/track'] = 'canary';
  t.equal(templateRevision(labelled), templateRevision(template));
  const changed = structuredClone(template);
  const container = changed.spec.containers[0];
  if (container) container.image = 'other';
  t.not(templateRevision(changed), templateRevision(template));
  t.match(templateRevision(template), /^[0-9a-f]{10}$/);
});

t.test('release annotations come back only when an apply dropped all of them', async (t) => {
  const input = fixture('update-image-during-release');
  const stored = dep(input.oldObject).metadata.annotations ?? {};
  const noWeir = structuredClone(input);
  const incoming = dep(noWeir.object);
  incoming.metadata.annotations = Object.fromEntries(
    Object.entries(incoming.metadata.annotations ?? {}).filter(([k]) => !k.startsWith('weir.dev/')),
  );
  dep(noWeir.object).spec.template = structuredClone(dep(noWeir.oldObject).spec.template);
  const restored = applied(noWeir, mutate(noWeir, { now }));
  t.equal(restored.metadata.annotations?.['weir.dev/phase'], stored['weir.dev/phase'], 'all restored');
  const analyzerWrite = structuredClone(noWeir);
  dep(analyzerWrite.object).metadata.annotations = { ...stored };
  delete dep(analyzerWrite.object).metadata.annotations?.['weir.dev/canary-revision'];
  t.same(mutate(analyzerWrite, { now }).patch, [], 'a write that removes one weir annotation on purpose is kept');
});

t.test("the user's own weir.dev/ settings are theirs to remove: never put back", async (t) => {
  // A Deployment with no release yet: no phase, so nothing marks the record as weir's.
  const input = fixture('update-replicas');
  const old = dep(input.oldObject);
  const settings = { 'weir.dev/canary': 'disabled', 'weir.dev/steps': '10,100', 'weir.dev/virtual-service': 'vs' };
  old.metadata.annotations = { ...(old.metadata.annotations ?? {}), ...settings };
  for (const key of Object.keys(settings)) delete dep(input.object).metadata.annotations?.[key];
  const m = mutate(input, { now });
  t.same(m.patch, [], 'opt-out, policy and routing annotations removed by the user stay removed');
  const out = applied(input, m);
  for (const key of Object.keys(settings)) t.notOk(out.metadata.annotations?.[key], `${key} gone`);
});

t.test('during a release, an apply that drops paused keeps it paused', async (t) => {
  const input = fixture('update-image-during-release');
  const ssa = structuredClone(input);
  ssa.object = structuredClone(ssa.oldObject);
  delete (dep(ssa.object).spec as { paused?: boolean }).paused;
  const m = mutate(ssa, { now });
  t.same(m.patch, [{ op: 'add', path: '/spec/paused', value: true }]);
  t.match(m.reason, /kept paused/);
  const promoting = structuredClone(ssa);
  const old = dep(promoting.oldObject);
  old.metadata.annotations = { ...old.metadata.annotations, 'weir.dev/phase': 'Promoting' };
  dep(promoting.object).metadata.annotations = { ...old.metadata.annotations };
  t.same(mutate(promoting, { now }).patch, [], "the analyzer's resume at promotion goes through");
});

t.test(
  'dynamic stable scale: a re-apply of the same total keeps the stable size; another total goes through',
  async (t) => {
    const input = fixture('update-image-during-release');
    const reapply = structuredClone(input);
    reapply.object = structuredClone(reapply.oldObject);
    const old = dep(reapply.oldObject);
    old.spec.replicas = 5;
    old.metadata.annotations = {
      ...old.metadata.annotations,
      'weir.dev/phase': 'Progressing',
      'weir.dev/status': JSON.stringify({
        revision: 'r',
        step: 1,
        weight: 50,
        failures: 0,
        checks: [],
        message: '',
        replicas: 10,
        stableReplicas: 5,
      }),
    };
    dep(reapply.object).metadata.annotations = { ...old.metadata.annotations };
    dep(reapply.object).spec.replicas = 10; // git says 10, as it always did
    const m = mutate(reapply, { now });
    t.same(m.patch, [{ op: 'replace', path: '/spec/replicas', value: 5 }]);
    t.match(m.reason, /kept the stable half at 5 replicas/);
    const scaled = structuredClone(reapply);
    dep(scaled.object).spec.replicas = 12; // a new total: the user's
    t.same(mutate(scaled, { now }).patch, [], 'a new total goes through; the analyzer takes it as the total');
    // weir's own write: the new size with its record, in one patch — never kept back.
    const restore = structuredClone(reapply);
    const record = {
      revision: 'r',
      step: 1,
      weight: 0,
      failures: 0,
      checks: [],
      message: '',
      replicas: 10,
      stableReplicas: 10,
    };
    dep(restore.object).metadata.annotations = {
      ...old.metadata.annotations,
      'weir.dev/status': JSON.stringify(record),
    };
    t.same(mutate(restore, { now }).patch, [], "weir's own restore to the total goes through");
    // During a promotion's hand-over too: a re-apply does not jump the new stable pods to the total.
    const promoting = structuredClone(reapply);
    for (const d of [dep(promoting.oldObject), dep(promoting.object)]) {
      d.metadata.annotations = { ...d.metadata.annotations, 'weir.dev/phase': 'Promoting' };
      d.spec.paused = false;
    }
    t.same(mutate(promoting, { now }).patch, [{ op: 'replace', path: '/spec/replicas', value: 5 }]);
    const stable = structuredClone(promoting);
    for (const d of [dep(stable.oldObject), dep(stable.object)])
      d.metadata.annotations = { ...d.metadata.annotations, 'weir.dev/phase': 'Stable' };
    t.same(mutate(stable, { now }).patch, [], 'no release, nothing kept');
  },
);

t.test('the patch carries every change weir makes: applying it leaves nothing for a second look', async (t) => {
  const names = [
    'create',
    'create-hand-paused',
    'update-image',
    'update-image-during-release',
    'update-replicas',
    'update-metadata',
    'update-hand-paused-replicas',
    'reapply-same-template',
    'revert-to-stable',
    'server-side-apply-image',
    'dry-run-image',
  ];
  for (const name of names) {
    const input = fixture(name);
    const patched = applied(input, mutate(input, { now }));
    t.same(mutate({ ...input, object: patched }, { now }).patch, [], name);
    // An apply that dropped weir's keys: the patch restores them all, at every depth.
    const stripped = structuredClone(input);
    const d = dep(stripped.object);
    delete d.metadata.annotations;
    if (d.spec.template.metadata) delete (d.spec.template.metadata as { labels?: unknown }).labels;
    const again = applied(stripped, mutate(stripped, { now }));
    t.same(mutate({ ...stripped, object: again }, { now }).patch, [], `${name}, weir's keys dropped`);
  }
});
