// Signal's protocol store (the StorageType of @privacyresearch/libsignal-protocol-typescript) laid out on an
// E2eStore: this device's identity key pair and registration id, its prekeys and signed prekey, the sessions with
// other devices, and the identity keys seen for them. Keys are Signal addresses ("<account>.<device>").
//
// Trust: a changed identity key is accepted (as WhatsApp does: the conversation goes on) and reported through
// `onIdentityChange`, so the app shows that the safety number changed; isTrustedIdentity never blocks.

import type { Direction, KeyPairType, StorageType } from "@privacyresearch/libsignal-protocol-typescript";
import type { E2eStore } from "./e2e-store.ts";

export function toBase64(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let text = "";
  for (const byte of view) text += String.fromCharCode(byte);
  return btoa(text);
}

export function fromBase64(text: string): ArrayBuffer {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let index = 0; index < binary.length; index++) bytes[index] = binary.charCodeAt(index);
  return bytes.buffer;
}

function pairToJson(pair: KeyPairType): string {
  return JSON.stringify({ pub: toBase64(pair.pubKey), priv: toBase64(pair.privKey) });
}

function pairFromJson(text: string | undefined): KeyPairType | undefined {
  if (text === undefined) return undefined;
  const parsed = JSON.parse(text) as { pub: string; priv: string };
  return { pubKey: fromBase64(parsed.pub), privKey: fromBase64(parsed.priv) };
}

function sameBytes(left: ArrayBuffer, right: ArrayBuffer): boolean {
  if (left.byteLength !== right.byteLength) return false;
  const a = new Uint8Array(left);
  const b = new Uint8Array(right);
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

/** The key id of the last-resort prekey: it stays after use (the server hands it out again). */
export const lastResortKeyId = 0xff_ffff;

export class SignalStore implements StorageType {
  /** Called when a device we knew shows a new identity key (address "<account>.<device>"). */
  onIdentityChange: (address: string) => void = () => {};

  constructor(readonly store: E2eStore) {}

  async getIdentityKeyPair(): Promise<KeyPairType | undefined> {
    return pairFromJson(await this.store.get("identityKey"));
  }

  async setIdentityKeyPair(pair: KeyPairType, registrationId: number): Promise<void> {
    await this.store.set("identityKey", pairToJson(pair));
    await this.store.set("registrationId", String(registrationId));
  }

  async getLocalRegistrationId(): Promise<number | undefined> {
    const text = await this.store.get("registrationId");
    return text === undefined ? undefined : Number(text);
  }

  async isTrustedIdentity(_identifier: string, _identityKey: ArrayBuffer, _direction: Direction): Promise<boolean> {
    return true;
  }

  /** Stores a device's identity key; true when it replaced a different one (the safety number changed). */
  async saveIdentity(encodedAddress: string, publicKey: ArrayBuffer): Promise<boolean> {
    const key = `identity:${encodedAddress}`;
    const known = await this.store.get(key);
    if (known !== undefined && sameBytes(fromBase64(known), publicKey)) return false;
    await this.store.set(key, toBase64(publicKey));
    if (known === undefined) return false;
    this.onIdentityChange(encodedAddress);
    return true;
  }

  async loadIdentity(encodedAddress: string): Promise<ArrayBuffer | undefined> {
    const known = await this.store.get(`identity:${encodedAddress}`);
    return known === undefined ? undefined : fromBase64(known);
  }

  async loadPreKey(keyId: string | number): Promise<KeyPairType | undefined> {
    return pairFromJson(await this.store.get(`preKey:${keyId}`));
  }

  async storePreKey(keyId: number | string, keyPair: KeyPairType): Promise<void> {
    await this.store.set(`preKey:${keyId}`, pairToJson(keyPair));
  }

  async removePreKey(keyId: number | string): Promise<void> {
    // The last-resort key is used by every session that starts while the one-time prekeys are gone.
    if (Number(keyId) === lastResortKeyId) return;
    await this.store.delete(`preKey:${keyId}`);
  }

  async storeSession(encodedAddress: string, record: string): Promise<void> {
    await this.store.set(`session:${encodedAddress}`, record);
  }

  async loadSession(encodedAddress: string): Promise<string | undefined> {
    return this.store.get(`session:${encodedAddress}`);
  }

  async removeSession(encodedAddress: string): Promise<void> {
    await this.store.delete(`session:${encodedAddress}`);
  }

  async loadSignedPreKey(keyId: number | string): Promise<KeyPairType | undefined> {
    return pairFromJson(await this.store.get(`signedPreKey:${keyId}`));
  }

  async storeSignedPreKey(keyId: number | string, keyPair: KeyPairType): Promise<void> {
    await this.store.set(`signedPreKey:${keyId}`, pairToJson(keyPair));
  }

  async removeSignedPreKey(keyId: number | string): Promise<void> {
    await this.store.delete(`signedPreKey:${keyId}`);
  }

  /** Small values of the E2E layer (next prekey id, the published signed prekey, known devices). */
  async getValue(key: string): Promise<string | undefined> {
    return this.store.get(`value:${key}`);
  }

  async setValue(key: string, value: string): Promise<void> {
    await this.store.set(`value:${key}`, value);
  }
}
