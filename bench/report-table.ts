// The readable table on stdout: one row per figure, with its goal and whether it is met, and the notes wrapped to
// the width of a terminal (100 columns).

import type { Figure, ScenarioResult } from "./scenario-result.ts";

/** Columns the report keeps within (table rows may pass it only when a figure's own text is that long). */
export const reportColumnsMax = 100;

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

/** Words of `text` in lines of at most `width` columns; the lines after the first start with `indent`. */
export function wrapText(text: string, width: number, indent = ""): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    const candidate = line === "" ? word : `${line} ${word}`;
    if (candidate.length > width && line !== "" && line !== indent) {
      lines.push(line);
      line = `${indent}${word}`;
    } else {
      line = candidate;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

function metCell(figure: Figure, quick: boolean): string {
  if (figure.met === undefined) return "";
  if (quick && figure.fullSize === true) return "quick";
  return figure.met === null ? "?" : figure.met ? "yes" : "NO";
}

function figureRow(figure: Figure, quick: boolean): string[] {
  const value =
    figure.value === null ? "n/a" : typeof figure.value === "number" ? formatNumber(figure.value) : figure.value;
  return [figure.name, value, figure.unit, figure.goal ?? "", metCell(figure, quick)];
}

/**
 * The result as text. With `quick`, goals set for full-size runs show "quick" instead of yes or NO. The goal and met
 * columns appear only when some figure has a goal.
 */
export function formatResult(result: ScenarioResult, options: { quick?: boolean } = {}): string {
  const quick = options.quick === true;
  const withGoals = result.figures.some((figure) => figure.goal !== undefined);
  const header = withGoals ? ["figure", "value", "unit", "goal", "met"] : ["figure", "value", "unit"];
  const rows = result.figures.map((figure) => figureRow(figure, quick).slice(0, header.length));
  const lines = [...wrapText(result.title, reportColumnsMax), "", formatTable(header, rows)];
  const notes = [...result.notes];
  if (quick && result.figures.some((figure) => figure.fullSize === true && figure.met !== undefined)) {
    notes.unshift("--quick: goals marked quick are set for full-size runs; small runs are not judged against them.");
  }
  if (notes.length > 0) {
    lines.push("", ...notes.flatMap((note) => wrapText(`- ${note}`, reportColumnsMax, "  ")));
  }
  return lines.join("\n");
}
