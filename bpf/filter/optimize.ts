// The optimizer of libpcap (optimize.c): value numbering, dead-store removal, peephole rules, jump threading, pullups, interning.
import {
  BPF_ABS,
  BPF_ADD,
  BPF_ALU,
  BPF_AND,
  BPF_B,
  BPF_DIV,
  BPF_H,
  BPF_IMM,
  BPF_IND,
  BPF_JEQ,
  BPF_JGE,
  BPF_JGT,
  BPF_JMP,
  BPF_JSET,
  BPF_K,
  BPF_LD,
  BPF_LDX,
  BPF_LEN,
  BPF_LSH,
  BPF_MEM,
  BPF_MEMWORDS,
  BPF_MISC,
  BPF_MOD,
  BPF_MSH,
  BPF_MUL,
  BPF_NEG,
  BPF_OR,
  BPF_RET,
  BPF_RSH,
  BPF_ST,
  BPF_STX,
  BPF_SUB,
  BPF_TAX,
  BPF_TXA,
  BPF_W,
  BPF_X,
  BPF_XOR,
  bpfClass,
  bpfMiscOp,
  bpfMode,
  bpfOp,
  bpfRval,
  bpfSize,
  bpfSrc,
  evalAlu,
} from './cbpf.js';
import { JF, JT, Marker, NOP, postOrder, type Block, type Edge, type Stmt } from './ir.js';

const A_ATOM = BPF_MEMWORDS;
const X_ATOM = BPF_MEMWORDS + 1;
const N_ATOMS = BPF_MEMWORDS + 2;
const AX_ATOM = N_ATOMS;
const VAL_UNKNOWN = 0;

/** Raised when constant folding meets a division by zero or an oversized shift. */
export class OptimizeError extends Error {}

/**
 * Work the optimizer may spend on one expression, in steps (a block visited
 * by a dominator run or a pullup, a word of the per-pass edge-dominator
 * sets), before it gives up. libpcap has no such cap; this keeps any input
 * from holding the compiler for long. A step costs under 10 ns, so the cap
 * is reached within about 20 s. A 1,365-term `host … or …` (16,382 blocks)
 * takes 860 million steps; its 600-term form (the largest of that shape
 * under BPF_MAXINSNS) 170 million.
 */
export const MAX_OPTIMIZER_STEPS = 2_000_000_000;

/** Raised when the optimizer would pass `MAX_OPTIMIZER_STEPS`. */
export class OptimizeLimitError extends Error {}

const atomElem = (set: number, n: number): boolean => ((set >>> n) & 1) === 1;
const atomMask = (n: number): number => 1 << n;

/**
 * Edge dominator sets live in one flat Uint32Array, `words` words per edge, as
 * libpcap's all_edge_sets: set `x` starts at word x * words.
 * a := a ∩ b for the sets starting at words `a` and `b`.
 */
function setIntersect(space: Uint32Array, a: number, b: number, words: number): void {
  for (let i = 0; i < words; i++) space[a + i] &= space[b + i];
}

/**
 * Value numbers (libpcap's F() hash of valnodes): an open-addressing table
 * keyed by (code, v0, v1) as 32-bit integers. Numbers are handed out in
 * order of first lookup, as libpcap's are; the table layout does not matter.
 */
class ValueTable {
  private keys = new Int32Array(3 * 1024);
  private vals = new Int32Array(1024);
  private mask = 1023;
  private count = 0;
  /** The empty slot where the last missed `get` ended. */
  private slot = 0;

  clear(): void {
    if (this.count === 0) return;
    this.vals.fill(0);
    this.count = 0;
  }

  private static hash(code: number, v0: number, v1: number): number {
    let h = Math.imul(code, 0x9e3779b1) ^ v0;
    h = Math.imul(h ^ (h >>> 15), 0x85ebca6b) ^ v1;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return h ^ (h >>> 16);
  }

  /** The value of (code, v0, v1), or 0 with the slot remembered for `insert`. */
  get(code: number, v0: number, v1: number): number {
    const { keys, vals, mask } = this;
    for (let i = ValueTable.hash(code, v0, v1) & mask; ; i = (i + 1) & mask) {
      const v = vals[i];
      if (v === 0) {
        this.slot = i;
        return 0;
      }
      if (keys[3 * i] === code && keys[3 * i + 1] === v0 && keys[3 * i + 2] === v1) return v;
    }
  }

  /** Stores `val` for the key `get` just missed. */
  insert(code: number, v0: number, v1: number, val: number): void {
    if (2 * (this.count + 1) > this.vals.length) {
      this.grow();
      this.get(code, v0, v1);
    }
    const i = this.slot;
    this.keys[3 * i] = code;
    this.keys[3 * i + 1] = v0;
    this.keys[3 * i + 2] = v1;
    this.vals[i] = val;
    this.count++;
  }

  private grow(): void {
    const { keys, vals } = this;
    this.keys = new Int32Array(keys.length * 2);
    this.vals = new Int32Array(vals.length * 2);
    this.mask = this.vals.length - 1;
    this.count = 0;
    for (let i = 0; i < vals.length; i++) {
      if (vals[i] === 0) continue;
      this.get(keys[3 * i], keys[3 * i + 1], keys[3 * i + 2]);
      this.insert(keys[3 * i], keys[3 * i + 1], keys[3 * i + 2], vals[i]);
    }
  }
}

function atomuse(s: Stmt): number {
  const c = s.code;
  if (c === NOP) return -1;
  switch (bpfClass(c)) {
    case BPF_RET:
      return bpfRval(c) === 0x10 ? A_ATOM : bpfRval(c) === BPF_X ? X_ATOM : -1;
    case BPF_LD:
    case BPF_LDX:
      return bpfMode(c) === BPF_IND ? X_ATOM : bpfMode(c) === BPF_MEM ? s.k : -1;
    case BPF_ST:
      return A_ATOM;
    case BPF_STX:
      return X_ATOM;
    case BPF_JMP:
    case BPF_ALU:
      return bpfSrc(c) === BPF_X ? AX_ATOM : A_ATOM;
    case BPF_MISC:
      return bpfMiscOp(c) === BPF_TXA ? X_ATOM : A_ATOM;
  }
  return -1;
}

