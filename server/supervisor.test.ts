// The supervisor as real processes: server/fixtures/fake-supervisor.ts runs startSupervisor with
// server/fixtures/fake-worker.ts as the worker, so that spawning, restarts, signals, orphans, the lock and the admin
// aggregation are tested without the server's worker mode; the last tests run the real `switchboard start`.

import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { SwitchboardClient } from "../client/index.ts";
import { lockDataDirectory } from "./data-directory.ts";
import { restartBackoffDefault, restartDelayMs, workerCount } from "./supervisor.ts";
import { forEachLine, freePort } from "./test-kit.ts";

const fakeSupervisor = new URL("./fixtures/fake-supervisor.ts", import.meta.url).pathname;
const cli = new URL("./cli.ts", import.meta.url).pathname;
const waitMsMax = 10_000;

type Line = Record<string, unknown>;

interface Child {
  readonly process: Subprocess<"ignore", "pipe", "pipe">;
  readonly lines: Line[];
  readonly stderr: string[];
  waitFor(predicate: (line: Line) => boolean, timeoutMs?: number): Promise<Line>;
  waitCount(predicate: (line: Line) => boolean, count: number, timeoutMs?: number): Promise<Line[]>;
  exit(timeoutMs?: number): Promise<number | null>;
}

const children: Subprocess[] = [];
const directories: string[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function dataDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), "sv-"));
  directories.push(directory);
  return directory;
}

function run(argv: string[], env: Record<string, string> = {}): Child {
  const child = Bun.spawn(argv, {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  children.push(child);
  const lines: Line[] = [];
  const stderr: string[] = [];
  const read = (stream: ReadableStream<Uint8Array>, raw?: string[]) =>
    forEachLine(stream, (text) => {
      raw?.push(text);
      try {
        lines.push(JSON.parse(text) as Line);
      } catch {
        lines.push({ raw: text });
      }
    });
  void read(child.stdout);
  void read(child.stderr, stderr);
  const waitCount = async (predicate: (line: Line) => boolean, count: number, timeoutMs = waitMsMax) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = lines.filter(predicate);
      if (found.length >= count) return found;
      if (Date.now() > deadline)
        throw new Error(`timed out; lines so far:\n${lines.map((line) => JSON.stringify(line)).join("\n")}`);
      await Bun.sleep(10);
    }
  };
  return {
    process: child,
    lines,
    stderr,
    waitCount,
    waitFor: async (predicate, timeoutMs) => (await waitCount(predicate, 1, timeoutMs))[0]!,
    exit: (timeoutMs = waitMsMax) => Promise.race([child.exited, Bun.sleep(timeoutMs).then(() => null)]),
  };
}

interface Fake extends Child {
  readonly dataDir: string;
  readonly adminPort: number;
  readonly workerPids: number[];
}

/** The supervisor with fake workers (fixtures/fake-supervisor.ts) on a free port; admin port 0 means none. */
function runFakeSupervisor(
  dataDir: string,
  options: { workers?: number; adminPort?: number; env?: Record<string, string> } = {},
): Child {
  const argv = [process.execPath, fakeSupervisor, "--data-dir", dataDir, "--port", String(freePort())];
  argv.push("--admin-port", String(options.adminPort ?? 0), "--workers", String(options.workers ?? 2));
  return run([...argv, "--lame-duck-ms", "0"], options.env);
}

async function startFake(
  options: { workers?: number; env?: Record<string, string>; dataDir?: string } = {},
): Promise<Fake> {
  const dataDir = options.dataDir ?? dataDirectory();
  const adminPort = freePort();
  const workers = options.workers ?? 2;
  const child = runFakeSupervisor(dataDir, { workers, adminPort, env: options.env });
  const started = await child.waitCount((line) => line.event === "fake_worker_started", workers);
  return { ...child, dataDir, adminPort, workerPids: started.map((line) => Number(line.pid)) };
}

function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
}

