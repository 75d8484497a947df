// The delivery contract through real sockets on 127.0.0.1 and a real SQLite file: online and offline delivery in
// order, acks deleting rows, receipts (also to an offline sender), retries stored once, quota, retention, device
// fan-out and mismatch.

import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { ErrorCode, ReceiptType } from "../protocol/index.ts";
import { partitionFileOfAccount } from "./partitions.ts";
import {
  bytesOf,
  newDeviceKey,
  RawClient,
  registeredClient,
  startTestServer,
  type TestServer,
  temporaryDirectory,
  textOf,
  waitFor,
} from "./test-kit.ts";

let running: TestServer | null = null;
const clients: RawClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await running?.stop();
  running = null;
});

async function serverWith(limits: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  running = await startTestServer(limits);
  return running;
}

async function user(server: TestServer, handle: string) {
  const registered = await registeredClient(server.port, handle);
  clients.push(registered.client);
  return registered;
}

/** Queue rows of one device, read through a second connection to the server's SQLite file. */
function queueRows(server: TestServer, account: number, device: number): number {
  const database = new Database(partitionFileOfAccount(server.dataDir, account), { readonly: true });
  try {
    const row = database
      .query("select count(*) as rows from queue where account_id = ? and device_id = ?")
      .get(account, device) as { rows: number };
    return row.rows;
  } finally {
    database.close();
  }
}

