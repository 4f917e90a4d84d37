// How client commands draw what the daemon returns for people: change diffs, counters, the
// log2 packet-size histogram, replay reports, load-balanced services and what a change moves.
import { createColors } from 'picocolors';
import type {
  ChangeResult,
  ConfigDiff,
  LbBackendView,
  LbMovePrediction,
  LbServiceView,
  LbStats,
  ReplayReport,
  Stats,
} from '../controller/contract.js';
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

const NO_NAMES = { added: [], removed: [], changed: [] };

/** True when the diff changes nothing. */
export function isEmptyDiff(diff: ConfigDiff): boolean {
  return (
    [diff.attachments, diff.rules, diff.services ?? NO_NAMES].every(
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
  section('services', diff.services ?? NO_NAMES);
  return out.join('\n') + '\n';
}

/** 0.25 → "25.0%". */
export function percent(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

/**
 * What a change to a service's backends moves, one line per service: `service 10.0.0.100:80/tcp:
 * 25.0% of the hash space moves; 12 of 48 live flows would now hash elsewhere (kept by the flow
 * table)`. Empty without predictions.
 */
export function formatMoves(moves: readonly LbMovePrediction[] | undefined): string {
  return (moves ?? [])
    .map(
      (m) =>
        `service ${m.service}: ${percent(m.movedShare)} of the hash space moves; ` +
        `${m.flowsMoved} of ${plural(m.flows, 'live flow')} would now hash elsewhere (kept by the flow table)\n`,
    )
    .join('');
}

/** A backend as `lb backend` commands name it: the address, with ":PORT" when it has its own. */
export function backendName(service: LbServiceView, backend: LbBackendView): string {
  if (backend.port === service.port) return backend.address;
  return backend.address.includes(':')
    ? `[${backend.address}]:${backend.port}`
    : `${backend.address}:${backend.port}`;
}

/**
 * `sluice lb ls`: per service a row (key, mode, hash, devices, packets), then its backends with
 * weight, state, health, their share of the table and of the traffic, packets and active flows.
 */
export function formatLbServices(services: readonly LbServiceView[]): string {
  if (services.length === 0) return 'no services\n';
  const blocks = services.map((service) => {
    const head = formatTable(
      ['SERVICE', 'MODE', 'HASH', 'DEVICES', 'PACKETS'],
      [
        [
          service.key,
          service.mode,
          service.hash,
          service.devices.length === 0 ? '-' : service.devices.join(','),
          String(service.packets),
        ],
      ],
      ['left', 'left', 'left', 'left', 'right'],
    );
    const backends =
      service.backends.length === 0
        ? '  no backends\n'
        : indent(
            formatTable(
              ['BACKEND', 'WEIGHT', 'STATE', 'HEALTH', 'TABLE', 'TRAFFIC', 'PACKETS', 'FLOWS'],
              service.backends.map((b) => [
                backendName(service, b),
                String(b.weight),
                b.state,
                b.health,
                percent(b.tableShare),
                percent(b.trafficShare),
                String(b.packets),
                String(b.activeFlows),
              ]),
              ['left', 'right', 'left', 'left', 'right', 'right', 'right', 'right'],
            ),
          ) + '\n';
    return head + backends;
  });
  return blocks.join('\n');
}

/** The balancer's events worth a line in `sluice stats`, first in this order, then the rest. */
const LB_EVENTS = ['flowHit', 'flowMiss', 'nonSynMiss', 'insertCap', 'noBackend', 'fibFail'];

/** `name n, name n`: the nonzero counts of `counts`, `first` ones first. */
function nonzero(counts: Record<string, number>, first: readonly string[] = []): string {
  const names = [
    ...first.filter((n) => n in counts),
    ...Object.keys(counts).filter((n) => !first.includes(n)),
  ];
  return names
    .filter((n) => counts[n] !== 0)
    .map((n) => `${n} ${counts[n]}`)
    .join(', ');
}

/**
 * The load-balancer section of `sluice stats`: per service, then per backend (indented), packets,
 * bytes, new and active flows; then the balancer's nonzero events and FIB failures.
 */
export function formatLbStats(lb: LbStats): string {
  const lines = [pc.bold('load balancer')];
  if (lb.services.length > 0) {
    const rows = lb.services.flatMap((s) => [
      [s.key, String(s.packets), String(s.bytes), String(s.newFlows), String(s.activeFlows)],
      ...s.backends.map((b) => [
        `  ${backendName(s, b)}`,
        String(b.packets),
        String(b.bytes),
        String(b.newFlows),
        String(b.activeFlows),
      ]),
    ]);
    lines.push(
      indent(
        formatTable(['service / backend', 'packets', 'bytes', 'new flows', 'active flows'], rows, [
          'left',
          'right',
          'right',
          'right',
          'right',
        ]),
      ),
    );
  }
  const events = nonzero(lb.events, LB_EVENTS);
  if (events !== '') lines.push(`  events: ${events}`);
  const fib = nonzero(lb.fibFailures);
  if (fib !== '') lines.push(`  fib failures: ${fib}`);
  return lines.join('\n') + '\n';
}

/** The diff and what became of it: applied at a generation, or a dry run. */
export function formatChange(result: ChangeResult, sizes?: SetSizes): string {
  const tail = result.applied
    ? `applied: generation ${result.generation}\n`
    : `dry run: nothing applied (generation stays ${result.generation})\n`;
  return formatDiff(result.diff, sizes) + formatMoves(result.lb) + tail;
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
 * previous sample is given), its busiest rules, and its packet-size histogram; then the load
 * balancer's services, backends and events when the stats carry them.
 */
export function formatStats(current: StatsSample, previous?: StatsSample): string {
  const lb = current.stats.lb === undefined ? '' : `\n${formatLbStats(current.stats.lb)}`;
  return formatDevices(current, previous) + lb;
}

function formatDevices(current: StatsSample, previous?: StatsSample): string {
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
