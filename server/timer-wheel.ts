// One timer wheel for every session deadline (login timeout, keepalive, idle), instead of a timer per socket: a
// million sockets would otherwise mean a million timers in the event loop (WhatsApp patched BEAM for the same reason).
// Entries are linked intrusively (fields on the entry itself), so scheduling allocates nothing and removal is O(1).
// A deadline fires within one tick after it is due. Deadlines past one revolution are re-checked each revolution.

export interface WheelEntry {
  wheelNext: WheelEntry | null;
  wheelPrev: WheelEntry | null;
  /** Slot index while scheduled, -1 otherwise. */
  wheelSlot: number;
  wheelDueMs: number;
}

/** Slots of the wheel: with 250 ms ticks one revolution is 256 s, longer than the default idle timeout. */
export const wheelSlotsDefault = 1024;
/** Entries a single tick may expire before yielding to the event loop; the rest expire on the next tick. */
export const wheelExpiriesPerTickMax = 20_000;

export class TimerWheel<T extends WheelEntry> {
  private readonly heads: Array<T | null>;
  private cursorMs: number;
  private size = 0;
  private interval: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly tickMs: number,
    /** Called for each expired entry; replaceable (a code reload installs the new handler's). */
    public onExpire: (entry: T) => void,
    private readonly now: () => number = Date.now,
    slots: number = wheelSlotsDefault,
  ) {
    this.heads = new Array<T | null>(slots).fill(null);
    this.cursorMs = Math.floor(this.now() / tickMs) * tickMs;
  }

  get count(): number {
    return this.size;
  }

  start(): void {
    if (this.interval !== null) return;
    this.interval = setInterval(() => this.advance(), this.tickMs);
  }

  stop(): void {
    if (this.interval !== null) clearInterval(this.interval);
    this.interval = null;
  }

  /** Schedules (or moves) `entry` to fire at `dueMs`. */
  schedule(entry: T, dueMs: number): void {
    if (entry.wheelSlot >= 0) this.cancel(entry);
    // The first slot starting at or after the due time: when the cursor reaches it, the entry is due. (The cursor is
    // the start of the next slot to visit, so a due time already passed lands in that slot.)
    const slot = Math.ceil(Math.max(dueMs, this.cursorMs) / this.tickMs) % this.heads.length;
    entry.wheelDueMs = dueMs;
    entry.wheelSlot = slot;
    entry.wheelPrev = null;
    entry.wheelNext = this.heads[slot] ?? null;
    if (entry.wheelNext !== null) entry.wheelNext.wheelPrev = entry;
    this.heads[slot] = entry;
    this.size++;
  }

  cancel(entry: T): void {
    if (entry.wheelSlot < 0) return;
    if (entry.wheelPrev !== null) entry.wheelPrev.wheelNext = entry.wheelNext;
    else this.heads[entry.wheelSlot] = entry.wheelNext as T | null;
    if (entry.wheelNext !== null) entry.wheelNext.wheelPrev = entry.wheelPrev;
    entry.wheelNext = null;
    entry.wheelPrev = null;
    entry.wheelSlot = -1;
    this.size--;
  }

  /** Fires every entry due up to now. Called by the interval; tests call it directly with a fake clock. */
  advance(): void {
    const nowMs = this.now();
    let expired = 0;
    // Visit each slot between the cursor and now once (at most one revolution).
    const stepsMax = this.heads.length;
    let steps = 0;
    while (this.cursorMs <= nowMs && steps < stepsMax && expired < wheelExpiriesPerTickMax) {
      const slot = Math.floor(this.cursorMs / this.tickMs) % this.heads.length;
      let entry = this.heads[slot] ?? null;
      while (entry !== null && expired < wheelExpiriesPerTickMax) {
        const next = entry.wheelNext as T | null;
        if (entry.wheelDueMs <= nowMs) {
          this.cancel(entry);
          expired++;
          this.onExpire(entry);
        }
        entry = next;
      }
      if (expired >= wheelExpiriesPerTickMax) return; // resume this slot on the next tick
      this.cursorMs += this.tickMs;
      steps++;
    }
    if (this.cursorMs <= nowMs) this.cursorMs = Math.floor(nowMs / this.tickMs) * this.tickMs;
  }
}
