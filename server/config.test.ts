import { describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { defaultLimits } from "../protocol/index.ts";
import { ConfigError, configuredServerNames, defaultConfig, loadConfig } from "./config.ts";
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
  });

  test("serverNames: canonical names or addresses, no ports, not empty", () => {
    const names = loadConfig({ flags: { "server-names": " Chat.Example.com. , [::1],10.0.0.5" } });
    expect(configuredServerNames(names.serverNames)).toEqual(["chat.example.com", "::1", "10.0.0.5"]);
    for (const bad of ["", " , ", "chat.example.com:443", "*", "chat example.com", "x".repeat(254)]) {
      expect(() => loadConfig({ flags: { "server-names": bad } })).toThrow(/serverNames/);
    }
  });
});
