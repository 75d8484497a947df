// What a resent request does (PROTOCOL.md section 11, "Resending requests"), through real sockets with the raw
// client: each kind is sent twice with the same client id, as a client does after a lost answer, and once more
// after a reconnect where the table says so.

import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ErrorCode, ReceiptType } from "../protocol/index.ts";
import { openSqliteStorage } from "../storage/index.ts";
import {
  bytesOf,
  type DeviceKey,
  newDeviceKey,
  RawClient,
  registeredClient,
  startTestServer,
  type TestServer,
  waitFor,
} from "./test-kit.ts";

let running: TestServer | null = null;
const clients: RawClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await running?.stop();
  running = null;
});

async function server(options: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  running = await startTestServer(options);
  return running;
}

/** Issues invite codes straight into the running server's database (the key file beside it hashes them). */
async function issueInvites(count: number): Promise<string[]> {
  const storage = await openSqliteStorage({ path: join(running!.dataDir, "switchboard.sqlite") });
  try {
    const codes = Array.from({ length: count }, (_, index) => `invite-${Date.now()}-${index}`);
    for (const code of codes) await storage.invites.issue(code, Date.now(), Date.now() + 60_000);
    return codes;
  } finally {
    await storage.close();
  }
}

async function user(port: number, handle: string): Promise<{ client: RawClient; key: DeviceKey }> {
  const registered = await registeredClient(port, handle);
  clients.push(registered.client);
  return registered;
}

async function connect(port: number): Promise<RawClient> {
  const client = await RawClient.connect(port);
  clients.push(client);
  return client;
}

/** Links a new device to `owner`'s account; returns its client. */
async function linkDevice(port: number, owner: RawClient): Promise<RawClient> {
  owner.sendStanza({ kind: "linkCreate", clientId: owner.clientId() });
  const { code } = await owner.next("linkCode");
  const device = await connect(port);
  await device.link(code, newDeviceKey());
  await device.next("queueEmpty");
  return device;
}

