// The in-process router: device -> session, as an open-addressing table of slot numbers (session-slots.ts) in one
// Int32Array, not a Map: a logged-in session costs 8 bytes here at the table's load factor, and no object. An entry
// holds slot + 1 (0 is empty); its key is the slot's own account and device columns, so the table stores no keys.
// Linear probing, with backward-shift deletion (no tombstones, so lookups stay short however many devices come and
// go); the table doubles when it is half full.

import { routerIndexInitial } from "../protocol/limits.ts";
import type { Router } from "./router.ts";
import { type Session, sessionAt } from "./session.ts";
import type { SessionSlots } from "./session-slots.ts";

const empty = 0;

function hash(account: number, device: number): number {
  let h = Math.imul(account ^ Math.imul(device, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export class LocalRouter implements Router {
  private table = new Int32Array(routerIndexInitial);
  private mask = routerIndexInitial - 1;
  private count = 0;

  constructor(private readonly slots: SessionSlots) {}

  /** The table position of the device's entry, or -1. */
  private position(account: number, device: number): number {
    const { account: accounts, device: devices } = this.slots;
    for (let index = hash(account, device) & this.mask; ; index = (index + 1) & this.mask) {
      const entry = this.table[index]!;
      if (entry === empty) return -1;
      const slot = entry - 1;
      if (accounts[slot] === account && devices[slot] === device) return index;
    }
  }

  attach(account: number, device: number, session: Session): Session | undefined {
    if (!session.live) return undefined;
    const at = this.position(account, device);
    if (at >= 0) {
      const previous = this.table[at]! - 1;
      this.table[at] = session.slot + 1;
      return previous === session.slot ? undefined : sessionAt(this.slots, previous);
    }
    if ((this.count + 1) * 2 > this.table.length) this.resize(this.table.length * 2);
    this.insert(account, device, session.slot);
    this.count++;
    return undefined;
  }

  detach(account: number, device: number, session: Session): void {
    const at = this.position(account, device);
    if (at < 0 || this.table[at] !== session.slot + 1 || !session.live) return;
    this.remove(at);
    this.count--;
  }

  find(account: number, device: number): Session | undefined {
    const at = this.position(account, device);
    return at < 0 ? undefined : sessionAt(this.slots, this.table[at]! - 1);
  }

  get size(): number {
    return this.count;
  }

  private insert(account: number, device: number, slot: number): void {
    let index = hash(account, device) & this.mask;
    while (this.table[index] !== empty) index = (index + 1) & this.mask;
    this.table[index] = slot + 1;
  }

  /** Empties position `at` and shifts back the entries of the run after it that may move closer to home. */
  private remove(at: number): void {
    const { account: accounts, device: devices } = this.slots;
    let hole = at;
    this.table[hole] = empty;
    for (let index = (hole + 1) & this.mask; this.table[index] !== empty; index = (index + 1) & this.mask) {
      const slot = this.table[index]! - 1;
      const home = hash(accounts[slot]!, devices[slot]!) & this.mask;
      // The entry may move to the hole unless its home lies cyclically in (hole, index].
      const homeAfterHole = hole <= index ? home > hole && home <= index : home > hole || home <= index;
      if (!homeAfterHole) {
        this.table[hole] = this.table[index]!;
        this.table[index] = empty;
        hole = index;
      }
    }
  }

  private resize(length: number): void {
    const old = this.table;
    this.table = new Int32Array(length);
    this.mask = length - 1;
    const { account: accounts, device: devices } = this.slots;
    for (const entry of old) {
      if (entry !== empty) this.insert(accounts[entry - 1]!, devices[entry - 1]!, entry - 1);
    }
  }
}
