// Recursive-descent parser for pcap-filter expressions, mirroring libpcap's grammar.y (including qualifier inheritance).
import {
  QUAL_ERR,
  type AddrQual,
  type Arth,
  type ArthOp,
  type DirQual,
  type Expr,
  type IdValue,
  type Qual,
  type Span,
} from './ast.js';
import { FilterLimitError, FilterSyntaxError, FilterUnsupportedError } from './errors.js';
import { tokenize, type Token } from './lexer.js';

/** Longest expression accepted, in characters. */
export const MAX_EXPRESSION_LENGTH = 64 * 1024;
/** Deepest nesting of parentheses, `not` and unary minus. */
export const MAX_NESTING = 256;

const ARITH_PREC: Record<string, number> = {
  '|': 1,
  '&': 2,
  LSH: 3,
  RSH: 3,
  '+': 4,
  '-': 4,
  '*': 5,
  '/': 5,
  '%': 5,
};
const ARITH_OP: Record<string, ArthOp> = {
  '|': '|',
  '&': '&',
  LSH: '<<',
  RSH: '>>',
  '+': '+',
  '-': '-',
  '*': '*',
  '/': '/',
  '%': '%',
  '^': '^',
};
const RELOPS: Record<string, { op: 'jgt' | 'jge' | 'jeq'; reversed: boolean }> = {
  '>': { op: 'jgt', reversed: false },
  GEQ: { op: 'jge', reversed: false },
  '=': { op: 'jeq', reversed: false },
  LEQ: { op: 'jgt', reversed: true },
  '<': { op: 'jge', reversed: true },
  NEQ: { op: 'jeq', reversed: true },
};

const describe = (t: Token): string =>
  t.kind === 'EOF'
    ? 'end of expression'
    : `"${t.text.length > 40 ? `${t.text.slice(0, 40)}...` : t.text}"`;

class Parser {
  private readonly toks: Token[];
  private i = 0;
  private depth = 0;
  private readonly match: number[];

  constructor(private readonly expression: string) {
    this.toks = tokenize(expression);
    // Matching parenthesis of every '(' (or -1), computed once.
    this.match = new Array<number>(this.toks.length).fill(-1);
    const stack: number[] = [];
    this.toks.forEach((t, j) => {
      if (this.isP(t, '(')) stack.push(j);
      else if (this.isP(t, ')') && stack.length > 0) this.match[stack.pop()!] = j;
    });
  }

  private isP(t: Token, p: string): boolean {
    return t.kind === 'PUNCT' && t.word === p;
  }
  private peek(k = 0): Token {
    return this.toks[Math.min(this.i + k, this.toks.length - 1)];
  }
  private at(j: number): Token {
    return this.toks[Math.min(j, this.toks.length - 1)];
  }
  private next(): Token {
    const t = this.toks[this.i];
    if (this.i < this.toks.length - 1) this.i++;
    return t;
  }
  private fail(t: Token, expected: string): never {
    const column = t.offset + 1;
    throw new FilterSyntaxError(
      `unexpected ${describe(t)} at column ${column}: expected ${expected}`,
      {
        expression: this.expression,
        offset: t.offset,
        length: Math.max(1, t.length),
        expected,
      },
    );
  }
  private expectP(p: string, expected: string): Token {
    const t = this.peek();
    if (!this.isP(t, p)) this.fail(t, expected);
    return this.next();
  }
  private enter(t: Token): void {
    if (++this.depth > MAX_NESTING) {
      throw new FilterLimitError(
        `expression nests deeper than ${MAX_NESTING} levels at column ${t.offset + 1}`,
        {
          expression: this.expression,
          offset: t.offset,
          length: Math.max(1, t.length),
        },
      );
    }
  }
  private leave(): void {
    this.depth--;
  }
  private span(from: Token | Span, to?: Token | Span): Span {
    const end = to ?? this.toks[Math.max(0, this.i - 1)];
    return { offset: from.offset, length: Math.max(1, end.offset + end.length - from.offset) };
  }

  parseProgram(): Expr | null {
    if (this.peek().kind === 'EOF') return null;
    const e = this.parseExpr(QUAL_ERR).node;
    const t = this.peek();
    if (t.kind !== 'EOF')
      this.fail(
        t,
        this.isP(t, ')')
          ? '"and", "or" or the end of the expression (unbalanced ")")'
          : '"and", "or" or the end of the expression',
      );
    return e;
  }

