// The AdmissionReview envelope: each malformed kind gets a message that says what is wrong.
import t from 'tap';
import { parseReview, allow } from '../../webhook/review.ts';

const good = {
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: { uid: 'u1', kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, operation: 'CREATE', object: {} },
};

t.test('malformed envelopes are named', async (t) => {
  const cases: [unknown, RegExp][] = [
    [null, /not a JSON object/],
    [[], /not a JSON object/],
    [{ ...good, kind: 'Pod' }, /expected "AdmissionReview"/],
    [{ ...good, apiVersion: 'admission.k8s.io/v1beta1' }, /admissionReviewVersions/],
    [{ ...good, request: undefined }, /request is missing/],
    [{ ...good, request: { ...good.request, uid: '' } }, /uid is missing/],
    [{ ...good, request: { ...good.request, kind: 'Deployment' } }, /request\.kind/],
    [{ ...good, request: { ...good.request, operation: 7 } }, /operation is missing/],
    [{ ...good, request: { ...good.request, object: undefined } }, /object is missing for CREATE/],
    [{ ...good, request: { ...good.request, operation: 'UPDATE' } }, /oldObject is missing/],
  ];
  for (const [body, message] of cases) {
    const parsed = parseReview(body);
    t.equal(parsed.ok, false);
    if (!parsed.ok) t.match(parsed.error, message);
  }
  t.equal(parseReview(good).ok, true);
});

t.test('responses always allow; the patch is base64 JSON Patch', async (t) => {
  const plain = allow('u1', [], []);
  t.same(plain, { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u1', allowed: true } });
  const patched = allow('u2', [{ op: 'add', path: '/a', value: 1 }], ['careful']);
  t.equal(patched.response.patchType, 'JSONPatch');
  t.same(JSON.parse(Buffer.from(patched.response.patch ?? '', 'base64').toString()), [
    { op: 'add', path: '/a', value: 1 },
  ]);
  t.same(patched.response.warnings, ['careful']);
});
