// The CLI as a real process: invite codes issued by `switchboard invite` let devices register with a server in
// invite mode on the same data directory; `switchboard account` lists, shows and removes; --help, --version and
// check-config; unknown flags refused. (Failed starts: start-errors.test.ts.)

import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startServerProcess } from "./fixtures/server-process.ts";
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

/** The CLI with exactly these arguments (no --data-dir added), and extra environment variables. */
async function run(args: string[], env: Record<string, string> = {}) {
  const child = Bun.spawn([process.execPath, cliPath, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...withoutSwitchboardVariables(), ...env },
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { code, stdout, stderr };
}

function withoutSwitchboardVariables(): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("SWITCHBOARD_")));
}

const packageVersion = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
).version;

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

  test("--version, -v and version print the package version and Bun's", async () => {
    const outputs = await Promise.all([run(["--version"]), run(["-v"]), run(["version"])]);
    for (const output of outputs) {
      expect(output.code).toBe(0);
      expect(output.stdout).toBe(outputs[0]!.stdout);
      expect(output.stdout).toMatch(
        new RegExp(
          `^switchboard ${packageVersion.replaceAll(".", "\\.")} \\(bun ${Bun.version.replaceAll(".", "\\.")}(, commit [0-9a-f]{12})?\\)\n$`,
        ),
      );
    }
  });

  test("-h and --help at the top and on every command; help <command>", async () => {
    const commands = ["start", "check-config", "version", "invite", "account", "sessions", "kick", "drain", "doctor"];
    const cases: string[][] = [[], ["-h"], ["--help"], ["help"], ["help", "frobnicate"]];
    for (const command of [...commands, "chat"]) cases.push([command, "-h"], [command, "--help"], ["help", command]);
    // Four processes at a time: 35 starts of the CLI one after the other take most of the test timeout on 2 cores.
    const outputs: Array<Awaited<ReturnType<typeof run>>> = [];
    for (let index = 0; index < cases.length; index += 4) {
      outputs.push(...(await Promise.all(cases.slice(index, index + 4).map((args) => run(args)))));
    }
    cases.forEach((args, index) => {
      const output = outputs[index]!;
      if (args[1] === "frobnicate") {
        expect([args, output.code]).toEqual([args, 2]);
        return;
      }
      expect([args, output.code, output.stderr]).toEqual([args, 0, ""]);
      const command = args.length === 0 || args[0]!.startsWith("-") ? "help" : args[0] === "help" ? args[1] : args[0];
      if (command === undefined || command === "help") expect(output.stdout).toContain("Commands:");
      else expect(output.stdout).toContain(`switchboard ${command}`);
    });
  }, 60_000);

  test("unknown flags and stray arguments are refused in one line, exit 2, before anything runs", async () => {
    const cases: Array<[string[], string]> = [
      [
        ["start", "--no-such-flag", "1"],
        "switchboard: start: unknown option --no-such-flag (switchboard start --help)",
      ],
      [["start", "-n", "2"], "switchboard: start: unknown option -n (switchboard start --help)"],
      [["start", "extra"], "switchboard: start: unexpected argument extra (switchboard start --help)"],
      [["start", "--port"], "switchboard: start: Option '--port <value>' argument missing (switchboard start --help)"],
      [
        ["check-config", "--frob"],
        "switchboard: check-config: unknown option --frob (switchboard check-config --help)",
      ],
      [["version", "--data-dir", "x"], "switchboard: version: unknown option --data-dir (switchboard version --help)"],
      [["--frob"], "switchboard: unknown option --frob (switchboard --help lists the commands)"],
    ];
    for (const [args, line] of cases) {
      const output = await run(args);
      expect([args, output.code, output.stderr]).toEqual([args, 2, `${line}\n`]);
      expect(output.stdout).toBe("");
    }
    // The operator commands refuse unknown flags too (admin-command.ts): `invite -x 2` issues nothing.
    const invite = await run(["invite", "-x", "2", "--data-dir", dataDir]);
    expect(invite.code).toBe(2);
    expect(invite.stdout).toBe("");
  });

  test("check-config: config OK with each value's source; file, environment and flags as start reads them", async () => {
    const directory = temporaryDirectory();
    try {
      const file = join(directory, "switchboard.toml");
      writeFileSync(file, `# test\nport = 7500\nregistration = "open"\n\n[limits]\nqueueMessagesMax = 500\n`);
      const output = await run(
        ["check-config", "--config", file, "--data-dir", directory, "--rate-burst-stanzas", "900"],
        {
          SWITCHBOARD_PORT: "7600",
        },
      );
      expect(output.stderr).toBe("");
      expect(output.code).toBe(0);
      const lines = output.stdout.trimEnd().split("\n");
      expect(lines[0]).toBe(`config OK: ${file}`);
      expect(lines.slice(1).sort()).toEqual(
        [
          `  dataDir = ${JSON.stringify(directory)} (flag --data-dir)`,
          "  port = 7600 (environment SWITCHBOARD_PORT)",
          `  queueMessagesMax = 500 (file ${file} line 6)`,
          "  rateBurstStanzas = 900 (flag --rate-burst-stanzas)",
          `  registration = "open" (file ${file} line 3)`,
        ].sort(),
      );
      // SWITCHBOARD_CONFIG names the file as --config does.
      const fromEnvironment = await run(["check-config"], { SWITCHBOARD_CONFIG: file });
      expect(fromEnvironment.stdout.split("\n")[0]).toBe(`config OK: ${file}`);
      const none = await run(["check-config"]);
      expect(none.stdout).toBe("config OK: no config file (defaults)\n");
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  test("check-config: syntax errors with line and column, every problem with its value and source, exit 2", async () => {
    const directory = temporaryDirectory();
    try {
      const broken = join(directory, "broken.toml");
      writeFileSync(broken, "port = 7500\n\n[limits]\nqueueMessagesMax 500\n");
      const syntax = await run(["check-config", "--config", broken]);
      expect(syntax.code).toBe(2);
      expect(syntax.stderr).toBe(
        `switchboard: config file ${broken} line 4, column 18: TOML syntax error: Expected '=' after a key but found '5'\n`,
      );
      expect(syntax.stdout).toBe("");

      const unknown = join(directory, "unknown.toml");
      writeFileSync(unknown, 'port = "many"\nprot = 7\n[limits]\nqueueMessageMax = 5\n');
      const keys = await run(["check-config", "--config", unknown, "--registration", "maybe"], {
        SWITCHBOARD_FRAME_BYTES_MAX: "ten",
      });
      expect(keys.code).toBe(2);
      expect(keys.stderr.trimEnd().split("\n")).toEqual([
        `switchboard: config: port: expected a number, got "many" (file ${unknown} line 1)`,
        `switchboard: config: unknown key prot (file ${unknown} line 2)`,
        `switchboard: config: unknown limit queueMessageMax (file ${unknown} line 4)`,
        'switchboard: config: frameBytesMax: expected a number, got "ten" (environment SWITCHBOARD_FRAME_BYTES_MAX)',
      ]);

      const relation = join(directory, "relation.toml");
      writeFileSync(relation, "[limits]\nframeBytesMax = 4096\n");
      const related = await run(["check-config", "--config", relation, "--registration", "maybe"], {
        SWITCHBOARD_PAYLOAD_BYTES_MAX: "8192",
      });
      expect(related.code).toBe(2);
      expect(related.stderr.trimEnd().split("\n")).toEqual([
        'switchboard: config: registration: expected one of invite, open, closed, got maybe (registration = "maybe" from flag --registration)',
        `switchboard: config: limits: payloadBytesMax + 64 <= frameBytesMax does not hold (payloadBytesMax = 8192 from environment SWITCHBOARD_PAYLOAD_BYTES_MAX, frameBytesMax = 4096 from file ${relation} line 2)`,
      ]);
      const missing = await run(["check-config", "--config", join(directory, "nope.toml")]);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain("not found");
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  test("the running server tells its version: server_started, /healthz, switchboard_build_info", async () => {
    const directory = temporaryDirectory();
    // adminPort 0 turns the admin listener off: take a free port and hand it over.
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const adminPort = probe.port;
    probe.stop(true);
    const server = await startServerProcess({ "data-dir": directory, "admin-port": adminPort });
    try {
      const started = server.lines.find((line) => line.event === "server_started")!;
      expect(started.version).toBe(packageVersion);
      expect(started.adminPort).toBe(adminPort);
      const base = `http://127.0.0.1:${adminPort}`;
      const health = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5000) });
      expect(health.status).toBe(200);
      expect(await health.text()).toMatch(
        new RegExp(`^ok switchboard ${packageVersion.replaceAll(".", "\\.")} \\(bun `),
      );
      const metrics = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
      expect(metrics).toContain("# TYPE switchboard_build_info gauge");
      expect(metrics).toContain(`switchboard_build_info{version="${packageVersion}",bun="${Bun.version}"} 1\n`);
    } finally {
      // SIGKILL: the graceful stop (and its lame-duck wait) is not what this test is about.
      server.process.kill("SIGKILL");
      await server.waitExit();
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