  /** expr: term | expr and term | expr and id | expr or term | expr or id */
  private parseExpr(prevQ: Qual): { node: Expr; q: Qual } {
    let { node, q } = this.parseTerm(prevQ);
    for (;;) {
      const t = this.peek();
      if (t.kind !== 'AND' && t.kind !== 'OR') return { node, q };
      this.next();
      let right: { node: Expr; q: Qual };
      if (this.startsId(this.i)) right = { node: this.parseId(q), q };
      else right = this.parseTerm(q);
      node = {
        kind: t.kind === 'AND' ? 'and' : 'or',
        left: node,
        right: right.node,
        span: this.span(node.span, right.node.span),
      };
      q = right.q;
    }
  }

  /** Index just past `pnum` (NUM in any number of balanced parentheses) at j, or -1. */
  private scanPnum(j: number): number {
    let opens = 0;
    while (this.isP(this.at(j), '(')) {
      opens++;
      j++;
    }
    if (this.at(j).kind !== 'NUM') return -1;
    j++;
    for (; opens > 0; opens--, j++) if (!this.isP(this.at(j), ')')) return -1;
    return j;
  }

  private isArithOrRel(t: Token): boolean {
    return (
      t.kind === 'PUNCT' &&
      (t.word! in ARITH_PREC || t.word! in RELOPS || t.word === '^' || t.word === '[')
    );
  }

  /** Whether the text at j is an `id` (a bare value inheriting qualifiers) rather than a term. */
  private startsId(j: number): boolean {
    for (let steps = 0; steps < 100000; steps++) {
      const t = this.at(j);
      if (
        t.kind === 'ID' ||
        t.kind === 'HID' ||
        t.kind === 'HID6' ||
        t.kind === 'EID' ||
        t.kind === 'AID'
      )
        return true;
      if (t.kind === 'NOT') {
        j++;
        continue;
      }
      if (t.kind === 'NUM' || this.isP(t, '(')) {
        const e = this.scanPnum(j);
        if (e >= 0) return !this.isArithOrRel(this.at(e));
        if (this.isP(t, '(')) {
          j++;
          continue;
        }
        return false;
      }
      return false;
    }
    return false;
  }

  /** term: rterm | not term */
  private parseTerm(prevQ: Qual): { node: Expr; q: Qual } {
    const t = this.peek();
    if (t.kind === 'NOT') {
      this.next();
      this.enter(t);
      const r = this.parseTerm(prevQ);
      this.leave();
      return { node: { kind: 'not', operand: r.node, span: this.span(t, r.node.span) }, q: r.q };
    }
    return this.parseRterm(prevQ);
  }

