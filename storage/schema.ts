import type { Generated } from "kysely";

// Kysely's view of the tables. Column names are the database's (snake_case); the stores map rows to the camelCase
// records of their interfaces. Times are milliseconds since the epoch; ids are positive integers below 2^32.

export interface AccountsTable {
  id: Generated<number>;
  handle: string;
  created_at: number;
  // The id the next device of this account gets. Device ids are never reused, so a removed device's id cannot be
  // mistaken for a new device's by a peer that still holds it.
  next_device_id: number;
}

export interface DevicesTable {
  account_id: number;
  device_id: number;
  // The 32-byte Ed25519 public key. No secret is ever stored.
  public_key: Uint8Array;
  created_at: number;
  last_seen_at: number;
  // The highest queue sequence ever assigned to this device, so sequences are never reused after a restart.
  last_seq: Generated<number>;
  // The highest client id this device has had stored as a sender, so a retried send is recognised after a restart.
  last_client_id: Generated<number>;
  // Which of the 64 client ids up to last_client_id were stored (bit k: last_client_id - k), 8 bytes little-endian;
  // null before the first. Lets a resend of a refused id be told from a resend of a stored one.
  client_id_window: Uint8Array | null;
  // The current depth of this device's queue, kept exact by every write to the queue, so quotas cost no scan.
  queue_rows: Generated<number>;
  queue_bytes: Generated<number>;
}

export const queueKindMessage = 0;
export const queueKindReceipt = 1;
// Groups (migrations 0006 and 0007): a group message, and a membership event.
export const queueKindGroupMessage = 2;
export const queueKindGroupEvent = 3;
// Delivered receipts of one group message from many member devices (group_accounts: the readers, 8-byte pairs).
export const queueKindGroupReceipt = 4;

export interface QueueTable {
  account_id: number;
  device_id: number;
  seq: number;
  // queueKindMessage or queueKindReceipt.
  kind: number;
  // For a message, the sender; for a receipt, the device that produced it.
  peer_account: number;
  peer_device: number;
  // Messages only: the sender's client id.
  client_id: number | null;
  // Receipts only: the receipt type and the client ids it covers, packed as little-endian uint32.
  receipt_type: number | null;
  client_ids: Uint8Array | null;
  // Receipts only: the original sender's device, whose client ids `client_ids` are.
  sender_device: number | null;
  created_at: number;
  // Exactly one of payload and message_id is set for a message: the payload inline when it went to one device, or a
  // reference to its single shared copy in `messages` when it went to several.
  payload: Uint8Array | null;
  message_id: number | null;
  // The bytes this row holds for the quota counters: the payload length, or the packed client ids of a receipt.
  bytes: number;
  // Group rows only (migration 0007): the group; for an event its version, operation and the accounts it names
  // (packed big-endian uint32); for a message this device's own part, or null.
  group_id: number | null;
  group_version: number | null;
  group_op: number | null;
  group_accounts: Uint8Array | null;
  part: Uint8Array | null;
}

export interface GroupsTable {
  id: number;
  name: Uint8Array;
  version: number;
  created_at: number;
  updated_at: number;
}

export interface GroupMembersTable {
  group_id: number;
  account_id: number;
  admin: number;
  joined_version: number;
}

export interface GroupChangesTable {
  group_id: number;
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

export interface MessagesTable {
  id: Generated<number>;
  payload: Uint8Array;
  // How many queue rows point at this payload; the row is deleted when it reaches 0.
  refs: number;
  created_at: number;
}

// Invite and link codes are kept only as their keyed hash (storage/code-hasher.ts: HMAC-SHA-256, 32 bytes), so a copy
// of the database holds no usable code.
export interface InvitesTable {
  code_hash: Uint8Array;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  used_by: number | null;
}

export interface LinkCodesTable {
  code_hash: Uint8Array;
  account_id: number;
  created_at: number;
  expires_at: number;
}

// Per reader device and sender device: which recent client ids were delivered to the reader, and which of those it
// already sent a read receipt for (see migrations/0003-read-receipt-windows.ts).
export interface ReadReceiptWindowsTable {
  account_id: number;
  device_id: number;
  peer_account: number;
  peer_device: number;
  last_client_id: number;
  delivered: Uint8Array;
  read: Uint8Array;
  updated_at: number;
}

// Per recipient account and sender device: which recent client ids of that sender were stored for that account, so a
// resend is recognised in the partition that stores the message (see migrations/0004-client-id-windows.ts).
export interface ClientIdWindowsTable {
  account_id: number;
  peer_account: number;
  peer_device: number;
  last_client_id: number;
  window: Uint8Array;
  updated_at: number;
}

export interface StorageSchema {
  accounts: AccountsTable;
  devices: DevicesTable;
  queue: QueueTable;
  messages: MessagesTable;
  invites: InvitesTable;
  link_codes: LinkCodesTable;
  read_receipt_windows: ReadReceiptWindowsTable;
  client_id_windows: ClientIdWindowsTable;
  groups: GroupsTable;
  group_members: GroupMembersTable;
  group_changes: GroupChangesTable;
}
