import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "bun";
import type { MeshHandlers, MeshMessage } from "./mesh.ts";
import { MeshEncoder, MeshFrameError, MeshFrameReader, meshHello } from "./mesh-codec.ts";
import { MeshFaultError, meshSocketPath, startUnixMesh, type UnixMesh } from "./mesh-unix.ts";

const fixture = join(import.meta.dir, "fixtures", "mesh-peer.ts");
const waitMs = 5000;

/** What one mesh's handlers saw. */
class Recorder implements MeshHandlers {
  readonly ups: number[] = [];
  readonly downs: number[] = [];
  readonly received: { from: number; message: MeshMessage }[] = [];
  readonly faults: string[] = [];
  onMessage: ((from: number, message: MeshMessage) => void) | undefined;

  message(from: number, message: MeshMessage): void {
    this.received.push({ from, message });
    this.onMessage?.(from, message);
  }
  peerUp(peer: number): void {
    this.ups.push(peer);
  }
  peerDown(peer: number): void {
    this.downs.push(peer);
  }
  fatal = (reason: string): void => {
    this.faults.push(reason);
  };
  count(list: number[], peer: number): number {
    return list.filter((entry) => entry === peer).length;
  }
}

async function until(condition: () => boolean, what: string, timeoutMs = waitMs): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(2);
  }
}

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Lets the microtask flush run and the event loop read the sockets once. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

let dir: string;
const cleanups: (() => void)[] = [];

beforeEach(() => {
  // Short: a Unix socket path has at most 107 bytes.
  dir = mkdtempSync(join(tmpdir(), "mesh-"));
});

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
  rmSync(dir, { recursive: true, force: true });
});

async function startMesh(self: number, size: number, recorder = new Recorder(), queueBytesMax?: number) {
  const mesh = await startUnixMesh({ dir, self, size, handlers: recorder, fatal: recorder.fatal, queueBytesMax });
  cleanups.push(() => mesh.close());
  return { mesh, recorder };
}

async function startAll(size: number) {
  const nodes: { mesh: UnixMesh; recorder: Recorder }[] = [];
  for (let index = 0; index < size; index++) nodes.push(await startMesh(index, size));
  await until(() => nodes.every(({ recorder }) => recorder.ups.length === size - 1), "every pair up");
  return nodes;
}

function spawnPeer(mode: "echo" | "garbage", index = 1, size = 2) {
  const child = Bun.spawn([process.execPath, fixture, dir, String(index), String(size), mode], {
    stdout: "pipe",
    stderr: "inherit",
  });
  cleanups.push(() => child.kill(9));
  return child;
}

