// Raw TCP through Bun.listen. Each socket's `data` is its session's slot number (session-slots.ts), taken in `open`
// and set to -1 once its close was handled: a small integer, so an idle socket carries no object of ours. Several listeners may share the port with SO_REUSEPORT:
// Bun's accept backlog is fixed at 512 per listener, so one listener overflows in a reconnect storm.

import type { Socket, TCPSocketListener } from "bun";
import type { ConnectionHandler } from "./connection.ts";
import { TransportKind } from "./session-slots.ts";
import type { TlsFiles } from "./tls-files.ts";
import type { NoiseServer } from "./transport-noise.ts";

export interface TcpListeners {
  readonly port: number;
  /** Stops accepting; open sockets stay. */
  stop(): void;
  /** Swaps the socket handlers of every listener (SIGHUP reload): open sockets keep their sessions. */
  reload(connections: ConnectionHandler): void;
  /** TLS listeners: new connections get `tls` (a renewed certificate); open ones keep theirs. */
  reloadTls(tls: TlsFiles): void;
}

/** The slot number, or -1 before open and after close. */
export type SessionSocket = Socket<number>;

function closed(connections: ConnectionHandler, socket: SessionSocket): void {
  const slot = socket.data;
  if (slot < 0) return;
  // Forget the slot first: it may be given to the next connection at once, and this socket must not reach it.
  socket.data = -1;
  connections.closed(slot);
}

function handlers(connections: ConnectionHandler, kind: typeof TransportKind.tcp | typeof TransportKind.tls) {
  return {
    open(socket: SessionSocket) {
      socket.data = connections.open(socket, kind);
    },
    data(socket: SessionSocket, chunk: Buffer) {
      // The chunk is decoded where it lies (views); only a partial frame left at its end is ever copied.
      if (socket.data >= 0) connections.data(socket.data, chunk);
    },
    drain(socket: SessionSocket) {
      if (socket.data >= 0) connections.writable(socket.data);
    },
    close(socket: SessionSocket) {
      closed(connections, socket);
    },
    error(socket: SessionSocket, error: Error) {
      // A socket error is the peer's or the network's: log it through close (Bun closes the socket after this).
      void error;
      closed(connections, socket);
    },
  };
}

export function listenTcp(
  /** reusePort: share the port with other processes too (the workers of a supervisor). */
  options: {
    host: string;
    port: number;
    listeners: number;
    reusePort?: boolean;
    /** Noise on every connection (transport-noise.ts); absent: plaintext. */
    noise?: NoiseServer | null;
    /** TLS with these PEM files (tls-files.ts); absent: no TLS. */
    tls?: TlsFiles | null;
  },
  connections: ConnectionHandler,
): TcpListeners {
  const noise = options.noise ?? null;
  // A TLS socket's sessions are TransportKind.tls: their logins sign the connection's TLS exporter value.
  const kind = (options.tls ?? null) === null ? TransportKind.tcp : TransportKind.tls;
  const socketHandlers = (next: ConnectionHandler) =>
    noise === null ? handlers(next, kind) : noise.socketHandlers(next);
  let listeners: TCPSocketListener<number>[] = [];
  let port = options.port;
  let current = connections;
  // A TLS listener always shares its port: a new certificate comes with a new listener beside the old (reloadTls).
  const reusePort = options.listeners > 1 || options.reusePort === true || (options.tls ?? null) !== null;
  const listen = (tls: TlsFiles | null) =>
    Bun.listen<number>({
      hostname: options.host,
      port,
      // reusePort is supported on Linux but missing from bun-types' TCP options.
      ...({ reusePort } as object),
      ...(tls === null ? {} : { tls: { cert: tls.cert, key: tls.key } }),
      data: -1,
      socket: socketHandlers(current),
    });
  for (let index = 0; index < options.listeners; index++) {
    const listener = listen(options.tls ?? null);
    // With port 0 the first listener picks the port; the others join it.
    port = listener.port;
    listeners.push(listener);
  }
  return {
    port,
    stop() {
      for (const listener of listeners) listener.stop(false);
    },
    reload(next: ConnectionHandler) {
      current = next;
      for (const listener of listeners) listener.reload({ socket: socketHandlers(next) });
    },
    reloadTls(tls: TlsFiles) {
      if ((options.tls ?? null) === null) return;
      const replaced = listeners;
      listeners = replaced.map(() => listen(tls));
      for (const listener of replaced) listener.stop(false);
    },
  };
}
