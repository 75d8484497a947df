#!/usr/bin/env bun
// The `switchboard` command: start the server, issue invites, manage accounts, chat from a terminal.
// Store commands (invite, account) open the same SQLite file as the server; SQLite's WAL lets them run while the
// server runs.

import { openSqliteStorage, type Storage } from "../storage/index.ts";
import { randomCode } from "./account-requests.ts";
import { adminCommandNames, runAdminCommand } from "./admin-command.ts";
import { type Config, ConfigError, databasePath, loadConfig } from "./config.ts";
import { DataDirectoryLockedError, prepareDataDirectory } from "./data-directory.ts";
import { startServer } from "./server.ts";

const usage = `switchboard <command> [options]

Commands:
  start                      run the server (TCP on --host/--port, data in --data-dir)
  invite [--count N]         issue one-time registration codes (valid --ttl-days, default 7)
  account list [--limit N]   list accounts
  account show <handle|id>   show an account and its devices
  account remove <handle|id> remove an account, its devices and queued messages (the server closes its sessions)
  invite list | revoke <code> list invites, revoke an unused one (on the running server)
  sessions [--list]          count (and list) the running server's sessions
  kick <handle|id>           close an account's sessions with a goaway and a reason (--device N, --reason TEXT)
  drain                      start the graceful stop of the running server, as SIGTERM does
  chat [options]             a terminal chat client (see: switchboard chat --help)
  doctor [--sessions N]      compare the host's limits with what the configured capacity needs
  help                       this text

Options for every command: --config <file.toml> and any config key as a flag (--data-dir ./data, --port 7420,
--queue-messages-max 10000, ...). Environment: SWITCHBOARD_CONFIG, SWITCHBOARD_<KEY> (SWITCHBOARD_DATA_DIR ...).
See OPERATIONS.md for every key and limit.`;

/** Invite codes: 12 random bytes (96 bits), written in base32. */
const inviteCodeRandomBytes = 12;
const inviteCountMax = 1000;
const accountListLimitMax = 10_000;

interface Parsed {
  positional: string[];
  flags: Record<string, string>;
}

export function parseArguments(argv: readonly string[]): Parsed {
  const positional: string[] = [];
  const flags: Record<string, string> = {};
  for (let index = 0; index < argv.length; index++) {
    const argument = argv[index]!;
    if (!argument.startsWith("--")) {
      positional.push(argument);
      continue;
    }
    const equals = argument.indexOf("=");
    if (equals > 0) flags[argument.slice(2, equals)] = argument.slice(equals + 1);
    else if (index + 1 < argv.length && !argv[index + 1]!.startsWith("--")) flags[argument.slice(2)] = argv[++index]!;
    else flags[argument.slice(2)] = "true";
  }
  return { positional, flags };
}

function configFrom(flags: Record<string, string>, ownFlags: readonly string[]): Config {
  const configFlags = { ...flags };
  for (const name of [...ownFlags, "config"]) delete configFlags[name];
  return loadConfig({ file: flags.config ?? process.env.SWITCHBOARD_CONFIG, env: process.env, flags: configFlags });
}

async function openStore(config: Config): Promise<Storage> {
  prepareDataDirectory(config.dataDir);
  return openSqliteStorage({ path: databasePath(config), synchronous: config.synchronous });
}

function positiveInteger(name: string, value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1 || number > max) throw new ConfigError(`--${name}: 1..${max}`);
  return number;
}

