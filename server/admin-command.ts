// The operator's commands: `invite`, `account`, `sessions`, `kick`, `drain`. Two kinds:
//
// - Store commands (`invite` to issue codes, `account list|show`) open the database the config names, say which file
//   they opened, and never create one: only `start` does. A command run with the wrong config or in the wrong
//   directory used to create a fresh database whose invites the real server rejects; now it stops with one line
//   naming the file it looked for (exit 2).
// - Server commands (`sessions`, `kick`, `invite list|revoke`, `account remove`, `drain`) ask the running server
//   through its admin API (admin-api.ts), because only it holds the sessions and the caches a change must reach.
//   `account remove` falls back to the database when no server runs on the data directory (its lock is free), and
//   holds that lock meanwhile so that no server starts halfway.
//
// Exit codes: 0 done, 1 the server could not be reached or failed, 2 a usage, config or lookup error.

import { existsSync, statSync } from "node:fs";
import { parseArgs } from "node:util";
import { openSqliteStorage, type Storage } from "../storage/index.ts";
import { randomCode } from "./account-requests.ts";
import {
  adminTokenFileName,
  kickRetryAfterMsDefault,
  kickRetryAfterMsMax,
  readAdminToken,
  sessionsPageMax,
} from "./admin-api.ts";
import { type Config, ConfigError, databasePath } from "./config.ts";
import { configFromValues, configOptions, type LoadedConfig } from "./config-flags.ts";
import { DataDirectoryLockedError, lockDataDirectory } from "./data-directory.ts";
import { deviceIdMax } from "./device-state.ts";

export const adminCommandNames: ReadonlySet<string> = new Set(["invite", "account", "sessions", "kick", "drain"]);

/** Invite codes: 12 random bytes (96 bits), written in base32. */
const inviteCodeRandomBytes = 12;
const inviteCountMax = 1000;
const accountListLimitMax = 10_000;
const dayMs = 86_400_000;
/** How long a command waits for the admin API. */
const adminRequestTimeoutMs = 10_000;

const usages: Record<string, string> = {
  invite: `switchboard invite [--count N] [--ttl-days N]     issue one-time registration codes (one per line)
switchboard invite list                            list invites (hash, created, expires, state) from the server
switchboard invite revoke <code | hash prefix>     revoke an unused invite on the running server`,
  account: `switchboard account list [--limit N]               list accounts (from the database)
switchboard account show <handle | id>             an account and its devices (from the database)
switchboard account remove <handle | id>           remove an account; the running server closes its sessions at once`,
  sessions: `switchboard sessions [--list [--limit N] [--after SESSION]] [--json]
    count the running server's sessions by state; --list shows a page of session, account, handle, device, address`,
  kick: `switchboard kick <handle | id> [--device N] [--reason TEXT] [--retry-after-s N]
    close the sessions of an account (or one device) with a goaway carrying the reason`,
  drain: `switchboard drain
    start the graceful stop on the running server (as SIGTERM does): clients get a goaway, the process exits`,
};

const commonHelp = `Every command finds the config as the server does: --config FILE, else SWITCHBOARD_CONFIG (the installed
switchboard command sets it to /etc/switchboard/switchboard.toml), and takes any config key as a flag (--data-dir DIR).
Server commands reach the admin listener (adminHost:adminPort) with the token in <dataDir>/${adminTokenFileName}: run
them as the service user or root.`;

/** A failure the command reports in one line, with its exit code. */
class CommandError extends Error {
  override readonly name = "CommandError";
  constructor(
    message: string,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
  }
}

type OwnOptions = Record<string, { type: "string" | "boolean"; short?: string }>;

interface Parsed {
  readonly positionals: string[];
  readonly values: Record<string, string | boolean | undefined>;
  readonly loaded: LoadedConfig;
}

function parse(command: string, argv: readonly string[], own: OwnOptions): Parsed | "help" {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { ...configOptions(), ...own, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new CommandError(`${(error as Error).message}\n\n${usages[command]}`, 2);
  }
  if (parsed.values.help === true) return "help";
  const values = parsed.values as Record<string, string | boolean | undefined>;
  return { positionals: parsed.positionals, values, loaded: configFromValues(values, Object.keys(own)) };
}

function positiveInteger(name: string, value: string | boolean | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const number = Number(String(value).replaceAll("_", ""));
  if (!Number.isInteger(number) || number < 1 || number > max) throw new CommandError(`--${name}: 1..${max}`, 2);
  return number;
}

function noMorePositionals(command: string, positionals: readonly string[], expected: number): void {
  if (positionals.length > expected) {
    throw new CommandError(`unexpected argument ${positionals[expected]}\n\n${usages[command]}`, 2);
  }
}

