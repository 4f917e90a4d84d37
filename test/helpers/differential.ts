// Shared spine of the filter differential tests: expression corpora, the generated packet corpus as a pcap file, libpcap's verdicts, and mismatch reports; cached per process so every engine's suite reuses them.
import { rmSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { runReferenceBpf } from './cbpf-reference.js';
import { runOracle, type OracleResult } from './oracle.js';
import {
  DEFAULT_PACKET_SEED,
  generatePackets,
  writePcapFile,
  type GeneratedPacket,
} from './packets/index.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** test/fixtures/filter */
export const FILTER_FIXTURES = join(HERE, '..', 'fixtures', 'filter');

/** One expression of a corpus file, with where it came from. */
export interface CorpusEntry {
  expression: string;
  /** 1-based line number in the file. */
  line: number;
  /** The nearest "# ..." heading above it. */
  section: string;
}

/** The corpus files in test/fixtures/filter/. */
export type CorpusName = 'valid' | 'invalid';

/** Parses a corpus file: one expression per line, blanks trimmed, empty lines and `#` comments skipped. */
export function parseCorpus(text: string): CorpusEntry[] {
  const out: CorpusEntry[] = [];
  let section = '';
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    if (line.startsWith('#')) {
      section = line.replace(/^#+\s*/, '');
      return;
    }
    out.push({ expression: line, line: i + 1, section });
  });
  return out;
}

const corpusCache = new Map<CorpusName, Promise<CorpusEntry[]>>();

/** Loads test/fixtures/filter/<name>.txt (cached). */
export function loadCorpus(name: CorpusName): Promise<CorpusEntry[]> {
  let p = corpusCache.get(name);
  if (!p) {
    p = readFile(join(FILTER_FIXTURES, `${name}.txt`), 'utf8').then(parseCorpus);
    corpusCache.set(name, p);
  }
  return p;
}

/** The generated packets and the pcap file holding them. */
export interface PacketCorpus {
  packets: GeneratedPacket[];
  /** Path of the pcap file (in a temporary directory removed when the process exits). */
  pcapPath: string;
  seed: number;
}

let packetCorpus: Promise<PacketCorpus> | undefined;
const tempDirs: string[] = [];
let cleanupRegistered = false;

async function makeTempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-filter-corpus-'));
  tempDirs.push(dir);
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    process.once('exit', () => {
      for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
    });
  }
  return dir;
}

/**
 * Generates the default packet corpus (seeded, deterministic) and writes it as a pcap file, once per process.
 * `SLUICE_PACKET_SEED` overrides the seed (decimal or 0x hex) to explore other corpora.
 */
export function getPacketCorpus(): Promise<PacketCorpus> {
  packetCorpus ??= (async () => {
    const env = process.env.SLUICE_PACKET_SEED;
    const seed = env ? Number(env) : undefined;
    const packets = generatePackets(seed === undefined ? {} : { seed });
    const dir = await makeTempDir();
    const pcapPath = join(dir, 'corpus.pcap');
    await writePcapFile(pcapPath, packets);
    return { packets, pcapPath, seed: seed ?? DEFAULT_PACKET_SEED };
  })();
  return packetCorpus;
}

const oracleCache = new Map<string, Promise<OracleResult[]>>();

/**
 * libpcap's results for the expressions over the packet corpus, in order; one oracle run per distinct list
 * (cached). With `program`, each accepted result also carries libpcap's program and its tcpdump -d listing.
 */
export async function getOracleResults(
  expressions: readonly string[],
  options: { program?: boolean; optimize?: boolean } = {},
): Promise<OracleResult[]> {
  const key = `${options.program ? 'p' : '-'}${options.optimize === false ? 'O' : '-'}\n${expressions.join('\n')}`;
  let p = oracleCache.get(key);
  if (!p) {
    p = getPacketCorpus().then((c) => runOracle(c.pcapPath, expressions, options));
    oracleCache.set(key, p);
  }
  return p;
}

/** A corpus with libpcap's result for each entry. */
export interface JudgedCorpus {
  entries: CorpusEntry[];
  results: OracleResult[];
}

