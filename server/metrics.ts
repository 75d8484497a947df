// Counters, gauges and histograms, written out in the Prometheus text format (version 0.0.4). Written here rather
// than taken from prom-client: we need a few dozen series, labels from small fixed sets, and no Node-specific
// collectors; this file is smaller than the adapter code a library would need.

import { QueueTotals } from "./queue-totals.ts";
import { versionInfo } from "./version.ts";

type Labels = Readonly<Record<string, string | number>>;

function labelText(labels: Labels | undefined): string {
  if (labels === undefined) return "";
  const parts = Object.entries(labels).map(([key, value]) => `${key}="${String(value).replace(/["\\\n]/g, "_")}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** A sample value as the text format writes it (the infinities are +Inf and -Inf there). */
function valueText(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

export abstract class Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge" | "histogram",
  ) {}
  abstract lines(): string[];
}

export class Counter extends Metric {
  private readonly values = new Map<string, number>();
  /** Label text by value, for counters with one label: the hot path builds no object and no string. */
  private readonly keysByValue = new Map<string | number, string>();
  constructor(
    name: string,
    help: string,
    /** The name of the counter's single label, when it has one (for `incLabel`). */
    private readonly labelName?: string,
    /**
     * Label values whose series are written from the start, at 0: `increase()` sees a series' first step only
     * when the series existed before it (a series born at 1 shows no increase).
     */
    initialValues: ReadonlyArray<string | number> = [],
  ) {
    super(name, help, "counter");
    for (const value of initialValues) this.incLabel(value, 0);
  }
  inc(labels?: Labels, by = 1): void {
    const key = labelText(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  /** `inc({ [labelName]: value })` without building the label object each time. */
  incLabel(value: string | number, by = 1): void {
    let key = this.keysByValue.get(value);
    if (key === undefined) {
      key = labelText({ [this.labelName ?? "label"]: value });
      this.keysByValue.set(value, key);
    }
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  get(labels?: Labels): number {
    return this.values.get(labelText(labels)) ?? 0;
  }
  lines(): string[] {
    if (this.values.size === 0) return [`${this.name} 0`];
    return [...this.values].map(([labels, value]) => `${this.name}${labels} ${value}`);
  }
}

/** Reads its value(s) when rendered: a gauge, or a counter kept elsewhere (process CPU seconds). */
export class Gauge extends Metric {
  private readonly values = new Map<string, number>();
  constructor(
    name: string,
    help: string,
    private readonly collect?: () => number | Array<[Labels, number]>,
    type: "gauge" | "counter" = "gauge",
  ) {
    super(name, help, type);
  }
  set(value: number, labels?: Labels): void {
    this.values.set(labelText(labels), value);
  }
  lines(): string[] {
    if (this.collect !== undefined) {
      const collected = this.collect();
      if (typeof collected === "number") return [`${this.name} ${valueText(collected)}`];
      return collected.map(([labels, value]) => `${this.name}${labelText(labels)} ${valueText(value)}`);
    }
    return [...this.values].map(([labels, value]) => `${this.name}${labels} ${valueText(value)}`);
  }
}

export class Histogram extends Metric {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    name: string,
    help: string,
    private readonly buckets: readonly number[],
  ) {
    super(name, help, "histogram");
    this.counts = new Array<number>(buckets.length).fill(0);
  }
  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let index = 0; index < this.buckets.length; index++) if (value <= this.buckets[index]!) this.counts[index]!++;
  }
  get observations(): number {
    return this.count;
  }
  lines(): string[] {
    const lines = this.buckets.map((bound, index) => `${this.name}_bucket{le="${bound}"} ${this.counts[index]}`);
    lines.push(
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${this.sum}`,
      `${this.name}_count ${this.count}`,
    );
    return lines;
  }
}

/** Every metric of the server, by name. Gauges that read live state get their collector from the server. */
/**
 * The checkpoint thread's series (storage/wal-checkpointer.ts). A server process has them in its Metrics; in worker
 * mode the supervisor runs the one checkpoint thread and shows its own set.
 */
