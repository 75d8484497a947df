import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { DeviceKey } from "./device-store.ts";
import { groupEventBytes, groupReceiptBytes, type QueueBatch, type QueueEntry } from "./queue-store.ts";
import type { Storage } from "./storage.ts";
import { AccountNotFoundError } from "./storage-errors.ts";

// The behaviour every Storage implementation must have, run against each one (SQLite on a file and in memory now,
// PostgreSQL later). Implementation details, such as how a shared payload is laid out, are tested beside each
// implementation instead.

export interface ConformanceOptions {
  // Opens again the store that `previous` used, after `previous` was closed. Absent for a store that does not
  // outlive its connection (SQLite ":memory:"): the durability test does not apply to it and is not registered.
  readonly reopen?: (previous: Storage) => Promise<Storage>;
}

// More than any test here puts in one queue, so reading this many reads a whole queue.
const wholeQueueEntries = 1_000;
const clientIdBytes = 4;
const hour = 3_600_000;

// `open` must give a fresh, empty store on each call.
export function describeStorageConformance(
  name: string,
  open: () => Promise<Storage>,
  options: ConformanceOptions = {},
): void {
  describe(`storage conformance: ${name}`, () => {
    let storage: Storage;
    const opened: Storage[] = [];

    beforeEach(async () => {
      storage = await open();
      opened.push(storage);
    });

    afterEach(async () => {
      for (const each of opened.splice(0)) await each.close();
    });

    describe("accounts", () => {
      test("create makes the account and its first device", async () => {
        const created = await storage.accounts.create("alice", publicKey(1), 1_000);
        expect(created).toBeDefined();
        const { account, device } = created!;
        expect(account).toEqual({ id: account.id, handle: "alice", createdAtMs: 1_000 });
        expect(account.id).toBeGreaterThanOrEqual(1);
        expect(device).toEqual({
          account: account.id,
          device: 1,
          publicKey: publicKey(1),
          createdAtMs: 1_000,
          lastSeenAtMs: 1_000,
          lastSeq: 0,
          lastClientId: 0,
          clientIdWindow: new Uint8Array(8),
          queueRows: 0,
          queueBytes: 0,
        });
        expect(await storage.accounts.byId(account.id)).toEqual(account);
        expect(await storage.accounts.byHandle("alice")).toEqual(account);
        expect(await storage.devices.get({ account: account.id, device: 1 })).toEqual(device);
        expect(await storage.devices.list(account.id)).toEqual([device]);
        expect(await storage.accounts.count()).toBe(1);
      });

      test("a taken handle is refused and changes nothing", async () => {
        const first = await storage.accounts.create("alice", publicKey(1), 1_000);
        expect(await storage.accounts.create("alice", publicKey(2), 2_000)).toBeUndefined();
        expect(await storage.accounts.count()).toBe(1);
        expect(await storage.accounts.byHandle("alice")).toEqual(first!.account);
        expect(await storage.devices.list(first!.account.id)).toEqual([first!.device]);
      });

      test("absent accounts are reported as such", async () => {
        expect(await storage.accounts.byId(12345)).toBeUndefined();
        expect(await storage.accounts.byHandle("nobody")).toBeUndefined();
        expect(await storage.accounts.remove(12345)).toBe(false);
        expect(await storage.accounts.count()).toBe(0);
      });

      test("account ids increase and are never reused after removal", async () => {
        const first = await createAccount(storage, "first");
        const second = await createAccount(storage, "second");
        expect(second).toBeGreaterThan(first);
        expect(await storage.accounts.remove(second)).toBe(true);
        const third = await createAccount(storage, "third");
        expect(third).toBeGreaterThan(second);
      });

      test("list pages through accounts in id order", async () => {
        const ids: number[] = [];
        for (const handle of ["a", "b", "c", "d", "e"]) ids.push(await createAccount(storage, handle));
        const firstPage = await storage.accounts.list({ limit: 2 });
        expect(firstPage.map((account) => account.handle)).toEqual(["a", "b"]);
        const secondPage = await storage.accounts.list({ limit: 2, afterId: firstPage[1]!.id });
        expect(secondPage.map((account) => account.handle)).toEqual(["c", "d"]);
        const lastPage = await storage.accounts.list({ limit: 2, afterId: secondPage[1]!.id });
        expect(lastPage.map((account) => account.id)).toEqual([ids[4]!]);
        expect(await storage.accounts.list({ limit: 2, afterId: ids[4]! })).toEqual([]);
        expect(await storage.accounts.list({ limit: 0 })).toEqual([]);
        expect(await storage.accounts.list({ limit: -1 })).toEqual([]);
      });

      test("remove deletes the account's devices, queues and link codes, and keeps what others hold", async () => {
        const alice = await createAccount(storage, "alice");
        const bob = await createAccount(storage, "bob");
        await storage.devices.add(alice, publicKey(2), 1_000);
        await storage.linkCodes.issue(alice, "link-alice", 1_000, 1_000 + hour);
        const shared = bytes(1, 2, 3, 4);
        await storage.queues.commit(
          batchOf({
            messages: [
              message(bob, 1, 1, shared, [
                [alice, 1, 1],
                [alice, 2, 1],
                [bob, 1, 1],
              ]),
              message(alice, 1, 1, bytes(9), [[bob, 1, 2]]),
              message(bob, 1, 2, bytes(5, 6), [[alice, 1, 2]]),
            ],
          }),
        );

        expect(await storage.accounts.remove(alice)).toBe(true);
        expect(await storage.accounts.byId(alice)).toBeUndefined();
        expect(await storage.accounts.byHandle("alice")).toBeUndefined();
        expect(await storage.devices.list(alice)).toEqual([]);
        expect(await storage.queues.read({ account: alice, device: 1 }, 0, wholeQueueEntries)).toEqual([]);
        expect(await storage.linkCodes.consume("link-alice", 2_000)).toBeUndefined();
        // Bob keeps the fan-out payload he shared with Alice's devices, and the message Alice sent him.
        const bobQueue = await storage.queues.read({ account: bob, device: 1 }, 0, wholeQueueEntries);
        expect(bobQueue.map(payloadOf)).toEqual([shared, bytes(9)]);
        expect(await storage.queues.totals()).toEqual({ rows: 2, bytes: 5 });
        await expectCountersExact(storage, { account: bob, device: 1 });
        expect(await storage.accounts.remove(alice)).toBe(false);
        expect(await storage.accounts.count()).toBe(1);
      });
    });

    describe("devices", () => {
      test("add gives increasing device ids that are never reused after removal", async () => {
        const alice = await createAccount(storage, "alice");
        const second = await storage.devices.add(alice, publicKey(2), 2_000);
        const third = await storage.devices.add(alice, publicKey(3), 3_000);
        expect([second.device, third.device]).toEqual([2, 3]);
        expect(second).toEqual({
          account: alice,
          device: 2,
          publicKey: publicKey(2),
          createdAtMs: 2_000,
          lastSeenAtMs: 2_000,
          lastSeq: 0,
          lastClientId: 0,
          clientIdWindow: new Uint8Array(8),
          queueRows: 0,
          queueBytes: 0,
        });
        expect(await storage.devices.remove({ account: alice, device: 3 })).toBe(true);
        expect(await storage.devices.get({ account: alice, device: 3 })).toBeUndefined();
        const fourth = await storage.devices.add(alice, publicKey(4), 4_000);
        expect(fourth.device).toBe(4);
        expect((await storage.devices.list(alice)).map((device) => device.device)).toEqual([1, 2, 4]);
        // Ids are per account: another account starts again at 1.
        const bob = await createAccount(storage, "bob");
        expect((await storage.devices.add(bob, publicKey(5), 5_000)).device).toBe(2);
      });

      test("add to an absent account throws AccountNotFoundError", async () => {
        await expect(storage.devices.add(12345, publicKey(1), 1_000)).rejects.toBeInstanceOf(AccountNotFoundError);
      });

      test("touch records when the device was last seen, and never moves it back", async () => {
        const alice = await createAccount(storage, "alice");
        await storage.devices.add(alice, publicKey(2), 1_000);
        const written = await storage.devices.touch(
          [
            { account: alice, device: 1, atMs: 5_000 },
            { account: alice, device: 9, atMs: 5_000 },
          ],
          { wait: false },
        );
        expect(written).toBe(true);
        const device = await storage.devices.get({ account: alice, device: 1 });
        expect(device?.lastSeenAtMs).toBe(5_000);
        expect(device?.createdAtMs).toBe(1_000);
        expect((await storage.devices.get({ account: alice, device: 2 }))?.lastSeenAtMs).toBe(1_000);
        expect(await storage.devices.get({ account: alice, device: 9 })).toBeUndefined();
        // An older time written late (another worker's batch) keeps the newer one; a newer time replaces it.
        expect(
          await storage.devices.touch(
            [
              { account: alice, device: 1, atMs: 4_000 },
              { account: alice, device: 2, atMs: 6_000 },
            ],
            { wait: true },
          ),
        ).toBe(true);
        expect((await storage.devices.get({ account: alice, device: 1 }))?.lastSeenAtMs).toBe(5_000);
        expect((await storage.devices.get({ account: alice, device: 2 }))?.lastSeenAtMs).toBe(6_000);
      });

      test("remove deletes the device's queue and keeps the payloads it shared", async () => {
        const alice = await createAccount(storage, "alice");
        const bob = await createAccount(storage, "bob");
        await storage.devices.add(bob, publicKey(2), 1_000);
        await storage.queues.commit(
          batchOf({
            messages: [
              message(alice, 1, 1, bytes(1, 2, 3), [
                [bob, 1, 1],
                [bob, 2, 1],
              ]),
              message(alice, 1, 2, bytes(4), [[bob, 2, 2]]),
            ],
          }),
        );
        expect(await storage.devices.remove({ account: bob, device: 2 })).toBe(true);
        expect(await storage.devices.remove({ account: bob, device: 2 })).toBe(false);
        expect(await storage.queues.read({ account: bob, device: 2 }, 0, wholeQueueEntries)).toEqual([]);
        const remaining = await storage.queues.read({ account: bob, device: 1 }, 0, wholeQueueEntries);
        expect(remaining.map(payloadOf)).toEqual([bytes(1, 2, 3)]);
        expect(await storage.queues.totals()).toEqual({ rows: 1, bytes: 3 });
      });
    });

    describe("queues", () => {
      test("a message to one device reads back with its payload intact", async () => {
        const { alice, bob } = await twoAccounts(storage);
        const payload = bytes(0, 1, 2, 254, 255);
        await storage.queues.commit(batchOf({ messages: [message(alice, 1, 7, payload, [[bob, 1, 1]], 5_000)] }));
        const entries = await storage.queues.read({ account: bob, device: 1 }, 0, 10);
        expect(entries).toEqual([
          {
            kind: "message",
            seq: 1,
            senderAccount: alice,
            senderDevice: 1,
            clientId: 7,
            createdAtMs: 5_000,
            payload,
          },
        ]);
        expect(payloadOf(entries[0]!)).toBeInstanceOf(Uint8Array);
        const device = await storage.devices.get({ account: bob, device: 1 });
        expect({ rows: device?.queueRows, bytes: device?.queueBytes, lastSeq: device?.lastSeq }).toEqual({
          rows: 1,
          bytes: 5,
          lastSeq: 1,
        });
        expect(await storage.queues.totals()).toEqual({ rows: 1, bytes: 5 });
      });

      test("a fan-out message reaches every recipient device", async () => {
        const { alice, bob } = await twoAccounts(storage);
        const payload = bytes(...Array.from({ length: 100 }, (_, index) => index));
        await storage.queues.commit(
          batchOf({
            messages: [
              message(alice, 1, 1, payload, [
                [bob, 1, 4],
                [bob, 2, 9],
                [alice, 2, 1],
              ]),
            ],
          }),
        );
        for (const [account, device, seq] of [
          [bob, 1, 4],
          [bob, 2, 9],
          [alice, 2, 1],
        ] as const) {
          const entries = await storage.queues.read({ account, device }, 0, 10);
          expect(entries.map((entry) => [entry.seq, payloadOf(entry)])).toEqual([[seq, payload]]);
          await expectCountersExact(storage, { account, device });
        }
        expect(await storage.queues.totals()).toEqual({ rows: 3, bytes: 300 });
      });

      test("an empty payload reads back empty", async () => {
        const { alice, bob } = await twoAccounts(storage);
        await storage.queues.commit(
          batchOf({
            messages: [
              message(alice, 1, 1, bytes(), [[bob, 1, 1]]),
              message(alice, 1, 2, bytes(), [
                [bob, 1, 2],
                [bob, 2, 1],
              ]),
            ],
          }),
        );
        const entries = await storage.queues.read({ account: bob, device: 1 }, 0, 10);
        expect(entries.map(payloadOf)).toEqual([bytes(), bytes()]);
      });

      test("read returns entries after a sequence, in order, at most the limit", async () => {
        const { alice, bob } = await twoAccounts(storage);
        const key = { account: bob, device: 1 };
        // Committed out of order, over two batches: the queue is still read in sequence order.
        await storage.queues.commit(
          batchOf({
            messages: [5, 3, 1].map((seq) => message(alice, 1, seq, bytes(seq), [[bob, 1, seq]])),
          }),
        );
        await storage.queues.commit(
          batchOf({
            messages: [2, 4].map((seq) => message(alice, 1, seq, bytes(seq), [[bob, 1, seq]])),
          }),
        );
        expect((await storage.queues.read(key, 0, 10)).map((entry) => entry.seq)).toEqual([1, 2, 3, 4, 5]);
        expect((await storage.queues.read(key, 2, 2)).map((entry) => entry.seq)).toEqual([3, 4]);
        expect((await storage.queues.read(key, 5, 10)).map((entry) => entry.seq)).toEqual([]);
        expect(await storage.queues.read(key, 0, 0)).toEqual([]);
        expect(await storage.queues.read(key, 0, -1)).toEqual([]);
        expect(await storage.queues.read({ account: bob, device: 99 }, 0, 10)).toEqual([]);
        const entries = await storage.queues.read(key, 0, 10);
        expect(entries.map(payloadOf)).toEqual([1, 2, 3, 4, 5].map((seq) => bytes(seq)));
      });

      test("an ack deletes the device's rows up to its sequence and fixes the counters", async () => {
        const { alice, bob } = await twoAccounts(storage);
        const key = { account: bob, device: 1 };
        await storage.queues.commit(
          batchOf({
            messages: [1, 2, 3, 4].map((seq) =>
              message(alice, 1, seq, bytes(...new Array(seq).fill(seq)), [[bob, 1, seq]]),
            ),
            receipts: [receipt(bob, 1, 5, [1, 2, 3])],
          }),
        );
        await storage.queues.commit(batchOf({ acks: [{ account: bob, device: 1, uptoSeq: 2 }] }));
        expect((await storage.queues.read(key, 0, 10)).map((entry) => entry.seq)).toEqual([3, 4, 5]);
        await expectCountersExact(storage, key);
        expect(await storage.devices.get(key)).toMatchObject({ queueRows: 3, queueBytes: 3 + 4 + 3 * clientIdBytes });

        // Acks are cumulative and idempotent; one past the end empties the queue.
        await storage.queues.commit(batchOf({ acks: [{ account: bob, device: 1, uptoSeq: 2 }] }));
        await storage.queues.commit(batchOf({ acks: [{ account: bob, device: 1, uptoSeq: 100 }] }));
        expect(await storage.queues.read(key, 0, 10)).toEqual([]);
        expect(await storage.devices.get(key)).toMatchObject({ queueRows: 0, queueBytes: 0, lastSeq: 5 });
        expect(await storage.queues.totals()).toEqual({ rows: 0, bytes: 0 });
      });

      test("an ack covers the rows its own batch inserts", async () => {
        const { alice, bob } = await twoAccounts(storage);
        const key = { account: bob, device: 1 };
        await storage.queues.commit(
          batchOf({
            messages: [1, 2, 3].map((seq) => message(alice, 1, seq, bytes(seq), [[bob, 1, seq]])),
            acks: [{ account: bob, device: 1, uptoSeq: 2 }],
          }),
        );
        expect((await storage.queues.read(key, 0, 10)).map((entry) => entry.seq)).toEqual([3]);
        await expectCountersExact(storage, key);
      });

      test("a shared payload stays readable until its last recipient acks", async () => {
        const { alice, bob } = await twoAccounts(storage);
        const payload = bytes(7, 7, 7);
        await storage.queues.commit(
          batchOf({
            messages: [
              message(alice, 1, 1, payload, [
                [bob, 1, 1],
                [bob, 2, 1],
                [alice, 2, 1],
              ]),
            ],
          }),
        );
        await storage.queues.commit(
          batchOf({
            acks: [
              { account: bob, device: 1, uptoSeq: 1 },
              { account: alice, device: 2, uptoSeq: 1 },
            ],
          }),
        );
        expect((await storage.queues.read({ account: bob, device: 2 }, 0, 10)).map(payloadOf)).toEqual([payload]);
        expect(await storage.queues.totals()).toEqual({ rows: 1, bytes: 3 });
        await storage.queues.commit(batchOf({ acks: [{ account: bob, device: 2, uptoSeq: 1 }] }));
        expect(await storage.queues.read({ account: bob, device: 2 }, 0, 10)).toEqual([]);
        expect(await storage.queues.totals()).toEqual({ rows: 0, bytes: 0 });
      });

      test("sequence and client id marks are raised, never lowered", async () => {
        const { alice, bob } = await twoAccounts(storage);
        const bobKey = { account: bob, device: 1 };
        const aliceKey = { account: alice, device: 1 };
        await storage.queues.commit(
          batchOf({
            sequences: [{ account: bob, device: 1, lastSeq: 10 }],
            clientIds: [{ account: alice, device: 1, lastClientId: 20 }],
            clientIdWindows: [clientIdWindow(bob, alice, 1, 20, window(0b101))],
          }),
        );
        expect(await storage.devices.get(bobKey)).toMatchObject({ lastSeq: 10, queueRows: 0 });
        expect(await storage.devices.get(aliceKey)).toMatchObject({ lastClientId: 20 });
        expect(await storage.queues.clientIdWindows(bob, [{ account: alice, device: 1 }])).toEqual([
          clientIdWindow(bob, alice, 1, 20, window(0b101)),
        ]);

        await storage.queues.commit(
          batchOf({
            sequences: [{ account: bob, device: 1, lastSeq: 4 }],
            clientIds: [{ account: alice, device: 1, lastClientId: 3 }],
            clientIdWindows: [clientIdWindow(bob, alice, 1, 3, window(0b1))],
          }),
        );
        expect(await storage.devices.get(bobKey)).toMatchObject({ lastSeq: 10 });
        // A lower mark changes neither the mark nor the window that belongs to the higher one.
        expect(await storage.devices.get(aliceKey)).toMatchObject({ lastClientId: 20 });
        expect(await storage.queues.clientIdWindows(bob, [{ account: alice, device: 1 }])).toEqual([
          clientIdWindow(bob, alice, 1, 20, window(0b101)),
        ]);
        // Pairs never written are left out; each pair has its own window.
        expect(await storage.queues.clientIdWindows(alice, [{ account: alice, device: 1 }])).toEqual([]);

        // Stored rows raise the marks too: the recipient's sequence and the sender's client id.
        await storage.queues.commit(batchOf({ messages: [message(alice, 1, 25, bytes(1), [[bob, 1, 12]])] }));
        expect(await storage.devices.get(bobKey)).toMatchObject({ lastSeq: 12 });
        expect(await storage.devices.get(aliceKey)).toMatchObject({ lastClientId: 25 });

        // Acks delete rows but never lower the sequence mark.
        await storage.queues.commit(batchOf({ acks: [{ account: bob, device: 1, uptoSeq: 12 }] }));
        expect(await storage.devices.get(bobKey)).toMatchObject({ lastSeq: 12, queueRows: 0 });
      });

      test("receipts round-trip with their client ids, in sequence order with messages", async () => {
        const { alice, bob } = await twoAccounts(storage);
        const key = { account: alice, device: 1 };
        await storage.queues.commit(
          batchOf({
            messages: [message(bob, 1, 1, bytes(1), [[alice, 1, 2]])],
            receipts: [
              receipt(alice, 1, 1, [1, 2, 0xffffffff], {
                receiptType: 2,
                peerAccount: bob,
                peerDevice: 2,
                senderDevice: 3,
              }),
              receipt(alice, 1, 3, []),
            ],
          }),
        );
        const entries = await storage.queues.read(key, 0, 10);
        expect(entries.map((entry) => entry.kind)).toEqual(["receipt", "message", "receipt"]);
        expect(entries[0]).toEqual({
          kind: "receipt",
          seq: 1,
          receiptType: 2,
          peerAccount: bob,
          peerDevice: 2,
          senderDevice: 3,
          clientIds: [1, 2, 0xffffffff],
          createdAtMs: 1_000,
        });
        expect(entries[2]).toMatchObject({ kind: "receipt", seq: 3, clientIds: [] });
        await expectCountersExact(storage, key);
      });

      test("a batch that fails part way writes nothing", async () => {
        const { alice, bob } = await twoAccounts(storage);
        await storage.queues.commit(batchOf({ messages: [message(alice, 1, 1, bytes(1), [[bob, 1, 1]])] }));
        const before = await snapshot(storage, alice, bob);

        // Everything a batch can hold, then a row whose (account, device, seq) is already taken.
        const failing = batchOf({
          messages: [
            message(alice, 1, 2, bytes(2, 2), [
              [bob, 1, 2],
              [bob, 2, 1],
            ]),
            message(bob, 1, 1, bytes(3), [[alice, 1, 1]]),
            message(alice, 1, 3, bytes(4), [[bob, 1, 1]]),
          ],
          receipts: [receipt(alice, 2, 1, [1])],
          acks: [{ account: bob, device: 1, uptoSeq: 1 }],
          sequences: [{ account: alice, device: 2, lastSeq: 50 }],
          clientIds: [{ account: bob, device: 2, lastClientId: 60 }],
          clientIdWindows: [clientIdWindow(alice, bob, 2, 60, window(1))],
        });
        await expect(storage.queues.commit(failing)).rejects.toThrow();
        expect(await snapshot(storage, alice, bob)).toEqual(before);

        // A duplicate within the batch itself fails it too.
        const duplicated = batchOf({
          messages: [message(alice, 1, 2, bytes(2), [[bob, 2, 1]]), message(alice, 1, 3, bytes(3), [[bob, 2, 1]])],
        });
        await expect(storage.queues.commit(duplicated)).rejects.toThrow();
        expect(await snapshot(storage, alice, bob)).toEqual(before);

        // And the store still takes the next good batch.
        await storage.queues.commit(batchOf({ messages: [message(alice, 1, 2, bytes(2), [[bob, 1, 2]])] }));
        expect((await storage.queues.read({ account: bob, device: 1 }, 0, 10)).map((entry) => entry.seq)).toEqual([
          1, 2,
        ]);
      });

      test("rows for a device removed before the commit are skipped, the rest is stored", async () => {
        const { alice, bob } = await twoAccounts(storage);
        await storage.devices.remove({ account: bob, device: 2 });
        await storage.queues.commit(
          batchOf({
            messages: [
              message(alice, 1, 1, bytes(1, 2), [
                [bob, 1, 1],
                [bob, 2, 1],
              ]),
            ],
            receipts: [receipt(bob, 2, 2, [1])],
            sequences: [{ account: bob, device: 2, lastSeq: 5 }],
          }),
        );
        expect((await storage.queues.read({ account: bob, device: 1 }, 0, 10)).map(payloadOf)).toEqual([bytes(1, 2)]);
        expect(await storage.queues.totals()).toEqual({ rows: 1, bytes: 2 });
        expect(await storage.devices.get({ account: bob, device: 2 })).toBeUndefined();
      });

      test("sweep deletes rows created before a time, oldest first, at most the limit", async () => {
        const { alice, bob } = await twoAccounts(storage);
        const shared = bytes(8, 8);
        await storage.queues.commit(
          batchOf({
            messages: [
              message(alice, 1, 1, bytes(1), [[bob, 1, 1]], 1_000),
              message(
                alice,
                1,
                2,
                shared,
                [
                  [bob, 1, 2],
                  [bob, 2, 1],
                ],
                2_000,
              ),
              message(alice, 1, 3, bytes(3), [[bob, 1, 3]], 3_000),
            ],
            // Oldest first is a promise within one account's queues (a partitioned store sweeps its partitions in
            // turn), so every row here is one account's.
            receipts: [receipt(bob, 2, 2, [1, 2], { createdAtMs: 1_500 })],
          }),
        );

        expect(await storage.queues.sweep(500, 10)).toEqual({ deleted: 0, devices: [] });
        expect(await storage.queues.sweep(3_000, 0)).toEqual({ deleted: 0, devices: [] });

        const first = await storage.queues.sweep(3_000, 2);
        expect(first.deleted).toBe(2);
        expect(sortKeys(first.devices)).toEqual(
          sortKeys([
            { account: bob, device: 1 },
            { account: bob, device: 2 },
          ]),
        );
        expect((await storage.queues.read({ account: bob, device: 1 }, 0, 10)).map((entry) => entry.seq)).toEqual([
          2, 3,
        ]);
        expect((await storage.queues.read({ account: bob, device: 2 }, 0, 10)).map((entry) => entry.seq)).toEqual([1]);

        // The rows at 2,000 go; the row at exactly 3,000 is not before 3,000 and stays.
        const second = await storage.queues.sweep(3_000, 10);
        expect(second.deleted).toBe(2);
        expect(sortKeys(second.devices)).toEqual(
          sortKeys([
            { account: bob, device: 1 },
            { account: bob, device: 2 },
          ]),
        );
        expect((await storage.queues.read({ account: bob, device: 1 }, 0, 10)).map((entry) => entry.seq)).toEqual([3]);
        expect(await storage.queues.read({ account: bob, device: 2 }, 0, 10)).toEqual([]);
        for (const key of [
          { account: alice, device: 1 },
          { account: bob, device: 1 },
          { account: bob, device: 2 },
        ]) {
          await expectCountersExact(storage, key);
        }
        expect(await storage.queues.totals()).toEqual({ rows: 1, bytes: 1 });
        expect(await storage.queues.sweep(3_000, 10)).toEqual({ deleted: 0, devices: [] });
      });

      test("sweep keeps a shared payload while another recipient still holds it", async () => {
        const { alice, bob } = await twoAccounts(storage);
        const shared = bytes(8, 8);
        await storage.queues.commit(
          batchOf({
            messages: [
              message(alice, 1, 1, bytes(1), [[bob, 1, 1]], 1_000),
              message(
                alice,
                1,
                2,
                shared,
                [
                  [bob, 1, 2],
                  [bob, 2, 1],
                ],
                2_000,
              ),
            ],
          }),
        );
        // Deletes the row at 1,000 and one of the two rows at 2,000.
        expect((await storage.queues.sweep(5_000, 2)).deleted).toBe(2);
        const remaining = [
          ...(await storage.queues.read({ account: bob, device: 1 }, 0, 10)),
          ...(await storage.queues.read({ account: bob, device: 2 }, 0, 10)),
        ];
        expect(remaining.map(payloadOf)).toEqual([shared]);
        expect(await storage.queues.totals()).toEqual({ rows: 1, bytes: 2 });
      });
    });

    describe("fair share and read-receipt windows", () => {
      test("peerDepth counts one peer's entries (messages and receipts) in one device's queue", async () => {
        const { alice, bob } = await twoAccounts(storage);
        const carol = await createAccount(storage, "carol");
        await storage.queues.commit(
          batchOf({
            messages: [
              message(alice, 1, 1, bytes(1, 2, 3), [[bob, 1, 1]]),
              message(alice, 1, 2, bytes(4), [[bob, 1, 2]]),
              message(carol, 1, 1, bytes(5, 6), [[bob, 1, 3]]),
            ],
            receipts: [receipt(bob, 1, 4, [9, 10], { peerAccount: alice, peerDevice: 1 })],
          }),
        );
        expect(await storage.queues.peerDepth({ account: bob, device: 1 }, alice)).toEqual({
          rows: 3,
          bytes: 3 + 1 + 2 * clientIdBytes,
        });
        expect(await storage.queues.peerDepth({ account: bob, device: 1 }, carol)).toEqual({ rows: 1, bytes: 2 });
        expect(await storage.queues.peerDepth({ account: bob, device: 1 }, 424242)).toEqual({ rows: 0, bytes: 0 });
        await storage.queues.commit(batchOf({ acks: [{ account: bob, device: 1, uptoSeq: 2 }] }));
        expect(await storage.queues.peerDepth({ account: bob, device: 1 }, alice)).toEqual({
          rows: 1,
          bytes: 2 * clientIdBytes,
        });
      });

      test("read-receipt windows are stored whole, replaced, read back per peer, and removed with their device", async () => {
        const { alice, bob } = await twoAccounts(storage);
        await storage.devices.add(bob, publicKey(9), 1_000);
        const window = (device: number, last: number, delivered: number, read: number) => ({
          account: bob,
          device,
          peerAccount: alice,
          peerDevice: 1,
          lastClientId: last,
          delivered: bytes(delivered, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
          read: bytes(read, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
          updatedAtMs: 5_000,
        });
        await storage.queues.commit(batchOf({ readReceiptWindows: [window(1, 7, 3, 0), window(2, 4, 1, 1)] }));
        await storage.queues.commit(batchOf({ readReceiptWindows: [window(1, 8, 7, 2)] }));
        const peers = [
          { account: alice, device: 1 },
          { account: alice, device: 2 },
        ];
        expect(await storage.queues.readReceiptWindows({ account: bob, device: 1 }, peers)).toEqual([
          window(1, 8, 7, 2),
        ]);
        expect(await storage.queues.readReceiptWindows({ account: bob, device: 2 }, peers)).toEqual([
          window(2, 4, 1, 1),
        ]);
        expect(await storage.devices.remove({ account: bob, device: 2 })).toBe(true);
        expect(await storage.queues.readReceiptWindows({ account: bob, device: 2 }, peers)).toEqual([]);
        // A window of a device that no longer exists is skipped, not a failed batch.
        await storage.queues.commit(batchOf({ readReceiptWindows: [window(2, 9, 1, 0)] }));
        expect(await storage.queues.readReceiptWindows({ account: bob, device: 2 }, peers)).toEqual([]);
        expect(await storage.accounts.remove(bob)).toBe(true);
        expect(await storage.queues.readReceiptWindows({ account: bob, device: 1 }, peers)).toEqual([]);
      });
    });

    describe("invites", () => {
      test("an invite is used once", async () => {
        await storage.invites.issue("invite-1", 1_000, 1_000 + hour);
        expect(await storage.invites.consume("invite-1", 2_000, 42)).toBe(true);
        expect(await storage.invites.consume("invite-1", 2_001)).toBe(false);
        expect(await storage.invites.consume("unknown", 2_000)).toBe(false);
        const listed = await storage.invites.list();
        expect(listed).toEqual([
          { codeHash: expect.any(String), createdAtMs: 1_000, expiresAtMs: 1_000 + hour, usedAtMs: 2_000 },
        ]);
        // Stores keep a keyed hash of a code, never the code.
        expect(JSON.stringify(listed)).not.toContain("invite-1");
      });

      test("an expired invite is refused", async () => {
        await storage.invites.issue("invite-1", 1_000, 5_000);
        await storage.invites.issue("invite-2", 1_000, 5_000);
        expect(await storage.invites.consume("invite-1", 5_000)).toBe(false);
        expect(await storage.invites.consume("invite-2", 4_999)).toBe(true);
        // Both were issued at the same time, so their order is their hashes' order: compare as a set.
        const listed = await storage.invites.list();
        expect(listed).toHaveLength(2);
        expect(listed).toEqual(
          expect.arrayContaining([
            { codeHash: expect.any(String), createdAtMs: 1_000, expiresAtMs: 5_000, usedAtMs: null },
            { codeHash: expect.any(String), createdAtMs: 1_000, expiresAtMs: 5_000, usedAtMs: 4_999 },
          ]),
        );
      });

      test("revoke deletes an unused invite, by code or by its listed hash, and leaves a used one", async () => {
        await storage.invites.issue("invite-1", 1_000, 1_000 + hour);
        await storage.invites.issue("invite-2", 1_000, 1_000 + hour);
        await storage.invites.issue("invite-3", 1_000, 1_000 + hour);
        expect(await storage.invites.consume("invite-3", 2_000)).toBe(true);
        expect(await storage.invites.revoke({ code: "invite-1" })).toBe(true);
        expect(await storage.invites.revoke({ code: "invite-1" })).toBe(false);
        expect(await storage.invites.consume("invite-1", 2_000)).toBe(false);
        const unused = (await storage.invites.list()).find((invite) => invite.usedAtMs === null)!;
        expect(await storage.invites.revoke({ codeHash: unused.codeHash })).toBe(true);
        expect(await storage.invites.consume("invite-2", 2_000)).toBe(false);
        const used = (await storage.invites.list()).find((invite) => invite.usedAtMs !== null)!;
        expect(await storage.invites.revoke({ codeHash: used.codeHash })).toBe(false);
        expect(await storage.invites.revoke({ code: "invite-3" })).toBe(false);
        expect(await storage.invites.revoke({ codeHash: "not hex" })).toBe(false);
        expect(await storage.invites.list()).toHaveLength(1);
      });

      test("an invite code cannot be issued twice", async () => {
        await storage.invites.issue("invite-1", 1_000, 5_000);
        await expect(storage.invites.issue("invite-1", 2_000, 6_000)).rejects.toThrow();
      });
    });

    describe("link codes", () => {
      test("a link code gives its account once", async () => {
        const alice = await createAccount(storage, "alice");
        await storage.linkCodes.issue(alice, "link-1", 1_000, 1_000 + hour);
        expect(await storage.linkCodes.consume("link-1", 2_000)).toBe(alice);
        expect(await storage.linkCodes.consume("link-1", 2_000)).toBeUndefined();
        expect(await storage.linkCodes.consume("unknown", 2_000)).toBeUndefined();
      });

      test("an expired link code gives nothing and is gone", async () => {
        const alice = await createAccount(storage, "alice");
        await storage.linkCodes.issue(alice, "link-1", 1_000, 5_000);
        await storage.linkCodes.issue(alice, "link-2", 1_000, 5_000);
        expect(await storage.linkCodes.consume("link-1", 5_000)).toBeUndefined();
        expect(await storage.linkCodes.consume("link-1", 4_000)).toBeUndefined();
        expect(await storage.linkCodes.consume("link-2", 4_999)).toBe(alice);
      });

      test("issuing still works when many codes have expired, and expired codes stay unusable", async () => {
        const alice = await createAccount(storage, "alice");
        for (let index = 0; index < 40; index++) {
          await storage.linkCodes.issue(alice, `old-${index}`, 1_000, 2_000);
        }
        await storage.linkCodes.issue(alice, "fresh", 3_000, 4_000);
        expect(await storage.linkCodes.consume("old-39", 3_000)).toBeUndefined();
        expect(await storage.linkCodes.consume("fresh", 3_000)).toBe(alice);
      });
    });

    // A store that does not outlive its connection (SQLite ":memory:") has no durability to test: the test is not
    // registered for it at all, rather than reported as skipped.
    const reopen = options.reopen;
    if (reopen !== undefined)
      describe("durability", () => {
        test("data survives close and reopen", async () => {
          const { alice, bob } = await twoAccounts(storage);
          const payload = bytes(1, 2, 3);
          await storage.queues.commit(
            batchOf({
              messages: [
                message(alice, 1, 9, payload, [
                  [bob, 1, 1],
                  [bob, 2, 1],
                ]),
              ],
              receipts: [receipt(alice, 1, 1, [9])],
              sequences: [{ account: bob, device: 1, lastSeq: 3 }],
            }),
          );
          await storage.invites.issue("invite-1", 1_000, 1_000 + hour);
          await storage.linkCodes.issue(alice, "link-1", 1_000, 1_000 + hour);
          const before = await snapshot(storage, alice, bob);
          await storage.close();

          const reopened = await reopen!(storage);
          opened.push(reopened);
          expect(await snapshot(reopened, alice, bob)).toEqual(before);
          expect(await reopened.accounts.byHandle("bob")).toMatchObject({ id: bob });
          expect(await reopened.invites.consume("invite-1", 2_000)).toBe(true);
          expect(await reopened.linkCodes.consume("link-1", 2_000)).toBe(alice);
          // Ids carry on from where they were: neither account nor device ids are reused.
          expect((await reopened.devices.add(alice, publicKey(9), 3_000)).device).toBe(3);
          expect(await createAccount(reopened, "carol")).toBeGreaterThan(bob);
        });
      });
  });
}

function publicKey(seed: number): Uint8Array {
  return new Uint8Array(32).fill(seed);
}

function bytes(...values: number[]): Uint8Array {
  return new Uint8Array(values);
}

async function createAccount(storage: Storage, handle: string): Promise<number> {
  const created = await storage.accounts.create(handle, publicKey(1), 1_000);
  if (created === undefined) throw new Error(`handle ${handle} is taken`);
  return created.account.id;
}

// Alice and Bob, each with devices 1 and 2.
async function twoAccounts(storage: Storage): Promise<{ alice: number; bob: number }> {
  const alice = await createAccount(storage, "alice");
  const bob = await createAccount(storage, "bob");
  await storage.devices.add(alice, publicKey(2), 1_000);
  await storage.devices.add(bob, publicKey(2), 1_000);
  return { alice, bob };
}

function batchOf(parts: Partial<QueueBatch>): QueueBatch {
  return { messages: [], receipts: [], acks: [], sequences: [], clientIds: [], ...parts };
}

function clientIdWindow(account: number, peerAccount: number, peerDevice: number, last: number, bits: Uint8Array) {
  return { account, peerAccount, peerDevice, lastClientId: last, window: bits, updatedAtMs: 1000 };
}

function message(
  senderAccount: number,
  senderDevice: number,
  clientId: number,
  payload: Uint8Array,
  recipients: ReadonlyArray<readonly [account: number, device: number, seq: number]>,
  createdAtMs = 1_000,
): QueueBatch["messages"][number] {
  return {
    senderAccount,
    senderDevice,
    clientId,
    createdAtMs,
    payload,
    recipients: recipients.map(([account, device, seq]) => ({ account, device, seq })),
  };
}

function receipt(
  account: number,
  device: number,
  seq: number,
  clientIds: number[],
  fields: Partial<QueueBatch["receipts"][number]> = {},
): QueueBatch["receipts"][number] {
  return {
    account,
    device,
    seq,
    receiptType: 1,
    peerAccount: 1,
    peerDevice: 1,
    senderDevice: 1,
    clientIds,
    createdAtMs: 1_000,
    ...fields,
  };
}

function payloadOf(entry: QueueEntry): Uint8Array {
  if (entry.kind !== "message") throw new Error(`entry ${entry.seq} is a ${entry.kind}, not a message`);
  return entry.payload;
}

function entryBytes(entry: QueueEntry): number {
  if (entry.kind === "message") return entry.payload.byteLength + (entry.part?.byteLength ?? 0);
  if (entry.kind === "groupEvent") return groupEventBytes(entry.accounts.length, entry.name);
  if (entry.kind === "groupReceipt") return groupReceiptBytes(entry.readers.length);
  return entry.clientIds.length * clientIdBytes;
}

// The device's counters agree with what its queue holds.
async function expectCountersExact(storage: Storage, key: DeviceKey): Promise<void> {
  const entries = await storage.queues.read(key, 0, wholeQueueEntries);
  const device = await storage.devices.get(key);
  const counted = { rows: device?.queueRows, bytes: device?.queueBytes };
  const held = { rows: entries.length, bytes: entries.reduce((sum, entry) => sum + entryBytes(entry), 0) };
  expect(counted).toEqual(held);
}

// Everything the store holds for the two accounts of twoAccounts, to compare before and after.
async function snapshot(storage: Storage, alice: number, bob: number): Promise<unknown> {
  const devices = [...(await storage.devices.list(alice)), ...(await storage.devices.list(bob))];
  const queues: QueueEntry[][] = [];
  for (const device of devices) queues.push(await storage.queues.read(device, 0, wholeQueueEntries));
  const clientIdWindows = await storage.queues.clientIdWindows(alice, [{ account: bob, device: 2 }]);
  return {
    devices,
    queues,
    clientIdWindows,
    totals: await storage.queues.totals(),
    accounts: await storage.accounts.count(),
  };
}

function sortKeys(keys: DeviceKey[]): DeviceKey[] {
  return [...keys].sort((left, right) => left.account - right.account || left.device - right.device);
}

/** An 8-byte client id window with the given low bits set. */
function window(bits: number): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(0, bits, true);
  return bytes;
}
