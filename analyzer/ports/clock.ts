// The clock port: wall time for people, monotonic time for every judgement of time.
export interface Clock {
  /** Wall time, only ever written into the Lease for people to read. */
  wall: () => number;
  /** Monotonic milliseconds: every judgement of time. */
  monotonic: () => number;
}

export const systemClock: Clock = { wall: () => Date.now(), monotonic: () => performance.now() };
