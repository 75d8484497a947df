// End-to-end encryption for a SwitchboardClient, with the Signal protocol (X3DH and the Double Ratchet) from
// @privacyresearch/libsignal-protocol-typescript: one implementation in Bun and in the browser (pure TypeScript,
// curve25519 in asm.js, WebCrypto for AES-CBC, HMAC and HKDF), so a terminal chat and the web page talk to each
// other end to end. The server only routes the resulting payloads (PROTOCOL.md section 16).
//
// - Keys: a Signal identity per device, made on first use and kept in the E2eStore; published in the server's key
//   directory on the first connection, refilled when welcome says few one-time prekeys are left or keysLow comes.
// - Sending (client-side fan-out): one payload per device of the recipient: `[type byte][Signal message]`, type 3
//   for a message that starts a session (PreKeyWhisperMessage), 1 for the rest. A device without a session (it
//   published no keys) gets an empty payload. Sessions start from bundles fetched from the directory; a send refused
//   with deviceMismatch (a device added or removed) is retried once with fresh bundles for the missing devices.
// - Receiving: payloads are decrypted before the message is acked (the `message` listener waits for it); one that
//   does not decrypt is dropped with an `undecryptable` event, which names the sender and why.
// - Identity changes: the server's queued identityChange event, or a session whose peer shows a new identity key,
//   gives a `safetyNumberChange` event; the stale session is dropped so the next send starts a new one.

import {
  KeyHelper,
  SessionBuilder,
  SessionCipher,
  SignalProtocolAddress,
} from "@privacyresearch/libsignal-protocol-typescript";
import { type DevicePayload, ErrorCode } from "../protocol/index.ts";
import { ClientError } from "./client-errors.ts";
import type { ConnectedEvent, IdentityChangeEvent, MessageEvent } from "./client-events.ts";
import { safetyNumber } from "./e2e-safety-number.ts";
import type { E2eStore } from "./e2e-store.ts";
import type { SendResult } from "./outbox.ts";
import { fromBase64, lastResortKeyId, SignalStore, toBase64 } from "./signal-store.ts";
import type { SwitchboardClient } from "./switchboard-client.ts";

/** Signal's message types, the first byte of a payload. */
const preKeyMessageType = 3;
const whisperMessageType = 1;
/** One-time prekey ids run 1..0xfffffe (0xffffff is the last-resort key's). */
const preKeyIdMax = lastResortKeyId - 1;
const signedPreKeyId = 1;
/** How long a device that had no bundle is written to with empty payloads before its keys are asked for again. */
const retryNoKeysMs = 60 * 1000;
/** Bytes of one one-time prekey in a keysUpload ([keyId, 33-byte key]), and a bound on the rest of the stanza. */
const preKeyBytes = 41;
const uploadFixedBytes = 400;
const safetyNumbersCachedMax = 256;

export interface E2eOptions {
  /** One-time prekeys per upload (the server takes at most keysUploadPreKeysMax per upload: 100 by default). */
  readonly preKeysPerUpload?: number;
  /** Upload a new batch when the server holds fewer than this (welcome tells); keysLow always refills. */
  readonly refillBelow?: number;
}

export interface PlaintextEvent {
  readonly seq: number;
  readonly from: number;
  readonly fromDevice: number;
  readonly clientId: number;
  readonly timeSeconds: number;
  readonly plaintext: Uint8Array;
}

export interface UndecryptableEvent {
  readonly from: number;
  readonly fromDevice: number;
  readonly clientId: number;
  readonly reason: string;
}

export interface SafetyNumberChangeEvent {
  readonly account: number;
  readonly device: number;
}

interface E2eEventMap {
  plaintext: PlaintextEvent;
  undecryptable: UndecryptableEvent;
  safetyNumberChange: SafetyNumberChangeEvent;
  keysUploaded: { readonly oneTimePreKeysLeft: number };
  /** A failure the app did not cause by a call (a key upload after a connect or keysLow). */
  error: Error;
}
type E2eEventName = keyof E2eEventMap;
type E2eListener<K extends E2eEventName> = (event: E2eEventMap[K]) => unknown;

