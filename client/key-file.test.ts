// Key files hold a device's private key: 0600 whatever the umask, also when the real `switchboard chat` writes them.

import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startTestServer, temporaryDirectory, waitFor } from "../server/test-kit.ts";
import { readKeyFile, writeKeyFile } from "./key-file.ts";
import { generateKeyPair } from "./keys.ts";

const cliPath = new URL("../server/cli.ts", import.meta.url).pathname;

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function scratch(): string {
  const directory = temporaryDirectory("switchboard-key-file-");
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

async function identity() {
  return {
    credentials: { account: 1, device: 1, keyPair: await generateKeyPair() },
    handle: "alice",
    nextClientId: 1,
  };
}

describe("key file", () => {
  test("`switchboard chat --register` under umask 000 writes its key file 0600", async () => {
    const server = await startTestServer();
    cleanups.push(() => server.stop());
    const keyFile = join(scratch(), "alice.key.json");
    // Children inherit the umask: 000 would leave every file the chat creates readable by all unless it sets modes.
    const previous = process.umask(0);
    const chat = Bun.spawn(
      [process.execPath, cliPath, "chat", "--port", String(server.port), "--key-file", keyFile, "--register", "alice"],
      { stdin: "pipe", stdout: "pipe", stderr: "pipe" },
    );
    process.umask(previous);
    cleanups.push(() => {
      chat.kill("SIGKILL");
    });
    await waitFor(() => existsSync(keyFile), 10_000, "the key file");
    chat.stdin.write("/quit\n");
    await chat.stdin.flush();
    const exited = await Promise.race([chat.exited, Bun.sleep(10_000).then(() => "timeout")]);
    expect(exited).toBe(0);
    expect(modeOf(keyFile)).toBe(0o600);
    expect(JSON.parse(readFileSync(keyFile, "utf8"))).toMatchObject({ handle: "alice", device: 1 });
  });

  test("a link planted at the temporary name is not written through", async () => {
    const directory = scratch();
    const path = join(directory, "bob.key.json");
    const target = join(directory, "elsewhere");
    writeFileSync(target, "untouched");
    symlinkSync(target, `${path}.tmp-${process.pid}`);
    await writeKeyFile(path, await identity());
    expect(readFileSync(target, "utf8")).toBe("untouched");
    expect(modeOf(path)).toBe(0o600);
    expect((await readKeyFile(path)).handle).toBe("alice");
  });

  test("reading a key file with a looser mode tightens it to 0600", async () => {
    const path = join(scratch(), "carol.key.json");
    await writeKeyFile(path, await identity());
    chmodSync(path, 0o644);
    await readKeyFile(path);
    expect(modeOf(path)).toBe(0o600);
  });
});
