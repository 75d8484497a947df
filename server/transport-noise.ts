// Noise on the TCP listener (PROTOCOL.md section 19): a layer between Bun's socket and the ConnectionHandler. It
// reads the client's version-2 preamble, answers the handshake as responder (XX, or IK for a client that knows our
// key), then decrypts each record into the plaintext protocol's byte stream (which starts with its own preamble) and
// encrypts what the session writes. connection.ts sees exactly what a plaintext session would.
//
// The keys and counters of established sessions live in one NoiseCipherTable (typed columns by slot); what stays on
// the socket wrapper is what exists only while needed: the handshake until it completes, a partial record, and the
// sealed bytes the kernel did not take.
//
// Before the handshake completes, what the server writes goes out in plaintext: only error and goaway frames ever
// do (a refused preamble, a server that is full or draining, a failed handshake), and a client tells them from a
// handshake message by their first byte (noise-records.ts).

import type { Socket } from "bun";
import { appendInbound, consumeInbound, ErrorCode, type InboundBytes, ProtocolError } from "../protocol/index.ts";
import { noiseLengthBytes, noiseMessageBytesMax, noiseRecordPlaintextBytesMax } from "../protocol/limits.ts";
import { nodeAead } from "../protocol/noise-aead-node.ts";
import { NoiseCipherTable } from "../protocol/noise-cipher-table.ts";
import { nodeDh } from "../protocol/noise-dh-node.ts";
import { NoiseHandshake, type NoiseKeyPair } from "../protocol/noise-handshake.ts";
import { decodeNoisePreamble, frameNoiseMessage, readNoiseMessage } from "../protocol/noise-records.ts";
import type { ConnectionHandler } from "./connection.ts";
import { TransportKind } from "./session-slots.ts";
import type { TransportSocket } from "./transport.ts";

/** A handshake message is below 256 bytes (limits.ts noiseHandshakePayloadBytesMax); a longer one is refused unread. */
const handshakeMessageBytesMax = 255;

/** What every Noise session of this process shares: the static key and the cipher columns. */
export class NoiseServer {
  readonly table = new NoiseCipherTable(nodeAead, 1024);
  constructor(readonly staticKeyPair: NoiseKeyPair) {}

  /** Bun.listen socket handlers for a Noise listener (tcp-listener.ts takes these instead of the plaintext ones). */
  socketHandlers(connections: ConnectionHandler) {
    return noiseSocketHandlers(connections, this);
  }
}

const Phase = Object.freeze({ preamble: 0, handshake: 1, transport: 2, closed: 3 });
type PhaseValue = (typeof Phase)[keyof typeof Phase];

/** The session slot number (session-slots.ts), -1 before open and after close: as on a plaintext TCP socket. */
type RawSocket = Socket<number>;

export class NoiseServerSocket implements TransportSocket, InboundBytes {
  private phase: PhaseValue = Phase.preamble;
  /** The session's row in the cipher table, from the end of the handshake; -1 before. */
  private slot = -1;
  private handshake: NoiseHandshake | null = null;
  /** Received bytes not yet a whole message. */
  inbound: Uint8Array | null = null;
  inboundOwned = false;
  /** Sealed bytes the kernel did not take yet (at most one record). */
  private tail: Uint8Array | null = null;

  constructor(
    private readonly raw: RawSocket,
    private readonly server: NoiseServer,
  ) {}

  get remoteAddress(): string {
    return this.raw.remoteAddress;
  }

  /** The handshake hash, which a login on this connection must sign; null until the handshake completed. */
  get channelBinding(): Uint8Array | null {
    return this.slot < 0 ? null : this.server.table.handshakeHash(this.slot);
  }

  /** Bytes from the peer: handshake messages, then records whose plaintext goes to the session. */
  received(chunk: Uint8Array, session: number, connections: ConnectionHandler): void {
    if (this.phase === Phase.closed || !connections.isOpen(session)) return;
    appendInbound(this, chunk, noiseLengthBytes + noiseMessageBytesMax);
    while (this.inbound !== null && connections.isOpen(session)) {
      const source = this.inbound;
      if (this.phase === Phase.preamble) {
        const pattern = decodeNoisePreamble(source);
        if (pattern === "more") return;
        if (pattern instanceof ProtocolError) return void this.fail(session, connections, pattern);
        // The preamble is the prologue: a preamble changed in flight makes the handshake fail.
        this.handshake = new NoiseHandshake({
          pattern,
          role: "responder",
          prologue: source.slice(0, 4),
          staticKeyPair: this.server.staticKeyPair,
          aead: nodeAead,
          dh: nodeDh,
        });
        this.phase = Phase.handshake;
        consumeInbound(this, 4);
        continue;
      }
      if (
        this.phase === Phase.handshake &&
        source.length >= 2 &&
        ((source[0]! << 8) | source[1]!) > handshakeMessageBytesMax
      ) {
        return void this.fail(
          session,
          connections,
          new ProtocolError(ErrorCode.noiseHandshakeFailed, "handshake message too long"),
        );
      }
      const next = readNoiseMessage(source);
      if (next === "more") return;
      consumeInbound(this, next.consumed);
      if (this.phase === Phase.handshake) {
        const error = this.handshakeStep(next.message);
        if (error !== null) return void this.fail(session, connections, error);
        continue;
      }
      const plaintext = this.server.table.open(this.slot, next.message);
      if (plaintext instanceof ProtocolError) return void this.fail(session, connections, plaintext);
      if (plaintext.length > 0) connections.data(session, plaintext);
    }
  }

