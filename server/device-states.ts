// The device states in memory (see device-state.ts): loaded from the store on first use, one per device however
// many handlers ask at once, dropped when nothing in memory differs from the store, and released for online devices
// that are idle (an idle logged-in session then costs no state at all). Delivery owns what the states mean; this
// table owns which exist.

import type { ServerContext } from "./context.ts";
import { DeviceState, deviceKey } from "./device-state.ts";
import { type Session, SessionState } from "./session.ts";

/** Attempts to find every state of a send in memory after loading them; eviction between tries is rare. */
const stateLoadAttemptsMax = 3;

export class DeviceStates {
  private readonly states = new Map<number, DeviceState>();
  private readonly loading = new Map<number, Promise<DeviceState | undefined>>();

  constructor(private readonly context: ServerContext) {}

  get size(): number {
    return this.states.size;
  }

  get(account: number, device: number): DeviceState | undefined {
    return this.states.get(deviceKey(account, device));
  }

  /** Forgets a state (its device was removed). */
  delete(state: DeviceState): void {
    if (this.states.get(state.key) === state) this.states.delete(state.key);
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
   * The states of `devices` of `account`, all in memory at the moment this resolves (so the caller may mutate them
   * before its next await). Devices that do not exist are left out. Undefined if eviction kept winning (busy).
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
      if (!missing) return found;
      const loaded = await Promise.all(devices.map((device) => this.loadState(account, device)));
      // A device that does not exist in the store is not missing: drop it from the list and look again.
      devices = devices.filter((_, index) => loaded[index] !== undefined);
    }
    return undefined;
  }

  dropIfIdle(state: DeviceState): void {
    if (state.isDroppable) this.delete(state);
  }

  /**
   * Releases the state of an online device that has nothing going on: its queue delivered and acknowledged, nothing
   * uncommitted, no handler of its session running. An idle session then costs no state object; the state is
   * loaded again from the store (where it is the same) when a message comes for the device or it sends.
   */
  releaseIfIdle(session: Session): void {
    const state = session.deviceState;
    if (state === null || session.busy || !session.queueEmptySent || state.reading) return;
    if (state.inFlightCount > 0 || (state.pending !== null && state.pending.length > 0)) return;
    // Delivered up to the last sequence with nothing in flight: every entry was acknowledged (in this session, or
    // in an earlier one for those the drain skipped).
    if (state.deliveredSeq < state.lastSeq) return;
    if (state.committedSeq !== state.lastSeq || state.committedClientIds !== state.clientIds) return;
    // The store must not hold acknowledged rows: a state loaded from it would deliver them again and count them.
    if (state.ackUncommitted) return;
    state.session = null;
    session.deviceState = null;
    session.stateReleased = true;
    this.delete(state);
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

  /** Re-reads the queue depth of devices in memory after the retention sweep deleted some of their rows. */
  async resyncCounters(devices: ReadonlyArray<{ account: number; device: number }>): Promise<void> {
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
