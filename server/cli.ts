#!/usr/bin/env bun
// The `switchboard` command: start the server, check its config, issue invites, manage accounts, chat from a
// terminal. Every command parses its arguments with node:util parseArgs, strictly: an unknown flag is refused with
// one line and exit 2 (a silently ignored `-n 2` once issued one invite instead of two).
//
// Exit codes: 0 done; 1 a failure that may pass (a port in use: systemd restarts the server); 2 a usage, config or
// permission error that restarting cannot fix (the unit's RestartPreventExitStatus=2); 70 a failed commit (delivery).

import { parseArgs } from "node:util";
import { adminCommandNames, runAdminCommand } from "./admin-command.ts";
import { type Config, ConfigError, describeSource, loadSourcedConfig, type SourcedConfig } from "./config.ts";
import { configOptions } from "./config-flags.ts";
import { DataDirectoryLockedError, prepareDataDirectory } from "./data-directory.ts";
import { createLogger } from "./log.ts";
import { type RunningServer, startServer } from "./server.ts";
import { StartError } from "./start-errors.ts";
import { installSupervisorSignals, type RunningSupervisor, startSupervisor, workerCount } from "./supervisor.ts";
import { versionInfo, versionLine } from "./version.ts";

const usage = `switchboard <command> [options]

Commands:
  start                      run the server (TCP on --host/--port, data in --data-dir)
  check-config               load the config as start would and print "config OK" or every error (exit 2)
  invite [--count N]         issue one-time registration codes (valid --ttl-days, default 7)
  account list [--limit N]   list accounts
  account show <handle|id>   show an account and its devices
  account remove <handle|id> remove an account, its devices and queued messages (the server closes its sessions)
  invite list | revoke <code> list invites, revoke an unused one (on the running server)
  sessions [--list]          count (and list) the running server's sessions
  kick <handle|id>           close an account's sessions with a goaway and a reason (--device N, --reason TEXT)
  drain                      start the graceful stop of the running server, as SIGTERM does
  chat [options]             a terminal chat client (see: switchboard chat --help)
  noise-key                  print the server's Noise public key, to publish for clients to pin (--create makes it)
  doctor [--sessions N]      compare the host's limits with what the configured capacity needs
  version                    print the version (also --version, -v)
  help [command]             this text, or a command's (also --help, -h; every command takes --help)

Options for every command that reads the config: --config <file.toml> and any config key as a flag (--data-dir
./data, --port 7420, --queue-messages-max 10000, ...). Environment: SWITCHBOARD_CONFIG, SWITCHBOARD_<KEY>
(SWITCHBOARD_DATA_DIR ...). See OPERATIONS.md for every key and limit.`;

const configHelp = `Config: --config FILE (else SWITCHBOARD_CONFIG; else the defaults), overridden by SWITCHBOARD_<KEY> environment
variables, overridden by any config key as a flag (--port 7420, --data-dir ./data, --queue-messages-max 10000, ...).
OPERATIONS.md lists every key.`;

/** A command-line mistake: printed as one line naming the command, exit 2. */
class UsageError extends Error {
  override readonly name = "UsageError";
}

type OwnOptions = Record<string, { type: "string" | "boolean"; short?: string }>;

export interface Parsed {
  readonly values: Record<string, string | boolean | undefined>;
  readonly positionals: string[];
}

/** parseArgs, strict, with `--help`/`-h` and (when `config`) every config key; its errors become one-line UsageErrors. */
function parseCommand(
  argv: readonly string[],
  own: OwnOptions,
  options: { config: boolean; positionals?: number },
): Parsed {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: { ...(options.config ? configOptions() : {}), ...own, help: { type: "boolean", short: "h" } },
      allowPositionals: (options.positionals ?? 0) > 0,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(parseErrorText(error));
  }
  if (parsed.positionals.length > (options.positionals ?? 0)) {
    throw new UsageError(`unexpected argument ${parsed.positionals[options.positionals ?? 0]}`);
  }
  return { values: parsed.values as Parsed["values"], positionals: parsed.positionals };
}