// ---- the database -----------------------------------------------------------------------------------------------

/** Opens the existing database of the config, naming it on stderr; never creates one. */
async function openExistingStore(loaded: LoadedConfig): Promise<{ storage: Storage; path: string }> {
  const path = databasePath(loaded.config);
  let found: boolean;
  try {
    found = statSync(path, { throwIfNoEntry: false }) !== undefined;
  } catch (error) {
    // A directory on the way that this user may not enter: say so rather than "no database".
    throw new CommandError(
      `cannot see ${path}: ${(error as NodeJS.ErrnoException).code} (run as the service user or root)`,
      2,
    );
  }
  if (!found) {
    throw new CommandError(
      `no database at ${path} (dataDir from ${loaded.source}); only \`switchboard start\` creates one: check --config or --data-dir`,
      2,
    );
  }
  console.error(`database: ${path}`);
  try {
    const storage = await openSqliteStorage({ path, synchronous: loaded.config.synchronous });
    return { storage, path };
  } catch (error) {
    throw new CommandError(`cannot open ${path}: ${(error as Error).message} (run as the service user or root)`, 2);
  }
}

async function findAccount(storage: Storage, key: string | undefined) {
  if (key === undefined) throw new CommandError("account: give a handle or an id", 2);
  const account = /^\d+$/.test(key) ? await storage.accounts.byId(Number(key)) : await storage.accounts.byHandle(key);
  if (account === undefined) throw new CommandError(`no account ${key}`, 2);
  return account;
}

// ---- the admin API ----------------------------------------------------------------------------------------------

/** The admin listener's URL as seen from this host (a wildcard bind is reached on loopback). */
export function adminUrl(config: Config): string {
  const host = config.adminHost === "0.0.0.0" ? "127.0.0.1" : config.adminHost === "::" ? "::1" : config.adminHost;
  return `http://${host.includes(":") ? `[${host}]` : host}:${config.adminPort}`;
}

class ServerUnreachable extends CommandError {}

async function callServer(
  loaded: LoadedConfig,
  method: "GET" | "POST",
  path: string,
  body?: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const { config } = loaded;
  if (config.adminPort === 0) {
    throw new ServerUnreachable(`the admin listener is off (adminPort = 0 in ${loaded.source})`, 1);
  }
  const base = adminUrl(config);
  let token: string;
  try {
    token = readAdminToken(config.dataDir);
  } catch (error) {
    throw new ServerUnreachable(`${(error as Error).message} (is the server running?)`, 1);
  }
  let response: Response;
  try {
    response = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(adminRequestTimeoutMs),
    });
  } catch (error) {
    throw new ServerUnreachable(
      `no server answers at ${base} (adminHost:adminPort from ${loaded.source}): ${(error as Error).message}`,
      1,
    );
  }
  const text = await response.text();
  let answer: Record<string, unknown>;
  try {
    answer = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new CommandError(`${base}${path} answered ${response.status} without JSON: ${text.slice(0, 200)}`, 1);
  }
  if (!response.ok) {
    const message = String(answer.error ?? `status ${response.status}`);
    throw new CommandError(message, response.status >= 500 || response.status === 401 ? 1 : 2);
  }
  return answer;
}

// ---- the commands -----------------------------------------------------------------------------------------------

async function invite(argv: readonly string[]): Promise<number> {
  const parsed = parse("invite", argv, { count: { type: "string", short: "n" }, "ttl-days": { type: "string" } });
  if (parsed === "help") return help("invite");
  const { positionals, values, loaded } = parsed;
  const [action, target] = positionals;
  if (action === "list") {
    noMorePositionals("invite", positionals, 1);
    const answer = await callServer(loaded, "GET", "/admin/invites");
    const invites = answer.invites as Array<{
      codeHash: string;
      createdAtMs: number;
      expiresAtMs: number;
      usedAtMs: number | null;
      state: string;
    }>;
    for (const entry of invites) {
      const used = entry.usedAtMs === null ? "" : `\tused ${new Date(entry.usedAtMs).toISOString()}`;
      console.log(
        `${entry.codeHash.slice(0, 16)}\t${entry.state}\tcreated ${new Date(entry.createdAtMs).toISOString()}\texpires ${new Date(entry.expiresAtMs).toISOString()}${used}`,
      );
    }
    const open = invites.filter((entry) => entry.state === "open").length;
    console.log(`${invites.length} invites, ${open} open (codes are stored hashed: revoke by code or hash prefix)`);
    return 0;
  }
  if (action === "revoke") {
    noMorePositionals("invite", positionals, 2);
    if (target === undefined)
      throw new CommandError(`invite revoke: give a code or a hash prefix\n\n${usages.invite}`, 2);
    await callServer(loaded, "POST", "/admin/invites/revoke", { invite: target });
    console.log("revoked 1 invite");
    return 0;
  }
  if (action !== undefined) throw new CommandError(`invite: unknown action ${action}\n\n${usages.invite}`, 2);
  const count = positiveInteger("count", values.count, 1, inviteCountMax);
  const ttlDays = positiveInteger(
    "ttl-days",
    values["ttl-days"],
    Math.round(loaded.config.limits.inviteTtlMs / dayMs),
    365,
  );
  const { storage } = await openExistingStore(loaded);
  try {
    const now = Date.now();
    for (let index = 0; index < count; index++) {
      const code = randomCode(inviteCodeRandomBytes);
      await storage.invites.issue(code, now, now + ttlDays * dayMs);
      console.log(code);
    }
  } finally {
    await storage.close();
  }
  return 0;
}

