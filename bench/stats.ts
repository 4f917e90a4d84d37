// Small figures over repeated measurements, shared by the benches.

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** One program's cost per packet by both clocks of a test run. */
export interface Figure {
  /** Wall time of the call(s), divided by the runs: the house method. */
  wall: number;
  /** The kernel's average per run (whole ns, truncated), left out: time the thread was preempted. */
  kernel: number;
}

/**
 * The rows of several fresh loads as one: each row as the first load has it, with every figure
 * (every field holding a Figure) the median over the loads of that figure. A load's code
 * placement alone moves a program's figure by up to ±15 % on a small VM (bench lb-cost), more
 * than the best of rounds removes.
 */
export function medianOverLoads<R extends object>(loads: R[][]): R[] {
  const isFigure = (v: unknown): v is Figure =>
    typeof v === 'object' && v !== null && 'wall' in v && 'kernel' in v;
  return loads[0].map((row, i) => {
    const merged: Record<string, unknown> = { ...(row as Record<string, unknown>) };
    for (const [key, value] of Object.entries(row)) {
      if (!isFigure(value)) continue;
      const figures = loads.map((rows) => (rows[i] as Record<string, Figure>)[key]);
      merged[key] = {
        wall: median(figures.map((f) => f.wall)),
        kernel: median(figures.map((f) => f.kernel)),
      };
    }
    return merged as R;
  });
}
