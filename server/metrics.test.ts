// /metrics as a scraper sees it: fetched over HTTP from a running server driven by real sockets. Every metric is
// documented in OPERATIONS.md, the exposition passes the checks promtool would make, the queue totals stay equal to
// the store's without a read per scrape, the event-loop lag survives a second scraper, the process_* series are
// sane, and refused logins count among the errors.

import { afterEach, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ErrorCode, registerMessage } from "../protocol/index.ts";
import { openSqliteStorage, type Storage } from "../storage/index.ts";
import { type Config, loadConfig } from "./config.ts";
import { EventLoopLag } from "./event-loop-lag.ts";
import { createLogger } from "./log.ts";
import { queueTotalsResyncDelayMs } from "./queue-totals.ts";
import { type RunningServer, type StartOptions, startServer } from "./server.ts";
import { bytesOf, freePort, newDeviceKey, RawClient, signWith, temporaryDirectory, waitFor } from "./test-kit.ts";

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Running {
  readonly server: RunningServer;
  readonly dataDir: string;
  scrape(): Promise<string>;
}

async function running(base: Partial<Config> = {}, options: StartOptions = {}, dataDir = temporaryDirectory()) {
  const config = loadConfig({
    base: { port: 0, adminPort: freePort(), dataDir, registration: "open", lameDuckMs: 0, ...base },
  });
  const server = await startServer(config, { log: createLogger("warn", () => {}), ...options });
  cleanups.push(async () => {
    await server.stop({ timeoutMs: 500 });
    rmSync(dataDir, { recursive: true, force: true });
  });
  const scrape = async () => {
    const response = await fetch(`http://127.0.0.1:${server.adminPort}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("version=0.0.4");
    return response.text();
  };
  return { server, dataDir, scrape } satisfies Running;
}

async function connect(port: number): Promise<RawClient> {
  const client = await RawClient.connect(port);
  cleanups.push(() => client.close());
  return client;
}

/** The value of one series (name with its labels, as written); undefined when absent. */
function seriesValue(text: string, series: string): number | undefined {
  const line = text.split("\n").find((entry) => entry.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test("OPERATIONS.md explains every metric the server exposes", async () => {
  const { scrape } = await running();
  const names = [...(await scrape()).matchAll(/^# TYPE (\w+) /gm)].map((match) => match[1]!);
  expect(names.length).toBeGreaterThan(15);
  const document = readFileSync(new URL("../OPERATIONS.md", import.meta.url), "utf8");
  expect(names.filter((name) => !document.includes(`\`${name}\``))).toEqual([]);
});

test("the exposition passes what promtool check metrics checks", async () => {
  const { scrape } = await running();
  const text = await scrape();
  expect(text.endsWith("\n")).toBe(true);
  const families = new Map<string, string>();
  const series = new Set<string>();
  let family: { name: string; type: string } | null = null;
  let help: string | null = null;
  for (const line of text.trimEnd().split("\n")) {
    const helpMatch = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (helpMatch !== null) {
      help = helpMatch[1]!;
      continue;
    }
    const typeMatch = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/.exec(line);
    if (typeMatch !== null) {
      expect(typeMatch[1]).toBe(help!); // HELP comes right before TYPE, for the same family
      expect(families.has(typeMatch[1]!)).toBe(false);
      family = { name: typeMatch[1]!, type: typeMatch[2]! };
      families.set(family.name, family.type);
      if (family.type === "counter") expect(family.name).toEndWith("_total");
      continue;
    }
    const sample =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*\})? (.+)$/.exec(
        line,
      );
    expect(sample).not.toBeNull();
    const [, name, labels = "", value] = sample!;
    expect(family).not.toBeNull();
    const suffixes = family!.type === "histogram" ? ["_bucket", "_sum", "_count"] : [""];
    expect(suffixes.map((suffix) => family!.name + suffix)).toContain(name!);
    expect(value === "+Inf" || value === "-Inf" || Number.isFinite(Number(value))).toBe(true);
    if (family!.type === "counter") expect(Number(value)).toBeGreaterThanOrEqual(0);
    expect(series.has(name! + labels)).toBe(false);
    series.add(name! + labels);
  }
  expect(families.get("process_cpu_seconds_total")).toBe("counter");
  expect(families.get("switchboard_event_loop_delay_seconds")).toBe("histogram");
});