describe("resending a request after a lost answer", () => {
  test("lookup and devices: the same answer again", async () => {
    const { port } = await server();
    const { client: alice } = await user(port, "alice");
    const { client: bob } = await user(port, "bob");
    const lookupId = alice.clientId();
    alice.sendStanza({ kind: "lookup", clientId: lookupId, handle: "bob" });
    alice.sendStanza({ kind: "lookup", clientId: lookupId, handle: "bob" });
    const first = await alice.next("lookupResult");
    const second = await alice.next("lookupResult");
    expect(second).toEqual(first);
    expect(first).toMatchObject({ clientId: lookupId, account: bob.account, devices: [1] });

    const devicesId = alice.clientId();
    alice.sendStanza({ kind: "devices", clientId: devicesId });
    alice.sendStanza({ kind: "devices", clientId: devicesId });
    const list = await alice.next("deviceList");
    expect(await alice.next("deviceList")).toEqual(list);
    expect(list.clientId).toBe(devicesId);
  });

  test("linkCreate: a resend makes a second code, and both stay valid until used or expired", async () => {
    const { port } = await server();
    const { client: alice } = await user(port, "alice");
    const clientId = alice.clientId();
    alice.sendStanza({ kind: "linkCreate", clientId });
    alice.sendStanza({ kind: "linkCreate", clientId });
    const first = await alice.next("linkCode");
    const second = await alice.next("linkCode");
    expect([first.clientId, second.clientId]).toEqual([clientId, clientId]);
    expect(second.code).not.toBe(first.code);
    for (const code of [first.code, second.code]) {
      const device = await connect(port);
      const welcome = await device.link(code, newDeviceKey());
      expect(welcome.account).toBe(alice.account);
    }
  });

  test("deviceRemove: a resend of a done removal gets serverAck again, also after a reconnect", async () => {
    const { port } = await server();
    const { client: alice, key } = await user(port, "alice");
    const phone = await linkDevice(port, alice);
    expect(phone.device).toBe(2);

    const removeId = alice.clientId();
    alice.sendStanza({ kind: "deviceRemove", clientId: removeId, device: 2 });
    alice.sendStanza({ kind: "deviceRemove", clientId: removeId, device: 2 });
    expect((await alice.next("serverAck")).clientId).toBe(removeId);
    expect((await alice.next("serverAck")).clientId).toBe(removeId);
    // The removed device's own connection ends with an error frame 403 (PROTOCOL.md section 12).
    expect((await phone.next("error")).code).toBe(ErrorCode.deviceRemoved);
    await phone.waitClosed();

    // After a reconnect, the resend (same client id) and a new request (new id) for the removed device both succeed.
    alice.close();
    const again = await connect(port);
    await again.login(alice.account, alice.device, key);
    again.sendStanza({ kind: "deviceRemove", clientId: removeId, device: 2 });
    expect((await again.next("serverAck")).clientId).toBe(removeId);
    const newId = again.clientId();
    again.sendStanza({ kind: "deviceRemove", clientId: newId, device: 2 });
    expect((await again.next("serverAck")).clientId).toBe(newId);

    // A device the account never had is still unknownDevice; the last device still cannot go.
    const unknownId = again.clientId();
    again.sendStanza({ kind: "deviceRemove", clientId: unknownId, device: 9 });
    expect(await again.next("error")).toMatchObject({ code: ErrorCode.unknownDevice, clientId: unknownId });
    const lastId = again.clientId();
    again.sendStanza({ kind: "deviceRemove", clientId: lastId, device: 1 });
    expect(await again.next("error")).toMatchObject({ code: ErrorCode.notAllowed, clientId: lastId });
    expect(again.closed).toBe(false);
  });

  test("deviceRemove: a removal done by another device of the account is success for this one too", async () => {
    const { port } = await server();
    const { client: alice } = await user(port, "alice");
    const laptop = await linkDevice(port, alice);
    await linkDevice(port, alice); // device 3
    const aliceId = alice.clientId();
    alice.sendStanza({ kind: "deviceRemove", clientId: aliceId, device: 3 });
    expect((await alice.next("serverAck")).clientId).toBe(aliceId);
    const laptopId = laptop.clientId();
    laptop.sendStanza({ kind: "deviceRemove", clientId: laptopId, device: 3 });
    expect((await laptop.next("serverAck")).clientId).toBe(laptopId);
    // Another account's removals are not this account's: its device 3 never existed.
    const { client: bob } = await user(port, "bob");
    const bobId = bob.clientId();
    bob.sendStanza({ kind: "deviceRemove", clientId: bobId, device: 3 });
    expect(await bob.next("error")).toMatchObject({ code: ErrorCode.unknownDevice, clientId: bobId });
  });

  test("receipt: a resend queues nothing twice (each message is receipted as read once); to an unknown account, 101 without id", async () => {
    const { port } = await server();
    const { client: alice } = await user(port, "alice");
    const { client: bob } = await user(port, "bob");
    const clientId = alice.send(bob.account, bytesOf("hi"));
    await alice.next("serverAck");
    const deliver = await bob.next("deliver");
    bob.ack(deliver.seq);
    await alice.next("deliverReceipt", (receipt) => receipt.type === ReceiptType.delivered);
    const read = { kind: "receipt", type: ReceiptType.read, to: alice.account, toDevice: 1, clientIds: [clientId] };
    bob.sendStanza(read as never);
    bob.sendStanza(read as never);
    const first = await alice.next("deliverReceipt", (receipt) => receipt.type === ReceiptType.read);
    expect(first.clientIds).toEqual([clientId]);
    // The resend is accepted without an error, and queues nothing.
    bob.sendStanza({ kind: "ping" });
    await bob.next("pong");
    await Bun.sleep(100);
    expect(alice.all("deliverReceipt").filter((receipt) => receipt.type === ReceiptType.read)).toHaveLength(1);
    expect(bob.all("error")).toHaveLength(0);

    bob.sendStanza({ kind: "receipt", type: ReceiptType.read, to: 999_999, toDevice: 1, clientIds: [clientId] });
    expect(await bob.next("error")).toMatchObject({ code: ErrorCode.unknownAccount, clientId: null });
    expect(bob.closed).toBe(false);
  });
});

/**
 * Sends an auth stanza through the test kit (which knows its current shape and signature) when its answer is an error:
 * the kit's helper waits for a welcome that does not come, so its rejection is dropped.
 */
function refused(attempt: Promise<unknown>): void {
  attempt.catch(() => {});
}

describe("resending an auth stanza", () => {
  test("login: on a new connection it logs in again; on the same connection after welcome it is 308", async () => {
    const { port } = await server();
    const { client: alice, key } = await user(port, "alice");
    const again = await connect(port);
    await again.login(alice.account, alice.device, key);
    // The older connection is replaced.
    expect((await alice.next("goaway")).code).toBe(ErrorCode.replaced);
    await again.next("queueEmpty");
    refused(again.login(alice.account, alice.device, key));
    expect((await again.next("error")).code).toBe(ErrorCode.unexpectedStanza);
    await again.waitClosed();
  });

  test("register: a resend after a lost welcome, with the same key, is welcomed as that device; another key gets 104", async () => {
    const { port } = await server({ registration: "invite" });
    const [invite] = await issueInvites(1);
    const key = newDeviceKey();
    const first = await connect(port);
    const welcome = await first.register("alice", key, invite);
    first.close();
    // The same key and handle on a new connection, signed over the new nonce (the invite is used up by now).
    const again = await connect(port);
    const second = await again.register("alice", key, invite);
    expect(second).toMatchObject({ account: welcome.account, device: welcome.device });
    // Another key for the same handle: taken (the invite check comes first, so pass a fresh one).
    const [other] = await issueInvites(1);
    const stranger = await connect(port);
    refused(stranger.register("alice", newDeviceKey(), other));
    expect(await stranger.next("error")).toMatchObject({ code: ErrorCode.handleTaken, clientId: null });
    expect(stranger.closed).toBe(false);
  });

  test("link: a resend after a lost welcome finds its code used (107); the first link made a device", async () => {
    const { port } = await server();
    const { client: alice } = await user(port, "alice");
    alice.sendStanza({ kind: "linkCreate", clientId: alice.clientId() });
    const { code } = await alice.next("linkCode");
    const key = newDeviceKey();
    const first = await connect(port);
    await first.link(code, key);
    first.close();
    // The same key and code on a new connection, signed over the new nonce: the code is used up.
    const again = await connect(port);
    refused(again.link(code, key));
    expect(await again.next("error")).toMatchObject({ code: ErrorCode.linkCodeInvalid, clientId: null });
    expect(again.closed).toBe(false);

    const listId = alice.clientId();
    alice.sendStanza({ kind: "devices", clientId: listId });
    const list = await alice.next("deviceList");
    // The first link's device exists: a client that lost its welcome removes it from another device.
    expect(list.devices.map((device) => device.device)).toEqual([1, 2]);
  });
});