  private parseRterm(prevQ: Qual): { node: Expr; q: Qual } {
    const t = this.peek();
    if (this.isP(t, '(')) {
      const close = this.match[this.i];
      if (close >= 0 && this.isArithOrRel(this.at(close + 1)))
        return { node: this.parseRelation(), q: QUAL_ERR };
      if (this.scanPnum(this.i) >= 0) return { node: this.parseRelation(), q: QUAL_ERR };
      this.next();
      this.enter(t);
      const r = this.parseExpr(prevQ);
      this.leave();
      this.expectP(')', '")" or "and"/"or"');
      return { node: r.node, q: prevQ };
    }
    switch (t.kind) {
      case 'PNAME': {
        const n = this.peek(1);
        if (
          n.kind === 'DQUAL' ||
          n.kind === 'AQUAL' ||
          n.kind === 'PROTO' ||
          n.kind === 'PROTOCHAIN' ||
          n.kind === 'NDAQUAL'
        ) {
          this.next();
          return this.parseHead(t.word!, t);
        }
        if (this.isP(n, '[')) return { node: this.parseRelation(), q: QUAL_ERR };
        if (n.kind === 'BROADCAST' || n.kind === 'MULTICAST') {
          this.next();
          this.next();
          return {
            node: {
              kind: n.kind === 'BROADCAST' ? 'broadcast' : 'multicast',
              proto: t.word!,
              span: this.span(t),
            },
            q: QUAL_ERR,
          };
        }
        if (n.kind === 'OTHERKW' && ['type', 'subtype', 'dir', 'direction'].includes(n.word!))
          this.unsupported(n, `"${n.text}" applies to 802.11 links only, not Ethernet`);
        this.next();
        return { node: { kind: 'pname', proto: t.word!, span: this.span(t) }, q: QUAL_ERR };
      }
      case 'DQUAL':
      case 'AQUAL':
      case 'PROTO':
      case 'PROTOCHAIN':
      case 'NDAQUAL':
        return this.parseHead('default', t);
      case 'BROADCAST':
      case 'MULTICAST':
        this.next();
        return {
          node: {
            kind: t.kind === 'BROADCAST' ? 'broadcast' : 'multicast',
            proto: 'default',
            span: this.span(t),
          },
          q: QUAL_ERR,
        };
      case 'LESS':
      case 'GREATER': {
        this.next();
        const n = this.peek();
        if (n.kind !== 'NUM') this.fail(n, 'a length in bytes');
        this.next();
        return {
          node: {
            kind: t.kind === 'LESS' ? 'less' : 'greater',
            value: n.value!,
            span: this.span(t),
          },
          q: QUAL_ERR,
        };
      }
      case 'CBYTE': {
        this.next();
        const idx = this.peek();
        if (idx.kind !== 'NUM') this.fail(idx, 'a byte offset');
        this.next();
        const op = this.peek();
        const opWord = op.kind === 'PUNCT' ? op.word : undefined;
        if (opWord !== '&' && opWord !== '|' && opWord !== '<' && opWord !== '>' && opWord !== '=')
          this.fail(op, 'one of "&", "|", "<", ">" or "="');
        this.next();
        const v = this.peek();
        if (v.kind !== 'NUM') this.fail(v, 'a number');
        this.next();
        return {
          node: {
            kind: 'byte',
            index: idx.value!,
            op: opWord as '&',
            value: v.value!,
            span: this.span(t),
          },
          q: QUAL_ERR,
        };
      }
      case 'VLAN':
      case 'MPLS':
      case 'PPPOES':
      case 'GENEVE': {
        this.next();
        const e = this.scanPnum(this.i);
        const kind = t.kind.toLowerCase() as 'vlan';
        if (e >= 0) {
          const first = this.peek();
          const value = this.parsePnum();
          return {
            node: { kind, value, span: this.span(t), valueSpan: this.span(first) },
            q: QUAL_ERR,
          };
        }
        return { node: { kind, span: this.span(t) }, q: QUAL_ERR };
      }
      case 'PPPOED':
        this.next();
        return { node: { kind: 'pppoed', span: this.span(t) }, q: QUAL_ERR };
      case 'LLC': {
        this.next();
        const n = this.peek();
        if (
          n.kind === 'ID' ||
          (n.kind === 'OTHERKW' && (n.word === 'rnr' || n.word === 'rulenum'))
        ) {
          this.next();
          return {
            node: {
              kind: 'llc',
              subtype: n.kind === 'OTHERKW' ? 'rnr' : n.text,
              span: this.span(t),
            },
            q: QUAL_ERR,
          };
        }
        return { node: { kind: 'llc', span: this.span(t) }, q: QUAL_ERR };
      }
      case 'INBOUND':
      case 'OUTBOUND':
        return this.unsupported(
          t,
          `"${t.text}" depends on the capture direction, which a packet filter on a device does not see`,
        );
      case 'IFINDEX':
        return this.unsupported(t, '"ifindex" applies to Linux cooked captures only, not Ethernet');
      case 'OTHERKW':
        return this.unsupported(
          t,
          `"${t.text}" applies to another link type (802.11, ATM, pflog or SS7), not Ethernet`,
        );
      case 'NUM':
      case 'LEN':
        return { node: this.parseRelation(), q: QUAL_ERR };
      case 'PUNCT':
        if (t.word === '-') return { node: this.parseRelation(), q: QUAL_ERR };
        break;
      default:
        break;
    }
    return this.fail(t, 'a primitive such as host, port, tcp or an expression in parentheses');
  }

  private unsupported(t: Token, message: string): never {
    throw new FilterUnsupportedError(`${message} (column ${t.offset + 1})`, {
      expression: this.expression,
      offset: t.offset,
      length: t.length,
    });
  }

  /** head id, where the protocol qualifier (if any) has been consumed. */
  private parseHead(proto: string, start: Token): { node: Expr; q: Qual } {
    let dir: DirQual = 'default';
    let addr: AddrQual = 'default';
    let t = this.peek();
    if (t.kind === 'DQUAL') {
      this.next();
      dir = t.word as DirQual;
      const n = this.peek();
      if (n.kind === 'AND' || n.kind === 'OR') {
        const other = this.peek(1);
        if (other.kind === 'DQUAL' && other.word !== t.word) {
          this.next();
          this.next();
          dir = n.kind === 'AND' ? 'and' : 'or';
        }
      }
      t = this.peek();
      if (t.kind === 'AQUAL') {
        this.next();
        addr = t.word as AddrQual;
      }
    } else if (t.kind === 'AQUAL') {
      this.next();
      addr = t.word as AddrQual;
    } else if (t.kind === 'PROTO' || t.kind === 'PROTOCHAIN') {
      this.next();
      addr = t.kind === 'PROTO' ? 'proto' : 'protochain';
    } else if (t.kind === 'NDAQUAL') {
      this.next();
      addr = 'gateway';
    }
    const q: Qual = { proto, dir, addr };
    const node = this.parseId(q, start);
    return { node, q };
  }

