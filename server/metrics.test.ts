import { expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { loadConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { startServer } from "./server.ts";
import { temporaryDirectory } from "./test-kit.ts";

test("OPERATIONS.md explains every metric the server exposes", async () => {
  const dataDir = temporaryDirectory();
  const server = await startServer(loadConfig({ base: { port: 0, adminPort: 0, dataDir } }), {
    log: createLogger("warn", () => {}),
  });
  try {
    const names = [...(await server.context.metrics.renderFresh()).matchAll(/^# TYPE (\w+) /gm)].map(
      (match) => match[1]!,
    );
    expect(names.length).toBeGreaterThan(15);
    const document = readFileSync(new URL("../OPERATIONS.md", import.meta.url), "utf8");
    expect(names.filter((name) => !document.includes(`\`${name}\``))).toEqual([]);
  } finally {
    await server.stop({ timeoutMs: 100 });
    rmSync(dataDir, { recursive: true, force: true });
  }
});
