// The sessions of a process laid out as slots: one slot number per session, and every field of a session a column
// (a typed array indexed by slot), so an idle logged-in session costs no JavaScript object at all. Its socket's
// `data` is the slot number (a small integer, stored unboxed), the device -> slot index (router-local.ts) and the
// timer wheel (timer-wheel.ts) link slots by index in typed arrays too.
//
// Per slot, dense (what every session has, idle or not): 42 bytes of columns, 4 of free list, 8 of socket reference:
//   id          Float64  the session's id, unique in this process; 0 while the slot is free. It is the slot's
//                        generation too: a handle (session.ts) remembers the id it was made for, so a handler that
//                        awaited and finds another id in its slot knows the session it served is gone.
//   state, flags, dictionaryVersion, transport   one byte each
//   rateViolations Uint16; account, device Uint32; rateTokens Float32
//   lastInboundAt, loginDueAt, partialSinceAt, rateRefilledAt   Uint32 clock stamps (clock-stamp.ts)
//   socket      the transport's own socket object (the TCP socket or the ServerWebSocket, which exist anyway; under
//               Noise the TCP socket too, its cipher state in the Noise layer's own columns by the same slot).
// plus, elsewhere: the wheel's links and due time (14 bytes) and the device index (8 to 16 bytes per logged-in
// session: 4 per entry, at a load factor between 1/4 and 1/2). About 80 bytes in all.
// Sparse side tables (Maps keyed by slot), holding an entry only while there is something to hold: bytes received
// and not decoded (at most a partial frame), frames not yet written, the login nonce, the delivery state of a busy
// device, and the ProxySession object of a remote session (routing-mesh.ts: those stay objects, they are not idle
// sockets but the owner's view of another worker's session, and hold a promise chain).
//
// Capacity follows the sockets actually open, so the process's open-file limit bounds it (every local session is a
// socket, a file; proxies are the few others): it starts at sessionSlotsChunk and grows, when no slot is free, by a
// quarter (at least a chunk), copying the columns. Laying out the file limit up front would not do: Bun raises the
// soft limit to the hard one (2,097,152 under the shipped unit), and columns for that many cost tens of MiB of RSS in
// every worker before its first connection. Freed slots are reused last-in first-out; a handle to a reused slot reads
// as a closed session (session.ts).

import { sessionSlotsChunk } from "../protocol/limits.ts";
import { clockStamp } from "./clock-stamp.ts";
import type { DeviceState } from "./device-state.ts";
import type { SlotSocketSource } from "./transport.ts";

/** Bits of the `flags` column. */
export const SlotFlag = Object.freeze({
  /** Logged in, with its idle delivery state released (see Delivery.releaseIfIdle). */
  stateReleased: 1,
  /** `inbound` lives in a buffer allocated here, with room past its end (protocol/inbound-bytes.ts). */
  inboundOwned: 2,
  /** An asynchronous handler is running; inbound frames wait behind it. */
  busy: 4,
  /** The socket is paused until the next turn (connection.ts). */
  pausedForTurn: 8,
  /** A keepalive ping went out and no frame has come since. */
  pingOutstanding: 16,
  /** queueEmpty was sent for this session's drain. */
  queueEmptySent: 32,
  /** A partial frame is pending since partialSinceAt. */
  partialPending: 64,
  /** The slot is a ProxySession (routing-mesh.ts), not a socket of this process. */
  proxy: 128,
});

/** How `socket` of a slot is driven (session.ts turns it into a TransportSocket when asked). */
export const TransportKind = Object.freeze({
  /** A Bun.listen socket: it is a TransportSocket as it is. */
  tcp: 0,
  /** A Bun.serve ServerWebSocket. */
  webSocket: 1,
  /** Any other object implementing TransportSocket (the mesh's socket of a proxy, a test's socket). */
  object: 2,
  /**
   * A Bun.listen socket under Noise: its cipher state lives in the columns of `SessionSlots.noiseSockets`
   * (server/transport-noise.ts), which makes its TransportSocket when asked.
   */
  noise: 3,
  /**
   * A Bun.listen socket under TLS: a TransportSocket as it is, whose logins sign the connection's TLS exporter value
   * (protocol/auth-message.ts tlsChannelBinding).
   */
  tls: 4,
});
export type TransportKindValue = (typeof TransportKind)[keyof typeof TransportKind];

/** Frames waiting to be written: present only while there are some. */
export interface Outbound {
  frames: Uint8Array[];
  bytes: number;
}

let nextSessionId = 1;

function grown<T extends Uint8Array | Uint16Array | Uint32Array | Int32Array | Float32Array | Float64Array>(
  column: T,
  capacity: number,
): T {
  const next = new (column.constructor as new (length: number) => T)(capacity);
  next.set(column);
  return next;
}

export class SessionSlots {
  capacity: number;
  ids: Float64Array;
  state: Uint8Array;
  flags: Uint8Array;
  dictionaryVersion: Uint8Array;
  transport: Uint8Array;
  rateViolations: Uint16Array;
  account: Uint32Array;
  device: Uint32Array;
  rateTokens: Float32Array;
  lastInboundAt: Uint32Array;
  loginDueAt: Uint32Array;
  partialSinceAt: Uint32Array;
  rateRefilledAt: Uint32Array;
  /** The transport's socket per slot (see TransportKind); undefined while free. */
  readonly sockets: unknown[] = [];
  /** The Noise layer of this process's TCP listener, when it has one: it adapts the sockets of noise slots. */
  noiseSockets: SlotSocketSource | null = null;

