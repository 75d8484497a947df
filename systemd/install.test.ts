// The host files in systemd/: install.sh run as a real process into scratch roots (DESTDIR, --no-npm), the unit
// checked by `systemd-analyze verify` when it is installed and always against a list of known directives, and the
// sysctl, limits and config files checked line by line against each other and against the server.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../server/config.ts";
import { stopTimeoutMsDefault } from "../server/server.ts";
import { freePort } from "../server/test-kit.ts";

const repoRoot = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const systemdDir = join(repoRoot, "systemd");
const installTimeoutMs = 60_000;
/** What install.sh copies into the prefix (besides nothing else): keep in step with top_files and source_dirs. */
const installedTopFiles = ["package.json", "package-lock.json", "bunfig.toml"];
const installedDirs = ["protocol", "storage", "server", "client", "systemd"];
/** What install.sh leaves behind (its `excluded`): tests, test harnesses, the fuzzer and its vectors, test setup. */
function excludedFromInstall(relative: string): boolean {
  return (
    relative.endsWith(".test.ts") ||
    relative.endsWith("test-kit.ts") ||
    [
      "server/tls-test-certificate.ts",
      "client/delivery-suite.ts",
      "storage/store-conformance.ts",
      "protocol/fuzz.ts",
      "protocol/noise-fuzz.ts",
    ].includes(relative) ||
    relative.startsWith("protocol/vectors/") ||
    relative === "client/web/ensure-chromium.sh"
  );
}

/** Files under dir, relative to it, sorted. */
function filesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import("node:fs").Dirent[])
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1))
    .sort();
}

const scratchDirs: string[] = [];
function scratch(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `switchboard-${label}-`));
  scratchDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * A frozen copy of the repository's installable files: other work edits the tree while tests run, and an edit
 * between two installs would look like a change made by the second one.
 */
function sourceCopy(): string {
  const source = scratch("source");
  for (const file of installedTopFiles) cpSync(join(repoRoot, file), join(source, file));
  for (const dir of installedDirs) cpSync(join(repoRoot, dir), join(source, dir), { recursive: true });
  return source;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function install(source: string, root: string, ...args: string[]): Promise<Run> {
  const env: Record<string, string | undefined> = { ...process.env, DESTDIR: root };
  if (root === "") delete env.DESTDIR; // the real root: only ever with --dry-run
  const child = Bun.spawn(["bash", join(source, "systemd/install.sh"), ...args], {
    env,
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

async function installOk(source: string, root: string, ...args: string[]): Promise<Run> {
  const run = await install(source, root, ...args);
  if (run.code !== 0) throw new Error(`install.sh ${args.join(" ")} exited ${run.code}\n${run.stdout}\n${run.stderr}`);
  return run;
}

/** Every path under root with its type, mode, size, mtime and content: equal snapshots mean nothing was touched. */
function snapshot(root: string): Map<string, string> {
  const entries = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const stat = lstatSync(path);
      const content = stat.isFile() ? Bun.hash(readFileSync(path)).toString(16) : "";
      entries.set(path.slice(root.length), `${stat.mode.toString(8)} ${stat.size} ${stat.mtimeMs} ${content}`);
      if (stat.isDirectory()) walk(path);
    }
  };
  walk(root);
  return entries;
}

function mode(path: string): string {
  return (statSync(path).mode & 0o7777).toString(8).padStart(4, "0");
}

function read(path: string): string {
  return readFileSync(path, "utf8");
}

async function waitForFile(path: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`${path} did not appear within ${timeoutMs} ms`);
    await Bun.sleep(20);
  }
}

