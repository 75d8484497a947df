// Groups on `switchboard start --workers 4` (real processes, the mesh, real SQLite partitions), through the SDK:
// members spread over the partitions of every worker; a worker is killed with SIGKILL in the middle of a burst of
// group sends. The contract (PROTOCOL.md section 18): every send the sender got a server-ack for reaches every member
// device exactly once in the app, in the sender's order, and the membership events arrive in version order.

import { afterEach, expect, test } from "bun:test";
import { defaultLimits } from "../protocol/index.ts";
import { ownerOfPartition, partitionOf } from "../server/partitions.ts";
import { SupervisorKit } from "../server/supervisor-test-kit.ts";
import type { GroupEventEvent, GroupMessageEvent } from "./client-events.ts";
import { waitFor } from "./delivery-suite.ts";
import { SwitchboardClient } from "./switchboard-client.ts";

const workers = 4;
const partitions = 8;
const members = 10;
const sends = 40;
/** The send after which the group's owner is killed. */
const killAfter = 12;
const settleMs = 20_000;

const supervisors = new SupervisorKit();
const sdkClients: SwitchboardClient[] = [];

afterEach(async () => {
  for (const client of sdkClients.splice(0)) await client.close();
  supervisors.cleanup();
});

interface Member {
  readonly client: SwitchboardClient;
  account: number;
  readonly messages: GroupMessageEvent[];
  readonly events: GroupEventEvent[];
}

async function member(port: number, handle: string): Promise<Member> {
  const client = new SwitchboardClient({
    port,
    register: { handle },
    limits: defaultLimits,
    reconnect: { initialMs: 20, maxMs: 200, jitter: 0.5 },
    pingIntervalMs: 1000,
  });
  sdkClients.push(client);
  const joined: Member = { client, account: 0, messages: [], events: [] };
  client.on("groupMessage", (event) => void joined.messages.push(event));
  client.on("groupEvent", (event) => void joined.events.push(event));
  client.on("error", () => {});
  joined.account = (await client.connect()).account;
  return joined;
}

test("--workers 4: kill -9 of the group's owner during a burst of group sends loses, doubles and reorders nothing acked", async () => {
  const server = await supervisors.start({ workers, partitions });
  const port = server.port;
  const pids = server.pids();
  const sender = await member(port, "sender");
  const group: Member[] = [];
  for (let index = 0; index < members; index++) group.push(await member(port, `member${index}`));
  // The members' accounts fall in the partitions of every worker.
  const owners = new Set(group.map((joined) => ownerOfPartition(partitionOf(joined.account, partitions), workers)));
  expect(owners.size).toBeGreaterThan(1);

  const info = await sender.client.createGroup(
    new TextEncoder().encode("crash test"),
    group.map((joined) => joined.account),
  );
  expect(info.members).toHaveLength(members + 1);
  const groupOwner = ownerOfPartition(partitionOf(info.groupId, partitions), workers);

  const receiptReaders = new Map<number, Set<number>>();
  const readReaders = new Map<number, Set<number>>();
  sender.client.on("groupReceipt", (receipt) => {
    const byMessage = receipt.type === "read" ? readReaders : receiptReaders;
    const readers = byMessage.get(receipt.clientId) ?? new Set<number>();
    byMessage.set(receipt.clientId, readers);
    for (const reader of receipt.readers) readers.add(reader.account);
  });
  let senderCut = 0;
  sender.client.on("disconnected", () => void senderCut++);
  const acked: number[] = [];
  const sent: Array<Promise<void>> = [];
  for (let index = 0; index < sends; index++) {
    const payload = new TextEncoder().encode(`message ${index}`);
    sent.push(
      sender.client.sendToGroup(info.groupId, payload, { view: info }).then(
        (result) => void acked.push(result.clientId),
        () => {},
      ),
    );
    if (index === killAfter) process.kill(pids.get(groupOwner)!, "SIGKILL");
    await Bun.sleep(5);
  }
  await Promise.all(sent);
  // Every send is answered in the end (the outbox resends after the reconnect); none was refused. The kill did cut
  // the sender's session (its sends were in flight with the group's owner), so some were resent.
  expect(acked).toHaveLength(sends);
  expect(senderCut).toBeGreaterThan(0);
  const late = await member(port, "latecomer");
  const after = await sender.client.updateGroup(info.groupId, "add", [late.account]);
  expect(after.version).toBe(2);
  const last = await sender.client.sendToGroup(info.groupId, new TextEncoder().encode("welcome"), { view: after });

  const expected = [...acked].sort((a, b) => a - b);
  for (const joined of group) {
    await waitFor(
      () => joined.messages.length >= sends + 1 && joined.events.length >= 2,
      settleMs,
      `member ${joined.account}: ${joined.messages.length} messages, ${joined.events.length} events`,
    );
    const ids = joined.messages.map((message) => message.clientId);
    // Exactly once in the app, in the sender's order.
    expect(ids).toEqual([...expected, last.clientId]);
    expect(joined.events.map((event) => event.version)).toEqual([1, 2]);
    expect(joined.events.map((event) => event.op)).toEqual(["create", "add"]);
  }
  await waitFor(() => late.messages.length >= 1 && late.events.length >= 1, settleMs, "the latecomer's entries");
  expect(late.messages.map((message) => message.clientId)).toEqual([last.clientId]);
  expect(late.events.map((event) => event.version)).toEqual([2]);
  // The members' delivered receipts of the last message crossed the workers and reached the sender gathered.
  await waitFor(() => (receiptReaders.get(last.clientId)?.size ?? 0) >= members + 1, settleMs, "the receipts");
  // Their read receipts naming the group cross the workers too, gathered the same way.
  for (const joined of [...group, late]) {
    const message = joined.messages.find((entry) => entry.clientId === last.clientId)!;
    joined.client.receipt(message.from, message.fromDevice, [message.clientId], "read", message.groupId);
  }
  await waitFor(() => (readReaders.get(last.clientId)?.size ?? 0) >= members + 1, settleMs, "the read receipts");
  expect([...readReaders.get(last.clientId)!].sort()).toEqual([...receiptReaders.get(last.clientId)!].sort());
}, 60_000);