describe("delivery", () => {
  test("online: the recipient gets the message, the sender its server-ack and then a delivered receipt", async () => {
    const server = await serverWith();
    const { client: alice } = await user(server, "alice");
    const { client: bob } = await user(server, "bob");
    const clientId = alice.send(bob.account, bytesOf("hello bob"));
    const ack = await alice.next("serverAck");
    expect(ack.clientId).toBe(clientId);
    const deliver = await bob.next("deliver");
    expect(textOf(deliver.payload)).toBe("hello bob");
    expect(deliver).toMatchObject({ from: alice.account, fromDevice: alice.device, clientId, seq: 1 });
    bob.ack(deliver.seq);
    const receipt = await alice.next("deliverReceipt");
    expect(receipt).toMatchObject({
      type: ReceiptType.delivered,
      from: bob.account,
      fromDevice: bob.device,
      senderDevice: alice.device,
      clientIds: [clientId],
    });
  });

  test("offline: messages wait in the queue and arrive in order after login, then queueEmpty", async () => {
    const server = await serverWith();
    const { client: alice } = await user(server, "alice");
    const { client: bob, key: bobKey } = await user(server, "bob");
    const bobAccount = bob.account;
    bob.close();
    await bob.waitClosed();
    const sent = [1, 2, 3, 4, 5, 6].map((index) => alice.send(bobAccount, bytesOf(`m${index}`)));
    for (const clientId of sent) expect((await alice.next("serverAck")).clientId).toBe(clientId);
    expect(queueRows(server, bobAccount, 1)).toBe(6);

    const again = await RawClient.connect(server.port);
    clients.push(again);
    await again.login(bobAccount, 1, bobKey);
    // The test window is 8 entries: all six arrive, in order, then queueEmpty.
    const texts: string[] = [];
    for (let index = 0; index < 6; index++) {
      const deliver = await again.next("deliver");
      texts.push(textOf(deliver.payload));
      expect(deliver.seq).toBe(index + 1);
    }
    expect(texts).toEqual(["m1", "m2", "m3", "m4", "m5", "m6"]);
    await again.next("queueEmpty");
    const queueEmptyIndex = again.received.findIndex((stanza) => stanza.kind === "queueEmpty");
    const lastDeliverIndex = again.received.findLastIndex((stanza) => stanza.kind === "deliver");
    expect(queueEmptyIndex).toBeGreaterThan(lastDeliverIndex);

    // Acks delete the rows.
    again.ack(6);
    await alice.next("deliverReceipt");
    await waitFor(() => queueRows(server, bobAccount, 1) === 0, 2000, "rows deleted");
  });

  test("a drain longer than the window continues as acks open it", async () => {
    const server = await serverWith();
    const { client: alice } = await user(server, "alice");
    const { client: bob, key } = await user(server, "bob");
    const bobAccount = bob.account;
    bob.close();
    await bob.waitClosed();
    const count = 19; // testLimits.queueMessagesMax is 20; the window is 8
    for (let index = 0; index < count; index++) alice.send(bobAccount, bytesOf(`n${index}`));
    await waitFor(() => alice.all("serverAck").length === count, 3000, "all server-acks");

    const again = await RawClient.connect(server.port);
    clients.push(again);
    await again.login(bobAccount, 1, key);
    await waitFor(() => again.all("deliver").length === 8, 2000, "first window");
    await Bun.sleep(50);
    expect(again.all("deliver").length).toBe(8);
    let acked = 0;
    while (acked < count) {
      await waitFor(() => again.all("deliver").length > acked, 2000, "more deliveries");
      const delivered = again.all("deliver");
      acked = delivered[delivered.length - 1]!.seq;
      again.ack(acked);
    }
    expect(again.all("deliver").map((deliver) => textOf(deliver.payload))).toEqual(
      Array.from({ length: count }, (_, index) => `n${index}`),
    );
    await again.next("queueEmpty");
  });

  test("read receipts reach the sender, also when the sender was offline at the time", async () => {
    const server = await serverWith();
    const { client: alice, key: aliceKey } = await user(server, "alice");
    const { client: bob } = await user(server, "bob");
    const aliceAccount = alice.account;
    const clientId = alice.send(bob.account, bytesOf("read me"));
    await alice.next("serverAck");
    const deliver = await bob.next("deliver");
    alice.close();
    await alice.waitClosed();
    bob.ack(deliver.seq);
    bob.sendStanza({ kind: "receipt", type: ReceiptType.read, to: aliceAccount, toDevice: 1, clientIds: [clientId] });
    await Bun.sleep(100);

    const again = await RawClient.connect(server.port);
    clients.push(again);
    await again.login(aliceAccount, 1, aliceKey);
    const delivered = await again.next("deliverReceipt", (receipt) => receipt.type === ReceiptType.delivered);
    const read = await again.next("deliverReceipt", (receipt) => receipt.type === ReceiptType.read);
    expect(delivered.clientIds).toEqual([clientId]);
    expect(read).toMatchObject({ from: bob.account, fromDevice: bob.device, senderDevice: 1, clientIds: [clientId] });
    expect(read.seq).toBeGreaterThan(delivered.seq);
  });

  test("a retried send is recognised and stored once", async () => {
    const server = await serverWith();
    const { client: alice } = await user(server, "alice");
    const { client: bob } = await user(server, "bob");
    const bobAccount = bob.account;
    bob.close();
    await bob.waitClosed();
    const clientId = alice.send(bobAccount, bytesOf("once"));
    alice.send(bobAccount, bytesOf("once"), clientId); // a retry in the same session
    await waitFor(() => alice.all("serverAck").length === 2, 2000, "two server-acks");
    expect(alice.all("serverAck").map((ack) => ack.clientId)).toEqual([clientId, clientId]);
    expect(queueRows(server, bobAccount, 1)).toBe(1);
  });

  test("welcome tells the last client id the server stored; a resend after reconnect is acked, not stored again", async () => {
    const server = await serverWith();
    const { client: alice, key } = await user(server, "alice");
    const { client: bob } = await user(server, "bob");
    const bobAccount = bob.account;
    bob.close();
    await bob.waitClosed();
    const first = alice.send(bobAccount, bytesOf("a"));
    const second = alice.send(bobAccount, bytesOf("b"));
    await waitFor(() => alice.all("serverAck").length === 2, 2000, "server-acks");
    alice.close();
    const again = await RawClient.connect(server.port);
    clients.push(again);
    const welcome = await again.login(alice.account, 1, key);
    expect(welcome.lastClientId).toBe(second);
    again.send(bobAccount, bytesOf("a"), first);
    expect((await again.next("serverAck")).clientId).toBe(first);
    expect(queueRows(server, bobAccount, 1)).toBe(2);
  });

  test("a resend of a refused client id is handled as new even after a later id was stored; ids past the window are refused", async () => {
    const server = await serverWith();
    const { client: alice } = await user(server, "alice");
    const { client: bob } = await user(server, "bob");
    const refused = alice.send(999_999, bytesOf("to nobody"));
    expect(await alice.next("error")).toMatchObject({ code: ErrorCode.unknownAccount, clientId: refused });
    const later = alice.send(bob.account, bytesOf("later"));
    await alice.next("serverAck", (ack) => ack.clientId === later);
    // The client never saw the error (say) and resends the refused id, now to a real recipient: it is stored.
    alice.send(bob.account, bytesOf("resent"), refused);
    expect((await alice.next("serverAck", (ack) => ack.clientId === refused)).clientId).toBe(refused);
    const texts = [textOf((await bob.next("deliver")).payload), textOf((await bob.next("deliver")).payload)];
    expect(texts).toEqual(["later", "resent"]);
    // Resending a stored id is recognised (acked, not stored again).
    alice.send(bob.account, bytesOf("resent"), refused);
    await alice.next("serverAck", (ack) => ack.clientId === refused);
    await Bun.sleep(50);
    expect(bob.all("deliver")).toHaveLength(2);
    // An id more than 64 below the highest stored one cannot be told apart: refused, never guessed.
    const far = alice.send(bob.account, bytesOf("far ahead"), later + 100);
    await alice.next("serverAck", (ack) => ack.clientId === far);
    alice.send(bob.account, bytesOf("too old"), later);
    expect(await alice.next("error")).toMatchObject({ code: ErrorCode.clientIdReused, clientId: later });
  });

  test("a full queue refuses the send with queueFull before any ack", async () => {
    const server = await serverWith({
      limits: { queueMessagesMax: 3, deliveryWindowMessages: 2, drainBatchEntries: 2 },
    });
    const { client: alice } = await user(server, "alice");
    const { client: bob } = await user(server, "bob");
    const bobAccount = bob.account;
    bob.close();
    await bob.waitClosed();
    for (let index = 0; index < 3; index++) alice.send(bobAccount, bytesOf(`q${index}`));
    await waitFor(() => alice.all("serverAck").length === 3, 2000, "three acks");
    const refused = alice.send(bobAccount, bytesOf("too many"));
    const error = await alice.next("error");
    expect(error).toMatchObject({ code: ErrorCode.queueFull, clientId: refused });
    expect(alice.all("serverAck").some((ack) => ack.clientId === refused)).toBe(false);
    expect(queueRows(server, bobAccount, 1)).toBe(3);
  });

  test("a payload over payloadBytesMax is refused with payloadTooLarge and the session stays open", async () => {
    const server = await serverWith();
    const { client: alice } = await user(server, "alice");
    const { client: bob } = await user(server, "bob");
    const challengeLimit = alice.challenge!.payloadBytesMax;
    expect(challengeLimit).toBe(server.config.limits.payloadBytesMax);
    const refused = alice.send(bob.account, new Uint8Array(challengeLimit + 1));
    expect(await alice.next("error")).toMatchObject({ code: ErrorCode.payloadTooLarge, clientId: refused });
    alice.send(bob.account, new Uint8Array(challengeLimit));
    await alice.next("serverAck");
    expect((await bob.next("deliver")).payload.length).toBe(challengeLimit);
    expect(alice.closed).toBe(false);
  });

  test("entries past retention are swept and counters follow", async () => {
    const server = await serverWith({ limits: { retentionMs: 50 } });
    const { client: alice } = await user(server, "alice");
    const { client: bob } = await user(server, "bob");
    const bobAccount = bob.account;
    bob.close();
    await bob.waitClosed();
    alice.send(bobAccount, bytesOf("expires"));
    await alice.next("serverAck");
    expect(queueRows(server, bobAccount, 1)).toBe(1);
    await Bun.sleep(80);
    const deleted = await server.server.sweeper.run();
    expect(deleted).toBe(1);
    expect(queueRows(server, bobAccount, 1)).toBe(0);
  });

  test("one payload goes to every device of the recipient; per-device payloads must match the device list", async () => {
    const server = await serverWith();
    const { client: alice } = await user(server, "alice");
    const { client: bob } = await user(server, "bob");
    // Bob links a second device.
    bob.sendStanza({ kind: "linkCreate", clientId: bob.clientId() });
    const { code } = await bob.next("linkCode");
    const bobPhone = await RawClient.connect(server.port);
    clients.push(bobPhone);
    const welcome = await bobPhone.link(code, newDeviceKey());
    expect(welcome).toMatchObject({ account: bob.account, device: 2 });

    const lookupId = alice.clientId();
    alice.sendStanza({ kind: "lookup", clientId: lookupId, handle: "bob" });
    expect(await alice.next("lookupResult")).toMatchObject({
      clientId: lookupId,
      account: bob.account,
      devices: [1, 2],
    });

    alice.send(bob.account, bytesOf("to both"));
    await alice.next("serverAck");
    expect(textOf((await bob.next("deliver")).payload)).toBe("to both");
    expect(textOf((await bobPhone.next("deliver")).payload)).toBe("to both");

    const mismatch = alice.send(bob.account, [
      { device: 1, payload: bytesOf("one") },
      { device: 3, payload: bytesOf("three") },
    ]);
    const error = await alice.next("error");
    expect(error).toMatchObject({
      code: ErrorCode.deviceMismatch,
      clientId: mismatch,
      missingDevices: [2],
      extraDevices: [3],
    });

    alice.send(bob.account, [
      { device: 1, payload: bytesOf("for laptop") },
      { device: 2, payload: bytesOf("for phone") },
    ]);
    await alice.next("serverAck");
    expect(textOf((await bob.next("deliver")).payload)).toBe("for laptop");
    expect(textOf((await bobPhone.next("deliver")).payload)).toBe("for phone");
  });

  test("a removed device is closed with deviceRemoved and can no longer log in", async () => {
    const server = await serverWith();
    const { client: bob } = await user(server, "bob");
    bob.sendStanza({ kind: "linkCreate", clientId: bob.clientId() });
    const { code } = await bob.next("linkCode");
    const phoneKey = newDeviceKey();
    const phone = await RawClient.connect(server.port);
    clients.push(phone);
    await phone.link(code, phoneKey);

    const listId = bob.clientId();
    bob.sendStanza({ kind: "devices", clientId: listId });
    const list = await bob.next("deviceList");
    expect(list.devices.map((device) => device.device)).toEqual([1, 2]);

    const removeId = bob.clientId();
    bob.sendStanza({ kind: "deviceRemove", clientId: removeId, device: 2 });
    expect((await bob.next("serverAck")).clientId).toBe(removeId);
    const closing = await phone.next("error");
    expect(closing.code).toBe(ErrorCode.deviceRemoved);
    await phone.waitClosed();

    const retry = await RawClient.connect(server.port);
    clients.push(retry);
    retry.sendStanza({
      kind: "login",
      account: bob.account,
      device: 2,
      signature: new Uint8Array(64),
      serverName: retry.serverName,
    });
    expect((await retry.next("error")).code).toBe(ErrorCode.badCredentials);

    // The last device cannot be removed.
    const lastId = bob.clientId();
    bob.sendStanza({ kind: "deviceRemove", clientId: lastId, device: 1 });
    expect(await bob.next("error")).toMatchObject({ code: ErrorCode.notAllowed, clientId: lastId });
  });
});

