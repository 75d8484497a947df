import { expect, test } from "bun:test";
import { LatencyHistogram, relativeError } from "./latency-histogram.ts";

test("percentiles are within the relative error of the exact ones, and merged histograms equal one", () => {
  const values: number[] = [];
  let state = 7;
  const random = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  // A long-tailed mix: most around 0.2 ms, some up to 80 ms.
  for (let index = 0; index < 50_000; index++) values.push(random() < 0.97 ? 0.1 + random() * 0.2 : random() * 80);
  const whole = new LatencyHistogram();
  const first = new LatencyHistogram();
  const second = new LatencyHistogram();
  values.forEach((value, index) => {
    whole.record(value);
    (index % 2 === 0 ? first : second).record(value);
  });
  const merged = new LatencyHistogram();
  merged.add(first.snapshot());
  merged.add(second.snapshot());
  const sorted = [...values].sort((a, b) => a - b);
  for (const fraction of [0.5, 0.9, 0.99, 0.999]) {
    const exact = sorted[Math.ceil(fraction * sorted.length) - 1]!;
    const estimate = whole.percentile(fraction);
    expect(Math.abs(estimate - exact) / exact).toBeLessThanOrEqual(relativeError * 1.01);
    expect(merged.percentile(fraction)).toBe(estimate);
  }
  expect(merged.count).toBe(values.length);
  expect(merged.maxMs).toBe(Math.max(...values));
  expect(whole.percentile(1)).toBe(whole.maxMs);
});

test("an empty histogram reports zeros; reset empties it", () => {
  const histogram = new LatencyHistogram();
  expect(histogram.percentile(0.99)).toBe(0);
  histogram.record(3);
  expect(histogram.percentile(0.5)).toBeCloseTo(3, 1);
  histogram.reset();
  expect(histogram.snapshot()).toEqual({ counts: {}, count: 0, minMs: 0, maxMs: 0 });
});