describe("install.sh in a scratch root", () => {
  let source: string;
  beforeAll(() => {
    source = sourceCopy();
  });

  test(
    "installs the code, the unit, the drop-ins, the config and the data directory",
    async () => {
      const root = scratch("root");
      const run = await installOk(source, root, "--no-npm");
      expect(run.stderr).toBe("");
      expect(run.stdout).toContain("not creating user switchboard"); // a staging root has no passwd
      expect(run.stdout).toContain("--no-npm: no /opt/switchboard/node_modules yet");
      expect(readdirSync(root).sort()).toEqual(["etc", "opt", "usr", "var"]);
      expect(run.stdout).toContain(
        "DESTDIR: not chowning (on the target: chown switchboard:switchboard /var/lib/switchboard)",
      );

      const prefix = join(root, "opt/switchboard");
      for (const file of [...installedTopFiles, "server/cli.ts", "protocol/limits.ts", "storage/index.ts"]) {
        expect(read(join(prefix, file))).toBe(read(join(source, file)));
        expect(mode(join(prefix, file))).toBe("0644");
      }
      // Every source file but the tests and what only they use; no test comes along.
      for (const dir of installedDirs) {
        const wanted = filesUnder(join(source, dir)).filter((file) => !excludedFromInstall(`${dir}/${file}`));
        expect([dir, filesUnder(join(prefix, dir))]).toEqual([dir, wanted]);
      }
      expect(filesUnder(prefix).filter((file) => file.endsWith(".test.ts"))).toEqual([]);
      expect(existsSync(join(prefix, "server/test-kit.ts"))).toBe(false);
      expect(existsSync(join(prefix, "protocol/vectors"))).toBe(false);
      expect(mode(join(prefix, "systemd/install.sh"))).toBe("0755");
      expect(existsSync(join(prefix, "node_modules"))).toBe(false);

      // The command on PATH: the wrapper with the prefix written in.
      const command = join(root, "usr/local/bin/switchboard");
      expect(mode(command)).toBe("0755");
      expect(read(command)).toBe(read(join(source, "systemd/switchboard.sh")));

      const placed: Array<[string, string]> = [
        ["etc/systemd/system/switchboard.service", "systemd/switchboard.service"],
        ["etc/sysctl.d/99-switchboard.conf", "systemd/99-switchboard.conf"],
        ["etc/security/limits.d/switchboard.conf", "systemd/limits.conf"],
        ["etc/switchboard/switchboard.toml", "systemd/switchboard.toml"],
      ];
      for (const [target, from] of placed) {
        expect(read(join(root, target))).toBe(read(join(source, from)));
        expect(mode(join(root, target))).toBe("0644");
      }
      expect(existsSync(join(root, "etc/systemd/system/switchboard.service.d"))).toBe(false); // low-port is opt-in
      expect(mode(join(root, "var/lib/switchboard"))).toBe("0700");
      expect(readdirSync(join(root, "var/lib/switchboard"))).toEqual([]);
      expect(mode(join(root, "etc/switchboard"))).toBe("0755");
    },
    installTimeoutMs,
  );

  test(
    "a second run changes nothing, and a dry run then lists nothing",
    async () => {
      const root = scratch("root");
      await installOk(source, root, "--no-npm");
      const before = snapshot(root);
      const again = await installOk(source, root, "--no-npm");
      expect(again.stdout).toContain("nothing to change");
      expect(again.stdout).not.toContain("+ ");
      expect(snapshot(root)).toEqual(before);
      const dry = await installOk(source, root, "--no-npm", "--dry-run");
      expect(dry.stdout).not.toContain("would run");
      expect(dry.stdout).toContain("nothing to change");
    },
    installTimeoutMs,
  );

  test(
    "an operator's config is never overwritten; a changed mode is put back",
    async () => {
      const root = scratch("root");
      await installOk(source, root, "--no-npm");
      const configPath = join(root, "etc/switchboard/switchboard.toml");
      writeFileSync(configPath, 'host = "10.0.0.7"\nport = 7420\n');
      const unitPath = join(root, "etc/systemd/system/switchboard.service");
      Bun.spawnSync(["chmod", "0600", unitPath]);
      const run = await installOk(source, root, "--no-npm");
      expect(read(configPath)).toBe('host = "10.0.0.7"\nport = 7420\n');
      expect(run.stdout).toContain(`keeping ${configPath}`);
      expect(mode(unitPath)).toBe("0644");
    },
    installTimeoutMs,
  );

  test(
    "an upgrade copies new files and removes files gone from the source",
    async () => {
      const ownSource = sourceCopy();
      const root = scratch("root");
      mkdirSync(join(ownSource, "server/extra"));
      writeFileSync(join(ownSource, "server/extra/module.ts"), "export const version = 1;\n");
      await installOk(ownSource, root, "--no-npm");
      const installed = join(root, "opt/switchboard/server/extra/module.ts");
      expect(read(installed)).toBe("export const version = 1;\n");

      writeFileSync(join(ownSource, "server/extra/module.ts"), "export const version = 2;\n");
      await installOk(ownSource, root, "--no-npm");
      expect(read(installed)).toBe("export const version = 2;\n");

      rmSync(join(ownSource, "server/extra"), { recursive: true });
      const run = await installOk(ownSource, root, "--no-npm");
      expect(run.stdout).toContain(`rm -f ${installed}`);
      expect(existsSync(join(root, "opt/switchboard/server/extra"))).toBe(false);
      expect(existsSync(join(root, "opt/switchboard/server/cli.ts"))).toBe(true);
    },
    installTimeoutMs,
  );

  test(
    "--dry-run prints every action and writes nothing",
    async () => {
      const root = scratch("root");
      const run = await installOk(source, root, "--no-npm", "--dry-run");
      expect(readdirSync(root)).toEqual([]);
      expect(run.stdout).toContain(
        `would run: install -D -m 0644 ${join(source, "systemd/99-switchboard.conf")} ${root}/etc/sysctl.d/99-switchboard.conf`,
      );
      expect(run.stdout).toContain(`${root}/etc/systemd/system/switchboard.service`);
      expect(run.stdout).toContain(`would run: install -d -m 0700 ${root}/var/lib/switchboard`);
      expect(run.stdout).toContain(`${root}/opt/switchboard/server/cli.ts`);
      expect(run.stdout).toContain("dry run:");
      const withNpm = await installOk(source, root, "--dry-run");
      expect(withNpm.stdout).toContain(`would run: npm ci --prefix ${root}/opt/switchboard --omit=dev`);
      expect(readdirSync(root)).toEqual([]);
    },
    installTimeoutMs,
  );

  test(
    "--uninstall removes what it installed and keeps the data and the config; --purge removes those too",
    async () => {
      const root = scratch("root");
      await installOk(source, root, "--no-npm");
      const database = join(root, "var/lib/switchboard/switchboard.sqlite");
      writeFileSync(database, "messages");
      const dropins = join(root, "etc/systemd/system/switchboard.service.d");
      mkdirSync(dropins);
      cpSync(join(source, "systemd/switchboard-low-port.conf"), join(dropins, "low-port.conf"));
      writeFileSync(join(dropins, "override.conf"), "[Service]\nNice=-5\n");
      // A reinstall keeps the low-port drop-in current once the operator has put it there.
      await installOk(source, root, "--no-npm");

      const dry = await installOk(source, root, "--uninstall", "--dry-run");
      expect(dry.stdout).toContain(`would run: rm -rf ${root}/opt/switchboard`);
      expect(existsSync(join(root, "opt/switchboard/server/cli.ts"))).toBe(true);

      const run = await installOk(source, root, "--uninstall");
      for (const gone of [
        "etc/systemd/system/switchboard.service",
        "etc/systemd/system/switchboard.service.d/low-port.conf",
        "etc/sysctl.d/99-switchboard.conf",
        "etc/security/limits.d/switchboard.conf",
        "opt/switchboard",
        "usr/local/bin/switchboard",
      ]) {
        expect(existsSync(join(root, gone))).toBe(false);
      }
      expect(read(database)).toBe("messages");
      expect(existsSync(join(root, "etc/switchboard/switchboard.toml"))).toBe(true);
      expect(existsSync(join(dropins, "override.conf"))).toBe(true); // the operator's own drop-in
      expect(run.stdout).toContain("keeping the data");

      const again = await installOk(source, root, "--uninstall");
      expect(again.stdout).toContain("nothing to remove");

      await installOk(source, root, "--uninstall", "--purge");
      for (const gone of ["var/lib/switchboard", "etc/switchboard", "etc/systemd/system/switchboard.service.d"]) {
        expect(existsSync(join(root, gone))).toBe(false);
      }
    },
    installTimeoutMs,
  );

  test(
    "--prefix moves the code and rewrites every path in the unit",
    async () => {
      const root = scratch("root");
      await installOk(source, root, "--no-npm", "--prefix", "/srv/switchboard/");
      expect(existsSync(join(root, "srv/switchboard/server/cli.ts"))).toBe(true);
      expect(existsSync(join(root, "opt"))).toBe(false);
      const unit = read(join(root, "etc/systemd/system/switchboard.service"));
      expect(unit).not.toContain("/opt/switchboard");
      expect(unit).toContain("\nWorkingDirectory=/srv/switchboard\n");
      expect(unit).toContain(
        "\nExecStart=/srv/switchboard/node_modules/.bin/bun /srv/switchboard/server/cli.ts start --config /etc/switchboard/switchboard.toml\n",
      );
      const command = read(join(root, "usr/local/bin/switchboard"));
      expect(command).toContain("\nprefix=/srv/switchboard\n");
      expect(command).not.toContain("/opt/switchboard");
      await installOk(source, root, "--uninstall", "--prefix", "/srv/switchboard");
      expect(existsSync(join(root, "srv/switchboard"))).toBe(false);
    },
    installTimeoutMs,
  );

  test(
    "--uninstall refuses to remove a prefix that is not a Switchboard install",
    async () => {
      const root = scratch("root");
      mkdirSync(join(root, "srv/other"), { recursive: true });
      writeFileSync(join(root, "srv/other/package.json"), '{ "name": "other" }\n');
      const run = await install(source, root, "--uninstall", "--prefix", "/srv/other");
      expect(run.code).toBe(1);
      expect(run.stderr).toContain("not removing");
      expect(existsSync(join(root, "srv/other/package.json"))).toBe(true);
    },
    installTimeoutMs,
  );

  test.skipIf(process.getuid?.() !== 0)(
    "a whole root file system gets the system user through useradd --root (needs root: skipped otherwise)",
    async () => {
      const root = scratch("root");
      mkdirSync(join(root, "etc"));
      for (const file of ["passwd", "group", "shadow", "gshadow"]) writeFileSync(join(root, "etc", file), "");
      const run = await installOk(source, root, "--no-npm");
      expect(run.stdout).toContain(`useradd --root ${root} --system`);
      const passwd = read(join(root, "etc/passwd"));
      expect(passwd).toMatch(
        /^switchboard:x:\d+:\d+:Switchboard messaging server:\/var\/lib\/switchboard:\/usr\/sbin\/nologin$/m,
      );
      expect(read(join(root, "etc/group"))).toMatch(/^switchboard:x:\d+:$/m);
      const before = snapshot(root);
      await installOk(source, root, "--no-npm");
      expect(snapshot(root)).toEqual(before);
    },
    installTimeoutMs,
  );

  test(
    "every import of an installed file resolves inside the install; packages come from dependencies, not dev ones",
    async () => {
      const root = scratch("root");
      await installOk(source, root, "--no-npm");
      const prefix = join(root, "opt/switchboard");
      const manifest = JSON.parse(read(join(prefix, "package.json"))) as { dependencies: Record<string, string> };
      const problems: string[] = [];
      let checked = 0;
      for (const file of filesUnder(prefix).filter((name) => name.endsWith(".ts"))) {
        const text = read(join(prefix, file));
        // Static imports and re-exports (type-only ones are erased), and dynamic imports with a literal start.
        const specifiers = [
          ...text.matchAll(/^(?:import|export)(?!\s+type\b)[^;]*?\sfrom\s+"([^"]+)"/gms),
          ...text.matchAll(/import\(\s*[`"]([^`"$]+)/g),
        ].map((match) => match[1]!);
        for (const specifier of specifiers) {
          checked++;
          if (specifier.startsWith(".")) {
            if (!existsSync(join(prefix, file, "..", specifier)))
              problems.push(`${file}: ${specifier} is not installed`);
          } else if (!specifier.startsWith("node:") && !specifier.startsWith("bun:")) {
            const name = specifier.startsWith("@")
              ? specifier.split("/").slice(0, 2).join("/")
              : specifier.split("/")[0]!;
            if (!(name in manifest.dependencies)) problems.push(`${file}: ${name} is not a runtime dependency`);
          }
        }
      }
      expect(problems).toEqual([]);
      expect(checked).toBeGreaterThan(200); // the pattern sees the imports at all
    },
    installTimeoutMs,
  );

  test(
    "an upgrade removes tests an older install copied; another package's switchboard command is left alone",
    async () => {
      const root = scratch("root");
      await installOk(source, root, "--no-npm");
      const stale = join(root, "opt/switchboard/server/auth.test.ts");
      mkdirSync(join(root, "opt/switchboard/protocol/vectors"), { recursive: true });
      writeFileSync(join(root, "opt/switchboard/protocol/vectors/golden.json"), "{}\n");
      writeFileSync(stale, "// copied by an older install.sh\n");
      const upgrade = await installOk(source, root, "--no-npm");
      expect(upgrade.stdout).toContain(`rm -f ${stale}`);
      expect(existsSync(stale)).toBe(false);
      expect(existsSync(join(root, "opt/switchboard/protocol/vectors"))).toBe(false);

      const other = scratch("root");
      mkdirSync(join(other, "usr/local/bin"), { recursive: true });
      writeFileSync(join(other, "usr/local/bin/switchboard"), "#!/bin/sh\necho another switchboard\n");
      const run = await installOk(source, other, "--no-npm");
      expect(run.stdout).toContain("is not Switchboard's: not replacing it");
      expect(read(join(other, "usr/local/bin/switchboard"))).toBe("#!/bin/sh\necho another switchboard\n");
      const elsewhere = await installOk(source, other, "--no-npm", "--bin-dir", "/usr/bin");
      expect(existsSync(join(other, "usr/bin/switchboard"))).toBe(true);
      await installOk(source, other, "--uninstall");
      expect(read(join(other, "usr/local/bin/switchboard"))).toBe("#!/bin/sh\necho another switchboard\n");
      expect(elsewhere.code).toBe(0);
    },
    installTimeoutMs,
  );

  test(
    "a dry run on the real root lists the chown of the data directory (the user may not exist yet) and changes nothing",
    async () => {
      const before = existsSync("/var/lib/switchboard") ? statSync("/var/lib/switchboard") : null;
      const run = await installOk(source, "", "--no-npm", "--dry-run");
      expect(run.stdout).toContain("dry run:");
      if (before === null) {
        expect(run.stdout).toContain("would run: install -d -m 0700 /var/lib/switchboard");
        expect(existsSync("/var/lib/switchboard")).toBe(false);
      }
      const owner = Bun.spawnSync(["stat", "-c", "%U:%G", "/var/lib/switchboard"]).stdout.toString().trim();
      if (owner !== "switchboard:switchboard") {
        expect(run.stdout).toContain("would run: chown switchboard:switchboard /var/lib/switchboard");
      }
      if (!existsSync("/usr/local/bin/switchboard")) {
        expect(run.stdout).toContain("/usr/local/bin/switchboard");
        expect(existsSync("/usr/local/bin/switchboard")).toBe(false);
      }
    },
    installTimeoutMs,
  );

  test(
    "the installed switchboard command finds the installed config, names the database, and drives the server",
    async () => {
      const root = scratch("root");
      await installOk(source, root, "--no-npm");
      const prefix = join(root, "opt/switchboard");
      // What npm ci would put there, and the paths as the target sees them (root is the target's /).
      symlinkSync(join(repoRoot, "node_modules"), join(prefix, "node_modules"));
      const command = join(root, "usr/local/bin/switchboard");
      writeFileSync(
        command,
        read(command)
          .replaceAll("/opt/switchboard", prefix)
          .replaceAll("/etc/switchboard", join(root, "etc/switchboard")),
      );
      const adminPort = freePort();
      const configPath = join(root, "etc/switchboard/switchboard.toml");
      const dataDir = join(root, "var/lib/switchboard");
      writeFileSync(
        configPath,
        read(configPath)
          .replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
          .replace("port = 7420", "port = 0")
          .replace("adminPort = 7421", `adminPort = ${adminPort}`)
          .replace('dataDir = "/var/lib/switchboard"', `dataDir = "${dataDir}"`)
          .replace('logLevel = "info"', 'logLevel = "warn"\nlameDuckMs = 0')
          .replace("listeners = 4", "listeners = 1"),
      );
      const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("SWITCHBOARD_")));
      const elsewhere = scratch("cwd");
      const run = async (...args: string[]): Promise<Run> => {
        const child = Bun.spawn([command, ...args], { cwd: elsewhere, env, stdout: "pipe", stderr: "pipe" });
        const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
        const [stdout, stderr, code] = await Promise.all([
          new Response(child.stdout).text(),
          new Response(child.stderr).text(),
          child.exited,
        ]);
        clearTimeout(timer);
        return { code, stdout, stderr };
      };

      // Before the first start there is no database, and the command does not make one in the wrong place.
      const early = await run("invite");
      expect(early.code).toBe(2);
      expect(early.stderr).toBe(
        `switchboard invite: no database at ${dataDir}/switchboard.sqlite (dataDir from ${configPath}); only \`switchboard start\` creates one: check --config or --data-dir\n`,
      );
      expect(readdirSync(elsewhere)).toEqual([]);
      expect(readdirSync(dataDir)).toEqual([]);

      const server = Bun.spawn([command, "start"], { cwd: elsewhere, env, stdout: "pipe", stderr: "pipe" });
      const killer = setTimeout(() => server.kill("SIGKILL"), 20_000);
      try {
        await waitForFile(join(dataDir, "admin.token"), 10_000);
        const issued = await run("invite", "--count", "2");
        expect(issued.code).toBe(0);
        expect(issued.stdout.trim().split("\n")).toHaveLength(2);
        expect(issued.stderr).toBe(`database: ${dataDir}/switchboard.sqlite\n`);
        const listed = await run("invite", "list");
        expect(listed.stdout).toContain("2 invites, 2 open");
        expect((await run("sessions")).stdout).toBe("0 sessions: 0 preamble, 0 authenticating, 0 ready, 0 closed\n");
        const drained = await run("drain");
        expect(drained.stdout).toBe("drain started: 0 sessions get a goaway, then the server exits\n");
        expect(await server.exited).toBe(0);
      } finally {
        clearTimeout(killer);
        server.kill();
      }
      expect(readdirSync(elsewhere)).toEqual([]);
    },
    installTimeoutMs,
  );

  test("usage: --help, and bad arguments exit 2 with a message", async () => {
    const root = scratch("root");
    const help = await installOk(source, root, "--help");
    expect(help.stdout).toContain("--uninstall");
    for (const args of [
      ["--bogus"],
      ["--purge"],
      ["--prefix", "relative/dir"],
      ["--prefix", "/"],
      ["--prefix"],
      ["--bin-dir", "bin"],
      ["--bin-dir"],
    ]) {
      const run = await install(source, root, ...args);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain("install.sh:");
    }
    const badPrefix = await install(source, root, "--prefix", "/opt/a b");
    expect(badPrefix.code).toBe(2);
    expect(readdirSync(root)).toEqual([]);
  });
});

