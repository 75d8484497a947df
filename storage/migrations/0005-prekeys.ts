import { type Kysely, sql } from "kysely";

// The key directory (PROTOCOL.md, "Key directory"): the public keys a device publishes for Signal sessions, kept in
// the device's partition beside its queue, so the owner of the partition is the one writer and a fetch consumes a
// one-time prekey in one local transaction. Every table references the device's row with `on delete cascade`:
// removing a device (or its account) deletes its keys in the same statement, with no code path to forget.

export async function up(database: Kysely<unknown>): Promise<void> {
  await database.schema
    .createTable("device_keys")
    .ifNotExists()
    .addColumn("account_id", "integer", (column) => column.notNull())
    .addColumn("device_id", "integer", (column) => column.notNull())
    .addColumn("registration_id", "integer", (column) => column.notNull())
    .addColumn("identity_key", "blob", (column) => column.notNull())
    .addColumn("signed_prekey_id", "integer", (column) => column.notNull())
    .addColumn("signed_prekey", "blob", (column) => column.notNull())
    .addColumn("signed_prekey_signature", "blob", (column) => column.notNull())
    .addColumn("last_resort_id", "integer")
    .addColumn("last_resort_key", "blob")
    .addColumn("last_resort_signature", "blob")
    .addColumn("updated_at", "integer", (column) => column.notNull())
    .addPrimaryKeyConstraint("device_keys_primary_key", ["account_id", "device_id"])
    .addForeignKeyConstraint(
      "device_keys_device_foreign_key",
      ["account_id", "device_id"],
      "devices",
      ["account_id", "device_id"],
      (constraint) => constraint.onDelete("cascade"),
    )
    .modifyEnd(sql`without rowid`)
    .execute();
  await database.schema
    .createTable("one_time_prekeys")
    .ifNotExists()
    .addColumn("account_id", "integer", (column) => column.notNull())
    .addColumn("device_id", "integer", (column) => column.notNull())
    .addColumn("key_id", "integer", (column) => column.notNull())
    .addColumn("public_key", "blob", (column) => column.notNull())
    .addPrimaryKeyConstraint("one_time_prekeys_primary_key", ["account_id", "device_id", "key_id"])
    .addForeignKeyConstraint(
      "one_time_prekeys_device_foreign_key",
      ["account_id", "device_id"],
      "devices",
      ["account_id", "device_id"],
      (constraint) => constraint.onDelete("cascade"),
    )
    .modifyEnd(sql`without rowid`)
    .execute();
  // Accounts that fetched a device's bundle: they may hold a session with it, and hear of its identity key changing.
  await database.schema
    .createTable("key_fetchers")
    .ifNotExists()
    .addColumn("account_id", "integer", (column) => column.notNull())
    .addColumn("device_id", "integer", (column) => column.notNull())
    .addColumn("fetcher_account", "integer", (column) => column.notNull())
    .addColumn("fetched_at", "integer", (column) => column.notNull())
    .addPrimaryKeyConstraint("key_fetchers_primary_key", ["account_id", "device_id", "fetcher_account"])
    .addForeignKeyConstraint(
      "key_fetchers_device_foreign_key",
      ["account_id", "device_id"],
      "devices",
      ["account_id", "device_id"],
      (constraint) => constraint.onDelete("cascade"),
    )
    .modifyEnd(sql`without rowid`)
    .execute();
}

export async function down(database: Kysely<unknown>): Promise<void> {
  for (const table of ["key_fetchers", "one_time_prekeys", "device_keys"]) {
    await database.schema.dropTable(table).ifExists().execute();
  }
}
