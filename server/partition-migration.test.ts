// migrateToPartitions on real files: a data directory as the single-file release writes it, moved into 8 partitions,
// must read back the same queues, marks and windows through each partition's store, keep shared payload refs exact
// per partition, and reach the same end state whatever step a crash interrupts.

import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStorage, type QueueBatch, type QueueEntry, type Storage } from "../storage/index.ts";
import { directoryFileName, migrateToPartitions } from "./partition-migration.ts";
import { partitionFilePath, partitionOf, readPartitionCount } from "./partitions.ts";

const count = 8;
const accountsInFixture = 12;
// More than any queue of the fixture holds.
const wholeQueueEntries = 1_000;
const hour = 3_600_000;
const nowMs = 5_000;

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function scratch(): string {
  const directory = mkdtempSync(join(tmpdir(), "switchboard-partition-migration-"));
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

async function open(path: string, dataDir: string): Promise<Storage> {
  const storage = await openSqliteStorage({ path, codeKeyPath: join(dataDir, "code-hash.key") });
  cleanups.push(() => storage.close());
  return storage;
}

function openDirectory(dataDir: string): Promise<Storage> {
  return open(join(dataDir, directoryFileName), dataDir);
}

function openPartition(dataDir: string, account: number): Promise<Storage> {
  return open(partitionFilePath(dataDir, partitionOf(account, count)), dataDir);
}

function rawCount(path: string, table: string): number {
  const database = new Database(path, { readonly: true });
  try {
    return database.query<{ rows: number }, []>(`select count(*) as rows from ${table}`).get()!.rows;
  } finally {
    database.close();
  }
}

interface Fixture {
  readonly alice: number;
  // An account in another partition than Alice's, with 2 devices.
  readonly other: number;
  readonly accounts: readonly number[];
  readonly devices: ReadonlyArray<{ account: number; device: number }>;
  readonly sharedWithAlice: Uint8Array;
  readonly sharedAcross: Uint8Array;
}

interface Snapshot {
  readonly queues: Map<string, QueueEntry[]>;
  readonly marks: Map<string, unknown>;
  readonly windows: unknown;
  readonly queueRows: number;
}

function text(value: string): Uint8Array {
  return new TextEncoder().encode(value);
}

function batchOf(parts: Partial<QueueBatch>): QueueBatch {
  return { messages: [], receipts: [], acks: [], sequences: [], clientIds: [], ...parts };
}

function publicKey(seed: number): Uint8Array {
  return new Uint8Array(32).fill(seed);
}

function eightBytes(bits: number): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(0, bits, true);
  return bytes;
}