// --- The unit --------------------------------------------------------------------------------------------------

/**
 * Directive names systemd 252 (Debian 12) knows in each section of a service unit, from
 * `/usr/lib/systemd/systemd --dump-configuration-items`. The check below catches typos where systemd-analyze is not
 * installed; systemd itself would only log "Unknown key" and carry on.
 */
const knownDirectives: Record<string, ReadonlySet<string>> = {
  Unit: words(
    "After AllowIsolate AssertACPower AssertArchitecture AssertCPUFeature AssertCPUPressure AssertCPUs",
    "AssertCapability AssertControlGroupController AssertCredential AssertDirectoryNotEmpty AssertEnvironment",
    "AssertFileIsExecutable AssertFileNotEmpty AssertFirstBoot AssertGroup AssertHost AssertIOPressure",
    "AssertKernelCommandLine AssertKernelVersion AssertMemory AssertMemoryPressure AssertNeedsUpdate",
    "AssertOSRelease AssertPathExists AssertPathExistsGlob AssertPathIsDirectory AssertPathIsEncrypted",
    "AssertPathIsMountPoint AssertPathIsReadWrite AssertPathIsSymbolicLink AssertSecurity AssertUser",
    "AssertVirtualization Before BindTo BindsTo CollectMode ConditionACPower ConditionArchitecture",
    "ConditionCPUFeature ConditionCPUPressure ConditionCPUs ConditionCapability ConditionControlGroupController",
    "ConditionCredential ConditionDirectoryNotEmpty ConditionEnvironment ConditionFileIsExecutable",
    "ConditionFileNotEmpty ConditionFirmware ConditionFirstBoot ConditionGroup ConditionHost ConditionIOPressure",
    "ConditionKernelCommandLine ConditionKernelVersion ConditionMemory ConditionMemoryPressure",
    "ConditionNeedsUpdate ConditionOSRelease ConditionPathExists ConditionPathExistsGlob",
    "ConditionPathIsDirectory ConditionPathIsEncrypted ConditionPathIsMountPoint ConditionPathIsReadWrite",
    "ConditionPathIsSymbolicLink ConditionSecurity ConditionUser ConditionVirtualization Conflicts",
    "DefaultDependencies Description Documentation FailureAction FailureActionExitStatus IgnoreOnIsolate",
    "JobRunningTimeoutSec JobTimeoutAction JobTimeoutRebootArgument JobTimeoutSec JoinsNamespaceOf OnFailure",
    "OnFailureIsolate OnFailureJobMode OnSuccess OnSuccessJobMode PartOf PropagateReloadFrom PropagateReloadTo",
    "PropagatesReloadTo PropagatesStopTo RebootArgument RefuseManualStart RefuseManualStop ReloadPropagatedFrom",
    "Requires RequiresMountsFor RequiresOverridable Requisite RequisiteOverridable SourcePath StartLimitAction",
    "StartLimitBurst StartLimitInterval StartLimitIntervalSec StopPropagatedFrom StopWhenUnneeded SuccessAction",
    "SuccessActionExitStatus Upholds Wants",
  ),
  Service: words(
    "AllowedCPUs AllowedMemoryNodes AmbientCapabilities AppArmorProfile BPFProgram BindPaths BindReadOnlyPaths",
    "BlockIOAccounting BlockIODeviceWeight BlockIOReadBandwidth BlockIOWeight BlockIOWriteBandwidth BusName",
    "CPUAccounting CPUAffinity CPUQuota CPUQuotaPeriodSec CPUSchedulingPolicy CPUSchedulingPriority",
    "CPUSchedulingResetOnFork CPUShares CPUWeight CacheDirectory CacheDirectoryMode CapabilityBoundingSet",
    "ConfigurationDirectory ConfigurationDirectoryMode CoredumpFilter DefaultMemoryLow DefaultMemoryMin Delegate",
    "DeviceAllow DevicePolicy DisableControllers DynamicUser Environment EnvironmentFile ExecCondition ExecPaths",
    "ExecReload ExecSearchPath ExecStart ExecStartPost ExecStartPre ExecStop ExecStopPost ExitType",
    "ExtensionDirectories ExtensionImages FailureAction FileDescriptorStoreMax FinalKillSignal Group",
    "GuessMainPID IOAccounting IODeviceLatencyTargetSec IODeviceWeight IOReadBandwidthMax IOReadIOPSMax",
    "IOSchedulingClass IOSchedulingPriority IOWeight IOWriteBandwidthMax IOWriteIOPSMax IPAccounting",
    "IPAddressAllow IPAddressDeny IPCNamespacePath IPEgressFilterPath IPIngressFilterPath IgnoreSIGPIPE",
    "InaccessibleDirectories InaccessiblePaths KeyringMode KillMode KillSignal LimitAS LimitCORE LimitCPU",
    "LimitDATA LimitFSIZE LimitLOCKS LimitMEMLOCK LimitMSGQUEUE LimitNICE LimitNOFILE LimitNPROC LimitRSS",
    "LimitRTPRIO LimitRTTIME LimitSIGPENDING LimitSTACK LoadCredential LoadCredentialEncrypted LockPersonality",
    "LogExtraFields LogLevelMax LogNamespace LogRateLimitBurst LogRateLimitIntervalSec LogsDirectory",
    "LogsDirectoryMode ManagedOOMMemoryPressure ManagedOOMMemoryPressureLimit ManagedOOMPreference",
    "ManagedOOMSwap MemoryAccounting MemoryDenyWriteExecute MemoryHigh MemoryLimit MemoryLow MemoryMax MemoryMin",
    "MemorySwapMax MountAPIVFS MountFlags MountImages NUMAMask NUMAPolicy NetworkNamespacePath Nice NoExecPaths",
    "NoNewPrivileges NonBlocking NotifyAccess OOMPolicy OOMScoreAdjust PAMName PIDFile PassEnvironment",
    "PermissionsStartOnly Personality PrivateDevices PrivateIPC PrivateMounts PrivateNetwork PrivateTmp",
    "PrivateUsers ProcSubset ProtectClock ProtectControlGroups ProtectHome ProtectHostname ProtectKernelLogs",
    "ProtectKernelModules ProtectKernelTunables ProtectProc ProtectSystem ReadOnlyDirectories ReadOnlyPaths",
    "ReadWriteDirectories ReadWritePaths RebootArgument RemainAfterExit RemoveIPC Restart RestartForceExitStatus",
    "RestartKillSignal RestartPreventExitStatus RestartSec RestrictAddressFamilies RestrictFileSystems",
    "RestrictNamespaces RestrictNetworkInterfaces RestrictRealtime RestrictSUIDSGID RootDirectory",
    "RootDirectoryStartOnly RootHash RootHashSignature RootImage RootImageOptions RootVerity RuntimeDirectory",
    "RuntimeDirectoryMode RuntimeDirectoryPreserve RuntimeMaxSec RuntimeRandomizedExtraSec SELinuxContext",
    "SecureBits SendSIGHUP SendSIGKILL SetCredential SetCredentialEncrypted Slice SmackProcessLabel",
    "SocketBindAllow SocketBindDeny Sockets StandardError StandardInput StandardInputData StandardInputText",
    "StandardOutput StartLimitAction StartLimitBurst StartLimitInterval StartupAllowedCPUs",
    "StartupAllowedMemoryNodes StartupBlockIOWeight StartupCPUShares StartupCPUWeight StartupIOWeight",
    "StateDirectory StateDirectoryMode SuccessExitStatus SupplementaryGroups SyslogFacility SyslogIdentifier",
    "SyslogLevel SyslogLevelPrefix SystemCallArchitectures SystemCallErrorNumber SystemCallFilter SystemCallLog",
    "TTYColumns TTYPath TTYReset TTYRows TTYVHangup TTYVTDisallocate TasksAccounting TasksMax",
    "TemporaryFileSystem TimeoutAbortSec TimeoutCleanSec TimeoutSec TimeoutStartFailureMode TimeoutStartSec",
    "TimeoutStopFailureMode TimeoutStopSec TimerSlackNSec Type UMask USBFunctionDescriptors USBFunctionStrings",
    "UnsetEnvironment User UtmpIdentifier UtmpMode WatchdogSec WatchdogSignal WorkingDirectory",
  ),
  Install: words("Alias Also DefaultInstance RequiredBy WantedBy"),
};

