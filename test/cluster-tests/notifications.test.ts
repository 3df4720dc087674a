// Notifications on real releases (issue 16): an analyzer of the test's own, configured as the
// chart configures it (the policy file's `notifications:` and a Secret folder), sends a healthy and
// a bad release's events to receivers on loopback — a CloudEvents webhook, Slack, email over SMTP
// — exactly as routed; a receiver that never answers holds up neither the rollback nor the others.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { stringify } from 'yaml';
import { apply, deployment, kubectl, namespace, service, waitFor } from '../helpers/kube.ts';
import { fast, metricSamples, setImage, startAnalyzer, waitForPhase } from '../helpers/release.ts';

interface CloudEvent {
  type: string;
  source: string;
  data: { deployment: string; event: string; reason: string; message: string };
}

/** An HTTP receiver on loopback; `hang`: it reads each request and never answers. */
async function receiver(
  t: { teardown(fn: () => unknown): void },
  hang = false,
): Promise<{ url: string; bodies: string[]; answered: () => number }> {
  const bodies: string[] = [];
  let answered = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      bodies.push(body);
      if (hang) return;
      answered++;
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/services/T000/B000/${randomBytes(8).toString('hex')}`,
    bodies,
    answered: () => answered,
  };
}

async function smtpReceiver(t: { teardown(fn: () => unknown): void }): Promise<{ port: number; subjects: string[] }> {
  const subjects: string[] = [];
  const server = new SMTPServer({
    disabledCommands: ['STARTTLS', 'AUTH'],
    onData: (stream, _session, done) => {
      let data = '';
      stream.on('data', (c: Buffer) => (data += c.toString()));
      stream.on('end', () => {
        subjects.push(/^Subject: (.*)$/m.exec(data)?.[1]?.trim() ?? '');
        done();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.server.address() as AddressInfo).port, subjects };
}

t.test('a healthy and a bad release notify exactly the routed receivers; a dead receiver delays nothing', async (t) => {
  const [audit, slack, blackhole, smtp] = await Promise.all([
    receiver(t),
    receiver(t),
    receiver(t, true),
    smtpReceiver(t),
  ]);
  const dir = await mkdtemp(join(tmpdir(), 'weir-notifications-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'audit-url'), audit.url);
  await writeFile(join(dir, 'slack-url'), slack.url);
  await writeFile(join(dir, 'teams-url'), blackhole.url);
  const policyFile = join(dir, 'policies.yaml');
  await writeFile(
    policyFile,
    stringify({
      policies: {},
      notifications: {
        receivers: [
          { name: 'audit', type: 'webhook', urlKey: 'audit-url' },
          { name: 'team', type: 'slack', urlKey: 'slack-url' },
          { name: 'teams-down', type: 'teams', urlKey: 'teams-url' },
          {
            name: 'oncall',
            type: 'email',
            email: { host: '127.0.0.1', port: smtp.port, from: 'weir@example.com', to: ['oncall@example.com'] },
          },
        ],
        routes: [
          { receiver: 'audit', events: ['started', 'step', 'promoted', 'rollingBack', 'rolledBack'] },
          { receiver: 'team', events: ['promoted', 'rolledBack'] },
          { receiver: 'oncall', events: ['rolledBack'] },
          { receiver: 'teams-down', events: ['started', 'step', 'rollingBack', 'rolledBack'] },
        ],
      },
    }),
  );
  const scope = randomBytes(4).toString('hex');
  const ns = await namespace(t, { optIn: true });
  await kubectl(['label', 'namespace', ns, `weir.dev/test-analyzer=${scope}`]);
  for (const name of ['good', 'bad']) {
    await apply(ns, service(name, { rps: 100 }));
    await apply(ns, deployment(name, { replicas: 2, image: `example.com/${name}:v1`, annotations: fast }));
  }
  const analyzer = await startAnalyzer({
    scope,
    identity: `n-${scope}`,
    env: { WEIR_POLICY_FILE: policyFile, WEIR_NOTIFICATIONS_SECRET_DIR: dir },
  });
  t.teardown(() => analyzer.kill());
  await setImage(ns, 'good', 'example.com/good:v2');
  await setImage(ns, 'bad', 'example.com/bad:v2', { 'sim.weir.dev/error-rate': '0.6' });
  await waitForPhase(ns, 'bad', 'RolledBack');
  // The receiver that never answers is still holding its first request when the rollback is done.
  t.ok(blackhole.bodies.length >= 1 && blackhole.answered() === 0, 'rolled back while a receiver hangs');
  await waitForPhase(ns, 'good', 'Stable');

  const events = (name: string): string[] =>
    audit.bodies
      .map((b) => JSON.parse(b) as CloudEvent)
      .filter((e) => e.data.deployment === name)
      .map((e) => e.data.event);
  await waitFor(
    'the audit receiver heard both releases end',
    async () => events('good').includes('promoted') && events('bad').includes('rolledBack'),
  );
  const good = events('good');
  t.equal(good[0], 'started', 'good: started first');
  t.equal(good.at(-1), 'promoted', 'good: promoted last');
  t.same(
    good.slice(1, -1).filter((e) => e !== 'step'),
    [],
    'good: only steps in between',
  );
  t.ok(good.filter((e) => e === 'step').length >= 3, 'good: one per step (10, 50, 100)');
  const bad = events('bad');
  t.equal(bad[0], 'started');
  t.same(bad.slice(-2), ['rollingBack', 'rolledBack'], 'bad: rolling back, then rolled back');
  const first = JSON.parse(audit.bodies[0] ?? '{}') as CloudEvent;
  t.match(first, { type: /^dev\.weir\.release\./, source: new RegExp(`^weir/${ns}/(good|bad)$`) }, 'a CloudEvent');
  await waitFor(
    'Slack and email heard the outcomes',
    async () => slack.bodies.length >= 2 && smtp.subjects.length >= 1,
  );
  const texts = slack.bodies.map((b) => (JSON.parse(b) as { text: string }).text).sort();
  t.equal(texts.length, 2, 'Slack: the two outcomes, nothing else');
  t.match(texts.join('\n'), new RegExp(`${ns}/good Promoted`));
  t.match(texts.join('\n'), new RegExp(`${ns}/bad RolledBack`));
  t.same(smtp.subjects, [`weir: ${ns}/bad RolledBack`], 'email: the rollback only');
  const sent = await metricSamples(analyzer.url, 'weir_notifications_total');
  const count = (receiver: string, result: string): number =>
    sent.find((s) => s.labels.receiver === receiver && s.labels.result === result)?.value ?? 0;
  t.equal(count('team', 'sent'), 2, 'weir_notifications_total counts what was sent');
  t.equal(count('oncall', 'sent'), 1);
  t.notMatch(JSON.stringify(sent), /services\/T000/, 'no receiver URL in a metric');
});