describe("last seen", () => {
  test("logins and logouts are written in batches", async () => {
    const server = await serverWith({ limits: { lastSeenFlushMs: 60_000, lastSeenBatchMax: 2 } });
    const startedAt = Date.now();
    const { client: alice } = await user(server, "alice");
    const storage = server.server.context.storage;
    // Registration sets last seen; one pending note is below the batch size, so nothing more is written yet.
    const before = (await storage.devices.get({ account: alice.account, device: 1 }))!.lastSeenAtMs;
    await Bun.sleep(20);
    const { client: bob } = await user(server, "bob"); // the second note reaches lastSeenBatchMax: both written
    await Bun.sleep(20);
    const after = (await storage.devices.get({ account: alice.account, device: 1 }))!.lastSeenAtMs;
    expect(before).toBeGreaterThanOrEqual(startedAt);
    expect(after).toBeGreaterThan(before);
    // Each device keeps the time it was seen (bob logged in after alice), not the time of the write.
    const bobSeen = (await storage.devices.get({ account: bob.account, device: 1 }))!.lastSeenAtMs;
    expect(bobSeen).toBeGreaterThanOrEqual(after);
    expect(bobSeen).toBeLessThanOrEqual(Date.now());
  });
});

describe("between devices of one account", () => {
  test("a message to one's own other device is delivered; the delivered receipt goes to the sender, not back to the reader", async () => {
    running = await startTestServer();
    const { client: laptop } = await registeredClient(running.port, "solo");
    clients.push(laptop);
    laptop.sendStanza({ kind: "linkCreate", clientId: laptop.clientId() });
    const { code } = await laptop.next("linkCode");
    const phone = await RawClient.connect(running.port);
    clients.push(phone);
    await phone.link(code, newDeviceKey());
    await phone.next("queueEmpty");
    const clientId = laptop.send(laptop.account, bytesOf("note to self"));
    await laptop.next("serverAck");
    const deliver = await phone.next("deliver");
    expect(textOf(deliver.payload)).toBe("note to self");
    phone.ack(deliver.seq);
    const receipt = await laptop.next("deliverReceipt");
    expect(receipt).toMatchObject({ from: laptop.account, fromDevice: 2, senderDevice: 1, clientIds: [clientId] });
    await Bun.sleep(100);
    expect(phone.all("deliverReceipt")).toHaveLength(0);
  });
});

