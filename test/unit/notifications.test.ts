// Notifications (issue 16): the configuration, the routing of a notice, the payloads, and the
// sender against receivers on loopback — an HTTP one that fails, hangs or answers, and an SMTP one.
import t from 'tap';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import {
  emailPayload,
  httpPayload,
  noticeOf,
  parseNotifications,
  receiversFor,
} from '../../analyzer/core/notifications.ts';
import type { Notice, Notifications } from '../../analyzer/core/notifications.ts';
import { Notifier } from '../../analyzer/adapters/notify.ts';

const at = new Date('2026-11-29T12:00:00Z');
const about = (reason: string, type: 'Normal' | 'Warning' = 'Normal', namespace = 'shop') => ({
  namespace,
  deployment: 'myapp',
  type,
  reason,
  message: `${reason} happened`,
});
const must = (n: Notice | undefined): Notice => {
  if (!n) throw new Error('no notice');
  return n;
};

t.test('the configuration: receivers name Secret keys, routes name events; a mistake says where', async (t) => {
  t.same(parseNotifications(undefined), { ok: true, value: { receivers: [], routes: [] } });
  const good = parseNotifications({
    receivers: [
      { name: 'team', type: 'slack', urlKey: 'slack-url' },
      {
        name: 'mail',
        type: 'email',
        email: { host: 'smtp.example.com', from: 'weir@example.com', to: ['a@example.com'] },
      },
    ],
    routes: [{ receiver: 'team', events: ['promoted', 'rolledBack'], namespaces: ['shop'] }],
  });
  t.match(good, {
    ok: true,
    value: { receivers: [{ name: 'team' }, { name: 'mail', email: { port: 587, secure: false } }] },
  });
  const bad = parseNotifications({
    receivers: [
      { name: 'a', type: 'pager' },
      { name: 'b', type: 'webhook', urlKey: 'https://hooks.example.com/secret' },
      { name: 'c', type: 'email', email: { host: 'h', from: 'f', to: [], port: 0 } },
    ],
    routes: [
      { receiver: 'nobody', events: ['promoted'] },
      { receiver: 'x', events: ['exploded'] },
    ],
  });
  t.notOk(bad.ok);
  const errors = bad.ok ? '' : bad.errors.join('\n');
  t.match(errors, /receivers\[0\] \(a\): type "pager" is not webhook, slack, teams, email/);
  t.match(errors, /receivers\[1\] \(b\): urlKey must name the key of the notifications Secret/, 'a URL is not a key');
  t.match(errors, /receivers\[2\] \(c\): email needs host, from and a list of to/);
  t.match(errors, /routes\[0\]: receiver "nobody" is not one of the receivers/);
});

t.test('a notice goes to the receivers whose routes take its event and namespace, once each', async (t) => {
  const parsed = parseNotifications({
    receivers: [
      { name: 'all', type: 'webhook', urlKey: 'k' },
      { name: 'shop-only', type: 'slack', urlKey: 'k' },
    ],
    routes: [
      { receiver: 'all', events: ['started', 'promoted'] },
      { receiver: 'all', events: ['promoted'] },
      { receiver: 'shop-only', events: ['rolledBack'], namespaces: ['shop'] },
    ],
  });
  if (!parsed.ok) return t.fail(parsed.errors.join());
  const to = (reason: string, ns = 'shop'): string[] =>
    receiversFor(parsed.value, must(noticeOf(about(reason, 'Normal', ns), at, 'id'))).map((r) => r.name);
  t.same(to('Promoted'), ['all'], 'once, though two routes take it');
  t.same(to('RolledBack'), ['shop-only']);
  t.same(to('RolledBack', 'other'), [], 'another namespace');
  t.same(to('ReleaseStarted'), ['all']);
  t.equal(noticeOf(about('CheckPassed'), at, 'id'), undefined, 'not every Event is a notification');
  t.equal(must(noticeOf(about('Superseded'), at, 'id')).event, 'started');
});

