// `weir dashboard`: a live web page of the releases, served on localhost with the user's own
// kubeconfig and RBAC — no endpoint in the cluster, no new credentials (as `kubectl argo rollouts
// dashboard` does). A watch on Deployments drives it: every change is pushed to the page over
// Server-Sent Events; the page never polls. Its buttons make the CLI's own requests.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, Watch } from '@kubernetes/client-node';
import type { CoreV1Event, V1Deployment } from '@kubernetes/client-node';
import { describeError } from '../contract/api.ts';
import { isRequest, labels } from '../contract/names.ts';
import { CliError, requestRelease, summaryOf, underWeir } from './main.ts';
import type { Clients } from './main.ts';
import type { ReleaseSummary } from './view.ts';

/** One point of a release's canary weight over time, as the dashboard saw it. */
interface WeightPoint {
  at: string;
  desired?: number;
  actual?: number;
  phase: string;
}

export interface Dashboard {
  url: string;
  /** Resolves once the server has stopped (SIGINT, SIGTERM or `close`). */
  closed: Promise<void>;
  close: () => Promise<void>;
}

const page = readFileSync(new URL('./dashboard.html', import.meta.url), 'utf8');
const key = (namespace: string, name: string): string => `${namespace}/${name}`;

/** Keeps every guarded release's summary and weight history, from a watch on Deployments. */
class Releases {
  readonly summaries = new Map<string, ReleaseSummary>();
  readonly history = new Map<string, WeightPoint[]>();
  private readonly listeners = new Set<() => void>();
  private pending: NodeJS.Timeout | undefined;
  private readonly dirty = new Set<string>();

  private readonly c: Clients;

  constructor(c: Clients) {
    this.c = c;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A Deployment changed: its summary (canary, route) is read again, a moment later, with others. */
  changed(d: V1Deployment): void {
    const namespace = d.metadata?.namespace ?? '';
    const owner = d.metadata?.labels?.[labels.canaryOf];
    // A change of the canary half is news about its release.
    if (owner) this.dirty.add(key(namespace, owner));
    else if (underWeir(d)) this.dirty.add(key(namespace, d.metadata?.name ?? ''));
    else return;
    this.pending ??= setTimeout(() => void this.refresh(), 200);
  }

  removed(d: V1Deployment): void {
    const k = key(d.metadata?.namespace ?? '', d.metadata?.name ?? '');
    if (this.summaries.delete(k)) this.emit();
  }

  private async refresh(): Promise<void> {
    this.pending = undefined;
    const batch = [...this.dirty];
    this.dirty.clear();
    await Promise.all(
      batch.map(async (k) => {
        const [namespace = '', name = ''] = k.split('/');
        try {
          const d = await this.c.apps.readNamespacedDeployment({ namespace, name });
          if (!underWeir(d)) return;
          const summary = await summaryOf({ ...this.c, namespace }, d);
          this.summaries.set(k, summary);
          this.record(k, summary);
        } catch (error) {
          // Gone, or not readable with this kubeconfig: no longer shown.
          if (this.summaries.delete(k)) process.stderr.write(`weir dashboard: ${k}: ${describeError(error)}\n`);
        }
      }),
    );
    this.emit();
  }

  private record(k: string, s: ReleaseSummary): void {
    const points = this.history.get(k) ?? [];
    const last = points.at(-1);
    if (last && last.actual === s.actualWeight && last.desired === s.desiredWeight && last.phase === s.phase) return;
    points.push({
      at: new Date().toISOString(),
      phase: s.phase,
      ...(s.actualWeight !== undefined ? { actual: s.actualWeight } : {}),
      ...(s.desiredWeight !== undefined ? { desired: s.desiredWeight } : {}),
    });
    this.history.set(k, points.slice(-500));
  }

  private emit(): void {
    for (const l of this.listeners) l();
  }

  snapshot(): { releases: (ReleaseSummary & { history: WeightPoint[] })[] } {
    const releases = [...this.summaries.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, s]) => ({ ...s, history: this.history.get(k) ?? [] }));
    return { releases };
  }
}

/** Answers only a page loaded from this very address: no other site can drive the user's credentials. */
function sameOrigin(req: IncomingMessage, port: number): boolean {
  const host = req.headers.host ?? '';
  const local = host === `127.0.0.1:${port}` || host === `localhost:${port}`;
  const origin = req.headers.origin;
  return local && (origin === undefined || origin === `http://${host}`);
}

