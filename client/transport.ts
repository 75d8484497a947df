// The seam between the client and the bytes: raw TCP (transport-tcp.ts) or WebSocket (transport-websocket.ts), the
// same frames either way. A transport carries one connection; the client makes a new one for each attempt.

export interface TransportEvents {
  /** Bytes arrived. The chunk belongs to the receiver (the transport never reuses it). */
  data(chunk: Uint8Array): void;
  /** The connection ended, for any reason (peer, network, stuck writes, or close()). Called once, after connect. */
  close(reason: string): void;
}

export interface Transport {
  /** Opens the connection; resolves when bytes may be written, rejects when it cannot be opened. */
  connect(events: TransportEvents): Promise<void>;
  /**
   * Writes the bytes or keeps what the connection does not take now, in order, and flushes it when it can. Returns
   * false when the connection is closed or when the kept bytes passed the transport's limit (it then closes).
   */
  write(bytes: Uint8Array): boolean;
  /** Closes the connection after a best-effort flush; `close` follows (if connect had resolved). */
  close(): void;
  /** Bytes written but not yet taken by the connection. */
  readonly bufferedBytes: number;
  /**
   * What the login signs besides the nonce: the Noise handshake hash over Noise, the TLS exporter value over TLS TCP;
   * absent or null otherwise (plaintext, WebSocket).
   */
  readonly channelBinding?: Uint8Array | null;
}

export type TransportFactory = () => Transport;