/**
 * Loads a corpus file and libpcap's results for it (with programs and listings), cached. With
 * `optimize: false` libpcap compiles as `tcpdump -O` does: unoptimized programs may read bytes the
 * optimized ones never touch, so they reject some short packets the optimized ones accept.
 */
export async function getJudgedCorpus(
  name: CorpusName,
  options: { optimize?: boolean } = {},
): Promise<JudgedCorpus> {
  const entries = await loadCorpus(name);
  const results = await getOracleResults(
    entries.map((e) => e.expression),
    { program: true, optimize: options.optimize },
  );
  return { entries, results };
}

/** Runs an engine over every packet and returns its verdict string ('1' accepted, '0' rejected). */
export function verdictsOf(
  packets: readonly { data: Uint8Array; wireLength: number }[],
  accepts: (data: Uint8Array, wireLength: number) => boolean,
): string {
  const out = new Array<string>(packets.length);
  for (let i = 0; i < packets.length; i++)
    out[i] = accepts(packets[i]!.data, packets[i]!.wireLength) ? '1' : '0';
  return out.join('');
}

/** Indices where two verdict strings differ (a length difference counts from the shorter's end). */
export function mismatchIndices(expected: string, actual: string): number[] {
  const out: number[] = [];
  const n = Math.max(expected.length, actual.length);
  for (let i = 0; i < n; i++) if (expected[i] !== actual[i]) out.push(i);
  return out;
}

/** Hex dump, 16 bytes a line, with offsets. */
export function hexDump(data: Uint8Array, max = 128): string {
  const lines: string[] = [];
  const n = Math.min(data.length, max);
  for (let o = 0; o < n; o += 16) {
    const row = Array.from(data.subarray(o, Math.min(o + 16, n)), (b) =>
      b.toString(16).padStart(2, '0'),
    ).join(' ');
    lines.push(`  ${o.toString(16).padStart(4, '0')}  ${row}`);
  }
  if (data.length > max) lines.push(`  … ${data.length - max} more bytes`);
  if (data.length === 0) lines.push('  (no bytes)');
  return lines.join('\n');
}

/** A classic BPF instruction (the compiler's CbpfInsn shape). */
export interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

const ALU_NAMES: Record<number, string> = {
  0x00: 'add',
  0x10: 'sub',
  0x20: 'mul',
  0x30: 'div',
  0x40: 'or',
  0x50: 'and',
  0x60: 'lsh',
  0x70: 'rsh',
  0x80: 'neg',
  0x90: 'mod',
  0xa0: 'xor',
};
const JMP_NAMES: Record<number, string> = { 0x10: 'jeq', 0x20: 'jgt', 0x30: 'jge', 0x40: 'jset' };

/**
 * Formats a program as tcpdump -d does (libpcap's bpf_image), independently of the compiler's own listing, so
 * a mismatch report shows both programs in the same layout.
 */
