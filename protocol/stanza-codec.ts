// Stanza <-> positional field array. The field order of each kind is the wire contract (PROTOCOL.md lists it).
// Decoding validates every field's type and range and returns a ProtocolError (wrongFieldType) instead of throwing.

import { serverNameBytesMax } from "./auth-message.ts";
import { ErrorCode, ProtocolError } from "./errors.ts";
import { groupMembersMax, groupNameBytesMax, groupPartsPerSendMax, type Limits } from "./limits.ts";
import {
  type GroupDevice,
  groupDevicesHashBytes,
  packAccounts,
  packDevices,
  packedAccountBytes,
  packedDeviceBytes,
  unpackAccounts,
  unpackDevices,
} from "./packed-ids.ts";
import type {
  DeviceInfo,
  DevicePayload,
  GroupPart,
  KeyBundle,
  PublicPreKey,
  SignedPublicPreKey,
  Stanza,
} from "./stanzas.ts";
import {
  GroupOp,
  type GroupOpValue,
  groupOpName,
  ReceiptType,
  type ReceiptTypeValue,
  StanzaKind,
  type StanzaKindName,
  stanzaKindName,
} from "./tokens.ts";

const uint32Max = 0xffff_ffff;
/** A media blob's address: its SHA-256. */
export const mediaHashBytes = 32;
/** Longest media token (its fields and an HMAC-SHA-256: 86 bytes today, server/media-token.ts). */
export const mediaTokenBytesMax = 128;

