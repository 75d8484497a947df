// What the server keeps in memory for a device it is working with: its queue's high-water marks, depth (for the
// quota), the online session and the delivery window. It exists while the device is online or has entries in an
// uncommitted batch; otherwise the store holds the same facts and the state is dropped.

import type { ReadWindow } from "./read-receipt-window.ts";
import type { Session } from "./session.ts";

/** A queue entry pushed to the device and not yet acknowledged (the window). */
export interface InFlightEntry {
  readonly seq: number;
  /** A group message: its group (its delivered receipt is gathered with the other members', group-receipts.ts). */
  readonly groupId?: number;
  /** For messages: who sent it, so that an ack can send a delivered receipt. Receipts: senderAccount 0. */
  readonly senderAccount: number;
  readonly senderDevice: number;
  readonly clientId: number;
  /** Bytes the entry counts in the quota (payload length, or 4 per receipt client id). */
  readonly bytes: number;
  /** The peer whose share of the queue the entry counts in: the sender of a message, the author of a receipt. */
  readonly peerAccount: number;
}

/** An entry of the open batch for this device, so that an ack arriving before the commit can cancel it. */
export interface PendingEntry {
  readonly seq: number;
  readonly bytes: number;
  cancelled: boolean;
  /** Called once when the entry is cancelled (counts down the message's live recipients). */
  readonly onCancel: (() => void) | null;
}

/** Device ids are below 2^21 (the store enforces it), so one safe integer keys a device: no string per device. */
const devicesPerAccountIdSpace = 2 ** 21;
/** The largest device number (the store keeps them below 2^21). */
export const deviceIdMax = devicesPerAccountIdSpace - 1;

export function deviceKey(account: number, device: number): number {
  return account * devicesPerAccountIdSpace + device;
}

/** The account and device of a deviceKey. */
export function deviceOfKey(key: number): { account: number; device: number } {
  return { account: Math.floor(key / devicesPerAccountIdSpace), device: key % devicesPerAccountIdSpace };
}

export class DeviceState {
  readonly key: number;
  /** Highest sequence assigned; committedSeq is the highest whose batch committed. */
  lastSeq: number;
  committedSeq: number;
  /**
   * Highest sequence the store has reserved for this device (devices.last_seq): every sequence up to it may have
   * been shown to the device, so a state loaded later (after a crash too) starts above it. An entry may be pushed
   * before its commit only while its sequence is within the reservation; each commit moves the reservation to
   * lastSeq + seqReservationBlock (see group-commit.ts). A sequence number therefore means one entry forever.
   */
  reservedSeq: number;
  /**
   * The highest client id this device has used as a sender, as far as this process knows (told in welcome, so that a
   * client that lost its counter starts above it). Retries are recognised per recipient account (client-id-pairs.ts).
   */
  lastClientId: number;
  /** Entries and payload bytes in the queue, uncommitted ones included: the quota. */
  queueRows: number;
  queueBytes: number;
  /** Highest sequence the device acknowledged in this process. */
  ackedSeq = 0;
  /**
   * Highest acknowledged sequence whose deletes have committed. While it is below ackedSeq the store still holds
   * acknowledged rows and counts them in its quota counters, so the state must stay in memory: a state loaded from
   * the store then would deliver those rows again and count them against the quota.
   */
  committedAckSeq = 0;
  /** Highest sequence pushed to the current session (the drain cursor); reset when a session attaches. */
  deliveredSeq = 0;
  inFlight: InFlightEntry[] | null = null;
  pending: PendingEntry[] | null = null;
  session: Session | null = null;
  /**
   * Read-receipt windows of this device as a reader, by sender device (deviceKey of the sender), loaded on first use
   * (see read-receipt-window.ts); a pair never heard from holds the empty window.
   */
  readWindows: Map<number, ReadWindow> | null = null;
  /**
   * Entries and bytes per peer account in this queue, for the fair share (queueSenderSharePercent): a peer appears
   * once its depth was read from the store (only for deep queues), and is kept exact from then on by every entry
   * queued and acknowledged. Null after the retention sweep changed the queue behind it.
   */
  peerDepths: Map<number, { rows: number; bytes: number }> | null = null;
  /** Open or committing batches that write some of readWindows: the state may not be dropped before they commit. */
  readWindowWrites = 0;
  /** A drain read from the store is running. */
  reading = false;
  /** When the online device was last seen idle (see DeviceStates.releaseIfIdle); 0 while it is not. */
  quietSinceMs = 0;
  /** The device was removed: nothing more is queued for it. */
  removed = false;

  constructor(
    readonly account: number,
    readonly device: number,
    stored: {
      lastSeq: number;
      lastClientId: number;
      queueRows: number;
      queueBytes: number;
    },
  ) {
    this.key = deviceKey(account, device);
    this.lastSeq = stored.lastSeq;
    this.committedSeq = stored.lastSeq;
    this.reservedSeq = stored.lastSeq;
    this.lastClientId = stored.lastClientId;
    this.queueRows = stored.queueRows;
    this.queueBytes = stored.queueBytes;
  }

  get inFlightCount(): number {
    return this.inFlight === null ? 0 : this.inFlight.length;
  }

  /** An acknowledgement whose deletes have not committed yet. */
  get ackUncommitted(): boolean {
    return this.ackedSeq > this.committedAckSeq;
  }

  /**
   * Nothing in memory that the store does not also have: the state may be dropped. Sequences of a
   * batch still being committed count as not in the store yet: with an asynchronous store the write may land after
   * a new state was loaded, which would then hand out the same sequences again (found by the delayed-store test).
   */
  get isDroppable(): boolean {
    return (
      this.session === null &&
      this.committedSeq >= this.lastSeq &&
      (this.pending === null || this.pending.length === 0) &&
      !this.reading &&
      !this.ackUncommitted &&
      this.readWindowWrites === 0
    );
  }
}
