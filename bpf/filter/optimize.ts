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
import { JF, JT, Marker, NOP, type Block, type Edge, type Stmt } from './ir.js';

const A_ATOM = BPF_MEMWORDS;
const X_ATOM = BPF_MEMWORDS + 1;
const N_ATOMS = BPF_MEMWORDS + 2;
const AX_ATOM = N_ATOMS;
const VAL_UNKNOWN = 0;

/** Raised when constant folding meets a division by zero or an oversized shift. */
export class OptimizeError extends Error {}

const atomElem = (set: number, n: number): boolean => ((set >>> n) & 1) === 1;
const atomMask = (n: number): number => 1 << n;
const setInsert = (p: Uint32Array, a: number): void => {
  p[a >>> 5] |= 1 << (a & 31);
};
const setMember = (p: Uint32Array, a: number): boolean => ((p[a >>> 5] >>> (a & 31)) & 1) === 1;
const setIntersect = (a: Uint32Array, b: Uint32Array): void => {
  for (let i = 0; i < a.length; i++) a[i] &= b[i];
};
const setUnion = (a: Uint32Array, b: Uint32Array): void => {
  for (let i = 0; i < a.length; i++) a[i] |= b[i];
};

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

class Optimizer {
  blocks: Block[] = [];
  edges: Edge[] = [];
  levels: (Block | null)[] = [];
  nodewords = 0;
  edgewords = 0;
  done = false;
  nonBranchMovementPerformed = false;
  curval = 0;
  valueTable = new Map<string, number>();
  isConst: boolean[] = [];
  constVal: number[] = [];

