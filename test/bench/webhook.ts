// Webhook benchmark: realistic ~10 KB Deployment UPDATE reviews over keep-alive HTTPS, weir's
// server against a bare fastify HTTPS route in the same run. Throughput at full load, then
// latency percentiles at a fixed 1,000 reviews/s.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Pool } from 'undici';
import { writeWebhookCerts } from '../../certs/main.ts';
import { repoRoot } from '../cluster/cluster.ts';

export interface LoadResult {
  throughput: number;
  p50: number;
  p99: number;
  errors: number;
}

async function realisticReview(): Promise<string> {
  const review = JSON.parse(await readFile(join(repoRoot, 'test/fixtures/admission/update-image.json'), 'utf8')) as {
    request: {
      object: { spec: { template: { spec: { containers: { env?: { name: string; value: string }[] }[] } } } };
      oldObject: typeof review.request.object;
    };
  };
  // Pad both objects with environment variables, as real Deployments carry, to about 10 KB in all.
  for (let n = 0; JSON.stringify(review).length < 10 * 1024; n++) {
    for (const obj of [review.request.object, review.request.oldObject]) {
      const container = obj.spec.template.spec.containers[0];
      if (container)
        container.env = [...(container.env ?? []), { name: `SETTING_${n}`, value: `value-${n}-${'x'.repeat(40)}` }];
    }
  }
  return JSON.stringify(review);
}

async function startServer(kind: string, dir: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(
    join(repoRoot, 'node_modules/.bin/node'),
    [join(repoRoot, 'test/bench/servers.ts'), kind, join(dir, 'tls.crt'), join(dir, 'tls.key')],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout ?? process.stdin });
  const [line] = (await once(lines, 'line')) as [string];
  return { child, port: Number(line) };
}

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;

async function load(
  pool: Pool,
  body: string,
  options: { seconds: number; concurrency: number; ratePerSecond?: number },
): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  const deadline = Date.now() + options.seconds * 1000;
  const one = async (): Promise<void> => {
    const started = process.hrtime.bigint();
    try {
      const res = await pool.request({
        path: '/mutate',
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
      await res.body.text();
      if (res.statusCode !== 200) errors++;
    } catch {
      errors++;
    }
    latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
  };
  const begun = Date.now();
  if (options.ratePerSecond) {
    const gap = 1000 / options.ratePerSecond;
    const inflight = new Set<Promise<void>>();
    for (let next = Date.now(); Date.now() < deadline; next += gap) {
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const p = one().finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await Promise.all(inflight);
  } else {
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (Date.now() < deadline) await one();
      }),
    );
  }
  const elapsed = (Date.now() - begun) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    throughput: latencies.length / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    errors,
  };
}

export async function benchWebhook(
  seconds = 10,
): Promise<{ size: number; results: Record<string, { full: LoadResult; fixed: LoadResult }> }> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-bench-'));
  await writeWebhookCerts(dir, 'weir', 'weir-system', ['127.0.0.1']);
  const ca = await readFile(join(dir, 'ca.crt'), 'utf8');
  const body = await realisticReview();
  const results: Record<string, { full: LoadResult; fixed: LoadResult }> = {};
  for (const kind of ['baseline', 'weir']) {
    const server = await startServer(kind, dir);
    const pool = new Pool(`https://127.0.0.1:${server.port}`, {
      connections: 16,
      pipelining: 1,
      connect: { ca, servername: 'localhost' },
    });
    await load(pool, body, { seconds: 2, concurrency: 16 });
    const full = await load(pool, body, { seconds, concurrency: 32 });
    const fixed = await load(pool, body, { seconds, concurrency: 0, ratePerSecond: 1000 });
    results[kind] = { full, fixed };
    await pool.close();
    server.child.kill('SIGTERM');
    await once(server.child, 'exit');
  }
  await rm(dir, { recursive: true, force: true });
  return { size: Buffer.byteLength(body), results };
}
