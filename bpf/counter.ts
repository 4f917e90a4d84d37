// Reads and configures the counting program of bpf/progs/counter.bpf.c (layout: include/counter.h).
import type { BpfMap } from './map.js';

/** Actions counted by counter.bpf.c, in the order of `enum counter_action`. */
export const COUNTER_ACTIONS = ['pass', 'drop'] as const;
export type CounterAction = (typeof COUNTER_ACTIONS)[number];

export interface PacketCount {
  packets: number;
  bytes: number;
}

export type CounterTotals = Record<CounterAction, PacketCount>;

const u32 = (value: number): Buffer => {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(value);
  return key;
};

/** Sums one `struct counter_value` slot of a per-CPU array over all CPUs. */
export function sumPerCpu(map: BpfMap, slot: number): PacketCount {
  const total = { packets: 0, bytes: 0 };
  for (const value of map.lookupPerCpu(u32(slot)) ?? []) {
    total.packets += Number(value.readBigUInt64LE(0));
    total.bytes += Number(value.readBigUInt64LE(8));
  }
  return total;
}

/** Reads `dev_stats`: packets and bytes per action, summed over CPUs. */
export function readCounters(devStats: BpfMap): CounterTotals {
  return {
    pass: sumPerCpu(devStats, COUNTER_ACTIONS.indexOf('pass')),
    drop: sumPerCpu(devStats, COUNTER_ACTIONS.indexOf('drop')),
  };
}

/** Sets the verdict the program applies to every packet (the `verdict` map's only slot). */
export function setVerdict(verdict: BpfMap, action: CounterAction): void {
  verdict.update(u32(0), u32(COUNTER_ACTIONS.indexOf(action)));
}
