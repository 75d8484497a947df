// The time the calling thread has spent running on a core, from Linux's /proc/thread-self/schedstat (its first
// field, in nanoseconds). Called from the event loop's thread, it tells the loop's own work from the time it waited
// for a core: on a busy host a short turn can be delayed by other processes for far longer than it runs.

import { readFileSync } from "node:fs";

const schedstatPath = "/proc/thread-self/schedstat";

/** Milliseconds the calling thread has run, or null where the kernel does not say (not Linux, no /proc). */
export function threadRunMs(): number | null {
  try {
    const text = readFileSync(schedstatPath, "latin1");
    const end = text.indexOf(" ");
    const nanoseconds = Number(end < 0 ? text : text.slice(0, end));
    return Number.isFinite(nanoseconds) ? nanoseconds / 1e6 : null;
  } catch {
    return null;
  }
}