/** Writes a data directory as the single-file release does: every table in switchboard.sqlite. */
async function writeSingleFileDirectory(dataDir: string): Promise<Fixture> {
  const storage = await openSqliteStorage({ path: join(dataDir, directoryFileName) });
  try {
    const accounts: number[] = [];
    for (let index = 0; index < accountsInFixture; index++) {
      const created = await storage.accounts.create(`user-${index}`, publicKey(index + 1), 1_000 + index);
      accounts.push(created!.account.id);
    }
    const alice = accounts[0]!;
    const other = accounts.find((account) => partitionOf(account, count) !== partitionOf(alice, count))!;
    await storage.devices.add(alice, publicKey(100), 1_100);
    await storage.devices.add(alice, publicKey(101), 1_101);
    await storage.devices.add(other, publicKey(102), 1_102);
    await storage.invites.issue("invite-kept", 1_000, 1_000 + hour);

    const nextSeq = new Map<string, number>();
    const seq = (account: number, device: number): number => {
      const key = `${account}/${device}`;
      const next = (nextSeq.get(key) ?? 0) + 1;
      nextSeq.set(key, next);
      return next;
    };
    const to = (account: number, device: number) => ({ account, device, seq: seq(account, device) });
    const message = (
      senderAccount: number,
      senderDevice: number,
      clientId: number,
      payload: Uint8Array,
      recipients: Array<{ account: number; device: number; seq: number }>,
    ) => ({ senderAccount, senderDevice, clientId, createdAtMs: 2_000 + clientId, payload, recipients });

    const sharedWithAlice = text("to every device of alice");
    const sharedAcross = text("to alice and another account");
    // Every account sends its neighbour one inline message; then two shared payloads and a receipt.
    const messages = accounts.map((account, index) =>
      message(account, 1, 1, text(`inline ${index}`), [to(accounts[(index + 1) % accounts.length]!, 1)]),
    );
    messages.push(message(other, 1, 2, sharedWithAlice, [to(alice, 1), to(alice, 2), to(alice, 3)]));
    messages.push(message(alice, 1, 2, sharedAcross, [to(other, 1), to(other, 2), to(alice, 2)]));
    const receipts = [
      {
        ...to(alice, 1),
        receiptType: 1,
        peerAccount: other,
        peerDevice: 1,
        senderDevice: 1,
        clientIds: [1, 2],
        createdAtMs: 2_100,
      },
    ];
    await storage.queues.commit(batchOf({ messages, receipts }));

    // Alice's device 2 acks its copy of the shared payload (refs 3 -> 2); another account acks its inline row; a
    // sequence is raised past the rows; windows are written.
    await storage.queues.commit(
      batchOf({
        acks: [
          { account: alice, device: 2, uptoSeq: 1 },
          { account: accounts[3]!, device: 1, uptoSeq: 1 },
        ],
        sequences: [{ account: accounts[2]!, device: 1, lastSeq: 50 }],
        readReceiptWindows: [
          {
            account: alice,
            device: 1,
            peerAccount: other,
            peerDevice: 1,
            lastClientId: 2,
            delivered: eightBytes(0b11),
            read: eightBytes(0b01),
            updatedAtMs: 3_000,
          },
        ],
        clientIdWindows: [
          {
            account: alice,
            peerAccount: other,
            peerDevice: 1,
            lastClientId: 2,
            window: eightBytes(0b11),
            updatedAtMs: 3_000,
          },
        ],
      }),
    );

    const devices: Array<{ account: number; device: number }> = [];
    for (const account of accounts) {
      for (const device of await storage.devices.list(account)) devices.push({ account, device: device.device });
    }
    return { alice, other, accounts, devices, sharedWithAlice, sharedAcross };
  } finally {
    await storage.close();
  }
}

/** Every device's queue and marks, each read from the store `storeOf` gives for its account. */
async function snapshot(fixture: Fixture, storeOf: (account: number) => Promise<Storage>): Promise<Snapshot> {
  const queues = new Map<string, QueueEntry[]>();
  const marks = new Map<string, unknown>();
  let queueRows = 0;
  for (const key of fixture.devices) {
    const store = await storeOf(key.account);
    const queue = await store.queues.read(key, 0, wholeQueueEntries);
    queues.set(`${key.account}/${key.device}`, queue);
    marks.set(`${key.account}/${key.device}`, await store.devices.get(key));
    queueRows += queue.length;
  }
  const aliceStore = await storeOf(fixture.alice);
  const windows = {
    read: await aliceStore.queues.readReceiptWindows({ account: fixture.alice, device: 1 }, [
      { account: fixture.other, device: 1 },
    ]),
    clientIds: await aliceStore.queues.clientIdWindows(fixture.alice, [{ account: fixture.other, device: 1 }]),
  };
  return { queues, marks, windows, queueRows };
}

/** The fixture as it was before, read from the single directory file. */
async function snapshotBefore(dataDir: string, fixture: Fixture): Promise<Snapshot> {
  const directory = await openSqliteStorage({ path: join(dataDir, directoryFileName) });
  try {
    return await snapshot(fixture, async () => directory);
  } finally {
    await directory.close();
  }
}

/** Opens the partitions (each once) and snapshots through them; closes them before returning. */
async function snapshotAfter(dataDir: string, fixture: Fixture): Promise<Snapshot> {
  const stores = new Map<number, Storage>();
  try {
    return await snapshot(fixture, async (account) => {
      const partition = partitionOf(account, count);
      let store = stores.get(partition);
      if (store === undefined) {
        store = await openSqliteStorage({
          path: partitionFilePath(dataDir, partition),
          codeKeyPath: join(dataDir, "code-hash.key"),
        });
        stores.set(partition, store);
      }
      return store;
    });
  } finally {
    for (const store of stores.values()) await store.close();
  }
}

function partitionFiles(dataDir: string): string[] {
  const directory = join(dataDir, "partitions");
  return existsSync(directory) ? readdirSync(directory).filter((name) => name.endsWith(".sqlite")) : [];
}

