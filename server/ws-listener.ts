// WebSocket through Bun.serve: binary messages carry the protocol's bytes exactly as on TCP (the preamble, then
// frames; a message may hold several whole frames or part of one, it is read as a stream), and every socket gets the
// same session slot, auth, routing and delivery as TCP (the slot keeps the ServerWebSocket, ws-transport.ts adapts it
// when written to). Each socket's `data` is its slot number, -1 before open and after close. No per-connection
// compression: permessage-deflate would cost tens of KB per socket; frames keep the protocol's own per-frame
// compression.

import { existsSync, readFileSync } from "node:fs";
import { extname, join, normalize } from "node:path";
import type { Server } from "bun";
import { ErrorCode, ProtocolError } from "../protocol/index.ts";
import type { Config } from "./config.ts";
import type { ConnectionHandler } from "./connection.ts";
import { hostAllowed, serverNames } from "./server-names.ts";
import { TransportKind } from "./session-slots.ts";
import type { TlsFiles } from "./tls-files.ts";
import { webClientBundlePath, webClientBundleResponse } from "./web-client-bundle.ts";

export interface WsListener {
  readonly port: number;
  stop(): void;
  /** Swaps the handler (SIGHUP reload): open sockets keep their sessions. */
  reload(connections: ConnectionHandler): void;
  /** wss://: new connections get `tls` (a renewed certificate); open ones keep theirs. */
  reloadTls(tls: TlsFiles): void;
}

/** The slot number, or -1 before open and after close. */
type WsData = number;

/** Bun's WebSocket idle timeout is in seconds and at most 960; ours (keepalive on the wheel) comes first. */
const bunIdleTimeoutSecondsMax = 960;
const webClientDirectory = new URL("../client/web/", import.meta.url).pathname;
/** The only static files served (the page's sources and tests in the same folder are not). */
const contentTypes: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** Whether a browser page from `origin` may connect. No Origin header: not a browser, allowed. */
export function originAllowed(origin: string | null, allowList: string, ownOrigin: string): boolean {
  if (origin === null) return true;
  const allowed = allowList
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
  if (allowed.includes("*")) return true;
  if (allowed.length === 0) return origin === ownOrigin;
  return allowed.includes(origin);
}

function staticFile(path: string): Response | undefined {
  const relative = normalize(path === "/" ? "/index.html" : path).replace(/^\/+/, "");
  if (relative.startsWith("..")) return undefined;
  const file = join(webClientDirectory, relative);
  const contentType = contentTypes[extname(file)];
  if (contentType === undefined || !file.startsWith(webClientDirectory) || !existsSync(file)) return undefined;
  return new Response(readFileSync(file), { headers: { "content-type": contentType } });
}

/** `reusePort`: the workers of a supervisor share the port (SO_REUSEPORT). */
export function listenWebSocket(
  config: Config,
  initial: ConnectionHandler,
  reusePort = false,
  /** wss:// with these PEM files; null: ws://. */
  tls: TlsFiles | null = null,
): WsListener {
  let connections = initial;
  const { limits } = config;
  const names = serverNames(config);
  const serve = (port: number, files: TlsFiles | null): Server<WsData> =>
    Bun.serve<WsData>({
      hostname: config.wsHost,
      port,
      // A wss:// listener always shares its port: a new certificate comes with a new server beside the old.
      reusePort: reusePort || files !== null,
      ...(files === null ? {} : { tls: { cert: files.cert, key: files.key } }),
      fetch(request, bunServer) {
        // DNS rebinding: a page whose name was rebound to this address sends its own name as Host (and as Origin, so
        // the Origin check alone would pass it). Only the server's names get an answer, page or WebSocket.
        if (!hostAllowed(request.headers.get("host"), names)) {
          return new Response("misdirected request: unknown Host\n", { status: 421 });
        }
        const url = new URL(request.url);
        if (url.pathname === config.wsPath) {
          const ownOrigin = `${url.protocol === "https:" ? "https" : "http"}://${url.host}`;
          if (!originAllowed(request.headers.get("origin"), config.wsOrigins, ownOrigin)) {
            return new Response("origin not allowed\n", { status: 403 });
          }
          if (bunServer.upgrade(request, { data: -1 })) return undefined;
          return new Response("expected a WebSocket upgrade\n", { status: 426 });
        }
        if (config.webClient === "on" && request.method === "GET") {
          // The page's script: app.ts and the SDK bundled for browsers at the first request (web-client-bundle.ts).
          if (url.pathname === webClientBundlePath) return webClientBundleResponse(config.wsPath);
          const file = staticFile(url.pathname);
          if (file !== undefined) return file;
        }
        return new Response("not found\n", { status: 404 });
      },
      websocket: {
        // A message holds at most what a session may buffer inbound.
        maxPayloadLength: limits.inboundBytesMax,
        backpressureLimit: limits.outboundBytesCloseMax,
        closeOnBackpressureLimit: false,
        idleTimeout: Math.min(bunIdleTimeoutSecondsMax, Math.ceil((limits.idleTimeoutMs * 2) / 1000) + 30),
        perMessageDeflate: false,
        sendPings: false,
        open(socket) {
          socket.data = connections.open(socket, TransportKind.webSocket);
        },
        message(socket, message) {
          const slot = socket.data;
          if (slot < 0) return;
          if (typeof message === "string") {
            connections.reject(
              slot,
              new ProtocolError(ErrorCode.malformedFrame, "text message: the protocol is binary"),
            );
            return;
          }
          connections.data(slot, new Uint8Array(message.buffer, message.byteOffset, message.byteLength));
        },
        drain(socket) {
          if (socket.data >= 0) connections.writable(socket.data);
        },
        close(socket) {
          const slot = socket.data;
          if (slot < 0) return;
          // Forget the slot first: it may be given to the next connection at once.
          socket.data = -1;
          connections.closed(slot);
        },
      },
    });
  let server = serve(config.wsPort, tls);
  const port = server.port ?? config.wsPort;
  return {
    port,
    stop() {
      void server.stop(false);
    },
    reload(next: ConnectionHandler) {
      connections = next;
    },
    reloadTls(files: TlsFiles) {
      if (tls === null) return;
      const replaced = server;
      server = serve(port, files);
      // Open WebSockets stay with the old server (stop(false) closes only its listening socket).
      void replaced.stop(false);
    },
  };
}
