// Command-line options of `npm run bench -- <scenario> [options]`, with each scenario's defaults (sized to finish in
// a few minutes on a 2-core host) and the --quick sizes for smoke runs. Parsed by node:util parseArgs, strictly: an
// unknown option is refused.

import { parseArgs } from "node:util";
import { sessionsPerWorkerMax } from "./load-fleet.ts";

export const scenarioNames = [
  "density",
  "throughput",
  "latency",
  "rate",
  "storm",
  "micro",
  "million",
  "groups",
  "encryption",
] as const;
export type ScenarioName = (typeof scenarioNames)[number];

/** A server process holds at most ~19,900 sockets here (RLIMIT_NOFILE 20,000 cannot be raised). */
export const serverSessionsMax = 19_000;
/** million: its default size, its --quick size, the largest it accepts, and its bound on the whole run. */
export const millionSessions = 1_000_000;
export const millionQuickSessions = 400;
export const millionSessionsMax = 2_000_000;
export const millionDeadlineS = 1200;

export interface BenchOptions {
  readonly scenario: ScenarioName;
  readonly quick: boolean;
  /** An existing server (host:port) instead of starting one; its admin listener and process id if known. */
  readonly target: string | null;
  readonly admin: string | null;
  readonly serverPid: number | null;
  readonly out: string | null;
  readonly seed: number;
  /** Idle sessions (density, latency, storm). */
  readonly sessions: number;
  /** Measuring time of a phase in seconds (throughput online phase, each latency probe phase). */
  readonly durationS: number;
  readonly warmupS: number;
  /** Quiet time before memory is read (density) or the probe starts (latency, storm). */
  readonly settleS: number;
  readonly sessionsPerWorker: number;
  /** Login attempts in flight per load worker while ramping. */
  readonly concurrency: number;
  readonly workers: number | null;
  /** Throughput: sender/receiver pairs, sends in flight per sender, offline messages in all, payload size. */
  readonly pairs: number;
  readonly window: number;
  readonly messages: number;
  readonly payloadBytes: number;
  readonly synchronous: "normal" | "full";
  /** Rate: the open-loop rates (messages a second over all pairs), run in turn. */
  readonly rates: readonly number[];
  /** Latency and storm: one probe every intervalMs. */
  readonly intervalMs: number;
  /** Storm: how long the probe runs before the drop, and the bound on getting everyone back. */
  readonly baselineS: number;
  readonly deadlineS: number;
  /** Storm: drop with a reset (RST) instead of a graceful close (FIN). */
  readonly dropAbort: boolean;
  /** Storm: override the SDK's reconnect backoff (initial ms). */
  readonly backoffInitialMs: number | null;
  /** Micro: tinybench time per task. */
  readonly microTimeMs: number;
  /** Write a CPU profile of the server (bun --cpu-prof) next to the result. */
  readonly profile: boolean;
  readonly progress: boolean;
  /**
   * Density: the sessions' transport, raw TCP, WebSocket (the server's --ws-port, binary messages) or Noise on raw
   * TCP (the server started with tcpEncryption = "noise"); throughput: tcp or noise.
   */
  readonly transport: "tcp" | "ws" | "noise";
  /** Extra server flags, name=value (kebab-case, no dashes). */
  readonly serverFlags: Readonly<Record<string, string>>;
  /** Density: project memory and file limits for this many sessions from the measured figures. */
  readonly plan: number | null;
  /** Density: after the idle figures, every session exchanges one message, goes quiet, and memory is read again. */
  readonly activity: boolean;
}

interface Defaults {
  sessions: number;
  durationS: number;
  warmupS: number;
  settleS: number;
  pairs: number;
  window: number;
  messages: number;
  baselineS: number;
  deadlineS: number;
  microTimeMs: number;
}

