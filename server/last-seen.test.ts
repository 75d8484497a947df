// The last-seen writer against a real SQLite file whose write lock another process holds (as another worker of the
// supervisor does during its own write): this worker's event loop must keep turning, and the times must reach the
// file once the lock is free, with the time each device was seen.

import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { testLimits } from "../protocol/limits.ts";
import { openSqliteStorage, type Storage } from "../storage/index.ts";
import { LastSeenRecorder } from "./last-seen.ts";
import { createLogger } from "./log.ts";
import { Metrics } from "./metrics.ts";

// Holds the file's write lock ("begin immediate") from "locked" on stdout until a line arrives on stdin, or for the
// milliseconds of its second argument when given.
const lockHolderScript = `
import { Database } from "bun:sqlite";
const database = new Database(process.argv[1]);
database.run("pragma busy_timeout = 5000");
database.run("begin immediate");
process.stdout.write("locked\\n");
if (process.argv[2] !== undefined) await Bun.sleep(Number(process.argv[2]));
else for await (const _ of console) break;
database.run("commit");
database.close();
process.stdout.write("released\\n");
`;

/** A real process holding the write lock of `path`. */
class LockHolder {
  private constructor(
    private readonly child: Subprocess<"pipe", "pipe", "inherit">,
    private readonly lines: AsyncIterator<string>,
  ) {}

  static async take(path: string, holdMs?: number): Promise<LockHolder> {
    const child = Bun.spawn(
      [process.execPath, "-e", lockHolderScript, path, ...(holdMs === undefined ? [] : [`${holdMs}`])],
      {
        stdin: "pipe",
        stdout: "pipe",
        stderr: "inherit",
      },
    );
    const holder = new LockHolder(child, lines(child.stdout));
    expect(await holder.nextLine()).toBe("locked");
    return holder;
  }

  async nextLine(): Promise<string> {
    const next = await Promise.race([this.lines.next(), Bun.sleep(5000).then(() => null)]);
    if (next === null || next.done) throw new Error("lock holder: no line within 5 s");
    return next.value;
  }

  async release(): Promise<void> {
    this.child.stdin.write("release\n");
    await this.child.stdin.flush();
    await this.released();
  }

  async released(): Promise<void> {
    expect(await this.nextLine()).toBe("released");
    await this.child.exited;
  }

  kill(): void {
    this.child.kill();
  }
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
    }
  }
}

/** The longest gap between two turns of a 2 ms ticker while `work` runs: how long the event loop stood still. */
async function longestStallMs(work: () => Promise<void>): Promise<number> {
  let last = performance.now();
  let longest = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 2);
  try {
    await work();
    longest = Math.max(longest, performance.now() - last);
  } finally {
    clearInterval(ticker);
  }
  return longest;
}

/** Far below the store's 5 s busy timeout, far above a turn's scheduling delay on a loaded 2-core host. */
const stallMsMax = 1000;

let dataDir: string;
let path: string;
let storage: Storage;
let holder: LockHolder | null = null;
let recorder: LastSeenRecorder | null = null;

beforeEach(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "switchboard-last-seen-"));
  path = join(dataDir, "switchboard.sqlite");
  storage = await openSqliteStorage({ path });
});

afterEach(async () => {
  recorder?.stop();
  recorder = null;
  holder?.kill();
  holder = null;
  await storage.close();
  rmSync(dataDir, { recursive: true, force: true });
});

function newRecorder(now: () => number, limits: Partial<typeof testLimits> = {}) {
  const metrics = new Metrics();
  const warnings: string[] = [];
  const log = createLogger("warn", (line) => void warnings.push(line));
  const created = new LastSeenRecorder({ storage, limits: { ...testLimits, ...limits }, log, now, metrics });
  recorder = created;
  return { recorder: created, metrics, warnings };
}

