// The life of one connection, independent of its transport: open, bytes in, writable again, closed. It decodes the
// preamble and frames, applies the rate limit, runs deadlines on the timer wheel, and dispatches stanzas to the
// handlers one at a time and in order. A peer's bad input ends in an error frame with a code and a closed session,
// never in an exception that reaches the event loop.

import {
  appendInbound,
  consumeInbound,
  decodePreamble,
  ErrorCode,
  errorCodeName,
  ProtocolError,
  preambleBytes,
  type Stanza,
  StanzaKind,
} from "../protocol/index.ts";
import type { AccountRequests } from "./account-requests.ts";
import type { Auth } from "./auth.ts";
import type { ServerContext } from "./context.ts";
import type { Delivery } from "./delivery.ts";
import type { KeyDirectory } from "./keys-directory.ts";
import { floodsAhead, frameCost, refilledTokens } from "./rate-budget.ts";
import { type Session, SessionState, sessionAt } from "./session.ts";
import type { SessionSlots, TransportKindValue } from "./session-slots.ts";
import type { SessionTable } from "./session-table.ts";
import type { TimerWheel } from "./timer-wheel.ts";

/**
 * How many times inboundBytesMax a session may hold while its socket is paused for the next turn: the chunks Bun
 * had read before the pause (each at most 64 KiB) still arrive.
 */
const pausedInboundFactor = 4;

/**
 * The transports call it with slot numbers (their socket's `data`): a handle (session.ts) is made per event, so an
 * idle session is no object.
 */
export class ConnectionHandler {
  private readonly slots: SessionSlots;
  private readonly wheel: TimerWheel;

  constructor(
    private readonly context: ServerContext,
    private readonly delivery: Delivery,
    private readonly auth: Auth,
    private readonly requests: AccountRequests,
    private readonly table: SessionTable,
    private readonly keys: KeyDirectory,
  ) {
    this.slots = table.slots;
    this.wheel = table.wheel;
    // The newest handler takes over the deadlines and the writable callback of every session.
    table.wheel.onExpire = (slot) => this.deadline(sessionAt(this.slots, slot));
    context.io.onWritable = (session) => {
      if (session.deviceState !== null) this.delivery.pump(session.deviceState);
      else context.routing?.writable(session);
    };
    // A session whose device another worker owns: that owner pauses its pushes (routing-mesh.ts).
    context.io.onBlocked = (session) => context.routing?.blocked(session);
  }

  get count(): number {
    return this.table.count;
  }

  /** Every open session (for shutdown and metrics). */
  all(): Iterable<Session> {
    return this.table.sessions();
  }

  private get drainRetryAfterMs(): number {
    return this.table.retryAfterMs(this.context.limits.goawayRetryAfterMsMax);
  }

  /**
   * A new connection: takes a slot for it and returns the slot number, which the transport keeps as its socket's
   * `data` and passes to every later call. `socket` is the transport's own socket object (see TransportKind).
   */
  open(socket: unknown, transport: TransportKindValue): number {
    const { limits, metrics, now } = this.context;
    const slot = this.slots.allocate(socket, transport, now(), limits.rateBurstStanzas);
    this.table.count++;
    const session = sessionAt(this.slots, slot);
    metrics.connectionsAccepted.inc();
    this.context.log.peer("debug", "connected", {
      session: session.id,
      // Read only if the line is written: Bun keeps the address string on the socket once asked, a string per idle
      // socket that the design does not allow (session-density.test.ts).
      get peer() {
        return session.socket.remoteAddress;
      },
    });
    if (this.table.draining) {
      this.context.io.goaway(session, ErrorCode.shuttingDown, this.drainRetryAfterMs, "server shutting down");
      return slot;
    }
    if (this.table.count > limits.sessionsMax) {
      this.context.log.peer("warn", "server_full", { session: session.id, sessionsMax: limits.sessionsMax });
      this.context.io.goaway(session, ErrorCode.serverFull, limits.goawayRetryAfterMsMax, "server full");
      return slot;
    }
    const loginDueMs = now() + limits.loginTimeoutMs;
    session.loginDueMs = loginDueMs;
    this.wheel.schedule(slot, loginDueMs);
    return slot;
  }

