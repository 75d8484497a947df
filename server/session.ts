// A session as the handlers see it: a handle (slot number and session id) onto the columns of session-slots.ts, made
// when an event needs one and dropped after, so an idle session is no object at all. The fields read and write the
// slot's columns and side tables. A handle whose slot was released (the socket closed), even if a new session holds
// the slot now, is stale: it reads as a closed session of no account (state closed, account 0, no buffers, a socket
// that takes nothing) and its writes are ignored, so a handler that resumes after an await can never touch the
// session that reused its slot. Two handles of one session are equal by `id` (sameSession), not by identity.

import { type InboundBytes, type KeyingMaterialExporter, tlsChannelBinding } from "../protocol/index.ts";
import { clockStamp, stampToMs } from "./clock-stamp.ts";
import type { DeviceState } from "./device-state.ts";
import { type Outbound, type SessionSlots, SlotFlag, TransportKind } from "./session-slots.ts";
import type { TransportSocket } from "./transport.ts";
import { webSocketTransport } from "./ws-transport.ts";

export const SessionState = Object.freeze({
  /** Waiting for the 4-byte preamble. */
  preamble: 0,
  /** Challenge sent; waiting for login, register or link. */
  authenticating: 1,
  /** Logged in. */
  ready: 2,
  /** Closed or closing: nothing more is read or written. */
  closed: 3,
});
export type SessionStateValue = (typeof SessionState)[keyof typeof SessionState];

/** What a stale handle's socket does: nothing (its session is gone). */
const goneSocket: TransportSocket = {
  write: () => 0,
  end: () => {},
  pause: () => {},
  resume: () => {},
  remoteAddress: "",
};

/** Whether two handles stand for the same session (handles are made per event, so identity says nothing). */
export function sameSession(a: Session | null | undefined, b: Session | null | undefined): boolean {
  return a !== null && a !== undefined && b !== null && b !== undefined && a.id === b.id;
}

export class Session implements InboundBytes {
  constructor(
    readonly slots: SessionSlots,
    readonly slot: number,
    /** The session's id: unique in this process, and the generation of its slot. */
    readonly id: number,
  ) {}

  /** The slot still holds this session (false once its socket closed and the slot was released). */
  get live(): boolean {
    return this.slots.ids[this.slot] === this.id;
  }

  get isOpen(): boolean {
    return this.state !== SessionState.closed;
  }

  get state(): SessionStateValue {
    return this.live ? (this.slots.state[this.slot] as SessionStateValue) : SessionState.closed;
  }
  set state(value: SessionStateValue) {
    if (this.live) this.slots.state[this.slot] = value;
  }

  get account(): number {
    return this.live ? this.slots.account[this.slot]! : 0;
  }
  set account(value: number) {
    if (this.live) this.slots.account[this.slot] = value;
  }

  get device(): number {
    return this.live ? this.slots.device[this.slot]! : 0;
  }
  set device(value: number) {
    if (this.live) this.slots.device[this.slot] = value;
  }

  /** The token dictionary version the client announced in its preamble (a newer kind is never sent to an older one). */
  get dictionaryVersion(): number {
    return this.live ? this.slots.dictionaryVersion[this.slot]! : 1;
  }
  set dictionaryVersion(value: number) {
    if (this.live) this.slots.dictionaryVersion[this.slot] = value;
  }

  /** The transport's socket, as a TransportSocket (a WebSocket or a Noise socket gets a throwaway adapter). */
  get socket(): TransportSocket {
    if (!this.live) return goneSocket;
    const socket = this.slots.sockets[this.slot];
    const kind = this.slots.transport[this.slot];
    if (kind === TransportKind.webSocket) return webSocketTransport(socket);
    if (kind === TransportKind.noise) return this.slots.noiseSockets!.socketOf(socket, this.slot);
    return socket as TransportSocket;
  }

