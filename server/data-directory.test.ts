// The data directory through the real CLI: created 0700 with every file in it 0600 under a permissive umask, and
// locked by `start`, so a second server on it exits 2 naming the holder's PID while store commands keep working and
// a kill -9'd holder never blocks a restart.

import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "./config.ts";
import { DataDirectoryLockedError } from "./data-directory.ts";
import { type ServerProcess, startServerProcess } from "./fixtures/server-process.ts";
import { createLogger } from "./log.ts";
import { startServer } from "./server.ts";
import { bytesOf, RawClient, registeredClient, temporaryDirectory, waitFor } from "./test-kit.ts";

const cliPath = new URL("./cli.ts", import.meta.url).pathname;
const commandTimeoutMs = 15_000;

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function scratch(): string {
  const directory = temporaryDirectory();
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

async function cli(dataDir: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn([process.execPath, cliPath, ...args, "--data-dir", dataDir, "--port", "0"], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), commandTimeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

async function server(dataDir: string): Promise<ServerProcess> {
  const started = await startServerProcess({ "data-dir": dataDir, registration: "open", "admin-port": 0 });
  cleanups.push(() => {
    started.process.kill("SIGKILL");
  });
  return started;
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

function modesIn(directory: string): Record<string, number> {
  return Object.fromEntries(readdirSync(directory).map((name) => [name, modeOf(join(directory, name))]));
}

// Runs `body` with umask 000, so that every file a child process creates would be world-writable unless it sets
// its mode itself. Children inherit the umask.
async function withPermissiveUmask<T>(body: () => Promise<T>): Promise<T> {
  const previous = process.umask(0);
  try {
    return await body();
  } finally {
    process.umask(previous);
  }
}

describe("data directory modes", () => {
  test("`start` under umask 000 creates the directory 0700 and every file in it 0600", async () => {
    const dataDir = join(scratch(), "data");
    const running = await withPermissiveUmask(() => server(dataDir));
    // Traffic, so the log and shared-memory files exist.
    const { client: alice } = await registeredClient(running.port, "alice");
    cleanups.push(() => alice.close());
    const { client: bob } = await registeredClient(running.port, "bob");
    cleanups.push(() => bob.close());
    alice.send(bob.account!, bytesOf("hello"));
    await bob.next("deliver");

    expect(modeOf(dataDir)).toBe(0o700);
    const modes = modesIn(dataDir);
    expect(Object.keys(modes).sort()).toEqual(
      [
        "code-hash.key",
        "partitions",
        "server.lock",
        "switchboard.sqlite",
        "switchboard.sqlite-shm",
        "switchboard.sqlite-wal",
      ].sort(),
    );
    for (const [name, mode] of Object.entries(modes)) {
      expect([name, mode.toString(8)]).toEqual([name, name === "partitions" ? "700" : "600"]);
    }
    // The partitions (server/partitions.ts): their files, log files and locks are the owner's alone too.
    const partitionModes = modesIn(join(dataDir, "partitions"));
    expect(Object.keys(partitionModes)).toContain("count");
    expect(Object.keys(partitionModes)).toContain("p-0000.sqlite.lock");
    expect(Object.keys(partitionModes).some((name) => name.endsWith(".sqlite-wal"))).toBe(true);
    for (const [name, mode] of Object.entries(partitionModes)) {
      expect([name, mode.toString(8)]).toEqual([name, "600"]);
    }
  });

  test("`invite` on a fresh directory creates nothing: only start makes a data directory", async () => {
    const dataDir = join(scratch(), "data");
    const issued = await withPermissiveUmask(() => cli(dataDir, "invite"));
    expect(issued.code).toBe(2);
    expect(existsSync(dataDir)).toBe(false);
  });

  test("an existing directory and database with loose modes are tightened at start", async () => {
    const dataDir = join(scratch(), "data");
    await withPermissiveUmask(async () => {
      mkdirSync(dataDir, { mode: 0o777 });
      writeFileSync(join(dataDir, "switchboard.sqlite"), "", { mode: 0o666 });
    });
    expect(modeOf(dataDir)).toBe(0o777);
    expect(modeOf(join(dataDir, "switchboard.sqlite"))).toBe(0o666);
    await server(dataDir);
    expect(modeOf(dataDir)).toBe(0o700);
    expect(modeOf(join(dataDir, "switchboard.sqlite"))).toBe(0o600);
  });
});

describe("one server per data directory", () => {
  test("a second `start` exits 2 naming the holder's PID; invite and account commands still work", async () => {
    const dataDir = scratch();
    const first = await server(dataDir);

    const second = await cli(dataDir, "start");
    expect(second.code).toBe(2);
    // The one line, without the JSON log lines (errors such as start_failed go to stderr too: log.ts).
    const message = second.stderr
      .split("\n")
      .filter((line) => !line.startsWith("{"))
      .join("\n")
      .trim();
    expect(message.split("\n")).toHaveLength(1);
    expect(message).toContain(`process ${first.process.pid}`);
    expect(message).toContain(dataDir);
    // The first server was not disturbed.
    const { client } = await registeredClient(first.port, "alice");
    cleanups.push(() => client.close());

    const invite = await cli(dataDir, "invite", "--count", "2");
    expect(invite.code).toBe(0);
    expect(invite.stdout.trim().split("\n")).toHaveLength(2);
    const list = await cli(dataDir, "account", "list");
    expect(list.code).toBe(0);
    expect(list.stdout).toContain("alice");
    expect(first.process.exitCode).toBeNull();
  });

  test("after kill -9 of the holder, a restart takes the lock at once", async () => {
    const dataDir = scratch();
    const first = await server(dataDir);
    first.process.kill("SIGKILL");
    expect(await first.waitExit()).not.toBe(0);
    // The lock file is still there and still names the dead process: only the kernel's lock counts.
    expect(statSync(join(dataDir, "server.lock")).size).toBeGreaterThan(0);

    const second = await server(dataDir);
    const client = await RawClient.connect(second.port);
    cleanups.push(() => client.close());
    await client.register("alice");
    // And the restarted server holds the lock in turn.
    const third = await cli(dataDir, "start");
    expect(third.code).toBe(2);
    expect(third.stderr).toContain(`process ${second.process.pid}`);
  });

  test("a server stopped with SIGTERM releases the lock for the next start", async () => {
    const dataDir = scratch();
    const first = await server(dataDir);
    first.process.kill("SIGTERM");
    expect(await first.waitExit()).toBe(0);
    const second = await server(dataDir);
    await waitFor(() => second.port > 0, 1000, "second server");
  });

  test("in one process too: a second startServer is refused, and a start that fails releases the lock", async () => {
    const dataDir = scratch();
    const quiet = { log: createLogger("warn", () => {}) };
    const config = (wsPort = 0) =>
      loadConfig({ base: { port: 0, adminPort: 0, wsPort, dataDir, registration: "open" } });
    const first = await startServer(config(), quiet);
    await expect(startServer(config(), quiet)).rejects.toThrow(DataDirectoryLockedError);
    await first.stop({ timeoutMs: 500 });

    const blocker = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    cleanups.push(() => blocker.stop(true));
    await expect(startServer(config(blocker.port), quiet)).rejects.toThrow(/EADDRINUSE|in use|listen/i);
    const again = await startServer(config(), quiet);
    await again.stop({ timeoutMs: 500 });
  });
});