  /** Whether the session in `slot` is open (a transport asks before it hands on bytes it decrypted). */
  isOpen(slot: number): boolean {
    return this.slots.ids[slot] !== 0 && this.slots.state[slot] !== SessionState.closed;
  }

  /** The transport's socket object kept in `slot` (what was given to open()). */
  socketOf(slot: number): unknown {
    return this.slots.sockets[slot];
  }

  /** Bytes arrived for the session in `slot`. */
  data(slot: number, chunk: Uint8Array): void {
    if (this.slots.state[slot] === SessionState.closed) return;
    const session = sessionAt(this.slots, slot);
    const { limits, metrics } = this.context;
    metrics.bytesIn.inc(undefined, chunk.length);
    // Bytes alone are not life (a peer dripping a partial frame must not stay forever): whole frames are, in
    // process(), where a partial frame left over starts its completion deadline.
    appendInbound(session, chunk, limits.inboundBytesMax);
    // Bytes waiting behind a slow handler, or one frame's worth of a partial frame: more than that is a flood.
    if (session.busy) {
      // A session waiting for its next turn has its socket paused: only what Bun had read already still arrives
      // (a chunk or two), so it may hold that much more than a peer running ahead of a slow handler.
      const inboundMax = session.pausedForTurn ? limits.inboundBytesMax * pausedInboundFactor : limits.inboundBytesMax;
      if (session.inbound!.length > inboundMax) {
        this.context.io.close(session, ErrorCode.flood, "sending faster than the server reads");
      }
      return;
    }
    void this.process(session);
  }

  /** Decodes and handles every complete frame in `inbound`, awaiting asynchronous handlers in order. */
  private async process(session: Session): Promise<void> {
    const { codec, io } = this.context;
    session.busy = true;
    const startedAtMs = performance.now();
    let yielded = false;
    let chargedAhead = false;
    try {
      while (session.inbound !== null && session.state !== SessionState.closed) {
        // Fairness: past its share of this turn, the session's socket pauses and the rest waits for the next turn
        // (a flooder's burst of costly frames would otherwise stall every other session for its whole length).
        if (performance.now() - startedAtMs >= this.turnWorkMs(session)) {
          yielded = true;
          break;
        }
        const source = session.inbound;
        if (session.state === SessionState.preamble) {
          const preamble = decodePreamble(source);
          if (preamble === "more") break;
          if (preamble instanceof ProtocolError) return this.protocolError(session, preamble);
          consumeInbound(session, preambleBytes);
          session.dictionaryVersion = preamble.dictionaryVersion;
          this.alive(session);
          if (this.table.draining) {
            io.goaway(session, ErrorCode.shuttingDown, this.drainRetryAfterMs, "server shutting down");
            return;
          }
          this.auth.challenge(session);
          continue;
        }
        // Once per pass, the frames already received are charged together: a read that proves its peer a flooder
        // closes it before any of its frames is handled (rate-budget.ts says why).
        if (!chargedAhead) {
          chargedAhead = true;
          if (this.chargeAhead(session, source)) return;
        }
        const result = codec.decode(source, 0);
        if (result.status === "more") break;
        if (result.status === "error") return this.protocolError(session, result.error);
        consumeInbound(session, result.consumed);
        this.alive(session);
        this.context.metrics.framesIn.incLabel(result.stanza.kind);
        this.context.metrics.frameBytesIn.incLabel(result.stanza.kind, result.consumed);
        if (!this.admit(session, result.stanza)) continue;
        const handled = this.dispatch(session, result.stanza);
        if (handled !== undefined) await handled;
      }
      // What is left is the start of a frame: its completion deadline runs from now (frames before it were whole).
      if (!yielded && session.inbound !== null && session.partialSinceMs === 0) this.startPartial(session);
      // Keep a partial frame in a buffer of its own size, not in the (possibly large) chunk it arrived in.
      const rest = session.inbound;
      if (rest !== null && !session.inboundOwned && (yielded || rest.byteLength * 2 < rest.buffer.byteLength)) {
        session.inbound = rest.slice();
      }
    } catch (error) {
      // A bug in a handler: this session ends, the process and every other session go on.
      // The slot's facts (session, account, device, peer): a log line names a slot, it has no object to print.
      this.context.log.peer("error", "handler_failed", {
        ...session.describe(),
        error: String(error),
        stack: (error as Error).stack,
      });
      io.close(session, ErrorCode.internalError, "internal error");
    } finally {
      if (!yielded || session.state === SessionState.closed) session.busy = false;
    }
    if (yielded && session.state !== SessionState.closed) {
      this.context.metrics.turnsYielded.inc();
      session.pausedForTurn = true;
      session.socket.pause();
      setImmediate(() => {
        session.pausedForTurn = false;
        if (session.state === SessionState.closed) {
          session.busy = false;
          return;
        }
        // resume() may deliver data at once: while busy, data() only appends it, so one process() runs at a time.
        session.socket.resume();
        session.busy = false;
        void this.process(session);
      });
      return;
    }
    // Between handlers an idle device gives its delivery state back (the next message loads it again).
    this.delivery.releaseIfIdle(session);
  }