function atomdef(s: Stmt): number {
  if (s.code === NOP) return -1;
  switch (bpfClass(s.code)) {
    case BPF_LD:
    case BPF_ALU:
      return A_ATOM;
    case BPF_LDX:
      return X_ATOM;
    case BPF_ST:
    case BPF_STX:
      return s.k;
    case BPF_MISC:
      return bpfMiscOp(s.code) === BPF_TAX ? X_ATOM : A_ATOM;
  }
  return -1;
}

/**
 * The dominator sets of find_dom, kept as a tree instead of libpcap's bit
 * vectors (which cost n²/32 words per run, and libpcap reruns find_dom after
 * every pullup). find_dom starts every set full and the root's empty, then,
 * walking the level lists, adds b to b's set and intersects b's successors'
 * sets with it. Every set that is not full is then a chain: a node and its
 * ancestors in a tree whose node for b is made when b adds itself, under
 * whatever b's set held. Intersecting two chains is the chain of their lowest
 * common ancestor. This gives the sets libpcap's bits give even where a
 * pullup has made the level order stale (a successor visited before one of
 * its predecessors), so membership queries answer alike.
 *
 * Ancestors are found through skew-binary jump pointers (Myers 1983), which
 * depend only on depth: O(1) to add a node, O(log n) to climb.
 *
 * A rerun after a pullup starts at the first block (in walk order) whose
 * successors changed: an undo log takes the sets back to what they held
 * when the previous run reached that block, and the steps before it would
 * repeat exactly.
 */
class DomSets {
  /** Per block id: FULL, EMPTY (node 0) or the tree node whose chain is the set. */
  private readonly set: Int32Array;
  /** Per block id: the block's own tree node, 0 if it has none in this run. */
  private readonly own: Int32Array;
  private readonly depth: Int32Array;
  private readonly parent: Int32Array;
  private readonly jump: Int32Array;
  /** Tree nodes made before each step of the walk. */
  private readonly nodesBefore: Int32Array;
  /** Undo log: (step, slot, old value) triples; slots below n are `set`, the rest `own`. */
  private log: Int32Array;
  private logLength = 0;
  private nodes = 0;
  /** Steps of the walk whose results are current. */
  private doneSteps = 0;
  private static readonly FULL = -1;

  constructor(private readonly n: number) {
    this.set = new Int32Array(n);
    this.own = new Int32Array(n);
    // Node 0 is the empty set, the root of the tree, its own parent and jump.
    this.depth = new Int32Array(n + 1);
    this.parent = new Int32Array(n + 1);
    this.jump = new Int32Array(n + 1);
    this.nodesBefore = new Int32Array(n + 1);
    this.log = new Int32Array(3 * 4 * (n + 1));
  }

  /**
   * Runs find_dom over `order` (block ids, level lists from the root down)
   * with successors `jt`/`jf` (-1 for none), redoing only the steps from
   * `from` on (0 for a full run). Returns the number of steps taken.
   */
  run(order: Int32Array, jt: Int32Array, jf: Int32Array, rootId: number, from: number): number {
    if (from <= 0) {
      this.set.fill(DomSets.FULL);
      this.own.fill(0);
      this.nodes = 0;
      this.logLength = 0;
      this.set[rootId] = 0;
      from = 0;
    } else {
      from = Math.min(from, this.doneSteps);
      this.undo(from);
    }
    for (let step = from; step < order.length; step++) {
      this.nodesBefore[step] = this.nodes;
      const b = order[step];
      this.insertSelf(step, b);
      const t = jt[b];
      if (t < 0) continue;
      this.intersect(step, t, b);
      this.intersect(step, jf[b], b);
    }
    this.doneSteps = order.length;
    return order.length - from;
  }

  /** SET_MEMBER(dom[b], a). */
  has(b: number, a: number): boolean {
    const s = this.set[b];
    if (s === DomSets.FULL) return true;
    const x = this.own[a];
    if (x === 0 || this.depth[x] > this.depth[s]) return false;
    return this.ancestorAt(s, this.depth[x]) === x;
  }

  private write(step: number, slot: number, value: number): void {
    if (this.logLength + 3 > this.log.length) {
      const log = new Int32Array(2 * this.log.length);
      log.set(this.log);
      this.log = log;
    }
    const log = this.log;
    const i = this.logLength;
    log[i] = step;
    log[i + 1] = slot;
    if (slot < this.n) {
      log[i + 2] = this.set[slot];
      this.set[slot] = value;
    } else {
      log[i + 2] = this.own[slot - this.n];
      this.own[slot - this.n] = value;
    }
    this.logLength = i + 3;
  }

  /** Takes the sets back to their state before step `step`. */
  private undo(step: number): void {
    const log = this.log;
    let i = this.logLength;
    while (i > 0 && log[i - 3] >= step) {
      i -= 3;
      const slot = log[i + 1];
      if (slot < this.n) this.set[slot] = log[i + 2];
      else this.own[slot - this.n] = log[i + 2];
    }
    this.logLength = i;
    this.nodes = this.nodesBefore[step];
  }

  /** SET_INSERT(dom[b], b): a full set stays full. */
  private insertSelf(step: number, b: number): void {
    const p = this.set[b];
    if (p === DomSets.FULL) return;
    const { depth, jump } = this;
    const x = ++this.nodes;
    depth[x] = depth[p] + 1;
    this.parent[x] = p;
    const jp = jump[p];
    jump[x] = depth[p] - depth[jp] === depth[jp] - depth[jump[jp]] ? jump[jp] : p;
    this.write(step, this.n + b, x);
    this.write(step, b, x);
  }

