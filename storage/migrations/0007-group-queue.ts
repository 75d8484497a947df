import { type Kysely, sql } from "kysely";

// Group entries in the device queues (PROTOCOL.md section 18). A group message is a queue row of kind 2 whose
// payload is the send's shared ciphertext, stored once per partition in `messages` when several devices of the
// partition get it (inline when one does, as for any message), with this device's own part (a sender-key
// distribution message) inline in `part`. A membership event is a row of kind 3: group_version, group_op, the
// accounts it names in group_accounts and the name blob (create, rename) in `payload`; peer_* is the actor. A group
// receipt (kind 4: delivered receipts of one group message, gathered) has the readers in group_accounts as 8-byte
// (account, device) pairs, with receipt_type, sender_device and client_id; peer_* is 0 (no one author).

export async function up(database: Kysely<unknown>): Promise<void> {
  // A migration interrupted before it was recorded runs again: add only the columns that are not there yet.
  const present = await sql<{ name: string }>`pragma table_info(queue)`.execute(database);
  const names = new Set(present.rows.map((row) => row.name));
  for (const [column, type] of [
    ["group_id", "integer"],
    ["group_version", "integer"],
    ["group_op", "integer"],
    ["group_accounts", "blob"],
    ["part", "blob"],
  ] as const) {
    if (!names.has(column)) await database.schema.alterTable("queue").addColumn(column, type).execute();
  }
}

export async function down(database: Kysely<unknown>): Promise<void> {
  for (const column of ["part", "group_accounts", "group_op", "group_version", "group_id"]) {
    await database.schema.alterTable("queue").dropColumn(column).execute();
  }
}
