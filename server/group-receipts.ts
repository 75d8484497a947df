// Delivered and read receipts of group messages, gathered (PROTOCOL.md section 18, Receipts). A message to 1,000
// members would otherwise cost its sender 1,000 deliverReceipt frames of each type; instead the owner of the sender's
// account holds the receipts of each message and type for groupReceiptHoldMs (or until groupReceiptReadersMax readers)
// and queues them as one groupReceipt entry for each device of the sender, through the same durable queues as any
// receipt. Delivered receipts come from the members' acks; read receipts from `receipt` stanzas naming the group. Receipts are
// best effort (PROTOCOL.md section 11): a hold lost with its process is lost, as a receipt between two partitions is.

import type { ReceiptTypeValue } from "../protocol/index.ts";
import { groupReceiptHoldMs, groupReceiptHoldsMax, groupReceiptReadersMax } from "../protocol/limits.ts";
import { groupReceiptBytes } from "../storage/index.ts";
import type { ServerContext } from "./context.ts";
import type { Delivery } from "./delivery.ts";
import type { DeviceState } from "./device-state.ts";
import { groupReceiptLiveEntry } from "./group-entries.ts";

/** One group message acknowledged (delivered) or reported read by a member, as the reader's owner reports it. */
export interface GroupDelivered {
  readonly type: ReceiptTypeValue;
  readonly groupId: number;
  readonly senderAccount: number;
  readonly senderDevice: number;
  readonly clientId: number;
}

interface Hold {
  readonly type: ReceiptTypeValue;
  readonly groupId: number;
  readonly senderAccount: number;
  readonly senderDevice: number;
  readonly clientId: number;
  readonly readers: Array<{ account: number; device: number }>;
  readonly createdAtMs: number;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** Attempts to take the sender's device states in one turn before the receipt is dropped (busy). */
const stateTakeAttemptsMax = 4;

export class GroupReceipts {
  private readonly holds = new Map<string, Hold>();
  /** Receipts queued as groupReceipt entries, and the readers they named (for metrics and tests). */
  entriesQueued = 0;
  readersQueued = 0;

  constructor(
    private readonly context: ServerContext,
    private readonly delivery: Delivery,
  ) {}

  /** A reader device acknowledged or read these group messages (on the reader's owner). */
  delivered(readerAccount: number, readerDevice: number, entries: readonly GroupDelivered[]): void {
    const routing = this.context.routing;
    const reader = { account: readerAccount, device: readerDevice };
    for (const entry of entries) {
      if (routing !== null && !routing.owns(entry.senderAccount)) routing.groupReceipt(entry, reader);
      else this.add(entry, reader);
    }
  }

  /** Adds a reader to the hold of its message (on the owner of the sender's account). */
  add(entry: GroupDelivered, reader: { account: number; device: number }): void {
    const key = `${entry.type}:${entry.senderAccount}:${entry.senderDevice}:${entry.clientId}`;
    let hold = this.holds.get(key);
    if (hold === undefined) {
      if (this.holds.size >= groupReceiptHoldsMax) {
        const oldest = this.holds.keys().next().value;
        if (oldest !== undefined) this.flush(oldest);
      }
      hold = {
        ...entry,
        readers: [],
        createdAtMs: this.context.now(),
        timer: setTimeout(() => this.flush(key), groupReceiptHoldMs),
      };
      this.holds.set(key, hold);
    }
    hold.readers.push(reader);
    if (hold.readers.length >= groupReceiptReadersMax) this.flush(key);
  }

  private flush(key: string): void {
    const hold = this.holds.get(key);
    if (hold === undefined) return;
    this.holds.delete(key);
    clearTimeout(hold.timer);
    void this.queue(hold).catch((error: unknown) =>
      this.context.log.error("group_receipt_failed", { account: hold.senderAccount, error: String(error) }),
    );
  }

  /** Queues one groupReceipt entry for every device of the sender's account. */
  private async queue(hold: Hold): Promise<void> {
    const devices = await this.context.directory.load(hold.senderAccount);
    if (devices === undefined) return;
    let states: DeviceState[] | undefined;
    for (let attempt = 0; attempt < stateTakeAttemptsMax && states === undefined; attempt++) {
      const loaded = await this.delivery.devices.statesOf(hold.senderAccount, devices);
      if (loaded === undefined) continue;
      // Taken again in this turn (DeviceStates.statesNow).
      states = this.delivery.devices.statesNow(
        hold.senderAccount,
        loaded.map((state) => state.device),
      );
    }
    if (states === undefined) {
      this.context.log.warn("receipt_dropped", { account: hold.senderAccount, reason: "busy" });
      return;
    }
    const { limits } = this.context;
    const bytes = groupReceiptBytes(hold.readers.length);
    const batch = this.delivery.commit.batch;
    for (const state of states) {
      // Receipts are not acknowledged to anyone: a full queue skips them (as Delivery.receiptToAll does).
      if (
        state.removed ||
        state.queueRows + 1 > limits.queueMessagesMax ||
        state.queueBytes + bytes > limits.queueBytesMax
      ) {
        continue;
      }
      const entry = this.delivery.enqueue(batch, state, bytes, 0, null);
      const receipt = {
        receiptType: hold.type,
        groupId: hold.groupId,
        senderDevice: hold.senderDevice,
        clientId: hold.clientId,
        readers: hold.readers,
        createdAtMs: hold.createdAtMs,
      };
      batch.groupReceipts.push({ state, entry, ...receipt });
      batch.rows++;
      this.delivery.pushLive(state, entry.seq, groupReceiptLiveEntry(entry.seq, receipt));
    }
    this.entriesQueued++;
    this.readersQueued += hold.readers.length;
    this.delivery.commit.schedule();
  }

  /** Queues every hold now (shutdown). */
  flushAll(): void {
    for (const key of [...this.holds.keys()]) this.flush(key);
  }
}