const fullDefaults: Defaults = {
  sessions: 15_000,
  durationS: 10,
  warmupS: 1,
  settleS: 10,
  pairs: 100,
  window: 32,
  messages: 100_000,
  baselineS: 3,
  deadlineS: 120,
  microTimeMs: 400,
};

const quickDefaults: Defaults = {
  sessions: 500,
  durationS: 2,
  warmupS: 0.5,
  settleS: 1,
  pairs: 20,
  window: 16,
  messages: 4_000,
  baselineS: 1,
  deadlineS: 30,
  microTimeMs: 40,
};

export const usage = `npm run bench -- <scenario> [options]

Scenarios:
  density      N idle logged-in sessions: server RSS, JS heap and kernel socket memory per session, logins/s while
               ramping, accept-queue overflows, ratio to a bare Bun.listen server holding as many plain sockets
  throughput   K sender/receiver pairs with the full ack chain: delivered msgs/s, server CPU s per million; then
               M messages queued for offline devices, the devices log in and drain: enqueue and drain rates
  latency      round trip of a probe pair with and without N idle sessions: p50/p99/max and the p99 ratio
  rate         open loop: K pairs send at fixed rates (--rates) with the full ack chain; latency p50/p99/p999/max
               from each send's scheduled time (no coordinated omission), server CPU, worst event-loop delay
  storm        N sessions drop at once and reconnect with jittered backoff: time until all are back, failures,
               probe p99 during the storm
  micro        tinybench: codec, Ed25519 verification, the store's batch insert and ack-delete
  million      N idle logged-in sessions (default 1,000,000) to \`switchboard start --workers W\` (W from the file
               limit), from load processes on their own source addresses; tunes the host's sysctls (and puts them
               back), refuses a size that does not fit in memory, then: server PSS per session and its split, kernel
               memory per connection, logins/s, probe p99 with all against none, time to the target; and a bare
               Bun.listen floor in as many processes
  groups       sends to groups of 10, 100 and 1,024 members with the full ack chain: sends/s, deliveries/s,
               server CPU per delivered message against 1:1 in the same run, worst event-loop delay, and the
               rows and payload copies one offline group message takes in the store
  encryption   plaintext, Noise and TLS side by side: idle session RSS and server CPU per relayed message
               (--sessions, at most 3000; --messages, at least 10000)

Options:
  --quick                  small sizes for a smoke run (500 sessions, ~2 s phases)
  --sessions N             idle sessions (default 15000; at most ${serverSessionsMax} for a server started here;
                           million: default 1000000, --quick 400)
  --duration-s N           measuring time of a phase (default 10)
  --settle-s N             quiet time before memory is read / the probe starts (default 10 density, else 3)
  --seed N                 seeds keys, handles and jitter (default 1)
  --out FILE               result file (default bench/results/<scenario>-<timestamp>.json)
  --target HOST:PORT       use a running server (open registration) instead of starting one
  --admin HOST:PORT        its admin HTTP listener (metrics); --server-pid PID to read its /proc
  --sessions-per-worker N  sessions per load worker process (default 5000; million and at most ${sessionsPerWorkerMax})
  --concurrency N          logins in flight per load worker while ramping (default 128)
  --workers N              load worker processes for throughput (default 1)
  --pairs K --window W --messages M --payload-bytes B   throughput sizes (100, 32, 100000, 20)
  --synchronous normal|full                             durability of the server's commits (throughput, rate)
  --rates R1,R2,...        rate: messages a second over all pairs, each in turn (default 1000,5000,20000)
  --interval-ms N          probe interval (default 5)
  --baseline-s N --deadline-s N --backoff-initial-ms N  storm: probe time before the drop, bound, backoff;
                           million: --deadline-s bounds the whole run (default ${millionDeadlineS})
  --drop fin|rst           storm: close the sockets gracefully (default) or reset them
  --micro-time-ms N        tinybench time per task (default 400)
  --transport tcp|ws|noise density: sessions over raw TCP (default) or WebSocket (the server's --ws-port, /ws),
                           against a bare Bun.listen or a bare Bun.serve WebSocket floor; with --target, the target
                           is the WebSocket host:port. noise: Noise on raw TCP (the server with tcpEncryption =
                           "noise", the load workers as XX initiators) against the bare Bun.listen floor; density and
                           throughput
  --server-flag NAME=VALUE extra flag for the server (repeatable), e.g. --server-flag listeners=2
  --activity               density: then every session exchanges one message (the full ack chain) and goes quiet for
                           deviceStateIdleReleaseMs: memory per session after activity against idle
  --plan N                 density: project server memory and the host's file and socket limits for N sessions
                           from the measured figures (what \`switchboard doctor --sessions N\` then checks)
  --profile                write a CPU profile of the server (bun --cpu-prof --cpu-prof-md) next to the result
  --no-progress            no progress bar on stderr`;

