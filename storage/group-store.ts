// Groups (PROTOCOL.md section 18): membership, the opaque name blob and the recent change log of each group, in the
// partition its id hashes to. Only that partition's owner reads or writes them (it decides the order of a group's
// changes and sends), so the store needs no locking beyond its transactions.

export interface GroupMember {
  account: number;
  admin: boolean;
}

export interface GroupRecord {
  id: number;
  name: Uint8Array;
  version: number;
  members: GroupMember[];
}

/** One membership change, as its event reaches the members and as the log keeps it. */
export interface GroupChange {
  groupId: number;
  version: number;
  op: number;
  actorAccount: number;
  actorDevice: number;
  clientId: number;
  /** The accounts the change names. */
  accounts: number[];
  /** Every account whose devices get the event: the members after the change and those it removed. */
  recipients: number[];
  name: Uint8Array | null;
  createdAtMs: number;
}

/** What a change does to the member rows (applied in the same transaction as its log entry). */
export interface GroupDelta {
  /** Members to add (or whose admin flag to set). */
  upsert: GroupMember[];
  remove: number[];
  /** The new name (rename). */
  name: Uint8Array | null;
}

export interface GroupStore {
  // Creates the group with its first members and its create change, in one transaction. False when the id is taken.
  create(record: GroupRecord, change: GroupChange): Promise<boolean>;
  get(groupId: number): Promise<GroupRecord | undefined>;
  // Applies a change: the delta, version = change.version, the log entry, and trims the log to `changesKept`.
  apply(change: GroupChange, delta: GroupDelta, changesKept: number): Promise<void>;
  // The logged change a device made with this client id, if the log still has it (a resend is recognised by it).
  changeBy(
    groupId: number,
    actorAccount: number,
    actorDevice: number,
    clientId: number,
  ): Promise<GroupChange | undefined>;
}
