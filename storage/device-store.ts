// A device of an account. Device ids start at 1 in each account and are never reused.

export interface DeviceKey {
  readonly account: number;
  readonly device: number;
}

/** When a device was last seen (it logged in, or its session ended). */
export interface LastSeenEntry extends DeviceKey {
  readonly atMs: number;
}

export interface DeviceRecord {
  account: number;
  device: number;
  // The 32-byte Ed25519 public key the device logs in with. No secret is ever stored.
  publicKey: Uint8Array;
  createdAtMs: number;
  lastSeenAtMs: number;
  // The highest queue sequence ever assigned to this device (0 before the first).
  lastSeq: number;
  // The highest client id this device has had stored as a sender (0 before the first).
  lastClientId: number;
  // 8 bytes, little-endian: bit k set when client id lastClientId - k was stored (all zero before the first).
  clientIdWindow: Uint8Array;
  // The current depth of the device's queue, for quotas: its rows, and the bytes they hold (the payload length of a
  // message, 4 bytes per client id of a receipt).
  queueRows: number;
  queueBytes: number;
}

export interface DeviceStore {
  // Gives the device the next device id of its account. Throws AccountNotFoundError if the account does not exist.
  add(account: number, publicKey: Uint8Array, nowMs: number): Promise<DeviceRecord>;
  get(key: DeviceKey): Promise<DeviceRecord | undefined>;
  // For a partition store (server/partitions.ts): creates the device's row, and a row standing in for its account, if
  // absent, with an all-zero key (never a login key: the directory's is checked) and zero marks. The partition keeps the device's queue and marks; the directory keeps
  // its account, handle and key. Does nothing when the row exists.
  mirror(key: DeviceKey, nowMs: number): Promise<void>;
  // Ordered by device id.
  list(account: number): Promise<DeviceRecord[]>;
  // Also deletes the device's queue rows (and releases their shared payloads). Returns false if absent.
  remove(key: DeviceKey): Promise<boolean>;
  // Records when these devices were last seen, in one transaction (the server batches logins and logouts: one write
  // per login would cost as much as the login's signature check). Unknown devices are ignored, and so is a time older
  // than the stored one (two workers may write one device's times out of order). With `wait: false` the write gives up
  // at once, nothing written, when another connection holds the store's write lock, and resolves false: the caller
  // keeps the entries and tries again later (server/last-seen.ts), so its event loop never waits on another process.
  // Resolves true once written.
  touch(entries: readonly LastSeenEntry[], options: { readonly wait: boolean }): Promise<boolean>;
}