  /** SET_INTERSECT(dom[target], dom[source]). */
  private intersect(step: number, target: number, source: number): void {
    const s = this.set[source];
    if (s === DomSets.FULL) return;
    const t = this.set[target];
    if (t === s) return;
    this.write(step, target, t === DomSets.FULL ? s : this.lca(t, s));
  }

  private ancestorAt(x: number, d: number): number {
    const { depth, jump, parent } = this;
    while (depth[x] > d) x = depth[jump[x]] >= d ? jump[x] : parent[x];
    return x;
  }

  private lca(x: number, y: number): number {
    const { depth, jump, parent } = this;
    if (depth[x] > depth[y]) x = this.ancestorAt(x, depth[y]);
    else if (depth[y] > depth[x]) y = this.ancestorAt(y, depth[x]);
    while (x !== y) {
      if (jump[x] !== jump[y]) {
        x = jump[x];
        y = jump[y];
      } else {
        x = parent[x];
        y = parent[y];
      }
    }
    return x;
  }
}

class Optimizer {
  blocks: Block[] = [];
  edges: Edge[] = [];
  levels: (Block | null)[] = [];
  edgewords = 0;
  dom = new DomSets(0);
  /** Block ids in find_dom's walk order (level lists, root first), rebuilt each pass. */
  order = new Int32Array(0);
  orderLength = 0;
  /** Per block id: its step in `order`, or the length of `order` if absent. */
  stepOf = new Int32Array(0);
  /** Successor ids as find_dom reads them (-1 for none); pullups keep them current. */
  jtId = new Int32Array(0);
  jfId = new Int32Array(0);
  /** First step of `order` whose block's successors changed since the last find_dom. */
  dirtyStep = 0;
  /** A pullup changed the graph since the last find_dom. */
  domStale = false;
  /** Edge dominator sets, `edgewords` words per edge id (libpcap's all_edge_sets). */
  edom = new Uint32Array(0);
  done = false;
  nonBranchMovementPerformed = false;
  curval = 0;
  valueTable = new ValueTable();
  isConst = new Uint8Array(1024);
  constVal = new Uint32Array(1024);

  /** Steps spent so far, against MAX_OPTIMIZER_STEPS. */
  private steps = 0;

  constructor(
    private root: Block,
    private readonly marker: Marker,
  ) {}

  private spend(steps: number): void {
    this.steps += steps;
    if (this.steps > MAX_OPTIMIZER_STEPS)
      throw new OptimizeLimitError(`more than ${MAX_OPTIMIZER_STEPS} optimizer steps`);
  }

  getRoot(): Block {
    return this.root;
  }

  // ---- setup ----

  init(): void {
    this.marker.unmarkAll();
    const stack: Block[] = [this.root];
    while (stack.length > 0) {
      const p = stack.pop()!;
      if (this.marker.isMarked(p)) continue;
      this.marker.mark(p);
      p.id = this.blocks.length;
      this.blocks.push(p);
      const jf = JF(p);
      const jt = JT(p);
      if (jf) stack.push(jf);
      if (jt) stack.push(jt);
    }
    const n = this.blocks.length;
    this.edgewords = Math.floor((2 * n) / 32) + 1;
    this.dom = new DomSets(n);
    this.order = new Int32Array(n);
    this.stepOf = new Int32Array(n);
    this.jtId = new Int32Array(n);
    this.jfId = new Int32Array(n);
    this.edom = new Uint32Array(2 * n * this.edgewords);
    this.edges = new Array<Edge>(2 * n);
    this.levels = new Array<Block | null>(n).fill(null);
    this.blocks.forEach((b, i) => {
      b.et.id = i;
      b.ef.id = n + i;
      this.edges[i] = b.et;
      this.edges[n + i] = b.ef;
      b.et.pred = b;
      b.ef.pred = b;
      b.val = new Int32Array(N_ATOMS);
    });
  }

  // ---- flow analysis ----

  findLevels(): void {
    this.levels.fill(null);
    // Successors first, true branch first, as find_levels_r.
    for (const b of postOrder(this.root, this.marker, false)) {
      const level = b.et.succ ? Math.max(b.et.succ.level, b.ef.succ!.level) + 1 : 0;
      b.level = level;
      b.link = this.levels[level];
      this.levels[level] = b;
    }
  }

  /** Lists the blocks in find_dom's walk order and numbers the steps. */
  private findOrder(): void {
    const n = this.blocks.length;
    let k = 0;
    this.stepOf.fill(n);
    for (let i = this.root.level; i >= 0; --i) {
      for (let b = this.levels[i]; b; b = b.link) {
        this.stepOf[b.id] = k;
        this.order[k++] = b.id;
      }
    }
    this.orderLength = k;
  }

  /**
   * Copies every block's successors into `jtId`/`jfId`, noting in `dirtyStep`
   * the first step whose block changed since the last copy.
   */
  private snapshotEdges(): void {
    for (const b of this.blocks) {
      const jt = b.et.succ ? b.et.succ.id : -1;
      const jf = b.ef.succ ? b.ef.succ.id : -1;
      if (jt !== this.jtId[b.id] || jf !== this.jfId[b.id]) {
        this.jtId[b.id] = jt;
        this.jfId[b.id] = jf;
        this.dirtyStep = Math.min(this.dirtyStep, this.stepOf[b.id]);
      }
    }
  }

  /** find_dom over the graph as it is now (edges from `jtId`/`jfId`). */
  findDom(): void {
    this.runDom(0);
  }

  /** find_dom, redoing the walk from step `from` on (0: all of it). */
  private runDom(from: number): void {
    const order = this.order.subarray(0, this.orderLength);
    this.spend(this.dom.run(order, this.jtId, this.jfId, this.root.id, from));
    this.dirtyStep = this.orderLength;
    this.domStale = false;
  }

  /** Whether `a` dominates `b`, first redoing find_dom if a pullup changed the graph. */
  private dominates(a: Block, b: Block): boolean {
    // libpcap reruns find_dom after every pullup; only the next query can see the result.
    if (this.domStale) this.runDom(this.dirtyStep);
    return this.dom.has(b.id, a.id);
  }

