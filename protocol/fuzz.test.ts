import { describe, expect, test } from "bun:test";
import { FrameCodec } from "./frame-codec.ts";
import { FuzzFailure, mulberry32, Random, runFuzz } from "./fuzz.ts";
import { defaultLimits } from "./limits.ts";

/** FUZZ_SEED replays a run; without it every run tries a new seed, printed so that a failure can be replayed. */
const seed = process.env.FUZZ_SEED === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(process.env.FUZZ_SEED);

describe("fuzz", () => {
  test("mulberry32 is deterministic and spread over [0, 1)", () => {
    const first = mulberry32(42);
    const second = mulberry32(42);
    const values = Array.from({ length: 1000 }, () => first());
    expect(values).toEqual(Array.from({ length: 1000 }, () => second()));
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThan(1);
    expect(new Set(values).size).toBe(1000);
    const buckets = new Array<number>(10).fill(0);
    for (const value of values) buckets[Math.floor(value * 10)]!++;
    for (const bucket of buckets) expect(bucket).toBeGreaterThan(50);
    expect(mulberry32(43)()).not.toBe(mulberry32(42)());
  });

  test("chunks cover the input exactly, as views", () => {
    const random = new Random(7);
    const bytes = random.bytes(1000);
    const chunks = random.chunks(bytes, 13);
    expect(chunks.reduce((total, chunk) => total + chunk.length, 0)).toBe(1000);
    for (const chunk of chunks) {
      expect(chunk.buffer).toBe(bytes.buffer);
      expect(chunk.length).toBeGreaterThanOrEqual(1);
      expect(chunk.length).toBeLessThanOrEqual(13);
    }
  });

  test(`decode never throws and memory stays bounded (seed ${seed})`, async () => {
    console.log(`fuzz.test: seed ${seed} (replay: FUZZ_SEED=${seed} bun test protocol/fuzz.test.ts)`);
    const report = await runFuzz({ seed, iterations: 1_000_000, timeMs: 2500, log: (line) => console.log(line) });
    expect(report.seed).toBe(seed >>> 0);
    expect(report.iterations).toBeGreaterThan(1000);
    // The run must have reached every kind of outcome, or the mutations are too tame to prove anything.
    for (const outcome of ["frame", "more", "malformedFrame", "frameTooLarge", "malformedBody", "wrongFieldType"]) {
      expect([outcome, report.outcomes[outcome] ?? 0]).not.toEqual([outcome, 0]);
    }
    expect(report.heapGrowthBytes).toBeLessThan(32 * 1024 * 1024);
  }, 20_000);

  test("a broken contract is reported as a FuzzFailure that names the seed", async () => {
    const original = FrameCodec.prototype.decode;
    FrameCodec.prototype.decode = function (this: FrameCodec, source: Uint8Array, offset?: number) {
      if (source.length > 40) throw new TypeError("simulated decoder bug");
      return original.call(this, source, offset);
    };
    const lines: string[] = [];
    try {
      await expect(
        runFuzz({ seed: 99, iterations: 100_000, timeMs: 2000, log: (line) => lines.push(line) }),
      ).rejects.toThrow(FuzzFailure);
    } finally {
      FrameCodec.prototype.decode = original;
    }
    expect(lines.some((line) => line.includes("FAILED with seed 99"))).toBe(true);
    expect(new FrameCodec({ limits: defaultLimits }).decode(new Uint8Array([2, 14, 0x90])).status).toBe("frame");
  });
});
