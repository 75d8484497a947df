// What every scenario hands back: the figures for the table (each with its goal, when the issue sets one), every raw
// figure for the JSON file, notes that qualify the figures, and charts.

export interface Figure {
  readonly name: string;
  readonly value: number | string | null;
  readonly unit: string;
  /** The goal in words ("<= 1.1x bare"), when there is one. */
  readonly goal?: string;
  /** Whether the goal is met; null when it could not be measured. */
  readonly met?: boolean | null;
  /**
   * The goal is set for the full-size run (a rate, a ratio), not for any size, as "failures 0" is: a --quick run
   * shows it but does not judge it.
   */
  readonly fullSize?: boolean;
}

export interface Chart {
  /** Suffix of the file written beside the JSON result ("rss" gives <result>-rss.svg). */
  readonly name: string;
  readonly svg: string;
}

export interface ScenarioResult {
  readonly scenario: string;
  readonly title: string;
  readonly figures: readonly Figure[];
  /** Every raw figure, for the JSON file. */
  readonly raw: Readonly<Record<string, unknown>>;
  /** The server's flags as started (or the target), and durability where it matters. */
  readonly server: Readonly<Record<string, unknown>> | null;
  readonly notes: readonly string[];
  readonly charts: readonly Chart[];
  /** True when every check that must hold (failures 0, delivered == sent, ...) held. */
  readonly sane: boolean;
}
