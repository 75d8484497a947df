// SwitchboardClient: one device's connection to a Switchboard server, kept up by itself.
//
// Connection: transport -> preamble -> challenge -> login | register | link (signed with the device key) ->
// welcome -> the queue drains (deliver / deliverReceipt, then queueEmpty once). A lost connection is reopened
// with jittered exponential backoff (never sooner than a goaway's retryAfterMs); a stop-range code (bad
// credentials, replaced, device removed, version unsupported, ...) ends the client instead.
//
// Sends: each goes into the bounded outbox and resolves on its serverAck. Client ids strictly increase per device;
// an entry gets its id when first written and keeps it for resends. After a reconnect, every entry not yet
// server-acked is written again, in order, with the same id: the server keeps a window of which recent ids it
// stored, so it server-acks a stored one again (stored once) and handles a refused or lost one as new. (Resolving
// entries at or below welcome.lastClientId instead would be wrong: an id refused with an error the client never
// saw sits below a later stored id.) A refused send (error with its id) rejects with a ClientError; for the retry
// range (rateLimited, queueFull, busy) the app sends again later, which is a new message with a new id.
//
// Receiving: every deliver / deliverReceipt is handed to the listeners, then acked (coalesced, see
// ack-coalescer.ts). Duplicates (same sender device and client id) are dropped but still acked.
//
// Requests (lookup, link code, device list, device removal) take ids from the same counter and are answered by
// the stanza with the same id; a request outstanding when the connection drops is written again on the next one.
// Read receipts are best effort: queued (bounded) while disconnected, never answered.

import {
  type DeliverReceiptStanza,
  type DeliverStanza,
  type DeviceInfo,
  type DevicePayload,
  ErrorCode,
  type ErrorStanza,
  encodePreamble,
  errorAction,
  FrameCodec,
  FrameReader,
  type GoawayStanza,
  type GroupDeliverStanza,
  GroupOp,
  groupOpName,
  type KeyBundle,
  type KeysUploadStanza,
  type Limits,
  linkMessage,
  loginMessage,
  ReceiptType,
  registerMessage,
  type Stanza,
  type WelcomeStanza,
} from "../protocol/index.ts";
import { AckCoalescer } from "./ack-coalescer.ts";
import { Backoff } from "./backoff.ts";
import { ClientClosedError, ClientError, OutboxFullError } from "./client-errors.ts";
import {
  type ClientEventName,
  ClientEvents,
  type ClientListener,
  type LinkCode,
  type LookupResult,
  type ReceiptTypeName,
} from "./client-events.ts";
import { type ClientOptions, type LoginCredentials, type ResolvedOptions, resolveOptions } from "./client-options.ts";
import { DuplicateFilter } from "./duplicate-filter.ts";
import { type GroupInfo, type GroupSendOptions, GroupVersions, groupDevicesHash, recipientDevices } from "./groups.ts";
import { HandleCache } from "./handle-cache.ts";
import { type DeviceKeyPair, generateKeyPair, sign } from "./keys.ts";
import { downloadMedia, type MediaRef, type MediaSession, type MediaTransferOptions, uploadMedia } from "./media.ts";
import { Outbox, type SendOptions, type SendResult } from "./outbox.ts";
import { ReceiptQueue } from "./receipt-queue.ts";
import { type RequestAnswer, RequestTable } from "./request-table.ts";
import type { Transport, TransportFactory } from "./transport.ts";
import { type NoiseOptions, noiseTransport } from "./transport-noise.ts";
import { tcpTransport } from "./transport-tcp.ts";
import { webSocketTransport } from "./transport-websocket.ts";

const uint32Max = 0xffff_ffff;
const utf8 = new TextEncoder();

export type ClientPhase = "idle" | "connecting" | "authenticating" | "ready" | "waiting" | "closed";

/** One attempt at a connection; callbacks of an older attempt find `client.connection !== this` and do nothing. */
interface Connection {
  readonly transport: Transport;
  readonly reader: FrameReader;
  open: boolean;
  /** The closing code the server gave (error of the reconnect/stop range, or goaway), if any. */
  code: number | null;
  reason: string | null;
  /** The server's refusal that ended the session, handed to connect() callers as it came. */
  refusal: ClientError | null;
  retryAfterMs: number;
  /** Authentication was refused for good (handle taken, bad invite...): do not come back. */
  refusedForGood: boolean;
  /** Server's frame limit from the challenge. */
  frameBytesMax: number;
  lastInboundAtMs: number;
}

export class SwitchboardClient {
  private readonly options: ResolvedOptions;
  private readonly codec: FrameCodec;
  private readonly transportFactory: TransportFactory;
  private readonly events = new ClientEvents();
  private readonly backoff: Backoff;
  private readonly outbox: Outbox;
  private readonly duplicates: DuplicateFilter;
  private readonly acks: AckCoalescer;
  private readonly requests: RequestTable;
  private readonly receipts: ReceiptQueue;
  private readonly handleCache: HandleCache;

  private phaseValue: ClientPhase = "idle";
  /** http: or https: for the media listener, as the chat connection was plain or TLS. */
  private readonly mediaScheme: string;
  private connection: Connection | null = null;
  private login: LoginCredentials | null;
  /** The last membership version seen per group, to drop a group event resent after a reconnect. */
  private readonly groupVersions: GroupVersions;
  private readonly register: { handle: string; invite: string | null } | null;
  private readonly link: { code: string } | null;
  private newKeyPair: DeviceKeyPair | null;
  private clientIdNext: number;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private connectWaiters: Array<{
    resolve: (value: { account: number; device: number }) => void;
    reject: (error: Error) => void;
  }> = [];

