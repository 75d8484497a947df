// The partitioned Storage (directory file + partition files) against the same conformance suite as every store, and
// what only partitions do: a batch split by partition, one file per account's queues, rotation of the sweep.

import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStorage, type Storage } from "../storage/index.ts";
import { describeStorageConformance } from "../storage/store-conformance.ts";
import { openPartitions, partitionedStorage, partitionFileOfAccount, partitionOf } from "./partitions.ts";

const scratch = mkdtempSync(join(tmpdir(), "sb-partitions-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let directories = 0;
const dataDirOf = new Map<Storage, string>();

async function openPartitioned(dataDir: string): Promise<Storage> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const directory = await openSqliteStorage({ path: join(dataDir, "switchboard.sqlite") });
  const partitions = await openPartitions({ dataDir, owned: () => true, countForNew: 4 });
  const storage = partitionedStorage(directory, partitions, () => 1000);
  dataDirOf.set(storage, dataDir);
  return storage;
}

describeStorageConformance(
  "partitioned (directory + 4 partition files)",
  async () => {
    directories += 1;
    return openPartitioned(join(scratch, `d${directories}`));
  },
  {
    reopen: async (previous) => {
      const dataDir = dataDirOf.get(previous);
      if (dataDir === undefined) throw new Error("reopen of a store this suite did not open");
      return openPartitioned(dataDir);
    },
  },
);

describe("partitions", () => {
  /** Accounts until each of the 4 partitions holds at least one (ids are sequential; the hash spreads them). */
  async function accountsInEveryPartition(storage: Storage): Promise<number[]> {
    const byPartition = new Map<number, number>();
    for (let index = 0; byPartition.size < 4 && index < 64; index++) {
      const created = await storage.accounts.create(`user${index}`, new Uint8Array(32).fill(index + 1), 1000);
      const id = created!.account.id;
      if (!byPartition.has(partitionOf(id, 4))) byPartition.set(partitionOf(id, 4), id);
    }
    expect(byPartition.size).toBe(4);
    return [...byPartition.values()];
  }

  function rowsInFile(path: string): number {
    const database = new Database(path, { readonly: true });
    try {
      return (database.query("select count(*) as rows from queue").get() as { rows: number }).rows;
    } finally {
      database.close();
    }
  }

  function messageTo(account: number, seq: number, createdAtMs: number, sender = account) {
    return {
      senderAccount: sender,
      senderDevice: 1,
      clientId: seq,
      createdAtMs,
      payload: new Uint8Array([seq]),
      recipients: [{ account, device: 1, seq }],
    };
  }

  test("one batch is split by partition: each account's rows are in its own partition's file", async () => {
    const dataDir = join(scratch, "split");
    const storage = await openPartitioned(dataDir);
    try {
      const accounts = await accountsInEveryPartition(storage);
      const batch = { messages: accounts.map((account) => messageTo(account, 1, 1000)), receipts: [], acks: [] };
      await storage.queues.commit({ ...batch, sequences: [], clientIds: [] });
      for (const account of accounts) {
        expect(rowsInFile(partitionFileOfAccount(dataDir, account))).toBe(1);
        expect((await storage.queues.read({ account, device: 1 }, 0, 10)).map((entry) => entry.seq)).toEqual([1]);
      }
      expect(await storage.queues.totals()).toEqual({ rows: 4, bytes: 4 });
    } finally {
      await storage.close();
    }
  });

  test("the sweep takes the partitions in turn; fewer than the limit deleted means none is left anywhere", async () => {
    const storage = await openPartitioned(join(scratch, "sweep"));
    try {
      const accounts = await accountsInEveryPartition(storage);
      const messages = accounts.flatMap((account) => [1, 2, 3].map((seq) => messageTo(account, seq, seq * 1000)));
      await storage.queues.commit({ messages, receipts: [], acks: [], sequences: [], clientIds: [] });
      // 8 rows are before 3,000 (two per account); a limit of 3 needs three sweeps, the last one short.
      const deleted: number[] = [];
      for (let round = 0; round < 10; round++) {
        const swept = await storage.queues.sweep(3000, 3);
        deleted.push(swept.deleted);
        if (swept.deleted < 3) break;
      }
      expect(deleted).toEqual([3, 3, 2]);
      for (const account of accounts) {
        expect((await storage.queues.read({ account, device: 1 }, 0, 10)).map((entry) => entry.seq)).toEqual([3]);
      }
      expect(await storage.queues.totals()).toEqual({ rows: 4, bytes: 4 });
    } finally {
      await storage.close();
    }
  });

  test("a device removed from the directory behind its partition's back: no record, and its queue is gone", async () => {
    const dataDir = join(scratch, "behind");
    const storage = await openPartitioned(dataDir);
    try {
      const [account] = await accountsInEveryPartition(storage);
      await storage.queues.commit({
        messages: [messageTo(account!, 1, 1000)],
        receipts: [],
        acks: [],
        sequences: [],
        clientIds: [],
      });
      // Another process (a worker that does not own the partition) removes it from the directory only.
      const directory = await openSqliteStorage({ path: join(dataDir, "switchboard.sqlite") });
      await directory.devices.remove({ account: account!, device: 1 });
      await directory.close();
      expect(await storage.devices.get({ account: account!, device: 1 })).toBeUndefined();
      expect(rowsInFile(partitionFileOfAccount(dataDir, account!))).toBe(0);
      // A device that never existed is no record either (and costs no write).
      expect(await storage.devices.get({ account: account!, device: 9 })).toBeUndefined();
    } finally {
      await storage.close();
    }
  });

  test("a sender's client-id mark in a partition this process does not own goes to foreignClientIds", async () => {
    const dataDir = join(scratch, "foreign");
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const directory = await openSqliteStorage({ path: join(dataDir, "switchboard.sqlite") });
    const all = await openPartitions({ dataDir, owned: () => true, countForNew: 4 });
    const setup = partitionedStorage(directory, all, () => 1000);
    const accounts = await accountsInEveryPartition(setup);
    await all.close();
    const [sender, recipient] = accounts;
    const notOwned = partitionOf(sender!, 4);
    const foreign: unknown[] = [];
    const some = await openPartitions({ dataDir, owned: (partition) => partition !== notOwned });
    const storage = partitionedStorage(
      directory,
      some,
      () => 1000,
      (entries) => foreign.push(...entries),
    );
    try {
      expect(some.owns(sender!)).toBe(false);
      await storage.queues.commit({
        messages: [messageTo(recipient!, 1, 1000, sender)],
        receipts: [],
        acks: [],
        sequences: [],
        clientIds: [],
      });
      expect(foreign).toEqual([{ account: sender, device: 1, lastClientId: 1 }]);
      expect(() => some.store(sender!)).toThrow(/not owned here/);
    } finally {
      await storage.close();
    }
  });
});
