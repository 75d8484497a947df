import type { Database, Statement } from "bun:sqlite";
import type { Selectable } from "kysely";
import type { DeviceKey, DeviceRecord, DeviceStore, LastSeenEntry } from "./device-store.ts";
import type { LazyKysely } from "./kysely-lazy.ts";
import type { SqliteQueueRows } from "./queue-rows-sqlite.ts";
import type { DevicesTable } from "./schema.ts";
import { AccountNotFoundError } from "./storage-errors.ts";

// get and touch run on every login, so they are prepared statements; list is a cold query through Kysely. Writes
// that take several statements run in bun:sqlite's synchronous transactions (see database-sqlite.ts).
//
// touch without waiting: the directory file is shared by every worker of a supervisor, and bun:sqlite is synchronous,
// so a write that waited for another process's lock (busy_timeout) would stop this worker's event loop, logins and
// all, for up to the busy timeout (5 s). For that one transaction the connection's busy timeout is 0: "begin immediate" takes
// the write lock or fails at once with SQLITE_BUSY, before any row is touched. Nothing can run on the connection
// between setting the timeout and putting it back, since every call here is synchronous.

export class SqliteDeviceStore implements DeviceStore {
  readonly #kysely: LazyKysely;
  readonly #get: Statement<Selectable<DevicesTable>, [number, number]>;
  readonly #touch: Statement<unknown, [number, number, number]>;
  readonly #takeDeviceId: Statement<{ device_id: number }, [number]>;
  readonly #insert: Statement<unknown, [number, number, Uint8Array, number, number]>;
  readonly #delete: Statement<unknown, [number, number]>;
  readonly #mirrorTransaction: (account: number, device: number, nowMs: number) => void;
  readonly #addTransaction: (account: number, publicKey: Uint8Array, nowMs: number) => DeviceRecord;
  readonly #touchTransaction: (entries: readonly LastSeenEntry[]) => void;
  readonly #database: Database;
  /** The connection's own busy timeout, put back after a touch without waiting. */
  readonly #busyTimeoutMs: number;
  readonly #removeTransaction: (account: number, device: number) => boolean;

  constructor(database: Database, kysely: LazyKysely, queueRows: SqliteQueueRows) {
    this.#kysely = kysely;
    this.#database = database;
    this.#busyTimeoutMs = database.query<{ timeout: number }, []>("pragma busy_timeout").get()?.timeout ?? 0;
    this.#get = database.prepare("select * from devices where account_id = ? and device_id = ?");
    this.#touch = database.prepare(
      "update devices set last_seen_at = max(last_seen_at, ?) where account_id = ? and device_id = ?",
    );
    this.#takeDeviceId = database.prepare(
      "update accounts set next_device_id = next_device_id + 1 where id = ? returning next_device_id - 1 as device_id",
    );
    this.#insert = database.prepare(insertDeviceSql);
    this.#delete = database.prepare("delete from devices where account_id = ? and device_id = ?");

    const mirrorAccount = database.prepare<unknown, [number, number, number]>(
      "insert into accounts (id, handle, created_at, next_device_id) values (?, '#' || ?, ?, 1) on conflict do nothing",
    );
    const mirrorDevice = database.prepare<unknown, [number, number, number, number]>(
      `insert into devices (account_id, device_id, public_key, created_at, last_seen_at) values (?, ?, zeroblob(32), ?, ?)
       on conflict do nothing`,
    );
    this.#mirrorTransaction = database.transaction((account: number, device: number, nowMs: number) => {
      mirrorAccount.run(account, account, nowMs);
      mirrorDevice.run(account, device, nowMs, nowMs);
    }).immediate;
    this.#addTransaction = database.transaction((account: number, publicKey: Uint8Array, nowMs: number) => {
      const taken = this.#takeDeviceId.get(account);
      if (taken === null) throw new AccountNotFoundError(account);
      this.#insert.run(account, taken.device_id, publicKey, nowMs, nowMs);
      return newDeviceRecord(account, taken.device_id, publicKey, nowMs);
    }).immediate;
    this.#touchTransaction = database.transaction((entries: readonly LastSeenEntry[]) => {
      for (const entry of entries) this.#touch.run(entry.atMs, entry.account, entry.device);
    }).immediate;
    this.#removeTransaction = database.transaction((account: number, device: number) => {
      queueRows.deleteDevice(account, device);
      return this.#delete.run(account, device).changes > 0;
    }).immediate;
  }

  async add(account: number, publicKey: Uint8Array, nowMs: number): Promise<DeviceRecord> {
    return this.#addTransaction(account, publicKey, nowMs);
  }

  async get(key: DeviceKey): Promise<DeviceRecord | undefined> {
    const row = this.#get.get(key.account, key.device);
    return row === null ? undefined : toDeviceRecord(row);
  }

  async mirror(key: DeviceKey, nowMs: number): Promise<void> {
    this.#mirrorTransaction(key.account, key.device, nowMs);
  }

  async list(account: number): Promise<DeviceRecord[]> {
    const rows = await (await this.#kysely())
      .selectFrom("devices")
      .selectAll()
      .where("account_id", "=", account)
      .orderBy("device_id")
      .execute();
    return rows.map(toDeviceRecord);
  }

  async remove(key: DeviceKey): Promise<boolean> {
    return this.#removeTransaction(key.account, key.device);
  }

  async touch(entries: readonly LastSeenEntry[], options: { readonly wait: boolean }): Promise<boolean> {
    if (entries.length === 0) return true;
    if (options.wait) {
      this.#touchTransaction(entries);
      return true;
    }
    this.#database.run("pragma busy_timeout = 0");
    try {
      this.#touchTransaction(entries);
      return true;
    } catch (error) {
      if (isBusy(error)) return false;
      throw error;
    } finally {
      this.#database.run(`pragma busy_timeout = ${this.#busyTimeoutMs}`);
    }
  }
}

/** SQLITE_BUSY, and its extended codes (SQLITE_BUSY_SNAPSHOT, ...): another connection holds the lock. */
function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("SQLITE_BUSY");
}

/** Size of the stored client id window: 64 bits. */
export const clientIdWindowBytes = 8;

// Counters and marks start at their defaults (0).
export const insertDeviceSql =
  "insert into devices (account_id, device_id, public_key, created_at, last_seen_at) values (?, ?, ?, ?, ?)";

export function newDeviceRecord(account: number, device: number, publicKey: Uint8Array, nowMs: number): DeviceRecord {
  return {
    account,
    device,
    publicKey,
    createdAtMs: nowMs,
    lastSeenAtMs: nowMs,
    lastSeq: 0,
    lastClientId: 0,
    clientIdWindow: new Uint8Array(clientIdWindowBytes),
    queueRows: 0,
    queueBytes: 0,
  };
}

function toDeviceRecord(row: Selectable<DevicesTable>): DeviceRecord {
  return {
    account: row.account_id,
    device: row.device_id,
    publicKey: row.public_key,
    createdAtMs: row.created_at,
    lastSeenAtMs: row.last_seen_at,
    lastSeq: row.last_seq,
    lastClientId: row.last_client_id,
    clientIdWindow: row.client_id_window ?? new Uint8Array(clientIdWindowBytes),
    queueRows: row.queue_rows,
    queueBytes: row.queue_bytes,
  };
}
