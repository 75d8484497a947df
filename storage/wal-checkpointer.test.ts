import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStorage } from "./database-sqlite.ts";
import { checkpointIntervalMs, fallbackCheckpointPages, WalCheckpointer } from "./wal-checkpointer.ts";

const directories: string[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function scratch(): string {
  const directory = mkdtempSync(join(tmpdir(), "sb-ckpt-"));
  directories.push(directory);
  return directory;
}

async function until(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

test("the thread checkpoints a watched log: pages reach the database file with no checkpoint on the writer", async () => {
  const path = join(scratch(), "p.sqlite");
  const reports: Array<{ frames: number; ms: number }> = [];
  const checkpointer = new WalCheckpointer({
    checkpointed: (frames, ms) => reports.push({ frames, ms }),
    failed: (failedPath, error) => {
      throw new Error(`${failedPath}: ${error}`);
    },
  });
  cleanups.push(() => checkpointer.close());
  const storage = await openSqliteStorage({ path, checkpointer });
  cleanups.push(() => storage.close());
  const sizeBefore = statSync(path).size;
  // Writes on the storage's connection (an account per transaction): the log grows; the database file does not
  // until something checkpoints.
  for (let index = 0; index < 200; index++) await storage.accounts.create(`user${index}`, new Uint8Array(32), 1);
  await until(() => reports.length > 0, checkpointIntervalMs * 5, "a checkpoint by the thread");
  expect(reports[0]!.frames).toBeGreaterThan(0);
  // Pages were copied into the database file by the thread.
  await until(() => statSync(path).size > sizeBefore, checkpointIntervalMs * 5, "the database file to grow");
  // 200 small transactions are far below the writer's own threshold: only the thread can have copied them.
  expect(fallbackCheckpointPages).toBeGreaterThan(200 * 8);
});

test("closing the storage closes the thread's connection first, so the log is checkpointed whole and removed", async () => {
  const path = join(scratch(), "p.sqlite");
  const checkpointer = new WalCheckpointer();
  cleanups.push(() => checkpointer.close());
  const storage = await openSqliteStorage({ path, checkpointer });
  for (let index = 0; index < 20; index++) await storage.accounts.create(`user${index}`, new Uint8Array(32), 1);
  expect(existsSync(`${path}-wal`)).toBe(true);
  await storage.close();
  // The last connection's close removes -wal: what was deleted is not left in a log beside the file.
  expect(existsSync(`${path}-wal`)).toBe(false);
  const reopened = await openSqliteStorage({ path });
  cleanups.push(() => reopened.close());
  expect((await reopened.accounts.byHandle("user19"))?.handle).toBe("user19");
});

test("a file that is not a database is reported to the observer", async () => {
  const failures: string[] = [];
  const checkpointer = new WalCheckpointer({ checkpointed() {}, failed: (path) => failures.push(path) });
  cleanups.push(() => checkpointer.close());
  const path = join(scratch(), "garbage.sqlite");
  writeFileSync(path, "this is not a database, and it is long enough to have a header that says so".repeat(10));
  checkpointer.watch(path, "normal");
  await until(() => failures.length > 0, checkpointIntervalMs * 3, "the failure report");
  expect(failures[0]).toContain("garbage.sqlite");
});

test("a file watched before it exists (a worker creates it later) is checkpointed once it does", async () => {
  const reports: number[] = [];
  const checkpointer = new WalCheckpointer({ checkpointed: (frames) => reports.push(frames), failed() {} });
  cleanups.push(() => checkpointer.close());
  const path = join(scratch(), "later.sqlite");
  checkpointer.watch(path, "normal");
  await Bun.sleep(50);
  // The writer's connection is of another kind ("elsewhere"): as a worker's is, with the supervisor's thread.
  const storage = await openSqliteStorage({ path, checkpointer: "elsewhere" });
  cleanups.push(() => storage.close());
  for (let index = 0; index < 50; index++) await storage.accounts.create(`user${index}`, new Uint8Array(32), 1);
  await until(() => reports.length > 0, checkpointIntervalMs * 4, "a checkpoint of the file created later");
});
