// The stanzas of protocol version 1, as typed values. On the wire each is a MessagePack array of positional fields
// (see stanza-codec.ts and PROTOCOL.md); here they carry names. Ids (accounts, devices, client ids, sequences) are
// unsigned 32-bit integers; times are whole seconds since the Unix epoch.

import type { GroupDevice } from "./packed-ids.ts";
import type { GroupOpValue, ReceiptTypeValue } from "./tokens.ts";

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
  /**
   * deviceMismatch of a groupSend only (dictionary version 4): member devices the send did not name, and named
   * devices that are not (or no longer) member devices. Packed on the wire (packed-ids.ts).
   */
  readonly missingMemberDevices?: readonly GroupDevice[];
  readonly extraMemberDevices?: readonly GroupDevice[];
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
  /**
   * Dictionary 4: the group the messages were sent to (a `groupDeliver`'s groupId). The server then gathers the read
   * receipts of the group's members into one `groupReceipt` per message (PROTOCOL.md section 18, Receipts). Absent or
   * nil: a one-to-one receipt.
   */
  readonly groupId?: number | null;
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

// ---- groups (dictionary version 4, PROTOCOL.md section 18) --------------------------------------------------------

/** Creates a group; the creating account is its first admin. Answered by groupInfo (or an error). */
export interface GroupCreateStanza {
  readonly kind: "groupCreate";
  readonly clientId: number;
  /** The group's name, end-to-end encrypted by the members: opaque to the server. */
  readonly name: Uint8Array;
  /** The other first members (the creator is added by the server), at most groupMembersMax - 1. */
  readonly members: readonly number[];
  /** Server-internal: the id the edge chose, carried to the group's owner over the mesh. Never on the wire. */
  readonly groupId?: number;
}
/** A membership change (add, remove, promote, demote, leave) or a rename. Answered by groupInfo (or an error). */
export interface GroupUpdateStanza {
  readonly kind: "groupUpdate";
  readonly clientId: number;
  readonly groupId: number;
  readonly op: GroupOpValue;
  /** The accounts the change is about (empty for leave and rename). */
  readonly accounts: readonly number[];
  /** The new name blob for rename; null otherwise. */
  readonly name: Uint8Array | null;
}
/** Asks for a group's members and their devices (members only). */
export interface GroupFetchStanza {
  readonly kind: "groupFetch";
  readonly clientId: number;
  readonly groupId: number;
}
export interface GroupInfoStanza {
  readonly kind: "groupInfo";
  readonly clientId: number;
  readonly groupId: number;
  /** Counts membership changes: 1 after create, +1 per change. */
  readonly version: number;
  readonly name: Uint8Array;
  readonly members: readonly number[];
  /** The admins (a subset of members). */
  readonly admins: readonly number[];
  /** Every device of every member, in canonical order (packed-ids.ts): what a groupSend encrypts for. */
  readonly devices: readonly GroupDevice[];
}
/** One device's own part of a group send: typically the sender-key distribution message for that device. */
export interface GroupPart {
  readonly account: number;
  readonly device: number;
  readonly part: Uint8Array;
}
/**
 * One message to a group (WhatsApp's sender-key shape): one shared ciphertext for every member device and optional
 * per-device parts. Exactly one of `devices` and `devicesHash` states the member devices the sender encrypted for
 * (its own sending device excluded); a stale view is answered by deviceMismatch before anything is stored.
 */
export interface GroupSendStanza {
  readonly kind: "groupSend";
  readonly clientId: number;
  readonly groupId: number;
  readonly devices: readonly GroupDevice[] | null;
  readonly devicesHash: Uint8Array | null;
  readonly payload: Uint8Array;
  readonly parts: readonly GroupPart[];
}
/** A queued group message (acknowledged like any queue entry). */
export interface GroupDeliverStanza {
  readonly kind: "groupDeliver";
  readonly seq: number;
  readonly groupId: number;
  readonly from: number;
  readonly fromDevice: number;
  readonly clientId: number;
  readonly timeSeconds: number;
  readonly payload: Uint8Array;
  /** This device's own part, or null. */
  readonly part: Uint8Array | null;
}
/** A queued membership event (acknowledged like any queue entry), in the order the group's owner applied them. */
export interface GroupEventStanza {
  readonly kind: "groupEvent";
  readonly seq: number;
  readonly groupId: number;
  /** The group's version after this change. */
  readonly version: number;
  readonly op: GroupOpValue;
  /** Who made the change (for leave: who left). */
  readonly actor: number;
  readonly actorDevice: number;
  /** The accounts it concerns (create: every first member, the creator included). */
  readonly accounts: readonly number[];
  /** create and rename: the name blob; null otherwise. */
  readonly name: Uint8Array | null;
  readonly timeSeconds: number;
}

/**
 * Delivered receipts of one group message from many member devices, gathered by the sender's owner over a short
 * hold (groupReceiptHoldMs) so a message to 1,000 members costs the sender's link a few frames, not 1,000. A queued
 * entry (acknowledged like any).
 */
export interface GroupReceiptStanza {
  readonly kind: "groupReceipt";
  readonly seq: number;
  readonly type: ReceiptTypeValue;
  readonly groupId: number;
  /** The sender device whose client id this is. */
  readonly senderDevice: number;
  readonly clientId: number;
  /** The member devices that received it. */
  readonly readers: readonly GroupDevice[];
  readonly timeSeconds: number;
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
  | MediaDownloadGrantStanza
  | GroupCreateStanza
  | GroupUpdateStanza
  | GroupFetchStanza
  | GroupInfoStanza
  | GroupSendStanza
  | GroupDeliverStanza
  | GroupEventStanza
  | GroupReceiptStanza;

export type StanzaOf<K extends Stanza["kind"]> = Extract<Stanza, { kind: K }>;
