// Reads an attachment's per-CPU counters back as plain objects: per verdict, per event, per rule, per
// rate limiter, and the log2 frame-size histogram.
import { ifindexOf } from '../../bpf/index.js';
import {
  SL_EVENTS,
  SL_HIST_BUCKETS,
  SL_VERDICTS,
  maxU64,
  sumU64,
  u32,
  type SlEvent,
  type SlVerdict,
} from './abi.js';
import type { Attachment, Hook } from './attachment.js';

export interface PacketCount {
  packets: number;
  bytes: number;
}

export interface RuleCounters extends PacketCount {
  id: string;
  /** Position in the current rule set (0 is tried first). */
  position: number;
  /** Wall-clock time of the last hit, or null. */
  lastHit: Date | null;
}

export interface LimiterCounters {
  /** The rate-limit rule's id. */
  id: string;
  passed: number;
  dropped: number;
}

export interface AttachmentCounters {
  device: string;
  hook: Hook;
  /** 0 when the device is gone. */
  ifindex: number;
  generation: number;
  actions: Record<SlVerdict, PacketCount>;
  events: Record<SlEvent, number>;
  /** Bucket b counts frames of length [2^b, 2^(b+1)); bucket 0 also counts length 0. */
  histogram: number[];
  rules: RuleCounters[];
  limiters: LimiterCounters[];
}

/** The monotonic clock bpf_ktime_get_ns() reads, to turn last-hit stamps into wall time. */
function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

/** Sums every counter of `att` over CPUs. */
export function readCounters(att: Attachment, netns?: string): AttachmentCounters {
  const m = att.maps;
  const actions = {} as Record<SlVerdict, PacketCount>;
  SL_VERDICTS.forEach((verdict, i) => {
    const values = m.sl_dev_stats.lookupPerCpu(u32(i));
    actions[verdict] = { packets: sumU64(values, 0), bytes: sumU64(values, 8) };
  });
  const events = {} as Record<SlEvent, number>;
  SL_EVENTS.forEach((event, i) => {
    events[event] = sumU64(m.sl_events.lookupPerCpu(u32(i)), 0);
  });
  const histogram: number[] = [];
  for (let b = 0; b < SL_HIST_BUCKETS; b++) {
    histogram.push(sumU64(m.sl_hist.lookupPerCpu(u32(b)), 0));
  }
  const nowMono = monotonicNs();
  const nowWall = Date.now();
  const rules: RuleCounters[] = att.rules.map((rule, position) => {
    const slot = att.statSlots.get(rule.id);
    const values = slot === undefined ? null : m.sl_rule_stats.lookupPerCpu(u32(slot));
    const last = maxU64(values, 16);
    return {
      id: rule.id,
      position,
      packets: sumU64(values, 0),
      bytes: sumU64(values, 8),
      lastHit: last === 0n ? null : new Date(nowWall - Number((nowMono - last) / 1_000_000n)),
    };
  });
  const limiters: LimiterCounters[] = [];
  for (const [id, slot] of att.limitSlots) {
    const values = m.sl_limit_stats.lookupPerCpu(u32(slot));
    limiters.push({ id, passed: sumU64(values, 0), dropped: sumU64(values, 8) });
  }
  let ifindex = 0;
  try {
    ifindex = ifindexOf(att.key.device, netns);
  } catch {
    // the device is gone; its pipeline waits for it
  }
  return {
    device: att.key.device,
    hook: att.key.hook,
    ifindex,
    generation: att.generation,
    actions,
    events,
    histogram,
    rules,
    limiters,
  };
}
