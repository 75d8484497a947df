// The directory answers "which devices does account A have?" for fan-out, from a bounded cache over the store.
// Whoever adds or removes a device invalidates the account's entry; with several workers the invalidation is
// announced to the others (onInvalidate, routing-mesh.ts), which forget their entry.

import type { Storage } from "../storage/index.ts";

export class Directory {
  /** account -> its device ids, ascending. Map order is the recency order (re-inserted on use). */
  private readonly devicesByAccount = new Map<number, readonly number[]>();

  constructor(
    private readonly storage: Storage,
    private readonly entriesMax: number,
  ) {}

  /** The cached device list, or undefined when it must be loaded with `load`. */
  cached(account: number): readonly number[] | undefined {
    const devices = this.devicesByAccount.get(account);
    if (devices !== undefined) {
      this.devicesByAccount.delete(account);
      this.devicesByAccount.set(account, devices);
    }
    return devices;
  }

  /** The device list from the store (cached), or undefined when the account does not exist or has no device. */
  async load(account: number): Promise<readonly number[] | undefined> {
    const cached = this.cached(account);
    if (cached !== undefined) return cached;
    const records = await this.storage.devices.list(account);
    if (records.length === 0) return undefined;
    const devices = Object.freeze(records.map((record) => record.device));
    this.devicesByAccount.set(account, devices);
    if (this.devicesByAccount.size > this.entriesMax) {
      const oldest = this.devicesByAccount.keys().next().value;
      if (oldest !== undefined) this.devicesByAccount.delete(oldest);
    }
    return devices;
  }

  /** Called by invalidate (not by forget): the workers that run beside this one forget the account too. */
  onInvalidate: (account: number) => void = () => {};

  /** The account's devices changed here: forget them, and tell the other workers. */
  invalidate(account: number): void {
    this.devicesByAccount.delete(account);
    this.onInvalidate(account);
  }

  /** Another worker changed the account's devices. */
  forget(account: number): void {
    this.devicesByAccount.delete(account);
  }

  get size(): number {
    return this.devicesByAccount.size;
  }
}
