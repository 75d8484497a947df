// The terminal chat, driven through scripted input lines against a real server: two people register, talk, see
// the marks of their messages, and come back with their key files.

import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMediaServer } from "../server/media-test-kit.ts";
import { startServer } from "../server/server.ts";
import { testConfig } from "../server/test-kit.ts";
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

function temporaryDir(): string {
  const dataDir = mkdtempSync(join(tmpdir(), "switchboard-chat-test-"));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  return dataDir;
}

async function openServer(registration: "open" | "invite") {
  const dataDir = temporaryDir();
  const config = testConfig({ dataDir, registration });
  const server = await startServer(config);
  cleanups.push(() => server.stop({ timeoutMs: 1000 }));
  return { server, dataDir, port: String(server.port) };
}

/** alice and bob register (key files alice.json and bob.json in dataDir) and are connected. */
async function registerPair(port: string, dataDir: string, alice: ScriptedIo = new ScriptedIo()) {
  const bob = new ScriptedIo();
  cleanups.push(() => alice.end());
  cleanups.push(() => bob.end());
  const aliceRun = runChat(
    ["--prekeys", "4", "--port", port, "--key-file", join(dataDir, "alice.json"), "--register", "alice"],
    alice,
  );
  const bobRun = runChat(
    ["--prekeys", "4", "--port", port, "--key-file", join(dataDir, "bob.json"), "--register", "bob"],
    bob,
  );
  await alice.expectLine("as alice (account");
  await bob.expectLine("as bob (account");
  // Each has published its Signal keys: a message to it can start a session.
  await alice.expectLine("end-to-end keys published");
  await bob.expectLine("end-to-end keys published");
  return { alice, bob, aliceRun, bobRun };
}

test("two people chat: messages, marks, and a second run from the key file", async () => {
  const { dataDir, port } = await openServer("open");
  const aliceKey = join(dataDir, "alice.json");
  const { alice, bob, aliceRun, bobRun } = await registerPair(port, dataDir);

  alice.type("hello bob"); // nobody chosen yet
  await alice.expectLine("choose someone first");
  alice.type("/to bob");
  await alice.expectLine("talking to bob");
  alice.type("hello bob");
  await bob.expectLine(": hello bob");
  await alice.expectLine("[1] ✓ sent");
  await alice.expectLine("[1] read"); // bob's chat displayed it and sent a read receipt
  // The SDK writes bob's ack before his read receipt, so the marks come in their natural order.
  // Without a terminal to rewrite lines in, each mark is one short line after the message's own line.
  expect(alice.output.filter((line) => line.includes("[1] you → bob: hello bob"))).toHaveLength(1);
  const marks = alice.output.filter((line) => line.startsWith("  [1]")).map((line) => line.split(" ")[3]);
  expect(marks).toEqual(["✓", "✓✓", "read"]);
  // Every message line carries its time; the connection messages name the server.
  expect(bob.output.find((line) => line.endsWith(": hello bob"))).toMatch(/^\d\d:\d\d alice: hello bob$/);
  expect(alice.has(`* connecting to 127.0.0.1:${port} to register alice...`)).toBe(true);
  expect(alice.has(`* connected to 127.0.0.1:${port} as alice (account`)).toBe(true);
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
  const againRun = runChat(["--prekeys", "4", "--port", port, "--key-file", aliceKey], again);
  await again.expectLine("as alice (account");
  again.type("/devices");
  await again.expectLine("device 1 (this device)");
  again.type("/link");
  await again.expectLine("link code:");
  again.type("/quit");
  expect(await againRun).toBe(0);
});

