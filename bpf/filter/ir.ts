// Block graph of libpcap's code generator (struct block/stmt/edge), its and/or/not combinators, and linearization to instructions.
import { BPF_JA, BPF_JMP, BPF_RET, bpfClass, type CbpfInsn } from './cbpf.js';

/** libpcap's NOP pseudo-opcode. */
export const NOP = -1;

/** One statement; jt/jf are block-local jump targets (only protochain uses them). */
export interface Stmt {
  code: number;
  k: number;
  jt?: Stmt;
  jf?: Stmt;
}

/** A control-flow edge (libpcap's struct edge). */
export interface Edge {
  id: number;
  code: number;
  succ: Block | null;
  pred: Block;
  next: Edge | null;
}

/** A basic block: statements, then a branch or return in `s`. */
export interface Block {
  id: number;
  stmts: Stmt[];
  s: Stmt;
  mark: number;
  longjt: number;
  longjf: number;
  level: number;
  offset: number;
  sense: boolean;
  et: Edge;
  ef: Edge;
  head: Block;
  link: Block | null;
  inEdges: Edge | null;
  def: number;
  kill: number;
  inUse: number;
  outUse: number;
  oval: number;
  /** Value numbers of the atoms on exit (libpcap's val[N_ATOMS]), set by the optimizer. */
  val: Int32Array;
}

const NO_VALUES = new Int32Array(0);

export function newStmt(code: number, k = 0): Stmt {
  return { code, k };
}

/** A new block ending in `code` (a jump or return) with operand k. */
export function newBlock(code: number, k = 0): Block {
  const b = {
    id: 0,
    stmts: [],
    s: { code, k },
    mark: 0,
    longjt: 0,
    longjf: 0,
    level: 0,
    offset: 0,
    sense: false,
    head: undefined as unknown as Block,
    link: null,
    inEdges: null,
    def: 0,
    kill: 0,
    inUse: 0,
    outUse: 0,
    oval: 0,
    val: NO_VALUES,
  } as unknown as Block;
  b.et = { id: 0, code: 0, succ: null, pred: b, next: null };
  b.ef = { id: 0, code: 0, succ: null, pred: b, next: null };
  b.head = b;
  return b;
}

export const JT = (b: Block): Block | null => b.et.succ;
export const JF = (b: Block): Block | null => b.ef.succ;

function backpatch(list: Block | null, target: Block): void {
  while (list) {
    let next: Block | null;
    if (!list.sense) {
      next = list.et.succ;
      list.et.succ = target;
    } else {
      next = list.ef.succ;
      list.ef.succ = target;
    }
    list = next;
  }
}

function merge(b0: Block, b1: Block): void {
  // Find the end of b0's list and concatenate b1.
  let p = b0;
  for (;;) {
    const next = !p.sense ? p.et.succ : p.ef.succ;
    if (next === null) break;
    p = next;
  }
  if (!p.sense) p.et.succ = b1;
  else p.ef.succ = b1;
}

/** b1 := b0 && b1 (libpcap's gen_and). */
export function genAnd(b0: Block, b1: Block): void {
  backpatch(b0, b1.head);
  b0.sense = !b0.sense;
  b1.sense = !b1.sense;
  merge(b1, b0);
  b1.sense = !b1.sense;
  b1.head = b0.head;
}

/** b1 := b0 || b1 (libpcap's gen_or). */
export function genOr(b0: Block, b1: Block): void {
  b0.sense = !b0.sense;
  backpatch(b0, b1.head);
  b0.sense = !b0.sense;
  merge(b1, b0);
  b1.head = b0.head;
}

/** b := !b (libpcap's gen_not). */
export function genNot(b: Block): void {
  b.sense = !b.sense;
}

/** Closes the expression: true exits return `accept`, false exits return 0 (finish_parse). */
export function finishBlocks(p: Block, accept: number): Block {
  backpatch(p, newBlock(BPF_RET, accept));
  p.sense = !p.sense;
  backpatch(p, newBlock(BPF_RET, 0));
  return p.head;
}

/** Marks for graph walks (libpcap's cur_mark). */
export class Marker {
  private cur = 1;
  unmarkAll(): void {
    this.cur++;
  }
  isMarked(b: Block): boolean {
    return b.mark === this.cur;
  }
  mark(b: Block): void {
    b.mark = this.cur;
  }
}

