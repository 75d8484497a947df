import { Database } from "bun:sqlite";
import { Kysely } from "kysely";
import { BunSqliteDialect } from "kysely-bun-sqlite";
import type { AccountStore } from "./account-store.ts";
import { SqliteAccountStore } from "./account-store-sqlite.ts";
import type { DeviceStore } from "./device-store.ts";
import { SqliteDeviceStore } from "./device-store-sqlite.ts";
import type { InviteStore } from "./invite-store.ts";
import { SqliteInviteStore } from "./invite-store-sqlite.ts";
import type { LinkCodeStore } from "./link-code-store.ts";
import { SqliteLinkCodeStore } from "./link-code-store-sqlite.ts";
import { migrateToLatest } from "./migrations/index.ts";
import { SqliteQueueRows } from "./queue-rows-sqlite.ts";
import type { QueueStore } from "./queue-store.ts";
import { SqliteQueueStore } from "./queue-store-sqlite.ts";
import type { StorageSchema } from "./schema.ts";
import type { Storage } from "./storage.ts";

// How long a statement waits for another connection's lock (a backup, an operator's sqlite3 shell) before failing.
export const busyTimeoutMs = 5_000;
// The size the write-ahead log is truncated back to after a checkpoint, so one burst does not keep its disk forever.
export const journalSizeLimitBytes = 64 * 1024 * 1024;

export interface SqliteStorageOptions {
  // A file path, or ":memory:" for a store that lives and dies with the process (tests).
  readonly path: string;
  // "normal" (the default) survives a crash of the process, and may lose the last transactions on power loss;
  // "full" also survives power loss, at the cost of an fsync per commit.
  readonly synchronous?: "normal" | "full";
}

// One connection, shared by two ways in:
// - Kysely (over kysely-bun-sqlite) for migrations and cold queries, each a single statement;
// - bun:sqlite prepared statements, prepared once, for the hot paths and for every write of several statements,
//   inside bun:sqlite's synchronous transactions.
// Multi-statement writes must not use Kysely transactions at run time: a Kysely transaction awaits between its
// statements, and a synchronous transaction run in that gap would land inside it on the same connection. A
// synchronous transaction cannot be interleaved with anything, and bun:sqlite is synchronous anyway.
export async function openSqliteStorage(options: SqliteStorageOptions): Promise<Storage> {
  const database = openSqliteDatabase(options);
  try {
    const kysely = new Kysely<StorageSchema>({ dialect: new BunSqliteDialect({ database }) });
    await migrate(database, kysely);
    return new SqliteStorage(database, kysely);
  } catch (error) {
    database.close();
    throw error;
  }
}

// The connection with the settings every store relies on. Not part of the public face: tests use it to check them.
export function openSqliteDatabase(options: SqliteStorageOptions): Database {
  const database = new Database(options.path, { create: true, readwrite: true, strict: true });
  try {
    // First, so that switching the journal mode already waits for another connection's lock.
    database.run(`pragma busy_timeout = ${busyTimeoutMs}`);
    database.run("pragma journal_mode = wal");
    database.run(`pragma synchronous = ${options.synchronous === "full" ? "full" : "normal"}`);
    database.run("pragma foreign_keys = on");
    database.run(`pragma journal_size_limit = ${journalSizeLimitBytes}`);
    return database;
  } catch (error) {
    database.close();
    throw error;
  }
}

// All migrations in one transaction, which Kysely does not open itself on SQLite: a crash half way leaves the schema
// as it was, and "begin immediate" makes a second process opening the same file wait rather than migrate alongside.
async function migrate(database: Database, kysely: Kysely<StorageSchema>): Promise<void> {
  database.run("begin immediate");
  try {
    await migrateToLatest(kysely);
    database.run("commit");
  } catch (error) {
    if (database.inTransaction) database.run("rollback");
    throw error;
  }
}

class SqliteStorage implements Storage {
  readonly accounts: AccountStore;
  readonly devices: DeviceStore;
  readonly queues: QueueStore;
  readonly invites: InviteStore;
  readonly linkCodes: LinkCodeStore;
  readonly #database: Database;
  readonly #kysely: Kysely<StorageSchema>;
  #closed = false;

  constructor(database: Database, kysely: Kysely<StorageSchema>) {
    this.#database = database;
    this.#kysely = kysely;
    const queueRows = new SqliteQueueRows(database);
    this.accounts = new SqliteAccountStore(database, kysely, queueRows);
    this.devices = new SqliteDeviceStore(database, kysely, queueRows);
    this.queues = new SqliteQueueStore(database, kysely, queueRows);
    this.invites = new SqliteInviteStore(kysely);
    this.linkCodes = new SqliteLinkCodeStore(kysely);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // close(true) finalizes the prepared statements and closes now, checkpointing the log, rather than when the
    // statements are garbage collected. Kysely's destroy then closes the same connection again, which does nothing.
    this.#database.close(true);
    await this.#kysely.destroy();
  }
}
