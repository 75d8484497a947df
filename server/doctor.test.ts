// `switchboard doctor` against fake hosts (a small one fails with the lines that fix it; one tuned with the files in
// systemd/ passes) and once against this real host, as a process.

import { describe, expect, spyOn, test } from "bun:test";
import { readFileSync } from "node:fs";
import { loadConfig } from "./config.ts";
import {
  type DoctorCheck,
  type DoctorReport,
  descriptorHeadroom,
  formatDoctorReport,
  type HostReader,
  notrackCommand,
  parseNofile,
  runDoctor,
  runDoctorCommand,
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

  test("planning: --sessions is capped at sessionsMax, processes multiply the host-wide needs", () => {
    const small = loadConfig({ flags: { "sessions-max": "50000" } });
    const capped = runDoctor({ config: small, read: smallHost, sessions: 10_000_000 });
    expect(capped.sessions).toBe(50_000);
    const planned = runDoctor({ config, read: smallHost, sessions: 20_000, processes: 3 });
    expect(planned.descriptorsNeeded).toBe(20_000 + descriptorHeadroom);
    expect(check(planned, "RLIMIT_NOFILE (hard)").status).toBe("fail"); // 4096 < 21,024
    expect(check(planned, "fs.file-max").needed).toBe(`>= ${(3 * 21_024).toLocaleString("en-US")}`);
    expect(check(planned, "net.ipv4.tcp_mem").needed).toBe(`pressure >= ${3 * 20_000}`);
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
      expect(await runDoctorCommand(["--json"], smallHost)).toBe(1);
      expect(JSON.parse(String(printed.mock.calls.at(-1)?.[0])).status).toBe("fail");
      expect(await runDoctorCommand(["--json", "--sessions-max", "100"], tunedHost())).toBe(0);
      expect(await runDoctorCommand(["--sessions", "0"], smallHost)).toBe(2);
      expect(await runDoctorCommand(["--no-such-key", "1"], smallHost)).toBe(2);
      expect(await runDoctorCommand(["stray"], smallHost)).toBe(2);
      expect(complained.mock.calls.map((call) => String(call[0]))).toEqual([
        "switchboard doctor: --sessions: a positive integer",
        "switchboard doctor: flag: unknown key noSuchKey",
        expect.stringContaining("unexpected argument stray"),
      ]);
    } finally {
      printed.mockRestore();
      complained.mockRestore();
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
    expect(report.checks.map((entry) => entry.name)).toEqual(checkNames);
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