export function formatListing(program: readonly Insn[]): string {
  const s32 = (k: number): string => String(k | 0);
  const hex = (k: number): string => `#0x${(k >>> 0).toString(16)}`;
  return program
    .map((insn, pc) => {
      const { code, k } = insn;
      let op = `unimp(0x${code.toString(16)})`;
      let operand = '';
      let cond = false;
      const cls = code & 7;
      const size = code & 0x18;
      const mode = code & 0xe0;
      const sz = size === 0x00 ? '' : size === 0x08 ? 'h' : size === 0x10 ? 'b' : '?';
      if (cls === 0) {
        if (mode === 0x20) [op, operand] = [`ld${sz}`, `[${s32(k)}]`];
        else if (mode === 0x40) [op, operand] = [`ld${sz}`, `[x + ${s32(k)}]`];
        else if (mode === 0x00) [op, operand] = ['ld', hex(k)];
        else if (mode === 0x60) [op, operand] = ['ld', `M[${s32(k)}]`];
        else if (mode === 0x80) [op, operand] = ['ld', '#pktlen'];
      } else if (cls === 1) {
        if (mode === 0x00) [op, operand] = ['ldx', hex(k)];
        else if (mode === 0x60) [op, operand] = ['ldx', `M[${s32(k)}]`];
        else if (mode === 0x80) [op, operand] = ['ldx', '#pktlen'];
        else if (mode === 0xa0) [op, operand] = ['ldxb', `4*([${s32(k)}]&0xf)`];
      } else if (cls === 2) [op, operand] = ['st', `M[${s32(k)}]`];
      else if (cls === 3) [op, operand] = ['stx', `M[${s32(k)}]`];
      else if (cls === 4) {
        const name = ALU_NAMES[code & 0xf0];
        if (name === 'neg') [op, operand] = ['neg', ''];
        else if (name) {
          op = name;
          operand =
            code & 0x08
              ? 'x'
              : name === 'and' || name === 'or' || name === 'xor'
                ? hex(k)
                : `#${s32(k)}`;
        }
      } else if (cls === 5) {
        if ((code & 0xf0) === 0x00) [op, operand] = ['ja', s32(pc + 1 + k)];
        else {
          const name = JMP_NAMES[code & 0xf0];
          if (name) {
            op = name;
            operand = code & 0x08 ? 'x' : hex(k);
            cond = true;
          }
        }
      } else if (cls === 6) {
        const rval = code & 0x18;
        [op, operand] =
          rval === 0x10 ? ['ret', ''] : rval === 0x08 ? ['ret', 'x'] : ['ret', `#${s32(k)}`];
      } else if (cls === 7) {
        if ((code & 0xf8) === 0x00) op = 'tax';
        else if ((code & 0xf8) === 0x80) op = 'txa';
      }
      const head = `(${String(pc).padStart(3, '0')}) ${op.padEnd(8)} `;
      return cond
        ? `${head}${operand.padEnd(16)} jt ${pc + 1 + insn.jt}\tjf ${pc + 1 + insn.jf}`
        : `${head}${operand}`;
    })
    .join('\n');
}

/** Places two listings side by side (ours left, libpcap's right). */
export function sideBySide(
  left: string,
  right: string,
  leftTitle = 'sluice',
  rightTitle = 'libpcap -d',
): string {
  const l = left.replace(/\t/g, ' ').split('\n');
  const r = right.replace(/\t/g, ' ').split('\n');
  const width = Math.max(leftTitle.length, ...l.map((x) => x.length)) + 2;
  const rows = [`${leftTitle.padEnd(width)}${rightTitle}`];
  for (let i = 0; i < Math.max(l.length, r.length); i++)
    rows.push(`${(l[i] ?? '').padEnd(width)}${r[i] ?? ''}`);
  return rows.join('\n');
}

/** What the differential report shows for one expression that disagrees somewhere. */
export interface MismatchDetail {
  expression: string;
  where?: string;
  expected: string;
  actual: string;
  packets: readonly GeneratedPacket[];
  ours?: readonly Insn[];
  libpcapListing?: string;
}

/** A readable report of one disagreeing expression: counts, the first few packets in hex, both listings. */
export function describeMismatch(d: MismatchDetail, maxPackets = 3): string {
  const idx = mismatchIndices(d.expected, d.actual);
  const lines = [
    `expression ${JSON.stringify(d.expression)}${d.where ? ` (${d.where})` : ''}: ${idx.length} of ${d.expected.length} packets disagree`,
  ];
  const byCategory = new Map<string, number>();
  for (const i of idx) {
    const c = d.packets[i]?.category ?? 'beyond the corpus';
    byCategory.set(c, (byCategory.get(c) ?? 0) + 1);
  }
  lines.push(
    `  by category: ${[...byCategory]
      .sort((a, b) => b[1] - a[1])
      .map(([c, n]) => `${c} ${n}`)
      .join(', ')}`,
  );
  for (const i of idx.slice(0, maxPackets)) {
    const p = d.packets[i];
    if (!p) continue;
    lines.push(
      `  packet #${i} [${p.category}] ${p.description}: libpcap ${d.expected[i] === '1' ? 'accepts' : 'rejects'}, sluice ${d.actual[i] === '1' ? 'accepts' : 'rejects'} (caplen ${p.data.length}, wire ${p.wireLength})`,
    );
    lines.push(hexDump(p.data));
  }
  if (d.ours) {
    // run sluice's program in the independent reference interpreter: tells a codegen bug from a runCbpf bug
    try {
      const ref = verdictsOf(d.packets, (data, wire) => runReferenceBpf(d.ours!, data, wire) !== 0);
      const verdict =
        ref === d.actual
          ? 'gives sluice’s verdicts (the program is wrong, not runCbpf)'
          : ref === d.expected
            ? 'gives libpcap’s verdicts (runCbpf is wrong, the program is right)'
            : 'agrees with neither';
      lines.push(`  reference interpreter on sluice’s program: ${verdict}`);
    } catch (error: unknown) {
      lines.push(
        `  reference interpreter on sluice’s program: fails (${error instanceof Error ? error.message : String(error)})`,
      );
    }
  }
  if (d.ours || d.libpcapListing)
    lines.push(
      sideBySide(
        d.ours ? formatListing(d.ours) : '(no program)',
        d.libpcapListing ?? '(no listing)',
      ),
    );
  return lines.join('\n');
}

