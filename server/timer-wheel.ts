// One timer wheel for every session deadline (login timeout, keepalive, idle), instead of a timer per socket: a
// million sockets would otherwise mean a million timers in the event loop (WhatsApp patched BEAM for the same reason).
// Entries are slot numbers (session-slots.ts), linked in typed arrays indexed by slot: scheduling allocates nothing,
// removal is O(1), and an idle session's place on the wheel is 14 bytes (next, prev, bucket, due stamp), no object.
// A deadline fires within one tick after it is due. Deadlines past one revolution are re-checked each revolution.

import { clockStamp, stampToMs } from "./clock-stamp.ts";

/** Buckets of the wheel: with 250 ms ticks one revolution is 256 s, longer than the default idle timeout. */
export const wheelSlotsDefault = 1024;
/** Entries a single tick may expire before yielding to the event loop; the rest expire on the next tick. */
export const wheelExpiriesPerTickMax = 20_000;
/** Buckets are kept in 16 bits per entry. */
const wheelBucketsMax = 0x7fff;
const none = -1;

export class TimerWheel {
  private readonly heads: Int32Array;
  private next: Int32Array;
  private prev: Int32Array;
  /** The bucket of each entry while scheduled, -1 otherwise. */
  private bucket: Int16Array;
  /** Due time of each entry, as a clock stamp. */
  private due: Uint32Array;
  private cursorMs: number;
  private size = 0;
  private interval: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly tickMs: number,
    /** Called for each expired entry; replaceable (a code reload installs the new handler's). */
    public onExpire: (entry: number) => void,
    private readonly now: () => number = Date.now,
    buckets: number = wheelSlotsDefault,
    capacity = 0,
  ) {
    if (buckets > wheelBucketsMax) throw new RangeError(`timer wheel: at most ${wheelBucketsMax} buckets`);
    this.heads = new Int32Array(buckets).fill(none);
    this.next = new Int32Array(capacity);
    this.prev = new Int32Array(capacity);
    this.bucket = new Int16Array(capacity).fill(none);
    this.due = new Uint32Array(capacity);
    this.cursorMs = Math.floor(this.now() / tickMs) * tickMs;
  }

  get count(): number {
    return this.size;
  }

  /** Makes room for entries 0..capacity-1 (the session slots grew). */
  ensureCapacity(capacity: number): void {
    const old = this.bucket.length;
    if (capacity <= old) return;
    const grow = <T extends Int32Array | Int16Array | Uint32Array>(column: T, make: (n: number) => T): T => {
      const grown = make(capacity);
      grown.set(column);
      return grown;
    };
    this.next = grow(this.next, (n) => new Int32Array(n));
    this.prev = grow(this.prev, (n) => new Int32Array(n));
    this.bucket = grow(this.bucket, (n) => new Int16Array(n));
    this.bucket.fill(none, old);
    this.due = grow(this.due, (n) => new Uint32Array(n));
  }

  start(): void {
    if (this.interval !== null) return;
    this.interval = setInterval(() => this.advance(), this.tickMs);
  }

  stop(): void {
    if (this.interval !== null) clearInterval(this.interval);
    this.interval = null;
  }

  isScheduled(entry: number): boolean {
    return this.bucket[entry]! >= 0;
  }

  /** When a scheduled entry is due. */
  dueMs(entry: number): number {
    return stampToMs(this.due[entry]!, this.now());
  }

  /** Schedules (or moves) `entry` to fire at `dueMs`. */
  schedule(entry: number, dueMs: number): void {
    if (this.bucket[entry]! >= 0) this.cancel(entry);
    // The first bucket starting at or after the due time: when the cursor reaches it, the entry is due. (The cursor
    // is the start of the next bucket to visit, so a due time already passed lands in that bucket.)
    const bucket = Math.ceil(Math.max(dueMs, this.cursorMs) / this.tickMs) % this.heads.length;
    const head = this.heads[bucket]!;
    this.due[entry] = clockStamp(dueMs);
    this.bucket[entry] = bucket;
    this.prev[entry] = none;
    this.next[entry] = head;
    if (head !== none) this.prev[head] = entry;
    this.heads[bucket] = entry;
    this.size++;
  }

  cancel(entry: number): void {
    const bucket = this.bucket[entry]!;
    if (bucket < 0) return;
    const prev = this.prev[entry]!;
    const next = this.next[entry]!;
    if (prev !== none) this.next[prev] = next;
    else this.heads[bucket] = next;
    if (next !== none) this.prev[next] = prev;
    this.bucket[entry] = none;
    this.size--;
  }

  /** Fires every entry due up to now. Called by the interval; tests call it directly with a fake clock. */
  advance(): void {
    const nowMs = this.now();
    const nowStamp = clockStamp(nowMs);
    let expired = 0;
    // Visit each bucket between the cursor and now once (at most one revolution).
    const stepsMax = this.heads.length;
    let steps = 0;
    while (this.cursorMs <= nowMs && steps < stepsMax && expired < wheelExpiriesPerTickMax) {
      const bucket = Math.floor(this.cursorMs / this.tickMs) % this.heads.length;
      let entry = this.heads[bucket]!;
      while (entry !== none && expired < wheelExpiriesPerTickMax) {
        const next = this.next[entry]!;
        if (((this.due[entry]! - nowStamp) | 0) <= 0) {
          this.cancel(entry);
          expired++;
          this.onExpire(entry);
        }
        entry = next;
      }
      if (expired >= wheelExpiriesPerTickMax) return; // resume this bucket on the next tick
      this.cursorMs += this.tickMs;
      steps++;
    }
    if (this.cursorMs <= nowMs) this.cursorMs = Math.floor(nowMs / this.tickMs) * this.tickMs;
  }
}