  /** Points an edge of `p` at `target` during pullups, keeping find_dom's view current. */
  private setSucc(p: Block, jt: boolean, target: Block | null): void {
    if (jt) {
      p.et.succ = target;
      this.jtId[p.id] = target ? target.id : -1;
    } else {
      p.ef.succ = target;
      this.jfId[p.id] = target ? target.id : -1;
    }
    this.dirtyStep = Math.min(this.dirtyStep, this.stepOf[p.id]);
    this.domStale = true;
  }

  private propedom(ep: Edge): void {
    const w = this.edgewords;
    const edom = this.edom;
    const own = ep.id * w;
    edom[own + (ep.id >>> 5)] |= 1 << (ep.id & 31);
    if (ep.succ) {
      setIntersect(edom, ep.succ.et.id * w, own, w);
      setIntersect(edom, ep.succ.ef.id * w, own, w);
    }
  }

  findEdom(): void {
    const w = this.edgewords;
    this.edom.fill(0xffffffff);
    this.edom.fill(0, this.root.et.id * w, this.root.et.id * w + w);
    this.edom.fill(0, this.root.ef.id * w, this.root.ef.id * w + w);
    for (let i = this.root.level; i >= 0; --i) {
      for (let b = this.levels[i]; b; b = b.link) {
        this.propedom(b.et);
        this.propedom(b.ef);
      }
    }
  }

  private computeLocalUd(b: Block): void {
    let def = 0;
    let use = 0;
    let killed = 0;
    const noteUse = (atom: number): void => {
      if (atom < 0) return;
      if (atom === AX_ATOM) {
        if (!atomElem(def, X_ATOM)) use |= atomMask(X_ATOM);
        if (!atomElem(def, A_ATOM)) use |= atomMask(A_ATOM);
      } else if (atom < N_ATOMS) {
        if (!atomElem(def, atom)) use |= atomMask(atom);
      }
    };
    for (const s of b.stmts) {
      if (s.code === NOP) continue;
      noteUse(atomuse(s));
      const atom = atomdef(s);
      if (atom >= 0) {
        if (!atomElem(use, atom)) killed |= atomMask(atom);
        def |= atomMask(atom);
      }
    }
    if (bpfClass(b.s.code) === BPF_JMP) noteUse(atomuse(b.s));
    b.def = def;
    b.kill = killed;
    b.inUse = use;
  }

  findUd(): void {
    const maxlevel = this.root.level;
    for (let i = maxlevel; i >= 0; --i) {
      for (let p = this.levels[i]; p; p = p.link) {
        this.computeLocalUd(p);
        p.outUse = 0;
      }
    }
    for (let i = 1; i <= maxlevel; ++i) {
      for (let p = this.levels[i]; p; p = p.link) {
        p.outUse |= JT(p)!.inUse | JF(p)!.inUse;
        p.inUse |= p.outUse & ~p.kill;
      }
    }
  }

  // ---- value numbering ----

  private initVal(): void {
    this.isConst.fill(0, 0, this.curval + 1);
    this.curval = 0;
    this.valueTable.clear();
  }

  private F(code: number, v0: number, v1: number): number {
    // Operands are 32-bit in libpcap: k of -1 and of 0xffffffff are one value.
    code |= 0;
    v0 |= 0;
    v1 |= 0;
    const found = this.valueTable.get(code, v0, v1);
    if (found !== 0) return found;
    const val = ++this.curval;
    if (val >= this.isConst.length) {
      const isConst = new Uint8Array(2 * val);
      isConst.set(this.isConst);
      this.isConst = isConst;
      const constVal = new Uint32Array(2 * val);
      constVal.set(this.constVal);
      this.constVal = constVal;
    }
    if (bpfMode(code) === BPF_IMM && (bpfClass(code) === BPF_LD || bpfClass(code) === BPF_LDX)) {
      this.isConst[val] = 1;
      this.constVal[val] = v0 >>> 0;
    } else {
      this.isConst[val] = 0;
      this.constVal[val] = 0;
    }
    this.valueTable.insert(code, v0, v1, val);
    return val;
  }

  private K(i: number): number {
    return this.F(BPF_LD | BPF_IMM | BPF_W, i >>> 0, 0);
  }

  private vstore(
    s: Stmt | null,
    val: Int32Array,
    idx: number,
    newval: number,
    alter: boolean,
  ): void {
    if (alter && s !== null && newval !== VAL_UNKNOWN && val[idx] === newval) s.code = NOP;
    else val[idx] = newval;
  }

  private foldOp(s: Stmt, v0: number, v1: number): void {
    const a = evalAlu(bpfOp(s.code), this.constVal[v0], this.constVal[v1]);
    if (a === null)
      throw new OptimizeError(bpfOp(s.code) === BPF_DIV ? 'division by zero' : 'modulus by zero');
    if (a === undefined) throw new OptimizeError('unexpected operation in constant folding');
    s.k = a;
    s.code = BPF_LD | BPF_IMM;
    this.done = false;
    this.nonBranchMovementPerformed = true;
  }

