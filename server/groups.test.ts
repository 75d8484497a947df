// Groups through the real path (PROTOCOL.md section 18): loopback sockets, a real server with SQLite partitions.
// Membership changes reach every member device as queued, ordered events; a group send stores its payload once per
// partition, gives every member device except the sending one the next sequence of its queue, and is server-acked
// once durable; the device-list check refuses a stale view before anything is stored.

import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { ErrorCode, GroupOp, type Stanza, type StanzaOf } from "../protocol/index.ts";
import { hexToBytes, loadBadInputs } from "../protocol/vectors/generate.ts";
import { groupDevicesHash } from "./group-owner.ts";
import { partitionFilePath } from "./partitions.ts";
import {
  bytesOf,
  type RawClient,
  registeredClient,
  startTestServer,
  type TestServer,
  testPartitions,
  textOf,
} from "./test-kit.ts";

let running: TestServer | null = null;
const clients: RawClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await running?.stop();
  running = null;
});

async function user(server: TestServer, handle: string): Promise<RawClient> {
  const { client } = await registeredClient(server.port, handle);
  clients.push(client);
  return client;
}

async function createGroup(creator: RawClient, members: RawClient[], name = "team"): Promise<StanzaOf<"groupInfo">> {
  const clientId = creator.clientId();
  creator.sendStanza({
    kind: "groupCreate",
    clientId,
    name: bytesOf(name),
    members: members.map((member) => member.account),
  });
  return creator.next("groupInfo", (info) => info.clientId === clientId);
}

function groupSend(
  sender: RawClient,
  info: StanzaOf<"groupInfo">,
  text: string,
  options: Partial<StanzaOf<"groupSend">> = {},
): number {
  const clientId = options.clientId ?? sender.clientId();
  const devices = info.devices.filter((entry) => !(entry.account === sender.account && entry.device === sender.device));
  sender.sendStanza({
    kind: "groupSend",
    clientId,
    groupId: info.groupId,
    devices,
    devicesHash: null,
    payload: bytesOf(text),
    parts: [],
    ...options,
  });
  return clientId;
}

/** The group entries (events and messages) a client received, in sequence order, acknowledging each. */
function groupEntries(client: RawClient): Array<StanzaOf<"groupEvent"> | StanzaOf<"groupDeliver">> {
  return client.received.filter(
    (stanza): stanza is StanzaOf<"groupEvent"> | StanzaOf<"groupDeliver"> =>
      stanza.kind === "groupEvent" || stanza.kind === "groupDeliver",
  );
}