test("queue totals equal the store's through sends, drains, acks and receipts, with no store read per scrape", async () => {
  const dataDir = temporaryDirectory();
  const storage: Storage = await openSqliteStorage({
    path: join(dataDir, "switchboard.sqlite"),
    synchronous: "normal",
  });
  cleanups.push(() => storage.close());
  const totalsOf = storage.queues.totals.bind(storage.queues);
  let totalsReads = 0;
  storage.queues.totals = () => {
    totalsReads++;
    return totalsOf();
  };
  const { server, scrape } = await running({}, { storage }, dataDir);
  expect(totalsReads).toBe(1); // once at start
  /** Settled (nothing open or committing): the scrape's totals are the store's, read here by the test. */
  const expectExact = async (expected?: { rows: number; bytes: number }) => {
    await server.delivery.commit.idle();
    const text = await scrape();
    const store = await totalsOf();
    if (expected !== undefined) expect(store).toEqual(expected);
    expect({
      rows: seriesValue(text, "switchboard_queue_rows"),
      bytes: seriesValue(text, "switchboard_queue_bytes"),
    }).toEqual(store);
  };

  const alice = await connect(server.port);
  await alice.register("alice");
  const bobKey = newDeviceKey();
  const bob = await connect(server.port);
  const bobWelcome = await bob.register("bob", bobKey);
  bob.close();
  await bob.waitClosed();
  await expectExact({ rows: 0, bytes: 0 });

  // To an offline device: every message is written.
  const sizes = [1, 20, 300, 150, 7];
  for (const size of sizes) alice.send(bobWelcome.account, new Uint8Array(size));
  await waitFor(() => alice.all("serverAck").length === sizes.length, 5000, "server-acks");
  await expectExact({ rows: sizes.length, bytes: sizes.reduce((sum, size) => sum + size, 0) });

  // Bob drains and acks: his rows go, delivered receipts for alice come in (4 bytes per client id).
  const again = await connect(server.port);
  await again.login(bobWelcome.account, bobWelcome.device, bobKey);
  await waitFor(() => again.all("deliver").length === sizes.length, 5000, "the drain");
  again.ack(again.all("deliver").at(-1)!.seq);
  await waitFor(() => alice.all("deliverReceipt").length > 0, 5000, "delivered receipt");
  await expectExact();

  // Live traffic to an online device, acked at once: entries cancelled before their commit are never counted.
  for (let index = 0; index < 20; index++) {
    alice.send(bobWelcome.account, bytesOf(`live ${index}`));
    const deliver = await again.next("deliver");
    again.ack(deliver.seq);
  }
  await waitFor(() => alice.all("serverAck").length === sizes.length + 20, 5000, "live server-acks");
  // Settled once bob's acks are handled: the server answers a ping after the frames before it, so the pong says the
  // last ack's deletes and receipts are in a commit batch, which expectExact's idle() waits for.
  again.sendStanza({ kind: "ping" });
  await again.next("pong");
  await expectExact();

  // Alice acks her receipts: everything is gone.
  await waitFor(() => alice.all("deliverReceipt").length >= 2, 5000, "receipts");
  await Bun.sleep(50);
  alice.ack(alice.all("deliverReceipt").at(-1)!.seq);
  // Settled once the server has handled that ack (the pong comes after it): the scrape and the store read then see
  // the same rows. Without it the scrape could count the acked receipts that the ack's commit deleted a moment later.
  alice.sendStanza({ kind: "ping" });
  await alice.next("pong");
  await expectExact();
  for (let scrape_ = 0; scrape_ < 5; scrape_++) await scrape();
  expect(totalsReads).toBe(1); // scrapes read no table
});

test("a retention sweep (outside the commit path) has the totals read from the store again", async () => {
  let nowMs = Date.now();
  const dataDir = temporaryDirectory();
  const storage = await openSqliteStorage({ path: join(dataDir, "switchboard.sqlite"), synchronous: "normal" });
  cleanups.push(() => storage.close());
  const { server, scrape } = await running({}, { storage, now: () => nowMs }, dataDir);
  const alice = await connect(server.port);
  await alice.register("alice");
  const bob = await connect(server.port);
  const bobWelcome = await bob.register("bob");
  bob.close();
  await bob.waitClosed();
  for (let index = 0; index < 3; index++) alice.send(bobWelcome.account, bytesOf("old"));
  await waitFor(() => alice.all("serverAck").length === 3, 5000, "server-acks");
  await server.delivery.commit.idle();
  expect(seriesValue(await scrape(), "switchboard_queue_rows")).toBe(3);

  nowMs += server.context.limits.retentionMs + 1000;
  expect(await server.sweeper.run()).toBe(3);
  const sweptAt = Date.now();
  let text = await scrape();
  while (seriesValue(text, "switchboard_queue_rows") !== 0) {
    expect(Date.now() - sweptAt).toBeLessThan(queueTotalsResyncDelayMs + 3000);
    await Bun.sleep(50);
    text = await scrape();
  }
  expect(seriesValue(text, "switchboard_queue_bytes")).toBe(0);
  expect(seriesValue(text, "switchboard_retention_swept_total")).toBe(3);
});

