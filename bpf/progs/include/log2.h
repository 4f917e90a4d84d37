/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The size histogram's bucket (pipeline.h, sl_hist): floor(log2(v)), at most 31, 0 for 0.
 * Shared by pipeline.bpf.c and the bench's hand-written lower bound (bench/c/expr_floor.bpf.c),
 * which must count exactly as the pipeline does.
 */
#ifndef SLUICE_LOG2_H
#define SLUICE_LOG2_H

#include <linux/types.h>

static __always_inline __u32 sl_log2(__u64 v)
{
	__u32 r = 0;

	if (v >> 32)
		return 31;
	if (v >> 16) {
		v >>= 16;
		r += 16;
	}
	if (v >> 8) {
		v >>= 8;
		r += 8;
	}
	if (v >> 4) {
		v >>= 4;
		r += 4;
	}
	if (v >> 2) {
		v >>= 2;
		r += 2;
	}
	if (v >> 1)
		r += 1;
	return r;
}

#endif
