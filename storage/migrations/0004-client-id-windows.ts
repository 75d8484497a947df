import { type Kysely, sql } from "kysely";

// Retries are recognised where the message is stored: in the recipient's partition (ARCHITECTURE.md, "Partitions").
// A send touches exactly one partition, the recipient account's, so the rows of the message and the record that its
// client id was stored commit in one transaction, whichever worker owns the sender. One row per (recipient account,
// sender device) pair: the highest client id of that sender stored for that account, and which of the 64 below it
// were stored (bit k: last_client_id - k, 8 bytes little-endian). The devices table keeps last_client_id as the
// sender's own high-water mark (told in welcome); its client_id_window column is no longer written.

export async function up(database: Kysely<unknown>): Promise<void> {
  await database.schema
    .createTable("client_id_windows")
    .ifNotExists()
    .addColumn("account_id", "integer", (column) => column.notNull())
    .addColumn("peer_account", "integer", (column) => column.notNull())
    .addColumn("peer_device", "integer", (column) => column.notNull())
    .addColumn("last_client_id", "integer", (column) => column.notNull())
    .addColumn("window", "blob", (column) => column.notNull())
    .addColumn("updated_at", "integer", (column) => column.notNull())
    .addPrimaryKeyConstraint("client_id_windows_primary_key", ["account_id", "peer_account", "peer_device"])
    .modifyEnd(sql`without rowid`)
    .execute();
}

export async function down(database: Kysely<unknown>): Promise<void> {
  await database.schema.dropTable("client_id_windows").ifExists().execute();
}
