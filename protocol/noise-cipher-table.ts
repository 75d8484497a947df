// The transport state of every Noise session after its handshake, in columns indexed by a slot number: two 32-byte
// keys, two counters and the handshake hash. No object per session: an idle session costs its 113 bytes of columns
// (BENCHMARKS.md "transport encryption"), the layout the session table takes once sessions are slots themselves.
// A slot's keys are zeroed when it is released. The server holds one table for all its sessions; a client, one with
// a single slot.

import { ErrorCode, ProtocolError } from "./errors.ts";
import { noiseLengthBytes, noiseMessagesMax } from "./limits.ts";
import type { NoiseAead } from "./noise-aead.ts";
import { noiseKeyBytes, noiseTagBytes } from "./noise-aead.ts";
import type { NoiseSplit } from "./noise-handshake.ts";
import { writeNoiseLength } from "./noise-records.ts";

const keysPerSlot = 2 * noiseKeyBytes;
const hashBytes = 32;
const emptyAd = new Uint8Array(0);

export class NoiseCipherTable {
  private capacity: number;
  /** slot * 64: the send key, then the receive key. */
  private keys: Uint8Array;
  /** slot * 2: the next send counter, then the next receive counter (exact integers below 2^53). */
  private counters: Float64Array;
  /** slot * 32: the handshake hash, the channel binding a login signs. */
  private hashes: Uint8Array;
  /** 1 while the slot belongs to a session. */
  private used: Uint8Array;
  /** Released slots, reused first (a stack). */
  private free: Int32Array;
  private freeCount = 0;
  private nextUnused = 0;

  constructor(
    private readonly aead: NoiseAead,
    initialCapacity = 64,
  ) {
    this.capacity = Math.max(1, initialCapacity);
    this.keys = new Uint8Array(this.capacity * keysPerSlot);
    this.counters = new Float64Array(this.capacity * 2);
    this.hashes = new Uint8Array(this.capacity * hashBytes);
    this.used = new Uint8Array(this.capacity);
    this.free = new Int32Array(this.capacity);
  }

  /** Slots in use. */
  get size(): number {
    return this.nextUnused - this.freeCount;
  }

  /** Bytes of the columns (for the density figures). */
  get bytes(): number {
    return (
      this.keys.byteLength +
      this.counters.byteLength +
      this.hashes.byteLength +
      this.used.byteLength +
      this.free.byteLength
    );
  }

  /** A slot for a session whose handshake just completed, holding its keys. */
  install(split: NoiseSplit): number {
    const slot = this.freeCount > 0 ? this.free[--this.freeCount]! : this.nextUnused++;
    if (slot >= this.capacity) this.grow();
    this.keys.set(split.sendKey, slot * keysPerSlot);
    this.keys.set(split.receiveKey, slot * keysPerSlot + noiseKeyBytes);
    this.counters[slot * 2] = 0;
    this.counters[slot * 2 + 1] = 0;
    this.hashes.set(split.handshakeHash, slot * hashBytes);
    this.used[slot] = 1;
    return slot;
  }

  release(slot: number): void {
    if (this.used[slot] !== 1) throw new Error(`Noise slot ${slot} released twice`);
    this.used[slot] = 0;
    this.keys.fill(0, slot * keysPerSlot, (slot + 1) * keysPerSlot);
    this.free[this.freeCount++] = slot;
  }

  /** The handshake hash of the slot's session (a copy). */
  handshakeHash(slot: number): Uint8Array {
    return this.hashes.slice(slot * hashBytes, (slot + 1) * hashBytes);
  }

  /**
   * One record for the wire: length || ciphertext || tag of `plaintext` (at most noiseRecordPlaintextBytesMax
   * bytes). A ProtocolError once the send counter reached noiseMessagesMax.
   */
  seal(slot: number, plaintext: Uint8Array): Uint8Array | ProtocolError {
    const counter = this.counters[slot * 2]!;
    if (counter >= noiseMessagesMax) {
      return new ProtocolError(ErrorCode.noiseCounterExhausted, "record counter used up; reconnect for new keys");
    }
    this.counters[slot * 2] = counter + 1;
    const key = this.keys.subarray(slot * keysPerSlot, slot * keysPerSlot + noiseKeyBytes);
    const record = this.aead.seal(key, counter, emptyAd, plaintext, noiseLengthBytes);
    writeNoiseLength(record, record.length - noiseLengthBytes);
    return record;
  }

  /** The plaintext of one record's message (ciphertext || tag), or a ProtocolError (noiseRecordFailed). */
  open(slot: number, message: Uint8Array): Uint8Array | ProtocolError {
    const counter = this.counters[slot * 2 + 1]!;
    if (counter >= noiseMessagesMax) {
      return new ProtocolError(ErrorCode.noiseCounterExhausted, "record counter used up; reconnect for new keys");
    }
    if (message.length < noiseTagBytes)
      return new ProtocolError(ErrorCode.noiseRecordFailed, "record shorter than its tag");
    const start = slot * keysPerSlot + noiseKeyBytes;
    const plaintext = this.aead.open(this.keys.subarray(start, start + noiseKeyBytes), counter, emptyAd, message);
    if (plaintext === null) {
      return new ProtocolError(
        ErrorCode.noiseRecordFailed,
        "record does not authenticate (tampered, replayed or reordered)",
      );
    }
    this.counters[slot * 2 + 1] = counter + 1;
    return plaintext;
  }

  /** Test hook: sets the slot's counters (to reach noiseMessagesMax without sending 2^48 records). */
  setCounters(slot: number, send: number, receive: number): void {
    this.counters[slot * 2] = send;
    this.counters[slot * 2 + 1] = receive;
  }

  private grow(): void {
    const capacity = this.capacity * 2;
    const grown = <T extends Uint8Array | Float64Array | Int32Array>(
      column: T,
      make: (length: number) => T,
      per: number,
    ): T => {
      const next = make(capacity * per);
      next.set(column as never);
      return next;
    };
    this.keys = grown(this.keys, (length) => new Uint8Array(length), keysPerSlot);
    this.counters = grown(this.counters, (length) => new Float64Array(length), 2);
    this.hashes = grown(this.hashes, (length) => new Uint8Array(length), hashBytes);
    this.used = grown(this.used, (length) => new Uint8Array(length), 1);
    this.free = grown(this.free, (length) => new Int32Array(length), 1);
    this.capacity = capacity;
  }
}
