#!/usr/bin/env bun
// The bench runner: `npm run bench -- <scenario> [options]` (see bench-options.ts for every option). Runs one
// scenario against a server it starts (or a --target), prints a table on stdout, writes a JSON result with every raw
// figure and the machine's description (and charts as SVG beside it), and stops everything it started. Exits 1
// when a check that must hold failed (sessions missing, failures, delivered != sent), 2 on bad options.

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { type BenchOptions, OptionsError, parseBenchArguments, type ScenarioName, usage } from "./bench-options.ts";
import { describeMachine, describeSource, machineLine } from "./machine.ts";
import { formatProfileSummary, profilesIn, summariseProfile } from "./profile-summary.ts";
import { formatResult } from "./report-table.ts";
import { runDensity } from "./scenario-density.ts";
import { runEncryption } from "./scenario-encryption.ts";
import { runGroups } from "./scenario-groups.ts";
import { ScenarioHarness } from "./scenario-harness.ts";
import { runLatency } from "./scenario-latency.ts";
import { runMicro } from "./scenario-micro.ts";
import { runMillion } from "./scenario-million.ts";
import { runRate } from "./scenario-rate.ts";
import type { ScenarioResult } from "./scenario-result.ts";
import { runStorm } from "./scenario-storm.ts";
import { runThroughput } from "./scenario-throughput.ts";

const scenarios: Record<ScenarioName, (harness: ScenarioHarness) => Promise<ScenarioResult>> = {
  density: runDensity,
  throughput: runThroughput,
  latency: runLatency,
  rate: runRate,
  storm: runStorm,
  micro: runMicro,
  million: runMillion,
  groups: runGroups,
  encryption: runEncryption,
};

const resultsDirectory = new URL("./results/", import.meta.url).pathname;
const repositoryRoot = new URL("..", import.meta.url).pathname;
const biomePath = new URL("../node_modules/.bin/biome", import.meta.url).pathname;

/**
 * Formats a result file inside the repository with the repository's formatter, so that `npm run lint` stays clean
 * after a bench run (biome.json lints bench/**; results are git-ignored but still on disk). Best effort.
 */
function formatInRepository(path: string): void {
  if (relative(repositoryRoot, path).startsWith("..") || !existsSync(biomePath)) return;
  spawnSync(biomePath, ["format", "--write", path], { cwd: repositoryRoot, stdio: "ignore", timeout: 20_000 });
}

export function resultPath(options: BenchOptions, startedAt: Date): string {
  if (options.out !== null) return resolve(options.out);
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
  return resolve(resultsDirectory, `${options.scenario}-${stamp}.json`);
}

export async function main(argv: readonly string[]): Promise<number> {
  let options: BenchOptions | "help";
  try {
    options = parseBenchArguments(argv);
  } catch (error) {
    if (!(error instanceof OptionsError)) throw error;
    console.error(`bench: ${error.message}\n\n${usage}`);
    return 2;
  }
  if (options === "help") {
    console.log(usage);
    return 0;
  }
  const startedAt = new Date();
  const machine = describeMachine();
  const out = resultPath(options, startedAt);
  const artefactBase = out.replace(/\.json$/, "");
  mkdirSync(dirname(out), { recursive: true });
  const harness = new ScenarioHarness(options, artefactBase);
  let result: ScenarioResult;
  try {
    result = await scenarios[options.scenario](harness);
  } finally {
    await harness.close();
  }
  const finishedAt = new Date();
  const profileDirectory = options.profile && options.target === null ? `${artefactBase}-profile` : null;
  const profiles = profileDirectory === null ? [] : profilesIn(profileDirectory).map((file) => summariseProfile(file));
  const charts: string[] = [];
  for (const chart of result.charts) {
    const path = `${artefactBase}-${chart.name}.svg`;
    writeFileSync(path, chart.svg);
    charts.push(path);
  }
  const document = {
    bench: "switchboard",
    scenario: result.scenario,
    title: result.title,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    elapsedS: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    command: `npm run bench -- ${argv.join(" ")}`,
    options,
    machine,
    source: describeSource(),
    server: result.server,
    sane: result.sane,
    figures: result.figures,
    raw: result.raw,
    notes: result.notes,
    charts,
    profile: profileDirectory,
    profileSummaries: profiles,
  };
  writeFileSync(out, `${JSON.stringify(document, null, 2)}\n`);
  formatInRepository(out);
  console.log(formatResult(result, { quick: options.quick }));
  console.log(`\n${machineLine(machine)}`);
  console.log(`result: ${out}${charts.length > 0 ? `\nchart:  ${charts.join(", ")}` : ""}`);
  if (profileDirectory !== null) {
    console.log(`profile: ${profileDirectory} (server CPU profile; bun --cpu-prof-md wrote a markdown view beside it)`);
    for (const summary of profiles) console.log(`\n${formatProfileSummary(summary)}`);
  }
  if (!result.sane) console.log("CHECK FAILED: see the table (sessions, failures or delivered counts are off)");
  return result.sane ? 0 : 1;
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
