// Writes are computed from the watches' view and fenced by its resourceVersion (ADR 14): a view
// that is behind loses the fence, and only then is that object read fresh — once, by the next read.
import { isConflict } from '../../contract/api.ts';

/** Objects whose cached view lost a write's guard; their next read goes to the API server. */
export class StaleViews {
  private readonly keys = new Set<string>();

  /** Runs a fenced write; a lost fence (409, or 422 from a failed `test`) marks the object stale. */
  async fenced<T>(key: string, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (error) {
      if (isConflict(error)) this.keys.add(key);
      throw error;
    }
  }

  /** True, once, for an object whose view lost a fence since it was last read. */
  take(key: string): boolean {
    return this.keys.delete(key);
  }
}

export const viewKey = (kind: string, namespace: string, name: string): string => `${kind}/${namespace}/${name}`;