/** parseArgs's message, shortened to its first sentence in our words: `unknown option -n`. */
function parseErrorText(error: unknown): string {
  const message = (error as Error).message;
  const quoted = /'([^']+)'/.exec(message)?.[1];
  switch ((error as { code?: string }).code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${quoted ?? message}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${quoted ?? message}`;
    default:
      return message.split("\n")[0]!;
  }
}

/** The config as `start` loads it: --config (else SWITCHBOARD_CONFIG), the environment, the config-key flags. */
export function loadFromValues(values: Parsed["values"]): SourcedConfig {
  const keys = configOptions();
  const flags: Record<string, string> = {};
  for (const [name, value] of Object.entries(values)) {
    if (name === "config" || !(name in keys)) continue;
    if (typeof value === "string") flags[name] = value;
  }
  const file = typeof values.config === "string" ? values.config : process.env.SWITCHBOARD_CONFIG || undefined;
  return loadSourcedConfig({ file, env: process.env, flags });
}

interface Command {
  /** The command's help (`switchboard <command> --help`). */
  readonly help: string;
  /** Returns the exit code, or -1 for a command that keeps running (start). */
  run(argv: readonly string[]): Promise<number>;
}

// ---- start --------------------------------------------------------------------------------------------------------

const startHelp = `switchboard start [--config FILE] [config flags]

Runs the server in the foreground: TCP on host:port, the admin HTTP listener on adminHost:adminPort, the database in
dataDir. SIGTERM or SIGINT stops it gracefully, SIGHUP reloads the handler code and the reloadable config.

With --workers N (default: one per core; 1 with --port 0) above 1 it runs a supervisor and N worker processes that
share the ports: the supervisor holds the data directory, restarts a worker that exits, forwards SIGHUP and SIGTERM,
and answers the admin port for all (OPERATIONS.md, Workers). --workers 1 is one process as before.

A start that cannot proceed prints one line on stderr (switchboard: cannot listen on 127.0.0.1:7420: address in use)
and logs a start_failed event: exit 2 for a bad config, a privileged port or a data directory it may not use
(restarting cannot fix these), 1 for a port in use or a full disk (a restart may succeed).

${configHelp}`;

/** Prints the one-line reason of a failed start on stderr and logs it as start_failed; returns the exit code. */
export function startFailed(error: Error, exitCode: number, fields: Record<string, unknown>, config?: Config): number {
  const line = error instanceof ConfigError ? configLine(error.message) : error.message;
  console.error(`switchboard: ${line}`);
  createLogger(config?.logLevel ?? "info").error("start_failed", {
    error: line,
    exitCode,
    ...fields,
    version: versionInfo().version,
  });
  return exitCode;
}

/** The exit code of a start that failed with `error` (after printing its line), or undefined for a bug (rethrow). */
export function startErrorExit(error: unknown, config: Config): number | undefined {
  if (error instanceof StartError) return startFailed(error, error.exitCode, error.fields(), config);
  // A second server on a data directory in use: exit 2 like a bad config, as restarting cannot fix it.
  if (error instanceof DataDirectoryLockedError) {
    return startFailed(error, 2, { code: "locked", dataDir: config.dataDir, holderPid: error.holderPid }, config);
  }
  return undefined;
}

/** Loads the config from parsed start flags; a config error is printed (start_failed) and answered with exit 2. */
export function loadStartConfig(values: Parsed["values"]): Config | number {
  try {
    return loadFromValues(values).config;
  } catch (error) {
    if (error instanceof ConfigError) return startFailed(error, 2, { cause: "config", problems: error.problems });
    throw error;
  }
}

async function start(argv: readonly string[]): Promise<number> {
  const { values } = parseCommand(argv, {}, { config: true });
  if (values.help) return printHelp(startHelp);
  const config = loadStartConfig(values);
  if (typeof config === "number") return config;
  const workers = workerCount(config);
  if (workers > 1) return await supervise(config, workers, argv);
  const starting = startServer(config);
  installServerSignals(starting, values, { interrupt: true });
  try {
    await starting;
  } catch (error) {
    const exitCode = startErrorExit(error, config);
    if (exitCode === undefined) throw error;
    return exitCode;
  }
  return -1;
}

/** `start` with more than one worker: the supervisor (supervisor.ts); resolves with its exit code once stopped. */
async function supervise(config: Config, workers: number, argv: readonly string[]): Promise<number> {
  const log = createLogger(config.logLevel);
  let supervisor: RunningSupervisor;
  try {
    supervisor = await startSupervisor(config, { count: workers, arguments: argv, log });
  } catch (error) {
    const exitCode = startErrorExit(error, config);
    if (exitCode === undefined) throw error;
    return exitCode;
  }
  installSupervisorSignals(supervisor, log);
  return await supervisor.finished;
}

/**
 * The signals of a server, installed before it starts: SIGTERM (and SIGINT when `interrupt`) stop it gracefully and
 * exit 0, a second one ends the lame duck; SIGHUP reads the config again (same file, environment and flags) and
 * reloads. A worker passes interrupt false: Ctrl-C reaches the whole process group, and its supervisor forwards
 * SIGTERM already. A stop asked for while the server is still starting waits for the start and then runs (installed
 * only after the start, a SIGTERM just after `server_started` killed the process with the default action: exit 143,
 * no graceful stop; seen under load by the supervisor test).
 */
export function installServerSignals(
  starting: Promise<RunningServer>,
  values: Parsed["values"],
  options: { interrupt: boolean },
): void {
  let server: RunningServer | null = null;
  let stopAsked: string | null = null;
  const stop = async (signal: string) => {
    if (server === null) {
      stopAsked ??= signal;
      return;
    }
    server.context.log.info("signal", { signal });
    await server.stop();
    process.exit(0);
  };
  starting.then(
    (started) => {
      server = started;
      if (stopAsked !== null) void stop(stopAsked);
    },
    () => {}, // the caller reports a failed start
  );
  process.on("SIGTERM", () => void stop("SIGTERM"));
  if (options.interrupt) process.on("SIGINT", () => void stop("SIGINT"));
  else process.on("SIGINT", () => server?.context.log.debug("signal_ignored", { signal: "SIGINT" }));
  process.on("SIGHUP", () => {
    // Still starting: it reads the config it was started with, which is what a reload would read.
    if (server === null) return;
    const running = server;
    running.context.log.info("signal", { signal: "SIGHUP" });
    let next: Config;
    try {
      next = loadFromValues(values).config;
    } catch (error) {
      running.context.log.error("reload_failed", { error: String(error) });
      return;
    }
    running.reload(next).catch(() => {
      // Logged by reload; the running code and config stay.
    });
  });
}

/** A config problem as printed: `config: port: 0..65535 (...)`; a file's own problems already say `config file`. */
function configLine(problem: string): string {
  return problem.startsWith("config file") ? problem : `config: ${problem}`;
}

// ---- check-config -------------------------------------------------------------------------------------------------

const checkConfigHelp = `switchboard check-config [--config FILE] [config flags]

Loads the config exactly as start would (the file, then SWITCHBOARD_* environment variables, then flags) and prints
"config OK" with the file it read and every value the file, the environment or a flag sets, with where it came from
(unlisted keys keep their defaults); or every problem on stderr: a TOML syntax error with its line and column, an
unknown key, a bad value, a broken relation between limits with the values involved and their sources. Exit 0 when
the config is good, 2 when it is not. It opens nothing: the data directory and the ports are start's (and doctor's)
business.

