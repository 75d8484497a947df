// Writing to sessions. Frames produced while handling one event are queued on the session and written together at
// the end of the turn (Bun's TCP sockets have no cork), in one write() per socket. Whatever write() does not take
// stays queued until `drain`. The queue of a session is an entry of its slot's side table only while it holds frames. Past outboundBytesMax the delivery pipeline stops pushing messages to the session (they
// stay safe in its queue); past outboundBytesCloseMax the peer is closed as a slow consumer.

import {
  type EncodeOptions,
  ErrorCode,
  errorCodeName,
  type FrameCodec,
  type Limits,
  type Stanza,
} from "../protocol/index.ts";
import type { Metrics } from "./metrics.ts";
import { ProxySession, type Session, SessionState } from "./session.ts";

export class SessionIo {
  private readonly dirty: Session[] = [];
  private flushScheduled = false;
  /** Called when a session's unsent bytes fell below outboundBytesMax again (delivery resumes). */
  onWritable: (session: Session) => void = () => {};
  /** Called when a flush leaves a session at outboundBytesMax or more (delivery pauses; routing-mesh.ts tells the owner). */
  onBlocked: (session: Session) => void = () => {};

  constructor(
    private readonly codec: FrameCodec,
    /** Replaced by a reload (outbound limits are reloadable). */
    public limits: Limits,
    private readonly metrics: Metrics,
  ) {}

  /** Queues a stanza for the session; false when the session is closed. */
  send(session: Session, stanza: Stanza, options?: EncodeOptions): boolean {
    if (session.state === SessionState.closed) return false;
    const frame = this.codec.encode(stanza, options);
    this.metrics.framesOut.incLabel(stanza.kind);
    this.metrics.frameBytesOut.incLabel(stanza.kind, frame.length);
    return this.sendFrame(session, frame);
  }

  sendFrame(session: Session, frame: Uint8Array): boolean {
    if (session.state === SessionState.closed) return false;
    let outbound = session.outbound;
    if (outbound === null) {
      outbound = { frames: [frame], bytes: 0 };
      session.outbound = outbound;
      this.dirty.push(session);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // After every callback of this event-loop turn, not after the current one's microtasks: a socket that gets
        // frames from several events of the turn (a deliver, then a receipt, then server-acks from the commit) gets
        // them in one write. With queueMicrotask the throughput bench wrote 1.2 times per delivered message; now 0.16.
        setImmediate(() => this.flushAll());
      }
    } else {
      outbound.frames.push(frame);
    }
    outbound.bytes += frame.length;
    if (outbound.bytes > this.limits.outboundBytesCloseMax) {
      this.abort(session, ErrorCode.slowConsumer);
      return false;
    }
    return true;
  }

  /** There is room to push another message to this session. */
  canPush(session: Session): boolean {
    if (session instanceof ProxySession && session.remoteFull) return false;
    return session.state === SessionState.ready && session.outboundBytes < this.limits.outboundBytesMax;
  }

  flushAll(): void {
    this.flushScheduled = false;
    // Sessions added while flushing are flushed in the same pass (the loop reads the length each time).
    for (let index = 0; index < this.dirty.length; index++) this.flush(this.dirty[index]!);
    this.dirty.length = 0;
  }

  /** Writes what the socket takes; keeps the rest. Called at the end of a turn and on `drain`. */
  flush(session: Session): void {
    const queued = session.outbound;
    if (queued === null || session.state === SessionState.closed) return;
    let bytes: Uint8Array;
    if (queued.frames.length === 1) bytes = queued.frames[0]!;
    else {
      bytes = new Uint8Array(queued.bytes);
      let offset = 0;
      for (const frame of queued.frames) {
        bytes.set(frame, offset);
        offset += frame.length;
      }
    }
    const wasOverLimit = queued.bytes >= this.limits.outboundBytesMax;
    const written = Math.max(0, session.socket.write(bytes));
    this.metrics.socketWrites.inc();
    this.metrics.bytesOut.inc(undefined, written);
    let left = 0;
    if (written >= bytes.length) {
      session.outbound = null;
    } else {
      // Keep a copy of the tail only when it is much smaller than the buffer it lives in.
      const tail = bytes.subarray(written);
      queued.frames = [tail.length * 2 < bytes.length ? tail.slice() : tail];
      queued.bytes = tail.length;
      left = tail.length;
    }
    if (wasOverLimit && left < this.limits.outboundBytesMax) this.onWritable(session);
    else if (!wasOverLimit && left >= this.limits.outboundBytesMax) this.onBlocked(session);
  }

  /** The socket can take more: write the tail, and let delivery resume if it fell below the limit. */
  drained(session: Session): void {
    // A session also queued for the end-of-turn flush is harmless: that flush finds less or nothing left.
    if (session.outbound !== null) this.flush(session);
  }

  /** Sends an error frame (best effort), then closes. */
  close(session: Session, code: number, message: string | null, clientId: number | null = null): void {
    if (session.state === SessionState.closed) return;
    this.metrics.errors.incLabel(errorCodeName(code));
    this.send(session, { kind: "error", code, clientId, message });
    this.end(session);
  }

  /** Sends a goaway (best effort), then closes. */
  goaway(session: Session, code: number, retryAfterMs: number, message: string | null): void {
    if (session.state === SessionState.closed) return;
    this.send(session, { kind: "goaway", code, retryAfterMs, message });
    this.end(session);
  }

  /** Closes at once without writing more (the peer does not read anyway). */
  abort(session: Session, code: number): void {
    if (session.state === SessionState.closed) return;
    this.metrics.errors.incLabel(errorCodeName(code));
    session.outbound = null;
    session.state = SessionState.closed;
    session.socket.end();
  }

  /** Writes what is queued (best effort), then closes: the frames before it (an owner's error or goaway) go first. */
  end(session: Session): void {
    this.flush(session);
    session.state = SessionState.closed;
    session.outbound = null;
    session.socket.end();
  }
}
