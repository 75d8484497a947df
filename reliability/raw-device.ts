// A device that speaks the protocol with frames of its own (independent of the SDK), the way PROTOCOL.md section 11
// tells a client to behave: an outbox of its own that keeps every send until its server-ack and writes every
// unacked one again, in client-id order and with its original id, after each reconnect, never more than
// sendsInFlightMax written and unanswered at once (PROTOCOL.md section 11: more at once is a flood); a client id counter that
// survives reconnects; cumulative acks of what it stored (synchronously, so after each read); pongs for pings.
// It reconnects by itself (short fixed backoff, bounded by the caller's stop()).

import type { Socket } from "bun";
import { defaultClientLimits } from "../client/client-options.ts";
import {
  defaultLimits,
  ErrorCode,
  encodePreamble,
  errorAction,
  FrameCodec,
  FrameReader,
  type Limits,
  loginMessage,
  type Stanza,
} from "../protocol/index.ts";
import { type DeviceKey as SigningKey, signWith } from "../server/test-kit.ts";

/** Sends written and not answered yet, as the SDK keeps them (PROTOCOL.md section 11, "Sends in flight"). */
const sendsInFlightMax = defaultClientLimits.sendsInFlightMax;

export interface RawDeviceEvents {
  /** A deliver or deliverReceipt arrived (before the ack); the device acks it after this returns. */
  inbound?(stanza: Stanza & { kind: "deliver" | "deliverReceipt" }): void;
  serverAck?(token: string, clientId: number): void;
  /** A send refused for good (rejected range). */
  refused?(token: string, code: number): void;
  /** A send refused for now (retry range): it is written again shortly, with its id. */
  retry?(token: string, code: number): void;
  /** The session closed with this error or goaway code (null: no code). */
  closed?(code: number | null): void;
}

interface OutboxEntry {
  readonly clientId: number;
  readonly to: number;
  readonly payload: Uint8Array | ReadonlyArray<{ readonly device: number; readonly payload: Uint8Array }>;
  readonly token: string;
  /** Not before this time (a retry-range refusal waits a little). */
  notBeforeMs: number;
  written: boolean;
}

export interface RawDeviceOptions {
  readonly account: number;
  readonly device: number;
  readonly key: SigningKey;
  /** Where the server is now (it may move to another port after a restart). */
  readonly port: () => number;
  readonly limits?: Limits;
  readonly reconnectDelayMs?: number;
  readonly events?: RawDeviceEvents;
}

export class RawDevice {
  private readonly codec: FrameCodec;
  private reader: FrameReader;
  private socket: Socket<undefined> | null = null;
  private unsent: Uint8Array[] = [];
  private readonly outbox = new Map<number, OutboxEntry>();
  /** Outbox entries written on this session and not answered yet (at most sendsInFlightMax). */
  private inFlight = 0;
  private nextClientId = 1;
  private running = false;
  private ready = false;
  private lastCode: number | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private connectAttempt = 0;
  sessions = 0;
  readonly account: number;
  readonly device: number;

  constructor(private readonly options: RawDeviceOptions) {
    this.codec = new FrameCodec({ limits: options.limits ?? defaultLimits });
    this.reader = new FrameReader(this.codec);
    this.account = options.account;
    this.device = options.device;
  }

  get pending(): number {
    return this.outbox.size;
  }

  get isReady(): boolean {
    return this.ready;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.connect();
  }

  /** Closes the connection and stops reconnecting. The outbox is kept (a later start() resends it). */
  stop(): void {
    this.running = false;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.ready = false;
    this.socket?.end();
    this.socket = null;
  }

  /**
   * Queues a message; it is written now if the session is ready, else after the next welcome. With `devices`, the
   * same bytes go as per-device payloads, one for each of those devices of `to`.
   */
  send(to: number, token: string, devices: readonly number[] = []): number {
    const clientId = this.nextClientId++;
    const bytes = new TextEncoder().encode(token);
    const entry: OutboxEntry = {
      clientId,
      to,
      payload: devices.length === 0 ? bytes : devices.map((device) => ({ device, payload: bytes })),
      token,
      notBeforeMs: 0,
      written: false,
    };
    this.outbox.set(clientId, entry);
    if (this.ready) this.writeEntry(entry);
    return clientId;
  }

  private async connect(): Promise<void> {
    this.retryTimer = null;
    if (!this.running) return;
    const attempt = ++this.connectAttempt;
    this.reader = new FrameReader(this.codec);
    this.unsent = [];
    this.lastCode = null;
    let socket: Socket<undefined>;
    try {
      socket = await Bun.connect<undefined>({
        hostname: "127.0.0.1",
        port: this.options.port(),
        data: undefined,
        socket: {
          binaryType: "uint8array",
          data: (_socket, chunk) => {
            if (attempt === this.connectAttempt) this.data(chunk);
          },
          drain: () => {
            if (attempt === this.connectAttempt) this.flush();
          },
          close: () => this.lost(attempt),
          end: () => this.lost(attempt),
          error: () => this.lost(attempt),
          connectError: () => {},
        },
      });
    } catch {
      this.lost(attempt);
      return;
    }
    if (attempt !== this.connectAttempt || !this.running) {
      socket.end();
      return;
    }
    this.socket = socket;
    this.write(encodePreamble());
  }

