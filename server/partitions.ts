// Queue data split into P partitions (ARCHITECTURE.md, "Partitions"). P is fixed when the data directory gets its
// partitions (partitions/count) and never changes; an account's partition is a hash of its id, and each partition is
// one SQLite file holding the queues, sequence marks, client-id windows and read-receipt windows of its accounts'
// devices. The directory (accounts, handles, device keys, invites, link codes) stays in switchboard.sqlite, shared by
// every worker. A worker opens, and flock-locks, only the partitions it owns: partition p belongs to worker p mod N.
//
// The facade returned by partitionedStorage() is the Storage the rest of the server uses: directory calls go to the
// directory file, queue calls to the partition of the device's account. A send, an ack or a receipt each touches one
// partition only (the recipient's queue and the client-id window of the pair live together), so a batch of the group
// commit is split by partition and each part committed in its own transaction, all or nothing per partition.

import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { commitRowsPerTurn, partitionsDefault, partitionsMax } from "../protocol/limits.ts";
import {
  type AccountStore,
  type DeviceKey,
  type DeviceRecord,
  type DeviceStore,
  type GroupStore,
  type KeyStore,
  openSqliteStorage,
  type QueueBatch,
  type QueueStore,
  type Storage,
} from "../storage/index.ts";
import type { WalCheckpointer } from "../storage/wal-checkpointer.ts";
import { type DataDirectoryLock, lockPartitionFile } from "./data-directory.ts";
import { nextTurn } from "./next-turn.ts";

export const partitionsDirectoryName = "partitions";
const countFileName = "count";

/** The partition of an account: murmur3's finaliser spreads sequential ids evenly over any P. */
export function partitionOf(account: number, count: number): number {
  let hash = account >>> 0;
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return (hash >>> 0) % count;
}

/** The worker that owns a partition. */
export function ownerOfPartition(partition: number, workers: number): number {
  return partition % workers;
}

export function partitionFilePath(dataDir: string, partition: number): string {
  return join(dataDir, partitionsDirectoryName, `p-${String(partition).padStart(4, "0")}.sqlite`);
}

/** The file holding an account's queues in a data directory that has partitions (tests and tools read it). */
export function partitionFileOfAccount(dataDir: string, account: number): string {
  const count = readPartitionCount(dataDir);
  if (count === undefined) throw new Error(`${dataDir} has no partitions`);
  return partitionFilePath(dataDir, partitionOf(account, count));
}

/** The partition count of a data directory, or undefined before it has partitions. */
export function readPartitionCount(dataDir: string): number | undefined {
  const path = join(dataDir, partitionsDirectoryName, countFileName);
  if (!existsSync(path)) return undefined;
  const count = Number(readFileSync(path, "utf8").trim());
  if (!Number.isInteger(count) || count < 1 || count > partitionsMax) {
    throw new Error(`${path} holds ${JSON.stringify(readFileSync(path, "utf8").trim())}, not a partition count`);
  }
  return count;
}

/**
 * Fixes the partition count of a data directory (written once, atomically: a crash leaves no half-written count).
 * Returns the count in effect (an existing one wins).
 */
export function ensurePartitionCount(dataDir: string, count = partitionsDefault): number {
  const existing = readPartitionCount(dataDir);
  if (existing !== undefined) return existing;
  if (!Number.isInteger(count) || count < 1 || count > partitionsMax) {
    throw new Error(`partition count must be 1..${partitionsMax}, not ${count}`);
  }
  const directory = join(dataDir, partitionsDirectoryName);
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const temporary = join(directory, `${countFileName}.${process.pid}.tmp`);
  writeFileSync(temporary, `${count}\n`, { mode: 0o600 });
  renameSync(temporary, join(directory, countFileName));
  return count;
}

/** The partitions one process has open. */
export class Partitions {
  constructor(
    readonly count: number,
    private readonly stores: ReadonlyMap<number, Storage>,
    private readonly locks: readonly DataDirectoryLock[],
  ) {}

  partitionOf(account: number): number {
    return partitionOf(account, this.count);
  }

  owns(account: number): boolean {
    return this.stores.has(partitionOf(account, this.count));
  }

  /** The store of an account's partition; throws when this process does not own it (a routing bug). */
  store(account: number): Storage {
    const partition = partitionOf(account, this.count);
    const store = this.stores.get(partition);
    if (store === undefined) throw new Error(`partition ${partition} (account ${account}) is not owned here`);
    return store;
  }

