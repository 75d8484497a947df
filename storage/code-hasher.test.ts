import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CodeHasher, CodeKeyError, codeKeyBytes, loadOrCreateCodeKey } from "./code-hasher.ts";

const directory = mkdtempSync(join(tmpdir(), "switchboard-code-key-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe("code key", () => {
  test("is created once, 0600 whatever the umask, and read back the same by every later load", () => {
    const path = join(directory, "created.key");
    const previous = process.umask(0);
    try {
      const first = loadOrCreateCodeKey(path);
      expect(first.length).toBe(codeKeyBytes);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(loadOrCreateCodeKey(path)).toEqual(first);
    } finally {
      process.umask(previous);
    }
  });

  test("processes racing to create it all end with the same key", async () => {
    const path = join(directory, "raced.key");
    const script = `import { loadOrCreateCodeKey } from ${JSON.stringify(new URL("./code-hasher.ts", import.meta.url).pathname)};
      console.log(Buffer.from(loadOrCreateCodeKey(${JSON.stringify(path)})).toString("hex"));`;
    const children = Array.from({ length: 4 }, () =>
      Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" }),
    );
    const keys = await Promise.all(children.map(async (child) => (await new Response(child.stdout).text()).trim()));
    expect(keys[0]).toHaveLength(codeKeyBytes * 2);
    expect(new Set(keys).size).toBe(1);
  });

  test("a key file of the wrong size is refused, not replaced", () => {
    const path = join(directory, "short.key");
    writeFileSync(path, "short");
    expect(() => loadOrCreateCodeKey(path)).toThrow(CodeKeyError);
    expect(statSync(path).size).toBe(5);
  });

  test("a looser mode on an existing key file is tightened to 0600", () => {
    const path = join(directory, "loose.key");
    writeFileSync(path, new Uint8Array(codeKeyBytes).fill(7), { mode: 0o644 });
    loadOrCreateCodeKey(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });
});

describe("code hasher", () => {
  test("gives 32 bytes that depend on the key and the code, and never contain the code", () => {
    const one = new CodeHasher(new Uint8Array(codeKeyBytes).fill(1));
    const two = new CodeHasher(new Uint8Array(codeKeyBytes).fill(2));
    const hash = one.hash("abcdefghijkmnpqrstu");
    expect(hash.length).toBe(32);
    expect(one.hash("abcdefghijkmnpqrstu")).toEqual(hash);
    expect(one.hash("abcdefghijkmnpqrstv")).not.toEqual(hash);
    expect(two.hash("abcdefghijkmnpqrstu")).not.toEqual(hash);
    expect(Buffer.from(hash).includes("abcdefghijkmnpqrstu")).toBe(false);
  });
});
