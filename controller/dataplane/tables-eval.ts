// Evaluates compiled classifier tables over a frame the way pipeline.bpf.c does: one lookup per dimension, AND, lowest bit first.
//
// This is the C program's classification written in TypeScript, for tests: it reads only the
// tables (the 520-byte vector images, the prefix and set-class entries, the flat arrays by
// pipeline.h's index formulas), never the rules' fields, so comparing it with decide() checks
// compileClassifier, and comparing it with the kernel checks the C program. Parsing is
// parsePacket's, the shared specification.
//
// Filters follow the filter bank protocol: the walk stops, counting nothing, at the first
// candidate with a filter while the filter mask is unknown; the "bank" then computes the mask of
// every filter and the walk starts again from the first candidate with the mask known.
import type { ClassifierTables } from './classify.js';
import { TablesInvalidError } from './errors.js';
import {
  defaultFilterMatch,
  parsePacket,
  type Decision,
  type FilterMatch,
  type ParseOptions,
  type ParsedPacket,
} from './model-decide.js';
import {
  SL_DIM,
  SL_DIMS,
  SL_FLAGS_NOT_TCP,
  SL_MAX_STEPS,
  SL_PROTO_NOT_IP,
  SL_VLAN_UNTAGGED,
  SL_WORDS,
} from './abi.js';
import { type Prefix, addressInPrefix } from './model.js';

/** The u64 set mask the shared set tries give an address (0n: no entry). */
export type SetMaskLookup = (family: 4 | 6, addr: Uint8Array) => bigint;

/** A Decision plus what the classification saw, for failure messages and kernel comparisons. */
export interface TablesDecision extends Decision {
  /** The class each dimension's lookup gave (also for dimensions not in `dims`). */
  classes: number[];
  /** Candidate positions (the AND of the used dimensions' vectors), lowest first. */
  candidates: number[];
  /** Whether the walk went through the filter bank. */
  filterBank: boolean;
}

/** Longest-prefix match over entries of one dimension, as an LPM trie map answers. */
export function lpmLookup<T extends { addr: Uint8Array; len: number }>(
  entries: readonly T[],
  family: 4 | 6,
  addr: Uint8Array,
  accept: (entry: T) => boolean = () => true,
): T | undefined {
  let best: T | undefined;
  for (const e of entries) {
    if (!accept(e) || (best && best.len >= e.len)) continue;
    const prefix: Prefix = { family, addr: e.addr, len: e.len };
    if (e.addr.length === addr.length && addressInPrefix(prefix, family, addr)) best = e;
  }
  return best;
}

const decoded = new WeakMap<Uint8Array, Uint32Array>();

/** A struct sl_vec image's words as 2 * SL_WORDS u32 (little-endian halves); checks the summary. */
export function readVector(image: Uint8Array): Uint32Array {
  let words = decoded.get(image);
  if (words) return words;
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  words = new Uint32Array(SL_WORDS * 2);
  for (let i = 0; i < SL_WORDS * 2; i++) words[i] = view.getUint32(8 + i * 4, true);
  const summary = view.getBigUint64(0, true);
  for (let w = 0; w < SL_WORDS; w++) {
    const nonzero = (words[2 * w] | words[2 * w + 1]) !== 0;
    if (nonzero !== (((summary >> BigInt(w)) & 1n) === 1n))
      throw new TablesInvalidError(
        `vector image: summary bit ${w} is ${nonzero ? 'clear' : 'set'} but word ${w} is ${nonzero ? 'not ' : ''}zero`,
        { what: 'sl_vecs' },
      );
  }
  decoded.set(image, words);
  return words;
}

