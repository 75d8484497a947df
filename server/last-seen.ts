// "Last seen" times, written in batches: a login that wrote its own row would cost a transaction (~15-20 µs), a
// third of the login's budget next to its signature check. Logins and logouts note the device here; the notes are
// written every lastSeenFlushMs, or at once when lastSeenPendingMax devices wait. A crash loses at most the last
// interval of "last seen" times, which are informational.

import type { DeviceKey } from "../storage/index.ts";
import type { ServerContext } from "./context.ts";
import { deviceKey } from "./device-state.ts";

export class LastSeenRecorder {
  private pending = new Map<number, DeviceKey>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private flushing: Promise<void> | null = null;

  constructor(private readonly context: Pick<ServerContext, "storage" | "limits" | "log" | "now">) {}

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.context.limits.lastSeenFlushMs);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  note(account: number, device: number): void {
    this.pending.set(deviceKey(account, device), { account, device });
    if (this.pending.size >= this.context.limits.lastSeenPendingMax) void this.flush();
  }

  /** Writes what is noted; resolves when written. Never throws (a failed write is logged; the times are informational). */
  async flush(): Promise<void> {
    if (this.flushing !== null) await this.flushing;
    if (this.pending.size === 0) return;
    const keys = [...this.pending.values()];
    this.pending = new Map();
    this.flushing = this.context.storage.devices
      .touch(keys, this.context.now())
      .catch((error: unknown) =>
        this.context.log.warn("last_seen_write_failed", { devices: keys.length, error: String(error) }),
      )
      .finally(() => {
        this.flushing = null;
      });
    await this.flushing;
  }
}