test("event-loop lag: a blocked loop shows in the histogram and in the window's worst, and a second scrape sees it too", async () => {
  const { scrape } = await running();
  const before = await scrape();
  const countBefore = seriesValue(before, "switchboard_event_loop_delay_seconds_count") ?? 0;
  // Longer than a probe interval (500 ms), so the probe fires at least 400 ms late whatever its phase.
  const blockedUntil = performance.now() + 900;
  while (performance.now() < blockedUntil) {
    // the event loop is blocked
  }
  await Bun.sleep(700); // the late probe runs
  for (let scraper = 0; scraper < 2; scraper++) {
    const text = await scrape();
    expect(seriesValue(text, "switchboard_event_loop_lag_seconds")).toBeGreaterThanOrEqual(0.35);
    const count = seriesValue(text, "switchboard_event_loop_delay_seconds_count")!;
    expect(count).toBeGreaterThan(countBefore);
    expect(seriesValue(text, 'switchboard_event_loop_delay_seconds_bucket{le="0.25"}')).toBeLessThan(count);
  }
});

test("process_* series: descriptors, memory, CPU and start time", async () => {
  const { scrape } = await running();
  const text = await scrape();
  const value = (name: string) => {
    const found = seriesValue(text, name);
    expect(found).toBeDefined();
    return found!;
  };
  expect(value("process_start_time_seconds")).toBeLessThanOrEqual(Date.now() / 1000);
  expect(value("process_start_time_seconds")).toBeGreaterThan(Date.now() / 1000 - process.uptime() - 5);
  expect(value("process_cpu_seconds_total")).toBeGreaterThan(0);
  expect(value("process_resident_memory_bytes")).toBeGreaterThan(10 * 1024 * 1024);
  if (process.platform === "linux") {
    expect(value("process_open_fds")).toBeGreaterThan(3);
    expect(value("process_open_fds")).toBeLessThanOrEqual(value("process_max_fds"));
    expect(value("process_virtual_memory_bytes")).toBeGreaterThan(value("process_resident_memory_bytes"));
  }
});

test("failed and refused registrations count among the errors as well as the login failures", async () => {
  const { server, scrape } = await running({ registration: "invite" });
  const before = await scrape();
  expect(seriesValue(before, 'switchboard_reloads_total{result="failed"}')).toBe(0);
  const client = await connect(server.port);
  const key = newDeviceKey();
  client.sendStanza({
    kind: "register",
    invite: "no-such-invite",
    handle: "mallory",
    publicKey: key.publicKey,
    signature: new Uint8Array(64), // checked before the invite: a bad signature fails (and closes) instead
    serverName: client.serverName,
  });
  const failure = await client.next("error");
  expect(failure.code).toBe(ErrorCode.badCredentials);
  const refused = await connect(server.port);
  refused.sendStanza({
    kind: "register",
    invite: "no-such-invite",
    handle: "mallory",
    publicKey: key.publicKey,
    signature: signWith(key, registerMessage(refused.nonce!, refused.serverName, "mallory")),
    serverName: refused.serverName,
  });
  expect((await refused.next("error")).code).toBe(ErrorCode.inviteInvalid);
  const text = await scrape();
  for (const code of ["badCredentials", "inviteInvalid"]) {
    expect(seriesValue(text, `switchboard_login_failures_total{code="${code}"}`)).toBe(1);
    expect(seriesValue(text, `switchboard_errors_total{code="${code}"}`)).toBe(1);
  }
});

test("the lag window keeps a spike for a minute, whatever reads it, then lets it go", () => {
  const lag = new EventLoopLag(
    () => {},
    () => 0,
  );
  lag.record(400, 5_000);
  lag.record(30, 20_000);
  expect(lag.windowMaxMs(20_000)).toBe(400);
  expect(lag.windowMaxMs(20_000)).toBe(400); // reading resets nothing
  expect(lag.windowMaxMs(59_999)).toBe(400);
  expect(lag.windowMaxMs(60_000)).toBe(30); // the spike's 10-second slot left the window
  expect(lag.windowMaxMs(80_000)).toBe(0);
});
