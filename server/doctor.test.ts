// `switchboard doctor` against fake hosts (a small one fails with the lines that fix it; one tuned with the files in
// systemd/ passes) and once against this real host, as a process.

import { afterAll, describe, expect, spyOn, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "./config.ts";
import {
  type DeploymentReader,
  type DoctorCheck,
  type DoctorReport,
  descriptorHeadroom,
  diskFreeBytesFailMin,
  formatDoctorReport,
  type HostReader,
  notrackCommand,
  parseNofile,
  procDeploymentReader,
  processBaselineBytes,
  runDoctor,
  runDoctorCommand,
  sessionMemoryBytes,
} from "./doctor.ts";

const repoRoot = new URL("..", import.meta.url).pathname;
const doctorPath = new URL("./doctor.ts", import.meta.url).pathname;
const config = loadConfig({});

function limitsText(soft: number | "unlimited", hard: number | "unlimited"): string {
  return [
    "Limit                     Soft Limit           Hard Limit           Units     ",
    "Max processes             96365                96365                processes ",
    `Max open files            ${String(soft).padEnd(21)}${String(hard).padEnd(21)}files     `,
    "",
  ].join("\n");
}

/** A fake host: /proc/sys values by path ("fs/nr_open"); a missing path reads as absent. */
function fakeHost(sysctls: Record<string, string>, limits: string | undefined): HostReader {
  return {
    limitsOf: "the fake process",
    readSysctl: (path) => sysctls[path],
    readLimits: () => limits,
    pageBytes: () => 4096,
  };
}

function check(report: DoctorReport, name: string): DoctorCheck {
  const found = report.checks.find((entry) => entry.name === name);
  if (found === undefined) throw new Error(`no check ${name} in ${report.checks.map((entry) => entry.name)}`);
  return found;
}

const scratchDirs: string[] = [];
afterAll(() => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

/** An installation with nothing wrong: config loads, data directory tight, disk ample, ports free. */
const fineDeployment: DeploymentReader = {
  configSource: "test",
  dataDirectory: () => ({ isDirectory: true, mode: 0o40700, looseFiles: [], files: 5 }),
  disk: () => ({ freeBytes: 100 * 2 ** 30, totalBytes: 200 * 2 ** 30, path: "/var/lib" }),
  bind: () => "free",
  serverPid: () => undefined,
};

const checkNames = [
  "RLIMIT_NOFILE (hard)",
  "fs.nr_open",
  "fs.file-max",
  "net.core.somaxconn",
  "net.ipv4.ip_local_port_range",
  "net.ipv4.tcp_mem",
  "net.netfilter.nf_conntrack_max",
];

const smallHost = fakeHost(
  {
    "fs/nr_open": "524288\n",
    "fs/file-max": "100000\n",
    "net/core/somaxconn": "128\n",
    "net/ipv4/ip_local_port_range": "1024\t65535\n",
    "net/ipv4/ip_local_reserved_ports": "\n",
    "net/ipv4/tcp_mem": "10000\t20000\t30000\n",
    "net/netfilter/nf_conntrack_max": "65536\n",
  },
  limitsText(1024, 4096),
);

/** The host as systemd/99-switchboard.conf and the unit's LimitNOFILE= leave it. */
function tunedHost(): HostReader {
  const sysctls: Record<string, string> = {};
  for (const raw of readFileSync(`${repoRoot}systemd/99-switchboard.conf`, "utf8").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [key, value] = line.replace(/^-/, "").split("=") as [string, string];
    sysctls[key.trim().replaceAll(".", "/")] = `${value.trim().replace(/ +/g, "\t")}\n`;
  }
  const unit = readFileSync(`${repoRoot}systemd/switchboard.service`, "utf8");
  const limitNofile = Number(unit.match(/^LimitNOFILE=(\d+)$/m)?.[1]);
  expect(limitNofile).toBeGreaterThan(0);
  return fakeHost(sysctls, limitsText(limitNofile, limitNofile));
}

describe("doctor on fake hosts", () => {
  test("a small host fails, and every failing check says how to fix it", () => {
    const report = runDoctor({ config, read: smallHost });
    expect(report.status).toBe("fail");
    expect(report.sessions).toBe(1_000_000);
    expect(report.descriptorsNeeded).toBe(1_000_000 + descriptorHeadroom);
    expect(report.checks.map((entry) => entry.name)).toEqual(checkNames);

    const nofile = check(report, "RLIMIT_NOFILE (hard)");
    expect(nofile.status).toBe("fail");
    expect(nofile.found).toBe("4,096 (soft 1,024)");
    expect(nofile.fix[0]).toStartWith("LimitNOFILE=2097152 ");
    expect(nofile.note).toContain("the fake process");

    const nrOpen = check(report, "fs.nr_open");
    expect(nrOpen.status).toBe("fail");
    expect(nrOpen.fix).toEqual([
      "sysctl -w fs.nr_open=2097152",
      "fs.nr_open = 2097152   # in /etc/sysctl.d/99-switchboard.conf",
    ]);
    expect(check(report, "fs.file-max").fix[0]).toBe("sysctl -w fs.file-max=4194304");

    const somaxconn = check(report, "net.core.somaxconn");
    expect(somaxconn.status).toBe("fail"); // below Bun's own backlog of 512
    expect(somaxconn.fix[0]).toBe("sysctl -w net.core.somaxconn=65535");

    const ports = check(report, "net.ipv4.ip_local_port_range");
    expect(ports.status).toBe("warn"); // 7420 and 7421 are inside 1024-65535 and not reserved
    expect(ports.fix[0]).toBe("sysctl -w net.ipv4.ip_local_reserved_ports=7420,7421");

    const tcpMemory = check(report, "net.ipv4.tcp_mem");
    expect(tcpMemory.status).toBe("fail");
    expect(tcpMemory.needed).toBe("pressure >= 1000000");
    expect(tcpMemory.fix[0]).toBe('sysctl -w net.ipv4.tcp_mem="1048576 1572864 2097152"');

    const conntrack = check(report, "net.netfilter.nf_conntrack_max");
    expect(conntrack.status).toBe("fail");
    expect(conntrack.fix).toContain(
      "-net.netfilter.nf_conntrack_max = 2097152   # in /etc/sysctl.d/99-switchboard.conf",
    );
    expect(conntrack.fix.join("\n")).toContain(notrackCommand(7420));

    for (const entry of report.checks) {
      if (entry.status !== "ok") expect(entry.fix.length).toBeGreaterThan(0);
    }
    const table = formatDoctorReport(report);
    expect(table).toContain("fix: sysctl -w fs.nr_open=2097152");
    expect(table).toEndWith("6 fail, 1 warn, 0 ok\n");
  });

  test("a host tuned with the shipped unit and sysctl drop-in passes", () => {
    const report = runDoctor({ config, read: tunedHost() });
    expect(report.checks.map((entry) => [entry.name, entry.status])).toEqual(checkNames.map((name) => [name, "ok"]));
    expect(report.status).toBe("ok");
    expect(formatDoctorReport(report)).toEndWith("0 fail, 0 warn, 7 ok\n");
  });

  test("in-between values warn; absent conntrack is fine", () => {
    const report = runDoctor({
      config,
      read: fakeHost(
        {
          "fs/nr_open": "1073741816",
          "fs/file-max": "9223372036854775807",
          "net/core/somaxconn": "1024",
          "net/ipv4/ip_local_port_range": "1024 65535",
          "net/ipv4/ip_local_reserved_ports": "7000-7500,9000",
          "net/ipv4/tcp_mem": "500000 900000 1500000",
        },
        limitsText("unlimited", "unlimited"),
      ),
    });
    expect(check(report, "RLIMIT_NOFILE (hard)").status).toBe("ok");
    expect(check(report, "net.core.somaxconn").status).toBe("warn");
    expect(check(report, "net.ipv4.ip_local_port_range").status).toBe("ok"); // reserved
    expect(check(report, "net.ipv4.tcp_mem").status).toBe("warn"); // pressure below, max above the need
    const conntrack = check(report, "net.netfilter.nf_conntrack_max");
    expect(conntrack).toMatchObject({ status: "ok", found: "not loaded", fix: [] });
    expect(report.status).toBe("warn");
  });

  test("planning: the configured sessionsMax by default; --sessions above it is planned for and said; processes multiply", () => {
    const small = loadConfig({ flags: { "sessions-max": "50000" } });
    const configured = runDoctor({ config: small, read: smallHost });
    expect([configured.sessions, configured.sessionsFrom]).toEqual([50_000, "limits.sessionsMax"]);
    expect(configured.descriptorsNeeded).toBe(50_000 + descriptorHeadroom);
    const above = runDoctor({ config: small, read: smallHost, sessions: 2_000_000 });
    expect([above.sessions, above.sessionsFrom, above.sessionsMax]).toEqual([2_000_000, "--sessions", 50_000]);
    expect(check(above, "fs.nr_open").minimum).toBe(2_000_000 + descriptorHeadroom);
    expect(formatDoctorReport(above)).toContain(
      "note: the config accepts at most 50,000 sessions (limits.sessionsMax): raise it too to serve 2,000,000",
    );
    const planned = runDoctor({ config, read: smallHost, sessions: 20_000, processes: 3 });
    expect(planned.descriptorsNeeded).toBe(20_000 + descriptorHeadroom);
    expect(check(planned, "RLIMIT_NOFILE (hard)").status).toBe("fail"); // 4096 < 21,024
    expect(check(planned, "fs.file-max").needed).toBe(`>= ${(3 * 21_024).toLocaleString("en-US")}`);
    expect(check(planned, "net.ipv4.tcp_mem").needed).toBe(`pressure >= ${3 * 20_000}`);
  });

  test("workers: each gets its share of the sessions and its own file limit; the host's totals stay; memory adds up", () => {
    const meminfo = (kibibytes: number) => ({ ...smallHost, readMeminfo: () => `MemTotal:       ${kibibytes} kB\n` });
    const report = runDoctor({ config, read: meminfo(4 * 1_048_576), sessions: 100_000, workers: 4 });
    expect([report.workers, report.sessionsPerWorker]).toEqual([4, 25_000]);
    expect(report.descriptorsNeeded).toBe(25_000 + descriptorHeadroom);
    expect(check(report, "RLIMIT_NOFILE (hard)").needed).toBe(">= 26,024");
    expect(check(report, "fs.file-max").minimum).toBe(4 * 26_024);
    expect(check(report, "net.ipv4.tcp_mem").needed).toBe(`pressure >= ${100_000}`);
    const memory = check(report, "memory (MemTotal)");
    expect(memory.minimum).toBe(Math.ceil(4 * processBaselineBytes + 100_000 * sessionMemoryBytes));
    expect(memory.status).toBe("ok"); // 4 GiB against about 0.8 GiB
    expect(
      check(runDoctor({ config, read: meminfo(960 * 1024), sessions: 100_000, workers: 4 }), "memory (MemTotal)")
        .status,
    ).toBe("warn");
    expect(
      check(runDoctor({ config, read: meminfo(512 * 1024), sessions: 100_000, workers: 4 }), "memory (MemTotal)")
        .status,
    ).toBe("fail");
    // An uneven split rounds up; the report's first line names the workers.
    expect(runDoctor({ config, read: smallHost, sessions: 10, workers: 3 }).sessionsPerWorker).toBe(4);
    expect(formatDoctorReport(report)).toContain(
      "in 1 server(s) of 4 workers (25,000 sessions each), 26,024 descriptors per process",
    );
    // Without readMeminfo (a fake host) there is no memory check; one worker plans as before.
    expect(
      runDoctor({ config, read: smallHost, sessions: 100_000 }).checks.some((entry) => entry.name.startsWith("memory")),
    ).toBe(false);
    expect(runDoctor({ config, read: smallHost, sessions: 100_000 }).descriptorsNeeded).toBe(
      100_000 + descriptorHeadroom,
    );
  });

  test("runDoctorCommand: --workers N plans N workers; the default (one per core) plans one process", async () => {
    const output: string[] = [];
    const log = console.log;
    console.log = (text: string) => output.push(text);
    try {
      await runDoctorCommand(["--json", "--sessions", "1000", "--workers", "4"], smallHost, fineDeployment);
      await runDoctorCommand(["--json", "--sessions", "1000"], smallHost, fineDeployment);
    } finally {
      console.log = log;
    }
    const [four, one] = output.map((text) => JSON.parse(text) as DoctorReport);
    expect([four!.workers, four!.sessionsPerWorker, four!.descriptorsNeeded]).toEqual([
      4,
      250,
      250 + descriptorHeadroom,
    ]);
    expect([one!.workers, one!.descriptorsNeeded]).toEqual([1, 1000 + descriptorHeadroom]);
  });

  test("an unreadable host warns instead of throwing", () => {
    const report = runDoctor({ config, read: fakeHost({}, undefined) });
    expect(check(report, "RLIMIT_NOFILE (hard)")).toMatchObject({ status: "warn", found: "unreadable" });
    expect(check(report, "fs.nr_open")).toMatchObject({ status: "warn", found: "unreadable" });
    expect(report.status).toBe("warn");
  });

  test("parseNofile reads /proc/<pid>/limits", () => {
    expect(parseNofile(limitsText(1024, 524288))).toEqual({ soft: 1024, hard: 524288 });
    expect(parseNofile(limitsText("unlimited", "unlimited"))).toEqual({
      soft: Number.POSITIVE_INFINITY,
      hard: Number.POSITIVE_INFINITY,
    });
    expect(parseNofile("Max processes 1 1 processes\n")).toBeUndefined();
    expect(parseNofile(undefined)).toBeUndefined();
  });

  test("runDoctorCommand: exit 1 on a failing host, 0 on a tuned one, 2 on usage errors", async () => {
    const printed = spyOn(console, "log").mockImplementation(() => {});
    const complained = spyOn(console, "error").mockImplementation(() => {});
    try {
      expect(await runDoctorCommand(["--json"], smallHost, fineDeployment)).toBe(1);
      const json = JSON.parse(String(printed.mock.calls.at(-1)?.[0])) as DoctorReport & {
        version: { version: string };
      };
      expect(json.status).toBe("fail");
      expect(json.version.version).toMatch(/^\d+\.\d+\.\d+/);
      // Numbers as numbers: every value and minimum is a number, an array of numbers, or null.
      for (const entry of json.checks) {
        const values = [entry.value, entry.minimum].flat();
        for (const value of values) expect(value === null || typeof value === "number").toBe(true);
      }
      expect(check(json, "RLIMIT_NOFILE (hard)")).toMatchObject({
        value: 4096,
        minimum: 1_000_000 + descriptorHeadroom,
      });
      expect(check(json, "net.ipv4.tcp_mem").value).toEqual([10000, 20000, 30000]);
      expect(await runDoctorCommand(["--json", "--sessions-max", "100"], tunedHost(), fineDeployment)).toBe(0);
      expect(await runDoctorCommand(["--sessions", "0"], smallHost, fineDeployment)).toBe(2);
      expect(await runDoctorCommand(["--no-such-key", "1"], smallHost, fineDeployment)).toBe(2);
      expect(await runDoctorCommand(["stray"], smallHost, fineDeployment)).toBe(2);
      expect(await runDoctorCommand(["--pid", "999999999"])).toBe(2);
      expect(complained.mock.calls.map((call) => String(call[0]))).toEqual([
        "switchboard doctor: --sessions: a positive integer",
        expect.stringContaining("switchboard doctor: Unknown option '--no-such-key'"),
        expect.stringContaining("switchboard doctor: Unexpected argument 'stray'"),
        "switchboard doctor: --pid 999999999: no such process",
      ]);
    } finally {
      printed.mockRestore();
      complained.mockRestore();
    }
  });
});

describe("doctor on the installation: config, data directory, disk, ports", () => {
  const deploymentNames = ["config", "data directory", "free disk", "port 127.0.0.1:7420", "adminPort 127.0.0.1:7421"];

  test("a sound installation passes; each problem fails or warns with its fix", () => {
    const fine = runDoctor({ config, read: tunedHost(), deployment: fineDeployment });
    expect(fine.checks.slice(checkNames.length).map((entry) => [entry.name, entry.status])).toEqual(
      deploymentNames.map((name) => [name, "ok"]),
    );
    const broken: DeploymentReader = {
      configSource: "/etc/switchboard/switchboard.toml",
      configError: "/etc/switchboard/switchboard.toml: unknown key prot",
      dataDirectory: () => ({
        isDirectory: true,
        mode: 0o40755,
        looseFiles: [{ name: "switchboard.sqlite", mode: 0o100644 }],
        files: 4,
      }),
      disk: () => ({ freeBytes: diskFreeBytesFailMin - 1, totalBytes: 10 * diskFreeBytesFailMin, path: "/var" }),
      bind: (_host, port) => (port === 7420 ? "in use" : "denied"),
      serverPid: () => undefined,
    };
    const report = runDoctor({ config, read: tunedHost(), deployment: broken });
    expect(report.status).toBe("fail");
    expect(check(report, "config")).toMatchObject({ status: "fail", found: "does not load" });
    expect(check(report, "config").note).toContain("unknown key prot");
    const directory = check(report, "data directory");
    expect(directory.status).toBe("fail");
    expect(directory.found).toBe(`${config.dataDir} is 0755; switchboard.sqlite 0644`);
    expect(directory.fix).toEqual([
      `chmod 0700 ${config.dataDir}`,
      `chmod 0600 ${join(config.dataDir, "switchboard.sqlite")}`,
    ]);
    expect(check(report, "free disk")).toMatchObject({ status: "fail", value: diskFreeBytesFailMin - 1 });
    expect(check(report, "port 127.0.0.1:7420")).toMatchObject({ status: "fail", found: "in use by another process" });
    expect(check(report, "adminPort 127.0.0.1:7421")).toMatchObject({ status: "warn", found: "needs privilege" });
    for (const entry of report.checks)
      if (entry.status !== "ok") expect([entry.name, entry.fix.length > 0]).toEqual([entry.name, true]);

    const running = runDoctor({ config, read: tunedHost(), deployment: { ...broken, serverPid: () => 4242 } });
    expect(check(running, "port 127.0.0.1:7420")).toMatchObject({
      status: "ok",
      found: "in use (server pid 4242 runs)",
    });
    const missing = runDoctor({
      config,
      read: tunedHost(),
      deployment: { ...fineDeployment, dataDirectory: () => undefined },
    });
    expect(check(missing, "data directory").status).toBe("warn");
  });

  test("the real reader: a loose file mode in a data directory and a port another process holds", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "switchboard-doctor-"));
    scratchDirs.push(dataDir);
    writeFileSync(join(dataDir, "switchboard.sqlite"), "");
    chmodSync(join(dataDir, "switchboard.sqlite"), 0o644);
    chmodSync(dataDir, 0o700);
    const holder = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const real = loadConfig({ flags: { "data-dir": dataDir, port: String(holder.port), "admin-port": "0" } });
      const report = runDoctor({ config: real, read: tunedHost(), deployment: procDeploymentReader("test") });
      expect(check(report, "data directory").fix).toEqual([`chmod 0600 ${join(dataDir, "switchboard.sqlite")}`]);
      expect(check(report, `port 127.0.0.1:${holder.port}`)).toMatchObject({
        status: "fail",
        found: "in use by another process",
      });
      expect(check(report, "free disk").value).toBeGreaterThan(0);
      chmodSync(join(dataDir, "switchboard.sqlite"), 0o600);
      const fixed = runDoctor({ config: real, read: tunedHost(), deployment: procDeploymentReader("test") });
      expect(check(fixed, "data directory")).toMatchObject({ status: "ok", found: "0700, 1 files 0600" });
    } finally {
      holder.stop(true);
    }
  });

  test("a config that does not load is a failed check, and the host checks still run", async () => {
    const printed = spyOn(console, "log").mockImplementation(() => {});
    try {
      expect(await runDoctorCommand(["--json", "--config", "/nonexistent/switchboard.toml"], tunedHost())).toBe(1);
      const report = JSON.parse(String(printed.mock.calls.at(-1)?.[0])) as DoctorReport;
      expect(check(report, "config").note).toContain("config file /nonexistent/switchboard.toml not found");
      expect(check(report, "fs.nr_open").status).toBe("ok");
    } finally {
      printed.mockRestore();
    }
  });
});

