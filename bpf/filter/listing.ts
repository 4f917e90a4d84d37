// tcpdump's -d, -dd and -ddd listings of classic BPF, and parsing -ddd text back to instructions.
import {
  BPF_A,
  BPF_ABS,
  BPF_ADD,
  BPF_ALU,
  BPF_AND,
  BPF_B,
  BPF_DIV,
  BPF_H,
  BPF_IMM,
  BPF_IND,
  BPF_JA,
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
  BPF_MAXINSNS,
  BPF_MEM,
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
  bpfOp,
  isKnownOpcode,
  type CbpfInsn,
} from './cbpf.js';
import { FilterLimitError, FilterSyntaxError } from './errors.js';

const dec = (k: number): string => String(k | 0);
const hex = (k: number): string => `0x${(k >>> 0).toString(16)}`;

const ALU_NAMES: Record<number, string> = {
  [BPF_ADD]: 'add',
  [BPF_SUB]: 'sub',
  [BPF_MUL]: 'mul',
  [BPF_DIV]: 'div',
  [BPF_MOD]: 'mod',
  [BPF_AND]: 'and',
  [BPF_OR]: 'or',
  [BPF_XOR]: 'xor',
  [BPF_LSH]: 'lsh',
  [BPF_RSH]: 'rsh',
};
const ALU_HEX = new Set([BPF_AND, BPF_OR, BPF_XOR]);
const JMP_NAMES: Record<number, string> = {
  [BPF_JGT]: 'jgt',
  [BPF_JGE]: 'jge',
  [BPF_JEQ]: 'jeq',
  [BPF_JSET]: 'jset',
};

/** One instruction as libpcap's bpf_image prints it, at index `n`. */
export function formatInsn(p: CbpfInsn, n: number): string {
  let op: string;
  let operand: string;
  const k = p.k >>> 0;
  switch (p.code) {
    case BPF_RET | BPF_K:
      op = 'ret';
      operand = `#${dec(k)}`;
      break;
    case BPF_RET | BPF_A:
      op = 'ret';
      operand = '';
      break;
    case BPF_RET | BPF_X:
      op = 'ret';
      operand = 'x';
      break;
    case BPF_LD | BPF_W | BPF_ABS:
      op = 'ld';
      operand = `[${dec(k)}]`;
      break;
    case BPF_LD | BPF_H | BPF_ABS:
      op = 'ldh';
      operand = `[${dec(k)}]`;
      break;
    case BPF_LD | BPF_B | BPF_ABS:
      op = 'ldb';
      operand = `[${dec(k)}]`;
      break;
    case BPF_LD | BPF_W | BPF_LEN:
      op = 'ld';
      operand = '#pktlen';
      break;
    case BPF_LD | BPF_W | BPF_IND:
      op = 'ld';
      operand = `[x + ${dec(k)}]`;
      break;
    case BPF_LD | BPF_H | BPF_IND:
      op = 'ldh';
      operand = `[x + ${dec(k)}]`;
      break;
    case BPF_LD | BPF_B | BPF_IND:
      op = 'ldb';
      operand = `[x + ${dec(k)}]`;
      break;
    case BPF_LD | BPF_IMM:
      op = 'ld';
      operand = `#${hex(k)}`;
      break;
    case BPF_LDX | BPF_IMM:
      op = 'ldx';
      operand = `#${hex(k)}`;
      break;
    case BPF_LDX | BPF_W | BPF_LEN:
      op = 'ldx';
      operand = '#pktlen';
      break;
    case BPF_LDX | BPF_MSH | BPF_B:
      op = 'ldxb';
      operand = `4*([${dec(k)}]&0xf)`;
      break;
    case BPF_LD | BPF_MEM:
      op = 'ld';
      operand = `M[${dec(k)}]`;
      break;
    case BPF_LDX | BPF_MEM:
      op = 'ldx';
      operand = `M[${dec(k)}]`;
      break;
    case BPF_ST:
      op = 'st';
      operand = `M[${dec(k)}]`;
      break;
    case BPF_STX:
      op = 'stx';
      operand = `M[${dec(k)}]`;
      break;
    case BPF_JMP | BPF_JA:
      op = 'ja';
      operand = dec((n + 1 + k) >>> 0);
      break;
    case BPF_ALU | BPF_NEG:
      op = 'neg';
      operand = '';
      break;
    case BPF_MISC | BPF_TAX:
      op = 'tax';
      operand = '';
      break;
    case BPF_MISC | BPF_TXA:
      op = 'txa';
      operand = '';
      break;
    default: {
      const cls = bpfClass(p.code);
      const name =
        cls === BPF_ALU
          ? ALU_NAMES[bpfOp(p.code)]
          : cls === BPF_JMP
            ? JMP_NAMES[bpfOp(p.code)]
            : undefined;
      if (name !== undefined && (p.code & ~0xf8) === cls) {
        op = name;
        if ((p.code & BPF_X) !== 0) operand = 'x';
        else if (cls === BPF_JMP || ALU_HEX.has(bpfOp(p.code))) operand = `#${hex(k)}`;
        else operand = `#${dec(k)}`;
      } else {
        op = 'unimp';
        operand = hex(p.code);
      }
    }
  }
  if (bpfClass(p.code) === BPF_JMP && bpfOp(p.code) !== BPF_JA) {
    return `(${pad3(n)}) ${op.padEnd(8)} ${operand.padEnd(16)} jt ${n + 1 + p.jt}\tjf ${n + 1 + p.jf}`;
  }
  return `(${pad3(n)}) ${op.padEnd(8)} ${operand}`;
}

