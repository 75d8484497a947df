// The operator's lifecycle as real processes: SIGHUP reloads handler code and config with every connection kept,
// SIGTERM drains (goaway with a jittered retry-after, commit, exit 0) without losing an acknowledged message, and the
// admin HTTP endpoints; several listeners share one port.

import { afterEach, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { defaultLimits, ErrorCode } from "../protocol/index.ts";
import { type ServerProcess, startServerProcess } from "./fixtures/server-process.ts";
import { bytesOf, newDeviceKey, RawClient, temporaryDirectory, textOf, waitFor } from "./test-kit.ts";

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
});

describe("SIGTERM", () => {
  test("goaway with a jittered retry-after, exit 0, nothing acknowledged lost, clients come back", async () => {
    const dataDir = scratch();
    const first = await serverProcess({ "data-dir": dataDir, "goaway-retry-after-ms-max": 5000 });
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
      "switchboard_resident_memory_bytes",
    ]) {
      expect(metrics).toContain(name);
    }
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const stopping = withAdmin.stop({ timeoutMs: 2000 });
    // While draining: not ready (the admin listener closes at the end of the stop).
    const during = await fetch(`${base}/readyz`).catch(() => null);
    if (during !== null) expect(during.status).toBe(503);
    await stopping;
  });

  test("several listeners share one port (SO_REUSEPORT) and all accept", async () => {
    const dataDir = scratch();
    const server = await serverProcess({ "data-dir": dataDir, listeners: 4 });
    const clients: RawClient[] = [];
    for (let index = 0; index < 40; index++) clients.push(await connect(server.port));
    for (const client of clients) expect(client.nonce?.length).toBe(32);
  });
});
