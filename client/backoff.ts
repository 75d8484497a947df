// Jittered exponential backoff for reconnects: initial, doubling up to a ceiling, each delay partly random so that
// a crowd of clients dropped at once (a server restart) does not come back at once. A server's goaway hint is a
// floor, never shortened by the backoff.

import type { ReconnectOptions } from "./client-options.ts";

export class Backoff {
  private attempts = 0;

  constructor(
    private readonly options: ReconnectOptions,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt, at least `floorMs`; each call doubles the base (up to maxMs). */
  next(floorMs = 0): number {
    const { initialMs, maxMs, jitter } = this.options;
    const base = Math.min(maxMs, initialMs * 2 ** Math.min(this.attempts, 30));
    this.attempts++;
    const delay = base * (1 - jitter) + base * jitter * this.random();
    return Math.max(floorMs, Math.round(delay));
  }

  /** A connection succeeded: the next failure starts from initialMs again. */
  reset(): void {
    this.attempts = 0;
  }
}