function pad3(n: number): string {
  return n < 0 ? `-${String(-n).padStart(2, '0')}` : String(n).padStart(3, '0');
}

/**
 * Prints a program the way `tcpdump -d`, `-dd` or `-ddd` does, byte for byte
 * (every line ends in a newline).
 */
export function formatListing(insns: CbpfInsn[], layout: 'd' | 'dd' | 'ddd'): string {
  let out = '';
  if (layout === 'ddd') {
    out += `${insns.length}\n`;
    for (const i of insns) out += `${i.code} ${i.jt} ${i.jf} ${i.k >>> 0}\n`;
    return out;
  }
  if (layout === 'dd') {
    for (const i of insns) {
      out += `{ 0x${i.code.toString(16)}, ${i.jt}, ${i.jf}, 0x${(i.k >>> 0).toString(16).padStart(8, '0')} },\n`;
    }
    return out;
  }
  insns.forEach((insn, n) => {
    out += `${formatInsn(insn, n)}\n`;
  });
  return out;
}

/**
 * Parses tcpdump -ddd text (a count line, then `code jt jf k` lines) into
 * instructions and checks them: known opcodes, jump targets inside the
 * program, a `ret` at the end.
 * Throws `FilterSyntaxError` pointing at the offending line, `FilterLimitError`
 * past BPF_MAXINSNS instructions.
 */
