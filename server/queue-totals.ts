// switchboard_queue_rows and switchboard_queue_bytes without reading the store at scrape time (summing the devices
// table took 78-120 ms of event loop for a million devices, on every scrape). The totals are read once at start,
// then kept exact by the commit path: each group commit reports the entries and bytes it wrote and its acks deleted
// (group-commit.ts, CommitStats). What changes queues outside the commit path (the retention sweep, a device
// removal, an operator's store command) marks the totals stale, and they are read again between two commits, at
// most once per queueTotalsResyncIntervalMs.

/** A stale mark waits at least this long (the removal that marked it finishes meanwhile), */
export const queueTotalsResyncDelayMs = 1_000;
/** and the store's totals are read at most once per this interval. */
export const queueTotalsResyncIntervalMs = 10_000;

export class QueueTotals {
  rows = 0;
  bytes = 0;
  /** Set by the server: schedules a read of the store's totals (see markStale). */
  onStale: () => void = () => {};

  /** A committed batch's deltas. */
  add(rows: number, bytes: number): void {
    this.rows += rows;
    this.bytes += bytes;
  }

  /** The totals as the store counts them (at start, and at a resync between commits). */
  set(totals: { rows: number; bytes: number }): void {
    this.rows = totals.rows;
    this.bytes = totals.bytes;
  }

  /** Queues changed outside the commit path: the totals are to be read from the store again. */
  markStale(): void {
    this.onStale();
  }
}

/**
 * Runs `resync` after a stale mark: at least queueTotalsResyncDelayMs later, at most once per
 * queueTotalsResyncIntervalMs, never two at once. Returns the `onStale` callback and a `stop`.
 */
export function resyncScheduler(
  resync: () => Promise<void>,
  onError: (error: unknown) => void,
): { onStale: () => void; stop: () => void } {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let lastStartedAtMs = Number.NEGATIVE_INFINITY;
  let stopped = false;
  const onStale = () => {
    if (timer !== null || stopped) return;
    const waitMs = Math.max(queueTotalsResyncDelayMs, lastStartedAtMs + queueTotalsResyncIntervalMs - Date.now());
    timer = setTimeout(() => {
      lastStartedAtMs = Date.now();
      resync()
        .catch(onError)
        .finally(() => {
          timer = null;
        });
    }, waitMs);
    timer.unref?.();
  };
  return {
    onStale,
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}
