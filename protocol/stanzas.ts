// The stanzas of protocol version 1, as typed values. On the wire each is a MessagePack array of positional fields
// (see stanza-codec.ts and PROTOCOL.md); here they carry names. Ids (accounts, devices, client ids, sequences) are
// unsigned 32-bit integers; times are whole seconds since the Unix epoch.

import type { ReceiptTypeValue } from "./tokens.ts";

/** One payload for one device of the recipient account (client-side fan-out). */
export interface DevicePayload {
  readonly device: number;
  readonly payload: Uint8Array;
}

/** A device as listed to its own account. */
export interface DeviceInfo {
  readonly device: number;
  readonly createdAtSeconds: number;
  readonly lastSeenAtSeconds: number;
}

export interface ChallengeStanza {
  readonly kind: "challenge";
  /** 32 random bytes the device signs to log in, register or link. */
  readonly nonce: Uint8Array;
  readonly serverTimeSeconds: number;
  readonly registrationMode: number;
  readonly frameBytesMax: number;
  /** The largest payload of one message this server accepts (a larger one is refused with payloadTooLarge). */
  readonly payloadBytesMax: number;
}
export interface LoginStanza {
  readonly kind: "login";
  readonly account: number;
  readonly device: number;
  /** Ed25519 signature of loginMessage(nonce, serverName, account, device). */
  readonly signature: Uint8Array;
  /** The server's name as the device dialed it (canonicalServerName); null only from clients that predate it. */
  readonly serverName: string | null;
}
export interface RegisterStanza {
  readonly kind: "register";
  /** Invite code (required in invite mode, null in open mode). */
  readonly invite: string | null;
  readonly handle: string;
  readonly publicKey: Uint8Array;
  /** Ed25519 signature of registerMessage(nonce, serverName, handle): proof that the device holds the key. */
  readonly signature: Uint8Array;
  /** The server's name as the device dialed it (canonicalServerName); null only from clients that predate it. */
  readonly serverName: string | null;
}
export interface LinkStanza {
  readonly kind: "link";
  readonly code: string;
  readonly publicKey: Uint8Array;
  /** Ed25519 signature of linkMessage(nonce, serverName, code). */
  readonly signature: Uint8Array;
  /** The server's name as the device dialed it (canonicalServerName); null only from clients that predate it. */
  readonly serverName: string | null;
}
export interface WelcomeStanza {
  readonly kind: "welcome";
  readonly account: number;
  readonly device: number;
  /** Highest client id the server has stored from this device: sends up to it need no resend. */
  readonly lastClientId: number;
  /**
   * Dictionary version 3 only (the server leaves it out for older clients): one-time prekeys the server still holds
   * for this device (0 when it never published keys). Below keysLowThreshold the device should upload more.
   */
  readonly oneTimePreKeysLeft?: number;
}
export interface SendStanza {
  readonly kind: "send";
  /** Chosen by the sending device, strictly increasing per device; recognises retries. */
  readonly clientId: number;
  readonly to: number;
  /** One payload for every device of `to`, or one payload per device. */
  readonly payload: Uint8Array | ReadonlyArray<DevicePayload>;
}
export interface ServerAckStanza {
  readonly kind: "serverAck";
  readonly clientId: number;
}
export interface ErrorStanza {
  readonly kind: "error";
  readonly code: number;
  /** The client id of the stanza this answers, or null when it answers the session as a whole. */
  readonly clientId: number | null;
  readonly message: string | null;
  /** deviceMismatch only: devices of the recipient the send had no payload for, and payloads for unknown devices. */
  readonly missingDevices?: readonly number[];
  readonly extraDevices?: readonly number[];
}
export interface DeliverStanza {
  readonly kind: "deliver";
  readonly seq: number;
  readonly from: number;
  readonly fromDevice: number;
  readonly clientId: number;
  readonly timeSeconds: number;
  readonly payload: Uint8Array;
}
export interface AckStanza {
  readonly kind: "ack";
  /** Every queue entry up to and including this sequence has been received. */
  readonly seq: number;
}
export interface ReceiptStanza {
  readonly kind: "receipt";
  readonly type: ReceiptTypeValue;
  /** The original sender: account, device and the client ids of its messages. */
  readonly to: number;
  readonly toDevice: number;
  readonly clientIds: readonly number[];
}
export interface DeliverReceiptStanza {
  readonly kind: "deliverReceipt";
  readonly seq: number;
  readonly type: ReceiptTypeValue;
  /** The recipient device that received or read the messages. */
  readonly from: number;
  readonly fromDevice: number;
  /** Client ids of messages sent by `sender device` (the device these ids belong to). */
  readonly senderDevice: number;
  readonly clientIds: readonly number[];
  readonly timeSeconds: number;
}
export interface QueueEmptyStanza {
  readonly kind: "queueEmpty";
}
export interface PingStanza {
  readonly kind: "ping";
}
export interface PongStanza {
  readonly kind: "pong";
}
export interface GoawayStanza {
  readonly kind: "goaway";
  /** An error code saying why (shuttingDown, replaced, ...); its range says whether to come back. */
  readonly code: number;
  /** Wait at least this long before reconnecting. */
  readonly retryAfterMs: number;
  readonly message: string | null;
}
export interface LookupStanza {
  readonly kind: "lookup";
  readonly clientId: number;
  readonly handle: string;
}
export interface LookupResultStanza {
  readonly kind: "lookupResult";
  readonly clientId: number;
  /** null when no account has that handle. */
  readonly account: number | null;
  readonly devices: readonly number[];
}
export interface LinkCreateStanza {
  readonly kind: "linkCreate";
  readonly clientId: number;
}
export interface LinkCodeStanza {
  readonly kind: "linkCode";
  readonly clientId: number;
  readonly code: string;
  readonly expiresAtSeconds: number;
}
export interface DevicesStanza {
  readonly kind: "devices";
  readonly clientId: number;
}
export interface DeviceListStanza {
  readonly kind: "deviceList";
  readonly clientId: number;
  readonly devices: readonly DeviceInfo[];
}
export interface DeviceRemoveStanza {
  readonly kind: "deviceRemove";
  readonly clientId: number;
  readonly device: number;
}

