// `weir dashboard` in a real browser (issue 16): Debian's Chromium, headless, driven by
// playwright-core. The page lists a release in progress and follows its weight; Abort rolls it
// back and the page says so with the reason; a request that does not apply shows the refusal.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { request } from 'undici';
import { ensureDebianPackage, repoRoot } from '../cluster/cluster.ts';
import { apply, cluster, deployment, namespace, service } from '../helpers/kube.ts';
import { fast, setImage, waitForPhase, waitForWeight } from '../helpers/release.ts';

/** Runs `weir dashboard` as a user would, with the cluster's kubeconfig; resolves with its URL. */
async function startDashboard(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const state = await cluster();
  const child = spawn(
    join(repoRoot, 'node_modules/.bin/node'),
    [join(repoRoot, 'cli/main.ts'), 'dashboard', '-A', '--port', '0'],
    {
      env: { ...process.env, KUBECONFIG: state.kubeconfig },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  t.teardown(() => child.kill('SIGTERM'));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const url = /weir dashboard on (http:\/\/\S+)/.exec(out)?.[1];
      if (url) resolve(url);
    });
    child.once('exit', (code) => reject(new Error(`weir dashboard exited (${code ?? 'signal'}): ${out}`)));
  });
}

t.test('the dashboard follows a release, aborts it, and shows a refusal', async (t) => {
  const executablePath = await ensureDebianPackage('chromium');
  const ns = await namespace(t, { optIn: true });
  await apply(ns, service('web', { rps: 100 }));
  await apply(
    ns,
    deployment('web', {
      replicas: 10,
      image: 'example.com/web:v1',
      annotations: {
        ...fast,
        'weir.dev/step-pause': '1h',
        'weir.dev/steps': 'mirror,10,50,100',
        'weir.dev/dynamic-stable-scale': 'true',
      },
    }),
  );
  const url = await startDashboard(t);
  const profile = await mkdtemp(join(tmpdir(), 'weir-chromium-'));
  t.teardown(() => rm(profile, { recursive: true, force: true }));
  // Flags for a machine with no network beyond loopback (docs: the machine's notes on Chromium).
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  t.teardown(() => browser.close());
  const page = browser.pages()[0] ?? (await browser.newPage());
  await page.goto(url);
  await setImage(ns, 'web', 'example.com/web:v2');
  const row = page.locator(`tr[data-key="${ns}/web"]`);
  await row.locator('td', { hasText: 'mirror 100%' }).waitFor({ timeout: 60_000 });
  t.pass('the shadow step: a mirrored share, no weight');
  await row.click();
  await page.locator('#detail-title', { hasText: `${ns}/web — Progressing` }).waitFor();
  await page.getByRole('button', { name: 'Promote', exact: true }).click();
  await waitForWeight(ns, 'web', 10);
  await row.locator('td.phase-Progressing').waitFor({ timeout: 30_000 });
  await row.locator('td[data-weight="10"]').waitFor({ timeout: 30_000 });
  t.pass('the list shows the release in progress, at 10 %, pushed without a reload');
  await row.locator('td', { hasText: '9/9 of 10' }).waitFor({ timeout: 30_000 });
  t.pass('the stable half, scaled to its 90 % share of 10');
  await page.locator('#chart path').waitFor();
  // The picture docs/dashboard.png is: WEIR_DASHBOARD_SCREENSHOT=docs/dashboard.png refreshes it.
  const shot = process.env.WEIR_DASHBOARD_SCREENSHOT ?? join(profile, 'release-midway.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.ok(await page.locator('#events td', { hasText: 'ReleaseStarted' }).count(), 'the events of the release');

  await page.getByRole('button', { name: 'Abort' }).click();
  await page.locator('#notice', { hasText: 'abort requested' }).waitFor();
  await waitForPhase(ns, 'web', 'RolledBack');
  await page.locator('#detail-title', { hasText: 'RolledBack' }).waitFor({ timeout: 30_000 });
  t.match(await page.locator('#reason').textContent(), /Rolled back: .*abort/i, 'the reason, on the page');
  // Only the page the dashboard served may use the user's credentials through it.
  const post = (headers: Record<string, string>): Promise<number> =>
    request(`${url}api/releases/${ns}/web/requests?request=retry`, { method: 'POST', headers }).then((r) => {
      void r.body.dump();
      return r.statusCode;
    });
  t.equal(await post({ origin: 'http://evil.example', 'x-weir-dashboard': '1' }), 403, 'another site: refused');
  t.equal(
    await post({ host: 'evil.example', 'x-weir-dashboard': '1' }),
    403,
    'another host name (DNS rebinding): refused',
  );
  t.equal(await post({}), 403, 'a plain form post (no dashboard header): refused');
  await page.getByRole('button', { name: 'Promote', exact: true }).click();
  await page.locator('#notice.refused').waitFor();
  t.match(
    await page.locator('#notice').textContent(),
    new RegExp(`Refused: ${ns}/web has no release in progress \\(phase RolledBack\\)`),
    "the CLI's own refusal",
  );
});
