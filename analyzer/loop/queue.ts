// The work queue of releases, keyed `namespace/name`, as controllers keep one: a key is queued
// once however often it is added, is due now (a watch saw a change), at a time (a pause or check
// ends), or after a backoff that doubles with each failure in a row. A key taken is in process
// until `done`: added again meanwhile, it waits, so two passes never work on one release at once.
// No timers inside: the caller asks when the next key is due and takes the due ones, so the queue
// is tested without I/O.

export interface QueueOptions {
  /** The first retry's delay after a failure; doubled for each failure in a row. */
  baseDelayMs: number;
  /** The longest retry delay. */
  maxDelayMs: number;
  /** Called for each key taken with how long it waited past its due time (ms), as client-go's queue-duration metric. */
  taken?: (waitedMs: number) => void;
}

export class WorkQueue {
  /** When each queued key is due (epoch ms); a key is queued at most once, at its earliest time. */
  private readonly due = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  /** Keys taken and not yet done. */
  private readonly processing = new Set<string>();
  private readonly options: QueueOptions;

  constructor(options: QueueOptions) {
    this.options = options;
  }

  /** Queues `key` for `at` (epoch ms), unless it is already queued for earlier. */
  addAt(key: string, at: number): void {
    const queued = this.due.get(key);
    if (queued === undefined || at < queued) this.due.set(key, at);
  }

  /** Queues `key` as due now. */
  add(key: string, now: number): void {
    this.addAt(key, now);
  }

  /** Queues `key` after its backoff, which doubles with each failure in a row; returns the delay. */
  retry(key: string, now: number): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const delay = Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** n);
    this.addAt(key, now + delay);
    return delay;
  }

  /** `key` succeeded: its next failure starts the backoff again. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Removes and returns every key due at `now` that is not in process; they are in process until `done`. */
  take(now: number): string[] {
    const taken: string[] = [];
    for (const [key, at] of this.due) if (at <= now && !this.processing.has(key)) taken.push(key);
    for (const key of taken) {
      this.options.taken?.(now - (this.due.get(key) ?? now));
      this.due.delete(key);
      this.processing.add(key);
    }
    return taken;
  }

  /** The pass that took `key` is over: if it was queued again meanwhile, it can be taken. */
  done(key: string): void {
    this.processing.delete(key);
  }

  /** The earliest time a key not in process is due, or undefined when there is none. */
  nextDue(): number | undefined {
    let earliest: number | undefined;
    for (const [key, at] of this.due)
      if (!this.processing.has(key) && (earliest === undefined || at < earliest)) earliest = at;
    return earliest;
  }

  get size(): number {
    return this.due.size;
  }
}