  private lost(attempt: number): void {
    if (attempt !== this.connectAttempt) return;
    this.connectAttempt++; // later callbacks of this socket are stale
    this.ready = false;
    this.socket = null;
    for (const entry of this.outbox.values()) entry.written = false;
    this.inFlight = 0;
    this.options.events?.closed?.(this.lastCode);
    if (!this.running || this.retryTimer !== null) return;
    // A stop-range code (replaced, badCredentials...) means do not come back on our own.
    if (this.lastCode !== null && errorAction(this.lastCode) === "stop") {
      this.running = false;
      return;
    }
    this.retryTimer = setTimeout(() => void this.connect(), this.options.reconnectDelayMs ?? 50);
  }

  private write(bytes: Uint8Array): void {
    const socket = this.socket;
    if (socket === null) return;
    if (this.unsent.length > 0) {
      this.unsent.push(bytes.slice());
      return;
    }
    const written = Math.max(0, socket.write(bytes));
    if (written < bytes.length) this.unsent.push(bytes.slice(written));
  }

  private flush(): void {
    const socket = this.socket;
    while (socket !== null && this.unsent.length > 0) {
      const head = this.unsent[0]!;
      const written = Math.max(0, socket.write(head));
      if (written < head.length) {
        this.unsent[0] = head.subarray(written);
        return;
      }
      this.unsent.shift();
    }
  }

  private writeEntry(entry: OutboxEntry): void {
    if (entry.written || Date.now() < entry.notBeforeMs || this.inFlight >= sendsInFlightMax) return;
    entry.written = true;
    this.inFlight++;
    this.write(this.codec.encode({ kind: "send", clientId: entry.clientId, to: entry.to, payload: entry.payload }));
  }

  /** Writes every unacked send not yet written on this session, in client-id order (Map order is insertion). */
  private pumpOutbox(): void {
    if (!this.ready) return;
    let waiting = false;
    for (const entry of this.outbox.values()) {
      if (entry.written) continue;
      // The window is full: answers free it, and each answer pumps again.
      if (this.inFlight >= sendsInFlightMax) break;
      if (Date.now() < entry.notBeforeMs) {
        waiting = true;
        // Keep client-id order: nothing after a waiting entry overtakes it.
        break;
      }
      this.writeEntry(entry);
    }
    if (waiting) setTimeout(() => this.pumpOutbox(), 50);
  }

  private data(chunk: Uint8Array): void {
    this.reader.push(chunk);
    let ackSeq = 0;
    for (;;) {
      const result = this.reader.next();
      if (result.status === "more") break;
      if (result.status === "error") {
        this.socket?.end();
        return;
      }
      const stanza = result.stanza;
      switch (stanza.kind) {
        case "challenge":
          this.write(this.codec.encode(loginStanza(stanza.nonce, this.options)));
          break;
        case "welcome":
          this.ready = true;
          this.sessions++;
          this.nextClientId = Math.max(this.nextClientId, stanza.lastClientId + 1);
          this.pumpOutbox();
          break;
        case "deliver":
        case "deliverReceipt":
          this.options.events?.inbound?.(stanza);
          ackSeq = Math.max(ackSeq, stanza.seq);
          break;
        case "serverAck": {
          const entry = this.outbox.get(stanza.clientId);
          if (entry === undefined) break;
          this.outbox.delete(stanza.clientId);
          if (entry.written) this.inFlight--;
          this.options.events?.serverAck?.(entry.token, entry.clientId);
          this.pumpOutbox();
          break;
        }
        case "error": {
          const entry = stanza.clientId === null ? undefined : this.outbox.get(stanza.clientId);
          const action = errorAction(stanza.code);
          if (entry !== undefined && action === "retry") {
            this.options.events?.retry?.(entry.token, stanza.code);
            if (entry.written) this.inFlight--;
            entry.written = false;
            entry.notBeforeMs = Date.now() + 100;
            setTimeout(() => this.pumpOutbox(), 110);
          } else if (entry !== undefined && action === "rejected") {
            this.outbox.delete(entry.clientId);
            if (entry.written) this.inFlight--;
            this.options.events?.refused?.(entry.token, stanza.code);
            this.pumpOutbox();
          } else if (action === "reconnect" || action === "stop") {
            this.lastCode = stanza.code;
          }
          break;
        }
        case "goaway":
          this.lastCode = stanza.code;
          break;
        case "ping":
          this.write(this.codec.encode({ kind: "pong" }));
          break;
        default:
          break;
      }
    }
    // Stored synchronously above: ack once per read, cumulatively.
    if (ackSeq > 0 && this.ready) this.write(this.codec.encode({ kind: "ack", seq: ackSeq }));
  }
}

/** The server name a device on loopback signs (PROTOCOL.md section 9): the host it dialed. */
export const loopbackServerName = "127.0.0.1";

/** A login for this nonce, signed with the device's key. */
export function loginStanza(
  nonce: Uint8Array,
  device: { readonly account: number; readonly device: number; readonly key: SigningKey },
): Stanza {
  const message = loginMessage(nonce, loopbackServerName, device.account, device.device);
  return {
    kind: "login",
    account: device.account,
    device: device.device,
    signature: signWith(device.key, message),
    serverName: loopbackServerName,
  };
}

export { ErrorCode };