// ---- random expressions (property tests) -------------------------------------------------------------

const PRIMITIVES = [
  'ip',
  'ip6',
  'arp',
  'rarp',
  'tcp',
  'udp',
  'icmp',
  'icmp6',
  'sctp',
  'igmp',
  'esp',
  'ah',
  'vlan',
  'vlan 100',
  'mpls',
  'pppoes',
  'llc',
  'stp',
  'host 192.0.2.1',
  'src host 192.0.2.2',
  'dst host 10.0.0.1',
  'host 2001:db8::1',
  'dst host ff02::1',
  'ip src 198.51.100.1',
  'net 10',
  'net 192.0.2.0/24',
  'src net 198.51.100.0/24',
  'dst net 192.168',
  'net 2001:db8::/32',
  'net 10.0.0.0 mask 255.255.0.0',
  'port 80',
  'port 53',
  'src port 1024',
  'dst port 443',
  'tcp port 22',
  'udp port 53',
  'sctp port 80',
  'portrange 1024-1030',
  'tcp dst portrange 0-1023',
  'port http',
  'udp port domain',
  'ether host 00:00:5e:00:53:01',
  'ether src 00:00:5e:00:53:02',
  'ether dst ff:ff:ff:ff:ff:ff',
  'ether broadcast',
  'ether multicast',
  'ether proto 0x88cc',
  'ip multicast',
  'ip6 multicast',
  'ip proto 47',
  'ip6 proto 58',
  'proto 17',
  'ip6 protochain 6',
  'protochain 17',
  'less 64',
  'greater 1000',
  'len > 100',
  'ip[8] < 64',
  'ip[6:2] & 0x1fff != 0',
  'tcp[tcpflags] & tcp-syn != 0',
  'tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn',
  'icmp[icmptype] = icmp-echo',
  'udp[8:4] != 0',
  'ether[0] & 1 != 0',
  'ip6[6] = 17',
  'ip[2:2] + 14 = len',
  'ip[0] & 0xf > 5',
] as const;

/** A fast-check arbitrary of well-formed expressions: primitives combined with and/or/not and parentheses. */
export function expressionArbitrary(): fc.Arbitrary<string> {
  const { tree } = fc.letrec<{ tree: string; node: string }>((tie) => ({
    tree: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constantFrom(...PRIMITIVES),
      tie('node'),
    ),
    node: fc.oneof(
      fc
        .tuple(tie('tree'), fc.constantFrom(' and ', ' or ', ' && ', ' || '), tie('tree'))
        .map(([a, op, b]) => `${a}${op}${b}`),
      fc.tuple(fc.constantFrom('not ', '!', '! '), tie('tree')).map(([n, a]) => `${n}${a}`),
      tie('tree').map((a) => `(${a})`),
      fc
        .tuple(
          fc.constantFrom('not ', ''),
          tie('tree'),
          fc.constantFrom(' and ', ' or '),
          tie('tree'),
        )
        .map(([n, a, op, b]) => `${n}(${a}${op}${b})`),
    ),
  }));
  return tree;
}