describe("doctor on this host", () => {
  test("reports every check with the numbers /proc holds", async () => {
    const env = { ...process.env };
    delete env.SWITCHBOARD_CONFIG;
    const child = Bun.spawn([process.execPath, doctorPath, "--json", "--sessions", "1000"], {
      cwd: repoRoot,
      env,
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stdout, stderr, code] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]);
    expect(stderr).toBe("");
    const report = JSON.parse(stdout) as DoctorReport;
    expect(code).toBe(report.status === "fail" ? 1 : 0);
    expect(report.checks.map((entry) => entry.name).slice(0, checkNames.length)).toEqual(checkNames);
    expect(report.checks.map((entry) => entry.name).slice(checkNames.length, checkNames.length + 3)).toEqual([
      "config",
      "data directory",
      "free disk",
    ]);
    expect(report.sessions).toBe(1000);
    expect(report.descriptorsNeeded).toBe(1000 + descriptorHeadroom);

    // The child's hard limit is inherited from this process, so /proc/self/limits here must show the same number.
    const own = parseNofile(readFileSync("/proc/self/limits", "utf8"))!;
    expect(own.hard).toBeGreaterThan(0);
    expect(check(report, "RLIMIT_NOFILE (hard)").found).toStartWith(own.hard.toLocaleString("en-US"));
    const nrOpen = Number(readFileSync("/proc/sys/fs/nr_open", "utf8"));
    expect(nrOpen).toBeGreaterThanOrEqual(own.hard);
    expect(check(report, "fs.nr_open").found).toBe(nrOpen.toLocaleString("en-US"));
    const tcpMemory = readFileSync("/proc/sys/net/ipv4/tcp_mem", "utf8").trim().split(/\s+/).map(Number);
    expect(tcpMemory).toHaveLength(3);
    expect(check(report, "net.ipv4.tcp_mem").found).toBe(tcpMemory.join(" "));
    for (const entry of report.checks) {
      expect(["ok", "warn", "fail"]).toContain(entry.status);
      expect(entry.found).not.toBe("unreadable");
      if (entry.status !== "ok") expect(entry.fix.length).toBeGreaterThan(0);
    }
  });
});
