// Moves the queue data of a data directory written by the single-file layout (every table in switchboard.sqlite) into
// the partitions of server/partitions.ts. The directory keeps accounts, handles, device keys, invites and link codes;
// each account's devices rows (with their marks), queue rows, shared payloads, read-receipt windows and client-id
// windows are copied into the partition of the account, under a stand-in accounts row like the one DeviceStore.mirror
// writes.
//
// Crash safety rests on one commit point, the partitions/count file (written atomically by ensurePartitionCount):
// - before it exists, partition files mean nothing: a run deletes any it finds and copies everything again from the
//   directory, which is not changed until after the commit point;
// - once it exists, the partitions hold the data: a run that finds queue data still in the directory (a crash between
//   the count file and the cleanup) only deletes it there.
// So whatever moment a crash hits, every queued message is in exactly one place once a later run has finished.
//
// The copy is SQL between attached files (insert ... select) rather than reads and commits through the stores: it
// keeps every column as it is (sequences, client ids, created_at, marks, payload ids) and costs no round trip per row.
//
// The caller must hold the data-directory lock (no server may write the directory meanwhile) and run this before
// openPartitions, which would otherwise write the count file of an empty layout.

import type { Database } from "bun:sqlite";
import { closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { codeKeyFileName } from "../storage/code-hasher.ts";
// Not part of storage/'s public face, but the copy needs a raw connection with the stores' pragmas to ATTACH files.
import { openSqliteDatabase } from "../storage/database-sqlite.ts";
import { openSqliteStorage } from "../storage/index.ts";
import {
  ensurePartitionCount,
  partitionFilePath,
  partitionOf,
  partitionsDirectoryName,
  readPartitionCount,
} from "./partitions.ts";

export const directoryFileName = "switchboard.sqlite";

export interface PartitionMigrationOptions {
  readonly dataDir: string;
  /** The partition count for a directory that has none yet; an existing partitions/count wins. */
  readonly count: number;
  readonly synchronous?: "normal" | "full";
  /** The created_at of the stand-in accounts rows. Default: Date.now. */
  readonly now?: () => number;
  /** Test seam: called once every partition is written and before the count file, to simulate a crash there. */
  readonly afterPartitionsWritten?: () => void;
  /** Test seam: called once the count file is written and before the cleanup, to simulate a crash there. */
  readonly afterCountWritten?: () => void;
}

export interface PartitionMigrationResult {
  /** Whether this call changed the data directory: copied into partitions, or finished a crashed run's cleanup. */
  readonly migrated: boolean;
  /** What this call copied into partitions (all 0 when it only finished a cleanup). */
  readonly accounts: number;
  readonly devices: number;
  readonly queueRows: number;
}

// The tables whose rows move to the partitions, all keyed by the account they belong to, parents first (foreign keys
// are on). messages is not among them: it has no account, and is copied per partition by its references.
const movedTables = ["devices", "queue", "read_receipt_windows", "client_id_windows"] as const;
// What the directory must no longer hold once the count file exists.
const queueDataTables = ["queue", "messages", "read_receipt_windows", "client_id_windows"] as const;

const partitionSchema = "partition_file";
const accountsTable = "temp.migration_accounts";
// A file a partition's SQLite database consists of: the database and its log files. Lock files are not: they belong to
// whoever holds them, and deleting a held one would let a second holder in.
const partitionFilePattern = /^p-\d+\.sqlite(-wal|-shm|-journal)?$/;

/** Moves the queue data of a data directory written by the single-file layout into partitions. Idempotent and crash-safe. Returns what it did. */
export async function migrateToPartitions(options: PartitionMigrationOptions): Promise<PartitionMigrationResult> {
  const { dataDir } = options;
  const directoryPath = join(dataDir, directoryFileName);
  const nothing = { migrated: false, accounts: 0, devices: 0, queueRows: 0 };
  if (readPartitionCount(dataDir) !== undefined) {
    if (!existsSync(directoryPath)) return nothing;
    // Every start of a partitioned data directory passes here: a raw connection and four one-row reads, no schema
    // work (the directory got migration 0004 before it got partitions; the server's own open migrates it further).
    const database = openSqliteDatabase({ path: directoryPath, synchronous: options.synchronous });
    try {
      if (!holdsQueueData(database)) return nothing;
      cleanUp(database);
      return { ...nothing, migrated: true };
    } finally {
      database.close();
    }
  }
  // A new data directory: openPartitions gives it its count.
  if (!existsSync(directoryPath)) return nothing;

  deletePartitionFiles(dataDir);
  await migrateSchema(options, directoryPath);
  const database = openSqliteDatabase({ path: directoryPath, synchronous: options.synchronous });
  try {
    const moved = await copyIntoPartitions(database, options);
    options.afterPartitionsWritten?.();
    ensurePartitionCount(dataDir, options.count);
    syncPartitionsDirectory(dataDir);
    options.afterCountWritten?.();
    cleanUp(database);
    return { migrated: true, ...moved };
  } finally {
    database.close();
  }
}

/** Brings a database file to the latest schema (the stores' own migrations), with the directory's code key. */
async function migrateSchema(options: PartitionMigrationOptions, path: string): Promise<void> {
  const storage = await openSqliteStorage({
    path,
    synchronous: options.synchronous,
    codeKeyPath: join(options.dataDir, codeKeyFileName),
  });
  await storage.close();
}

function deletePartitionFiles(dataDir: string): void {
  const directory = join(dataDir, partitionsDirectoryName);
  if (!existsSync(directory)) return;
  for (const name of readdirSync(directory)) {
    if (partitionFilePattern.test(name)) rmSync(join(directory, name), { force: true });
  }
}

async function copyIntoPartitions(
  database: Database,
  options: PartitionMigrationOptions,
): Promise<Omit<PartitionMigrationResult, "migrated">> {
  const { dataDir, count } = options;
  const now = options.now ?? Date.now;
  const byPartition = new Map<number, number[]>();
  for (const { id } of database.query<{ id: number }, []>("select id from accounts order by id").all()) {
    const partition = partitionOf(id, count);
    const ids = byPartition.get(partition) ?? [];
    byPartition.set(partition, ids);
    ids.push(id);
  }

  if (byPartition.size > 0) mkdirSync(join(dataDir, partitionsDirectoryName), { recursive: true, mode: 0o700 });
  database.run(`create temp table if not exists migration_accounts (id integer primary key)`);
  const totals = { accounts: 0, devices: 0, queueRows: 0 };
  for (const [partition, ids] of [...byPartition].sort(([left], [right]) => left - right)) {
    const path = partitionFilePath(dataDir, partition);
    await migrateSchema(options, path);
    database.run(`attach database ? as ${partitionSchema}`, [path]);
    try {
      // Whatever the server's setting: the count file, written next, says the data is here, and the directory's copy
      // is deleted right after it, so this commit must survive a power loss too.
      database.run(`pragma ${partitionSchema}.synchronous = full`);
      const copied = database.transaction(() => copyPartition(database, ids, now())).immediate();
      totals.accounts += ids.length;
      totals.devices += copied.devices;
      totals.queueRows += copied.queueRows;
    } finally {
      database.run(`detach database ${partitionSchema}`);
    }
  }
  database.run(`drop table ${accountsTable}`);

  // Every queued row belongs to a device of an account (foreign keys), so all of them must have been copied; the
  // directory's rows are deleted after this, so a difference here would be messages lost.
  const { rows } = database.query<{ rows: number }, []>("select count(*) as rows from main.queue").get()!;
  if (rows !== totals.queueRows) {
    throw new Error(`bug: ${rows} queue rows in ${directoryFileName}, ${totals.queueRows} copied into partitions`);
  }
  if (byPartition.size > 0) syncPartitionsDirectory(dataDir);
  return totals;
}

/** Copies the rows of `ids`' accounts into the attached partition; runs inside the caller's transaction. */
function copyPartition(
  database: Database,
  ids: readonly number[],
  nowMs: number,
): { devices: number; queueRows: number } {
  database.run(`delete from ${accountsTable}`);
  const insertId = database.prepare<unknown, [number]>(`insert into ${accountsTable} (id) values (?)`);
  for (const id of ids) insertId.run(id);
  insertId.finalize();
  const ofAccounts = `account_id in (select id from ${accountsTable})`;

  // The stand-in of DeviceStore.mirror: the handle and key stay in the directory.
  database.run(
    `insert into ${partitionSchema}.accounts (id, handle, created_at, next_device_id)
     select id, '#' || id, ?, 1 from ${accountsTable}`,
    [nowMs],
  );
  // A shared payload may have recipients in several partitions: each gets its own copy, under the same id (ids only
  // need to be unique within one file), counting only the references its partition holds.
  database.run(
    `insert into ${partitionSchema}.messages (id, payload, refs, created_at)
     select m.id, m.payload, r.refs, m.created_at
     from main.messages m
     join (select message_id, count(*) as refs from main.queue where ${ofAccounts} and message_id is not null
           group by message_id) r on r.message_id = m.id`,
  );
  const copied = { devices: 0, queueRows: 0 };
  for (const table of movedTables) {
    // The partition's columns (its schema is the latest, and so is the directory's), so that every column is copied,
    // a column added by a later migration included.
    const columns = database
      .query<{ name: string }, []>(`pragma ${partitionSchema}.table_info(${table})`)
      .all()
      .map(({ name }) => `"${name}"`)
      .join(", ");
    const changes = database.run(
      `insert into ${partitionSchema}.${table} (${columns}) select ${columns} from main.${table} where ${ofAccounts}`,
    ).changes;
    if (table === "devices") copied.devices = changes;
    if (table === "queue") copied.queueRows = changes;
  }
  return copied;
}

function holdsQueueData(database: Database): boolean {
  return queueDataTables.some((table) => database.query(`select 1 from main.${table} limit 1`).get() !== null);
}

/** Deletes the queue data the partitions now hold from the directory, in one transaction. Marks stay. */
function cleanUp(database: Database): void {
  database
    .transaction(() => {
      for (const table of queueDataTables) database.run(`delete from main.${table}`);
      database.run("update main.devices set queue_rows = 0, queue_bytes = 0 where queue_rows != 0 or queue_bytes != 0");
    })
    .immediate();
}

// The partition files and the count file are new directory entries: without this, a power loss could keep the count
// file's rename and lose the files it vouches for, or lose the rename after the directory's copy was deleted.
function syncPartitionsDirectory(dataDir: string): void {
  const descriptor = openSync(join(dataDir, partitionsDirectoryName), constants.O_RDONLY);
  try {
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
}
