// micro: what the server's unit operations cost, with tinybench, in this process (no server, no sockets).
//   - the codec: bench/micro-codec.ts (FrameCodec against plain MessagePack, and the two compressors);
//   - Ed25519: the server's verifyEd25519 (server/signature.ts: raw key to KeyObject, then verify), against verify
//     with a KeyObject already made, and the client's sign (what a load worker pays per login);
//   - the store: openSqliteStorage on a temporary file, one group commit of 1, 64 or 1,024 message rows, and the
//     cumulative ack that deletes as many (its rows inserted before each iteration, outside the timing).
// Rates are operations (or rows) per second from tinybench's median sample time.

import { createPublicKey, generateKeyPairSync, verify } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Bench } from "tinybench";
import { loginMessage } from "../protocol/index.ts";
import { nobleAead } from "../protocol/noise-aead.ts";
import { nodeAead } from "../protocol/noise-aead-node.ts";
import { nobleDh } from "../protocol/noise-dh.ts";
import { nodeDh } from "../protocol/noise-dh-node.ts";
import { verifyEd25519 } from "../server/signature.ts";
import { openSqliteStorage, type QueueBatch, type Storage } from "../storage/index.ts";
import { signWith } from "./device-keys.ts";
import { codecMicroBenchTaskCount, formatCodecMicroBench, runCodecMicroBench } from "./micro-codec.ts";
import { ProgressBar } from "./progress-bar.ts";
import type { ScenarioHarness } from "./scenario-harness.ts";
import type { Figure, ScenarioResult } from "./scenario-result.ts";
import { round } from "./stats.ts";

const batchSizes = [1, 64, 1024] as const;
const payload = new Uint8Array(20).fill(0xab);

interface MicroRow {
  readonly task: string;
  readonly opsPerSecond: number;
  readonly rowsPerSecond: number | null;
  readonly medianUs: number;
  readonly p99Us: number;
  readonly samples: number;
}

function rowsOf(bench: Bench, rowsPerOp: ReadonlyMap<string, number>): MicroRow[] {
  return bench.tasks.map((task) => {
    const result = task.result;
    if (result.state !== "completed" && result.state !== "aborted-with-statistics") {
      throw new Error(`micro: task ${task.name} did not complete (${result.state})`);
    }
    const medianMs = result.latency.p50;
    const opsPerSecond = 1000 / medianMs;
    const rows = rowsPerOp.get(task.name);
    return {
      task: task.name,
      opsPerSecond: round(opsPerSecond, 1),
      rowsPerSecond: rows === undefined ? null : round(opsPerSecond * rows, 0),
      medianUs: round(medianMs * 1000, 2),
      p99Us: round(result.latency.p99 * 1000, 2),
      samples: result.latency.samplesCount,
    };
  });
}

/** Tasks of signatureBench, and of storeBench for a list of batch sizes (a commit and an ack-delete each). */
const signatureTasks = 3 + 6;
const storeTasks = (sizes: readonly number[]) => sizes.length * 2;
const fullSyncSizes = [1, 64] as const;

async function signatureBench(timeMs: number, onTask: (name: string) => void): Promise<MicroRow[]> {
  const pair = generateKeyPairSync("ed25519");
  const der = pair.publicKey.export({ format: "der", type: "spki" });
  const rawKey = new Uint8Array(der.subarray(der.length - 32));
  const nonce = crypto.getRandomValues(new Uint8Array(32));
  const message = loginMessage(nonce, "127.0.0.1", 1_000_001, 1);
  const signature = signWith(pair.privateKey, message);
  const cachedKey = createPublicKey({ key: Buffer.from(der), format: "der", type: "spki" });
  let sink = 0;
  const noiseKey = crypto.getRandomValues(new Uint8Array(32));
  const record40 = new Uint8Array(40);
  const emptyAd = new Uint8Array(0);
  let counter = 0;
  const dhLocal = nodeDh.generateKeyPair();
  const dhPeer = nodeDh.generateKeyPair();
  const bench = new Bench({ time: timeMs, warmupTime: 100, iterations: 64, warmupIterations: 16 });
  bench.addEventListener("cycle", (event) => onTask(event.task?.name ?? ""));
  bench
    .add("Ed25519 verifyEd25519 (server, raw key)", () => {
      if (!verifyEd25519(rawKey, message, signature)) throw new Error("verify failed");
    })
    .add("Ed25519 verify, KeyObject cached", () => {
      if (!verify(null, message, cachedKey, signature)) throw new Error("verify failed");
    })
    .add("Ed25519 sign (client, per login)", () => {
      sink += signWith(pair.privateKey, message).length;
    })
    // Transport encryption (BENCHMARKS.md "transport encryption"): the server's backends against the browser-safe ones.
    .add("Noise AES-256-GCM seal 40 B, node:crypto", () => {
      sink += nodeAead.seal(noiseKey, counter++, emptyAd, record40).length;
    })
    .add("Noise AES-256-GCM seal 40 B, @noble/ciphers", () => {
      sink += nobleAead.seal(noiseKey, counter++, emptyAd, record40).length;
    })
    .add("Noise X25519 DH, node:crypto", () => {
      sink += nodeDh.sharedSecret(dhLocal, dhPeer.publicKey)!.length;
    })
    .add("Noise X25519 DH, @noble/curves", () => {
      sink += nobleDh.sharedSecret(dhLocal, dhPeer.publicKey)!.length;
    })
    .add("Noise X25519 key pair, node:crypto", () => {
      sink += nodeDh.generateKeyPair().publicKey.length;
    })
    .add("Noise X25519 key pair, @noble/curves", () => {
      sink += nobleDh.generateKeyPair().publicKey.length;
    });
  await bench.run();
  if (sink === -1) console.log(sink);
  return rowsOf(bench, new Map());
}

