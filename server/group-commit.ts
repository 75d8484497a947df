// Group commit: the rows of every send, receipt and ack that arrive within commitDelayMs go into one transaction (with
// a delay of 0, those of one event-loop turn). A batch reaching commitBatchRowsMax is committed at once. Commits run
// one at a time; what arrives during a commit waits in the next batch.
//
// An entry whose device acknowledges it before its batch commits is cancelled and never written (the insert and the
// delete cancel out), which keeps most online traffic off the disk. Its sequence still advances the stored high-water
// mark, so sequences are never handed out twice. Each batch stores, as an online device's last_seq, a reservation
// ahead of its last assigned sequence; entries are pushed before their commit only within the reservation, so after
// kill -9 the next process starts above every sequence a device may have seen.

import { clientIdBytes } from "../storage/client-id-list.ts";
import { groupEventBytes, groupReceiptBytes, type QueueBatch, type QueueStore } from "../storage/index.ts";
import type { ClientIdPair } from "./client-id-pairs.ts";
import { type ClientIdMarks, windowToBytes } from "./client-id-window.ts";
import type { DeviceState, PendingEntry } from "./device-state.ts";
import { bitsToBytes } from "./read-receipt-window.ts";
import type { Session } from "./session.ts";

export interface PendingRecipient {
  readonly state: DeviceState;
  readonly entry: PendingEntry;
  /** The same Uint8Array for every recipient of a one-payload send (stored once), or this device's own payload. */
  readonly payload: Uint8Array;
  /** A group message: this device's own part (its sender-key distribution message), or null. */
  readonly part?: Uint8Array | null;
}

export interface PendingMessage {
  readonly sender: Session;
  readonly senderAccount: number;
  readonly senderDevice: number;
  readonly clientId: number;
  readonly createdAtMs: number;
  readonly recipients: PendingRecipient[];
  /** Recipients that have not acknowledged it yet; at 0 the sender may have its server-ack before the commit. */
  liveRecipients: number;
  serverAcked: boolean;
  /**
   * The (recipient account, sender device) pair, which lists the message among its unacknowledged sends; null for
   * a group message, whose pairs (one per member account here) the group fan-out keeps (group-fanout.ts).
   */
  readonly pair: ClientIdPair | null;
  /** Sessions that sent it again (a resend after a reconnect) before it was acked: they get the server-ack with it. */
  resentBy: Session[] | null;
  /** A group message: its group. */
  readonly groupId?: number;
  /**
   * A group message: called once it is durable here (or acknowledged by every recipient first) instead of a
   * server-ack to `sender`; the group's owner acks the sender once every worker's part is durable.
   */
  readonly onDurable?: () => void;
}

/** Gathered delivered receipts of one group message for one device of the sender (group-receipts.ts). */
export interface PendingGroupReceipt {
  readonly state: DeviceState;
  readonly entry: PendingEntry;
  readonly receiptType: number;
  readonly groupId: number;
  readonly senderDevice: number;
  readonly clientId: number;
  readonly readers: ReadonlyArray<{ account: number; device: number }>;
  readonly createdAtMs: number;
}

/** A membership event for one device of the open batch (group-fanout.ts). */
export interface PendingGroupEvent {
  readonly state: DeviceState;
  readonly entry: PendingEntry;
  readonly groupId: number;
  readonly version: number;
  readonly op: number;
  readonly actorAccount: number;
  readonly actorDevice: number;
  readonly accounts: readonly number[];
  readonly name: Uint8Array | null;
  readonly createdAtMs: number;
}

export interface PendingReceipt {
  readonly state: DeviceState;
  readonly entry: PendingEntry;
  readonly receiptType: number;
  readonly peerAccount: number;
  readonly peerDevice: number;
  readonly senderDevice: number;
  readonly clientIds: readonly number[];
  readonly createdAtMs: number;
}

