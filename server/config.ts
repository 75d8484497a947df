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
  /** Lowest level written to the JSON-lines log on stdout: debug, info, warn, error. */
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

/** A host name, or an IPv4 or IPv6 address, in canonical form (lower case, no brackets, no trailing dot). */
const serverNamePattern = /^[a-z0-9_:-][a-z0-9_.:-]*$/;

/** The entries of the serverNames key, in canonical form (see canonicalServerName). */
export function configuredServerNames(list: string): string[] {
  return list
    .split(",")
    .map((entry) => canonicalServerName(entry))
    .filter(Boolean);
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
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

type RawValues = Record<string, unknown>;

function coerce(key: string, value: unknown, template: unknown): unknown {
  if (typeof template === "number") {
    const number = typeof value === "string" ? Number(value.replaceAll("_", "")) : value;
    if (typeof number !== "number" || !Number.isFinite(number)) throw new ConfigError(`${key}: expected a number`);
    return number;
  }
  if (typeof template === "string") {
    if (typeof value !== "string" && typeof value !== "number") throw new ConfigError(`${key}: expected a string`);
    return String(value);
  }
  return value;
}

function validate(config: Config): Config {
  const oneOf = (key: string, value: string, allowed: readonly string[]) => {
    if (!allowed.includes(value)) throw new ConfigError(`${key}: expected one of ${allowed.join(", ")}, got ${value}`);
  };
  oneOf("synchronous", config.synchronous, ["normal", "full"]);
  oneOf("registration", config.registration, ["invite", "open", "closed"]);
  oneOf("logLevel", config.logLevel, ["debug", "info", "warn", "error"]);
  oneOf("webClient", config.webClient, ["on", "off"]);
  if (!config.wsPath.startsWith("/")) throw new ConfigError("wsPath: must start with /");
  for (const key of ["port", "adminPort", "wsPort"] as const) {
    if (!Number.isInteger(config[key]) || config[key] < 0 || config[key] > 65535)
      throw new ConfigError(`${key}: 0..65535`);
  }
  if (!Number.isInteger(config.listeners) || config.listeners < 1 || config.listeners > 64) {
    throw new ConfigError("listeners: 1..64");
  }
  const names = configuredServerNames(config.serverNames);
  if (names.length === 0) throw new ConfigError("serverNames: at least one name");
  for (const name of names) {
    if (name.length > serverNameBytesMax || !serverNamePattern.test(name)) {
      throw new ConfigError(`serverNames: ${name} is not a host name or IP address (letters, digits, . - : _)`);
    }
    if (name.includes(":") && isIP(name) !== 6) {
      throw new ConfigError(`serverNames: ${name}: a name or address without a port`);
    }
  }
  try {
    assertLimits(config.limits);
  } catch (caught) {
    throw new ConfigError((caught as Error).message);
  }
  return config;
}

/** Builds the config from layered sources. `file` may be undefined (no file); a named file must exist. */
export function loadConfig(options: {
  file?: string | undefined;
  env?: Record<string, string | undefined>;
  flags?: RawValues;
  base?: Partial<Config> & { limits?: Partial<Limits> };
}): Config {
  const server: RawValues = { ...defaultConfig, ...options.base };
  const limits: RawValues = { ...defaultLimits, ...options.base?.limits };
  const apply = (source: string, key: string, value: unknown) => {
    if ((serverKeys as string[]).includes(key)) {
      server[key] = coerce(`${source} ${key}`, value, (defaultConfig as unknown as RawValues)[key]);
    } else if ((limitKeys as string[]).includes(key)) {
      limits[key] = coerce(`${source} ${key}`, value, 0);
    } else {
      throw new ConfigError(`${source}: unknown key ${key}`);
    }
  };

  if (options.file !== undefined) {
    if (!existsSync(options.file)) throw new ConfigError(`config file ${options.file} not found`);
    let parsed: RawValues;
    try {
      parsed = Bun.TOML.parse(readFileSync(options.file, "utf8")) as RawValues;
    } catch (caught) {
      throw new ConfigError(`config file ${options.file}: ${(caught as Error).message}`);
    }
    for (const [key, value] of Object.entries(parsed)) {
      if (key === "limits" && typeof value === "object" && value !== null) {
        for (const [limitKey, limitValue] of Object.entries(value as RawValues)) {
          if (!(limitKeys as string[]).includes(limitKey))
            throw new ConfigError(`${options.file}: unknown limit ${limitKey}`);
          apply(options.file, limitKey, limitValue);
        }
      } else {
        apply(options.file, key, value);
      }
    }
  }
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (!name.startsWith("SWITCHBOARD_") || value === undefined || name === "SWITCHBOARD_CONFIG") continue;
    apply("environment", camelFromSnake(name.slice("SWITCHBOARD_".length)), value);
  }
  for (const [name, value] of Object.entries(options.flags ?? {})) apply("flag", camelFromKebab(name), value);

  const config = { ...server, limits: Object.freeze(limits as unknown as Limits) } as unknown as Config;
  return Object.freeze(validate({ ...config, dataDir: resolve(config.dataDir) }));
}
