// Classic BPF → eBPF translator: direct packet access for XDP/TC, bpf_skb_load_bytes for socket filters.
//
// Semantics are those of libpcap's bpf_filter(): A, X and M[0..15] are 32-bit and start at 0; a load
// outside the packet, or a division or modulo by X = 0, ends the program with "no match"; `ret` with a
// nonzero value is a match. Shifts follow libpcap too: a shift by X >= 32 gives 0, a shift by a constant
// uses the constant modulo 32 (what libpcap does on x86). Loads are big-endian. Offsets at or past 2^31
// are out of bounds: there are no Linux SKF_AD/SKF_NET_OFF extensions, as in libpcap.
//
// Register use (all values are 32-bit, held zero-extended in 64-bit registers):
//   r7 = A, r8 = X, r10 - 64 .. r10 - 4 = M[0..15],
//   r10 - 72 = 8-byte buffer for bpf_skb_load_bytes.
//   direct packet access (xdp, tc fast path): r1 = ctx (never clobbered), r2 = data, r3 = data_end,
//   r4/r5 = temporaries.
//   helper loads (socket, tc slow path): r6 = ctx, r1-r5 = helper arguments, r0 = helper result.
//
// Bounds checks (direct packet access) are shaped by the verifier: `r4 = data + N; if r4 > data_end goto
// fail` gives every packet pointer derived from r2 a proven range of N bytes. One check per basic block
// covers its highest constant offset: every load of a straight-line block either succeeds or ends the
// program with "no match", and the loads before it have no side effects, so failing early at the top of
// the block gives the same verdict. A forward dataflow pass skips the check when every path into the
// block has already proven a larger range; the verifier tracks the range per path, so it agrees.
//
// Verifier limit: a packet range is only tracked up to MAX_PACKET_OFF (0xffff). XDP's linear data is
// always shorter (at most a page minus headroom), so a load reaching past 0xffff is out of bounds there.
// Variable-offset loads ([x + k]) first prove X <= 0xffff - k - size (skipped when the translator,
// like the verifier, already knows X is that small, e.g. after `ldxb 4*([k]&0xf)`), then check
// data + X + k + size <= data_end. A larger X means the load reaches past 0xffff: out of bounds for XDP.
//
// TC: skb data may be nonlinear, and direct access sees only the linear part. The fast path uses direct
// access; any failed bounds check jumps to a slow path that runs the whole filter again from the start
// with bpf_skb_load_bytes, which reads any byte of the skb (linear or not, past 0xffff too). Restarting
// is exact because classic BPF has no side effects before it returns. Nothing is pulled or written, so
// cloned skbs stay shared; the slow path costs one helper call per load and runs only for packets whose
// headers are not linear, or that are genuinely too short.
//
// Byte order: a 16/32-bit load is converted to host order (be16/be32) unless every use of the value is
// an equality test, a `jset` or a zero test against a constant; then the constant is swapped instead
// (planByteSwaps). Comparisons use 32-bit jumps (JMP32, Linux >= 5.1) so constants need no sign care.
//
// Loops: classic BPF only jumps forward, except libpcap's `protochain`, which walks IPv6/IPv4 extension
// headers with a backward `ja` (a jump offset that wraps around 2^32, as libpcap's interpreter allows).
// A backward jump becomes `may_goto nomatch; goto head` (Linux >= 6.9): the verifier then proves the
// loop terminates by state convergence instead of unrolling it, and at run time the kernel's budget of
// 8M iterations per program run is far above what a packet can need (protochain advances X by at least
// 8 bytes per iteration, and X must stay within the packet).

import type { CbpfInsn } from './cbpf.js';
import {
  BPF_ADD,
  BPF_AND,
  BPF_DIV,
  BPF_FUNC_skb_load_bytes,
  BPF_JA,
  BPF_JEQ,
  BPF_JGE,
  BPF_JGT,
  BPF_JLE,
  BPF_JLT,
  BPF_JMP,
  BPF_JMP32,
  BPF_JNE,
  BPF_JSGE,
  BPF_JSGT,
  BPF_JSLE,
  BPF_JSLT,
  BPF_LSH,
  BPF_MOD,
  BPF_MUL,
  BPF_OR,
  BPF_RSH,
  BPF_SUB,
  BPF_XOR,
  type EbpfInsn,
  R0,
  R1,
  R10,
  R2,
  R3,
  R4,
  R5,
  R6,
  R7,
  R8,
  SK_BUFF_DATA,
  SK_BUFF_DATA_END,
  SK_BUFF_LEN,
  XDP_MD_DATA,
  XDP_MD_DATA_END,
  alu32Imm,
  alu32Reg,
  alu64Imm,
  alu64Reg,
  call,
  exit,
  gotol,
  ja,
  jmp32Imm,
  jmp32Reg,
  jmpImm,
  jmpReg,
  loadMem,
  mayGoto,
  mov32Imm,
  mov32Reg,
  mov64Imm,
  mov64Reg,
  neg32,
  storeImm,
  storeReg,
  toBe,
} from './ebpf-insn.js';

/** Where the program runs: XDP (`xdp_md`), TC classifier (`__sk_buff`), or socket filter (`__sk_buff`). */
export type EbpfContext = 'xdp' | 'tc' | 'socket';

/**
 * What the program returns. `return`: r0 = 1 on a match and 0 otherwise, for a caller that chains it.
 * `action`: the whole program's verdict, e.g. XDP_DROP (1) / XDP_PASS (2), TC_ACT_SHOT (2) / TC_ACT_OK (0).
 */
export type EbpfVerdict = { kind: 'return' } | { kind: 'action'; match: number; noMatch: number };

/** Options of `translateCbpf`. */
export interface TranslateOptions {
  context: EbpfContext;
  verdict: EbpfVerdict;
}

/** What `translateCbpf` produces. */
export interface Translation {
  insns: EbpfInsn[];
  /** Direct-packet-access bounds checks (comparisons with data_end) left in the program. */
  boundsChecks: number;
  /** Classic loads that read the packet (constant, variable-offset and `msh`). */
  packetLoads: number;
  /**
   * Most conditional jumps on one path through the program. The verifier keeps one pending state per
   * conditional jump it has not explored yet and gives up past 8192 (BPF_COMPLEXITY_LIMIT_JMP_SEQ).
   */
  branchDepth: number;
}