  private optStmt(s: Stmt, val: Int32Array, alter: boolean): void {
    let v: number;
    switch (s.code) {
      case BPF_LD | BPF_ABS | BPF_W:
      case BPF_LD | BPF_ABS | BPF_H:
      case BPF_LD | BPF_ABS | BPF_B:
        v = this.F(s.code, s.k, 0);
        this.vstore(s, val, A_ATOM, v, alter);
        break;
      case BPF_LD | BPF_IND | BPF_W:
      case BPF_LD | BPF_IND | BPF_H:
      case BPF_LD | BPF_IND | BPF_B:
        v = val[X_ATOM];
        if (alter && this.isConst[v]) {
          s.code = BPF_LD | BPF_ABS | bpfSize(s.code);
          s.k = (s.k + this.constVal[v]) >>> 0;
          v = this.F(s.code, s.k, 0);
          this.done = false;
          this.nonBranchMovementPerformed = true;
        } else v = this.F(s.code, s.k, v);
        this.vstore(s, val, A_ATOM, v, alter);
        break;
      case BPF_LD | BPF_LEN:
        v = this.F(s.code, 0, 0);
        this.vstore(s, val, A_ATOM, v, alter);
        break;
      case BPF_LD | BPF_IMM:
        v = this.K(s.k);
        this.vstore(s, val, A_ATOM, v, alter);
        break;
      case BPF_LDX | BPF_IMM:
        v = this.K(s.k);
        this.vstore(s, val, X_ATOM, v, alter);
        break;
      case BPF_LDX | BPF_MSH | BPF_B:
        v = this.F(s.code, s.k, 0);
        this.vstore(s, val, X_ATOM, v, alter);
        break;
      case BPF_ALU | BPF_NEG:
        if (alter && this.isConst[val[A_ATOM]]) {
          s.code = BPF_LD | BPF_IMM;
          s.k = (0 - this.constVal[val[A_ATOM]]) >>> 0;
          val[A_ATOM] = this.K(s.k);
        } else val[A_ATOM] = this.F(s.code, val[A_ATOM], 0);
        break;
      case BPF_ALU | BPF_ADD | BPF_K:
      case BPF_ALU | BPF_SUB | BPF_K:
      case BPF_ALU | BPF_MUL | BPF_K:
      case BPF_ALU | BPF_DIV | BPF_K:
      case BPF_ALU | BPF_MOD | BPF_K:
      case BPF_ALU | BPF_AND | BPF_K:
      case BPF_ALU | BPF_OR | BPF_K:
      case BPF_ALU | BPF_XOR | BPF_K:
      case BPF_ALU | BPF_LSH | BPF_K:
      case BPF_ALU | BPF_RSH | BPF_K: {
        const op = bpfOp(s.code);
        if (alter) {
          if (s.k === 0) {
            if (
              op === BPF_ADD ||
              op === BPF_LSH ||
              op === BPF_RSH ||
              op === BPF_OR ||
              op === BPF_XOR
            ) {
              s.code = NOP;
              break;
            }
            if (op === BPF_MUL || op === BPF_AND) {
              s.code = BPF_LD | BPF_IMM;
              val[A_ATOM] = this.K(s.k);
              break;
            }
            if (op === BPF_DIV) throw new OptimizeError('division by zero');
            if (op === BPF_MOD) throw new OptimizeError('modulus by zero');
          }
          if (this.isConst[val[A_ATOM]]) {
            this.foldOp(s, val[A_ATOM], this.K(s.k));
            val[A_ATOM] = this.K(s.k);
            break;
          }
        }
        val[A_ATOM] = this.F(s.code, val[A_ATOM], this.K(s.k));
        break;
      }
      case BPF_ALU | BPF_ADD | BPF_X:
      case BPF_ALU | BPF_SUB | BPF_X:
      case BPF_ALU | BPF_MUL | BPF_X:
      case BPF_ALU | BPF_DIV | BPF_X:
      case BPF_ALU | BPF_MOD | BPF_X:
      case BPF_ALU | BPF_AND | BPF_X:
      case BPF_ALU | BPF_OR | BPF_X:
      case BPF_ALU | BPF_XOR | BPF_X:
      case BPF_ALU | BPF_LSH | BPF_X:
      case BPF_ALU | BPF_RSH | BPF_X: {
        const op = bpfOp(s.code);
        if (alter && this.isConst[val[X_ATOM]]) {
          if (this.isConst[val[A_ATOM]]) {
            this.foldOp(s, val[A_ATOM], val[X_ATOM]);
            val[A_ATOM] = this.K(s.k);
          } else {
            s.code = BPF_ALU | BPF_K | op;
            s.k = this.constVal[val[X_ATOM]];
            if ((op === BPF_LSH || op === BPF_RSH) && s.k > 31)
              throw new OptimizeError('shift by more than 31 bits');
            this.done = false;
            val[A_ATOM] = this.F(s.code, val[A_ATOM], this.K(s.k));
            this.nonBranchMovementPerformed = true;
          }
          break;
        }
        if (alter && this.isConst[val[A_ATOM]] && this.constVal[val[A_ATOM]] === 0) {
          if (op === BPF_ADD || op === BPF_OR || op === BPF_XOR) {
            s.code = BPF_MISC | BPF_TXA;
            this.vstore(s, val, A_ATOM, val[X_ATOM], alter);
            break;
          } else if (
            op === BPF_MUL ||
            op === BPF_DIV ||
            op === BPF_MOD ||
            op === BPF_AND ||
            op === BPF_LSH ||
            op === BPF_RSH
          ) {
            s.code = BPF_LD | BPF_IMM;
            s.k = 0;
            this.vstore(s, val, A_ATOM, this.K(s.k), alter);
            break;
          }
        }
        val[A_ATOM] = this.F(s.code, val[A_ATOM], val[X_ATOM]);
        break;
      }
      case BPF_MISC | BPF_TXA:
        this.vstore(s, val, A_ATOM, val[X_ATOM], alter);
        break;
      case BPF_LD | BPF_MEM:
        v = val[s.k];
        if (alter && this.isConst[v]) {
          s.code = BPF_LD | BPF_IMM;
          s.k = this.constVal[v];
          this.done = false;
          this.nonBranchMovementPerformed = true;
        }
        this.vstore(s, val, A_ATOM, v, alter);
        break;
      case BPF_MISC | BPF_TAX:
        this.vstore(s, val, X_ATOM, val[A_ATOM], alter);
        break;
      case BPF_LDX | BPF_MEM:
        v = val[s.k];
        if (alter && this.isConst[v]) {
          s.code = BPF_LDX | BPF_IMM;
          s.k = this.constVal[v];
          this.done = false;
          this.nonBranchMovementPerformed = true;
        }
        this.vstore(s, val, X_ATOM, v, alter);
        break;
      case BPF_ST:
        this.vstore(s, val, s.k, val[A_ATOM], alter);
        break;
      case BPF_STX:
        this.vstore(s, val, s.k, val[X_ATOM], alter);
        break;
      default:
        break;
    }
  }