export class E2eSession {
  readonly signal: SignalStore;
  private readonly preKeysPerUpload: number;
  private readonly refillBelow: number;
  private readonly listeners: { [K in E2eEventName]: Array<E2eListener<K>> } = {
    plaintext: [],
    undecryptable: [],
    safetyNumberChange: [],
    keysUploaded: [],
    error: [],
  };
  private identityReady: Promise<void> | null = null;
  private uploading: Promise<void> | null = null;
  private firstUpload: Promise<void>;
  private firstUploadDone!: () => void;
  /** Devices told of by the server's identityChange event: the session's own report of the new key is not repeated. */
  private readonly announced = new Set<string>();
  private readonly detach: Array<() => void> = [];
  /** Per recipient account: the tail of its sends' encryption (inOrder). */
  private readonly chains = new Map<number, Promise<void>>();
  /** Safety numbers computed so far, by the two accounts and keys (bounded; the oldest go first). */
  private readonly safetyNumbers = new Map<string, Promise<string>>();

  constructor(
    readonly client: SwitchboardClient,
    store: E2eStore,
    options: E2eOptions = {},
  ) {
    this.signal = new SignalStore(store);
    this.preKeysPerUpload = options.preKeysPerUpload ?? 50;
    this.refillBelow = options.refillBelow ?? 10;
    this.firstUpload = new Promise((resolve) => {
      this.firstUploadDone = resolve;
    });
    this.signal.onIdentityChange = (address) => {
      if (this.announced.delete(address)) return;
      const [account, device] = address.split(".").map(Number);
      this.emit("safetyNumberChange", { account: account!, device: device! });
    };
    this.detach.push(
      client.on("connected", (event) => this.connected(event)),
      client.on("keysLow", () => void this.refill().catch((error) => this.report(error))),
      client.on("message", (event) => this.receive(event)),
      client.on("identityChange", (event) => this.identityChange(event)),
    );
  }

  on<K extends E2eEventName>(name: K, listener: E2eListener<K>): () => void {
    this.listeners[name].push(listener);
    return () => {
      const list = this.listeners[name];
      const index = list.indexOf(listener);
      if (index >= 0) list.splice(index, 1);
    };
  }

  private emit<K extends E2eEventName>(name: K, event: E2eEventMap[K]): Array<PromiseLike<unknown>> {
    const waits: Array<PromiseLike<unknown>> = [];
    for (const listener of [...this.listeners[name]]) {
      try {
        const result = listener(event);
        if (result instanceof Promise) waits.push(result);
      } catch (error) {
        if (name === "error") console.error(`e2e: an error listener threw: ${String(error)}`);
        else this.report(error);
      }
    }
    return waits;
  }

  private report(error: unknown): void {
    const wrapped = error instanceof Error ? error : new Error(String(error));
    if (this.listeners.error.length === 0) console.error(`e2e: ${wrapped.message}`);
    else this.emit("error", wrapped);
  }

  /** Stops listening to the client (the store stays as it is). */
  close(): void {
    for (const off of this.detach.splice(0)) off();
  }

  /** Resolves once this device's keys are in the server's directory (after the first connection). */
  whenPublished(): Promise<void> {
    return this.firstUpload;
  }

  // ---- keys ------------------------------------------------------------------------------------------------------

  /** Makes this device's Signal identity on first use. */
  private ensureIdentity(): Promise<void> {
    this.identityReady ??= (async () => {
      if ((await this.signal.getIdentityKeyPair()) !== undefined) return;
      const identity = await KeyHelper.generateIdentityKeyPair();
      // 0 is not a registration id the server takes; Signal's are 14 bits.
      const registrationId = KeyHelper.generateRegistrationId() || 1;
      await this.signal.setIdentityKeyPair(identity, registrationId);
    })();
    return this.identityReady;
  }

  private async connected(event: ConnectedEvent): Promise<void> {
    try {
      await this.ensureIdentity();
      const published = (await this.signal.getValue("published")) === "1";
      const left = event.oneTimePreKeysLeft;
      if (!published || (left !== undefined && left < this.refillBelow)) await this.refill();
      this.firstUploadDone();
    } catch (error) {
      this.report(error);
    }
  }