  /** This session's share of one event-loop turn: thinner while it spends the second half of its rate burst. */
  private turnWorkMs(session: Session): number {
    const { limits } = this.context;
    if (session.rateTokens * 2 >= limits.rateBurstStanzas) return limits.sessionTurnWorkMsMax;
    return (limits.sessionTurnWorkMsMax * limits.sessionTurnSharePercentBursting) / 100;
  }

  /** A whole frame arrived: the peer is alive, and nothing partial is pending until more bytes come. */
  private alive(session: Session): void {
    session.lastInboundAtMs = this.context.now();
    session.pingOutstanding = false;
    session.partialSinceMs = 0;
  }

  /** Bytes of a new frame arrived: it must be whole within frameCompletionMs (see deadline()). */
  private startPartial(session: Session): void {
    const nowMs = this.context.now();
    session.partialSinceMs = nowMs;
    const dueMs = nowMs + this.context.limits.frameCompletionMs;
    if (!this.wheel.isScheduled(session.slot) || dueMs < this.wheel.dueMs(session.slot)) {
      this.wheel.schedule(session.slot, dueMs);
    }
  }

  /** Closes a session for a transport-level violation (for example a text message on the WebSocket path). */
  reject(slot: number, error: ProtocolError): void {
    this.protocolError(sessionAt(this.slots, slot), error);
  }

  private protocolError(session: Session, error: ProtocolError): void {
    this.context.log.peer("info", "protocol_error", {
      session: session.id,
      code: error.code,
      codeName: errorCodeName(error.code),
      reason: error.message,
      peer: session.socket.remoteAddress,
    });
    this.context.io.close(session, error.code, error.message);
  }

