// Sends notifications (issue 16) without ever holding up a release: `notify` only queues. Each
// receiver has its own bounded queue (the oldest waiting notice is dropped when full), sent in
// order one at a time, so a slow or dead receiver delays nobody else; every attempt has a timeout,
// and failures worth it are retried with backoff. Receiver URLs and passwords are read from the
// mounted Secret when sent, and never reach a log line, an Event or a metric label.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { emailPayload, httpPayload, receiversFor } from '../core/notifications.ts';
import type { Notice, Notifications, Receiver } from '../core/notifications.ts';

export interface NotifierOptions {
  /** The folder the notifications Secret is mounted at: one file per key. */
  secretDir: string;
  timeoutMs?: number;
  attempts?: number;
  backoffMs?: number;
  /** Notices waiting, per receiver. */
  queueLimit?: number;
  result: (receiver: string, result: 'sent' | 'failed' | 'dropped') => void;
  depth: (queued: number) => void;
  log: (message: string, fields?: Record<string, unknown>) => void;
}

interface Delivery {
  receiver: Receiver;
  notice: Notice;
}

/** A failure worth another attempt (the receiver may be back), or not (it refused the request). */
class Failure extends Error {
  readonly retry: boolean;
  constructor(message: string, retry: boolean) {
    super(message);
    this.retry = retry;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

export class Notifier {
  private readonly config: Notifications;
  private readonly options: Required<Omit<NotifierOptions, 'result' | 'depth' | 'log'>> &
    Pick<NotifierOptions, 'result' | 'depth' | 'log'>;
  private readonly lanes = new Map<string, { queue: Delivery[]; busy: boolean }>();
  private closed = false;

  constructor(config: Notifications, options: NotifierOptions) {
    this.config = config;
    this.options = { timeoutMs: 5000, attempts: 4, backoffMs: 1000, queueLimit: 100, ...options };
  }

  /** Queues the notice for every receiver its routes name; returns at once. */
  notify(notice: Notice): void {
    if (this.closed) return;
    for (const receiver of receiversFor(this.config, notice)) {
      let lane = this.lanes.get(receiver.name);
      if (!lane) this.lanes.set(receiver.name, (lane = { queue: [], busy: false }));
      if (lane.queue.length >= this.options.queueLimit) {
        lane.queue.shift();
        this.options.result(receiver.name, 'dropped');
        this.options.log('notification queue full; dropped the oldest', { receiver: receiver.name });
      }
      lane.queue.push({ receiver, notice });
      this.pump(lane);
    }
    this.depth();
  }

  close(): void {
    this.closed = true;
    for (const lane of this.lanes.values()) lane.queue.length = 0;
  }

  private depth(): void {
    this.options.depth([...this.lanes.values()].reduce((sum, l) => sum + l.queue.length, 0));
  }

  /** One receiver's notices, in order, one at a time. */
  private pump(lane: { queue: Delivery[]; busy: boolean }): void {
    if (lane.busy) return;
    const next = lane.queue.shift();
    if (!next) return;
    lane.busy = true;
    void this.deliver(next).finally(() => {
      lane.busy = false;
      this.depth();
      this.pump(lane);
    });
  }

  private async deliver(d: Delivery): Promise<void> {
    const { attempts, backoffMs } = this.options;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.send(d);
        this.options.result(d.receiver.name, 'sent');
        return;
      } catch (error) {
        const failure = error instanceof Failure ? error : new Failure(String(error), true);
        if (this.closed || !failure.retry || attempt >= attempts) {
          this.options.result(d.receiver.name, 'failed');
          this.options.log('could not send a notification', {
            receiver: d.receiver.name,
            event: d.notice.event,
            attempts: attempt,
            error: failure.message,
          });
          return;
        }
        await sleep(backoffMs * 2 ** (attempt - 1));
      }
    }
  }

  private secret(receiver: Receiver, key: string | undefined): string {
    if (!key) throw new Failure(`receiver ${receiver.name}: no Secret key`, false);
    try {
      return readFileSync(join(this.options.secretDir, key), 'utf8').trim();
    } catch {
      throw new Failure(`receiver ${receiver.name}: key ${key} is not in the notifications Secret`, false);
    }
  }

  private async send({ receiver, notice }: Delivery): Promise<void> {
    if (receiver.type === 'email') return this.sendEmail(receiver, notice);
    const url = this.secret(receiver, receiver.urlKey);
    const { contentType, body } = httpPayload(receiver.type, notice);
    const { timeoutMs } = this.options;
    let status: number;
    try {
      const res = await request(url, {
        method: 'POST',
        headers: { 'content-type': contentType },
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs),
      });
      status = res.statusCode;
      await res.body.dump();
    } catch (error) {
      // The URL is the secret: say what went wrong, never where.
      const code = (error as { code?: string }).code ?? (error as { name?: string }).name ?? 'error';
      throw new Failure(`receiver ${receiver.name}: ${code}`, true);
    }
    if (status >= 200 && status < 300) return;
    throw new Failure(`receiver ${receiver.name}: HTTP ${status}`, status === 429 || status >= 500);
  }

  private async sendEmail(receiver: Receiver, notice: Notice): Promise<void> {
    const e = receiver.email;
    if (!e) throw new Failure(`receiver ${receiver.name}: no email settings`, false);
    const user = e.usernameKey ? this.secret(receiver, e.usernameKey) : undefined;
    const pass = e.passwordKey ? this.secret(receiver, e.passwordKey) : undefined;
    const { timeoutMs } = this.options;
    // Loaded on the first email: most installs send none, and it is a fifth of an idle analyzer's memory.
    const { default: nodemailer } = await import('nodemailer');
    const transport = nodemailer.createTransport({
      host: e.host,
      port: e.port,
      secure: e.secure,
      ...(user !== undefined && pass !== undefined ? { auth: { user, pass } } : {}),
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
    });
    try {
      const { subject, text } = emailPayload(notice);
      await transport.sendMail({ from: e.from, to: e.to, subject, text });
    } catch (error) {
      const code = (error as { code?: string }).code ?? 'error';
      const response = (error as { responseCode?: number }).responseCode;
      // A 5xx SMTP answer is permanent; anything else (a connection, a 4xx) may pass later.
      throw new Failure(
        `receiver ${receiver.name}: ${code}${response ? ` ${response}` : ''}`,
        !(response && response >= 500),
      );
    } finally {
      transport.close();
    }
  }
}
