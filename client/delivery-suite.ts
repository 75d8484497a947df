// The SDK's delivery tests as one suite, run once per transport (delivery-suite.test.ts runs it over raw TCP and over
// WebSocket): a real server in this process (127.0.0.1, a temporary data directory, small limits) with both
// listeners on; every client of a test reaches it through the transport under test. Online and offline delivery,
// receipts, reconnects across a server restart with resends stored once, duplicate deliveries dropped, keepalive,
// request timeouts, stop-range codes, per-device payloads, linked devices. Every wait is bounded.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ErrorCode, type Limits, testLimits } from "../protocol/index.ts";
import { type Config, loadConfig } from "../server/config.ts";
import { createLogger } from "../server/log.ts";
import { type RunningServer, startServer } from "../server/server.ts";
import { freePort } from "../server/test-kit.ts";
import {
  ClientClosedError,
  ClientError,
  type ClientOptions,
  type DisconnectedEvent,
  generateKeyPair,
  type MessageEvent,
  type ReceiptEvent,
  RequestTimeoutError,
  SwitchboardClient,
  type Transport,
  type TransportEvents,
  type TransportFactory,
} from "./index.ts";

export const waitTimeoutMs = 4000;
/** Per test: a few server starts and bounded waits. */
export const suiteTestTimeoutMs = 20_000;
/** Small limits for the server and the SDK alike; the goaway hint is short so that restarts are quick. */
export const limits: Limits = Object.freeze({ ...testLimits, goawayRetryAfterMsMax: 100 });
export const reconnect = { initialMs: 30, maxMs: 300, jitter: 0.5 };
/** Tries at binding a WebSocket port that was free a moment ago (another process may take it in between). */
const bindAttemptsMax = 5;

