// The CLI as a real process: invite codes issued by `switchboard invite` let devices register with a server in
// invite mode on the same data directory; `switchboard account` lists, shows and removes.

import { afterAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { RawClient, startTestServer, temporaryDirectory } from "./test-kit.ts";

const cliPath = new URL("./cli.ts", import.meta.url).pathname;
const dataDir = temporaryDirectory();
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn([process.execPath, cliPath, ...args, "--data-dir", dataDir], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code, stdout, stderr };
}

describe("switchboard CLI", () => {
  test("invite codes register accounts; account list/show/remove", async () => {
    // Only `start` creates the database (admin-command.ts): start once, then issue.
    await (await startTestServer({ dataDir })).stop();
    const issued = await cli("invite", "--count", "2");
    expect(issued.code).toBe(0);
    const codes = issued.stdout.trim().split("\n");
    expect(codes).toHaveLength(2);
    expect(new Set(codes).size).toBe(2);

    const server = await startTestServer({ registration: "invite", dataDir });
    try {
      const alice = await RawClient.connect(server.port);
      await alice.register("alice", undefined, codes[0]!);
      alice.close();
    } finally {
      await server.stop();
    }

    const list = await cli("account", "list");
    expect(list.stdout).toContain("alice");
    expect(list.stdout).toContain("1 shown, 1 in all");
    const show = await cli("account", "show", "alice");
    expect(show.stdout).toContain("device 1");
    const removed = await cli("account", "remove", "alice");
    expect(removed.code).toBe(0);
    expect((await cli("account", "list")).stdout).toContain("0 shown, 0 in all");
  });

  test("usage errors exit 2 with a message", async () => {
    const unknown = await cli("frobnicate");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command");
    const badFlag = await cli("invite", "--count", "0");
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain("--count");
    const missing = await cli("account", "show", "nobody");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no account nobody");
  });
});