  readonly inbound = new Map<number, Uint8Array>();
  readonly outbound = new Map<number, Outbound>();
  readonly nonces = new Map<number, Uint8Array>();
  readonly deviceStates = new Map<number, DeviceState>();
  /** The objects of proxy slots (routing-mesh.ts), so that every handle of such a slot is that object. */
  readonly proxies = new Map<number, object>();

  /** Free slots, a stack: the most recently freed is reused first. */
  private free: Int32Array;
  private freeCount = 0;
  /** Slots handed out and not freed, proxies included. */
  used = 0;
  /** Called after the columns grew (the wheel grows its own). */
  onGrow: (capacity: number) => void = () => {};

  constructor(
    capacity: number = sessionSlotsChunk,
    /** The clock of the time columns (the server context's). */
    readonly now: () => number = Date.now,
  ) {
    this.capacity = capacity;
    this.ids = new Float64Array(capacity);
    this.state = new Uint8Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.dictionaryVersion = new Uint8Array(capacity);
    this.transport = new Uint8Array(capacity);
    this.rateViolations = new Uint16Array(capacity);
    this.account = new Uint32Array(capacity);
    this.device = new Uint32Array(capacity);
    this.rateTokens = new Float32Array(capacity);
    this.lastInboundAt = new Uint32Array(capacity);
    this.loginDueAt = new Uint32Array(capacity);
    this.partialSinceAt = new Uint32Array(capacity);
    this.rateRefilledAt = new Uint32Array(capacity);
    this.free = new Int32Array(capacity);
    // Slot 0 on top of the stack: slots are used from the bottom of the columns up.
    for (let slot = capacity - 1; slot >= 0; slot--) this.free[this.freeCount++] = slot;
  }

  /** Takes a free slot for a new session (growing the columns when none is left) and gives it a fresh id. */
  allocate(socket: unknown, transport: TransportKindValue, nowMs: number, rateBurst: number): number {
    if (this.freeCount === 0) this.grow(this.capacity + Math.max(sessionSlotsChunk, this.capacity >> 2));
    const slot = this.free[--this.freeCount]!;
    this.ids[slot] = nextSessionId++;
    this.state[slot] = 0;
    this.flags[slot] = 0;
    this.dictionaryVersion[slot] = 1;
    this.transport[slot] = transport;
    this.rateViolations[slot] = 0;
    this.account[slot] = 0;
    this.device[slot] = 0;
    this.rateTokens[slot] = rateBurst;
    const stamp = clockStamp(nowMs);
    this.lastInboundAt[slot] = stamp;
    this.loginDueAt[slot] = stamp;
    this.partialSinceAt[slot] = 0;
    this.rateRefilledAt[slot] = stamp;
    this.sockets[slot] = socket;
    // The Noise layer's columns of this slot start fresh before the caller may write (a goaway to a full server).
    if (transport === TransportKind.noise) this.noiseSockets!.opened(slot);
    this.used++;
    return slot;
  }

  /** Gives the slot back: every handle of it is stale from now on, and its side-table entries are dropped. */
  release(slot: number): void {
    if (this.ids[slot] === 0) return;
    this.ids[slot] = 0;
    this.state[slot] = 0;
    this.flags[slot] = 0;
    this.sockets[slot] = undefined;
    this.inbound.delete(slot);
    this.outbound.delete(slot);
    this.nonces.delete(slot);
    this.deviceStates.delete(slot);
    this.proxies.delete(slot);
    this.free[this.freeCount++] = slot;
    this.used--;
  }

  /** Whether `slot` holds the session `id` (false once it was released, even if reused since). */
  holds(slot: number, id: number): boolean {
    return this.ids[slot] === id;
  }

  private grow(capacity: number): void {
    this.ids = grown(this.ids, capacity);
    this.state = grown(this.state, capacity);
    this.flags = grown(this.flags, capacity);
    this.dictionaryVersion = grown(this.dictionaryVersion, capacity);
    this.transport = grown(this.transport, capacity);
    this.rateViolations = grown(this.rateViolations, capacity);
    this.account = grown(this.account, capacity);
    this.device = grown(this.device, capacity);
    this.rateTokens = grown(this.rateTokens, capacity);
    this.lastInboundAt = grown(this.lastInboundAt, capacity);
    this.loginDueAt = grown(this.loginDueAt, capacity);
    this.partialSinceAt = grown(this.partialSinceAt, capacity);
    this.rateRefilledAt = grown(this.rateRefilledAt, capacity);
    const free = new Int32Array(capacity);
    free.set(this.free.subarray(0, this.freeCount));
    for (let slot = capacity - 1; slot >= this.capacity; slot--) free[this.freeCount++] = slot;
    this.free = free;
    this.capacity = capacity;
    this.onGrow(capacity);
  }
}