/** `count` random well-formed expressions, the same for the same seed. */
export function randomExpressions(seed: number, count: number): string[] {
  const seen = new Set<string>();
  for (let round = 0; seen.size < count && round < 20; round++) {
    for (const s of fc.sample(expressionArbitrary(), { seed: seed + round, numRuns: count })) {
      seen.add(s);
      if (seen.size === count) break;
    }
  }
  return [...seen];
}

const GARBAGE_TOKENS = [
  'ip',
  'ip6',
  'tcp',
  'udp',
  'host',
  'net',
  'port',
  'portrange',
  'src',
  'dst',
  'and',
  'or',
  'not',
  '!',
  '&&',
  '||',
  '(',
  ')',
  '[',
  ']',
  ':',
  '=',
  '!=',
  '<',
  '>',
  '<=',
  '>=',
  '+',
  '-',
  '*',
  '/',
  '%',
  '&',
  '|',
  '^',
  '<<',
  '>>',
  '0',
  '1',
  '80',
  '0x800',
  '192.0.2.1',
  '10',
  '2001:db8::1',
  '00:00:5e:00:53:01',
  'ether',
  'proto',
  'vlan',
  'mask',
  'less',
  'greater',
  'len',
  'broadcast',
  'multicast',
  'tcp-syn',
  'icmptype',
  '/24',
  'protochain',
  'mpls',
  'llc',
  '""',
  "'",
  '@',
  '#',
  '$',
  ',',
  ';',
  'é',
  '\u00a0',
  '\t',
];

/**
 * `count` distinct random strings that are mostly not well-formed: half token soup from the filter vocabulary
 * and stray characters, half well-formed expressions with a token dropped, doubled, swapped or inserted. No
 * newlines or NULs, and no bare words that libpcap would look up as host names.
 */
export function randomGarbage(seed: number, count: number): string[] {
  const token = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...GARBAGE_TOKENS) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }).map(String) },
    {
      weight: 1,
      arbitrary: fc.stringMatching(/^[ -~]{1,3}$/).map((s) => s.replace(/[a-zA-Z\\]/g, '')),
    },
  );
  const soup = fc
    .array(fc.tuple(token, fc.constantFrom(' ', '', '  ')), { minLength: 1, maxLength: 10 })
    .map((parts) =>
      parts.map(([t, sep]) => `${t}${/\w$/.test(t) && sep === '' ? ' ' : sep}`).join(''),
    );
  const mutated = fc
    .tuple(
      expressionArbitrary(),
      fc.nat(),
      fc.nat(),
      fc.constantFrom('drop', 'double', 'swap', 'insert'),
      fc.constantFrom(...GARBAGE_TOKENS),
    )
    .map(([expr, a, b, how, extra]) => {
      const toks = expr.split(' ');
      const i = a % toks.length;
      const j = b % toks.length;
      if (how === 'drop') toks.splice(i, 1);
      else if (how === 'double') toks.splice(i, 0, toks[i]!);
      else if (how === 'swap') [toks[i], toks[j]] = [toks[j]!, toks[i]!];
      else toks.splice(i, 0, extra);
      return toks.join(' ');
    });
  const arb = fc.oneof(soup, mutated).filter(isLookupFree);
  const seen = new Set<string>();
  const out: string[] = [];
  for (let round = 0; out.length < count && round < 20; round++) {
    for (const s of fc.sample(arb, { seed: seed + round, numRuns: count })) {
      if (seen.has(s)) continue;
      seen.add(s);
      out.push(s);
      if (out.length === count) break;
    }
  }
  return out;
}

const KEYWORDS = new Set(
  [
    ...PRIMITIVES.flatMap((p) => p.split(/[^A-Za-z0-9_.-]+/)),
    ...GARBAGE_TOKENS,
    'tcpflags',
    'icmpcode',
    'tcp-ack',
    'tcp-fin',
    'icmp-echo',
    'mask',
    'link',
    'ppp',
  ].filter((w) => /^[A-Za-z]/.test(w)),
);
for (const name of ['http', 'domain']) KEYWORDS.delete(name); // service names: bare, libpcap would look them up as hosts

