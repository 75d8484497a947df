// Sends not yet server-acked, in the order the app made them. An entry gets its client id when it is first
// written to a session and keeps it for every resend, so a retry is recognised by the server (stored once).
// Entries queued while disconnected have no id yet: they get one after the welcome, above the server's mark.
// Bounded by count and payload bytes (outboxMessagesMax, outboxBytesMax); written entries awaiting an answer on
// the current connection are bounded by sendsInFlightMax.

import type { DevicePayload, Stanza } from "../protocol/index.ts";

export interface SendResult {
  /** The client id the message was stored under (its identity with our account and device). */
  readonly clientId: number;
}

export interface SendOptions {
  /** Send under this client id (one from reserveClientId), so that a resend after the app's restart is recognised. */
  readonly clientId?: number;
}

export interface OutboxEntry {
  readonly to: number;
  readonly payload: Uint8Array | readonly DevicePayload[];
  readonly bytes: number;
  /** A group send (PROTOCOL.md section 18): its stanza for a client id; `to` is then the group's id. */
  readonly stanzaFor?: (clientId: number) => Stanza;
  /** 0 until first written, unless the app gave the id (SendOptions.clientId). */
  clientId: number;
  /** The encoded frame, kept for resends (same client id, same bytes). */
  frame: Uint8Array | null;
  /** Written on the current connection and not answered yet. */
  inFlight: boolean;
  readonly resolve: (result: SendResult) => void;
  readonly reject: (error: Error) => void;
}

export class Outbox {
  /** Keyed by a local serial: a Map iterates in insertion order, which is the send order. */
  private readonly entries = new Map<number, OutboxEntry>();
  private readonly serialByClientId = new Map<number, number>();
  private readonly serialByEntry = new Map<OutboxEntry, number>();
  private nextSerial = 1;
  private payloadBytes = 0;
  private inFlightCount = 0;

  constructor(
    private readonly messagesMax: number,
    private readonly bytesMax: number,
    private readonly inFlightMax: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.payloadBytes;
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Why an entry of `bytes` cannot be added now, or null when it can. */
  refusal(bytes: number): string | null {
    if (this.entries.size >= this.messagesMax) return `outbox holds ${this.messagesMax} unacked sends`;
    if (this.payloadBytes + bytes > this.bytesMax) return `outbox holds ${this.bytesMax} bytes of unacked sends`;
    return null;
  }

  add(entry: OutboxEntry): void {
    const serial = this.nextSerial++;
    this.entries.set(serial, entry);
    this.serialByEntry.set(entry, serial);
    this.payloadBytes += entry.bytes;
  }

  /** Whether an entry holds `clientId`, written or reserved by the app and not written yet. */
  hasClientId(clientId: number): boolean {
    if (this.serialByClientId.has(clientId)) return true;
    for (const entry of this.entries.values()) if (entry.clientId === clientId) return true;
    return false;
  }

  byClientId(clientId: number): OutboxEntry | undefined {
    const serial = this.serialByClientId.get(clientId);
    return serial === undefined ? undefined : this.entries.get(serial);
  }

  /** Records the id given to an entry at its first write. */
  assigned(entry: OutboxEntry, clientId: number, frame: Uint8Array): void {
    const serial = this.serialByEntry.get(entry);
    if (serial === undefined) throw new Error("bug: assigning an id to an entry not in the outbox");
    entry.clientId = clientId;
    entry.frame = frame;
    this.serialByClientId.set(clientId, serial);
  }

  markWritten(entry: OutboxEntry): void {
    if (!entry.inFlight) this.inFlightCount++;
    entry.inFlight = true;
  }

  /** Takes an answered (or abandoned) entry out; the caller settles its promise. */
  remove(entry: OutboxEntry): void {
    const serial = this.serialByEntry.get(entry);
    if (serial === undefined) return;
    this.entries.delete(serial);
    this.serialByEntry.delete(entry);
    if (entry.clientId !== 0) this.serialByClientId.delete(entry.clientId);
    this.payloadBytes -= entry.bytes;
    if (entry.inFlight) this.inFlightCount--;
    entry.inFlight = false;
  }

  /** The connection ended: nothing is in flight any more (written entries will be resent). */
  connectionLost(): void {
    for (const entry of this.entries.values()) entry.inFlight = false;
    this.inFlightCount = 0;
  }

  /** Entries to write now, in order: not in flight, while the in-flight window has room. */
  *writable(): Generator<OutboxEntry> {
    for (const entry of this.entries.values()) {
      if (this.inFlightCount >= this.inFlightMax) return;
      if (!entry.inFlight) yield entry;
    }
  }

  /** Every entry, in order (a snapshot: the caller may remove while iterating). */
  all(): OutboxEntry[] {
    return [...this.entries.values()];
  }
}
