import { type Kysely, sql } from "kysely";

// The first schema. Every statement uses `if not exists` so that a run interrupted between creating the tables and
// recording the migration can simply be repeated; openSqliteStorage also runs all migrations in one transaction.
//
// Counters (devices.queue_rows, queue_bytes, messages.refs) are kept by the stores, not by triggers, so that a batch
// updates each device once rather than once per row, and so the same logic carries over to PostgreSQL unchanged.
// queue.message_id has no foreign key: checking it would need an index on queue.message_id, a second write per row
// for every message, to guard what messages.refs already keeps exact.

const idLimit = sql`4294967296`;
// Device ids stay below 2^21 so that the server can key a device by one safe integer: account * 2^21 + device.
const deviceIdLimit = sql`2097152`;

export async function up(database: Kysely<unknown>): Promise<void> {
  // autoIncrement: an account id is never reused, so messages from a removed account still waiting in other queues
  // can never be attributed to a new account.
  await database.schema
    .createTable("accounts")
    .ifNotExists()
    .addColumn("id", "integer", (column) => column.primaryKey().autoIncrement())
    .addColumn("handle", "text", (column) => column.notNull().unique())
    .addColumn("created_at", "integer", (column) => column.notNull())
    .addColumn("next_device_id", "integer", (column) => column.notNull())
    .addCheckConstraint("accounts_id_range", sql`id > 0 and id < ${idLimit}`)
    .addCheckConstraint("accounts_next_device_id_range", sql`next_device_id > 0 and next_device_id <= ${deviceIdLimit}`)
    .execute();

  await database.schema
    .createTable("devices")
    .ifNotExists()
    .addColumn("account_id", "integer", (column) => column.notNull())
    .addColumn("device_id", "integer", (column) => column.notNull())
    .addColumn("public_key", "blob", (column) => column.notNull())
    .addColumn("created_at", "integer", (column) => column.notNull())
    .addColumn("last_seen_at", "integer", (column) => column.notNull())
    .addColumn("last_seq", "integer", (column) => column.notNull().defaultTo(0))
    .addColumn("last_client_id", "integer", (column) => column.notNull().defaultTo(0))
    .addColumn("client_id_window", "blob")
    .addColumn("queue_rows", "integer", (column) => column.notNull().defaultTo(0))
    .addColumn("queue_bytes", "integer", (column) => column.notNull().defaultTo(0))
    .addPrimaryKeyConstraint("devices_primary_key", ["account_id", "device_id"])
    .addForeignKeyConstraint("devices_account_foreign_key", ["account_id"], "accounts", ["id"])
    .addCheckConstraint("devices_device_id_range", sql`device_id > 0 and device_id < ${deviceIdLimit}`)
    .addCheckConstraint("devices_public_key_length", sql`length(public_key) = 32`)
    .addCheckConstraint("devices_queue_counters", sql`queue_rows >= 0 and queue_bytes >= 0`)
    .modifyEnd(sql`without rowid`)
    .execute();

  // Without rowid: rows are stored in (account, device, seq) order, so draining a device's queue reads its rows
  // sequentially from one b-tree instead of an index plus a table.
  await database.schema
    .createTable("queue")
    .ifNotExists()
    .addColumn("account_id", "integer", (column) => column.notNull())
    .addColumn("device_id", "integer", (column) => column.notNull())
    .addColumn("seq", "integer", (column) => column.notNull())
    .addColumn("kind", "integer", (column) => column.notNull())
    .addColumn("peer_account", "integer", (column) => column.notNull())
    .addColumn("peer_device", "integer", (column) => column.notNull())
    .addColumn("client_id", "integer")
    .addColumn("receipt_type", "integer")
    .addColumn("client_ids", "blob")
    .addColumn("sender_device", "integer")
    .addColumn("created_at", "integer", (column) => column.notNull())
    .addColumn("payload", "blob")
    .addColumn("message_id", "integer")
    .addColumn("bytes", "integer", (column) => column.notNull())
    .addPrimaryKeyConstraint("queue_primary_key", ["account_id", "device_id", "seq"])
    .addForeignKeyConstraint("queue_device_foreign_key", ["account_id", "device_id"], "devices", [
      "account_id",
      "device_id",
    ])
    .modifyEnd(sql`without rowid`)
    .execute();

  await database.schema.createIndex("queue_created_at").ifNotExists().on("queue").column("created_at").execute();

  await database.schema
    .createTable("messages")
    .ifNotExists()
    .addColumn("id", "integer", (column) => column.primaryKey())
    .addColumn("payload", "blob", (column) => column.notNull())
    .addColumn("refs", "integer", (column) => column.notNull())
    .addColumn("created_at", "integer", (column) => column.notNull())
    .addCheckConstraint("messages_refs_range", sql`refs >= 0`)
    .execute();

  await database.schema
    .createTable("invites")
    .ifNotExists()
    .addColumn("code", "text", (column) => column.primaryKey())
    .addColumn("created_at", "integer", (column) => column.notNull())
    .addColumn("expires_at", "integer", (column) => column.notNull())
    .addColumn("used_at", "integer")
    // No foreign key: the record of who used an invite outlives the account.
    .addColumn("used_by", "integer")
    .execute();

  await database.schema
    .createTable("link_codes")
    .ifNotExists()
    .addColumn("code", "text", (column) => column.primaryKey())
    .addColumn("account_id", "integer", (column) => column.notNull())
    .addColumn("created_at", "integer", (column) => column.notNull())
    .addColumn("expires_at", "integer", (column) => column.notNull())
    .addForeignKeyConstraint("link_codes_account_foreign_key", ["account_id"], "accounts", ["id"])
    .execute();

  // Removing an account deletes its link codes by account; issuing a code purges expired ones by expiry.
  await database.schema
    .createIndex("link_codes_account_id")
    .ifNotExists()
    .on("link_codes")
    .column("account_id")
    .execute();
  await database.schema
    .createIndex("link_codes_expires_at")
    .ifNotExists()
    .on("link_codes")
    .column("expires_at")
    .execute();
}

export async function down(database: Kysely<unknown>): Promise<void> {
  for (const table of ["link_codes", "invites", "queue", "messages", "devices", "accounts"]) {
    await database.schema.dropTable(table).ifExists().execute();
  }
}
