// The webhook's serving certificate, kept by the analyzer at run time (ADR 13): what to do next,
// from what the Secret and the webhook configuration hold now. Pure.

/** What the Secret holds, as read. */
export interface HeldCertificates {
  /** The current authority, when there is one with its key. */
  authority?: { notAfter: number };
  /** The serving certificate, when there is one with its key. */
  serving?: { notAfter: number; names: string[]; signedByAuthority: boolean };
  /** The webhook configuration's caBundle already trusts the current authority. */
  bundleTrustsAuthority: boolean;
}

export interface CertificatePolicy {
  /** DNS names and IP addresses the serving certificate must cover. */
  names: string[];
  servingValidityMs: number;
  authorityValidityMs: number;
}

export type CertificateStep =
  | { kind: 'keep' }
  | { kind: 'createAuthority'; reason: string }
  | { kind: 'trustAuthority' }
  | { kind: 'issueServing'; reason: string };

/** Renew at two thirds of a lifetime: a third is left to retry through any outage. */
const renewal = (notAfter: number, validityMs: number, now: number): boolean => notAfter - now < validityMs / 3;

/**
 * One step at a time, in the only safe order: an authority first, then the webhook configuration
 * trusts it, and only then a serving certificate it signed — so the API server never meets a
 * certificate it does not trust. The previous authority stays in the bundle (ADR 13).
 */
export function nextCertificateStep(held: HeldCertificates, policy: CertificatePolicy, now: number): CertificateStep {
  const authority = held.authority;
  if (!authority) return { kind: 'createAuthority', reason: 'no authority yet' };
  if (renewal(authority.notAfter, policy.authorityValidityMs, now))
    return { kind: 'createAuthority', reason: 'the authority nears its end' };
  if (!held.bundleTrustsAuthority) return { kind: 'trustAuthority' };
  const serving = held.serving;
  if (!serving) return { kind: 'issueServing', reason: 'no serving certificate yet' };
  if (!serving.signedByAuthority) return { kind: 'issueServing', reason: 'signed by a previous authority' };
  const missing = policy.names.filter((n) => !serving.names.includes(n));
  if (missing.length > 0) return { kind: 'issueServing', reason: `it does not name ${missing.join(', ')}` };
  if (renewal(serving.notAfter, policy.servingValidityMs, now))
    return { kind: 'issueServing', reason: 'it nears its end' };
  return { kind: 'keep' };
}
