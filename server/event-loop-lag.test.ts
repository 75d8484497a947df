import { expect, test } from "bun:test";
import { EventLoopLag } from "./event-loop-lag.ts";
import { threadRunMs } from "./thread-run-time.ts";

function block(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // the event loop is blocked (for `ms` of wall time: on a busy host the thread may run for less of it)
  }
}

/** Blocks the loop until this thread has run for `ms` (on a busy host, longer in wall time). */
function run(ms: number): void {
  const start = threadRunMs()!;
  while (threadRunMs()! - start < ms) {
    // the event loop is blocked, and this thread runs
  }
}

test("a probe every 10 ms sees a 60 ms turn; its busy part is the thread's own run time", async () => {
  if (threadRunMs() === null) return; // not Linux: no run time, no busy part
  const lags: number[] = [];
  const busy: number[] = [];
  const lag = new EventLoopLag(
    (lagMs) => void lags.push(lagMs),
    () => performance.now(),
    10,
    (busyMs) => void busy.push(busyMs),
  );
  lag.start();
  try {
    await Bun.sleep(30);
    run(60);
    await Bun.sleep(30);
  } finally {
    lag.stop();
  }
  expect(Math.max(...lags)).toBeGreaterThanOrEqual(45);
  // The thread ran for the whole turn (a busy host stretches its wall time, not its run time).
  expect(busy.length).toBe(lags.length);
  expect(Math.max(...busy)).toBeGreaterThanOrEqual(40);
  for (let index = 0; index < busy.length; index++) expect(busy[index]!).toBeLessThanOrEqual(lags[index]!);
});

test("a delay the thread did not run for (a host whose cores are busy) has a small busy part", async () => {
  const lags: number[] = [];
  const busy: number[] = [];
  // A thread clock that stands still while the loop is held: as if the process had been waiting for a core.
  let ranMs = 0;
  const lag = new EventLoopLag(
    (lagMs) => void lags.push(lagMs),
    () => performance.now(),
    10,
    (busyMs) => void busy.push(busyMs),
    () => ranMs,
  );
  lag.start();
  try {
    await Bun.sleep(30);
    block(60);
    ranMs += 2;
    await Bun.sleep(30);
  } finally {
    lag.stop();
  }
  expect(Math.max(...lags)).toBeGreaterThanOrEqual(45);
  expect(Math.max(...busy)).toBeLessThanOrEqual(2);
});
