// End-to-end encryption through the real path: SDK clients with Signal sessions, a server on loopback with real
// SQLite partitions. The server only ever holds ciphertext: the data directory is searched for the plaintext.

import { afterEach, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { testLimits } from "../protocol/index.ts";
import { startTestServer, type TestServer, temporaryDirectory, waitFor } from "../server/test-kit.ts";
import type { LoginCredentials } from "./client-options.ts";
import { E2eSession, type PlaintextEvent, type SafetyNumberChangeEvent } from "./e2e-session.ts";
import { type E2eStore, MemoryE2eStore } from "./e2e-store.ts";
import { FileE2eStore } from "./e2e-store-file.ts";
import { SwitchboardClient } from "./switchboard-client.ts";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function server(limits = {}): Promise<TestServer> {
  const started = await startTestServer({ limits });
  cleanups.push(() => started.stop());
  return started;
}

interface Device {
  readonly client: SwitchboardClient;
  readonly e2e: E2eSession;
  readonly texts: string[];
  readonly undecryptable: string[];
  readonly changes: SafetyNumberChangeEvent[];
}

async function device(
  port: number,
  who: { register: string } | { credentials: LoginCredentials } | { link: string },
  store: E2eStore = new MemoryE2eStore(),
  preKeysPerUpload = 4,
): Promise<Device> {
  const client = new SwitchboardClient({
    port,
    limits: testLimits,
    reconnect: { initialMs: 20, maxMs: 200 },
    ...("register" in who
      ? { register: { handle: who.register } }
      : "link" in who
        ? { link: { code: who.link } }
        : { credentials: who.credentials }),
  });
  cleanups.push(() => client.close());
  const e2e = new E2eSession(client, store, { preKeysPerUpload, refillBelow: 2 });
  const texts: string[] = [];
  const undecryptable: string[] = [];
  const changes: SafetyNumberChangeEvent[] = [];
  e2e.on("plaintext", (event: PlaintextEvent) => void texts.push(new TextDecoder().decode(event.plaintext)));
  e2e.on("undecryptable", (event) => void undecryptable.push(event.reason));
  e2e.on("safetyNumberChange", (event) => void changes.push(event));
  await client.connect();
  await e2e.whenPublished();
  return { client, e2e, texts, undecryptable, changes };
}

const text = (value: string) => new TextEncoder().encode(value);

/** Every file of a data directory, searched for `needle` as bytes. */
function filesContaining(dir: string, needle: string): string[] {
  const found: string[] = [];
  const bytes = Buffer.from(needle);
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...filesContaining(path, needle));
    else if (readFileSync(path).includes(bytes)) found.push(path);
  }
  return found;
}