${configHelp}`;

async function checkConfig(argv: readonly string[]): Promise<number> {
  const { values } = parseCommand(argv, {}, { config: true });
  if (values.help) return printHelp(checkConfigHelp);
  let loaded: SourcedConfig;
  try {
    loaded = loadFromValues(values);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const problem of error.problems) console.error(`switchboard: ${configLine(problem)}`);
    return 2;
  }
  console.log(`config OK: ${loaded.file === undefined ? "no config file (defaults)" : loaded.file}`);
  for (const [key, source] of loaded.sources) {
    const value = key in loaded.config ? loaded.config[key as keyof Config] : loaded.config.limits[key as never];
    console.log(`  ${key} = ${JSON.stringify(value)} (${describeSource(source)})`);
  }
  return 0;
}

// ---- noise-key ----------------------------------------------------------------------------------------------------

const noiseKeyHelp = `switchboard noise-key [--create] [--config FILE] [config flags]

Prints the public half of the server's Noise static key (64 hex digits), kept in dataDir/noise-static-key (mode 0600)
and made at the first start with tcpEncryption = "noise". Publish it where your clients are configured (PROTOCOL.md
section 19, key pinning): a client that pins it refuses any other server. --create makes the key now if the data
directory has none (to publish it before the first start). Exit 2 when there is no key and --create was not given.

