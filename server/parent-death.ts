// A worker must not outlive its supervisor: an orphan would keep serving the shared port (SO_REUSEPORT) beside the
// workers of the next supervisor, without the data directory lock. Two guards, because each has a gap:
// - prctl(PR_SET_PDEATHSIG, SIGKILL): the kernel kills the worker the moment the supervisor dies, kill -9 included.
//   It misses a supervisor that died before the call (the worker was already reparented), and it fires when the
//   *thread* that spawned the worker ends, which for Bun.spawn is the main thread (the process).
// - A poll of process.ppid every parentPollMs (unref'd): a parent other than the supervisor that spawned us means it
//   died; this covers the race above and hosts without prctl (macOS).

import { dlopen, FFIType } from "bun:ffi";

/** How often the worker checks that its parent is still the supervisor. */
export const parentPollMs = 500;

const prSetPdeathsig = 1;
const signalKill = 9;

/** Sets PR_SET_PDEATHSIG to SIGKILL; false where it is not available (not Linux) or the call fails. */
export function killWhenParentDies(): boolean {
  if (process.platform !== "linux") return false;
  const library = dlopen("libc.so.6", {
    prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
  });
  try {
    return library.symbols.prctl(prSetPdeathsig, signalKill, 0, 0, 0) === 0;
  } finally {
    library.close();
  }
}

export interface ParentGuard {
  /** Whether the kernel will kill this process when its parent dies (prctl took effect). */
  readonly deathSignal: boolean;
  stop(): void;
}

/**
 * Guards against outliving `supervisorPid`: the death signal (unless `deathSignal` is false, for tests of the poll)
 * and the poll, which calls `orphaned` (default: exit 1 at once; there is nobody to drain for) when the parent
 * changed. Checks once at the start, since the supervisor may have died before the death signal was set.
 */
export function guardParent(
  supervisorPid: number,
  options: { deathSignal?: boolean; pollMs?: number; orphaned?: () => void } = {},
): ParentGuard {
  const deathSignal = options.deathSignal === false ? false : killWhenParentDies();
  const orphaned = options.orphaned ?? (() => process.exit(1));
  let timer: ReturnType<typeof setInterval> | undefined;
  const check = () => {
    if (process.ppid === supervisorPid) return;
    clearInterval(timer);
    orphaned();
  };
  timer = setInterval(check, options.pollMs ?? parentPollMs);
  timer.unref();
  check();
  return {
    deathSignal,
    stop() {
      clearInterval(timer);
    },
  };
}
