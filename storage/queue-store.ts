import type { DeviceKey } from "./device-store.ts";

// One entry of a device's queue, in sequence order. A receipt's peer is the device that produced it.
export type QueueEntry =
  | {
      kind: "message";
      seq: number;
      senderAccount: number;
      senderDevice: number;
      clientId: number;
      createdAtMs: number;
      payload: Uint8Array;
      // A group message (PROTOCOL.md section 18): its group, and this device's own part (or null).
      groupId?: number;
      part?: Uint8Array | null;
    }
  | {
      // A group membership event; peer is the actor.
      kind: "groupEvent";
      seq: number;
      groupId: number;
      version: number;
      op: number;
      peerAccount: number;
      peerDevice: number;
      accounts: number[];
      name: Uint8Array | null;
      createdAtMs: number;
    }
  | {
      // Delivered receipts of one group message from several member devices (readers).
      kind: "groupReceipt";
      seq: number;
      receiptType: number;
      groupId: number;
      senderDevice: number;
      clientId: number;
      readers: Array<{ account: number; device: number }>;
      createdAtMs: number;
    }
  | {
      kind: "receipt";
      seq: number;
      receiptType: number;
      peerAccount: number;
      peerDevice: number;
      // The device of the original sender whose client ids these are (the receipt goes to all its account's devices).
      senderDevice: number;
      clientIds: number[];
      createdAtMs: number;
    };

// Everything one group commit writes. The server assigns sequences; the store only records them.
export interface QueueBatch {
  // A message with its recipients; the payload is stored inline when there is one recipient, once in `messages`
  // otherwise. A recipient device that no longer exists (removed after its sequence was assigned) is skipped: its
  // queue is gone, and one such race must not fail the whole batch.
  messages: Array<{
    senderAccount: number;
    senderDevice: number;
    clientId: number;
    createdAtMs: number;
    payload: Uint8Array;
    // A group message: the payload is the shared one (stored once per partition), each recipient may have a part.
    groupId?: number;
    recipients: Array<{ account: number; device: number; seq: number; part?: Uint8Array | null }>;
  }>;
  // Group membership events, one row per member device. Optional: absent means none.
  groupEvents?: GroupEventRow[];
  // Gathered group receipts, one row per device of the sender account. Optional: absent means none.
  groupReceipts?: GroupReceiptRow[];
  receipts: Array<{
    account: number;
    device: number;
    seq: number;
    receiptType: number;
    peerAccount: number;
    peerDevice: number;
    senderDevice: number;
    clientIds: number[];
    createdAtMs: number;
  }>;
  // Cumulative acknowledgements: delete every row of that device with seq <= uptoSeq. Applied after the inserts of
  // the same batch, so an ack covers rows the batch itself adds.
  acks: Array<{ account: number; device: number; uptoSeq: number }>;
  // High-water marks to persist (max with what is stored; never lowered). Sequences whose rows were cancelled before
  // commit still advance last_seq. The store also raises last_seq to every seq it inserts, and last_client_id to the
  // client id of every message it stores, so the marks never fall behind the rows.
  sequences: Array<{ account: number; device: number; lastSeq: number }>;
  // The highest client id each sender device has used, raised (never lowered) in the sender device's own row: told to
  // the device in welcome. A message also raises its sender's mark when the sender's row is in the same store.
  clientIds: Array<{ account: number; device: number; lastClientId: number }>;
  // Which recent client ids of a sender device were stored for a recipient account (insert or replace; written only
  // when lastClientId is at least the stored one): a resend is recognised by them. Optional: absent means none.
  clientIdWindows?: ClientIdWindow[];
  // Read-receipt windows to store (insert or replace), each the whole window of one (reader device, sender device)
  // pair. Rows of a reader device that does not exist are skipped. Optional: absent means none.
  readReceiptWindows?: ReadReceiptWindow[];
}

// One membership event for one device's queue (its bytes in the quota: the named accounts and the name).
export interface GroupEventRow {
  account: number;
  device: number;
  seq: number;
  groupId: number;
  version: number;
  op: number;
  actorAccount: number;
  actorDevice: number;
  readonly accounts: readonly number[];
  name: Uint8Array | null;
  createdAtMs: number;
}

export interface GroupReceiptRow {
  account: number;
  device: number;
  seq: number;
  receiptType: number;
  groupId: number;
  senderDevice: number;
  clientId: number;
  readers: Array<{ account: number; device: number }>;
  createdAtMs: number;
}

/** The bytes a gathered group receipt counts in its device's quota: 8 per reader. */
export function groupReceiptBytes(readers: number): number {
  return readers * 8;
}

/** The bytes a membership event counts in its device's quota. */
export function groupEventBytes(accounts: number, name: Uint8Array | null): number {
  return accounts * 4 + (name?.byteLength ?? 0);
}

// Which recent client ids of one sender device (peer) were stored for one recipient account: bit k of `window` is
// client id lastClientId - k (8 bytes, little-endian).
export interface ClientIdWindow {
  account: number;
  peerAccount: number;
  peerDevice: number;
  lastClientId: number;
  window: Uint8Array;
  updatedAtMs: number;
}

// Which recent client ids of one sender device were delivered to one reader device, and which of those the reader
// already receipted as read: bit k of each is client id lastClientId - k (little-endian bytes).
export interface ReadReceiptWindow {
  account: number;
  device: number;
  peerAccount: number;
  peerDevice: number;
  lastClientId: number;
  delivered: Uint8Array;
  read: Uint8Array;
  updatedAtMs: number;
}

export interface QueueStore {
  // Writes the whole batch in ONE transaction (all or nothing), keeping queue_rows/queue_bytes and messages.refs
  // exact. A duplicate (account, device, seq) fails the whole batch.
  commit(batch: QueueBatch): Promise<void>;
  // Entries with seq > afterSeq, ascending, at most `limit` (none when limit <= 0).
  read(key: DeviceKey, afterSeq: number, limit: number): Promise<QueueEntry[]>;
  // Deletes at most `limit` rows created before `beforeMs` (retention), keeping counters and refs exact; returns the
  // rows deleted and the devices touched (each once). Fewer than `limit` deleted means none is left. Oldest first
  // within one account's queues; a partitioned store sweeps its partitions in turn.
  sweep(beforeMs: number, limit: number): Promise<{ deleted: number; devices: DeviceKey[] }>;
  // The depth of all queues together, from the per-device counters.
  totals(): Promise<{ rows: number; bytes: number }>;
  // Entries (and their bytes) in one device's queue whose peer is `peerAccount` (the sender of a message, the author
  // of a receipt): a sender's share of that queue. Reads the device's queue; called only for deep queues.
  peerDepth(key: DeviceKey, peerAccount: number): Promise<{ rows: number; bytes: number }>;
  // The stored read-receipt windows of a reader device for the given sender devices (absent pairs are left out).
  readReceiptWindows(
    key: DeviceKey,
    peers: ReadonlyArray<{ account: number; device: number }>,
  ): Promise<ReadReceiptWindow[]>;
  // The stored client-id windows of a recipient account for the given sender devices (absent pairs are left out).
  clientIdWindows(
    account: number,
    peers: ReadonlyArray<{ account: number; device: number }>,
  ): Promise<ClientIdWindow[]>;
}
