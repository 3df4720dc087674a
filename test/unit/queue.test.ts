// The release work queue and how a pass's outcomes requeue releases: pure, on a given clock.
import t from 'tap';
import { WorkQueue } from '../../analyzer/loop/queue.ts';
import { pooled, requeue } from '../../analyzer/loop/reconcile.ts';
import type { Outcome } from '../../analyzer/loop/reconcile.ts';

const queue = (): WorkQueue => new WorkQueue({ baseDelayMs: 1000, maxDelayMs: 8000 });

t.test('a key is queued once, at its earliest time, and taken only when due', async (t) => {
  const q = queue();
  q.addAt('ns/web', 5000);
  q.addAt('ns/web', 9000);
  q.add('ns/api', 1000);
  t.equal(q.size, 2, 'added twice, queued once');
  t.equal(q.nextDue(), 1000);
  t.same(q.take(999), [], 'nothing is due yet');
  t.same(q.take(1000), ['ns/api']);
  q.addAt('ns/web', 3000);
  t.equal(q.nextDue(), 3000, 'an earlier time wins');
  t.same(q.take(10_000), ['ns/web']);
  t.equal(q.size, 0);
  t.equal(q.nextDue(), undefined);
});

t.test('each key taken tells how long it waited past its due time', async (t) => {
  const waited: number[] = [];
  const q = new WorkQueue({ baseDelayMs: 1000, maxDelayMs: 8000, taken: (ms) => waited.push(ms) });
  q.addAt('ns/web', 5000);
  q.add('ns/api', 1000);
  t.same(q.take(4000), ['ns/api']);
  t.same(waited, [3000], 'due at 1 s, taken at 4 s');
  t.same(q.take(5000), ['ns/web']);
  t.same(waited, [3000, 0], 'taken when due');
});

t.test('failures back off exponentially up to the limit; a success starts again', async (t) => {
  const q = queue();
  const delays = [0, 1, 2, 3, 4, 5].map(() => {
    const d = q.retry('ns/web', 0);
    q.take(Infinity);
    return d;
  });
  t.same(delays, [1000, 2000, 4000, 8000, 8000, 8000]);
  q.forget('ns/web');
  t.equal(q.retry('ns/web', 0), 1000, 'forgotten: the first delay again');
});

t.test('requeue: worked soon, idle at its wake-up or dropped, failed after its backoff', async (t) => {
  const q = queue();
  const outcomes = new Map<string, Outcome>([
    ['ns/worked', { kind: 'worked' }],
    ['ns/waiting', { kind: 'idle', wakeAt: 60_000 }],
    ['ns/settled', { kind: 'idle' }],
    ['ns/failed', { kind: 'failed' }],
  ]);
  requeue(q, outcomes, 10_000, 1000);
  // A pass takes its keys and is done with them once it has requeued them.
  const pass = (now: number): string[] => {
    const keys = q.take(now);
    for (const key of keys) q.done(key);
    return keys;
  };
  t.same(pass(11_000).sort(), ['ns/failed', 'ns/worked'], 'worked one tick later; failed after 1 s of backoff');
  t.same(pass(59_999), []);
  t.same(pass(60_000), ['ns/waiting'], 'idle until its pause or check ends');
  t.equal(q.size, 0, 'a settled release with nothing to wait for is not queued');
  requeue(q, new Map([['ns/failed', { kind: 'failed' }]]), 20_000, 1000);
  t.equal(q.nextDue(), 22_000, 'a second failure in a row waits twice as long');
  requeue(q, new Map([['ns/failed', { kind: 'worked' }]]), 30_000, 1000);
  pass(Infinity);
  requeue(q, new Map([['ns/failed', { kind: 'failed' }]]), 40_000, 1000);
  t.equal(q.nextDue(), 41_000, 'a success resets the backoff');
});

t.test('a release in process is never taken by a second pass; queued again meanwhile, it waits for done', async (t) => {
  const q = queue();
  q.add('ns/web', 0);
  q.add('ns/api', 0);
  t.same(q.take(0).sort(), ['ns/api', 'ns/web'], 'the first pass takes both');
  q.add('ns/web', 100);
  q.addAt('ns/new', 500);
  t.equal(q.nextDue(), 500, 'web, in process, is not due for anyone else');
  t.same(q.take(1000), ['ns/new'], 'a second pass takes only what is not in process');
  q.done('ns/web');
  t.equal(q.nextDue(), 100, 'done: its change seen meanwhile is due again');
  t.same(q.take(1000), ['ns/web']);
});

t.test('pooled: at most `limit` at once, and a slow release holds up no one but itself', async (t) => {
  const order: string[] = [];
  let running = 0;
  let most = 0;
  let release = (): void => undefined;
  const slow = new Promise<void>((resolve) => (release = resolve));
  const done = pooled(['slow', 'a', 'b', 'c', 'd'], 2, async (item) => {
    running++;
    most = Math.max(most, running);
    if (item === 'slow') await slow;
    else await Promise.resolve();
    order.push(item);
    running--;
  });
  // Let the other worker run through the rest while `slow` waits.
  for (let turn = 0; turn < 100 && order.length < 4; turn++) await new Promise((resolve) => setImmediate(resolve));
  t.same(order, ['a', 'b', 'c', 'd'], 'the other worker took every other item while one waited');
  release();
  await done;
  t.same(order, ['a', 'b', 'c', 'd', 'slow']);
  t.equal(most, 2, 'never more than two at once');
  await pooled([], 4, () => Promise.reject(new Error('never called')));
});