  /** Uploads a new batch of one-time prekeys (with the identity, signed and last-resort keys). One at a time. */
  refill(): Promise<void> {
    this.uploading ??= this.upload().finally(() => {
      this.uploading = null;
    });
    return this.uploading;
  }

  private async upload(): Promise<void> {
    await this.ensureIdentity();
    const identity = (await this.signal.getIdentityKeyPair())!;
    const registrationId = (await this.signal.getLocalRegistrationId())!;
    const signed = await this.publicSignedKey("signedPreKey", signedPreKeyId, async (pair) =>
      this.signal.storeSignedPreKey(signedPreKeyId, pair),
    );
    const lastResort = await this.publicSignedKey("lastResortKey", lastResortKeyId, async (pair) =>
      this.signal.storePreKey(lastResortKeyId, pair),
    );
    let next = Number((await this.signal.getValue("nextPreKeyId")) ?? "1");
    const oneTimePreKeys: Array<{ keyId: number; publicKey: Uint8Array }> = [];
    // As many as the server's frame takes: each one-time prekey is at most 41 bytes, the rest of the upload ~300.
    const fit = Math.floor((this.client.frameBytesMax - uploadFixedBytes) / preKeyBytes);
    const batch = Math.max(1, Math.min(this.preKeysPerUpload, fit));
    for (let count = 0; count < batch; count++) {
      const preKey = await KeyHelper.generatePreKey(next);
      await this.signal.storePreKey(next, preKey.keyPair);
      oneTimePreKeys.push({ keyId: next, publicKey: new Uint8Array(preKey.keyPair.pubKey) });
      next = next >= preKeyIdMax ? 1 : next + 1;
    }
    await this.signal.setValue("nextPreKeyId", String(next));
    const left = await this.client.uploadKeys({
      registrationId,
      identityKey: new Uint8Array(identity.pubKey),
      signedPreKey: signed,
      oneTimePreKeys,
      lastResortKey: lastResort,
    });
    await this.signal.setValue("published", "1");
    this.emit("keysUploaded", { oneTimePreKeysLeft: left });
  }

  /** A signed prekey (the signed prekey, or the last-resort key), made and stored once. */
  private async publicSignedKey(
    name: string,
    keyId: number,
    storePair: (pair: { pubKey: ArrayBuffer; privKey: ArrayBuffer }) => Promise<void>,
  ): Promise<{ keyId: number; publicKey: Uint8Array; signature: Uint8Array }> {
    const stored = await this.signal.getValue(name);
    if (stored !== undefined) {
      const parsed = JSON.parse(stored) as { pub: string; sig: string };
      return {
        keyId,
        publicKey: new Uint8Array(fromBase64(parsed.pub)),
        signature: new Uint8Array(fromBase64(parsed.sig)),
      };
    }
    const identity = (await this.signal.getIdentityKeyPair())!;
    const made = await KeyHelper.generateSignedPreKey(identity, keyId);
    await storePair(made.keyPair);
    await this.signal.setValue(
      name,
      JSON.stringify({ pub: toBase64(made.keyPair.pubKey), sig: toBase64(made.signature) }),
    );
    return { keyId, publicKey: new Uint8Array(made.keyPair.pubKey), signature: new Uint8Array(made.signature) };
  }

  // ---- sessions ----------------------------------------------------------------------------------------------------

  private address(account: number, device: number): SignalProtocolAddress {
    return new SignalProtocolAddress(String(account), device);
  }

  /** The devices of `account` this device writes to (from bundles, deviceMismatch answers and received messages). */
  async knownDevices(account: number): Promise<number[] | undefined> {
    const text = await this.signal.getValue(`devices:${account}`);
    return text === undefined ? undefined : (JSON.parse(text) as number[]);
  }

  private async setKnownDevices(account: number, devices: readonly number[]): Promise<void> {
    await this.signal.setValue(`devices:${account}`, JSON.stringify([...new Set(devices)].sort((a, b) => a - b)));
  }