/**
 * True when libpcap could not mistake any word of `s` for a host name (which it would resolve, maybe over DNS):
 * every run of name characters is a keyword, a decimal or hex number, a dotted quad (or shorter), or an
 * address with colons. Used to keep random strings off the network.
 */
export function isLookupFree(s: string): boolean {
  if (s.includes('\\')) return false;
  for (const run of s.match(/[A-Za-z0-9_.:-]+/g) ?? []) {
    if (run.includes(':')) {
      if (!/^[0-9a-fA-F:.]+$/.test(run)) return false;
      continue;
    }
    // a name starts with a letter or digit and does not end with "-" (those are operators)
    const word = run.replace(/^[-._]+/, '').replace(/-+$/, '');
    if (word === '' || KEYWORDS.has(word) || /^\d+$/.test(word) || /^0x[0-9a-fA-F]+$/.test(word))
      continue;
    if (/^\d+(\.\d+){1,3}$/.test(word)) continue;
    return false;
  }
  return true;
}

/** The compiler's public surface as the differential tests use it. */
export interface FilterApi {
  compileFilter(expression: string, options?: { optimize?: boolean; snaplen?: number }): Insn[];
  runCbpf(insns: Insn[], packet: Uint8Array, wireLength?: number): number;
}

/**
 * Imports bpf/filter/index.ts. Returns `{ error }` instead of throwing when it does not exist yet or lacks the
 * exports, so suites can fail with a readable reason.
 */
export async function loadFilterApi(): Promise<
  { api: FilterApi; error?: undefined } | { api?: undefined; error: string }
> {
  try {
    // a computed specifier: the module may not exist yet, and type-checking must not depend on it
    const specifier = '../../bpf/filter/index.js';
    const mod = (await import(specifier)) as Partial<FilterApi>;
    if (typeof mod.compileFilter !== 'function' || typeof mod.runCbpf !== 'function') {
      return { error: 'bpf/filter/index.ts does not export compileFilter and runCbpf' };
    }
    return { api: mod as FilterApi };
  } catch (error: unknown) {
    return {
      error: `import bpf/filter/index.ts: ${error instanceof Error ? error.message : String(error)}`,
    };
  }
}

/** True when `error` carries a FILTER_* code (the compiler's error contract). */
export function hasFilterCode(error: unknown): boolean {
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof (error as { code?: unknown }).code === 'string' &&
    (error as { code: string }).code.startsWith('FILTER_')
  );
}

// ---- judging an engine against libpcap ---------------------------------------------------------------

/** How one expression fared in an engine, compared with libpcap. */
export type Judgement =
  | { status: 'agree'; expression: string; where?: string }
  | { status: 'rejected-both'; expression: string; where?: string; error: unknown }
  | {
      status: 'mismatch';
      expression: string;
      where?: string;
      expected: string;
      actual: string;
      program?: Insn[];
      libpcapListing?: string;
    }
  | { status: 'threw'; expression: string; where?: string; error: unknown; libpcapListing?: string }
  | {
      status: 'wrong-error';
      expression: string;
      where?: string;
      error: unknown;
      libpcapError: string;
    }
  | {
      status: 'accepted-invalid';
      expression: string;
      where?: string;
      libpcapError: string;
      program?: Insn[];
    };

/** An engine under test: compiles and runs one expression over all packets, or throws its compile error. */
export type Engine = (
  expression: string,
) => { verdicts: string; program?: Insn[] } | Promise<{ verdicts: string; program?: Insn[] }>;

/** Input for judging: expressions with libpcap's results, in the same order. */
export interface JudgeInput {
  expressions: readonly string[];
  results: readonly OracleResult[];
  where?: readonly string[];
}

/**
 * Runs the engine over every expression and classifies the outcome against libpcap: equal verdicts on every
 * packet, or both rejecting (the engine with a FILTER_* error), count as passing; anything else does not.
 */