${configHelp}`;

async function noiseKey(argv: readonly string[]): Promise<number> {
  const { values } = parseCommand(argv, { create: { type: "boolean" } }, { config: true });
  if (values.help) return printHelp(noiseKeyHelp);
  const config = loadFromValues(values).config;
  const { hex, loadNoiseStaticKey, readNoiseStaticKey } = await import("./noise-static-key.ts");
  let keyPair = readNoiseStaticKey(config.dataDir);
  if (keyPair === null && values.create === true) {
    prepareDataDirectory(config.dataDir);
    keyPair = loadNoiseStaticKey(config.dataDir);
  }
  if (keyPair === null) {
    console.error(`switchboard: noise-key: ${config.dataDir} has no Noise key yet (start the server, or --create)`);
    return 2;
  }
  console.log(hex(keyPair.publicKey));
  return 0;
}

// ---- version, help ------------------------------------------------------------------------------------------------

const versionHelp = `switchboard version (also switchboard --version, switchboard -v)

Prints the version of package.json, the Bun that runs it and the git commit when run from a checkout.`;

async function version(argv: readonly string[]): Promise<number> {
  const { values } = parseCommand(argv, {}, { config: false });
  if (values.help) return printHelp(versionHelp);
  console.log(versionLine());
  return 0;
}

function printHelp(text: string): number {
  console.log(text);
  return 0;
}

async function help(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, {}, { config: false, positionals: 1 });
  const [topic] = positionals;
  if (values.help || topic === undefined) return printHelp(usage);
  if (topic in commands)
    return commands[topic]!.help === "" ? commands[topic]!.run(["--help"]) : printHelp(commands[topic]!.help);
  if (adminCommandNames.has(topic)) return runAdminCommand(topic, ["--help"]);
  throw new UsageError(`no command ${topic}`);
}

// Commands whose help is "" parse their own arguments (and answer --help themselves).
const commands: Record<string, Command> = {
  start: { help: startHelp, run: start },
  "check-config": { help: checkConfigHelp, run: checkConfig },
  "noise-key": { help: noiseKeyHelp, run: noiseKey },
  version: { help: versionHelp, run: version },
  help: { help: usage, run: help },
  doctor: {
    help: "",
    run: async (argv) => (await import("./doctor.ts")).runDoctorCommand([...argv]),
  },
  chat: {
    help: "",
    run: async (argv) => (await import("../client/chat.ts")).runChat(argv),
  },
};

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  // The operator's commands (invite, account, sessions, kick, drain) parse their own arguments: admin-command.ts.
  if (command !== undefined && adminCommandNames.has(command)) return await runAdminCommand(command, rest);
  try {
    if (command === undefined || command === "--help" || command === "-h") return printHelp(usage);
    if (command === "--version" || command === "-v") return await version(rest);
    const found = commands[command];
    if (found === undefined) {
      const what = command.startsWith("-") ? `unknown option ${command}` : `unknown command ${command}`;
      throw new UsageError(`${what} (switchboard --help lists the commands)`);
    }
    try {
      return await found.run(rest);
    } catch (error) {
      if (error instanceof UsageError)
        throw new UsageError(`${command}: ${error.message} (switchboard ${command} --help)`);
      throw error;
    }
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError) {
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