describe("groups", () => {
  test("create: every member device gets the create event; a send reaches every other member device once, acked", async () => {
    running = await startTestServer();
    const alice = await user(running, "alice");
    const bob = await user(running, "bob");
    const carol = await user(running, "carol");
    const info = await createGroup(alice, [bob, carol]);
    expect(info.members).toEqual([alice.account, bob.account, carol.account].sort((a, b) => a - b));
    expect(info.admins).toEqual([alice.account]);
    expect(info.version).toBe(1);
    expect(textOf(info.name)).toBe("team");
    for (const member of [alice, bob, carol]) {
      const event = await member.next("groupEvent");
      expect(event).toMatchObject({ groupId: info.groupId, version: 1, op: GroupOp.create, actor: alice.account });
      expect(event.accounts).toEqual(info.members);
      member.ack(event.seq);
    }
    const clientId = groupSend(alice, info, "hello group");
    expect((await alice.next("serverAck")).clientId).toBe(clientId);
    for (const member of [bob, carol]) {
      const message = await member.next("groupDeliver");
      expect(message).toMatchObject({ groupId: info.groupId, from: alice.account, fromDevice: alice.device, clientId });
      expect(textOf(message.payload)).toBe("hello group");
      expect(message.part).toBeNull();
      member.ack(message.seq);
    }
    // The sending device gets no copy of its own message.
    expect(alice.all("groupDeliver")).toHaveLength(0);
    // The delivered receipts reach the sender gathered: one groupReceipt naming both readers (they acked together,
    // within the hold).
    const readers: string[] = [];
    while (readers.length < 2) {
      const receipt = await alice.next("groupReceipt", (entry) => entry.clientId === clientId);
      expect(receipt).toMatchObject({ groupId: info.groupId, senderDevice: alice.device, type: 1 });
      for (const reader of receipt.readers) readers.push(`${reader.account}/${reader.device}`);
      alice.ack(receipt.seq);
    }
    expect(readers.sort()).toEqual([`${bob.account}/${bob.device}`, `${carol.account}/${carol.device}`].sort());
    expect(alice.all("groupReceipt").length).toBeLessThanOrEqual(2);
    expect(alice.all("deliverReceipt")).toHaveLength(0);

    // Read receipts naming the group are gathered the same way: one groupReceipt of type read naming both readers
    // (they read within the hold), not a deliverReceipt per reader.
    const deliveredFrames = alice.all("groupReceipt").length;
    for (const member of [bob, carol]) {
      member.sendStanza({
        kind: "receipt",
        type: 2,
        to: alice.account,
        toDevice: alice.device,
        clientIds: [clientId],
        groupId: info.groupId,
      });
    }
    const readBy: string[] = [];
    while (readBy.length < 2) {
      const receipt = await alice.next("groupReceipt", (entry) => entry.clientId === clientId && entry.type === 2);
      expect(receipt).toMatchObject({ groupId: info.groupId, senderDevice: alice.device });
      for (const reader of receipt.readers) readBy.push(`${reader.account}/${reader.device}`);
      alice.ack(receipt.seq);
    }
    expect(readBy.sort()).toEqual(readers);
    expect(alice.all("groupReceipt").length - deliveredFrames).toBeLessThanOrEqual(2);
    expect(alice.all("deliverReceipt")).toHaveLength(0);
    // A read receipt naming the group for a client id never delivered to the reader is still refused as a whole.
    bob.sendStanza({
      kind: "receipt",
      type: 2,
      to: alice.account,
      toDevice: alice.device,
      clientIds: [clientId + 1000],
      groupId: info.groupId,
    });
    expect((await bob.next("error")).code).toBe(ErrorCode.receiptUnknown);
  });

  test("device-list check: a stale list or hash gets deviceMismatch with the difference, and nothing is stored", async () => {
    running = await startTestServer();
    const alice = await user(running, "alice");
    const bob = await user(running, "bob");
    const carol = await user(running, "carol");
    const info = await createGroup(alice, [bob, carol]);
    const bobDevice = { account: bob.account, device: bob.device };
    const stranger = { account: 999_999, device: 1 };
    const stale = groupSend(alice, info, "stale", { devices: [bobDevice, stranger] });
    const mismatch = await alice.next("error", (error) => error.clientId === stale);
    expect(mismatch.code).toBe(ErrorCode.deviceMismatch);
    expect(mismatch.missingMemberDevices).toEqual([{ account: carol.account, device: carol.device }]);
    expect(mismatch.extraMemberDevices).toEqual([stranger]);
    const badHash = groupSend(alice, info, "stale", { devices: null, devicesHash: new Uint8Array(8) });
    const hashMismatch = await alice.next("error", (error) => error.clientId === badHash);
    expect(hashMismatch.code).toBe(ErrorCode.deviceMismatch);
    expect(hashMismatch.missingMemberDevices).toHaveLength(2);
    // The right hash is accepted, with a part for bob only.
    const others = info.devices.filter((entry) => entry.account !== alice.account);
    const good = groupSend(alice, info, "by hash", {
      devices: null,
      devicesHash: groupDevicesHash(others),
      parts: [{ ...bobDevice, part: bytesOf("sender key for bob") }],
    });
    await alice.next("serverAck", (ack) => ack.clientId === good);
    const toBob = await bob.next("groupDeliver");
    expect(toBob.clientId).toBe(good);
    expect(textOf(toBob.part!)).toBe("sender key for bob");
    const toCarol = await carol.next("groupDeliver");
    expect(toCarol.clientId).toBe(good);
    expect(toCarol.part).toBeNull();
    // The refused sends were never stored: the first message either got is the good one.
    expect(bob.all("groupDeliver").map((message) => message.clientId)).toEqual([good]);
  });

  test("membership: add, promote, remove and leave are ordered events; only members send, only admins change", async () => {
    running = await startTestServer();
    const alice = await user(running, "alice");
    const bob = await user(running, "bob");
    const carol = await user(running, "carol");
    let info = await createGroup(alice, [bob]);
    const update = async (actor: RawClient, op: number, accounts: number[], name: Uint8Array | null = null) => {
      const clientId = actor.clientId();
      actor.sendStanza({ kind: "groupUpdate", clientId, groupId: info.groupId, op: op as 2, accounts, name });
      const answer = await actor
        .next("groupInfo" as Stanza["kind"], (stanza) => (stanza as { clientId?: number }).clientId === clientId)
        .catch(() => null);
      return { clientId, answer: answer as StanzaOf<"groupInfo"> | null };
    };
    // carol is not a member: she can neither send nor fetch.
    const refused = groupSend(carol, info, "let me in");
    expect((await carol.next("error", (error) => error.clientId === refused)).code).toBe(ErrorCode.notGroupMember);
    // bob is not an admin: he cannot add.
    const notAdmin = bob.clientId();
    bob.sendStanza({
      kind: "groupUpdate",
      clientId: notAdmin,
      groupId: info.groupId,
      op: GroupOp.add,
      accounts: [carol.account],
      name: null,
    });
    expect((await bob.next("error", (error) => error.clientId === notAdmin)).code).toBe(ErrorCode.notGroupAdmin);

    info = (await update(alice, GroupOp.add, [carol.account])).answer!;
    expect(info.version).toBe(2);
    expect(info.members).toContain(carol.account);
    const first = groupSend(carol, info, "hi, I am new");
    await carol.next("serverAck", (ack) => ack.clientId === first);
    info = (await update(alice, GroupOp.promote, [bob.account])).answer!;
    expect([...info.admins].sort()).toEqual([alice.account, bob.account].sort());
    info = (await update(bob, GroupOp.remove, [carol.account])).answer!;
    expect(info.members).not.toContain(carol.account);
    // Removed: carol may not send any more; her message queued before the removal stays deliverable.
    const late = groupSend(carol, info, "still here?");
    expect((await carol.next("error", (error) => error.clientId === late)).code).toBe(ErrorCode.notGroupMember);
    info = (await update(alice, GroupOp.rename, [], bytesOf("new name"))).answer!;
    expect(textOf(info.name)).toBe("new name");
    info = (await update(alice, GroupOp.leave, [])).answer!;
    expect(info.members).toEqual([bob.account]);

    // Bob saw everything in order: create, add, carol's message, promote, remove, rename, leave.
    await bob.next("groupEvent", (event) => event.version === 6);
    const seen = groupEntries(bob).map((entry) =>
      entry.kind === "groupEvent" ? `v${entry.version}:${entry.op}` : `m:${textOf(entry.payload)}`,
    );
    expect(seen).toEqual([
      `v1:${GroupOp.create}`,
      `v2:${GroupOp.add}`,
      "m:hi, I am new",
      `v3:${GroupOp.promote}`,
      `v4:${GroupOp.remove}`,
      `v5:${GroupOp.rename}`,
      `v6:${GroupOp.leave}`,
    ]);
    const sequences = groupEntries(bob).map((entry) => entry.seq);
    expect(sequences).toEqual([...sequences].sort((a, b) => a - b));
    // Carol got the events up to her removal, and none after it.
    await carol.next("groupEvent", (event) => event.version === 4);
    expect(groupEntries(carol).map((entry) => (entry.kind === "groupEvent" ? entry.version : -1))).toEqual([2, 3, 4]);
  });

  test("bad input: malformed group frames close only their own session with their code; refusals keep it", async () => {
    running = await startTestServer();
    const alice = await user(running, "alice");
    const bob = await user(running, "bob");
    const info = await createGroup(alice, [bob]);
    // Refused stanzas keep the session: an unknown group, a payload over payloadBytesMax.
    const unknown = alice.clientId();
    alice.sendStanza({ kind: "groupFetch", clientId: unknown, groupId: info.groupId ^ 1 });
    expect((await alice.next("error", (error) => error.clientId === unknown)).code).toBe(ErrorCode.unknownGroup);
    const big = groupSend(alice, info, "x".repeat(600));
    expect((await alice.next("error", (error) => error.clientId === big)).code).toBe(ErrorCode.payloadTooLarge);
    // Malformed group frames (the vectors a decoder must refuse) close the session that sent them, and only it.
    // (All of them are checked against the codec in protocol/; three kinds here, through the server, for time.)
    const all = (await loadBadInputs()).inputs.filter((input) => input.name.startsWith("group"));
    expect(all.length).toBeGreaterThanOrEqual(8);
    const vectors = ["groupSend", "groupCreate", "groupUpdate"].map(
      (kind) => all.find((input) => input.name.startsWith(kind))!,
    );
    for (const vector of vectors) {
      const { client } = await registeredClient(running.port, `bad${vectors.indexOf(vector)}`);
      clients.push(client);
      client.write(hexToBytes(vector.hex));
      const error = await client.next("error");
      expect([vector.name, error.code]).toEqual([vector.name, vector.code]);
      await client.waitClosed();
    }
    // The group and its members go on.
    const after = groupSend(alice, info, "still fine");
    await alice.next("serverAck", (ack) => ack.clientId === after);
    expect(textOf((await bob.next("groupDeliver", (entry) => entry.clientId === after)).payload)).toBe("still fine");
  });

  test("a resent send is stored once; the payload once per partition; the members' receipts come back gathered", async () => {
    running = await startTestServer();
    const alice = await user(running, "alice");
    const members: RawClient[] = [];
    for (let index = 0; index < 6; index++) members.push(await user(running, `member${index}`));
    const info = await createGroup(alice, members);
    const clientId = groupSend(alice, info, "once");
    groupSend(alice, info, "once", { clientId });
    await alice.next("serverAck", (ack) => ack.clientId === clientId);
    await alice.next("serverAck", (ack) => ack.clientId === clientId);
    for (const member of members) {
      await member.next("groupDeliver", (message) => message.clientId === clientId);
    }
    await Bun.sleep(50);
    for (const member of members) {
      expect(member.all("groupDeliver").filter((message) => message.clientId === clientId)).toHaveLength(1);
    }
    // Every member is offline-stored (nobody acked): rows per device, payload copies per partition.
    let rows = 0;
    let copies = 0;
    let partitionsWithRows = 0;
    for (let partition = 0; partition < testPartitions; partition++) {
      const database = new Database(partitionFilePath(running.dataDir, partition), { readonly: true });
      try {
        const found = database.query("select count(*) as n from queue where kind = 2").get() as { n: number };
        const shared = database.query("select count(*) as n from messages").get() as { n: number };
        const inline = database
          .query("select count(*) as n from queue where kind = 2 and payload is not null")
          .get() as { n: number };
        rows += found.n;
        copies += shared.n + inline.n;
        if (found.n > 0) partitionsWithRows++;
      } finally {
        database.close();
      }
    }
    expect(rows).toBe(members.length);
    expect(copies).toBe(partitionsWithRows);
    // Now the members ack: their delivered receipts reach the sender gathered, far fewer frames than members.
    for (const member of members) {
      member.ack(member.all("groupDeliver").find((message) => message.clientId === clientId)!.seq);
    }
    const readers = new Set<string>();
    let frames = 0;
    while (readers.size < members.length) {
      const receipt = await alice.next("groupReceipt", (entry) => entry.clientId === clientId);
      frames++;
      for (const reader of receipt.readers) readers.add(`${reader.account}/${reader.device}`);
      alice.ack(receipt.seq);
    }
    expect([...readers].sort()).toEqual(members.map((member) => `${member.account}/${member.device}`).sort());
    expect(frames).toBeLessThan(members.length);
    expect(alice.all("deliverReceipt")).toHaveLength(0);
  });
});
