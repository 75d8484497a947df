import type { Database, Statement } from "bun:sqlite";
import { clientIdBytes, packClientIds, unpackClientIds } from "./client-id-list.ts";
import type { DeviceKey } from "./device-store.ts";
import { deviceKeyText, type SqliteQueueRows, type SweptRows } from "./queue-rows-sqlite.ts";
import {
  type ClientIdWindow,
  groupEventBytes,
  groupReceiptBytes,
  type QueueBatch,
  type QueueEntry,
  type QueueStore,
  type ReadReceiptWindow,
} from "./queue-store.ts";
import {
  type QueueTable,
  queueKindGroupEvent,
  queueKindGroupMessage,
  queueKindGroupReceipt,
  queueKindMessage,
  queueKindReceipt,
} from "./schema.ts";

// The hot paths (commit, read) run prepared statements, prepared once, inside bun:sqlite's synchronous transactions:
// no other work can interleave with a batch, and a batch costs no query compilation.

interface DeviceChange {
  readonly account: number;
  readonly device: number;
  rows: number;
  bytes: number;
  lastSeq: number;
  lastClientId: number;
  // Whether the device row exists; rows for a device that does not are skipped.
  exists: boolean;
}

/** A row as the read query returns it: the queue's columns, with `payload` resolved from `messages` when shared. */
type QueueRow = Pick<
  QueueTable,
  | "seq"
  | "kind"
  | "peer_account"
  | "peer_device"
  | "client_id"
  | "receipt_type"
  | "client_ids"
  | "sender_device"
  | "created_at"
  | "payload"
  | "group_id"
  | "group_version"
  | "group_op"
  | "group_accounts"
  | "part"
>;

type Recipient = QueueBatch["messages"][number]["recipients"][number];

export class SqliteQueueStore implements QueueStore {
  readonly #queueRows: SqliteQueueRows;
  readonly #totals: Statement<{ rows: number; bytes: number }, []>;
  readonly #changeDevice: Statement<unknown, [number, number, number, number, number, number]>;
  readonly #readClientIdWindow: Statement<
    { last_client_id: number; window: Uint8Array; updated_at: number },
    [number, number, number]
  >;
  readonly #writeClientIdWindow: Statement<unknown, [number, number, number, number, Uint8Array, number]>;
  readonly #insertMessage: Statement<unknown, [Uint8Array, number, number]>;
  readonly #insertInline: Statement<
    unknown,
    [number, number, number, number, number, number, number, Uint8Array, number]
  >;
  readonly #insertShared: Statement<unknown, [number, number, number, number, number, number, number, number, number]>;
  readonly #insertGroupInline: Statement<
    unknown,
    [number, number, number, number, number, number, number, Uint8Array, number, number, Uint8Array | null]
  >;
  readonly #insertGroupShared: Statement<
    unknown,
    [number, number, number, number, number, number, number, number, number, number, Uint8Array | null]
  >;
  readonly #insertGroupEvent: Statement<
    unknown,
    [number, number, number, number, number, number, Uint8Array | null, number, number, number, number, Uint8Array]
  >;
  readonly #insertGroupReceipt: Statement<
    unknown,
    [number, number, number, number, number, number, number, number, number, Uint8Array]
  >;
  readonly #insertReceipt: Statement<
    unknown,
    [number, number, number, number, number, number, Uint8Array, number, number, number]
  >;
  readonly #read: Statement<QueueRow, [number, number, number, number]>;
  readonly #peerDepth: Statement<{ rows: number; bytes: number }, [number, number, number]>;
  readonly #readWindow: Statement<
    { last_client_id: number; delivered: Uint8Array; read: Uint8Array; updated_at: number },
    [number, number, number, number]
  >;
  readonly #writeWindow: Statement<
    unknown,
    [number, number, number, number, number, Uint8Array, Uint8Array, number, number, number]
  >;
  readonly #commitTransaction: (batch: QueueBatch) => void;
  readonly #sweepTransaction: (beforeMs: number, limit: number) => SweptRows;

