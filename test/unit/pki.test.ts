// The PKI runtime TLS uses (ADR 13): an authority read back from its PEM issues certificates that
// verify against it, and what a certificate says is read without any other tool.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { certificateFacts, createAuthority, issue, loadAuthority, signedBy } from '../../certs/pki.ts';

t.test('an authority loaded from PEM signs certificates that verify against it, and only it', async (t) => {
  const ca = await createAuthority('weir-ca');
  const loaded = await loadAuthority(ca.certPem, ca.keyPem);
  const serving = await issue(loaded, {
    commonName: 'weir',
    usage: 'server',
    dnsNames: ['weir.ns.svc'],
    ipAddresses: ['127.0.0.1'],
    validMs: 60_000,
  });
  t.ok(await signedBy(serving.certPem, ca.certPem));
  t.notOk(
    await signedBy(serving.certPem, (await createAuthority('weir-ca')).certPem),
    'not by another of the same name',
  );
  // Node's own X.509 reader agrees.
  t.ok(new X509Certificate(serving.certPem).verify(new X509Certificate(ca.certPem).publicKey));
  const facts = certificateFacts(serving.certPem);
  t.same(facts.dnsNames, ['weir.ns.svc']);
  t.same(facts.ipAddresses, ['127.0.0.1']);
  const lifetime = facts.notAfter.getTime() - Date.now();
  t.ok(lifetime > 50_000 && lifetime <= 60_000, `valid for about a minute (${lifetime} ms)`);
  t.ok(facts.notBefore.getTime() < Date.now() - 30_000, 'valid from a little before now, for clocks behind');
});

t.test('loading a key that is not PEM fails with a clear error', async (t) => {
  const ca = await createAuthority('weir-ca');
  await t.rejects(loadAuthority(ca.certPem, 'not a key'), /no private key/);
});
