// A worker process of `switchboard start --workers N` (spawned by supervisor.ts; not a command of its own): loads the
// config from the same command line and environment as the supervisor's `start`, serves on the shared ports with
// SO_REUSEPORT and its admin HTTP on <runDir>/admin-<index>.sock, and dies with its supervisor (parent-death.ts).
// SIGTERM stops it gracefully (exit 0; a second one ends the lame duck), SIGHUP reloads as a single server does,
// SIGINT is ignored (Ctrl-C reaches the whole process group; the supervisor forwards it as SIGTERM). A start that
// fails exits with the codes of `start` (2: restarting cannot fix it, and the supervisor does not).

import { parseArgs } from "node:util";
import { installServerSignals, loadStartConfig, type Parsed, startErrorExit } from "./cli.ts";
import { configOptions } from "./config-flags.ts";
import { guardParent } from "./parent-death.ts";
import { startServer } from "./server.ts";
import { workerStartedMessage } from "./supervisor.ts";

/** Where this worker stands among its supervisor's workers (StartOptions.worker of server.ts). */
export interface WorkerPlacement {
  readonly index: number;
  readonly count: number;
  readonly runDir: string;
}

const workerOptions = {
  "worker-index": { type: "string" },
  "worker-count": { type: "string" },
  "run-dir": { type: "string" },
  "supervisor-pid": { type: "string" },
} as const;

function wholeNumber(values: Parsed["values"], name: keyof typeof workerOptions, min: number): number {
  const value = Number(values[name]);
  if (!Number.isSafeInteger(value) || value < min) throw new Error(`worker: --${name} must be an integer >= ${min}`);
  return value;
}

/** Returns the exit code of a failed start, or -1 once the server runs (its signals end the process). */
export async function runWorker(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: { ...configOptions(), ...workerOptions },
    strict: true,
    allowPositionals: false,
  }) as { values: Parsed["values"] };
  const supervisorPid = wholeNumber(values, "supervisor-pid", 1);
  guardParent(supervisorPid);
  const worker: WorkerPlacement = {
    index: wholeNumber(values, "worker-index", 0),
    count: wholeNumber(values, "worker-count", 1),
    runDir: String(values["run-dir"] ?? ""),
  };
  if (worker.index >= worker.count || worker.runDir === "") throw new Error("worker: bad placement arguments");
  const config = loadStartConfig(values);
  if (typeof config === "number") return config;
  // `worker` is StartOptions' field from server.ts's worker mode (reusePort, no lock, admin on the Unix socket).
  const starting = startServer(config, { worker });
  installServerSignals(starting, values, { interrupt: false });
  try {
    await starting;
  } catch (error) {
    const exitCode = startErrorExit(error, config);
    if (exitCode === undefined) throw error;
    return exitCode;
  }
  // The supervisor restarts a worker that exits after this; one that exits before it fails the supervisor's start.
  process.send?.(workerStartedMessage);
  return -1;
}

if (import.meta.main) {
  const code = await runWorker(process.argv.slice(2));
  if (code >= 0) process.exit(code);
}