/**
 * The blocks reachable from `root`, each after both its successors (post-order, as libpcap's
 * recursive walks visit them), the false branch first where `falseFirst` (convert_code_r) and
 * the true branch first otherwise (find_levels_r). Iterative: graphs run to thousands of levels.
 */
export function postOrder(root: Block, marker: Marker, falseFirst: boolean): Block[] {
  const post: Block[] = [];
  marker.unmarkAll();
  marker.mark(root);
  const stack: Block[] = [root];
  const state: number[] = [0];
  while (stack.length > 0) {
    const top = stack.length - 1;
    const p = stack[top];
    if (state[top] < 2) {
      const next = (state[top] === 0) === falseFirst ? p.ef.succ : p.et.succ;
      state[top]++;
      if (next !== null && !marker.isMarked(next)) {
        marker.mark(next);
        stack.push(next);
        state.push(0);
      }
      continue;
    }
    stack.pop();
    state.pop();
    post.push(p);
  }
  return post;
}

export function slength(stmts: Stmt[]): number {
  let n = 0;
  for (const s of stmts) if (s.code !== NOP) n++;
  return n;
}

/** Thrown by the linearizer when a block-local jump cannot be encoded. */
export class ConvertError extends Error {}

/**
 * Lays the graph out as instructions exactly as libpcap's icode_to_fcode:
 * false branches placed after true branches, blocks emitted from the tail,
 * long branches through inserted `ja`.
 *
 * libpcap restarts the whole layout each time a branch turns out to need a
 * `ja`. Offsets here count back from the end of the program, so the blocks
 * already laid out keep theirs and only the block that grew is laid out
 * again: the same program without the quadratic restarts.
 */
export function linearize(root: Block, marker: Marker): CbpfInsn[] {
  // Each block's instructions in layout order; the program is these in reverse.
  const groups: CbpfInsn[][] = [];
  let tail = 0;
  for (const p of postOrder(root, marker, true)) {
    let group: CbpfInsn[] | null;
    do group = layOutBlock(p, tail);
    while (group === null);
    tail += group.length;
    groups.push(group);
  }
  const out: CbpfInsn[] = [];
  for (let i = groups.length - 1; i >= 0; i--) for (const ins of groups[i]) out.push(ins);
  return out;
}

/**
 * The instructions of one block placed just before the last `tail` ones, its
 * offset (negative, from the end) in `p.offset`; null when a branch needed a
 * `ja` that the block had no room for (it has now; lay it out again).
 */
function layOutBlock(p: Block, tail: number): CbpfInsn[] | null {
  const slen = slength(p.stmts);
  const size = slen + 1 + p.longjt + p.longjf;
  p.offset = -(tail + size);
  const out: CbpfInsn[] = Array.from({ length: size }, () => ({ code: 0, jt: 0, jf: 0, k: 0 }));
  const live = p.stmts.filter((s) => s.code !== NOP);
  live.forEach((src, off) => {
    const ins = out[off];
    ins.code = src.code;
    ins.k = src.k >>> 0;
    if (bpfClass(src.code) === BPF_JMP && src.code !== (BPF_JMP | BPF_JA) && off !== slen - 2) {
      const jt = src.jt ? live.indexOf(src.jt) : -1;
      const jf = src.jf ? live.indexOf(src.jf) : -1;
      if (jt < 0 || jf < 0 || jt - off - 1 >= 256 || jf - off - 1 >= 256)
        throw new ConvertError('block-local jump cannot be encoded');
      ins.jt = jt - off - 1;
      ins.jf = jf - off - 1;
    }
  });
  const dst = slen;
  const ins = out[dst];
  ins.code = p.s.code;
  ins.k = p.s.k >>> 0;
  const jtb = JT(p);
  if (jtb === null) return out;
  let extrajmps = 0;
  // A branch too far for 8 bits goes through a `ja` after the block; null until it has room.
  const branch = (target: Block, long: 'longjt' | 'longjf'): number | null => {
    const off = target.offset - (p.offset + slen) - 1;
    if (off < 256) return off;
    if (p[long] === 0) {
      p[long]++;
      return null;
    }
    extrajmps++;
    out[dst + extrajmps] = { code: BPF_JMP | BPF_JA, jt: 0, jf: 0, k: off - extrajmps };
    return extrajmps - 1;
  };
  const jt = branch(jtb, 'longjt');
  if (jt === null) return null;
  ins.jt = jt;
  const jf = branch(JF(p)!, 'longjf');
  if (jf === null) return null;
  ins.jf = jf;
  return out;
}
