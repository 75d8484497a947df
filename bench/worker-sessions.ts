// The sessions of one load worker: one Slot per device, connecting with Bun.connect from the worker's source address,
// logging in (the challenge nonce signed with the device's key, or a registration), decoding frames with protocol/,
// acknowledging what arrives and answering pings. What a scenario adds (traffic, the probe) plugs in through hooks.
//
// Kept lean on purpose, because the worker shares the host's cores with the server under test: one Slot of fixed
// shape per socket, one FrameCodec for the process, buffers only while a frame is partial or the socket is full, one
// sweep timer for every connect deadline, and the ack and sends of one read written together.

import type { KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Socket, TCPSocketConnectOptions } from "bun";
import {
  canonicalServerName,
  defaultLimits,
  encodePreamble,
  FrameCodec,
  loginMessage,
  registerMessage,
  type Stanza,
  tlsChannelBinding,
} from "../protocol/index.ts";
import type { NoiseHandshake } from "../protocol/noise-handshake.ts";
import { devicePrivateKey, rawPublicKey, signWith } from "./device-keys.ts";
import { benchHandle } from "./seed-accounts.ts";
import {
  encodeClientFrame,
  readHandshake,
  readServerFrames,
  upgradeRequest,
  WsOpcode,
} from "./websocket-client-frames.ts";
import { type NoiseSlot, NoiseState, type NoiseStateValue, WorkerNoise } from "./worker-noise.ts";
import type { DropReply, WorkerCounters, WorkerInit } from "./worker-protocol.ts";

export const SlotState = { idle: 0, connecting: 1, authenticating: 2, ready: 3, closing: 4 } as const;
export type SlotStateValue = (typeof SlotState)[keyof typeof SlotState];
/** The WebSocket layer of a slot: none (raw TCP), waiting for the server's 101, or open. */
export const WsState = { none: 0, upgrading: 1, open: 2 } as const;
export type WsStateValue = (typeof WsState)[keyof typeof WsState];

/** A stuck peer (it does not read) would otherwise grow a slot's unsent tail without bound. */
const outboundBytesMax = 8 * 1024 * 1024;
const sweepIntervalMs = 100;

/** One device's session. Fixed shape; everything per socket lives here. */
export class Slot implements NoiseSlot {
  socket: Socket<Slot> | null = null;
  state: SlotStateValue = SlotState.idle;
  /** Bumped per attempt, so callbacks of an abandoned attempt are ignored. */
  attempt = 0;
  attemptStartedAtMs = 0;
  pending: Uint8Array | null = null;
  outbound: Uint8Array | null = null;
  /** WebSocket transport: the layer's state, and the bytes of a partial handshake answer or WebSocket frame. */
  ws: WsStateValue = WsState.none;
  wsPending: Uint8Array | null = null;
  /** Noise transport (worker-noise.ts): the layer's state, its handshake, its cipher row, a partial message. */
  noiseState: NoiseStateValue = NoiseState.none;
  noiseHandshake: NoiseHandshake | null = null;
  noiseRow = -1;
  noisePending: Uint8Array | null = null;
  maxSeq = 0;
  ackedSeq = 0;
  nextClientId = 1;
  /** The code of the last error or goaway received on this connection, and its retry hint. */
  closeCode = 0;
  retryAfterMs = 0;
  /** Traffic: the receiver's account, sends written and not server-acked, sends left (Infinity: until stopped). */
  peer = 0;
  inFlight = 0;
  sendsLeft = 0;
  /** Whether deliveries to this slot carry a scheduled time (open-loop traffic) to measure. */
  timed = false;
  /** Whether deliveries to this slot go to the probe. */
  probed = false;

  constructor(
    readonly index: number,
    public account: number,
  ) {}
}

/** Whoever started the current logins (a ramp or a storm) hears how each attempt ended. */
export interface LoginRun {
  settled(slot: Slot, ok: boolean, reason: string): void;
}