async function allGone(pids: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive)) {
    if (Date.now() > deadline) return false;
    await Bun.sleep(20);
  }
  return true;
}

describe("restart backoff and worker count", () => {
  test("100 ms doubling up to 10 s; back to 100 ms after 30 s up", () => {
    const delays: number[] = [];
    let previous: number | undefined;
    for (let exit = 0; exit < 10; exit++) {
      previous = restartDelayMs(restartBackoffDefault, previous, 50);
      delays.push(previous);
    }
    expect(delays).toEqual([100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
    expect(restartDelayMs(restartBackoffDefault, 10_000, 30_000)).toBe(100);
    expect(restartDelayMs(restartBackoffDefault, 10_000, 29_999)).toBe(10_000);
  });

  test("workers: the key, else one per core (at most workersMax), else 1 with port 0", () => {
    expect(workerCount({ workers: 3, port: 7420 }, 8)).toBe(3);
    expect(workerCount({ workers: 0, port: 7420 }, 8)).toBe(8);
    expect(workerCount({ workers: 0, port: 7420 }, 1)).toBe(1);
    expect(workerCount({ workers: 0, port: 7420 }, 1000)).toBe(256);
    expect(workerCount({ workers: 0, port: 0 }, 8)).toBe(1);
  });
});

describe("supervisor with fake workers", () => {
  test("spawns N workers, forwards SIGHUP, stops them with SIGTERM, releases the lock, exits 0", async () => {
    const fake = await startFake({ workers: 3 });
    const started = await fake.waitFor((line) => line.event === "supervisor_started");
    expect(started).toMatchObject({ workers: 3, adminPort: fake.adminPort, pid: fake.process.pid });
    expect(statSync(join(fake.dataDir, "run")).mode & 0o777).toBe(0o700);
    expect(readFileSync(join(fake.dataDir, "server.lock"), "utf8").trim()).toBe(String(fake.process.pid));
    // The lock's descriptor is not inherited: a worker that outlived the supervisor would hold the lock.
    for (const pid of fake.workerPids) {
      const targets = readdirSync(`/proc/${pid}/fd`).map((fd) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          return "";
        }
      });
      expect(targets.filter((target) => target.endsWith("server.lock"))).toEqual([]);
    }
    fake.process.kill("SIGHUP");
    const hups = await fake.waitCount((line) => line.event === "fake_worker_signal" && line.signal === "SIGHUP", 3);
    expect(hups.map((line) => line.pid).sort()).toEqual([...fake.workerPids].sort());
    fake.process.kill("SIGTERM");
    expect(await fake.exit()).toBe(0);
    const terms = fake.lines.filter((line) => line.event === "fake_worker_signal" && line.signal === "SIGTERM");
    expect(terms.length).toBe(3);
    expect(fake.lines.filter((line) => line.event === "worker_exited").map((line) => line.code)).toEqual([0, 0, 0]);
    expect(fake.lines.some((line) => line.event === "worker_started" && Number(line.restarts) > 0)).toBe(false);
    expect(await allGone(fake.workerPids, 2000)).toBe(true);
    lockDataDirectory(fake.dataDir).release();
  });

  test("restarts a crashing worker with doubling delays, counts it, logs worker_exited", async () => {
    const fake = await startFake({
      env: { FAKE_WORKER_MODE: "crash", FAKE_WORKER_ONLY: "1", FAKE_WORKER_CRASH_MS: "20" },
    });
    const starts = await fake.waitCount((line) => line.event === "worker_started" && line.worker === 1, 5);
    const exits = fake.lines.filter((line) => line.event === "worker_exited" && line.worker === 1);
    expect(exits.slice(0, 4).map((line) => [line.code, line.restartInMs])).toEqual([
      [1, 100],
      [1, 200],
      [1, 400],
      [1, 800],
    ]);
    const times = starts.map((line) => Date.parse(String(line.time)));
    for (let restart = 1; restart < 5; restart++) {
      expect(times[restart]! - times[restart - 1]!).toBeGreaterThanOrEqual(100 * 2 ** (restart - 1));
    }
    const metrics = await (await fetch(`http://127.0.0.1:${fake.adminPort}/metrics`)).text();
    const restarts = Number(/switchboard_worker_restarts_total\{worker="1"\} (\d+)/.exec(metrics)?.[1]);
    expect(restarts).toBeGreaterThanOrEqual(4);
    expect(metrics).toContain('switchboard_worker_restarts_total{worker="0"} 0');
    // Worker 0 never restarted.
    expect(fake.lines.filter((line) => line.event === "worker_started" && line.worker === 0).length).toBe(1);
    fake.process.kill("SIGTERM");
    expect(await fake.exit()).toBe(0);
  });

  for (const deathSignal of ["on", "off"]) {
    test(`kill -9 of the supervisor leaves no worker behind (${deathSignal === "on" ? "prctl death signal" : "ppid poll"} alone)`, async () => {
      // Each guard alone: the death signal with a poll too slow to matter, or the poll without the death signal.
      const env: Record<string, string> =
        deathSignal === "on" ? { FAKE_WORKER_POLL_MS: "60000" } : { FAKE_WORKER_DEATH_SIGNAL: "off" };
      const fake = await startFake({ env });
      const reported = fake.lines
        .filter((line) => line.event === "fake_worker_started")
        .map((line) => line.deathSignal);
      expect(reported).toEqual([deathSignal === "on", deathSignal === "on"]);
      fake.process.kill("SIGKILL");
      expect(await allGone(fake.workerPids, 2000)).toBe(true);
    });
  }

  test("a second supervisor, or a single server, on the same data directory exits 2 naming the holder", async () => {
    const fake = await startFake();
    const second = runFakeSupervisor(fake.dataDir);
    expect(await second.exit()).toBe(2);
    expect(second.stderr.join("\n")).toContain(`in use by process ${fake.process.pid}`);
    expect(second.lines.some((line) => line.event === "worker_started")).toBe(false);
    // The real command, one process: refused the same way.
    const start = run([process.execPath, cli, "start", "--data-dir", fake.dataDir, "--port", "0", "--admin-port", "0"]);
    expect(await start.exit()).toBe(2);
    expect(start.stderr[0]).toBe(
      `switchboard: data directory ${fake.dataDir} is in use by process ${fake.process.pid} (lock ${join(fake.dataDir, "server.lock")}); not starting`,
    );
    fake.process.kill("SIGTERM");
    expect(await fake.exit()).toBe(0);
  });

  test("a worker that ignores SIGTERM is killed after the stop timeout; a second SIGTERM is forwarded again", async () => {
    const fake = await startFake({
      env: { FAKE_WORKER_MODE: "stubborn", FAKE_WORKER_ONLY: "0", FAKE_STOP_TIMEOUT_MS: "1500" },
    });
    fake.process.kill("SIGTERM");
    await fake.waitFor((line) => line.event === "fake_worker_signal" && line.worker === 0);
    fake.process.kill("SIGTERM");
    await fake.waitCount((line) => line.event === "fake_worker_signal" && line.worker === 0, 2);
    expect(await fake.exit()).toBe(0);
    const stubborn = fake.lines.find((line) => line.event === "fake_worker_started" && line.worker === 0)!;
    expect(fake.lines.find((line) => line.event === "workers_killed")).toMatchObject({ pids: [stubborn.pid] });
    expect(fake.lines.find((line) => line.event === "worker_exited" && line.worker === 0)).toMatchObject({
      signal: "SIGKILL",
    });
  });

  test("a worker that exits 2 (restarting cannot fix it) stops the supervisor with exit 2", async () => {
    const dataDir = dataDirectory();
    const child = runFakeSupervisor(dataDir, { env: { FAKE_WORKER_MODE: "fatal", FAKE_WORKER_ONLY: "1" } });
    expect(await child.exit()).toBe(2);
    expect(child.lines.find((line) => line.event === "worker_exited" && line.worker === 1)).toMatchObject({
      code: 2,
      restart: false,
    });
    lockDataDirectory(dataDir).release();
  });

  test("a worker whose first start fails (exit 1 before it serves) fails the supervisor with exit 1", async () => {
    const dataDir = dataDirectory();
    const child = runFakeSupervisor(dataDir, { env: { FAKE_WORKER_MODE: "unbound", FAKE_WORKER_ONLY: "0" } });
    expect(await child.exit()).toBe(1);
    expect(child.lines.find((line) => line.event === "worker_exited" && line.worker === 0)).toMatchObject({
      code: 1,
      restart: false,
    });
    expect(child.lines.some((line) => line.event === "worker_started" && Number(line.restarts) > 0)).toBe(false);
  });

  test("admin: metrics merged with worker labels, health and readiness of all, the API forwarded and merged", async () => {
    const fake = await startFake();
    const base = `http://127.0.0.1:${fake.adminPort}`;
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain("switchboard_workers_up 2\n");
    expect(metrics).toContain(
      'fake_requests_total{worker="0",kind="a"} 1\nfake_requests_total{worker="1",kind="a"} 2\n',
    );
    expect(metrics.match(/# TYPE fake_requests_total/g)?.length).toBe(1);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${base}/readyz`)).text()).toBe("ready\n");
    expect((await fetch(`${base}/healthz`, { headers: { host: "evil.example" } })).status).toBe(421);

    const token = readFileSync(join(fake.dataDir, "admin.token"), "utf8").trim();
    const headers = { authorization: `Bearer ${token}` };
    expect((await fetch(`${base}/admin/sessions`)).status).toBe(401);
    const counts = await (await fetch(`${base}/admin/sessions`, { headers })).json();
    expect(counts).toMatchObject({ total: 5, byState: { ready: 5 }, draining: false });
    // Worker 0 has local sessions 1..2, worker 1 has 1..3: global id = local x 2 + worker.
    const pages: number[] = [];
    let after = 0;
    for (let page = 0; page < 5; page++) {
      const body = (await (await fetch(`${base}/admin/sessions?limit=2&after=${after}`, { headers })).json()) as {
        sessions: Array<{ session: number }>;
        next: number | null;
      };
      pages.push(...body.sessions.map((entry) => entry.session));
      if (body.next === null) break;
      after = body.next;
    }
    expect(pages).toEqual([2, 3, 4, 5, 7]);
    const kick = await fetch(`${base}/admin/kick`, {
      method: "POST",
      headers,
      body: JSON.stringify({ account: "bob" }),
    });
    expect(await kick.json()).toMatchObject({ handle: "bob", devices: [10, 11] });
    const nobody = await fetch(`${base}/admin/kick`, {
      method: "POST",
      headers,
      body: JSON.stringify({ account: "nobody" }),
    });
    expect(nobody.status).toBe(404);
    expect(await (await fetch(`${base}/admin/invites`, { headers })).json()).toEqual({ invites: [], answeredBy: 0 });

    const drain = await fetch(`${base}/admin/drain`, { method: "POST", headers });
    expect(drain.status).toBe(202);
    expect(await drain.json()).toEqual({ draining: true, started: true, sessions: 5 });
    expect(await fake.exit()).toBe(0);
  });

  test("a worker that is down makes /healthz and /readyz answer 503", async () => {
    const fake = await startFake({
      env: { FAKE_WORKER_MODE: "crash", FAKE_WORKER_ONLY: "1", FAKE_WORKER_CRASH_MS: "300" },
    });
    await fake.waitFor((line) => line.event === "worker_exited" && line.worker === 1);
    const health = await fetch(`http://127.0.0.1:${fake.adminPort}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.text()).toStartWith("worker 1: ");
    fake.process.kill("SIGTERM");
    expect(await fake.exit()).toBe(0);
  });
});

describe("switchboard start --workers", () => {
  test("--workers 2: real workers serve one port, a message crosses between them; SIGTERM stops all, exit 0", async () => {
    const dataDir = dataDirectory();
    const port = freePort();
    const child = run([
      process.execPath,
      cli,
      "start",
      "--workers",
      "2",
      "--data-dir",
      dataDir,
      "--port",
      String(port),
      "--admin-port",
      "0",
      "--lame-duck-ms",
      "0",
      "--registration",
      "open",
      "--partitions",
      "4",
    ]);
    const started = await child.waitFor((line) => line.event === "supervisor_started");
    expect(started).toMatchObject({ workers: 2, pid: child.process.pid });
    const serving = await child.waitCount((line) => line.event === "server_started", 2);
    expect(serving.map((line) => line.worker).sort()).toEqual([0, 1]);
    const pids = (await child.waitCount((line) => line.event === "worker_started", 2)).map((line) => Number(line.pid));
    // Clients land where the kernel puts them; a few pairs make it all but certain that some cross workers (the
    // placement is asserted in workers.test.ts): every message arrives, whichever worker owns what.
    const clients: SwitchboardClient[] = [];
    const inbox = new Map<SwitchboardClient, string[]>();
    for (let index = 0; index < 4; index++) {
      const client = new SwitchboardClient({ host: "127.0.0.1", port, register: { handle: `worker-user-${index}` } });
      const texts: string[] = [];
      client.on("message", (event) => texts.push(new TextDecoder().decode(event.payload)));
      inbox.set(client, texts);
      await client.connect();
      clients.push(client);
    }
    for (const from of clients) {
      for (const to of clients) {
        if (from !== to)
          await from.send(to.credentials!.account, new TextEncoder().encode(`${from.credentials!.account}`));
      }
    }
    const deadline = Date.now() + 5000;
    while ([...inbox.values()].some((texts) => texts.length < 3) && Date.now() < deadline) await Bun.sleep(10);
    for (const to of clients) {
      const expected = clients.filter((from) => from !== to).map((from) => `${from.credentials!.account}`);
      expect([...inbox.get(to)!].sort()).toEqual(expected.sort());
    }
    for (const client of clients) await client.close();
    child.process.kill("SIGTERM");
    expect(await child.exit(20_000)).toBe(0);
    expect(await allGone(pids, 2000)).toBe(true);
    lockDataDirectory(dataDir).release();
  }, 30_000);

  test("the default on a fixed port is one worker per core; a port in use fails the start with one line", async () => {
    const dataDir = dataDirectory();
    using held = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const refused = run([process.execPath, cli, "start", "--data-dir", dataDir, "--port", String(held.port)]);
    expect(await refused.exit()).toBe(1);
    // One line for the operator (and one start_failed event), not one per worker.
    expect(refused.stderr.filter((line) => line.startsWith("switchboard: cannot listen"))).toHaveLength(1);
    expect(refused.lines.some((line) => line.event === "worker_started")).toBe(false);
    expect(workerCount({ workers: 0, port: held.port })).toBe(Math.min(availableParallelism(), 256));
  });

  test("--workers with port 0 is a config error; the default with port 0 is one process", async () => {
    const dataDir = dataDirectory();
    const refused = run([
      process.execPath,
      cli,
      "start",
      "--workers",
      "2",
      "--data-dir",
      dataDir,
      "--port",
      "0",
      "--admin-port",
      "0",
    ]);
    expect(await refused.exit()).toBe(2);
    expect(refused.stderr[0]).toContain("workers: more than 1 needs a fixed port");
    const single = run([process.execPath, cli, "start", "--data-dir", dataDir, "--port", "0", "--admin-port", "0"]);
    await single.waitFor((line) => line.event === "server_started");
    expect(single.lines.some((line) => line.event === "supervisor_started")).toBe(false);
    single.process.kill("SIGTERM");
    expect(await single.exit()).toBe(0);
  });
});
