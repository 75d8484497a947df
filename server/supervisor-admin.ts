// The supervisor's admin HTTP listener (adminHost:adminPort, TCP as a single server's): it answers for all workers,
// asking each over its Unix socket in the run directory (<dataDir>/run/admin-<i>.sock).
// - /metrics: the supervisor's own series, then every worker's with worker="i" added (metrics-merge.ts);
// - /healthz, /readyz: 200 only when every worker answers 200 (and, for /readyz, the supervisor is not stopping);
// - /admin/...: the same peer and token checks as a worker's (admin-api.ts), then
//   sessions and kick to every worker, merged (a device's session is on one worker, which one is the kernel's pick);
//   drain stops the supervisor (all workers, as SIGTERM); everything else (invites, account remove) to one worker,
//   since they act on the shared store.

import type { Server } from "bun";
import { AdminRequestError, adminApiPrefix, adminGate, boundedBody, json } from "./admin-api.ts";
import type { AdminHttp } from "./admin-http.ts";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { type MetricsSource, mergeMetrics } from "./metrics-merge.ts";
import { adminNames, hostAllowed, serverNames } from "./server-names.ts";
import type { Workers } from "./supervisor.ts";
import { versionLine } from "./version.ts";

/** How long the supervisor waits for one worker's admin answer (a scrape, a probe, an operator command). */
export const workerAdminTimeoutMs = 5_000;

export interface SupervisorAdminOptions {
  readonly config: Config;
  readonly token: string;
  readonly workers: Pick<Workers, "count" | "socketPath" | "stopped" | "metricsText" | "statuses">;
  /** The supervisor's own series besides the workers' counts (its checkpoint thread's). */
  readonly extraMetrics?: () => string;
  /** Starts the supervisor's graceful stop. */
  readonly drain: () => void;
  readonly log: Logger;
}

/** A worker's answer, or why there is none. */
type WorkerAnswer =
  | { readonly worker: number; readonly ok: true; readonly status: number; readonly text: string }
  | { readonly worker: number; readonly ok: false; readonly error: string };