export class OpenBatch {
  readonly messages: PendingMessage[] = [];
  readonly receipts: PendingReceipt[] = [];
  readonly groupEvents: PendingGroupEvent[] = [];
  readonly groupReceipts: PendingGroupReceipt[] = [];
  readonly acks = new Map<DeviceState, number>();
  /** Devices whose sequence or client id high-water marks moved. */
  readonly touched = new Set<DeviceState>();
  /** The marks as written by this batch, captured when it is handed to the store. */
  readonly marks = new Map<DeviceState, { lastSeq: number; reservedSeq: number }>();
  /** Client-id windows whose marks moved (a send accepted), and the marks as written, captured like `marks`. */
  readonly pairs = new Set<ClientIdPair>();
  readonly pairMarks = new Map<ClientIdPair, ClientIdMarks>();
  /** Sender high-water marks sent by other workers for devices this one owns (Delivery.noteClientIdMarks). */
  readonly clientIdMarks: QueueBatch["clientIds"] = [];
  readonly afterCommit: Array<() => void> = [];
  /** Read-receipt windows changed in this batch: reader state -> sender device key -> the sender device. */
  readonly readWindows = new Map<DeviceState, Map<number, { account: number; device: number }>>();
  rows = 0;
  // [queue totals hook, server/queue-totals.ts] Rows and payload bytes this batch's acks delete from the store: the
  // acknowledged entries, less those cancelled in this batch (never written). Counted by Delivery.ack.
  ackedRows = 0;
  ackedBytes = 0;

  get isEmpty(): boolean {
    return (
      this.rows === 0 &&
      this.touched.size === 0 &&
      this.afterCommit.length === 0 &&
      this.readWindows.size === 0 &&
      this.pairs.size === 0 &&
      this.clientIdMarks.length === 0
    );
  }

  /** Writes the reader's window for a sender device with this batch (the state stays until it commits). */
  writeReadWindow(reader: DeviceState, senderKey: number, sender: { account: number; device: number }): void {
    let changed = this.readWindows.get(reader);
    if (changed === undefined) {
      changed = new Map();
      this.readWindows.set(reader, changed);
      reader.readWindowWrites++;
    }
    changed.set(senderKey, sender);
  }
}

export interface CommitStats {
  readonly rows: number;
  readonly cancelled: number;
  readonly durationMs: number;
  // [queue totals hook] What the batch changed in all queues together: entries and payload bytes written, less
  // those its acks deleted.
  readonly queueRowsDelta: number;
  readonly queueBytesDelta: number;
}

export class GroupCommit {
  private open = new OpenBatch();
  private committing: Promise<void> | null = null;
  private scheduled = false;
  /** Fan-outs waiting for room in the open batch (see room); resolved when a commit takes the full batch away. */
  private roomWaiters: Array<() => void> = [];

  constructor(
    private readonly store: QueueStore,
    private readonly batchRowsMax: number,
    private readonly delayMs: number,
    private readonly seqReservationBlock: number,
    private readonly onCommitted: (batch: OpenBatch, stats: CommitStats) => void,
    private readonly onFailure: (error: unknown) => void,
    /** The server's clock (tests pass a fake one): stamps what the batch writes. */
    private readonly now: () => number = Date.now,
  ) {}

  /** The batch that new rows go into. */
  get batch(): OpenBatch {
    return this.open;
  }

  /** Call after adding rows: commits at the end of this turn, or now if the batch is full. */
  schedule(): void {
    if (this.open.rows >= this.batchRowsMax) {
      void this.flush();
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    const run = () => {
      this.scheduled = false;
      void this.flush();
    };
    if (this.delayMs > 0) setTimeout(run, this.delayMs);
    else setImmediate(run);
  }

  /**
   * Resolves once the open batch holds fewer than `rowsMax` rows (at most batchRowsMax). A group fan-out (up to
   * 1,023 rows) waits here before it takes its states (groupFanoutOpenRowsMax): while a commit runs (across several
   * turns, see commitRowsPerTurn) the open batch would otherwise gather the sends of a burst, and the next commit
   * would prepare them all in one turn. One-to-one sends never wait: they add a row or two.
   */
  room(rowsMax: number): Promise<void> {
    if (this.open.rows < Math.min(rowsMax, this.batchRowsMax)) return Promise.resolve();
    // A batch that a fan-out waits on is committed now (after the running commit), not after commitDelayMs; the
    // waiters go on with the next open batch.
    const waiting = new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    void this.flush();
    return waiting;
  }

  /** Commits the open batch (after any commit already running). Resolves when it is durable. */
  async flush(): Promise<void> {
    while (this.committing !== null) await this.committing;
    if (this.open.isEmpty) return;
    const batch = this.open;
    this.open = new OpenBatch();
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const resolve of waiters) resolve();
    // Entries of this batch can no longer be cancelled in place: a later ack becomes a delete in a later batch.
    // (Every device with an entry in the batch is in `touched`: assigning a sequence touches it.)
    for (const state of batch.touched) state.pending = null;
    const { rows, cancelled } = toQueueBatch(batch, this.seqReservationBlock, this.now());
    const written = queuedEntries(rows);
    const startedAt = performance.now();
    this.committing = this.store
      .commit(rows)
      .then(
        () =>
          this.onCommitted(batch, {
            rows: countRows(rows),
            cancelled,
            durationMs: performance.now() - startedAt,
            queueRowsDelta: written.rows - batch.ackedRows,
            queueBytesDelta: written.bytes - batch.ackedBytes,
          }),
        (error: unknown) => this.onFailure(error),
      )
      .finally(() => {
        this.committing = null;
      });
    await this.committing;
    if (!this.open.isEmpty) this.schedule();
  }