/** Directives newer than systemd 252 that the unit uses, with the version that added them. */
const newerDirectives: Record<string, number> = { RestartSteps: 254, RestartMaxDelaySec: 254 };

function words(...lines: string[]): ReadonlySet<string> {
  return new Set(lines.join(" ").split(" "));
}

interface Directive {
  section: string;
  key: string;
  value: string;
  line: number;
  /** The previous non-blank line is a comment: every directive says why it is there. */
  commented: boolean;
}

/** A small INI reader for unit files: sections, key=value, comments (# ;), continuation lines ending in "\". */
function parseUnit(text: string): Directive[] {
  const directives: Directive[] = [];
  let section = "";
  let previous = "";
  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!.trim();
    if (line === "") continue;
    if (line.startsWith("#") || line.startsWith(";")) {
      previous = "comment";
      continue;
    }
    const header = line.match(/^\[([A-Za-z]+)\]$/);
    if (header !== null) {
      section = header[1]!;
      previous = "section";
      continue;
    }
    const assignment = line.match(/^([A-Za-z][A-Za-z0-9]*)=(.*)$/);
    if (assignment === null) throw new Error(`line ${index + 1}: not a section, comment or key=value: ${line}`);
    if (section === "") throw new Error(`line ${index + 1}: ${assignment[1]} before any section`);
    let value = assignment[2]!;
    const start = index;
    while (value.endsWith("\\") && index + 1 < lines.length) value = `${value.slice(0, -1)} ${lines[++index]!.trim()}`;
    directives.push({ section, key: assignment[1]!, value, line: start + 1, commented: previous === "comment" });
    previous = "directive";
  }
  return directives;
}

