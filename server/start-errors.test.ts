// `switchboard start` as a real process, for each way a start fails: one line on stderr naming the cause and the port
// or path (no stack trace), a start_failed event in the JSON log, and the exit code the unit acts on (2: do not
// restart; 1: restart).
//
// What is covered where: a port in use (a listener the test holds), an address not on this host, a data directory
// that is a file or lies under one, and a bad config run as root, like the suite. Permission cases need a user that
// permissions apply to (root bypasses them): when the suite runs as root and `setpriv` exists, the child runs as
// nobody (uid 65534) for a privileged port, a data directory owned by root (mode 0500 and 0755), and one under a
// directory it may not write. A read-only file system is a read-only bind mount in a private mount namespace
// (`unshare -m`, root only). Without those tools the cases are skipped, saying why. A database SQLite cannot open and
// a full disk are not provoked here: the mapping tests at the end cover their lines and exit codes.

import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { asDataDirectoryError, asListenError, DataDirectoryError, type ListenError } from "./start-errors.ts";
import { temporaryDirectory } from "./test-kit.ts";

const cliPath = new URL("./cli.ts", import.meta.url).pathname;
const childTimeoutMs = 20_000;
const nobody = 65534;

const scratch = temporaryDirectory();
// Traversable by nobody: the permission cases put their directories in here.
chmodSync(scratch, 0o755);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Outcome {
  readonly code: number | null;
  readonly stdout: string;
  /** stderr without the JSON log lines. */
  readonly stderr: string;
  readonly events: Array<Record<string, unknown>>;
}

/** Runs `prefix... bun cli.ts start args...` to its end (killed after childTimeoutMs). */
async function start(args: string[], prefix: string[] = [], env: Record<string, string> = {}): Promise<Outcome> {
  const child = Bun.spawn([...prefix, process.execPath, cliPath, "start", ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    // Bun's transpiler cache lives under $HOME, which nobody cannot write.
    env: { ...process.env, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0", ...env },
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), childTimeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]);
    // The JSON log may go to stdout or (errors) to stderr: events are read from both, the one line is the rest.
    const events = `${stdout}\n${stderr}`
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const text = stderr
      .split("\n")
      .filter((line) => line !== "" && !line.startsWith("{"))
      .join("\n");
    return { code, stdout, stderr: text, events };
  } finally {
    clearTimeout(timer);
  }
}

/** The failure is one line on stderr, no stack trace, and one start_failed event with the same text. */
function expectOneLine(outcome: Outcome, exitCode: number, line: string | RegExp): Record<string, unknown> {
  expect(outcome.code).toBe(exitCode);
  const lines = outcome.stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  if (typeof line === "string") expect(lines[0]).toBe(line);
  else expect(lines[0]).toMatch(line);
  expect(outcome.stderr).not.toContain("    at ");
  const failed = outcome.events.filter((event) => event.event === "start_failed");
  expect(failed).toHaveLength(1);
  expect(`switchboard: ${failed[0]!.error}`).toBe(lines[0]!);
  expect(failed[0]!.exitCode).toBe(exitCode);
  expect(failed[0]!.level).toBe("error");
  expect(outcome.events.some((event) => event.event === "server_started")).toBe(false);
  return failed[0]!;
}

function dataDir(name: string): string {
  return join(scratch, name);
}