  storeOfPartition(partition: number): Storage | undefined {
    return this.stores.get(partition);
  }

  get owned(): ReadonlyArray<number> {
    return [...this.stores.keys()];
  }

  async close(): Promise<void> {
    for (const store of this.stores.values()) await store.close();
    for (const lock of this.locks) lock.release();
  }
}

export interface OpenPartitionsOptions {
  readonly dataDir: string;
  readonly synchronous?: "normal" | "full";
  /** Which partitions this process owns (all of them for a single process). */
  readonly owned: (partition: number) => boolean;
  /** The count for a data directory that has none yet. */
  readonly countForNew?: number;
  /** Checkpoints the partitions' logs off the event loop (storage/wal-checkpointer.ts), here or "elsewhere". */
  readonly checkpointer?: WalCheckpointer | "elsewhere";
}

/** Opens (creating and migrating as needed) and locks the owned partitions. */
export async function openPartitions(options: OpenPartitionsOptions): Promise<Partitions> {
  const count = ensurePartitionCount(options.dataDir, options.countForNew);
  // The owner's alone, like the data directory, whatever the umask or an older start left.
  chmodSync(join(options.dataDir, partitionsDirectoryName), 0o700);
  const stores = new Map<number, Storage>();
  const locks: DataDirectoryLock[] = [];
  try {
    for (let partition = 0; partition < count; partition++) {
      if (!options.owned(partition)) continue;
      const path = partitionFilePath(options.dataDir, partition);
      locks.push(lockPartitionFile(`${path}.lock`));
      stores.set(
        partition,
        await openSqliteStorage({
          path,
          synchronous: options.synchronous,
          codeKeyPath: join(options.dataDir, "code-hash.key"),
          ...(options.checkpointer === undefined ? {} : { checkpointer: options.checkpointer }),
        }),
      );
    }
  } catch (error) {
    for (const store of stores.values()) await store.close();
    for (const lock of locks) lock.release();
    throw error;
  }
  return new Partitions(count, stores, locks);
}

/** Sender-device marks whose partition another worker owns: the server forwards them over the mesh. */
export type ForeignClientIds = (entries: QueueBatch["clientIds"]) => void;

/**
 * The Storage the server uses: the directory for accounts, keys, invites and link codes; the partitions for queues
 * and marks. `foreignClientIds` receives the sender high-water marks (welcome's lastClientId) that belong to a
 * partition this process does not own.
 */
export function partitionedStorage(
  directory: Storage,
  partitions: Partitions,
  now: () => number,
  foreignClientIds: ForeignClientIds = () => {},
): Storage {
  return {
    accounts: partitionedAccounts(directory.accounts, partitions),
    devices: partitionedDevices(directory.devices, partitions, now),
    queues: new PartitionedQueues(partitions, foreignClientIds),
    invites: directory.invites,
    linkCodes: directory.linkCodes,
    keys: partitionedKeys(partitions),
    groups: partitionedGroups(partitions),
    close: async () => {
      await partitions.close();
      await directory.close();
    },
  };
}

function partitionedAccounts(directory: AccountStore, partitions: Partitions): AccountStore {
  return {
    // The partition's rows are written with the account (a crash between the two is mended by devices.get).
    async create(handle, publicKey, nowMs) {
      const created = await directory.create(handle, publicKey, nowMs);
      if (created !== undefined && partitions.owns(created.account.id)) {
        await partitions.store(created.account.id).devices.mirror({ account: created.account.id, device: 1 }, nowMs);
      }
      return created;
    },
    byId: (id) => directory.byId(id),
    byHandle: (handle) => directory.byHandle(handle),
    list: (options) => directory.list(options),
    count: () => directory.count(),
    // The account's queues go with it where this process owns them (an owner elsewhere will hear of it on the mesh).
    async remove(id: number): Promise<boolean> {
      const removed = await directory.remove(id);
      if (partitions.owns(id)) await partitions.store(id).accounts.remove(id);
      return removed;
    },
  };
}