  /**
   * What a login, registration or link on this connection must sign besides the nonce (PROTOCOL.md section 19):
   * the Noise handshake hash, the TLS exporter value of a TLS TCP connection, null otherwise (plaintext, WebSocket).
   * Computed when asked, never kept.
   */
  get channelBinding(): Uint8Array | null {
    if (!this.live) return null;
    if (this.slots.transport[this.slot] === TransportKind.tls) {
      return tlsChannelBinding(this.slots.sockets[this.slot] as KeyingMaterialExporter);
    }
    return this.socket.channelBinding ?? null;
  }

  /** The device's delivery state, while logged in and not idle (see Delivery.releaseIfIdle). */
  get deviceState(): DeviceState | null {
    return this.live ? (this.slots.deviceStates.get(this.slot) ?? null) : null;
  }
  set deviceState(value: DeviceState | null) {
    if (!this.live) return;
    if (value === null) this.slots.deviceStates.delete(this.slot);
    else this.slots.deviceStates.set(this.slot, value);
  }

  /** The challenge nonce, until login succeeds (then null: a signature is good for one login). */
  get nonce(): Uint8Array | null {
    return this.live ? (this.slots.nonces.get(this.slot) ?? null) : null;
  }
  set nonce(value: Uint8Array | null) {
    if (!this.live) return;
    if (value === null) this.slots.nonces.delete(this.slot);
    else this.slots.nonces.set(this.slot, value);
  }

  /** Bytes received and not decoded yet (protocol/inbound-bytes.ts). */
  get inbound(): Uint8Array | null {
    return this.live ? (this.slots.inbound.get(this.slot) ?? null) : null;
  }
  set inbound(value: Uint8Array | null) {
    if (!this.live) return;
    if (value === null) this.slots.inbound.delete(this.slot);
    else this.slots.inbound.set(this.slot, value);
  }

  /** Frames to write at the end of this turn, then the unsent tail (session-io.ts). */
  get outbound(): Outbound | null {
    return this.live ? (this.slots.outbound.get(this.slot) ?? null) : null;
  }
  set outbound(value: Outbound | null) {
    if (!this.live) return;
    if (value === null) this.slots.outbound.delete(this.slot);
    else this.slots.outbound.set(this.slot, value);
  }

  get outboundBytes(): number {
    return this.outbound?.bytes ?? 0;
  }

  private flag(bit: number): boolean {
    return this.live && (this.slots.flags[this.slot]! & bit) !== 0;
  }
  private setFlag(bit: number, on: boolean): void {
    if (!this.live) return;
    const flags = this.slots.flags[this.slot]!;
    this.slots.flags[this.slot] = on ? flags | bit : flags & ~bit;
  }

  get inboundOwned(): boolean {
    return this.flag(SlotFlag.inboundOwned);
  }
  set inboundOwned(value: boolean) {
    this.setFlag(SlotFlag.inboundOwned, value);
  }
  /** Logged in, with its idle state released: everything delivered and acknowledged. */
  get stateReleased(): boolean {
    return this.flag(SlotFlag.stateReleased);
  }
  set stateReleased(value: boolean) {
    this.setFlag(SlotFlag.stateReleased, value);
  }
  /** An asynchronous handler (a store read) is running; inbound frames wait in order behind it. */
  get busy(): boolean {
    return this.flag(SlotFlag.busy);
  }
  set busy(value: boolean) {
    this.setFlag(SlotFlag.busy, value);
  }
  /** The session used up its share of this turn: its socket is paused until the next (connection.ts). */
  get pausedForTurn(): boolean {
    return this.flag(SlotFlag.pausedForTurn);
  }
  set pausedForTurn(value: boolean) {
    this.setFlag(SlotFlag.pausedForTurn, value);
  }
  /** A keepalive ping went out and no frame has come since. */
  get pingOutstanding(): boolean {
    return this.flag(SlotFlag.pingOutstanding);
  }
  set pingOutstanding(value: boolean) {
    this.setFlag(SlotFlag.pingOutstanding, value);
  }
  /** queueEmpty was sent for this session's drain. */
  get queueEmptySent(): boolean {
    return this.flag(SlotFlag.queueEmptySent);
  }
  set queueEmptySent(value: boolean) {
    this.setFlag(SlotFlag.queueEmptySent, value);
  }

