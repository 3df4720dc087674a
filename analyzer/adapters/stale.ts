// Writes are computed from the watches' view and fenced by its resourceVersion (ADR 14): a view
// that is behind loses the fence, and only then is that object read fresh — until the view has
// moved past the version that lost.
import { isConflict } from '../../contract/api.ts';

const versionOf = (object: unknown): string | undefined =>
  (object as { metadata?: { resourceVersion?: string } } | undefined)?.metadata?.resourceVersion;

/** Objects whose view lost a write's fence, with the version the view showed then. */
export class StaleViews {
  private readonly lost = new Map<string, string | undefined>();

  /** Runs a write computed from `view`; a lost fence (409, or 422 from a failed `test`) marks it. */
  async fenced<T>(key: string, view: unknown, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (error) {
      if (isConflict(error)) this.lost.set(key, versionOf(view));
      throw error;
    }
  }

  /** True while the view still shows the version that lost a fence (or still lacks the object). */
  behind(key: string, view: unknown): boolean {
    if (!this.lost.has(key)) return false;
    if (this.lost.get(key) === versionOf(view)) return true;
    this.lost.delete(key);
    return false;
  }
}

export const viewKey = (kind: string, namespace: string, name: string): string => `${kind}/${namespace}/${name}`;
