// The webhook's TLS at run time (ADR 13): the analyzer keeps an authority and a serving
// certificate in a Secret the webhook container mounts, and the webhook configuration's caBundle
// in step with them. Nothing is rendered by Helm, so `helm template`, Argo CD and Flux render the
// same objects every time. One step per call, decided by core/certificates.ts.
import type { V1Secret } from '@kubernetes/client-node';
import type { AdmissionApi, CoreApi } from './rest.ts';
import { createAuthority, certificateFacts, issue, loadAuthority, signedBy } from '../../certs/pki.ts';
import { fieldManager, maybe } from '../../contract/api.ts';
import type { PatchOp } from '../../contract/api.ts';
import { nextCertificateStep } from '../core/certificates.ts';
import type { CertificatePolicy, CertificateStep, HeldCertificates } from '../core/certificates.ts';

export interface CertificateSettings {
  namespace: string;
  /** The Secret the webhook mounts (`tls.crt`, `tls.key` only) and the authority lives in. */
  secret: string;
  /** The MutatingWebhookConfiguration whose caBundle trusts the authority. */
  webhookConfiguration: string;
  policy: CertificatePolicy;
}

export interface CertificateApis {
  core: CoreApi;
  admission: AdmissionApi;
}

const keys = { ca: 'ca.crt', caKey: 'ca.key', previousCa: 'ca-previous.crt', cert: 'tls.crt', key: 'tls.key' } as const;
const day = 24 * 60 * 60 * 1000;
const isIp = (name: string): boolean => /^[\d.]+$/.test(name) || name.includes(':');

const decode = (data: Record<string, string> | undefined, key: string): string | undefined => {
  const value = data?.[key];
  return value ? Buffer.from(value, 'base64').toString('utf8') : undefined;
};
const encode = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
/** PEM blocks compared without line-ending and whitespace differences. */
const blocks = (pem: string): string[] =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)?.map((b) => b.replace(/\s+/g, '')) ?? [];

/** The caBundle: the current authority and, while it lasts, the previous one (ADR 13). */
function bundleOf(data: Record<string, string> | undefined, now: number): string {
  const current = decode(data, keys.ca) ?? '';
  const previous = decode(data, keys.previousCa);
  const keepPrevious = previous !== undefined && certificateFacts(previous).notAfter.getTime() > now;
  return keepPrevious ? `${current.trimEnd()}\n${previous}` : current;
}

async function held(secret: V1Secret | undefined, bundles: string[] | undefined): Promise<HeldCertificates> {
  const data = secret?.data;
  const ca = decode(data, keys.ca);
  const cert = decode(data, keys.cert);
  const authority = ca && decode(data, keys.caKey) ? { notAfter: certificateFacts(ca).notAfter.getTime() } : undefined;
  const facts = cert && decode(data, keys.key) ? certificateFacts(cert) : undefined;
  const caBlock = ca ? blocks(ca)[0] : undefined;
  return {
    ...(authority ? { authority } : {}),
    ...(facts && cert && ca
      ? {
          serving: {
            notAfter: facts.notAfter.getTime(),
            names: [...facts.dnsNames, ...facts.ipAddresses],
            signedByAuthority: await signedBy(cert, ca),
          },
        }
      : {}),
    // No webhook configuration yet (GitOps applies it later): nothing to keep in step with now.
    bundleTrustsAuthority:
      bundles === undefined || (caBlock !== undefined && bundles.every((b) => blocks(b).includes(caBlock))),
  };
}

async function writeSecret(
  apis: CertificateApis,
  s: CertificateSettings,
  current: V1Secret | undefined,
  data: Record<string, string>,
): Promise<void> {
  const body: V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name: s.secret,
      namespace: s.namespace,
      labels: { 'app.kubernetes.io/managed-by': 'weir' },
      // A stale read loses the race (409) instead of overwriting a newer certificate.
      ...(current?.metadata?.resourceVersion ? { resourceVersion: current.metadata.resourceVersion } : {}),
    },
    data,
  };
  if (current) await apis.core.replaceNamespacedSecret({ namespace: s.namespace, name: s.secret, body, fieldManager });
  else await apis.core.createNamespacedSecret({ namespace: s.namespace, body, fieldManager });
}

async function trust(
  apis: CertificateApis,
  s: CertificateSettings,
  bundle: string,
  resourceVersion: string,
  count: number,
): Promise<void> {
  const ops: PatchOp[] = [{ op: 'test', path: '/metadata/resourceVersion', value: resourceVersion }];
  for (let i = 0; i < count; i++)
    ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: encode(bundle) });
  await apis.admission.patchMutatingWebhookConfiguration({ name: s.webhookConfiguration, body: ops, fieldManager });
}

/**
 * Takes the next step towards a trusted, current serving certificate; returns the step taken and
 * when the serving certificate held before it ends (seconds since the epoch), for the expiry metric.
 */
export async function keepCertificates(
  apis: CertificateApis,
  s: CertificateSettings,
  now: Date,
): Promise<{ step: CertificateStep; servingNotAfter?: number }> {
  const secret = await maybe(() => apis.core.readNamespacedSecret({ namespace: s.namespace, name: s.secret }));
  const configuration = await maybe(() =>
    apis.admission.readMutatingWebhookConfiguration({ name: s.webhookConfiguration }),
  );
  const bundles = configuration?.webhooks?.map((w) =>
    w.clientConfig.caBundle ? (decode({ b: w.clientConfig.caBundle }, 'b') ?? '') : '',
  );
  const before = await held(secret, bundles);
  const step = await takeStep(apis, s, secret, nextCertificateStep(before, s.policy, now.getTime()), {
    bundles: bundles?.length ?? 0,
    resourceVersion: configuration?.metadata?.resourceVersion,
    now,
  });
  return { step, ...(before.serving ? { servingNotAfter: before.serving.notAfter / 1000 } : {}) };
}

async function takeStep(
  apis: CertificateApis,
  s: CertificateSettings,
  secret: V1Secret | undefined,
  step: CertificateStep,
  configuration: { bundles: number; resourceVersion: string | undefined; now: Date },
): Promise<CertificateStep> {
  const data = { ...(secret?.data ?? {}) };
  switch (step.kind) {
    case 'keep':
      return step;
    case 'createAuthority': {
      const authority = await createAuthority(
        `${s.webhookConfiguration}-ca`,
        Math.max(1, Math.round(s.policy.authorityValidityMs / day)),
      );
      const previous = decode(data, keys.ca);
      await writeSecret(apis, s, secret, {
        ...data,
        [keys.ca]: encode(authority.certPem),
        [keys.caKey]: encode(authority.keyPem),
        ...(previous ? { [keys.previousCa]: encode(previous) } : {}),
      });
      return step;
    }
    case 'trustAuthority':
      if (configuration.resourceVersion)
        await trust(
          apis,
          s,
          bundleOf(data, configuration.now.getTime()),
          configuration.resourceVersion,
          configuration.bundles,
        );
      return step;
    case 'issueServing': {
      const authority = await loadAuthority(decode(data, keys.ca) ?? '', decode(data, keys.caKey) ?? '');
      const serving = await issue(authority, {
        commonName: s.policy.names[0] ?? 'weir',
        usage: 'server',
        dnsNames: s.policy.names.filter((n) => !isIp(n)),
        ipAddresses: s.policy.names.filter(isIp),
        validMs: s.policy.servingValidityMs,
      });
      await writeSecret(apis, s, secret, {
        ...data,
        [keys.cert]: encode(serving.certPem),
        [keys.key]: encode(serving.keyPem),
      });
      return step;
    }
  }
}
