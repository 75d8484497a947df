// WebSocket through the web platform's `WebSocket` (browsers, Bun, Node 22+): binary messages carry the same bytes
// as TCP (preamble, then frames, read as a stream). The WebSocket object buffers what the network does not take
// yet (`bufferedAmount`); the transport bounds it (bufferedBytesMax) and closes a connection that stops draining.

import type { Transport, TransportEvents, TransportFactory } from "./transport.ts";

export interface WebSocketTransportOptions {
  /** ws:// or wss:// URL of the server's WebSocket listener, path included (default path /ws). */
  readonly url: string;
  /** Bytes the WebSocket may hold unsent; past it the connection is closed. */
  readonly bufferedBytesMax: number;
  /**
   * Bun only (browsers use their own trust store): the operator's certificate authority for a wss:// listener whose
   * certificate is private or self-signed.
   */
  readonly ca?: string;
}

export function webSocketTransport(options: WebSocketTransportOptions): TransportFactory {
  return () => new WebSocketTransport(options);
}

/** Normal closure (RFC 6455). */
const closeNormal = 1000;

export class WebSocketTransport implements Transport {
  private socket: WebSocket | null = null;
  private events: TransportEvents | null = null;
  private opened = false;
  private closed = false;
  private notified = false;

  constructor(private readonly options: WebSocketTransportOptions) {}

  get bufferedBytes(): number {
    return this.socket?.bufferedAmount ?? 0;
  }

  connect(events: TransportEvents): Promise<void> {
    if (this.events !== null) return Promise.reject(new Error("a transport connects once"));
    this.events = events;
    return new Promise<void>((resolve, reject) => {
      let socket: WebSocket;
      try {
        // Bun's WebSocket takes TLS options as a second argument; browsers never get one.
        socket =
          this.options.ca === undefined
            ? new WebSocket(this.options.url)
            : new WebSocket(this.options.url, { tls: { ca: this.options.ca } } as never);
      } catch (error) {
        reject(error);
        return;
      }
      this.socket = socket;
      socket.binaryType = "arraybuffer";
      socket.addEventListener("open", () => {
        if (this.closed) {
          socket.close(closeNormal);
          reject(new Error("closed while connecting"));
          return;
        }
        this.opened = true;
        resolve();
      });
      socket.addEventListener("message", (event: MessageEvent) => {
        if (this.closed) return;
        if (event.data instanceof ArrayBuffer) events.data(new Uint8Array(event.data));
        else this.abort("text message from the server (the protocol is binary)");
      });
      socket.addEventListener("close", (event: CloseEvent) => {
        const reason = `websocket closed (${event.code}${event.reason === "" ? "" : ` ${event.reason}`})`;
        if (!this.opened) reject(new Error(reason));
        this.ended(reason);
      });
      // An error is always followed by close, which reports it.
      socket.addEventListener("error", () => {});
    });
  }

  write(bytes: Uint8Array): boolean {
    const socket = this.socket;
    if (this.closed || !this.opened || socket === null) return false;
    if (socket.bufferedAmount + bytes.length > this.options.bufferedBytesMax) {
      this.abort(`more than ${this.options.bufferedBytesMax} unsent bytes: the connection does not drain`);
      return false;
    }
    // send() copies the bytes into the socket's buffer: the caller may reuse its array.
    socket.send(bytes as Uint8Array<ArrayBuffer>);
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.close(closeNormal);
    this.notify("closed by the client");
  }

  private abort(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.close(closeNormal);
    this.notify(reason);
  }

  private ended(reason: string): void {
    this.closed = true;
    this.notify(reason);
  }

  private notify(reason: string): void {
    if (this.notified || !this.opened || this.events === null) return;
    this.notified = true;
    this.events.close(reason);
  }
}
