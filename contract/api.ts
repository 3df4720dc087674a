// The Kubernetes API helpers every weir process shares (analyzer, CLI, tests): JSON Patch with its
// content type set explicitly, 404 as undefined, and API errors in a line a person can read.
import { ApiException, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Operation } from 'fast-json-patch';

export const jsonPatch = setHeaderOptions('Content-Type', PatchStrategy.JsonPatch);

export type PatchOp = Operation;

/** The one field manager of every write weir makes, so `managedFields` attributes weir's fields to weir. */
export const fieldManager = 'weir';

/** JSON Pointer escaping of one key ("/" → "~1", "~" → "~0"). */
export const isNotFound = (error: unknown): boolean => error instanceof ApiException && error.code === 404;
export const isConflict = (error: unknown): boolean =>
  error instanceof ApiException && (error.code === 409 || error.code === 422);

/** Reads an object, with 404 as undefined. */
export async function maybe<T>(read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** A short description of an API error for logs and events. */
export function describeError(error: unknown): string {
  if (error instanceof ApiException) {
    const body = error.body as { message?: string } | string | undefined;
    const message =
      typeof body === 'object' && body?.message
        ? body.message
        : typeof body === 'string'
          ? body.slice(0, 300)
          : error.message;
    return `${error.code}: ${message}`;
  }
  return error instanceof Error ? error.message : String(error);
}
