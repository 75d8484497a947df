import type { Database, Statement } from "bun:sqlite";
import type { Selectable } from "kysely";
import type { AccountRecord, AccountStore } from "./account-store.ts";
import type { DeviceRecord } from "./device-store.ts";
import { insertDeviceSql, newDeviceRecord } from "./device-store-sqlite.ts";
import type { LazyKysely } from "./kysely-lazy.ts";
import type { SqliteQueueRows } from "./queue-rows-sqlite.ts";
import type { AccountsTable } from "./schema.ts";

// Lookups are cold queries through Kysely. create and remove take several statements, so they run in bun:sqlite's
// synchronous transactions (see database-sqlite.ts).

const firstDeviceId = 1;

type Created = { account: AccountRecord; device: DeviceRecord };

export class SqliteAccountStore implements AccountStore {
  readonly #kysely: LazyKysely;
  readonly #createTransaction: (handle: string, publicKey: Uint8Array, nowMs: number) => Created | undefined;
  readonly #removeTransaction: (id: number) => boolean;

  constructor(database: Database, kysely: LazyKysely, queueRows: SqliteQueueRows) {
    this.#kysely = kysely;
    // "on conflict do nothing" returns no row for a taken handle, which is an answer rather than an error.
    const insertAccount: Statement<{ id: number }, [string, number, number]> = database.prepare(
      "insert into accounts (handle, created_at, next_device_id) values (?, ?, ?) on conflict (handle) do nothing returning id",
    );
    const insertDevice: Statement<unknown, [number, number, Uint8Array, number, number]> =
      database.prepare(insertDeviceSql);
    const deleteDevices: Statement<unknown, [number]> = database.prepare("delete from devices where account_id = ?");
    const deleteLinkCodes: Statement<unknown, [number]> = database.prepare(
      "delete from link_codes where account_id = ?",
    );
    const deleteAccount: Statement<unknown, [number]> = database.prepare("delete from accounts where id = ?");

    this.#createTransaction = database.transaction((handle: string, publicKey: Uint8Array, nowMs: number) => {
      const inserted = insertAccount.get(handle, nowMs, firstDeviceId + 1);
      if (inserted === null) return undefined;
      insertDevice.run(inserted.id, firstDeviceId, publicKey, nowMs, nowMs);
      return {
        account: { id: inserted.id, handle, createdAtMs: nowMs },
        device: newDeviceRecord(inserted.id, firstDeviceId, publicKey, nowMs),
      };
    }).immediate;
    // Children first: the foreign keys refuse to delete an account or device that still has rows pointing at it.
    this.#removeTransaction = database.transaction((id: number) => {
      queueRows.deleteAccount(id);
      deleteDevices.run(id);
      deleteLinkCodes.run(id);
      return deleteAccount.run(id).changes > 0;
    }).immediate;
  }

  async create(handle: string, publicKey: Uint8Array, nowMs: number): Promise<Created | undefined> {
    return this.#createTransaction(handle, publicKey, nowMs);
  }

  async byId(id: number): Promise<AccountRecord | undefined> {
    const row = await (await this.#kysely()).selectFrom("accounts").selectAll().where("id", "=", id).executeTakeFirst();
    return row === undefined ? undefined : toAccountRecord(row);
  }

  async byHandle(handle: string): Promise<AccountRecord | undefined> {
    const row = await (await this.#kysely())
      .selectFrom("accounts")
      .selectAll()
      .where("handle", "=", handle)
      .executeTakeFirst();
    return row === undefined ? undefined : toAccountRecord(row);
  }

  async list(options: { limit: number; afterId?: number }): Promise<AccountRecord[]> {
    // SQLite reads a negative limit as "no limit".
    if (options.limit <= 0) return [];
    const rows = await (await this.#kysely())
      .selectFrom("accounts")
      .selectAll()
      .where("id", ">", options.afterId ?? 0)
      .orderBy("id")
      .limit(options.limit)
      .execute();
    return rows.map(toAccountRecord);
  }

  async remove(id: number): Promise<boolean> {
    return this.#removeTransaction(id);
  }

  async count(): Promise<number> {
    const row = await (await this.#kysely())
      .selectFrom("accounts")
      .select((expression) => expression.fn.countAll<number>().as("count"))
      .executeTakeFirstOrThrow();
    return row.count;
  }
}

function toAccountRecord(row: Selectable<AccountsTable>): AccountRecord {
  return { id: row.id, handle: row.handle, createdAtMs: row.created_at };
}
