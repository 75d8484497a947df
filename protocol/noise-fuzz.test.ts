import { expect, test } from "bun:test";
import { runNoiseFuzz } from "./noise-fuzz.ts";

/** FUZZ_SEED replays a run; without it every run tries a new seed, printed so that a failure can be replayed. */
const seed = process.env.FUZZ_SEED === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(process.env.FUZZ_SEED);

test(`Noise handshake messages and records: nothing but a protocol error escapes (seed ${seed})`, () => {
  console.log(`noise-fuzz.test: seed ${seed} (replay: FUZZ_SEED=${seed} bun test protocol/noise-fuzz.test.ts)`);
  const report = runNoiseFuzz({ seed, iterations: 100_000, timeMs: 2000 });
  expect(report.iterations).toBeGreaterThan(40);
  for (const outcome of ["handshake refused", "record refused", "preamble refused", "record framed"]) {
    expect(report.outcomes[outcome] ?? 0).toBeGreaterThan(0);
  }
});