  private deadstmt(s: Stmt, last: (Stmt | null)[]): void {
    let atom = atomuse(s);
    if (atom >= 0) {
      if (atom === AX_ATOM) {
        last[X_ATOM] = null;
        last[A_ATOM] = null;
      } else last[atom] = null;
    }
    atom = atomdef(s);
    if (atom >= 0) {
      if (last[atom]) {
        this.done = false;
        last[atom]!.code = NOP;
        this.nonBranchMovementPerformed = true;
      }
      last[atom] = s;
    }
  }

  private optDeadstores(b: Block): void {
    const last = new Array<Stmt | null>(N_ATOMS).fill(null);
    for (const s of b.stmts) this.deadstmt(s, last);
    this.deadstmt(b.s, last);
    for (let atom = 0; atom < N_ATOMS; ++atom) {
      if (last[atom] && !atomElem(b.outUse, atom)) {
        last[atom]!.code = NOP;
        // The store was removed as it's dead, so the value stored into now has an unknown value.
        b.val[atom] = VAL_UNKNOWN;
        this.done = false;
        this.nonBranchMovementPerformed = true;
      }
    }
  }

  private optPeep(b: Block): void {
    const stmts = b.stmts;
    if (stmts.length === 0) return;
    // Indices of statements, skipping NOPs as this_op does.
    const thisOp = (i: number): number => {
      while (i < stmts.length && stmts[i].code === NOP) i++;
      return i < stmts.length ? i : -1;
    };
    let lastIdx = 0;
    for (let si = 0; ;) {
      si = thisOp(si);
      if (si < 0) break;
      const ni = thisOp(si + 1);
      if (ni < 0) break;
      lastIdx = ni;
      const s = stmts[si];
      const next = stmts[ni];
      if (s.code === BPF_ST && next.code === (BPF_LDX | BPF_MEM) && s.k === next.k) {
        this.done = false;
        next.code = BPF_MISC | BPF_TAX;
        this.nonBranchMovementPerformed = true;
      }
      if (s.code === (BPF_LD | BPF_IMM) && next.code === (BPF_MISC | BPF_TAX)) {
        s.code = BPF_LDX | BPF_IMM;
        next.code = BPF_MISC | BPF_TXA;
        this.done = false;
        this.nonBranchMovementPerformed = true;
      }
      if (s.code === (BPF_LD | BPF_IMM)) {
        if (atomElem(b.outUse, X_ATOM)) {
          si = ni;
          continue;
        }
        const addI = next.code !== (BPF_LDX | BPF_MSH | BPF_B) ? ni : thisOp(ni + 1);
        if (addI < 0 || stmts[addI].code !== (BPF_ALU | BPF_ADD | BPF_X)) {
          si = ni;
          continue;
        }
        const taxI = thisOp(addI + 1);
        if (taxI < 0 || stmts[taxI].code !== (BPF_MISC | BPF_TAX)) {
          si = ni;
          continue;
        }
        const ildI = thisOp(taxI + 1);
        if (
          ildI < 0 ||
          bpfClass(stmts[ildI].code) !== BPF_LD ||
          bpfMode(stmts[ildI].code) !== BPF_IND
        ) {
          si = ni;
          continue;
        }
        stmts[ildI].k = (stmts[ildI].k + s.k) >>> 0;
        s.code = NOP;
        stmts[addI].code = NOP;
        stmts[taxI].code = NOP;
        this.done = false;
        this.nonBranchMovementPerformed = true;
      }
      si = ni;
    }
    const last = stmts[lastIdx];
    if (b.s.code === (BPF_JMP | BPF_JEQ | BPF_K) && !atomElem(b.outUse, A_ATOM)) {
      if (last.code === (BPF_ALU | BPF_SUB | BPF_X)) {
        const val = b.val[X_ATOM];
        if (this.isConst[val]) {
          b.s.k = (b.s.k + this.constVal[val]) >>> 0;
          last.code = NOP;
          this.done = false;
          this.nonBranchMovementPerformed = true;
        } else if (b.s.k === 0) {
          last.code = NOP;
          b.s.code = BPF_JMP | BPF_JEQ | BPF_X;
          this.done = false;
          this.nonBranchMovementPerformed = true;
        }
      } else if (last.code === (BPF_ALU | BPF_SUB | BPF_K)) {
        last.code = NOP;
        b.s.k = (b.s.k + last.k) >>> 0;
        this.done = false;
        this.nonBranchMovementPerformed = true;
      } else if (last.code === (BPF_ALU | BPF_AND | BPF_K) && b.s.k === 0) {
        b.s.k = last.k;
        b.s.code = BPF_JMP | BPF_K | BPF_JSET;
        last.code = NOP;
        this.done = false;
        this.nonBranchMovementPerformed = true;
        const t = b.et.succ;
        b.et.succ = b.ef.succ;
        b.ef.succ = t;
      }
    }
    if (b.s.code === (BPF_JMP | BPF_K | BPF_JSET)) {
      if (b.s.k === 0) b.et.succ = b.ef.succ;
      if (b.s.k >>> 0 === 0xffffffff) b.ef.succ = b.et.succ;
    }
    let val = b.val[X_ATOM];
    if (this.isConst[val] && bpfSrc(b.s.code) === BPF_X) {
      b.s.code &= ~BPF_X;
      b.s.k = this.constVal[val];
    }
    val = b.val[A_ATOM];
    if (this.isConst[val] && bpfSrc(b.s.code) === BPF_K) {
      let v = this.constVal[val] >>> 0;
      const k = b.s.k >>> 0;
      switch (bpfOp(b.s.code)) {
        case BPF_JEQ:
          v = v === k ? 1 : 0;
          break;
        case BPF_JGT:
          v = v > k ? 1 : 0;
          break;
        case BPF_JGE:
          v = v >= k ? 1 : 0;
          break;
        case BPF_JSET:
          v = (v & k) >>> 0;
          break;
        default:
          throw new OptimizeError('unexpected branch in constant folding');
      }
      if (JF(b) !== JT(b)) {
        this.done = false;
        this.nonBranchMovementPerformed = true;
      }
      if (v) b.ef.succ = b.et.succ;
      else b.et.succ = b.ef.succ;
    }
  }