t.test('payloads: a CloudEvent for a webhook, Slack text, a Teams card, an email', async (t) => {
  const n = must(noticeOf(about('RolledBack', 'Warning'), at, 'e-1'));
  const cloud = httpPayload('webhook', n);
  t.equal(cloud.contentType, 'application/cloudevents+json');
  t.same(JSON.parse(cloud.body), {
    specversion: '1.0',
    id: 'e-1',
    source: 'weir/shop/myapp',
    type: 'dev.weir.release.rolledBack',
    time: '2026-11-29T12:00:00.000Z',
    datacontenttype: 'application/json',
    data: {
      event: 'rolledBack',
      namespace: 'shop',
      deployment: 'myapp',
      type: 'Warning',
      reason: 'RolledBack',
      message: 'RolledBack happened',
    },
  });
  t.match(JSON.parse(httpPayload('slack', n).body), {
    text: /^:warning: \*weir: shop\/myapp RolledBack\*\nRolledBack happened$/,
  });
  t.match(JSON.parse(httpPayload('teams', n).body), { '@type': 'MessageCard', title: 'weir: shop/myapp RolledBack' });
  t.match(emailPayload(n), { subject: 'weir: shop/myapp RolledBack', text: /^RolledBack happened\n/ });
});

/** An HTTP receiver on loopback whose answer each test chooses. */
async function receiver(
  t: { teardown(fn: () => unknown): void },
  answer: (req: IncomingMessage, res: ServerResponse, body: string) => void,
): Promise<{ url: string; bodies: string[] }> {
  const bodies: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      bodies.push(body);
      answer(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/s3cr3t-token`, bodies };
}

async function secrets(t: { teardown(fn: () => unknown): void }, values: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-notify-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const [k, v] of Object.entries(values)) await writeFile(join(dir, k), `${v}\n`);
  return dir;
}

function notifier(
  config: Notifications,
  secretDir: string,
  options: Partial<ConstructorParameters<typeof Notifier>[1]> = {},
) {
  const results: string[] = [];
  const logs: string[] = [];
  const n = new Notifier(config, {
    secretDir,
    backoffMs: 10,
    timeoutMs: 300,
    result: (receiver, result) => results.push(`${receiver} ${result}`),
    depth: () => undefined,
    log: (message, fields) => logs.push(`${message} ${JSON.stringify(fields ?? {})}`),
    ...options,
  });
  return { n, results, logs };
}

const webhookTo = (name: string, events: Notice['event'][]): Notifications => ({
  receivers: [{ name, type: 'webhook', urlKey: 'url' }],
  routes: [{ receiver: name, events }],
});

t.test('the sender retries a failing receiver, and never writes its URL anywhere', async (t) => {
  let calls = 0;
  const r = await receiver(t, (_req, res) => res.writeHead(++calls < 3 ? 503 : 204).end());
  const { n, results, logs } = notifier(webhookTo('audit', ['promoted']), await secrets(t, { url: r.url }));
  n.notify(must(noticeOf(about('Promoted'), at, 'p-1')));
  await t.resolves(waitUntil(() => results.length === 1));
  t.same(results, ['audit sent'], 'sent on the third attempt');
  t.equal(r.bodies.length, 3);
  t.equal((JSON.parse(r.bodies[2] ?? '{}') as { id: string }).id, 'p-1', 'the same event each time (one id)');

  const gone = await receiver(t, (req) => req.socket.destroy());
  const dead = notifier(webhookTo('gone', ['promoted']), await secrets(t, { url: gone.url }), { attempts: 2 });
  dead.n.notify(must(noticeOf(about('Promoted'), at, 'p-2')));
  await t.resolves(waitUntil(() => dead.results.length === 1));
  t.same(dead.results, ['gone failed']);
  t.match(dead.logs.join(), /could not send a notification/);
  t.notMatch([...logs, ...dead.logs].join(), /s3cr3t|127\.0\.0\.1/, 'no URL, host or token in a log line');
  const refused = await receiver(t, (_req, res) => res.writeHead(400).end());
  const once = notifier(webhookTo('strict', ['promoted']), await secrets(t, { url: refused.url }));
  once.n.notify(must(noticeOf(about('Promoted'), at, 'p-3')));
  await t.resolves(waitUntil(() => once.results.length === 1));
  t.equal(refused.bodies.length, 1, 'a 4xx is not retried');
});

t.test(
  'a hanging receiver holds up neither the caller nor another receiver; a full queue drops the oldest',
  async (t) => {
    const hang = await receiver(t, () => undefined);
    const fine = await receiver(t, (_req, res) => res.writeHead(200).end());
    const config: Notifications = {
      receivers: [
        { name: 'slow', type: 'webhook', urlKey: 'slow' },
        { name: 'fine', type: 'webhook', urlKey: 'fine' },
      ],
      routes: [
        { receiver: 'slow', events: ['step'] },
        { receiver: 'fine', events: ['step'] },
      ],
    };
    const { n, results } = notifier(config, await secrets(t, { slow: hang.url, fine: fine.url }), {
      queueLimit: 2,
      attempts: 1,
      timeoutMs: 5000,
    });
    for (let i = 0; i < 5; i++) n.notify(must(noticeOf(about('WeightSet'), at, `s-${i}`)));
    // Five at once: each receiver sends one and keeps the two newest of the four waiting.
    // Wait for the sender's own record of the third answer, not only the receiver's.
    const sentToFine = (): number => results.filter((r) => r === 'fine sent').length;
    await t.resolves(waitUntil(() => sentToFine() === 3 && hang.bodies.length === 1));
    t.same(
      fine.bodies.map((b) => (JSON.parse(b) as { id: string }).id),
      ['s-0', 's-3', 's-4'],
      'the receiver that answers got its notices in order, while the other hangs',
    );
    t.same(
      results.filter((r) => r.startsWith('slow')),
      ['slow dropped', 'slow dropped'],
    );
    t.same(
      results.filter((r) => r.startsWith('fine')),
      ['fine dropped', 'fine dropped', 'fine sent', 'fine sent', 'fine sent'],
    );
    n.close();
    const missing = notifier(webhookTo('nokey', ['step']), await secrets(t, {}));
    missing.n.notify(must(noticeOf(about('WeightSet'), at, 'k-1')));
    await t.resolves(waitUntil(() => missing.results.length === 1));
    t.match(missing.logs.join(), /key url is not in the notifications Secret/);
  },
);

t.test('email goes over SMTP with the credentials from the Secret', async (t) => {
  const mails: { from: string; to: string[]; data: string; user?: string }[] = [];
  const server = new SMTPServer({
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    onAuth: (auth, _session, done) =>
      auth.username === 'weir' && auth.password === 'pw' ? done(null, { user: 'weir' }) : done(new Error('no')),
    onData: (stream, session, done) => {
      let data = '';
      stream.on('data', (c: Buffer) => (data += c.toString()));
      stream.on('end', () => {
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          data,
          user: typeof session.user === 'string' ? session.user : undefined,
        });
        done();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.server.address() as AddressInfo).port;
  const config: Notifications = {
    receivers: [
      {
        name: 'oncall',
        type: 'email',
        email: {
          host: '127.0.0.1',
          port,
          secure: false,
          from: 'weir@example.com',
          to: ['oncall@example.com'],
          usernameKey: 'user',
          passwordKey: 'password',
        },
      },
    ],
    routes: [{ receiver: 'oncall', events: ['rolledBack'] }],
  };
  const { n, results } = notifier(config, await secrets(t, { user: 'weir', password: 'pw' }), { timeoutMs: 3000 });
  n.notify(must(noticeOf(about('RolledBack', 'Warning'), at, 'm-1')));
  await t.resolves(waitUntil(() => results.length === 1, 10_000));
  t.same(results, ['oncall sent']);
  t.equal(mails[0]?.from, 'weir@example.com');
  t.same(mails[0]?.to, ['oncall@example.com']);
  t.equal(mails[0]?.user, 'weir', 'authenticated with the Secret');
  t.match(mails[0]?.data, /Subject: weir: shop\/myapp RolledBack/);
});

async function waitUntil(done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
