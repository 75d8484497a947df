// The group entries of a device queue (PROTOCOL.md section 18) as they are pushed: a group message becomes a
// groupDeliver (the shared payload and this device's part), a membership event a groupEvent. A session of a
// dictionary older than 4 gets neither: it gets a delivered receipt naming no message instead, which it acknowledges
// like any queue entry and otherwise ignores (as identity-change events reach version-2 clients).

import type {
  GroupDeliverStanza,
  GroupDevice,
  GroupEventStanza,
  GroupOpValue,
  GroupReceiptStanza,
  ReceiptTypeValue,
  Stanza,
} from "../protocol/index.ts";
import { groupEventBytes, groupReceiptBytes } from "../storage/index.ts";
import type { LiveEntry } from "./delivery.ts";
import type { Session } from "./session.ts";

/** The dictionary version that has the group kinds (protocol/tokens.ts). */
export const groupDictionary = 4;

/** A membership event as the fan-out and the store carry it. */
export interface GroupEventFields {
  readonly groupId: number;
  readonly version: number;
  readonly op: number;
  readonly actorAccount: number;
  readonly actorDevice: number;
  readonly accounts: readonly number[];
  readonly name: Uint8Array | null;
  readonly createdAtMs: number;
}

export function groupMessageLiveEntry(
  seq: number,
  groupId: number,
  senderAccount: number,
  senderDevice: number,
  clientId: number,
  createdAtMs: number,
  payload: Uint8Array,
  part: Uint8Array | null,
): LiveEntry {
  return {
    seq,
    // Its ack sends a delivered receipt to the sender's devices, gathered with the other members' (group-receipts.ts).
    groupId,
    senderAccount,
    senderDevice,
    clientId,
    bytes: payload.byteLength + (part?.byteLength ?? 0),
    peerAccount: senderAccount,
    frame: () => ({
      kind: "groupDeliver",
      seq,
      groupId,
      from: senderAccount,
      fromDevice: senderDevice,
      clientId,
      timeSeconds: Math.floor(createdAtMs / 1000),
      payload,
      part,
    }),
  };
}

export function groupEventLiveEntry(seq: number, event: GroupEventFields): LiveEntry {
  return {
    seq,
    // No receipt for an event (senderAccount 0, as for receipt rows).
    senderAccount: 0,
    senderDevice: 0,
    clientId: 0,
    bytes: groupEventBytes(event.accounts.length, event.name),
    peerAccount: event.actorAccount,
    frame: () => ({
      kind: "groupEvent",
      seq,
      groupId: event.groupId,
      version: event.version,
      op: event.op as GroupOpValue,
      actor: event.actorAccount,
      actorDevice: event.actorDevice,
      accounts: event.accounts,
      name: event.name,
      timeSeconds: Math.floor(event.createdAtMs / 1000),
    }),
  };
}

/** Gathered delivered receipts of one group message (group-receipts.ts), for one device of its sender. */
export function groupReceiptLiveEntry(
  seq: number,
  receipt: {
    readonly receiptType: number;
    readonly groupId: number;
    readonly senderDevice: number;
    readonly clientId: number;
    readonly readers: readonly GroupDevice[];
    readonly createdAtMs: number;
  },
): LiveEntry {
  return {
    seq,
    senderAccount: 0,
    senderDevice: 0,
    clientId: 0,
    bytes: groupReceiptBytes(receipt.readers.length),
    peerAccount: 0,
    frame: () => ({
      kind: "groupReceipt",
      seq,
      type: receipt.receiptType as ReceiptTypeValue,
      groupId: receipt.groupId,
      senderDevice: receipt.senderDevice,
      clientId: receipt.clientId,
      readers: receipt.readers,
      timeSeconds: Math.floor(receipt.createdAtMs / 1000),
    }),
  };
}

export function groupFrameForSession(
  session: Session,
  stanza: GroupDeliverStanza | GroupEventStanza | GroupReceiptStanza,
): Stanza {
  if (session.dictionaryVersion >= groupDictionary) return stanza;
  if (stanza.kind === "groupReceipt") {
    return {
      kind: "deliverReceipt",
      seq: stanza.seq,
      type: 1,
      from: stanza.readers[0]?.account ?? 1,
      fromDevice: stanza.readers[0]?.device ?? 1,
      senderDevice: stanza.senderDevice,
      clientIds: [],
      timeSeconds: stanza.timeSeconds,
    };
  }
  const from = stanza.kind === "groupDeliver" ? stanza.from : stanza.actor;
  const fromDevice = stanza.kind === "groupDeliver" ? stanza.fromDevice : stanza.actorDevice;
  return {
    kind: "deliverReceipt",
    seq: stanza.seq,
    type: 1,
    from,
    fromDevice,
    senderDevice: fromDevice,
    clientIds: [],
    timeSeconds: stanza.timeSeconds,
  };
}