  private optBlk(b: Block, doStmts: boolean): void {
    let p = b.inEdges;
    if (p === null) b.val.fill(0);
    else {
      for (let i = 0; i < N_ATOMS; i++) b.val[i] = p.pred.val[i];
      while ((p = p.next) !== null) {
        for (let i = 0; i < N_ATOMS; ++i) if (b.val[i] !== p.pred.val[i]) b.val[i] = 0;
      }
    }
    const aval = b.val[A_ATOM];
    const xval = b.val[X_ATOM];
    for (const s of b.stmts) this.optStmt(s, b.val, doStmts);
    if (
      doStmts &&
      ((b.outUse === 0 &&
        aval !== VAL_UNKNOWN &&
        b.val[A_ATOM] === aval &&
        xval !== VAL_UNKNOWN &&
        b.val[X_ATOM] === xval) ||
        bpfClass(b.s.code) === BPF_RET)
    ) {
      if (b.stmts.length !== 0) {
        b.stmts = [];
        this.nonBranchMovementPerformed = true;
        this.done = false;
      }
    } else {
      this.optPeep(b);
      this.optDeadstores(b);
    }
    if (bpfSrc(b.s.code) === BPF_K) b.oval = this.K(b.s.k);
    else b.oval = b.val[X_ATOM];
    b.et.code = b.s.code;
    b.ef.code = -b.s.code;
  }

  private useConflict(b: Block, succ: Block): boolean {
    const use = succ.outUse;
    if (use === 0) return false;
    for (let atom = 0; atom < N_ATOMS; ++atom)
      if (atomElem(use, atom) && b.val[atom] !== succ.val[atom]) return true;
    return false;
  }

  private foldEdge(child: Block, ep: Edge): Block | null {
    let code = ep.code;
    let sense: boolean;
    if (code < 0) {
      code = -code;
      sense = false;
    } else sense = true;
    if (child.s.code !== code) return null;
    const aval0 = child.val[A_ATOM];
    const oval0 = child.oval;
    const aval1 = ep.pred.val[A_ATOM];
    const oval1 = ep.pred.oval;
    if (aval0 !== aval1) return null;
    if (oval0 === oval1) return sense ? JT(child) : JF(child);
    if (sense && code === (BPF_JMP | BPF_JEQ | BPF_K)) return JF(child);
    return null;
  }

  private optJ(ep: Edge): void {
    if (JT(ep.succ!) === null) return;
    if (JT(ep.succ!) === JF(ep.succ!)) {
      if (!this.useConflict(ep.pred, JT(ep.succ!)!)) {
        this.done = false;
        ep.succ = JT(ep.succ!);
        this.nonBranchMovementPerformed = true;
      }
    }
    const words = this.edgewords;
    const base = ep.id * words;
    top: for (;;) {
      for (let i = 0; i < words; ++i) {
        let x = this.edom[base + i];
        while (x !== 0) {
          const k0 = 31 - Math.clz32(x & -x);
          x = (x & ~(1 << k0)) >>> 0;
          const k = k0 + i * 32;
          const target = this.foldEdge(ep.succ!, this.edges[k]);
          if (target !== null && !this.useConflict(ep.pred, target)) {
            this.done = false;
            ep.succ = target;
            if (JT(target) !== null) continue top;
            return;
          }
        }
      }
      return;
    }
  }

  /** or_pullup (jt = false) and and_pullup (jt = true), sharing one body with the edge sense as a parameter. */
  private pullup(b: Block, and: boolean): void {
    let ep = b.inEdges;
    if (ep === null) return;
    const val = ep.pred.val[A_ATOM];
    for (ep = ep.next; ep !== null; ep = ep.next) if (val !== ep.pred.val[A_ATOM]) return;
    // "Same" successor: JT for or_pullup, JF for and_pullup; the chain follows the other edge.
    const same = (x: Block): Block | null => (and ? x.ef.succ : x.et.succ);
    const follow = (x: Block): Block | null => (and ? x.et.succ : x.ef.succ);
    const first = b.inEdges!.pred;
    // diffp is a reference to a successor pointer: (block, which edge).
    let diffBlk = first;
    let diffT = first.et.succ === b;
    let atTop = true;
    const sameB = same(b);
    for (;;) {
      this.spend(1);
      const d = diffT ? diffBlk.et.succ : diffBlk.ef.succ;
      if (d === null) return;
      if (same(d) !== sameB) return;
      if (!this.dominates(b, d)) return;
      if (d.val[A_ATOM] !== val) break;
      diffBlk = d;
      diffT = and;
      atTop = false;
    }
    let sameBlk = (diffT ? diffBlk.et.succ : diffBlk.ef.succ)!;
    for (;;) {
      this.spend(1);
      const sm = follow(sameBlk);
      if (sm === null) return;
      if (same(sm) !== sameB) return;
      if (!this.dominates(b, sm)) return;
      if (sm.val[A_ATOM] === val) break;
      sameBlk = sm;
    }
    const pull = follow(sameBlk)!;
    const diffTarget = diffT ? diffBlk.et.succ : diffBlk.ef.succ;
    this.setSucc(sameBlk, and, follow(pull));
    this.setSucc(pull, and, diffTarget);
    if (atTop) {
      for (let e = b.inEdges; e !== null; e = e.next)
        this.setSucc(e.pred, e.pred.et.succ === b, pull);
    } else this.setSucc(diffBlk, diffT, pull);
    this.done = false;
  }

