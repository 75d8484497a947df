// Noise on the TCP listener (PROTOCOL.md section 19): a layer between Bun's socket and the ConnectionHandler. It
// reads the client's version-2 preamble, answers the handshake as responder (XX, or IK for a client that knows our
// key), then decrypts each record into the plaintext protocol's byte stream (which starts with its own preamble) and
// encrypts what the session writes. connection.ts sees exactly what a plaintext session would.
//
// No object per connection. The session's slot (session-slots.ts) keeps Bun's socket itself, as on a plaintext
// listener, with TransportKind.noise; this layer keeps, by the same slot number, a phase byte and the row of the
// session's keys and counters in one NoiseCipherTable (typed columns). What exists only while needed sits in sparse
// maps by slot: the handshake until it completes, a partial record, and the sealed bytes the kernel did not take.
// A handler that asks for the session's socket gets a throwaway NoiseSocket (as a WebSocket session gets its adapter,
// ws-transport.ts), dropped after.
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
import type { SlotSocketSource, TransportSocket } from "./transport.ts";

/** A handshake message is below 256 bytes (limits.ts noiseHandshakePayloadBytesMax); a longer one is refused unread. */
const handshakeMessageBytesMax = 255;
/** Rows of the cipher table and the phase columns at start; both grow by doubling. */
const initialSlots = 1024;

const Phase = Object.freeze({ preamble: 0, handshake: 1, transport: 2, closed: 3 });

/** The session slot number (session-slots.ts), -1 before open and after close: as on a plaintext TCP socket. */
type RawSocket = Socket<number>;

/** What every Noise session of this process shares: the static key, and every connection's state by session slot. */
export class NoiseServer implements SlotSocketSource {
  readonly table = new NoiseCipherTable(nodeAead, initialSlots);
  /** By session slot: the connection's phase (Phase). */
  private phases = new Uint8Array(initialSlots);
  /** By session slot: its row in `table` from the end of the handshake; -1 before. */
  private rows = new Int32Array(initialSlots).fill(-1);
  /** By session slot, while the handshake runs. */
  private readonly handshakes = new Map<number, NoiseHandshake>();
  /** By session slot, while a record (or handshake message) is partly received. */
  private readonly partial = new Map<number, InboundBytes>();
  /** By session slot: sealed bytes the kernel did not take yet (at most one record or handshake message). */
  private readonly tails = new Map<number, Uint8Array>();

  constructor(readonly staticKeyPair: NoiseKeyPair) {}

  /** Bun.listen socket handlers for a Noise listener (tcp-listener.ts takes these instead of the plaintext ones). */
  socketHandlers(connections: ConnectionHandler) {
    return noiseSocketHandlers(connections, this);
  }

  /** Connections in a phase before `transport` or with a partial record or a kept tail (for tests). */
  get transientEntries(): number {
    return this.handshakes.size + this.partial.size + this.tails.size;
  }

  socketOf(raw: unknown, slot: number): TransportSocket {
    return new NoiseSocket(this, raw as RawSocket, slot);
  }

  /** A new connection in `slot` (SessionSlots.allocate calls this): it starts by waiting for the client's preamble. */
  opened(slot: number): void {
    if (slot >= this.phases.length) this.grow(slot + 1);
    this.phases[slot] = Phase.preamble;
    this.rows[slot] = -1;
  }

  /** The handshake hash, which a login on this connection must sign; null until the handshake completed. */
  channelBinding(slot: number): Uint8Array | null {
    const row = this.rows[slot]!;
    return row < 0 ? null : this.table.handshakeHash(row);
  }

  /** Bytes from the peer: handshake messages, then records whose plaintext goes to the session. */
  received(raw: RawSocket, slot: number, chunk: Uint8Array, connections: ConnectionHandler): void {
    if (this.phases[slot] === Phase.closed || !connections.isOpen(slot)) return;
    const pending = this.partial.get(slot) ?? { inbound: null, inboundOwned: false };
    appendInbound(pending, chunk, noiseLengthBytes + noiseMessageBytesMax);
    const failed = this.readMessages(raw, slot, pending, connections);
    const rest = pending.inbound;
    if (failed || rest === null || !connections.isOpen(slot)) {
      this.partial.delete(slot);
      return;
    }
    // Keep a partial record in a buffer of its own, not a view holding Bun's whole chunk.
    if (!pending.inboundOwned) pending.inbound = rest.slice();
    this.partial.set(slot, pending);
  }