/** Problems with the classic program itself; the caller wraps them in its own error class. */
export class CbpfProgramError extends Error {
  override readonly name = 'CbpfProgramError';
  /** Index of the offending classic instruction. */
  readonly index: number;
  constructor(message: string, index: number) {
    super(message);
    this.index = index;
  }
}

/** Highest packet offset the verifier tracks for direct packet access (MAX_PACKET_OFF). */
export const MAX_PACKET_OFF = 0xffff;

const A = R7;
const X = R8;
const CTX_HELPER = R6;
const DATA = R2;
const DATA_END = R3;
const T1 = R4;
const T2 = R5;
const MEM_BASE = -64;
const BUF = -72;
const INT_MAX = 0x7fffffff;
const U32_MAX = 0xffffffff;

// Classic opcode pieces (pcap/bpf.h); kept local so the translator reads as one unit.
const C_LD = 0x00;
const C_LDX = 0x01;
const C_ST = 0x02;
const C_STX = 0x03;
const C_ALU = 0x04;
const C_JMP = 0x05;
const C_RET = 0x06;
const C_MISC = 0x07;
const C_IMM = 0x00;
const C_ABS = 0x20;
const C_IND = 0x40;
const C_MEM = 0x60;
const C_LEN = 0x80;
const C_MSH = 0xa0;
const C_X = 0x08;
const C_NEG = 0x80;
const C_TXA = 0x80;
const C_RET_A = 0x10;

const loadSizes: Readonly<Record<number, 1 | 2 | 4>> = { 0x00: 4, 0x08: 2, 0x10: 1 };

// ---------------------------------------------------------------------------------------------------
// Assembler with symbolic labels, and a linker that drops unreachable code and resolves jumps.

type Label = number;

interface AsmItem {
  insn?: EbpfInsn;
  target?: Label;
  label?: Label;
  check?: boolean;
}

class Assembler {
  readonly items: AsmItem[] = [];
  private nextLabel = 0;

  newLabel(): Label {
    return this.nextLabel++;
  }

  bind(label: Label): void {
    this.items.push({ label });
  }

  emit(insn: EbpfInsn, target?: Label, check = false): void {
    this.items.push(target === undefined ? { insn, check } : { insn, target, check });
  }

  goto(target: Label): void {
    this.emit(ja(0), target);
  }
}

interface LinkNode {
  insn: EbpfInsn;
  target: LinkNode | null;
  check: boolean;
  removed: boolean;
}

const inverse: Readonly<Record<number, number>> = {
  [BPF_JEQ]: BPF_JNE,
  [BPF_JNE]: BPF_JEQ,
  [BPF_JGT]: BPF_JLE,
  [BPF_JLE]: BPF_JGT,
  [BPF_JGE]: BPF_JLT,
  [BPF_JLT]: BPF_JGE,
  [BPF_JSGT]: BPF_JSLE,
  [BPF_JSLE]: BPF_JSGT,
  [BPF_JSGE]: BPF_JSLT,
  [BPF_JSLT]: BPF_JSGE,
};

function isGoto(i: EbpfInsn): boolean {
  return i.code === (BPF_JMP | BPF_JA) || i.code === (BPF_JMP32 | BPF_JA);
}

function isExit(i: EbpfInsn): boolean {
  return i.code === (BPF_JMP | 0x90);
}

function invert(i: EbpfInsn): EbpfInsn | undefined {
  const op = inverse[i.code & 0xf0];
  return op === undefined ? undefined : { ...i, code: (i.code & 0x0f) | op };
}

/**
 * Resolve labels into jump offsets. Unreachable instructions are dropped (the verifier rejects them),
 * jumps to jumps are threaded, jumps to the next instruction vanish, `if c goto L1; goto L2; L1:` becomes
 * `if !c goto L2`, and jumps too far for 16 bits become `gotol` (32-bit offset, Linux >= 6.6).
 */
