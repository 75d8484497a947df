// Read receipts are tied to messages actually delivered: for each (reader device, sender device) pair the server
// keeps which recent client ids it delivered to the reader (set when the reader acks them) and which of those the
// reader already receipted as read. A read receipt naming a client id never delivered is refused (receiptUnknown),
// one already receipted is dropped (a resent receipt queues nothing twice), and one older than the window is
// dropped too: the server can no longer tell, and a read mark for a newer message covers it in every chat UI. So a
// reader can queue at most one read receipt per message it received, and nobody can fill a queue with receipts for
// messages that never existed (an outside review filled a 10,000-entry queue that way in 15 s).

/** Client ids covered at and below the highest delivered one, per sender device. */
export const readReceiptWindowIds = 128;
const windowBytes = readReceiptWindowIds / 8;
const windowMask = (1n << BigInt(readReceiptWindowIds)) - 1n;

export interface ReadWindow {
  readonly last: number;
  /** Bit k: client id last - k was delivered. */
  readonly delivered: bigint;
  /** Bit k: client id last - k was receipted as read. */
  readonly read: bigint;
}

export const emptyReadWindow: ReadWindow = Object.freeze({ last: 0, delivered: 0n, read: 0n });

export type ReadStatus = "readable" | "alreadyRead" | "tooOld" | "notDelivered";

export function readStatus(window: ReadWindow, clientId: number): ReadStatus {
  if (clientId > window.last) return "notDelivered";
  const offset = window.last - clientId;
  if (offset >= readReceiptWindowIds) return "tooOld";
  const bit = 1n << BigInt(offset);
  if ((window.delivered & bit) === 0n) return "notDelivered";
  return (window.read & bit) === 0n ? "readable" : "alreadyRead";
}

/** The window after `clientId` was delivered. */
export function markDelivered(window: ReadWindow, clientId: number): ReadWindow {
  if (clientId > window.last) {
    const shift = clientId - window.last;
    if (shift >= readReceiptWindowIds) return { last: clientId, delivered: 1n, read: 0n };
    const by = BigInt(shift);
    return {
      last: clientId,
      delivered: ((window.delivered << by) | 1n) & windowMask,
      read: (window.read << by) & windowMask,
    };
  }
  const offset = window.last - clientId;
  if (offset >= readReceiptWindowIds) return window;
  return { last: window.last, delivered: window.delivered | (1n << BigInt(offset)), read: window.read };
}

/** The window after `clientId` (delivered, within the window) was receipted as read. */
export function markRead(window: ReadWindow, clientId: number): ReadWindow {
  const offset = window.last - clientId;
  if (offset < 0 || offset >= readReceiptWindowIds) return window;
  return { last: window.last, delivered: window.delivered, read: window.read | (1n << BigInt(offset)) };
}

export function bitsToBytes(bits: bigint): Uint8Array {
  const bytes = new Uint8Array(windowBytes);
  let rest = bits;
  for (let index = 0; index < windowBytes; index++) {
    bytes[index] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return bytes;
}

export function bitsFromBytes(bytes: Uint8Array): bigint {
  let bits = 0n;
  for (let index = Math.min(bytes.length, windowBytes) - 1; index >= 0; index--) {
    bits = (bits << 8n) | BigInt(bytes[index]!);
  }
  return bits;
}