function messagesBatch(account: number, device: number, firstSeq: number, rows: number, clientId: number): QueueBatch {
  const messages: QueueBatch["messages"] = [];
  for (let index = 0; index < rows; index++) {
    messages.push({
      senderAccount: 1,
      senderDevice: 1,
      clientId: clientId + index,
      createdAtMs: Date.now(),
      payload,
      recipients: [{ account, device, seq: firstSeq + index }],
    });
  }
  return { messages, receipts: [], acks: [], sequences: [], clientIds: [] };
}

async function storeBench(
  timeMs: number,
  synchronous: "normal" | "full",
  sizes: readonly number[],
  onTask: (name: string) => void,
): Promise<MicroRow[]> {
  const directory = mkdtempSync(join(tmpdir(), "switchboard-bench-micro-"));
  let storage: Storage | null = null;
  try {
    storage = await openSqliteStorage({ path: join(directory, "switchboard.sqlite"), synchronous });
    const store = storage;
    const now = Date.now();
    await store.accounts.create("sender", new Uint8Array(32).fill(1), now);
    const recipient = await store.accounts.create("recipient", new Uint8Array(32).fill(2), now);
    if (recipient === undefined) throw new Error("micro: could not create the recipient");
    const account = recipient.account.id;
    let seq = 0;
    let clientId = 0;
    const bench = new Bench({ time: timeMs, warmupTime: 100, iterations: 16, warmupIterations: 4 });
    bench.addEventListener("cycle", (event) => onTask(event.task?.name ?? ""));
    const rowsPerOp = new Map<string, number>();
    for (const rows of sizes) {
      const insertName = `store commit ${rows} row${rows === 1 ? "" : "s"} (synchronous=${synchronous})`;
      rowsPerOp.set(insertName, rows);
      bench.add(insertName, async () => {
        await store.queues.commit(messagesBatch(account, 1, seq + 1, rows, clientId + 1));
        seq += rows;
        clientId += rows;
      });
      const deleteName = `store ack-delete ${rows} row${rows === 1 ? "" : "s"} (synchronous=${synchronous})`;
      rowsPerOp.set(deleteName, rows);
      bench.add(
        deleteName,
        async () => {
          await store.queues.commit({
            messages: [],
            receipts: [],
            acks: [{ account, device: 1, uptoSeq: seq }],
            sequences: [],
            clientIds: [],
          });
        },
        {
          beforeEach: async () => {
            await store.queues.commit(messagesBatch(account, 1, seq + 1, rows, clientId + 1));
            seq += rows;
            clientId += rows;
          },
        },
      );
    }
    await bench.run();
    return rowsOf(bench, rowsPerOp);
  } finally {
    await storage?.close();
    rmSync(directory, { recursive: true, force: true });
  }
}

/** 3.89 M, 490 k, 951: a rate in at most 7 characters. */
function compactRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)} M`;
  if (perSecond >= 1e4) return `${Math.round(perSecond / 1e3)} k`;
  return Math.round(perSecond).toLocaleString("en-US");
}

export async function runMicro(harness: ScenarioHarness): Promise<ScenarioResult> {
  const { options } = harness;
  // Progress on stderr, a line per task: a full micro run takes a minute and prints nothing else until the end.
  const total = codecMicroBenchTaskCount() + signatureTasks + storeTasks(batchSizes) + storeTasks(fullSyncSizes);
  const bar = new ProgressBar("micro", total, options.progress);
  let done = 0;
  const onTask = (name: string) => bar.update(++done, name, true);
  const codec = await runCodecMicroBench({ timeMs: options.microTimeMs, onTask });
  const signatures = await signatureBench(options.microTimeMs, onTask);
  const store = [
    ...(await storeBench(options.microTimeMs, "normal", batchSizes, onTask)),
    ...(await storeBench(options.microTimeMs, "full", fullSyncSizes, onTask)),
  ];
  bar.finish(done, "done");
  // Short cells, so that the table fits 100 columns: the ratio as the value, both rates in the unit.
  const figures: Figure[] = [
    ...codec.map((row) => ({
      name: `${row.case.replace(" body", "")}: ${row.subject} vs ${row.baseline}`,
      value: `${row.ratio.toFixed(2)}x`,
      unit: `${compactRate(row.subjectOpsPerSecond)} vs ${compactRate(row.baselineOpsPerSecond)} ops/s`,
    })),
    ...signatures.map((row) => ({
      name: row.task,
      value: Math.round(row.opsPerSecond),
      unit: `ops/s (${row.medianUs} µs)`,
    })),
    ...store.map((row) => ({
      name: row.task,
      value: row.rowsPerSecond ?? Math.round(row.opsPerSecond),
      unit: `rows/s, ${Math.round(row.medianUs).toLocaleString("en-US")} µs/commit`,
    })),
  ];
  const verifyRow = signatures[0];
  const verifyCeiling = verifyRow === undefined ? null : Math.round(verifyRow.opsPerSecond);
  return {
    scenario: "micro",
    title: `micro: tinybench, ${options.microTimeMs} ms per task (median sample; codec batches of 64 per sample)`,
    figures,
    raw: { codec, codecTable: formatCodecMicroBench(codec), signatures, store },
    server: null,
    notes: [
      `A login costs the server at least one verifyEd25519: its rate here (${verifyCeiling?.toLocaleString("en-US") ?? "n/a"}/s) is the ceiling of signed logins per second on one thread.`,
      "Store commits run on a temporary file with the server's pragmas (WAL); synchronous=full adds an fsync per commit.",
      "Micro-benchmarks run in the bench process itself, one task after another, on an otherwise idle host.",
    ],
    charts: [],
    sane: codec.length > 0 && signatures.length > 0 && store.length > 0,
  };
}
