// One raw connection for attackers (flooders, slowloris): connect, preamble, optionally register a fresh account,
// then write whatever bytes the caller wants, as fast as the socket takes them. It reads and decodes everything the
// server sends, to learn the code that closed it. Every wait is bounded.

import type { Socket } from "bun";
import {
  defaultLimits,
  encodePreamble,
  errorCodeName,
  FrameCodec,
  FrameReader,
  registerMessage,
  type Stanza,
} from "../protocol/index.ts";
import { newDeviceKey, signWith } from "../server/test-kit.ts";
import { loopbackServerName } from "./raw-device.ts";

export class RawSession {
  readonly codec = new FrameCodec({ limits: defaultLimits });
  private readonly reader = new FrameReader(this.codec);
  private socket: Socket<undefined> | null = null;
  private drainWaiters: Array<() => void> = [];
  /** Stanzas received (bounded: the first few hundred, then only counted). */
  readonly received: Stanza[] = [];
  receivedCount = 0;
  rateLimited = 0;
  /** The first error (300+ range) or goaway code, by name. */
  closeCode: string | null = null;
  closed = false;
  /** True when close() ended it (not the server). */
  closedByUs = false;
  closedAtMs: number | null = null;
  /** How the socket ended: "end" (the server's FIN), "close", or "error: ..." (a reset). */
  closedHow = "";
  badFrames = 0;
  bytesWritten = 0;
  account = 0;

  static async connect(port: number): Promise<RawSession> {
    const session = new RawSession();
    session.socket = await Bun.connect<undefined>({
      hostname: "127.0.0.1",
      port,
      data: undefined,
      socket: {
        binaryType: "uint8array",
        data: (_socket, chunk) => session.data(chunk),
        drain: () => {
          const waiters = session.drainWaiters;
          session.drainWaiters = [];
          for (const waiter of waiters) waiter();
        },
        close: (_socket, error) => session.ended(error === undefined ? "close" : `close: ${error.message}`),
        end: () => session.ended("end"),
        error: (_socket, error) => session.ended(`error: ${error.message}`),
        connectError: () => {},
      },
    });
    return session;
  }

  /** Connects, sends the preamble, waits for the challenge and registers `handle` (open registration). */
  static async registered(port: number, handle: string, timeoutMs = 5000): Promise<RawSession> {
    const session = await RawSession.connect(port);
    session.write(encodePreamble());
    const challenge = await session.next("challenge", timeoutMs);
    if (challenge.kind !== "challenge") throw new Error("bug");
    const key = newDeviceKey();
    session.write(
      session.codec.encode({
        kind: "register",
        invite: null,
        handle,
        publicKey: key.publicKey,
        signature: signWith(key, registerMessage(challenge.nonce, loopbackServerName, handle)),
        serverName: loopbackServerName,
      }),
    );
    const welcome = await session.next("welcome", timeoutMs);
    if (welcome.kind !== "welcome") throw new Error("bug");
    session.account = welcome.account;
    return session;
  }

  private data(chunk: Uint8Array): void {
    this.reader.push(chunk);
    for (let frames = 0; frames < 100_000; frames++) {
      const result = this.reader.next();
      if (result.status === "more") return;
      if (result.status === "error") {
        this.badFrames++;
        return;
      }
      const stanza = result.stanza;
      this.receivedCount++;
      if (this.received.length < 200) this.received.push(stanza);
      if (stanza.kind === "error" && stanza.code === 200) this.rateLimited++;
      else if ((stanza.kind === "error" && stanza.code >= 300) || stanza.kind === "goaway") {
        this.closeCode ??= errorCodeName(stanza.code);
      }
    }
  }

  private ended(how: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closedHow = how;
    this.closedAtMs = performance.now();
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const waiter of waiters) waiter();
  }

  async next(kind: Stanza["kind"], timeoutMs: number): Promise<Stanza> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = this.received.find((stanza) => stanza.kind === kind);
      if (found !== undefined) return found;
      if (this.closed) throw new Error(`closed (${this.closeCode ?? "no code"}) while waiting for ${kind}`);
      if (performance.now() > deadline) throw new Error(`no ${kind} within ${timeoutMs} ms`);
      await Bun.sleep(2);
    }
  }

  /** Writes what the socket takes now; returns the bytes taken. */
  write(bytes: Uint8Array): number {
    if (this.closed || this.socket === null) return 0;
    const written = Math.max(0, this.socket.write(bytes));
    this.bytesWritten += written;
    return written;
  }

  /** Writes all of `bytes`, waiting for drain as needed, until `deadlineMs` (performance.now()) or a close. */
  async writeAll(bytes: Uint8Array, deadlineMs: number): Promise<boolean> {
    let rest = bytes;
    while (rest.length > 0) {
      if (this.closed || performance.now() > deadlineMs) return false;
      const written = this.write(rest);
      rest = rest.subarray(written);
      if (rest.length > 0) {
        await Promise.race([
          new Promise<void>((resolve) => this.drainWaiters.push(resolve)),
          Bun.sleep(Math.max(1, Math.min(100, deadlineMs - performance.now()))),
        ]);
      }
    }
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closedByUs = true;
    this.socket?.terminate();
  }
}
