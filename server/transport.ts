// What a session needs of its socket. Raw TCP sockets (Bun.listen) satisfy it as they are; the WebSocket path wraps
// its socket in the same shape, so sessions, auth and delivery exist once for both transports.

export interface TransportSocket {
  /** Writes what the socket takes now and returns the number of bytes taken; the caller keeps the rest. */
  write(bytes: Uint8Array): number;
  /** Flushes what the kernel has and closes. */
  end(): void;
  /** Stops reading (the peer sees TCP backpressure) until resume(); bytes already read may still arrive. */
  pause(): void;
  resume(): void;
  readonly remoteAddress: string;
  /**
   * The Noise handshake hash of this connection (PROTOCOL.md section 19), which a login, registration or link must
   * sign; absent or null on a transport without one (plaintext, TLS).
   */
  readonly channelBinding?: Uint8Array | null;
}

/**
 * A layer whose per-connection state lives in columns indexed by the session's slot (Noise, transport-noise.ts):
 * it makes a throwaway TransportSocket for the slot's raw socket when a handler asks (session.ts), so an idle
 * session holds no object of the layer's.
 */
export interface SlotSocketSource {
  socketOf(raw: unknown, slot: number): TransportSocket;
  /** A connection took `slot` (called by SessionSlots.allocate, before anything can write to it). */
  opened(slot: number): void;
}