/** The positional fields of a stanza, ready for MessagePack. */
export function stanzaFields(stanza: Stanza): unknown[] {
  switch (stanza.kind) {
    case "challenge":
      return [
        stanza.nonce,
        stanza.serverTimeSeconds,
        stanza.registrationMode,
        stanza.frameBytesMax,
        stanza.payloadBytesMax,
      ];
    // serverName was added at the end (PROTOCOL.md section 15); null leaves it out, as a client before it did.
    case "login":
      return withServerName([stanza.account, stanza.device, stanza.signature], stanza.serverName);
    case "register":
      return withServerName([stanza.invite, stanza.handle, stanza.publicKey, stanza.signature], stanza.serverName);
    case "link":
      return withServerName([stanza.code, stanza.publicKey, stanza.signature], stanza.serverName);
    // oneTimePreKeysLeft was added at the end for dictionary version 3 clients only (the server leaves it out for
    // older ones, whose decoders predate it).
    case "welcome": {
      const fields: unknown[] = [stanza.account, stanza.device, stanza.lastClientId];
      if (stanza.oneTimePreKeysLeft !== undefined) fields.push(stanza.oneTimePreKeysLeft);
      return fields;
    }
    case "send": {
      const payload = stanza.payload;
      if (payload instanceof Uint8Array) return [stanza.clientId, stanza.to, payload];
      const pairs: unknown[] = [];
      for (const entry of payload) pairs.push(entry.device, entry.payload);
      return [stanza.clientId, stanza.to, pairs];
    }
    case "serverAck":
      return [stanza.clientId];
    case "error": {
      const fields: unknown[] = [stanza.code, stanza.clientId, stanza.message];
      if (stanza.missingMemberDevices !== undefined || stanza.extraMemberDevices !== undefined) {
        // A groupSend's lists are (account, device) pairs, packed (PROTOCOL.md section 18).
        fields.push(packDevices(stanza.missingMemberDevices ?? []), packDevices(stanza.extraMemberDevices ?? []));
      } else if (stanza.missingDevices !== undefined || stanza.extraDevices !== undefined) {
        fields.push(stanza.missingDevices ?? [], stanza.extraDevices ?? []);
      }
      return fields;
    }
    case "deliver":
      return [stanza.seq, stanza.from, stanza.fromDevice, stanza.clientId, stanza.timeSeconds, stanza.payload];
    case "ack":
      return [stanza.seq];
    case "receipt":
      return stanza.groupId === undefined || stanza.groupId === null
        ? [stanza.type, stanza.to, stanza.toDevice, stanza.clientIds]
        : [stanza.type, stanza.to, stanza.toDevice, stanza.clientIds, stanza.groupId];
    case "deliverReceipt":
      return [
        stanza.seq,
        stanza.type,
        stanza.from,
        stanza.fromDevice,
        stanza.senderDevice,
        stanza.clientIds,
        stanza.timeSeconds,
      ];
    case "queueEmpty":
    case "ping":
    case "pong":
      return [];
    case "goaway":
      return [stanza.code, stanza.retryAfterMs, stanza.message];
    case "lookup":
      return [stanza.clientId, stanza.handle];
    case "lookupResult":
      return [stanza.clientId, stanza.account, stanza.devices];
    case "linkCreate":
    case "devices":
      return [stanza.clientId];
    case "linkCode":
      return [stanza.clientId, stanza.code, stanza.expiresAtSeconds];
    case "deviceList":
      return [
        stanza.clientId,
        stanza.devices.map((entry) => [entry.device, entry.createdAtSeconds, entry.lastSeenAtSeconds]),
      ];
    case "deviceRemove":
      return [stanza.clientId, stanza.device];
    case "reverseLookup":
      return [stanza.clientId, stanza.accounts];
    case "reverseLookupResult":
      return [stanza.clientId, stanza.handles];
    case "keysUpload":
      return [
        stanza.clientId,
        stanza.registrationId,
        stanza.identityKey,
        signedPreKeyFields(stanza.signedPreKey),
        stanza.oneTimePreKeys.map((key) => [key.keyId, key.publicKey]),
        stanza.lastResortKey === null ? null : signedPreKeyFields(stanza.lastResortKey),
      ];
    case "keysUploaded":
      return [stanza.clientId, stanza.oneTimePreKeysLeft];
    case "keysFetch":
      return [stanza.clientId, stanza.account];
    case "keyBundles":
      return [
        stanza.clientId,
        stanza.account,
        // Flat (the prekeys' fields inline): a nested key would be a fourth level of arrays (nestingDepthMax).
        stanza.bundles.map((bundle) => [
          bundle.device,
          bundle.registrationId,
          bundle.identityKey,
          bundle.signedPreKey.keyId,
          bundle.signedPreKey.publicKey,
          bundle.signedPreKey.signature,
          bundle.preKey?.keyId ?? null,
          bundle.preKey?.publicKey ?? null,
          bundle.lastResort,
        ]),
      ];
    case "keysLow":
      return [stanza.oneTimePreKeysLeft, stanza.threshold];
    case "identityChange":
      return [stanza.seq, stanza.account, stanza.device, stanza.timeSeconds];
    case "mediaUpload":
      return [stanza.clientId, stanza.hash, stanza.size, stanza.recipients];
    case "mediaUploadGrant":
      return [stanza.clientId, stanza.token, stanza.expiresAtSeconds, stanza.stored, stanza.port, stanza.url];
    case "mediaDownload":
      return [stanza.clientId, stanza.hash];
    case "mediaDownloadGrant":
      return [stanza.clientId, stanza.token, stanza.expiresAtSeconds, stanza.size, stanza.port, stanza.url];
    case "groupCreate":
      return [stanza.clientId, stanza.name, packAccounts(stanza.members)];
    case "groupUpdate":
      return [stanza.clientId, stanza.groupId, stanza.op, packAccounts(stanza.accounts), stanza.name];
    case "groupFetch":
      return [stanza.clientId, stanza.groupId];
    case "groupInfo":
      return [
        stanza.clientId,
        stanza.groupId,
        stanza.version,
        stanza.name,
        packAccounts(stanza.members),
        packAccounts(stanza.admins),
        packDevices(stanza.devices),
      ];
    case "groupSend": {
      const parts: unknown[] = [];
      for (const part of stanza.parts) parts.push(part.account, part.device, part.part);
      return [
        stanza.clientId,
        stanza.groupId,
        stanza.devices === null ? null : packDevices(stanza.devices),
        stanza.devicesHash,
        stanza.payload,
        parts,
      ];
    }
    case "groupDeliver":
      return [
        stanza.seq,
        stanza.groupId,
        stanza.from,
        stanza.fromDevice,
        stanza.clientId,
        stanza.timeSeconds,
        stanza.payload,
        stanza.part,
      ];
    case "groupReceipt":
      return [
        stanza.seq,
        stanza.type,
        stanza.groupId,
        stanza.senderDevice,
        stanza.clientId,
        packDevices(stanza.readers),
        stanza.timeSeconds,
      ];
    case "groupEvent":
      return [
        stanza.seq,
        stanza.groupId,
        stanza.version,
        stanza.op,
        stanza.actor,
        stanza.actorDevice,
        packAccounts(stanza.accounts),
        stanza.name,
        stanza.timeSeconds,
      ];
  }
}