  /** Handles every whole message in `pending`; true when the connection failed (its error is on the way). */
  private readMessages(raw: RawSocket, slot: number, pending: InboundBytes, connections: ConnectionHandler): boolean {
    while (pending.inbound !== null && connections.isOpen(slot)) {
      const source = pending.inbound;
      const phase = this.phases[slot];
      if (phase === Phase.preamble) {
        const pattern = decodeNoisePreamble(source);
        if (pattern === "more") return false;
        if (pattern instanceof ProtocolError) return this.fail(slot, connections, pattern);
        // The preamble is the prologue: a preamble changed in flight makes the handshake fail.
        this.handshakes.set(
          slot,
          new NoiseHandshake({
            pattern,
            role: "responder",
            prologue: source.slice(0, 4),
            staticKeyPair: this.staticKeyPair,
            aead: nodeAead,
            dh: nodeDh,
          }),
        );
        this.phases[slot] = Phase.handshake;
        consumeInbound(pending, 4);
        continue;
      }
      if (
        phase === Phase.handshake &&
        source.length >= 2 &&
        ((source[0]! << 8) | source[1]!) > handshakeMessageBytesMax
      ) {
        const error = new ProtocolError(ErrorCode.noiseHandshakeFailed, "handshake message too long");
        return this.fail(slot, connections, error);
      }
      const next = readNoiseMessage(source);
      if (next === "more") return false;
      consumeInbound(pending, next.consumed);
      if (phase === Phase.handshake) {
        const error = this.handshakeStep(raw, slot, next.message);
        if (error !== null) return this.fail(slot, connections, error);
        continue;
      }
      if (phase !== Phase.transport) return false;
      const plaintext = this.table.open(this.rows[slot]!, next.message);
      if (plaintext instanceof ProtocolError) return this.fail(slot, connections, plaintext);
      if (plaintext.length > 0) connections.data(slot, plaintext);
    }
    return false;
  }

  /** Reads a handshake message and writes our answer; installs the keys when the handshake is complete. */
  private handshakeStep(raw: RawSocket, slot: number, message: Uint8Array): ProtocolError | null {
    const handshake = this.handshakes.get(slot)!;
    // The client's payloads are empty in this version; a non-empty one is accepted and ignored (PROTOCOL.md 19).
    const payload = handshake.readMessage(message);
    if (payload instanceof ProtocolError) return payload;
    if (handshake.writing) this.writeRaw(raw, slot, frameNoiseMessage(handshake.writeMessage()));
    if (handshake.complete) {
      // The handshake's keys, hashes and ephemeral key go with it: from here the session is its row of columns.
      this.rows[slot] = this.table.install(handshake.split());
      this.handshakes.delete(slot);
      this.phases[slot] = Phase.transport;
    }
    return null;
  }

  private fail(slot: number, connections: ConnectionHandler, error: ProtocolError): true {
    this.handshakes.delete(slot);
    // The error frame goes out encrypted once the handshake completed, in plaintext before.
    connections.reject(slot, error);
    return true;
  }

  /**
   * Encrypts what the session writes into records of at most noiseRecordPlaintextBytesMax bytes and returns the
   * plaintext bytes taken: all of them unless the kernel stopped taking bytes, in which case the sealed tail of the
   * last record is kept (it cannot be sealed again: its counter is spent) and goes out first on `drain`.
   */
  write(raw: RawSocket, slot: number, bytes: Uint8Array): number {
    const phase = this.phases[slot];
    if (phase === Phase.closed) return 0;
    if (this.tails.has(slot) && !this.flushTail(raw, slot)) return 0;
    if (phase !== Phase.transport) return this.writeRaw(raw, slot, bytes);
    const row = this.rows[slot]!;
    let taken = 0;
    while (taken < bytes.length) {
      const length = Math.min(bytes.length - taken, noiseRecordPlaintextBytesMax);
      const record = this.table.seal(row, bytes.subarray(taken, taken + length));
      if (record instanceof ProtocolError) {
        // 2^48 records on one connection: close it; the client reconnects with new keys.
        this.end(raw, slot);
        return taken;
      }
      taken += length;
      const written = Math.max(0, raw.write(record));
      if (written < record.length) {
        this.tails.set(slot, record.subarray(written));
        break;
      }
    }
    return taken;
  }