test("the chat encrypts: the server's files never hold the text, and both sides show the same safety number", async () => {
  const { dataDir, port } = await openServer("open");
  const { alice, bob, aliceRun, bobRun } = await registerPair(port, dataDir);
  alice.type("/to bob");
  await alice.expectLine("talking to bob");
  alice.type("/safety");
  await alice.expectLine("no session with bob yet");
  alice.type("meet me at the old mill at noon");
  await bob.expectLine("alice: meet me at the old mill at noon");
  bob.type("/reply");
  await bob.expectLine("talking to alice");
  alice.type("/safety");
  bob.type("/safety");
  // Signal's fingerprint is 5200 rounds of SHA-512 for each side: about a second each on a loaded machine.
  await waitFor(
    () => alice.has("safety number with bob:") && bob.has("safety number with alice:"),
    15_000,
    "safety numbers",
  );
  const number = (io: ScriptedIo) => io.output.find((line) => line.includes("safety number with"))!.split(": ")[1];
  expect(number(alice)).toMatch(/^(\d{5} ){11}\d{5}$/);
  expect(number(alice)).toBe(number(bob));
  // The server's data directory (minus the chat's own key files, which the test keeps there too).
  const serverFiles = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory()
        ? serverFiles(join(dir, entry.name))
        : /^(alice|bob)\./.test(entry.name)
          ? []
          : [join(dir, entry.name)],
    );
  const holding = serverFiles(dataDir).filter((path) => readFileSync(path).includes(Buffer.from("old mill")));
  expect(holding).toEqual([]);
  alice.type("/quit");
  bob.type("/quit");
  expect(await aliceRun).toBe(0);
  expect(await bobRun).toBe(0);
}, 30_000);

test("/send-file: the file is encrypted, uploaded, announced in a message, and saved by the peer's chat", async () => {
  const server = await startMediaServer();
  cleanups.push(() => server.stop());
  const dataDir = temporaryDir();
  const port = String(server.port);
  const alice = new ScriptedIo();
  const bob = new ScriptedIo();
  cleanups.push(() => alice.end());
  cleanups.push(() => bob.end());
  const downloads = join(dataDir, "bob-files");
  void runChat(
    ["--prekeys", "4", "--port", port, "--key-file", join(dataDir, "alice.json"), "--register", "alice"],
    alice,
  );
  void runChat(
    [
      "--prekeys",
      "4",
      "--port",
      port,
      "--key-file",
      join(dataDir, "bob.json"),
      "--register",
      "bob",
      "--download-dir",
      downloads,
    ],
    bob,
  );
  await alice.expectLine("as alice (account");
  await bob.expectLine("as bob (account");
  // The file's reference (its hash and key) travels in an end-to-end-encrypted message: both publish keys first.
  await alice.expectLine("end-to-end keys published");
  await bob.expectLine("end-to-end keys published");
  const photo = join(dataDir, "holiday photo.jpg");
  const bytes = crypto.getRandomValues(new Uint8Array(60_000));
  writeFileSync(photo, bytes);
  alice.type("/to bob");
  await alice.expectLine("talking to bob");
  alice.type(`/send-file ${photo}`);
  await alice.expectLine("uploading holiday photo.jpg (60000 bytes)");
  await bob.expectLine("alice: sent a file: holiday photo.jpg (60000 bytes)");
  await bob.expectLine(`* saved holiday photo.jpg to ${join(downloads, "holiday photo.jpg")}`);
  expect(new Uint8Array(readFileSync(join(downloads, "holiday photo.jpg")))).toEqual(bytes);
  // A second file of the same name is saved beside the first, not over it.
  alice.type(`/send-file ${photo}`);
  await bob.expectLine(`* saved holiday photo.jpg to ${join(downloads, "holiday photo (1).jpg")}`);
  alice.type("/send-file /no/such/file");
  await alice.expectLine("* no file /no/such/file");
});

