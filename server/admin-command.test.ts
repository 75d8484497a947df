// The operator's commands as real CLI processes: store commands name the database and never create one; server
// commands reach a running server through the admin API (sessions, kick, invite list/revoke, account remove, drain),
// which refuses requests without the token from the data directory or from off loopback.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ErrorCode } from "../protocol/index.ts";
import { adminTokenFileName, createAdminApi } from "./admin-api.ts";
import { type Config, databasePath } from "./config.ts";
import { createLogger } from "./log.ts";
import { type RunningServer, startServer } from "./server.ts";
import { freePort, newDeviceKey, RawClient, temporaryDirectory, testConfig, waitFor } from "./test-kit.ts";

const cliPath = new URL("./cli.ts", import.meta.url).pathname;
const processTimeoutMs = 15_000;
const directories: string[] = [];
/** The environment of a child: no config file from the caller's environment. */
const childEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== "SWITCHBOARD_CONFIG"));
afterAll(() => {
  for (const directory of directories) rmSync(directory, { recursive: true, force: true });
});

function scratch(): string {
  const directory = temporaryDirectory("switchboard-admin-");
  directories.push(directory);
  return directory;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const child = Bun.spawn([process.execPath, cliPath, ...args], {
    env: { ...childEnv, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), processTimeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** A server in this process with its admin listener on a free loopback port. */
async function adminServer(
  dataDir: string,
  registration: Config["registration"] = "invite",
): Promise<{ server: RunningServer; flags: string[] }> {
  const adminPort = freePort();
  // No lame duck: a stop goes straight to the goaways (the lame duck is the stop's business, tested elsewhere).
  const config = {
    // Each CLI call is a process start: with the test limits' 2 s idle timeout the raw clients (which do not answer
    // pings) were closed part way through a test of several calls.
    ...testConfig({ dataDir, registration, limits: { idleTimeoutMs: 60_000 } }),
    adminPort,
    adminHost: "127.0.0.1",
    lameDuckMs: 0,
  } as Config;
  const server = await startServer(config, { log: createLogger("warn", (line) => process.stderr.write(line)) });
  return { server, flags: ["--data-dir", dataDir, "--admin-port", String(adminPort)] };
}

describe("store commands", () => {
  test("name the database they open, and never create one: a missing database is one line and exit 2", async () => {
    const dataDir = join(scratch(), "nowhere");
    for (const args of [["invite"], ["account", "list"], ["account", "show", "alice"]]) {
      const run = await cli([...args, "--data-dir", dataDir]);
      expect([args.join(" "), run.code]).toEqual([args.join(" "), 2]);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
      expect(run.stderr).toContain(`no database at ${join(dataDir, "switchboard.sqlite")}`);
      expect(run.stdout).toBe("");
    }
    expect(existsSync(dataDir)).toBe(false);

    const { server, flags } = await adminServer(scratch());
    try {
      const issued = await cli(["invite", "-n", "2", ...flags]);
      expect(issued.code).toBe(0);
      expect(issued.stdout.trim().split("\n")).toHaveLength(2);
      expect(issued.stderr).toBe(`database: ${databasePath(server.context.config)}\n`);
      const list = await cli(["account", "list", ...flags]);
      expect(list.stdout).toContain(`0 shown, 0 in all (${databasePath(server.context.config)})`);
    } finally {
      await server.stop({ timeoutMs: 1000 });
    }
  });

  test("strict arguments: unknown flags and stray arguments are refused with the usage", async () => {
    for (const args of [
      ["invite", "--bogus"],
      ["invite", "-x"],
      ["account", "list", "extra"],
      ["sessions", "--count", "2"],
      ["kick"],
    ]) {
      const run = await cli(args);
      expect([args.join(" "), run.code]).toEqual([args.join(" "), 2]);
      expect(run.stderr).toContain(`switchboard ${args[0]}:`);
    }
    const help = await cli(["kick", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("switchboard kick <handle | id>");
  });
});

describe("server commands through the admin API", () => {
  test("sessions, kick, invite list and revoke, account remove, against a running server", async () => {
    const dataDir = scratch();
    const { server, flags } = await adminServer(dataDir);
    const clients: RawClient[] = [];
    try {
      const codes = (await cli(["invite", "--count", "3", ...flags])).stdout.trim().split("\n");
      const aliceKey = newDeviceKey();
      const alice = await RawClient.connect(server.port);
      clients.push(alice);
      await alice.register("alice", aliceKey, codes[0]!);
      const bob = await RawClient.connect(server.port);
      clients.push(bob);
      await bob.register("bob", undefined, codes[1]!);

      const count = await cli(["sessions", ...flags]);
      expect(count.stderr).toBe("");
      expect(count.stdout).toBe("2 sessions: 0 preamble, 0 authenticating, 2 ready, 0 closed\n");
      const page = await cli(["sessions", "--list", "--limit", "1", ...flags]);
      const lines = page.stdout.trim().split("\n");
      expect(lines[1]).toMatch(/^session\s+state\s+account\s+handle\s+device\s+address$/);
      expect(lines[2]).toMatch(/^\d+\s+ready\s+1\s+alice\s+1\s+127\.0\.0\.1$/);
      expect(lines[3]).toMatch(/^more: switchboard sessions --list --after \d+$/);
      const after = lines[3]!.split(" ").at(-1)!;
      const next = await cli(["sessions", "--json", "--after", after, ...flags]);
      const json = JSON.parse(next.stdout) as { total: number; sessions: Array<{ handle: string; device: number }> };
      expect(json.total).toBe(2);
      expect(json.sessions.map((entry) => [entry.handle, entry.device])).toEqual([["bob", 1]]);

      // Invites: listed as hashes with their state; an open one revoked by its code cannot register any more.
      const invites = await cli(["invite", "list", ...flags]);
      expect(invites.stdout).toContain("3 invites, 1 open");
      expect(invites.stdout).not.toContain(codes[2]!);
      const revoked = await cli(["invite", "revoke", codes[2]!, ...flags]);
      expect([revoked.code, revoked.stdout]).toEqual([0, "revoked 1 invite\n"]);
      const carol = await RawClient.connect(server.port);
      clients.push(carol);
      void carol.register("carol", undefined, codes[2]!).catch(() => undefined);
      expect((await carol.next("error")).code).toBe(ErrorCode.inviteInvalid);
      const usedHash = invites.stdout
        .split("\n")
        .find((line) => line.includes("\tused\t"))!
        .split("\t")[0]!;
      const usedAgain = await cli(["invite", "revoke", usedHash, ...flags]);
      expect(usedAgain.code).toBe(2);
      expect(usedAgain.stderr).toContain("was used already");

      // Kick: the device gets a goaway with the operator's reason and is disconnected.
      const kicked = await cli(["kick", "bob", "--reason", "maintenance", "--retry-after-s", "5", ...flags]);
      expect(kicked.stdout).toContain('closed device 1 ("maintenance", retry after 5 s)');
      const goaway = await bob.next("goaway");
      expect(goaway).toMatchObject({ code: ErrorCode.kicked, message: "maintenance", retryAfterMs: 5000 });
      await bob.waitClosed();
      expect((await cli(["kick", "nobody", ...flags])).stderr).toContain("no account nobody");

      // Remove: the running server closes alice's session at once, and her key no longer logs in.
      const removed = await cli(["account", "remove", "alice", ...flags]);
      expect(removed.stdout).toBe("removed account 1 alice (1 devices); the server closed 1 sessions\n");
      expect((await alice.next("error")).code).toBe(ErrorCode.accountRemoved);
      await alice.waitClosed();
      expect((await cli(["account", "list", ...flags])).stdout).toContain("1 shown, 1 in all");
      const again = await RawClient.connect(server.port);
      clients.push(again);
      void again.login(1, 1, aliceKey).catch(() => undefined);
      expect((await again.next("error")).code).toBe(ErrorCode.badCredentials);
    } finally {
      for (const client of clients) client.close();
      await server.stop({ timeoutMs: 1000 });
    }
  });

  test("account remove without a running server edits the database under its lock; a server without admin refuses", async () => {
    const dataDir = scratch();
    const { server, flags } = await adminServer(dataDir, "open");
    const bob = await RawClient.connect(server.port);
    await bob.register("bob");
    bob.close();
    await server.stop({ timeoutMs: 1000 });

    const offline = await cli(["account", "remove", "bob", ...flags]);
    expect(offline.code).toBe(0);
    expect(offline.stdout).toBe("removed account 1 bob from the database (no server is running)\n");

    // A server holds the data directory but its admin listener is off: no silent edit behind its back.
    const quiet = await startServer(testConfig({ dataDir, registration: "open" }), {
      log: createLogger("warn", (line) => process.stderr.write(line)),
    });
    try {
      const refused = await cli(["account", "remove", "carol", "--data-dir", dataDir, "--admin-port", "0"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(`a server runs on ${dataDir} (pid ${process.pid})`);
    } finally {
      await quiet.stop({ timeoutMs: 1000 });
    }
  });

  test("no token or a wrong one gets 401; a peer off loopback gets 403; the token file is 0600", async () => {
    const dataDir = scratch();
    const { server, flags } = await adminServer(dataDir);
    try {
      const base = `http://127.0.0.1:${flags.at(-1)}`;
      expect((await fetch(`${base}/admin/sessions`)).status).toBe(401);
      const wrong = await fetch(`${base}/admin/drain`, { method: "POST", headers: { authorization: "Bearer 00" } });
      expect(wrong.status).toBe(401);
      expect(server.context.config.adminPort).toBeGreaterThan(0);
      expect((await fetch(`${base}/healthz`)).status).toBe(200); // monitoring paths stay open
      const tokenPath = join(dataDir, adminTokenFileName);
      expect(readFileSync(tokenPath, "utf8")).toMatch(/^[0-9a-f]{64}\n$/);
      const { statSync } = await import("node:fs");
      expect((statSync(tokenPath).mode & 0o777).toString(8)).toBe("600");
      const token = readFileSync(tokenPath, "utf8").trim();
      const ok = await fetch(`${base}/admin/sessions`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
    } finally {
      await server.stop({ timeoutMs: 1000 });
    }
    const api = createAdminApi({
      context: {} as never,
      table: {} as never,
      delivery: {} as never,
      token: "secret",
      listenHost: "10.0.0.5",
      drain: () => {},
    });
    const request = () =>
      new Request("http://10.0.0.5/admin/sessions", { headers: { authorization: "Bearer secret" } });
    expect((await api(request(), "192.0.2.1")).status).toBe(403);
    expect((await api(request(), undefined)).status).toBe(403);
    const wrongToken = new Request("http://127.0.0.1/admin/sessions", { headers: { authorization: "Bearer nope" } });
    expect((await api(wrongToken, "::ffff:127.0.0.1")).status).toBe(401);
    expect((await api(wrongToken, "10.0.0.5")).status).toBe(401); // the listener's own address: this host
  });

  test("drain: a server process started by `switchboard start` says goaway to its sessions and exits 0", async () => {
    const dataDir = scratch();
    const adminPort = freePort();
    const child = Bun.spawn(
      [
        process.execPath,
        cliPath,
        "start",
        "--data-dir",
        dataDir,
        "--port",
        "0",
        "--admin-port",
        String(adminPort),
        "--lame-duck-ms",
        "300",
      ],
      {
        env: { ...childEnv, SWITCHBOARD_REGISTRATION: "open" },
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const timer = setTimeout(() => child.kill("SIGKILL"), processTimeoutMs);
    try {
      const reader = child.stdout.getReader();
      let log = "";
      while (!log.includes("server_started")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`server exited before it started: ${log}`);
        log += new TextDecoder().decode(value);
      }
      const port = Number(log.match(/"port":(\d+)/)![1]);
      const client = await RawClient.connect(port);
      await client.register("dora");
      const flags = ["--data-dir", dataDir, "--admin-port", String(adminPort)];
      const drained = await cli(["drain", ...flags]);
      expect(drained.stdout).toBe("drain started: 1 sessions get a goaway, then the server exits\n");
      expect((await client.next("goaway")).code).toBe(ErrorCode.shuttingDown);
      await waitFor(() => client.closed, 5000, "the drained session to close");
      expect(await child.exited).toBe(0);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        log += new TextDecoder().decode(value);
      }
      expect(log).toContain('"event":"drain_requested"');
      expect((await cli(["sessions", ...flags])).code).toBe(1); // nobody answers any more
    } finally {
      clearTimeout(timer);
      child.kill();
    }
  }, 20_000);
});
