// Codec micro-benchmark: what one frame costs the CPU, against plain MessagePack of the same data.
//
// Method. tinybench runs each task for `timeMs` after a short warm-up, in one process, one after the other. A task
// runs `batch` operations per sample so that the timer's resolution and call overhead stay small against the work;
// ops/s is batch / median sample time (the median, because a GC pause or a busy neighbour on a shared host skews the
// mean of a 400 ms run by far more than the differences measured here). Each FrameCodec case is measured beside two baselines in the same run:
//   - @msgpack/msgpack `encode()`/`decode()` of an object with named keys ({clientId, to, payload} ...), as an app
//     would write it without a schema (these calls build a fresh Encoder/Decoder each time);
//   - the same objects through one reused Encoder/Decoder (the fairer comparison: FrameCodec reuses its own).
// FrameCodec's numbers include everything a frame needs: length varint, header byte, positional fields, and on
// decode the structural pre-scan and the validation of every field. The baselines validate nothing.
// Compression compares the two Compressor implementations on a compressible control body (a 16-device list).
//
// Run: bun bench/micro-codec.ts            (prints the table)
//      runCodecMicroBench() from a bench CLI (returns the rows)

import { Decoder, Encoder, decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack";
import { Bench } from "tinybench";
import { type Compressor, defaultLimits, FrameCodec, fflateCompressor, type Stanza } from "../protocol/index.ts";
import { zlibCompressor } from "../server/compression-zlib.ts";

export interface CodecMicroBenchRow {
  /** What is measured, e.g. "send encode". */
  readonly case: string;
  readonly subject: string;
  readonly subjectOpsPerSecond: number;
  readonly baseline: string;
  readonly baselineOpsPerSecond: number;
  /** subject ops/s divided by baseline ops/s: above 1, the subject is faster. */
  readonly ratio: number;
  /** Bytes on the wire (encode/decode: the frame vs the MessagePack map; compression: the deflated body). */
  readonly subjectBytes: number;
  readonly baselineBytes: number;
}

export interface CodecMicroBenchOptions {
  /** Measuring time per task, in milliseconds. */
  readonly timeMs?: number;
  /** Operations per sample. */
  readonly batch?: number;
  /** Called as each task finishes (progress). */
  readonly onTask?: (name: string) => void;
}

const payload = new Uint8Array(20).map((_, index) => (index * 37 + 11) & 0xff);
const now = 1_763_800_000;

/** Each case as a stanza and as the named-key object an app would otherwise send. */
const cases: ReadonlyArray<{
  readonly name: string;
  readonly stanza: Stanza;
  readonly plain: Record<string, unknown>;
}> = [
  {
    name: "send",
    stanza: { kind: "send", clientId: 4_000_000_001, to: 3_000_000_002, payload },
    plain: { clientId: 4_000_000_001, to: 3_000_000_002, payload },
  },
  {
    name: "deliver",
    stanza: {
      kind: "deliver",
      seq: 2_000_000_003,
      from: 3_000_000_004,
      fromDevice: 2,
      clientId: 4_000_000_001,
      timeSeconds: now,
      payload,
    },
    plain: {
      seq: 2_000_000_003,
      from: 3_000_000_004,
      fromDevice: 2,
      clientId: 4_000_000_001,
      timeSeconds: now,
      payload,
    },
  },
  { name: "ack", stanza: { kind: "ack", seq: 2_000_000_003 }, plain: { seq: 2_000_000_003 } },
];

const deviceList: Stanza = {
  kind: "deviceList",
  clientId: 17,
  devices: Array.from({ length: 16 }, (_, index) => ({
    device: index + 1,
    createdAtSeconds: now - 86_400 * (16 - index),
    lastSeenAtSeconds: now - 60 * index,
  })),
};

/** Keeps results observable so the JIT cannot drop the work. */
let sink = 0;

function opsPerSecond(bench: Bench, name: string, batch: number): number {
  const result = bench.getTask(name)?.result;
  if (result === undefined || (result.state !== "completed" && result.state !== "aborted-with-statistics")) {
    throw new Error(`bench task ${name} did not complete: ${JSON.stringify(result)}`);
  }
  return (batch * 1000) / result.latency.p50;
}

/** Tasks runCodecMicroBench runs: six per case (encode and decode, each against two baselines), four compressions. */
export function codecMicroBenchTaskCount(): number {
  return cases.length * 6 + 4;
}

export async function runCodecMicroBench(options: CodecMicroBenchOptions = {}): Promise<CodecMicroBenchRow[]> {
  const timeMs = options.timeMs ?? 400;
  const batch = options.batch ?? 64;
  const bench = new Bench({ time: timeMs, warmupTime: 100, iterations: 16, warmupIterations: 8 });
  bench.addEventListener("cycle", (event) => options.onTask?.(event.task?.name ?? ""));
  const codec = new FrameCodec({ limits: defaultLimits });
  const encoder = new Encoder();
  const decoder = new Decoder();
  const repeat = (work: () => number) => () => {
    for (let index = 0; index < batch; index++) sink += work();
  };

  const sizes = new Map<string, readonly [number, number]>();
  for (const { name, stanza, plain } of cases) {
    const frame = codec.encode(stanza);
    const packed = msgpackEncode(plain).slice();
    sizes.set(name, [frame.length, packed.length]);
    bench
      .add(
        `${name} encode FrameCodec`,
        repeat(() => codec.encode(stanza).length),
      )
      .add(
        `${name} encode msgpack`,
        repeat(() => msgpackEncode(plain).length),
      )
      .add(
        `${name} encode msgpack reused`,
        repeat(() => encoder.encode(plain).length),
      )
      .add(
        `${name} decode FrameCodec`,
        repeat(() => {
          const result = codec.decode(frame);
          if (result.status !== "frame") throw new Error(`${name}: ${result.status}`);
          return result.consumed;
        }),
      )
      .add(
        `${name} decode msgpack`,
        repeat(() => (msgpackDecode(packed) as object) && packed.length),
      )
      .add(
        `${name} decode msgpack reused`,
        repeat(() => (decoder.decode(packed) as object) && packed.length),
      );
  }

  const body = codec.encode(deviceList).subarray(2);
  const compressors: readonly Compressor[] = [fflateCompressor, zlibCompressor];
  const deflated = new Map(compressors.map((compressor) => [compressor.name, compressor.deflate(body)] as const));
  for (const compressor of compressors) {
    const input = deflated.get(compressor.name)!;
    bench
      .add(
        `deviceList deflate ${compressor.name}`,
        repeat(() => compressor.deflate(body).length),
      )
      .add(
        `deviceList inflate ${compressor.name}`,
        repeat(() => {
          const result = compressor.inflate(input, defaultLimits.frameBytesMax);
          if (!(result instanceof Uint8Array)) throw result;
          return result.length;
        }),
      );
  }

  await bench.run();

  const rows: CodecMicroBenchRow[] = [];
  for (const { name } of cases) {
    const [frameBytes, packedBytes] = sizes.get(name)!;
    for (const operation of ["encode", "decode"] as const) {
      const subjectOpsPerSecond = opsPerSecond(bench, `${name} ${operation} FrameCodec`, batch);
      for (const [suffix, label] of [
        ["msgpack", `msgpack ${operation}()`],
        ["msgpack reused", `msgpack ${operation === "encode" ? "Encoder" : "Decoder"} reused`],
      ] as const) {
        const baselineOpsPerSecond = opsPerSecond(bench, `${name} ${operation} ${suffix}`, batch);
        rows.push({
          case: `${name} ${operation}`,
          subject: "FrameCodec",
          subjectOpsPerSecond,
          baseline: label,
          baselineOpsPerSecond,
          ratio: subjectOpsPerSecond / baselineOpsPerSecond,
          subjectBytes: frameBytes,
          baselineBytes: packedBytes,
        });
      }
    }
  }
  for (const operation of ["deflate", "inflate"] as const) {
    const subjectOpsPerSecond = opsPerSecond(bench, `deviceList ${operation} fflate`, batch);
    const baselineOpsPerSecond = opsPerSecond(bench, `deviceList ${operation} node:zlib`, batch);
    rows.push({
      case: `deviceList(16) ${operation}, ${body.length} B body`,
      subject: "fflate",
      subjectOpsPerSecond,
      baseline: "node:zlib",
      baselineOpsPerSecond,
      ratio: subjectOpsPerSecond / baselineOpsPerSecond,
      subjectBytes: deflated.get("fflate")!.length,
      baselineBytes: deflated.get("node:zlib")!.length,
    });
  }
  if (sink === -1) console.log(sink);
  return rows;
}

function formatOps(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

/** The rows as a Markdown table. */
export function formatCodecMicroBench(rows: readonly CodecMicroBenchRow[]): string {
  const header = ["case", "subject", "ops/s", "baseline", "ops/s", "ratio", "bytes", "baseline bytes"];
  const lines = rows.map((row) => [
    row.case,
    row.subject,
    formatOps(row.subjectOpsPerSecond),
    row.baseline,
    formatOps(row.baselineOpsPerSecond),
    row.ratio.toFixed(2),
    String(row.subjectBytes),
    String(row.baselineBytes),
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column]!.length)));
  const format = (cells: readonly string[]) =>
    `| ${cells.map((cell, column) => (column === 0 || column === 1 || column === 3 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join(" | ")} |`;
  return [format(header), `|${widths.map((width) => "-".repeat(width + 2)).join("|")}|`, ...lines.map(format)].join(
    "\n",
  );
}

if (import.meta.main) {
  const started = performance.now();
  const rows = await runCodecMicroBench();
  console.log(
    `Codec micro-benchmark (Bun ${Bun.version}, ${process.platform}/${process.arch}; ratio = subject / baseline)`,
  );
  console.log(formatCodecMicroBench(rows));
  console.log(`(${((performance.now() - started) / 1000).toFixed(1)} s)`);
}