  constructor(options: ClientOptions) {
    this.options = resolveOptions(options);
    this.mediaScheme = options.url?.startsWith("wss:") ? "https:" : "http:";
    this.codec = new FrameCodec({ limits: this.options.limits });
    const { host, port, clientLimits } = this.options;
    const bufferedBytesMax = clientLimits.transportBufferedBytesMax;
    this.transportFactory =
      options.transport ??
      (options.url !== undefined
        ? webSocketTransport({ url: options.url, bufferedBytesMax })
        : options.noise !== undefined
          ? noiseTransport(
              tcpTransport({ host, port, bufferedBytesMax }),
              `${host}:${port}`,
              noiseOptions(options.noise),
            )
          : tcpTransport({ host, port, bufferedBytesMax }));
    this.backoff = new Backoff(this.options.reconnect);
    this.outbox = new Outbox(
      clientLimits.outboxMessagesMax,
      clientLimits.outboxBytesMax,
      clientLimits.sendsInFlightMax,
    );
    this.duplicates = new DuplicateFilter(clientLimits.duplicateSenderDevicesMax);
    this.groupVersions = new GroupVersions(clientLimits.duplicateSenderDevicesMax);
    this.acks = new AckCoalescer(
      (seq) => this.writeIfReady({ kind: "ack", seq }),
      (error) => this.events.reportListenerError("message", error),
    );
    this.requests = new RequestTable(clientLimits.requestsPendingMax, clientLimits.requestTimeoutMs, (build) => {
      if (this.connection === null || this.phaseValue !== "ready") return null;
      const clientId = this.takeClientId();
      this.writeIfReady(build(clientId));
      return clientId;
    });
    this.receipts = new ReceiptQueue(
      this.options.limits.receiptClientIdsMax,
      clientLimits.receiptsPendingMax,
      () => this.acks.flushNow(),
      (stanza) => this.writeIfReady(stanza),
      clientLimits.receiptsResumeBurst,
      clientLimits.receiptsResumeIntervalMs,
    );
    this.handleCache = new HandleCache(async (accounts) => {
      const answer = await this.request("reverseLookupResult", (clientId) => ({
        kind: "reverseLookup",
        clientId,
        accounts,
      }));
      if (answer.kind !== "reverseLookupResult" || answer.handles.length !== accounts.length) {
        throw new Error("the server's reverseLookupResult does not match the request");
      }
      return answer.handles;
    }, this.options.limits.reverseLookupAccountsMax);
    this.login = options.credentials ?? null;
    this.register =
      options.register === undefined
        ? null
        : { handle: options.register.handle, invite: options.register.invite ?? null };
    this.link = options.link ?? null;
    this.newKeyPair = options.keyPair ?? null;
    this.clientIdNext = Math.max(1, Math.floor(options.firstClientId ?? 1));
    if (this.register !== null) this.checkString("handle", this.register.handle, this.options.limits.handleBytesMax);
    if (this.register?.invite != null)
      this.checkString("invite", this.register.invite, this.options.limits.stringBytesMax);
    if (this.link !== null) this.checkString("link code", this.link.code, this.options.limits.stringBytesMax);
  }

  // ---- state ---------------------------------------------------------------------------------------------------

  get phase(): ClientPhase {
    return this.phaseValue;
  }

  /** The device's login credentials: known from the start, or after a registration or link was welcomed. */
  get credentials(): LoginCredentials | null {
    return this.login;
  }

  /** The next client id this device will use (persist it to keep ids increasing across runs). */
  get nextClientId(): number {
    return this.clientIdNext;
  }

  /** The largest frame this connection may send: the server's (from its challenge) or this client's, the smaller. */
  get frameBytesMax(): number {
    return this.connection?.frameBytesMax ?? this.options.limits.frameBytesMax;
  }

  /** Sends not yet server-acked. */
  get pendingSends(): number {
    return this.outbox.size;
  }

  on<K extends ClientEventName>(name: K, listener: ClientListener<K>): () => void {
    return this.events.on(name, listener);
  }

  off<K extends ClientEventName>(name: K, listener: ClientListener<K>): void {
    this.events.off(name, listener);
  }

  // ---- connecting ----------------------------------------------------------------------------------------------

  /**
   * Starts the client (once) and resolves on the first welcome after the call. Connection failures are retried with
   * backoff; rejects when the client stops first: a ClientError for a code the server gave (badCredentials,
   * handleTaken, ...) or a ClientClosedError after close().
   */
  connect(): Promise<{ account: number; device: number }> {
    if (this.phaseValue === "closed") return Promise.reject(new ClientClosedError("the client is closed"));
    if (this.phaseValue === "ready" && this.login !== null) {
      return Promise.resolve({ account: this.login.account, device: this.login.device });
    }
    const promise = new Promise<{ account: number; device: number }>((resolve, reject) => {
      this.connectWaiters.push({ resolve, reject });
    });
    if (this.phaseValue === "idle") void this.attempt();
    return promise;
  }

  /**
   * While waiting to reconnect (phase "waiting"), tries at once instead of at the end of the backoff delay: for a
   * "retry now" button. Returns false in every other phase (nothing to hurry). The backoff keeps growing if this
   * attempt fails too, and a goaway's retryAfterMs is the server's wish, not enforced here: call it for a person.
   */
  reconnectNow(): boolean {
    if (this.phaseValue !== "waiting" || this.reconnectTimer === null) return false;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    void this.attempt();
    return true;
  }

