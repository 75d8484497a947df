// Reads the server's Prometheus /metrics (admin HTTP) into a map. Only what the bench needs: plain samples, with
// their labels kept as written ("name{label=\"value\"}"), so a figure is looked up by the exact series text.

export type MetricSamples = ReadonlyMap<string, number>;

const scrapeTimeoutMs = 5_000;

export function parsePrometheusText(text: string): MetricSamples {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    if (space <= 0) continue;
    const value = Number(line.slice(space + 1));
    if (Number.isFinite(value)) samples.set(line.slice(0, space), value);
  }
  return samples;
}

/** Scrapes http://<admin>/metrics; null when the admin listener does not answer in time. */
export async function scrapeMetrics(admin: string): Promise<MetricSamples | null> {
  try {
    const response = await fetch(`http://${admin}/metrics`, { signal: AbortSignal.timeout(scrapeTimeoutMs) });
    if (!response.ok) return null;
    return parsePrometheusText(await response.text());
  } catch {
    return null;
  }
}

/** The value of one series, 0 when absent. */
export function sample(samples: MetricSamples | null, series: string): number {
  return samples?.get(series) ?? 0;
}

/** The sum of every series of a metric whatever its labels (e.g. all kinds of switchboard_logins_total). */
export function sumOf(samples: MetricSamples | null, name: string): number {
  if (samples === null) return 0;
  let total = 0;
  for (const [series, value] of samples) {
    if (series === name || series.startsWith(`${name}{`)) total += value;
  }
  return total;
}

/** after - before of one series (counters). */
export function delta(before: MetricSamples | null, after: MetricSamples | null, series: string): number {
  return sample(after, series) - sample(before, series);
}

export function sumDelta(before: MetricSamples | null, after: MetricSamples | null, name: string): number {
  return sumOf(after, name) - sumOf(before, name);
}

/**
 * The smallest histogram bound that every observation between two scrapes fell under: an upper bound of the worst
 * value in that interval (Infinity when some fell past the last bound, 0 when there was none). Histograms are never
 * reset by a scrape, so two benches or scrapers never disturb each other's readings.
 */
export function worstBoundBetween(before: MetricSamples | null, after: MetricSamples | null, name: string): number {
  const count = delta(before, after, `${name}_count`);
  if (count <= 0) return 0;
  const bounds: number[] = [];
  for (const series of after?.keys() ?? []) {
    const match = series.match(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\}$`));
    if (match !== null && match[1] !== "+Inf") bounds.push(Number(match[1]));
  }
  bounds.sort((left, right) => left - right);
  for (const bound of bounds) {
    if (delta(before, after, `${name}_bucket{le="${bound}"}`) >= count) return bound;
  }
  return Number.POSITIVE_INFINITY;
}
