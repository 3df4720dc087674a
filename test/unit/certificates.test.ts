// The runtime TLS plan (ADR 13), without I/O: one step at a time, in the only safe order.
import t from 'tap';
import { nextCertificateStep } from '../../analyzer/core/certificates.ts';
import type { HeldCertificates } from '../../analyzer/core/certificates.ts';

const hour = 3_600_000;
const policy = { names: ['weir', 'weir.ns.svc'], servingValidityMs: 90 * hour, authorityValidityMs: 900 * hour };
const now = 1_000 * hour;
const good: HeldCertificates = {
  authority: { notAfter: now + 800 * hour },
  serving: { notAfter: now + 80 * hour, names: ['weir', 'weir.ns.svc'], signedByAuthority: true },
  bundleTrustsAuthority: true,
};

t.test('a fresh install: authority, then trust, then a serving certificate', async (t) => {
  const steps: string[] = [];
  let held: HeldCertificates = { bundleTrustsAuthority: false };
  for (let i = 0; i < 5; i++) {
    const step = nextCertificateStep(held, policy, now);
    steps.push(step.kind);
    if (step.kind === 'createAuthority') held = { ...held, authority: { notAfter: now + 900 * hour } };
    if (step.kind === 'trustAuthority') held = { ...held, bundleTrustsAuthority: true };
    if (step.kind === 'issueServing')
      held = { ...held, serving: { notAfter: now + 90 * hour, names: policy.names, signedByAuthority: true } };
  }
  t.same(steps, ['createAuthority', 'trustAuthority', 'issueServing', 'keep', 'keep']);
});

t.test('a serving certificate is renewed with a third of its lifetime left, not before', async (t) => {
  const at = (left: number): string =>
    nextCertificateStep(
      { ...good, serving: { ...(good.serving ?? { names: [], signedByAuthority: true }), notAfter: now + left } },
      policy,
      now,
    ).kind;
  t.equal(at(31 * hour), 'keep');
  t.equal(at(29 * hour), 'issueServing');
  t.equal(at(-hour), 'issueServing', 'an expired one too');
});

t.test('a new authority is trusted before it signs anything; a certificate of the old one is reissued', async (t) => {
  const ageing = { ...good, authority: { notAfter: now + 200 * hour } };
  t.equal(nextCertificateStep(ageing, policy, now).kind, 'createAuthority', 'renewed with a third left');
  const created = {
    ...good,
    bundleTrustsAuthority: false,
    serving: { ...(good.serving ?? { notAfter: 0, names: [] }), signedByAuthority: false },
  };
  t.equal(nextCertificateStep(created, policy, now).kind, 'trustAuthority', 'the bundle first');
  const trusted = { ...created, bundleTrustsAuthority: true };
  t.match(nextCertificateStep(trusted, policy, now), { kind: 'issueServing', reason: /previous authority/ });
});

t.test('a serving certificate that lacks a name is reissued, and says which', async (t) => {
  const renamed = { ...policy, names: [...policy.names, 'weir.ns.svc.cluster.local'] };
  t.match(nextCertificateStep(good, renamed, now), { kind: 'issueServing', reason: /weir\.ns\.svc\.cluster\.local/ });
});