/** net.ipv4.ip_local_port_range, or Linux's default when it cannot be read. */
export function ephemeralPortRange(): readonly [number, number] {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (low !== undefined && high !== undefined && Number.isInteger(low) && Number.isInteger(high) && low < high) {
      return [low, high];
    }
  } catch {
    // Not Linux.
  }
  return [32768, 60999];
}

export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export function increment(table: Record<string, number>, key: string | number): void {
  table[key] = (table[key] ?? 0) + 1;
}

export class WorkerSessions {
  readonly slots: Slot[] = [];
  readonly counters = {
    logins: 0,
    connectAttempts: 0,
    failedAttempts: 0,
    sent: 0,
    serverAcked: 0,
    sendRefused: 0,
    delivered: 0,
    duplicates: 0,
    receiptFrames: 0,
    receiptClientIds: 0,
    acksSent: 0,
    firstDeliverAtMs: 0,
    lastDeliverAtMs: 0,
    lastServerAckAtMs: 0,
    lastReceiptAtMs: 0,
    bytesIn: 0,
    bytesOut: 0,
    unexpectedCloses: 0,
    errorCodes: {} as Record<string, number>,
    goawayCodes: {} as Record<string, number>,
  };
  readyCount = 0;
  /** Attempts between connect and welcome, for their deadline. */
  readonly inFlight = new Set<Slot>();
  loginRun: LoginRun | null = null;
  /** After each read of a ready slot (traffic refills its window here). */
  afterRead: ((slot: Slot) => void) | null = null;
  /** A delivery to a slot marked `timed`. */
  onTimedDelivery: ((slot: Slot, payload: Uint8Array, atMs: number) => void) | null = null;
  /** A delivery to a slot marked `probed`. */
  onProbeDelivery: ((slot: Slot, payload: Uint8Array, atMs: number) => void) | null = null;
  /** Bumped by each drop: reconnects then bind a fresh source address (see load-fleet.ts). */
  private addressGeneration = 0;
  /** The ephemeral port range (ports of our own addresses only: no other process binds them), and the next one. */
  private readonly portRange = ephemeralPortRange();
  private portGeneration = 0;
  private portNext = this.portRange[0];
  private readonly keys: KeyObject[] = [];
  private readonly publicKeys: Uint8Array[] = [];
  private readonly codec = new FrameCodec({ limits: defaultLimits });
  private readonly preamble = encodePreamble();
  /** Present when the transport is "noise". */
  private readonly noise: WorkerNoise | null;
  private readonly handlers;
  private readonly sweep: ReturnType<typeof setInterval>;
  /** Frames produced while one read is handled, written together at its end. */
  private batch: Uint8Array[] = [];
  private batchBytes = 0;
  private batchSlot: Slot | null = null;

  constructor(readonly init: WorkerInit) {
    this.noise = init.transport === "noise" ? new WorkerNoise() : null;
    for (let index = 0; index < init.count; index++) {
      const key = devicePrivateKey(init.runSeed, init.keyFirst + index);
      this.keys.push(key);
      if (init.accounts === null) this.publicKeys.push(rawPublicKey(key));
      this.slots.push(new Slot(index, init.accounts?.[index] ?? 0));
    }
    this.handlers = {
      open: (socket: Socket<Slot>) => this.opened(socket),
      data: (socket: Socket<Slot>, chunk: Buffer) => this.received(socket.data, chunk),
      drain: (socket: Socket<Slot>) => this.drain(socket.data),
      close: (socket: Socket<Slot>) => this.closed(socket.data, socket),
      error: (socket: Socket<Slot>) => this.closed(socket.data, socket),
      connectError: (socket: Socket<Slot>) => {
        const slot = socket.data as Slot | undefined;
        if (slot !== undefined && slot.state === SlotState.connecting && slot.socket === null) {
          this.attemptFailed(slot, "connectError");
        }
      },
    };
    // Connect deadlines of every attempt in flight, on one timer.
    this.sweep = setInterval(() => {
      if (this.inFlight.size === 0) return;
      const expired = nowMs() - init.connectTimeoutMs;
      for (const slot of this.inFlight) {
        if (slot.attemptStartedAtMs < expired) this.attemptFailed(slot, "timeout");
      }
    }, sweepIntervalMs);
  }

