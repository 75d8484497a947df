// Bench-only seeding: creates the accounts a scenario needs directly in the data directory's database, before the
// server starts, which is far faster than registering thousands of devices over the protocol (registration also
// verifies a signature and logs a line per account). Each account gets one device whose public key is derived from
// (run seed, index) (device-keys.ts), so load workers can log in as any of them. The server then opens the same file.
//
// The schema comes from storage/ (openSqliteStorage migrates the new file); the rows are then written with the
// store's own statements (accounts as SqliteAccountStore.create writes them, devices with its insertDeviceSql), many
// per transaction: one transaction per account, as the store's create does, cost ~200 µs each here, 200 s for a
// million; batched, the public key derivation (~45 µs) is most of what is left.

import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { insertDeviceSql } from "../storage/device-store-sqlite.ts";
import { openSqliteStorage } from "../storage/index.ts";
import { devicePrivateKey, rawPublicKey } from "./device-keys.ts";

/** The server keeps its database at <dataDir>/switchboard.sqlite (OPERATIONS.md). */
export const databaseFileName = "switchboard.sqlite";
/** Accounts written per transaction: large enough that commits cost nothing per account, small enough to report. */
const accountsPerTransaction = 10_000;
/** Every seeded account has one device, device 1; the next one it would link is 2 (as SqliteAccountStore.create). */
const seededDeviceId = 1;

export interface SeededAccounts {
  /** Account id of key index i (all have device 1). */
  readonly accounts: readonly number[];
  readonly elapsedMs: number;
}

export function benchHandle(runSeed: string, index: number): string {
  return `b${runSeed}-${index}`;
}

export async function seedAccounts(options: {
  dataDir: string;
  runSeed: string;
  count: number;
  /** Called after each transaction with the accounts written so far. */
  onProgress?: (written: number) => void;
}): Promise<SeededAccounts> {
  const started = performance.now();
  mkdirSync(options.dataDir, { recursive: true });
  const path = join(options.dataDir, databaseFileName);
  // Creates the file with its modes and runs the migrations; closed again before the bulk writes.
  await (await openSqliteStorage({ path })).close();
  const database = new Database(path, { readwrite: true, strict: true });
  const accounts: number[] = [];
  try {
    database.run("pragma busy_timeout = 5000");
    database.run("pragma foreign_keys = on");
    const insertAccount = database.prepare<{ id: number }, [string, number, number]>(
      "insert into accounts (handle, created_at, next_device_id) values (?, ?, ?) on conflict (handle) do nothing returning id",
    );
    const insertDevice = database.prepare<unknown, [number, number, Uint8Array, number, number]>(insertDeviceSql);
    const now = Date.now();
    const writeBatch = database.transaction((first: number, end: number) => {
      for (let index = first; index < end; index++) {
        const handle = benchHandle(options.runSeed, index);
        const inserted = insertAccount.get(handle, now, seededDeviceId + 1);
        if (inserted === null) throw new Error(`seeding: handle ${handle} is taken`);
        const publicKey = rawPublicKey(devicePrivateKey(options.runSeed, index));
        insertDevice.run(inserted.id, seededDeviceId, publicKey, now, now);
        accounts.push(inserted.id);
      }
    }).immediate;
    for (let first = 0; first < options.count; first += accountsPerTransaction) {
      writeBatch(first, Math.min(options.count, first + accountsPerTransaction));
      options.onProgress?.(accounts.length);
    }
  } finally {
    database.close();
  }
  return { accounts, elapsedMs: performance.now() - started };
}
