// Noise for the load workers (bench/worker-sessions.ts with transport "noise"): each slot's connection starts with
// the version-2 preamble and an XX handshake as initiator (PROTOCOL.md section 19), then carries the plaintext
// protocol in records. Built on protocol/'s NoiseHandshake and NoiseCipherTable (the code the server and the SDK
// run), with node:crypto's primitives, so a worker costs the server what a Bun client would.
//
// Lean like the rest of the worker: one cipher table and one static key for the whole process (the server sees a
// new client key per worker, which it does not remember); per slot, only its handshake until it completes, its row
// in the table after, and a partial message between reads. Every connection is a first contact (XX): the workers
// do not resume with IK, so a login costs the server one key pair and two DHs more than an SDK client's reconnect.

import { ErrorCode, ProtocolError } from "../protocol/index.ts";
import { noiseRecordPlaintextBytesMax } from "../protocol/limits.ts";
import { nodeAead } from "../protocol/noise-aead-node.ts";
import { NoiseCipherTable } from "../protocol/noise-cipher-table.ts";
import { nodeDh } from "../protocol/noise-dh-node.ts";
import { NoiseHandshake } from "../protocol/noise-handshake.ts";
import { encodeNoisePreamble, frameNoiseMessage, readNoiseMessage } from "../protocol/noise-records.ts";

/** The Noise layer of a slot: none (plaintext, or a refusal the server sent in plaintext), handshaking, or open. */
export const NoiseState = { none: 0, handshake: 1, transport: 2 } as const;
export type NoiseStateValue = (typeof NoiseState)[keyof typeof NoiseState];

/** What a slot holds for its Noise layer (fields of worker-sessions.ts's Slot). */
export interface NoiseSlot {
  noiseState: NoiseStateValue;
  noiseHandshake: NoiseHandshake | null;
  /** Its row in the worker's cipher table once the handshake completed; -1 before and after. */
  noiseRow: number;
  /** A partial handshake message or record between reads. */
  noisePending: Uint8Array | null;
}

/** What one read gave: protocol bytes for the plaintext reader, whether the handshake just completed, or an error. */
export interface NoiseRead {
  readonly plaintext: Uint8Array | null;
  readonly established: boolean;
  readonly error: string | null;
}

/** Cipher rows at start (the table doubles as slots complete their handshakes). */
const initialRows = 1024;

export class WorkerNoise {
  private readonly table = new NoiseCipherTable(nodeAead, initialRows);
  private readonly staticKeyPair = nodeDh.generateKeyPair();
  private readonly preamble = encodeNoisePreamble("XX");

  /** A new connection of `slot`: returns what it writes first (the preamble and the first handshake message). */
  open(slot: NoiseSlot): Uint8Array {
    this.release(slot);
    const handshake = new NoiseHandshake({
      pattern: "XX",
      role: "initiator",
      prologue: this.preamble,
      staticKeyPair: this.staticKeyPair,
      aead: nodeAead,
      dh: nodeDh,
    });
    slot.noiseHandshake = handshake;
    slot.noiseState = NoiseState.handshake;
    slot.noisePending = null;
    const first = frameNoiseMessage(handshake.writeMessage());
    const opening = new Uint8Array(this.preamble.length + first.length);
    opening.set(this.preamble, 0);
    opening.set(first, this.preamble.length);
    return opening;
  }

  /** The handshake hash the slot's login signs; null before the handshake completed. */
  channelBinding(slot: NoiseSlot): Uint8Array | null {
    return slot.noiseRow < 0 ? null : this.table.handshakeHash(slot.noiseRow);
  }

  /**
   * Bytes from the server: handshake messages (answers go to `writeRaw`), then records opened into protocol bytes.
   * A server that refuses the connection before the handshake ends answers in plaintext (an error or goaway frame,
   * whose first byte is never 0): from there the slot reads plaintext.
   */
  read(slot: NoiseSlot, chunk: Uint8Array, writeRaw: (bytes: Uint8Array) => void): NoiseRead {
    let source = chunk;
    if (slot.noisePending !== null) {
      source = new Uint8Array(slot.noisePending.length + chunk.length);
      source.set(slot.noisePending, 0);
      source.set(chunk, slot.noisePending.length);
      slot.noisePending = null;
    }
    const opened: Uint8Array[] = [];
    let established = false;
    let offset = 0;
    while (offset < source.length) {
      const rest = source.subarray(offset);
      if (slot.noiseState === NoiseState.handshake && rest[0] !== 0) {
        slot.noiseState = NoiseState.none;
        slot.noiseHandshake = null;
        opened.push(rest);
        offset = source.length;
        break;
      }
      const next = readNoiseMessage(rest);
      if (next === "more") break;
      offset += next.consumed;
      if (slot.noiseState === NoiseState.handshake) {
        const handshake = slot.noiseHandshake!;
        const payload = handshake.readMessage(next.message);
        if (payload instanceof ProtocolError) return failed(`noise${ErrorCode.noiseHandshakeFailed}`);
        if (handshake.writing) writeRaw(frameNoiseMessage(handshake.writeMessage()));
        if (handshake.complete) {
          slot.noiseRow = this.table.install(handshake.split());
          slot.noiseHandshake = null;
          slot.noiseState = NoiseState.transport;
          established = true;
        }
        continue;
      }
      const plaintext = this.table.open(slot.noiseRow, next.message);
      if (plaintext instanceof ProtocolError) return failed(`noise${plaintext.code}`);
      if (plaintext.length > 0) opened.push(plaintext);
    }
    if (offset < source.length) slot.noisePending = source.slice(offset);
    return { plaintext: joined(opened), established, error: null };
  }

  /** `bytes` sealed into records (at most noiseRecordPlaintextBytesMax each); null once the counter is used up. */
  seal(slot: NoiseSlot, bytes: Uint8Array): Uint8Array | null {
    const records: Uint8Array[] = [];
    for (let offset = 0; offset < bytes.length; offset += noiseRecordPlaintextBytesMax) {
      const record = this.table.seal(slot.noiseRow, bytes.subarray(offset, offset + noiseRecordPlaintextBytesMax));
      if (record instanceof ProtocolError) return null;
      records.push(record);
    }
    return joined(records);
  }

  /** The slot's connection is gone: its row goes back (keys zeroed) and its handshake with it. */
  release(slot: NoiseSlot): void {
    if (slot.noiseRow >= 0) this.table.release(slot.noiseRow);
    slot.noiseRow = -1;
    slot.noiseHandshake = null;
    slot.noisePending = null;
  }
}

function failed(error: string): NoiseRead {
  return { plaintext: null, established: false, error };
}

/** The parts as one array (the part itself when there is one; null when none). */
function joined(parts: readonly Uint8Array[]): Uint8Array | null {
  if (parts.length === 0) return null;
  if (parts.length === 1) return parts[0]!;
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}
