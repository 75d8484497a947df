// Event-loop lag: a timer that should fire every intervalMs records how late it fires. Everything in the server
// shares one loop (sessions, commits, timers), so lag is the first sign of overload.
//
// Two views, neither reset by a scrape (a second scraper, or a curl by hand, must not hide a spike from Prometheus):
// every probe goes to a histogram (rates and quantiles over any range), and the worst lag of the last window is kept
// in fixed slots of time. A "worst since the previous scrape" gauge was rejected for that reason.

/** How often the probe fires; the lag it sees is at most one probe old. */
export const lagProbeIntervalMs = 500;
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
  ) {}

  start(): void {
    this.expectedAt = this.clock() + lagProbeIntervalMs;
    this.timer = setInterval(() => {
      const now = this.clock();
      this.record(Math.max(0, now - this.expectedAt), now);
      this.expectedAt = now + lagProbeIntervalMs;
    }, lagProbeIntervalMs);
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
