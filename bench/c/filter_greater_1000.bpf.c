// SPDX-License-Identifier: GPL-2.0
/* `greater 1000`: at least 1000 bytes. */
#include "filter_common.h"

SEC("xdp")
int filter_greater(struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data >= 1000;
}