function link(asm: Assembler): { insns: EbpfInsn[]; boundsChecks: number } {
  let nodes: LinkNode[] = [];
  const labelNode = new Map<Label, number>();
  const pending: Label[] = [];
  const targets: (Label | undefined)[] = [];
  for (const item of asm.items) {
    if (item.label !== undefined) {
      pending.push(item.label);
      continue;
    }
    const insn = item.insn as EbpfInsn;
    for (const l of pending) labelNode.set(l, nodes.length);
    pending.length = 0;
    nodes.push({ insn, target: null, check: item.check === true, removed: false });
    targets.push(item.target);
  }
  if (pending.length > 0) throw new Error('internal: label bound past the last eBPF instruction');
  nodes.forEach((node, n) => {
    const label = targets[n];
    if (label === undefined) return;
    const at = labelNode.get(label);
    if (at === undefined) throw new Error(`internal: eBPF label ${label} is never bound`);
    node.target = nodes[at];
  });

  for (let changed = true; changed;) {
    changed = false;
    // Thread jumps to unconditional jumps.
    for (const node of nodes) {
      while (
        node.target !== null &&
        isGoto(node.target.insn) &&
        node.target.target !== node.target
      ) {
        node.target = node.target.target;
      }
    }
    // Reachability from the entry.
    const index = new Map<LinkNode, number>();
    nodes.forEach((node, n) => index.set(node, n));
    const reached = new Uint8Array(nodes.length);
    const work = [0];
    while (work.length > 0) {
      const n = work.pop() as number;
      if (n >= nodes.length || reached[n]) continue;
      reached[n] = 1;
      const node = nodes[n];
      if (isExit(node.insn)) continue;
      if (node.target !== null) work.push(index.get(node.target) as number);
      if (!isGoto(node.insn)) work.push(n + 1);
    }
    const targeted = new Set<LinkNode>();
    nodes.forEach((node, n) => {
      if (reached[n] && node.target !== null) targeted.add(node.target);
    });
    nodes.forEach((node, n) => {
      if (!reached[n]) {
        node.removed = true;
        changed = true;
      }
    });
    // Peepholes over the surviving sequence.
    const live = nodes.filter((node) => !node.removed);
    const nextLive = (n: number): number => {
      let m = n + 1;
      while (m < live.length && live[m].removed) m++;
      return m;
    };
    for (let n = 0; n < live.length; n++) {
      const node = live[n];
      if (node.removed || node.target === null) continue;
      const m = nextLive(n);
      if (m >= live.length) continue;
      const next = live[m];
      if (node.target === next) {
        node.removed = true;
        changed = true;
        continue;
      }
      const m2 = nextLive(m);
      const after = m2 < live.length ? live[m2] : undefined;
      if (
        !isGoto(node.insn) &&
        after !== undefined &&
        node.target === after &&
        isGoto(next.insn) &&
        !targeted.has(next) &&
        next.target !== null
      ) {
        const flipped = invert(node.insn);
        if (flipped !== undefined) {
          node.insn = flipped;
          node.target = next.target;
          targeted.add(next.target);
          next.removed = true;
          changed = true;
        }
      }
    }
    // Jumps into removed instructions land on the next survivor (removed ones only fell through).
    const survivorAfter = new Map<LinkNode, LinkNode>();
    let survivor: LinkNode | null = null;
    for (let n = nodes.length - 1; n >= 0; n--) {
      if (!nodes[n].removed) survivor = nodes[n];
      else if (survivor !== null) survivorAfter.set(nodes[n], survivor);
    }
    for (const node of nodes) {
      if (node.target !== null && node.target.removed) {
        const to = survivorAfter.get(node.target);
        if (to === undefined) throw new Error('internal: jump past the end of the eBPF program');
        node.target = to;
      }
    }
    nodes = nodes.filter((node) => !node.removed);
  }

  // Relaxation: conditional jumps whose distance does not fit in 16 bits take 2 (or 3, for jset) slots.
  const index = new Map<LinkNode, number>();
  nodes.forEach((node, n) => index.set(node, n));
  const size = nodes.map(() => 1);
  const pos: number[] = [];
  for (let changed = true; changed;) {
    changed = false;
    let at = 0;
    for (let n = 0; n < nodes.length; n++) {
      pos[n] = at;
      at += size[n];
    }
    pos[nodes.length] = at;
    nodes.forEach((node, n) => {
      if (node.target === null || isGoto(node.insn) || size[n] > 1) return;
      const off = pos[index.get(node.target) as number] - (pos[n] + 1);
      if (off < -0x8000 || off > 0x7fff) {
        size[n] = invert(node.insn) === undefined ? 3 : 2;
        changed = true;
      }
    });
  }
  const out: EbpfInsn[] = [];
  let boundsChecks = 0;
  nodes.forEach((node, n) => {
    if (node.check) boundsChecks++;
    if (node.target === null) {
      out.push(node.insn);
      return;
    }
    const to = pos[index.get(node.target) as number];
    if (isGoto(node.insn)) {
      const off = to - (pos[n] + 1);
      out.push(off >= -0x8000 && off <= 0x7fff ? ja(off) : gotol(off));
    } else if (size[n] === 1) {
      out.push({ ...node.insn, off: to - (pos[n] + 1) });
    } else if (size[n] === 2) {
      out.push({ ...(invert(node.insn) as EbpfInsn), off: 1 }, gotol(to - (pos[n] + 2)));
    } else {
      out.push({ ...node.insn, off: 1 }, ja(1), gotol(to - (pos[n] + 3)));
    }
  });
  return { insns: out, boundsChecks };
}

/** Most conditional jumps along one forward path (back edges, i.e. loops, are not followed). */
function branchDepth(insns: readonly EbpfInsn[]): number {
  const depth = new Int32Array(insns.length + 1);
  for (let n = insns.length - 1; n >= 0; n--) {
    const i = insns[n];
    const cls = i.code & 0x07;
    const op = i.code & 0xf0;
    if (isExit(i)) depth[n] = 0;
    else if (cls !== BPF_JMP && cls !== BPF_JMP32) depth[n] = depth[n + 1];
    else if (op === 0x80)
      depth[n] = depth[n + 1]; // call
    else {
      const to = n + 1 + (i.code === (BPF_JMP32 | BPF_JA) ? i.imm : i.off);
      const far = to > n && to <= insns.length ? depth[to] : 0;
      depth[n] = isGoto(i) ? far : 1 + Math.max(far, depth[n + 1]);
    }
  }
  return insns.length > 0 ? depth[0] : 0;
}

// ---------------------------------------------------------------------------------------------------
// Classic program analysis: validation, basic blocks, dataflow.

interface Block {
  start: number;
  /** Index of the last instruction (a jump, a return, or the one before the next leader). */
  end: number;
  succs: number[];
  preds: number[];
}

/** Value range of a 32-bit register, as far as both the translator and the verifier can tell. */
interface Range {
  lo: number;
  hi: number;
}

const FULL: Range = { lo: 0, hi: U32_MAX };