async function createDevices(count: number): Promise<number[]> {
  const accounts: number[] = [];
  for (let index = 0; index < count; index++) {
    const created = await storage.accounts.create(`user${index}`, new Uint8Array(32).fill(index + 1), 1_000);
    accounts.push(created!.account.id);
  }
  return accounts;
}

async function lastSeenOf(account: number): Promise<number | undefined> {
  return (await storage.devices.get({ account, device: 1 }))?.lastSeenAtMs;
}

test("a write that finds the directory locked by another process neither waits nor loses the time", async () => {
  const [alice, bob] = await createDevices(2);
  let clock = 50_000;
  const { recorder, metrics, warnings } = newRecorder(() => clock, { lastSeenFlushMs: 50 });
  recorder.start();
  holder = await LockHolder.take(path);

  // The store's busy timeout is 5 s: a write that waited for the lock would stall the loop that long. The bound is a
  // fifth of it, so that a loaded host (2 cores shared with other processes) does not fail the test by scheduling.
  recorder.note(alice!, 1);
  clock = 60_000;
  recorder.note(bob!, 1);
  const stalledMs = await longestStallMs(async () => {
    await recorder.flush();
    await Bun.sleep(300); // several intervals, each trying again against the held lock
  });
  expect(stalledMs).toBeLessThan(stallMsMax);
  expect(metrics.lastSeenBusy.get()).toBeGreaterThanOrEqual(3);
  expect(recorder.pendingCount).toBe(2);
  expect(await lastSeenOf(alice!)).toBe(1_000);

  // Free again: the next interval writes the times the devices were seen (not the time of the write).
  await holder.release();
  holder = null;
  clock = 90_000;
  const deadline = Date.now() + 2_000;
  while (recorder.pendingCount > 0 && Date.now() < deadline) await Bun.sleep(10);
  expect(recorder.pendingCount).toBe(0);
  expect(await lastSeenOf(alice!)).toBe(50_000);
  expect(await lastSeenOf(bob!)).toBe(60_000);
  expect(warnings).toEqual([]);
});

test("while the lock stays taken, notes wait up to lastSeenPendingMax; the rest are counted, and stop writes them", async () => {
  const limits = { lastSeenFlushMs: 50, lastSeenBatchMax: 2, lastSeenPendingMax: 4 };
  const accounts = await createDevices(6);
  const { recorder, metrics, warnings } = newRecorder(() => 70_000, limits);
  recorder.start();
  holder = await LockHolder.take(path);
  const stalledMs = await longestStallMs(async () => {
    for (const account of accounts) recorder.note(account, 1); // reaching lastSeenBatchMax tries at once
    await Bun.sleep(120);
  });
  expect(stalledMs).toBeLessThan(stallMsMax);
  expect(recorder.pendingCount).toBe(limits.lastSeenPendingMax);
  expect(metrics.lastSeenDropped.get()).toBe(accounts.length - limits.lastSeenPendingMax);
  recorder.note(accounts[0]!, 1); // a device already waiting is noted again (its time moves), not dropped
  expect(metrics.lastSeenDropped.get()).toBe(accounts.length - limits.lastSeenPendingMax);
  recorder.stop(); // no interval writes them between the two holders
  await holder.release();
  holder = null;
  expect(recorder.pendingCount).toBe(limits.lastSeenPendingMax);

  // At stop the write may wait (nothing is served any more): it takes the lock once the other process lets go, within
  // the store's busy timeout. The holder lets go by itself: this process's loop is blocked in the wait.
  const holdMs = 200;
  holder = await LockHolder.take(path, holdMs);
  const started = performance.now();
  await recorder.flush({ wait: true });
  expect(performance.now() - started).toBeGreaterThanOrEqual(holdMs / 2);
  await holder.released();
  holder = null;
  expect(recorder.pendingCount).toBe(0);
  const stored = await Promise.all(accounts.map(lastSeenOf));
  expect(stored).toEqual([70_000, 70_000, 70_000, 70_000, 1_000, 1_000]);
  expect(warnings).toEqual([]);
});
