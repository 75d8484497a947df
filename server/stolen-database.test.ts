// A copy of the database lets nobody in. The thief copies switchboard.sqlite and its -wal while the server runs,
// after an invite and a link code were issued and not yet used, and tries everything the copy holds: the codes are not
// in it, nothing in it registers, links or logs in, and the real codes still work afterwards.

import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ErrorCode } from "../protocol/index.ts";
import { newDeviceKey, RawClient, startTestServer, type TestServer, temporaryDirectory } from "./test-kit.ts";

const cliPath = new URL("./cli.ts", import.meta.url).pathname;
const commandTimeoutMs = 15_000;

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function issueInvite(dataDir: string): Promise<string> {
  const child = Bun.spawn([process.execPath, cliPath, "invite", "--data-dir", dataDir], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), commandTimeoutMs);
  try {
    const [stdout, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
    expect(code).toBe(0);
    return stdout.trim();
  } finally {
    clearTimeout(timer);
  }
}

async function connect(server: TestServer): Promise<RawClient> {
  const client = await RawClient.connect(server.port);
  cleanups.push(() => client.close());
  return client;
}

// Every value the copy's invite and link-code rows hold, written every way a thief might try it as a code.
function candidatesFrom(copyPath: string): string[] {
  const copy = new Database(copyPath, { readonly: true });
  try {
    const rows = [
      ...(copy.query("select * from invites").all() as Array<Record<string, unknown>>),
      ...(copy.query("select * from link_codes").all() as Array<Record<string, unknown>>),
    ];
    const candidates: string[] = [];
    for (const row of rows) {
      for (const value of Object.values(row)) {
        if (value instanceof Uint8Array) {
          const buffer = Buffer.from(value);
          candidates.push(buffer.toString("hex"), buffer.toString("base64"), buffer.toString("latin1"));
        } else if (value !== null) {
          candidates.push(String(value));
        }
      }
    }
    return candidates;
  } finally {
    copy.close();
  }
}

describe("a stolen copy of the database", () => {
  test("holds no invite or link code, and nothing in it registers, links or logs in; the real codes still work", async () => {
    const server = await startTestServer({ registration: "invite" });
    cleanups.push(() => server.stop());
    const aliceKey = newDeviceKey();
    // Issued before connecting: the session must log in within the test limits' loginTimeoutMs.
    const aliceInvite = await issueInvite(server.dataDir);
    const alice = await connect(server);
    await alice.register("alice", aliceKey, aliceInvite);
    await alice.next("queueEmpty");
    const invite = await issueInvite(server.dataDir);
    alice.sendStanza({ kind: "linkCreate", clientId: alice.clientId() });
    const { code: linkCode } = await alice.next("linkCode");

    // The theft: the database file and its log, copied while the server runs. The key file is not taken.
    const loot = temporaryDirectory("switchboard-loot-");
    cleanups.push(() => rmSync(loot, { recursive: true, force: true }));
    mkdirSync(loot, { recursive: true });
    const source = join(server.dataDir, "switchboard.sqlite");
    const copyPath = join(loot, "switchboard.sqlite");
    copyFileSync(source, copyPath);
    copyFileSync(`${source}-wal`, `${copyPath}-wal`);
    const stolenBytes = Buffer.concat([readFileSync(copyPath), readFileSync(`${copyPath}-wal`)]);
    expect(stolenBytes.length).toBeGreaterThan(0);

    // The codes are nowhere in the bytes, nor is alice's private key.
    expect(stolenBytes.includes(invite)).toBe(false);
    expect(stolenBytes.includes(linkCode)).toBe(false);
    const privateKey = aliceKey.privateKey.export({ format: "der", type: "pkcs8" });
    expect(stolenBytes.includes(privateKey.subarray(privateKey.length - 32))).toBe(false);
    // The copy opens (its log is recovered) and holds one row per unused code: the thief sees that codes exist.
    const candidates = candidatesFrom(copyPath);
    expect(candidates.length).toBeGreaterThan(0);
    expect(candidates).not.toContain(invite);
    expect(candidates).not.toContain(linkCode);

    // Nothing found in the copy registers or links a device.
    for (const candidate of candidates) {
      const registering = await connect(server);
      void registering.register("mallory", newDeviceKey(), candidate).catch(() => {});
      expect((await registering.next("error")).code).toBe(ErrorCode.inviteInvalid);
      const linking = await connect(server);
      void linking.link(candidate, newDeviceKey()).catch(() => {});
      expect((await linking.next("error")).code).toBe(ErrorCode.linkCodeInvalid);
    }
    // The copy holds alice's public key, which cannot sign a login.
    const thief = await connect(server);
    void thief.login(alice.account!, 1, newDeviceKey()).catch(() => {});
    expect((await thief.next("error")).code).toBe(ErrorCode.badCredentials);

    // The real codes, which the thief never saw, still work.
    const bob = await connect(server);
    expect((await bob.register("bob", newDeviceKey(), invite)).device).toBe(1);
    const laptop = await connect(server);
    const linked = await laptop.link(linkCode, newDeviceKey());
    expect(linked.account).toBe(alice.account!);
    expect(linked.device).toBe(2);
  });
});
