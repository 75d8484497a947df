// The readable table on stdout: one row per figure, with its goal and whether it is met.

import type { Figure, ScenarioResult } from "./scenario-result.ts";

export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const magnitude = Math.abs(value);
  const decimals = magnitude >= 1000 ? 0 : magnitude >= 100 ? 1 : magnitude >= 10 ? 2 : 3;
  return value.toLocaleString("en-US", { maximumFractionDigits: decimals, minimumFractionDigits: 0 });
}

export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell, column) => (column === 1 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!))).join(" | ")} |`;
  return [line(header), `|${widths.map((width) => "-".repeat(width + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}

function figureRow(figure: Figure): string[] {
  const value =
    figure.value === null ? "n/a" : typeof figure.value === "number" ? formatNumber(figure.value) : figure.value;
  const met = figure.met === undefined ? "" : figure.met === null ? "?" : figure.met ? "yes" : "NO";
  return [figure.name, value, figure.unit, figure.goal ?? "", met];
}

export function formatResult(result: ScenarioResult): string {
  const lines = [
    result.title,
    "",
    formatTable(
      ["figure", "value", "unit", "goal", "met"],
      result.figures.map((figure) => figureRow(figure)),
    ),
  ];
  if (result.notes.length > 0) lines.push("", ...result.notes.map((note) => `- ${note}`));
  return lines.join("\n");
}
