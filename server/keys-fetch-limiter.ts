// The bundle-fetch budget of the key directory, as Signal-Server's prekey rate limiter: per requesting device and
// target account, a burst of keysFetchBurst and one more every keysFetchRefillMs. The owner of the target account
// keeps it (every fetch of that account's bundles is handled there), in memory, for at most
// keysFetchLimiterEntriesMax pairs: the least recently used go first (a forgotten pair starts with a full burst,
// which only ever lets a fetcher fetch more, never less, than the limit says; a restart forgets them all likewise).

import type { Limits } from "../protocol/index.ts";

interface Bucket {
  tokens: number;
  refilledAtMs: number;
}

export class KeyFetchLimiter {
  private readonly buckets = new Map<string, Bucket>();

  /** True when the fetch may go ahead (and is counted). */
  take(fetcherAccount: number, fetcherDevice: number, target: number, nowMs: number, limits: Limits): boolean {
    const key = `${fetcherAccount}/${fetcherDevice}>${target}`;
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: limits.keysFetchBurst, refilledAtMs: nowMs };
    } else {
      this.buckets.delete(key);
      const refill = Math.floor((nowMs - bucket.refilledAtMs) / limits.keysFetchRefillMs);
      if (refill > 0) {
        bucket.tokens = Math.min(limits.keysFetchBurst, bucket.tokens + refill);
        bucket.refilledAtMs += refill * limits.keysFetchRefillMs;
      }
    }
    // Map order is insertion order: re-inserting makes this the most recently used.
    this.buckets.set(key, bucket);
    while (this.buckets.size > limits.keysFetchLimiterEntriesMax) {
      this.buckets.delete(this.buckets.keys().next().value as string);
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens--;
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }
}
