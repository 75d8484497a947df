// The flooders of one kind, in a process of their own so that their writing does not slow the probe pair's event
// loop (the pair would otherwise measure the runner as much as the server). Run by floods.ts as
//   bun reliability/flood-worker.ts '{"port":..,"kind":"ping","flooders":4,"floodMs":3000,"victim":..,"seed":1,"prefix":"f1"}'
// it registers its flooders, prints {"ready":true}, waits for a line on stdin, floods until every flooder is closed
// or floodMs ran out, and prints {"durationMs":..,"flooders":[...]} (times relative to the "go" line).

import { Random } from "../protocol/fuzz.ts";
import { defaultLimits, FrameCodec, type Stanza } from "../protocol/index.ts";
import { RawSession } from "./raw-session.ts";

export interface FlooderResult {
  /** ms from the start of the flood to the close; null when still open at the end of the flood. */
  readonly closedAfterMs: number | null;
  readonly code: string | null;
  readonly bytesWritten: number;
  readonly rateLimitedErrors: number;
  /** Stanzas received, and frames from the server that did not decode (must be 0). */
  readonly received: number;
  readonly badServerFrames: number;
  /** The connection ended with a reset (ECONNRESET): what the server sent last may have been lost with it. */
  readonly reset: boolean;
}

export interface FloodWorkerArguments {
  readonly port: number;
  readonly kind: string;
  readonly flooders: number;
  readonly floodMs: number;
  readonly victim: number;
  readonly seed: number;
  /** Handles of the flooders' accounts start with it (unique per run of the worker). */
  readonly prefix: string;
}

const codec = new FrameCodec({ limits: defaultLimits });

function repeated(frame: Uint8Array, bytes: number): Uint8Array {
  const count = Math.max(1, Math.floor(bytes / frame.length));
  const buffer = new Uint8Array(count * frame.length);
  for (let index = 0; index < count; index++) buffer.set(frame, index * frame.length);
  return buffer;
}

/** A 64 KiB block of `kind` frames (or random bytes), for flooding. */
function floodBlock(kind: string, random: Random, victim: number): Uint8Array {
  const stanzaOf = (index: number): Stanza => {
    switch (kind) {
      case "ping":
        return { kind: "ping" };
      case "pong":
        return { kind: "pong" };
      case "ack":
        return { kind: "ack", seq: index + 1 };
      case "send":
        return { kind: "send", clientId: index + 1, to: victim, payload: random.bytes(20) };
      case "receipt":
        return { kind: "receipt", type: 2, to: victim, toDevice: 1, clientIds: [index + 1] };
      case "lookup":
        return { kind: "lookup", clientId: index + 1, handle: "nobody-here" };
      default:
        throw new Error(`unknown flood kind ${kind}`);
    }
  };
  if (kind === "garbage") return random.bytes(64 * 1024);
  if (kind === "ping" || kind === "pong") return repeated(codec.encode(stanzaOf(0)), 64 * 1024);
  const parts: Uint8Array[] = [];
  let total = 0;
  for (let index = 0; total < 64 * 1024; index++) {
    const frame = codec.encode(stanzaOf(index));
    parts.push(frame);
    total += frame.length;
  }
  const block = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    block.set(part, offset);
    offset += part.length;
  }
  return block;
}

/** Registers the flooders; `flood()` then runs them and returns their results. */
export async function prepareFlooders(
  args: FloodWorkerArguments,
): Promise<{ flood: () => Promise<{ durationMs: number; flooders: FlooderResult[] }> }> {
  const random = new Random(args.seed);
  const sessions: RawSession[] = [];
  for (let index = 0; index < args.flooders; index++) {
    sessions.push(await RawSession.registered(args.port, `${args.prefix}-${index}`));
  }
  const block = floodBlock(args.kind, random, args.victim);
  return {
    async flood() {
      const started = performance.now();
      const deadline = started + args.floodMs;
      await Promise.all(
        sessions.map(async (session) => {
          while (!session.closed && performance.now() < deadline) {
            if (!(await session.writeAll(block, deadline))) break;
          }
        }),
      );
      const ended = performance.now();
      await Bun.sleep(50); // closes under way
      const flooders = sessions.map((session) => ({
        closedAfterMs:
          session.closedAtMs === null || session.closedAtMs > ended ? null : Math.round(session.closedAtMs - started),
        code: session.closeCode,
        bytesWritten: session.bytesWritten,
        rateLimitedErrors: session.rateLimited,
        received: session.receivedCount,
        badServerFrames: session.badFrames,
        reset: session.closedHow.includes("ECONNRESET"),
      }));
      for (const session of sessions) session.close();
      return { durationMs: Math.round(ended - started), flooders };
    },
  };
}

if (import.meta.main) {
  const args = JSON.parse(process.argv[2] ?? "{}") as FloodWorkerArguments;
  const prepared = await prepareFlooders(args);
  console.log(JSON.stringify({ ready: true }));
  // Wait for "go" (bounded: the parent kills this process if it goes away).
  const reader = Bun.stdin.stream().getReader();
  await Promise.race([reader.read(), Bun.sleep(60_000)]);
  const result = await prepared.flood();
  console.log(JSON.stringify(result));
  process.exit(0);
}