/** The end state of a finished migration, whatever runs and crashes led to it. */
async function expectMigrated(dataDir: string, fixture: Fixture, before: Snapshot): Promise<void> {
  const after = await snapshotAfter(dataDir, fixture);
  expect(after).toEqual(before);
  expect(readPartitionCount(dataDir)).toBe(count);
  expect(readFileSync(join(dataDir, "partitions", "count"), "utf8")).toBe(`${count}\n`);

  // The directory kept accounts, keys, marks and invites, and no queue data.
  const directoryPath = join(dataDir, directoryFileName);
  for (const table of ["queue", "messages", "read_receipt_windows", "client_id_windows"]) {
    expect(rawCount(directoryPath, table)).toBe(0);
  }
  const directory = await openDirectory(dataDir);
  expect(await directory.accounts.count()).toBe(accountsInFixture);
  expect(await directory.invites.list()).toHaveLength(1);
  for (const key of fixture.devices) {
    const marks = before.marks.get(`${key.account}/${key.device}`) as object;
    expect(await directory.devices.get(key)).toEqual({ ...marks, queueRows: 0, queueBytes: 0 } as never);
  }
  expect(await directory.queues.totals()).toEqual({ rows: 0, bytes: 0 });

  // Each partition holds its accounts' stand-ins only, and every shared payload counts exactly the rows of its file.
  let partitionRows = 0;
  for (const name of partitionFiles(dataDir)) {
    const database = new Database(join(dataDir, "partitions", name), { readonly: true });
    try {
      const partition = Number(name.slice(2, 6));
      const accounts = database.query<{ id: number; handle: string }, []>("select id, handle from accounts").all();
      for (const { id, handle } of accounts) {
        expect(partitionOf(id, count)).toBe(partition);
        expect(handle).toBe(`#${id}`);
      }
      const payloads = database
        .query<{ refs: number; held: number }, []>(
          "select refs, (select count(*) from queue q where q.message_id = m.id) as held from messages m",
        )
        .all();
      for (const { refs, held } of payloads) {
        expect(held).toBeGreaterThan(0);
        expect(refs).toBe(held);
      }
      const dangling = database
        .query<{ rows: number }, []>(
          "select count(*) as rows from queue where message_id is not null and message_id not in (select id from messages)",
        )
        .get()!.rows;
      expect(dangling).toBe(0);
      partitionRows += database.query<{ rows: number }, []>("select count(*) as rows from queue").get()!.rows;
    } finally {
      database.close();
    }
  }
  // Exactly once: no row left behind or copied twice.
  expect(partitionRows).toBe(before.queueRows);
}

async function prepared(): Promise<{ dataDir: string; fixture: Fixture; before: Snapshot }> {
  const dataDir = scratch();
  const fixture = await writeSingleFileDirectory(dataDir);
  return { dataDir, fixture, before: await snapshotBefore(dataDir, fixture) };
}