function signedPreKeyFields(key: SignedPublicPreKey): unknown[] {
  return [key.keyId, key.publicKey, key.signature];
}

function withServerName(fields: unknown[], serverName: string | null): unknown[] {
  if (serverName !== null) fields.push(serverName);
  return fields;
}

/** Thrown only inside this module and turned into a returned ProtocolError at its edge. */
class FieldError {
  constructor(readonly message: string) {}
}

function fail(message: string): never {
  throw new FieldError(message);
}

/** Reads fields in order, checking each one's type; `name` goes into the error message. */
class FieldReader {
  private index = 0;
  constructor(private readonly fields: readonly unknown[]) {}

  private next(name: string): unknown {
    if (this.index >= this.fields.length) fail(`missing field ${name}`);
    return this.fields[this.index++];
  }

  get remaining(): number {
    return this.fields.length - this.index;
  }

  uint32(name: string): number {
    const value = this.next(name);
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > uint32Max) {
      fail(`${name} must be an unsigned 32-bit integer`);
    }
    return value;
  }

  /** An id: 1 .. 2^32-1 (0 is never an id). */
  id(name: string): number {
    const value = this.uint32(name);
    if (value === 0) fail(`${name} must not be 0`);
    return value;
  }

  idOrNull(name: string): number | null {
    if (this.fields[this.index] === null) {
      this.index++;
      return null;
    }
    return this.id(name);
  }

  bytes(name: string, lengthMax: number, lengthExact?: number): Uint8Array {
    const value = this.next(name);
    if (!(value instanceof Uint8Array)) fail(`${name} must be bytes`);
    if (lengthExact !== undefined && value.length !== lengthExact) fail(`${name} must be ${lengthExact} bytes`);
    if (value.length > lengthMax) fail(`${name} longer than ${lengthMax} bytes`);
    return value;
  }

  string(name: string, bytesMax: number): string {
    const value = this.next(name);
    if (typeof value !== "string") fail(`${name} must be a string`);
    // A UTF-8 byte count is at most 3 per UTF-16 unit; only measure exactly when the quick bound is not enough.
    if (value.length * 3 > bytesMax && new TextEncoder().encode(value).length > bytesMax) {
      fail(`${name} longer than ${bytesMax} bytes`);
    }
    return value;
  }

  stringOrNull(name: string, bytesMax: number): string | null {
    if (this.fields[this.index] === null) {
      this.index++;
      return null;
    }
    return this.string(name, bytesMax);
  }

  /** A field added at the end of a stanza: absent (an older sender) or nil reads as null. */
  optionalString(name: string, bytesMax: number): string | null {
    return this.remaining === 0 ? null : this.stringOrNull(name, bytesMax);
  }

  array(name: string, itemsMax: number): readonly unknown[] {
    const value = this.next(name);
    if (!Array.isArray(value)) fail(`${name} must be an array`);
    if (value.length > itemsMax) fail(`${name} has more than ${itemsMax} items`);
    return value;
  }

  idArray(name: string, itemsMax: number): number[] {
    const items = this.array(name, itemsMax);
    const ids = new Array<number>(items.length);
    for (let index = 0; index < items.length; index++) {
      const value = items[index];
      if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > uint32Max) {
        fail(`${name}[${index}] must be an id`);
      }
      ids[index] = value;
    }
    return ids;
  }

  boolean(name: string): boolean {
    const value = this.next(name);
    if (typeof value !== "boolean") fail(`${name} must be a boolean`);
    return value;
  }

  isNull(): boolean {
    if (this.fields[this.index] !== null) return false;
    this.index++;
    return true;
  }

  /** [keyId, publicKey] of Signal's 33-byte serialisation. */
  preKey(name: string): PublicPreKey {
    const reader = new FieldReader(this.array(name, 2));
    return { keyId: reader.uint32(`${name}.keyId`), publicKey: reader.bytes(`${name}.publicKey`, 33, 33) };
  }

  /** [keyId, publicKey, signature]. */
  signedPreKey(name: string): SignedPublicPreKey {
    const reader = new FieldReader(this.array(name, 3));
    return {
      keyId: reader.uint32(`${name}.keyId`),
      publicKey: reader.bytes(`${name}.publicKey`, 33, 33),
      signature: reader.bytes(`${name}.signature`, 64, 64),
    };
  }

  /** A packed account list (packed-ids.ts) of at most `itemsMax` ids. */
  accounts(name: string, itemsMax: number): number[] {
    const bytes = this.bytes(name, itemsMax * packedAccountBytes);
    const accounts = unpackAccounts(bytes);
    if (accounts === null) fail(`${name} must be 4-byte non-zero account ids`);
    return accounts;
  }

  /** A packed (account, device) list (packed-ids.ts) of at most `itemsMax` devices. */
  devices(name: string, itemsMax: number): GroupDevice[] {
    const bytes = this.bytes(name, itemsMax * packedDeviceBytes);
    const devices = unpackDevices(bytes);
    if (devices === null) fail(`${name} must be 8-byte (account, device) pairs of non-zero ids`);
    return devices;
  }

  bytesOrNull(name: string, lengthMax: number, lengthExact?: number): Uint8Array | null {
    if (this.isNull()) return null;
    return this.bytes(name, lengthMax, lengthExact);
  }

  groupOp(name: string): GroupOpValue {
    const value = this.uint32(name);
    if (groupOpName(value) === undefined) fail(`${name} is not a group operation`);
    return value as GroupOpValue;
  }

  receiptType(name: string): ReceiptTypeValue {
    const value = this.uint32(name);
    if (value !== ReceiptType.delivered && value !== ReceiptType.read) fail(`${name} is not a receipt type`);
    return value;
  }
}

