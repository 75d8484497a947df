// Noise over TCP for the SDK (PROTOCOL.md section 19): the handshake as initiator on top of another transport (raw
// TCP), then every write sealed into records and every record opened before the client sees it. The client core
// sees the plaintext protocol and the handshake hash, which its login signs.
//
// Key pinning: a configured `serverKey` is the only key accepted. Without one, trust on first use through a
// KnownServerKeys store: the first handshake remembers the key, a later different key stops the client with
// serverKeyMismatch (a stop-range code, emitted as an "error" event with both keys and where the old one is kept).
// A known key lets the client resume with IK (one round trip, the server's key checked by the handshake itself); an
// IK handshake that the server refuses is followed by one XX attempt, whose key comparison then says why.

import { ErrorCode } from "../protocol/errors.ts";
import { appendInbound, consumeInbound, type InboundBytes } from "../protocol/inbound-bytes.ts";
import { ProtocolError } from "../protocol/index.ts";
import { noiseRecordPlaintextBytesMax } from "../protocol/limits.ts";
import { type NoiseAead, nobleAead } from "../protocol/noise-aead.ts";
import { NoiseCipherTable } from "../protocol/noise-cipher-table.ts";
import { type NoiseDh, nobleDh } from "../protocol/noise-dh.ts";
import { NoiseHandshake, type NoiseKeyPair, type NoisePatternName } from "../protocol/noise-handshake.ts";
import { encodeNoisePreamble, frameNoiseMessage, readNoiseMessage } from "../protocol/noise-records.ts";
import { ClientError } from "./client-errors.ts";
import { type KnownServerKeys, MemoryServerKeys, serverKeyHex } from "./known-server-keys.ts";
import type { Transport, TransportEvents, TransportFactory } from "./transport.ts";

export interface NoiseOptions {
  /** The server's static key as its operator published it (`switchboard noise-key`): the only key accepted. */
  readonly serverKey?: Uint8Array;
  /** Where first-met keys are remembered (default: memory, for this client's life). */
  readonly knownKeys?: KnownServerKeys;
  /** Resume with IK when the key is known (default true). */
  readonly resume?: boolean;
  /** AES-GCM implementation (default @noble/ciphers; Bun programs pass protocol/noise-aead-node.ts). */
  readonly aead?: NoiseAead;
  /** X25519 implementation (default @noble/curves; Bun programs pass protocol/noise-dh-node.ts). */
  readonly dh?: NoiseDh;
}

/** What the attempts of one client share: its static key and what it learned about the server. */
interface NoiseShared {
  readonly server: string;
  readonly options: NoiseOptions;
  readonly knownKeys: KnownServerKeys;
  readonly staticKeyPair: NoiseKeyPair;
  /** The last IK attempt was refused: the next one uses XX. */
  ikRefused: boolean;
}

/** Noise around each connection `inner` makes; `server` (host:port) names the server in the known-keys store. */
export function noiseTransport(inner: TransportFactory, server: string, options: NoiseOptions = {}): TransportFactory {
  const shared: NoiseShared = {
    server,
    options,
    knownKeys: options.knownKeys ?? new MemoryServerKeys(),
    staticKeyPair: (options.dh ?? nobleDh).generateKeyPair(),
    ikRefused: false,
  };
  return () => new NoiseTransport(inner(), shared);
}

type Phase = "idle" | "handshake" | "transport" | "plaintext" | "closed";

export class NoiseTransport implements Transport, InboundBytes {
  private phase: Phase = "idle";
  private events: TransportEvents | null = null;
  private handshake: NoiseHandshake | null = null;
  private pattern: NoisePatternName = "XX";
  private expectedKey: Uint8Array | null = null;
  private readonly table: NoiseCipherTable;
  private slot = -1;
  private binding: Uint8Array | null = null;
  private settle: { resolve: () => void; reject: (error: Error) => void } | null = null;
  inbound: Uint8Array | null = null;
  inboundOwned = false;

  constructor(
    private readonly inner: Transport,
    private readonly shared: NoiseShared,
  ) {
    this.table = new NoiseCipherTable(shared.options.aead ?? nobleAead, 1);
  }

  get bufferedBytes(): number {
    return this.inner.bufferedBytes;
  }

  get channelBinding(): Uint8Array | null {
    return this.binding;
  }

  /** The handshake pattern of this connection (XX for a first contact, IK to resume). */
  get handshakePattern(): NoisePatternName {
    return this.pattern;
  }

  async connect(events: TransportEvents): Promise<void> {
    if (this.events !== null) throw new Error("a transport connects once");
    this.events = events;
    await this.inner.connect({ data: (chunk) => this.received(chunk), close: (reason) => this.innerClosed(reason) });
    const { options, knownKeys, server, staticKeyPair } = this.shared;
    this.expectedKey = options.serverKey ?? knownKeys.get(server);
    this.pattern = this.expectedKey !== null && options.resume !== false && !this.shared.ikRefused ? "IK" : "XX";
    const preamble = encodeNoisePreamble(this.pattern);
    this.handshake = new NoiseHandshake({
      pattern: this.pattern,
      role: "initiator",
      prologue: preamble,
      staticKeyPair,
      ...(this.pattern === "IK" ? { remoteStaticKey: this.expectedKey! } : {}),
      aead: options.aead ?? nobleAead,
      ...(options.dh === undefined ? {} : { dh: options.dh }),
    });
    this.phase = "handshake";
    const first = frameNoiseMessage(this.handshake.writeMessage());
    const opening = new Uint8Array(preamble.length + first.length);
    opening.set(preamble, 0);
    opening.set(first, preamble.length);
    const done = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.inner.write(opening);
    return done;
  }

