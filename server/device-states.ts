// The device states in memory (see device-state.ts): loaded from the store on first use, one per device however
// many handlers ask at once, dropped when nothing in memory differs from the store, and released for online devices
// that are idle (an idle logged-in session then costs no state at all). Delivery owns what the states mean; this
// table owns which exist.

import type { ServerContext } from "./context.ts";
import { DeviceState, deviceKey } from "./device-state.ts";
import { bitsFromBytes, emptyReadWindow } from "./read-receipt-window.ts";
import { type Session, SessionState } from "./session.ts";

/** Attempts to find every state of a send in memory after loading them; eviction between tries is rare. */
const stateLoadAttemptsMax = 3;

/**
 * Devices whose per-peer queue depths (the fair share) are remembered while their state is dropped: the state of an
 * offline device is dropped after every commit, and reading the depth again would cost a read of its deep queue
 * per send. Least recently used first out.
 */
export const peerDepthDevicesMax = 10_000;

export class DeviceStates {
  private readonly states = new Map<number, DeviceState>();
  private readonly loading = new Map<number, Promise<DeviceState | undefined>>();
  /** States a caller of statesOf is about to use, by key, with how many callers (see holdForCaller). */
  private readonly held = new Map<number, number>();
  /** The holds to end at the next immediate (one per hold; a state held twice is listed twice). */
  private heldUntilNext: DeviceState[] = [];
  /**
   * Per device, the peer depths its state keeps (the same Map object, see DeviceState.peerDepths). Every change to a
   * queue goes through its device's state, or through the retention sweep and device removal, which forget it here.
   */
  private readonly peerDepths = new Map<number, Map<number, { rows: number; bytes: number }>>();
  /** Online devices seen idle, waiting out deviceStateIdleReleaseMs (see releaseIfIdle). */
  private readonly quiet = new Set<DeviceState>();
  /** Runs while `quiet` has states. */
  private quietSweep: ReturnType<typeof setInterval> | null = null;

  constructor(private readonly context: ServerContext) {}

  get size(): number {
    return this.states.size;
  }

  get(account: number, device: number): DeviceState | undefined {
    return this.states.get(deviceKey(account, device));
  }

  /** Forgets a state (its device was removed, or the state is dropped). */
  delete(state: DeviceState): void {
    if (this.states.get(state.key) === state) this.states.delete(state.key);
  }

  /** The per-peer depths of a state's queue, created (and remembered past the state) on first use. */
  peerDepthsOf(state: DeviceState): Map<number, { rows: number; bytes: number }> {
    let depths = state.peerDepths;
    if (depths === null) {
      depths = new Map();
      state.peerDepths = depths;
    }
    this.peerDepths.delete(state.key);
    this.peerDepths.set(state.key, depths);
    if (this.peerDepths.size > peerDepthDevicesMax) {
      const oldest = this.peerDepths.keys().next().value;
      if (oldest !== undefined) this.peerDepths.delete(oldest);
    }
    return depths;
  }

  /** The queue changed behind the states (retention sweep, device removal): its depths must be read again. */
  forgetPeerDepths(account: number, device: number): void {
    const key = deviceKey(account, device);
    this.peerDepths.delete(key);
    const state = this.states.get(key);
    if (state !== undefined) state.peerDepths = null;
  }

  /** The state of a device: from memory, or loaded from the store (undefined when the device does not exist). */
  private async loadState(account: number, device: number): Promise<DeviceState | undefined> {
    const key = deviceKey(account, device);
    const present = this.states.get(key);
    if (present !== undefined) return present;
    let loading = this.loading.get(key);
    if (loading === undefined) {
      loading = this.context.storage.devices.get({ account, device }).then((record) => {
        this.loading.delete(key);
        if (record === undefined) return undefined;
        const raced = this.states.get(key);
        if (raced !== undefined) return raced;
        const state = new DeviceState(account, device, record);
        state.peerDepths = this.peerDepths.get(key) ?? null;
        this.states.set(key, state);
        // An online device whose idle state was released gets it back (see releaseIfIdle).
        const session = this.context.router.find(account, device);
        if (session?.stateReleased && session.state === SessionState.ready) {
          this.reattach(state, session);
        }
        return state;
      });
      this.loading.set(key, loading);
    }
    return loading;
  }

