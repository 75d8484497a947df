import { describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { defaultLimits } from "../protocol/index.ts";
import {
  ConfigError,
  configuredServerNames,
  defaultConfig,
  describeSource,
  loadConfig,
  loadSourcedConfig,
  tomlErrorPosition,
} from "./config.ts";
import { temporaryDirectory } from "./test-kit.ts";

describe("config", () => {
  test("defaults need nothing", () => {
    const config = loadConfig({});
    expect(config.port).toBe(defaultConfig.port);
    expect(config.limits).toEqual(defaultLimits);
    expect(Object.isFrozen(config)).toBe(true);
  });

  test("file < environment < flags, for server keys and limits alike", () => {
    const directory = temporaryDirectory();
    try {
      const file = join(directory, "switchboard.toml");
      writeFileSync(
        file,
        'port = 1000\nregistration = "open"\n[limits]\nqueueMessagesMax = 500\nrateBurstStanzas = 900\n',
      );
      const config = loadConfig({
        file,
        env: { SWITCHBOARD_PORT: "2000", SWITCHBOARD_QUEUE_MESSAGES_MAX: "600", HOME: "/x" },
        flags: { port: "3000" },
      });
      expect(config.port).toBe(3000);
      expect(config.registration).toBe("open");
      expect(config.limits.queueMessagesMax).toBe(600);
      expect(config.limits.rateBurstStanzas).toBe(900);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  test("bad values are refused with the key named", () => {
    expect(() => loadConfig({ flags: { port: "70000" } })).toThrow(ConfigError);
    expect(() => loadConfig({ flags: { registration: "maybe" } })).toThrow(/registration/);
    expect(() => loadConfig({ flags: { "no-such-key": "1" } })).toThrow(/unknown key noSuchKey/);
    expect(() => loadConfig({ env: { SWITCHBOARD_FRAME_BYTES_MAX: "ten" } })).toThrow(/frameBytesMax/);
    // A relation between limits: the payload must fit in a frame.
    expect(() => loadConfig({ flags: { "payload-bytes-max": "70000" } })).toThrow(/payloadBytesMax/);
    expect(() => loadConfig({ file: "/nonexistent/switchboard.toml" })).toThrow(/not found/);
    expect(() => loadConfig({ flags: { partitions: "0" } })).toThrow(/partitions: 1\.\.1024/);
    expect(() => loadConfig({ env: { SWITCHBOARD_PARTITIONS: "1025" } })).toThrow(/partitions/);
    expect(loadConfig({ flags: { partitions: "16" } }).partitions).toBe(16);
  });

  test("serverNames: canonical names or addresses, no ports, not empty", () => {
    const names = loadConfig({ flags: { "server-names": " Chat.Example.com. , [::1],10.0.0.5" } });
    expect(configuredServerNames(names.serverNames)).toEqual(["chat.example.com", "::1", "10.0.0.5"]);
    for (const bad of ["", " , ", "chat.example.com:443", "*", "chat example.com", "x".repeat(254)]) {
      expect(() => loadConfig({ flags: { "server-names": bad } })).toThrow(/serverNames/);
    }
  });

  test("sources: each value names the file line, environment variable or flag it came from", () => {
    const directory = temporaryDirectory();
    try {
      const file = join(directory, "switchboard.toml");
      writeFileSync(file, 'port = 1000\n\n[limits]\n  queueMessagesMax = 500 # indented\n"rateBurstStanzas" = 900\n');
      const loaded = loadSourcedConfig({
        file,
        env: { SWITCHBOARD_PORT: "2000", SWITCHBOARD_CONFIG: file, OTHER: "x" },
        flags: { "log-level": "debug" },
      });
      expect(loaded.file).toBe(file);
      expect([...loaded.sources].map(([key, source]) => [key, describeSource(source)])).toEqual([
        ["port", "environment SWITCHBOARD_PORT"],
        ["queueMessagesMax", `file ${file} line 4`],
        ["rateBurstStanzas", `file ${file} line 5`],
        ["logLevel", "flag --log-level"],
      ]);
      expect(loaded.config.port).toBe(2000);
      expect(loadSourcedConfig({}).sources.size).toBe(0);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  test("every problem is collected; relations name the values involved and their sources", () => {
    let caught: unknown;
    try {
      loadConfig({ env: { SWITCHBOARD_LISTENERS: "many" }, flags: { "no-such-key": "1", port: "x" } });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).problems).toEqual([
      'listeners: expected a number, got "many" (environment SWITCHBOARD_LISTENERS)',
      "unknown key noSuchKey (flag --no-such-key)",
      'port: expected a number, got "x" (flag --port)',
    ]);
    expect((caught as ConfigError).message).toBe((caught as ConfigError).problems.join("; "));
    expect(() => loadConfig({ env: { SWITCHBOARD_HANDLE_BYTES_MAX: "300" } })).toThrow(
      "limits: handleBytesMax <= stringBytesMax does not hold (handleBytesMax = 300 from environment SWITCHBOARD_HANDLE_BYTES_MAX, stringBytesMax = 256 from the default)",
    );
    expect(() => loadConfig({ flags: { "admin-port": "-1", listeners: "0" } })).toThrow(
      "adminPort: 0..65535 (adminPort = -1 from flag --admin-port); listeners: 1..64 (listeners = 0 from flag --listeners)",
    );
  });

  test("TOML syntax errors: the line is exact, the column points at the token the message names", () => {
    const position = (text: string) => {
      try {
        Bun.TOML.parse(text);
      } catch (error) {
        return tomlErrorPosition(text, (error as Error).message);
      }
      throw new Error(`parsed: ${text}`);
    };
    // Valid multi-line values before the error do not mislead the scan (a prefix that cuts them fails too).
    const multiLine = 'a = [\n  1,\n  2,\n]\nb = """\nx\n"""\n';
    expect(position(`${multiLine}c = 1\nc = 2\n`)).toEqual({ line: 9, column: 1 });
    expect(position(`${multiLine}d e\n`)).toEqual({ line: 8, column: 3 });
    expect(position('port = 1\nhost = "x\nother = 2\n')).toEqual({ line: 2, column: 8 });
    expect(position("[limits]\nx = [1,\n")).toEqual({ line: 2, column: 5 });
    expect(position("= 1\n")?.line).toBe(1);
    const directory = temporaryDirectory();
    try {
      const file = join(directory, "bad.toml");
      writeFileSync(file, "port = 1\nport = 2\n");
      expect(() => loadConfig({ file })).toThrow(
        `config file ${file} line 2, column 1: TOML syntax error: Cannot redefine key 'port'`,
      );
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