  private received(chunk: Uint8Array): void {
    if (this.phase === "plaintext") return void this.events!.data(chunk);
    if (this.phase !== "handshake" && this.phase !== "transport") return;
    appendInbound(this, chunk, 2 + 65_535);
    while (this.inbound !== null && (this.phase === "handshake" || this.phase === "transport")) {
      const source = this.inbound;
      if (this.phase === "handshake" && source[0] !== 0) {
        // Not a handshake message: the server refused us in plaintext (an error or goaway frame, PROTOCOL.md 19).
        // The client core reads it as on any connection and learns the code.
        if (this.pattern === "IK") this.shared.ikRefused = true;
        this.phase = "plaintext";
        this.inbound = null;
        this.succeed();
        return void this.events!.data(source);
      }
      const next = readNoiseMessage(source);
      if (next === "more") return;
      consumeInbound(this, next.consumed);
      if (this.phase === "handshake") {
        this.handshakeMessage(next.message);
        continue;
      }
      const plaintext = this.table.open(this.slot, next.message);
      if (plaintext instanceof ProtocolError) {
        this.inner.close();
        return;
      }
      if (plaintext.length > 0) this.events!.data(plaintext);
    }
  }

  private handshakeMessage(message: Uint8Array): void {
    const handshake = this.handshake!;
    const payload = handshake.readMessage(message);
    if (payload instanceof ProtocolError) {
      if (this.pattern === "IK") this.shared.ikRefused = true;
      return void this.refuse(new ClientError(ErrorCode.noiseHandshakeFailed, payload.message));
    }
    const serverKey = handshake.remoteStaticKey;
    if (serverKey !== null && this.expectedKey !== null && !sameBytes(serverKey, this.expectedKey)) {
      return void this.refuse(this.mismatch(serverKey));
    }
    if (handshake.writing) this.inner.write(frameNoiseMessage(handshake.writeMessage()));
    if (!handshake.complete) return;
    const split = handshake.split();
    if (this.expectedKey === null) this.shared.knownKeys.remember(this.shared.server, split.remoteStaticKey);
    this.shared.ikRefused = false;
    this.slot = this.table.install(split);
    this.binding = split.handshakeHash;
    this.handshake = null;
    this.phase = "transport";
    this.succeed();
  }

  private mismatch(serverKey: Uint8Array): ClientError {
    const { options, knownKeys, server } = this.shared;
    const pinned = options.serverKey !== undefined;
    return new ClientError(
      ErrorCode.serverKeyMismatch,
      `WARNING: the Noise key of ${server} is not the one ${pinned ? "configured" : "seen before"}: expected ` +
        `${serverKeyHex(this.expectedKey!)}, got ${serverKeyHex(serverKey)}. Someone may be intercepting the ` +
        `connection, or the server's key was replaced. Check the key the operator publishes (switchboard noise-key); ` +
        (pinned
          ? "then change the configured key."
          : `if it changed on purpose, remove ${server} from ${knownKeys.where}.`),
    );
  }

  private succeed(): void {
    const settle = this.settle;
    this.settle = null;
    settle?.resolve();
  }

  private refuse(error: ClientError): void {
    this.phase = "closed";
    this.handshake = null;
    const settle = this.settle;
    this.settle = null;
    this.inner.close();
    settle?.reject(error);
  }

  private innerClosed(reason: string): void {
    const settle = this.settle;
    const wasOpen = this.phase === "transport" || this.phase === "plaintext";
    this.phase = "closed";
    if (this.slot >= 0) this.table.release(this.slot);
    this.slot = -1;
    this.inbound = null;
    if (settle !== null) {
      this.settle = null;
      settle.reject(new Error(`connection closed during the Noise handshake: ${reason}`));
      return;
    }
    if (wasOpen) this.events!.close(reason);
  }

  write(bytes: Uint8Array): boolean {
    if (this.phase === "plaintext") return true;
    if (this.phase !== "transport") return false;
    for (let offset = 0; offset < bytes.length; offset += noiseRecordPlaintextBytesMax) {
      const record = this.table.seal(this.slot, bytes.subarray(offset, offset + noiseRecordPlaintextBytesMax));
      if (record instanceof ProtocolError) {
        this.inner.close();
        return false;
      }
      if (!this.inner.write(record)) return false;
    }
    return true;
  }

  close(): void {
    if (this.phase === "idle") {
      this.phase = "closed";
      return;
    }
    this.inner.close();
  }
}

function sameBytes(left: Uint8Array, right: Uint8Array): boolean {
  if (left.length !== right.length) return false;
  let difference = 0;
  for (let index = 0; index < left.length; index++) difference |= left[index]! ^ right[index]!;
  return difference === 0;
}
