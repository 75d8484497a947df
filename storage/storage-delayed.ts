import type { Storage } from "./storage.ts";

// A Storage whose every call resolves after a random delay, around a real one: the shape of a network database
// (PostgreSQL later), where a commit or a read finishes while other handlers run. The delivery pipeline must be
// correct against it, so tests run the server and the conformance suite through it. Half of the calls wait before
// they reach the real store and half after, so both "the write happened late" and "the answer came late" occur.

export interface DelayOptions {
  /** Uniform in [0, 1); pass a seeded one (protocol/fuzz.ts has mulberry32) so that a failing run repeats. */
  readonly random: () => number;
  /** Each call waits 0..delayMsMax ms (whole milliseconds; 0 still yields to the event loop). */
  readonly delayMsMax: number;
}

export function delayedStorage(inner: Storage, options: DelayOptions): Storage {
  const random = options.random;
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
    keys: wrap(inner.keys),
    groups: wrap(inner.groups),
    close: () => inner.close(),
  };
}
