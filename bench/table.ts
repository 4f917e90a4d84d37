// Side-by-side ratio tables: one row per workload, sluice against a named peer, measured in the same run.

export interface BenchRow {
  workload: string;
  sluice: number;
  peer: number;
  /** Optional target for the ratio sluice/peer, e.g. "≤ 1.10". */
  target?: string;
}

export interface BenchTable {
  title: string;
  /** What the numbers are, e.g. "ns/elem" or "instructions". */
  unit: string;
  /** The first program's column, when it is not sluice (a table of two peers). */
  subject?: string;
  peer: string;
  rows: BenchRow[];
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** Renders a table as aligned text with a ratio column (subject, by default sluice, / peer). */
export function formatTable(table: BenchTable): string {
  const header = [
    'workload',
    `${table.subject ?? 'sluice'} (${table.unit})`,
    `${table.peer} (${table.unit})`,
    'ratio',
    'target',
  ];
  const body = table.rows.map((row) => [
    row.workload,
    formatNumber(row.sluice),
    formatNumber(row.peer),
    row.peer === 0 ? '—' : `${(row.sluice / row.peer).toFixed(2)}×`,
    row.target ?? '',
  ]);
  return [`## ${table.title}`, '', ...alignColumns(header, body), ''].join('\n');
}

/**
 * Aligns a header and its rows as text lines: the header, a rule of dashes, then the rows, two
 * spaces between columns. Columns in `left` are padded on the right, the others on the left.
 */
export function alignColumns(
  header: string[],
  body: string[][],
  left: readonly number[] = [0],
): string[] {
  const widths = header.map((_, i) =>
    Math.max(...[header, ...body].map((cells) => cells[i].length)),
  );
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (left.includes(i) ? cell.padEnd(widths[i]) : cell.padStart(widths[i])))
      .join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)];
}