describe("idle device states", () => {
  test("an idle online device holds no delivery state; a message loads it again and arrives at once", async () => {
    running = await startTestServer();
    const { client: alice } = await registeredClient(running.port, "alice");
    const { client: bob } = await registeredClient(running.port, "bob");
    clients.push(alice, bob);
    const delivery = running.server.delivery;
    await waitFor(() => delivery.deviceStates === 0, 2000, "idle states released");
    for (let round = 0; round < 3; round++) {
      const clientId = alice.send(bob.account, bytesOf(`round ${round}`));
      expect((await alice.next("serverAck", (ack) => ack.clientId === clientId)).clientId).toBe(clientId);
      const deliver = await bob.next("deliver");
      expect(textOf(deliver.payload)).toBe(`round ${round}`);
      bob.ack(deliver.seq);
      await alice.next("deliverReceipt");
      // Alice acks her receipt too; then both go idle again and give their states back.
      alice.ack(alice.all("deliverReceipt").at(-1)!.seq);
      await waitFor(() => delivery.deviceStates === 0, 2000, `states released after round ${round}`);
    }
    // Each load starts above the stored reservation (seqReservationBlock ahead): increasing, never reused.
    const block = running.config.limits.seqReservationBlock;
    const seqs = bob.all("deliver").map((deliver) => deliver.seq);
    expect(seqs[0]).toBe(1);
    for (let index = 1; index < seqs.length; index++) {
      expect(seqs[index]!).toBeGreaterThan(seqs[index - 1]!);
      expect(seqs[index]! - seqs[index - 1]!).toBeLessThanOrEqual(block + 1);
    }
    // A read receipt from an idle reader still goes through.
    bob.sendStanza({ kind: "receipt", type: ReceiptType.read, to: alice.account, toDevice: 1, clientIds: [1, 2, 3] });
    const read = await alice.next("deliverReceipt", (receipt) => receipt.type === ReceiptType.read);
    expect(read.clientIds).toEqual([1, 2, 3]);
  });

  test("a device exchanging a message now and then keeps its state; quiet for deviceStateIdleReleaseMs, it gives it back", async () => {
    running = await startTestServer({ limits: { deviceStateIdleReleaseMs: 400 } });
    const { client: alice } = await registeredClient(running.port, "alice");
    const { client: bob } = await registeredClient(running.port, "bob");
    clients.push(alice, bob);
    const delivery = running.server.delivery;
    await waitFor(() => delivery.deviceStates === 0, 2000, "idle states released");
    // A message every 100 ms, each delivered, acked and its receipt acked before the next: between two the devices
    // are idle, but for less than the release delay, so their states stay (released at once, both went between
    // every message and each message read them back from the store).
    let lowest = Number.POSITIVE_INFINITY;
    for (let round = 0; round < 8; round++) {
      const clientId = alice.send(bob.account, bytesOf(`round ${round}`));
      await alice.next("serverAck", (ack) => ack.clientId === clientId);
      bob.ack((await bob.next("deliver")).seq);
      alice.ack((await alice.next("deliverReceipt")).seq);
      const quietUntil = Date.now() + 100;
      while (Date.now() < quietUntil) {
        await Bun.sleep(5);
        if (round > 0) lowest = Math.min(lowest, delivery.deviceStates);
      }
    }
    expect(lowest).toBe(2);
    // alice's client-id window for bob's account is cached while she sends.
    expect(delivery.pairs.size).toBe(1);
    // Then quiet: both states are released within the delay (and a sweep tick), and the cached window too.
    const quietAt = Date.now();
    await waitFor(() => delivery.deviceStates === 0, 2000, "states released once quiet");
    expect(Date.now() - quietAt).toBeGreaterThanOrEqual(250);
    await waitFor(() => delivery.pairs.size === 0, 2000, "the client-id window let go once quiet");
  });
});

