// Bench-only seeding: creates the accounts a scenario needs directly through storage/ in the data directory, before
// the server starts, which is far faster than registering thousands of devices over the protocol (registration also
// verifies a signature and logs a line per account). Each account gets one device whose public key is derived from
// (run seed, index) (device-keys.ts), so load workers can log in as any of them. The server then opens the same file.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { openSqliteStorage } from "../storage/index.ts";
import { devicePrivateKey, rawPublicKey } from "./device-keys.ts";

/** The server keeps its database at <dataDir>/switchboard.sqlite (OPERATIONS.md). */
export const databaseFileName = "switchboard.sqlite";

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
}): Promise<SeededAccounts> {
  const started = performance.now();
  mkdirSync(options.dataDir, { recursive: true });
  const storage = await openSqliteStorage({ path: join(options.dataDir, databaseFileName) });
  const accounts: number[] = [];
  try {
    const now = Date.now();
    for (let index = 0; index < options.count; index++) {
      const publicKey = rawPublicKey(devicePrivateKey(options.runSeed, index));
      const created = await storage.accounts.create(benchHandle(options.runSeed, index), publicKey, now);
      if (created === undefined) throw new Error(`seeding: handle ${benchHandle(options.runSeed, index)} is taken`);
      accounts.push(created.account.id);
    }
  } finally {
    await storage.close();
  }
  return { accounts, elapsedMs: performance.now() - started };
}