describe("migrateToPartitions", () => {
  test("moves every queue, mark and window into the partition of its account", async () => {
    const { dataDir, fixture, before } = await prepared();
    // The fixture spreads over several partitions and has something in every kind of row.
    const partitionsUsed = new Set(fixture.accounts.map((account) => partitionOf(account, count)));
    expect(partitionsUsed.size).toBeGreaterThan(2);
    expect(before.queueRows).toBeGreaterThan(accountsInFixture);
    expect(before.marks.get(`${fixture.accounts[2]}/1`)).toMatchObject({ lastSeq: 50 });
    expect(before.windows).toMatchObject({ read: [{ lastClientId: 2 }], clientIds: [{ lastClientId: 2 }] });

    const result = await migrateToPartitions({ dataDir, count, now: () => nowMs });
    expect(result).toEqual({
      migrated: true,
      accounts: accountsInFixture,
      devices: fixture.devices.length,
      queueRows: before.queueRows,
    });
    expect(partitionFiles(dataDir)).toHaveLength(partitionsUsed.size);
    await expectMigrated(dataDir, fixture, before);
  });

  test("a shared payload is released in each partition by that partition's rows alone", async () => {
    const { dataDir, fixture } = await prepared();
    await migrateToPartitions({ dataDir, count, now: () => nowMs });
    const alicePath = partitionFilePath(dataDir, partitionOf(fixture.alice, count));
    const alice = await openPartition(dataDir, fixture.alice);
    const payloads = async (device: number) =>
      (await alice.queues.read({ account: fixture.alice, device }, 0, wholeQueueEntries)).flatMap((entry) =>
        entry.kind === "message" ? [entry.payload] : [],
      );
    expect(rawCount(alicePath, "messages")).toBe(2);

    // Device 1 acks everything: device 3 still reads the payload they shared.
    await alice.queues.commit(batchOf({ acks: [{ account: fixture.alice, device: 1, uptoSeq: 1_000 }] }));
    expect(await payloads(3)).toEqual([fixture.sharedWithAlice]);
    // Device 2 acks the payload shared with the other account, whose partition still holds its own copy.
    await alice.queues.commit(batchOf({ acks: [{ account: fixture.alice, device: 2, uptoSeq: 1_000 }] }));
    expect(rawCount(alicePath, "messages")).toBe(1);
    await alice.queues.commit(batchOf({ acks: [{ account: fixture.alice, device: 3, uptoSeq: 1_000 }] }));
    expect(rawCount(alicePath, "messages")).toBe(0);

    const other = await openPartition(dataDir, fixture.other);
    const otherQueue = await other.queues.read({ account: fixture.other, device: 2 }, 0, wholeQueueEntries);
    expect(otherQueue.map((entry) => (entry.kind === "message" ? entry.payload : undefined))).toEqual([
      fixture.sharedAcross,
    ]);
  });

  test("running again changes nothing", async () => {
    const { dataDir, fixture, before } = await prepared();
    await migrateToPartitions({ dataDir, count, now: () => nowMs });
    expect(await migrateToPartitions({ dataDir, count, now: () => nowMs })).toEqual({
      migrated: false,
      accounts: 0,
      devices: 0,
      queueRows: 0,
    });
    // A different count does not move anything either: the first count stays.
    expect((await migrateToPartitions({ dataDir, count: 3 })).migrated).toBe(false);
    await expectMigrated(dataDir, fixture, before);
  });

  test("a crash before the count file: the partitions written are discarded and the run starts over", async () => {
    const { dataDir, fixture, before } = await prepared();
    const crash = () => {
      throw new Error("simulated crash");
    };
    await expect(migrateToPartitions({ dataDir, count, afterPartitionsWritten: crash })).rejects.toThrow(
      "simulated crash",
    );
    expect(readPartitionCount(dataDir)).toBeUndefined();
    expect(partitionFiles(dataDir).length).toBeGreaterThan(0);
    // The directory is untouched.
    expect(await snapshotBefore(dataDir, fixture)).toEqual(before);

    const result = await migrateToPartitions({ dataDir, count, now: () => nowMs });
    expect(result).toMatchObject({ migrated: true, queueRows: before.queueRows });
    await expectMigrated(dataDir, fixture, before);
  });

  test("a crash after the count file: the next run deletes the directory's copy", async () => {
    const { dataDir, fixture, before } = await prepared();
    const crash = () => {
      throw new Error("simulated crash");
    };
    await expect(migrateToPartitions({ dataDir, count, afterCountWritten: crash })).rejects.toThrow("simulated crash");
    expect(readPartitionCount(dataDir)).toBe(count);
    expect(rawCount(join(dataDir, directoryFileName), "queue")).toBe(before.queueRows);

    expect(await migrateToPartitions({ dataDir, count, now: () => nowMs })).toEqual({
      migrated: true,
      accounts: 0,
      devices: 0,
      queueRows: 0,
    });
    await expectMigrated(dataDir, fixture, before);
  });

  test("a directory without accounts gets its count and empty queues", async () => {
    const dataDir = scratch();
    await (await openSqliteStorage({ path: join(dataDir, directoryFileName) })).close();
    expect(await migrateToPartitions({ dataDir, count })).toEqual({
      migrated: true,
      accounts: 0,
      devices: 0,
      queueRows: 0,
    });
    expect(readPartitionCount(dataDir)).toBe(count);
    expect(partitionFiles(dataDir)).toEqual([]);
  });

  test("a new data directory is left alone: no count file", async () => {
    const dataDir = scratch();
    expect(await migrateToPartitions({ dataDir, count })).toEqual({
      migrated: false,
      accounts: 0,
      devices: 0,
      queueRows: 0,
    });
    expect(readPartitionCount(dataDir)).toBeUndefined();
    expect(existsSync(join(dataDir, "partitions"))).toBe(false);
    expect(existsSync(join(dataDir, directoryFileName))).toBe(false);
  });
});