  /** The kernel can take more: true when the kept tail is all written (the session may flush its own bytes). */
  drained(raw: RawSocket, slot: number): boolean {
    return !this.tails.has(slot) || this.flushTail(raw, slot);
  }

  private flushTail(raw: RawSocket, slot: number): boolean {
    const tail = this.tails.get(slot)!;
    const written = Math.max(0, raw.write(tail));
    if (written < tail.length) {
      this.tails.set(slot, tail.subarray(written));
      return false;
    }
    this.tails.delete(slot);
    return true;
  }

  /** Plaintext straight to the socket (handshake messages, and the error frames of a refused connection). */
  private writeRaw(raw: RawSocket, slot: number, bytes: Uint8Array): number {
    const written = Math.max(0, raw.write(bytes));
    const inPreamble = this.phases[slot] === Phase.preamble;
    // A handshake message is written to an empty socket buffer; if even that is refused, keep it like a record.
    if (written < bytes.length && !inPreamble) this.tails.set(slot, bytes.slice(written));
    return inPreamble ? written : bytes.length;
  }

  end(raw: RawSocket, slot: number): void {
    if (this.phases[slot] === Phase.closed) return;
    if (this.tails.has(slot)) this.flushTail(raw, slot);
    this.release(slot);
    raw.end();
  }

  /** The socket is gone (or ending): give the row back (its keys are zeroed) and drop what the slot held. */
  release(slot: number): void {
    if (this.phases[slot] === Phase.closed) return;
    this.phases[slot] = Phase.closed;
    const row = this.rows[slot]!;
    if (row >= 0) this.table.release(row);
    this.rows[slot] = -1;
    this.handshakes.delete(slot);
    this.partial.delete(slot);
    this.tails.delete(slot);
  }

  private grow(needed: number): void {
    let capacity = this.phases.length * 2;
    while (capacity < needed) capacity *= 2;
    const phases = new Uint8Array(capacity);
    phases.set(this.phases);
    const rows = new Int32Array(capacity).fill(-1);
    rows.set(this.rows);
    this.phases = phases;
    this.rows = rows;
  }
}

/** A Noise session's socket as a handler sees it: made when asked (session.ts), dropped after. */
class NoiseSocket implements TransportSocket {
  constructor(
    private readonly server: NoiseServer,
    private readonly raw: RawSocket,
    private readonly slot: number,
  ) {}

  get remoteAddress(): string {
    return this.raw.remoteAddress;
  }

  get channelBinding(): Uint8Array | null {
    return this.server.channelBinding(this.slot);
  }

  write(bytes: Uint8Array): number {
    return this.server.write(this.raw, this.slot, bytes);
  }

  end(): void {
    this.server.end(this.raw, this.slot);
  }

  pause(): void {
    this.raw.pause();
  }

  resume(): void {
    this.raw.resume();
  }
}

/** Bun.listen socket handlers for a Noise listener (tcp-listener.ts picks these instead of the plaintext ones). */
export function noiseSocketHandlers(connections: ConnectionHandler, server: NoiseServer) {
  const closed = (raw: RawSocket) => {
    const slot = raw.data;
    if (slot < 0) return;
    // Forget the slot first: it may be given to the next connection at once.
    raw.data = -1;
    server.release(slot);
    connections.closed(slot);
  };
  return {
    open(raw: RawSocket) {
      // SessionSlots.allocate calls server.opened(slot) before the connection handler may write to it.
      raw.data = connections.open(raw, TransportKind.noise);
    },
    data(raw: RawSocket, chunk: Buffer) {
      if (raw.data >= 0) server.received(raw, raw.data, chunk, connections);
    },
    drain(raw: RawSocket) {
      if (raw.data >= 0 && server.drained(raw, raw.data)) connections.writable(raw.data);
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
