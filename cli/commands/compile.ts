// `sluice compile`: print a pcap-filter expression compiled to classic BPF (tcpdump's -d/-dd/-ddd layouts) or to eBPF.
import { Command, InvalidArgumentError, Option } from 'commander';
import { formatListing } from '../../bpf/filter/index.js';
import {
  cbpfToEbpf,
  formatEbpfListing,
  type EbpfContext,
  type EbpfOptions,
} from '../../bpf/filter/ebpf.js';
import { readFilterProgram } from '../filter-source.js';
import { print } from '../output.js';

interface CompileOptions {
  d: number;
  cbpf?: string;
  ebpf?: boolean;
  context: EbpfContext;
  optimize: boolean;
  snaplen?: number;
}

const XDP_DROP = 1;
const XDP_PASS = 2;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;

function parseSnaplen(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 0xffffffff)
    throw new InvalidArgumentError('expected a number of bytes below 2^32');
  return Number(value);
}

/** Verdicts of the eBPF program: pass on a match, drop otherwise; a socket filter returns the length. */
function ebpfOptions(context: EbpfContext): EbpfOptions {
  if (context === 'xdp')
    return { context, verdict: { kind: 'action', match: XDP_PASS, noMatch: XDP_DROP } };
  if (context === 'tc')
    return { context, verdict: { kind: 'action', match: TC_ACT_OK, noMatch: TC_ACT_SHOT } };
  return { context, verdict: { kind: 'return' } };
}

/**
 * The `compile` command. `-d` may be repeated as in tcpdump (`-dd`, `-ddd`);
 * the words of the expression are joined with spaces.
 * Its action throws the compiler's `FilterSyntaxError`, `FilterUnsupportedError`
 * or `FilterLimitError`; the entry point prints them with a caret.
 */
export function compileCommand(): Command {
  return new Command('compile')
    .description(
      "compile a pcap-filter(7) expression and print it in tcpdump's -d, -dd or -ddd layout, or as eBPF",
    )
    .option(
      '-d',
      'layout: -d (default) listing, -dd C array, -ddd decimal numbers; repeat the flag as in tcpdump',
      (_v: string, prev: number) => prev + 1,
      0,
    )
    .option('-O, --no-optimize', "don't run the optimizer (tcpdump -O)")
    .option(
      '-s, --snaplen <bytes>',
      'what an accepted packet returns (default 262144, as tcpdump)',
      parseSnaplen,
    )
    .option('--ebpf', 'print the eBPF translation instead of classic BPF')
    .addOption(
      new Option('--context <context>', 'eBPF program type')
        .choices(['xdp', 'tc', 'socket'])
        .default('xdp'),
    )
    .option(
      '--cbpf <file>',
      'classic BPF as tcpdump -ddd text ("-": standard input) instead of an expression',
    )
    .argument(
      '[expression...]',
      'pcap-filter(7) expression; several arguments are joined with spaces',
    )
    .action(async function (this: Command, words: string[], options: CompileOptions) {
      // Silently dropping a layout or a context would print something other than what was asked for.
      if (options.ebpf && options.d > 0)
        this.error(
          'sluice: -d, -dd and -ddd are classic BPF layouts; --ebpf prints its own listing',
          {
            exitCode: 2,
          },
        );
      if (!options.ebpf && this.getOptionValueSource('context') !== 'default')
        this.error('sluice: --context chooses the eBPF program type; add --ebpf', { exitCode: 2 });
      const program = await readFilterProgram(this, words, options);
      if (options.ebpf) {
        print(this, formatEbpfListing(cbpfToEbpf(program, ebpfOptions(options.context))));
        return;
      }
      const layout = options.d >= 3 ? 'ddd' : options.d === 2 ? 'dd' : 'd';
      print(this, formatListing(program, layout));
    });
}