/** Handles of accounts by id (dictionary version 2): who sent me this? Answered per the privacy rule of PROTOCOL.md. */
export interface ReverseLookupStanza {
  readonly kind: "reverseLookup";
  readonly clientId: number;
  /** 1..reverseLookupAccountsMax account ids. */
  readonly accounts: readonly number[];
}
export interface ReverseLookupResultStanza {
  readonly kind: "reverseLookupResult";
  readonly clientId: number;
  /** One per requested account, in the request's order: its handle, or null when this device may not learn it. */
  readonly handles: ReadonlyArray<string | null>;
}

/** A public prekey in Signal's serialisation (33 bytes: 0x05 then the X25519 key), with the device's id for it. */
export interface PublicPreKey {
  readonly keyId: number;
  readonly publicKey: Uint8Array;
}
/** A prekey signed by the device's identity key (XEdDSA over the 33-byte public key). */
export interface SignedPublicPreKey extends PublicPreKey {
  readonly signature: Uint8Array;
}

/** Publishes the device's public keys (dictionary version 3; PROTOCOL.md, "Key directory"). */
export interface KeysUploadStanza {
  readonly kind: "keysUpload";
  readonly clientId: number;
  /** Signal's registration id of the device (14 bits). */
  readonly registrationId: number;
  readonly identityKey: Uint8Array;
  readonly signedPreKey: SignedPublicPreKey;
  /** 0..keysUploadPreKeysMax one-time prekeys, added to those already stored. */
  readonly oneTimePreKeys: readonly PublicPreKey[];
  /** Handed out when the one-time prekeys are used up; null keeps the stored one. */
  readonly lastResortKey: SignedPublicPreKey | null;
}
export interface KeysUploadedStanza {
  readonly kind: "keysUploaded";
  readonly clientId: number;
  readonly oneTimePreKeysLeft: number;
}
/** One bundle per device of `account` that published keys; each consumes one one-time prekey of that device. */
export interface KeysFetchStanza {
  readonly kind: "keysFetch";
  readonly clientId: number;
  readonly account: number;
}
export interface KeyBundle {
  readonly device: number;
  readonly registrationId: number;
  readonly identityKey: Uint8Array;
  readonly signedPreKey: SignedPublicPreKey;
  /** A one-time prekey (used by this fetch alone), the last-resort key, or null when there is neither. */
  readonly preKey: PublicPreKey | null;
  /** preKey is the device's last-resort key (it stays; the device keeps its private half after use). */
  readonly lastResort: boolean;
}
export interface KeyBundlesStanza {
  readonly kind: "keyBundles";
  readonly clientId: number;
  readonly account: number;
  readonly bundles: readonly KeyBundle[];
}
/** Pushed to an online device whose one-time prekeys fell below keysLowThreshold. */
export interface KeysLowStanza {
  readonly kind: "keysLow";
  readonly oneTimePreKeysLeft: number;
  readonly threshold: number;
}
/** A queued event (acknowledged like any queue entry): device `device` of `account` published a new identity key. */
export interface IdentityChangeStanza {
  readonly kind: "identityChange";
  readonly seq: number;
  readonly account: number;
  readonly device: number;
  readonly timeSeconds: number;
}
/**
 * Asks for an upload token (dictionary version 3, PROTOCOL.md "Media"): the blob's SHA-256, its size, and the
 * accounts whose devices may download it. Answered by mediaUploadGrant or an error (mediaTooLarge, ...).
 */
