// Configuration: defaults < TOML file < environment (SWITCHBOARD_*) < command-line flags. The result is frozen and
// checked once at start; a bad value stops the start with a message naming the key.
//
// Keys are the same everywhere, in camelCase in TOML (`dataDir`, `[limits] queueMessagesMax`), in
// SCREAMING_SNAKE_CASE after SWITCHBOARD_ in the environment (SWITCHBOARD_DATA_DIR, SWITCHBOARD_QUEUE_MESSAGES_MAX),
// and in kebab-case as flags (--data-dir, --queue-messages-max).

import { existsSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import { join, resolve } from "node:path";
import {
  assertLimits,
  canonicalServerName,
  defaultLimits,
  type Limits,
  type RegistrationModeName,
  serverNameBytesMax,
} from "../protocol/index.ts";
import { partitionsDefault, partitionsMax, workersMax } from "../protocol/limits.ts";

export type Synchronous = "normal" | "full";
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Config {
  /** Address the TCP listener binds. */
  readonly host: string;
  /** TCP port; 0 picks a free one (tests). */
  readonly port: number;
  /** Directory for the SQLite database; created on start. */
  readonly dataDir: string;
  /** SQLite `synchronous`: normal survives a process crash, full also survives power loss (slower commits). */
  readonly synchronous: Synchronous;
  /** How accounts come to be: invite (operator-issued codes), open (development), closed. */
  readonly registration: RegistrationModeName;
  /** Lowest level written to the JSON-lines log: debug, info (both on stdout), warn, error (both on stderr). */
  readonly logLevel: LogLevel;
  /** Listeners sharing the port with SO_REUSEPORT (Bun's accept backlog is fixed at 512 per listener). */
  readonly listeners: number;
  /** Address of the admin HTTP listener (metrics, health); keep it on loopback or a private network. */
  readonly adminHost: string;
  /** Port of the admin HTTP listener; 0 disables it. */
  readonly adminPort: number;
  /** Address of the WebSocket listener (the same frames as TCP, in binary messages). */
  readonly wsHost: string;
  /** Port of the WebSocket listener; 0 disables it. */
  readonly wsPort: number;
  /** URL path that upgrades to WebSocket. */
  readonly wsPath: string;
  /**
   * Origins allowed to open a WebSocket, comma-separated (`https://chat.example.com,http://localhost:7422`); `*`
   * allows any. Empty: only the listener's own origin. Requests without an Origin header (non-browser clients) pass.
   */
  readonly wsOrigins: string;
  /** Serve the web chat page (client/web) at `/` of the WebSocket listener: `on` or `off`. */
  readonly webClient: string;
  /**
   * Names clients reach this server by, comma-separated (`chat.example.com,localhost`): a login, registration or
   * link is accepted only when it signs one of them (so a relay at another name gets wrongServer), and the WebSocket
   * listener answers only requests whose Host is one of them (DNS rebinding). `host` and `wsHost` are added when
   * they are specific addresses. (The admin listener answers loopback names, its own address and IP addresses.)
   */
  readonly serverNames: string;
  /**
   * On SIGTERM, how long /readyz answers 503 before the goaways go out, while sessions and new connections are still
   * served (a load balancer takes the node out meanwhile). 0: goaways at once; no wait either when adminPort is 0.
   */
  readonly lameDuckMs: number;
  /**
   * Reconnects per second a drain plans for: goaway retry hints are spread over sessions / this seconds (at most
   * goawayRetryAfterMsMax), so a small server's clients come back at once and a large one's in a paced stream.
   */
  readonly drainReconnectsPerSecond: number;
  /**
   * Worker processes `start` runs under one supervisor, sharing host:port with SO_REUSEPORT; 1 is one process
   * without a supervisor. 0: one process today; one per core (at most workersMax, 1 when port is 0) once routing
   * between workers is built. Above 1 is refused until then.
   */
  readonly workers: number;
  /**
   * Partitions of the queue data for a data directory that has none yet (fixed for its life afterwards: the
   * directory's partitions/count wins). Each partition is a SQLite file its owner keeps open: about 3 ms and 0.3 MiB
   * per partition at start. More partitions than workers ever run.
   */
  readonly partitions: number;
  /** Address of the media HTTP listener (encrypted blobs by hash, PROTOCOL.md "Media"). */
  readonly mediaHost: string;
  /**
   * Port of the media HTTP listener; 0 disables it (the default: it writes what clients upload to dataDir/media, up
   * to mediaAccountBytesMax per account, so an operator turns it on after planning that disk; OPERATIONS.md "Media").
   */
  readonly mediaPort: number;
  /**
   * The media listener's base URL as clients should reach it (`https://media.example.com`, behind a proxy), told in
   * every media grant; empty: clients use the host they dialed for chat and mediaPort.
   */
  readonly mediaUrl: string;
  /**
   * Encryption of the TCP listener: `noise` (PROTOCOL.md section 19; the server's static key is generated into
   * dataDir at first start), `tls` (tlsCertFile and tlsKeyFile), or `none`. `none` on an address other than
   * loopback needs `insecure = true`.
   */
  readonly tcpEncryption: string;
  /** Encryption of the WebSocket listener: `tls` (wss://, with tlsCertFile and tlsKeyFile) or `none`. */
  readonly wsEncryption: string;
  /** PEM certificate chain for TLS listeners; read at start and again on SIGHUP (a renewed certificate). */
  readonly tlsCertFile: string;
  /** PEM private key for TLS listeners; read at start and again on SIGHUP. */
  readonly tlsKeyFile: string;
  /**
   * `true` allows a plaintext listener on an address other than loopback (behind a TLS-terminating proxy, or on a
   * trusted network); the server then warns at every start. `false` refuses such a start.
   */
  readonly insecure: string;
  readonly limits: Limits;
}

export const defaultConfig: Config = Object.freeze({
  host: "127.0.0.1",
  port: 7420,
  dataDir: "./data",
  synchronous: "normal",
  registration: "invite",
  logLevel: "info",
  listeners: 1,
  adminHost: "127.0.0.1",
  adminPort: 7421,
  wsHost: "127.0.0.1",
  wsPort: 0,
  wsPath: "/ws",
  wsOrigins: "",
  webClient: "off",
  serverNames: "localhost,127.0.0.1,::1",
  lameDuckMs: 5_000,
  drainReconnectsPerSecond: 2_000,
  workers: 0,
  partitions: partitionsDefault,
  mediaHost: "127.0.0.1",
  mediaPort: 0,
  mediaUrl: "",
  tcpEncryption: "none",
  wsEncryption: "none",
  tlsCertFile: "",
  tlsKeyFile: "",
  insecure: "false",
  limits: defaultLimits,
});

/**
 * Keys a SIGHUP reload cannot change (the listeners, the store, and the wire limits that clients were told or that
 * sized structures at start); a reload that changes one keeps the running value and logs it. Every other key and
 * limit is reloadable.
 */
export const restartOnlyKeys: ReadonlySet<string> = new Set([
  "host",
  "port",
  "dataDir",
  "synchronous",
  "listeners",
  "adminHost",
  "adminPort",
  "wsHost",
  "wsPort",
  "wsPath",
  "webClient",
  // Read at start by the WebSocket listener; restart-only so that its Host check and the login check agree.
  "serverNames",
  // The supervisor spawns its workers once; a SIGHUP reaches the workers, not their number.
  "workers",
  // Used once, when a data directory gets its partitions.
  "partitions",
  "mediaHost",
  "mediaPort",
  // The listeners' kind; the certificate files' contents are read again on SIGHUP, their paths are fixed.
  "tcpEncryption",
  "wsEncryption",
  "tlsCertFile",
  "tlsKeyFile",
  "insecure",
  "frameBytesMax",
  "payloadBytesMax",
  "stringBytesMax",
  "handleBytesMax",
  "arrayItemsMax",
  "nestingDepthMax",
  "devicesPerAccountMax",
  "receiptClientIdsMax",
  "compressionBodyBytesMin",
  "timerTickMs",
  // The lag probe's timer is started once.
  "eventLoopProbeMs",
  "commitBatchRowsMax",
  "commitDelayMs",
  "directoryAccountsMax",
  "sweepIntervalMs",
]);

/**
 * Merges a freshly loaded config into the running one: reloadable keys take the new value, restart-only keys keep
 * the running one. Returns the result and the names of keys that changed, split by what happens to them.
 */
export function mergeReload(running: Config, next: Config): { config: Config; applied: string[]; ignored: string[] } {
  const applied: string[] = [];
  const ignored: string[] = [];
  const server: Record<string, unknown> = { ...running };
  const limits: Record<string, unknown> = { ...running.limits };
  for (const [key, value] of Object.entries(next)) {
    if (key === "limits" || (running as unknown as Record<string, unknown>)[key] === value) continue;
    if (restartOnlyKeys.has(key)) ignored.push(key);
    else {
      server[key] = value;
      applied.push(key);
    }
  }
  for (const [key, value] of Object.entries(next.limits)) {
    if ((running.limits as unknown as Record<string, unknown>)[key] === value) continue;
    if (restartOnlyKeys.has(key)) ignored.push(key);
    else {
      limits[key] = value;
      applied.push(key);
    }
  }
  const config = Object.freeze({ ...server, limits: Object.freeze(limits) }) as unknown as Config;
  return { config: validate(config), applied, ignored };
}

/** The lame duck and the drain after it must fit systemd's TimeoutStopSec (30 s in the unit). */
export const lameDuckMsMax = 15_000;

/** A host name, or an IPv4 or IPv6 address, in canonical form (lower case, no brackets, no trailing dot). */
const serverNamePattern = /^[a-z0-9_:-][a-z0-9_.:-]*$/;

/** The entries of the serverNames key, in canonical form (see canonicalServerName). */
export function configuredServerNames(list: string): string[] {
  return list
    .split(",")
    .map((entry) => canonicalServerName(entry))
    .filter(Boolean);
}

/**
 * A config that cannot be used. `problems` lists every problem found (check-config prints one a line); the message
 * joins them into the one line `start` prints.
 */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  readonly problems: readonly string[];

  constructor(problems: string | readonly string[]) {
    const list = typeof problems === "string" ? [problems] : problems;
    super(list.join("; "));
    this.problems = list;
  }
}

