// Raw TCP through Bun.connect. Bun's socket.write() takes what the kernel accepts now and drops the rest (there is
// no write buffer): the transport keeps the unsent tail, in order, and writes it on `drain`. The tail is bounded
// (bufferedBytesMax): a connection that stops taking bytes is closed rather than buffered without end.
// Uses the `Bun` global only when connecting, so importing this file elsewhere (a browser bundle) does no harm.

import type { Socket } from "bun";
import { tlsChannelBinding } from "../protocol/auth-message.ts";
import type { Transport, TransportEvents, TransportFactory } from "./transport.ts";

export interface TcpTransportOptions {
  readonly host: string;
  readonly port: number;
  /** Unsent bytes kept; past it the connection is closed. */
  readonly bufferedBytesMax: number;
  /**
   * TLS to a listener with tcpEncryption = "tls": true verifies the server's certificate against the system's
   * authorities; `ca` adds the operator's own (a private CA or a self-signed certificate), `serverName` the name it
   * must carry (default: host).
   */
  readonly tls?: boolean | { readonly ca?: string; readonly serverName?: string };
}

export function tcpTransport(options: TcpTransportOptions): TransportFactory {
  return () => new TcpTransport(options);
}

export class TcpTransport implements Transport {
  private socket: Socket<undefined> | null = null;
  private events: TransportEvents | null = null;
  /** The unsent tail, oldest first; null when everything was taken. */
  private pending: Uint8Array[] | null = null;
  private pendingBytes = 0;
  private closed = false;
  private closeReason: string | null = null;
  private notified = false;

  constructor(private readonly options: TcpTransportOptions) {}

  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /**
   * Over TLS, the connection's TLS exporter value (RFC 9266), which the login signs (PROTOCOL.md section 19): a
   * relay terminating TLS with us and opening its own connection to the server cannot reuse the signature. Null on
   * plain TCP and before connecting.
   */
  get channelBinding(): Uint8Array | null {
    const tls = this.options.tls;
    if (this.socket === null || tls === undefined || tls === false) return null;
    return tlsChannelBinding(this.socket);
  }

  async connect(events: TransportEvents): Promise<void> {
    if (this.events !== null) throw new Error("a transport connects once");
    this.events = events;
    const socket = await Bun.connect<undefined>({
      hostname: this.options.host,
      port: this.options.port,
      ...(this.options.tls === undefined || this.options.tls === false
        ? {}
        : { tls: this.options.tls === true ? true : { ...this.options.tls } }),
      data: undefined,
      socket: {
        binaryType: "uint8array",
        data: (_socket, chunk) => {
          if (!this.closed) events.data(chunk);
        },
        drain: () => this.flush(),
        close: (_socket, error) => this.ended(error === undefined ? "connection closed" : error.message),
        end: () => this.ended("connection closed by the peer"),
        error: (_socket, error) => this.ended(`socket error: ${error.message}`),
        // With this handler the rejection of Bun.connect is not reported as unhandled; the caller sees it.
        connectError: () => {},
      },
    });
    this.socket = socket;
    if (this.closed) {
      // close() was called while connecting.
      socket.terminate();
      throw new Error(this.closeReason ?? "closed while connecting");
    }
  }

  write(bytes: Uint8Array): boolean {
    const socket = this.socket;
    if (this.closed || socket === null) return false;
    if (this.pending !== null) return this.keep(bytes);
    const written = Math.max(0, socket.write(bytes));
    if (written < bytes.length) return this.keep(bytes.subarray(written));
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = "closed by the client";
    const socket = this.socket;
    if (socket === null) return;
    // Best effort: whatever of the tail the kernel takes now goes out before the FIN.
    this.flushNow(socket);
    this.pending = null;
    this.pendingBytes = 0;
    socket.end();
    this.notify("closed by the client");
  }

  private keep(tail: Uint8Array): boolean {
    if (this.pendingBytes + tail.length > this.options.bufferedBytesMax) {
      this.abort(`more than ${this.options.bufferedBytesMax} unsent bytes: the connection does not drain`);
      return false;
    }
    // The caller may reuse its buffer: keep a copy of the tail.
    const copy = tail.slice();
    if (this.pending === null) this.pending = [copy];
    else this.pending.push(copy);
    this.pendingBytes += copy.length;
    return true;
  }

  private flush(): void {
    if (this.closed || this.socket === null) return;
    this.flushNow(this.socket);
  }

  /** Writes the kept tail while the socket takes it. */
  private flushNow(socket: Socket<undefined>): void {
    const pending = this.pending;
    if (pending === null) return;
    while (pending.length > 0) {
      const head = pending[0]!;
      const written = Math.max(0, socket.write(head));
      this.pendingBytes -= written;
      if (written < head.length) {
        pending[0] = head.subarray(written);
        return;
      }
      pending.shift();
    }
    this.pending = null;
    this.pendingBytes = 0;
  }

  private abort(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.pending = null;
    this.pendingBytes = 0;
    this.socket?.terminate();
    this.notify(reason);
  }

  private ended(reason: string): void {
    this.closed = true;
    this.pending = null;
    this.pendingBytes = 0;
    this.notify(this.closeReason ?? reason);
  }

  private notify(reason: string): void {
    if (this.notified || this.socket === null || this.events === null) return;
    this.notified = true;
    this.events.close(reason);
  }
}