/** The class each dimension's lookup gives the packet, by pipeline.h's index formulas. */
export function lookupClasses(
  tables: ClassifierTables,
  packet: ParsedPacket,
  setMask: SetMaskLookup,
): number[] {
  const classes = new Array<number>(SL_DIMS);
  const { family } = packet;
  for (const dim of [SL_DIM.SRC, SL_DIM.DST] as const) {
    if (family === undefined) {
      classes[dim] = tables.absent[dim];
      continue;
    }
    const addr = dim === SL_DIM.SRC ? packet.src! : packet.dst!;
    const entries = family === 4 ? tables.pfx4 : tables.pfx6;
    const hit = lpmLookup(entries, family, addr, (e) => e.dim === dim);
    if (!hit)
      throw new TablesInvalidError(`sl_pfx${family} has no /0 entry for dimension ${dim}`, {
        what: `sl_pfx${family}`,
      });
    classes[dim] = hit.cls;
  }
  for (const dim of [SL_DIM.SSET, SL_DIM.DSET] as const) {
    classes[dim] = tables.absent[dim];
    if (family === undefined) continue;
    const mask = setMask(family, dim === SL_DIM.SSET ? packet.src! : packet.dst!);
    if (mask === 0n) continue;
    const hit = tables.setcls.find((e) => e.dim === dim && e.mask === mask);
    if (hit) classes[dim] = hit.cls;
  }
  classes[SL_DIM.PROTO] = tables.proto[family === undefined ? SL_PROTO_NOT_IP : packet.proto!];
  classes[SL_DIM.SPORT] =
    packet.sport === undefined ? tables.absent[SL_DIM.SPORT] : tables.ports[0][packet.sport];
  classes[SL_DIM.DPORT] =
    packet.dport === undefined ? tables.absent[SL_DIM.DPORT] : tables.ports[1][packet.dport];
  classes[SL_DIM.ICMP] = packet.icmp
    ? tables.icmp[packet.icmp.icmpv6 ? 1 : 0][packet.icmp.type * 256 + packet.icmp.code]
    : tables.absent[SL_DIM.ICMP];
  classes[SL_DIM.VLAN] = tables.vlan[packet.vlan ?? SL_VLAN_UNTAGGED];
  classes[SL_DIM.FLAGS] = tables.flags[packet.tcpFlags ?? SL_FLAGS_NOT_TCP];
  return classes;
}

/** Positions set in a bitset, lowest first. */
function bitsOf(words: Uint32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < words.length; i++) {
    let w = words[i];
    while (w !== 0) {
      const low = w & -w;
      out.push(i * 32 + (31 - Math.clz32(low)));
      w ^= low;
    }
  }
  return out;
}

/**
 * Decides one frame from the tables alone, as pipeline.bpf.c does: malformed and truncated frames
 * take `tables.malformed`; otherwise one lookup per dimension, the AND of the vectors of the
 * dimensions in `tables.dims`, then the candidates lowest first with the step rule of decide().
 * `setMask` gives what the set maps (sl_set4_*, sl_set6) hold for an address; `filterMatch` is the filter bank
 * (default: `defaultFilterMatch`). Throws when the tables break pipeline.h's invariants (a vector
 * image whose summary disagrees with its words, no /0 prefix entry).
 */
export function evaluateTables(
  tables: ClassifierTables,
  frame: Uint8Array,
  setMask: SetMaskLookup,
  filterMatch: FilterMatch = defaultFilterMatch,
  opts: ParseOptions = {},
): TablesDecision {
  const packet = parsePacket(frame, opts);
  if (packet.status !== 'ok')
    return {
      verdict: tables.malformed,
      matched: [],
      event: packet.status,
      steps: 0,
      classes: [],
      candidates: [],
      filterBank: false,
    };
  const classes = lookupClasses(tables, packet, setMask);
  const cand = new Uint32Array(SL_WORDS * 2);
  for (let p = 0; p < tables.nrules; p++) cand[p >>> 5] |= 1 << (p & 31);
  for (let dim = 0; dim < SL_DIMS; dim++) {
    if (!(tables.dims & (1 << dim))) continue;
    const v = readVector(tables.vectors[classes[dim]]);
    for (let i = 0; i < cand.length; i++) cand[i] &= v[i];
  }
  const candidates = bitsOf(cand);

  const walk = (fmask: bigint | undefined): Decision | 'bank' => {
    const matched: number[] = [];
    let steps = 0;
    for (const pos of candidates) {
      if (steps === SL_MAX_STEPS)
        return { verdict: tables.defaultAction, matched, event: 'step_limit', steps };
      const { rule, filterBit } = tables.positions[pos];
      if (filterBit !== undefined) {
        if (fmask === undefined) return 'bank';
        steps++;
        if (((fmask >> BigInt(filterBit)) & 1n) === 0n) continue;
      } else {
        steps++;
      }
      matched.push(pos);
      if (rule.action === 'count') continue;
      return { verdict: rule.action, matched, steps };
    }
    return { verdict: tables.defaultAction, matched, event: 'default', steps };
  };

  let result = walk(tables.hasFilters ? undefined : 0n);
  let filterBank = false;
  if (result === 'bank') {
    filterBank = true;
    let fmask = 0n;
    tables.filters.forEach((expression, bit) => {
      if (filterMatch(expression, frame)) fmask |= 1n << BigInt(bit);
    });
    result = walk(fmask);
    if (result === 'bank')
      throw new TablesInvalidError('filter bank: the walk asked for the filter mask twice', {
        what: 'positions',
      });
  }
  return { ...result, classes, candidates, filterBank };
}
