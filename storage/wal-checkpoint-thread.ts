// The body of the checkpoint thread (wal-checkpointer.ts starts it as a Bun Worker): its own connection to each
// watched database file, and every `intervalMs` a PASSIVE checkpoint of each log that grew. The fsyncs of a
// checkpoint (the log, then the database file) take milliseconds each on this host's disk; here they block this
// thread, never the event loop that serves sessions. PASSIVE copies what it can without waiting for readers or
// writers, so the server's connection never waits for this one either.

import { Database } from "bun:sqlite";
import { existsSync } from "node:fs";
import { type CheckpointReport, type CheckpointRequest, checkpointBusyTimeoutMs } from "./wal-checkpointer.ts";

declare const self: Worker;

interface Watched {
  readonly database: Database;
  /** Log frames at the last checkpoint: a log that has not grown since is left alone. */
  lastLog: number;
}

const watched = new Map<string, Watched>();
/**
 * Files to watch that do not exist yet (the supervisor watches every partition of a new data directory before its
 * workers create them): opened at a later tick.
 */
const pending = new Map<string, "normal" | "full">();
let timer: ReturnType<typeof setInterval> | null = null;

function report(message: CheckpointReport): void {
  self.postMessage(message);
}

function open(path: string, synchronous: "normal" | "full"): void {
  if (!existsSync(path)) {
    pending.set(path, synchronous);
    return;
  }
  pending.delete(path);
  try {
    const database = new Database(path, { readwrite: true, create: false });
    database.run(`pragma busy_timeout = ${checkpointBusyTimeoutMs}`);
    // Checkpoints fsync whatever the setting; this only matches the server's connection.
    database.run(`pragma synchronous = ${synchronous}`);
    watched.set(path, { database, lastLog: -1 });
  } catch (error) {
    report({ kind: "failed", path, error: String(error) });
  }
}

function checkpointAll(): void {
  for (const [path, synchronous] of pending) open(path, synchronous);
  for (const [path, entry] of watched) {
    const started = performance.now();
    try {
      const row = entry.database.query("pragma wal_checkpoint(PASSIVE)").get() as {
        busy: number;
        log: number;
        checkpointed: number;
      } | null;
      if (row === null || row.log <= 0 || (row.log === entry.lastLog && row.checkpointed === row.log)) continue;
      entry.lastLog = row.log;
      report({ kind: "checkpointed", path, frames: row.checkpointed, ms: performance.now() - started });
    } catch (error) {
      // Reported once: the file is left to its writer's own checkpoints (past the fallback) from now on.
      watched.delete(path);
      entry.database.close();
      report({ kind: "failed", path, error: String(error) });
    }
  }
}

self.onmessage = (event: MessageEvent<CheckpointRequest>) => {
  const request = event.data;
  switch (request.kind) {
    case "start":
      timer ??= setInterval(checkpointAll, request.intervalMs);
      return;
    case "watch":
      if (!watched.has(request.path)) open(request.path, request.synchronous);
      return;
    case "unwatch": {
      const entry = watched.get(request.path);
      watched.delete(request.path);
      pending.delete(request.path);
      // Closed before the server closes its own connection, so the server's close (the last one) checkpoints the
      // log whole and removes it, as it does without this thread.
      entry?.database.close();
      report({ kind: "unwatched", path: request.path, token: request.token });
      return;
    }
    case "stop":
      if (timer !== null) clearInterval(timer);
      timer = null;
      for (const entry of watched.values()) entry.database.close();
      watched.clear();
      pending.clear();
      report({ kind: "stopped" });
      return;
  }
};