  /** Stops for good: closes the connection, rejects what is pending with ClientClosedError. */
  async close(): Promise<void> {
    if (this.phaseValue === "closed") return;
    this.stop(null, "closed by the app");
  }

  private async attempt(): Promise<void> {
    this.reconnectTimer = null;
    if (this.phaseValue === "closed") return;
    const transport = this.transportFactory();
    const connection: Connection = {
      transport,
      reader: new FrameReader(this.codec),
      open: false,
      code: null,
      reason: null,
      refusal: null,
      retryAfterMs: 0,
      refusedForGood: false,
      frameBytesMax: this.options.limits.frameBytesMax,
      lastInboundAtMs: Date.now(),
    };
    this.connection = connection;
    this.phaseValue = "connecting";
    this.connectTimer = setTimeout(() => {
      if (this.connection !== connection || this.phaseValue === "ready") return;
      connection.reason = `no welcome within ${this.options.clientLimits.connectTimeoutMs} ms`;
      if (connection.open) transport.close();
      else this.lost(connection, connection.reason);
    }, this.options.clientLimits.connectTimeoutMs);
    try {
      await transport.connect({
        data: (chunk) => this.data(connection, chunk),
        close: (reason) => this.lost(connection, reason),
      });
    } catch (error) {
      if (this.connection !== connection) return;
      if (error instanceof ClientError) {
        // The transport refused the server itself (a Noise key that is not the pinned one): its code says whether to
        // try again, and the app hears of it at once.
        connection.code = error.code;
        connection.reason = error.message;
        connection.refusal = error;
        this.events.emit("error", error);
      }
      this.lost(connection, `connect failed: ${(error as Error).message}`);
      return;
    }
    if (this.connection !== connection || this.isClosed()) {
      transport.close();
      return;
    }
    connection.open = true;
    this.phaseValue = "authenticating";
    transport.write(encodePreamble());
  }

  /** The connection `connection` ended (or never opened): reconnect with backoff, or stop. */
  private lost(connection: Connection, transportReason: string): void {
    if (this.connection !== connection) return;
    this.connection = null;
    connection.open = false;
    this.clearConnectionTimers();
    this.outbox.connectionLost();
    this.requests.connectionLost();
    if (this.phaseValue === "closed") return;
    const reason = connection.reason ?? transportReason;
    const code = connection.code;
    if (connection.refusedForGood || (code !== null && errorAction(code) === "stop")) {
      this.stop(code, reason, connection.refusal);
      return;
    }
    const retryInMs = this.backoff.next(connection.retryAfterMs);
    this.phaseValue = "waiting";
    this.reconnectTimer = setTimeout(() => void this.attempt(), retryInMs);
    this.events.emit("disconnected", { ...(code === null ? {} : { code }), reason, willReconnect: true, retryInMs });
  }

  /** Ends the client: nothing pending survives. `code` is the server's stop code, null when the app closed it. */
  private stop(code: number | null, reason: string, refusal: ClientError | null = null): void {
    const wasClosed = this.phaseValue === "closed";
    this.phaseValue = "closed";
    const connection = this.connection;
    this.connection = null;
    this.clearConnectionTimers();
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.acks.stop();
    if (connection?.open) connection.transport.close();
    if (wasClosed) return;
    const closedError = () => new ClientClosedError(`client stopped: ${reason}`, code);
    for (const entry of this.outbox.all()) {
      this.outbox.remove(entry);
      entry.reject(closedError());
    }
    this.requests.rejectAll(closedError);
    this.receipts.clear();
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    for (const waiter of waiters) {
      waiter.reject(refusal ?? (code === null ? closedError() : new ClientError(code, reason)));
    }
    this.events.emit("disconnected", { ...(code === null ? {} : { code }), reason, willReconnect: false });
  }

  /** Read through a method: TypeScript narrows the field across awaits as if nothing else could change it. */
  private isClosed(): boolean {
    return this.phaseValue === "closed";
  }