function validate(prog: readonly CbpfInsn[]): void {
  if (prog.length === 0) throw new CbpfProgramError('the classic program is empty', 0);
  prog.forEach((insn, i) => {
    const { code, jt, jf } = insn;
    const k = insn.k >>> 0;
    const cls = code & 0x07;
    const fail = (why: string): never => {
      throw new CbpfProgramError(
        `classic instruction ${i} (code 0x${code.toString(16)}): ${why}`,
        i,
      );
    };
    if (!Number.isInteger(code) || code < 0 || code > 0xffff) fail('opcode is not a 16-bit number');
    switch (cls) {
      case C_LD: {
        const mode = code & 0xe0;
        const sizeBits = code & 0x18;
        if (mode === C_ABS || mode === C_IND) {
          if (loadSizes[sizeBits] === undefined || code > 0xff) fail('unknown load');
        } else if (mode === C_IMM || mode === C_LEN || mode === C_MEM) {
          if (sizeBits !== 0 || code > 0xff) fail('unknown load');
          if (mode === C_MEM && k >= 16) fail(`scratch slot M[${k}] does not exist`);
        } else fail('unknown load');
        break;
      }
      case C_LDX: {
        const mode = code & 0xe0;
        if (code === (C_LDX | C_MSH | 0x10)) break;
        if (
          (mode !== C_IMM && mode !== C_LEN && mode !== C_MEM) ||
          (code & 0x18) !== 0 ||
          code > 0xff
        ) {
          fail('unknown load into X');
        }
        if (mode === C_MEM && k >= 16) fail(`scratch slot M[${k}] does not exist`);
        break;
      }
      case C_ST:
      case C_STX:
        if (code !== cls) fail('unknown store');
        if (k >= 16) fail(`scratch slot M[${k}] does not exist`);
        break;
      case C_ALU: {
        const op = code & 0xf0;
        if (
          code > 0xff ||
          ![0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0].includes(op)
        ) {
          fail('unknown ALU operation');
        }
        if (op === C_NEG && code !== (C_ALU | C_NEG)) fail('unknown ALU operation');
        break;
      }
      case C_JMP: {
        const op = code & 0xf0;
        if (code > 0xff || ![0x00, 0x10, 0x20, 0x30, 0x40].includes(op)) fail('unknown jump');
        if (op === 0x00) {
          if (code !== C_JMP) fail('unknown jump');
          const to = (i + 1 + k) % 2 ** 32;
          // A backward `ja` wraps around 2^32, as in libpcap.
          const target = to >= prog.length ? to - 2 ** 32 : to;
          if (target < 0 || target >= prog.length) fail(`jump target ${to} is outside the program`);
          if (target <= i) {
            if (target === i) fail('jump to itself never ends');
          }
        } else {
          if (
            !Number.isInteger(jt) ||
            !Number.isInteger(jf) ||
            jt < 0 ||
            jf < 0 ||
            jt > 0xff ||
            jf > 0xff
          ) {
            fail('jump offsets must be 0..255');
          }
          if (i + 1 + Math.max(jt, jf) >= prog.length) fail('jump target is outside the program');
        }
        break;
      }
      case C_RET:
        if (code !== (C_RET | 0x00) && code !== (C_RET | C_RET_A) && code !== (C_RET | C_X))
          fail('unknown return');
        break;
      case C_MISC:
        if (code !== C_MISC && code !== (C_MISC | C_TXA)) fail('unknown miscellaneous operation');
        break;
      default:
        fail('unknown instruction class');
    }
  });
  const last = prog[prog.length - 1];
  const lastCls = last.code & 0x07;
  if (lastCls !== C_RET && !(lastCls === C_JMP && (last.code & 0xf0) === 0)) {
    throw new CbpfProgramError('the classic program does not end with a return', prog.length - 1);
  }
}

function jaTarget(prog: readonly CbpfInsn[], i: number): number {
  const to = (i + 1 + (prog[i].k >>> 0)) % 2 ** 32;
  return to >= prog.length ? to - 2 ** 32 : to;
}

function buildBlocks(prog: readonly CbpfInsn[]): { blocks: Block[]; blockOf: Int32Array } {
  const n = prog.length;
  const leader = new Uint8Array(n);
  leader[0] = 1;
  for (let i = 0; i < n; i++) {
    const cls = prog[i].code & 0x07;
    if (cls === C_JMP) {
      if ((prog[i].code & 0xf0) === 0) leader[jaTarget(prog, i)] = 1;
      else {
        leader[i + 1 + prog[i].jt] = 1;
        leader[i + 1 + prog[i].jf] = 1;
      }
      if (i + 1 < n) leader[i + 1] = 1;
    } else if (cls === C_RET && i + 1 < n) leader[i + 1] = 1;
  }
  const blocks: Block[] = [];
  const blockOf = new Int32Array(n).fill(-1);
  for (let i = 0; i < n;) {
    let end = i;
    while (end + 1 < n && !leader[end + 1]) {
      const cls = prog[end].code & 0x07;
      if (cls === C_JMP || cls === C_RET) break;
      end++;
    }
    for (let j = i; j <= end; j++) blockOf[j] = blocks.length;
    blocks.push({ start: i, end, succs: [], preds: [] });
    i = end + 1;
  }
  blocks.forEach((b, bi) => {
    const last = prog[b.end];
    const cls = last.code & 0x07;
    if (cls === C_RET) return;
    if (cls === C_JMP) {
      if ((last.code & 0xf0) === 0) b.succs.push(blockOf[jaTarget(prog, b.end)]);
      else {
        b.succs.push(blockOf[b.end + 1 + last.jt]);
        if (last.jf !== last.jt) b.succs.push(blockOf[b.end + 1 + last.jf]);
      }
    } else if (b.end + 1 < n) b.succs.push(bi + 1);
    else throw new CbpfProgramError('the classic program runs past its last instruction', b.end);
    for (const s of b.succs) blocks[s].preds.push(bi);
  });
  return { blocks, blockOf };
}

interface BlockFacts {
  reachable: boolean;
  /** Bytes of packet every path into the block has proven present (direct access). */
  boundIn: number;
  /** Highest end offset of a constant-offset load in the block; 0 if none. */
  maxEnd: number;
  /** Bit i: M[i] stored on every path; bit 16: A; bit 17: X. */
  definedIn: number;
  aIn: Range;
  xIn: Range;
  /** Target of a backward jump. */
  loopHead: boolean;
}

const DEF_A = 1 << 16;
const DEF_X = 1 << 17;
const DEF_ALL = (1 << 18) - 1;

function loadEnd(insn: CbpfInsn): number | undefined {
  const cls = insn.code & 0x07;
  if (cls === C_LD && (insn.code & 0xe0) === C_ABS)
    return (insn.k >>> 0) + loadSizes[insn.code & 0x18];
  if (cls === C_LDX && (insn.code & 0xe0) === C_MSH) return (insn.k >>> 0) + 1;
  return undefined;
}

function isPacketLoad(insn: CbpfInsn): boolean {
  const cls = insn.code & 0x07;
  const mode = insn.code & 0xe0;
  return (cls === C_LD && (mode === C_ABS || mode === C_IND)) || (cls === C_LDX && mode === C_MSH);
}

function hull(a: Range, b: Range): Range {
  return { lo: Math.min(a.lo, b.lo), hi: Math.max(a.hi, b.hi) };
}

