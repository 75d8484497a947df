import { type Kysely, sql } from "kysely";

// Groups (PROTOCOL.md section 18; issue 14). A group lives in the partition its id hashes to, like an account: the
// worker that owns that partition is the one writer of its membership (the owner is the lock), and decides the
// order of its membership changes and sends. The name is an end-to-end encrypted blob the server never reads.
// `group_changes` is the group's recent membership log: a resent change (same actor device and client id) is found
// there and its events queued again, so an event lost with a crashed worker reaches every member on the resend.

export async function up(database: Kysely<unknown>): Promise<void> {
  await database.schema
    .createTable("groups")
    .ifNotExists()
    .addColumn("id", "integer", (column) => column.primaryKey())
    .addColumn("name", "blob", (column) => column.notNull())
    // 1 after create, +1 per membership change or rename.
    .addColumn("version", "integer", (column) => column.notNull())
    .addColumn("created_at", "integer", (column) => column.notNull())
    .addColumn("updated_at", "integer", (column) => column.notNull())
    .execute();

  // Without rowid: a group's members are read together, in account order, from one b-tree.
  await database.schema
    .createTable("group_members")
    .ifNotExists()
    .addColumn("group_id", "integer", (column) => column.notNull().references("groups.id").onDelete("cascade"))
    .addColumn("account_id", "integer", (column) => column.notNull())
    .addColumn("admin", "integer", (column) => column.notNull())
    .addColumn("joined_version", "integer", (column) => column.notNull())
    .addPrimaryKeyConstraint("group_members_primary_key", ["group_id", "account_id"])
    .modifyEnd(sql`without rowid`)
    .execute();

  await database.schema
    .createTable("group_changes")
    .ifNotExists()
    .addColumn("group_id", "integer", (column) => column.notNull().references("groups.id").onDelete("cascade"))
    .addColumn("version", "integer", (column) => column.notNull())
    .addColumn("op", "integer", (column) => column.notNull())
    .addColumn("actor_account", "integer", (column) => column.notNull())
    .addColumn("actor_device", "integer", (column) => column.notNull())
    .addColumn("client_id", "integer", (column) => column.notNull())
    // The accounts the change is about, packed big-endian uint32 (protocol/packed-ids.ts).
    .addColumn("accounts", "blob", (column) => column.notNull())
    // Every account the change's event goes to (the members after it, and those it removed), packed the same way.
    .addColumn("recipients", "blob", (column) => column.notNull())
    .addColumn("name", "blob")
    .addColumn("created_at", "integer", (column) => column.notNull())
    .addPrimaryKeyConstraint("group_changes_primary_key", ["group_id", "version"])
    .modifyEnd(sql`without rowid`)
    .execute();
}

export async function down(database: Kysely<unknown>): Promise<void> {
  await database.schema.dropTable("group_changes").ifExists().execute();
  await database.schema.dropTable("group_members").ifExists().execute();
  await database.schema.dropTable("groups").ifExists().execute();
}
