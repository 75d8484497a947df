import { Database } from "bun:sqlite";
import { chmodSync, closeSync, constants, openSync } from "node:fs";
import { dirname, join } from "node:path";
import type { AccountStore } from "./account-store.ts";
import { SqliteAccountStore } from "./account-store-sqlite.ts";
import { CodeHasher, codeKeyFileName, loadOrCreateCodeKey, privateFileMode } from "./code-hasher.ts";
import type { DeviceStore } from "./device-store.ts";
import { SqliteDeviceStore } from "./device-store-sqlite.ts";
import type { GroupStore } from "./group-store.ts";
import { SqliteGroupStore } from "./group-store-sqlite.ts";
import type { InviteStore } from "./invite-store.ts";
import { SqliteInviteStore } from "./invite-store-sqlite.ts";
import type { KeyStore } from "./key-store.ts";
import { SqliteKeyStore } from "./key-store-sqlite.ts";
import { type LazyKysely, type LazyKyselyHandle, lazyKysely } from "./kysely-lazy.ts";
import type { LinkCodeStore } from "./link-code-store.ts";
import { SqliteLinkCodeStore } from "./link-code-store-sqlite.ts";
import { migrationNames, migrationTableName } from "./migrations/names.ts";
import { SqliteQueueRows } from "./queue-rows-sqlite.ts";
import type { QueueStore } from "./queue-store.ts";
import { SqliteQueueStore } from "./queue-store-sqlite.ts";
import type { Storage } from "./storage.ts";
import { fallbackCheckpointPages, WalCheckpointer } from "./wal-checkpointer.ts";

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
  // The file of the key that invite and link codes are hashed under (code-hasher.ts), created at the first open.
  // Default: code-hash.key in the database's directory (the data directory); an in-memory store uses a key of its own
  // that dies with it.
  readonly codeKeyPath?: string;
  // Zero deleted content (the default, and what the server always uses). False exists only so that
  // bench/micro-secure-delete.ts can measure what it costs in one run; no config key reaches it.
  readonly secureDelete?: boolean;
  // Checkpoints the file's write-ahead log on a thread of its own (wal-checkpointer.ts), of this process or of
  // another one ("elsewhere": the supervisor's, in worker mode); this connection then checkpoints only past
  // fallbackCheckpointPages. Absent: SQLite's own checkpoints, on this connection's thread.
  readonly checkpointer?: WalCheckpointer | "elsewhere";
}

// The database file and the files SQLite keeps beside it. All are created, or tightened, to mode 0600.
const sqliteFileSuffixes = ["", "-wal", "-shm"] as const;

// One connection, shared by two ways in:
// - Kysely (over kysely-bun-sqlite) for migrations and cold queries, each a single statement, loaded on the first of
//   them (kysely-lazy.ts);
// - bun:sqlite prepared statements, prepared once, for the hot paths and for every write of several statements,
//   inside bun:sqlite's synchronous transactions.
// Multi-statement writes must not use Kysely transactions at run time: a Kysely transaction awaits between its
// statements, and a synchronous transaction run in that gap would land inside it on the same connection. A
// synchronous transaction cannot be interleaved with anything, and bun:sqlite is synchronous anyway.
export async function openSqliteStorage(options: SqliteStorageOptions): Promise<Storage> {
  const hasher = isFile(options.path)
    ? new CodeHasher(loadOrCreateCodeKey(options.codeKeyPath ?? join(dirname(options.path), codeKeyFileName)))
    : CodeHasher.ephemeral();
  const database = openSqliteDatabase(options);
  try {
    const kysely = lazyKysely(database);
    await migrate(database, kysely.kysely);
    // The migration wrote the log, so -wal and -shm exist now (SQLite gives them the main file's mode already).
    restrictFileModes(options.path);
    const checkpointer =
      isFile(options.path) && options.checkpointer instanceof WalCheckpointer ? options.checkpointer : undefined;
    checkpointer?.watch(options.path, options.synchronous ?? "normal");
    return new SqliteStorage(
      database,
      kysely,
      hasher,
      checkpointer === undefined ? null : { checkpointer, path: options.path },
    );
  } catch (error) {
    database.close();
    throw error;
  }
}

/**
 * Brings the file at `options.path` (created if absent) to this build's migrations, and closes it. A supervisor does
 * this for the directory file before its workers open it (server/supervisor.ts): 56 workers finding it new (a fresh
 * data directory, an upgrade) each took its write lock in turn to migrate, and on a loaded host some waited past
 * busy_timeout and exited ("database is locked"). Returns whether it migrated.
 */
export async function migrateSqliteFile(options: SqliteStorageOptions): Promise<boolean> {
  const database = openSqliteDatabase(options);
  const kysely = lazyKysely(database);
  try {
    const migrated = await migrate(database, kysely.kysely);
    restrictFileModes(options.path);
    return migrated;
  } finally {
    database.close(true);
    await kysely.destroy();
  }
}

