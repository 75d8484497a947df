// A latency histogram in the manner of HdrHistogram: log-linear buckets of fixed relative width, so a million
// samples cost a few hundred counters, percentiles are within `relativeError` of the truth, and histograms of several
// load workers merge by adding their counters. Values are milliseconds; the range is 1 us .. about 20 minutes.

/** Each bucket is this much wider than the one below it: a percentile is within 1 % of the recorded value. */
const growth = 1.01;
const logGrowth = Math.log(growth);
const lowestMs = 0.001;
/** Buckets above lowestMs: growth^2100 ms is about 1.2 million seconds... bounded well beyond any wait here. */
const bucketCount = 2100;

export const relativeError = growth - 1;

/** What one load worker sends to the bench: bucket index -> count (only the non-empty ones), plus the extremes. */
export interface HistogramSnapshot {
  readonly counts: Readonly<Record<string, number>>;
  readonly count: number;
  readonly minMs: number;
  readonly maxMs: number;
}

export class LatencyHistogram {
  private readonly counts = new Float64Array(bucketCount + 1);
  count = 0;
  minMs = Number.POSITIVE_INFINITY;
  maxMs = 0;

  record(valueMs: number): void {
    const value = valueMs < lowestMs ? lowestMs : valueMs;
    const index = Math.min(bucketCount, Math.floor(Math.log(value / lowestMs) / logGrowth));
    this.counts[index]!++;
    this.count++;
    if (value < this.minMs) this.minMs = value;
    if (value > this.maxMs) this.maxMs = value;
  }

  /** The value below which `fraction` of the samples lie (the bucket's upper edge, capped at the maximum seen). */
  percentile(fraction: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(fraction * this.count));
    let seen = 0;
    for (let index = 0; index <= bucketCount; index++) {
      seen += this.counts[index]!;
      if (seen >= rank) return Math.min(this.maxMs, lowestMs * growth ** (index + 1));
    }
    return this.maxMs;
  }

  snapshot(): HistogramSnapshot {
    const counts: Record<string, number> = {};
    for (let index = 0; index <= bucketCount; index++) {
      if (this.counts[index]! > 0) counts[index] = this.counts[index]!;
    }
    return { counts, count: this.count, minMs: this.count === 0 ? 0 : this.minMs, maxMs: this.maxMs };
  }

  add(snapshot: HistogramSnapshot): void {
    for (const [index, count] of Object.entries(snapshot.counts)) this.counts[Number(index)]! += count;
    this.count += snapshot.count;
    if (snapshot.count > 0) {
      this.minMs = Math.min(this.minMs, snapshot.minMs);
      this.maxMs = Math.max(this.maxMs, snapshot.maxMs);
    }
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.minMs = Number.POSITIVE_INFINITY;
    this.maxMs = 0;
  }
}
