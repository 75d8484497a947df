import type { DeviceKey } from "./device-store.ts";

// The key directory's store (PROTOCOL.md, "Key directory"): public keys only, in the device's partition. The server
// hands them out and never holds a private key.

export interface StoredPreKey {
  readonly keyId: number;
  readonly publicKey: Uint8Array;
}
export interface StoredSignedPreKey extends StoredPreKey {
  readonly signature: Uint8Array;
}

/** What one keysUpload writes: the device's current keys, and one-time prekeys added to those stored. */
export interface PublishedKeys {
  readonly registrationId: number;
  readonly identityKey: Uint8Array;
  readonly signedPreKey: StoredSignedPreKey;
  readonly oneTimePreKeys: readonly StoredPreKey[];
  /** null keeps the stored last-resort key. */
  readonly lastResortKey: StoredSignedPreKey | null;
}

export type PublishResult =
  | {
      readonly status: "stored";
      /** One-time prekeys stored for the device afterwards. */
      readonly oneTimePreKeysLeft: number;
      /** The device had published a different identity key before: these accounts fetched its bundle. */
      readonly identityChangedFor: readonly number[] | null;
    }
  /** Storing them would pass storedMax one-time prekeys; nothing was written. */
  | { readonly status: "tooMany"; readonly oneTimePreKeysLeft: number }
  /** The device has no row in this partition (removed meanwhile); nothing was written. */
  | { readonly status: "noDevice" };

export interface TakenBundle {
  readonly device: number;
  readonly registrationId: number;
  readonly identityKey: Uint8Array;
  readonly signedPreKey: StoredSignedPreKey;
  readonly preKey: StoredPreKey | null;
  readonly lastResort: boolean;
  /** One-time prekeys the device has left after this fetch. */
  readonly oneTimePreKeysLeft: number;
}

export interface KeyStore {
  // Stores a device's keys in one transaction. With the identity key changed, the old one-time prekeys go (they
  // belong to the old identity) and the fetchers recorded so far are returned (and kept: they are told).
  publish(key: DeviceKey, keys: PublishedKeys, storedMax: number, nowMs: number): Promise<PublishResult>;
  // One bundle per listed device that published keys, each taking (deleting) one one-time prekey, or giving the
  // last-resort key when none is left; all in one transaction, so two fetches never get the same one-time key.
  // Records `fetcher` as having fetched each device's bundle, keeping at most fetchersMax (the oldest go).
  take(
    account: number,
    devices: readonly number[],
    fetcher: number,
    fetchersMax: number,
    nowMs: number,
  ): Promise<TakenBundle[]>;
  // One-time prekeys stored for a device (0 when it never published).
  count(key: DeviceKey): Promise<number>;
  // Whether a device has published keys at all.
  has(key: DeviceKey): Promise<boolean>;
}