  private expectedValue(q: Qual): string {
    switch (q.addr) {
      case 'port':
        return 'a port number or name';
      case 'portrange':
        return 'a port range such as 1000-2000';
      case 'proto':
      case 'protochain':
        return 'a protocol number or name';
      case 'net':
        return 'a network address';
      case 'gateway':
        return 'a host name';
      default:
        return q.proto === 'link' ? 'a MAC address' : 'an address or a value';
    }
  }

  /** id: nid | pnum | paren pid ')', and nid's `not id`. */
  private parseId(q: Qual, start?: Token): Expr {
    const t = this.peek();
    const from = start ?? t;
    const mk = (value: IdValue): Expr => ({
      kind: 'id',
      q,
      value,
      span: this.span(from),
      valueSpan: this.span(t),
    });
    switch (t.kind) {
      case 'NOT': {
        this.next();
        this.enter(t);
        const operand = this.parseId(q);
        this.leave();
        return { kind: 'not', operand, span: this.span(t, operand.span) };
      }
      case 'ID':
        this.next();
        return mk({ type: 'name', text: t.text });
      case 'HID': {
        this.next();
        const n = this.peek();
        if (this.isP(n, '/')) {
          this.next();
          const len = this.peek();
          if (len.kind !== 'NUM') this.fail(len, 'a prefix length');
          this.next();
          return mk({ type: 'hid-len', text: t.text, len: len.value!, lenSpan: this.span(len) });
        }
        if (n.kind === 'NETMASK') {
          this.next();
          const m = this.peek();
          if (m.kind !== 'HID') this.fail(m, 'a netmask such as 255.255.0.0');
          this.next();
          return mk({ type: 'hid-mask', text: t.text, mask: m.text, maskSpan: this.span(m) });
        }
        return mk({ type: 'hid', text: t.text });
      }
      case 'HID6': {
        this.next();
        if (this.isP(this.peek(), '/')) {
          this.next();
          const len = this.peek();
          if (len.kind !== 'NUM') this.fail(len, 'a prefix length');
          this.next();
          return mk({ type: 'hid6', text: t.text, len: len.value!, lenSpan: this.span(len) });
        }
        return mk({ type: 'hid6', text: t.text, len: 128 });
      }
      case 'EID':
        this.next();
        return mk({ type: 'eid', text: t.text });
      case 'AID':
        this.next();
        return mk({ type: 'aid', text: t.text });
      default:
        break;
    }
    if (this.scanPnum(this.i) >= 0) {
      const value = this.parsePnum();
      return mk({ type: 'num', value });
    }
    if (this.isP(t, '(')) {
      this.next();
      this.enter(t);
      const node = this.parsePid(q);
      this.leave();
      this.expectP(')', '")" or "and"/"or"');
      return node;
    }
    return this.fail(t, this.expectedValue(q));
  }

  /** pid: nid | qid and id | qid or id;  qid: pnum | pid */
  private parsePid(q: Qual): Expr {
    const t = this.peek();
    let node: Expr;
    if (this.scanPnum(this.i) >= 0) {
      const value = this.parsePnum();
      node = {
        kind: 'id',
        q,
        value: { type: 'num', value },
        span: this.span(t),
        valueSpan: this.span(t),
      };
      const n = this.peek();
      if (n.kind !== 'AND' && n.kind !== 'OR') this.fail(n, '"and" or "or"');
    } else if (['ID', 'HID', 'HID6', 'EID', 'AID', 'NOT'].includes(t.kind)) {
      node = this.parseId(q);
    } else {
      return this.fail(t, this.expectedValue(q));
    }
    for (;;) {
      const op = this.peek();
      if (op.kind !== 'AND' && op.kind !== 'OR') return node;
      this.next();
      const right = this.parseId(q);
      node = {
        kind: op.kind === 'AND' ? 'and' : 'or',
        left: node,
        right,
        span: this.span(node.span, right.span),
      };
    }
  }

