// The version: package.json's, Bun's, and the commit read from .git files (a branch, packed refs, a detached HEAD, a
// worktree's .git file), with no commit and no failure where there is no checkout.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { temporaryDirectory } from "./test-kit.ts";
import { gitCommit, versionInfo, versionLine } from "./version.ts";

const scratch = temporaryDirectory();
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const hashA = "0123456789abcdef0123456789abcdef01234567";
const hashB = "fedcba9876543210fedcba9876543210fedcba98";

function checkout(name: string, files: Record<string, string>): string {
  const root = join(scratch, name);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  mkdirSync(root, { recursive: true });
  return root;
}

describe("version", () => {
  test("package.json's version and Bun's; the line names both", () => {
    const info = versionInfo();
    const packageJson = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
      version: string;
    };
    expect(info.version).toBe(packageJson.version);
    expect(info.bun).toBe(Bun.version);
    expect(versionLine({ version: "1.2.3", bun: "1.4.5", commit: undefined })).toBe("switchboard 1.2.3 (bun 1.4.5)");
    expect(versionLine({ version: "1.2.3", bun: "1.4.5", commit: "0123456789ab" })).toBe(
      "switchboard 1.2.3 (bun 1.4.5, commit 0123456789ab)",
    );
  });

  test("the commit from a branch ref, packed refs, a detached HEAD and a worktree", () => {
    const branch = checkout("branch", { ".git/HEAD": "ref: refs/heads/main\n", ".git/refs/heads/main": `${hashA}\n` });
    expect(gitCommit(branch)).toBe(hashA.slice(0, 12));
    const packed = checkout("packed", {
      ".git/HEAD": "ref: refs/heads/main\n",
      ".git/packed-refs": `# pack-refs with: peeled fully-peeled sorted\n${hashB} refs/heads/other\n${hashA} refs/heads/main\n`,
    });
    expect(gitCommit(packed)).toBe(hashA.slice(0, 12));
    const detached = checkout("detached", { ".git/HEAD": `${hashB}\n` });
    expect(gitCommit(detached)).toBe(hashB.slice(0, 12));
    // A worktree: .git is a file naming its git directory, whose refs live in the main repository (commondir).
    const main = checkout("main", { ".git/refs/heads/feature": `${hashB}\n`, ".git/HEAD": "ref: refs/heads/main\n" });
    const worktree = checkout("worktree", {
      ".git": `gitdir: ${join(main, ".git/worktrees/wt")}\n`,
    });
    mkdirSync(join(main, ".git/worktrees/wt"), { recursive: true });
    writeFileSync(join(main, ".git/worktrees/wt/HEAD"), "ref: refs/heads/feature\n");
    writeFileSync(join(main, ".git/worktrees/wt/commondir"), "../..\n");
    expect(gitCommit(worktree)).toBe(hashB.slice(0, 12));
  });

  test("no checkout, an unborn branch or a broken .git: no commit, no failure", () => {
    expect(gitCommit(checkout("none", { "package.json": "{}" }))).toBeUndefined();
    expect(gitCommit(checkout("unborn", { ".git/HEAD": "ref: refs/heads/main\n" }))).toBeUndefined();
    expect(gitCommit(checkout("garbage", { ".git/HEAD": "garbage\n" }))).toBeUndefined();
    expect(gitCommit(checkout("dangling", { ".git": "gitdir: /nonexistent/.git\n" }))).toBeUndefined();
  });
});
