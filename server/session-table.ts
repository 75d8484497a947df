// The sessions of this process and their deadlines: state that outlives a code reload (SIGHUP installs a new
// ConnectionHandler over the same table, so no connection is dropped).

import type { Session } from "./session.ts";
import { TimerWheel } from "./timer-wheel.ts";

export class SessionTable {
  readonly sessions = new Set<Session>();
  readonly wheel: TimerWheel<Session>;
  /** Set while stopping: new connections get a goaway at once and /readyz answers 503. */
  draining = false;

  constructor(timerTickMs: number, now: () => number) {
    this.wheel = new TimerWheel<Session>(timerTickMs, () => {}, now);
  }

  /** A jittered retry hint for goaways while draining, so clients do not all come back at once. */
  retryAfterMs(retryAfterMsMax: number): number {
    return Math.floor(Math.random() * retryAfterMsMax);
  }
}