  private parsePnum(): number {
    let opens = 0;
    while (this.isP(this.peek(), '(')) {
      this.enter(this.peek());
      this.next();
      opens++;
    }
    const n = this.next();
    for (let k = 0; k < opens; k++) {
      this.next();
      this.leave();
    }
    return n.value!;
  }

  /** arth relop arth | arth irelop arth */
  private parseRelation(): Expr {
    const start = this.peek();
    const left = this.parseArth(1);
    const r = this.peek();
    const rel = r.kind === 'PUNCT' ? RELOPS[r.word!] : undefined;
    if (rel === undefined)
      return this.fail(r, 'a comparison operator (=, !=, <, <=, >, >=) or an arithmetic operator');
    this.next();
    const right = this.parseArth(1);
    return {
      kind: 'relation',
      op: rel.op,
      reversed: rel.reversed,
      left,
      right,
      span: this.span(start),
    };
  }

  // '^' has no precedence in libpcap's grammar, so bison resolves every conflict
  // involving it by shifting: whatever follows a '^' is its right operand, and a
  // '^' after any operand binds to that operand.
  private parseArth(minPrec: number): Arth {
    let left = this.parseUnary();
    for (;;) {
      const t = this.peek();
      if (this.isP(t, '^')) {
        left = this.parseXor(left);
        continue;
      }
      const prec = t.kind === 'PUNCT' ? ARITH_PREC[t.word!] : undefined;
      if (prec === undefined || prec < minPrec) return left;
      this.next();
      this.enter(t);
      const right = this.parseArth(prec + 1);
      this.leave();
      left = {
        kind: 'binop',
        op: ARITH_OP[t.word!],
        left,
        right,
        span: this.span(left.span, right.span),
      };
    }
  }

  private parseXor(left: Arth): Arth {
    const t = this.next();
    this.enter(t);
    const right = this.parseArth(0);
    this.leave();
    return { kind: 'binop', op: '^', left, right, span: this.span(left.span, right.span) };
  }

  private parseUnary(): Arth {
    const t = this.peek();
    if (this.isP(t, '-')) {
      this.next();
      this.enter(t);
      let operand = this.parseUnary();
      if (this.isP(this.peek(), '^')) operand = this.parseXor(operand);
      this.leave();
      return { kind: 'neg', operand, span: this.span(t, operand.span) };
    }
    if (t.kind === 'NUM' || this.isP(t, '(')) {
      if (this.scanPnum(this.i) >= 0) {
        const value = this.parsePnum();
        return { kind: 'num', value, span: this.span(t) };
      }
      if (this.isP(t, '(')) {
        this.next();
        this.enter(t);
        const inner = this.parseArth(1);
        this.leave();
        this.expectP(')', '")" or an arithmetic operator');
        return { ...inner, span: this.span(t) };
      }
    }
    if (t.kind === 'LEN') {
      this.next();
      return { kind: 'len', span: this.span(t) };
    }
    if (t.kind === 'PNAME' && this.isP(this.peek(1), '[')) {
      this.next();
      this.next();
      this.enter(t);
      const index = this.parseArth(1);
      this.leave();
      let size = 1;
      let sizeSpan: Span | undefined;
      if (this.isP(this.peek(), ':')) {
        this.next();
        const n = this.peek();
        if (n.kind !== 'NUM') this.fail(n, 'a size of 1, 2 or 4');
        this.next();
        size = n.value!;
        sizeSpan = this.span(n);
      }
      this.expectP(']', this.isP(this.peek(), ':') ? '"]"' : '":" and a size, or "]"');
      return { kind: 'load', proto: t.word!, index, size, span: this.span(t), sizeSpan };
    }
    return this.fail(t, 'a number, "len" or a packet access such as ip[0]');
  }
}

/**
 * Parses a pcap-filter expression into a syntax tree; `null` for the empty
 * expression (accept everything).
 * Throws `FilterSyntaxError` with the position of the first offending token,
 * `FilterUnsupportedError` for primitives of other link types, and
 * `FilterLimitError` past 64 KiB or 256 nesting levels.
 */
export function parseFilter(expression: string): Expr | null {
  if (expression.length > MAX_EXPRESSION_LENGTH) {
    throw new FilterLimitError(
      `expression is ${expression.length} characters long, more than the ${MAX_EXPRESSION_LENGTH} allowed`,
      {
        expression,
        offset: MAX_EXPRESSION_LENGTH,
        length: expression.length - MAX_EXPRESSION_LENGTH,
      },
    );
  }
  return new Parser(expression).parseProgram();
}
