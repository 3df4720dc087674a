// The analyzer's own Kubernetes client (ADR 22), the parts without a server: where it finds the
// API server and its credentials, and how its errors read. Requests and watches run against the
// real API server in the cluster tests (every analyzer there uses nothing else).
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { KubeError, accessFromKubeconfig, events, loadAccess, resourceOf } from '../../analyzer/loop/rest.ts';
import type { WatchEvent } from '../../analyzer/loop/rest.ts';
import { describeError, isConflict, isNotFound, maybe } from '../../contract/api.ts';

const b64 = (text: string): string => Buffer.from(text).toString('base64');

function kubeconfig(dir: string, user: Record<string, unknown>, cluster: Record<string, unknown> = {}): string {
  const file = join(dir, 'config');
  writeFileSync(
    file,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'here',
      contexts: [
        { name: 'elsewhere', context: { cluster: 'other', user: 'other' } },
        { name: 'here', context: { cluster: 'local', user: 'me' } },
      ],
      clusters: [
        { name: 'other', cluster: { server: 'https://wrong:1' } },
        { name: 'local', cluster: { server: 'https://127.0.0.1:6443', ...cluster } },
      ],
      users: [
        { name: 'other', user: { token: 'wrong' } },
        { name: 'me', user },
      ],
    }),
  );
  return file;
}

t.test("a kubeconfig: the current context's cluster and user, inline or from files beside it", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-rest-'));
  writeFileSync(join(dir, 'ca.pem'), 'CA FROM FILE');
  const inline = accessFromKubeconfig(
    kubeconfig(
      dir,
      { 'client-certificate-data': b64('CERT'), 'client-key-data': b64('KEY') },
      { 'certificate-authority': 'ca.pem', 'tls-server-name': 'api.local' },
    ),
  );
  t.equal(inline.server, 'https://127.0.0.1:6443', 'the current cluster, not the first');
  t.equal(inline.ca, 'CA FROM FILE', 'a relative path is read beside the kubeconfig');
  t.equal(inline.cert, 'CERT');
  t.equal(inline.key, 'KEY');
  t.equal(inline.servername, 'api.local');
  t.equal(inline.token, undefined, 'no token when the user has certificates');
  t.notOk(inline.insecure);

  const token = accessFromKubeconfig(kubeconfig(dir, { token: 'abc' }, { 'insecure-skip-tls-verify': true }));
  t.equal(token.token?.(), 'abc', 'the user, not the first user');
  t.equal(token.insecure, true);

  writeFileSync(join(dir, 'token'), 'from-file\n');
  const fromFile = accessFromKubeconfig(kubeconfig(dir, { tokenFile: 'token' }));
  t.equal(fromFile.token?.(), 'from-file', 'a token file, trimmed');
});

t.test('a kubeconfig the analyzer cannot use says why', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-rest-'));
  t.throws(
    () => accessFromKubeconfig(kubeconfig(dir, { exec: { command: 'aws' } })),
    /client certificate or a token, not "exec"/,
  );
  const file = join(dir, 'broken');
  writeFileSync(file, stringify({ 'current-context': 'nowhere', contexts: [] }));
  t.throws(() => accessFromKubeconfig(file), /no context "nowhere"/);
  writeFileSync(file, '- just\n- a list\n');
  t.throws(() => accessFromKubeconfig(file), /is not a kubeconfig/);
});

t.test('loadAccess: $KUBECONFIG first (its first file that exists)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-rest-'));
  const file = kubeconfig(dir, { token: 'abc' });
  const access = loadAccess({ KUBECONFIG: `${join(dir, 'missing')}:${file}` });
  t.equal(access.server, 'https://127.0.0.1:6443');
});

t.test('requests are counted by resource, as the read metrics name them', async (t) => {
  t.equal(resourceOf('/apis/apps/v1/namespaces/ns/deployments/web'), 'deployments');
  t.equal(resourceOf('/api/v1/namespaces/ns/pods?labelSelector=app%3Dweb'), 'pods');
  t.equal(resourceOf('/api/v1/namespaces'), 'namespaces');
  t.equal(resourceOf('/apis/networking.istio.io/v1/namespaces/ns/virtualservices/vs'), 'virtualservices');
  t.equal(
    resourceOf('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/weir'),
    'mutatingwebhookconfigurations',
  );
});

t.test("the API server's errors read the same as client-node's to every shared helper", async (t) => {
  const missing = new KubeError(404, { kind: 'Status', message: 'deployments.apps "web" not found' }, 'GET /x');
  t.ok(isNotFound(missing));
  t.equal(await maybe(() => Promise.reject(missing)), undefined, '404 is "not there"');
  const conflict = new KubeError(409, { message: 'the object has been modified' }, 'PATCH /x');
  t.ok(isConflict(conflict));
  t.notOk(isNotFound(conflict));
  t.equal(describeError(conflict), '409: the object has been modified');
  t.equal(describeError(new KubeError(502, '<html>bad gateway</html>', 'GET /x')), '502: <html>bad gateway</html>');
  await t.rejects(
    maybe(() => Promise.reject(new KubeError(500, undefined, 'GET /x'))),
    /GET \/x: HTTP 500/,
    'other errors pass',
  );
  t.notOk(isNotFound(new Error('404')), 'a plain error is not an API answer');
});

t.test('a watch body: events one per line, whatever the chunks split — a line, or a character', async (t) => {
  const sent: WatchEvent<{ metadata: { name: string; annotations: Record<string, string> } }>[] = [
    { type: 'ADDED', object: { metadata: { name: 'web', annotations: { note: 'grüße, 金丝雀 🐤' } } } },
    { type: 'MODIFIED', object: { metadata: { name: 'web', annotations: { note: 'zweite' } } } },
    { type: 'BOOKMARK', object: { metadata: { name: '', annotations: {} } } },
  ];
  const bytes = Buffer.from(sent.map((e) => JSON.stringify(e)).join('\n') + '\n');
  for (const size of [1, 2, 3, 5, 7, 64, bytes.length]) {
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
    }
    const got: unknown[] = [];
    for await (const e of events(chunks())) got.push(e);
    t.same(got, sent, `chunks of ${size} bytes`);
  }
});
