// A receipt's client ids are stored as one blob of little-endian uint32s: four bytes each, no per-id overhead, and
// the same bytes on every host and in every database.

export const clientIdBytes = 4;
const clientIdMax = 0xffff_ffff;

export function packClientIds(clientIds: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(clientIds.length * clientIdBytes);
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < clientIds.length; index++) {
    const clientId = clientIds[index]!;
    if (!Number.isInteger(clientId) || clientId < 0 || clientId > clientIdMax) {
      throw new RangeError(`client id ${clientId} is not a uint32`);
    }
    view.setUint32(index * clientIdBytes, clientId, true);
  }
  return bytes;
}

export function unpackClientIds(bytes: Uint8Array): number[] {
  if (bytes.byteLength % clientIdBytes !== 0) {
    throw new Error(`client id list of ${bytes.byteLength} bytes is not a whole number of uint32s`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const clientIds = new Array<number>(bytes.byteLength / clientIdBytes);
  for (let index = 0; index < clientIds.length; index++) {
    clientIds[index] = view.getUint32(index * clientIdBytes, true);
  }
  return clientIds;
}
