import { type Kysely, sql } from "kysely";

// Read receipts are tied to messages actually delivered (an outside review filled a device's queue with receipts
// for messages that never existed). For each reader device and each sender device it heard from, the server keeps
// which recent client ids it delivered and which of those were already receipted as read, as two bit windows up to
// the highest client id delivered. One row per (reader device, sender device) pair, written by the group commit in
// the same transaction as the acks that delivered the messages.

export async function up(database: Kysely<unknown>): Promise<void> {
  await database.schema
    .createTable("read_receipt_windows")
    .ifNotExists()
    .addColumn("account_id", "integer", (column) => column.notNull())
    .addColumn("device_id", "integer", (column) => column.notNull())
    .addColumn("peer_account", "integer", (column) => column.notNull())
    .addColumn("peer_device", "integer", (column) => column.notNull())
    .addColumn("last_client_id", "integer", (column) => column.notNull())
    // Bit k: client id last_client_id - k. Little-endian bytes.
    .addColumn("delivered", "blob", (column) => column.notNull())
    .addColumn("read", "blob", (column) => column.notNull())
    .addColumn("updated_at", "integer", (column) => column.notNull())
    .addPrimaryKeyConstraint("read_receipt_windows_primary_key", [
      "account_id",
      "device_id",
      "peer_account",
      "peer_device",
    ])
    .addForeignKeyConstraint("read_receipt_windows_device_foreign_key", ["account_id", "device_id"], "devices", [
      "account_id",
      "device_id",
    ])
    .modifyEnd(sql`without rowid`)
    .execute();
}

export async function down(database: Kysely<unknown>): Promise<void> {
  await database.schema.dropTable("read_receipt_windows").ifExists().execute();
}
