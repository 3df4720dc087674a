// The Kubernetes API helpers every weir process shares (analyzer, CLI, tests): 404 as undefined,
// conflicts, and API errors in a line a person can read. They read the error's shape, not its
// class: client-node's ApiException (CLI, tests) and the analyzer's KubeError both carry `code`
// and `body`, and the analyzer never loads client-node at run time (ADR 22).
import type { Operation } from 'fast-json-patch';

export type PatchOp = Operation;

/** The one field manager of every write weir makes, so `managedFields` attributes weir's fields to weir. */
export const fieldManager = 'weir';

interface ApiFailure {
  code: number;
  body?: unknown;
  message: string;
}

/** An answer of the API server other than 2xx, from either client. */
const isApiFailure = (error: unknown): error is ApiFailure =>
  error instanceof Error && typeof (error as { code?: unknown }).code === 'number';

export const isNotFound = (error: unknown): boolean => isApiFailure(error) && error.code === 404;
export const isConflict = (error: unknown): boolean =>
  isApiFailure(error) && (error.code === 409 || error.code === 422);

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
  if (isApiFailure(error)) {
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
