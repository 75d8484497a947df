// Event-loop lag: a timer that should fire every intervalMs records how late it fires. Everything in the server
// shares one loop (sessions, commits, timers), so lag is the first sign of overload.

/** How often the probe fires; the lag it sees is at most one probe old. */
export const lagProbeIntervalMs = 500;

export class EventLoopLag {
  private timer: ReturnType<typeof setInterval> | null = null;
  private expectedAt = 0;
  /** Worst lag (ms) seen since the last `takeMax`, and the last one seen. */
  private maxMs = 0;
  lastMs = 0;

  start(): void {
    this.expectedAt = performance.now() + lagProbeIntervalMs;
    this.timer = setInterval(() => {
      const now = performance.now();
      this.lastMs = Math.max(0, now - this.expectedAt);
      this.maxMs = Math.max(this.maxMs, this.lastMs);
      this.expectedAt = now + lagProbeIntervalMs;
    }, lagProbeIntervalMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** The worst lag since the previous call (a scrape), then resets it. */
  takeMax(): number {
    const max = Math.max(this.maxMs, this.lastMs);
    this.maxMs = 0;
    return max;
  }
}
