// Logs an operator can filter: errors on stderr (with the journald priority prefix under systemd), the rest on
// stdout; connection events at debug level; refused registrations logged with their code; and lines a peer can cause
// limited per event kind, with a log_suppressed summary. Through real processes and real sockets where it matters.

import { afterEach, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ErrorCode, loginMessage, registerMessage, testLimits } from "../protocol/index.ts";
import { loadConfig } from "./config.ts";
import { createLogger, type LogWrite } from "./log.ts";
import { startServer } from "./server.ts";
import { newDeviceKey, RawClient, signWith, temporaryDirectory, waitFor } from "./test-kit.ts";

const cliPath = new URL("./cli.ts", import.meta.url).pathname;
const logModule = new URL("./log.ts", import.meta.url).pathname;
const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function scratch(): string {
  const directory = temporaryDirectory();
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

/** JSON lines collected from one stream of a child process. */
function collectLines(stream: ReadableStream<Uint8Array>): string[] {
  const lines: string[] = [];
  void (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of stream) {
      buffered += decoder.decode(chunk, { stream: true });
      let newline = buffered.indexOf("\n");
      while (newline >= 0) {
        lines.push(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
        newline = buffered.indexOf("\n");
      }
    }
  })();
  return lines;
}

const events = (lines: readonly string[]) =>
  lines.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as Record<string, unknown>);

describe("streams", () => {
  test("a server process writes errors to stderr and info to stdout", async () => {
    const directory = scratch();
    const configFile = join(directory, "switchboard.toml");
    writeFileSync(configFile, "");
    const child = Bun.spawn(
      [process.execPath, cliPath, "start", "--port", "0", "--admin-port", "0", "--registration", "open"].concat([
        "--data-dir",
        join(directory, "data"),
        "--config",
        configFile,
      ]),
      { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, JOURNAL_STREAM: undefined } },
    );
    cleanups.push(() => {
      child.kill("SIGKILL");
    });
    const stdout = collectLines(child.stdout);
    const stderr = collectLines(child.stderr);
    await waitFor(() => events(stdout).some((line) => line.event === "server_started"), 10_000, "server_started");
    writeFileSync(configFile, "noSuchKey = 1\n");
    child.kill("SIGHUP");
    await waitFor(() => events(stderr).some((line) => line.event === "reload_failed"), 5000, "reload_failed on stderr");
    expect(events(stderr).find((line) => line.event === "reload_failed")!.level).toBe("error");
    expect(events(stdout).some((line) => line.event === "reload_failed")).toBe(false);
    expect(events(stdout).some((line) => line.event === "signal")).toBe(true); // info stays on stdout
    expect(events(stderr).some((line) => line.level === "info")).toBe(false);
  });

  test("under journald each line starts with its syslog priority; elsewhere lines are plain JSON", async () => {
    // The child names its own stderr as the journal stream, as systemd does with JOURNAL_STREAM.
    const script = `
      import { fstatSync } from "node:fs";
      import { standardStreams } from ${JSON.stringify(logModule)};
      const stat = fstatSync(2);
      const write = standardStreams(stat.dev + ":" + stat.ino);
      write('{"event":"e"}\\n', "error");
      write('{"event":"w"}\\n', "warn");
      write('{"event":"i"}\\n', "info");
    `;
    const child = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
    expect(await child.exited).toBe(0);
    expect(stderr).toBe('<3>{"event":"e"}\n<4>{"event":"w"}\n');
    expect(stdout).toBe('{"event":"i"}\n'); // stdout is another pipe: not the journal stream
  });
});

/** An in-process server whose log lines (with their levels) the test reads. */
async function loggedServer(options: { level: "debug" | "info"; registration?: "open" | "invite" }) {
  const lines: Array<{ level: string; entry: Record<string, unknown> }> = [];
  const write: LogWrite = (line, level) => lines.push({ level, entry: JSON.parse(line) });
  const dataDir = scratch();
  const server = await startServer(
    loadConfig({
      base: {
        port: 0,
        adminPort: 0,
        dataDir,
        registration: options.registration ?? "open",
        limits: { ...testLimits },
      },
    }),
    {
      log: createLogger(options.level, write, {
        limits: { linesPerSecond: 0.001, burstLines: 5, summaryIntervalMs: 300 },
      }),
    },
  );
  cleanups.push(() => server.stop({ timeoutMs: 500 }));
  const of = (event: string) => lines.filter((line) => line.entry.event === event).map((line) => line.entry);
  return { server, lines, of };
}

