// Deletes queue entries older than the retention (default 30 days) in bounded steps: at most sweepBatchRows rows per
// transaction, and at most sweepStepsPerRunMax steps per run, yielding to the event loop between steps so that a
// large expiry never blocks sessions for long.

import type { ServerContext } from "./context.ts";

export const sweepStepsPerRunMax = 100;

export class RetentionSweeper {
  private timer: ReturnType<typeof setInterval> | null = null;
  private running = false;

  constructor(
    private readonly context: ServerContext,
    /** Called with the devices whose queues lost rows, so in-memory counters can be re-read. */
    private readonly onSwept: (devices: ReadonlyArray<{ account: number; device: number }>) => Promise<void>,
  ) {}

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => void this.run(), this.context.limits.sweepIntervalMs);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One sweep run; returns the rows deleted. Runs never overlap. */
  async run(): Promise<number> {
    if (this.running) return 0;
    this.running = true;
    const { limits, storage, metrics, log } = this.context;
    let total = 0;
    try {
      const beforeMs = this.context.now() - limits.retentionMs;
      for (let step = 0; step < sweepStepsPerRunMax; step++) {
        const { deleted, devices } = await storage.queues.sweep(beforeMs, limits.sweepBatchRows);
        total += deleted;
        if (devices.length > 0) await this.onSwept(devices);
        if (deleted < limits.sweepBatchRows) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (total > 0) {
        metrics.sweptRows.inc(undefined, total);
        // The sweep deletes outside the commit path: the queue totals are read again (queue-totals.ts).
        metrics.queueTotals.markStale();
        log.info("retention_swept", { rows: total });
      }
    } catch (error) {
      log.error("retention_sweep_failed", { error: String(error) });
    } finally {
      this.running = false;
    }
    return total;
  }
}