describe("acknowledgements not yet committed", () => {
  // An outside review: a device that acked everything and logged in again within milliseconds got every entry
  // again (the drain read rows whose delete was still in the open batch), and a device emptied by an ack kept
  // refusing senders with queueFull (its state was released and reloaded with the store's stale counters).
  test("an immediate re-login after acking everything gets nothing again", async () => {
    const server = await serverWith({ limits: { commitDelayMs: 400 } });
    const { client: alice } = await user(server, "alice");
    const { client: bob, key: bobKey } = await user(server, "bob");
    const bobAccount = bob.account;
    bob.close();
    await bob.waitClosed();
    for (let index = 0; index < 10; index++) alice.send(bobAccount, bytesOf(`m${index}`));
    await waitFor(() => alice.all("serverAck").length === 10, 3000, "server-acks");
    const first = await RawClient.connect(server.port);
    clients.push(first);
    await first.login(bobAccount, 1, bobKey);
    // The delivery window is smaller than 10: ack as entries come, until the queue is empty.
    while (first.all("queueEmpty").length === 0) {
      const count = first.all("deliver").length;
      if (count > 0) first.ack(first.all("deliver").at(-1)!.seq);
      await waitFor(() => first.all("deliver").length > count || first.all("queueEmpty").length > 0, 3000, "drain");
    }
    expect(first.all("deliver")).toHaveLength(10);
    first.ack(first.all("deliver").at(-1)!.seq);
    first.sendStanza({ kind: "ping" });
    await first.next("pong");
    first.close();
    await first.waitClosed();
    // Well inside the 400 ms commit delay: the deletes are not written yet.
    const second = await RawClient.connect(server.port);
    clients.push(second);
    await second.login(bobAccount, 1, bobKey);
    await second.next("queueEmpty");
    expect(second.all("deliver")).toHaveLength(0);
  });

  test("a queue emptied by an ack accepts the next send at once (quota counters stay exact)", async () => {
    const server = await serverWith({ limits: { commitDelayMs: 300 } });
    const queueMax = server.config.limits.queueMessagesMax;
    const { client: alice } = await user(server, "alice");
    const { client: bob, key: bobKey } = await user(server, "bob");
    const bobAccount = bob.account;
    bob.close();
    await bob.waitClosed();
    for (let index = 0; index < queueMax; index++) alice.send(bobAccount, bytesOf(`m${index}`));
    await waitFor(() => alice.all("serverAck").length === queueMax, 3000, "server-acks");
    alice.send(bobAccount, bytesOf("one too many"));
    expect((await alice.next("error")).code).toBe(ErrorCode.queueFull);

    const again = await RawClient.connect(server.port);
    clients.push(again);
    await again.login(bobAccount, 1, bobKey);
    while (again.all("deliver").length < queueMax) {
      const delivers = again.all("deliver");
      again.ack(delivers.at(-1)!.seq);
      await waitFor(() => again.all("deliver").length > delivers.length, 3000, "more delivers");
    }
    again.ack(again.all("deliver").at(-1)!.seq);
    await again.next("queueEmpty");
    // Right after the ack, before its deletes commit, and again after: both accepted.
    const now = alice.send(bobAccount, bytesOf("right after the ack"));
    expect((await alice.next("serverAck", (ack) => ack.clientId === now)).clientId).toBe(now);
    await Bun.sleep(400);
    const later = alice.send(bobAccount, bytesOf("after the commit"));
    expect((await alice.next("serverAck", (ack) => ack.clientId === later)).clientId).toBe(later);
    expect(alice.all("error").filter((error) => error.code === ErrorCode.queueFull)).toHaveLength(1);
    expect(queueRows(server, bobAccount, 1)).toBeLessThanOrEqual(2);
  });
});