const json = (res: ServerResponse, status: number, body: unknown): void =>
  void res
    .writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    .end(JSON.stringify(body));

async function events(
  core: CoreV1Api,
  namespace: string,
  name: string,
): Promise<Pick<CoreV1Event, 'type' | 'reason' | 'message'>[]> {
  const list = await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` });
  return list.items
    .sort((a, b) => (a.metadata.creationTimestamp?.getTime() ?? 0) - (b.metadata.creationTimestamp?.getTime() ?? 0))
    .map((e) => ({
      type: e.type,
      reason: e.reason,
      message: e.message,
      at: e.lastTimestamp ?? e.eventTime ?? e.metadata.creationTimestamp,
    }));
}

/** The server's routes: the page, the releases (once, or pushed on each change), events and requests. */
function handler(
  c: Clients,
  releases: Releases,
  core: CoreV1Api,
  port: () => number,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const stream = (req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const push = (): void => void res.write(`event: releases\ndata: ${JSON.stringify(releases.snapshot())}\n\n`);
    push();
    const off = releases.onChange(push);
    req.on('close', off);
  };
  const ask = async (req: IncomingMessage, res: ServerResponse, namespace: string, name: string, url: URL) => {
    // A request the page makes carries this header: a form on another site cannot send it.
    if (req.headers['x-weir-dashboard'] !== '1') return json(res, 403, { error: 'missing x-weir-dashboard header' });
    const request = url.searchParams.get('request');
    if (!isRequest(request))
      return json(res, 400, { error: `"${request ?? ''}" is not promote, promote-full, abort or retry` });
    try {
      return json(res, 200, { message: await requestRelease({ ...c, namespace }, name, request) });
    } catch (error) {
      // The CLI's own refusal (no release in progress, not under weir), word for word.
      if (error instanceof CliError) return json(res, 409, { error: error.message });
      throw error;
    }
  };
  return async (req, res) => {
    if (!sameOrigin(req, port())) return json(res, 403, { error: 'the dashboard answers only pages it served itself' });
    const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
    if (req.method === 'GET' && url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(page);
      return;
    }
    if (req.method === 'GET' && url.pathname === '/api/releases') return json(res, 200, releases.snapshot());
    if (req.method === 'GET' && url.pathname === '/api/stream') return stream(req, res);
    const match = /^\/api\/releases\/([^/]+)\/([^/]+)\/(events|requests)$/.exec(url.pathname);
    if (!match) return json(res, 404, { error: 'not found' });
    const [, namespace = '', name = '', what] = match;
    if (req.method === 'GET' && what === 'events')
      return json(res, 200, { events: await events(core, namespace, name) });
    if (req.method === 'POST' && what === 'requests') return ask(req, res, namespace, name, url);
    return json(res, 405, { error: 'method not allowed' });
  };
}

export async function serveDashboard(
  c: Clients,
  options: { port: number; allNamespaces: boolean },
): Promise<Dashboard> {
  const releases = new Releases(c);
  const core = c.kc.makeApiClient(CoreV1Api);
  const path = options.allNamespaces
    ? '/apis/apps/v1/deployments'
    : `/apis/apps/v1/namespaces/${c.namespace}/deployments`;
  let watching: AbortController | undefined;
  let stopped = false;
  const startWatch = async (): Promise<void> => {
    if (stopped) return;
    try {
      watching = await new Watch(c.kc).watch(
        path,
        {},
        (type: string, d: V1Deployment) => (type === 'DELETED' ? releases.removed(d) : releases.changed(d)),
        // The server ends a watch now and then: start again (the current state comes first).
        () => void setTimeout(() => void startWatch(), 1000),
      );
    } catch (error) {
      process.stderr.write(`weir dashboard: watch failed (${describeError(error)}); retrying\n`);
      setTimeout(() => void startWatch(), 2000);
    }
  };
  await startWatch();

  let port = options.port;
  const handle = handler(c, releases, core, () => port);
  const server = createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => json(res, 500, { error: describeError(error) }));
  });
  // A port in use is an error the CLI prints, not a crash.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, '127.0.0.1', resolve);
  });
  port = (server.address() as AddressInfo).port;
  let finish = (): void => undefined;
  const closed = new Promise<void>((resolve) => (finish = resolve));
  const close = async (): Promise<void> => {
    stopped = true;
    watching?.abort();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    finish();
  };
  process.once('SIGINT', () => void close());
  process.once('SIGTERM', () => void close());
  return { url: `http://127.0.0.1:${port}/`, closed, close };
}
