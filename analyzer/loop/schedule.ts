// When the analyzer runs a pass: when the next queued release is due, shortly after a watch saw a
// change (a short window batches changes that arrive together, so one pass and one Prometheus
// query serve them all), and at least once a tick as a heartbeat that reads nothing by itself.
// Passes may overlap, up to `maxPasses`: releases that fall due while a pass waits on the API
// server start their own pass (the queue never hands one release to two passes).
import { describeError } from '../../contract/api.ts';

export interface SchedulerOptions {
  tickMs: number;
  batchMs: number;
  /** The analyzer's clock (epoch ms). */
  now: () => number;
  /** The earliest time a queued release is due, if any. */
  nextDue: () => number | undefined;
  pass: () => Promise<void>;
  /** Passes that may run at once (default 4). */
  maxPasses?: number;
  /** Called when a pass finishes, failed or not (liveness). */
  passed: () => void;
  log: (message: string, fields?: Record<string, unknown>) => void;
}

export interface Scheduler {
  start(): void;
  /** A watch saw a change: a pass within the batch window. */
  poke(): void;
  stop(): void;
}

export function scheduler(o: SchedulerOptions): Scheduler {
  const maxPasses = o.maxPasses ?? 4;
  let timer: NodeJS.Timeout | undefined;
  let running = 0;
  let stopped = false;
  let poked = false;
  const schedule = (): void => {
    if (stopped || running >= maxPasses) return;
    const due = o.nextDue();
    // Beside a running pass, only releases that fall due (or a change) start another; the heartbeat waits.
    if (running > 0 && due === undefined && !poked) return;
    if (timer) clearTimeout(timer);
    const untilDue = due === undefined ? o.tickMs : due - o.now();
    timer = setTimeout(run, poked ? o.batchMs : Math.max(0, Math.min(o.tickMs, untilDue)));
  };
  const run = (): void => {
    timer = undefined;
    running++;
    // Pokes from here on are for the next pass.
    poked = false;
    o.pass()
      .catch((e: unknown) => o.log('pass failed', { error: describeError(e) }))
      .finally(() => {
        running--;
        o.passed();
        schedule();
      });
    // The pass took what was due before its first wait: time the next one for what is left.
    schedule();
  };
  return {
    start: schedule,
    poke: () => {
      if (poked) return;
      poked = true;
      schedule();
    },
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