  /**
   * The Bun.connect options binding this worker's current source address and the next port of it in turn (Bun >=
   * 1.3 has both; bun-types not yet). The port is chosen here because binding port 0 makes the kernel search the
   * address's ports for a free one, first among odd ports of the lower half of the range: once thousands are taken
   * every bind scans thousands, in system time (the million scenario fell from 1,300 to 136 logins/s past ~7,000
   * sockets per address). A port taken before (a wrap, or TIME_WAIT) fails that one attempt with EADDRINUSE.
   */
  sourceAddress(): { localAddress?: string; localPort?: number } {
    const prefix = this.init.localAddressPrefix;
    if (prefix === null) return {};
    const [low, high] = this.portRange;
    if (this.portGeneration !== this.addressGeneration) {
      this.portGeneration = this.addressGeneration;
      this.portNext = low;
    }
    const localPort = this.portNext;
    this.portNext = localPort >= high ? low : localPort + 1;
    return { localAddress: `${prefix}${1 + (this.addressGeneration % 254)}`, localPort };
  }

  // ---- connecting and logging in -------------------------------------------------------------------------------

  startAttempt(slot: Slot): void {
    slot.attempt++;
    slot.state = SlotState.connecting;
    slot.attemptStartedAtMs = nowMs();
    slot.pending = null;
    slot.outbound = null;
    slot.ws = this.init.transport === "ws" ? WsState.upgrading : WsState.none;
    slot.wsPending = null;
    slot.noiseState = NoiseState.none;
    slot.closeCode = 0;
    slot.retryAfterMs = 0;
    // maxSeq stays: entries redelivered after a reconnect are duplicates. The ack is sent again (the old one may
    // have been lost with the connection).
    slot.ackedSeq = 0;
    this.counters.connectAttempts++;
    this.inFlight.add(slot);
    const attempt = slot.attempt;
    const options = {
      hostname: this.init.host,
      port: this.init.port,
      data: slot,
      socket: this.handlers,
      ...(this.init.transport === "tls" ? { tls: { ca: this.init.tlsCa ?? undefined } } : {}),
      ...this.sourceAddress(),
    } as TCPSocketConnectOptions<Slot>;
    Bun.connect(options).catch(() => {
      if (slot.attempt === attempt && slot.state === SlotState.connecting) this.attemptFailed(slot, "connectError");
    });
  }

  attemptFailed(slot: Slot, reason: string): void {
    this.inFlight.delete(slot);
    slot.attempt++;
    const socket = slot.socket;
    slot.socket = null;
    slot.state = SlotState.idle;
    slot.pending = null;
    slot.outbound = null;
    slot.wsPending = null;
    this.noise?.release(slot);
    socket?.terminate();
    this.counters.failedAttempts++;
    this.loginRun?.settled(slot, false, reason);
  }

  private opened(socket: Socket<Slot>): void {
    const slot = socket.data;
    if (slot.state !== SlotState.connecting || slot.socket !== null) {
      // Its attempt was abandoned (connect deadline) before the connection opened.
      socket.terminate();
      return;
    }
    slot.socket = socket;
    // WebSocket: the upgrade request first; the preamble follows the server's 101 (wsRead). Noise: the handshake
    // first; the preamble goes in the first record (noiseRead).
    if (slot.ws === WsState.upgrading)
      this.writeRaw(slot, upgradeRequest(this.init.host, this.init.port, this.init.wsPath));
    else if (this.noise !== null) this.writeRaw(slot, this.noise.open(slot));
    else this.write(slot, this.preamble);
  }

  private loggedIn(slot: Slot): void {
    this.inFlight.delete(slot);
    slot.state = SlotState.ready;
    this.readyCount++;
    this.counters.logins++;
    this.loginRun?.settled(slot, true, "");
  }