  /**
   * The states of `devices` of `account` if every one is in memory now, removed ones left out; undefined otherwise.
   * Synchronous: a caller about to mutate states calls it in the same turn as the mutation. (statesOf's result is
   * not enough: between an async function's return and its caller's continuation other microtasks run, and one may
   * release or drop a state; entries queued on a state no longer in the table were given sequence numbers that a
   * state loaded later gave again: a UNIQUE failure of the commit, found with workers, where states are released
   * after every forwarded stanza.)
   */
  statesNow(account: number, devices: readonly number[]): DeviceState[] | undefined {
    const found: DeviceState[] = [];
    for (const device of devices) {
      const state = this.states.get(deviceKey(account, device));
      if (state === undefined) return undefined;
      if (!state.removed) found.push(state);
    }
    return found;
  }

  /**
   * Loads the states of `devices` of `account` and returns them; a caller that mutates them after awaiting this
   * takes them again with statesNow in the turn of the mutation. Devices that do not exist are left out. Undefined
   * if eviction kept winning (busy).
   */
  async statesOf(account: number, devices: readonly number[]): Promise<DeviceState[] | undefined> {
    for (let attempt = 0; attempt < stateLoadAttemptsMax; attempt++) {
      const found: DeviceState[] = [];
      let missing = false;
      for (const device of devices) {
        const state = this.states.get(deviceKey(account, device));
        if (state === undefined) missing = true;
        else if (!state.removed) found.push(state);
      }
      if (!missing) {
        this.holdForCaller(found);
        return found;
      }
      const loaded = await Promise.all(devices.map((device) => this.loadState(account, device)));
      // A device that does not exist in the store is not missing: drop it from the list and look again.
      devices = devices.filter((_, index) => loaded[index] !== undefined);
    }
    return undefined;
  }

  /**
   * Keeps `states` from being released or dropped until the next macrotask: the caller of statesOf resumes in a
   * microtask after it returns, and other microtasks (a handler that ends and releases its idle state) may run
   * first. Without the hold the caller found them gone (busy) again and again under load. When the hold ends, what
   * was skipped meanwhile (the release of an idle state) is done.
   */
  private holdForCaller(states: readonly DeviceState[]): void {
    for (const state of states) {
      this.held.set(state.key, (this.held.get(state.key) ?? 0) + 1);
      this.heldUntilNext.push(state);
    }
    if (this.heldUntilNext.length === states.length && states.length > 0) setImmediate(() => this.endHolds());
  }

  /** The holds of the last turn end (one immediate for all of them). */
  private endHolds(): void {
    const states = this.heldUntilNext;
    this.heldUntilNext = [];
    for (const state of states) this.unhold(state);
  }

  /**
   * Keeps `states` from being released or dropped until the returned function is called: for a caller that loads
   * states over several event-loop turns (a group fan-out loads its members' states a slice per turn) and takes them
   * all at the end. The caller must call it on every path (once; later calls do nothing).
   */
  hold(states: readonly DeviceState[]): () => void {
    for (const state of states) this.held.set(state.key, (this.held.get(state.key) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const state of states) this.unhold(state);
    };
  }

  private unhold(state: DeviceState): void {
    const count = (this.held.get(state.key) ?? 1) - 1;
    if (count > 0) {
      this.held.set(state.key, count);
      return;
    }
    this.held.delete(state.key);
    // A release or drop skipped during the hold happens now, as it would have then.
    if (this.states.get(state.key) !== state) return;
    if (state.session === null) this.dropIfIdle(state);
    else this.releaseIfIdle(state.session);
  }

  dropIfIdle(state: DeviceState): void {
    if (state.isDroppable && !this.held.has(state.key)) this.delete(state);
  }

  /**
   * Releases the state of an online device that has nothing going on (its queue delivered and acknowledged, nothing
   * uncommitted, no handler of its session running) once it has been so for deviceStateIdleReleaseMs. An idle
   * session then costs no state object; the state is loaded again from the store (where it is the same) when a
   * message comes for the device or it sends. Released at once, a device that exchanged a message every few
   * hundred milliseconds read its state back from the store for every message.
   */
  releaseIfIdle(session: Session): void {
    const state = session.deviceState;
    if (state === null || !this.isIdle(session, state)) return;
    const delayMs = this.context.limits.deviceStateIdleReleaseMs;
    state.quietSinceMs = this.context.now();
    this.quiet.add(state);
    this.quietSweep ??= setInterval(() => this.releaseQuiet(), Math.max(1, Math.floor(delayMs / 2)));
    this.quietSweep.unref?.();
  }

