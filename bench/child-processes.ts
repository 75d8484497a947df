// A safety net for every child process the bench starts (server, bare server, load workers): each scenario stops
// its children in `finally` blocks, and this registry kills whatever is left when the bench exits or is
// interrupted, so no server or worker outlives a failed or cancelled run.

import type { Subprocess } from "bun";

const children = new Set<Subprocess>();
let installed = false;

function killAll(signal: NodeJS.Signals): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  }
}

export function trackChild(child: Subprocess): void {
  children.add(child);
  void child.exited.then(() => children.delete(child));
  if (installed) return;
  installed = true;
  process.on("exit", () => killAll("SIGKILL"));
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      killAll("SIGKILL");
      process.exit(130);
    });
  }
}