function partitionedDevices(directory: DeviceStore, partitions: Partitions, now: () => number): DeviceStore {
  return {
    async add(account, publicKey, nowMs) {
      const record = await directory.add(account, publicKey, nowMs);
      if (partitions.owns(account)) await partitions.store(account).devices.mirror(record, nowMs);
      return record;
    },
    list: (account) => directory.list(account),
    touch: (entries, options) => directory.touch(entries, options),
    mirror: async (key, nowMs) => partitions.store(key.account).devices.mirror(key, nowMs),
    async get(key: DeviceKey): Promise<DeviceRecord | undefined> {
      const record = await directory.get(key);
      if (!partitions.owns(key.account)) return record;
      const store = partitions.store(key.account);
      let marks = await store.devices.get(key);
      if (record === undefined) {
        // Removed while its owner was away: its queue goes now. (Only then: a lookup of a device that never existed,
        // a bad login, must not cost a write.)
        if (marks !== undefined) await store.devices.remove(key);
        return undefined;
      }
      if (marks === undefined) {
        await store.devices.mirror(key, now());
        marks = await store.devices.get(key);
      }
      if (marks === undefined) throw new Error(`partition row of device ${key.account}/${key.device} not written`);
      return {
        ...record,
        lastSeq: marks.lastSeq,
        lastClientId: marks.lastClientId,
        clientIdWindow: marks.clientIdWindow,
        queueRows: marks.queueRows,
        queueBytes: marks.queueBytes,
      };
    },
    async remove(key: DeviceKey): Promise<boolean> {
      const removed = await directory.remove(key);
      if (partitions.owns(key.account)) await partitions.store(key.account).devices.remove(key);
      return removed;
    },
  };
}

/** The key directory lives in each device's partition: every call goes to the partition of its account. */
function partitionedKeys(partitions: Partitions): KeyStore {
  return {
    publish: (key, keys, storedMax, nowMs) => partitions.store(key.account).keys.publish(key, keys, storedMax, nowMs),
    take: (account, devices, fetcher, fetchersMax, nowMs) =>
      partitions.store(account).keys.take(account, devices, fetcher, fetchersMax, nowMs),
    count: (key) => partitions.store(key.account).keys.count(key),
    has: (key) => partitions.store(key.account).keys.has(key),
  };
}

/** A group lives in the partition its id hashes to, like an account (its owner decides its order). */
function partitionedGroups(partitions: Partitions): GroupStore {
  return {
    create: (record, change) => partitions.store(record.id).groups.create(record, change),
    get: (groupId) => partitions.store(groupId).groups.get(groupId),
    apply: (change, delta, kept) => partitions.store(change.groupId).groups.apply(change, delta, kept),
    changeBy: (groupId, account, device, clientId) =>
      partitions.store(groupId).groups.changeBy(groupId, account, device, clientId),
  };
}

class PartitionedQueues implements QueueStore {
  /** Where the next sweep starts, so that every partition gets its turn however small the limit. */
  private sweepStart = 0;

  constructor(
    private readonly partitions: Partitions,
    private readonly foreignClientIds: ForeignClientIds,
  ) {}

  private queues(account: number): QueueStore {
    return this.partitions.store(account).queues;
  }

