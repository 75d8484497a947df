// `switchboard start --workers N` through the real path: a supervisor process, real worker processes on one port,
// the mesh between them, real SQLite partition files. Where a session lands is the kernel's choice, so each test
// asks the supervisor's admin API which worker holds which session and picks its cases from that.

import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { KeyHelper } from "@privacyresearch/libsignal-protocol-typescript";
import { defaultLimits, ErrorCode } from "../protocol/index.ts";
import { meshSocketPath } from "./mesh-unix.ts";
import { partitionOf } from "./partitions.ts";
import { type Supervised, SupervisorKit, supervisorStartMs } from "./supervisor-test-kit.ts";
import { newDeviceKey, RawClient, waitFor } from "./test-kit.ts";

/** Bound of this file's own waits (answers, exits). */
const answerMs = 5_000;
const startMs = supervisorStartMs;

const supervisors = new SupervisorKit();
const clients: RawClient[] = [];

afterEach(() => {
  for (const client of clients.splice(0)) client.close();
  supervisors.cleanup();
});

function supervised(workers: number, dataDir?: string, flags: string[] = []): Promise<Supervised> {
  return supervisors.start({ workers, dataDir, flags });
}

interface Placed {
  client: RawClient;
  readonly account: number;
  readonly device: number;
  readonly key: ReturnType<typeof newDeviceKey>;
  worker: number;
}

async function register(server: Supervised, handle: string): Promise<Placed> {
  const client = await RawClient.connect(server.port, { limits: defaultLimits });
  clients.push(client);
  const key = newDeviceKey();
  const welcome = await client.register(handle, key);
  return { client, account: welcome.account, device: welcome.device, key, worker: -1 };
}

/** Which worker holds each logged-in session, from the supervisor's admin API. */
async function place(server: Supervised, devices: Placed[]): Promise<void> {
  const answer = await server.admin("/admin/sessions?limit=100");
  const sessions = answer.sessions as Array<{ account: number | null; device: number | null; worker: number }>;
  for (const placed of devices) {
    const found = sessions.find((entry) => entry.account === placed.account && entry.device === placed.device);
    if (found === undefined) throw new Error(`no session of ${placed.account}/${placed.device}`);
    placed.worker = found.worker;
  }
}

