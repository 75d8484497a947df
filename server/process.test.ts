// Whole-process tests: kill -9 of the server right after a server-ack, a device stopped with SIGSTOP while messages
// are written to it (a half-open connection), and a reader that stops reading. Real processes, sockets and SQLite.

import { afterEach, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { defaultLimits, encodePreamble, FrameCodec, FrameReader, loginMessage } from "../protocol/index.ts";
import { type ServerProcess, startServerProcess } from "./fixtures/server-process.ts";
import {
  bytesOf,
  newDeviceKey,
  RawClient,
  registeredClient,
  signWith,
  startTestServer,
  type TestServer,
  temporaryDirectory,
  textOf,
  waitFor,
} from "./test-kit.ts";

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serverProcess(dataDir: string, port = 0): Promise<ServerProcess> {
  const server = await startServerProcess({
    port,
    "data-dir": dataDir,
    registration: "open",
    "admin-port": 0,
    "log-level": "info",
  });
  cleanups.push(() => {
    server.process.kill("SIGKILL");
  });
  return server;
}

async function connectDefault(port: number): Promise<RawClient> {
  const client = await RawClient.connect(port, { limits: defaultLimits });
  cleanups.push(() => client.close());
  return client;
}

describe("crash and process faults", () => {
  test("kill -9 right after a server-ack: after a restart the message is still delivered", async () => {
    const dataDir = temporaryDirectory();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const first = await serverProcess(dataDir);
    const alice = await connectDefault(first.port);
    await alice.register("alice");
    const bobKey = newDeviceKey();
    const bob = await connectDefault(first.port);
    const bobWelcome = await bob.register("bob", bobKey);
    bob.close();
    await bob.waitClosed();

    const sent = Array.from({ length: 20 }, (_, index) => alice.send(bobWelcome.account, bytesOf(`durable ${index}`)));
    await waitFor(() => alice.all("serverAck").length === sent.length, 5000, "server-acks");
    first.process.kill("SIGKILL"); // no chance to flush anything after the acks
    await first.waitExit();

    const second = await serverProcess(dataDir);
    const again = await connectDefault(second.port);
    await again.login(bobWelcome.account, bobWelcome.device, bobKey);
    await again.next("queueEmpty", () => true, 5000);
    const texts = again.all("deliver").map((deliver) => textOf(deliver.payload));
    expect(texts).toEqual(sent.map((_, index) => `durable ${index}`));
  });

  test("a device stopped with SIGSTOP while messages are written to it, then killed, loses nothing", async () => {
    const server = await startTestServer({ limits: { ...defaultLimits, loginTimeoutMs: 5000 } });
    cleanups.push(() => server.stop());
    const { client: alice } = await registeredClient(server.port, "alice");
    cleanups.push(() => alice.close());
    // Bob's device runs in its own process; the key is handed over as PKCS8.
    const { generateKeyPairSync } = await import("node:crypto");
    const pair = generateKeyPairSync("ed25519");
    const der = pair.publicKey.export({ format: "der", type: "spki" });
    const bobKey = { privateKey: pair.privateKey, publicKey: new Uint8Array(der.subarray(der.length - 32)) };
    const bob = await RawClient.connect(server.port, { limits: defaultLimits });
    const welcome = await bob.register("bob", bobKey);
    bob.close();
    await bob.waitClosed();

    const pkcs8 = pair.privateKey.export({ format: "der", type: "pkcs8" }).toString("hex");
    const fixture = new URL("./fixtures/sleepy-client.ts", import.meta.url).pathname;
    const device = Bun.spawn([process.execPath, fixture, String(server.port), String(welcome.account), "1", pkcs8], {
      stdout: "pipe",
      stderr: "inherit",
    });
    cleanups.push(() => {
      device.kill("SIGKILL");
    });
    const reader = device.stdout.getReader();
    let output = "";
    const pump = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        output += new TextDecoder().decode(value);
      }
    })();
    void pump;
    await waitFor(() => output.includes("ready"), 5000, "device ready");

    device.kill("SIGSTOP");
    const count = 50;
    for (let index = 0; index < count; index++) alice.send(welcome.account, bytesOf(`while stopped ${index}`));
    await waitFor(() => alice.all("serverAck").length === count, 5000, "server-acks");
    await Bun.sleep(100);
    device.kill("SIGKILL");
    await device.exited;

    const again = await RawClient.connect(server.port, { limits: defaultLimits });
    cleanups.push(() => again.close());
    await again.login(welcome.account, 1, bobKey);
    const texts: string[] = [];
    while (texts.length < count) {
      await waitFor(() => again.all("deliver").length > texts.length, 5000, "redelivery");
      const delivered = again.all("deliver");
      for (const deliver of delivered.slice(texts.length)) texts.push(textOf(deliver.payload));
      again.ack(delivered[delivered.length - 1]!.seq);
    }
    expect(texts).toEqual(Array.from({ length: count }, (_, index) => `while stopped ${index}`));
  });

  test("a reader that stops reading keeps the server's buffer bounded and gets every message once it reads", async () => {
    const limits = {
      ...defaultLimits,
      outboundBytesMax: 64 * 1024,
      outboundBytesCloseMax: 256 * 1024,
      deliveryWindowMessages: 50_000,
      queueMessagesMax: 50_000,
      // One sender fills this queue on purpose.
      queueSenderSharePercent: 100,
      drainBatchEntries: 1000,
      rateStanzasPerSecond: 1_000_000,
      rateBurstStanzas: 1_000_000,
    };
    const server: TestServer = await startTestServer({ limits });
    cleanups.push(() => server.stop());
    const alice = await RawClient.connect(server.port, { limits: defaultLimits });
    cleanups.push(() => alice.close());
    await alice.register("alice");
    const bobKey = newDeviceKey();
    const bob = await RawClient.connect(server.port, { limits: defaultLimits });
    const welcome = await bob.register("bob", bobKey);
    bob.close();
    await bob.waitClosed();

    // Bob's device over node:net, so that it can stop reading (pause) while staying connected.
    const codec = new FrameCodec({ limits: defaultLimits });
    const reader = new FrameReader(codec);
    const received: string[] = [];
    let lastSeq = 0;
    const socket = netConnect({ host: "127.0.0.1", port: server.port });
    const socketErrors: string[] = [];
    socket.on("error", (error) => socketErrors.push(String(error)));
    cleanups.push(() => {
      socket.destroy();
    });
    socket.on("data", (chunk: Buffer) => {
      reader.push(new Uint8Array(chunk));
      for (;;) {
        const result = reader.next();
        if (result.status !== "frame") break;
        const stanza = result.stanza;
        if (stanza.kind === "challenge") {
          const signature = signWith(bobKey, loginMessage(stanza.nonce, "127.0.0.1", welcome.account, 1));
          socket.write(
            codec.encode({ kind: "login", account: welcome.account, device: 1, signature, serverName: "127.0.0.1" }),
          );
        } else if (stanza.kind === "deliver") {
          received.push(textOf(stanza.payload));
          lastSeq = stanza.seq;
        }
      }
    });
    socket.write(encodePreamble());
    await waitFor(() => server.server.connections.count === 2, 3000, "bob connected");
    await Bun.sleep(100);
    socket.pause();

    const count = 20_000;
    const payload = new Uint8Array(500).fill(7);
    const batchFrames: Uint8Array[] = [];
    for (let index = 0; index < count; index++) {
      const text = bytesOf(`m${index}:`);
      const body = new Uint8Array(payload);
      body.set(text, 0);
      batchFrames.push(alice.codec.encode({ kind: "send", clientId: index + 1, to: welcome.account, payload: body }));
      if (batchFrames.length === 500) {
        alice.write(new Uint8Array(Buffer.concat(batchFrames)));
        batchFrames.length = 0;
        await Bun.sleep(1);
      }
    }
    await waitFor(() => alice.all("serverAck").length === count, 20_000, "all server-acks");

    // The server stopped pushing at its limit: the session holds at most outboundBytesCloseMax, and is still open.
    const bobSession = [...server.server.connections.all()].find((session) => session.account === welcome.account);
    expect(bobSession).toBeDefined();
    expect(bobSession!.outboundBytes).toBeLessThanOrEqual(limits.outboundBytesCloseMax);
    expect(bobSession!.outboundBytes).toBeGreaterThan(0);
    const pushedWhilePaused = bobSession!.deviceState!.deliveredSeq;
    expect(pushedWhilePaused).toBeLessThan(count);

    socket.resume();
    const deadline = Date.now() + 20_000;
    let acked = 0;
    while (received.length < count && Date.now() < deadline) {
      if (lastSeq > acked) {
        acked = lastSeq;
        socket.write(codec.encode({ kind: "ack", seq: acked }));
      }
      await Bun.sleep(5);
    }
    expect(socketErrors).toEqual([]);
    expect(received.length).toBe(count);
    expect(received.every((text, index) => text.startsWith(`m${index}:`))).toBe(true);
  }, 60_000);
});

