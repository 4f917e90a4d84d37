// SPDX-License-Identifier: Apache-2.0
/*
 * Baseline for bench/map-update.ts: the cost of filling a hash map (u32 key, u64 value) and an
 * LPM trie (prefixlen + IPv4 key, u64 value) with N entries through libbpf directly, one
 * bpf_map_update_elem per element and one bpf_map_update_batch for all. Each measurement gets a
 * fresh map. Prints {"hashSingleNs","hashBatchNs","lpmSingleNs","lpmBatchNs"} in ns per element.
 * Usage: map_update [entries]   (default 1000000; needs CAP_BPF)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <bpf/bpf.h>
#include <linux/bpf.h>

struct lpm_key {
	uint32_t prefixlen;
	uint32_t addr; /* network order */
};

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int create(enum bpf_map_type type, const char *name, uint32_t key_size, uint32_t n)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = type == BPF_MAP_TYPE_LPM_TRIE ? BPF_F_NO_PREALLOC : 0);
	int fd = bpf_map_create(type, name, key_size, sizeof(uint64_t), n, &opts);

	if (fd < 0) {
		fprintf(stderr, "map_update: create %s: %s\n", name, strerror(-fd));
		exit(1);
	}
	return fd;
}

static double single(enum bpf_map_type type, const char *name, const void *keys, uint32_t key_size,
		     const uint64_t *values, uint32_t n)
{
	int fd = create(type, name, key_size, n);
	double start = now_ns();

	for (uint32_t i = 0; i < n; i++) {
		if (bpf_map_update_elem(fd, (const char *)keys + (size_t)i * key_size, &values[i], BPF_ANY) < 0) {
			fprintf(stderr, "map_update: update %s: %s\n", name, strerror(errno));
			exit(1);
		}
	}
	double elapsed = now_ns() - start;
	close(fd);
	return elapsed / n;
}

static double batch(enum bpf_map_type type, const char *name, const void *keys, uint32_t key_size,
		    const uint64_t *values, uint32_t n)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
	int fd = create(type, name, key_size, n);
	uint32_t count = n;
	double start = now_ns();

	if (bpf_map_update_batch(fd, keys, values, &count, &opts) < 0) {
		fprintf(stderr, "map_update: batch update %s: %s (%u done)\n", name, strerror(errno), count);
		exit(1);
	}
	double elapsed = now_ns() - start;
	close(fd);
	return elapsed / n;
}

int main(int argc, char **argv)
{
	uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 1000000;
	uint32_t *hash_keys = calloc(n, sizeof(*hash_keys));
	struct lpm_key *lpm_keys = calloc(n, sizeof(*lpm_keys));
	uint64_t *values = calloc(n, sizeof(*values));

	if (!n || !hash_keys || !lpm_keys || !values) {
		fprintf(stderr, "map_update: bad entry count or out of memory\n");
		return 1;
	}
	for (uint32_t i = 0; i < n; i++) {
		hash_keys[i] = i;
		lpm_keys[i].prefixlen = 32;
		lpm_keys[i].addr = htonl(0x0a000000u + i);
		values[i] = i;
	}
	double hash_single = single(BPF_MAP_TYPE_HASH, "bench_hash", hash_keys, 4, values, n);
	double hash_batch = batch(BPF_MAP_TYPE_HASH, "bench_hash", hash_keys, 4, values, n);
	double lpm_single = single(BPF_MAP_TYPE_LPM_TRIE, "bench_lpm", lpm_keys, 8, values, n);
	double lpm_batch = batch(BPF_MAP_TYPE_LPM_TRIE, "bench_lpm", lpm_keys, 8, values, n);

	printf("{\"entries\":%u,\"hashSingleNs\":%.1f,\"hashBatchNs\":%.1f,\"lpmSingleNs\":%.1f,\"lpmBatchNs\":%.1f}\n", n,
	       hash_single, hash_batch, lpm_single, lpm_batch);
	free(hash_keys);
	free(lpm_keys);
	free(values);
	return 0;
}
