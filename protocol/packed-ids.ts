// Packed id lists for the group stanzas (PROTOCOL.md section 18): a group's member and device lists can be far
// longer than arrayItemsMax, so they travel as one MessagePack `bin` of fixed-width big-endian ids instead of an
// array: 4 bytes per account, 8 per (account, device). Compact on the wire and bounded by the frame alone.

/** One device of a group member. */
export interface GroupDevice {
  readonly account: number;
  readonly device: number;
}

export const packedAccountBytes = 4;
export const packedDeviceBytes = 8;

export function packAccounts(accounts: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(accounts.length * packedAccountBytes);
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < accounts.length; index++) view.setUint32(index * packedAccountBytes, accounts[index]!);
  return bytes;
}

/** The accounts of a packed list, or null when its length is not a multiple of 4 or an id is 0. */
export function unpackAccounts(bytes: Uint8Array): number[] | null {
  if (bytes.length % packedAccountBytes !== 0) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const accounts = new Array<number>(bytes.length / packedAccountBytes);
  for (let index = 0; index < accounts.length; index++) {
    const account = view.getUint32(index * packedAccountBytes);
    if (account === 0) return null;
    accounts[index] = account;
  }
  return accounts;
}

/** Devices in the canonical order (by account, then device): the order the device-list hash is taken in. */
export function sortDevices(devices: readonly GroupDevice[]): GroupDevice[] {
  return [...devices].sort((a, b) => a.account - b.account || a.device - b.device);
}

/** Packs devices in the order given (a decoder keeps it; the hash sorts them first, sortDevices). */
export function packDevices(sorted: readonly GroupDevice[]): Uint8Array {
  const bytes = new Uint8Array(sorted.length * packedDeviceBytes);
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < sorted.length; index++) {
    view.setUint32(index * packedDeviceBytes, sorted[index]!.account);
    view.setUint32(index * packedDeviceBytes + 4, sorted[index]!.device);
  }
  return bytes;
}

/** The devices of a packed list, or null when its length is not a multiple of 8 or an id is 0. */
export function unpackDevices(bytes: Uint8Array): GroupDevice[] | null {
  if (bytes.length % packedDeviceBytes !== 0) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const devices = new Array<GroupDevice>(bytes.length / packedDeviceBytes);
  for (let index = 0; index < devices.length; index++) {
    const account = view.getUint32(index * packedDeviceBytes);
    const device = view.getUint32(index * packedDeviceBytes + 4);
    if (account === 0 || device === 0) return null;
    devices[index] = { account, device };
  }
  return devices;
}

/**
 * Length of a groupSend's device-list hash: the first 8 bytes of SHA-256 over packDevices(sortDevices(list)) (WhatsApp's phash
 * is a truncated hash too). It only tells a stale view from a current one; the sender can lie only to itself.
 */
export const groupDevicesHashBytes = 8;
