// Event-loop lag: a timer that should fire every intervalMs records how late it fires. Everything in the server
// shares one loop (sessions, commits, timers), so lag is the first sign of overload. A turn longer than the interval
// always delays a probe by most of its length; a shorter one only when a probe falls due during it, so the interval
// (the eventLoopProbeMs limit, 500 ms by default: two wake-ups a second) sets the shortest stall seen for sure. The
// groups bench runs it at 10 ms to see every turn over 10 ms (a wake-up costs a few microseconds).
//
// Of each probe's lag, the part the loop's thread spent running (its own work) is reported apart, on Linux: the
// thread's run time between two probes (thread-run-time.ts), capped at the lag. On a host whose cores are all busy
// a turn of 2 ms can fire the probe 100 ms late; its busy part stays near 2 ms, so it shows whether the server's own
// turns are bounded whatever else the host runs. It is an upper bound of the longest turn: when the loop has work
// queued all through an interval that a wait for a core stretched, the thread's run time adds up the turns run in it.
//
// Two views, neither reset by a scrape (a second scraper, or a curl by hand, must not hide a spike from Prometheus):
// every probe goes to a histogram (rates and quantiles over any range), and the worst lag of the last window is kept
// in fixed slots of time. A "worst since the previous scrape" gauge was rejected for that reason.

import { threadRunMs } from "./thread-run-time.ts";

/** The worst lag is reported over the last lagWindowMs (between 5/6 of it and all of it, by slot). */
export const lagWindowMs = 60_000;
const lagWindowSlots = 6;
const lagSlotMs = lagWindowMs / lagWindowSlots;

export class EventLoopLag {
  private timer: ReturnType<typeof setInterval> | null = null;
  private expectedAt = 0;
  /** The worst lag (ms) of each slot, and which slot of time (floor(now / lagSlotMs)) it holds. */
  private readonly slotMaxMs = new Float64Array(lagWindowSlots);
  private readonly slotNumbers = new Float64Array(lagWindowSlots).fill(-1);

  constructor(
    /** Called with every probe's lag in milliseconds (the histogram). */
    private readonly onProbe: (lagMs: number) => void = () => {},
    private readonly clock: () => number = () => performance.now(),
    /** How often the probe fires (eventLoopProbeMs); the lag it sees is at most one probe old. */
    private readonly intervalMs = 500,
    /** Called with the busy part (ms) of every probe's lag, where the thread's run time is known. */
    private readonly onBusy: (busyMs: number) => void = () => {},
    private readonly runMs: () => number | null = threadRunMs,
  ) {}

  start(): void {
    this.expectedAt = this.clock() + this.intervalMs;
    let ranMs = this.runMs();
    this.timer = setInterval(() => {
      const now = this.clock();
      const lagMs = Math.max(0, now - this.expectedAt);
      this.record(lagMs, now);
      const runMs = this.runMs();
      // The thread ran (runMs - ranMs) since the last probe: no more of the lag than that was its own work.
      if (runMs !== null && ranMs !== null) this.onBusy(Math.min(lagMs, Math.max(0, runMs - ranMs)));
      ranMs = runMs;
      this.expectedAt = now + this.intervalMs;
    }, this.intervalMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One probe's lag, seen at `nowMs` (the probe's clock). */
  record(lagMs: number, nowMs: number): void {
    const slot = Math.floor(nowMs / lagSlotMs);
    const index = slot % lagWindowSlots;
    if (this.slotNumbers[index] !== slot) {
      this.slotNumbers[index] = slot;
      this.slotMaxMs[index] = lagMs;
    } else if (lagMs > this.slotMaxMs[index]!) {
      this.slotMaxMs[index] = lagMs;
    }
    this.onProbe(lagMs);
  }

  /** The worst lag (ms) of the last window; reading it changes nothing. */
  windowMaxMs(nowMs: number = this.clock()): number {
    const oldest = Math.floor(nowMs / lagSlotMs) - lagWindowSlots + 1;
    let max = 0;
    for (let index = 0; index < lagWindowSlots; index++) {
      if (this.slotNumbers[index]! >= oldest && this.slotMaxMs[index]! > max) max = this.slotMaxMs[index]!;
    }
    return max;
  }
}