describe("sequence numbers across kill -9", () => {
  // An outside review: entries pushed before their commit, then kill -9, and the next process handed the same
  // sequence numbers to other messages; a client that acked the old numbers deleted entries it never stored.
  test("sequences shown before a commit are never handed out again after kill -9 (commitDelayMs 1000)", async () => {
    const dataDir = temporaryDirectory();
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const start = async () => {
      const server = await startServerProcess({
        "data-dir": dataDir,
        registration: "open",
        "admin-port": 0,
        "log-level": "warn",
        "commit-delay-ms": 1000,
      });
      cleanups.push(() => {
        server.process.kill("SIGKILL");
      });
      return server;
    };
    const first = await start();
    const alice = await connectDefault(first.port);
    const aliceKey = newDeviceKey();
    const aliceWelcome = await alice.register("alice", aliceKey);
    const bobKey = newDeviceKey();
    const bob = await connectDefault(first.port);
    const bobWelcome = await bob.register("bob", bobKey);
    await bob.next("queueEmpty");

    // One committed message first, so that the store holds a reservation for Bob's queue.
    alice.send(bobWelcome.account, bytesOf("committed"));
    await alice.next("serverAck", () => true, 5000);
    const committed = await bob.next("deliver", () => true, 5000);
    // Then five more, not committed yet (the commit waits 1 s): those within the reservation are pushed at once
    // (two: twice what the first batch assigned), and Bob sees their sequences.
    for (let index = 0; index < 5; index++) alice.send(bobWelcome.account, bytesOf(`uncommitted ${index}`));
    await waitFor(() => bob.all("deliver").length >= 3, 1000, "live pushes before the commit");
    await Bun.sleep(100);
    expect(alice.all("serverAck")).toHaveLength(1);
    const seen = bob.all("deliver").map((deliver) => deliver.seq);
    first.process.kill("SIGKILL");
    await first.waitExit();
    alice.close();
    bob.close();

    const second = await start();
    const aliceAgain = await connectDefault(second.port);
    await aliceAgain.login(aliceWelcome.account, aliceWelcome.device, aliceKey);
    aliceAgain.setNextClientId(100);
    const bobAgain = await connectDefault(second.port);
    await bobAgain.login(bobWelcome.account, bobWelcome.device, bobKey);
    // Bob's stale ack of the highest sequence he saw must not delete anything new.
    bobAgain.ack(Math.max(...seen));
    for (let index = 0; index < 3; index++) aliceAgain.send(bobWelcome.account, bytesOf(`after restart ${index}`));
    await waitFor(() => aliceAgain.all("serverAck").length === 3, 8000, "server-acks after the restart");
    const fresh = await Promise.all(
      [0, 1, 2].map((index) =>
        bobAgain.next("deliver", (deliver) => textOf(deliver.payload) === `after restart ${index}`, 8000),
      ),
    );
    // The committed message was acked by nobody: it comes again with its own sequence.
    const redelivered = bobAgain.all("deliver").find((deliver) => textOf(deliver.payload) === "committed");
    expect(redelivered?.seq).toBe(committed.seq);
    for (const deliver of fresh) expect(deliver.seq).toBeGreaterThan(Math.max(...seen));
  }, 30_000);
});