  constructor(database: Database, queueRows: SqliteQueueRows) {
    this.#queueRows = queueRows;
    // Read at every start, per partition: a prepared statement, so that a start needs no Kysely (kysely-lazy.ts).
    this.#totals = database.prepare(
      "select coalesce(sum(queue_rows), 0) as rows, coalesce(sum(queue_bytes), 0) as bytes from devices",
    );
    // The high-water marks take the max, so a late or repeated batch never lowers them.
    this.#changeDevice = database.prepare(
      `update devices set queue_rows = queue_rows + ?, queue_bytes = queue_bytes + ?,
         last_seq = max(last_seq, ?), last_client_id = max(last_client_id, ?)
       where account_id = ? and device_id = ?`,
    );
    this.#readClientIdWindow = database.prepare(
      `select last_client_id, window, updated_at from client_id_windows
       where account_id = ? and peer_account = ? and peer_device = ?`,
    );
    // Never moves a window back: a late batch with an older mark loses to the stored one.
    this.#writeClientIdWindow = database.prepare(
      `insert into client_id_windows (account_id, peer_account, peer_device, last_client_id, window, updated_at)
       values (?, ?, ?, ?, ?, ?)
       on conflict (account_id, peer_account, peer_device) do update
         set last_client_id = excluded.last_client_id, window = excluded.window, updated_at = excluded.updated_at
         where excluded.last_client_id >= client_id_windows.last_client_id`,
    );
    this.#insertMessage = database.prepare("insert into messages (payload, refs, created_at) values (?, ?, ?)");
    this.#insertInline = database.prepare(
      `insert into queue (account_id, device_id, seq, kind, peer_account, peer_device, client_id, created_at, payload, bytes)
       values (?, ?, ?, ${queueKindMessage}, ?, ?, ?, ?, ?, ?)`,
    );
    this.#insertShared = database.prepare(
      `insert into queue (account_id, device_id, seq, kind, peer_account, peer_device, client_id, created_at, message_id, bytes)
       values (?, ?, ?, ${queueKindMessage}, ?, ?, ?, ?, ?, ?)`,
    );
    this.#insertGroupInline = database.prepare(
      `insert into queue (account_id, device_id, seq, kind, peer_account, peer_device, client_id, created_at, payload, bytes, group_id, part)
       values (?, ?, ?, ${queueKindGroupMessage}, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#insertGroupShared = database.prepare(
      `insert into queue (account_id, device_id, seq, kind, peer_account, peer_device, client_id, created_at, message_id, bytes, group_id, part)
       values (?, ?, ?, ${queueKindGroupMessage}, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#insertGroupEvent = database.prepare(
      `insert into queue (account_id, device_id, seq, kind, peer_account, peer_device, created_at, payload, bytes, group_id, group_version, group_op, group_accounts)
       values (?, ?, ?, ${queueKindGroupEvent}, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#insertGroupReceipt = database.prepare(
      `insert into queue (account_id, device_id, seq, kind, peer_account, peer_device, receipt_type, sender_device, client_id, created_at, bytes, group_id, group_accounts)
       values (?, ?, ?, ${queueKindGroupReceipt}, 0, 0, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#insertReceipt = database.prepare(
      `insert into queue (account_id, device_id, seq, kind, peer_account, peer_device, receipt_type, client_ids, sender_device, created_at, bytes)
       values (?, ?, ?, ${queueKindReceipt}, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#read = database.prepare(
      `select q.seq, q.kind, q.peer_account, q.peer_device, q.client_id, q.receipt_type, q.client_ids, q.sender_device, q.created_at,
         coalesce(q.payload, m.payload) as payload, q.group_id, q.group_version, q.group_op, q.group_accounts, q.part
       from queue q left join messages m on m.id = q.message_id
       where q.account_id = ? and q.device_id = ? and q.seq > ?
       order by q.seq limit ?`,
    );
    this.#peerDepth = database.prepare(
      `select count(*) as rows, coalesce(sum(bytes), 0) as bytes from queue
       where account_id = ? and device_id = ? and peer_account = ?`,
    );
    this.#readWindow = database.prepare(
      `select last_client_id, delivered, read, updated_at from read_receipt_windows
       where account_id = ? and device_id = ? and peer_account = ? and peer_device = ?`,
    );
    // Only for a reader device that exists (the select yields no row otherwise), so a device removed after its
    // window changed is skipped rather than failing the batch on the foreign key.
    this.#writeWindow = database.prepare(
      `insert or replace into read_receipt_windows
         (account_id, device_id, peer_account, peer_device, last_client_id, delivered, read, updated_at)
       select ?, ?, ?, ?, ?, ?, ?, ? from devices where account_id = ? and device_id = ?`,
    );
    // Immediate: take the write lock when the transaction begins, so it cannot fail half way to upgrade its lock.
    this.#commitTransaction = database.transaction((batch: QueueBatch) => this.#write(batch)).immediate;
    this.#sweepTransaction = database.transaction((beforeMs: number, limit: number) =>
      queueRows.deleteCreatedBefore(beforeMs, limit),
    ).immediate;
  }

  async commit(batch: QueueBatch): Promise<void> {
    this.#commitTransaction(batch);
  }

  async read(key: DeviceKey, afterSeq: number, limit: number): Promise<QueueEntry[]> {
    // SQLite reads a negative limit as "no limit".
    if (limit <= 0) return [];
    return this.#read.all(key.account, key.device, afterSeq, limit).map(toEntry);
  }

  async sweep(beforeMs: number, limit: number): Promise<{ deleted: number; devices: DeviceKey[] }> {
    return this.#sweepTransaction(beforeMs, limit);
  }

  async totals(): Promise<{ rows: number; bytes: number }> {
    const totals = this.#totals.get();
    return { rows: totals?.rows ?? 0, bytes: totals?.bytes ?? 0 };
  }

  async peerDepth(key: DeviceKey, peerAccount: number): Promise<{ rows: number; bytes: number }> {
    const depth = this.#peerDepth.get(key.account, key.device, peerAccount);
    return { rows: depth?.rows ?? 0, bytes: depth?.bytes ?? 0 };
  }

  async readReceiptWindows(
    key: DeviceKey,
    peers: ReadonlyArray<{ account: number; device: number }>,
  ): Promise<ReadReceiptWindow[]> {
    const found: ReadReceiptWindow[] = [];
    for (const peer of peers) {
      const row = this.#readWindow.get(key.account, key.device, peer.account, peer.device);
      if (row === null) continue;
      found.push({
        account: key.account,
        device: key.device,
        peerAccount: peer.account,
        peerDevice: peer.device,
        lastClientId: row.last_client_id,
        delivered: row.delivered,
        read: row.read,
        updatedAtMs: row.updated_at,
      });
    }
    return found;
  }

  async clientIdWindows(
    account: number,
    peers: ReadonlyArray<{ account: number; device: number }>,
  ): Promise<ClientIdWindow[]> {
    const found: ClientIdWindow[] = [];
    for (const peer of peers) {
      const row = this.#readClientIdWindow.get(account, peer.account, peer.device);
      if (row === null) continue;
      found.push({
        account,
        peerAccount: peer.account,
        peerDevice: peer.device,
        lastClientId: row.last_client_id,
        window: row.window,
        updatedAtMs: row.updated_at,
      });
    }
    return found;
  }

  // A group message in this partition: the shared payload once (inline when one device gets it), each row with its
  // device's part. Its bytes in the quota: the payload and the device's part.
  #writeGroupMessage(message: QueueBatch["messages"][number], recipients: readonly Recipient[]): void {
    const { senderAccount, senderDevice, clientId, createdAtMs, payload } = message;
    const groupId = message.groupId!;
    if (recipients.length === 1) {
      const { account, device, seq, part } = recipients[0]!;
      const bytes = payload.byteLength + (part?.byteLength ?? 0);
      this.#insertGroupInline.run(
        account,
        device,
        seq,
        senderAccount,
        senderDevice,
        clientId,
        createdAtMs,
        payload,
        bytes,
        groupId,
        part ?? null,
      );
      return;
    }
    if (recipients.length === 0) return;
    const messageId = Number(this.#insertMessage.run(payload, recipients.length, createdAtMs).lastInsertRowid);
    for (const { account, device, seq, part } of recipients) {
      const bytes = payload.byteLength + (part?.byteLength ?? 0);
      this.#insertGroupShared.run(
        account,
        device,
        seq,
        senderAccount,
        senderDevice,
        clientId,
        createdAtMs,
        messageId,
        bytes,
        groupId,
        part ?? null,
      );
    }
  }

  // Inserts first, then acks, so an ack covers rows of its own batch. Each device's counters and marks are updated
  // once per batch, before the inserts, which also tells which recipient devices still exist.
  #write(batch: QueueBatch): void {
    const changes = new Map<string, DeviceChange>();
    const change = (account: number, device: number): DeviceChange => {
      const key = deviceKeyText(account, device);
      let found = changes.get(key);
      if (found === undefined) {
        found = { account, device, rows: 0, bytes: 0, lastSeq: 0, lastClientId: 0, exists: false };
        changes.set(key, found);
      }
      return found;
    };

    for (const message of batch.messages) {
      for (const recipient of message.recipients) {
        const recipientChange = change(recipient.account, recipient.device);
        recipientChange.rows += 1;
        recipientChange.bytes += message.payload.byteLength + (recipient.part?.byteLength ?? 0);
        recipientChange.lastSeq = Math.max(recipientChange.lastSeq, recipient.seq);
      }
      const senderChange = change(message.senderAccount, message.senderDevice);
      senderChange.lastClientId = Math.max(senderChange.lastClientId, message.clientId);
    }
    for (const receipt of batch.receipts) {
      const receiptChange = change(receipt.account, receipt.device);
      receiptChange.rows += 1;
      receiptChange.bytes += receipt.clientIds.length * clientIdBytes;
      receiptChange.lastSeq = Math.max(receiptChange.lastSeq, receipt.seq);
    }
    for (const event of batch.groupEvents ?? []) {
      const eventChange = change(event.account, event.device);
      eventChange.rows += 1;
      eventChange.bytes += groupEventBytes(event.accounts.length, event.name);
      eventChange.lastSeq = Math.max(eventChange.lastSeq, event.seq);
    }
    for (const receipt of batch.groupReceipts ?? []) {
      const receiptChange = change(receipt.account, receipt.device);
      receiptChange.rows += 1;
      receiptChange.bytes += groupReceiptBytes(receipt.readers.length);
      receiptChange.lastSeq = Math.max(receiptChange.lastSeq, receipt.seq);
    }
    for (const sequence of batch.sequences) {
      const sequenceChange = change(sequence.account, sequence.device);
      sequenceChange.lastSeq = Math.max(sequenceChange.lastSeq, sequence.lastSeq);
    }
    for (const clientId of batch.clientIds) {
      const clientIdChange = change(clientId.account, clientId.device);
      clientIdChange.lastClientId = Math.max(clientIdChange.lastClientId, clientId.lastClientId);
    }

    for (const deviceChange of changes.values()) {
      const { account, device, rows, bytes, lastSeq, lastClientId } = deviceChange;
      deviceChange.exists = this.#changeDevice.run(rows, bytes, lastSeq, lastClientId, account, device).changes > 0;
    }

    for (const window of batch.clientIdWindows ?? []) {
      const { account, peerAccount, peerDevice, lastClientId, updatedAtMs } = window;
      this.#writeClientIdWindow.run(account, peerAccount, peerDevice, lastClientId, window.window, updatedAtMs);
    }

    const exists = (recipient: Recipient): boolean =>
      changes.get(deviceKeyText(recipient.account, recipient.device))!.exists;
    for (const message of batch.messages) {
      const { senderAccount, senderDevice, clientId, createdAtMs, payload } = message;
      const recipients = message.recipients.filter(exists);
      const bytes = payload.byteLength;
      if (message.groupId !== undefined) {
        this.#writeGroupMessage(message, recipients);
        continue;
      }
      if (recipients.length === 1) {
        const { account, device, seq } = recipients[0]!;
        this.#insertInline.run(
          account,
          device,
          seq,
          senderAccount,
          senderDevice,
          clientId,
          createdAtMs,
          payload,
          bytes,
        );
      } else if (recipients.length > 1) {
        // Fan-out: one copy of the payload, one reference per recipient row.
        const messageId = Number(this.#insertMessage.run(payload, recipients.length, createdAtMs).lastInsertRowid);
        for (const { account, device, seq } of recipients) {
          this.#insertShared.run(
            account,
            device,
            seq,
            senderAccount,
            senderDevice,
            clientId,
            createdAtMs,
            messageId,
            bytes,
          );
        }
      }
    }
    for (const receipt of batch.receipts) {
      const { account, device, seq, receiptType, peerAccount, peerDevice, senderDevice, clientIds, createdAtMs } =
        receipt;
      if (!changes.get(deviceKeyText(account, device))!.exists) continue;
      const packed = packClientIds(clientIds);
      this.#insertReceipt.run(
        account,
        device,
        seq,
        peerAccount,
        peerDevice,
        receiptType,
        packed,
        senderDevice,
        createdAtMs,
        packed.byteLength,
      );
    }

    // An event's rows (one per member device) share one accounts list: packed once.
    let packedFor: readonly number[] | null = null;
    let packed: Uint8Array = new Uint8Array(0);
    for (const event of batch.groupEvents ?? []) {
      if (!changes.get(deviceKeyText(event.account, event.device))!.exists) continue;
      if (event.accounts !== packedFor) {
        packedFor = event.accounts;
        packed = packAccountsBigEndian(event.accounts);
      }
      this.#insertGroupEvent.run(
        event.account,
        event.device,
        event.seq,
        event.actorAccount,
        event.actorDevice,
        event.createdAtMs,
        event.name,
        groupEventBytes(event.accounts.length, event.name),
        event.groupId,
        event.version,
        event.op,
        packed,
      );
    }
    for (const receipt of batch.groupReceipts ?? []) {
      if (!changes.get(deviceKeyText(receipt.account, receipt.device))!.exists) continue;
      this.#insertGroupReceipt.run(
        receipt.account,
        receipt.device,
        receipt.seq,
        receipt.receiptType,
        receipt.senderDevice,
        receipt.clientId,
        receipt.createdAtMs,
        groupReceiptBytes(receipt.readers.length),
        receipt.groupId,
        packDevicesBigEndian(receipt.readers),
      );
    }
    for (const ack of batch.acks) {
      this.#queueRows.deleteUpTo(ack.account, ack.device, ack.uptoSeq);
    }
    for (const window of batch.readReceiptWindows ?? []) {
      const { account, device, peerAccount, peerDevice, lastClientId, delivered, read, updatedAtMs } = window;
      this.#writeWindow.run(
        account,
        device,
        peerAccount,
        peerDevice,
        lastClientId,
        delivered,
        read,
        updatedAtMs,
        account,
        device,
      );
    }
  }
}

/** Accounts packed as big-endian uint32, as the wire packs them (protocol/packed-ids.ts). */
function packAccountsBigEndian(accounts: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(accounts.length * 4);
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < accounts.length; index++) view.setUint32(index * 4, accounts[index]!);
  return bytes;
}

function packDevicesBigEndian(devices: ReadonlyArray<{ account: number; device: number }>): Uint8Array {
  const bytes = new Uint8Array(devices.length * 8);
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < devices.length; index++) {
    view.setUint32(index * 8, devices[index]!.account);
    view.setUint32(index * 8 + 4, devices[index]!.device);
  }
  return bytes;
}

function unpackDevicesBigEndian(bytes: Uint8Array): Array<{ account: number; device: number }> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const devices: Array<{ account: number; device: number }> = [];
  for (let offset = 0; offset + 8 <= bytes.length; offset += 8) {
    devices.push({ account: view.getUint32(offset), device: view.getUint32(offset + 4) });
  }
  return devices;
}

function unpackAccountsBigEndian(bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const accounts: number[] = [];
  for (let offset = 0; offset + 4 <= bytes.length; offset += 4) accounts.push(view.getUint32(offset));
  return accounts;
}

function toEntry(row: QueueRow): QueueEntry {
  if (row.kind === queueKindGroupMessage) {
    if (row.payload === null || row.client_id === null || row.group_id === null) {
      throw new Error(`bug: group message row ${row.seq} has no payload, client id or group`);
    }
    return {
      kind: "message",
      seq: row.seq,
      senderAccount: row.peer_account,
      senderDevice: row.peer_device,
      clientId: row.client_id,
      createdAtMs: row.created_at,
      payload: row.payload,
      groupId: row.group_id,
      part: row.part,
    };
  }
  if (row.kind === queueKindGroupReceipt) {
    if (
      row.group_id === null ||
      row.group_accounts === null ||
      row.receipt_type === null ||
      row.sender_device === null ||
      row.client_id === null
    ) {
      throw new Error(`bug: group receipt row ${row.seq} has no group, readers, type, sender device or client id`);
    }
    return {
      kind: "groupReceipt",
      seq: row.seq,
      receiptType: row.receipt_type,
      groupId: row.group_id,
      senderDevice: row.sender_device,
      clientId: row.client_id,
      readers: unpackDevicesBigEndian(row.group_accounts),
      createdAtMs: row.created_at,
    };
  }
  if (row.kind === queueKindGroupEvent) {
    if (row.group_id === null || row.group_version === null || row.group_op === null || row.group_accounts === null) {
      throw new Error(`bug: group event row ${row.seq} has no group, version, op or accounts`);
    }
    return {
      kind: "groupEvent",
      seq: row.seq,
      groupId: row.group_id,
      version: row.group_version,
      op: row.group_op,
      peerAccount: row.peer_account,
      peerDevice: row.peer_device,
      accounts: unpackAccountsBigEndian(row.group_accounts),
      name: row.payload,
      createdAtMs: row.created_at,
    };
  }
  if (row.kind === queueKindMessage) {
    // Exactly one of payload and message_id is set, and a referenced payload exists while refs > 0.
    if (row.payload === null || row.client_id === null) {
      throw new Error(`bug: message row ${row.seq} has no payload or client id`);
    }
    return {
      kind: "message",
      seq: row.seq,
      senderAccount: row.peer_account,
      senderDevice: row.peer_device,
      clientId: row.client_id,
      createdAtMs: row.created_at,
      payload: row.payload,
    };
  }
  if (row.kind === queueKindReceipt) {
    if (row.receipt_type === null || row.client_ids === null || row.sender_device === null) {
      throw new Error(`bug: receipt row ${row.seq} has no type or client ids`);
    }
    return {
      kind: "receipt",
      seq: row.seq,
      receiptType: row.receipt_type,
      peerAccount: row.peer_account,
      peerDevice: row.peer_device,
      senderDevice: row.sender_device,
      clientIds: unpackClientIds(row.client_ids),
      createdAtMs: row.created_at,
    };
  }
  throw new Error(`bug: queue row ${row.seq} has unknown kind ${row.kind}`);
}