  /** Reads a handshake message and writes our answer; installs the keys when the handshake is complete. */
  private handshakeStep(message: Uint8Array): ProtocolError | null {
    const handshake = this.handshake!;
    // The client's payloads are empty in this version; a non-empty one is accepted and ignored (PROTOCOL.md 19).
    const payload = handshake.readMessage(message);
    if (payload instanceof ProtocolError) return payload;
    if (handshake.writing) this.writeRaw(frameNoiseMessage(handshake.writeMessage()));
    if (handshake.complete) {
      this.slot = this.server.table.install(handshake.split());
      this.handshake = null;
      this.phase = Phase.transport;
    }
    return null;
  }

  private fail(session: number, connections: ConnectionHandler, error: ProtocolError): void {
    this.inbound = null;
    this.inboundOwned = false;
    this.handshake = null;
    // The error frame goes out encrypted once the handshake completed, in plaintext before.
    connections.reject(session, error);
  }

  /**
   * Encrypts what the session writes into records of at most noiseRecordPlaintextBytesMax bytes and returns the
   * plaintext bytes taken: all of them unless the kernel stopped taking bytes, in which case the sealed tail of the
   * last record is kept here (it cannot be sealed again: its counter is spent) and goes out first on `drain`.
   */
  write(bytes: Uint8Array): number {
    if (this.phase === Phase.closed) return 0;
    if (this.tail !== null && !this.flushTail()) return 0;
    if (this.phase !== Phase.transport) return this.writeRaw(bytes);
    let taken = 0;
    while (taken < bytes.length) {
      const length = Math.min(bytes.length - taken, noiseRecordPlaintextBytesMax);
      const record = this.server.table.seal(this.slot, bytes.subarray(taken, taken + length));
      if (record instanceof ProtocolError) {
        // 2^48 records on one connection: close it; the client reconnects with new keys.
        this.end();
        return taken;
      }
      taken += length;
      const written = Math.max(0, this.raw.write(record));
      if (written < record.length) {
        this.tail = record.subarray(written);
        break;
      }
    }
    return taken;
  }

  /** The kernel can take more: true when the kept tail is all written (the session may flush its own bytes). */
  drained(): boolean {
    return this.tail === null || this.flushTail();
  }

  private flushTail(): boolean {
    const tail = this.tail!;
    const written = Math.max(0, this.raw.write(tail));
    if (written < tail.length) {
      this.tail = tail.subarray(written);
      return false;
    }
    this.tail = null;
    return true;
  }

  /** Plaintext straight to the socket (handshake messages, and the error frames of a refused connection). */
  private writeRaw(bytes: Uint8Array): number {
    const written = Math.max(0, this.raw.write(bytes));
    // A handshake message is written to an empty socket buffer; if even that is refused, keep it like a record.
    if (written < bytes.length && this.phase !== Phase.preamble) this.tail = bytes.slice(written);
    return this.phase === Phase.preamble ? written : bytes.length;
  }

  end(): void {
    if (this.phase === Phase.closed) return;
    if (this.tail !== null) this.flushTail();
    this.release();
    this.raw.end();
  }

  pause(): void {
    this.raw.pause();
  }

  resume(): void {
    this.raw.resume();
  }

  /** The socket is gone: give the slot back (its keys are zeroed). */
  release(): void {
    if (this.phase === Phase.closed) return;
    this.phase = Phase.closed;
    if (this.slot >= 0) this.server.table.release(this.slot);
    this.slot = -1;
    this.handshake = null;
    this.inbound = null;
    this.tail = null;
  }
}

/** Bun.listen socket handlers for a Noise listener (tcp-listener.ts picks these instead of the plaintext ones). */
export function noiseSocketHandlers(connections: ConnectionHandler, server: NoiseServer) {
  // The session's slot keeps the wrapper as its socket (a Noise connection has one object: its handshake and tail).
  const wrapper = (raw: RawSocket) => connections.socketOf(raw.data) as NoiseServerSocket;
  const closed = (raw: RawSocket) => {
    const slot = raw.data;
    if (slot < 0) return;
    // Forget the slot first: it may be given to the next connection at once.
    raw.data = -1;
    (connections.socketOf(slot) as NoiseServerSocket).release();
    connections.closed(slot);
  };
  return {
    open(raw: RawSocket) {
      raw.data = connections.open(new NoiseServerSocket(raw, server), TransportKind.object);
    },
    data(raw: RawSocket, chunk: Buffer) {
      if (raw.data >= 0) wrapper(raw).received(chunk, raw.data, connections);
    },
    drain(raw: RawSocket) {
      if (raw.data >= 0 && wrapper(raw).drained()) connections.writable(raw.data);
    },
    close(raw: RawSocket) {
      closed(raw);
    },
    error(raw: RawSocket, error: Error) {
      void error;
      closed(raw);
    },
  };
}
