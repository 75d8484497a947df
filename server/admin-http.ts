// The admin HTTP listener (loopback by default): Prometheus metrics, liveness and readiness. It is a separate
// Bun.serve from the client listeners so that operators can firewall it apart and so that a flood of clients never
// queues behind a scrape.

import { rmSync } from "node:fs";
import type { Server } from "bun";
import { adminApiPrefix } from "./admin-api.ts";
import { adminNames, hostAllowed } from "./server-names.ts";
import { versionLine } from "./version.ts";

export interface AdminHttp {
  readonly port: number;
  stop(): void;
}

export interface AdminSources {
  /** The Prometheus text exposition. */
  metrics(): Promise<string>;
  /** False while draining (SIGTERM): load balancers stop sending new clients. */
  ready(): boolean;
  /** The operator API (admin-api.ts): answers every path under /admin/ itself, with its own checks. */
  api?(request: Request, peer: string | undefined): Promise<Response>;
}

export interface AdminOptions {
  readonly host: string;
  readonly port: number;
  /** Names the listener answers to besides its loopback names, its bind address and IP addresses (serverNames). */
  readonly names?: Iterable<string>;
  /**
   * Listen on this Unix socket path instead of host:port (a worker under the supervisor; a stale file there is
   * removed first). Such a listener checks no Host header (a web page cannot reach a Unix socket, so DNS rebinding
   * does not apply) and gives the API the peer `unixPeerAddress`: the socket is in the supervisor's 0700 run
   * directory, which only the service user can enter, as only this host can reach loopback.
   */
  readonly unix?: string;
}

/** The peer address the operator API sees for a request over the Unix socket (it counts as loopback). */
export const unixPeerAddress = "127.0.0.1";

export function listenAdmin(options: AdminOptions, sources: AdminSources): AdminHttp {
  // A page whose DNS name was rebound to this address sends that name as Host: refused before anything is read.
  const names = adminNames(options.names ?? [], options.host);
  const unix = options.unix;
  if (unix !== undefined) rmSync(unix, { force: true });
  const fetch = async (request: Request, bunServer: Server<undefined>): Promise<Response> => {
    if (unix === undefined && !hostAllowed(request.headers.get("host"), names, true)) {
      return new Response("misdirected request: unknown Host\n", { status: 421 });
    }
    const path = new URL(request.url).pathname;
    if (sources.api !== undefined && path.startsWith(adminApiPrefix)) {
      return sources.api(request, unix === undefined ? bunServer.requestIP(request)?.address : unixPeerAddress);
    }
    if (request.method !== "GET") return new Response("method not allowed\n", { status: 405 });
    switch (path) {
      case "/metrics":
        return new Response(await sources.metrics(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      case "/healthz":
        // The version too: a probe reads the status, a person or a fleet script the line.
        return new Response(`ok ${versionLine()}\n`);
      case "/readyz":
        return sources.ready() ? new Response("ready\n") : new Response("draining\n", { status: 503 });
      default:
        return new Response("not found: /metrics, /healthz, /readyz\n", { status: 404 });
    }
  };
  const server: Server<undefined> =
    unix === undefined ? Bun.serve({ hostname: options.host, port: options.port, fetch }) : Bun.serve({ unix, fetch });
  return {
    // 0 on a Unix socket: there is no port.
    port: unix === undefined ? (server.port ?? options.port) : 0,
    stop() {
      void server.stop(true);
    },
  };
}
