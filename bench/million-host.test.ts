// The million scenario's host side: sizing from the file limit and the ports, the memory refusal with its numbers,
// and sysctl tuning that raises only what falls short and puts everything back (against a directory standing in for
// /proc/sys, so the test changes nothing on the host).

import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  type HostFacts,
  memoryHeadroomBytes,
  memoryModel,
  memoryVerdict,
  readHostFacts,
  sizeMillion,
  tuneHost,
} from "./million-host.ts";

const gibibyte = 1_073_741_824;
const directory = mkdtempSync(join(tmpdir(), "switchboard-million-host-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

/** This host's shape (2 cores, 24 GiB, RLIMIT_NOFILE 20,000 hard, stock sysctls) with some memory available. */
function facts(availableGiB: number, overrides: Partial<HostFacts> = {}): HostFacts {
  return {
    memTotalBytes: 24 * gibibyte,
    memAvailableBytes: availableGiB * gibibyte,
    nofileSoft: 20_000,
    nofileHard: 20_000,
    fileMax: 2_466_160,
    filesOpen: 1_500,
    nrOpen: 1_048_576,
    portRange: [32768, 60999],
    tcpMemPages: [287_898, 383_865, 575_796],
    somaxconn: 4096,
    conntrackMax: 262_144,
    pageBytes: 4096,
    ...overrides,
  };
}

describe("million sizing", () => {
  test("a million on this host's limits: 56 workers under the file limit, 53 load processes, one address each", () => {
    const sizing = sizeMillion(1_000_000, facts(23));
    expect(sizing.serverWorkers).toBe(56);
    expect(sizing.partitions).toBeGreaterThanOrEqual(sizing.serverWorkers);
    expect(sizing.sessionsPerServerWorker).toBe(17_858);
    expect(sizing.sessionsPerLoadWorker).toBe(19_000);
    expect(sizing.loadWorkers).toBe(53);
    expect(sizing.refusals).toEqual([]);
  });

  test("a narrow port range caps what one load process (one source address) holds", () => {
    const sizing = sizeMillion(100_000, facts(23, { portRange: [50000, 59999] }));
    expect(sizing.sessionsPerLoadWorker).toBe(8_000);
    expect(sizing.loadWorkers).toBe(13);
  });

  test("memory: a size that would leave less than the headroom is refused, with the numbers and what would fit", () => {
    const small = facts(8);
    const sizing = sizeMillion(1_000_000, small);
    expect(sizing.memory.fits).toBe(false);
    expect(sizing.memory.budgetBytes).toBe(8 * gibibyte - memoryHeadroomBytes);
    expect(sizing.memory.peakBytes).toBeGreaterThan(1_000_000 * memoryModel.kernelBytesPerConnection);
    const verdict = memoryVerdict(sizing, small);
    expect(verdict).toContain("does not fit");
    expect(verdict).toContain("MemAvailable is 8.00 GiB");
    // What it says would fit does fit, by the same model, and a tenth more does not.
    expect(sizing.memory.sessionsThatFit).toBeGreaterThan(0);
    expect(sizeMillion(sizing.memory.sessionsThatFit, small).memory.fits).toBe(true);
    expect(sizeMillion(Math.ceil(sizing.memory.sessionsThatFit * 1.1), small).memory.fits).toBe(false);
  });

  test("a worker count that would put more sessions in a worker than its file limit allows is refused", () => {
    const sizing = sizeMillion(1_000_000, facts(23), { serverWorkers: 10 });
    expect(sizing.refusals).toHaveLength(1);
    expect(sizing.refusals[0]).toContain("100000 sessions each");
  });

  test("this host's facts are read from /proc", () => {
    const real = readHostFacts(4096);
    expect(real.memTotalBytes).toBeGreaterThan(0);
    expect(real.nofileHard).toBeGreaterThan(0);
    expect(real.portRange[1]).toBeGreaterThan(real.portRange[0]);
  });
});

describe("million tuning (a directory standing in for /proc/sys)", () => {
  function fakeSysctls(values: Record<string, string>): string {
    const root = mkdtempSync(join(directory, "sys-"));
    for (const [key, value] of Object.entries(values)) {
      const path = join(root, key.replaceAll(".", "/"));
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, `${value}\n`);
    }
    return root;
  }
  const read = (root: string, key: string) => readFileSync(join(root, key.replaceAll(".", "/")), "utf8").trim();

  test("raises only what a million needs, says why, and puts every value back", () => {
    const stock = {
      "fs.file-max": "1048576",
      "net.ipv4.ip_local_port_range": "32768\t60999",
      "net.core.somaxconn": "4096",
      "net.ipv4.tcp_mem": "287898\t383865\t575796",
      "net.netfilter.nf_conntrack_max": "262144",
    };
    const root = fakeSysctls(stock);
    const host = facts(23, { fileMax: 1_048_576 });
    const tuning = tuneHost(sizeMillion(1_000_000, host), host, root);
    const changed = Object.fromEntries(tuning.changes.map((change) => [change.key, change.to]));
    // Two million open files plus the processes' own do not fit in 1,048,576; 19,000 ports of 28,232 do.
    expect(Number(changed["fs.file-max"])).toBeGreaterThan(2_000_000);
    expect(changed["net.ipv4.ip_local_port_range"]).toBeUndefined();
    expect(changed["net.core.somaxconn"]).toBeUndefined();
    expect(changed["net.ipv4.tcp_mem"]?.split(" ").map(Number)[1]).toBeGreaterThanOrEqual(1_000_000);
    expect(Number(changed["net.netfilter.nf_conntrack_max"])).toBeGreaterThanOrEqual(1_100_000);
    expect(read(root, "fs.file-max")).toBe(changed["fs.file-max"]!);
    for (const change of tuning.changes) expect(change.why.length).toBeGreaterThan(10);
    expect(tuning.fixed.some((line) => line.includes("RLIMIT_NOFILE 20,000"))).toBe(true);
    tuning.restore();
    for (const [key, value] of Object.entries(stock)) {
      expect(read(root, key).replace(/\s+/g, " ")).toBe(value.replace(/\s+/g, " "));
    }
  });

  test("a small size on a stock host changes nothing; absent sysctls (no conntrack) are skipped", () => {
    const root = fakeSysctls({
      "fs.file-max": "2466160",
      "net.ipv4.ip_local_port_range": "32768 60999",
      "net.core.somaxconn": "4096",
      "net.ipv4.tcp_mem": "287898 383865 575796",
    });
    const host = facts(23, { conntrackMax: null });
    const tuning = tuneHost(sizeMillion(50_000, host), host, root);
    expect(tuning.changes).toEqual([]);
  });
});