describe("switchboard start --workers (real processes)", () => {
  test("messages, acks and receipts between devices on the same worker and on different workers", async () => {
    const server = await supervised(3);
    const users: Placed[] = [];
    for (let index = 0; index < 9; index++) users.push(await register(server, `user${index}`));
    await place(server, users);
    const same = users.flatMap((a) => users.filter((b) => b !== a && b.worker === a.worker).map((b) => [a, b]));
    const apart = users.flatMap((a) => users.filter((b) => b.worker !== a.worker).map((b) => [a, b]));
    // Nine sessions on three workers: the kernel spreads them (a pair of each kind is all but certain).
    expect(same.length).toBeGreaterThan(0);
    expect(apart.length).toBeGreaterThan(0);
    for (const [from, to] of [same[0]!, apart[0]!]) {
      const clientId = from!.client.send(to!.account, new TextEncoder().encode("hello"));
      expect((await from!.client.next("serverAck")).clientId).toBe(clientId);
      const deliver = await to!.client.next("deliver");
      expect(deliver).toMatchObject({ from: from!.account, fromDevice: from!.device, clientId });
      to!.client.ack(deliver.seq);
      const receipt = await from!.client.next("deliverReceipt");
      expect(receipt).toMatchObject({ from: to!.account, clientIds: [clientId] });
      from!.client.ack(receipt.seq);
      // A read receipt crosses back the same way.
      to!.client.sendStanza({
        kind: "receipt",
        type: 2,
        to: from!.account,
        toDevice: from!.device,
        clientIds: [clientId],
      });
      const read = await from!.client.next("deliverReceipt");
      expect(read).toMatchObject({ type: 2, clientIds: [clientId] });
      from!.client.ack(read.seq);
    }
  }, 30_000);

  test("under load, every message gets its delivered receipt, wherever senders, recipients and owners are", async () => {
    // Each sender writes its 400 sends as fast as its window allows: a burst bigger than the default (128) budget, and
    // this raw client does not resend a refused send. The test is about receipts across workers, not rate limits.
    const server = await supervised(2, undefined, ["--rate-burst-stanzas=1000", "--rate-stanzas-per-second=1000"]);
    interface Pair {
      sender: Placed;
      recipient: Placed;
      sent: number[];
      acked: number;
      receipted: Set<number>;
      /** How far each client's received list has been read. */
      senderRead: number;
      recipientRead: number;
    }
    const pairs: Pair[] = [];
    for (let index = 0; index < 24; index++) {
      const sender = await register(server, `load-s${index}`);
      const recipient = await register(server, `load-r${index}`);
      pairs.push({ sender, recipient, sent: [], acked: 0, receipted: new Set(), senderRead: 0, recipientRead: 0 });
    }
    const perSender = 400;
    const outstandingMax = 32;
    const deadline = Date.now() + 20_000;
    let done = false;
    while (!done && Date.now() < deadline) {
      done = true;
      for (const pair of pairs) {
        // Acks cumulatively: the highest seq read this round (deliveries at the recipient, receipts at the sender).
        const toRecipient = pair.recipient.client.received;
        let recipientSeq = 0;
        for (; pair.recipientRead < toRecipient.length; pair.recipientRead++) {
          const stanza = toRecipient[pair.recipientRead]!;
          if (stanza.kind === "deliver") recipientSeq = stanza.seq;
        }
        if (recipientSeq > 0) pair.recipient.client.ack(recipientSeq);
        const toSender = pair.sender.client.received;
        let senderSeq = 0;
        for (; pair.senderRead < toSender.length; pair.senderRead++) {
          const stanza = toSender[pair.senderRead]!;
          if (stanza.kind === "serverAck") pair.acked++;
          if (stanza.kind === "deliverReceipt") {
            senderSeq = stanza.seq;
            for (const id of stanza.clientIds) pair.receipted.add(id);
          }
        }
        if (senderSeq > 0) pair.sender.client.ack(senderSeq);
        while (pair.sent.length < perSender && pair.sent.length - pair.acked < outstandingMax) {
          pair.sent.push(pair.sender.client.send(pair.recipient.account, new Uint8Array([1, 2, 3])));
        }
        if (pair.receipted.size < perSender) done = false;
      }
      await Bun.sleep(1);
    }
    const missing = pairs.reduce((total, pair) => total + pair.sent.filter((id) => !pair.receipted.has(id)).length, 0);
    expect({ sent: pairs.length * perSender, missing }).toEqual({ sent: pairs.length * perSender, missing: 0 });
  }, 40_000);

  test("a device logged in again on another worker: the older session gets replaced, wherever it is", async () => {
    const server = await supervised(2);
    const first = await register(server, "twice");
    await place(server, [first]);
    // Log in again until the new session lands on the other worker (each connection is the kernel's pick).
    let second: Placed | undefined;
    for (let attempt = 0; attempt < 20 && second === undefined; attempt++) {
      const client = await RawClient.connect(server.port);
      clients.push(client);
      await client.login(first.account, first.device, first.key);
      const candidate: Placed = { ...first, client, worker: -1 };
      await place(server, [candidate]).catch(() => {});
      const goaway = await first.client.next("goaway");
      expect(goaway.code).toBe(ErrorCode.replaced);
      if (candidate.worker !== first.worker && candidate.worker >= 0) second = candidate;
      else {
        // Same worker: start over from this session.
        first.client = client;
        first.worker = candidate.worker;
      }
    }
    expect(second).toBeDefined();
  }, 30_000);

  test("account remove on the running server closes the device's session on whichever worker holds it", async () => {
    const server = await supervised(2);
    // Until both workers hold two of them (the kernel places each connection; bounded).
    const users: Placed[] = [];
    for (let index = 0; index < 30; index++) {
      const user = await register(server, `gone${index}`);
      await place(server, [user]);
      if (users.filter((other) => other.worker === user.worker).length < 2) users.push(user);
      if (users.length === 4) break;
    }
    expect(new Set(users.map((user) => user.worker)).size).toBe(2);
    for (const user of users) {
      const answer = await server.admin("/admin/accounts/remove", {
        method: "POST",
        body: JSON.stringify({ account: String(user.account) }),
      });
      expect(answer.account).toBe(user.account);
      const error = await user.client.next("error");
      expect(error.code).toBe(ErrorCode.accountRemoved);
      await user.client.waitClosed();
    }
  }, 30_000);

  test("garbage on the mesh crashes the worker that read it; the supervisor restarts it and it serves again", async () => {
    const server = await supervised(2);
    const socket = await Bun.connect({ unix: meshSocketPath(join(server.dataDir, "run"), 1), socket: { data() {} } });
    socket.write(new Uint8Array([0xff, 0xff, 0xff, 0x7f, 1, 2, 3]));
    await waitFor(
      () => server.lines.some((line) => line.event === "worker_exited" && line.worker === 1 && line.code === 70),
      answerMs,
      "worker 1 to exit 70",
    );
    await waitFor(
      () => server.lines.filter((line) => line.event === "server_started" && line.worker === 1).length === 2,
      startMs,
      "worker 1 serving again",
    );
    socket.end();
    const a = await register(server, "after1");
    const b = await register(server, "after2");
    const clientId = a.client.send(b.account, new TextEncoder().encode("still here"));
    expect((await a.client.next("serverAck")).clientId).toBe(clientId);
    expect((await b.client.next("deliver")).clientId).toBe(clientId);
  }, 30_000);

  test("kill -9 of the supervisor: its workers do not linger; a restart on the data directory delivers what was acked", async () => {
    const server = await supervised(2);
    const alice = await register(server, "alice");
    const bob = await register(server, "bob");
    bob.client.close();
    await bob.client.waitClosed();
    const clientId = alice.client.send(bob.account, new TextEncoder().encode("kept"));
    expect((await alice.client.next("serverAck")).clientId).toBe(clientId);
    const pids = server.lines.filter((line) => line.event === "worker_started").map((line) => Number(line.pid));
    expect(pids).toHaveLength(2);
    server.child.kill("SIGKILL");
    await waitFor(() => pids.every((pid) => !existsSync(`/proc/${pid}`)), answerMs, "the workers to be gone");
    const again = await supervised(2, server.dataDir);
    const client = await RawClient.connect(again.port);
    clients.push(client);
    await client.login(bob.account, bob.device, bob.key);
    expect(await client.next("deliver")).toMatchObject({ from: alice.account, clientId });
  }, 30_000);
  test("the supervisor checkpoints every worker's logs on its one thread; its clean stop leaves no -wal behind", async () => {
    const server = await supervised(2);
    const users: Placed[] = [];
    for (let index = 0; index < 6; index++) users.push(await register(server, `ckpt${index}`));
    // Offline recipients: every message is written to a partition's log.
    const [sender, ...recipients] = users;
    for (const recipient of recipients) {
      recipient.client.close();
      await recipient.client.waitClosed();
    }
    for (let round = 0; round < 20; round++) {
      for (const recipient of recipients) sender!.client.send(recipient.account, new Uint8Array(200));
    }
    await waitFor(() => sender!.client.all("serverAck").length === 100, answerMs, "server-acks");
    const token = readFileSync(join(server.dataDir, "admin.token"), "utf8").trim();
    const checkpoints = async () => {
      const text = await (
        await fetch(`http://127.0.0.1:${server.adminPort}/metrics`, {
          headers: { authorization: `Bearer ${token}` },
          signal: AbortSignal.timeout(answerMs),
        })
      ).text();
      // The supervisor's own series: no worker label.
      return Number(text.match(/^switchboard_wal_checkpoints_total (\d+)$/m)?.[1] ?? 0);
    };
    let seen = 0;
    const deadline = Date.now() + 5_000;
    while (seen === 0 && Date.now() < deadline) {
      seen = await checkpoints();
      if (seen === 0) await Bun.sleep(200);
    }
    expect(seen).toBeGreaterThan(0);
    server.child.kill("SIGTERM");
    expect(await Promise.race([server.child.exited, Bun.sleep(15_000).then(() => "timeout")])).toBe(0);
    const partitionsDir = join(server.dataDir, "partitions");
    const logs = readdirSync(partitionsDir).filter((name) => name.endsWith("-wal"));
    expect(logs).toEqual([]);
    expect(existsSync(join(server.dataDir, "switchboard.sqlite-wal"))).toBe(false);
  }, 40_000);

  test("key directory across workers: fetches from both workers never share a one-time prekey; keysLow and identityChange cross the mesh", async () => {
    const server = await supervised(2);
    const bob = await register(server, "bob");
    // Fetchers on both workers (the kernel places them: register until both have some, at most 16), so some
    // fetches are forwarded to the owner of bob's keys and some are not.
    const fetchers: Placed[] = [];
    // (And at least one whose session is not on the worker that owns its account: that owner says its welcome.)
    const ownedElsewhere = () => fetchers.filter((placed) => partitionOf(placed.account, 8) % 2 !== placed.worker);
    while (
      fetchers.length < 6 ||
      ((new Set(fetchers.map((fetcher) => fetcher.worker)).size < 2 || ownedElsewhere().length === 0) &&
        fetchers.length < 16)
    ) {
      const fetcher = await register(server, `fetcher${fetchers.length}`);
      await place(server, [fetcher]);
      fetchers.push(fetcher);
    }
    await place(server, [bob]);
    expect(new Set(fetchers.map((fetcher) => fetcher.worker)).size).toBe(2);
    // The owner says welcome, also to a session on the other worker: it learned the client's dictionary version
    // (3) over the mesh, so every welcome carries the count of one-time prekeys.
    for (const placed of [bob, ...fetchers]) {
      const welcome = placed.client.received.find((stanza) => stanza.kind === "welcome");
      expect(welcome).toMatchObject({ oneTimePreKeysLeft: 0 });
    }
    expect(ownedElsewhere().length).toBeGreaterThan(0);
    const upload = async (firstId: number) => {
      const identity = await KeyHelper.generateIdentityKeyPair();
      const signed = await KeyHelper.generateSignedPreKey(identity, 1);
      const last = await KeyHelper.generateSignedPreKey(identity, 0xff_ffff);
      const preKeys = await Promise.all([0, 1, 2, 3].map((index) => KeyHelper.generatePreKey(firstId + index)));
      const bytes = (buffer: ArrayBuffer) => new Uint8Array(buffer);
      const clientId = bob.client.clientId();
      bob.client.sendStanza({
        kind: "keysUpload",
        clientId,
        registrationId: 77,
        identityKey: bytes(identity.pubKey),
        signedPreKey: { keyId: 1, publicKey: bytes(signed.keyPair.pubKey), signature: bytes(signed.signature) },
        oneTimePreKeys: preKeys.map((key) => ({ keyId: key.keyId, publicKey: bytes(key.keyPair.pubKey) })),
        lastResortKey: { keyId: last.keyId, publicKey: bytes(last.keyPair.pubKey), signature: bytes(last.signature) },
      });
      expect((await bob.client.next("keysUploaded", (answer) => answer.clientId === clientId)).oneTimePreKeysLeft).toBe(
        4,
      );
    };
    await upload(1);
    const answers = await Promise.all(
      fetchers.map(async (fetcher) => {
        const clientId = fetcher.client.clientId();
        fetcher.client.sendStanza({ kind: "keysFetch", clientId, account: bob.account });
        return fetcher.client.next("keyBundles", (answer) => answer.clientId === clientId, answerMs);
      }),
    );
    const bundles = answers.map((answer) => answer.bundles[0]!);
    const oneTime = bundles.filter((bundle) => !bundle.lastResort).map((bundle) => bundle.preKey!.keyId);
    expect(oneTime.sort()).toEqual([1, 2, 3, 4]);
    expect(bundles.filter((bundle) => bundle.lastResort)).toHaveLength(fetchers.length - 4);
    // The last one-time prekey went: bob is told, wherever his session is.
    expect((await bob.client.next("keysLow", () => true, answerMs)).oneTimePreKeysLeft).toBe(0);
    // A new identity: every fetcher (accounts owned by either worker) gets the queued event.
    await upload(100);
    for (const fetcher of fetchers) {
      const event = await fetcher.client.next("identityChange", () => true, answerMs);
      expect(event).toMatchObject({ account: bob.account, device: bob.device });
    }
  }, 30_000);
});