  private closed(slot: Slot, socket: Socket<Slot>): void {
    // A socket of an abandoned attempt (or a second callback for the same close) is not this slot's any more.
    if (slot.socket !== socket) return;
    const state = slot.state;
    slot.socket = null;
    slot.pending = null;
    slot.outbound = null;
    slot.wsPending = null;
    this.noise?.release(slot);
    if (state === SlotState.ready) {
      this.readyCount--;
      this.counters.unexpectedCloses++;
      slot.state = SlotState.idle;
      slot.inFlight = 0;
    } else if (state === SlotState.closing) {
      slot.state = SlotState.idle;
    } else if (state === SlotState.connecting || state === SlotState.authenticating) {
      this.attemptFailed(slot, slot.closeCode === 0 ? "closedBeforeWelcome" : `code${slot.closeCode}`);
    }
  }

  /** Closes the ready sessions among `indexes` (all when null): gracefully (FIN) or with a reset (RST). */
  drop(indexes: readonly number[] | null, abort: boolean): DropReply {
    const atMs = nowMs();
    let dropped = 0;
    this.addressGeneration++;
    for (const slot of this.select(indexes, (candidate) => candidate.state === SlotState.ready)) {
      slot.state = SlotState.closing;
      this.readyCount--;
      slot.inFlight = 0;
      if (abort) slot.socket?.terminate();
      else slot.socket?.end();
      dropped++;
    }
    return { atMs, dropped };
  }

  closeAll(): void {
    clearInterval(this.sweep);
    for (const slot of this.slots) {
      if (slot.state === SlotState.ready) this.readyCount--;
      if (slot.state !== SlotState.idle) slot.state = SlotState.closing;
      slot.socket?.terminate();
    }
  }

  select(indexes: readonly number[] | null, wanted: (slot: Slot) => boolean): Slot[] {
    const chosen = indexes === null ? this.slots : indexes.map((index) => this.slots[index]!);
    return chosen.filter(wanted);
  }

  // ---- writing -------------------------------------------------------------------------------------------------

  send(slot: Slot, stanza: Stanza): void {
    const frame = this.codec.encode(stanza);
    if (this.batchSlot !== slot) {
      this.write(slot, frame);
      return;
    }
    this.batch.push(frame);
    this.batchBytes += frame.length;
  }

  private flushBatch(slot: Slot): void {
    this.batchSlot = null;
    if (this.batch.length === 0) return;
    let bytes: Uint8Array;
    if (this.batch.length === 1) bytes = this.batch[0]!;
    else {
      bytes = new Uint8Array(this.batchBytes);
      let offset = 0;
      for (const frame of this.batch) {
        bytes.set(frame, offset);
        offset += frame.length;
      }
    }
    this.batch = [];
    this.batchBytes = 0;
    this.write(slot, bytes);
  }

  /**
   * Writes protocol bytes: as they are on TCP, as one masked binary message on WebSocket, sealed into records on
   * Noise (nothing before the handshake completed).
   */
  private write(slot: Slot, bytes: Uint8Array): void {
    if (slot.noiseState === NoiseState.transport) {
      const records = this.noise!.seal(slot, bytes);
      if (records === null) slot.socket?.terminate();
      else this.writeRaw(slot, records);
    } else if (slot.noiseState === NoiseState.handshake) return;
    else if (slot.ws === WsState.none) this.writeRaw(slot, bytes);
    else if (slot.ws === WsState.open) this.writeRaw(slot, encodeClientFrame(WsOpcode.binary, bytes));
  }

  /** Bun's write() takes what the socket takes and drops the rest: keep the rest and write it on drain. */
  private writeRaw(slot: Slot, bytes: Uint8Array): void {
    const socket = slot.socket;
    if (socket === null) return;
    this.counters.bytesOut += bytes.length;
    if (slot.outbound !== null) {
      if (slot.outbound.length + bytes.length > outboundBytesMax) {
        socket.terminate();
        return;
      }
      const joined = new Uint8Array(slot.outbound.length + bytes.length);
      joined.set(slot.outbound, 0);
      joined.set(bytes, slot.outbound.length);
      slot.outbound = joined;
      return;
    }
    const written = socket.write(bytes);
    if (written < bytes.length) slot.outbound = bytes.slice(Math.max(0, written));
  }

