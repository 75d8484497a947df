// The work every session and every background slice together may do in one event-loop turn (turnWorkMsMax). Each
// bounded piece of work (a session's frames, a commit's settling, a group's pushes and state loads) already stops
// after its own count or time and continues with setImmediate; but all those continuations, and all the sockets
// that are readable at once, run back to back in one turn of the loop: a 1,024-member send's acks arrive from 1,023
// sockets together. This clock is shared by them: past the budget, each stops at its next step and continues in the
// next turn, so timers and the other sockets are served in between.

/** A turn's shared clock: the first call of a turn starts it, an immediate after it ends it. */
export class TurnBudget {
  private startedAtMs = 0;

  constructor(
    /** The budget (ms), read at each call: a reload may change it. */
    private readonly budgetMs: () => number,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** Whether this turn's budget is spent. The first call of a turn starts its clock (and is never spent). */
  spent(): boolean {
    const nowMs = this.clock();
    if (this.startedAtMs === 0) {
      this.startedAtMs = nowMs;
      // Runs after this turn's I/O (and after the immediates already queued): the next work starts a new budget.
      setImmediate(() => {
        this.startedAtMs = 0;
      });
      return false;
    }
    return nowMs - this.startedAtMs >= this.budgetMs();
  }
}
