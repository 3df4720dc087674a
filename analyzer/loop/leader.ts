// One analyzer writes at a time: leader election on a coordination.k8s.io Lease, in the style of
// client-go. Another holder's lease is judged by when THIS process last saw it change (monotonic
// clock), never by comparing that host's renewTime with our wall clock, so clock skew cannot make
// two leaders. A leader that cannot renew stops writing (mayWrite turns false) a safety margin
// before anyone else may take over; every API request is abandoned within that margin.
import type { V1Lease } from '@kubernetes/client-node';
import type { LeaseApi } from './rest.ts';
import { describeError, isConflict, maybe } from '../../contract/api.ts';
import { systemClock } from '../ports/clock.ts';
import type { Clock } from '../ports/clock.ts';

/** A Lease's time: the API server parses it with six fractional digits (metav1.MicroTime), not three. */
class MicroTime extends Date {
  override toISOString(): string {
    return `${super.toISOString().slice(0, -1)}000Z`;
  }
}

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseSeconds: number;
  renewMs: number;
  log: (message: string, fields?: Record<string, unknown>) => void;
  onChange?: (leader: boolean) => void;
  clock?: Clock;
}

/** Time a leader stops writing before its lease could be taken over; API requests time out within it. */
export const safetyMarginMs = (leaseSeconds: number): number =>
  Math.max(1500, Math.min(2000, (leaseSeconds * 1000) / 5));

export class LeaderElector {
  private readonly api: LeaseApi;
  private readonly options: LeaderOptions;
  private readonly clock: Clock;
  private validUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  /** The other holder's lease record as last seen, and when (monotonic) it last changed. */
  private observed: { record: string; at: number } | undefined;

  constructor(api: LeaseApi, options: LeaderOptions) {
    this.api = api;
    this.options = options;
    this.clock = options.clock ?? systemClock;
  }

  /** True while this process holds its lease, a safety margin before it could expire. */
  mayWrite(): boolean {
    return this.clock.monotonic() < this.validUntil;
  }

  start(): void {
    const loop = (): void => {
      void this.tryAcquireOrRenew().finally(() => {
        this.timer = setTimeout(loop, this.options.renewMs);
      });
    };
    loop();
  }

  /** Stops renewing and gives the lease up, so another replica takes over without waiting. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    const wasLeader = this.mayWrite();
    this.validUntil = 0;
    if (!wasLeader) return;
    const lease = await maybe(() =>
      this.api.readNamespacedLease({ namespace: this.options.namespace, name: this.options.name }),
    ).catch(() => undefined);
    if (lease?.spec?.holderIdentity !== this.options.identity) return;
    lease.spec.holderIdentity = undefined;
    await this.api
      .replaceNamespacedLease({ namespace: this.options.namespace, name: this.options.name, body: lease })
      .catch(() => undefined);
  }

  private setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.options.log(leading ? 'became the leader' : 'lost leadership; writes stopped', {
      identity: this.options.identity,
    });
    this.options.onChange?.(leading);
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const { namespace, name, identity, leaseSeconds } = this.options;
    const started = this.clock.monotonic();
    try {
      const lease = await maybe(() => this.api.readNamespacedLease({ namespace, name }));
      const now = new MicroTime(this.clock.wall());
      if (!lease) {
        await this.api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: leaseSeconds,
              acquireTime: now,
              renewTime: now,
              leaseTransitions: 0,
            },
          },
        });
      } else if (!this.canTake(lease, started)) {
        this.validUntil = 0;
        this.setLeading(false);
        return;
      } else {
        const spec = lease.spec ?? {};
        const taking = spec.holderIdentity !== identity;
        lease.spec = {
          ...spec,
          holderIdentity: identity,
          leaseDurationSeconds: leaseSeconds,
          renewTime: now,
          ...(taking ? { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
        };
        await this.api.replaceNamespacedLease({ namespace, name, body: lease });
      }
      // Count from before the request: the lease may have been granted at its start.
      this.validUntil = started + leaseSeconds * 1000 - safetyMarginMs(leaseSeconds);
      this.setLeading(true);
    } catch (error) {
      if (!isConflict(error)) this.options.log('lease renewal failed', { error: describeError(error) });
      if (!this.mayWrite()) this.setLeading(false);
    }
  }

  /** Free, ours, or unchanged for a whole lease duration as this process has watched it. */
  private canTake(lease: V1Lease, now: number): boolean {
    const spec = lease.spec;
    if (!spec?.holderIdentity || spec.holderIdentity === this.options.identity) return true;
    const record = `${spec.holderIdentity}|${String(spec.renewTime)}|${lease.metadata?.resourceVersion ?? ''}`;
    if (this.observed?.record !== record) this.observed = { record, at: now };
    return now - this.observed.at > (spec.leaseDurationSeconds ?? this.options.leaseSeconds) * 1000;
  }
}
