// Issue 12's acceptance for TLS under GitOps (ADR 13): the chart renders no key material, so two
// `helm template` renders are the same and applying both, as GitOps does, changes nothing; the
// analyzer keeps the webhook's certificate and the caBundle, and rotates the certificate before
// it ends, while the API server keeps calling the webhook with no failed admission.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { freePort, repoRoot } from '../cluster/cluster.ts';
import { chart, helm, isolated, serviceAccountKubeconfig } from '../helpers/chart.ts';
import { apply, deployment, getJson, kubectl, kubectlRaw, namespace, waitFor } from '../helpers/kube.ts';
import { startAnalyzer } from '../helpers/release.ts';
import { certificateFacts } from '../../certs/pki.ts';
import { webhookConfiguration } from '../../webhook/registration.ts';

interface Secret {
  metadata: { resourceVersion: string };
  data?: Record<string, string>;
}
interface Configuration {
  webhooks: { clientConfig: { caBundle?: string } }[];
}

const text = (base64: string | undefined): string => Buffer.from(base64 ?? '', 'base64').toString('utf8');
const secret = async (ns: string, name: string): Promise<Secret | undefined> => {
  const r = await kubectlRaw(['get', 'secret', name, '-n', ns, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as Secret) : undefined;
};
const bundleOf = async (name: string): Promise<string> =>
  text(
    (await getJson<Configuration>(['get', 'mutatingwebhookconfiguration', name])).webhooks[0]?.clientConfig.caBundle,
  );
/** Serial numbers compared as the same hex number, whatever the case and leading zeros. */
const serial = (hex: string): string => hex.toLowerCase().replace(/^0+/, '');

t.test('two helm template renders are the same and carry no key material; applied in turn, TLS holds', async (t) => {
  const ns = await namespace(t, { prefix: 'weir' });
  const id = randomBytes(3).toString('hex');
  const release = `g${id}`;
  const render = async (): Promise<string> => {
    const r = await helm(['template', release, chart, '-n', ns, ...isolated(id)]);
    t.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  const [first, second] = [await render(), await render()];
  t.equal(first, second, 'the same render twice: GitOps sees no drift');
  t.notMatch(first, /caBundle:|BEGIN CERTIFICATE|PRIVATE KEY/, 'no caBundle, certificate or key in the render');
  t.notMatch(first, /kind: Secret/, 'no Secret for a GitOps tool to overwrite');
  t.teardown(() => kubectlRaw(['delete', '-n', ns, '-f', '-', '--ignore-not-found', '--wait=false'], first));
  await kubectl(['apply', '-n', ns, '-f', '-'], first);

  // The analyzer as the chart runs it: its ServiceAccount, and the render's own settings.
  type Env = { name: string; value?: string };
  const env = parseAllDocuments(first)
    .map(
      (d) =>
        d.toJS() as { kind?: string; spec?: { template: { spec: { containers: { name: string; env?: Env[] }[] } } } },
    )
    .find((d) => d.kind === 'Deployment')
    ?.spec?.template.spec.containers.find((c) => c.name === 'analyzer')
    ?.env?.filter((e) => /^WEIR_(TLS_|WEBHOOK_)/.test(e.name) && e.value !== undefined);
  const settings = Object.fromEntries((env ?? []).map((e) => [e.name, e.value ?? '']));
  t.same(Object.keys(settings).sort(), [
    'WEIR_TLS_AUTHORITY_VALIDITY',
    'WEIR_TLS_NAMES',
    'WEIR_TLS_SECRET',
    'WEIR_TLS_VALIDITY',
    'WEIR_WEBHOOK_CONFIGURATION',
  ]);
  const { kubeconfig } = await serviceAccountKubeconfig(t, ns, `${release}-weir`);
  const scope = randomBytes(4).toString('hex');
  const analyzer = await startAnalyzer({
    scope,
    identity: `tls-${scope}`,
    kubeconfig,
    leaseNamespace: ns,
    env: settings,
  });
  t.teardown(() => analyzer.kill());
  const configuration = settings.WEIR_WEBHOOK_CONFIGURATION ?? '';
  const secretName = settings.WEIR_TLS_SECRET ?? '';
  await waitFor(
    'a serving certificate, and a caBundle that trusts its authority',
    async () => {
      const held = await secret(ns, secretName);
      const ca = text(held?.data?.['ca.crt']);
      return held?.data?.['tls.crt'] !== undefined && ca !== '' && (await bundleOf(configuration)).includes(ca.trim());
    },
    60_000,
    500,
  );
  const held = await secret(ns, secretName);
  const facts = certificateFacts(text(held?.data?.['tls.crt']));
  t.same(
    facts.dnsNames,
    [
      release + '-weir',
      `${release}-weir.${ns}`,
      `${release}-weir.${ns}.svc`,
      `${release}-weir.${ns}.svc.cluster.local`,
    ],
    "the serving certificate names the webhook's Service",
  );
  const bundle = await bundleOf(configuration);
  // GitOps re-applies the other render, client-side (Argo CD's default) and server-side (Flux).
  await kubectl(['apply', '-n', ns, '-f', '-'], second);
  t.equal(await bundleOf(configuration), bundle, 'kubectl apply keeps the caBundle');
  await kubectl(['apply', '-n', ns, '--server-side', '--force-conflicts', '--field-manager=flux', '-f', '-'], second);
  t.equal(await bundleOf(configuration), bundle, 'server-side apply keeps the caBundle');
  t.equal(
    (await secret(ns, secretName))?.metadata.resourceVersion,
    held?.metadata.resourceVersion,
    'the Secret untouched',
  );
});

/** What the kubelet does for a mounted Secret: the webhook's two files follow the Secret. */
function mountSecret(ns: string, name: string, dir: string): () => void {
  let running = true;
  let last = '';
  void (async () => {
    while (running) {
      const data = (await secret(ns, name))?.data;
      const cert = data?.['tls.crt'];
      const key = data?.['tls.key'];
      if (cert && key && cert + key !== last) {
        // Atomic, as the kubelet's symlink swap is: the webhook never reads half a pair.
        await writeFile(join(dir, 'tls.key.new'), text(key));
        await writeFile(join(dir, 'tls.crt.new'), text(cert));
        await rename(join(dir, 'tls.key.new'), join(dir, 'tls.key'));
        await rename(join(dir, 'tls.crt.new'), join(dir, 'tls.crt'));
        last = cert + key;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  return () => {
    running = false;
  };
}

/** The serial number of the certificate the webhook serves now. */
function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' }, () => {
      resolve(serial(socket.getPeerCertificate().serialNumber));
      socket.end();
    });
    socket.once('error', reject);
  });
}

t.test(
  'the API server keeps calling the webhook through GitOps re-applies and a certificate rotation, no failed admission',
  async (t) => {
    const ns = await namespace(t, { prefix: 'weir' });
    const id = randomBytes(4).toString('hex');
    const name = `weir-tls-${id}`;
    const port = await freePort();
    const dir = await mkdtemp(join(tmpdir(), 'weir-mounted-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const analyzer = await startAnalyzer({
      scope: id,
      identity: `rotate-${id}`,
      leaseNamespace: ns,
      env: {
        WEIR_TLS_SECRET: `tls-${id}`,
        WEIR_WEBHOOK_CONFIGURATION: name,
        WEIR_TLS_NAMES: 'localhost,127.0.0.1',
        // Renewed with a third left: a new certificate every 40 s or so.
        WEIR_TLS_VALIDITY: '60s',
      },
    });
    t.teardown(() => analyzer.kill());
    t.teardown(mountSecret(ns, `tls-${id}`, dir));
    const webhook = spawn(join(repoRoot, 'node_modules/.bin/node'), [join(repoRoot, 'webhook/main.ts')], {
      env: {
        ...process.env,
        WEIR_TLS_CERT: join(dir, 'tls.crt'),
        WEIR_TLS_KEY: join(dir, 'tls.key'),
        WEIR_PORT: String(port),
        WEIR_HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    t.teardown(() => webhook.kill('SIGKILL'));
    // The configuration as it is kept in git: no caBundle; it fails closed, so an admission the
    // webhook does not answer over trusted TLS fails the apply.
    const app = await namespace(t);
    await kubectl(['label', 'namespace', app, `weir-tls-${id}=on`]);
    const manifest = webhookConfiguration({
      name,
      caBundle: '',
      failurePolicy: 'Fail',
      target: { url: `https://127.0.0.1:${port}/mutate` },
    }) as { webhooks: { namespaceSelector: unknown; clientConfig: { caBundle?: string } }[] };
    for (const w of manifest.webhooks) {
      w.namespaceSelector = { matchLabels: { [`weir-tls-${id}`]: 'on' } };
      delete w.clientConfig.caBundle;
    }
    await apply(app, manifest);
    t.teardown(() => kubectl(['delete', 'mutatingwebhookconfiguration', name, '--ignore-not-found']));
    const v = (i: number): string => JSON.stringify(deployment('web', { image: `example.com/web:v${i}`, replicas: 1 }));
    await waitFor(
      'the webhook answering over TLS the API server trusts',
      async () => (await kubectlRaw(['apply', '-n', app, '-f', '-'], v(0))).code === 0,
      90_000,
      1000,
    );
    const stamped = await getJson<{ spec: { template: { metadata: { labels: Record<string, string> } } } }>([
      'get',
      'deployment',
      'web',
      '-n',
      app,
    ]);
    t.equal(stamped.spec.template.metadata.labels['weir.dev/track'], 'stable', 'mutated by the webhook');
    const firstSerial = await servedSerial(port);
    const failures: string[] = [];
    let applies = 0;
    let running = true;
    const gitops = (async () => {
      for (let i = 1; running; i++) {
        const r = await kubectlRaw(['apply', '-n', app, '-f', '-'], v(i));
        applies++;
        if (r.code !== 0) failures.push(r.stderr.trim());
        // Every few updates the webhook configuration is re-applied from git, with no caBundle.
        if (i % 4 === 0) {
          const again = await kubectlRaw(['apply', '-f', '-'], JSON.stringify(manifest));
          if (again.code !== 0) failures.push(again.stderr.trim());
        }
      }
    })();
    await waitFor(
      'a rotated certificate served',
      async () => (await servedSerial(port)) !== firstSerial,
      150_000,
      1000,
    );
    const rotated = await servedSerial(port);
    const stored = serial(certificateFacts(text((await secret(ns, `tls-${id}`))?.data?.['tls.crt'])).serial);
    const target = applies + 5;
    await waitFor('five more applies', () => Promise.resolve(applies >= target), 60_000, 200);
    running = false;
    await gitops;
    t.equal(stored, rotated, "the webhook serves the Secret's new certificate");
    t.same(failures, [], `no failed admission in ${applies} applies across the rotation`);
  },
);