  /**
   * [queue totals hook] Runs `task` while no batch is being written or reported, so that a read of the store's queue
   * totals never falls between a commit and its onCommitted deltas (server/queue-totals.ts).
   */
  async between<T>(task: () => Promise<T>): Promise<T> {
    while (this.committing !== null) await this.committing;
    const running = task();
    this.committing = running
      .then(
        () => {},
        () => {},
      )
      .finally(() => {
        this.committing = null;
      });
    return running;
  }

  /** Resolves once nothing is open or committing (shutdown). Bounded: each round commits what was open. */
  async idle(roundsMax = 100): Promise<void> {
    for (let round = 0; round < roundsMax && (!this.open.isEmpty || this.committing !== null); round++) {
      await this.flush();
    }
  }
}

/** [queue totals hook] Entries and payload bytes a batch adds to the queues (as the store counts them). */
function queuedEntries(batch: QueueBatch): { rows: number; bytes: number } {
  let rows = batch.receipts.length;
  let bytes = 0;
  for (const message of batch.messages) {
    rows += message.recipients.length;
    bytes += message.recipients.length * message.payload.byteLength;
    for (const recipient of message.recipients) bytes += recipient.part?.byteLength ?? 0;
  }
  for (const event of batch.groupEvents ?? []) {
    rows++;
    bytes += groupEventBytes(event.accounts.length, event.name);
  }
  for (const receipt of batch.groupReceipts ?? []) {
    rows++;
    bytes += groupReceiptBytes(receipt.readers.length);
  }
  for (const receipt of batch.receipts) bytes += receipt.clientIds.length * clientIdBytes;
  return { rows, bytes };
}

function countRows(batch: QueueBatch): number {
  let rows =
    batch.receipts.length + batch.acks.length + (batch.groupEvents?.length ?? 0) + (batch.groupReceipts?.length ?? 0);
  for (const message of batch.messages) rows += message.recipients.length;
  return rows;
}

