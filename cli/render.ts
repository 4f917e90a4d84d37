// How client commands draw what the daemon returns for people: change diffs, counters, the
// log2 packet-size histogram, replay reports.
import { createColors } from 'picocolors';
import type { ChangeResult, ConfigDiff, ReplayReport, Stats } from '../controller/contract.js';
import { formatTable } from './output.js';

/**
 * Colours only for a person at a terminal (or FORCE_COLOR), never because CI is set (picocolors'
 * own rule), so output captured by scripts and tests is the same everywhere; NO_COLOR wins.
 */
const pc = createColors(
  !('NO_COLOR' in process.env) && ('FORCE_COLOR' in process.env || process.stdout.isTTY === true),
);

/** Sets' prefix counts by name, to say how big an added set is. */
export type SetSizes = ReadonlyMap<string, number>;

function plural(n: number, word: string, words = `${word}s`): string {
  return `${n} ${n === 1 ? word : words}`;
}

/** True when the diff changes nothing. */
export function isEmptyDiff(diff: ConfigDiff): boolean {
  return (
    [diff.attachments, diff.rules].every(
      (d) => d.added.length + d.removed.length + d.changed.length === 0,
    ) && diff.sets.added.length + diff.sets.removed.length + diff.sets.changed.length === 0
  );
}

/**
 * A diff as people read one: per kind of object, `+` added, `-` removed, `~` changed, sets with
 * their prefix counts. `sizes` (from the file applied) adds the size of added sets.
 */
export function formatDiff(diff: ConfigDiff, sizes: SetSizes = new Map()): string {
  if (isEmptyDiff(diff)) return 'no changes\n';
  const out: string[] = [];
  const section = (
    title: string,
    entries: { added: string[]; removed: string[]; changed: string[] },
  ): void => {
    if (entries.added.length + entries.removed.length + entries.changed.length === 0) return;
    out.push(`${title}:`);
    for (const name of entries.added) out.push(pc.green(`  + ${name}`));
    for (const name of entries.removed) out.push(pc.red(`  - ${name}`));
    for (const name of entries.changed) out.push(pc.yellow(`  ~ ${name}`));
  };
  section('attachments', diff.attachments);
  const sets = diff.sets;
  if (sets.added.length + sets.removed.length + sets.changed.length > 0) {
    out.push('sets:');
    for (const name of sets.added) {
      const size = sizes.get(name);
      out.push(
        pc.green(
          `  + ${name}${size === undefined ? '' : ` (${plural(size, 'prefix', 'prefixes')})`}`,
        ),
      );
    }
    for (const name of sets.removed) out.push(pc.red(`  - ${name}`));
    for (const c of sets.changed)
      out.push(pc.yellow(`  ~ ${c.name} (+${c.added} -${c.removed} prefixes)`));
  }
  section('rules', diff.rules);
  return out.join('\n') + '\n';
}

/** The diff and what became of it: applied at a generation, or a dry run. */
export function formatChange(result: ChangeResult, sizes?: SetSizes): string {
  const tail = result.applied
    ? `applied: generation ${result.generation}\n`
    : `dry run: nothing applied (generation stays ${result.generation})\n`;
  return formatDiff(result.diff, sizes) + tail;
}

const SIZE_UNITS = ['', 'K', 'M', 'G'];

/** 64 → "64", 1024 → "1K", 2^20 → "1M": bpftrace's bucket labels. */
function sizeLabel(value: number): string {
  let unit = 0;
  while (unit < SIZE_UNITS.length - 1 && value >= 1024 && value % 1024 === 0) {
    value /= 1024;
    unit++;
  }
  return `${value}${SIZE_UNITS[unit]}`;
}

/** Width of the histogram's bar, bpftrace's. */
const BAR_WIDTH = 52;

/**
 * A log2 histogram drawn like bpftrace's `hist()`: one line per bucket from the first to the last
 * non-empty one, `[lo, hi)  count |@@@@  |`. Bucket b counts [2^b, 2^(b+1)); bucket 0 also counts
 * 0, so it reads [0, 2). Empty when every bucket is.
 */
