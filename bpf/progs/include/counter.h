/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Layout shared by counter.bpf.c and user space (bpf/counter.ts mirrors it).
 *
 * dev_stats: BPF_MAP_TYPE_PERCPU_ARRAY, key = enum counter_action (u32),
 *            value = struct counter_value, host byte order. Written by the
 *            programs, read by the controller and summed over CPUs.
 * verdict:   BPF_MAP_TYPE_ARRAY, one u32 slot at key 0 holding the action the
 *            program applies (COUNTER_PASS or COUNTER_DROP). Written by user
 *            space, read per packet.
 */
#ifndef SLUICE_COUNTER_H
#define SLUICE_COUNTER_H

enum counter_action {
	COUNTER_PASS = 0,
	COUNTER_DROP = 1,
	COUNTER_ACTIONS = 2,
};

struct counter_value {
	__u64 packets;
	__u64 bytes;
};

#endif