describe("start failures as root (like the suite)", () => {
  test("a port in use: exit 1 (a restart may succeed), naming the address and the keys", async () => {
    using held = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const outcome = await start(["--port", String(held.port), "--admin-port", "0", "--data-dir", dataDir("in-use")]);
    const event = expectOneLine(
      outcome,
      1,
      `switchboard: cannot listen on 127.0.0.1:${held.port}: address in use (the TCP listener: host, port)`,
    );
    expect(event).toMatchObject({ listener: "tcp", host: "127.0.0.1", port: held.port, code: "EADDRINUSE" });
  });

  test("the admin port in use names the admin listener", async () => {
    using held = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const outcome = await start(["--port", "0", "--admin-port", String(held.port), "--data-dir", dataDir("admin")]);
    const event = expectOneLine(outcome, 1, /cannot listen on 127\.0\.0\.1:\d+: address in use \(the admin HTTP/);
    expect(event).toMatchObject({ listener: "admin", port: held.port, code: "EADDRINUSE" });
  });

  test("an address not on this host: exit 2", async () => {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to a host. Plaintext there needs --insecure (config.ts).
    const outcome = await start([
      "--insecure",
      "true",
      "--host",
      "192.0.2.1",
      "--port",
      "0",
      "--admin-port",
      "0",
      "--data-dir",
      dataDir("x"),
    ]);
    const event = expectOneLine(outcome, 2, /^switchboard: cannot listen on 192\.0\.2\.1:0: address not available/);
    expect(event.code).toBe("EADDRNOTAVAIL");
  });

  test("a data directory that is a file, or lies under one: exit 2, naming the path", async () => {
    const file = join(scratch, "a-file");
    writeFileSync(file, "not a directory\n");
    const isFile = await start(["--port", "0", "--admin-port", "0", "--data-dir", file]);
    const event = expectOneLine(
      isFile,
      2,
      `switchboard: cannot use data directory ${file}: exists and is not a directory (mkdir)`,
    );
    expect(event).toMatchObject({ dataDir: file, path: file, syscall: "mkdir", code: "EEXIST" });
    const under = await start(["--port", "0", "--admin-port", "0", "--data-dir", join(file, "data")]);
    expectOneLine(under, 2, `switchboard: cannot use data directory ${join(file, "data")}: not a directory (mkdir)`);
  });

  test("a bad config: the same one line as check-config, exit 2, start_failed with the problems", async () => {
    const outcome = await start(["--port", "70000", "--data-dir", dataDir("config")]);
    const event = expectOneLine(outcome, 2, "switchboard: config: port: 0..65535 (port = 70000 from flag --port)");
    expect(event.cause).toBe("config");
    const syntax = join(scratch, "broken.toml");
    writeFileSync(syntax, 'port = 7420\nhost = "127.0.0.1\n');
    expectOneLine(
      await start(["--config", syntax]),
      2,
      `switchboard: config file ${syntax} line 2, column 8: TOML syntax error: Unterminated string; newlines must be escaped in basic strings`,
    );
  });

  test("a data directory another server holds: exit 2 in one line, logged", async () => {
    const directory = dataDir("locked");
    const first = Bun.spawn(
      [process.execPath, cliPath, "start", "--port", "0", "--admin-port", "0", "--data-dir", directory],
      {
        stdin: "ignore",
        stdout: "pipe",
        stderr: "ignore",
      },
    );
    try {
      const reader = first.stdout.getReader();
      let seen = "";
      const deadline = Date.now() + childTimeoutMs;
      while (!seen.includes("server_started") && Date.now() < deadline) {
        const { value, done } = await Promise.race([
          reader.read(),
          Bun.sleep(deadline - Date.now()).then(() => ({ value: undefined, done: true })),
        ]);
        if (done) break;
        seen += new TextDecoder().decode(value);
      }
      expect(seen).toContain("server_started");
      const second = await start(["--port", "0", "--admin-port", "0", "--data-dir", directory]);
      const event = expectOneLine(second, 2, /^switchboard: data directory .* is in use by process \d+ /);
      expect(event).toMatchObject({ code: "locked", holderPid: first.pid });
    } finally {
      first.kill("SIGKILL");
      await first.exited;
    }
  });
});

function works(command: string[]): boolean {
  try {
    const env = { ...process.env, BUN_RUNTIME_TRANSPILER_CACHE_PATH: "0" };
    return Bun.spawnSync(command, { stdout: "ignore", stderr: "ignore", env }).exitCode === 0;
  } catch {
    return false;
  }
}

const asNobody = ["setpriv", `--reuid=${nobody}`, `--regid=${nobody}`, "--clear-groups"];
// As root with setpriv, and nobody can run the CLI from where the suite sits and reach the scratch directory (a
// checkout under /root could not): otherwise the cases are skipped rather than failed.
const canDropPrivileges =
  process.getuid?.() === 0 &&
  works([...asNobody, process.execPath, cliPath, "version"]) &&
  works([...asNobody, "test", "-x", scratch]);
const unprivilegedPortStart = Number(readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8").trim());

describe.skipIf(!canDropPrivileges)("start failures as an unprivileged user (setpriv to nobody)", () => {
  test.skipIf(!(unprivilegedPortStart > 80))("a privileged port: exit 2 with the capability to grant", async () => {
    const directory = dataDir("privileged-port");
    mkdirSync(directory);
    chownSync(directory, nobody, nobody);
    const outcome = await start(["--port", "80", "--admin-port", "0", "--data-dir", directory], asNobody);
    const event = expectOneLine(
      outcome,
      2,
      "switchboard: cannot listen on 127.0.0.1:80: permission denied (the TCP listener: host, port); ports below 1024 need CAP_NET_BIND_SERVICE: systemd/switchboard-low-port.conf",
    );
    expect(event).toMatchObject({ listener: "tcp", port: 80, code: "EACCES" });
  });

  test("a data directory owned by another user (0500 and 0755): exit 2, operation not permitted", async () => {
    for (const mode of [0o500, 0o755]) {
      const directory = dataDir(`root-owned-${mode.toString(8)}`);
      mkdirSync(directory);
      chmodSync(directory, mode);
      const outcome = await start(["--port", "0", "--admin-port", "0", "--data-dir", directory], asNobody);
      const event = expectOneLine(
        outcome,
        2,
        `switchboard: cannot use data directory ${directory}: operation not permitted (chmod)`,
      );
      expect(event.code).toBe("EPERM");
    }
  });

  test("a data directory to create in a directory it may not write: exit 2, permission denied", async () => {
    const parent = dataDir("read-only-parent");
    mkdirSync(parent);
    chmodSync(parent, 0o555);
    const directory = join(parent, "data");
    const outcome = await start(["--port", "0", "--admin-port", "0", "--data-dir", directory], asNobody);
    expectOneLine(outcome, 2, `switchboard: cannot use data directory ${directory}: permission denied (mkdir)`);
  });

  test("a 0500 data directory of its own is no failure: start sets it back to 0700", async () => {
    const directory = dataDir("own-0500");
    mkdirSync(directory);
    chownSync(directory, nobody, nobody);
    chmodSync(directory, 0o500);
    // --port 70000 would stop before the directory is touched; a start that gets as far as its listeners is needed,
    // so the TCP port is one the test holds: the start fails there, after the data directory was prepared.
    using held = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const outcome = await start(["--port", String(held.port), "--admin-port", "0", "--data-dir", directory], asNobody);
    expectOneLine(outcome, 1, /address in use/);
    expect(statSync(directory).mode & 0o777).toBe(0o700);
  });
});

// A private mount namespace where a read-only bind mount works (containers may refuse either).
const canMountReadOnly =
  process.getuid?.() === 0 && works(["unshare", "-m", "sh", "-c", `mount --bind -o ro "$1" "$1"`, "sh", scratch]);

describe.skipIf(!canMountReadOnly)("start on a read-only file system (a read-only bind mount, unshare -m)", () => {
  test("exit 2, read-only file system, naming the directory", async () => {
    const directory = dataDir("read-only-mount");
    mkdirSync(directory);
    // The mount exists only in the child's private mount namespace: nothing outside sees it, and it goes with it.
    const script = `mount --bind -o ro "$1" "$1" && shift && exec "$@"`;
    const prefix = ["unshare", "-m", "sh", "-c", script, "sh", directory];
    const outcome = await start(["--port", "0", "--admin-port", "0", "--data-dir", directory], prefix);
    const event = expectOneLine(
      outcome,
      2,
      `switchboard: cannot use data directory ${directory}: read-only file system (chmod)`,
    );
    expect(event.code).toBe("EROFS");
  });
});

describe("the mapping itself (causes no test above can provoke)", () => {
  const failure = (fields: Record<string, unknown>) => Object.assign(new Error("failed"), fields);

  test("SQLite codes, extended ones by their primary code; a full disk may pass (1)", () => {
    const cantOpen = asDataDirectoryError("/data", failure({ code: "SQLITE_CANTOPEN" }));
    expect(cantOpen).toBeInstanceOf(DataDirectoryError);
    expect((cantOpen as DataDirectoryError).message).toBe(
      "cannot use data directory /data: SQLite cannot open the database file",
    );
    expect((cantOpen as DataDirectoryError).exitCode).toBe(2);
    const ioError = asDataDirectoryError("/data", failure({ code: "SQLITE_IOERR_WRITE" })) as DataDirectoryError;
    expect([ioError.code, ioError.exitCode]).toEqual(["SQLITE_IOERR", 1]);
    const full = asDataDirectoryError("/data", failure({ code: "ENOSPC", path: "/data/x", syscall: "write" }));
    expect((full as DataDirectoryError).message).toBe(
      "cannot use /data/x in data directory /data: no space left on device (write)",
    );
    expect((full as DataDirectoryError).exitCode).toBe(1);
  });

  test("unknown causes stay as they are (a bug keeps its stack trace)", () => {
    const bug = new TypeError("x is undefined");
    expect(asDataDirectoryError("/data", bug)).toBe(bug);
    expect(asListenError("tcp", "127.0.0.1", 1, bug)).toBe(bug);
    const strange = failure({ code: "SQLITE_MISMATCH" });
    expect(asDataDirectoryError("/data", strange)).toBe(strange);
    // The same EACCES from a file (the admin token, say) is not the port's fault.
    const fileError = failure({ code: "EACCES", syscall: "open", path: "/data/admin.token" });
    expect(asListenError("admin", "127.0.0.1", 7421, fileError)).toBe(fileError);
    const bind = asListenError("tcp", "::1", 7420, failure({ code: "EADDRINUSE", syscall: "listen" }));
    expect((bind as ListenError).message).toBe(
      "cannot listen on [::1]:7420: address in use (the TCP listener: host, port)",
    );
  });
});