  /** Releases the states that have stayed idle for deviceStateIdleReleaseMs; forgets those that did not. */
  private releaseQuiet(): void {
    const nowMs = this.context.now();
    const delayMs = this.context.limits.deviceStateIdleReleaseMs;
    for (const state of this.quiet) {
      const session = state.session;
      if (this.states.get(state.key) !== state || session === null || session.deviceState !== state) {
        this.quiet.delete(state);
      } else if (!this.isIdle(session, state)) {
        // Busy again: the next releaseIfIdle, after its traffic, starts the wait over.
        this.quiet.delete(state);
      } else if (nowMs - state.quietSinceMs >= delayMs) {
        this.quiet.delete(state);
        state.session = null;
        state.quietSinceMs = 0;
        session.deviceState = null;
        session.stateReleased = true;
        this.delete(state);
      }
    }
    if (this.quiet.size === 0 && this.quietSweep !== null) {
      clearInterval(this.quietSweep);
      this.quietSweep = null;
    }
  }

  private isIdle(session: Session, state: DeviceState): boolean {
    if (session.busy || !session.queueEmptySent || state.reading) return false;
    if (state.inFlightCount > 0 || (state.pending !== null && state.pending.length > 0)) return false;
    // Delivered up to the last sequence with nothing in flight: every entry was acknowledged (in this session, or
    // in an earlier one for those the drain skipped).
    if (state.deliveredSeq < state.lastSeq) return false;
    if (state.committedSeq !== state.lastSeq) return false;
    // The store must not hold acknowledged rows: a state loaded from it would deliver them again and count them.
    return !state.ackUncommitted && state.readWindowWrites === 0 && !this.held.has(state.key);
  }

  /** A released session's device got a state again: everything up to its last sequence was delivered and acked. */
  private reattach(state: DeviceState, session: Session): void {
    state.session = session;
    state.ackedSeq = state.lastSeq;
    state.committedAckSeq = state.lastSeq;
    state.deliveredSeq = state.lastSeq;
    session.deviceState = state;
    session.stateReleased = false;
  }

  /** The session's device state, loading it again if it was released. Undefined when the device is gone. */
  async stateOfSession(session: Session): Promise<DeviceState | undefined> {
    if (session.deviceState !== null) return session.deviceState;
    await this.statesOf(session.account, [session.device]);
    return session.deviceState ?? undefined;
  }

  /**
   * Makes sure `reader` holds its read-receipt windows for `senders` (loaded from the store, or empty). The caller
   * checks after awaiting that `reader` is still the device's state.
   */
  async loadReadWindows(
    reader: DeviceState,
    senders: ReadonlyArray<{ account: number; device: number }>,
  ): Promise<void> {
    const missing = senders.filter(
      (sender) => reader.readWindows?.has(deviceKey(sender.account, sender.device)) !== true,
    );
    if (missing.length === 0) return;
    const stored = await this.context.storage.queues.readReceiptWindows(reader, missing);
    reader.readWindows ??= new Map();
    for (const sender of missing) {
      const key = deviceKey(sender.account, sender.device);
      // Loaded meanwhile by another handler of this device: that copy may already be newer.
      if (reader.readWindows.has(key)) continue;
      const row = stored.find((window) => window.peerAccount === sender.account && window.peerDevice === sender.device);
      reader.readWindows.set(
        key,
        row === undefined
          ? emptyReadWindow
          : { last: row.lastClientId, delivered: bitsFromBytes(row.delivered), read: bitsFromBytes(row.read) },
      );
    }
  }

  /** Re-reads the queue depth of devices in memory after the retention sweep deleted some of their rows. */
  async resyncCounters(devices: ReadonlyArray<{ account: number; device: number }>): Promise<void> {
    for (const key of devices) this.forgetPeerDepths(key.account, key.device);
    for (const key of devices) {
      if (!this.states.has(deviceKey(key.account, key.device))) continue;
      const record = await this.context.storage.devices.get(key);
      const state = this.states.get(deviceKey(key.account, key.device));
      if (record === undefined || state === undefined) continue;
      let rows = record.queueRows;
      let bytes = record.queueBytes;
      for (const entry of state.pending ?? []) {
        if (entry.cancelled) continue;
        rows++;
        bytes += entry.bytes;
      }
      state.queueRows = rows;
      state.queueBytes = bytes;
    }
  }
}