  constructor(
    private root: Block,
    private readonly marker: Marker,
  ) {}

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
    this.nodewords = Math.floor(n / 32) + 1;
    this.edgewords = Math.floor((2 * n) / 32) + 1;
    this.edges = new Array<Edge>(2 * n);
    this.levels = new Array<Block | null>(n).fill(null);
    this.blocks.forEach((b, i) => {
      b.dom = new Uint32Array(this.nodewords);
      b.closure = new Uint32Array(this.nodewords);
      b.et.edom = new Uint32Array(this.edgewords);
      b.ef.edom = new Uint32Array(this.edgewords);
      b.et.id = i;
      b.ef.id = n + i;
      this.edges[i] = b.et;
      this.edges[n + i] = b.ef;
      b.et.pred = b;
      b.ef.pred = b;
      b.val = new Array<number>(N_ATOMS).fill(0);
    });
  }

  // ---- flow analysis ----

  findLevels(): void {
    this.levels.fill(null);
    this.marker.unmarkAll();
    // Post-order walk (JT subtree, then JF subtree), as find_levels_r.
    const stack: { b: Block; state: number }[] = [{ b: this.root, state: 0 }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const b = top.b;
      if (top.state === 0) {
        if (this.marker.isMarked(b)) {
          stack.pop();
          continue;
        }
        this.marker.mark(b);
        b.link = null;
        top.state = 1;
        if (JT(b)) {
          stack.push({ b: JT(b)!, state: 0 });
          continue;
        }
      }
      if (top.state === 1) {
        top.state = 2;
        if (JT(b)) {
          stack.push({ b: JF(b)!, state: 0 });
          continue;
        }
      }
      stack.pop();
      const level = JT(b) ? Math.max(JT(b)!.level, JF(b)!.level) + 1 : 0;
      b.level = level;
      b.link = this.levels[level];
      this.levels[level] = b;
    }
  }

  findDom(): void {
    for (const b of this.blocks) b.dom.fill(0xffffffff);
    this.root.dom.fill(0);
    for (let i = this.root.level; i >= 0; --i) {
      for (let b = this.levels[i]; b; b = b.link) {
        setInsert(b.dom, b.id);
        if (JT(b) === null) continue;
        setIntersect(JT(b)!.dom, b.dom);
        setIntersect(JF(b)!.dom, b.dom);
      }
    }
  }

  private propedom(ep: Edge): void {
    setInsert(ep.edom, ep.id);
    if (ep.succ) {
      setIntersect(ep.succ.et.edom, ep.edom);
      setIntersect(ep.succ.ef.edom, ep.edom);
    }
  }

  findEdom(): void {
    for (const e of this.edges) e.edom.fill(0xffffffff);
    this.root.et.edom.fill(0);
    this.root.ef.edom.fill(0);
    for (let i = this.root.level; i >= 0; --i) {
      for (let b = this.levels[i]; b; b = b.link) {
        this.propedom(b.et);
        this.propedom(b.ef);
      }
    }
  }

  findClosure(): void {
    for (const b of this.blocks) b.closure.fill(0);
    for (let i = this.root.level; i >= 0; --i) {
      for (let b = this.levels[i]; b; b = b.link) {
        setInsert(b.closure, b.id);
        if (JT(b) === null) continue;
        setUnion(JT(b)!.closure, b.closure);
        setUnion(JF(b)!.closure, b.closure);
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
    this.curval = 0;
    this.valueTable.clear();
    this.isConst = [false];
    this.constVal = [0];
  }

  private F(code: number, v0: number, v1: number): number {
    const key = `${code},${v0},${v1}`;
    const found = this.valueTable.get(key);
    if (found !== undefined) return found;
    const val = ++this.curval;
    if (bpfMode(code) === BPF_IMM && (bpfClass(code) === BPF_LD || bpfClass(code) === BPF_LDX)) {
      this.isConst[val] = true;
      this.constVal[val] = v0 >>> 0;
    } else {
      this.isConst[val] = false;
      this.constVal[val] = 0;
    }
    this.valueTable.set(key, val);
    return val;
  }

  private K(i: number): number {
    return this.F(BPF_LD | BPF_IMM | BPF_W, i >>> 0, 0);
  }

  private vstore(s: Stmt | null, val: number[], idx: number, newval: number, alter: boolean): void {
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

  private optStmt(s: Stmt, val: number[], alter: boolean): void {
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
    top: for (;;) {
      for (let i = 0; i < this.edgewords; ++i) {
        let x = ep.edom[i];
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
      const d = diffT ? diffBlk.et.succ : diffBlk.ef.succ;
      if (d === null) return;
      if (same(d) !== sameB) return;
      if (!setMember(d.dom, b.id)) return;
      if (d.val[A_ATOM] !== val) break;
      diffBlk = d;
      diffT = and;
      atTop = false;
    }
    let sameBlk = (diffT ? diffBlk.et.succ : diffBlk.ef.succ)!;
    for (;;) {
      const sm = follow(sameBlk);
      if (sm === null) return;
      if (same(sm) !== sameB) return;
      if (!setMember(sm.dom, b.id)) return;
      if (sm.val[A_ATOM] === val) break;
      sameBlk = sm;
    }
    const pull = follow(sameBlk)!;
    const diffTarget = diffT ? diffBlk.et.succ : diffBlk.ef.succ;
    if (and) {
      sameBlk.et.succ = pull.et.succ;
      pull.et.succ = diffTarget;
    } else {
      sameBlk.ef.succ = pull.ef.succ;
      pull.ef.succ = diffTarget;
    }
    if (atTop) {
      for (let e = b.inEdges; e !== null; e = e.next) {
        if (e.pred.et.succ === b) e.pred.et.succ = pull;
        else e.pred.ef.succ = pull;
      }
    } else if (diffT) diffBlk.et.succ = pull;
    else diffBlk.ef.succ = pull;
    this.done = false;
    this.findDom();
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
      this.findDom();
      this.findClosure();
      this.findUd();
      this.findEdom();
      this.optBlks(doStmts);
      if (this.done) break;
      if (this.nonBranchMovementPerformed) loopCount = 0;
      else if (++loopCount >= 100) {
        this.done = true;
        break;
      }
    }
  }

  private markCode(): void {
    this.marker.unmarkAll();
    const stack: Block[] = [this.root];
    while (stack.length > 0) {
      const p = stack.pop()!;
      if (this.marker.isMarked(p)) continue;
      this.marker.mark(p);
      if (JT(p)) stack.push(JT(p)!);
      if (JF(p)) stack.push(JF(p)!);
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

  internBlocks(): void {
    const n = this.blocks.length;
    const key = (b: Block): string => {
      let k = `${b.s.code},${b.s.k >>> 0},${b.et.succ ? b.et.succ.id : -1},${b.ef.succ ? b.ef.succ.id : -1}`;
      for (const st of b.stmts) if (st.code !== NOP) k += `;${st.code},${st.k >>> 0}`;
      return k;
    };
    for (;;) {
      let done1 = true;
      for (const b of this.blocks) b.link = null;
      this.markCode();
      // For each block, the first equal marked block after it (in numbering order), as libpcap's double loop finds.
      const nearest = new Map<string, Block>();
      const last = this.blocks[n - 1];
      if (n > 0 && this.marker.isMarked(last)) nearest.set(key(last), last);
      for (let i = n - 1; i !== 0;) {
        --i;
        const bi = this.blocks[i];
        if (!this.marker.isMarked(bi)) continue;
        const k = key(bi);
        const bj = nearest.get(k);
        if (bj !== undefined) bi.link = bj.link ? bj.link : bj;
        nearest.set(k, bi);
      }
      for (const p of this.blocks) {
        if (JT(p) === null) continue;
        if (JT(p)!.link) {
          done1 = false;
          p.et.succ = JT(p)!.link;
        }
        if (JF(p)!.link) {
          done1 = false;
          p.ef.succ = JF(p)!.link;
        }
      }
      if (done1) return;
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
