// Runs a compiled filter over captured packets: our eBPF in the kernel (BPF_PROG_TEST_RUN) or the classic interpreter.
import { BPF_LD, BPF_LDX, BPF_LEN, type CbpfInsn } from './filter/cbpf.js';
import { cbpfToEbpf } from './filter/ebpf.js';
import { runCbpf } from './filter/index.js';
import { SyscallError } from './errors.js';
import { loadProgram } from './program.js';

export type FilterBackend = 'ebpf' | 'cbpf';

export interface CapturedPacket {
  data: Uint8Array;
  /** Length on the wire; larger than data.length for a truncated capture. */
  wireLength: number;
}

export interface FilterRunResult {
  /** One per packet, in order: true when the filter matched. */
  verdicts: boolean[];
  /**
   * Packets the kernel could not judge the way libpcap does, judged by the classic interpreter
   * instead: runts shorter than an Ethernet header (BPF_PROG_TEST_RUN refuses them), and truncated
   * captures when the filter reads the wire length (`len`, `less`, `greater`), which the kernel
   * only knows as the captured length.
   */
  interpreted: number;
}

/** Shortest packet BPF_PROG_TEST_RUN accepts (ETH_HLEN). */
const MIN_TEST_RUN_BYTES = 14;
const XDP_DROP = 1;
const XDP_PASS = 2;
const EMPTY = new Uint8Array(0);
const EINVAL = 22;
/** A full-size Ethernet frame always fits a test run's page; only larger ones may be refused. */
const ETHERNET_FRAME_MAX = 1514;

/** Whether the program loads the packet's wire length (`ld len` / `ldx len`). */
function readsWireLength(program: CbpfInsn[]): boolean {
  return program.some(({ code }) => {
    const cls = code & 0x07;
    return (cls === BPF_LD || cls === BPF_LDX) && (code & 0xe0) === BPF_LEN;
  });
}

/**
 * Judges every packet with the filter. The 'ebpf' backend loads the program as XDP (match → XDP_PASS)
 * and test-runs it once per packet; 'cbpf' uses the TypeScript classic interpreter.
 * Throws VerifierError if the kernel rejects the program, SyscallError for other kernel failures.
 */
export async function runFilter(
  program: CbpfInsn[],
  packets: readonly CapturedPacket[],
  backend: FilterBackend,
): Promise<FilterRunResult> {
  const interpret = (packet: CapturedPacket): boolean =>
    runCbpf(program, packet.data, packet.wireLength) !== 0;
  if (backend === 'cbpf') return { verdicts: packets.map(interpret), interpreted: packets.length };

  const spec = cbpfToEbpf(program, {
    context: 'xdp',
    verdict: { kind: 'action', match: XDP_PASS, noMatch: XDP_DROP },
  });
  const loaded = loadProgram({ type: 'xdp', insns: spec.insns, name: 'sluice_filter' });
  const lengthMatters = readsWireLength(program);
  const kernelCannotJudge = (packet: CapturedPacket): boolean =>
    packet.data.length < MIN_TEST_RUN_BYTES ||
    (lengthMatters && packet.wireLength !== packet.data.length);
  let runs;
  try {
    runs = await loaded.testRunEach(
      packets.map((packet) => (kernelCannotJudge(packet) ? EMPTY : packet.data)),
    );
  } finally {
    loaded.close();
  }
  let interpreted = 0;
  const verdicts = packets.map((packet, i) => {
    const errno = runs.errnos[i];
    // The kernel also refuses a packet larger than a test run's page (EINVAL): judge it here too.
    const tooLarge = errno === EINVAL && packet.data.length > ETHERNET_FRAME_MAX;
    if (kernelCannotJudge(packet) || tooLarge) {
      interpreted++;
      return interpret(packet);
    }
    if (errno !== 0) {
      throw new SyscallError(`test run filter over packet ${i + 1} (${packet.data.length} bytes)`, {
        errno,
        syscall: 'bpf_prog_test_run_opts',
      });
    }
    return runs.retvals[i] === XDP_PASS;
  });
  return { verdicts, interpreted };
}
