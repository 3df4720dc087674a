// The routers' record of views found behind by a lost fence (ADR 14): pure, no API server here; the
// routers' use of it runs against the real one in test/cluster-tests/scale.test.ts.
import t from 'tap';
import { StaleViews } from '../../analyzer/adapters/stale.ts';

const at = (resourceVersion: string): object => ({ metadata: { resourceVersion } });
const failed = (code: number): Error => Object.assign(new Error(`failed with ${code}`), { code });

t.test('a view is behind while it shows the version that lost a fence, and only then', async (t) => {
  const stale = new StaleViews();
  t.notOk(stale.behind('vs/ns/web', at('7')), 'nothing lost: the view is trusted');
  await t.rejects(
    stale.fenced('vs/ns/web', at('7'), () => Promise.reject(failed(422))),
    /failed with 422/,
    'the write fails as it did',
  );
  t.ok(stale.behind('vs/ns/web', at('7')), 'the view still shows version 7');
  t.ok(stale.behind('vs/ns/web', at('7')), 'and is asked about again: still behind');
  t.notOk(stale.behind('vs/ns/other', at('7')), 'another object is not');
  t.notOk(stale.behind('vs/ns/web', at('9')), 'the view moved on');
  t.notOk(stale.behind('vs/ns/web', at('7')), 'forgotten once it did');
});

t.test('a create that found the object there: behind while the view lacks it', async (t) => {
  const stale = new StaleViews();
  await t.rejects(stale.fenced('dr/ns/web', undefined, () => Promise.reject(failed(409))));
  t.ok(stale.behind('dr/ns/web', undefined));
  t.notOk(stale.behind('dr/ns/web', at('3')), 'the view has it now');
});

t.test('a failure that is not a lost fence marks nothing; a write that lands returns its answer', async (t) => {
  const stale = new StaleViews();
  await t.rejects(stale.fenced('vs/ns/web', at('7'), () => Promise.reject(failed(500))));
  await t.rejects(stale.fenced('vs/ns/web', at('7'), () => Promise.reject(new Error('socket hang up'))));
  t.notOk(stale.behind('vs/ns/web', at('7')));
  t.equal(await stale.fenced('vs/ns/web', at('7'), () => Promise.resolve('written')), 'written');
  t.notOk(stale.behind('vs/ns/web', at('7')));
});