export function listenSupervisorAdmin(options: SupervisorAdminOptions): AdminHttp {
  const { config, workers } = options;
  const names = adminNames(serverNames(config), config.adminHost);
  const gate = adminGate(options.token, config.adminHost);
  const indexes = Array.from({ length: workers.count }, (_, index) => index);

  /** Asks worker `index` over its socket; a worker that is restarting (no socket) or slow is an answer too. */
  const ask = async (
    index: number,
    path: string,
    init: { method?: string; headers?: HeadersInit; body?: string } = {},
  ): Promise<WorkerAnswer> => {
    try {
      // The Host a worker's listener sees is `localhost`; its Unix listener checks no Host (admin-http.ts).
      const response = await fetch(`http://localhost${path}`, {
        ...init,
        unix: workers.socketPath(index),
        signal: AbortSignal.timeout(workerAdminTimeoutMs),
      } as RequestInit);
      return { worker: index, ok: true, status: response.status, text: await response.text() };
    } catch (error) {
      return { worker: index, ok: false, error: (error as Error).message };
    }
  };
  const askAll = (path: string, init?: { method?: string; headers?: HeadersInit; body?: string }) =>
    Promise.all(indexes.map((index) => ask(index, path, init)));

  const metrics = async (): Promise<Response> => {
    const answers = await askAll("/metrics");
    const sources: MetricsSource[] = [{ text: workers.metricsText() + (options.extraMetrics?.() ?? "") }];
    for (const answer of answers) {
      if (answer.ok && answer.status === 200)
        sources.push({ text: answer.text, labels: { worker: String(answer.worker) } });
    }
    return new Response(mergeMetrics(sources), {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  };

  /** 200 when every worker answers `path` with 200, else 503 naming those that did not. */
  const allAnswer = async (path: string, okText: string): Promise<Response> => {
    const failed = (await askAll(path)).filter((answer) => !answer.ok || answer.status !== 200);
    if (failed.length === 0) return new Response(okText);
    const lines = failed.map((answer) =>
      answer.ok
        ? `worker ${answer.worker}: ${answer.status} ${answer.text.trim()}`
        : `worker ${answer.worker}: ${answer.error}`,
    );
    return new Response(`${lines.join("\n")}\n`, { status: 503 });
  };

  const api = async (request: Request, peer: string | undefined): Promise<Response> => {
    const refused = gate(request, peer);
    if (refused !== null) return refused;
    const url = new URL(request.url);
    const route = `${request.method} ${url.pathname}`;
    let body: string | undefined;
    try {
      body = request.method === "GET" ? undefined : await boundedBody(request);
    } catch (error) {
      if (error instanceof AdminRequestError) return json(error.status, { error: error.message });
      throw error;
    }
    const forward = {
      method: request.method,
      headers: { authorization: request.headers.get("authorization") ?? "", "content-type": "application/json" },
      ...(body === undefined ? {} : { body }),
    };
    if (route === "POST /admin/drain") return drain();
    if (route === "GET /admin/sessions") return sessions(url, forward);
    if (route === "POST /admin/kick") return kick(await askAll(url.pathname, forward));
    // The store's operations: any worker can do them; the first that answers does.
    let last: WorkerAnswer | undefined;
    for (const index of indexes) {
      last = await ask(index, `${url.pathname}${url.search}`, forward);
      if (last.ok) return passOn(last);
    }
    return noAnswer(last!);
  };

  const drain = async (): Promise<Response> => {
    if (workers.stopped) return json(200, { draining: true, started: false });
    // The count is for the operator's message; a worker that does not answer counts 0.
    let total = 0;
    for (const answer of await askAll("/admin/sessions", { headers: { authorization: `Bearer ${options.token}` } })) {
      if (answer.ok && answer.status === 200)
        total += Number((JSON.parse(answer.text) as { total?: number }).total ?? 0);
    }
    options.log.info("drain_requested", { by: "admin", sessions: total });
    setTimeout(options.drain, 0);
    return json(202, { draining: true, started: true, sessions: total });
  };

  const sessions = async (url: URL, forward: { method: string; headers: HeadersInit }): Promise<Response> => {
    const limitText = url.searchParams.get("limit");
    const query = new URLSearchParams(url.searchParams);
    const after = Number(url.searchParams.get("after") ?? "0");
    const answers = await Promise.all(
      indexes.map((index) => {
        // Session ids are per worker; the supervisor lists them as local id x workers + worker index, so one
        // `after` cursor pages through all workers in order.
        if (limitText !== null && Number.isInteger(after) && after >= 0) {
          query.set("after", String(Math.max(0, Math.floor((after - index) / workers.count))));
        }
        return ask(index, `${url.pathname}?${query}`, forward);
      }),
    );
    const failed = answers.find((answer) => !answer.ok || answer.status !== 200);
    if (failed !== undefined) return failed.ok ? passOn(failed) : noAnswer(failed);
    const bodies = answers.map((answer) => JSON.parse((answer as { text: string }).text) as SessionsBody);
    const byState: Record<string, number> = {};
    for (const body of bodies) {
      for (const [state, count] of Object.entries(body.byState)) byState[state] = (byState[state] ?? 0) + count;
    }
    const merged: Record<string, unknown> = {
      total: bodies.reduce((sum, body) => sum + body.total, 0),
      byState,
      draining: bodies.some((body) => body.draining),
      workers: bodies.map((body, index) => ({ worker: index, total: body.total })),
    };
    if (limitText !== null) {
      const limit = Number(limitText);
      const entries = bodies
        .flatMap((body, index) =>
          (body.sessions ?? []).map((entry) => ({
            ...entry,
            session: entry.session * workers.count + index,
            worker: index,
            workerSession: entry.session,
          })),
        )
        .sort((a, b) => a.session - b.session);
      const page = entries.slice(0, limit);
      const more = entries.length > limit || bodies.some((body) => body.next !== null && body.next !== undefined);
      merged.sessions = page;
      merged.next = more && page.length === limit ? page.at(-1)!.session : null;
    }
    return json(200, merged);
  };

  const kick = (answers: WorkerAnswer[]): Response => {
    const found = answers.filter((answer) => answer.ok && answer.status === 200) as Array<{ text: string }>;
    const broken = answers.find((answer) => !answer.ok || (answer.status !== 200 && answer.status !== 404));
    if (found.length === 0) {
      // Every worker answered 404 (no such account) or 400 (a bad request): the first answer says it for all.
      const answer = broken ?? answers[0]!;
      return answer.ok ? passOn(answer) : noAnswer(answer);
    }
    const bodies = found.map((answer) => JSON.parse(answer.text) as { devices: number[] } & Record<string, unknown>);
    const devices = bodies.flatMap((body) => body.devices).sort((a, b) => a - b);
    const body = { ...bodies[0]!, devices };
    // Sessions on a worker that did not answer stay open: say so rather than report a complete kick.
    if (broken !== undefined) {
      const error = broken.ok
        ? `worker ${broken.worker} answered ${broken.status}`
        : `worker ${broken.worker}: ${broken.error}`;
      return json(502, { ...body, error: `${error}; its sessions of this account were not kicked` });
    }
    return json(200, body);
  };

  const server: Server<undefined> = Bun.serve({
    hostname: config.adminHost,
    port: config.adminPort,
    async fetch(request, bunServer) {
      if (!hostAllowed(request.headers.get("host"), names, true)) {
        return new Response("misdirected request: unknown Host\n", { status: 421 });
      }
      const path = new URL(request.url).pathname;
      if (path.startsWith(adminApiPrefix)) return api(request, bunServer.requestIP(request)?.address);
      if (request.method !== "GET") return new Response("method not allowed\n", { status: 405 });
      switch (path) {
        case "/metrics":
          return metrics();
        case "/healthz":
          return allAnswer("/healthz", `ok ${versionLine()}\n`);
        case "/readyz":
          if (workers.stopped) return new Response("draining\n", { status: 503 });
          return allAnswer("/readyz", "ready\n");
        default:
          return new Response("not found: /metrics, /healthz, /readyz\n", { status: 404 });
      }
    },
  });
  return {
    port: server.port ?? config.adminPort,
    stop() {
      void server.stop(true);
    },
  };
}

interface SessionsBody {
  total: number;
  byState: Record<string, number>;
  draining: boolean;
  sessions?: Array<{ session: number } & Record<string, unknown>>;
  next?: number | null;
}

function passOn(answer: Extract<WorkerAnswer, { ok: true }>): Response {
  return new Response(answer.text, {
    status: answer.status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

function noAnswer(answer: WorkerAnswer): Response {
  return json(502, { error: `worker ${answer.worker} did not answer: ${answer.ok ? answer.status : answer.error}` });
}