async function connect(port: number): Promise<RawClient> {
  const client = await RawClient.connect(port);
  cleanups.push(() => client.close());
  return client;
}

describe("peer lines", () => {
  test("bad logins from one peer: a few lines, then one log_suppressed line with the count; the counter sees all", async () => {
    const { server, of } = await loggedServer({ level: "info" });
    const attempts = 30;
    for (let index = 0; index < attempts; index++) {
      const client = await connect(server.port);
      client.sendStanza({
        kind: "login",
        account: 1,
        device: 1,
        signature: signWith(newDeviceKey(), loginMessage(client.nonce!, client.serverName, 1, 1)),
        serverName: client.serverName,
      });
      expect((await client.next("error")).code).toBe(ErrorCode.badCredentials);
    }
    expect(of("login_failed")[0]).toMatchObject({ code: ErrorCode.badCredentials, codeName: "badCredentials" });
    expect(of("login_failed")[0]!.peer).toBe("127.0.0.1");
    // Every attempt is either a line or counted in a log_suppressed line. On a quick host the 30 attempts fit in one
    // window (5 lines, then one log_suppressed with 25); on a loaded one they may span more windows, each of which
    // logs at most 5 lines before it suppresses.
    const suppressed = () =>
      of("log_suppressed").reduce(
        (sum, line) => sum + (line.suppressedEvent === "login_failed" ? Number(line.lines) : 0),
        0,
      );
    await waitFor(() => of("login_failed").length + suppressed() === attempts, 3000, "every attempt accounted for");
    expect(of("log_suppressed").length).toBeGreaterThan(0);
    expect(of("log_suppressed")[0]).toMatchObject({ level: "info", suppressedEvent: "login_failed" });
    // At most 5 lines per window: one window per log_suppressed line, and a last one that may not have filled.
    const windows = of("log_suppressed").length + 1;
    expect(of("login_failed").length).toBeLessThanOrEqual(5 * windows);
    expect(suppressed()).toBeGreaterThanOrEqual(attempts - 5 * windows);
    expect(server.context.metrics.loginFailures.get({ code: "badCredentials" })).toBe(attempts);
  });

  test("a refused registration is logged with its code, and stays open for another try", async () => {
    const { server, of } = await loggedServer({ level: "info", registration: "invite" });
    const client = await connect(server.port);
    const key = newDeviceKey();
    client.sendStanza({
      kind: "register",
      invite: "unknown-code",
      handle: "dave",
      publicKey: key.publicKey,
      signature: signWith(key, registerMessage(client.nonce!, client.serverName, "dave")),
      serverName: client.serverName,
    });
    expect((await client.next("error")).code).toBe(ErrorCode.inviteInvalid);
    await waitFor(() => of("login_refused").length === 1, 2000, "login_refused");
    expect(of("login_refused")[0]).toMatchObject({
      level: "info",
      code: ErrorCode.inviteInvalid,
      codeName: "inviteInvalid",
      peer: "127.0.0.1",
    });
    expect(client.closed).toBe(false);
  });
});

describe("connection events at debug level", () => {
  test("connected, logged_in and closed with who closed; a login timeout is closing with its code", async () => {
    const { server, of, lines } = await loggedServer({ level: "debug" });
    const alice = await connect(server.port);
    await alice.register("alice");
    alice.close();
    await waitFor(() => of("closed").length === 1, 2000, "closed");
    const session = of("connected")[0]!.session;
    expect(of("connected")[0]).toMatchObject({ level: "debug", peer: "127.0.0.1" });
    expect(of("logged_in")[0]).toMatchObject({ level: "debug", session, kind: "register", account: alice.account });
    expect(of("closed")[0]).toMatchObject({ level: "debug", session, by: "peer", account: alice.account });

    const silent = await connect(server.port); // never logs in
    await silent.waitClosed(testLimits.loginTimeoutMs + 2000);
    await waitFor(() => of("closed").length === 2, 2000, "second closed");
    expect(of("closing")[0]).toMatchObject({ level: "debug", code: ErrorCode.loginTimeout, codeName: "loginTimeout" });
    expect(of("closed")[1]).toMatchObject({ by: "server", account: 0 });
    expect(lines.every((line) => line.level === line.entry.level)).toBe(true);
  });

  test("at info level none of them is written", async () => {
    const { server, of } = await loggedServer({ level: "info" });
    const bob = await connect(server.port);
    await bob.register("bob");
    bob.close();
    await bob.waitClosed();
    await Bun.sleep(50);
    expect([...of("connected"), ...of("logged_in"), ...of("closed")]).toEqual([]);
  });
});