// The connection with the settings every store relies on. Not part of the public face: tests use it to check them.
export function openSqliteDatabase(options: SqliteStorageOptions): Database {
  // Created 0600 before SQLite opens it, so there is no moment at which another user may open it; SQLite then creates
  // -wal and -shm with the main file's mode. An existing file (from before modes were set) is tightened.
  if (isFile(options.path)) {
    closeSync(openSync(options.path, constants.O_RDWR | constants.O_CREAT, privateFileMode));
    restrictFileModes(options.path);
  }
  const database = new Database(options.path, { create: true, readwrite: true, strict: true });
  try {
    // First, so that switching the journal mode already waits for another connection's lock.
    database.run(`pragma busy_timeout = ${busyTimeoutMs}`);
    database.run("pragma journal_mode = wal");
    database.run(`pragma synchronous = ${options.synchronous === "full" ? "full" : "normal"}`);
    database.run("pragma foreign_keys = on");
    database.run(`pragma journal_size_limit = ${journalSizeLimitBytes}`);
    // Deleted rows (a delivered payload, a used code) are overwritten with zeros in their page, and freed pages are
    // zeroed, so the database file keeps no copy once the delete is checkpointed into it. Older page images stay in
    // the -wal file until SQLite reuses that part of the log; OPERATIONS.md (Durability) says what that guarantees.
    database.run(`pragma secure_delete = ${options.secureDelete === false ? "off" : "on"}`);
    if (options.checkpointer !== undefined) database.run(`pragma wal_autocheckpoint = ${fallbackCheckpointPages}`);
    return database;
  } catch (error) {
    database.close();
    throw error;
  }
}

function isFile(path: string): boolean {
  return path !== ":memory:" && path !== "" && !path.startsWith("file:");
}

function restrictFileModes(path: string): void {
  for (const suffix of sqliteFileSuffixes) {
    try {
      chmodSync(`${path}${suffix}`, privateFileMode);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
}

// All migrations in one transaction, which Kysely does not open itself on SQLite: a crash half way leaves the schema
// as it was, and "begin immediate" makes a second process opening the same file wait rather than migrate alongside.
async function migrate(database: Database, kysely: LazyKysely): Promise<boolean> {
  // The workers of a supervisor open the same directory file at once. Each taking the write lock just to find every
  // migration applied queued dozens of them behind each other: with 56 workers starting on 2 cores, some waited past
  // busy_timeout and exited with "database is locked". A file whose migrations are exactly ours needs no lock.
  if (migrationsUpToDate(database)) return false;
  // Kysely and the migrations load only here: a file at this build's migrations (every start after the first) needs
  // neither.
  const [{ migrateToLatest }, migrator] = await Promise.all([import("./migrations/index.ts"), kysely()]);
  database.run("begin immediate");
  try {
    await migrateToLatest(migrator);
    database.run("commit");
    return true;
  } catch (error) {
    if (database.inTransaction) database.run("rollback");
    throw error;
  }
}

/** Whether the file records exactly the migrations this build has (a read: no write lock). */
function migrationsUpToDate(database: Database): boolean {
  const table = database
    .query("select 1 as found from sqlite_master where type = 'table' and name = ?")
    .get(migrationTableName);
  if (table === null) return false;
  const rows = database.query(`select name from ${migrationTableName}`).all() as Array<{ name: string }>;
  const applied = new Set(rows.map((row) => row.name));
  const ours = migrationNames;
  // An unknown migration (a newer build wrote this file) goes through Kysely, which refuses it with its error.
  return applied.size === ours.length && ours.every((name) => applied.has(name));
}

class SqliteStorage implements Storage {
  readonly accounts: AccountStore;
  readonly devices: DeviceStore;
  readonly queues: QueueStore;
  readonly invites: InviteStore;
  readonly linkCodes: LinkCodeStore;
  readonly keys: KeyStore;
  readonly groups: GroupStore;
  readonly #database: Database;
  readonly #kysely: LazyKyselyHandle;
  readonly #checkpoints: { readonly checkpointer: WalCheckpointer; readonly path: string } | null;
  #closed = false;

  constructor(
    database: Database,
    kysely: LazyKyselyHandle,
    hasher: CodeHasher,
    checkpoints: { readonly checkpointer: WalCheckpointer; readonly path: string } | null,
  ) {
    this.#database = database;
    this.#kysely = kysely;
    this.#checkpoints = checkpoints;
    const queueRows = new SqliteQueueRows(database);
    this.accounts = new SqliteAccountStore(database, kysely.kysely, queueRows);
    this.devices = new SqliteDeviceStore(database, kysely.kysely, queueRows);
    this.queues = new SqliteQueueStore(database, queueRows);
    this.invites = new SqliteInviteStore(kysely.kysely, hasher);
    this.linkCodes = new SqliteLinkCodeStore(kysely.kysely, hasher);
    this.keys = new SqliteKeyStore(database);
    this.groups = new SqliteGroupStore(database);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // The checkpoint thread's connection closes first, so this one is the last: its close checkpoints the whole log
    // and removes it, as it does without the thread.
    if (this.#checkpoints !== null) await this.#checkpoints.checkpointer.unwatch(this.#checkpoints.path);
    // close(true) finalizes the prepared statements and closes now, checkpointing the log, rather than when the
    // statements are garbage collected. Kysely's destroy (if it was loaded) then closes the same connection again,
    // which does nothing.
    this.#database.close(true);
    await this.#kysely.destroy();
  }
}
