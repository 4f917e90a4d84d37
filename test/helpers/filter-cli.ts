// Shared cases for `sluice filter test`: expressions that cover every kind of packet the kernel cannot see as libpcap does.
import { getOracleResults } from './differential.js';

/**
 * Expressions whose verdicts must equal libpcap's over the packet corpus: plain protocol and
 * port matches, fragments, VLAN offsets, and `greater`/`less`, which read the wire length the
 * kernel's test run never sees for truncated captures.
 */
export const FILTER_TEST_EXPRESSIONS = [
  'tcp port 80',
  'udp and ip[6:2] & 0x1fff != 0',
  'vlan and tcp',
  'ip6 and icmp6',
  'arp or rarp',
  'greater 200',
  'less 60 and not ip',
  'ether broadcast',
];

/** libpcap's verdict string (one '1'/'0' per packet) for each case, in order. */
export async function libpcapVerdicts(): Promise<string[]> {
  const results = await getOracleResults(FILTER_TEST_EXPRESSIONS);
  return results.map((r, i) => {
    if (!r.ok) throw new Error(`libpcap rejects "${FILTER_TEST_EXPRESSIONS[i]}": ${r.error}`);
    return r.verdicts;
  });
}