export async function waitFor(predicate: () => boolean, timeoutMs = waitTimeoutMs, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

export const text = (value: string) => new TextEncoder().encode(value);
export const textOf = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Where a suite server listens: raw TCP on `port`, WebSocket on `wsPort` at /ws. */
export interface ServerPorts {
  readonly port: number;
  readonly wsPort: number;
}

export interface SuiteServer extends ServerPorts {
  readonly dataDir: string;
  /** Graceful stop (SIGTERM for a supervisor process): waits at most about `timeoutMs`. */
  stop(options: { timeoutMs: number }): Promise<void>;
}

/** A suite server in this process (tests may reach into it). */
export interface InProcessSuiteServer extends SuiteServer {
  readonly server: RunningServer;
}

/**
 * Where the suite's servers run: in this process (workers 0), or as `switchboard start --workers N`, a supervisor
 * process with N worker processes, where a test's clients land on workers as the kernel spreads them (some on the
 * same worker, some not).
 */
let suiteWorkers = 0;
/** Config keys of the suite's servers (tcpEncryption for the Noise and TLS runs). */
let suiteConfig: Partial<Config> = {};
/** Partitions of a suite data directory (few: each costs its open at start; more than the workers). */
const suitePartitions = 8;
/** Bounds of a supervisor process's start and stop. */
const processStartMs = 15_000;
const processStopMarginMs = 5_000;

const cliPath = new URL("../server/cli.ts", import.meta.url).pathname;

function kebab(name: string): string {
  return name.replace(/([A-Z])/g, "-$1").toLowerCase();
}

/** `switchboard start --workers N` with the suite's config as flags; resolves once every worker serves. */
async function startSupervisorProcess(config: Config, workers: number): Promise<SuiteServer> {
  const flags = [
    `--port=${config.port}`,
    `--ws-port=${config.wsPort}`,
    `--data-dir=${config.dataDir}`,
    `--registration=${config.registration}`,
    `--web-client=${config.webClient}`,
    "--admin-port=0",
    "--log-level=info",
    "--lame-duck-ms=0",
    `--workers=${workers}`,
    `--partitions=${suitePartitions}`,
  ];
  for (const key of ["tcpEncryption", "wsEncryption", "tlsCertFile", "tlsKeyFile"] as const) {
    if (config[key] !== "" && config[key] !== "none") flags.push(`--${kebab(key)}=${config[key]}`);
  }
  for (const [name, value] of Object.entries(config.limits)) flags.push(`--${kebab(name)}=${value}`);
  const child = Bun.spawn([process.execPath, cliPath, "start", ...flags], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let serving = 0;
  const deadline = Date.now() + processStartMs;
  while (serving < workers) {
    const chunk = await Promise.race([reader.read(), Bun.sleep(Math.max(0, deadline - Date.now())).then(() => null)]);
    if (chunk === null || chunk.done) {
      child.kill("SIGKILL");
      throw new Error(
        `switchboard start --workers ${workers}: ${serving} of ${workers} serving (exit ${child.exitCode})`,
      );
    }
    text += decoder.decode(chunk.value, { stream: true });
    serving = text.split("\n").filter((line) => line.includes('"event":"server_started"')).length;
  }
  // Keep reading so that the pipe never fills up.
  void (async () => {
    while (!(await reader.read()).done) {}
  })().catch(() => {});
  return {
    port: config.port,
    wsPort: config.wsPort,
    dataDir: config.dataDir,
    async stop({ timeoutMs }) {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const exited = await Promise.race([child.exited, Bun.sleep(timeoutMs + processStopMarginMs).then(() => null)]);
      if (exited === null) child.kill("SIGKILL");
      await child.exited;
    },
  };
}

function addressInUse(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === "EADDRINUSE";
}

/**
 * Starts a server with TCP (`port`, 0 = any) and WebSocket (`wsPort`, 0 = a free one) listeners on 127.0.0.1. A
 * WebSocket port picked here is retried on EADDRINUSE; a given one (a restart) is retried for a moment while the
 * previous listener lets go of it.
 */
export async function startSuiteServer(options: {
  dataDir: string;
  port?: number;
  wsPort?: number;
  /** Other config keys (registration, webClient...). */
  config?: Partial<Config>;
}): Promise<SuiteServer> {
  if (suiteWorkers > 1) {
    // The workers share a fixed port (port 0 would give each its own).
    const config = loadConfig({
      base: {
        port: options.port || freePort(),
        dataDir: options.dataDir,
        registration: "open",
        adminPort: 0,
        limits,
        wsPort: options.wsPort || freePort(),
        ...suiteConfig,
        ...options.config,
      },
    });
    return startSupervisorProcess(config, suiteWorkers);
  }
  return startInProcessServer(options);
}

/** startSuiteServer in this process, whatever the suite's workers (tests that reach into the server). */
export async function startInProcessServer(options: {
  dataDir: string;
  port?: number;
  wsPort?: number;
  config?: Partial<Config>;
}): Promise<InProcessSuiteServer> {
  for (let attempt = 1; ; attempt++) {
    const wsPort = options.wsPort || freePort();
    const config = loadConfig({
      base: {
        port: options.port ?? 0,
        dataDir: options.dataDir,
        registration: "open",
        adminPort: 0,
        logLevel: "warn",
        limits,
        wsPort,
        ...suiteConfig,
        ...options.config,
      },
    });
    try {
      const server = await startServer(config, { log: createLogger("error", (line) => process.stderr.write(line)) });
      return {
        server,
        port: server.port,
        wsPort: server.wsPort,
        dataDir: options.dataDir,
        stop: (stopOptions) => server.stop(stopOptions),
      };
    } catch (error) {
      if (!addressInUse(error) || attempt >= bindAttemptsMax) throw error;
      await Bun.sleep(20 * attempt);
    }
  }
}

export function temporaryDataDir(): string {
  return mkdtempSync(join(tmpdir(), "switchboard-client-test-"));
}

/** A transport that a test can make lose bytes in either direction, or drop, like a bad network. */
export class LossyTransport implements Transport {
  dropIncoming = false;
  dropOutgoing = false;
  constructor(private readonly inner: Transport) {}
  /** The inner transport's Noise handshake hash: the login signs it. */
  get channelBinding(): Uint8Array | null {
    return this.inner.channelBinding ?? null;
  }
  connect(events: TransportEvents): Promise<void> {
    return this.inner.connect({
      data: (chunk) => {
        if (!this.dropIncoming) events.data(chunk);
      },
      close: (reason) => events.close(reason),
    });
  }
  write(bytes: Uint8Array): boolean {
    return this.dropOutgoing ? true : this.inner.write(bytes);
  }
  close(): void {
    this.inner.close();
  }
  get bufferedBytes(): number {
    return this.inner.bufferedBytes;
  }
}

/** Makes the lossy transports of one client and keeps them, so that a test can reach the current one. */
export class LossyNetwork {
  readonly created: LossyTransport[] = [];
  readonly factory: TransportFactory;
  constructor(inner: TransportFactory) {
    this.factory = () => {
      const transport = new LossyTransport(inner());
      this.created.push(transport);
      return transport;
    };
  }
  get current(): LossyTransport {
    return this.created[this.created.length - 1]!;
  }
}

/** A client that records what it hears. */
export class Recorder {
  readonly messages: MessageEvent[] = [];
  readonly receipts: ReceiptEvent[] = [];
  readonly disconnects: DisconnectedEvent[] = [];
  readonly errors: Error[] = [];
  queueEmpty = 0;
  connects = 0;
  /** Order of messages and queueEmpty, for the offline drain. */
  readonly timeline: string[] = [];
  constructor(readonly client: SwitchboardClient) {
    client.on("message", (event) => {
      this.messages.push(event);
      this.timeline.push(`message:${textOf(event.payload)}`);
    });
    client.on("receipt", (event) => void this.receipts.push(event));
    client.on("queueEmpty", () => {
      this.queueEmpty++;
      this.timeline.push("queueEmpty");
    });
    client.on("connected", () => void this.connects++);
    client.on("disconnected", (event) => void this.disconnects.push(event));
    client.on("error", (error) => void this.errors.push(error));
  }
  get account(): number {
    return this.client.credentials!.account;
  }
  get device(): number {
    return this.client.credentials!.device;
  }
  texts(): string[] {
    return this.messages.map((message) => textOf(message.payload));
  }
}

/** Cleanups of the running test, run in reverse order after it (also when it failed). */
export const cleanups: Array<() => Promise<void> | void> = [];

export async function runCleanups(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
}

/** A suite server whose data directory and process-local listeners go away after the test. */
export async function serverForTest(): Promise<SuiteServer> {
  const dataDir = temporaryDataDir();
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const running = await startSuiteServer({ dataDir });
  cleanups.push(() => running.stop({ timeoutMs: 1000 }));
  return running;
}

/** A client with the suite's limits and reconnect timings, closed after the test. */
export function recordedClient(options: ClientOptions): Recorder {
  const client = new SwitchboardClient({ limits, reconnect, ...options });
  cleanups.push(() => client.close());
  return new Recorder(client);
}

/**
 * The delivery suite over one transport. `makeTransport` gives the factory of transports to a server's listener of
 * that kind (TCP: port; WebSocket: ws://127.0.0.1:wsPort/ws); every client of the suite connects through it.
 */
export function describeDeliverySuite(
  transportName: string,
  makeTransport: (ports: ServerPorts) => TransportFactory,
  options: {
    workers?: number;
    config?: Partial<Config>;
    /**
     * Only the tests whose names match: for a transport whose difference lies below the protocol (TLS), the
     * connection-level tests say what is needed; the full suite costs about 45 s per run on a loaded CI host.
     */
    only?: RegExp;
  } = {},
) {
  const only = options.only;
  const suiteTest: typeof test = ((name: string, ...rest: unknown[]) => {
    if (only === undefined || only.test(name)) (test as (...args: unknown[]) => void)(name, ...rest);
  }) as typeof test;
  const clientFor = (ports: ServerPorts, options: Partial<ClientOptions>): Recorder =>
    recordedClient({ transport: makeTransport(ports), ...options } as ClientOptions);

  async function registered(ports: ServerPorts, handle: string, options: Partial<ClientOptions> = {}) {
    const recorder = clientFor(ports, { register: { handle }, ...options });
    await recorder.client.connect();
    return recorder;
  }

  const lossy = (ports: ServerPorts) => new LossyNetwork(makeTransport(ports));

  const workers = options.workers ?? 0;
  describe(`delivery over ${transportName}${workers > 1 ? ` with ${workers} worker processes` : ""}`, () => {
    beforeAll(() => {
      suiteWorkers = workers;
      suiteConfig = options.config ?? {};
    });
    afterAll(() => {
      suiteWorkers = 0;
      suiteConfig = {};
    });
    afterEach(runCleanups);

    suiteTest(
      "online: the message arrives, the sender gets its server-ack, a delivered and then a read receipt",
      async () => {
        const server = await serverForTest();
        const alice = await registered(server, "alice");
        const bob = await registered(server, "bob");
        const sent = await alice.client.send(bob.account, text("hello bob"));
        await waitFor(() => bob.messages.length === 1, waitTimeoutMs, "bob's message");
        expect(bob.messages[0]).toMatchObject({
          from: alice.account,
          fromDevice: alice.device,
          clientId: sent.clientId,
        });
        expect(bob.texts()).toEqual(["hello bob"]);
        await waitFor(() => alice.receipts.length === 1, waitTimeoutMs, "delivered receipt");
        expect(alice.receipts[0]).toMatchObject({
          type: "delivered",
          from: bob.account,
          fromDevice: bob.device,
          senderDevice: alice.device,
          clientIds: [sent.clientId],
        });
        bob.client.receipt(alice.account, alice.device, [sent.clientId], "read");
        await waitFor(() => alice.receipts.length === 2, waitTimeoutMs, "read receipt");
        expect(alice.receipts[1]).toMatchObject({ type: "read", from: bob.account, clientIds: [sent.clientId] });
        // Lookups see both accounts; unknown handles give null.
        expect(await alice.client.lookup("bob")).toEqual({ account: bob.account, devices: [bob.device] });
        expect(await alice.client.lookup("nobody")).toEqual({ account: null, devices: [] });
      },
      suiteTestTimeoutMs,
    );

    suiteTest(
      "offline: queued messages arrive in order after login, then queueEmpty",
      async () => {
        const server = await serverForTest();
        const alice = await registered(server, "alice");
        const bob = await registered(server, "bob");
        const bobCredentials = bob.client.credentials!;
        await bob.client.close();
        await Promise.all(["one", "two", "three"].map((word) => alice.client.send(bobCredentials.account, text(word))));
        const again = clientFor(server, { credentials: bobCredentials });
        await again.client.connect();
        await waitFor(() => again.queueEmpty === 1, waitTimeoutMs, "queueEmpty");
        expect(again.timeline).toEqual(["message:one", "message:two", "message:three", "queueEmpty"]);
        await waitFor(
          () => alice.receipts.flatMap((receipt) => receipt.clientIds).length === 3,
          waitTimeoutMs,
          "receipts",
        );
      },
      suiteTestTimeoutMs,
    );

    suiteTest(
      "reconnects by itself across a server restart; unacked sends are resent and stored once",
      async () => {
        const dataDir = temporaryDataDir();
        cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
        let running = await startSuiteServer({ dataDir });
        const ports: ServerPorts = { port: running.port, wsPort: running.wsPort };
        cleanups.push(() => running.stop({ timeoutMs: 1000 }));
        const network = lossy(ports);
        const alice = await registered(ports, "alice", { transport: network.factory });
        const bob = await registered(ports, "bob");

        // 1. The server stores the send but its ack is lost; then the server restarts.
        network.current.dropIncoming = true;
        let firstSettled = false;
        const first = alice.client.send(bob.account, text("first")).finally(() => {
          firstSettled = true;
        });
        await waitFor(() => bob.messages.length === 1, waitTimeoutMs, "first message");
        await running.stop({ timeoutMs: 1000 });
        expect(firstSettled).toBe(false);
        // 2. A send made while the server is down waits in the outbox.
        await waitFor(() => alice.client.phase !== "ready", waitTimeoutMs, "alice disconnected");
        const second = alice.client.send(bob.account, text("second"));
        running = await startSuiteServer({ dataDir, ...ports });
        expect((await first).clientId).toBeGreaterThan(0);
        await second;
        await waitFor(() => bob.client.phase === "ready", waitTimeoutMs, "bob reconnected");

        // 3. A send lost on its way out: the connection drops, the SDK resends it with the same client id.
        network.current.dropOutgoing = true;
        const third = alice.client.send(bob.account, text("third"));
        await Bun.sleep(50);
        network.current.close();
        const thirdResult = await third;
        await waitFor(() => bob.messages.length === 3, waitTimeoutMs, "three messages");
        await Bun.sleep(100);
        expect(bob.texts()).toEqual(["first", "second", "third"]);
        expect(bob.messages[2]!.clientId).toBe(thirdResult.clientId);
        expect(alice.connects).toBeGreaterThanOrEqual(3);
        expect(alice.disconnects.every((event) => event.willReconnect)).toBe(true);
        expect(alice.disconnects.some((event) => event.code === ErrorCode.shuttingDown)).toBe(false); // goaway lost
        expect(bob.disconnects.some((event) => event.code === ErrorCode.shuttingDown)).toBe(true);
      },
      suiteTestTimeoutMs,
    );

    suiteTest(
      "a delivery repeated after a lost connection is dropped, and acked once the app is done",
      async () => {
        const server = await serverForTest();
        const alice = await registered(server, "alice");
        const network = lossy(server);
        const bob = await registered(server, "bob", { transport: network.factory });
        let release = () => {};
        const handled = new Promise<void>((resolve) => {
          release = resolve;
        });
        let calls = 0;
        bob.client.on("message", () => {
          calls++;
          return handled; // the ack waits for this
        });
        const sent = await alice.client.send(bob.account, text("once"));
        await waitFor(() => calls === 1, waitTimeoutMs, "first delivery");
        network.current.close(); // the network drops before the ack
        await waitFor(() => bob.connects === 2, waitTimeoutMs, "bob reconnected");
        await Bun.sleep(100); // the queue is delivered again
        expect(calls).toBe(1);
        expect(alice.receipts).toHaveLength(0);
        release();
        await waitFor(() => alice.receipts.length === 1, waitTimeoutMs, "delivered receipt");
        expect(alice.receipts[0]!.clientIds).toEqual([sent.clientId]);
        expect(bob.texts()).toEqual(["once"]);
      },
      suiteTestTimeoutMs,
    );

    suiteTest(
      "keepalive: a silent connection is dropped and reopened; pending requests are written again",
      async () => {
        const server = await serverForTest();
        await registered(server, "bob");
        const network = lossy(server);
        const alice = await registered(server, "alice", { transport: network.factory, pingIntervalMs: 50 });
        network.current.dropIncoming = true; // the server's answers (pongs, the lookup result) no longer arrive
        const found = await alice.client.lookup("bob");
        expect(found.account).not.toBeNull();
        expect(alice.connects).toBe(2);
        expect(alice.disconnects[0]!.reason).toContain("nothing heard from the server");
      },
      suiteTestTimeoutMs,
    );

    suiteTest(
      "a request without an answer times out",
      async () => {
        const server = await serverForTest();
        const network = lossy(server);
        const alice = await registered(server, "alice", {
          transport: network.factory,
          clientLimits: { requestTimeoutMs: 100 },
        });
        network.current.dropOutgoing = true;
        await expect(alice.client.devices()).rejects.toBeInstanceOf(RequestTimeoutError);
      },
      suiteTestTimeoutMs,
    );

    suiteTest(
      "a stop-range code (wrong key: badCredentials) ends the client without reconnecting",
      async () => {
        const server = await serverForTest();
        const alice = await registered(server, "alice");
        const network = lossy(server);
        const impostor = clientFor(server, {
          credentials: { account: alice.account, device: alice.device, keyPair: await generateKeyPair() },
          transport: network.factory,
        });
        const error = await impostor.client.connect().catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(ClientError);
        expect((error as ClientError).code).toBe(ErrorCode.badCredentials);
        expect((error as ClientError).action).toBe("stop");
        expect(impostor.client.phase).toBe("closed");
        expect(impostor.disconnects).toEqual([expect.objectContaining({ code: 400, willReconnect: false })]);
        await Bun.sleep(150);
        expect(network.created).toHaveLength(1);
        expect(await impostor.client.send(alice.account, text("x")).catch((caught: unknown) => caught)).toBeInstanceOf(
          ClientClosedError,
        );
        // A taken handle is refused for good too (rejected range during registration).
        const taken = clientFor(server, { register: { handle: "alice" } });
        const refusal = await taken.client.connect().catch((caught: unknown) => caught);
        expect((refusal as ClientError).code).toBe(ErrorCode.handleTaken);
        expect(taken.client.phase).toBe("closed");
      },
      suiteTestTimeoutMs,
    );

    suiteTest(
      "per-device payloads, and deviceMismatch with the missing and extra devices",
      async () => {
        const server = await serverForTest();
        const alice = await registered(server, "alice");
        const bob = await registered(server, "bob");
        const { account, devices } = await alice.client.lookup("bob");
        expect(account).toBe(bob.account);
        const wrong = await alice.client
          .send(bob.account, [{ device: 99, payload: text("lost") }])
          .catch((caught: unknown) => caught);
        expect(wrong).toBeInstanceOf(ClientError);
        expect(wrong).toMatchObject({
          code: ErrorCode.deviceMismatch,
          action: "rejected",
          missingDevices: devices,
          extraDevices: [99],
        });
        await alice.client.send(
          bob.account,
          devices.map((device) => ({ device, payload: text(`for ${device}`) })),
        );
        await waitFor(() => bob.messages.length === 1, waitTimeoutMs, "per-device message");
        expect(bob.texts()).toEqual([`for ${bob.device}`]);
        // Too large for the limits: refused before it reaches the wire; the session stays up.
        const large = await alice.client
          .send(bob.account, new Uint8Array(limits.payloadBytesMax + 1))
          .catch((caught: unknown) => caught);
        expect(large).toMatchObject({ code: ErrorCode.payloadTooLarge });
        expect(alice.client.phase).toBe("ready");
      },
      suiteTestTimeoutMs,
    );

    suiteTest(
      "a linked device joins the account and gets the account's messages",
      async () => {
        const server = await serverForTest();
        const alice = await registered(server, "alice");
        const bob = await registered(server, "bob");
        const { code, expiresAtSeconds } = await alice.client.createLinkCode();
        expect(expiresAtSeconds).toBeGreaterThan(Date.now() / 1000);
        const laptop = clientFor(server, { link: { code } });
        const joined = await laptop.client.connect();
        expect(joined.account).toBe(alice.account);
        expect(joined.device).not.toBe(alice.device);
        expect((await alice.client.devices()).map((device) => device.device).sort()).toEqual(
          [alice.device, joined.device].sort(),
        );

        await bob.client.send(alice.account, text("to both"));
        await waitFor(() => alice.messages.length === 1 && laptop.messages.length === 1, waitTimeoutMs, "both devices");
        // To our own account: the other devices only.
        await alice.client.send(alice.account, text("note to self"));
        await waitFor(() => laptop.messages.length === 2, waitTimeoutMs, "own message on the laptop");
        expect(alice.texts()).toEqual(["to both"]);

        // Removing the laptop ends its client for good (deviceRemoved is in the stop range).
        await alice.client.removeDevice(joined.device);
        await waitFor(() => laptop.client.phase === "closed", waitTimeoutMs, "laptop stopped");
        expect(laptop.disconnects.at(-1)).toMatchObject({ code: ErrorCode.deviceRemoved, willReconnect: false });
      },
      suiteTestTimeoutMs,
    );
  });
}