  /** When the last whole frame (or the preamble) arrived: only whole frames count as life. */
  get lastInboundAtMs(): number {
    return stampToMs(this.slots.lastInboundAt[this.slot]!, this.slots.now());
  }
  set lastInboundAtMs(ms: number) {
    if (this.live) this.slots.lastInboundAt[this.slot] = clockStamp(ms);
  }
  /** Until login: when the login deadline falls. */
  get loginDueMs(): number {
    return stampToMs(this.slots.loginDueAt[this.slot]!, this.slots.now());
  }
  set loginDueMs(ms: number) {
    if (this.live) this.slots.loginDueAt[this.slot] = clockStamp(ms);
  }
  /** When the first byte of the partial frame now in `inbound` arrived; 0 when there is none. */
  get partialSinceMs(): number {
    if (!this.flag(SlotFlag.partialPending)) return 0;
    return stampToMs(this.slots.partialSinceAt[this.slot]!, this.slots.now());
  }
  set partialSinceMs(ms: number) {
    if (!this.live) return;
    this.setFlag(SlotFlag.partialPending, ms !== 0);
    this.slots.partialSinceAt[this.slot] = clockStamp(ms);
  }

  /** Token bucket of the rate limit. */
  get rateTokens(): number {
    return this.live ? this.slots.rateTokens[this.slot]! : 0;
  }
  set rateTokens(value: number) {
    if (this.live) this.slots.rateTokens[this.slot] = value;
  }
  get rateRefilledAtMs(): number {
    return stampToMs(this.slots.rateRefilledAt[this.slot]!, this.slots.now());
  }
  set rateRefilledAtMs(ms: number) {
    if (this.live) this.slots.rateRefilledAt[this.slot] = clockStamp(ms);
  }
  get rateViolations(): number {
    return this.live ? this.slots.rateViolations[this.slot]! : 0;
  }
  set rateViolations(value: number) {
    // The column is 16 bits; the count only matters up to rateViolationsMax, far below.
    if (this.live) this.slots.rateViolations[this.slot] = Math.min(value, 0xffff);
  }

  /** What a log line says of this session: no object to print, its slot's facts. */
  describe(): { session: number; account: number; device: number; peer: string } {
    return { session: this.id, account: this.account, device: this.device, peer: this.socket.remoteAddress };
  }
}

/**
 * A session as its device's owner sees it when the socket is on another worker (server/routing-mesh.ts): a slot like
 * any session's (so the delivery pipeline runs on it unchanged), and an object of its own for what only a proxy has,
 * with a socket whose writes go to that worker over the mesh. Stanzas come from the edge one at a time, in order,
 * through `chain`. Proxies stay objects: they are not idle sockets of this process.
 */
export class ProxySession extends Session {
  /** The edge's socket holds outboundBytesMax or more: no pushes until it says it is writable again. */
  remoteFull = false;
  /** The handling of the stanzas forwarded so far (each runs after the one before). */
  chain: Promise<void> = Promise.resolve();

  constructor(
    slots: SessionSlots,
    socket: TransportSocket,
    nowMs: number,
    rateBurst: number,
    readonly edge: number,
    /** Which life of the edge's worker index (routing-mesh.ts, MeshRouting.incarnation). */
    readonly incarnation: number,
    readonly edgeSession: number,
  ) {
    const slot = slots.allocate(socket, TransportKind.object, nowMs, rateBurst);
    super(slots, slot, slots.ids[slot]!);
    slots.flags[slot] = SlotFlag.proxy;
    slots.proxies.set(slot, this);
  }
}

/** The handle of the session in `slot` now (the proxy's own object for a proxy slot). */
export function sessionAt(slots: SessionSlots, slot: number): Session {
  const proxy = slots.proxies.get(slot);
  return proxy !== undefined ? (proxy as Session) : new Session(slots, slot, slots.ids[slot]!);
}
