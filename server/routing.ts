// Which worker does what, when the server runs as several workers (ARCHITECTURE.md, "Workers and the mesh"). A
// session lives on the worker that accepted its socket (its edge); the device's partition, and with it the device's
// queue, state and window, belongs to one worker (its owner). Work for a device owned elsewhere goes to the owner;
// what the owner writes to a session goes back to its edge. With one process there is no Routing (context.routing
// is null) and every call site does what it always did.
//
// Delivery guarantees, per kind (the mesh is at most once and in order per sender, server/mesh.ts):
// - a forwarded stanza is handled by the owner in the order the session sent it; if the owner dies first, the edge
//   closes every session that had forwarded to it, and a session that forwards while the owner is down (their
//   clients reconnect and resend, in client-id order, whatever has no serverAck);
// - what an owner writes to a session reaches it in order; if the edge dies, the owner detaches the session;
// - a receipt for a device owned elsewhere is at most once (receipts are best effort, PROTOCOL.md section 11);
// - a directory change (a device linked or removed, an account removed) is announced to every worker that is up; a
//   worker that was down starts with an empty cache, and a queue of a removed device is deleted by its owner when it
//   next loads the device (server/partitions.ts).

import type { Stanza } from "../protocol/index.ts";
import type { GroupDelivered } from "./group-receipts.ts";
import type { Session } from "./session.ts";

/** A receipt to queue for every device of an account (Delivery.queueReceipts). */
export interface ReceiptIntent {
  readonly type: number;
  readonly fromAccount: number;
  readonly fromDevice: number;
  readonly senderDevice: number;
  readonly clientIds: readonly number[];
  readonly createdAtMs: number;
}

export interface Routing {
  /** This worker owns the partition of `account`. */
  owns(account: number): boolean;
  /** A stanza of a local session, for the owner of `account` (a send's recipient, or the session's own device). */
  forward(session: Session, account: number, stanza: Stanza): void;
  /** A login completed for a device owned elsewhere: the owner attaches it and says welcome. */
  attachRemote(session: Session, kind: string): void;
  /** A local session closed: the owners it talked to forget it. */
  closed(session: Session): void;
  /** A local session's socket is full / can take more again (its owner pauses or resumes pushing). */
  blocked(session: Session): void;
  writable(session: Session): void;
  /** Queues receipts for the devices of `account`, which another worker owns. */
  receipt(account: number, intent: ReceiptIntent): void;
  /** A reader's delivered or read receipt of a group message, for the owner of its sender's account (group-receipts.ts). */
  groupReceipt(entry: GroupDelivered, reader: { account: number; device: number }): void;
  /** Devices of an account were removed here: the other workers close their sessions and the owner its queues. */
  removed(account: number, devices: readonly number[], code: number, wholeAccount: boolean): void;
}