  /** Fetches `account`'s bundles and starts a session with each device listed (all when `only` is undefined). */
  private async startSessions(account: number, only?: ReadonlySet<number>): Promise<number[]> {
    const bundles = await this.client.fetchKeyBundles(account);
    const started: number[] = [];
    for (const bundle of bundles) {
      if (only !== undefined && !only.has(bundle.device)) continue;
      await new SessionBuilder(this.signal, this.address(account, bundle.device)).processPreKey({
        identityKey: copy(bundle.identityKey),
        registrationId: bundle.registrationId,
        signedPreKey: {
          keyId: bundle.signedPreKey.keyId,
          publicKey: copy(bundle.signedPreKey.publicKey),
          signature: copy(bundle.signedPreKey.signature),
        },
        ...(bundle.preKey === null
          ? {}
          : { preKey: { keyId: bundle.preKey.keyId, publicKey: copy(bundle.preKey.publicKey) } }),
      });
      started.push(bundle.device);
    }
    return started;
  }

  /** One payload per known device of `to`: a Signal message, or empty for a device with no session. */
  async encryptFor(to: number, plaintext: Uint8Array): Promise<DevicePayload[]> {
    let devices = await this.knownDevices(to);
    if (devices === undefined) {
      devices = await this.startSessions(to);
      // No device published keys: name device 1, and the server's deviceMismatch says which devices there are.
      if (devices.length === 0) devices = [1];
      await this.setKnownDevices(to, devices);
    }
    // Devices without a session (an identity change dropped it, or they had no keys): one fetch for all of them,
    // at most once per retryNoKeysMs for a device whose account gave no bundle for it (the fetch budget is small).
    const lacking = new Set<number>();
    for (const device of devices) {
      if ((await this.signal.loadSession(this.address(to, device).toString())) !== undefined) continue;
      const triedAt = Number((await this.signal.getValue(`noKeys:${to}.${device}`)) ?? "0");
      if (Date.now() - triedAt >= retryNoKeysMs) lacking.add(device);
    }
    if (lacking.size > 0) {
      let started: number[] = [];
      try {
        started = await this.startSessions(to, lacking);
      } catch (error) {
        // Over the fetch budget, or offline: those devices get an empty payload this time.
        if (!(error instanceof ClientError)) throw error;
      }
      for (const device of lacking) {
        if (!started.includes(device)) await this.signal.setValue(`noKeys:${to}.${device}`, String(Date.now()));
      }
    }
    const payloads: DevicePayload[] = [];
    for (const device of devices) {
      const address = this.address(to, device);
      if ((await this.signal.loadSession(address.toString())) === undefined) {
        payloads.push({ device, payload: new Uint8Array(0) });
        continue;
      }
      const message = await new SessionCipher(this.signal, address).encrypt(copy(plaintext));
      payloads.push({ device, payload: payloadOf(message.type, message.body!) });
    }
    return payloads;
  }

  /**
   * Encrypts `plaintext` for every device of account `to` and sends it. A deviceMismatch (the account gained or
   * lost devices) is retried once, with sessions started from fresh bundles for the devices that were missing.
   */
  async send(to: number, plaintext: Uint8Array): Promise<SendResult> {
    await this.ensureIdentity();
    for (let attempt = 0; ; attempt++) {
      const { sent } = await this.inOrder(to, async () => {
        const payloads = await this.encryptFor(to, plaintext);
        const sending = this.client.send(to, payloads);
        sending.catch(() => {}); // awaited below, outside the chain
        return { sent: sending };
      });
      try {
        return await sent;
      } catch (error) {
        if (!(error instanceof ClientError) || error.code !== ErrorCode.deviceMismatch || attempt >= 1) throw error;
        await this.inOrder(to, async () => {
          const missing = new Set(error.missingDevices ?? []);
          const extra = new Set(error.extraDevices ?? []);
          for (const device of extra) await this.signal.removeSession(this.address(to, device).toString());
          if (missing.size > 0) await this.startSessions(to, missing);
          const known = (await this.knownDevices(to)) ?? [];
          await this.setKnownDevices(to, [...known.filter((device) => !extra.has(device)), ...missing]);
        });
      }
    }
  }

  /**
   * Runs `work` after the work queued before it for account `to`: messages to one account are encrypted and handed to
   * the client's outbox in the order send() was called (the outbox keeps that order on the wire), and one fetch of
   * bundles serves the sends behind it. The server-ack is awaited outside, so a burst is not one round trip a message.
   */
  private inOrder<T>(to: number, work: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(to) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tail = next.then(
      () => {},
      () => {},
    );
    this.chains.set(to, tail);
    void tail.then(() => {
      if (this.chains.get(to) === tail) this.chains.delete(to);
    });
    return next;
  }

