// The operator's lifecycle as real processes: SIGHUP reloads handler code and config with every connection kept (and
// a failed reload shows in /metrics), SIGTERM drains (the lame duck with /readyz 503, then goaway with a retry-after
// jittered over a window sized to the sessions, commit, exit 0) without losing an acknowledged message, and the
// admin HTTP endpoints; several listeners share one port.

import { afterEach, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { defaultLimits, ErrorCode } from "../protocol/index.ts";
import { defaultConfig } from "./config.ts";
import { type ServerProcess, startServerProcess } from "./fixtures/server-process.ts";
import { drainWindowMs } from "./session-table.ts";
import { bytesOf, freePort, newDeviceKey, RawClient, temporaryDirectory, textOf, waitFor } from "./test-kit.ts";

const repositoryRoot = new URL("..", import.meta.url).pathname;
const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function scratch(): string {
  const directory = temporaryDirectory();
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

async function serverProcess(flags: Record<string, string | number>, cli?: string): Promise<ServerProcess> {
  const server = await startServerProcess(
    { port: 0, registration: "open", "admin-port": 0, "log-level": "info", ...flags },
    cli,
  );
  cleanups.push(() => {
    server.process.kill("SIGKILL");
  });
  return server;
}

async function metricsText(adminPort: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  expect(response.status).toBe(200);
  return response.text();
}

/** The value of one series (name with its labels, as written) in a scrape; undefined when absent. */
function seriesValue(text: string, series: string): number | undefined {
  const line = text.split("\n").find((entry) => entry.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Bounded polling of the admin listener until `predicate` holds for a scrape. */
async function waitForMetrics(adminPort: number, predicate: (text: string) => boolean, what: string) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const text = await metricsText(adminPort);
    if (predicate(text)) return text;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${text}`);
    await Bun.sleep(20);
  }
}

async function connect(port: number): Promise<RawClient> {
  const client = await RawClient.connect(port, { limits: defaultLimits });
  cleanups.push(() => client.close());
  return client;
}

describe("SIGHUP reload", () => {
  test("new handler code answers sessions that stayed connected; reloadable config applies", async () => {
    // Run the server from a copy of the code, so that the test can change the code on disk.
    const copy = scratch();
    for (const folder of ["protocol", "storage", "server", "client"])
      cpSync(join(repositoryRoot, folder), join(copy, folder), { recursive: true });
    cpSync(join(repositoryRoot, "package.json"), join(copy, "package.json"));
    symlinkSync(join(repositoryRoot, "node_modules"), join(copy, "node_modules"));
    const dataDir = join(copy, "data");
    mkdirSync(dataDir);
    const configFile = join(copy, "switchboard.toml");
    writeFileSync(configFile, "[limits]\nrateBurstStanzas = 400\n");
    const server = await serverProcess({ "data-dir": dataDir, config: configFile }, join(copy, "server", "cli.ts"));

    const alice = await connect(server.port);
    await alice.register("alice");
    const bob = await connect(server.port);
    await bob.register("bob");

    const connectionFile = join(copy, "server", "connection.ts");
    const source = readFileSync(connectionFile, "utf8");
    const marker = "is not expected now";
    expect(source).toContain(marker);
    writeFileSync(connectionFile, source.replace(marker, "is not expected now (generation two)"));
    writeFileSync(configFile, "[limits]\nrateBurstStanzas = 300\nsweepIntervalMs = 1000\n");
    server.process.kill("SIGHUP");
    await waitFor(() => server.lines.some((line) => line.event === "reloaded"), 5000, "reloaded log line");
    const reloaded = server.lines.find((line) => line.event === "reloaded")!;
    expect(reloaded.generation).toBe(2);
    expect(reloaded.applied).toEqual(["rateBurstStanzas"]);
    expect(reloaded.needRestart).toEqual(["sweepIntervalMs"]);

    // Both sessions are still connected, messages still flow, and the new code answers.
    expect(alice.closed || bob.closed).toBe(false);
    alice.send(bob.account, bytesOf("after reload"));
    await alice.next("serverAck");
    expect(textOf((await bob.next("deliver")).payload)).toBe("after reload");
    alice.sendStanza({ kind: "queueEmpty" }); // a server-only stanza: the handler refuses it
    const error = await alice.next("error");
    expect(error.code).toBe(ErrorCode.unexpectedStanza);
    expect(error.message).toContain("(generation two)");
  });

  test("every failed reload counts in /metrics, and the documented alert fires until a reload succeeds", async () => {
    const directory = scratch();
    const configFile = join(directory, "switchboard.toml");
    writeFileSync(configFile, "[limits]\nrateBurstStanzas = 400\n");
    const adminPort = freePort();
    const server = await serverProcess({
      "data-dir": join(directory, "data"),
      config: configFile,
      "admin-port": adminPort,
    });
    const alert = documentedAlert("SwitchboardReloadFailed");
    const before = await metricsText(adminPort);
    // Both series exist from the start, at 0, so that increase() sees the first failure.
    expect(seriesValue(before, 'switchboard_reloads_total{result="ok"}')).toBe(0);
    expect(seriesValue(before, 'switchboard_reloads_total{result="failed"}')).toBe(0);
    expect(alert.fires(before)).toBe(false);

    // TOML that does not parse, an unknown key, limits that break a relation: each is refused, each counts.
    const broken = ["[limits\n", "noSuchKey = 1\n", "[limits]\npayloadBytesMax = 70000\n"];
    for (const [index, text] of broken.entries()) {
      writeFileSync(configFile, text);
      server.process.kill("SIGHUP");
      await waitForMetrics(
        adminPort,
        (scrape) => seriesValue(scrape, 'switchboard_reloads_total{result="failed"}') === index + 1,
        `reload failure ${index + 1}`,
      );
    }
    const failed = await metricsText(adminPort);
    expect(seriesValue(failed, 'switchboard_reloads_total{result="ok"}')).toBe(0);
    expect(seriesValue(failed, "switchboard_config_last_reload_successful")).toBe(0);
    expect(alert.fires(failed)).toBe(true);

    writeFileSync(configFile, "[limits]\nrateBurstStanzas = 300\n");
    server.process.kill("SIGHUP");
    const fixed = await waitForMetrics(
      adminPort,
      (scrape) => seriesValue(scrape, 'switchboard_reloads_total{result="ok"}') === 1,
      "the good reload",
    );
    expect(seriesValue(fixed, 'switchboard_reloads_total{result="failed"}')).toBe(3);
    expect(seriesValue(fixed, "switchboard_config_last_reload_successful")).toBe(1);
    expect(alert.fires(fixed)).toBe(false);
  });
});

/**
 * An example alert of OPERATIONS.md whose expression is `<series> == <value>`, evaluated against a scrape: the test
 * checks the documented expression against the series the server writes, not a copy of it.
 */
function documentedAlert(name: string): { fires(scrape: string): boolean } {
  const document = readFileSync(join(repositoryRoot, "OPERATIONS.md"), "utf8");
  const match = new RegExp(`- alert: ${name}\\b[^\\n]*\\n\\s+expr: ([^\\n]+)`).exec(document);
  expect(match).not.toBeNull();
  const expression = /^(\w+(?:\{[^}]*\})?) == (\d+)$/.exec(match![1]!.trim());
  expect(expression).not.toBeNull();
  const [, series, value] = expression!;
  return {
    fires(scrape) {
      const current = seriesValue(scrape, series!);
      expect(current).toBeDefined();
      return current === Number(value);
    },
  };
}

describe("SIGTERM", () => {
  test("goaway with a jittered retry-after, exit 0, nothing acknowledged lost, clients come back", async () => {
    const dataDir = scratch();
    // One reconnect per second: five sessions spread over 5 s, the whole goawayRetryAfterMsMax.
    const first = await serverProcess({
      "data-dir": dataDir,
      "goaway-retry-after-ms-max": 5000,
      "drain-reconnects-per-second": 1,
    });
    const bobKey = newDeviceKey();
    const bob = await connect(first.port);
    const bobWelcome = await bob.register("bob", bobKey);
    bob.close();
    await bob.waitClosed();
    const senders: RawClient[] = [];
    for (let index = 0; index < 5; index++) {
      const sender = await connect(first.port);
      await sender.register(`sender${index}`);
      senders.push(sender);
    }
    for (const sender of senders)
      for (let index = 0; index < 10; index++) sender.send(bobWelcome.account, bytesOf("x"));
    await waitFor(() => senders.every((sender) => sender.all("serverAck").length === 10), 5000, "server-acks");

    first.process.kill("SIGTERM");
    const retryHints: number[] = [];
    for (const sender of senders) {
      const goaway = await sender.next("goaway");
      expect(goaway.code).toBe(ErrorCode.shuttingDown);
      retryHints.push(goaway.retryAfterMs);
      await sender.waitClosed();
    }
    for (const hint of retryHints) {
      expect(hint).toBeGreaterThanOrEqual(0);
      expect(hint).toBeLessThan(5000);
    }
    expect(new Set(retryHints).size).toBeGreaterThan(1); // jittered, not one value for all
    expect(await first.waitExit(15_000)).toBe(0);

    const second = await serverProcess({ "data-dir": dataDir, port: first.port });
    const again = await connect(second.port);
    await again.login(bobWelcome.account, 1, bobKey);
    let acked = 0;
    while (acked < 50) {
      await waitFor(() => again.all("deliver").length > acked, 5000, "deliveries after restart");
      acked = again.all("deliver").length;
      again.ack(again.all("deliver")[acked - 1]!.seq);
    }
    expect(again.all("deliver")).toHaveLength(50);
  });

  test("the lame duck: /readyz 503 while everything is still served, then goaways with hints sized to the drain", async () => {
    const adminPort = freePort();
    const lameDuckMs = 1500;
    const server = await serverProcess({ "data-dir": scratch(), "admin-port": adminPort, "lame-duck-ms": lameDuckMs });
    const readyz = async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status;
    const alice = await connect(server.port);
    await alice.register("alice");
    const bob = await connect(server.port);
    await bob.register("bob");
    expect(await readyz()).toBe(200);

    const signalledAt = Date.now();
    server.process.kill("SIGTERM");
    const deadline = Date.now() + lameDuckMs;
    while ((await readyz()) !== 503) {
      expect(Date.now()).toBeLessThan(deadline);
      await Bun.sleep(10);
    }
    // Not ready, still serving: messages flow and a new connection is accepted and logs in.
    alice.send(bob.account, bytesOf("during the lame duck"));
    await alice.next("serverAck");
    expect(textOf((await bob.next("deliver")).payload)).toBe("during the lame duck");
    const carol = await connect(server.port);
    await carol.register("carol");
    expect(alice.all("goaway")).toHaveLength(0);
    expect(await readyz()).toBe(503);

    // Three sessions at the default 2,000 reconnects per second: a window of 2 ms, not goawayRetryAfterMsMax.
    const windowMs = drainWindowMs(3, defaultConfig.drainReconnectsPerSecond, defaultLimits.goawayRetryAfterMsMax);
    expect(windowMs).toBe(2);
    for (const client of [alice, bob, carol]) {
      const goaway = await client.next("goaway", () => true, lameDuckMs + 5000);
      expect(goaway.code).toBe(ErrorCode.shuttingDown);
      expect(goaway.retryAfterMs).toBeLessThan(windowMs);
    }
    expect(Date.now() - signalledAt).toBeGreaterThanOrEqual(lameDuckMs - 100);
    expect(await server.waitExit(15_000)).toBe(0);
    expect(server.lines.find((line) => line.event === "lame_duck")).toMatchObject({ ms: lameDuckMs, sessions: 2 });
    expect(server.lines.find((line) => line.event === "draining")).toMatchObject({ sessions: 3, retryWindowMs: 2 });
  });
});

describe("drain window", () => {
  test("grows with the sessions at the planned reconnect rate, up to goawayRetryAfterMsMax", () => {
    expect(drainWindowMs(0, 2000, 30_000)).toBe(0);
    expect(drainWindowMs(3, 2000, 30_000)).toBe(2);
    expect(drainWindowMs(15_000, 2000, 30_000)).toBe(7500);
    expect(drainWindowMs(1_000_000, 2000, 30_000)).toBe(30_000);
  });
});

describe("admin HTTP and listeners", () => {
  test("/metrics, /healthz and /readyz (503 while draining)", async () => {
    const { loadConfig } = await import("./config.ts");
    const { startServer } = await import("./server.ts");
    const { createLogger } = await import("./log.ts");
    // Port 0 disables admin HTTP; a fixed port in a high range is used for the test.
    const adminPort = 17_421 + Math.floor(Math.random() * 1000);
    const withAdmin = await startServer(
      loadConfig({ base: { port: 0, adminPort, dataDir: scratch(), registration: "open" } }),
      { log: createLogger("warn", () => {}) },
    );
    cleanups.push(() => withAdmin.stop({ timeoutMs: 500 }));
    expect(withAdmin.adminPort).toBe(adminPort);
    const base = `http://127.0.0.1:${withAdmin.adminPort}`;
    const alice = await connect(withAdmin.port);
    await alice.register("alice");
    alice.sendStanza({ kind: "ping" });
    await alice.next("pong");

    const metrics = await (await fetch(`${base}/metrics`)).text();
    for (const name of [
      "switchboard_connections_accepted_total 1",
      'switchboard_sessions{state="ready"} 1',
      'switchboard_logins_total{kind="register"} 1',
      'switchboard_frames_in_total{kind="ping"} 1',
      'switchboard_frame_bytes_in_total{kind="ping"} 3', // 02 0e 90
      "switchboard_bytes_in_total",
      "switchboard_queue_rows",
      "switchboard_commit_duration_seconds_bucket",
      "switchboard_event_loop_lag_seconds",
      "switchboard_event_loop_delay_seconds_bucket",
      "switchboard_resident_memory_bytes",
      "process_open_fds",
    ]) {
      expect(metrics).toContain(name);
    }
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const stopping = withAdmin.stop({ timeoutMs: 2000, lameDuckMs: 300 });
    // During the lame duck: not ready, and the admin listener still answers (it closes at the end of the stop).
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
    await stopping;
  });

  test("a second stop during the lame duck ends it at once (Ctrl-C twice)", async () => {
    const { loadConfig } = await import("./config.ts");
    const { startServer } = await import("./server.ts");
    const { createLogger } = await import("./log.ts");
    const server = await startServer(
      loadConfig({ base: { port: 0, adminPort: freePort(), dataDir: scratch(), registration: "open" } }),
      { log: createLogger("warn", () => {}) },
    );
    const alice = await connect(server.port);
    await alice.register("alice");
    const startedAt = Date.now();
    const first = server.stop({ lameDuckMs: 10_000 });
    await Bun.sleep(100);
    expect(alice.all("goaway")).toHaveLength(0); // in the lame duck
    await server.stop();
    await first;
    expect(Date.now() - startedAt).toBeLessThan(3000);
    expect((await alice.next("goaway")).code).toBe(ErrorCode.shuttingDown);
  });

  test("several listeners share one port (SO_REUSEPORT) and all accept", async () => {
    const dataDir = scratch();
    const server = await serverProcess({ "data-dir": dataDir, listeners: 4 });
    const clients: RawClient[] = [];
    for (let index = 0; index < 40; index++) clients.push(await connect(server.port));
    for (const client of clients) expect(client.nonce?.length).toBe(32);
  });
});
