// A Bun.serve WebSocket as a TransportSocket. The session's slot keeps the ServerWebSocket itself (session-slots.ts);
// this adapter is made when a handler asks for the socket and dropped after, so an idle WebSocket session holds none.
//
// Backpressure is handled as on TCP: write() takes bytes only while Bun holds nothing unsent for the socket, so the
// session keeps the unsent tail itself (bounded by outboundBytesMax / outboundBytesCloseMax) and flushes on drain.

import type { ServerWebSocket } from "bun";
import type { TransportSocket } from "./transport.ts";

class WebSocketTransport implements TransportSocket {
  constructor(private readonly socket: ServerWebSocket<number>) {}

  get remoteAddress(): string {
    return this.socket.remoteAddress;
  }

  write(bytes: Uint8Array): number {
    // While Bun still holds bytes for this socket, take nothing: the session keeps them (as write() on TCP).
    if (this.socket.getBufferedAmount() > 0) return 0;
    const status = this.socket.sendBinary(bytes);
    // >0: sent; -1: accepted into Bun's buffer (backpressure; drain follows); 0: dropped (closed or over the limit).
    return status === 0 ? 0 : bytes.length;
  }

  end(): void {
    this.socket.close(1000, "closed by server");
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }
}

export function webSocketTransport(socket: unknown): TransportSocket {
  return new WebSocketTransport(socket as ServerWebSocket<number>);
}