describe("receipts and fair shares", () => {
  test("a read receipt must name messages delivered to its author; each is receipted once; delivered is the server's", async () => {
    const server = await serverWith();
    const { client: alice } = await user(server, "alice");
    const { client: bob } = await user(server, "bob");
    const sent = alice.send(bob.account, bytesOf("hello"));
    await alice.next("serverAck");
    const deliver = await bob.next("deliver");
    bob.ack(deliver.seq);
    await alice.next("deliverReceipt", (receipt) => receipt.type === ReceiptType.delivered);
    const receiptTo = (clientIds: number[], type: 1 | 2 = ReceiptType.read) =>
      bob.sendStanza({ kind: "receipt", type, to: alice.account, toDevice: alice.device, clientIds });

    // Never delivered (a later id, and an id of another sender device): refused, nothing queued.
    receiptTo([sent + 1]);
    expect(await bob.next("error")).toMatchObject({ code: ErrorCode.receiptUnknown, clientId: null });
    bob.sendStanza({ kind: "receipt", type: ReceiptType.read, to: alice.account, toDevice: 7, clientIds: [sent] });
    expect(await bob.next("error")).toMatchObject({ code: ErrorCode.receiptUnknown });
    // A client's own delivered receipt would duplicate the server's.
    receiptTo([sent], ReceiptType.delivered);
    expect(await bob.next("error")).toMatchObject({ code: ErrorCode.badRequest });
    // One good id with a bad one: the whole receipt is refused.
    receiptTo([sent, sent + 5]);
    expect(await bob.next("error")).toMatchObject({ code: ErrorCode.receiptUnknown });

    receiptTo([sent]);
    const read = await alice.next("deliverReceipt", (receipt) => receipt.type === ReceiptType.read);
    expect(read.clientIds).toEqual([sent]);
    receiptTo([sent]); // a resend: accepted, queues nothing
    bob.sendStanza({ kind: "ping" });
    await bob.next("pong");
    await Bun.sleep(50);
    expect(alice.all("deliverReceipt").filter((receipt) => receipt.type === ReceiptType.read)).toHaveLength(1);
    expect(bob.all("error")).toHaveLength(4);
    expect(bob.closed).toBe(false);
  });

  test("the window survives the device's state being released and a restart of the server", async () => {
    const dataDir = temporaryDirectory();
    const first = await startTestServer({ dataDir });
    const { client: alice, key: aliceKey } = await registeredClient(first.port, "alice");
    const { client: bob, key: bobKey } = await registeredClient(first.port, "bob");
    const ids = [alice.send(bob.account, bytesOf("one")), alice.send(bob.account, bytesOf("two"))];
    await waitFor(() => bob.all("deliver").length === 2, 3000, "deliveries");
    bob.ack(bob.all("deliver").at(-1)!.seq);
    await alice.next("deliverReceipt");
    const aliceAccount = alice.account;
    const bobAccount = bob.account;
    alice.close();
    bob.close();
    await first.stop();

    running = await startTestServer({ dataDir });
    const aliceAgain = await RawClient.connect(running.port);
    const bobAgain = await RawClient.connect(running.port);
    clients.push(aliceAgain, bobAgain);
    await aliceAgain.login(aliceAccount, 1, aliceKey);
    await bobAgain.login(bobAccount, 1, bobKey);
    bobAgain.sendStanza({ kind: "receipt", type: ReceiptType.read, to: aliceAccount, toDevice: 1, clientIds: ids });
    const read = await aliceAgain.next("deliverReceipt", (receipt) => receipt.type === ReceiptType.read);
    expect(read.clientIds).toEqual(ids);
    bobAgain.sendStanza({ kind: "receipt", type: ReceiptType.read, to: aliceAccount, toDevice: 1, clientIds: [99] });
    expect(await bobAgain.next("error")).toMatchObject({ code: ErrorCode.receiptUnknown });
  });

  test("receipts cannot fill an offline device's queue: four floods of invented receipts, then a friend's message goes in", async () => {
    const server = await serverWith({ limits: { rateStanzasPerSecond: 1000, rateBurstStanzas: 1000 } });
    const { client: alice } = await user(server, "alice");
    const { client: bob } = await user(server, "bob");
    const bobAccount = bob.account;
    bob.close();
    await bob.waitClosed();
    const floods = await Promise.all([1, 2, 3, 4].map((index) => user(server, `mallory${index}`)));
    for (const { client } of floods) {
      for (let index = 0; index < 30; index++) {
        client.sendStanza({
          kind: "receipt",
          type: ReceiptType.read,
          to: bobAccount,
          toDevice: 1,
          clientIds: [index + 1],
        });
      }
    }
    await waitFor(
      () => floods.every(({ client }) => client.all("error").length === 30),
      5000,
      "every invented receipt refused",
    );
    for (const { client } of floods) {
      expect(client.all("error").every((error) => error.code === ErrorCode.receiptUnknown)).toBe(true);
    }
    expect(queueRows(server, bobAccount, 1)).toBe(0);
    const friend = alice.send(bobAccount, bytesOf("a real message"));
    expect((await alice.next("serverAck")).clientId).toBe(friend);
  });

  test("one sender may take at most queueSenderSharePercent of a device's queue; others still get in", async () => {
    const server = await serverWith({ limits: { queueMessagesMax: 20, queueSenderSharePercent: 25 } });
    const share = 5;
    const { client: bob } = await user(server, "bob");
    const bobAccount = bob.account;
    bob.close();
    await bob.waitClosed();
    const senders = await Promise.all(["mallory", "alice", "carol", "dave"].map((handle) => user(server, handle)));
    for (const { client } of senders) {
      for (let index = 0; index < share + 2; index++) client.send(bobAccount, bytesOf(`${index}`));
      await waitFor(() => client.all("serverAck").length + client.all("error").length === share + 2, 3000, "answers");
      expect(client.all("serverAck")).toHaveLength(share);
      expect(client.all("error").map((error) => error.code)).toEqual([ErrorCode.queueFull, ErrorCode.queueFull]);
    }
    expect(queueRows(server, bobAccount, 1)).toBe(4 * share);
  });
});