export async function judgeEngine(input: JudgeInput, engine: Engine): Promise<Judgement[]> {
  const out: Judgement[] = [];
  for (let i = 0; i < input.expressions.length; i++) {
    const expression = input.expressions[i]!;
    const r = input.results[i]!;
    const where = input.where?.[i];
    let got: { verdicts: string; program?: Insn[] };
    try {
      got = await engine(expression);
    } catch (error: unknown) {
      if (!r.ok)
        out.push(
          hasFilterCode(error)
            ? { status: 'rejected-both', expression, where, error }
            : { status: 'wrong-error', expression, where, error, libpcapError: r.error },
        );
      else out.push({ status: 'threw', expression, where, error, libpcapListing: r.listing });
      continue;
    }
    if (!r.ok)
      out.push({
        status: 'accepted-invalid',
        expression,
        where,
        libpcapError: r.error,
        program: got.program,
      });
    else if (got.verdicts === r.verdicts) out.push({ status: 'agree', expression, where });
    else
      out.push({
        status: 'mismatch',
        expression,
        where,
        expected: r.verdicts,
        actual: got.verdicts,
        program: got.program,
        libpcapListing: r.listing,
      });
  }
  return out;
}

/** True for the judgements that pass. */
export function isPassing(j: Judgement): boolean {
  return j.status === 'agree' || j.status === 'rejected-both';
}

function errorText(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return `${error.name}${typeof code === 'string' ? ` [${code}]` : ''}: ${error.message}`;
  }
  return String(error);
}

/** One judgement as text: a line for passing ones, a full block (packets in hex, both listings) otherwise. */
export function describeJudgement(
  j: Judgement,
  packets: readonly GeneratedPacket[],
  maxPackets = 3,
): string {
  const at = j.where ? ` (${j.where})` : '';
  switch (j.status) {
    case 'agree':
      return `agree      ${JSON.stringify(j.expression)}`;
    case 'rejected-both':
      return `rejected   ${JSON.stringify(j.expression)}: ${errorText(j.error)}`;
    case 'mismatch':
      return describeMismatch(
        {
          expression: j.expression,
          where: j.where,
          expected: j.expected,
          actual: j.actual,
          packets,
          ours: j.program,
          libpcapListing: j.libpcapListing,
        },
        maxPackets,
      );
    case 'threw':
      return `expression ${JSON.stringify(j.expression)}${at}: libpcap accepts it, sluice throws ${errorText(j.error)}\n${sideBySide('(no program)', j.libpcapListing ?? '(no listing)')}`;
    case 'wrong-error':
      return `expression ${JSON.stringify(j.expression)}${at}: libpcap rejects it (${j.libpcapError}); sluice throws without a FILTER_* code: ${errorText(j.error)}`;
    case 'accepted-invalid':
      return `expression ${JSON.stringify(j.expression)}${at}: libpcap rejects it (${j.libpcapError}); sluice accepts it${j.program ? `\n${formatListing(j.program)}` : ''}`;
  }
}

/** A compact summary: counts per status and the first `limit` failures in full. */
export function summarizeJudgements(
  title: string,
  judgements: readonly Judgement[],
  packets: readonly GeneratedPacket[],
  limit = 10,
): string {
  const counts = new Map<string, number>();
  for (const j of judgements) counts.set(j.status, (counts.get(j.status) ?? 0) + 1);
  const failing = judgements.filter((j) => !isPassing(j));
  const head = `${title}: ${judgements.length - failing.length} of ${judgements.length} pass over ${packets.length} packets (${[...counts].map(([k, v]) => `${k} ${v}`).join(', ')})`;
  if (failing.length === 0) return head;
  const shown = failing.slice(0, limit).map((j) => describeJudgement(j, packets));
  const more =
    failing.length > limit
      ? [
          `… and ${failing.length - limit} more failing: ${failing
            .slice(limit)
            .map((j) => JSON.stringify(j.expression))
            .join(', ')}`,
        ]
      : [];
  return `${head}\n\n${[...shown, ...more].join('\n\n')}`;
}

/** The cBPF engine: compileFilter, then runCbpf over every packet. */
export function cbpfEngine(
  api: FilterApi,
  packets: readonly GeneratedPacket[],
  options: { optimize?: boolean } = {},
): Engine {
  return (expression) => {
    const program = api.compileFilter(expression, options);
    const verdicts = verdictsOf(packets, (data, wire) => api.runCbpf(program, data, wire) !== 0);
    return { verdicts, program };
  };
}