describe("reverseLookup: handles by account id, only where the device may learn them (PROTOCOL.md section 8)", () => {
  async function reverse(client: RawClient, accounts: number[]): Promise<Array<string | null>> {
    const clientId = client.clientId();
    client.sendStanza({ kind: "reverseLookup", clientId, accounts });
    return (await client.next("reverseLookupResult", (answer) => answer.clientId === clientId)).handles.slice();
  }

  test("own account and senders of delivered messages; nil for everyone else, existing or not", async () => {
    const { port } = await server();
    const { client: alice } = await user(port, "alice");
    const { client: bob, key: bobKey } = await user(port, "bob");
    const { client: carol } = await user(port, "carol");
    const nobody = carol.account + 1000;
    // Ids are sequential: before any message, bob learns nothing about alice, carol, or an id that is no account.
    expect(await reverse(bob, [alice.account, bob.account, carol.account, nobody])).toEqual([null, "bob", null, null]);

    // alice writes to bob: pushed to his device and not yet acked, he may already ask (clients ask before they ack).
    alice.send(bob.account, bytesOf("hello bob"));
    const delivered = await bob.next("deliver");
    expect(await reverse(bob, [alice.account, carol.account])).toEqual(["alice", null]);
    // The same id twice in one request is answered twice.
    expect(await reverse(bob, [alice.account, alice.account])).toEqual(["alice", "alice"]);
    bob.ack(delivered.seq);
    // alice only wrote to bob (she knew his handle from lookup): his delivered receipt does not reveal it either.
    await alice.next("deliverReceipt");
    expect(await reverse(alice, [bob.account, alice.account])).toEqual([null, "alice"]);

    // After a new login (the state is read from the store), bob still knows who wrote to him.
    await Bun.sleep(50); // the ack's group commit (commitDelayMs 2 in the test limits)
    bob.close();
    await bob.waitClosed();
    const again = await connect(port);
    await again.login(bob.account, bob.device, bobKey);
    await again.next("queueEmpty");
    expect(await reverse(again, [carol.account, alice.account])).toEqual([null, "alice"]);

    // Another device of alice's account never received anything from bob: nil for it too.
    const laptop = await linkDevice(port, alice);
    expect(await reverse(laptop, [bob.account, alice.account])).toEqual([null, "alice"]);
  });

  test("each id costs a rate token: past the budget the request is refused with rateLimited and its client id", async () => {
    const { port } = await server();
    const { client: alice } = await user(port, "alice");
    const accounts = [alice.account, alice.account + 1, alice.account + 2, alice.account + 3]; // testLimits: 4 ids
    const ids: number[] = [];
    // 20 requests of 4 ids each at once (80 tokens) against a burst of 50.
    for (let index = 0; index < 20; index++) {
      const clientId = alice.clientId();
      ids.push(clientId);
      alice.sendStanza({ kind: "reverseLookup", clientId, accounts });
    }
    await waitFor(() => alice.all("reverseLookupResult").length + alice.all("error").length === ids.length);
    const answered = alice.all("reverseLookupResult");
    const refused = alice.all("error");
    expect(answered.length).toBeGreaterThan(5);
    expect(answered.length).toBeLessThan(15);
    for (const error of refused) expect(error.code).toBe(ErrorCode.rateLimited);
    expect(refused.every((error) => error.clientId !== null && ids.includes(error.clientId))).toBe(true);
    for (const answer of answered) expect(answer.handles).toEqual(["alice", null, null, null]);
    expect(alice.closed).toBe(false);
  });

  test("an empty or too long list is a decoding error that closes the session", async () => {
    const { port } = await server();
    const { client: alice } = await user(port, "alice");
    alice.sendStanza({ kind: "reverseLookup", clientId: alice.clientId(), accounts: [] });
    expect((await alice.next("error")).code).toBe(ErrorCode.wrongFieldType);
    await alice.waitClosed();
  });
});