export interface MediaUploadStanza {
  readonly kind: "mediaUpload";
  readonly clientId: number;
  /** SHA-256 of the (encrypted) blob: 32 bytes. */
  readonly hash: Uint8Array;
  readonly size: number;
  /** 1..mediaRecipientsMax account ids. */
  readonly recipients: readonly number[];
}
export interface MediaUploadGrantStanza {
  readonly kind: "mediaUploadGrant";
  readonly clientId: number;
  /** Opaque bearer token (sent base64url-encoded in HTTP) for the media listener's upload path of this hash. */
  readonly token: Uint8Array;
  readonly expiresAtSeconds: number;
  /** The server holds this blob already (dedup): nothing to upload; the recipients were added. */
  readonly stored: boolean;
  /** The media listener's port on the host the device dialed (used when url is null). */
  readonly port: number;
  /** The media listener's base URL when it is elsewhere (a proxy), without a trailing slash; null otherwise. */
  readonly url: string | null;
}
/** Asks for a download token for a blob this device's account may read. */
export interface MediaDownloadStanza {
  readonly kind: "mediaDownload";
  readonly clientId: number;
  readonly hash: Uint8Array;
}
export interface MediaDownloadGrantStanza {
  readonly kind: "mediaDownloadGrant";
  readonly clientId: number;
  readonly token: Uint8Array;
  readonly expiresAtSeconds: number;
  readonly size: number;
  readonly port: number;
  readonly url: string | null;
}

export type Stanza =
  | ChallengeStanza
  | LoginStanza
  | RegisterStanza
  | LinkStanza
  | WelcomeStanza
  | SendStanza
  | ServerAckStanza
  | ErrorStanza
  | DeliverStanza
  | AckStanza
  | ReceiptStanza
  | DeliverReceiptStanza
  | QueueEmptyStanza
  | PingStanza
  | PongStanza
  | GoawayStanza
  | LookupStanza
  | LookupResultStanza
  | LinkCreateStanza
  | LinkCodeStanza
  | DevicesStanza
  | DeviceListStanza
  | DeviceRemoveStanza
  | ReverseLookupStanza
  | ReverseLookupResultStanza
  | KeysUploadStanza
  | KeysUploadedStanza
  | KeysFetchStanza
  | KeyBundlesStanza
  | KeysLowStanza
  | IdentityChangeStanza
  | MediaUploadStanza
  | MediaUploadGrantStanza
  | MediaDownloadStanza
  | MediaDownloadGrantStanza;

export type StanzaOf<K extends Stanza["kind"]> = Extract<Stanza, { kind: K }>;