function checkDirectives(name: string, text: string, sections: string[]): Directive[] {
  const directives = parseUnit(text);
  const problems: string[] = [];
  for (const directive of directives) {
    const where = `${name}:${directive.line} ${directive.key}`;
    if (!sections.includes(directive.section)) problems.push(`${where}: section [${directive.section}] not expected`);
    const known =
      knownDirectives[directive.section]?.has(directive.key) ||
      (directive.section === "Service" && directive.key in newerDirectives);
    if (!known) problems.push(`${where}: not a systemd directive of [${directive.section}]`);
    if (!directive.commented) problems.push(`${where}: no comment above it saying why`);
  }
  expect(problems).toEqual([]);
  return directives;
}

function directiveValue(directives: Directive[], key: string): string {
  const found = directives.filter((directive) => directive.key === key);
  expect(found.length).toBeGreaterThan(0);
  return found.at(-1)!.value;
}

const unitText = read(join(systemdDir, "switchboard.service"));
const lowPortText = read(join(systemdDir, "switchboard-low-port.conf"));

describe("switchboard.service", () => {
  test("every directive is known to systemd, in its section, with a comment saying why", () => {
    const unit = checkDirectives("switchboard.service", unitText, ["Unit", "Service", "Install"]);
    const lowPort = checkDirectives("switchboard-low-port.conf", lowPortText, ["Service"]);
    expect(lowPort.map((directive) => `${directive.key}=${directive.value}`)).toEqual([
      "AmbientCapabilities=CAP_NET_BIND_SERVICE",
      "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    ]);

    const expected: Record<string, string> = {
      User: "switchboard",
      WorkingDirectory: "/opt/switchboard",
      ExecStart:
        "/opt/switchboard/node_modules/.bin/bun /opt/switchboard/server/cli.ts start --config /etc/switchboard/switchboard.toml",
      ExecReload: "/bin/kill -HUP $MAINPID",
      KillSignal: "SIGTERM",
      Restart: "on-failure",
      StateDirectory: "switchboard",
      ConfigurationDirectory: "switchboard",
      NoNewPrivileges: "yes",
      ProtectSystem: "strict",
      ProtectHome: "yes",
      PrivateTmp: "yes",
      PrivateDevices: "yes",
      ProtectKernelTunables: "yes",
      ProtectKernelModules: "yes",
      ProtectControlGroups: "yes",
      RestrictAddressFamilies: "AF_INET AF_INET6 AF_UNIX",
      RestrictNamespaces: "yes",
      LockPersonality: "yes",
      SystemCallArchitectures: "native",
      CapabilityBoundingSet: "",
    };
    for (const [key, value] of Object.entries(expected)) expect([key, directiveValue(unit, key)]).toEqual([key, value]);
    // Bun's JIT needs writable+executable memory: this hardening option would crash it at start.
    expect(unit.some((directive) => directive.key === "MemoryDenyWriteExecute")).toBe(false);
    expect(unit.some((directive) => directive.key === "AmbientCapabilities")).toBe(false);
    for (const key of ["LimitNOFILE", "TasksMax", "RestartSec", "RestartSteps", "RestartMaxDelaySec"])
      directiveValue(unit, key);
  });

  test("the unit agrees with the server: stop timeout, config exit code, paths, data directory", async () => {
    const unit = parseUnit(unitText);
    const timeoutStop = directiveValue(unit, "TimeoutStopSec").match(/^(\d+)s$/);
    expect(timeoutStop).not.toBeNull();
    expect(Number(timeoutStop![1]) * 1000).toBeGreaterThan(stopTimeoutMsDefault + 5_000);

    // The paths ExecStart names exist in an install (the repository plus node_modules).
    const [bun, cli, ...args] = directiveValue(unit, "ExecStart").split(" ");
    expect(existsSync(bun!.replace("/opt/switchboard", repoRoot))).toBe(true);
    expect(existsSync(cli!.replace("/opt/switchboard", repoRoot))).toBe(true);
    expect(args).toEqual(["start", "--config", "/etc/switchboard/switchboard.toml"]);

    // RestartPreventExitStatus=2 is the CLI's exit code for a bad config: no restart loop on a typo.
    expect(directiveValue(unit, "RestartPreventExitStatus")).toBe("2");
    const badConfig = Bun.spawn(
      [process.execPath, join(repoRoot, "server/cli.ts"), "start", "--config", "/nonexistent.toml"],
      {
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    expect(await badConfig.exited).toBe(2);

    // The example config stores data where StateDirectory= points, listens publicly, keeps admin on loopback.
    const config = loadConfig({ file: join(systemdDir, "switchboard.toml") });
    expect(config.dataDir).toBe(`/var/lib/${directiveValue(unit, "StateDirectory")}`);
    expect(config.host).toBe("0.0.0.0");
    // A public address, so the transport is encrypted: Noise (or TLS) is what allows it without insecure = true.
    expect(config.tcpEncryption).toBe("noise");
    expect(config.adminHost).toBe("127.0.0.1");
    expect(config.port).toBeGreaterThanOrEqual(1024); // no capability needed without the low-port drop-in
  });

  test("systemd-analyze verify accepts the unit and the low-port drop-in (directive list only without it)", () => {
    const analyze = Bun.which("systemd-analyze");
    if (analyze === null) {
      // The directive list above has checked every key; say so instead of passing quietly.
      console.warn("systemd-analyze not found (apt-get install systemd): verified with the directive list only");
      expect(parseUnit(unitText).length).toBeGreaterThan(0);
      return;
    }
    const version = Number(
      Bun.spawnSync([analyze, "--version"])
        .stdout.toString()
        .match(/^systemd (\d+)/)?.[1] ?? Number.NaN,
    );
    expect(version).toBeGreaterThan(0);

    // A copy whose ExecStart names binaries that exist here (verify checks that they are executable).
    const dir = scratch("verify");
    const unitPath = join(dir, "switchboard.service");
    writeFileSync(unitPath, unitText.replaceAll("/opt/switchboard", repoRoot));
    mkdirSync(join(dir, "switchboard.service.d"));
    writeFileSync(join(dir, "switchboard.service.d/low-port.conf"), lowPortText);
    const verify = Bun.spawnSync([analyze, "verify", "--man=no", unitPath], { stdout: "pipe", stderr: "pipe" });
    const output = `${verify.stdout.toString()}${verify.stderr.toString()}`;
    const tolerated = Object.entries(newerDirectives)
      .filter(([, since]) => version < since)
      .map(([key]) => `Unknown key '${key}' in section [Service], ignoring.`);
    const complaints = output
      .split("\n")
      .filter((line) => line.includes("switchboard"))
      .filter((line) => !tolerated.some((allowed) => line.endsWith(allowed)));
    expect(complaints).toEqual([]);
    expect(verify.exitCode).toBe(0);
    console.info(`systemd-analyze verify (systemd ${version}) accepted switchboard.service and low-port.conf`);

    // The hardening holds up in systemd's own scoring (offline scoring needs systemd 250).
    if (version >= 250) {
      const security = Bun.spawnSync([analyze, "security", "--offline=true", "--no-pager", unitPath], {
        stdout: "pipe",
        stderr: "pipe",
      });
      const exposure = Number(security.stdout.toString().match(/Overall exposure level for \S+: ([\d.]+)/)?.[1]);
      expect(exposure).toBeLessThanOrEqual(4);
    }
  });
});

// --- The sysctl, limits and config files ----------------------------------------------------------------------

describe("99-switchboard.conf and limits.conf", () => {
  const sysctlText = read(join(systemdDir, "99-switchboard.conf"));

  /** key -> value, with "-" (ignore when absent) noted. Every assignment has a comment above it. */
  function parseSysctl(text: string): Map<string, { value: string; optional: boolean }> {
    const settings = new Map<string, { value: string; optional: boolean }>();
    let previous = "";
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (line === "") continue;
      if (line.startsWith("#") || line.startsWith(";")) {
        previous = "comment";
        continue;
      }
      const match = line.match(/^(-?)([a-z0-9_.-]+) = (\S.*)$/);
      expect([line, match !== null]).toEqual([line, true]);
      expect([line, previous]).toEqual([line, "comment"]);
      settings.set(match![2]!, { value: match![3]!, optional: match![1] === "-" });
      previous = "setting";
    }
    return settings;
  }

  test("every setting exists in this kernel (or may be absent), has a comment, and fits the others", () => {
    const settings = parseSysctl(sysctlText);
    const numbers = (key: string) => settings.get(key)!.value.split(/\s+/).map(Number);
    for (const [key, { optional }] of settings) {
      if (!optional) expect([key, existsSync(`/proc/sys/${key.replaceAll(".", "/")}`)]).toEqual([key, true]);
    }
    for (const key of [
      "fs.file-max",
      "fs.nr_open",
      "net.core.somaxconn",
      "net.ipv4.tcp_max_syn_backlog",
      "net.core.netdev_max_backlog",
      "net.ipv4.ip_local_port_range",
      "net.ipv4.tcp_mem",
      "net.ipv4.tcp_rmem",
      "net.ipv4.tcp_wmem",
      "net.ipv4.tcp_keepalive_time",
      "net.ipv4.tcp_keepalive_intvl",
      "net.ipv4.tcp_keepalive_probes",
      "net.ipv4.tcp_fin_timeout",
      "net.netfilter.nf_conntrack_max",
    ]) {
      expect([key, settings.has(key)]).toEqual([key, true]);
    }
    expect(settings.get("net.netfilter.nf_conntrack_max")!.optional).toBe(true); // absent without conntrack

    // The unit's LimitNOFILE= fits under fs.nr_open, which fits under fs.file-max.
    const limitNofile = Number(directiveValue(parseUnit(unitText), "LimitNOFILE"));
    const [nrOpen] = numbers("fs.nr_open");
    const [fileMax] = numbers("fs.file-max");
    expect(limitNofile).toBeLessThanOrEqual(nrOpen!);
    expect(nrOpen!).toBeLessThanOrEqual(fileMax!);
    expect(numbers("net.netfilter.nf_conntrack_max")[0]).toBeGreaterThanOrEqual(loadConfig({}).limits.sessionsMax);
    for (const key of ["net.ipv4.tcp_mem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]) {
      const [low, middle, high] = numbers(key);
      expect([key, low! <= middle! && middle! <= high!]).toEqual([key, true]);
    }

    // The example config's ports are outside the ephemeral range or reserved.
    const config = loadConfig({ file: join(systemdDir, "switchboard.toml") });
    const [portLow, portHigh] = numbers("net.ipv4.ip_local_port_range");
    const [reservedLow, reservedHigh] = settings.get("net.ipv4.ip_local_reserved_ports")!.value.split("-").map(Number);
    for (const port of [config.port, config.adminPort]) {
      const ephemeral = port >= portLow! && port <= portHigh!;
      const reserved = port >= reservedLow! && port <= reservedHigh!;
      expect([port, !ephemeral || reserved]).toEqual([port, true]);
    }
  });

  test("limits.conf gives the service user the unit's open-file limit, within fs.nr_open", () => {
    const limitNofile = directiveValue(parseUnit(unitText), "LimitNOFILE");
    const entries = read(join(systemdDir, "limits.conf"))
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "" && !line.startsWith("#"))
      .map((line) => line.split(/\s+/));
    expect(entries).toEqual([
      ["switchboard", "soft", "nofile", limitNofile],
      ["switchboard", "hard", "nofile", limitNofile],
    ]);
  });
});