describe("writes", () => {
  test("frames for one socket from the events of one turn go out in one write", async () => {
    const server = await serverWith({
      limits: {
        rateStanzasPerSecond: 1000,
        rateBurstStanzas: 1000,
        inboundBytesMax: 16 * 1024,
        queueMessagesMax: 200,
        deliveryWindowMessages: 64,
      },
    });
    const alice = await user(server, "alice");
    const bob = await user(server, "bob");
    const writes = () =>
      Number(server.server.context.metrics.render().match(/^switchboard_socket_writes_total (\d+)$/m)?.[1]);
    // 40 sends in one TCP write to an online device: 40 deliveries for bob, 40 server-acks for alice.
    const count = 40;
    const frames: Uint8Array[] = [];
    for (let index = 0; index < count; index++) {
      frames.push(
        alice.client.codec.encode({
          kind: "send",
          clientId: alice.client.clientId(),
          to: bob.client.account,
          payload: bytesOf(`m${index}`),
        }),
      );
    }
    const before = writes();
    alice.client.write(new Uint8Array(Buffer.concat(frames)));
    await waitFor(() => alice.client.all("serverAck").length === count, 5000, "server-acks");
    await waitFor(() => bob.client.all("deliver").length >= count, 5000, "deliveries");
    // Each frame written on its own would be 80 writes; flushed once per turn, a handful (the sends are handled in
    // one turn or a few, the commit's server-acks in another).
    expect(writes() - before).toBeLessThanOrEqual(8);
  });
});
