// A line chart written as SVG by hand (no library): a few series of (x, y) points, axes with round ticks, a legend,
// a label at the end of each line and marked points. Used for density's server RSS against connected sessions.

export interface ChartSeries {
  readonly name: string;
  readonly color: string;
  readonly points: ReadonlyArray<readonly [number, number]>;
  /** Written beside the line's last point ("2,310 B/session"). */
  readonly endLabel?: string;
}

/** A point marked with a ring and a word ("settled"). */
export interface ChartMarker {
  readonly x: number;
  readonly y: number;
  readonly label: string;
  readonly color: string;
}

export interface LineChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly ChartSeries[];
  readonly markers?: readonly ChartMarker[];
  readonly width?: number;
  readonly height?: number;
}

const margin = { top: 48, right: 24, bottom: 56, left: 80 };
/** A white outline drawn under a label's letters, so that a line crossing it does not hide it. */
const halo = 'stroke="white" stroke-width="4" paint-order="stroke"';
const tickCount = 6;

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

/** A round step (1, 2 or 5 times a power of ten) giving about `count` ticks over `span`. */
function niceStep(span: number, count: number): number {
  if (!(span > 0)) return 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * power;
}

function ticks(max: number): { step: number; top: number; values: number[] } {
  const step = niceStep(max, tickCount);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const values: number[] = [];
  for (let value = 0; value <= top + step / 2; value += step) values.push(value);
  return { step, top, values };
}

function label(value: number): string {
  return value.toLocaleString("en-US", { maximumFractionDigits: 1 });
}

export function lineChartSvg(options: LineChartOptions): string {
  const width = options.width ?? 800;
  const height = options.height ?? 480;
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const all = options.series.flatMap((series) => series.points);
  const xTicks = ticks(Math.max(1, ...all.map(([x]) => x)));
  const yTicks = ticks(Math.max(1, ...all.map(([, y]) => y)));
  const px = (x: number) => margin.left + (x / xTicks.top) * plotWidth;
  const py = (y: number) => margin.top + plotHeight - (y / yTicks.top) * plotHeight;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12" role="img">`,
    `<title>${escapeXml(options.title)}</title>`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15">${escapeXml(options.title)}</text>`,
  ];
  for (const value of yTicks.values) {
    const y = py(value).toFixed(1);
    parts.push(
      `<line x1="${margin.left}" y1="${y}" x2="${width - margin.right}" y2="${y}" stroke="#e4e4e4"/>`,
      `<text x="${margin.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${label(value)}</text>`,
    );
  }
  for (const value of xTicks.values) {
    const x = px(value).toFixed(1);
    parts.push(
      `<line x1="${x}" y1="${margin.top}" x2="${x}" y2="${margin.top + plotHeight}" stroke="#f0f0f0"/>`,
      `<text x="${x}" y="${margin.top + plotHeight + 18}" text-anchor="middle">${label(value)}</text>`,
    );
  }
  parts.push(
    `<rect x="${margin.left}" y="${margin.top}" width="${plotWidth}" height="${plotHeight}" fill="none" stroke="#888"/>`,
    `<text x="${margin.left + plotWidth / 2}" y="${height - 14}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`,
    `<text transform="translate(18 ${margin.top + plotHeight / 2}) rotate(-90)" text-anchor="middle">${escapeXml(options.yLabel)}</text>`,
  );
  for (const [index, series] of options.series.entries()) {
    if (series.points.length > 0) {
      const path = series.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
      parts.push(`<polyline points="${path}" fill="none" stroke="${series.color}" stroke-width="2"/>`);
    }
    const last = series.points.at(-1);
    if (series.endLabel !== undefined && last !== undefined) {
      // Anchored at its end so that it stays inside the plot: the first series above the highest point of its last
      // fifth, the others below the lowest, with a white halo so that no line runs through the text.
      const tail = series.points.filter(([x]) => x >= last[0] * 0.8).map(([, y]) => y);
      const y = index === 0 ? py(Math.max(...tail)) - 10 : py(Math.min(...tail)) + 20;
      parts.push(
        `<text x="${(px(last[0]) - 6).toFixed(1)}" y="${y.toFixed(1)}" text-anchor="end" fill="${series.color}" font-weight="bold" ${halo}>${escapeXml(series.endLabel)}</text>`,
      );
    }
    const legendY = margin.top + 16 + index * 18;
    parts.push(
      `<line x1="${margin.left + 12}" y1="${legendY}" x2="${margin.left + 36}" y2="${legendY}" stroke="${series.color}" stroke-width="3"/>`,
      `<text x="${margin.left + 42}" y="${legendY}" dominant-baseline="middle">${escapeXml(series.name)}</text>`,
    );
  }
  for (const marker of options.markers ?? []) {
    const x = px(marker.x).toFixed(1);
    const y = py(marker.y).toFixed(1);
    parts.push(
      `<circle cx="${x}" cy="${y}" r="6" fill="white" stroke="${marker.color}" stroke-width="2"/>`,
      `<text x="${(px(marker.x) - 10).toFixed(1)}" y="${(py(marker.y) + 4).toFixed(1)}" text-anchor="end" fill="${marker.color}" ${halo}>${escapeXml(marker.label)}</text>`,
    );
  }
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