function toQueueBatch(
  batch: OpenBatch,
  seqReservationBlock: number,
  nowMs: number,
): { rows: QueueBatch; cancelled: number } {
  let cancelled = 0;
  const messages: QueueBatch["messages"] = [];
  for (const message of batch.messages) {
    // Recipients sharing one payload become one stored message (payload stored once); per-device payloads, one each.
    let current: QueueBatch["messages"][number] | null = null;
    for (const recipient of message.recipients) {
      if (recipient.entry.cancelled || recipient.state.removed) {
        cancelled++;
        continue;
      }
      if (current === null || current.payload !== recipient.payload) {
        current = {
          senderAccount: message.senderAccount,
          senderDevice: message.senderDevice,
          clientId: message.clientId,
          createdAtMs: message.createdAtMs,
          payload: recipient.payload,
          ...(message.groupId === undefined ? {} : { groupId: message.groupId }),
          recipients: [],
        };
        messages.push(current);
      }
      current.recipients.push({
        account: recipient.state.account,
        device: recipient.state.device,
        seq: recipient.entry.seq,
        ...(recipient.part === undefined ? {} : { part: recipient.part }),
      });
    }
  }
  const receipts: QueueBatch["receipts"] = [];
  for (const receipt of batch.receipts) {
    if (receipt.entry.cancelled || receipt.state.removed) {
      cancelled++;
      continue;
    }
    receipts.push({
      account: receipt.state.account,
      device: receipt.state.device,
      seq: receipt.entry.seq,
      receiptType: receipt.receiptType,
      peerAccount: receipt.peerAccount,
      peerDevice: receipt.peerDevice,
      senderDevice: receipt.senderDevice,
      clientIds: [...receipt.clientIds],
      createdAtMs: receipt.createdAtMs,
    });
  }
  const groupEvents: QueueBatch["groupEvents"] & object = [];
  for (const event of batch.groupEvents) {
    if (event.entry.cancelled || event.state.removed) {
      cancelled++;
      continue;
    }
    groupEvents.push({
      account: event.state.account,
      device: event.state.device,
      seq: event.entry.seq,
      groupId: event.groupId,
      version: event.version,
      op: event.op,
      actorAccount: event.actorAccount,
      actorDevice: event.actorDevice,
      // The one list of the event, shared by every device's row (a 1,024-member create: 1,024 rows of 1,024).
      accounts: event.accounts,
      name: event.name,
      createdAtMs: event.createdAtMs,
    });
  }
  const groupReceipts: QueueBatch["groupReceipts"] & object = [];
  for (const receipt of batch.groupReceipts) {
    if (receipt.entry.cancelled || receipt.state.removed) {
      cancelled++;
      continue;
    }
    groupReceipts.push({
      account: receipt.state.account,
      device: receipt.state.device,
      seq: receipt.entry.seq,
      receiptType: receipt.receiptType,
      groupId: receipt.groupId,
      senderDevice: receipt.senderDevice,
      clientId: receipt.clientId,
      readers: [...receipt.readers],
      createdAtMs: receipt.createdAtMs,
    });
  }
  const acks: QueueBatch["acks"] = [];
  for (const [state, uptoSeq] of batch.acks) {
    if (!state.removed) acks.push({ account: state.account, device: state.device, uptoSeq });
  }
  const sequences: QueueBatch["sequences"] = [];
  for (const state of batch.touched) {
    if (state.removed) continue;
    // The stored last_seq is a reservation ahead of what is assigned (see DeviceState.reservedSeq), for online
    // devices only: entries are pushed before their commit only to them. Its size follows the device's traffic
    // (twice what this batch assigned it, at most seqReservationBlock), because every time a state is loaded again
    // the unused rest of the reservation is skipped: a sparse conversation then skips one or two numbers, not 64.
    const assigned = state.lastSeq - state.committedSeq;
    const ahead = state.session === null || assigned === 0 ? 0 : Math.min(seqReservationBlock, 2 * assigned);
    const reservedSeq = Math.max(state.reservedSeq, state.lastSeq + ahead);
    batch.marks.set(state, { lastSeq: state.lastSeq, reservedSeq });
    sequences.push({ account: state.account, device: state.device, lastSeq: reservedSeq });
  }
  const clientIdWindows: QueueBatch["clientIdWindows"] & object = [];
  for (const pair of batch.pairs) {
    batch.pairMarks.set(pair, pair.marks);
    clientIdWindows.push({
      account: pair.account,
      peerAccount: pair.senderAccount,
      peerDevice: pair.senderDevice,
      lastClientId: pair.marks.last,
      window: windowToBytes(pair.marks.window),
      updatedAtMs: nowMs,
    });
  }
  const readReceiptWindows: QueueBatch["readReceiptWindows"] & object = [];
  for (const [reader, senders] of batch.readWindows) {
    if (reader.removed) continue;
    for (const [senderKey, sender] of senders) {
      const window = reader.readWindows?.get(senderKey);
      if (window === undefined) continue;
      readReceiptWindows.push({
        account: reader.account,
        device: reader.device,
        peerAccount: sender.account,
        peerDevice: sender.device,
        lastClientId: window.last,
        delivered: bitsToBytes(window.delivered),
        read: bitsToBytes(window.read),
        updatedAtMs: nowMs,
      });
    }
  }
  return {
    rows: {
      messages,
      receipts,
      groupEvents,
      groupReceipts,
      acks,
      sequences,
      clientIds: batch.clientIdMarks,
      clientIdWindows,
      readReceiptWindows,
    },
    cancelled,
  };
}