export function parseCbpfText(text: string): CbpfInsn[] {
  const fail = (message: string, offset: number, length: number, expected?: string): never => {
    throw new FilterSyntaxError(message, {
      expression: text,
      offset,
      length: Math.max(1, length),
      expected,
    });
  };
  // Tokenize into lines of numbers, remembering offsets.
  interface Tok {
    text: string;
    offset: number;
  }
  const lines: { offset: number; toks: Tok[] }[] = [];
  let lineStart = 0;
  for (const raw of text.split('\n')) {
    const toks: Tok[] = [];
    const re = /[^\s,]+/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(raw)) !== null) toks.push({ text: m[0], offset: lineStart + m.index });
    if (toks.length > 0) lines.push({ offset: lineStart, toks });
    lineStart += raw.length + 1;
  }
  const num = (t: Tok, max: number, what: string): number => {
    if (!/^(0|[1-9][0-9]*)$/.test(t.text))
      return fail(
        `unexpected "${t.text.slice(0, 40)}" at column ${t.offset + 1}: expected ${what}`,
        t.offset,
        t.text.length,
        what,
      );
    const v = Number(t.text);
    if (v > max)
      return fail(
        `${what} ${t.text} at column ${t.offset + 1} is out of range (at most ${max})`,
        t.offset,
        t.text.length,
        what,
      );
    return v;
  };
  if (lines.length === 0)
    return fail('empty cBPF text: expected an instruction count', 0, 0, 'an instruction count');
  const head = lines[0];
  if (head.toks.length !== 1)
    return fail(
      `unexpected "${head.toks[1].text.slice(0, 40)}" at column ${head.toks[1].offset + 1}: expected the instruction count alone on the first line`,
      head.toks[1].offset,
      head.toks[1].text.length,
      'a line break',
    );
  const count = num(head.toks[0], Number.MAX_SAFE_INTEGER, 'an instruction count');
  if (count > BPF_MAXINSNS)
    throw new FilterLimitError(
      `cBPF program has ${count} instructions, more than the ${BPF_MAXINSNS} allowed`,
      { expression: text, offset: head.toks[0].offset, length: head.toks[0].text.length },
    );
  if (count === 0)
    return fail(
      'cBPF program has no instructions: expected at least a ret',
      head.toks[0].offset,
      head.toks[0].text.length,
      'a positive count',
    );
  if (lines.length - 1 !== count) {
    const at = lines.length - 1 > count ? lines[count + 1].offset : text.length;
    return fail(
      `cBPF text has ${lines.length - 1} instruction lines but the count says ${count}`,
      at,
      1,
      `${count} instruction lines`,
    );
  }
  const insns: CbpfInsn[] = [];
  for (let i = 0; i < count; i++) {
    const line = lines[i + 1];
    if (line.toks.length !== 4) {
      const t =
        line.toks[Math.min(line.toks.length, 4) - (line.toks.length > 4 ? 0 : 1)] ?? line.toks[0];
      return fail(
        `instruction ${i} at column ${line.toks[0].offset + 1} has ${line.toks.length} fields: expected code, jt, jf and k`,
        t.offset,
        t.text.length,
        'code jt jf k',
      );
    }
    const code = num(line.toks[0], 0xffff, 'an opcode');
    const jt = num(line.toks[1], 255, 'a jump offset');
    const jf = num(line.toks[2], 255, 'a jump offset');
    const k = num(line.toks[3], 0xffffffff, 'a 32-bit constant');
    if (!isKnownOpcode(code))
      return fail(
        `unknown opcode ${code} (0x${code.toString(16)}) in instruction ${i}`,
        line.toks[0].offset,
        line.toks[0].text.length,
        'a classic BPF opcode',
      );
    const cls = bpfClass(code);
    if (cls === BPF_JMP) {
      if (code === (BPF_JMP | BPF_JA)) {
        // libpcap's protochain loop jumps backwards through a wrapped k.
        const target = (i + 1 + k) >>> 0;
        if (target >= count)
          return fail(
            `jump in instruction ${i} goes to ${target}, past the end of the program`,
            line.toks[3].offset,
            line.toks[3].text.length,
            'a jump target inside the program',
          );
      } else {
        for (const [off, t] of [
          [jt, line.toks[1]],
          [jf, line.toks[2]],
        ] as const) {
          if (i + 1 + off >= count)
            return fail(
              `jump in instruction ${i} goes to ${i + 1 + off}, past the end of the program`,
              t.offset,
              t.text.length,
              'a jump target inside the program',
            );
        }
      }
    }
    if (
      (code === BPF_ST ||
        code === BPF_STX ||
        code === (BPF_LD | BPF_MEM) ||
        code === (BPF_LDX | BPF_MEM)) &&
      k >= 16
    ) {
      return fail(
        `scratch memory index ${k} in instruction ${i} is out of range (at most 15)`,
        line.toks[3].offset,
        line.toks[3].text.length,
        'a memory index 0-15',
      );
    }
    insns.push({ code, jt, jf, k });
  }
  const last = insns[count - 1];
  if (bpfClass(last.code) !== BPF_RET) {
    const t = lines[count].toks[0];
    return fail(
      `cBPF program does not end in ret: the last instruction has opcode ${last.code}`,
      t.offset,
      t.text.length,
      'a ret instruction',
    );
  }
  return insns;
}
