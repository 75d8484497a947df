// JSON-lines logs: one object a line (time, level, event, then fields). Payloads are never logged: the server does
// not read them.
//
// Where lines go: debug and info to stdout, warn and error to stderr, so that any supervisor can tell them apart.
// Under systemd (JOURNAL_STREAM names the stream the line goes to) each line also starts with its syslog priority,
// `<3>` for an error (sd-daemon(3)): journald strips it and files the line at that priority, so `journalctl -p err`
// finds errors. (journald gives stdout and stderr the same default priority; the prefix is what tells them apart.)
//
// Lines a peer can cause (a failed login, bad input, connection events) go through `peer()`, which keeps at most
// peerLogLimits lines per event kind: a peer must not control the log volume. What it holds back is counted and
// written as one `log_suppressed` line per event kind.

import { fstatSync } from "node:fs";
import type { LogLevel } from "./config.ts";

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
/** syslog priorities (sd-daemon(3) prefixes). */
const syslogPriority: Record<LogLevel, number> = { debug: 7, info: 6, warn: 4, error: 3 };

/**
 * The limits of lines peers can cause, in one place. A token bucket per event kind (login_failed, protocol_error,
 * connected, ...): `burstLines` at once, refilled at `linesPerSecond`. Per event kind rather than per peer address,
 * so the table is as small as the set of events and a peer with many addresses gains nothing; the counters
 * (switchboard_login_failures_total, switchboard_errors_total) still count every event.
 */
export interface PeerLogLimits {
  readonly linesPerSecond: number;
  readonly burstLines: number;
  /** How long after the first held-back line the `log_suppressed` summary of an event kind is written. */
  readonly summaryIntervalMs: number;
}

export const peerLogLimits: PeerLogLimits = Object.freeze({
  linesPerSecond: 20,
  burstLines: 200,
  summaryIntervalMs: 10_000,
});

export interface Logger {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  /** Written at every level (as info): start and stop, which tools read for the port and the outcome. */
  notice(event: string, fields?: Record<string, unknown>): void;
  /** A line a peer can cause: written within peerLogLimits for its event kind, otherwise counted (see above). */
  peer(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
}

/** Where a finished line goes; `level` picks the stream. */
export type LogWrite = (line: string, level: LogLevel) => void;

/** True when file descriptor `fd` is the journal stream systemd named in JOURNAL_STREAM ("device:inode"). */
function isJournalStream(fd: number, journalStream: string | undefined): boolean {
  if (journalStream === undefined) return false;
  try {
    const stat = fstatSync(fd);
    return journalStream === `${stat.dev}:${stat.ino}`;
  } catch {
    return false;
  }
}

/** stdout for debug and info, stderr for warn and error; with the priority prefix where the stream is journald's. */
export function standardStreams(journalStream: string | undefined = process.env.JOURNAL_STREAM): LogWrite {
  const journalOut = isJournalStream(1, journalStream);
  const journalError = isJournalStream(2, journalStream);
  return (line, level) => {
    const toError = levelRank[level] >= levelRank.warn;
    const journal = toError ? journalError : journalOut;
    const text = journal ? `<${syslogPriority[level]}>${line}` : line;
    if (toError) process.stderr.write(text);
    else process.stdout.write(text);
  };
}

export function createLogger(
  level: LogLevel,
  write: LogWrite = standardStreams(),
  options: { limits?: PeerLogLimits; now?: () => number } = {},
): Logger {
  const threshold = levelRank[level];
  const limits = options.limits ?? peerLogLimits;
  const now = options.now ?? (() => performance.now());
  const emit = (entryLevel: LogLevel, event: string, fields?: Record<string, unknown>, always = false) => {
    if (!always && levelRank[entryLevel] < threshold) return;
    write(`${JSON.stringify({ time: new Date().toISOString(), level: entryLevel, event, ...fields })}\n`, entryLevel);
  };

  // Per event kind: tokens left and when they were refilled; lines held back since the last summary.
  const buckets = new Map<string, { tokens: number; refilledAtMs: number }>();
  const held = new Map<string, { lines: number; level: LogLevel; sinceMs: number }>();
  let summaryTimer: ReturnType<typeof setTimeout> | null = null;
  const summarise = () => {
    summaryTimer = null;
    const nowMs = now();
    for (const [event, entry] of held) {
      emit(entry.level, "log_suppressed", {
        suppressedEvent: event,
        lines: entry.lines,
        seconds: Math.round((nowMs - entry.sinceMs) / 100) / 10,
      });
    }
    held.clear();
  };
  const peer = (entryLevel: LogLevel, event: string, fields?: Record<string, unknown>) => {
    if (levelRank[entryLevel] < threshold) return;
    const nowMs = now();
    let bucket = buckets.get(event);
    if (bucket === undefined) {
      bucket = { tokens: limits.burstLines, refilledAtMs: nowMs };
      buckets.set(event, bucket);
    }
    bucket.tokens = Math.min(
      limits.burstLines,
      bucket.tokens + ((nowMs - bucket.refilledAtMs) * limits.linesPerSecond) / 1000,
    );
    bucket.refilledAtMs = nowMs;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      emit(entryLevel, event, fields);
      return;
    }
    const entry = held.get(event);
    if (entry === undefined) held.set(event, { lines: 1, level: entryLevel, sinceMs: nowMs });
    else entry.lines++;
    if (summaryTimer === null) {
      summaryTimer = setTimeout(summarise, limits.summaryIntervalMs);
      summaryTimer.unref?.();
    }
  };

  return {
    debug: (event, fields) => emit("debug", event, fields),
    info: (event, fields) => emit("info", event, fields),
    warn: (event, fields) => emit("warn", event, fields),
    error: (event, fields) => emit("error", event, fields),
    notice: (event, fields) => emit("info", event, fields, true),
    peer,
  };
}