export function walCheckpointMetrics() {
  return {
    checkpoints: new Counter(
      "switchboard_wal_checkpoints_total",
      "Write-ahead-log checkpoints done by the checkpoint thread (a log that grew since the last one)",
    ),
    seconds: new Histogram(
      "switchboard_wal_checkpoint_duration_seconds",
      "Duration of one checkpoint on the checkpoint thread (its fsyncs; the event loop does not wait for it)",
      [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    ),
    failures: new Counter(
      "switchboard_wal_checkpoint_failures_total",
      "Checkpoints the thread could not do (logged as checkpoint_failed; the server's own connections then checkpoint past their fallback)",
    ),
  };
}

/** Counts the checkpoint thread's reports into `set`; failures also go to `logFailure`. */
export function walCheckpointObserver(
  set: ReturnType<typeof walCheckpointMetrics>,
  logFailure: (path: string, error: string) => void,
): { checkpointed(frames: number, ms: number): void; failed(path: string, error: string): void } {
  return {
    checkpointed(_frames, ms) {
      set.checkpoints.inc();
      set.seconds.observe(ms / 1000);
    },
    failed(path, error) {
      set.failures.inc();
      logFailure(path, error);
    },
  };
}

/** The text exposition of `metrics` (the supervisor's own series). */
export function renderMetrics(metrics: readonly Metric[]): string {
  return `${metrics
    .flatMap((metric) => [
      `# HELP ${metric.name} ${metric.help}`,
      `# TYPE ${metric.name} ${metric.type}`,
      ...metric.lines(),
    ])
    .join("\n")}\n`;
}

/**
 * Event-loop delay buckets (seconds): fine between 10 and 100 ms, where a stall starts to show in a message's round
 * trip, so that a bench or an alert can tell a 20 ms worst from a 50 ms one.
 */
const eventLoopDelayBuckets = [
  0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5,
];

export class Metrics {
  readonly connectionsAccepted = new Counter(
    "switchboard_connections_accepted_total",
    "TCP/WebSocket connections accepted",
  );
  readonly connectionsClosed = new Counter("switchboard_connections_closed_total", "Connections closed");
  readonly lastSeenBusy = new Counter(
    "switchboard_last_seen_busy_total",
    "Last-seen writes that found the directory locked by another process and were put off to the next interval",
  );
  readonly lastSeenDropped = new Counter(
    "switchboard_last_seen_dropped_total",
    "Last-seen notes not kept because lastSeenPendingMax devices already waited",
  );
  readonly turnsYielded = new Counter(
    "switchboard_session_turns_yielded_total",
    "Times a session used up sessionTurnWorkMsMax in one event-loop turn and waited for the next with its socket paused",
  );
  readonly logins = new Counter("switchboard_logins_total", "Successful logins, registrations and links, by kind");
  readonly loginFailures = new Counter(
    "switchboard_login_failures_total",
    "Failed or refused authentications, by error code name",
    "code",
  );
  readonly framesIn = new Counter("switchboard_frames_in_total", "Frames received, by stanza kind", "kind");
  readonly framesOut = new Counter("switchboard_frames_out_total", "Frames sent, by stanza kind", "kind");
  readonly frameBytesIn = new Counter(
    "switchboard_frame_bytes_in_total",
    "Bytes of frames received, by stanza kind",
    "kind",
  );
  readonly frameBytesOut = new Counter(
    "switchboard_frame_bytes_out_total",
    "Bytes of frames sent, by stanza kind",
    "kind",
  );
  readonly bytesIn = new Counter("switchboard_bytes_in_total", "Bytes received on client sockets");
  readonly bytesOut = new Counter("switchboard_bytes_out_total", "Bytes written to client sockets");
  readonly socketWrites = new Counter(
    "switchboard_socket_writes_total",
    "write() calls on client sockets (frames_out / this = frames per write)",
  );
  readonly errors = new Counter(
    "switchboard_errors_total",
    "Error frames sent and sessions aborted, by code name",
    "code",
  );
  readonly messagesAccepted = new Counter("switchboard_messages_accepted_total", "Sends accepted (server-acked)");
  readonly entriesCancelled = new Counter(
    "switchboard_entries_cancelled_total",
    "Queue entries acknowledged before their batch committed (never written)",
  );
  readonly commitRows = new Histogram(
    "switchboard_commit_rows",
    "Rows per group commit",
    [1, 4, 16, 64, 256, 1024, 4096, 16384],
  );
  readonly commitSeconds = new Histogram(
    "switchboard_commit_duration_seconds",
    "Duration of one group commit",
    [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
  );
  /** Filled by the checkpoint thread's reports (walCheckpointObserver); the supervisor's own set in worker mode. */
  private readonly walCheckpointSet = walCheckpointMetrics();
  readonly walCheckpoints = this.walCheckpointSet.checkpoints;
  readonly walCheckpointSeconds = this.walCheckpointSet.seconds;
  readonly walCheckpointFailures = this.walCheckpointSet.failures;
  readonly sweptRows = new Counter("switchboard_retention_swept_total", "Queue rows deleted past retention");
  // End-to-end keys (issue 15): the key directory.
  readonly keyUploads = new Counter(
    "switchboard_key_uploads_total",
    "keysUpload requests, by result (stored, invalid, tooMany)",
    "result",
    ["stored", "invalid", "tooMany"],
  );
  readonly keyFetches = new Counter(
    "switchboard_key_fetches_total",
    "keysFetch requests, by result (ok, rateLimited, unknownAccount)",
    "result",
    ["ok", "rateLimited", "unknownAccount"],
  );
  readonly keyBundlesServed = new Counter(
    "switchboard_key_bundles_total",
    "Bundles handed out, by the prekey they carried (oneTime, lastResort, none)",
    "prekey",
    ["oneTime", "lastResort", "none"],
  );
  readonly identityChanges = new Counter(
    "switchboard_identity_changes_total",
    "Devices that published a new identity key (an identityChange event was queued for their fetchers)",
  );
  /** Kept by the commit path; written as switchboard_queue_rows and switchboard_queue_bytes (queue-totals.ts). */
  readonly queueTotals = new QueueTotals();
  /** switchboard_config_last_reload_successful: 0 from a failed SIGHUP reload until one succeeds. */
  lastReloadSuccessful = 1;
  readonly reloads = new Counter(
    "switchboard_reloads_total",
    "SIGHUP reloads of handler code and config, by result",
    "result",
    ["ok", "failed"],
  );
  readonly eventLoopLag = new Histogram(
    "switchboard_event_loop_delay_seconds",
    "How late each event-loop probe fired (every eventLoopProbeMs)",
    eventLoopDelayBuckets,
  );
  readonly eventLoopBusy = new Histogram(
    "switchboard_event_loop_busy_seconds",
    "Of each probe's delay, the part the event loop's thread was running (Linux): the server's own work, not the wait for a core",
    eventLoopDelayBuckets,
  );
  /** Always 1: its labels say which version runs on which Bun (join it to other series to see an upgrade). */
  readonly buildInfo = new Gauge("switchboard_build_info", "The running version and Bun version (always 1)", () => [
    [{ version: versionInfo().version, bun: versionInfo().bun }, 1],
  ]);
  private readonly gauges: Gauge[] = [];

  gauge(name: string, help: string, collect: () => number | Array<[Labels, number]>): void {
    this.gauges.push(new Gauge(name, help, collect));
  }

  /** A counter whose value is kept elsewhere and read at render time (the process's CPU seconds). */
  counter(name: string, help: string, collect: () => number): void {
    this.gauges.push(new Gauge(name, help, collect, "counter"));
  }

  /** Values read asynchronously (the store's totals) just before each render. */
  private readonly refreshers: Array<() => Promise<void>> = [];

  refreshBeforeRender(refresh: () => Promise<void>): void {
    this.refreshers.push(refresh);
  }

  /** The Prometheus text exposition of every metric, after the asynchronous refreshers ran. */
  async renderFresh(): Promise<string> {
    for (const refresh of this.refreshers) await refresh();
    return this.render();
  }

  /** The Prometheus text exposition of every metric. */
  render(): string {
    const all: Metric[] = [
      ...(Object.values(this).filter((value) => value instanceof Metric) as Metric[]),
      ...this.gauges,
    ];
    return renderMetrics(all);
  }
}