describe("unix mesh, in one process", () => {
  test("the socket is private and the path helper names it", async () => {
    await startMesh(0, 2);
    expect(meshSocketPath(dir, 0)).toBe(join(dir, "mesh-0.sock"));
    expect(statSync(meshSocketPath(dir, 0)).mode & 0o777).toBe(0o600);
  });

  test("three workers: every pair up, 10,000 messages each way in order and intact", async () => {
    const nodes = await startAll(3);
    const count = 10_000;
    const payload = (from: number, to: number, seq: number) =>
      new Uint8Array(seq % 50).fill((from * 7 + to + seq) & 255);
    for (let seq = 0; seq < count; seq++) {
      for (const { mesh } of nodes) {
        for (let to = 0; to < 3; to++) {
          if (to === mesh.self) continue;
          expect(mesh.send(to, { t: "m", seq, payload: payload(mesh.self, to, seq), text: `${mesh.self}>${to}` })).toBe(
            true,
          );
        }
      }
      if (seq % 1000 === 999) await nextTurn();
    }
    await until(() => nodes.every(({ recorder }) => recorder.received.length === 2 * count), "all messages");
    for (const { mesh, recorder } of nodes) {
      const next = [0, 0, 0];
      for (const { from, message } of recorder.received) {
        expect(message.seq).toBe(next[from]!);
        expect(message.text).toBe(`${from}>${mesh.self}`);
        expect(message.payload).toEqual(payload(from, mesh.self, next[from]!));
        next[from]!++;
      }
      expect(recorder.downs).toEqual([]);
    }
  });

  test("one turn's messages to one peer take one socket write", async () => {
    const nodes = await startAll(3);
    const [first] = nodes;
    const before = first!.mesh.writes;
    for (let seq = 0; seq < 100; seq++) {
      first!.mesh.send(1, { t: "m", seq });
      first!.mesh.send(2, { t: "m", seq });
    }
    await nextTurn();
    expect(first!.mesh.writes - before).toBe(2);
    await until(
      () => nodes[1]!.recorder.received.length === 100 && nodes[2]!.recorder.received.length === 100,
      "batch",
    );
  });

  test("send refuses a peer that is not up, a bad peer index, and an oversize message", async () => {
    const { mesh } = await startMesh(0, 2);
    expect(mesh.isUp(1)).toBe(false);
    expect(mesh.send(1, { t: "m" })).toBe(false);
    expect(() => mesh.send(0, { t: "m" })).toThrow(RangeError);
    expect(() => mesh.send(2, { t: "m" })).toThrow(RangeError);
    await startMesh(1, 2);
    await until(() => mesh.isUp(1), "up");
    expect(() => mesh.send(1, { t: "big", payload: new Uint8Array(5 * 1024 * 1024) })).toThrow(MeshFrameError);
  });

  test("restart: a closed worker goes down, its successor comes up, messages flow", async () => {
    const nodes = await startAll(3);
    nodes[2]!.mesh.close();
    await until(() => nodes[0]!.recorder.downs.includes(2) && nodes[1]!.recorder.downs.includes(2), "peerDown(2)");
    expect(nodes[0]!.mesh.send(2, { t: "lost" })).toBe(false);
    const successor = await startMesh(2, 3);
    await until(
      () =>
        nodes[0]!.recorder.count(nodes[0]!.recorder.ups, 2) === 2 &&
        nodes[1]!.recorder.count(nodes[1]!.recorder.ups, 2) === 2 &&
        successor.recorder.ups.length === 2,
      "peerUp(2) again",
    );
    expect(nodes[0]!.mesh.send(2, { t: "hello again" })).toBe(true);
    expect(successor.mesh.send(1, { t: "back" })).toBe(true);
    await until(() => successor.recorder.received.length === 1 && nodes[1]!.recorder.received.length === 1, "flow");
    expect(successor.recorder.received[0]).toEqual({ from: 0, message: { t: "hello again" } });
    expect(nodes[1]!.recorder.received[0]).toEqual({ from: 2, message: { t: "back" } });
    // Each saw exactly one down and no other trouble.
    expect(nodes[0]!.recorder.downs).toEqual([2]);
    expect(nodes[0]!.recorder.faults).toEqual([]);
  });

  test("a stuck peer (never reads) is taken down past queueBytesMax", async () => {
    const queueBytesMax = 1024 * 1024;
    const { mesh, recorder } = await startMesh(0, 2, new Recorder(), queueBytesMax);
    // Worker 1 impersonated: it accepts worker 0's link and never reads it, and says hello on its own link.
    const stuck = Bun.listen({
      unix: meshSocketPath(dir, 1),
      socket: {
        open(socket) {
          // pause() exists at runtime but is missing from bun-types.
          (socket as unknown as { pause(): void }).pause();
        },
        data() {},
      },
    });
    cleanups.push(() => stuck.stop(true));
    const hello: Socket<undefined> = await Bun.connect({ unix: meshSocketPath(dir, 0), socket: { data() {} } });
    cleanups.push(() => hello.end());
    hello.write(new MeshEncoder().encode(meshHello(1, 2)));
    await until(() => mesh.isUp(1), "the impersonator up");

    const payload = new Uint8Array(64 * 1024);
    let sent = 0;
    await until(() => {
      // 8 messages a turn, so the kernel buffer fills and the rest waits in the mesh's queue.
      for (let index = 0; index < 8 && mesh.isUp(1); index++) if (mesh.send(1, { t: "m", payload })) sent++;
      return recorder.downs.length > 0;
    }, "peerDown of the stuck peer");
    expect(recorder.downs).toEqual([1]);
    expect(mesh.isUp(1)).toBe(false);
    // It took more than the queue bound to get there, and not unboundedly more (kernel buffers hold the rest).
    expect(sent * payload.length).toBeGreaterThan(queueBytesMax);
    expect(sent * payload.length).toBeLessThan(queueBytesMax + 16 * 1024 * 1024);
  });

  test("a slow reader: what the socket does not take is written on drain, in order, nothing lost", async () => {
    const { mesh, recorder } = await startMesh(0, 2, new Recorder(), 16 * 1024 * 1024);
    const reader = new MeshFrameReader();
    const seen: number[] = [];
    let paused: { pause(): void; resume(): void } | undefined;
    const slow = Bun.listen({
      unix: meshSocketPath(dir, 1),
      socket: {
        open(socket) {
          paused = socket as unknown as { pause(): void; resume(): void };
          paused.pause();
        },
        data(_socket, chunk) {
          const fault = reader.read(chunk, (message) => {
            if (message.t === "m") seen.push(message.seq as number);
          });
          if (fault !== undefined) throw new Error(fault);
        },
      },
    });
    cleanups.push(() => slow.stop(true));
    const hello: Socket<undefined> = await Bun.connect({ unix: meshSocketPath(dir, 0), socket: { data() {} } });
    cleanups.push(() => hello.end());
    hello.write(new MeshEncoder().encode(meshHello(1, 2)));
    await until(() => mesh.isUp(1), "up");
    const count = 400;
    const payload = new Uint8Array(16 * 1024);
    for (let seq = 0; seq < count; seq++) {
      expect(mesh.send(1, { t: "m", seq, payload })).toBe(true);
      if (seq % 50 === 49) await nextTurn();
    }
    await nextTurn();
    paused!.resume();
    await until(() => seen.length === count, "every message through the drains");
    expect(seen).toEqual(Array.from({ length: count }, (_, seq) => seq));
    expect(recorder.downs).toEqual([]);
  });

  test("a second hello from a peer (it restarted before its old link closed) replaces the old link", async () => {
    const { mesh, recorder } = await startMesh(0, 2);
    const impersonator = Bun.listen({ unix: meshSocketPath(dir, 1), socket: { data() {} } });
    cleanups.push(() => impersonator.stop(true));
    const encoder = new MeshEncoder();
    const dial = async () => {
      const socket: Socket<undefined> = await Bun.connect({ unix: meshSocketPath(dir, 0), socket: { data() {} } });
      cleanups.push(() => socket.end());
      socket.write(encoder.encode(meshHello(1, 2)));
      return socket;
    };
    const old = await dial();
    await until(() => recorder.ups.length === 1, "up");
    await dial();
    await until(() => recorder.downs.length === 1 && recorder.ups.length === 2, "down, then up on the new link");
    // The old link was closed by worker 0; what it would still carry is not delivered.
    old.write(encoder.encode({ t: "stale" }));
    await Bun.sleep(20);
    expect(recorder.received).toEqual([]);
    expect(recorder.faults).toEqual([]);
    expect(mesh.isUp(1)).toBe(true);
  });

  test("the default fatal handler throws", async () => {
    const recorder = new Recorder();
    const mesh = await startUnixMesh({ dir, self: 0, size: 2, handlers: recorder });
    cleanups.push(() => mesh.close());
    // Reached through a private path on purpose: from a socket callback it would be an uncaught exception.
    const fatal = (mesh as unknown as { fatal: (reason: string) => void }).fatal;
    expect(() => fatal("mesh: test")).toThrow(MeshFaultError);
  });
});

