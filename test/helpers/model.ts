// A small in-memory model of one release's cluster, for driving the pure state machine without
// I/O: the unit tests and the analysis benchmark apply decide's actions through it, as the
// analyzer's edges would, with seeded randomness so every run draws the same traffic.
import type { Action, Observed } from '../../analyzer/core/decide.ts';
import type { Policy } from '../../analyzer/core/policy.ts';

/** A Deployment mid-release, paused, with its canary not yet created. */
export function releaseWorld(policy: Policy, overrides: Partial<Observed> = {}): Observed {
  return {
    namespace: 'ns',
    name: 'web',
    phase: 'Progressing',
    canaryRevision: 'c1',
    stableRevision: 's1',
    optedOut: false,
    policyName: 'default',
    replicas: 4,
    paused: true,
    rolledOut: false,
    routing: { ok: true, canaryWeight: 0 },
    backendsReady: true,
    unlabelledStablePods: 0,
    policy: { ok: true, value: policy },
    stableAvailable: overrides.replicas ?? 4,
    ...overrides,
  };
}

/** Applies actions as the edges would; canaries become Ready at once, rollouts complete at once. */
export function applyActions(o: Observed, actions: Action[], log: string[]): void {
  for (const a of actions) {
    switch (a.kind) {
      case 'setWeight':
        o.routing = {
          ...(o.routing.ok && o.routing.meshUnsteered ? { meshUnsteered: true } : {}),
          ok: true,
          canaryWeight: a.weight,
          ...(a.mirror ? { mirror: a.mirror } : {}),
          ...(a.header ? { header: a.header } : {}),
        };
        log.push(
          `weight ${a.weight}${a.mirror ? ` mirror ${a.mirror}` : ''}${a.header ? ` header ${a.header.name}` : ''}`,
        );
        break;
      case 'ensureCanary':
        o.canary = { revision: o.canaryRevision ?? '', replicas: a.replicas, readyReplicas: a.replicas, current: true };
        break;
      case 'deleteCanary':
        o.canary = undefined;
        log.push('delete canary');
        break;
      case 'scaleStable':
        o.status = a.status;
        o.replicas = a.replicas;
        o.stableAvailable = a.replicas;
        log.push(`stable ${a.replicas}`);
        break;
      case 'unpause':
        o.paused = false;
        o.rolledOut = true;
        log.push('unpause');
        break;
      case 'setPhase':
        o.phase = a.phase;
        if (a.promotedRevision) o.stableRevision = a.promotedRevision;
        log.push(`phase ${a.phase}`);
        break;
      case 'status':
        o.status = a.status;
        delete o.recordedCheckAt;
        break;
      case 'remember':
        // The analyzer's memory (ADR 26): the record stays as it was, the status carries the pass.
        o.recordedCheckAt ??= o.status?.lastCheckAt;
        o.status = a.status;
        log.push('remember');
        break;
      case 'labelStablePods':
        o.unlabelledStablePods = 0;
        log.push('label stable pods');
        break;
      case 'retireRouting':
        log.push('retire routing');
        break;
      case 'retireBackends':
        log.push('retire backends');
        break;
      case 'ensureBackends':
        o.backendsReady = true;
        log.push('subsets');
        break;
      case 'event':
        log.push(`event ${a.reason}`);
        break;
    }
  }
}

/** A small seeded generator (mulberry32): the same draws on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** A Poisson draw by inversion: the errors of many requests at a small rate. */
export function poisson(rand: () => number, mean: number): number {
  let k = 0;
  let p = Math.exp(-mean);
  let sum = p;
  const u = rand();
  while (u > sum && k < 10_000) {
    k++;
    p *= mean / k;
    sum += p;
  }
  return k;
}
