import { type Kysely, sql } from "kysely";
import { up as createInitialSchema } from "./0001-initial.ts";

// Invite and link codes were stored in plaintext; from here on only their keyed hash is (storage/code-hasher.ts).
//
// Codes already in the database are dropped, not hashed in place: a plaintext code may already sit in a backup or a
// copy of the database made before this migration, and hashing it would keep such a leaked code valid. So:
// - unused invites are deleted: the operator issues new ones (OPERATIONS.md says so for the upgrade);
// - used invites keep their history (who used one and when) under a random hash that matches no code;
// - link codes, which live minutes, are all deleted: a device that was about to link asks for a new code.
// A migration cannot hash anyway: it gets only the database, and the key must never be in it.
//
// Safe to run again: each table is rebuilt only while it still has its plaintext `code` column. Deleted rows and the
// dropped tables' pages are zeroed in the database file because openSqliteDatabase turns on secure_delete first.

export async function up(database: Kysely<unknown>): Promise<void> {
  if (await hasColumn(database, "invites", "code")) {
    await sql`alter table invites rename to invites_plaintext`.execute(database);
    await createInvites(database);
    await sql`
      insert into invites (code_hash, created_at, expires_at, used_at, used_by)
      select randomblob(32), created_at, expires_at, used_at, used_by from invites_plaintext where used_at is not null
    `.execute(database);
    await sql`drop table invites_plaintext`.execute(database);
  }
  if (await hasColumn(database, "link_codes", "code")) {
    await sql`drop table link_codes`.execute(database);
    await createLinkCodes(database);
  }
}

export async function down(database: Kysely<unknown>): Promise<void> {
  // Back to the plaintext tables, empty: a hash cannot be turned back into its code.
  await database.schema.dropTable("invites").ifExists().execute();
  await database.schema.dropTable("link_codes").ifExists().execute();
  await createInitialSchema(database);
}

async function hasColumn(database: Kysely<unknown>, table: string, column: string): Promise<boolean> {
  const result = await sql<{ name: string }>`select name from pragma_table_info(${table})`.execute(database);
  return result.rows.some((row) => row.name === column);
}

async function createInvites(database: Kysely<unknown>): Promise<void> {
  await database.schema
    .createTable("invites")
    .addColumn("code_hash", "blob", (column) => column.primaryKey())
    .addColumn("created_at", "integer", (column) => column.notNull())
    .addColumn("expires_at", "integer", (column) => column.notNull())
    .addColumn("used_at", "integer")
    // No foreign key: the record of who used an invite outlives the account.
    .addColumn("used_by", "integer")
    .addCheckConstraint("invites_code_hash_length", sql`length(code_hash) = 32`)
    .execute();
}

async function createLinkCodes(database: Kysely<unknown>): Promise<void> {
  await database.schema
    .createTable("link_codes")
    .addColumn("code_hash", "blob", (column) => column.primaryKey())
    .addColumn("account_id", "integer", (column) => column.notNull())
    .addColumn("created_at", "integer", (column) => column.notNull())
    .addColumn("expires_at", "integer", (column) => column.notNull())
    .addForeignKeyConstraint("link_codes_account_foreign_key", ["account_id"], "accounts", ["id"])
    .addCheckConstraint("link_codes_code_hash_length", sql`length(code_hash) = 32`)
    .execute();
  // Removing an account deletes its link codes by account; issuing a code purges expired ones by expiry.
  await database.schema.createIndex("link_codes_account_id").on("link_codes").column("account_id").execute();
  await database.schema.createIndex("link_codes_expires_at").on("link_codes").column("expires_at").execute();
}