async function account(argv: readonly string[]): Promise<number> {
  const parsed = parse("account", argv, { limit: { type: "string" } });
  if (parsed === "help") return help("account");
  const { positionals, values, loaded } = parsed;
  const [action, key] = positionals;
  if (action === "remove") {
    noMorePositionals("account", positionals, 2);
    if (key === undefined) throw new CommandError("account remove: give a handle or an id", 2);
    return await accountRemove(loaded, key);
  }
  if (action !== "list" && action !== "show") {
    throw new CommandError(`account: list | show <handle|id> | remove <handle|id>\n\n${usages.account}`, 2);
  }
  noMorePositionals("account", positionals, action === "list" ? 1 : 2);
  const { storage, path } = await openExistingStore(loaded);
  try {
    if (action === "list") {
      const limit = positiveInteger("limit", values.limit, 100, accountListLimitMax);
      const accounts = await storage.accounts.list({ limit });
      for (const entry of accounts) {
        console.log(`${entry.id}\t${entry.handle}\t${new Date(entry.createdAtMs).toISOString()}`);
      }
      console.log(`${accounts.length} shown, ${await storage.accounts.count()} in all (${path})`);
    } else {
      const found = await findAccount(storage, key);
      console.log(`account ${found.id} ${found.handle}, created ${new Date(found.createdAtMs).toISOString()}`);
      for (const device of await storage.devices.list(found.id)) {
        console.log(
          `  device ${device.device}: last seen ${new Date(device.lastSeenAtMs).toISOString()}, queue ${device.queueRows} entries / ${device.queueBytes} bytes`,
        );
      }
    }
  } finally {
    await storage.close();
  }
  return 0;
}

async function accountRemove(loaded: LoadedConfig, key: string): Promise<number> {
  try {
    const answer = await callServer(loaded, "POST", "/admin/accounts/remove", { account: key });
    console.log(
      `removed account ${answer.account} ${answer.handle} (${answer.devices} devices); the server closed ${answer.sessionsClosed} sessions`,
    );
    return 0;
  } catch (error) {
    if (!(error instanceof ServerUnreachable)) throw error;
    // No server answered. If none holds the data directory, remove from the database while holding its lock.
    const database = databasePath(loaded.config);
    if (!existsSync(database)) {
      throw new CommandError(`no database at ${database} (dataDir from ${loaded.source}): ${error.message}`, 2);
    }
    let lock: ReturnType<typeof lockDataDirectory>;
    try {
      lock = lockDataDirectory(loaded.config.dataDir);
    } catch (lockError) {
      if (lockError instanceof DataDirectoryLockedError) {
        throw new CommandError(
          `a server runs on ${loaded.config.dataDir} (pid ${lockError.holderPid ?? "unknown"}) but its admin API does not answer: ${error.message}`,
          1,
        );
      }
      throw new CommandError(`${error.message}; and the data directory's lock: ${(lockError as Error).message}`, 1);
    }
    try {
      const { storage } = await openExistingStore(loaded);
      try {
        const found = await findAccount(storage, key);
        await storage.accounts.remove(found.id);
        console.log(`removed account ${found.id} ${found.handle} from the database (no server is running)`);
      } finally {
        await storage.close();
      }
    } finally {
      lock.release();
    }
    return 0;
  }
}

interface SessionEntry {
  session: number;
  state: string;
  account: number | null;
  handle: string | null;
  device: number | null;
  address: string;
}