describe("unix mesh, between processes", () => {
  test("a child worker: round trips, throughput, kill -9, restart", async () => {
    const { mesh, recorder } = await startMesh(0, 2);
    const child = spawnPeer("echo");
    await until(() => mesh.isUp(1), "the child up", 10_000);

    let pongs = 0;
    let flooded = -1;
    let onPong: (() => void) | undefined;
    recorder.onMessage = (_from, message) => {
      if (message.t === "pong") {
        pongs++;
        onPong?.();
      } else if (message.t === "flooded") flooded = message.count as number;
    };

    // Round trip time: one ping in flight at a time, woken by the pong itself (polling would hide the time).
    const roundTrips = 2000;
    let start = performance.now();
    for (let index = 0; index < roundTrips; index++) {
      const pong = new Promise<void>((resolve) => {
        onPong = resolve;
      });
      mesh.send(1, { t: "ping", index });
      await withTimeout(pong, waitMs, "pong");
    }
    onPong = undefined;
    const roundTripUs = ((performance.now() - start) * 1000) / roundTrips;

    // Throughput one way: 1,000 messages a turn; the child counts them and answers the last one.
    const floods = 200_000;
    const payload = new Uint8Array(100).fill(1);
    start = performance.now();
    for (let index = 0; index < floods; index++) {
      mesh.send(1, { t: "flood", index, payload, last: index === floods - 1 });
      if (index % 1000 === 999) await nextTurn();
    }
    await until(() => flooded >= 0, "the flood's answer", 30_000);
    const floodSeconds = (performance.now() - start) / 1000;
    expect(flooded).toBe(floods);
    console.log(
      `mesh between two processes: round trip ${roundTripUs.toFixed(1)} us (mean of ${roundTrips}); ` +
        `${Math.round(floods / floodSeconds)} messages/s one way (${floods} messages of ~130 bytes, 1,000 a turn)`,
    );

    // kill -9: the parent sees the peer down within a bounded time.
    const killedAt = performance.now();
    child.kill(9);
    await until(() => recorder.downs.length === 1, "peerDown after kill -9", 2000);
    console.log(`mesh: peerDown ${(performance.now() - killedAt).toFixed(1)} ms after kill -9`);
    expect(mesh.send(1, { t: "ping" })).toBe(false);

    // Restart: up again, and messages flow.
    const restartedAt = performance.now();
    spawnPeer("echo");
    await until(() => recorder.count(recorder.ups, 1) === 2, "peerUp after the restart", 10_000);
    console.log(`mesh: peerUp ${(performance.now() - restartedAt).toFixed(1)} ms after spawning the successor`);
    const before = pongs;
    expect(mesh.send(1, { t: "ping" })).toBe(true);
    await until(() => pongs === before + 1, "pong after the restart");
    expect(recorder.downs).toEqual([1]);
    expect(recorder.faults).toEqual([]);
  }, 60_000);

  test("a child that sends garbage makes the parent's fatal handler fire", async () => {
    const { recorder } = await startMesh(0, 2);
    spawnPeer("garbage");
    await until(() => recorder.faults.length > 0, "fatal", 10_000);
    expect(recorder.faults[0]).toMatch(/not a map with a string `t`/);
  }, 20_000);
});
