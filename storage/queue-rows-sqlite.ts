import type { Database, Statement } from "bun:sqlite";
import type { DeviceKey } from "./device-store.ts";

// Deleting queue rows (and a removed device's read-receipt windows), shared by every store that does it (acks and sweep, device and account removal), so that the
// device counters and the shared payload refs are kept exact in one place. Every method runs synchronously and must
// be called inside the caller's transaction: its statements only make sense together.

export interface SweptRows {
  deleted: number;
  devices: DeviceKey[];
}

interface DeviceRelease {
  readonly account: number;
  readonly device: number;
  rows: number;
  bytes: number;
}

// A map key for a device. Two uint32 ids do not fit together in a safe integer, hence text.
export function deviceKeyText(account: number, device: number): string {
  return `${account}/${device}`;
}

export class SqliteQueueRows {
  readonly #deleteUpTo: Statement<unknown, [number, number, number]>;
  readonly #deleteDevice: Statement<unknown, [number, number]>;
  readonly #deleteAccount: Statement<unknown, [number]>;
  readonly #deleteCreatedBefore: Statement<unknown, [number, number]>;
  readonly #subtractFromDevice: Statement<unknown, [number, number, number, number]>;
  readonly #releaseMessage: Statement<{ refs: number }, [number, number]>;
  readonly #deleteMessage: Statement<unknown, [number]>;
  readonly #deleteDeviceWindows: Statement<unknown, [number, number]>;
  readonly #deleteAccountWindows: Statement<unknown, [number]>;

  constructor(database: Database) {
    this.#deleteUpTo = database.prepare(
      "delete from queue where account_id = ? and device_id = ? and seq <= ? returning message_id, bytes",
    );
    this.#deleteDevice = database.prepare(
      "delete from queue where account_id = ? and device_id = ? returning message_id",
    );
    this.#deleteAccount = database.prepare("delete from queue where account_id = ? returning message_id");
    // The subquery walks the created_at index oldest first and stops at the limit; the delete then finds each row
    // by its primary key.
    this.#deleteCreatedBefore = database.prepare(
      `delete from queue where (account_id, device_id, seq) in (
         select account_id, device_id, seq from queue where created_at < ? order by created_at limit ?)
       returning account_id, device_id, message_id, bytes`,
    );
    this.#subtractFromDevice = database.prepare(
      "update devices set queue_rows = queue_rows - ?, queue_bytes = queue_bytes - ? where account_id = ? and device_id = ?",
    );
    this.#releaseMessage = database.prepare("update messages set refs = refs - ? where id = ? returning refs");
    this.#deleteMessage = database.prepare("delete from messages where id = ?");
    this.#deleteDeviceWindows = database.prepare(
      "delete from read_receipt_windows where account_id = ? and device_id = ?",
    );
    this.#deleteAccountWindows = database.prepare("delete from read_receipt_windows where account_id = ?");
  }

  // Cumulative acknowledgement: deletes the device's rows with seq <= uptoSeq.
  deleteUpTo(account: number, device: number, uptoSeq: number): void {
    const deleted = this.#deleteUpTo.values(account, device, uptoSeq);
    if (deleted.length === 0) return;
    const messageRefs = new Map<number, number>();
    let bytes = 0;
    for (const [messageId, rowBytes] of deleted) {
      bytes += rowBytes as number;
      if (messageId !== null) countRef(messageRefs, messageId as number);
    }
    this.#subtractFromDevice.run(deleted.length, bytes, account, device);
    this.#releaseMessages(messageRefs);
  }

  // Deletes the whole queue of a device that is about to be removed, so its counters are left as they are.
  deleteDevice(account: number, device: number): void {
    this.#releaseMessages(collectRefs(this.#deleteDevice.values(account, device)));
    this.#deleteDeviceWindows.run(account, device);
  }

  // Deletes the queues of every device of an account that is about to be removed.
  deleteAccount(account: number): void {
    this.#releaseMessages(collectRefs(this.#deleteAccount.values(account)));
    this.#deleteAccountWindows.run(account);
  }

  // Retention: deletes at most `limit` rows created before `beforeMs`, oldest first.
  deleteCreatedBefore(beforeMs: number, limit: number): SweptRows {
    // SQLite reads a negative limit as "no limit": refuse it here rather than sweep everything in one go.
    if (limit <= 0) return { deleted: 0, devices: [] };
    const deleted = this.#deleteCreatedBefore.values(beforeMs, limit);
    const devices = new Map<string, DeviceRelease>();
    const messageRefs = new Map<number, number>();
    for (const [account, device, messageId, rowBytes] of deleted) {
      const key = deviceKeyText(account as number, device as number);
      let release = devices.get(key);
      if (release === undefined) {
        release = { account: account as number, device: device as number, rows: 0, bytes: 0 };
        devices.set(key, release);
      }
      release.rows += 1;
      release.bytes += rowBytes as number;
      if (messageId !== null) countRef(messageRefs, messageId as number);
    }
    for (const release of devices.values()) {
      this.#subtractFromDevice.run(release.rows, release.bytes, release.account, release.device);
    }
    this.#releaseMessages(messageRefs);
    return {
      deleted: deleted.length,
      devices: Array.from(devices.values(), ({ account, device }) => ({ account, device })),
    };
  }

  #releaseMessages(messageRefs: ReadonlyMap<number, number>): void {
    for (const [messageId, refs] of messageRefs) {
      const released = this.#releaseMessage.get(refs, messageId);
      // A queue row pointed at this payload, so it must exist; the refs >= 0 check in the schema catches the rest.
      if (released === null) throw new Error(`bug: queue row points at missing message ${messageId}`);
      if (released.refs === 0) this.#deleteMessage.run(messageId);
    }
  }
}

function countRef(messageRefs: Map<number, number>, messageId: number): void {
  messageRefs.set(messageId, (messageRefs.get(messageId) ?? 0) + 1);
}

function collectRefs(deleted: ReadonlyArray<ReadonlyArray<unknown>>): Map<number, number> {
  const messageRefs = new Map<number, number>();
  for (const [messageId] of deleted) {
    if (messageId !== null) countRef(messageRefs, messageId as number);
  }
  return messageRefs;
}