export function formatHistogram(histogram: readonly number[]): string {
  const first = histogram.findIndex((n) => n > 0);
  if (first < 0) return '';
  let last = histogram.length - 1;
  while (histogram[last] === 0) last--;
  const max = Math.max(...histogram);
  const rows: [string, number][] = [];
  for (let b = first; b <= last; b++) {
    const lo = b === 0 ? 0 : 2 ** b;
    rows.push([`[${sizeLabel(lo)}, ${sizeLabel(2 ** (b + 1))})`, histogram[b]]);
  }
  const labelWidth = Math.max(...rows.map(([label]) => label.length));
  const countWidth = Math.max(...rows.map(([, n]) => String(n).length));
  return rows
    .map(([label, n]) => {
      const bar = '@'.repeat(Math.round((n / max) * BAR_WIDTH));
      return `${label.padEnd(labelWidth)} ${String(n).padStart(countWidth + 2)} |${bar.padEnd(BAR_WIDTH)}|`;
    })
    .join('\n')
    .concat('\n');
}

/** 1234567 → "1.23M": counts and rates with an SI suffix, 3 significant digits. */
export function siNumber(value: number): string {
  const units = ['', 'k', 'M', 'G', 'T'];
  let unit = 0;
  while (Math.abs(value) >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  const text = unit === 0 && Number.isInteger(value) ? String(value) : value.toPrecision(3);
  return `${text}${units[unit]}`;
}

/** Counters of one device at one moment, and when they were read. */
export interface StatsSample {
  stats: Stats;
  /** Milliseconds on a monotonic clock. */
  at: number;
}

type DeviceCounters = Stats['devices'][number];

function deviceKey(d: DeviceCounters): string {
  return `${d.name}@${d.hook}`;
}

/** Rules shown under "top rules". */
const TOP_RULES = 5;

/**
 * The human view of `sluice stats`: per device, per-action packets and bytes with rates (when a
 * previous sample is given), its busiest rules, and its packet-size histogram.
 */
export function formatStats(current: StatsSample, previous?: StatsSample): string {
  if (current.stats.devices.length === 0) return 'no attachments\n';
  const seconds = previous ? (current.at - previous.at) / 1000 : 0;
  const before = new Map(previous?.stats.devices.map((d) => [deviceKey(d), d]) ?? []);
  const blocks = current.stats.devices.map((device) => {
    const old = seconds > 0 ? before.get(deviceKey(device)) : undefined;
    const lines = [
      pc.bold(
        `${device.name} (${device.hook}, ifindex ${device.ifindex}, generation ${device.generation})`,
      ),
    ];
    const rows = Object.entries(device.actions).map(([action, count]) => {
      const was = old?.actions[action as keyof typeof old.actions];
      const rate = (now: number, then: number | undefined): string =>
        then === undefined ? '-' : siNumber(Math.max(0, now - then) / seconds);
      return [
        action,
        String(count.packets),
        String(count.bytes),
        rate(count.packets, was?.packets),
        was === undefined ? '-' : siNumber((Math.max(0, count.bytes - was.bytes) * 8) / seconds),
      ];
    });
    lines.push(
      indent(
        formatTable(['action', 'packets', 'bytes', 'pkt/s', 'bit/s'], rows, [
          'left',
          'right',
          'right',
          'right',
          'right',
        ]),
      ),
    );
    const top = [...device.rules]
      .filter((r) => r.packets > 0)
      .sort((a, b) => b.packets - a.packets || a.position - b.position)
      .slice(0, TOP_RULES);
    if (top.length > 0) {
      lines.push('  top rules');
      lines.push(
        indent(
          formatTable(
            ['rule', 'packets', 'bytes'],
            top.map((r) => [r.id, String(r.packets), String(r.bytes)]),
            ['left', 'right', 'right'],
          ),
        ),
      );
    }
    const histogram = formatHistogram(device.histogram);
    if (histogram !== '') {
      lines.push('  packet sizes (bytes)');
      lines.push(indent(histogram));
    }
    return lines.join('\n');
  });
  return blocks.join('\n\n') + '\n';
}

function indent(text: string): string {
  return text
    .replace(/\n$/, '')
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}

/** What a pcap replay saw: per attachment, per-rule packets, verdicts, and changed verdicts. */
export function formatReplay(report: ReplayReport): string {
  const out = [`replayed ${plural(report.packets, 'packet')}`];
  for (const a of report.attachments) {
    out.push(`${a.attachment}:`);
    if (a.rules.length > 0) {
      out.push(
        indent(
          formatTable(
            ['rule', 'packets'],
            a.rules.map((r) => [r.id, String(r.packets)]),
            ['left', 'right'],
          ),
        ),
      );
    }
    const verdicts = Object.entries(a.verdicts)
      .map(([verdict, n]) => `${verdict} ${n}`)
      .join(', ');
    out.push(`  verdicts: ${verdicts || 'none'}`);
    out.push(`  ${plural(a.changed, 'packet')} would change verdict`);
  }
  return out.join('\n') + '\n';
}