  async commit(batch: QueueBatch): Promise<void> {
    const parts = new Map<number, QueueBatch>();
    const part = (account: number): QueueBatch => {
      const partition = this.partitions.partitionOf(account);
      let found = parts.get(partition);
      if (found === undefined) {
        found = { messages: [], receipts: [], acks: [], sequences: [], clientIds: [], clientIdWindows: [] };
        parts.set(partition, found);
      }
      return found;
    };
    const foreign: QueueBatch["clientIds"] = [];
    const clientIds = (entry: QueueBatch["clientIds"][number]) => {
      if (this.partitions.owns(entry.account)) part(entry.account).clientIds.push(entry);
      else foreign.push(entry);
    };
    for (const message of batch.messages) {
      const byPartition = new Map<number, typeof message.recipients>();
      for (const recipient of message.recipients) {
        const partition = this.partitions.partitionOf(recipient.account);
        const list = byPartition.get(partition) ?? [];
        byPartition.set(partition, list);
        list.push(recipient);
      }
      for (const recipients of byPartition.values()) {
        part(recipients[0]!.account).messages.push({ ...message, recipients });
      }
      const senderPartition = this.partitions.partitionOf(message.senderAccount);
      if (!byPartition.has(senderPartition)) {
        clientIds({ account: message.senderAccount, device: message.senderDevice, lastClientId: message.clientId });
      }
    }
    for (const receipt of batch.receipts) part(receipt.account).receipts.push(receipt);
    for (const receipt of batch.groupReceipts ?? []) {
      const target = part(receipt.account);
      target.groupReceipts ??= [];
      target.groupReceipts.push(receipt);
    }
    for (const event of batch.groupEvents ?? []) {
      const target = part(event.account);
      target.groupEvents ??= [];
      target.groupEvents.push(event);
    }
    for (const ack of batch.acks) part(ack.account).acks.push(ack);
    for (const sequence of batch.sequences) part(sequence.account).sequences.push(sequence);
    for (const entry of batch.clientIds) clientIds(entry);
    for (const window of batch.clientIdWindows ?? []) part(window.account).clientIdWindows!.push(window);
    for (const window of batch.readReceiptWindows ?? []) {
      const target = part(window.account);
      target.readReceiptWindows ??= [];
      target.readReceiptWindows.push(window);
    }
    // One transaction per partition. A crash between two leaves each partition whole: what spans partitions (a
    // receipt produced by an ack in another partition) is at most once across a crash (ARCHITECTURE.md).
    // The transactions are synchronous (bun:sqlite): after every commitRowsPerTurn rows the loop is given to the other
    // sessions (a commit holding a send to a 1,024-member group touches all 64 partitions, thousands of rows). The
    // batch's promise resolves only after its last partition, so nothing of it is acknowledged earlier.
    let rowsThisTurn = 0;
    for (const [partition, sub] of parts) {
      const store = this.partitions.storeOfPartition(partition);
      if (store === undefined) throw new Error(`commit for partition ${partition}, which is not owned here`);
      if (rowsThisTurn >= commitRowsPerTurn) {
        await nextTurn();
        rowsThisTurn = 0;
      }
      await store.queues.commit(sub);
      rowsThisTurn += batchRows(sub);
    }
    if (foreign.length > 0) this.foreignClientIds(foreign);
  }

  read(key: DeviceKey, afterSeq: number, limit: number) {
    return this.queues(key.account).read(key, afterSeq, limit);
  }

  async sweep(beforeMs: number, limit: number): Promise<{ deleted: number; devices: DeviceKey[] }> {
    const owned = this.partitions.owned;
    let deleted = 0;
    const devices: DeviceKey[] = [];
    for (let step = 0; step < owned.length && deleted < limit; step++) {
      const partition = owned[(this.sweepStart + step) % owned.length]!;
      const swept = await this.partitions.storeOfPartition(partition)!.queues.sweep(beforeMs, limit - deleted);
      deleted += swept.deleted;
      devices.push(...swept.devices);
      // A partition that filled the rest of the limit may hold more: it starts the next sweep.
      if (deleted >= limit) this.sweepStart = (this.sweepStart + step) % owned.length;
    }
    if (deleted < limit) this.sweepStart = 0;
    return { deleted, devices };
  }

  async totals(): Promise<{ rows: number; bytes: number }> {
    let rows = 0;
    let bytes = 0;
    for (const partition of this.partitions.owned) {
      const totals = await this.partitions.storeOfPartition(partition)!.queues.totals();
      rows += totals.rows;
      bytes += totals.bytes;
    }
    return { rows, bytes };
  }

  peerDepth(key: DeviceKey, peerAccount: number) {
    return this.queues(key.account).peerDepth(key, peerAccount);
  }

  readReceiptWindows(key: DeviceKey, peers: ReadonlyArray<{ account: number; device: number }>) {
    return this.queues(key.account).readReceiptWindows(key, peers);
  }

  clientIdWindows(account: number, peers: ReadonlyArray<{ account: number; device: number }>) {
    return this.queues(account).clientIdWindows(account, peers);
  }
}

/** The rows a batch writes or deletes (each a statement or so): what a partition's transaction costs. */
function batchRows(batch: QueueBatch): number {
  let rows =
    batch.receipts.length +
    batch.acks.length +
    batch.sequences.length +
    batch.clientIds.length +
    (batch.clientIdWindows?.length ?? 0) +
    (batch.readReceiptWindows?.length ?? 0) +
    (batch.groupEvents?.length ?? 0) +
    (batch.groupReceipts?.length ?? 0);
  for (const message of batch.messages) rows += message.recipients.length;
  return rows;
}