async function sessions(argv: readonly string[]): Promise<number> {
  const parsed = parse("sessions", argv, {
    list: { type: "boolean" },
    limit: { type: "string" },
    after: { type: "string" },
    json: { type: "boolean" },
  });
  if (parsed === "help") return help("sessions");
  const { positionals, values, loaded } = parsed;
  noMorePositionals("sessions", positionals, 0);
  const list = values.list === true || values.limit !== undefined || values.after !== undefined;
  const query = new URLSearchParams();
  if (list) {
    query.set("limit", String(positiveInteger("limit", values.limit, 100, sessionsPageMax)));
    if (values.after !== undefined) query.set("after", String(positiveInteger("after", values.after, 0, 2 ** 53)));
  }
  const answer = await callServer(loaded, "GET", `/admin/sessions${list ? `?${query}` : ""}`);
  if (values.json === true) {
    console.log(JSON.stringify(answer, null, 2));
    return 0;
  }
  const byState = answer.byState as Record<string, number>;
  const states = Object.entries(byState)
    .map(([state, count]) => `${count} ${state}`)
    .join(", ");
  const total = Number(answer.total);
  console.log(`${total} session${total === 1 ? "" : "s"}: ${states}${answer.draining === true ? " (draining)" : ""}`);
  if (list) {
    const page = answer.sessions as SessionEntry[];
    const rows = page.map((entry) => [
      String(entry.session),
      entry.state,
      entry.account === null ? "-" : String(entry.account),
      entry.handle ?? "-",
      entry.device === null ? "-" : String(entry.device),
      entry.address,
    ]);
    const header = ["session", "state", "account", "handle", "device", "address"];
    const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
    for (const row of [header, ...rows])
      console.log(
        row
          .map((cell, column) => cell.padEnd(widths[column]!))
          .join("  ")
          .trimEnd(),
      );
    if (answer.next !== null) console.log(`more: switchboard sessions --list --after ${answer.next}`);
  }
  return 0;
}

async function kick(argv: readonly string[]): Promise<number> {
  const parsed = parse("kick", argv, {
    device: { type: "string" },
    reason: { type: "string" },
    "retry-after-s": { type: "string" },
  });
  if (parsed === "help") return help("kick");
  const { positionals, values, loaded } = parsed;
  noMorePositionals("kick", positionals, 1);
  const key = positionals[0];
  if (key === undefined) throw new CommandError(`kick: give a handle or an account id\n\n${usages.kick}`, 2);
  const body: Record<string, unknown> = { account: key };
  if (values.device !== undefined) body.device = positiveInteger("device", values.device, 1, deviceIdMax);
  if (typeof values.reason === "string") body.reason = values.reason;
  if (values["retry-after-s"] !== undefined) {
    body.retryAfterMs =
      positiveInteger(
        "retry-after-s",
        values["retry-after-s"],
        kickRetryAfterMsDefault / 1000,
        kickRetryAfterMsMax / 1000,
      ) * 1000;
  }
  const answer = await callServer(loaded, "POST", "/admin/kick", body);
  const devices = answer.devices as number[];
  console.log(
    devices.length === 0
      ? `account ${answer.account} ${answer.handle}: no device connected`
      : `account ${answer.account} ${answer.handle}: closed device ${devices.join(", ")} ("${answer.reason}", retry after ${Number(answer.retryAfterMs) / 1000} s)`,
  );
  return 0;
}

async function drain(argv: readonly string[]): Promise<number> {
  const parsed = parse("drain", argv, {});
  if (parsed === "help") return help("drain");
  noMorePositionals("drain", parsed.positionals, 0);
  const answer = await callServer(parsed.loaded, "POST", "/admin/drain");
  console.log(
    answer.started === true
      ? `drain started: ${answer.sessions} sessions get a goaway, then the server exits`
      : "the server is draining already",
  );
  return 0;
}

function help(command: string): number {
  console.log(`${usages[command]}\n\n${commonHelp}`);
  return 0;
}

const commands: Record<string, (argv: readonly string[]) => Promise<number>> = {
  invite,
  account,
  sessions,
  kick,
  drain,
};

/** Runs one of adminCommandNames; returns the exit code and prints failures as one line on stderr. */
export async function runAdminCommand(command: string, argv: readonly string[]): Promise<number> {
  const run = commands[command];
  if (run === undefined) throw new Error(`not an admin command: ${command}`);
  try {
    return await run(argv);
  } catch (error) {
    if (error instanceof CommandError) {
      console.error(`switchboard ${command}: ${error.message}`);
      return error.exitCode;
    }
    if (error instanceof ConfigError) {
      console.error(`switchboard ${command}: ${error.message}`);
      return 2;
    }
    throw error;
  }
}