function decodeKind(kind: StanzaKindName, fields: readonly unknown[], limits: Limits): Stanza {
  const read = new FieldReader(fields);
  const publicKeyBytes = 32;
  const signatureBytes = 64;
  const nonceBytes = 32;
  // Signal's serialisation of a Curve25519 public key: a 0x05 type byte, then the 32-byte key.
  const identityKeyBytes = 33;
  switch (kind) {
    case "challenge":
      return {
        kind,
        nonce: read.bytes("nonce", nonceBytes, nonceBytes),
        serverTimeSeconds: read.uint32("serverTimeSeconds"),
        registrationMode: read.uint32("registrationMode"),
        frameBytesMax: read.uint32("frameBytesMax"),
        payloadBytesMax: read.uint32("payloadBytesMax"),
      };
    case "login":
      return {
        kind,
        account: read.id("account"),
        device: read.id("device"),
        signature: read.bytes("signature", signatureBytes, signatureBytes),
        serverName: read.optionalString("serverName", serverNameBytesMax),
      };
    case "register":
      return {
        kind,
        invite: read.stringOrNull("invite", limits.stringBytesMax),
        handle: read.string("handle", limits.handleBytesMax),
        publicKey: read.bytes("publicKey", publicKeyBytes, publicKeyBytes),
        signature: read.bytes("signature", signatureBytes, signatureBytes),
        serverName: read.optionalString("serverName", serverNameBytesMax),
      };
    case "link":
      return {
        kind,
        code: read.string("code", limits.stringBytesMax),
        publicKey: read.bytes("publicKey", publicKeyBytes, publicKeyBytes),
        signature: read.bytes("signature", signatureBytes, signatureBytes),
        serverName: read.optionalString("serverName", serverNameBytesMax),
      };
    case "welcome": {
      const welcome = {
        kind,
        account: read.id("account"),
        device: read.id("device"),
        lastClientId: read.uint32("lastClientId"),
      };
      if (read.remaining === 0) return welcome;
      return { ...welcome, oneTimePreKeysLeft: read.uint32("oneTimePreKeysLeft") };
    }
    case "send": {
      const clientId = read.id("clientId");
      const to = read.id("to");
      // Payloads of a send are bounded here by the frame only: the server answers one over payloadBytesMax with
      // payloadTooLarge and keeps the session (a client may not know the server's configured limit).
      if (fields[2] instanceof Uint8Array) {
        return { kind, clientId, to, payload: read.bytes("payload", limits.frameBytesMax) };
      }
      const pairs = read.array("payload", limits.devicesPerAccountMax * 2);
      if (pairs.length === 0 || pairs.length % 2 !== 0) fail("payload must be bytes or device/payload pairs");
      const pairReader = new FieldReader(pairs);
      const payloads: DevicePayload[] = [];
      for (let index = 0; index < pairs.length; index += 2) {
        payloads.push({
          device: pairReader.id(`payload[${index}].device`),
          payload: pairReader.bytes(`payload[${index}].payload`, limits.frameBytesMax),
        });
      }
      return { kind, clientId, to, payload: payloads };
    }
    case "serverAck":
    case "linkCreate":
    case "devices":
      return { kind, clientId: read.id("clientId") };
    case "error": {
      const code = read.uint32("code");
      const clientId = read.idOrNull("clientId");
      const message = read.stringOrNull("message", limits.stringBytesMax);
      if (read.remaining >= 2 && fields[3] instanceof Uint8Array) {
        const groupDevicesMax = groupMembersMax * limits.devicesPerAccountMax;
        const missingMemberDevices = read.devices("missingMemberDevices", groupDevicesMax);
        const extraMemberDevices = read.devices("extraMemberDevices", groupDevicesMax);
        return { kind, code, clientId, message, missingMemberDevices, extraMemberDevices };
      }
      if (read.remaining >= 2) {
        const missingDevices = read.idArray("missingDevices", limits.devicesPerAccountMax);
        const extraDevices = read.idArray("extraDevices", limits.devicesPerAccountMax);
        return { kind, code, clientId, message, missingDevices, extraDevices };
      }
      return { kind, code, clientId, message };
    }
    case "deliver":
      return {
        kind,
        seq: read.id("seq"),
        from: read.id("from"),
        fromDevice: read.id("fromDevice"),
        clientId: read.id("clientId"),
        timeSeconds: read.uint32("timeSeconds"),
        payload: read.bytes("payload", limits.payloadBytesMax),
      };
    case "ack":
      return { kind, seq: read.id("seq") };
    case "receipt": {
      const stanza = {
        kind,
        type: read.receiptType("type"),
        to: read.id("to"),
        toDevice: read.id("toDevice"),
        clientIds: read.idArray("clientIds", limits.receiptClientIdsMax),
      };
      if (stanza.clientIds.length === 0) fail("clientIds must not be empty");
      // A field added at the end (dictionary 4): absent or nil is a one-to-one receipt.
      const groupId = read.remaining === 0 ? null : read.idOrNull("groupId");
      return groupId === null ? stanza : { ...stanza, groupId };
    }
    case "deliverReceipt":
      return {
        kind,
        seq: read.id("seq"),
        type: read.receiptType("type"),
        from: read.id("from"),
        fromDevice: read.id("fromDevice"),
        senderDevice: read.id("senderDevice"),
        clientIds: read.idArray("clientIds", limits.receiptClientIdsMax),
        timeSeconds: read.uint32("timeSeconds"),
      };
    case "queueEmpty":
    case "ping":
    case "pong":
      return { kind };
    case "goaway":
      return {
        kind,
        code: read.uint32("code"),
        retryAfterMs: read.uint32("retryAfterMs"),
        message: read.stringOrNull("message", limits.stringBytesMax),
      };
    case "lookup":
      return { kind, clientId: read.id("clientId"), handle: read.string("handle", limits.handleBytesMax) };
    case "lookupResult":
      return {
        kind,
        clientId: read.id("clientId"),
        account: read.idOrNull("account"),
        devices: read.idArray("devices", limits.devicesPerAccountMax),
      };
    case "linkCode":
      return {
        kind,
        clientId: read.id("clientId"),
        code: read.string("code", limits.stringBytesMax),
        expiresAtSeconds: read.uint32("expiresAtSeconds"),
      };
    case "deviceList": {
      const clientId = read.id("clientId");
      const entries = read.array("devices", limits.devicesPerAccountMax);
      const devices: DeviceInfo[] = entries.map((entry, index) => {
        if (!Array.isArray(entry)) fail(`devices[${index}] must be an array`);
        const entryReader = new FieldReader(entry);
        return {
          device: entryReader.id(`devices[${index}].device`),
          createdAtSeconds: entryReader.uint32(`devices[${index}].createdAtSeconds`),
          lastSeenAtSeconds: entryReader.uint32(`devices[${index}].lastSeenAtSeconds`),
        };
      });
      return { kind, clientId, devices };
    }
    case "deviceRemove":
      return { kind, clientId: read.id("clientId"), device: read.id("device") };
    case "reverseLookup": {
      const clientId = read.id("clientId");
      const accounts = read.idArray("accounts", limits.reverseLookupAccountsMax);
      if (accounts.length === 0) fail("accounts must not be empty");
      return { kind, clientId, accounts };
    }
    case "reverseLookupResult": {
      const clientId = read.id("clientId");
      const entries = read.array("handles", limits.reverseLookupAccountsMax);
      const handleReader = new FieldReader(entries);
      const handles: Array<string | null> = [];
      for (let index = 0; index < entries.length; index++) {
        handles.push(handleReader.stringOrNull(`handles[${index}]`, limits.handleBytesMax));
      }
      return { kind, clientId, handles };
    }
    case "keysUpload": {
      const clientId = read.id("clientId");
      const registrationId = read.uint32("registrationId");
      const identityKey = read.bytes("identityKey", identityKeyBytes, identityKeyBytes);
      const signedPreKey = read.signedPreKey("signedPreKey");
      const entries = read.array("oneTimePreKeys", limits.keysUploadPreKeysMax);
      const keyReader = new FieldReader(entries);
      const oneTimePreKeys: PublicPreKey[] = [];
      for (let index = 0; index < entries.length; index++)
        oneTimePreKeys.push(keyReader.preKey(`oneTimePreKeys[${index}]`));
      const lastResortKey = read.isNull() ? null : read.signedPreKey("lastResortKey");
      return { kind, clientId, registrationId, identityKey, signedPreKey, oneTimePreKeys, lastResortKey };
    }
    case "keysUploaded":
      return { kind, clientId: read.id("clientId"), oneTimePreKeysLeft: read.uint32("oneTimePreKeysLeft") };
    case "keysFetch":
      return { kind, clientId: read.id("clientId"), account: read.id("account") };
    case "keyBundles": {
      const clientId = read.id("clientId");
      const account = read.id("account");
      const entries = read.array("bundles", limits.devicesPerAccountMax);
      const bundles: KeyBundle[] = entries.map((entry, index) => {
        if (!Array.isArray(entry)) fail(`bundles[${index}] must be an array`);
        const bundle = new FieldReader(entry);
        const name = `bundles[${index}]`;
        const device = bundle.id(`${name}.device`);
        const registrationId = bundle.uint32(`${name}.registrationId`);
        const identityKey = bundle.bytes(`${name}.identityKey`, identityKeyBytes, identityKeyBytes);
        const signedPreKey = {
          keyId: bundle.uint32(`${name}.signedPreKeyId`),
          publicKey: bundle.bytes(`${name}.signedPreKey`, identityKeyBytes, identityKeyBytes),
          signature: bundle.bytes(`${name}.signature`, signatureBytes, signatureBytes),
        };
        let preKey: PublicPreKey | null = null;
        // preKeyId and preKey are both nil, or both set.
        if (!bundle.isNull()) {
          const keyId = bundle.uint32(`${name}.preKeyId`);
          preKey = { keyId, publicKey: bundle.bytes(`${name}.preKey`, identityKeyBytes, identityKeyBytes) };
        } else {
          const idle = bundle.isNull();
          if (!idle) fail(`${name}.preKey must be nil when preKeyId is`);
        }
        return {
          device,
          registrationId,
          identityKey,
          signedPreKey,
          preKey,
          lastResort: bundle.boolean(`${name}.lastResort`),
        };
      });
      return { kind, clientId, account, bundles };
    }
    case "keysLow":
      return { kind, oneTimePreKeysLeft: read.uint32("oneTimePreKeysLeft"), threshold: read.uint32("threshold") };
    case "identityChange":
      return {
        kind,
        seq: read.id("seq"),
        account: read.id("account"),
        device: read.id("device"),
        timeSeconds: read.uint32("timeSeconds"),
      };
    case "mediaUpload": {
      const stanza = {
        kind,
        clientId: read.id("clientId"),
        hash: read.bytes("hash", mediaHashBytes, mediaHashBytes),
        size: read.uint32("size"),
        recipients: read.idArray("recipients", limits.mediaRecipientsMax),
      };
      if (stanza.size === 0) fail("size must not be 0");
      if (stanza.recipients.length === 0) fail("recipients must not be empty");
      return stanza;
    }
    case "mediaUploadGrant":
      return {
        kind,
        clientId: read.id("clientId"),
        token: read.bytes("token", mediaTokenBytesMax),
        expiresAtSeconds: read.uint32("expiresAtSeconds"),
        stored: read.boolean("stored"),
        port: read.uint32("port"),
        url: read.stringOrNull("url", limits.stringBytesMax),
      };
    case "mediaDownload":
      return { kind, clientId: read.id("clientId"), hash: read.bytes("hash", mediaHashBytes, mediaHashBytes) };
    case "mediaDownloadGrant":
      return {
        kind,
        clientId: read.id("clientId"),
        token: read.bytes("token", mediaTokenBytesMax),
        expiresAtSeconds: read.uint32("expiresAtSeconds"),
        size: read.uint32("size"),
        port: read.uint32("port"),
        url: read.stringOrNull("url", limits.stringBytesMax),
      };
    case "groupCreate": {
      const stanza = {
        kind,
        clientId: read.id("clientId"),
        name: read.bytes("name", groupNameBytesMax),
        members: read.accounts("members", groupMembersMax),
      };
      return stanza;
    }
    case "groupUpdate": {
      const stanza = {
        kind,
        clientId: read.id("clientId"),
        groupId: read.id("groupId"),
        op: read.groupOp("op"),
        accounts: read.accounts("accounts", groupMembersMax),
        name: read.bytesOrNull("name", groupNameBytesMax),
      };
      if (stanza.op === GroupOp.create) fail("op create is not an update (use groupCreate)");
      if (stanza.op === GroupOp.rename && stanza.name === null) fail("rename needs a name");
      if (stanza.op !== GroupOp.rename && stanza.name !== null) fail("only rename carries a name");
      const needsAccounts = stanza.op !== GroupOp.leave && stanza.op !== GroupOp.rename;
      if (needsAccounts !== stanza.accounts.length > 0) {
        fail(needsAccounts ? "accounts must not be empty" : "leave and rename name no accounts");
      }
      return stanza;
    }
    case "groupFetch":
      return { kind, clientId: read.id("clientId"), groupId: read.id("groupId") };
    case "groupInfo":
      return {
        kind,
        clientId: read.id("clientId"),
        groupId: read.id("groupId"),
        version: read.uint32("version"),
        name: read.bytes("name", groupNameBytesMax),
        members: read.accounts("members", groupMembersMax),
        admins: read.accounts("admins", groupMembersMax),
        devices: read.devices("devices", groupMembersMax * limits.devicesPerAccountMax),
      };
    case "groupSend": {
      const clientId = read.id("clientId");
      const groupId = read.id("groupId");
      const devices = read.isNull() ? null : read.devices("devices", groupMembersMax * limits.devicesPerAccountMax);
      const devicesHash = read.bytesOrNull("devicesHash", groupDevicesHashBytes, groupDevicesHashBytes);
      if ((devices === null) === (devicesHash === null)) fail("exactly one of devices and devicesHash must be set");
      // Bounded here by the frame only, as a send's payload: over payloadBytesMax is payloadTooLarge, session kept.
      const payload = read.bytes("payload", limits.frameBytesMax);
      const flat = read.array("parts", groupPartsPerSendMax * 3);
      if (flat.length % 3 !== 0) fail("parts must be (account, device, part) triples");
      const partReader = new FieldReader(flat);
      const parts: GroupPart[] = [];
      for (let index = 0; index < flat.length; index += 3) {
        parts.push({
          account: partReader.id(`parts[${index}].account`),
          device: partReader.id(`parts[${index}].device`),
          part: partReader.bytes(`parts[${index}].part`, limits.frameBytesMax),
        });
      }
      return { kind, clientId, groupId, devices, devicesHash, payload, parts };
    }
    case "groupDeliver":
      return {
        kind,
        seq: read.id("seq"),
        groupId: read.id("groupId"),
        from: read.id("from"),
        fromDevice: read.id("fromDevice"),
        clientId: read.id("clientId"),
        timeSeconds: read.uint32("timeSeconds"),
        payload: read.bytes("payload", limits.payloadBytesMax),
        part: read.bytesOrNull("part", limits.payloadBytesMax),
      };
    case "groupReceipt":
      return {
        kind,
        seq: read.id("seq"),
        type: read.receiptType("type"),
        groupId: read.id("groupId"),
        senderDevice: read.id("senderDevice"),
        clientId: read.id("clientId"),
        readers: read.devices("readers", groupMembersMax * limits.devicesPerAccountMax),
        timeSeconds: read.uint32("timeSeconds"),
      };
    case "groupEvent":
      return {
        kind,
        seq: read.id("seq"),
        groupId: read.id("groupId"),
        version: read.uint32("version"),
        op: read.groupOp("op"),
        actor: read.id("actor"),
        actorDevice: read.id("actorDevice"),
        accounts: read.accounts("accounts", groupMembersMax),
        name: read.bytesOrNull("name", groupNameBytesMax),
        timeSeconds: read.uint32("timeSeconds"),
      };
  }
}

/** Turns a decoded body into a stanza of kind `kindToken`, or a ProtocolError. Never throws. */
export function stanzaFromFields(kindToken: number, body: unknown, limits: Limits): Stanza | ProtocolError {
  const kind = stanzaKindName(kindToken);
  if (kind === undefined) return new ProtocolError(ErrorCode.unknownKind, `unknown stanza kind ${kindToken}`);
  if (!Array.isArray(body)) return new ProtocolError(ErrorCode.wrongFieldType, `${kind}: body must be an array`);
  try {
    return decodeKind(kind, body, limits);
  } catch (caught) {
    if (caught instanceof FieldError) return new ProtocolError(ErrorCode.wrongFieldType, `${kind}: ${caught.message}`);
    return new ProtocolError(ErrorCode.malformedBody, `${kind}: undecodable body`, { cause: caught });
  }
}

export function stanzaKindToken(stanza: Stanza): number {
  return StanzaKind[stanza.kind];
}