/** Range after a 32-bit ALU operation with a constant, where the verifier tracks it as well. */
function aluRange(op: number, r: Range, k: number): Range {
  switch (op) {
    case BPF_AND:
      return { lo: 0, hi: Math.min(r.hi, k) };
    case BPF_RSH:
      return { lo: r.lo >>> (k & 31), hi: r.hi >>> (k & 31) };
    case BPF_LSH:
      return r.hi * 2 ** (k & 31) <= U32_MAX
        ? { lo: r.lo * 2 ** (k & 31), hi: r.hi * 2 ** (k & 31) }
        : FULL;
    case BPF_ADD:
      return r.hi + k <= U32_MAX ? { lo: r.lo + k, hi: r.hi + k } : FULL;
    default:
      return FULL;
  }
}

interface Flow {
  defined: number;
  a: Range;
  x: Range;
  bound: number;
  /** Defined-ness reads that needed an initial zero. */
  needInit: number;
}

/** Walk one block's body, updating `flow`; `onInsn` sees the state before each instruction. */
function walkBlock(
  prog: readonly CbpfInsn[],
  block: Block,
  flow: Flow,
  onInsn?: (i: number, flow: Flow) => void,
): void {
  for (let i = block.start; i <= block.end; i++) {
    onInsn?.(i, flow);
    const insn = prog[i];
    const k = insn.k >>> 0;
    const cls = insn.code & 0x07;
    const mode = insn.code & 0xe0;
    const use = (bit: number): void => {
      if ((flow.defined & bit) === 0) flow.needInit |= bit;
    };
    switch (cls) {
      case C_LD:
        if (mode === C_IND) {
          use(DEF_X);
        }
        if (mode === C_MEM) use(1 << k);
        flow.defined |= DEF_A;
        flow.a =
          mode === C_IMM
            ? { lo: k, hi: k }
            : (mode === C_ABS || mode === C_IND) && (insn.code & 0x18) === 0x10
              ? { lo: 0, hi: 255 }
              : FULL;
        break;
      case C_LDX:
        if (mode === C_MEM) use(1 << k);
        flow.defined |= DEF_X;
        flow.x = mode === C_IMM ? { lo: k, hi: k } : mode === C_MSH ? { lo: 0, hi: 60 } : FULL;
        break;
      case C_ST:
        use(DEF_A);
        flow.defined |= 1 << k;
        break;
      case C_STX:
        use(DEF_X);
        flow.defined |= 1 << k;
        break;
      case C_ALU: {
        use(DEF_A);
        const op = insn.code & 0xf0;
        if (op === C_NEG) flow.a = FULL;
        else if (insn.code & C_X) {
          use(DEF_X);
          flow.a = FULL;
        } else flow.a = aluRange(op, flow.a, k);
        break;
      }
      case C_JMP:
        if ((insn.code & 0xf0) !== 0) {
          use(DEF_A);
          if (insn.code & C_X) use(DEF_X);
        }
        break;
      case C_RET:
        if ((insn.code & 0x18) === C_RET_A) use(DEF_A);
        if ((insn.code & 0x18) === C_X) use(DEF_X);
        break;
      case C_MISC:
        if (insn.code === C_MISC) {
          use(DEF_A);
          flow.defined |= DEF_X;
          flow.x = flow.a;
        } else {
          use(DEF_X);
          flow.defined |= DEF_A;
          flow.a = flow.x;
        }
        break;
    }
  }
}

function analyze(
  prog: readonly CbpfInsn[],
  blocks: Block[],
  blockOf: Int32Array,
): { facts: BlockFacts[]; needInit: number; hasLoop: boolean } {
  const facts: BlockFacts[] = blocks.map((b) => {
    let maxEnd = 0;
    for (let i = b.start; i <= b.end; i++) maxEnd = Math.max(maxEnd, loadEnd(prog[i]) ?? 0);
    return {
      reachable: false,
      boundIn: Infinity,
      maxEnd,
      definedIn: DEF_ALL,
      aIn: { lo: U32_MAX, hi: 0 },
      xIn: { lo: U32_MAX, hi: 0 },
      loopHead: false,
    };
  });
  let hasLoop = false;
  blocks.forEach((b) => {
    const last = prog[b.end];
    if ((last.code & 0x07) === C_JMP && (last.code & 0xf0) === 0) {
      const t = blockOf[jaTarget(prog, b.end)];
      if (blocks[t].start <= b.end) {
        facts[t].loopHead = true;
        hasLoop = true;
      }
    }
  });
  // Reachability.
  const work = [0];
  while (work.length > 0) {
    const b = work.pop() as number;
    if (facts[b].reachable) continue;
    facts[b].reachable = true;
    work.push(...blocks[b].succs);
  }
  // Forward dataflow to a fixed point: must-facts (bound, defined) shrink from the top, value ranges grow
  // from the bottom; loop heads take full ranges so the ranges need no widening.
  facts[0].boundIn = 0;
  facts[0].definedIn = 0;
  facts[0].aIn = { lo: 0, hi: 0 };
  facts[0].xIn = { lo: 0, hi: 0 };
  for (const f of facts) {
    if (f.loopHead) {
      f.aIn = FULL;
      f.xIn = FULL;
    }
  }
  let needInit = 0;
  for (let changed = true; changed;) {
    changed = false;
    blocks.forEach((b, bi) => {
      const f = facts[bi];
      if (!f.reachable) return;
      const flow: Flow = {
        defined: f.definedIn,
        a: f.aIn,
        x: f.xIn,
        bound: f.boundIn,
        needInit: 0,
      };
      if (f.maxEnd > flow.bound) flow.bound = f.maxEnd > MAX_PACKET_OFF ? Infinity : f.maxEnd;
      walkBlock(prog, b, flow);
      needInit |= flow.needInit;
      for (const s of b.succs) {
        const g = facts[s];
        const bound = Math.min(g.boundIn, flow.bound);
        const defined = g.definedIn & flow.defined;
        const a = g.loopHead ? FULL : hull(g.aIn, flow.a);
        const x = g.loopHead ? FULL : hull(g.xIn, flow.x);
        if (
          bound !== g.boundIn ||
          defined !== g.definedIn ||
          a.lo !== g.aIn.lo ||
          a.hi !== g.aIn.hi ||
          x.lo !== g.xIn.lo ||
          x.hi !== g.xIn.hi
        ) {
          g.boundIn = bound;
          g.definedIn = defined;
          g.aIn = a;
          g.xIn = x;
          changed = true;
        }
      }
    });
  }
  return { facts, needInit, hasLoop };
}

