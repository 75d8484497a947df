// Where a start's time goes: each mark records how long the step since the previous mark took, in ms. The first
// step, "loaded", runs from the process's own start (performance.now() counts from it in Bun) to the construction: the
// runtime, the modules and the config. Logged with server_started, so that an operator whose 56 workers take minutes
// to come up on 2 cores can see which step it is (OPERATIONS.md, "Start time").

export class StartMarks {
  private readonly steps: Record<string, number> = {};
  private last: number;

  constructor(private readonly clock: () => number = () => performance.now()) {
    this.last = this.clock();
    this.steps.loaded = Math.round(this.last);
  }

  /** Ends the step named `step` now (a step marked twice adds up). */
  mark(step: string): void {
    const at = this.clock();
    this.steps[step] = Math.round((this.steps[step] ?? 0) + at - this.last);
    this.last = at;
  }

  /** The steps so far, the rest since the last mark as "listen", and "total" since the process started. */
  done(): Readonly<Record<string, number>> {
    this.mark("listen");
    return { ...this.steps, total: Math.round(this.last) };
  }
}