async function start(flags: Record<string, string>): Promise<void> {
  const config = configFrom(flags, []);
  const server = await startServer(config);
  const stop = async (signal: string) => {
    server.context.log.info("signal", { signal });
    await server.stop();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  // SIGHUP: read the config again (same file, environment and flags) and load the handler code afresh.
  process.on("SIGHUP", () => {
    server.context.log.info("signal", { signal: "SIGHUP" });
    let next: Config;
    try {
      next = configFrom(flags, []);
    } catch (error) {
      server.context.log.error("reload_failed", { error: String(error) });
      return;
    }
    server.reload(next).catch(() => {
      // Logged by reload; the running code and config stay.
    });
  });
}

async function invite(flags: Record<string, string>): Promise<void> {
  const config = configFrom(flags, ["count", "ttl-days"]);
  const count = positiveInteger("count", flags.count, 1, inviteCountMax);
  const ttlDays = positiveInteger(
    "ttl-days",
    flags["ttl-days"],
    Math.round(config.limits.inviteTtlMs / 86_400_000),
    365,
  );
  const storage = await openStore(config);
  try {
    const now = Date.now();
    for (let index = 0; index < count; index++) {
      const code = randomCode(inviteCodeRandomBytes);
      await storage.invites.issue(code, now, now + ttlDays * 86_400_000);
      console.log(code);
    }
  } finally {
    await storage.close();
  }
}

async function findAccount(storage: Storage, key: string | undefined) {
  if (key === undefined) throw new ConfigError("account: give a handle or an id");
  const asNumber = Number(key);
  const account = Number.isInteger(asNumber)
    ? await storage.accounts.byId(asNumber)
    : await storage.accounts.byHandle(key);
  if (account === undefined) throw new ConfigError(`no account ${key}`);
  return account;
}

async function account(positional: string[], flags: Record<string, string>): Promise<void> {
  const config = configFrom(flags, ["limit"]);
  const storage = await openStore(config);
  try {
    const [action, key] = positional;
    if (action === "list") {
      const limit = positiveInteger("limit", flags.limit, 100, accountListLimitMax);
      const accounts = await storage.accounts.list({ limit });
      for (const entry of accounts)
        console.log(`${entry.id}\t${entry.handle}\t${new Date(entry.createdAtMs).toISOString()}`);
      console.log(`${accounts.length} shown, ${await storage.accounts.count()} in all`);
    } else if (action === "show") {
      const found = await findAccount(storage, key);
      console.log(`account ${found.id} ${found.handle}, created ${new Date(found.createdAtMs).toISOString()}`);
      for (const device of await storage.devices.list(found.id)) {
        console.log(
          `  device ${device.device}: last seen ${new Date(device.lastSeenAtMs).toISOString()}, queue ${device.queueRows} entries / ${device.queueBytes} bytes`,
        );
      }
    } else if (action === "remove") {
      const found = await findAccount(storage, key);
      await storage.accounts.remove(found.id);
      console.log(`removed account ${found.id} ${found.handle}`);
    } else {
      throw new ConfigError("account: list | show <handle|id> | remove <handle|id>");
    }
  } finally {
    await storage.close();
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  // The operator's commands (invite, account, sessions, kick, drain) parse their own arguments: admin-command.ts.
  if (command !== undefined && adminCommandNames.has(command)) return await runAdminCommand(command, rest);
  const { positional, flags } = parseArguments(rest);
  try {
    switch (command) {
      case "start":
        await start(flags);
        return -1; // keeps running
      case "invite":
        await invite(flags);
        return 0;
      case "account":
        await account(positional, flags);
        return 0;
      case "doctor": {
        const { runDoctorCommand } = await import("./doctor.ts");
        return await runDoctorCommand(rest);
      }
      case "chat": {
        const { runChat } = await import("../client/chat.ts");
        return await runChat(rest);
      }
      case undefined:
      case "help":
      case "--help":
        console.log(usage);
        return 0;
      default:
        console.error(`unknown command ${command}\n\n${usage}`);
        return 2;
    }
  } catch (error) {
    // A second server on a data directory in use: exit 2 like a bad config, as restarting cannot fix it.
    if (error instanceof ConfigError || error instanceof DataDirectoryLockedError) {
      console.error(`switchboard: ${error.message}`);
      return 2;
    }
    throw error;
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  if (code >= 0) process.exit(code);
}
