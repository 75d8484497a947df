import type { Storage } from "./storage.ts";

// A Storage whose every call resolves after a random delay, around a real one: the shape of a network database
// (PostgreSQL later), where a commit or a read finishes while other handlers run. The delivery pipeline must be
// correct against it (DESIGN.md, Storage), so tests run the server and the conformance suite through it. Half of
// the calls wait before they reach the real store and half after, so both "the write happened late" and "the answer
// came late" occur. Seeded: a failing run can be repeated.

export interface DelayOptions {
  readonly seed: number;
  /** Each call waits 0..delayMsMax ms (whole milliseconds; 0 still yields to the event loop). */
  readonly delayMsMax: number;
}

export function delayedStorage(inner: Storage, options: DelayOptions): Storage {
  const random = mulberry32(options.seed);
  const pause = () =>
    new Promise<void>((resolve) => setTimeout(resolve, Math.floor(random() * (options.delayMsMax + 1))));
  const wrap = <T extends object>(store: T): T =>
    new Proxy(store, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== "function") return value;
        return async (...args: unknown[]) => {
          if (random() < 0.5) {
            await pause();
            return await value.apply(target, args);
          }
          const result = await value.apply(target, args);
          await pause();
          return result;
        };
      },
    });
  return {
    accounts: wrap(inner.accounts),
    devices: wrap(inner.devices),
    queues: wrap(inner.queues),
    invites: wrap(inner.invites),
    linkCodes: wrap(inner.linkCodes),
    close: () => inner.close(),
  };
}

/** A small seeded generator (Mulberry32): uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = state;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}
