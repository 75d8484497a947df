// "Last seen" times, written in batches that never wait for a lock. A login that wrote its own row would cost a
// transaction (~15-20 µs), a third of the login's budget next to its signature check, so logins and logouts note the
// device and its time here, and the notes are written every lastSeenFlushMs (lastSeenBatchMax per transaction), or
// at once when lastSeenBatchMax devices wait.
//
// The directory file is shared by every worker of a supervisor, and bun:sqlite is synchronous: a write that waited
// for another worker's lock stopped this worker's event loop for up to the busy timeout (5 s), and with 56 workers
// some waited past it ("database is locked"). So each write here is an attempt (DeviceStore.touch with wait: false):
// when another process holds the lock it fails at once, the notes stay, and the next interval tries again. Each
// note keeps the time the device was seen, not the time of the write, so a late write still stores the right time.
// The notes wait in a map of at most lastSeenPendingMax devices; past it a new device is not noted (counted). Only at
// stop does a write wait for the lock: nothing is served any more. A crash loses the notes not yet written, which are
// informational (the device list's "last seen", the operator's `devices` command).

import type { LastSeenEntry } from "../storage/index.ts";
import type { ServerContext } from "./context.ts";
import { deviceKey, deviceOfKey } from "./device-state.ts";

export class LastSeenRecorder {
  /** Device key -> when it was last seen (ms). A Map keeps insertion order, so the oldest notes are written first. */
  private pending = new Map<number, number>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private flushing: Promise<void> | null = null;
  /** The last attempt found the store locked: the next one waits for the interval, not for the batch size. */
  private busy = false;

  constructor(private readonly context: Pick<ServerContext, "storage" | "limits" | "log" | "now" | "metrics">) {
    context.metrics.gauge(
      "switchboard_last_seen_pending",
      "Devices whose last-seen time waits to be written",
      () => this.pending.size,
    );
  }

  start(): void {
    this.timer ??= setInterval(() => {
      this.busy = false;
      void this.flush();
    }, this.context.limits.lastSeenFlushMs);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Devices whose time waits to be written. */
  get pendingCount(): number {
    return this.pending.size;
  }

  note(account: number, device: number): void {
    const key = deviceKey(account, device);
    if (this.pending.has(key)) {
      // Moved to the end: the map stays ordered by the time of the last note.
      this.pending.delete(key);
    } else if (this.pending.size >= this.context.limits.lastSeenPendingMax) {
      this.context.metrics.lastSeenDropped.inc();
      return;
    }
    this.pending.set(key, this.context.now());
    if (this.pending.size >= this.context.limits.lastSeenBatchMax && !this.busy && this.flushing === null) {
      void this.flush();
    }
  }

  /**
   * Writes what is noted, lastSeenBatchMax devices per transaction, yielding to the event loop between two. Without
   * `wait`, stops at the first batch that finds the store locked (the rest waits for the next interval); with it (at
   * stop), each write waits for the lock as long as the store's busy timeout. Resolves when done; never throws (a
   * failed write is logged and its notes dropped: the times are informational).
   */
  async flush(options: { readonly wait: boolean } = { wait: false }): Promise<void> {
    while (this.flushing !== null) await this.flushing;
    if (this.pending.size === 0) return;
    this.flushing = this.writeBatches(options.wait).finally(() => {
      this.flushing = null;
    });
    await this.flushing;
  }

  private async writeBatches(wait: boolean): Promise<void> {
    // Bounded: each round writes a batch or returns, and notes arriving meanwhile wait for the next flush.
    const rounds = Math.ceil(this.pending.size / this.context.limits.lastSeenBatchMax);
    for (let round = 0; round < rounds && this.pending.size > 0; round++) {
      if (round > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const batch = this.takeBatch();
      let written: boolean;
      try {
        written = await this.context.storage.devices.touch(batch, { wait });
      } catch (error) {
        this.context.log.warn("last_seen_write_failed", { devices: batch.length, error: String(error) });
        this.forget(batch);
        continue;
      }
      if (!written) {
        this.busy = true;
        this.context.metrics.lastSeenBusy.inc();
        return;
      }
      this.forget(batch);
    }
  }

  private takeBatch(): LastSeenEntry[] {
    const batch: LastSeenEntry[] = [];
    for (const [key, atMs] of this.pending) {
      if (batch.length >= this.context.limits.lastSeenBatchMax) break;
      const { account, device } = deviceOfKey(key);
      batch.push({ account, device, atMs });
    }
    return batch;
  }

  /** Drops the written notes, but not a device noted again while the write was under way (its time is newer). */
  private forget(batch: readonly LastSeenEntry[]): void {
    for (const entry of batch) {
      const key = deviceKey(entry.account, entry.device);
      if (this.pending.get(key) === entry.atMs) this.pending.delete(key);
    }
  }
}