/**
 * Byte-swap elision. A 16- or 32-bit load normally converts network to host order (`be16`/`be32`).
 * When every later use of that A value only compares it for equality with a constant, tests bits of a
 * constant (`jset #k`) or tests it against zero (`ret a`), the conversion can be skipped and the
 * constant swapped at translation time instead: a byte swap is a bijection that permutes bits. A value
 * keeps one form on every path that reaches a use, or the loads feeding it keep their conversion.
 * Returns the loads whose conversion is skipped, and for each `jeq #k`/`jset #k` the width to swap k by.
 */
function planByteSwaps(
  prog: readonly CbpfInsn[],
  blocks: Block[],
  facts: readonly BlockFacts[],
): { skip: Set<number>; swapAt: Map<number, 16 | 32> } {
  type Form = { kind: 'none' | 'host' | 'sw16' | 'sw32' | 'mixed'; loads: Set<number> };
  const join = (a: Form, b: Form): Form => {
    if (a.kind === 'none') return b;
    if (b.kind === 'none') return a;
    const loads = new Set([...a.loads, ...b.loads]);
    return { kind: a.kind === b.kind ? a.kind : 'mixed', loads };
  };
  const eligible = new Set<number>();
  blocks.forEach((b, bi) => {
    if (!facts[bi].reachable) return;
    for (let i = b.start; i <= b.end; i++) {
      const { code } = prog[i];
      const mode = code & 0xe0;
      if ((code & 0x07) === C_LD && (mode === C_ABS || mode === C_IND) && (code & 0x18) !== 0x10) {
        eligible.add(i);
      }
    }
  });
  for (;;) {
    const formIn: Form[] = blocks.map(() => ({ kind: 'none', loads: new Set<number>() }));
    formIn[0] = { kind: 'host', loads: new Set() };
    const bad = new Set<number>();
    const swapAt = new Map<number, 16 | 32>();
    for (let changed = true; changed;) {
      changed = false;
      bad.clear();
      swapAt.clear();
      blocks.forEach((b, bi) => {
        if (!facts[bi].reachable) return;
        let form = formIn[bi];
        for (let i = b.start; i <= b.end; i++) {
          const { code } = prog[i];
          const cls = code & 0x07;
          const swapped = form.kind === 'sw16' || form.kind === 'sw32';
          const other = (): void => {
            // A use that needs the host-order value.
            if (form.kind !== 'host' && form.kind !== 'none') form.loads.forEach((l) => bad.add(l));
          };
          if (cls === C_LD) {
            if (eligible.has(i)) {
              form = { kind: (code & 0x18) === 0x08 ? 'sw16' : 'sw32', loads: new Set([i]) };
            } else form = { kind: 'host', loads: new Set() };
          } else if (cls === C_ALU || cls === C_ST || (cls === C_MISC && code === C_MISC)) {
            other();
            if (cls === C_ALU) form = { kind: 'host', loads: new Set() };
          } else if (cls === C_MISC) form = { kind: 'host', loads: new Set() };
          else if (cls === C_JMP && (code & 0xf0) !== 0) {
            const op = code & 0xf0;
            if ((code & C_X) === 0 && (op === 0x10 || op === 0x40)) {
              if (form.kind === 'mixed') form.loads.forEach((l) => bad.add(l));
              else if (swapped) swapAt.set(i, form.kind === 'sw16' ? 16 : 32);
            } else other();
          } else if (cls === C_RET && (code & 0x18) === C_RET_A) {
            if (form.kind === 'mixed') form.loads.forEach((l) => bad.add(l));
          }
        }
        for (const succ of b.succs) {
          const next = join(formIn[succ], form);
          if (next.kind !== formIn[succ].kind || next.loads.size !== formIn[succ].loads.size) {
            formIn[succ] = next;
            changed = true;
          }
        }
      });
    }
    if (bad.size === 0) return { skip: eligible, swapAt };
    bad.forEach((l) => eligible.delete(l));
  }
}

function swap16(v: number): number {
  return ((v & 0xff) << 8) | ((v >>> 8) & 0xff);
}