  /**
   * The token bucket: true if the stanza may be handled. Every frame kind counts (a flood of pongs or acks is a
   * flood like any other); acks and pongs cost a fraction of a token, a ping (it is answered) a whole one. Over the budget, a request gets
   * rateLimited; a control frame is dropped without an answer (a later cumulative ack covers a dropped one). A
   * peer that stays over the budget for rateViolationsMax frames in a row is closed as a flood.
   */
  private admit(session: Session, stanza: Stanza): boolean {
    const { limits, now, io } = this.context;
    const control = stanza.kind === "ack" || stanza.kind === "pong" || stanza.kind === "ping";
    const cost = frameCost(StanzaKind[stanza.kind], limits);
    const nowMs = now();
    session.rateTokens = refilledTokens(session.rateTokens, session.rateRefilledAtMs, nowMs, limits);
    session.rateRefilledAtMs = nowMs;
    if (session.rateTokens >= cost) {
      session.rateTokens -= cost;
      session.rateViolations = 0;
      return true;
    }
    session.rateViolations++;
    if (session.rateViolations > limits.rateViolationsMax) {
      this.context.metrics.errors.incLabel("flood");
      this.closeFor(session, ErrorCode.flood, "rate limit exceeded repeatedly");
      return false;
    }
    if (control) return false;
    const clientId = "clientId" in stanza ? stanza.clientId : null;
    this.context.metrics.errors.incLabel("rateLimited");
    io.send(session, { kind: "error", code: ErrorCode.rateLimited, clientId, message: "rate limited; slow down" });
    return false;
  }

  /** The look-ahead charge of `source` (rate-budget.ts); true if it closed the session as a flood. */
  private chargeAhead(session: Session, source: Uint8Array): boolean {
    const { limits, now } = this.context;
    const tokens = refilledTokens(session.rateTokens, session.rateRefilledAtMs, now(), limits);
    if (!floodsAhead(source, tokens, session.rateViolations, limits)) return false;
    this.context.metrics.errors.incLabel("flood");
    this.closeFor(session, ErrorCode.flood, "frames received past the rate limit");
    return true;
  }

  private dispatch(session: Session, stanza: Stanza): Promise<void> | void {
    const io = () => this.context.io;
    if (stanza.kind === "ping") return void this.context.io.send(session, { kind: "pong" });
    if (stanza.kind === "pong") return;
    if (session.state === SessionState.authenticating) {
      switch (stanza.kind) {
        case "login":
          return this.auth.login(session, stanza);
        case "register":
          return this.auth.register(session, stanza);
        case "link":
          return this.auth.link(session, stanza);
      }
    } else if (session.state === SessionState.ready) {
      // With several workers, a send goes to the owner of its recipient, an ack or a receipt to the owner of the
      // session's own device (routing.ts); everything else is the directory's, which every worker reads.
      const routing = this.context.routing;
      switch (stanza.kind) {
        case "send":
          if (routing !== null && !routing.owns(stanza.to)) return routing.forward(session, stanza.to, stanza);
          return this.delivery.send(session, stanza);
        case "ack":
          if (routing !== null && !routing.owns(session.account))
            return routing.forward(session, session.account, stanza);
          return this.delivery.ack(session, stanza.seq);
        case "receipt":
          if (routing !== null && !routing.owns(session.account))
            return routing.forward(session, session.account, stanza);
          return this.delivery.receipt(session, stanza);
        case "lookup":
          return this.requests.lookup(session, stanza);
        case "reverseLookup":
          return this.requests.reverseLookup(session, stanza);
        case "linkCreate":
          return this.requests.linkCreate(session, stanza);
        case "devices":
          return this.requests.devices(session, stanza);
        case "deviceRemove":
          return this.requests.deviceRemove(session, stanza);
        // The key directory: each request runs on the owner of the account whose keys it touches.
        case "keysUpload":
          if (routing !== null && !routing.owns(session.account))
            return routing.forward(session, session.account, stanza);
          return this.keys.upload(session, stanza);
        case "keysFetch":
          if (routing !== null && !routing.owns(stanza.account))
            return routing.forward(session, stanza.account, stanza);
          return this.keys.fetch(session, stanza);
        // Groups (dictionary version 4): on the owner of the group (group-requests.ts).
        case "groupCreate":
        case "groupUpdate":
        case "groupFetch":
        case "groupSend":
          if (this.context.groups !== null) return this.context.groups.handle(session, stanza);
          break;
        case "mediaUpload":
        case "mediaDownload": {
          // Dictionary version 3: only a client that announced it knows these kinds, so only it gets their answers.
          const media = this.context.media;
          if (media === null) {
            const message = "this server has no media listener";
            return void io().send(session, {
              kind: "error",
              code: ErrorCode.mediaOff,
              clientId: stanza.clientId,
              message,
            });
          }
          return stanza.kind === "mediaUpload" ? media.upload(session, stanza) : media.download(session, stanza);
        }
      }
    }
    this.closeFor(session, ErrorCode.unexpectedStanza, `${stanza.kind} is not expected now`);
  }

