// A one-line progress bar on stderr while a scenario ramps (stdout stays clean for the table). On a terminal it
// redraws in place; otherwise it writes a line at most every few seconds, so logs of CI runs stay short.

const barWidth = 30;
/** A line never passes this many columns (nor the terminal's width). */
const lineColumnsMax = 100;
const nonTerminalIntervalMs = 5_000;
const redrawIntervalMs = 100;

export class ProgressBar {
  private lastDrawMs = 0;
  private drawn = false;
  private readonly terminal = process.stderr.isTTY === true;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly enabled: boolean,
  ) {}

  /** `extra` follows the counts, e.g. "5,210 logins/s, server RSS 41 MiB". */
  update(done: number, extra = "", force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    const interval = this.terminal ? redrawIntervalMs : nonTerminalIntervalMs;
    if (!force && now - this.lastDrawMs < interval) return;
    this.lastDrawMs = now;
    const fraction = this.total === 0 ? 1 : Math.min(1, done / this.total);
    const filled = Math.round(fraction * barWidth);
    const bar = `${"#".repeat(filled)}${".".repeat(barWidth - filled)}`;
    const columns = Math.min(lineColumnsMax, process.stderr.columns ?? lineColumnsMax) - 1;
    const full = `${this.label} [${bar}] ${done.toLocaleString("en-US")}/${this.total.toLocaleString("en-US")} ${extra}`;
    const line = full.length > columns ? `${full.slice(0, columns - 1)}…` : full;
    if (this.terminal) process.stderr.write(`\r\x1b[2K${line}`);
    else process.stderr.write(`${line}\n`);
    this.drawn = true;
  }

  finish(done: number, extra = ""): void {
    if (!this.enabled) return;
    this.update(done, extra, true);
    if (this.terminal && this.drawn) process.stderr.write("\n");
  }
}