  private async receive(event: MessageEvent): Promise<void> {
    const undecryptable = (reason: string) =>
      Promise.allSettled(
        this.emit("undecryptable", {
          from: event.from,
          fromDevice: event.fromDevice,
          clientId: event.clientId,
          reason,
        }),
      );
    if (event.payload.length === 0) {
      await undecryptable("the sender had no session with this device (it had published no keys)");
      return;
    }
    const type = event.payload[0];
    const body = copy(event.payload.subarray(1));
    const cipher = new SessionCipher(this.signal, this.address(event.from, event.fromDevice));
    let plaintext: ArrayBuffer;
    try {
      if (type === preKeyMessageType) plaintext = await cipher.decryptPreKeyWhisperMessage(body, "binary");
      else if (type === whisperMessageType) plaintext = await cipher.decryptWhisperMessage(body, "binary");
      else throw new Error(`payload type ${type} is not a Signal message`);
    } catch (error) {
      await undecryptable((error as Error).message ?? String(error));
      return;
    }
    // Replies go to the device that wrote (a device we did not know of, or one that was added since).
    // (An account's other devices, if any, are named by the server's deviceMismatch on the first reply.)
    const known = (await this.knownDevices(event.from)) ?? [];
    if (!known.includes(event.fromDevice)) await this.setKnownDevices(event.from, [...known, event.fromDevice]);
    await Promise.allSettled(
      this.emit("plaintext", {
        seq: event.seq,
        from: event.from,
        fromDevice: event.fromDevice,
        clientId: event.clientId,
        timeSeconds: event.timeSeconds,
        plaintext: new Uint8Array(plaintext),
      }),
    );
  }

  private async identityChange(event: IdentityChangeEvent): Promise<void> {
    const address = this.address(event.account, event.device).toString();
    // The session is with the old identity: the next send starts a new one from a fresh bundle.
    await this.signal.removeSession(address);
    this.announced.add(address);
    await Promise.allSettled(this.emit("safetyNumberChange", { account: event.account, device: event.device }));
  }

  /**
   * The safety number of the conversation with `account`: 60 digits both sides compute alike from the two identity
   * keys (Signal's fingerprint, 5200 iterations), compared out of band. Over this device's identity and that of
   * the peer's lowest-numbered device whose key this device has seen; null before any.
   */
  async safetyNumber(account: number): Promise<string | null> {
    const own = await this.signal.getIdentityKeyPair();
    const self = this.client.credentials;
    if (own === undefined || self === null) return null;
    for (const device of (await this.knownDevices(account)) ?? []) {
      const remote = await this.signal.loadIdentity(this.address(account, device).toString());
      if (remote === undefined) continue;
      // 5200 rounds of SHA-512 per side: computed once per pair of keys (a page redraws it on every visit).
      const key = `${self.account}:${toBase64(own.pubKey)}:${account}:${toBase64(remote)}`;
      let number = this.safetyNumbers.get(key);
      if (number === undefined) {
        number = safetyNumber(String(self.account), own.pubKey, String(account), remote);
        this.safetyNumbers.set(key, number);
        if (this.safetyNumbers.size > safetyNumbersCachedMax) {
          this.safetyNumbers.delete(this.safetyNumbers.keys().next().value!);
        }
      }
      return number;
    }
    return null;
  }
}

/** A copy in an ArrayBuffer of its own (the library takes ArrayBuffers; a view may sit in a larger buffer). */
function copy(bytes: Uint8Array): ArrayBuffer {
  const own = new Uint8Array(bytes.length);
  own.set(bytes);
  return own.buffer;
}

/** `[type][Signal message]`: the library hands the message as a binary string (one char per byte). */
function payloadOf(type: number, body: string): Uint8Array {
  const payload = new Uint8Array(body.length + 1);
  payload[0] = type;
  for (let index = 0; index < body.length; index++) payload[index + 1] = body.charCodeAt(index);
  return payload;
}
