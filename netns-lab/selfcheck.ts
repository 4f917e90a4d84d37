// The self-check: counting XDP program, native mode, on a veth in a throw-away namespace pair.
import { attachXdp, loadObject } from '../bpf/index.js';
import { readCounters, type CounterTotals } from '../bpf/counter.js';
import { bpfObjectPath } from '../bpf/progs.js';
import { Lab } from './lab.js';

export interface SelfcheckResult {
  device: string;
  netns: string;
  sent: number;
  answered: number;
  counters: CounterTotals;
}

/** Runs a self-check: `runSelfcheck`, or a stand-in for tests of what reports its result. */
export type SelfcheckRunner = (pings: number) => Promise<SelfcheckResult>;

/**
 * Builds a namespace pair, attaches counter_xdp natively to the receiving veth,
 * sends `pings` echo requests through it and reads the counters back. Everything
 * it creates is removed before it returns or throws.
 */
export async function runSelfcheck(pings = 20): Promise<SelfcheckResult> {
  const lab = new Lab();
  const object = loadObject(bpfObjectPath('counter'), { name: 'counter' });
  try {
    const { left, right } = await lab.pair();
    const link = attachXdp(object.program('counter_xdp'), right.device, {
      netns: right.netns,
      mode: 'native',
    });
    try {
      const answered = await lab.ping(left, right, pings);
      const counters = readCounters(object.map('dev_stats'));
      return { device: right.device, netns: right.netns, sent: pings, answered, counters };
    } finally {
      link.close();
    }
  } finally {
    object.close();
    await lab.destroy();
  }
}

/**
 * Where the counters or the replies disagree with the traffic sent, one sentence each; empty
 * when every echo request was counted as passed and answered.
 */
export function selfcheckDisagreements(result: SelfcheckResult): string[] {
  const disagreements: string[] = [];
  const counted = result.counters.pass.packets;
  if (counted !== result.sent)
    disagreements.push(`counted ${counted} packets passed, sent ${result.sent}`);
  if (result.answered !== result.sent)
    disagreements.push(`${result.answered} of ${result.sent} pings answered`);
  return disagreements;
}
