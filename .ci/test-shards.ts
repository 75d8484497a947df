// `npm test`: the whole suite as SHARDS `bun test` processes side by side (default 2), each writing its own JUnit report,
// then one merged report at .tmp/junit.xml that .ci/junit-summary.ts counts.
//
// Why shards: most of the suite's wall time is waiting (servers starting and stopping, restarts after kill -9, a browser,
// deadlines), not CPU, so two runners on a 2-core host finish in well under the time of one. Every test already works in
// its own temp directory on ports the kernel picks, so shards share nothing.
//
// Files are dealt to shards longest first (greedy, by the weights below: seconds measured in one run on the 2-core CI
// kind; a file not listed counts as `defaultSeconds`). With arguments (`npm test -- server/foo.test.ts`), or with
// SHARDS=1, it is one plain `bun test` with those arguments.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";

const bunTestArgs = ["test", "--timeout", "30000"];
const reportDir = ".tmp";
const mergedReport = `${reportDir}/junit.xml`;
/** Most shards ever started: each is a bun process with servers of its own. */
const shardsMax = 4;
const defaultSeconds = 1.5;
const weights: Readonly<Record<string, number>> = {
  "client/delivery-suite.test.ts": 57,
  // 18 tests at 1.08x the plain suite's time per test (measured side by side on the dev host); not measured on CI.
  "client/delivery-suite-tls.test.ts": 24,
  "client/web/web-chat.e2e.test.ts": 51,
  "systemd/install.test.ts": 48,
  "bench/bench.test.ts": 40,
  "reliability/reliability.test.ts": 39,
  "server/lifecycle.test.ts": 16,
  "server/cli.test.ts": 16,
  "server/supervisor.test.ts": 15,
  "server/workers.test.ts": 15,
  "server/data-directory.test.ts": 13,
  "server/start-errors.test.ts": 11,
  "server/admin-command.test.ts": 9,
  "server/ws-listener.test.ts": 9,
  "server/process.test.ts": 9,
  "server/metrics.test.ts": 8,
  "server/group-turns.test.ts": 10,
  "server/delivery.test.ts": 8,
  // Plus the Noise density test (1,000 sessions with their handshakes): estimated.
  "server/session-density.test.ts": 12,
  "bench/worker-noise.test.ts": 4,
  "server/log.test.ts": 8,
  "client/chat.test.ts": 8,
  "server/media-large.test.ts": 5,
  "server/last-seen.test.ts": 2,
};

const bun = process.execPath;
const extra = process.argv.slice(2);
const shards = Math.max(1, Math.min(shardsMax, Number(process.env.SHARDS ?? 2) || 1));
mkdirSync(reportDir, { recursive: true });
rmSync(mergedReport, { force: true });

if (extra.length > 0 || shards === 1) {
  const run = Bun.spawnSync([bun, ...bunTestArgs, "--reporter=junit", `--reporter-outfile=${mergedReport}`, ...extra], {
    stdio: ["inherit", "inherit", "inherit"],
  });
  process.exit(run.exitCode ?? 1);
}

const files: string[] = [];
for (const path of new Bun.Glob("**/*.test.ts").scanSync({ cwd: ".", onlyFiles: true })) {
  if (!path.startsWith("node_modules/") && !path.includes("/node_modules/") && !path.startsWith(".")) files.push(path);
}
files.sort((a, b) => (weights[b] ?? defaultSeconds) - (weights[a] ?? defaultSeconds) || a.localeCompare(b));
const dealt: { files: string[]; seconds: number }[] = Array.from({ length: shards }, () => ({ files: [], seconds: 0 }));
for (const file of files) {
  const lightest = dealt.reduce((best, shard) => (shard.seconds < best.seconds ? shard : best));
  lightest.files.push(`./${file}`);
  lightest.seconds += weights[file] ?? defaultSeconds;
}

const startedMs = Date.now();
const runs = dealt.map((shard, index) => {
  const report = `${reportDir}/junit-${index + 1}.xml`;
  rmSync(report, { force: true });
  console.log(`shard ${index + 1}/${shards}: ${shard.files.length} files, about ${Math.round(shard.seconds)} s`);
  const child = Bun.spawn([bun, ...bunTestArgs, "--reporter=junit", `--reporter-outfile=${report}`, ...shard.files], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const prefix = `[${index + 1}] `;
  const relay = async (stream: ReadableStream<Uint8Array>, out: NodeJS.WriteStream) => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) out.write(`${prefix}${line}\n`);
    }
    if (pending.length > 0) out.write(`${prefix}${pending}\n`);
  };
  return Promise.all([relay(child.stdout, process.stdout), relay(child.stderr, process.stderr), child.exited]).then(
    ([, , code]) => ({ report, code }),
  );
});
const results = await Promise.all(runs);

// One report: the shards' <testsuite> elements under one <testsuites> root.
const suites: string[] = [];
let missing = false;
for (const { report } of results) {
  let xml: string;
  try {
    xml = readFileSync(report, "utf8");
  } catch {
    console.error(`test-shards: ${report} was not written`);
    missing = true;
    continue;
  }
  const body = xml.replace(/^<\?xml[^>]*>\s*/, "").replace(/^<testsuites\b[^>]*>/, "").replace(/<\/testsuites>\s*$/, "");
  suites.push(body);
}
writeFileSync(mergedReport, `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="bun test">\n${suites.join("\n")}\n</testsuites>\n`);
const failedShards = results.filter((result) => result.code !== 0).length;
console.log(
  `test-shards: ${shards} shards in ${Math.round((Date.now() - startedMs) / 1000)} s; ${failedShards} exited non-zero`,
);
process.exit(failedShards > 0 || missing ? 1 : 0);