  private drain(slot: Slot): void {
    const rest = slot.outbound;
    const socket = slot.socket;
    if (rest === null || socket === null) return;
    const written = socket.write(rest);
    slot.outbound = written >= rest.length ? null : rest.subarray(Math.max(0, written));
  }

  // ---- reading -------------------------------------------------------------------------------------------------

  private received(slot: Slot, chunk: Uint8Array): void {
    this.counters.bytesIn += chunk.length;
    if (slot.ws !== WsState.none) this.wsRead(slot, chunk);
    else if (slot.noiseState !== NoiseState.none) this.noiseRead(slot, chunk);
    else this.read(slot, chunk);
  }

  /** Noise: handshake messages, then records whose plaintext is the protocol's stream (worker-noise.ts). */
  private noiseRead(slot: Slot, chunk: Uint8Array): void {
    const result = this.noise!.read(slot, chunk, (bytes) => this.writeRaw(slot, bytes));
    if (result.error !== null) {
      increment(this.counters.errorCodes, result.error);
      if (slot.state === SlotState.connecting) this.attemptFailed(slot, result.error);
      else slot.socket?.terminate();
      return;
    }
    if (result.established) this.write(slot, this.preamble);
    if (result.plaintext !== null) this.read(slot, result.plaintext);
  }

  /**
   * WebSocket: the server's answer to the upgrade (then the preamble goes out), then its frames; binary payloads go
   * to read() as the protocol's stream, pings are answered, a close ends the connection. Only a partial handshake
   * answer or frame is kept between reads.
   */
  private wsRead(slot: Slot, chunk: Uint8Array): void {
    let source: Uint8Array = chunk;
    if (slot.wsPending !== null) {
      source = new Uint8Array(slot.wsPending.length + chunk.length);
      source.set(slot.wsPending, 0);
      source.set(chunk, slot.wsPending.length);
      slot.wsPending = null;
    }
    let offset = 0;
    if (slot.ws === WsState.upgrading) {
      const handshake = readHandshake(source);
      if (handshake.status === "more") {
        slot.wsPending = source === chunk ? chunk.slice() : source;
        return;
      }
      if (handshake.status === "error") {
        if (slot.state === SlotState.connecting) this.attemptFailed(slot, handshake.reason);
        else slot.socket?.terminate();
        return;
      }
      slot.ws = WsState.open;
      offset = handshake.consumed;
      this.write(slot, this.preamble);
    }
    const frames = readServerFrames(source, offset);
    for (const reply of frames.replies) this.writeRaw(slot, reply);
    if (frames.data !== null) this.read(slot, frames.data);
    if (frames.error !== null) {
      increment(this.counters.errorCodes, frames.error);
      slot.socket?.terminate();
      return;
    }
    if (frames.closed) {
      slot.socket?.end();
      return;
    }
    const rest = offset + frames.consumed;
    if (rest < source.length && slot.socket !== null) slot.wsPending = source.slice(rest);
  }

  private read(slot: Slot, chunk: Uint8Array): void {
    let source: Uint8Array = chunk;
    if (slot.pending !== null) {
      source = new Uint8Array(slot.pending.length + chunk.length);
      source.set(slot.pending, 0);
      source.set(chunk, slot.pending.length);
      slot.pending = null;
    }
    this.batchSlot = slot;
    let offset = 0;
    while (offset < source.length) {
      const result = this.codec.decode(source, offset);
      if (result.status === "more") break;
      if (result.status === "error") {
        increment(this.counters.errorCodes, `decode${result.error.code}`);
        this.flushBatch(slot);
        slot.socket?.terminate();
        return;
      }
      offset += result.consumed;
      this.handle(slot, result.stanza);
    }
    if (offset < source.length) slot.pending = source.slice(offset);
    if (slot.state === SlotState.ready) {
      if (slot.maxSeq > slot.ackedSeq) {
        slot.ackedSeq = slot.maxSeq;
        this.counters.acksSent++;
        this.send(slot, { kind: "ack", seq: slot.maxSeq });
      }
      this.afterRead?.(slot);
    }
    this.flushBatch(slot);
  }

