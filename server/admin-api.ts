// The operator API on the admin listener (`/admin/...`): what `switchboard sessions`, `kick`, `invite list|revoke`,
// `account remove` and `drain` ask the running server, because only the running server holds the sessions and the
// caches a change must reach at once (a removed account's sessions close now, not at the next restart).
//
// Protection, two locks: the peer must be on loopback (or the listener's own specific address, which only this host
// can send from), and the request must carry the bearer token the server writes at every start into
// `<dataDir>/admin.token` (0600, in the 0700 data directory). Whoever can read that file can read and write the
// database anyway, so the token gives the API exactly the reach of the service user and no more. Loopback alone was
// rejected: any local user or any local process tricked into a request (SSRF) could kick sessions or drain the
// server. /metrics, /healthz and /readyz stay open as before (monitoring reads them without secrets).

import { heapStats } from "bun:jsc";
import { randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { ErrorCode } from "../protocol/index.ts";
import type { AccountRecord } from "../storage/index.ts";
import type { ServerContext } from "./context.ts";
import type { Delivery } from "./delivery.ts";
import { deviceIdMax } from "./device-state.ts";
import type { Session } from "./session.ts";
import type { SessionTable } from "./session-table.ts";

export const adminApiPrefix = "/admin/";
export const adminTokenFileName = "admin.token";
const adminTokenFileMode = 0o600;
const adminTokenRandomBytes = 32;
/** Most sessions one page of `GET /admin/sessions` lists. */
export const sessionsPageMax = 1000;
/** Retry hint of a kick's goaway, unless the operator gives one. */
export const kickRetryAfterMsDefault = 60_000;
export const kickRetryAfterMsMax = 86_400_000;
/** Request bodies are a few fields of JSON. */
const requestBodyBytesMax = 4096;
const reasonBytesMax = 200;
/** A hash prefix must tell invites apart: 8 hex digits is 32 bits. */
const invitePrefixHexMin = 8;

const stateNames = ["preamble", "authenticating", "ready", "closed"] as const;

export interface AdminApiDependencies {
  readonly context: ServerContext;
  readonly table: SessionTable;
  readonly delivery: Delivery;
  /** The bearer token requests must carry (writeAdminToken). */
  readonly token: string;
  /** The admin listener's bind address: a peer with this address is this host. */
  readonly listenHost: string;
  /** Starts the graceful stop (the SIGTERM path); called after the answer went out. */
  readonly drain: () => void;
}

/** An answer the API gives for a bad request: status and one line. */
export class AdminRequestError extends Error {
  override readonly name = "AdminRequestError";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Writes a fresh token into `<dataDir>/admin.token` (0600, replaced atomically) and returns it. */
export function writeAdminToken(dataDir: string): string {
  const token = randomBytes(adminTokenRandomBytes).toString("hex");
  const path = join(dataDir, adminTokenFileName);
  const temporary = `${path}.tmp-${process.pid}`;
  writeFileSync(temporary, `${token}\n`, { mode: adminTokenFileMode });
  chmodSync(temporary, adminTokenFileMode);
  renameSync(temporary, path);
  return token;
}

/** The token of the server running on `dataDir`; throws with the reason (missing file, no permission). */
export function readAdminToken(dataDir: string): string {
  const path = join(dataDir, adminTokenFileName);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EACCES") {
      throw new Error(`cannot read ${path}: run this as the service user (or root)`);
    }
    throw new Error(`no ${path}: the server writes it when it starts with its admin listener on`);
  }
  return text.trim();
}

function isLoopback(address: string): boolean {
  const plain = address.startsWith("::ffff:") ? address.slice(7) : address;
  return plain === "::1" || (isIP(plain) === 4 && plain.startsWith("127."));
}

/**
 * The admin API's door, shared by a server and the supervisor: a peer on loopback (or the listener's own address)
 * with the token. Returns the refusal, or null when the request may pass.
 */