  private findInedges(): void {
    for (const b of this.blocks) b.inEdges = null;
    for (let level = this.root.level; level > 0; --level) {
      for (let b = this.levels[level]; b !== null; b = b.link) {
        b.et.next = JT(b)!.inEdges;
        JT(b)!.inEdges = b.et;
        b.ef.next = JF(b)!.inEdges;
        JF(b)!.inEdges = b.ef;
      }
    }
  }

  private optBlks(doStmts: boolean): void {
    this.initVal();
    const maxlevel = this.root.level;
    this.findInedges();
    for (let i = maxlevel; i >= 0; --i)
      for (let p = this.levels[i]; p; p = p.link) this.optBlk(p, doStmts);
    if (doStmts) return;
    for (let i = 1; i <= maxlevel; ++i) {
      for (let p = this.levels[i]; p; p = p.link) {
        this.optJ(p.et);
        this.optJ(p.ef);
      }
    }
    this.findInedges();
    // optBlk and optJ moved edges; find_dom sees them at its next run, after a pullup.
    this.snapshotEdges();
    for (let i = 1; i <= maxlevel; ++i) {
      for (let p = this.levels[i]; p; p = p.link) {
        this.pullup(p, false);
        this.pullup(p, true);
      }
    }
  }

  loop(doStmts: boolean): void {
    let loopCount = 0;
    for (;;) {
      this.done = true;
      this.nonBranchMovementPerformed = false;
      this.findLevels();
      this.findOrder();
      this.snapshotEdges();
      this.findDom();
      // libpcap also computes find_closure here; nothing reads the closure sets, so it is skipped.
      this.findUd();
      this.findEdom();
      this.spend(this.blocks.length * (1 + 2 * this.edgewords));
      this.optBlks(doStmts);
      if (this.done) break;
      if (this.nonBranchMovementPerformed) loopCount = 0;
      else if (++loopCount >= 100) {
        this.done = true;
        break;
      }
    }
  }

  private static eqSlist(x: Stmt[], y: Stmt[]): boolean {
    let i = 0;
    let j = 0;
    for (;;) {
      while (i < x.length && x[i].code === NOP) i++;
      while (j < y.length && y[j].code === NOP) j++;
      if (i >= x.length) return j >= y.length;
      if (j >= y.length) return false;
      if (x[i].code !== y[j].code || x[i].k >>> 0 !== y[j].k >>> 0) return false;
      i++;
      j++;
    }
  }

  /**
   * intern_blocks: equal blocks (same statements, branch and successors)
   * become one. libpcap merges the blocks equal right now, redirects their
   * predecessors and repeats until nothing changes, pointing each block at
   * the highest-numbered reachable block equal to it; two chains of n equal
   * tests take n rounds. Its fixed point is reached here in one bottom-up
   * pass: blocks are equal when their statements are and their successors
   * are (already classed, children first), and every class is represented by
   * its highest-numbered block, which is the one libpcap's rounds keep.
   */
  internBlocks(): void {
    const n = this.blocks.length;
    // Reachable blocks, successors before predecessors.
    const post = postOrder(this.root, this.marker, false);
    const classOf = new Int32Array(n).fill(-1);
    // Per class: a member to compare with and the highest-numbered member.
    const sample: Block[] = [];
    const rep: number[] = [];
    const buckets = new Map<number, number[]>();
    for (const b of post) {
      const jt = b.et.succ ? classOf[b.et.succ.id] : -1;
      const jf = b.ef.succ ? classOf[b.ef.succ.id] : -1;
      let h = Math.imul(b.s.code, 0x9e3779b1) ^ b.s.k;
      h = Math.imul(h ^ jt, 0x85ebca6b) ^ Math.imul(jf, 0xc2b2ae35);
      for (const st of b.stmts) {
        if (st.code !== NOP) h = Math.imul(h ^ st.code, 0x27d4eb2f) ^ Math.imul(st.k, 0x165667b1);
      }
      let bucket = buckets.get(h);
      if (bucket === undefined) buckets.set(h, (bucket = []));
      let c = -1;
      for (const candidate of bucket) {
        const o = sample[candidate];
        if (
          o.s.code === b.s.code &&
          o.s.k >>> 0 === b.s.k >>> 0 &&
          (o.et.succ ? classOf[o.et.succ.id] : -1) === jt &&
          (o.ef.succ ? classOf[o.ef.succ.id] : -1) === jf &&
          Optimizer.eqSlist(o.stmts, b.stmts)
        ) {
          c = candidate;
          break;
        }
      }
      if (c < 0) {
        c = sample.length;
        sample.push(b);
        rep.push(b.id);
        bucket.push(c);
      } else if (b.id > rep[c]) rep[c] = b.id;
      classOf[b.id] = c;
    }
    for (const p of post) {
      if (p.et.succ === null) continue;
      p.et.succ = this.blocks[rep[classOf[p.et.succ.id]]];
      p.ef.succ = this.blocks[rep[classOf[p.ef.succ!.id]]];
    }
  }

  optRoot(): void {
    let b = this.root;
    const s = b.stmts;
    b.stmts = [];
    while (bpfClass(b.s.code) === BPF_JMP && JT(b) === JF(b)) b = JT(b)!;
    b.stmts = [...s, ...b.stmts];
    if (bpfClass(b.s.code) === BPF_RET) b.stmts = [];
    this.root = b;
  }
}

/**
 * Optimizes a closed block graph in place the way libpcap's bpf_optimize
 * does and returns the new root.
 * Throws `OptimizeError` on division by zero or shifts past 31 found while folding constants.
 */
export function optimizeBlocks(root: Block, marker: Marker): Block {
  const opt = new Optimizer(root, marker);
  opt.init();
  opt.loop(false);
  opt.loop(true);
  opt.internBlocks();
  opt.optRoot();
  return opt.getRoot();
}