  private handle(slot: Slot, stanza: Stanza): void {
    const counters = this.counters;
    switch (stanza.kind) {
      case "challenge": {
        if (slot.state !== SlotState.connecting) return;
        slot.state = SlotState.authenticating;
        const key = this.keys[slot.index]!;
        // Over Noise the signature covers the handshake hash, over TLS the exporter value (the v3 messages of
        // protocol/auth-message.ts).
        const binding =
          this.noise !== null
            ? this.noise.channelBinding(slot)
            : this.init.transport === "tls" && slot.socket !== null
              ? tlsChannelBinding(slot.socket)
              : null;
        if (slot.account !== 0) {
          const serverName = canonicalServerName(this.init.host);
          const signature = signWith(key, loginMessage(stanza.nonce, serverName, slot.account, 1, binding));
          this.send(slot, { kind: "login", account: slot.account, device: 1, signature, serverName });
        } else {
          const handle = benchHandle(this.init.runSeed, this.init.keyFirst + slot.index);
          const serverName = canonicalServerName(this.init.host);
          const signature = signWith(key, registerMessage(stanza.nonce, serverName, handle, binding));
          const publicKey = this.publicKeys[slot.index]!;
          this.send(slot, { kind: "register", invite: null, handle, publicKey, signature, serverName });
        }
        return;
      }
      case "welcome":
        if (slot.state !== SlotState.authenticating) return;
        slot.account = stanza.account;
        slot.nextClientId = Math.max(slot.nextClientId, stanza.lastClientId + 1);
        this.loggedIn(slot);
        return;
      case "deliver": {
        const at = nowMs();
        if (stanza.seq <= slot.maxSeq) {
          counters.duplicates++;
          return;
        }
        slot.maxSeq = stanza.seq;
        counters.delivered++;
        if (counters.firstDeliverAtMs === 0) counters.firstDeliverAtMs = at;
        counters.lastDeliverAtMs = at;
        if (slot.timed) this.onTimedDelivery?.(slot, stanza.payload, at);
        if (slot.probed) this.onProbeDelivery?.(slot, stanza.payload, at);
        return;
      }
      case "deliverReceipt":
        if (stanza.seq > slot.maxSeq) slot.maxSeq = stanza.seq;
        counters.receiptFrames++;
        counters.receiptClientIds += stanza.clientIds.length;
        counters.lastReceiptAtMs = nowMs();
        return;
      case "serverAck":
        counters.serverAcked++;
        counters.lastServerAckAtMs = nowMs();
        if (slot.inFlight > 0) slot.inFlight--;
        return;
      case "ping":
        this.send(slot, { kind: "pong" });
        return;
      case "error":
        increment(counters.errorCodes, stanza.code);
        slot.closeCode = stanza.code;
        // A refused send (rate limit, full queue) spends its client id: free its place in the window.
        if (stanza.clientId !== null && slot.inFlight > 0) {
          slot.inFlight--;
          counters.sendRefused++;
        }
        return;
      case "goaway":
        increment(counters.goawayCodes, stanza.code);
        slot.closeCode = stanza.code;
        slot.retryAfterMs = stanza.retryAfterMs;
        return;
      default:
        return;
    }
  }

  report(plainOpen: number): WorkerCounters {
    const usage = process.cpuUsage();
    return {
      atMs: nowMs(),
      ready: this.readyCount,
      ...this.counters,
      errorCodes: { ...this.counters.errorCodes },
      goawayCodes: { ...this.counters.goawayCodes },
      plainOpen,
      cpuSeconds: (usage.user + usage.system) / 1e6,
    };
  }
}
