// The fuzzer's command line (node:util parseArgs, strict): the documented flags work, anything else is refused in one
// line with exit 2 instead of being ignored.

import { describe, expect, test } from "bun:test";
import { parseFuzzArguments } from "./fuzz.ts";

const fuzzPath = new URL("./fuzz.ts", import.meta.url).pathname;

describe("fuzz command line", () => {
  test("--seed, --iterations and --time-ms are read; defaults otherwise", () => {
    expect(parseFuzzArguments(["--seed", "7", "--iterations=1_000", "--time-ms", "5000"])).toEqual({
      seed: 7,
      iterations: 1000,
      timeMs: 5000,
    });
    const defaults = parseFuzzArguments([]);
    expect(defaults).not.toBe("help");
    if (defaults === "help") return;
    expect(defaults.iterations).toBe(Number.MAX_SAFE_INTEGER);
    expect(defaults.timeMs).toBe(60_000);
    expect(parseFuzzArguments(["-h"])).toBe("help");
  });

  test("unknown flags, positionals and bad numbers are refused", () => {
    expect(() => parseFuzzArguments(["-n", "3"])).toThrow(/-n/);
    expect(() => parseFuzzArguments(["--seeds", "3"])).toThrow(/--seeds/);
    expect(() => parseFuzzArguments(["1234"])).toThrow(/1234/);
    expect(() => parseFuzzArguments(["--seed", "x"])).toThrow(/--seed needs a whole number/);
    expect(() => parseFuzzArguments(["--time-ms"])).toThrow(/--time-ms/);
  });

  test("the real command exits 2 with one line for an unknown flag, 0 with --help", async () => {
    const run = async (...args: string[]) => {
      const child = Bun.spawn([process.execPath, fuzzPath, ...args], { stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, code] = await Promise.all([
        new Response(child.stdout).text(),
        new Response(child.stderr).text(),
        child.exited,
      ]);
      return { stdout, stderr, code };
    };
    const refused = await run("--iterations", "10", "-n", "2");
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toContain("-n");
    expect(refused.stdout).toBe("");
    const help = await run("--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--seed");
  });
});
