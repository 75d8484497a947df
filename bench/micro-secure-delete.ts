// What `pragma secure_delete = on` costs the store, against off, in one process and one run.
//
// Method: two stores on temporary files with the server's pragmas (WAL, synchronous=normal), identical but for
// secure_delete. One cycle commits a group of `rows` messages to one device, then the cumulative ack that deletes
// them: the life of every delivered message. Rounds alternate between the two stores (on, off, on, off, ...) so that
// drift of the host affects both; each round times `cycles` cycles after a warm-up; the figure is the median round.
// Payloads of 20 B (a short text), 1,000 B, and 16 KiB (overflow pages, which secure_delete zeroes when freed).
//
//   bun bench/micro-secure-delete.ts [--rounds 7] [--cycles 200] [--rows 64]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openSqliteStorage, type QueueBatch, type Storage } from "../storage/index.ts";

const payloadSizesBytes = [20, 1_000, 16 * 1024] as const;

interface Store {
  readonly storage: Storage;
  readonly account: number;
  seq: number;
  clientId: number;
}

function batchOf(store: Store, rows: number, payload: Uint8Array): QueueBatch {
  const messages: QueueBatch["messages"] = [];
  for (let index = 0; index < rows; index++) {
    store.seq += 1;
    store.clientId += 1;
    messages.push({
      senderAccount: 1,
      senderDevice: 1,
      clientId: store.clientId,
      createdAtMs: Date.now(),
      payload,
      recipients: [{ account: store.account, device: 1, seq: store.seq }],
    });
  }
  return { messages, receipts: [], acks: [], sequences: [], clientIds: [] };
}

async function open(directory: string, name: string, secureDelete: boolean): Promise<Store> {
  const storage = await openSqliteStorage({ path: join(directory, `${name}.sqlite`), secureDelete });
  const now = Date.now();
  await storage.accounts.create("sender", new Uint8Array(32).fill(1), now);
  const recipient = await storage.accounts.create("recipient", new Uint8Array(32).fill(2), now);
  if (recipient === undefined) throw new Error("could not create the recipient");
  return { storage, account: recipient.account.id, seq: 0, clientId: 0 };
}

async function cycles(store: Store, count: number, rows: number, payload: Uint8Array): Promise<number> {
  const started = performance.now();
  for (let index = 0; index < count; index++) {
    await store.storage.queues.commit(batchOf(store, rows, payload));
    await store.storage.queues.commit({
      messages: [],
      receipts: [],
      acks: [{ account: store.account, device: 1, uptoSeq: store.seq }],
      sequences: [],
      clientIds: [],
    });
  }
  return performance.now() - started;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { rounds: { type: "string" }, cycles: { type: "string" }, rows: { type: "string" } },
  });
  const rounds = Number(values.rounds ?? 7);
  const cycleCount = Number(values.cycles ?? 200);
  const rows = Number(values.rows ?? 64);
  const directory = mkdtempSync(join(tmpdir(), "switchboard-bench-secure-delete-"));
  try {
    console.log(
      `secure_delete on vs off: ${rounds} alternating rounds of ${cycleCount} cycles (commit ${rows} rows, ack-delete them)`,
    );
    console.log("payload | on: µs per cycle | off: µs per cycle | on / off");
    for (const size of payloadSizesBytes) {
      const payload = new Uint8Array(size).fill(0xab);
      const on = await open(directory, `on-${size}`, true);
      const off = await open(directory, `off-${size}`, false);
      await cycles(on, Math.ceil(cycleCount / 4), rows, payload);
      await cycles(off, Math.ceil(cycleCount / 4), rows, payload);
      const onMs: number[] = [];
      const offMs: number[] = [];
      for (let round = 0; round < rounds; round++) {
        onMs.push(await cycles(on, cycleCount, rows, payload));
        offMs.push(await cycles(off, cycleCount, rows, payload));
      }
      await on.storage.close();
      await off.storage.close();
      const onUs = (median(onMs) * 1000) / cycleCount;
      const offUs = (median(offMs) * 1000) / cycleCount;
      console.log(`${size} B | ${onUs.toFixed(1)} | ${offUs.toFixed(1)} | ${(onUs / offUs).toFixed(3)}`);
    }
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

await main();