export class OptionsError extends Error {
  override readonly name = "OptionsError";
}

/** Options that take a value (each a string to parseArgs; numbers are checked below). */
const valueOptions = [
  "target",
  "admin",
  "server-pid",
  "out",
  "seed",
  "sessions",
  "duration-s",
  "warmup-s",
  "settle-s",
  "sessions-per-worker",
  "concurrency",
  "workers",
  "pairs",
  "window",
  "messages",
  "payload-bytes",
  "synchronous",
  "interval-ms",
  "baseline-s",
  "deadline-s",
  "backoff-initial-ms",
  "drop",
  "micro-time-ms",
  "transport",
  "plan",
  "rates",
] as const;
const flagOptions = ["quick", "profile", "no-progress", "activity"] as const;

const parseOptions = {
  ...Object.fromEntries(valueOptions.map((name) => [name, { type: "string" as const }])),
  ...Object.fromEntries(flagOptions.map((name) => [name, { type: "boolean" as const }])),
  "server-flag": { type: "string" as const, multiple: true },
  help: { type: "boolean" as const, short: "h" },
};

/** The largest --plan: a hundred million sessions is beyond any one host; the projection is linear anyway. */
export const planSessionsMax = 100_000_000;

export function parseBenchArguments(argv: readonly string[]): BenchOptions | "help" {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options: parseOptions, allowPositionals: true, strict: true });
  } catch (error) {
    throw new OptionsError((error as Error).message);
  }
  const positional = parsed.positionals;
  const values = new Map<string, string>();
  for (const name of valueOptions) {
    const value = parsed.values[name];
    if (typeof value === "string") values.set(name, value);
  }
  for (const name of flagOptions) if (parsed.values[name] === true) values.set(name, "true");
  const serverFlags: Record<string, string> = {};
  for (const value of (parsed.values["server-flag"] as string[] | undefined) ?? []) {
    const split = value.indexOf("=");
    if (split <= 0) throw new OptionsError(`--server-flag ${value}: NAME=VALUE`);
    serverFlags[value.slice(0, split).replace(/^--/, "")] = value.slice(split + 1);
  }
  if (parsed.values.help === true || positional[0] === "help" || positional.length === 0) return "help";
  const scenario = positional[0] as ScenarioName;
  if (!scenarioNames.includes(scenario)) throw new OptionsError(`unknown scenario ${positional[0]}`);
  if (positional.length > 1) throw new OptionsError(`unexpected argument ${positional[1]}`);

  const quick = values.get("quick") === "true";
  const defaults = quick ? quickDefaults : fullDefaults;
  const number = (name: string, fallback: number, min: number, max: number, integer = true): number => {
    const text = values.get(name);
    if (text === undefined) return fallback;
    const parsed = Number(text.replaceAll("_", ""));
    if (!Number.isFinite(parsed) || parsed < min || parsed > max || (integer && !Number.isInteger(parsed))) {
      throw new OptionsError(`--${name}: ${integer ? "an integer" : "a number"} in ${min}..${max}`);
    }
    return parsed;
  };
  const optionalNumber = (name: string, min: number, max: number): number | null =>
    values.has(name) ? number(name, 0, min, max) : null;

  const target = values.get("target") ?? null;
  if (scenario === "million" && target !== null)
    throw new OptionsError("--target: not for million (it starts its own server with many workers)");
  const sessions = number(
    "sessions",
    scenario === "million" ? (quick ? millionQuickSessions : millionSessions) : defaults.sessions,
    1,
    target === null && scenario !== "million" ? serverSessionsMax : millionSessionsMax,
  );
  const synchronous = values.get("synchronous") ?? "normal";
  const drop = values.get("drop") ?? "fin";
  if (drop !== "fin" && drop !== "rst") throw new OptionsError("--drop: fin or rst");
  if (synchronous !== "normal" && synchronous !== "full") throw new OptionsError("--synchronous: normal or full");
  const transport = values.get("transport") ?? "tcp";
  if (transport !== "tcp" && transport !== "ws" && transport !== "noise") {
    throw new OptionsError("--transport: tcp, ws or noise");
  }
  if (transport === "ws" && scenario !== "density") throw new OptionsError("--transport ws: density only");
  if (transport === "noise" && scenario !== "density" && scenario !== "throughput") {
    throw new OptionsError("--transport noise: density and throughput only");
  }
  if (values.has("activity") && scenario !== "density") throw new OptionsError("--activity: density only");
  if (values.has("plan") && scenario !== "density") {
    throw new OptionsError("--plan: density only (it projects from the memory each session takes)");
  }
  const rates = (values.get("rates") ?? (quick ? "1000,5000" : "1000,5000,20000")).split(",").map((text) => {
    const rate = Number(text.replaceAll("_", ""));
    if (!Number.isInteger(rate) || rate < 1 || rate > 1_000_000)
      throw new OptionsError("--rates: integers in 1..1000000");
    return rate;
  });
  const settleDefault =
    scenario === "density" || scenario === "million" ? defaults.settleS : Math.min(3, defaults.settleS);
  return {
    scenario,
    quick,
    target,
    admin: values.get("admin") ?? null,
    serverPid: optionalNumber("server-pid", 1, 2 ** 31),
    out: values.get("out") ?? null,
    seed: number("seed", 1, 0, 2 ** 31),
    sessions,
    durationS: number("duration-s", defaults.durationS, 0.1, 3600, false),
    warmupS: number("warmup-s", defaults.warmupS, 0, 600, false),
    settleS: number("settle-s", settleDefault, 0, 600, false),
    sessionsPerWorker: number(
      "sessions-per-worker",
      scenario === "million" ? sessionsPerWorkerMax : 5_000,
      1,
      sessionsPerWorkerMax,
    ),
    concurrency: number("concurrency", 128, 1, 4096),
    workers: optionalNumber("workers", 1, 16),
    pairs: number("pairs", defaults.pairs, 1, 5_000),
    window: number("window", defaults.window, 1, 10_000),
    messages: number("messages", defaults.messages, 1, 10_000_000),
    payloadBytes: number("payload-bytes", 20, 4, 60 * 1024),
    synchronous,
    rates,
    intervalMs: number("interval-ms", 5, 1, 10_000),
    baselineS: number("baseline-s", defaults.baselineS, 0.1, 600, false),
    deadlineS: number("deadline-s", scenario === "million" ? millionDeadlineS : defaults.deadlineS, 1, 3600, false),
    backoffInitialMs: optionalNumber("backoff-initial-ms", 1, 600_000),
    dropAbort: (values.get("drop") ?? "fin") === "rst",
    microTimeMs: number("micro-time-ms", defaults.microTimeMs, 1, 60_000),
    profile: values.get("profile") === "true",
    progress: values.get("no-progress") !== "true",
    transport,
    serverFlags,
    plan: optionalNumber("plan", 1, planSessionsMax),
    activity: values.get("activity") === "true",
  };
}