function swap32(v: number): number {
  return (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
}

// ---------------------------------------------------------------------------------------------------
// Code generation.

type Access = 'direct' | 'helper';

interface Exits {
  match: Label;
  noMatch: Label;
  /** Where a failed direct-access bounds check goes: "no match" (xdp) or the slow path (tc). */
  fail: Label;
}

function memOffset(slot: number): number {
  return MEM_BASE + 4 * slot;
}

function emitProgram(
  asm: Assembler,
  prog: readonly CbpfInsn[],
  blocks: Block[],
  blockOf: Int32Array,
  analysis: ReturnType<typeof analyze>,
  context: EbpfContext,
  access: Access,
  exits: Exits,
): void {
  const { facts, needInit, hasLoop } = analysis;
  const swaps = planByteSwaps(prog, blocks, facts);
  const usesPacket = prog.some(isPacketLoad);
  const usesLen = prog.some(
    (insn) =>
      (insn.code & 0xe0) === C_LEN && ((insn.code & 7) === C_LD || (insn.code & 7) === C_LDX),
  );
  // Prologue.
  if (access === 'helper') {
    if (usesPacket || usesLen) asm.emit(mov64Reg(CTX_HELPER, R1));
  } else if (usesPacket || (usesLen && context === 'xdp')) {
    const [dataOff, endOff] =
      context === 'xdp' ? [XDP_MD_DATA, XDP_MD_DATA_END] : [SK_BUFF_DATA, SK_BUFF_DATA_END];
    asm.emit(loadMem(4, DATA, R1, dataOff));
    asm.emit(loadMem(4, DATA_END, R1, endOff));
  }
  if (needInit & DEF_A) asm.emit(mov32Imm(A, 0));
  if (needInit & DEF_X) asm.emit(mov32Imm(X, 0));
  for (let slot = 0; slot < 16; slot++)
    if (needInit & (1 << slot)) asm.emit(storeImm(4, R10, memOffset(slot), 0));

  const blockLabel = blocks.map(() => asm.newLabel());
  // Threading: a block that only returns a constant, or only jumps, is replaced by its destination.
  const resolved = new Map<number, Label>();
  const resolve = (bi: number): Label => {
    const known = resolved.get(bi);
    if (known !== undefined) return known;
    const b = blocks[bi];
    let label = blockLabel[bi];
    if (b.start === b.end) {
      const insn = prog[b.start];
      if (insn.code === (C_RET | 0x00)) label = insn.k >>> 0 !== 0 ? exits.match : exits.noMatch;
      else if (insn.code === C_JMP && jaTarget(prog, b.start) > b.start)
        label = resolve(blockOf[jaTarget(prog, b.start)]);
    }
    resolved.set(bi, label);
    return label;
  };

  const ctxReg = access === 'helper' ? CTX_HELPER : R1;
  const loadLen = (dst: number): void => {
    if (context === 'xdp') {
      // data_end - data: pointer subtraction, allowed to programs loaded with CAP_PERFMON.
      asm.emit(mov64Reg(dst, DATA_END));
      asm.emit(alu64Reg(BPF_SUB, dst, DATA));
    } else asm.emit(loadMem(4, dst, ctxReg, SK_BUFF_LEN));
  };

  /** bpf_skb_load_bytes(ctx, r2, fp + BUF, size); "no match" on failure; value left in `dst`, host order. */
  const helperLoad = (dst: number, size: 1 | 2 | 4, swap = true): void => {
    asm.emit(mov64Reg(R1, CTX_HELPER));
    asm.emit(mov64Reg(R3, R10));
    asm.emit(alu64Imm(BPF_ADD, R3, BUF));
    asm.emit(mov64Imm(R4, size));
    asm.emit(call(BPF_FUNC_skb_load_bytes));
    asm.emit(jmpImm(BPF_JNE, R0, 0, 0), exits.noMatch);
    asm.emit(loadMem(size, dst, R10, BUF));
    if (size > 1 && swap) asm.emit(toBe(dst, size === 2 ? 16 : 32));
  };

  /** Direct load of `size` bytes at data + k, inside a range already proven. */
  const directLoad = (dst: number, base: number, k: number, size: 1 | 2 | 4, swap = true): void => {
    if (k <= 0x7fff) asm.emit(loadMem(size, dst, base, k));
    else {
      asm.emit(mov64Reg(T1, base));
      asm.emit(alu64Imm(BPF_ADD, T1, k));
      asm.emit(loadMem(size, dst, T1, 0));
    }
    if (size > 1 && swap) asm.emit(toBe(dst, size === 2 ? 16 : 32));
  };

  blocks.forEach((b, bi) => {
    const f = facts[bi];
    if (!f.reachable) return;
    asm.bind(blockLabel[bi]);
    if (access === 'direct' && f.maxEnd > f.boundIn) {
      if (f.maxEnd > MAX_PACKET_OFF) {
        asm.goto(exits.fail);
        return;
      }
      asm.emit(mov64Reg(T1, DATA));
      asm.emit(alu64Imm(BPF_ADD, T1, f.maxEnd));
      asm.emit(jmpReg(BPF_JGT, T1, DATA_END, 0), exits.fail, true);
    }
    const flow: Flow = { defined: f.definedIn, a: f.aIn, x: f.xIn, bound: f.boundIn, needInit: 0 };
    let dead = false;
    walkBlock(prog, b, flow, (i, state) => {
      if (dead) return;
      const insn = prog[i];
      const k = insn.k >>> 0;
      const code = insn.code;
      const cls = code & 0x07;
      const mode = code & 0xe0;
      switch (cls) {
        case C_LD:
        case C_LDX: {
          const dst = cls === C_LD ? A : X;
          if (mode === C_IMM) asm.emit(mov32Imm(dst, k));
          else if (mode === C_MEM) asm.emit(loadMem(4, dst, R10, memOffset(k)));
          else if (mode === C_LEN) loadLen(dst);
          else if (mode === C_ABS) {
            const size = loadSizes[code & 0x18];
            if (access === 'helper') {
              asm.emit(mov32Imm(R2, k));
              helperLoad(A, size, !swaps.skip.has(i));
            } else directLoad(A, DATA, k, size, !swaps.skip.has(i));
          } else if (mode === C_MSH) {
            if (access === 'helper') {
              asm.emit(mov32Imm(R2, k));
              helperLoad(X, 1);
            } else directLoad(X, DATA, k, 1);
            asm.emit(alu32Imm(BPF_AND, X, 0xf));
            asm.emit(alu32Imm(BPF_LSH, X, 2));
          } else {
            // C_IND: A = [X + k]
            const size = loadSizes[code & 0x18];
            if (access === 'helper') {
              if (k > INT_MAX) {
                // X + k >= 2^31 for every X: past any skb.
                asm.goto(exits.noMatch);
                dead = true;
                return;
              }
              if (hasLoop) {
                // In a loop the verifier needs X's range to converge: bound it as direct access does.
                // Only X + k + size > 0xffff is lost, i.e. over 64 KiB of headers walked by protochain.
                const limit = MAX_PACKET_OFF - k - size;
                if (limit < 0) {
                  asm.goto(exits.noMatch);
                  dead = true;
                  return;
                }
                if (state.x.hi > limit) asm.emit(jmpImm(BPF_JGT, X, limit, 0), exits.noMatch);
              }
              asm.emit(mov64Reg(R2, X));
              if (k !== 0) asm.emit(alu64Imm(BPF_ADD, R2, k));
              // bpf_skb_load_bytes takes a u32 offset: keep X + k from wrapping around 2^32.
              if (!hasLoop && state.x.hi + k > INT_MAX)
                asm.emit(jmpImm(BPF_JGT, R2, INT_MAX, 0), exits.noMatch);
              helperLoad(A, size, !swaps.skip.has(i));
            } else {
              const limit = MAX_PACKET_OFF - k - size;
              if (limit < 0) {
                asm.goto(exits.fail);
                dead = true;
                return;
              }
              // Verifier: the packet pointer may only grow by a value it knows is small.
              if (state.x.hi > limit) asm.emit(jmpImm(BPF_JGT, X, limit, 0), exits.fail);
              asm.emit(mov64Reg(T1, DATA));
              asm.emit(alu64Reg(BPF_ADD, T1, X));
              let disp = k;
              if (k > 0x7fff) {
                asm.emit(alu64Imm(BPF_ADD, T1, k));
                disp = 0;
              }
              asm.emit(mov64Reg(T2, T1));
              asm.emit(alu64Imm(BPF_ADD, T2, disp + size));
              asm.emit(jmpReg(BPF_JGT, T2, DATA_END, 0), exits.fail, true);
              directLoad(A, T1, disp, size, !swaps.skip.has(i));
            }
          }
          break;
        }
        case C_ST:
          asm.emit(storeReg(4, R10, memOffset(k), A));
          break;
        case C_STX:
          asm.emit(storeReg(4, R10, memOffset(k), X));
          break;
        case C_ALU: {
          const op = code & 0xf0;
          if (op === C_NEG) {
            asm.emit(neg32(A));
            break;
          }
          if (code & C_X) {
            if ((op === BPF_DIV || op === BPF_MOD) && state.x.lo === 0) {
              asm.emit(jmp32Imm(BPF_JEQ, X, 0, 0), exits.noMatch);
            }
            if ((op === BPF_LSH || op === BPF_RSH) && state.x.hi > 31) {
              // libpcap: a shift by 32 or more gives 0.
              const big = asm.newLabel();
              const done = asm.newLabel();
              asm.emit(jmp32Imm(BPF_JGT, X, 31, 0), big);
              asm.emit(alu32Reg(op, A, X));
              asm.goto(done);
              asm.bind(big);
              asm.emit(mov32Imm(A, 0));
              asm.bind(done);
              break;
            }
            asm.emit(alu32Reg(op, A, X));
            break;
          }
          if ((op === BPF_DIV || op === BPF_MOD) && k === 0) {
            // Rejected by libpcap's and the kernel's validators; treated like a division by X = 0.
            asm.goto(exits.noMatch);
            dead = true;
            return;
          }
          if (op === BPF_LSH || op === BPF_RSH) {
            // libpcap shifts by the constant in C; x86 takes the count modulo 32.
            if ((k & 31) !== 0) asm.emit(alu32Imm(op, A, k & 31));
            break;
          }
          if ((op === BPF_ADD || op === BPF_SUB || op === BPF_OR || op === BPF_XOR) && k === 0)
            break;
          if (op === BPF_MUL && k === 1) break;
          if (op === BPF_DIV && k === 1) break;
          asm.emit(alu32Imm(op, A, k));
          break;
        }
        case C_MISC:
          asm.emit(code === C_MISC ? mov32Reg(X, A) : mov32Reg(A, X));
          break;
        case C_RET: {
          const rval = code & 0x18;
          if (rval === 0) asm.goto(k !== 0 ? exits.match : exits.noMatch);
          else {
            asm.emit(jmp32Imm(BPF_JEQ, rval === C_RET_A ? A : X, 0, 0), exits.noMatch);
            asm.goto(exits.match);
          }
          break;
        }
        case C_JMP: {
          const op = code & 0xf0;
          if (op === 0) {
            const target = jaTarget(prog, i);
            if (target <= i) {
              asm.emit(mayGoto(0), exits.noMatch);
              asm.goto(blockLabel[blockOf[target]]);
            } else asm.goto(resolve(blockOf[target]));
            break;
          }
          const jt = resolve(blockOf[i + 1 + insn.jt]);
          const jf = resolve(blockOf[i + 1 + insn.jf]);
          if (jt === jf) {
            asm.goto(jt);
            break;
          }
          // A may still be in network order (see planByteSwaps): compare with the swapped constant.
          const width = swaps.swapAt.get(i);
          let imm = k;
          if (width === 32) imm = swap32(k);
          else if (width === 16)
            imm = op === 0x40 ? swap16(k & 0xffff) : k > 0xffff ? k : swap16(k);
          const jump = code & C_X ? jmp32Reg(op, A, X, 0) : jmp32Imm(op, A, imm, 0);
          asm.emit(jump, jt);
          asm.goto(jf);
          break;
        }
      }
    });
    if (!dead && (prog[b.end].code & 0x07) !== C_JMP && (prog[b.end].code & 0x07) !== C_RET) {
      asm.goto(resolve(bi + 1));
    }
  });
}

/**
 * Translate a classic BPF program into eBPF instructions for `context`, returning the verdict the
 * options ask for. Throws `CbpfProgramError` for a malformed classic program (unknown opcode, jump
 * outside the program, no final return) and `RangeError` for action values outside 32 bits.
 */
export function translateCbpf(prog: readonly CbpfInsn[], options: TranslateOptions): Translation {
  const { context, verdict } = options;
  const [match, noMatch] = verdict.kind === 'return' ? [1, 0] : [verdict.match, verdict.noMatch];
  for (const v of [match, noMatch]) {
    if (!Number.isInteger(v) || v < -0x80000000 || v > U32_MAX) {
      throw new RangeError(`translate classic BPF: verdict value ${v} does not fit in 32 bits`);
    }
  }
  validate(prog);
  const { blocks, blockOf } = buildBlocks(prog);
  const analysis = analyze(prog, blocks, blockOf);

  const asm = new Assembler();
  const matchLabel = asm.newLabel();
  const noMatchLabel = asm.newLabel();
  const slowLabel = asm.newLabel();
  if (context === 'socket') {
    emitProgram(asm, prog, blocks, blockOf, analysis, context, 'helper', {
      match: matchLabel,
      noMatch: noMatchLabel,
      fail: noMatchLabel,
    });
  } else {
    const fail = context === 'tc' ? slowLabel : noMatchLabel;
    emitProgram(asm, prog, blocks, blockOf, analysis, context, 'direct', {
      match: matchLabel,
      noMatch: noMatchLabel,
      fail,
    });
    if (context === 'tc') {
      asm.bind(slowLabel);
      emitProgram(asm, prog, blocks, blockOf, analysis, context, 'helper', {
        match: matchLabel,
        noMatch: noMatchLabel,
        fail: noMatchLabel,
      });
    }
  }
  asm.bind(matchLabel);
  asm.emit(mov32Imm(R0, match));
  asm.emit(exit());
  asm.bind(noMatchLabel);
  asm.emit(mov32Imm(R0, noMatch));
  asm.emit(exit());

  const { insns, boundsChecks } = link(asm);
  return {
    insns,
    boundsChecks,
    packetLoads: prog.filter(isPacketLoad).length,
    branchDepth: branchDepth(insns),
  };
}
