import { describe, expect, test } from "bun:test";
import { Metrics } from "./metrics.ts";
import { mergeMetrics, withLabels } from "./metrics-merge.ts";

describe("withLabels", () => {
  test("inserts labels first, into an existing label set or a new one", () => {
    expect(withLabels("a_total 3", { worker: "1" })).toBe('a_total{worker="1"} 3');
    expect(withLabels('a_total{kind="x"} 3', { worker: "1" })).toBe('a_total{worker="1",kind="x"} 3');
    expect(withLabels("a_total{} 3 1700000000", { worker: "0" })).toBe('a_total{worker="0"} 3 1700000000');
    expect(withLabels('b{le="+Inf"} 1', {})).toBe('b{le="+Inf"} 1');
  });
});

describe("mergeMetrics", () => {
  const worker = (restarts: number) =>
    [
      "# HELP switchboard_logins_total Logins",
      "# TYPE switchboard_logins_total counter",
      `switchboard_logins_total{result="ok"} ${restarts}`,
      'switchboard_logins_total{result="failed"} 0',
      "# HELP switchboard_commit_seconds Commit time",
      "# TYPE switchboard_commit_seconds histogram",
      'switchboard_commit_seconds_bucket{le="0.001"} 1',
      'switchboard_commit_seconds_bucket{le="+Inf"} 2',
      "switchboard_commit_seconds_sum 0.5",
      "switchboard_commit_seconds_count 2",
      "",
    ].join("\n");

  test("keeps HELP and TYPE once per family and groups every source's samples under it", () => {
    const merged = mergeMetrics([
      { text: "# HELP own_up Workers up\n# TYPE own_up gauge\nown_up 2\n" },
      { text: worker(5), labels: { worker: "0" } },
      { text: worker(7), labels: { worker: "1" } },
    ]);
    expect(merged).toBe(
      [
        "# HELP own_up Workers up",
        "# TYPE own_up gauge",
        "own_up 2",
        "# HELP switchboard_logins_total Logins",
        "# TYPE switchboard_logins_total counter",
        'switchboard_logins_total{worker="0",result="ok"} 5',
        'switchboard_logins_total{worker="0",result="failed"} 0',
        'switchboard_logins_total{worker="1",result="ok"} 7',
        'switchboard_logins_total{worker="1",result="failed"} 0',
        "# HELP switchboard_commit_seconds Commit time",
        "# TYPE switchboard_commit_seconds histogram",
        'switchboard_commit_seconds_bucket{worker="0",le="0.001"} 1',
        'switchboard_commit_seconds_bucket{worker="0",le="+Inf"} 2',
        'switchboard_commit_seconds_sum{worker="0"} 0.5',
        'switchboard_commit_seconds_count{worker="0"} 2',
        'switchboard_commit_seconds_bucket{worker="1",le="0.001"} 1',
        'switchboard_commit_seconds_bucket{worker="1",le="+Inf"} 2',
        'switchboard_commit_seconds_sum{worker="1"} 0.5',
        'switchboard_commit_seconds_count{worker="1"} 2',
        "",
      ].join("\n"),
    );
  });

  test("an untyped sample is a family of its own; a sample with a similar name is not taken into a family", () => {
    const merged = mergeMetrics([
      { text: "# TYPE a counter\na 1\nab 2\na_sum 3\n", labels: { worker: "0" } },
      { text: "a 4\n", labels: { worker: "1" } },
    ]);
    expect(merged).toBe('# TYPE a counter\na{worker="0"} 1\na{worker="1"} 4\nab{worker="0"} 2\na_sum{worker="0"} 3\n');
  });

  test("nothing in, nothing out; other comments are dropped", () => {
    expect(mergeMetrics([])).toBe("");
    expect(mergeMetrics([{ text: "# a comment\n\n" }])).toBe("");
  });

  test("the server's own exposition survives the merge: every family once, every sample labelled", () => {
    const metrics = new Metrics();
    const text = metrics.render();
    const merged = mergeMetrics([
      { text, labels: { worker: "0" } },
      { text, labels: { worker: "1" } },
    ]);
    const typeLines = merged.split("\n").filter((line) => line.startsWith("# TYPE"));
    expect(new Set(typeLines).size).toBe(typeLines.length);
    expect(typeLines.length).toBe(text.split("\n").filter((line) => line.startsWith("# TYPE")).length);
    const samples = merged.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
    expect(samples.length).toBe(2 * text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).length);
    for (const sample of samples) expect(sample).toMatch(/^[a-z_:][a-z0-9_:]*\{worker="[01]"[,}]/);
    // Each family's samples are contiguous: a family's name never reappears after another family began.
    const order = samples.map((sample) => sample.replace(/(_bucket|_sum|_count)?\{.*$/, ""));
    const seen = new Set<string>();
    for (let index = 0; index < order.length; index++) {
      if (index > 0 && order[index] !== order[index - 1]) expect(seen.has(order[index]!)).toBe(false);
      seen.add(order[index - 1] ?? order[index]!);
    }
  });
});