describe("end-to-end encryption between two SDK clients", () => {
  test("a conversation decrypts on both sides; a message to an offline device arrives later; the server holds no plaintext", async () => {
    const started = await server();
    const { port, dataDir } = started;
    const fetches = () => started.server.context.metrics.keyFetches.get({ result: "ok" });
    const alice = await device(port, { register: "alice" });
    const bob = await device(port, { register: "bob" });
    const bobAccount = bob.client.credentials!.account;
    await alice.e2e.send(bobAccount, text("hello bob, this is alice"));
    await waitFor(() => bob.texts.length === 1, 5000, "bob's plaintext");
    expect(bob.texts).toEqual(["hello bob, this is alice"]);
    await bob.e2e.send(alice.client.credentials!.account, text("hi alice"));
    await waitFor(() => alice.texts.length === 1, 5000, "alice's plaintext");
    expect(alice.texts).toEqual(["hi alice"]);
    // Both compute the same safety number.
    const [fromAlice, fromBob] = [
      await alice.e2e.safetyNumber(bobAccount),
      await bob.e2e.safetyNumber(alice.client.credentials!.account),
    ];
    expect(fromAlice).toMatch(/^\d{60}$/);
    // A burst to someone new, without waiting: one bundle fetch, encrypted and sent in the order of the calls, all
    // decrypt, in order.
    const carol = await device(port, { register: "carol" });
    const burst = Array.from({ length: 6 }, (_, index) => `burst ${index}`);
    const fetchesBefore = fetches();
    await Promise.all(burst.map((line) => alice.e2e.send(carol.client.credentials!.account, text(line))));
    expect(fetches() - fetchesBefore).toBe(1);
    await waitFor(() => carol.texts.length + carol.undecryptable.length === 6, 5000, "the burst");
    expect(carol.texts).toEqual(burst);
    expect(fromAlice).toBe(fromBob);

    // Bob goes offline: the message waits in his queue, encrypted.
    const credentials = bob.client.credentials!;
    const bobStore = bob.e2e.signal.store;
    await bob.client.close();
    bob.e2e.close();
    const secret = "the secret plan is in the blue folder";
    await alice.e2e.send(bobAccount, text(secret));
    expect(filesContaining(dataDir, secret)).toEqual([]);
    expect(filesContaining(dataDir, "hello bob")).toEqual([]);
    const back = await device(port, { credentials }, bobStore);
    await waitFor(() => back.texts.length === 1, 5000, "the queued message");
    expect(back.texts).toEqual([secret]);
    expect(back.undecryptable).toEqual([]);
  });

  test("one-time prekeys used up: sessions still start through the last-resort key, and the device refills", async () => {
    const started = await server({ keysFetchBurst: 50 });
    const served = started.server.context.metrics.keyBundlesServed;
    const bob = await device(started.port, { register: "bob" }, new MemoryE2eStore(), 2);
    const bobAccount = bob.client.credentials!.account;
    const credentials = bob.client.credentials!;
    const bobStore = bob.e2e.signal.store;
    // Bob is offline (no keysLow refill meanwhile): four senders, two one-time prekeys.
    await bob.client.close();
    bob.e2e.close();
    const senders = [];
    for (const handle of ["carol", "dave", "erin", "frank"])
      senders.push(await device(started.port, { register: handle }));
    for (const [index, sender] of senders.entries()) await sender.e2e.send(bobAccount, text(`message ${index}`));
    expect(served.get({ prekey: "oneTime" })).toBe(2);
    expect(served.get({ prekey: "lastResort" })).toBe(2);
    // Back online: welcome says 0 left, the device uploads a batch, and all four decrypt (the last-resort key stays).
    const back = await device(started.port, { credentials }, bobStore, 2);
    await waitFor(() => back.texts.length === 4, 5000, "four messages");
    expect(back.texts.sort()).toEqual(["message 0", "message 1", "message 2", "message 3"]);
    expect(back.undecryptable).toEqual([]);
    // device() waited for the refill (welcome said 0 left): the next session gets a fresh one-time prekey.
    const again = await device(started.port, { register: "grace" });
    await again.e2e.send(bobAccount, text("message 4"));
    expect(served.get({ prekey: "oneTime" })).toBe(3);
    await waitFor(() => back.texts.length === 5, 5000, "a fifth message");
  });

  test("a new identity of a device reaches its peer as a safety-number change, and the conversation goes on", async () => {
    const { port } = await server();
    const alice = await device(port, { register: "alice" });
    const bob = await device(port, { register: "bob" });
    const bobAccount = bob.client.credentials!.account;
    await alice.e2e.send(bobAccount, text("before"));
    await waitFor(() => bob.texts.length === 1, 5000, "before");
    const before = await alice.e2e.safetyNumber(bobAccount);
    // Bob's device starts over with a new Signal identity (a reinstall that kept its login key).
    const credentials = bob.client.credentials!;
    await bob.client.close();
    bob.e2e.close();
    const reinstalled = await device(port, { credentials });
    await waitFor(() => alice.changes.length >= 1, 5000, "the safety-number change");
    expect(alice.changes[0]).toEqual({ account: bobAccount, device: credentials.device });
    await alice.e2e.send(bobAccount, text("after"));
    await waitFor(() => reinstalled.texts.length === 1, 5000, "after");
    expect(reinstalled.texts).toEqual(["after"]);
    expect(await alice.e2e.safetyNumber(bobAccount)).not.toBe(before);
  });

  test("a device linked after the first message: the send is refused with deviceMismatch and retried with a fresh bundle; a removed device is dropped", async () => {
    const { port } = await server();
    const alice = await device(port, { register: "alice" });
    const bob = await device(port, { register: "bob" });
    const bobAccount = bob.client.credentials!.account;
    await alice.e2e.send(bobAccount, text("to bob's phone"));
    await waitFor(() => bob.texts.length === 1, 5000, "the first message");
    // Bob links a second device; alice still knows only the first.
    const { code } = await bob.client.createLinkCode();
    const laptop = await device(port, { link: code });
    expect(await alice.e2e.knownDevices(bobAccount)).toEqual([1]);
    await alice.e2e.send(bobAccount, text("to both of bob's devices"));
    await waitFor(() => bob.texts.length === 2 && laptop.texts.length === 1, 5000, "both devices");
    expect(laptop.texts).toEqual(["to both of bob's devices"]);
    expect(await alice.e2e.knownDevices(bobAccount)).toEqual([1, 2]);
    // The laptop is removed: the next send drops it (extraDevices) and reaches the phone.
    await bob.client.removeDevice(laptop.client.credentials!.device);
    await alice.e2e.send(bobAccount, text("only the phone now"));
    await waitFor(() => bob.texts.length === 3, 5000, "the third message");
    expect(await alice.e2e.knownDevices(bobAccount)).toEqual([1]);
    expect([...bob.undecryptable, ...laptop.undecryptable]).toEqual([]);
  });

  test("keysLow while online: the device uploads a new batch at once", async () => {
    const { port } = await server({ keysFetchBurst: 50 });
    const bob = await device(port, { register: "bob" }, new MemoryE2eStore(), 2);
    const bobAccount = bob.client.credentials!.account;
    const uploads: number[] = [];
    bob.e2e.on("keysUploaded", (event) => void uploads.push(event.oneTimePreKeysLeft));
    // Two senders take both one-time prekeys: the server pushes keysLow (0 left), bob uploads two more.
    for (const handle of ["carol", "dave"])
      await (await device(port, { register: handle })).e2e.send(bobAccount, text(handle));
    await waitFor(() => uploads.length === 1, 5000, "the refill");
    expect(uploads).toEqual([2]);
    await waitFor(() => bob.texts.length === 2, 5000, "both messages");
  });

  test("a payload that does not decrypt is dropped with an undecryptable event, and still acked", async () => {
    const { port } = await server();
    const alice = await device(port, { register: "alice" });
    const bob = await device(port, { register: "bob" });
    const bobAccount = bob.client.credentials!.account;
    // Not through E2eSession: bytes no Signal session made.
    await alice.client.send(bobAccount, [{ device: 1, payload: Uint8Array.of(1, 2, 3, 4) }]);
    await alice.client.send(bobAccount, [{ device: 1, payload: new Uint8Array(0) }]);
    await waitFor(() => bob.undecryptable.length === 2, 5000, "two undecryptable events");
    expect(bob.undecryptable[1]).toContain("no session");
    expect(bob.texts).toEqual([]);
    // The conversation goes on afterwards.
    await alice.e2e.send(bobAccount, text("a real one"));
    await waitFor(() => bob.texts.length === 1, 5000, "the real message");
    // Acked: bob logging in again gets none of them a second time.
    const credentials = bob.client.credentials!;
    const store = bob.e2e.signal.store;
    await bob.client.close();
    bob.e2e.close();
    const back = await device(port, { credentials }, store);
    // (Its drain ran while device() waited for the connection and the keys; give a redelivery time to show.)
    await Bun.sleep(300);
    expect([...back.undecryptable, ...back.texts]).toEqual([]);
  });

  test("sessions kept in a file store survive a restart of both clients", async () => {
    const { port } = await server();
    const dir = temporaryDirectory("switchboard-e2e-");
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const alice = await device(port, { register: "alice" }, FileE2eStore.open(join(dir, "alice.e2e.json")));
    const bob = await device(port, { register: "bob" }, FileE2eStore.open(join(dir, "bob.e2e.json")));
    const [aliceAccount, bobAccount] = [alice.client.credentials!.account, bob.client.credentials!.account];
    await alice.e2e.send(bobAccount, text("one"));
    await waitFor(() => bob.texts.length === 1, 5000, "one");
    const credentials = [alice.client.credentials!, bob.client.credentials!];
    for (const side of [alice, bob]) {
      await side.client.close();
      side.e2e.close();
    }
    expect(statSync(join(dir, "bob.e2e.json")).mode & 0o777).toBe(0o600);
    const alice2 = await device(port, { credentials: credentials[0]! }, FileE2eStore.open(join(dir, "alice.e2e.json")));
    const bob2 = await device(port, { credentials: credentials[1]! }, FileE2eStore.open(join(dir, "bob.e2e.json")));
    await bob2.e2e.send(aliceAccount, text("two"));
    await waitFor(() => alice2.texts.length === 1, 5000, "two");
    expect(alice2.texts).toEqual(["two"]);
    // No new identity: nobody was told of a change.
    expect(alice2.changes).toEqual([]);
    expect(bobAccount).toBeGreaterThan(0);
  });
});
