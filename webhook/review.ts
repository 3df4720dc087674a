// The AdmissionReview v1 envelope: read and check a request, build a response. No HTTP here.
import type { Operation } from 'fast-json-patch';
import type { AdmissionInput } from './mutate.ts';

export const reviewApiVersion = 'admission.k8s.io/v1';

export interface AdmissionRequest extends AdmissionInput {
  uid: string;
  name?: string;
  dryRun?: boolean;
}

export interface AdmissionReviewResponse {
  apiVersion: typeof reviewApiVersion;
  kind: 'AdmissionReview';
  response: { uid: string; allowed: true; patchType?: 'JSONPatch'; patch?: string; warnings?: string[] };
}

export type Parsed = { ok: true; request: AdmissionRequest } | { ok: false; error: string };

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function checkKind(kind: unknown): AdmissionRequest['kind'] | undefined {
  if (!isObject(kind)) return undefined;
  const { group, version, kind: k } = kind;
  return typeof group === 'string' && typeof version === 'string' && typeof k === 'string'
    ? { group, version, kind: k }
    : undefined;
}

/** Checks the envelope; the message says exactly what is wrong with it. */
export function parseReview(body: unknown): Parsed {
  if (!isObject(body)) return { ok: false, error: 'the body is not a JSON object; expected an AdmissionReview' };
  if (body.kind !== 'AdmissionReview')
    return { ok: false, error: `kind is ${JSON.stringify(body.kind)}; expected "AdmissionReview"` };
  if (body.apiVersion !== reviewApiVersion) {
    return {
      ok: false,
      error:
        `apiVersion is ${JSON.stringify(body.apiVersion)}; ` +
        `weir speaks "${reviewApiVersion}" (set admissionReviewVersions: [v1])`,
    };
  }
  const request = body.request;
  if (!isObject(request)) return { ok: false, error: 'request is missing' };
  if (typeof request.uid !== 'string' || request.uid === '') return { ok: false, error: 'request.uid is missing' };
  const kind = checkKind(request.kind);
  if (!kind) return { ok: false, error: 'request.kind is missing or not a {group, version, kind}' };
  if (typeof request.operation !== 'string') return { ok: false, error: 'request.operation is missing' };
  const needsObject = request.operation === 'CREATE' || request.operation === 'UPDATE';
  if (needsObject && !isObject(request.object))
    return { ok: false, error: `request.object is missing for ${request.operation}` };
  if (request.operation === 'UPDATE' && !isObject(request.oldObject))
    return { ok: false, error: 'request.oldObject is missing for UPDATE' };
  return {
    ok: true,
    request: {
      uid: request.uid,
      kind,
      operation: request.operation,
      object: request.object,
      oldObject: request.oldObject,
      ...(typeof request.name === 'string' ? { name: request.name } : {}),
      ...(typeof request.namespace === 'string' ? { namespace: request.namespace } : {}),
      ...(typeof request.subResource === 'string' && request.subResource ? { subResource: request.subResource } : {}),
      ...(typeof request.dryRun === 'boolean' ? { dryRun: request.dryRun } : {}),
    },
  };
}

/** weir always allows; it only ever adds a patch and, for objects it cannot read, a warning. */
export function allow(uid: string, patch: Operation[], warnings: string[]): AdmissionReviewResponse {
  const response: AdmissionReviewResponse['response'] = { uid, allowed: true };
  if (patch.length > 0) {
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(patch)).toString('base64');
  }
  if (warnings.length > 0) response.warnings = warnings;
  return { apiVersion: reviewApiVersion, kind: 'AdmissionReview', response };
}
