// `npm run certs -- --out DIR [--service weir --namespace weir-system] [--ip 127.0.0.1]`:
// makes a CA and a serving certificate for the webhook and writes ca.crt, tls.crt, tls.key and
// ca-bundle.b64 (the caBundle value of the MutatingWebhookConfiguration).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createAuthority, issue, serviceDnsNames } from './pki.ts';

export async function writeWebhookCerts(
  out: string,
  service: string,
  namespace: string,
  ips: string[],
): Promise<{ caBundle: string }> {
  const ca = await createAuthority(`${service}-ca`);
  const serving = await issue(ca, {
    commonName: `${service}.${namespace}.svc`,
    usage: 'server',
    dnsNames: [...serviceDnsNames(service, namespace), 'localhost'],
    ipAddresses: ips,
  });
  const caBundle = Buffer.from(ca.certPem).toString('base64');
  await mkdir(out, { recursive: true });
  await Promise.all([
    writeFile(join(out, 'ca.crt'), ca.certPem),
    writeFile(join(out, 'tls.crt'), serving.certPem),
    writeFile(join(out, 'tls.key'), serving.keyPem, { mode: 0o600 }),
    writeFile(join(out, 'ca-bundle.b64'), caBundle),
  ]);
  return { caBundle };
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: 'certs/out' },
      service: { type: 'string', default: 'weir' },
      namespace: { type: 'string', default: 'weir-system' },
      ip: { type: 'string', multiple: true, default: ['127.0.0.1'] },
    },
  });
  const { caBundle } = await writeWebhookCerts(values.out, values.service, values.namespace, values.ip);
  process.stdout.write(`wrote ${values.out}/{ca.crt,tls.crt,tls.key,ca-bundle.b64}\ncaBundle: ${caBundle}\n`);
}