export function adminGate(
  token: string,
  listenHost: string,
): (request: Request, peer: string | undefined) => Response | null {
  const expected = Buffer.from(token);
  const ownAddress = isIP(listenHost) !== 0 ? listenHost : null;
  return (request, peer) => {
    if (peer === undefined || !(isLoopback(peer) || peer === ownAddress)) {
      return json(403, { error: "the admin API answers only on loopback" });
    }
    const header = request.headers.get("authorization") ?? "";
    const given = Buffer.from(header.startsWith("Bearer ") ? header.slice(7).trim() : "");
    if (given.length === expected.length && timingSafeEqual(given, expected)) return null;
    return json(401, { error: `missing or wrong token (see <dataDir>/${adminTokenFileName})` });
  };
}

/** A JSON answer of the admin API (a server's or the supervisor's). */
export function json(status: number, body: unknown): Response {
  return new Response(`${JSON.stringify(body)}\n`, {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

/** A request's body as text, refused (413) past requestBodyBytesMax. */
export async function boundedBody(request: Request): Promise<string> {
  const text = await request.text();
  if (Buffer.byteLength(text) > requestBodyBytesMax) throw new AdminRequestError(413, "request body too large");
  return text;
}

async function readBody(request: Request): Promise<Record<string, unknown>> {
  const text = await boundedBody(request);
  if (text.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new AdminRequestError(400, "request body is not JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new AdminRequestError(400, "request body must be a JSON object");
  }
  return parsed as Record<string, unknown>;
}

function stringField(body: Record<string, unknown>, name: string): string {
  const value = body[name];
  if (typeof value !== "string" || value === "") throw new AdminRequestError(400, `${name}: a non-empty string`);
  return value;
}

function optionalInteger(body: Record<string, unknown>, name: string, min: number, max: number): number | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new AdminRequestError(400, `${name}: an integer in ${min}..${max}`);
  }
  return value;
}

function reasonOf(body: Record<string, unknown>, fallback: string): string {
  const value = body.reason;
  if (value === undefined) return fallback;
  if (typeof value !== "string" || Buffer.byteLength(value) > reasonBytesMax) {
    throw new AdminRequestError(400, `reason: a string of at most ${reasonBytesMax} bytes`);
  }
  return value;
}

/** The handler for `/admin/...` requests; `peer` is the connection's remote address. */
export function createAdminApi(dependencies: AdminApiDependencies) {
  const { context, table, delivery } = dependencies;
  const gate = adminGate(dependencies.token, dependencies.listenHost);

  const findAccount = async (key: string): Promise<AccountRecord> => {
    const asNumber = Number(key);
    const account =
      /^\d+$/.test(key) && Number.isSafeInteger(asNumber)
        ? await context.storage.accounts.byId(asNumber)
        : await context.storage.accounts.byHandle(key);
    if (account === undefined) throw new AdminRequestError(404, `no account ${key}`);
    return account;
  };

  /** The open sessions of an account's devices (one device, or all of them). */
  const sessionsOf = async (account: number, device?: number): Promise<Array<[number, Session]>> => {
    const devices =
      device === undefined ? (await context.storage.devices.list(account)).map((record) => record.device) : [device];
    const found: Array<[number, Session]> = [];
    for (const id of devices) {
      const session = context.router.find(account, id);
      if (session !== undefined) found.push([id, session]);
    }
    return found;
  };

  const sessions = async (url: URL): Promise<Response> => {
    const counts = [0, 0, 0, 0];
    for (const session of table.sessions()) counts[session.state]!++;
    const byState = Object.fromEntries(stateNames.map((name, index) => [name, counts[index]!]));
    const body: Record<string, unknown> = { total: table.count, byState, draining: table.draining };
    const limitText = url.searchParams.get("limit");
    if (limitText !== null) {
      const limit = Number(limitText);
      const after = Number(url.searchParams.get("after") ?? "0");
      if (!Number.isInteger(limit) || limit < 1 || limit > sessionsPageMax) {
        throw new AdminRequestError(400, `limit: 1..${sessionsPageMax}`);
      }
      if (!Number.isInteger(after) || after < 0) throw new AdminRequestError(400, "after: a session id >= 0");
      // Sessions enter the set as they open, so the set's order is the order of their ids.
      const page: Session[] = [];
      for (const session of table.sessions()) {
        if (session.id <= after) continue;
        page.push(session);
        if (page.length === limit) break;
      }
      const handles = new Map<number, string>();
      for (const session of page) {
        if (session.account === 0 || handles.has(session.account)) continue;
        const account = await context.storage.accounts.byId(session.account);
        handles.set(session.account, account?.handle ?? "");
      }
      body.sessions = page.map((session) => ({
        session: session.id,
        state: stateNames[session.state],
        account: session.account === 0 ? null : session.account,
        handle: session.account === 0 ? null : (handles.get(session.account) ?? null),
        device: session.account === 0 ? null : session.device,
        address: session.socket.remoteAddress,
      }));
      const last = page.at(-1);
      body.next = page.length === limit && last !== undefined ? last.id : null;
    }
    return json(200, body);
  };

  const kick = async (request: Request): Promise<Response> => {
    const body = await readBody(request);
    const account = await findAccount(stringField(body, "account"));
    const device = optionalInteger(body, "device", 1, deviceIdMax);
    const retryAfterMs = optionalInteger(body, "retryAfterMs", 0, kickRetryAfterMsMax) ?? kickRetryAfterMsDefault;
    const reason = reasonOf(body, "disconnected by the operator");
    const found = await sessionsOf(account.id, device);
    // kicked: an operator closed this session; come back after retryAfterMs (a reconnect-range code).
    for (const [, session] of found) context.io.goaway(session, ErrorCode.kicked, retryAfterMs, reason);
    const devices = found.map(([id]) => id);
    context.log.info("sessions_kicked", { account: account.id, devices, reason, retryAfterMs, by: "admin" });
    return json(200, { account: account.id, handle: account.handle, devices, retryAfterMs, reason });
  };

  const inviteList = async (): Promise<Response> => {
    const now = context.now();
    const invites = (await context.storage.invites.list()).map((invite) => ({
      ...invite,
      state: invite.usedAtMs !== null ? "used" : invite.expiresAtMs <= now ? "expired" : "open",
    }));
    return json(200, { invites });
  };

  const inviteRevoke = async (request: Request): Promise<Response> => {
    const body = await readBody(request);
    const target = stringField(body, "invite");
    const { invites } = context.storage;
    // A code revokes directly; otherwise the target is the start of a hash that `invite list` showed.
    if (await invites.revoke({ code: target })) {
      context.log.info("invite_revoked", { by: "admin" });
      return json(200, { revoked: 1 });
    }
    const prefix = target.toLowerCase();
    if (!/^[0-9a-f]+$/.test(prefix) || prefix.length < invitePrefixHexMin) {
      throw new AdminRequestError(404, "no unused invite with that code");
    }
    const matches = (await invites.list()).filter((invite) => invite.codeHash.startsWith(prefix));
    if (matches.length === 0) throw new AdminRequestError(404, `no invite whose hash starts with ${prefix}`);
    if (matches.length > 1) throw new AdminRequestError(409, `${matches.length} invites start with ${prefix}`);
    const invite = matches[0]!;
    if (invite.usedAtMs !== null) throw new AdminRequestError(409, `invite ${prefix} was used already`);
    if (!(await invites.revoke({ codeHash: invite.codeHash }))) {
      throw new AdminRequestError(409, `invite ${prefix} was used or revoked meanwhile`);
    }
    context.log.info("invite_revoked", { codeHash: invite.codeHash.slice(0, 16), by: "admin" });
    return json(200, { revoked: 1, codeHash: invite.codeHash });
  };

  const accountRemove = async (request: Request): Promise<Response> => {
    const body = await readBody(request);
    const account = await findAccount(stringField(body, "account"));
    const devices = (await context.storage.devices.list(account.id)).map((record) => record.device);
    // As a device removal does (account-requests.ts): stop delivery, remove from the store, drop the cached device
    // list, then close the sessions. A device that logged in during the awaits is looked up again at the end.
    for (const device of devices) await delivery.forgetDevice(account.id, device);
    await context.storage.accounts.remove(account.id);
    context.directory.invalidate(account.id);
    context.routing?.removed(account.id, devices, ErrorCode.accountRemoved, true);
    let sessionsClosed = 0;
    for (const device of devices) {
      const session = context.router.find(account.id, device);
      if (session === undefined) continue;
      context.router.detach(account.id, device, session);
      context.io.close(session, ErrorCode.accountRemoved, "this account was removed by the operator");
      sessionsClosed++;
    }
    context.log.info("account_removed", {
      account: account.id,
      handle: account.handle,
      devices: devices.length,
      sessionsClosed,
      by: "admin",
    });
    return json(200, { account: account.id, handle: account.handle, devices: devices.length, sessionsClosed });
  };

  const drain = (): Response => {
    if (table.draining) return json(200, { draining: true, started: false });
    context.log.info("drain_requested", { by: "admin", sessions: table.count });
    setTimeout(dependencies.drain, 0);
    return json(202, { draining: true, started: true, sessions: table.count });
  };

  /**
   * A full, synchronous garbage collection, then the heap's figures and the process's RSS: what a measurement of
   * idle sessions reads (bench/scenario-encryption.ts), so that it counts what the sessions hold and not the garbage
   * their logins left. It stops the event loop for the collection (tens of ms at a few thousand sessions, more with a
   * large heap): a tool for measuring, not for production monitoring.
   */
  const collectGarbage = (url: URL): Response => {
    const startedAtMs = performance.now();
    // Bun.gc(true) collects the JavaScript heap and asks mimalloc (the allocator of everything else) to give back
    // what it can.
    Bun.gc(true);
    const collectMs = performance.now() - startedAtMs;
    const stats = heapStats();
    context.log.info("garbage_collected", { by: "admin", collectMs: Math.round(collectMs) });
    return json(200, {
      collectMs: Math.round(collectMs * 10) / 10,
      rssBytes: process.memoryUsage.rss(),
      heapBytes: stats.heapSize,
      heapObjects: stats.objectCount,
      arrayBufferBytes: process.memoryUsage().arrayBuffers,
      sessions: table.count,
      // ?types=1: the heap's objects by type (a few hundred names), to see what grew.
      ...(url.searchParams.get("types") === "1" ? { objectTypeCounts: stats.objectTypeCounts } : {}),
    });
  };

  const routes: Record<string, (request: Request, url: URL) => Promise<Response> | Response> = {
    "GET /admin/sessions": (_request, url) => sessions(url),
    "POST /admin/kick": (request) => kick(request),
    "GET /admin/invites": () => inviteList(),
    "POST /admin/invites/revoke": (request) => inviteRevoke(request),
    "POST /admin/accounts/remove": (request) => accountRemove(request),
    "POST /admin/drain": () => drain(),
    "POST /admin/gc": (_request, url) => collectGarbage(url),
  };

  return async (request: Request, peer: string | undefined): Promise<Response> => {
    const refused = gate(request, peer);
    if (refused !== null) return refused;
    const url = new URL(request.url);
    const route = routes[`${request.method} ${url.pathname}`];
    if (route === undefined) {
      return json(404, { error: `no route ${request.method} ${url.pathname}`, routes: Object.keys(routes) });
    }
    try {
      return await route(request, url);
    } catch (error) {
      if (error instanceof AdminRequestError) return json(error.status, { error: error.message });
      context.log.error("admin_api_failed", { route: url.pathname, error: String(error) });
      return json(500, { error: "internal error (logged)" });
    }
  };
}

export type AdminApi = ReturnType<typeof createAdminApi>;
