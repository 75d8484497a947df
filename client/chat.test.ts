// The terminal chat, driven through scripted input lines against a real server: two people register, talk, see
// the marks of their messages, and come back with their key files.

import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testLimits } from "../protocol/index.ts";
import { loadConfig } from "../server/config.ts";
import { startServer } from "../server/server.ts";
import { type ChatIo, runChat } from "./chat.ts";

const waitTimeoutMs = 4000;

async function waitFor(predicate: () => boolean, timeoutMs = waitTimeoutMs, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** Input lines pushed by the test, output lines collected. */
class ScriptedIo implements ChatIo {
  readonly output: string[] = [];
  private readonly queued: string[] = [];
  private waiting: ((result: IteratorResult<string>) => void) | null = null;
  private ended = false;

  readonly lines: AsyncIterable<string> = {
    [Symbol.asyncIterator]: () => ({
      next: () => {
        const line = this.queued.shift();
        if (line !== undefined) return Promise.resolve({ value: line, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.waiting = resolve;
        });
      },
    }),
  };

  print(line: string): void {
    this.output.push(line);
  }

  type(line: string): void {
    const waiting = this.waiting;
    this.waiting = null;
    if (waiting !== null) waiting({ value: line, done: false });
    else this.queued.push(line);
  }

  end(): void {
    this.ended = true;
    this.waiting?.({ value: undefined, done: true });
    this.waiting = null;
  }

  has(fragment: string): boolean {
    return this.output.some((line) => line.includes(fragment));
  }

  async expectLine(fragment: string): Promise<void> {
    await waitFor(() => this.has(fragment), waitTimeoutMs, `output "${fragment}" (got:\n${this.output.join("\n")})`);
  }
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

test("two people chat: messages, marks, and a second run from the key file", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-chat-test-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig({
    base: { port: 0, dataDir, registration: "open", adminPort: 0, logLevel: "warn", limits: testLimits },
  });
  const server = await startServer(config);
  cleanups.push(() => server.stop({ timeoutMs: 1000 }));
  const port = String(server.port);
  const aliceKey = join(dataDir, "alice.json");
  const bobKey = join(dataDir, "bob.json");

  const alice = new ScriptedIo();
  const bob = new ScriptedIo();
  cleanups.push(() => alice.end());
  cleanups.push(() => bob.end());
  const aliceRun = runChat(["--port", port, "--key-file", aliceKey, "--register", "alice"], alice);
  const bobRun = runChat(["--port", port, "--key-file", bobKey, "--register", "bob"], bob);
  await alice.expectLine("connected as alice");
  await bob.expectLine("connected as bob");

  alice.type("hello bob"); // nobody chosen yet
  await alice.expectLine("choose someone first");
  alice.type("/to bob");
  await alice.expectLine("talking to bob");
  alice.type("hello bob");
  await bob.expectLine(": hello bob");
  await alice.expectLine("[1] ✓ sent");
  await alice.expectLine("[1] read"); // bob's chat displayed it and sent a read receipt
  // The SDK writes bob's ack before his read receipt, so the marks come in their natural order.
  const marks = alice.output.filter((line) => line.startsWith("  [1]")).map((line) => line.split(" ")[3]);
  expect(marks).toEqual(["you", "✓", "✓✓", "read"]);
  bob.type("/reply");
  bob.type("hi alice");
  await alice.expectLine("bob: hi alice");

  alice.type("/quit");
  bob.end();
  expect(await aliceRun).toBe(0);
  expect(await bobRun).toBe(0);
  const saved = JSON.parse(readFileSync(aliceKey, "utf8"));
  expect(saved).toMatchObject({ version: 1, handle: "alice", device: 1 });
  expect(saved.nextClientId).toBeGreaterThan(1);

  // Again, from the key file: log in, list devices, create a link code.
  const again = new ScriptedIo();
  const againRun = runChat(["--port", port, "--key-file", aliceKey], again);
  await again.expectLine("connected as alice");
  again.type("/devices");
  await again.expectLine("device 1 (this device)");
  again.type("/link");
  await again.expectLine("link code:");
  again.type("/quit");
  expect(await againRun).toBe(0);
});

test("a failed /to clears the peer: the next line goes to nobody, not to the previous peer", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-chat-test-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const config = loadConfig({
    base: { port: 0, dataDir, registration: "open", adminPort: 0, logLevel: "warn", limits: testLimits },
  });
  const server = await startServer(config);
  cleanups.push(() => server.stop({ timeoutMs: 1000 }));
  const port = String(server.port);

  const alice = new ScriptedIo();
  const bob = new ScriptedIo();
  cleanups.push(() => alice.end());
  cleanups.push(() => bob.end());
  const aliceRun = runChat(["--port", port, "--key-file", join(dataDir, "alice.json"), "--register", "alice"], alice);
  const bobRun = runChat(["--port", port, "--key-file", join(dataDir, "bob.json"), "--register", "bob"], bob);
  await alice.expectLine("connected as alice");
  await bob.expectLine("connected as bob");

  alice.type("/to bob");
  await alice.expectLine("talking to bob");
  alice.type("first for bob");
  await bob.expectLine(": first for bob");

  alice.type("/to dora");
  await alice.expectLine("nobody is called dora");
  alice.type("meant for dora");
  await waitFor(() => alice.has("meant for dora") || alice.has("not sent: choose"));
  // An empty /to is a failed /to as well.
  alice.type("/to bob");
  await alice.expectLine("talking to bob");
  alice.type("/to");
  await alice.expectLine("usage: /to <handle>; no peer now (was bob)");
  alice.type("also not for bob");
  await waitFor(() => alice.output.filter((line) => line.includes("not sent: choose")).length === 2);

  // Messages from one device to one recipient arrive in order: had either line gone to bob, it would come first.
  alice.type("/to bob");
  await waitFor(() => alice.output.filter((line) => line.includes("talking to bob")).length === 2);
  alice.type("second for bob");
  await bob.expectLine(": second for bob");
  // bob's chat names alice by her account number (#1): he never looked her up.
  expect(bob.output.filter((line) => /^#\d+: /.test(line)).map((line) => line.replace(/^#\d+: /, ""))).toEqual([
    "first for bob",
    "second for bob",
  ]);
  expect(alice.output.some((line) => line.includes("you → bob: meant for dora"))).toBe(false);
  expect(alice.has("nobody is called dora; no peer now (was bob)")).toBe(true);
  expect(alice.has("not sent: choose someone first")).toBe(true);

  alice.type("/quit");
  bob.end();
  expect(await aliceRun).toBe(0);
  expect(await bobRun).toBe(0);
});

test("usage errors exit with 2", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-chat-test-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const io = new ScriptedIo();
  expect(await runChat(["--key-file", join(dataDir, "none.json")], io)).toBe(2);
  expect(io.has("no key file")).toBe(true);
  expect(await runChat(["--bogus"], io)).toBe(2);
  expect(await runChat(["--help"], io)).toBe(0);
  expect(io.has("does NOT encrypt")).toBe(true);
  expect(existsSync(join(dataDir, "none.json"))).toBe(false);
});