test("a failed /to clears the peer: the next line goes to nobody, not to the previous peer", async () => {
  const { dataDir, port } = await openServer("open");
  const { alice, bob, aliceRun, bobRun } = await registerPair(port, dataDir);

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
  // bob never looked alice up: his chat names her by the server's reverse lookup (she wrote to him).
  expect(bob.output.filter((line) => / alice: /.test(line)).map((line) => line.replace(/^.* alice: /, ""))).toEqual([
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
  const dataDir = temporaryDir();
  const io = new ScriptedIo();
  expect(await runChat(["--key-file", join(dataDir, "none.json")], io)).toBe(2);
  expect(io.has("no key file")).toBe(true);
  expect(await runChat(["--bogus"], io)).toBe(2);
  expect(io.has("Unknown option '--bogus'")).toBe(true);
  expect(await runChat(["stray"], io)).toBe(2);
  expect(await runChat(["--register"], io)).toBe(2); // a value is missing
  expect(await runChat(["--invite", "x", "--key-file", join(dataDir, "none.json")], io)).toBe(2);
  expect(io.has("--invite goes with --register")).toBe(true);
  expect(await runChat(["--port", "70000"], io)).toBe(2);
  expect(await runChat(["-h"], io)).toBe(0);
  expect(await runChat(["--help"], io)).toBe(0);
  expect(io.has("end-to-end encrypted with the Signal protocol")).toBe(true);
  expect(await runChat(["--prekeys", "101"], io)).toBe(2);
  expect(existsSync(join(dataDir, "none.json"))).toBe(false);
});

/** A terminal that rewrites lines in place: what the user ends up seeing, one entry per line. */
class RewritingIo extends ScriptedIo {
  printRewritable(line: string): (line: string) => boolean {
    this.print(line);
    const index = this.output.length - 1;
    return (next) => {
      this.output[index] = next;
      return true;
    };
  }
}

test("names after logging in again, one line per sent message with its marks in place", async () => {
  const { dataDir, port } = await openServer("open");
  const aliceKey = join(dataDir, "alice.json");
  const bobKey = join(dataDir, "bob.json");
  const { alice, bob, aliceRun, bobRun } = await registerPair(port, dataDir, new RewritingIo());
  bob.type("/to alice");
  await bob.expectLine("talking to alice");
  bob.type("first");
  await alice.expectLine("bob: first");
  alice.type("/reply");
  await alice.expectLine("talking to bob");
  alice.type("hello bob");
  await bob.expectLine("alice: hello bob");
  // One line for the message: its marks are added to it as they come.
  await alice.expectLine("you → bob: hello bob  ✓✓ read");
  expect(alice.output.filter((line) => line.includes("hello bob"))).toHaveLength(1);
  expect(alice.output.some((line) => line.startsWith("  [1]"))).toBe(false);
  alice.type("/quit");
  bob.type("/quit");
  expect(await aliceRun).toBe(0);
  expect(await bobRun).toBe(0);

  // Both come back from their key files: no /to, and each still sees the other's name, not #account.
  const alice2 = new ScriptedIo();
  const bob2 = new ScriptedIo();
  cleanups.push(() => alice2.end());
  cleanups.push(() => bob2.end());
  const alice2Run = runChat(["--prekeys", "4", "--port", port, "--key-file", aliceKey], alice2);
  const bob2Run = runChat(["--prekeys", "4", "--port", port, "--key-file", bobKey], bob2);
  await alice2.expectLine("as alice (account");
  await bob2.expectLine("as bob (account");
  bob2.type("/to alice");
  await bob2.expectLine("talking to alice");
  bob2.type("back again");
  await alice2.expectLine(" bob: back again");
  alice2.type("/reply");
  await alice2.expectLine("* talking to bob");
  alice2.type("welcome back");
  await bob2.expectLine(" alice: welcome back");
  expect([...alice2.output, ...bob2.output].some((line) => /#\d+/.test(line))).toBe(false);
  alice2.type("/quit");
  bob2.type("/quit");
  expect(await alice2Run).toBe(0);
  expect(await bob2Run).toBe(0);
});

test("registration refusals in words: a server that needs an invite, an unknown code, a taken handle", async () => {
  const { server, dataDir, port } = await openServer("invite");
  const noInvite = new ScriptedIo();
  cleanups.push(() => noInvite.end());
  expect(
    await runChat(
      ["--prekeys", "4", "--port", port, "--key-file", join(dataDir, "a.json"), "--register", "carol"],
      noInvite,
    ),
  ).toBe(1);
  expect(
    noInvite.has(
      `* stopped: 127.0.0.1:${port} needs an invite to register: ask its operator for a code (--invite CODE)`,
    ),
  ).toBe(true);
  expect(noInvite.output.some((line) => line.includes("inviteInvalid"))).toBe(false);

  const wrongInvite = new ScriptedIo();
  cleanups.push(() => wrongInvite.end());
  const wrongArgs = [
    "--prekeys",
    "4",
    "--port",
    port,
    "--key-file",
    join(dataDir, "b.json"),
    "--register",
    "carol",
    "--invite",
    "nope",
  ];
  expect(await runChat(wrongArgs, wrongInvite)).toBe(1);
  expect(wrongInvite.has("* stopped: this invite code is unknown or already used")).toBe(true);

  const now = Date.now();
  await server.context.storage.invites.issue("good-one", now, now + 60_000);
  await server.context.storage.invites.issue("good-two", now, now + 60_000);
  const carol = new ScriptedIo();
  cleanups.push(() => carol.end());
  const carolArgs = [
    "--prekeys",
    "4",
    "--port",
    port,
    "--key-file",
    join(dataDir, "c.json"),
    "--register",
    "carol",
    "--invite",
  ];
  const carolRun = runChat([...carolArgs, "good-one"], carol);
  await carol.expectLine("as carol (account");
  carol.type("/quit");
  expect(await carolRun).toBe(0);
  const again = new ScriptedIo();
  cleanups.push(() => again.end());
  const againArgs = [
    "--prekeys",
    "4",
    "--port",
    port,
    "--key-file",
    join(dataDir, "d.json"),
    "--register",
    "carol",
    "--invite",
  ];
  expect(await runChat([...againArgs, "good-two"], again)).toBe(1);
  expect(again.has("* stopped: the handle carol is taken: choose another")).toBe(true);
});

test("a server that cannot be reached is named, with the time to the next attempt", async () => {
  const dataDir = temporaryDir();
  // A port that was free a moment ago: nothing listens there.
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = String(probe.port);
  probe.stop(true);
  const io = new ScriptedIo();
  cleanups.push(() => io.end());
  const run = runChat(
    ["--prekeys", "4", "--port", port, "--key-file", join(dataDir, "x.json"), "--register", "erin"],
    io,
  );
  await io.expectLine(`* cannot reach 127.0.0.1:${port} (`);
  expect(io.output.find((line) => line.startsWith("* cannot reach"))).toMatch(/; trying again in \d+\.\d s$/);
  io.type("/quit");
  expect(await run).toBe(0);
});

test("over Noise: --noise registers and remembers the server's key; a wrong --server-key stops with a warning", async () => {
  const dataDir = temporaryDir();
  const config = testConfig({ dataDir, config: { tcpEncryption: "noise" } });
  const server = await startServer(config);
  cleanups.push(() => server.stop({ timeoutMs: 1000 }));
  const port = String(server.port);
  const keyFile = join(dataDir, "carol.json");
  const carol = new ScriptedIo();
  cleanups.push(() => carol.end());
  const run = runChat(
    ["--prekeys", "4", "--noise", "--port", port, "--key-file", keyFile, "--register", "carol"],
    carol,
  );
  await carol.expectLine("as carol (account");
  carol.type("/quit");
  expect(await run).toBe(0);
  expect(readFileSync(`${keyFile}.servers`, "utf8")).toContain(`127.0.0.1:${port} `);

  const wrong = new ScriptedIo();
  cleanups.push(() => wrong.end());
  const pinned = "ab".repeat(32);
  const refused = runChat(["--noise", "--server-key", pinned, "--port", port, "--key-file", keyFile], wrong);
  await wrong.expectLine("WARNING: the Noise key of");
  expect(wrong.has(pinned)).toBe(true);
  wrong.end();
  await refused;

  const plain = new ScriptedIo();
  expect(await runChat(["--server-key", pinned, "--port", port, "--key-file", keyFile], plain)).toBe(2);
  expect(plain.has("--server-key goes with --noise")).toBe(true);
});

test("/group: alice makes a group with bob, both see the event, lines go to the group and back", async () => {
  const { dataDir, port } = await openServer("open");
  const { alice, bob } = await registerPair(port, dataDir);
  alice.type("/group new team bob");
  await alice.expectLine("* group team (#");
  // (bob may not know alice's handle yet: the reverse lookup names only who wrote to him, PROTOCOL.md section 8.)
  await bob.expectLine("created the group with");
  alice.type("hello team");
  await bob.expectLine(": hello team");
  expect(bob.output.find((line) => line.includes(": hello team"))).toContain("[team]");
  await alice.expectLine("✓ sent to team");
  await alice.expectLine("[team] delivered to bob");
  // bob's chat showed it, so it sent a read receipt naming the group: gathered by the server into a groupReceipt.
  await alice.expectLine("[team] read by bob");
  bob.type(`/group use ${/#(\d+)/.exec(alice.output.find((line) => line.includes("* group team (#"))!)![1]}`);
  await bob.expectLine("* talking to group team");
  bob.type("hi alice");
  await alice.expectLine("[team] bob: hi alice");
  expect(bob.output.some((line) => line.includes("you → [team]: hi alice"))).toBe(true);
  alice.type("/group info");
  await alice.expectLine("alice (admin)");
  expect(alice.output.find((line) => line.includes("alice (admin)"))).toMatch(/^\* team: .*bob/);
  alice.type("/group list");
  await alice.expectLine("* #");
});
