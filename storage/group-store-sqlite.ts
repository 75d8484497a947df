import type { Database, Statement } from "bun:sqlite";
import type { GroupChange, GroupDelta, GroupRecord, GroupStore } from "./group-store.ts";

// Every call is one synchronous bun:sqlite transaction (or one statement) on the group's partition, which only its
// owner opens.

interface ChangeRow {
  version: number;
  op: number;
  actor_account: number;
  actor_device: number;
  client_id: number;
  accounts: Uint8Array;
  recipients: Uint8Array;
  name: Uint8Array | null;
  created_at: number;
}

export class SqliteGroupStore implements GroupStore {
  readonly #group: Statement<{ name: Uint8Array; version: number }, [number]>;
  readonly #members: Statement<{ account_id: number; admin: number }, [number]>;
  readonly #changeBy: Statement<ChangeRow, [number, number, number, number]>;
  readonly #create: (record: GroupRecord, change: GroupChange) => boolean;
  readonly #apply: (change: GroupChange, delta: GroupDelta, changesKept: number) => void;

  constructor(database: Database) {
    this.#group = database.prepare("select name, version from groups where id = ?");
    this.#members = database.prepare(
      "select account_id, admin from group_members where group_id = ? order by account_id",
    );
    this.#changeBy = database.prepare(
      `select version, op, actor_account, actor_device, client_id, accounts, recipients, name, created_at
       from group_changes where group_id = ? and actor_account = ? and actor_device = ? and client_id = ?`,
    );
    const exists = database.prepare<{ found: number }, [number]>("select 1 as found from groups where id = ?");
    const insertGroup = database.prepare<unknown, [number, Uint8Array, number, number, number]>(
      "insert into groups (id, name, version, created_at, updated_at) values (?, ?, ?, ?, ?)",
    );
    const upsertMember = database.prepare<unknown, [number, number, number, number]>(
      `insert into group_members (group_id, account_id, admin, joined_version) values (?, ?, ?, ?)
       on conflict (group_id, account_id) do update set admin = excluded.admin`,
    );
    const removeMember = database.prepare<unknown, [number, number]>(
      "delete from group_members where group_id = ? and account_id = ?",
    );
    const updateGroup = database.prepare<unknown, [number, number, number]>(
      "update groups set version = ?, updated_at = ? where id = ?",
    );
    const renameGroup = database.prepare<unknown, [Uint8Array, number]>("update groups set name = ? where id = ?");
    const insertChange = database.prepare<
      unknown,
      [number, number, number, number, number, number, Uint8Array, Uint8Array, Uint8Array | null, number]
    >(
      `insert into group_changes (group_id, version, op, actor_account, actor_device, client_id, accounts, recipients, name, created_at)
       values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const trimChanges = database.prepare<unknown, [number, number]>(
      "delete from group_changes where group_id = ? and version <= ?",
    );
    const logChange = (change: GroupChange) =>
      insertChange.run(
        change.groupId,
        change.version,
        change.op,
        change.actorAccount,
        change.actorDevice,
        change.clientId,
        packIds(change.accounts),
        packIds(change.recipients),
        change.name,
        change.createdAtMs,
      );
    this.#create = database.transaction((record: GroupRecord, change: GroupChange): boolean => {
      if (exists.get(record.id) !== null) return false;
      insertGroup.run(record.id, record.name, record.version, change.createdAtMs, change.createdAtMs);
      for (const member of record.members) upsertMember.run(record.id, member.account, member.admin ? 1 : 0, 1);
      logChange(change);
      return true;
    }).immediate;
    this.#apply = database.transaction((change: GroupChange, delta: GroupDelta, changesKept: number) => {
      for (const account of delta.remove) removeMember.run(change.groupId, account);
      for (const member of delta.upsert) {
        upsertMember.run(change.groupId, member.account, member.admin ? 1 : 0, change.version);
      }
      if (delta.name !== null) renameGroup.run(delta.name, change.groupId);
      updateGroup.run(change.version, change.createdAtMs, change.groupId);
      logChange(change);
      trimChanges.run(change.groupId, change.version - changesKept);
    }).immediate;
  }

  async create(record: GroupRecord, change: GroupChange): Promise<boolean> {
    return this.#create(record, change);
  }

  async get(groupId: number): Promise<GroupRecord | undefined> {
    const group = this.#group.get(groupId);
    if (group === null) return undefined;
    const members = this.#members.all(groupId).map((row) => ({ account: row.account_id, admin: row.admin === 1 }));
    return { id: groupId, name: group.name, version: group.version, members };
  }

  async apply(change: GroupChange, delta: GroupDelta, changesKept: number): Promise<void> {
    this.#apply(change, delta, changesKept);
  }

  async changeBy(
    groupId: number,
    actorAccount: number,
    actorDevice: number,
    clientId: number,
  ): Promise<GroupChange | undefined> {
    const row = this.#changeBy.get(groupId, actorAccount, actorDevice, clientId);
    if (row === null) return undefined;
    return {
      groupId,
      version: row.version,
      op: row.op,
      actorAccount: row.actor_account,
      actorDevice: row.actor_device,
      clientId: row.client_id,
      accounts: unpackIds(row.accounts),
      recipients: unpackIds(row.recipients),
      name: row.name,
      createdAtMs: row.created_at,
    };
  }
}

/** Big-endian uint32s, as the wire packs accounts (protocol/packed-ids.ts). */
function packIds(ids: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(ids.length * 4);
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < ids.length; index++) view.setUint32(index * 4, ids[index]!);
  return bytes;
}

function unpackIds(bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ids: number[] = [];
  for (let offset = 0; offset + 4 <= bytes.length; offset += 4) ids.push(view.getUint32(offset));
  return ids;
}
