import { Database } from "bun:sqlite";
import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStorage } from "./database-sqlite.ts";
import type { QueueBatch } from "./queue-store.ts";
import type { Storage } from "./storage.ts";

// How the SQLite store lays out what the conformance suite only sees through the interface: a fan-out payload is
// stored once, and its refs follow every way a queue row can be deleted. A second, read-only connection looks at
// the tables, as an operator's sqlite3 shell would.

const directory = mkdtempSync(join(tmpdir(), "switchboard-queue-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

let files = 0;
let storage: Storage;
let observer: Database;
let alice: number;
let bob: number;

beforeEach(async () => {
  files += 1;
  const path = join(directory, `queue-${files}.sqlite`);
  storage = await openSqliteStorage({ path });
  observer = new Database(path, { readonly: true });
  alice = (await storage.accounts.create("alice", new Uint8Array(32), 1_000))!.account.id;
  bob = (await storage.accounts.create("bob", new Uint8Array(32), 1_000))!.account.id;
  await storage.devices.add(bob, new Uint8Array(32), 1_000);
  await storage.devices.add(bob, new Uint8Array(32), 1_000);
});

afterEach(async () => {
  observer.close();
  await storage.close();
});

function messages(): Array<{ payload: Uint8Array; refs: number }> {
  return observer.query("select payload, refs from messages order by id").all() as Array<{
    payload: Uint8Array;
    refs: number;
  }>;
}

function inlinePayloads(): number {
  return (observer.query("select count(*) as count from queue where payload is not null").get() as { count: number })
    .count;
}

// Alice sends one payload to Bob's three devices, and one to Bob's first device alone.
function fanOutBatch(): QueueBatch {
  const payload = new Uint8Array([1, 2, 3, 4, 5]);
  return {
    messages: [
      {
        senderAccount: alice,
        senderDevice: 1,
        clientId: 1,
        createdAtMs: 1_000,
        payload,
        recipients: [1, 2, 3].map((device) => ({ account: bob, device, seq: 1 })),
      },
      {
        senderAccount: alice,
        senderDevice: 1,
        clientId: 2,
        createdAtMs: 2_000,
        payload: new Uint8Array([9]),
        recipients: [{ account: bob, device: 1, seq: 2 }],
      },
    ],
    receipts: [],
    acks: [],
    sequences: [],
    clientIds: [],
  };
}

const noChanges: QueueBatch = { messages: [], receipts: [], acks: [], sequences: [], clientIds: [] };

describe("sqlite queue layout", () => {
  test("a fan-out payload is stored once with one ref per recipient; a single-device payload inline", async () => {
    await storage.queues.commit(fanOutBatch());
    expect(messages()).toEqual([{ payload: new Uint8Array([1, 2, 3, 4, 5]), refs: 3 }]);
    expect(inlinePayloads()).toBe(1);
  });

  test("acks release refs and delete the payload with its last ref", async () => {
    await storage.queues.commit(fanOutBatch());
    await storage.queues.commit({ ...noChanges, acks: [{ account: bob, device: 1, uptoSeq: 2 }] });
    expect(messages().map((message) => message.refs)).toEqual([2]);
    expect(inlinePayloads()).toBe(0);
    await storage.queues.commit({
      ...noChanges,
      acks: [
        { account: bob, device: 2, uptoSeq: 1 },
        { account: bob, device: 3, uptoSeq: 1 },
      ],
    });
    expect(messages()).toEqual([]);
  });

  test("sweep releases refs", async () => {
    await storage.queues.commit(fanOutBatch());
    await storage.queues.sweep(1_500, 2);
    expect(messages().map((message) => message.refs)).toEqual([1]);
    await storage.queues.sweep(1_500, 10);
    expect(messages()).toEqual([]);
  });

  test("device and account removal release refs", async () => {
    await storage.queues.commit(fanOutBatch());
    await storage.devices.remove({ account: bob, device: 3 });
    expect(messages().map((message) => message.refs)).toEqual([2]);
    await storage.accounts.remove(bob);
    expect(messages()).toEqual([]);
    const rows = observer.query("select count(*) as count from queue").get() as { count: number };
    expect(rows.count).toBe(0);
  });

  test("a fan-out reduced to one existing device is stored inline", async () => {
    await storage.devices.remove({ account: bob, device: 2 });
    await storage.devices.remove({ account: bob, device: 3 });
    await storage.queues.commit(fanOutBatch());
    expect(messages()).toEqual([]);
    expect(inlinePayloads()).toBe(2);
  });
});
