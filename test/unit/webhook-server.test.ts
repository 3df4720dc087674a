// The HTTPS server: real TLS on port 0, bad input answered with 400s while the server stays up,
// certificate rotation picked up from disk, metrics on weir's own registry.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import type { PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import { buildApp, bodyLimit } from '../../webhook/app.ts';
import { writeWebhookCerts } from '../../certs/main.ts';
import { waitFor } from '../cluster/cluster.ts';

const review = JSON.parse(
  readFileSync(new URL('../fixtures/admission/update-image.json', import.meta.url), 'utf8'),
) as Record<string, unknown>;

async function serve(t: {
  teardown(fn: () => unknown): void;
}): Promise<{ url: string; dispatcher: Agent; dir: string; port: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-webhook-'));
  await writeWebhookCerts(dir, 'weir', 'weir-system', ['127.0.0.1']);
  const app = buildApp({
    tls: { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), reloadIntervalMs: 100 },
    logger: false,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const dispatcher = new Agent({ connect: { ca: readFileSync(join(dir, 'ca.crt')) } });
  t.teardown(async () => {
    await dispatcher.close();
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { url: `https://127.0.0.1:${port}`, dispatcher, dir, port };
}

const post = async (
  s: { url: string; dispatcher: Agent },
  body: string,
  contentType = 'application/json',
): Promise<{ status: number; json: Record<string, unknown> }> => {
  const res = await request(`${s.url}/mutate`, {
    method: 'POST',
    body,
    headers: { 'content-type': contentType },
    dispatcher: s.dispatcher,
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
};

t.test('a real review over TLS gets a patched AdmissionReview', async (t) => {
  const s = await serve(t);
  const res = await post(s, JSON.stringify(review));
  t.equal(res.status, 200);
  const response = res.json.response as { uid: string; allowed: boolean; patchType: string };
  t.equal(response.uid, (review.request as { uid: string }).uid);
  t.equal(response.allowed, true);
  t.equal(response.patchType, 'JSONPatch');
});

t.test('malformed requests get a 400 that says what is wrong, and the server stays up', async (t) => {
  const s = await serve(t);
  const cases: [string, RegExp][] = [
    ['{"kind":"Pod"}', /expected "AdmissionReview"/],
    [JSON.stringify({ ...review, apiVersion: 'admission.k8s.io/v1beta1' }), /apiVersion/],
    [JSON.stringify({ ...review, request: { ...(review.request as object), uid: undefined } }), /uid is missing/],
    [JSON.stringify({ ...review, request: { ...(review.request as object), object: undefined } }), /object is missing/],
    ['[1,2]', /object/],
    ['{not json', /JSON/i],
  ];
  for (const [body, message] of cases) {
    const res = await post(s, body);
    t.equal(res.status, 400, `400 for ${body.slice(0, 30)}`);
    t.match(String(res.json.message), message);
  }
  const wrongType = await post(s, 'hello', 'text/plain');
  t.equal(wrongType.status, 400, 'a text body is refused with 400');
  t.match(String(wrongType.json.message), /must be object/);
  const health = await request(`${s.url}/healthz`, { dispatcher: s.dispatcher });
  t.equal(health.statusCode, 200, 'still up');
  await health.body.text();
});

t.test('the body limit fits two of the largest objects the API server accepts', async (t) => {
  const s = await serve(t);
  t.ok(bodyLimit >= 2 * 3 * 1024 * 1024);
  const big = structuredClone(review) as {
    request: {
      object: { metadata: { annotations: Record<string, string> } };
      oldObject: { metadata: { annotations: Record<string, string> } };
    };
  };
  const filler = 'x'.repeat(1024 * 1024);
  for (let i = 0; i < 2; i++) {
    big.request.object.metadata.annotations[`big${i}`] = filler;
    big.request.oldObject.metadata.annotations[`big${i}`] = filler;
  }
  t.equal((await post(s, JSON.stringify(big))).status, 200, 'a 4 MiB review is answered');
  t.equal((await post(s, `{"a":"${'y'.repeat(bodyLimit)}"}`)).status, 413, 'past the limit: 413, not a crash');
});

function servedFingerprint(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      const cert: PeerCertificate = socket.getPeerCertificate();
      socket.end();
      resolve(cert.fingerprint256);
    });
    socket.on('error', reject);
  });
}

t.test('a rotated certificate on disk is served without a restart', async (t) => {
  const s = await serve(t);
  const first = await servedFingerprint(s.port, readFileSync(join(s.dir, 'ca.crt')));
  const next = await mkdtemp(join(tmpdir(), 'weir-rotated-'));
  t.teardown(() => rm(next, { recursive: true, force: true }));
  await writeWebhookCerts(next, 'weir', 'weir-system', ['127.0.0.1']);
  await copyFile(join(next, 'tls.key'), join(s.dir, 'tls.key'));
  await copyFile(join(next, 'tls.crt'), join(s.dir, 'tls.crt'));
  const newCa = readFileSync(join(next, 'ca.crt'));
  let served = first;
  await waitFor(
    'the new certificate to be served',
    async () => {
      served = await servedFingerprint(s.port, newCa).catch(() => first);
      return served !== first;
    },
    10_000,
    100,
  );
  t.not(served, first, 'a new certificate, signed by the new CA');
});

t.test('metrics count admissions by operation and outcome', async (t) => {
  const s = await serve(t);
  await post(s, JSON.stringify(review));
  await post(s, '{"kind":"Pod"}');
  const res = await request(`${s.url}/metrics`, { dispatcher: s.dispatcher });
  const text = await res.body.text();
  t.match(text, /weir_admissions_total\{operation="UPDATE",outcome="patched"\} 1/);
  t.match(text, /weir_admissions_total\{operation="unknown",outcome="rejected"\} 1/);
  t.match(text, /weir_admission_duration_seconds_bucket/);
  // A forged review with a random operation makes no new series.
  await post(
    s,
    JSON.stringify({
      ...review,
      request: { ...(review.request as Record<string, unknown>), operation: 'FORGED-7f3a' },
    }),
  );
  const after = await (await request(`${s.url}/metrics`, { dispatcher: s.dispatcher })).body.text();
  t.notMatch(after, /FORGED/, 'the forged operation is not a label value');
  t.match(after, /weir_admissions_total\{operation="other",outcome="skipped"\} 1/, 'it counts as other');
  const ready = await request(`${s.url}/readyz`, { dispatcher: s.dispatcher });
  t.equal(ready.statusCode, 200);
  await ready.body.text();
});