export function databasePath(config: Config): string {
  return join(config.dataDir, "switchboard.sqlite");
}

const serverKeys = Object.keys(defaultConfig).filter((key) => key !== "limits") as Array<keyof Config>;
const limitKeys = Object.keys(defaultLimits) as Array<keyof Limits>;

function camelFromSnake(snake: string): string {
  return snake.toLowerCase().replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
}
function camelFromKebab(kebab: string): string {
  return kebab.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

/** Where a value came from: named in errors, and listed by `switchboard check-config`. */
export type ConfigSource =
  | { readonly kind: "default" }
  | { readonly kind: "file"; readonly path: string; readonly line: number | undefined }
  | { readonly kind: "environment"; readonly name: string }
  | { readonly kind: "flag"; readonly name: string };

/** `the default`, `file /etc/switchboard/switchboard.toml line 4`, `environment SWITCHBOARD_PORT`, `flag --port`. */
export function describeSource(source: ConfigSource): string {
  switch (source.kind) {
    case "default":
      return "the default";
    case "file":
      return source.line === undefined ? `file ${source.path}` : `file ${source.path} line ${source.line}`;
    case "environment":
      return `environment ${source.name}`;
    case "flag":
      return `flag ${source.name}`;
  }
}

/** A loaded config, the file it read (if any), and where each key's value came from (keys not listed: default). */
export interface SourcedConfig {
  readonly config: Config;
  readonly file: string | undefined;
  readonly sources: ReadonlyMap<string, ConfigSource>;
}

type RawValues = Record<string, unknown>;

function coerce(key: string, value: unknown, template: unknown): unknown {
  if (typeof template === "number") {
    const number = typeof value === "string" ? Number(value.replaceAll("_", "")) : value;
    if (typeof number !== "number" || !Number.isFinite(number)) {
      throw new ConfigError(`${key}: expected a number, got ${JSON.stringify(value)}`);
    }
    return number;
  }
  if (typeof template === "string") {
    // `insecure = true` in TOML is a boolean; the key holds "true"/"false" like every flag and variable does.
    if (typeof value === "boolean") return String(value);
    if (typeof value !== "string" && typeof value !== "number") {
      throw new ConfigError(`${key}: expected a string, got ${JSON.stringify(value)}`);
    }
    return String(value);
  }
  return value;
}

/** Loopback addresses and names: plaintext there never leaves the host. */
export function isLoopbackHost(host: string): boolean {
  const name = canonicalServerName(host);
  return name === "localhost" || name === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** The listeners that would carry plaintext on an address other than loopback (warned at start when insecure). */
export function plaintextExposed(config: Config): string[] {
  const exposed: string[] = [];
  if (config.tcpEncryption === "none" && !isLoopbackHost(config.host)) exposed.push(`tcp ${config.host}`);
  if (config.wsPort !== 0 && config.wsEncryption === "none" && !isLoopbackHost(config.wsHost)) {
    exposed.push(`websocket ${config.wsHost}`);
  }
  return exposed;
}

function encryptionProblems(config: Config): string[] {
  const problems: string[] = [];
  const tls = config.tcpEncryption === "tls" || (config.wsPort !== 0 && config.wsEncryption === "tls");
  if (tls && (config.tlsCertFile === "" || config.tlsKeyFile === "")) {
    problems.push("tlsCertFile, tlsKeyFile: a TLS listener needs both (PEM files)");
  }
  const exposed = plaintextExposed(config);
  if (exposed.length > 0 && config.insecure !== "true") {
    problems.push(
      `insecure: plaintext on ${exposed.join(" and ")} (not loopback): set tcpEncryption = "noise" or "tls", ` +
        `wsEncryption = "tls", or insecure = true to allow it (OPERATIONS.md "Transport encryption")`,
    );
  }
  return problems;
}

/** Every problem of a config that breaks no type: values out of range, and relations between limits. */
function configProblems(config: Config): string[] {
  const problems: string[] = [];
  const oneOf = (key: string, value: string, allowed: readonly string[]) => {
    if (!allowed.includes(value)) problems.push(`${key}: expected one of ${allowed.join(", ")}, got ${value}`);
  };
  oneOf("synchronous", config.synchronous, ["normal", "full"]);
  oneOf("registration", config.registration, ["invite", "open", "closed"]);
  oneOf("logLevel", config.logLevel, ["debug", "info", "warn", "error"]);
  oneOf("webClient", config.webClient, ["on", "off"]);
  oneOf("tcpEncryption", config.tcpEncryption, ["none", "noise", "tls"]);
  oneOf("wsEncryption", config.wsEncryption, ["none", "tls"]);
  oneOf("insecure", config.insecure, ["true", "false"]);
  problems.push(...encryptionProblems(config));
  if (!config.wsPath.startsWith("/")) problems.push("wsPath: must start with /");
  if (config.mediaUrl !== "" && !/^https?:\/\/[^/\s]+(\/[^\s]*[^/\s])?$/.test(config.mediaUrl)) {
    problems.push("mediaUrl: an http(s) URL without a trailing slash, or empty");
  }
  for (const key of ["port", "adminPort", "wsPort", "mediaPort"] as const) {
    if (!Number.isInteger(config[key]) || config[key] < 0 || config[key] > 65535) problems.push(`${key}: 0..65535`);
  }
  if (!Number.isInteger(config.listeners) || config.listeners < 1 || config.listeners > 64) {
    problems.push("listeners: 1..64");
  }
  if (!Number.isInteger(config.lameDuckMs) || config.lameDuckMs < 0 || config.lameDuckMs > lameDuckMsMax) {
    problems.push(`lameDuckMs: 0..${lameDuckMsMax}`);
  }
  if (!Number.isInteger(config.drainReconnectsPerSecond) || config.drainReconnectsPerSecond < 1) {
    problems.push("drainReconnectsPerSecond: a whole number from 1");
  }
  if (!Number.isInteger(config.workers) || config.workers < 0 || config.workers > workersMax) {
    problems.push(`workers: 0..${workersMax} (0: one per core)`);
  } else if (config.workers > 1 && config.port === 0) {
    problems.push("workers: more than 1 needs a fixed port (with port 0 each worker would listen on its own port)");
  }
  if (!Number.isInteger(config.partitions) || config.partitions < 1 || config.partitions > partitionsMax) {
    problems.push(`partitions: 1..${partitionsMax}`);
  }
  const names = configuredServerNames(config.serverNames);
  if (names.length === 0) problems.push("serverNames: at least one name");
  for (const name of names) {
    if (name.length > serverNameBytesMax || !serverNamePattern.test(name)) {
      problems.push(`serverNames: ${name} is not a host name or IP address (letters, digits, . - : _)`);
    } else if (name.includes(":") && isIP(name) !== 6) {
      problems.push(`serverNames: ${name}: a name or address without a port`);
    }
  }
  try {
    assertLimits(config.limits);
  } catch (caught) {
    problems.push((caught as Error).message);
  }
  return problems;
}

function validate(config: Config): Config {
  const problems = configProblems(config);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Line numbers of the keys of a TOML text, as `key` or `limits.key` (tables and dotted keys). A plain scan. */
function tomlKeyLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  let table = "";
  text.split("\n").forEach((line, index) => {
    const header = /^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]/.exec(line);
    if (header !== null) {
      table = header[1]!;
      return;
    }
    const key = /^\s*["']?([A-Za-z0-9_.-]+)["']?\s*=/.exec(line);
    if (key !== null) lines.set(table === "" ? key[1]! : `${table}.${key[1]}`, index + 1);
  });
  return lines;
}

/** Lines a TOML error's position is searched over at most (the scan below parses up to this many prefixes). */
const tomlScanLinesMax = 5000;

/**
 * Where a TOML syntax error is. Bun's parser (Bun.TOML.parse) reports none: its error's line and column are those of
 * the JavaScript caller. So: the error is on the line after the longest prefix of whole lines that parses (every
 * longer prefix holds the broken line too), and the column is that of the token the message quotes (`found 'b'`,
 * `key 'port'`), of the opening quote or bracket of an unterminated string or array, or else of the line's first
 * character. Adding a TOML parser that reports positions was rejected: start and check-config must parse with the
 * same parser, and a second one could accept or read values differently.
 */
export function tomlErrorPosition(text: string, message: string): { line: number; column: number } | undefined {
  const lines = text.split("\n");
  if (lines.length > tomlScanLinesMax) return undefined;
  let parsed = 0;
  for (let count = lines.length - 1; count > 0; count--) {
    try {
      Bun.TOML.parse(lines.slice(0, count).join("\n"));
      parsed = count;
      break;
    } catch {
      // This prefix fails too: the error is at or before its last line.
    }
  }
  const broken = lines[parsed] ?? "";
  const quoted = [...message.matchAll(/'([^']+)'/g)].map((match) => match[1]!);
  let column = -1;
  for (const token of quoted.reverse()) {
    column = broken.indexOf(token);
    if (column >= 0) break;
  }
  if (column < 0 && /string/i.test(message)) column = broken.search(/["']/);
  if (column < 0 && /array/i.test(message)) column = broken.indexOf("[");
  if (column < 0) column = Math.max(0, broken.search(/\S/));
  return { line: parsed + 1, column: column + 1 };
}

/** Reads and parses a TOML config file; a syntax error names the file, line and column. */
function readTomlFile(file: string): { values: RawValues; keyLines: Map<string, number> } {
  if (!existsSync(file)) throw new ConfigError(`config file ${file} not found`);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (caught) {
    throw new ConfigError(`config file ${file}: ${(caught as Error).message}`);
  }
  try {
    return { values: Bun.TOML.parse(text) as RawValues, keyLines: tomlKeyLines(text) };
  } catch (caught) {
    const message = (caught as Error).message.replace(/^TOML Parse error:\s*/, "");
    const position = tomlErrorPosition(text, message);
    const where = position === undefined ? "" : ` line ${position.line}, column ${position.column}`;
    throw new ConfigError(`config file ${file}${where}: TOML syntax error: ${message}`);
  }
}

/** Builds the config from layered sources. `file` may be undefined (no file); a named file must exist. */
export function loadConfig(options: {
  file?: string | undefined;
  env?: Record<string, string | undefined>;
  flags?: RawValues;
  base?: Partial<Config> & { limits?: Partial<Limits> };
}): Config {
  return loadSourcedConfig(options).config;
}

/**
 * loadConfig, and where each value came from. Every problem is collected before it throws: first the keys and types
 * of every source, then (when those are sound) the values and the relations between limits, each problem followed by
 * the values it involves and their sources.
 */
export function loadSourcedConfig(options: {
  file?: string | undefined;
  env?: Record<string, string | undefined>;
  flags?: RawValues;
  base?: Partial<Config> & { limits?: Partial<Limits> };
}): SourcedConfig {
  const server: RawValues = { ...defaultConfig, ...options.base };
  const limits: RawValues = { ...defaultLimits, ...options.base?.limits };
  const sources = new Map<string, ConfigSource>();
  const problems: string[] = [];
  const apply = (source: ConfigSource, key: string, value: unknown) => {
    const from = ` (${describeSource(source)})`;
    try {
      if ((serverKeys as string[]).includes(key)) {
        server[key] = coerce(key, value, (defaultConfig as unknown as RawValues)[key]);
      } else if ((limitKeys as string[]).includes(key)) {
        limits[key] = coerce(key, value, 0);
      } else {
        throw new ConfigError(`unknown key ${key}`);
      }
      sources.set(key, source);
    } catch (caught) {
      if (!(caught instanceof ConfigError)) throw caught;
      problems.push(`${caught.message}${from}`);
    }
  };

  if (options.file !== undefined) {
    const { values, keyLines } = readTomlFile(options.file);
    const fileSource = (key: string): ConfigSource => ({ kind: "file", path: options.file!, line: keyLines.get(key) });
    for (const [key, value] of Object.entries(values)) {
      if (key === "limits" && typeof value === "object" && value !== null && !Array.isArray(value)) {
        for (const [limitKey, limitValue] of Object.entries(value as RawValues)) {
          const source = fileSource(`limits.${limitKey}`);
          if (!(limitKeys as string[]).includes(limitKey)) {
            problems.push(`unknown limit ${limitKey} (${describeSource(source)})`);
          } else {
            apply(source, limitKey, limitValue);
          }
        }
      } else {
        apply(fileSource(key), key, value);
      }
    }
  }
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (!name.startsWith("SWITCHBOARD_") || value === undefined || name === "SWITCHBOARD_CONFIG") continue;
    apply({ kind: "environment", name }, camelFromSnake(name.slice("SWITCHBOARD_".length)), value);
  }
  for (const [name, value] of Object.entries(options.flags ?? {})) {
    apply({ kind: "flag", name: `--${name}` }, camelFromKebab(name), value);
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const built = { ...server, limits: Object.freeze(limits as unknown as Limits) } as unknown as Config;
  const config = Object.freeze({ ...built, dataDir: resolve(built.dataDir) });
  const found = configProblems(config);
  if (found.length > 0) throw new ConfigError(found.map((problem) => withValues(problem, config, sources)));
  return { config, file: options.file, sources };
}

/** The problem, then `(key = value from source, ...)` for every config key it names. */
function withValues(problem: string, config: Config, sources: ReadonlyMap<string, ConfigSource>): string {
  const named = new Set(problem.match(/\b[a-z][A-Za-z]+\b/g) ?? []);
  const shown: string[] = [];
  for (const key of named) {
    const value = (serverKeys as string[]).includes(key)
      ? (config as unknown as RawValues)[key]
      : (limitKeys as string[]).includes(key)
        ? (config.limits as unknown as RawValues)[key]
        : undefined;
    if (value === undefined) continue;
    shown.push(`${key} = ${JSON.stringify(value)} from ${describeSource(sources.get(key) ?? { kind: "default" })}`);
  }
  return shown.length === 0 ? problem : `${problem} (${shown.join(", ")})`;
}
