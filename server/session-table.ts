// The sessions of this process and their deadlines: state that outlives a code reload (SIGHUP installs a new
// ConnectionHandler over the same table, so no connection is dropped).

import { sessionSlotsChunk } from "../protocol/limits.ts";
import { type Session, sessionAt } from "./session.ts";
import { SessionSlots, SlotFlag } from "./session-slots.ts";
import { TimerWheel } from "./timer-wheel.ts";

/**
 * The window a drain spreads its goaways' retry hints over: the time `sessions` clients need to come back at
 * `reconnectsPerSecond` (a rate the restarted server takes without a storm), at most `retryAfterMsMax`.
 * window = min(retryAfterMsMax, ceil(sessions * 1000 / reconnectsPerSecond)): three sessions come back within a few
 * milliseconds of the restart, a million within the cap.
 */
export function drainWindowMs(sessions: number, reconnectsPerSecond: number, retryAfterMsMax: number): number {
  return Math.min(retryAfterMsMax, Math.ceil((sessions * 1000) / reconnectsPerSecond));
}

export class SessionTable {
  /** Every session of this process, local and proxies, as slots (session-slots.ts). */
  readonly slots: SessionSlots;
  /** The deadlines of the local sessions, by slot. */
  readonly wheel: TimerWheel;
  /** Local sessions (sockets of this process) open now: the slots in use minus the proxies. */
  count = 0;
  /**
   * Set first when stopping (the lame duck): /readyz answers 503 so that load balancers take the node out, while
   * sessions and new connections are still served.
   */
  lameDuck = false;
  /** Set after the lame duck: new connections get a goaway at once, and every session gets one. */
  draining = false;
  /** The retry-hint window of the drain under way (drainWindowMs). */
  private retryWindowMs = Number.POSITIVE_INFINITY;

  constructor(timerTickMs: number, now: () => number, capacity = sessionSlotsChunk) {
    this.slots = new SessionSlots(capacity, now);
    this.wheel = new TimerWheel(timerTickMs, () => {}, now, undefined, capacity);
    this.slots.onGrow = (grown) => this.wheel.ensureCapacity(grown);
  }

  /** Every local session open now (not the proxies), as handles; for shutdown, metrics and the admin API. */
  *sessions(): Generator<Session> {
    // The columns are read afresh at each step: a caller may open sessions between two (the columns then grow).
    const slots = this.slots;
    for (let slot = 0; slot < slots.capacity; slot++) {
      if (slots.ids[slot] !== 0 && (slots.flags[slot]! & SlotFlag.proxy) === 0) yield sessionAt(slots, slot);
    }
  }

  /** False from the start of a stop: what /readyz answers. */
  get ready(): boolean {
    return !this.lameDuck && !this.draining;
  }

  /** Starts the drain: goaways from now on carry retry hints below `windowMs`. */
  beginDrain(windowMs: number): void {
    this.lameDuck = true;
    this.draining = true;
    this.retryWindowMs = windowMs;
  }

  /**
   * A jittered retry hint for goaways while draining, so clients do not all come back at once: uniform below the
   * drain's window, and below `retryAfterMsMax`.
   */
  retryAfterMs(retryAfterMsMax: number): number {
    return Math.floor(Math.random() * Math.min(retryAfterMsMax, this.retryWindowMs));
  }
}
