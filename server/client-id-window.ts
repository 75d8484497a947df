// Which recent client ids of a device were stored. A device's client ids increase; the server keeps the highest
// stored (`last`) and a 64-bit window whose bit k says whether id `last - k` was stored. A resend of an id in the
// window is answered exactly: stored → server-ack again (stored once); refused or never seen → handled as new. An id
// older than the window is refused with clientIdReused, never guessed. Without the window, a send refused with an
// error the client never saw would look stored once a later id was stored (issue found by the SDK's tests).

/** Ids covered below and including the highest stored one. */
export const clientIdWindowIds = 64;
const windowMask = (1n << BigInt(clientIdWindowIds)) - 1n;

export interface ClientIdMarks {
  readonly last: number;
  readonly window: bigint;
}

export type ClientIdStatus = "new" | "stored" | "tooOld";

export function clientIdStatus(marks: ClientIdMarks, clientId: number): ClientIdStatus {
  if (clientId > marks.last) return "new";
  const offset = marks.last - clientId;
  if (offset >= clientIdWindowIds) return "tooOld";
  return ((marks.window >> BigInt(offset)) & 1n) === 1n ? "stored" : "new";
}

/** The marks after `clientId` was stored. */
export function markStored(marks: ClientIdMarks, clientId: number): ClientIdMarks {
  if (clientId > marks.last) {
    const shift = clientId - marks.last;
    const window = shift >= clientIdWindowIds ? 1n : ((marks.window << BigInt(shift)) | 1n) & windowMask;
    return { last: clientId, window };
  }
  return { last: marks.last, window: marks.window | (1n << BigInt(marks.last - clientId)) };
}

export function windowFromBytes(bytes: Uint8Array): bigint {
  let window = 0n;
  for (let index = Math.min(bytes.length, 8) - 1; index >= 0; index--) window = (window << 8n) | BigInt(bytes[index]!);
  return window;
}

export function windowToBytes(window: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  let rest = window;
  for (let index = 0; index < 8; index++) {
    bytes[index] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return bytes;
}
