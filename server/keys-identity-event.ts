// The identity-change event of the key directory (PROTOCOL.md, "Key directory"): when a device publishes a new
// identity key, every account that fetched its bundle (and so may hold a session with it) gets an event in each of
// its devices' queues. It rides the receipt rows of the durable queue (seq, ack, retention, quota all as for a
// receipt), with a receipt type that never goes on the wire: it is pushed as an `identityChange` stanza.

import type { ReceiptTypeValue, Stanza } from "../protocol/index.ts";
import { groupFrameForSession } from "./group-entries.ts";
import type { Session } from "./session.ts";

/** The queue row's receipt type of an identity-change event. Internal: far from the wire's receipt types. */
export const identityChangeReceiptType = 1000;

/** The dictionary version that has the identityChange kind (tokens.ts). */
const identityChangeDictionary = 3;

/** The stanza a queued receipt row becomes: a deliverReceipt, or an identityChange event. */
export function receiptRowFrame(
  seq: number,
  type: number,
  from: number,
  fromDevice: number,
  senderDevice: number,
  clientIds: readonly number[],
  createdAtMs: number,
): Stanza {
  const timeSeconds = Math.floor(createdAtMs / 1000);
  if (type === identityChangeReceiptType) {
    return { kind: "identityChange", seq, account: from, device: fromDevice, timeSeconds };
  }
  return {
    kind: "deliverReceipt",
    seq,
    type: type as ReceiptTypeValue,
    from,
    fromDevice,
    senderDevice,
    clientIds,
    timeSeconds,
  };
}

/**
 * What a session of an older dictionary gets instead of a version-3 kind: a delivered receipt naming no message,
 * which it acknowledges like any queue entry and otherwise ignores (its decoder predates identityChange).
 */
export function frameForSession(session: Session, stanza: Stanza): Stanza {
  // The group entries (dictionary version 4) take the same way down (group-entries.ts).
  if (stanza.kind === "groupDeliver" || stanza.kind === "groupEvent" || stanza.kind === "groupReceipt") {
    return groupFrameForSession(session, stanza);
  }
  if (stanza.kind !== "identityChange" || session.dictionaryVersion >= identityChangeDictionary) return stanza;
  return {
    kind: "deliverReceipt",
    seq: stanza.seq,
    type: 1,
    from: stanza.account,
    fromDevice: stanza.device,
    senderDevice: stanza.device,
    clientIds: [],
    timeSeconds: stanza.timeSeconds,
  };
}
