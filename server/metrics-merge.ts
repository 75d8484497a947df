// Merges Prometheus text expositions (format 0.0.4) of several processes into one: the supervisor's /metrics is its
// own series followed by every worker's, each worker's samples labelled worker="i". The format requires all samples
// of a metric family to follow its one HELP and TYPE line, so samples are grouped by family across the sources, in
// the order families are first seen. No I/O: the caller fetches the texts.

export interface MetricsSource {
  readonly text: string;
  /** Labels added in front of every sample's own (`{ worker: "0" }`); values must not need escaping. */
  readonly labels?: Readonly<Record<string, string>>;
}

interface Family {
  help: string | undefined;
  type: string | undefined;
  readonly samples: string[];
}

/** The metric name a sample line starts with (`name{...} v` or `name v`). */
function sampleName(line: string): string {
  const end = line.search(/[{\s]/);
  return end < 0 ? line : line.slice(0, end);
}

/** The sample line with `labels` inserted first into its label set. */
export function withLabels(line: string, labels: Readonly<Record<string, string>>): string {
  const added = Object.entries(labels)
    .map(([key, value]) => `${key}="${value}"`)
    .join(",");
  if (added === "") return line;
  const name = sampleName(line);
  const rest = line.slice(name.length);
  if (rest.startsWith("{}")) return `${name}{${added}}${rest.slice(2)}`;
  if (rest.startsWith("{")) return `${name}{${added},${rest.slice(1)}`;
  return `${name}{${added}}${rest}`;
}

/**
 * One exposition from several. A sample belongs to the family of the TYPE line before it in its source when its
 * name is that family's name or the name plus a histogram or summary suffix (_bucket, _sum, _count); otherwise it is
 * a family of its own (untyped). The first HELP and TYPE seen for a family are kept; later ones are dropped.
 */
export function mergeMetrics(sources: readonly MetricsSource[]): string {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let found = families.get(name);
    if (found === undefined) {
      found = { help: undefined, type: undefined, samples: [] };
      families.set(name, found);
    }
    return found;
  };
  for (const source of sources) {
    let current: string | undefined;
    for (const line of source.text.split("\n")) {
      if (line.trim() === "") continue;
      const comment = /^#\s*(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (comment !== null) {
        const [, kind, name, rest] = comment as unknown as [string, string, string, string | undefined];
        current = name;
        const entry = family(name);
        if (kind === "HELP") entry.help ??= rest ?? "";
        else entry.type ??= rest ?? "untyped";
        continue;
      }
      if (line.startsWith("#")) continue;
      const name = sampleName(line);
      const owner =
        current !== undefined &&
        (name === current || (name.startsWith(current) && /^_(bucket|sum|count)$/.test(name.slice(current.length))))
          ? current
          : name;
      if (owner !== current) current = undefined;
      family(owner).samples.push(withLabels(line, source.labels ?? {}));
    }
  }
  const out: string[] = [];
  for (const [name, entry] of families) {
    if (entry.help !== undefined) out.push(`# HELP ${name} ${entry.help}`);
    if (entry.type !== undefined) out.push(`# TYPE ${name} ${entry.type}`);
    out.push(...entry.samples);
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`;
}
