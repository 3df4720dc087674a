// The pass scheduler: releases that fall due while a pass waits on the API server start a pass of
// their own (up to maxPasses); with nothing due, no second pass runs beside the first.
import t from 'tap';
import { scheduler } from '../../analyzer/loop/schedule.ts';
import { WorkQueue } from '../../analyzer/loop/queue.ts';

/** A pass that takes what is due and then waits until the test lets it finish. */
function harness(maxPasses: number): {
  /** Queues a key as the analyzer does when a watch sees a change or a wake-up comes: due now, and a poke. */
  add: (key: string) => void;
  started: string[][];
  nextStart: () => Promise<string[]>;
  finish: () => void;
  running: () => number;
  stop: () => void;
} {
  const queue = new WorkQueue({ baseDelayMs: 1000, maxDelayMs: 8000 });
  const started: string[][] = [];
  const gates: (() => void)[] = [];
  let waiting: ((keys: string[]) => void) | undefined;
  let running = 0;
  const s = scheduler({
    tickMs: 60_000,
    batchMs: 5,
    now: () => Date.now(),
    nextDue: () => queue.nextDue(),
    maxPasses,
    pass: async () => {
      const keys = queue.take(Date.now());
      started.push(keys);
      running++;
      waiting?.(keys);
      await new Promise<void>((resolve) => gates.push(resolve));
      for (const key of keys) queue.done(key);
      running--;
    },
    passed: () => undefined,
    log: () => undefined,
  });
  s.start();
  return {
    add: (key) => {
      queue.add(key, Date.now());
      s.poke();
    },
    started,
    nextStart: () => new Promise((resolve) => (waiting = resolve)),
    finish: () => gates.shift()?.(),
    running: () => running,
    stop: () => s.stop(),
  };
}

t.test('a release that falls due while a pass waits gets a pass of its own', async (t) => {
  const h = harness(2);
  t.teardown(h.stop);
  let next = h.nextStart();
  h.add('ns/checks');
  t.same(await next, ['ns/checks'], 'the first pass takes what is due');
  next = h.nextStart();
  h.add('ns/pause-ends');
  t.same(await next, ['ns/pause-ends'], 'due while the first still waits: a second pass');
  t.equal(h.running(), 2);
  h.add('ns/third');
  // A third pass would exceed maxPasses: it starts only once one of the two ends.
  next = h.nextStart();
  h.finish();
  t.same(await next, ['ns/third'], 'never more than two at once');
  t.equal(h.running(), 2);
  h.finish();
  h.finish();
});

t.test('a release in process is not taken again by an overlapping pass', async (t) => {
  const h = harness(4);
  t.teardown(h.stop);
  let next = h.nextStart();
  h.add('ns/web');
  t.same(await next, ['ns/web']);
  // A watch sees web change while its pass still acts: it waits for that pass, whatever else runs.
  h.add('ns/web');
  next = h.nextStart();
  h.add('ns/api');
  t.same(await next, ['ns/api'], 'the overlapping pass takes api, not web');
  next = h.nextStart();
  h.finish();
  t.same(await next, ['ns/web'], 'web again once its first pass is done');
  h.finish();
  h.finish();
  t.same(
    h.started.map((keys) => keys.join()),
    ['ns/web', 'ns/api', 'ns/web'],
    'no pass ran beside the others with nothing due (the heartbeat waits)',
  );
});
