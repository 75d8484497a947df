// JSON-lines logs on stdout (journald keeps them). One object a line: time, level, event, then fields.
// Payloads are never logged: the server does not read them.

import type { LogLevel } from "./config.ts";

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  /** Written at every level (as info): start and stop, which tools read for the port and the outcome. */
  notice(event: string, fields?: Record<string, unknown>): void;
}

export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (line) => process.stdout.write(line),
): Logger {
  const threshold = levelRank[level];
  const emit = (entryLevel: LogLevel, event: string, fields?: Record<string, unknown>, always = false) => {
    if (!always && levelRank[entryLevel] < threshold) return;
    write(`${JSON.stringify({ time: new Date().toISOString(), level: entryLevel, event, ...fields })}\n`);
  };
  return {
    debug: (event, fields) => emit("debug", event, fields),
    info: (event, fields) => emit("info", event, fields),
    warn: (event, fields) => emit("warn", event, fields),
    error: (event, fields) => emit("error", event, fields),
    notice: (event, fields) => emit("info", event, fields, true),
  };
}