  /**
   * A session's deadline on the wheel came: login timeout, keepalive ping, or idle close. The login deadline of a
   * session that has logged in since simply becomes its first keepalive deadline (loginTimeoutMs <= idleTimeoutMs).
   */
  private deadline(session: Session): void {
    if (session.state === SessionState.closed) return;
    const { limits, now, io } = this.context;
    const nowMs = now();
    const partialDueMs = session.partialSinceMs === 0 ? Infinity : session.partialSinceMs + limits.frameCompletionMs;
    if (nowMs >= partialDueMs) {
      this.context.metrics.errors.incLabel("frameTimeout");
      this.closeFor(session, ErrorCode.frameTimeout, `frame not complete within ${limits.frameCompletionMs} ms`);
      return;
    }
    if (session.state !== SessionState.ready) {
      // The wheel may have fired early for a partial frame that has since completed.
      if (session.loginDueMs > nowMs) {
        this.wheel.schedule(session.slot, Math.min(session.loginDueMs, partialDueMs));
        return;
      }
      this.closeFor(session, ErrorCode.loginTimeout, `no login within ${limits.loginTimeoutMs} ms`);
      return;
    }
    const silentMs = nowMs - session.lastInboundAtMs;
    if (silentMs < limits.idleTimeoutMs) {
      this.wheel.schedule(session.slot, Math.min(session.lastInboundAtMs + limits.idleTimeoutMs, partialDueMs));
      return;
    }
    if (session.pingOutstanding) {
      this.closeFor(session, ErrorCode.idleTimeout, "no answer to keepalive");
      return;
    }
    session.pingOutstanding = true;
    io.send(session, { kind: "ping" });
    this.wheel.schedule(session.slot, Math.min(nowMs + limits.idleTimeoutMs, partialDueMs));
  }

  /** Closes a session for a reason of the server's own (a deadline, a flood), with a debug line naming the code. */
  private closeFor(session: Session, code: number, message: string): void {
    this.context.log.peer("debug", "closing", {
      session: session.id,
      code,
      codeName: errorCodeName(code),
      reason: message,
    });
    this.context.io.close(session, code, message);
  }

  writable(slot: number): void {
    this.context.io.drained(sessionAt(this.slots, slot));
  }

  /** The socket of `slot` closed (the transport calls this once, then forgets the slot): the slot is freed. */
  closed(slot: number): void {
    if (this.slots.ids[slot] === 0) return;
    const session = sessionAt(this.slots, slot);
    this.table.count--;
    this.context.metrics.connectionsClosed.inc();
    // A session the server ended is already marked closed (its reason was logged where it was ended).
    this.context.log.peer("debug", "closed", {
      session: session.id,
      by: session.state === SessionState.closed ? "server" : "peer",
      account: session.account,
      device: session.device,
    });
    this.wheel.cancel(slot);
    session.state = SessionState.closed;
    session.inbound = null;
    session.inboundOwned = false;
    session.outbound = null;
    session.nonce = null;
    if (session.account !== 0) {
      if (session.deviceState !== null || session.stateReleased)
        this.context.lastSeen.note(session.account, session.device);
      this.context.router.detach(session.account, session.device, session);
      this.delivery.detach(session);
      this.context.routing?.closed(session);
    }
    // From here every handle of this session is stale (a handler still awaiting finds it closed), and the slot may
    // be given to the next connection.
    this.slots.release(slot);
  }
}
