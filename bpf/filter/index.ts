// Public API of the filter compiler: pcap-filter expressions to classic BPF, tcpdump listings, a cBPF interpreter.
import { BPF_MAXINSNS, BPF_RET, BPF_K, type CbpfInsn } from './cbpf.js';
import { FilterError, FilterLimitError, FilterSyntaxError } from './errors.js';
import { generate } from './codegen.js';
import { ConvertError, Marker, finishBlocks, linearize, type Block } from './ir.js';
import {
  MAX_OPTIMIZER_STEPS,
  OptimizeError,
  OptimizeLimitError,
  optimizeBlocks,
} from './optimize.js';
import { parseFilter } from './parser.js';

export type { CbpfInsn } from './cbpf.js';
export { FilterSyntaxError, FilterUnsupportedError, FilterLimitError } from './errors.js';
export { formatListing, parseCbpfText } from './listing.js';
export { runCbpf } from './interpret.js';

/** Options of `compileFilter`. */
export interface CompileOptions {
  /** Run libpcap's optimizer (tcpdump's default; `-O` turns it off). Default true. */
  optimize?: boolean;
  /** What accepted packets return, as tcpdump's snapshot length. Default 262144. */
  snaplen?: number;
}

/**
 * Largest block graph compileFilter takes before optimizing. It bounds memory:
 * the optimizer's edge-dominator sets take n²/4 bytes (64 MiB here), as in
 * libpcap. libpcap 1.10 itself takes minutes over a graph this size (a
 * 1,365-term `host … or …`); time is capped by MAX_OPTIMIZER_STEPS. Without
 * the optimizer, more blocks than BPF_MAXINSNS could not fit anyway.
 */
const MAX_RAW_BLOCKS = 16384;

function countBlocks(root: Block, marker: Marker): number {
  marker.unmarkAll();
  let n = 0;
  const stack = [root];
  while (stack.length > 0) {
    const p = stack.pop()!;
    if (marker.isMarked(p)) continue;
    marker.mark(p);
    n++;
    if (p.et.succ) stack.push(p.et.succ);
    if (p.ef.succ) stack.push(p.ef.succ);
  }
  return n;
}

/**
 * Compiles a pcap-filter(7) expression for Ethernet (DLT_EN10MB) to classic
 * BPF, giving the program libpcap 1.10 gives (`tcpdump -d`).
 * Throws `FilterSyntaxError` where libpcap rejects the expression,
 * `FilterUnsupportedError` for what sluice refuses (host names needing DNS,
 * other link types), `FilterLimitError` past 64 KiB of text, 256 levels of
 * nesting, 16384 blocks before optimization, the optimizer's step budget
 * (`MAX_OPTIMIZER_STEPS`, some 20 s of work) or BPF_MAXINSNS (4096)
 * instructions. libpcap 1.10 checks none of these but the nesting (its parser
 * stack): `tcpdump -d` prints programs longer than BPF_MAXINSNS, which the
 * kernel then refuses to attach.
 */
export function compileFilter(expression: string, options: CompileOptions = {}): CbpfInsn[] {
  const optimize = options.optimize ?? true;
  const snaplen = (options.snaplen ?? 262144) >>> 0;
  const whole = { expression, offset: 0, length: Math.max(1, expression.length) };
  try {
    const ast = parseFilter(String(expression));
    if (ast === null) return [{ code: BPF_RET | BPF_K, jt: 0, jf: 0, k: snaplen }];
    const { block, noOptimize } = generate(expression, ast);
    const marker = new Marker();
    let root = finishBlocks(block!, snaplen);
    if (countBlocks(root, marker) > MAX_RAW_BLOCKS) {
      throw new FilterLimitError(
        `expression is too complex: more than ${MAX_RAW_BLOCKS} blocks before optimization`,
        whole,
      );
    }
    if (optimize && !noOptimize) {
      try {
        root = optimizeBlocks(root, marker);
      } catch (err: unknown) {
        if (err instanceof OptimizeError)
          throw new FilterSyntaxError(`${err.message} in the expression`, whole, { cause: err });
        if (err instanceof OptimizeLimitError)
          throw new FilterLimitError(
            `expression is too complex to optimize: more than ${MAX_OPTIMIZER_STEPS} steps`,
            whole,
            { cause: err },
          );
        throw err;
      }
      if (root.s.code === (BPF_RET | BPF_K) && root.s.k === 0) {
        throw new FilterSyntaxError('expression rejects all packets', whole);
      }
    }
    let insns: CbpfInsn[];
    try {
      insns = linearize(root, marker);
    } catch (err: unknown) {
      if (err instanceof ConvertError)
        throw new FilterLimitError(`cannot lay out the program: ${err.message}`, whole, {
          cause: err,
        });
      throw err;
    }
    if (insns.length > BPF_MAXINSNS) {
      throw new FilterLimitError(
        `program has ${insns.length} instructions, more than the ${BPF_MAXINSNS} the kernel accepts`,
        whole,
      );
    }
    return insns;
  } catch (err: unknown) {
    if (err instanceof FilterError) throw err;
    if (err instanceof RangeError)
      throw new FilterLimitError('expression is too complex to compile', whole, { cause: err });
    throw err;
  }
}
