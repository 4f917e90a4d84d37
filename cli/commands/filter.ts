// `sluice filter test`: run a compiled filter over a capture file and report what it matches.
import { Command, Option } from 'commander';
import { runFilter, type FilterBackend } from '../../bpf/filter-run.js';
import { readFilterProgram } from '../filter-source.js';
import { print, warn } from '../output.js';
import { PcapFormatError, readPcap } from '../pcap.js';

/** LINKTYPE_ETHERNET: the only link type the compiler generates code for. */
const LINKTYPE_ETHERNET = 1;

interface TestOptions {
  pcap: string;
  cbpf?: string;
  verdicts?: boolean;
  backend: FilterBackend;
}

function filterTestCommand(): Command {
  return new Command('test')
    .description(
      'run the compiled filter over every packet of a pcap file (by default our eBPF, in the kernel)',
    )
    .requiredOption('--pcap <file>', 'capture file (pcap, Ethernet)')
    .option('--verdicts', 'print 1 or 0 per packet, in file order')
    .addOption(
      new Option(
        '--backend <backend>',
        'ebpf: BPF_PROG_TEST_RUN in the kernel; cbpf: the classic interpreter',
      )
        .choices(['ebpf', 'cbpf'])
        .default('ebpf'),
    )
    .option(
      '--cbpf <file>',
      'classic BPF as tcpdump -ddd text ("-": standard input) instead of an expression',
    )
    .argument(
      '[expression...]',
      'pcap-filter(7) expression; several arguments are joined with spaces',
    )
    .action(async function (this: Command, words: string[], options: TestOptions) {
      const program = await readFilterProgram(this, words, options);
      const capture = await readPcap(options.pcap);
      if (capture.linkType !== LINKTYPE_ETHERNET) {
        throw new PcapFormatError(
          'PCAP_LINK_TYPE',
          `filter "${options.pcap}": link type ${capture.linkType} is not Ethernet (1), the only one filters compile for`,
          20,
          { path: options.pcap },
        );
      }
      const { verdicts, interpreted } = await runFilter(program, capture.packets, options.backend);
      if (options.verdicts) {
        print(this, verdicts.map((v) => (v ? '1\n' : '0\n')).join(''));
      } else {
        const matched = verdicts.filter(Boolean).length;
        print(this, `matched ${matched} of ${verdicts.length} packets\n`);
      }
      if (options.backend === 'ebpf' && interpreted > 0) {
        warn(
          this,
          `note: ${interpreted} packets judged by the classic interpreter: shorter than an Ethernet header, ` +
            'or truncated while the filter reads the wire length; the kernel test run cannot see either\n',
        );
      }
    });
}

/** `sluice filter …`: filter expressions (daemon-side subcommands come with the controller). */
export function filterCommand(): Command {
  return new Command('filter')
    .description('tcpdump-style filter expressions')
    .addCommand(filterTestCommand());
}
