#!/usr/bin/env bun
// Summarises a .cpuprofile (Chrome format, as `bun --cpu-prof` writes it) by sample counts: the functions where the
// samples land (self) and the functions on the stack (total, each counted once per sample). Bun's own markdown
// summary weights each sample by the time since the previous one, which charges a whole idle gap to the next sample;
// counting samples does not, so this is the view to read for a server that is idle part of the time.
//
// Run: bun bench/profile-summary.ts <file.cpuprofile> [top]

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

export interface ProfileLine {
  readonly function: string;
  readonly samples: number;
  readonly percent: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly samples: number;
  readonly durationS: number;
  readonly self: readonly ProfileLine[];
  readonly total: readonly ProfileLine[];
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName === "" ? "(anonymous)" : functionName;
  if (url === "") return name;
  const short = url
    .replace(/^.*\/(node_modules\/)/, "$1")
    .replace(/^.*\/(server|protocol|storage|client|bench)\//, "$1/");
  return `${name} ${short}${lineNumber >= 0 ? `:${lineNumber + 1}` : ""}`;
}

export function summariseProfile(file: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let counted = 0;
  for (const id of profile.samples) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const name = frameName(node);
    if (name === "(root)" || name === "(idle)" || name === "(program)") continue;
    counted++;
    self.set(name, (self.get(name) ?? 0) + 1);
    const seen = new Set<string>();
    for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
      const frame = byId.get(current);
      if (frame === undefined) break;
      const frameLabel = frameName(frame);
      if (frameLabel === "(root)" || seen.has(frameLabel)) continue;
      seen.add(frameLabel);
      total.set(frameLabel, (total.get(frameLabel) ?? 0) + 1);
    }
  }
  const lines = (counts: Map<string, number>) =>
    [...counts]
      .sort((left, right) => right[1] - left[1])
      .slice(0, top)
      .map(([name, samples]) => ({
        function: name,
        samples,
        percent: counted === 0 ? 0 : Math.round((1000 * samples) / counted) / 10,
      }));
  return {
    file,
    samples: counted,
    durationS: (profile.endTime - profile.startTime) / 1e6,
    self: lines(self),
    total: lines(total),
  };
}

/** The .cpuprofile files in a directory (bun names them CPU.<date>.<pid>...). */
export function profilesIn(directory: string): string[] {
  try {
    return readdirSync(directory)
      .filter((name) => name.endsWith(".cpuprofile"))
      .map((name) => join(directory, name));
  } catch {
    return [];
  }
}

export function formatProfileSummary(summary: ProfileSummary): string {
  const width = Math.max(8, ...summary.self.concat(summary.total).map((line) => line.function.length));
  const table = (title: string, lines: readonly ProfileLine[]) => [
    `${title.padEnd(width)}  samples      %`,
    ...lines.map(
      (line) =>
        `${line.function.padEnd(width)}  ${String(line.samples).padStart(7)}  ${line.percent.toFixed(1).padStart(5)}`,
    ),
  ];
  return [
    `${summary.file}: ${summary.samples} samples over ${summary.durationS.toFixed(1)} s`,
    "",
    ...table("self (where the samples land)", summary.self),
    "",
    ...table("total (on the stack)", summary.total),
  ].join("\n");
}

if (import.meta.main) {
  const [file, top] = process.argv.slice(2);
  if (file === undefined) {
    console.error("usage: bun bench/profile-summary.ts <file.cpuprofile> [top]");
    process.exit(2);
  }
  console.log(formatProfileSummary(summariseProfile(file, top === undefined ? 15 : Number(top))));
}