  private clearConnectionTimers(): void {
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  // ---- inbound -------------------------------------------------------------------------------------------------

  private data(connection: Connection, chunk: Uint8Array): void {
    if (this.connection !== connection) return;
    connection.lastInboundAtMs = Date.now();
    connection.reader.push(chunk);
    while (this.connection === connection) {
      const result = connection.reader.next();
      if (result.status === "more") return;
      if (result.status === "error") {
        // The server's bytes make no sense: a bug on one side. Drop the connection and start over.
        this.events.emit("error", result.error);
        connection.code = null;
        connection.reason = `bad frame from the server: ${result.error.message}`;
        connection.transport.close();
        return;
      }
      try {
        this.handle(connection, result.stanza);
      } catch (error) {
        // A bug in the SDK: report it and reconnect rather than leave a half-handled session.
        this.events.emit("error", error instanceof Error ? error : new Error(String(error)));
        connection.reason = "internal error in the client";
        connection.transport.close();
        return;
      }
    }
  }

  private handle(connection: Connection, stanza: Stanza): void {
    switch (stanza.kind) {
      case "challenge":
        if (this.phaseValue !== "authenticating") this.unexpected(connection, stanza.kind);
        else {
          connection.frameBytesMax = Math.min(stanza.frameBytesMax, this.options.limits.frameBytesMax);
          void this.answerChallenge(connection, stanza.nonce);
        }
        break;
      case "welcome":
        if (this.phaseValue !== "authenticating") this.unexpected(connection, stanza.kind);
        else this.welcome(connection, stanza);
        break;
      case "deliver":
        this.deliver(stanza);
        break;
      case "deliverReceipt":
        this.deliverReceipt(stanza);
        break;
      case "queueEmpty":
        this.events.emit("queueEmpty", undefined);
        break;
      case "serverAck":
        this.serverAck(stanza.clientId);
        break;
      case "error":
        this.error(connection, stanza);
        break;
      case "goaway":
        this.goaway(connection, stanza);
        break;
      case "ping":
        connection.transport.write(this.codec.encode({ kind: "pong" }));
        break;
      case "pong":
        break;
      case "lookupResult":
      case "linkCode":
      case "deviceList":
      case "reverseLookupResult":
      case "keysUploaded":
      case "keyBundles":
      case "mediaUploadGrant":
      case "mediaDownloadGrant":
      case "groupInfo":
        this.requests.answer(stanza.kind, stanza.clientId, stanza);
        break;
      case "groupDeliver":
        this.groupDeliver(stanza);
        break;
      case "groupReceipt":
        this.acks.note(
          stanza.seq,
          this.events.emit("groupReceipt", {
            ...stanza,
            type: stanza.type === ReceiptType.read ? "read" : "delivered",
          }),
        );
        break;
      case "groupEvent": {
        // A queue entry: acked once the listeners are done with it (they may record the change first). A group's
        // versions only grow, in order: one not above the last seen is a resend after a reconnect (at least once
        // on the wire), acked and not shown again.
        if (!this.groupVersions.admit(stanza.groupId, stanza.version)) {
          this.acks.note(stanza.seq, []);
          break;
        }
        const op = groupOpName(stanza.op) ?? `op${stanza.op}`;
        this.acks.note(stanza.seq, this.events.emit("groupEvent", { ...stanza, op }));
        break;
      }
      case "keysLow":
        this.events.emit("keysLow", { oneTimePreKeysLeft: stanza.oneTimePreKeysLeft, threshold: stanza.threshold });
        break;
      case "identityChange":
        // A queue entry: acked once the listeners are done with it (they may record the change first).
        this.acks.note(
          stanza.seq,
          this.events.emit("identityChange", {
            seq: stanza.seq,
            account: stanza.account,
            device: stanza.device,
            timeSeconds: stanza.timeSeconds,
          }),
        );
        break;
      default:
        this.unexpected(connection, stanza.kind);
    }
  }

  private unexpected(connection: Connection, kind: string): void {
    this.events.emit("error", new Error(`unexpected ${kind} from the server`));
    connection.reason = `unexpected ${kind} from the server`;
    connection.transport.close();
  }

  private async answerChallenge(connection: Connection, nonce: Uint8Array): Promise<void> {
    // The name this client dialed: the server refuses other names, so a relay cannot pass the signature on.
    const serverName = this.options.serverName;
    // On Noise, the handshake hash: the signature is then good on this connection only (PROTOCOL.md section 19).
    const binding = connection.transport.channelBinding ?? null;
    let stanza: Stanza;
    try {
      if (this.login !== null) {
        const { account, device, keyPair } = this.login;
        const signature = await sign(keyPair, loginMessage(nonce, serverName, account, device, binding));
        stanza = { kind: "login", account, device, signature, serverName };
      } else {
        this.newKeyPair ??= await generateKeyPair();
        const keyPair = this.newKeyPair;
        if (this.register !== null) {
          const { handle, invite } = this.register;
          const signature = await sign(keyPair, registerMessage(nonce, serverName, handle, binding));
          stanza = { kind: "register", invite, handle, publicKey: keyPair.publicKey, signature, serverName };
        } else {
          const code = this.link!.code;
          const signature = await sign(keyPair, linkMessage(nonce, serverName, code, binding));
          stanza = { kind: "link", code, publicKey: keyPair.publicKey, signature, serverName };
        }
      }
    } catch (error) {
      // The key cannot sign (wrong type, not extractable...): no attempt can succeed.
      if (this.connection !== connection) return;
      this.events.emit("error", error instanceof Error ? error : new Error(String(error)));
      connection.refusedForGood = true;
      connection.reason = `cannot sign with the device key: ${(error as Error).message}`;
      connection.transport.close();
      return;
    }
    if (this.connection !== connection || !connection.open) return;
    connection.transport.write(this.codec.encode(stanza));
  }

  private welcome(connection: Connection, stanza: WelcomeStanza): void {
    if (this.login === null) {
      this.login = Object.freeze({ account: stanza.account, device: stanza.device, keyPair: this.newKeyPair! });
    } else if (this.login.account !== stanza.account || this.login.device !== stanza.device) {
      this.unexpected(connection, "welcome for another device");
      return;
    }
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.phaseValue = "ready";
    this.acks.newSession();
    this.backoff.reset();
    this.clientIdNext = Math.max(this.clientIdNext, stanza.lastClientId + 1);
    this.pingTimer = setInterval(() => this.keepalive(connection), this.options.pingIntervalMs);
    this.pumpOutbox();
    this.requests.resume();
    this.receipts.resume();
    const event = {
      account: stanza.account,
      device: stanza.device,
      lastClientId: stanza.lastClientId,
      ...(stanza.oneTimePreKeysLeft === undefined ? {} : { oneTimePreKeysLeft: stanza.oneTimePreKeysLeft }),
    };
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    for (const waiter of waiters) waiter.resolve({ account: stanza.account, device: stanza.device });
    this.events.emit("connected", event);
  }

  private deliver(stanza: DeliverStanza): void {
    const admission = this.duplicates.admit(stanza.from, stanza.fromDevice, stanza.clientId);
    if (admission.duplicate) {
      // Acked once the first copy's listeners are done with it (they may still be storing it).
      this.acks.note(stanza.seq, admission.pending === null ? [] : [admission.pending]);
      return;
    }
    const waits = this.events.emit("message", {
      seq: stanza.seq,
      from: stanza.from,
      fromDevice: stanza.fromDevice,
      clientId: stanza.clientId,
      timeSeconds: stanza.timeSeconds,
      payload: stanza.payload,
    });
    if (waits.length > 0) {
      this.duplicates.track(stanza.from, stanza.fromDevice, stanza.clientId, Promise.allSettled(waits));
    }
    this.acks.note(stanza.seq, waits);
  }

  /** A group message: the same duplicate filter as a 1:1 message (client ids are per sender device). */
  private groupDeliver(stanza: GroupDeliverStanza): void {
    const admission = this.duplicates.admit(stanza.from, stanza.fromDevice, stanza.clientId);
    if (admission.duplicate) {
      this.acks.note(stanza.seq, admission.pending === null ? [] : [admission.pending]);
      return;
    }
    const waits = this.events.emit("groupMessage", {
      seq: stanza.seq,
      groupId: stanza.groupId,
      from: stanza.from,
      fromDevice: stanza.fromDevice,
      clientId: stanza.clientId,
      timeSeconds: stanza.timeSeconds,
      payload: stanza.payload,
      part: stanza.part,
    });
    if (waits.length > 0) {
      this.duplicates.track(stanza.from, stanza.fromDevice, stanza.clientId, Promise.allSettled(waits));
    }
    this.acks.note(stanza.seq, waits);
  }

  private deliverReceipt(stanza: DeliverReceiptStanza): void {
    const waits = this.events.emit("receipt", {
      seq: stanza.seq,
      type: stanza.type === ReceiptType.read ? "read" : "delivered",
      from: stanza.from,
      fromDevice: stanza.fromDevice,
      senderDevice: stanza.senderDevice,
      clientIds: stanza.clientIds,
      timeSeconds: stanza.timeSeconds,
    });
    this.acks.note(stanza.seq, waits);
  }

  private serverAck(clientId: number): void {
    const entry = this.outbox.byClientId(clientId);
    if (entry !== undefined) {
      this.outbox.remove(entry);
      entry.resolve({ clientId });
      this.pumpOutbox();
      return;
    }
    // A removeDevice answer; anything else is a repeated ack of a send already settled.
    this.requests.answer("serverAck", clientId, { kind: "serverAck", clientId });
  }

  private error(connection: Connection, stanza: ErrorStanza): void {
    const action = errorAction(stanza.code);
    if (stanza.clientId !== null) {
      const refusal = new ClientError(stanza.code, stanza.message, {
        clientId: stanza.clientId,
        ...(stanza.missingDevices === undefined ? {} : { missingDevices: stanza.missingDevices }),
        ...(stanza.extraDevices === undefined ? {} : { extraDevices: stanza.extraDevices }),
        ...(stanza.missingMemberDevices === undefined ? {} : { missingMemberDevices: stanza.missingMemberDevices }),
        ...(stanza.extraMemberDevices === undefined ? {} : { extraMemberDevices: stanza.extraMemberDevices }),
      });
      const entry = this.outbox.byClientId(stanza.clientId);
      if (entry !== undefined) {
        this.outbox.remove(entry);
        entry.reject(refusal);
        this.pumpOutbox();
        return;
      }
      if (this.requests.refuse(stanza.clientId, refusal)) return;
      if (action === "rejected" || action === "retry") {
        this.events.emit("error", refusal);
        return;
      }
    }
    const refusal = new ClientError(stanza.code, stanza.message);
    if (action === "reconnect" || action === "stop") {
      // The server closes the session after this frame.
      connection.code = stanza.code;
      connection.reason = refusal.message;
      connection.refusal = refusal;
      return;
    }
    if (this.phaseValue === "authenticating") {
      // handleTaken, inviteInvalid, linkCodeInvalid, tooManyDevices...: the same attempt would fail again.
      connection.code = stanza.code;
      connection.reason = refusal.message;
      connection.refusal = refusal;
      connection.refusedForGood = action === "rejected";
      connection.transport.close();
      return;
    }
    this.events.emit("error", refusal);
  }

  private goaway(connection: Connection, stanza: GoawayStanza): void {
    connection.code = stanza.code;
    connection.retryAfterMs = stanza.retryAfterMs;
    connection.refusal = new ClientError(stanza.code, stanza.message);
    connection.reason = `goaway: ${connection.refusal.message}`;
  }

  private keepalive(connection: Connection): void {
    if (this.connection !== connection || this.phaseValue !== "ready") return;
    const silentMs = Date.now() - connection.lastInboundAtMs;
    if (silentMs > 2 * this.options.pingIntervalMs) {
      connection.reason = `nothing heard from the server for ${silentMs} ms`;
      connection.transport.close();
      return;
    }
    this.writeIfReady({ kind: "ping" });
  }

  // ---- outbound ------------------------------------------------------------------------------------------------

  private writeIfReady(stanza: Stanza): boolean {
    const connection = this.connection;
    if (connection === null || this.phaseValue !== "ready") return false;
    return connection.transport.write(this.codec.encode(stanza));
  }

  private takeClientId(): number {
    if (this.clientIdNext > uint32Max) throw new Error("client ids of this device are used up (2^32 - 1)");
    return this.clientIdNext++;
  }

  /**
   * Takes the next client id for a send the app wants to be able to repeat after its own restart: store the id with
   * the message (and `nextClientId` as the next run's `firstClientId`), then `send(to, payload, { clientId })`. If
   * the app dies before the server-ack, a new client sends it again with the same id, and the server recognises it
   * (stored once); a new id would make it a second message (PROTOCOL.md section 11).
   */
  reserveClientId(): number {
    return this.takeClientId();
  }

  /** Writes outbox entries in order while the in-flight window has room. */
  private pumpOutbox(): void {
    const connection = this.connection;
    if (connection === null || this.phaseValue !== "ready") return;
    for (const entry of this.outbox.writable()) {
      if (entry.frame === null) {
        // An id the app reserved (a send it may repeat after a restart) is kept; others are taken now.
        const clientId = entry.clientId !== 0 ? entry.clientId : this.takeClientId();
        const stanza = entry.stanzaFor?.(clientId) ?? { kind: "send", clientId, to: entry.to, payload: entry.payload };
        this.outbox.assigned(entry, clientId, this.codec.encode(stanza));
      }
      const frame = entry.frame!;
      if (frame.length > connection.frameBytesMax) {
        this.outbox.remove(entry);
        entry.reject(
          new ClientError(ErrorCode.payloadTooLarge, `a ${frame.length}-byte frame passes the server's limit`, {
            clientId: entry.clientId,
          }),
        );
        continue;
      }
      this.outbox.markWritten(entry);
      if (!connection.transport.write(frame)) return;
    }
  }

  /**
   * Sends `payload` to every device of account `to` (for our own account: to our other devices), or one payload
   * per device (exactly the recipient's devices, else ClientError deviceMismatch with missingDevices/extraDevices).
   * Resolves once the server has stored it. Do not modify the payload bytes until the promise settles. With
   * `clientId` (from reserveClientId, now or in an earlier run), the message is sent under that id.
   */
  send(to: number, payload: Uint8Array | readonly DevicePayload[], options: SendOptions = {}): Promise<SendResult> {
    if (this.phaseValue === "closed") return Promise.reject(new ClientClosedError("the client is closed"));
    const { limits } = this.options;
    const invalid = (message: string) => Promise.reject(new ClientError(ErrorCode.badRequest, message));
    if (!isId(to)) return invalid("`to` must be an account id (1 .. 2^32-1)");
    const presetId = options.clientId ?? 0;
    if (options.clientId !== undefined) {
      if (!isId(options.clientId)) return invalid("clientId must be an id (1 .. 2^32-1)");
      if (this.outbox.hasClientId(options.clientId))
        return invalid(`client id ${options.clientId} is already in the outbox`);
      // Never hand the same id to another send or request later.
      if (options.clientId >= this.clientIdNext) this.clientIdNext = options.clientId + 1;
    }
    let bytes = 0;
    if (payload instanceof Uint8Array) {
      if (payload.length > limits.payloadBytesMax) return this.tooLarge(payload.length);
      bytes = payload.length;
    } else {
      if (payload.length === 0 || payload.length > limits.devicesPerAccountMax) {
        return invalid(`per-device payloads: 1..${limits.devicesPerAccountMax} devices`);
      }
      for (const entry of payload) {
        if (!isId(entry.device)) return invalid("per-device payloads: device must be an id");
        if (!(entry.payload instanceof Uint8Array)) return invalid("per-device payloads: payload must be bytes");
        if (entry.payload.length > limits.payloadBytesMax) return this.tooLarge(entry.payload.length);
        bytes += entry.payload.length;
      }
    }
    // The largest client id gives the largest frame: if that fits, every real one does.
    try {
      this.codec.encode({ kind: "send", clientId: uint32Max, to, payload });
    } catch {
      return this.tooLarge(bytes);
    }
    const refusal = this.outbox.refusal(bytes);
    if (refusal !== null) return Promise.reject(new OutboxFullError(refusal));
    return new Promise<SendResult>((resolve, reject) => {
      this.outbox.add({ to, payload, bytes, clientId: presetId, frame: null, inFlight: false, resolve, reject });
      this.pumpOutbox();
    });
  }

  private tooLarge(bytes: number): Promise<never> {
    return Promise.reject(
      new ClientError(
        ErrorCode.payloadTooLarge,
        `${bytes} payload bytes do not fit in one frame (checked by the client)`,
      ),
    );
  }

  /**
   * Tells the sender of messages that we read them (or received them, type "delivered", which the SDK's acks
   * already cause). Best effort, never answered: written at the end of the turn, after the pending ack, merged with
   * other receipts for the same sender device; queued while disconnected (bounded by receiptsPendingMax). For a
   * group message, pass its `groupId`: the server gathers the members' read receipts of one message into one
   * `groupReceipt` for the sender (PROTOCOL.md section 18, Receipts).
   */
  receipt(
    to: number,
    toDevice: number,
    clientIds: readonly number[],
    type: ReceiptTypeName = "read",
    groupId: number | null = null,
  ): void {
    if (this.phaseValue === "closed") return;
    if (!isId(to) || !isId(toDevice) || !clientIds.every(isId) || (groupId !== null && !isId(groupId))) {
      throw new ClientError(ErrorCode.badRequest, "receipt: to, toDevice, client ids and the group id must be ids");
    }
    this.receipts.add(type === "read" ? ReceiptType.read : ReceiptType.delivered, to, toDevice, clientIds, groupId);
  }

  // ---- requests ------------------------------------------------------------------------------------------------

  /** The account with `handle` and its devices (account null when there is none). */
  async lookup(handle: string): Promise<LookupResult> {
    this.checkString("handle", handle, this.options.limits.handleBytesMax);
    const answer = await this.request("lookupResult", (clientId) => ({ kind: "lookup", clientId, handle }));
    if (answer.kind !== "lookupResult") throw new Error("bug: wrong answer kind");
    if (answer.account !== null) this.handleCache.remember(answer.account, handle);
    return { account: answer.account, devices: answer.devices };
  }

  /**
   * Handles of accounts by id, to show names instead of numbers (a message names its sender only by account id).
   * From a bounded cache (filled by earlier answers and by lookup()), else asked of the server (reverseLookup, in
   * batches of reverseLookupAccountsMax; ids already being asked are not asked twice). null where the server does
   * not tell this device: it names only this account and the senders of messages delivered to this device
   * (PROTOCOL.md section 8, reverseLookup). Each id asked costs one of the session's rate tokens; rejects like any
   * request (rateLimited, RequestTimeoutError, ClientClosedError).
   */
  handles(accounts: readonly number[]): Promise<Map<number, string | null>> {
    if (!accounts.every(isId)) {
      return Promise.reject(new ClientError(ErrorCode.badRequest, "handles: accounts must be ids"));
    }
    return this.handleCache.resolve(accounts);
  }

  /** The handle of `account` if the cache knows it (no request): for drawing a name before handles() answers. */
  cachedHandle(account: number): string | undefined {
    return this.handleCache.peek(account);
  }

  /** A one-time code a new device presents (option `link`) to join this account. */
  async createLinkCode(): Promise<LinkCode> {
    const answer = await this.request("linkCode", (clientId) => ({ kind: "linkCreate", clientId }));
    if (answer.kind !== "linkCode") throw new Error("bug: wrong answer kind");
    return { code: answer.code, expiresAtSeconds: answer.expiresAtSeconds };
  }

  /** The devices of this account. */
  async devices(): Promise<readonly DeviceInfo[]> {
    const answer = await this.request("deviceList", (clientId) => ({ kind: "devices", clientId }));
    if (answer.kind !== "deviceList") throw new Error("bug: wrong answer kind");
    return answer.devices;
  }

  /**
   * Removes a device of this account (its session is closed with deviceRemoved). Retried after a lost connection,
   * a removal that went through the first time rejects with unknownDevice.
   */
  async removeDevice(device: number): Promise<void> {
    if (!isId(device)) throw new ClientError(ErrorCode.badRequest, "device must be an id");
    await this.request("serverAck", (clientId) => ({ kind: "deviceRemove", clientId, device }));
  }

  /**
   * Publishes this device's public keys in the server's key directory (PROTOCOL.md section 16); resolves with the
   * one-time prekeys the server then holds. The E2E layer (e2e-session.ts) builds the keys.
   */
  async uploadKeys(keys: Omit<KeysUploadStanza, "kind" | "clientId">): Promise<number> {
    const answer = await this.request("keysUploaded", (clientId) => ({ kind: "keysUpload", clientId, ...keys }));
    if (answer.kind !== "keysUploaded") throw new Error("bug: wrong answer kind");
    return answer.oneTimePreKeysLeft;
  }

  /** The key bundles of every device of `account` that published keys (each takes one of its one-time prekeys). */
  async fetchKeyBundles(account: number): Promise<readonly KeyBundle[]> {
    if (!isId(account)) throw new ClientError(ErrorCode.badRequest, "account must be an id");
    const answer = await this.request("keyBundles", (clientId) => ({ kind: "keysFetch", clientId, account }));
    if (answer.kind !== "keyBundles") throw new Error("bug: wrong answer kind");
    return answer.bundles;
  }
  // ---- groups (PROTOCOL.md section 18) --------------------------------------------------------------------------

  /** Creates a group with this account as its first admin and `members` (account ids) in it. */
  async createGroup(name: Uint8Array, members: readonly number[]): Promise<GroupInfo> {
    if (!members.every(isId)) throw new ClientError(ErrorCode.badRequest, "members must be account ids");
    return this.groupRequest((clientId) => ({ kind: "groupCreate", clientId, name, members }));
  }

  /**
   * A membership change (add, remove, promote, demote: admins only; leave; rename) of a group this account is in;
   * resolves with the group after it. Every member device also gets it as a queued `groupEvent`.
   */
  async updateGroup(
    groupId: number,
    op: "add" | "remove" | "promote" | "demote" | "leave" | "rename",
    accounts: readonly number[] = [],
    name: Uint8Array | null = null,
  ): Promise<GroupInfo> {
    if (!isId(groupId) || !accounts.every(isId)) throw new ClientError(ErrorCode.badRequest, "ids must be ids");
    return this.groupRequest((clientId) => ({
      kind: "groupUpdate",
      clientId,
      groupId,
      op: GroupOp[op],
      accounts,
      name,
    }));
  }

  /** The members of a group this account is in, with their devices. */
  fetchGroup(groupId: number): Promise<GroupInfo> {
    if (!isId(groupId)) return Promise.reject(new ClientError(ErrorCode.badRequest, "groupId must be an id"));
    return this.groupRequest((clientId) => ({ kind: "groupFetch", clientId, groupId }));
  }

  private async groupRequest(build: (clientId: number) => Stanza): Promise<GroupInfo> {
    const answer = await this.request("groupInfo", build);
    if (answer.kind !== "groupInfo") throw new Error("bug: wrong answer kind");
    const { groupId, version, name, members, admins, devices } = answer;
    return { groupId, version, name, members, admins, devices };
  }

  /**
   * Sends one shared payload to every member device of the group but this one (WhatsApp's sender-key shape), with
   * optional per-device parts. Resolves once every partition holding members stored it (the server-ack); rejects
   * with ClientError deviceMismatch (missingMemberDevices, extraMemberDevices) when `devices` is stale. Resent
   * after a lost connection like a 1:1 send, under the same client id (stored once).
   */
  async sendToGroup(
    groupId: number,
    payload: Uint8Array,
    options: GroupSendOptions & { view?: GroupInfo } = {},
  ): Promise<SendResult> {
    if (this.phaseValue === "closed") throw new ClientClosedError("the client is closed");
    if (!isId(groupId)) throw new ClientError(ErrorCode.badRequest, "groupId must be an id");
    const login = this.login;
    const devices =
      options.devices ??
      (options.view === undefined || login === null
        ? null
        : recipientDevices(options.view, login.account, login.device));
    if (devices === null) throw new ClientError(ErrorCode.badRequest, "sendToGroup needs `devices` or `view`");
    const devicesHash = options.listDevices === true ? null : await groupDevicesHash(devices);
    const parts = options.parts ?? [];
    if (payload.length > this.options.limits.payloadBytesMax) return this.tooLarge(payload.length);
    const presetId = options.clientId ?? 0;
    if (options.clientId !== undefined && options.clientId >= this.clientIdNext)
      this.clientIdNext = options.clientId + 1;
    const bytes = payload.length + parts.reduce((sum, part) => sum + part.part.length, 0);
    const refusal = this.outbox.refusal(bytes);
    if (refusal !== null) throw new OutboxFullError(refusal);
    const stanzaFor = (clientId: number): Stanza => ({
      kind: "groupSend",
      clientId,
      groupId,
      devices: devicesHash === null ? devices : null,
      devicesHash,
      payload,
      parts,
    });
    return new Promise<SendResult>((resolve, reject) => {
      this.outbox.add({
        to: groupId,
        payload,
        bytes,
        clientId: presetId,
        frame: null,
        inFlight: false,
        stanzaFor,
        resolve,
        reject,
      });
      this.pumpOutbox();
    });
  }

  // ---- media (PROTOCOL.md "Media") ----------------------------------------------------------------------------

  /**
   * Encrypts `data` with a fresh key, uploads the ciphertext to the media listener (resuming after cuts), and
   * returns the reference to send, inside an end-to-end-encrypted message, to `recipients` (account ids whose
   * devices may download it).
   */
  uploadMedia(
    data: Uint8Array | ReadableStream<Uint8Array>,
    recipients: readonly number[],
    options?: MediaTransferOptions,
  ): Promise<MediaRef> {
    return uploadMedia(this.mediaSession(), data, recipients, options);
  }

  /** Downloads the file of a reference received in a message, checks its hash and decrypts it. */
  downloadMedia(ref: MediaRef, options?: MediaTransferOptions): Promise<Uint8Array> {
    return downloadMedia(this.mediaSession(), ref, options);
  }

  /** The session side of media transfers (grants over this session; the host it dialed). */
  mediaSession(): MediaSession {
    return {
      uploadGrant: async (hash, size, recipients) => {
        const answer = await this.request("mediaUploadGrant", (clientId) => ({
          kind: "mediaUpload",
          clientId,
          hash,
          size,
          recipients: [...recipients],
        }));
        if (answer.kind !== "mediaUploadGrant") throw new Error("bug: wrong answer kind");
        return answer;
      },
      downloadGrant: async (hash) => {
        const answer = await this.request("mediaDownloadGrant", (clientId) => ({
          kind: "mediaDownload",
          clientId,
          hash,
        }));
        if (answer.kind !== "mediaDownloadGrant") throw new Error("bug: wrong answer kind");
        return answer;
      },
      mediaBase: (port) => {
        const host = this.options.serverName;
        return `${this.mediaScheme}//${host.includes(":") ? `[${host}]` : host}:${port}`;
      },
    };
  }

  private request(answer: RequestAnswer, build: (clientId: number) => Stanza): Promise<Stanza> {
    if (this.phaseValue === "closed") return Promise.reject(new ClientClosedError("the client is closed"));
    if (this.requests.full) {
      return Promise.reject(new ClientError(ErrorCode.rateLimited, `${this.requests.size} requests are pending`));
    }
    return this.requests.add(answer, build);
  }

  private checkString(name: string, value: string, bytesMax: number): void {
    if (typeof value !== "string" || value.length === 0 || utf8.encode(value).length > bytesMax) {
      throw new ClientError(
        name === "handle" ? ErrorCode.handleInvalid : ErrorCode.badRequest,
        `${name} must be 1..${bytesMax} UTF-8 bytes (checked by the client)`,
      );
    }
  }
}

function isId(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= uint32Max;
}

export type { Limits, SendResult };

function noiseOptions(noise: NoiseOptions | true): NoiseOptions {
  return noise === true ? {} : noise;
}
