// What is running: the package version (package.json), the Bun that runs it, and the git commit when the code sits in
// a git checkout. Shown by `switchboard --version`, logged in server_started, exported as switchboard_build_info, and
// answered by /healthz and doctor.
//
// The commit is read from the .git directory's files rather than by running git: no process is spawned, and an
// installed copy (no .git, no git binary) just has no commit. Read once; none of it changes while the process runs.

import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

export interface VersionInfo {
  /** The `version` of package.json. */
  readonly version: string;
  /** Bun.version of the running runtime. */
  readonly bun: string;
  /** The checked-out commit (12 hex digits), or undefined outside a git checkout. */
  readonly commit: string | undefined;
}

const packageRoot = dirname(new URL("../package.json", import.meta.url).pathname);
const commitHexDigits = 12;

function packageVersion(): string {
  try {
    const parsed = JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8")) as { version?: unknown };
    return typeof parsed.version === "string" ? parsed.version : "unknown";
  } catch {
    return "unknown";
  }
}

/** The commit HEAD points to, from `.git` (a directory, or a file naming one as worktrees do); undefined if none. */
export function gitCommit(root: string = packageRoot): string | undefined {
  try {
    let gitDirectory = join(root, ".git");
    if (!existsSync(gitDirectory)) return undefined;
    if (statSync(gitDirectory).isFile()) {
      const pointer = /^gitdir:\s*(.+)$/m.exec(readFileSync(gitDirectory, "utf8"))?.[1];
      if (pointer === undefined) return undefined;
      gitDirectory = resolve(root, pointer.trim());
    }
    const head = readFileSync(join(gitDirectory, "HEAD"), "utf8").trim();
    if (/^[0-9a-f]{40,64}$/.test(head)) return head.slice(0, commitHexDigits);
    const reference = /^ref:\s*(\S+)$/.exec(head)?.[1];
    if (reference === undefined) return undefined;
    // A worktree keeps its HEAD but shares refs with the main repository, named by `commondir`.
    const commonFile = join(gitDirectory, "commondir");
    const common = existsSync(commonFile)
      ? resolve(gitDirectory, readFileSync(commonFile, "utf8").trim())
      : gitDirectory;
    for (const directory of [gitDirectory, common]) {
      const file = join(directory, reference);
      if (existsSync(file)) return readFileSync(file, "utf8").trim().slice(0, commitHexDigits);
    }
    const packed = join(common, "packed-refs");
    if (!existsSync(packed)) return undefined;
    for (const line of readFileSync(packed, "utf8").split("\n")) {
      const [hash, name] = line.split(" ");
      if (name === reference && hash !== undefined && /^[0-9a-f]{40,64}$/.test(hash)) {
        return hash.slice(0, commitHexDigits);
      }
    }
    return undefined;
  } catch {
    // A version must never fail a start or a command: an unreadable .git just means no commit.
    return undefined;
  }
}

let cached: VersionInfo | undefined;

/** The version, the Bun version and the commit; read on the first call. */
export function versionInfo(): VersionInfo {
  cached ??= Object.freeze({ version: packageVersion(), bun: Bun.version, commit: gitCommit() });
  return cached;
}

/** `switchboard 0.1.0 (bun 1.4.5, commit 0123456789ab)`; the commit part only when there is one. */
export function versionLine(info: VersionInfo = versionInfo()): string {
  const commit = info.commit === undefined ? "" : `, commit ${info.commit}`;
  return `switchboard ${info.version} (bun ${info.bun}${commit})`;
}
