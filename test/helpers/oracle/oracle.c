// SPDX-License-Identifier: Apache-2.0
/*
 * oracle: libpcap as the reference engine for sluice's filter differential tests.
 *
 * usage: oracle [-p] [-O] PCAP EXPRESSIONS
 *
 * Reads every packet of the pcap file PCAP into memory, then compiles each line
 * of the file EXPRESSIONS (one expression per line, "\n"-terminated, nothing
 * stripped but the newline) with pcap_compile() on pcap_open_dead(DLT_EN10MB,
 * 262144), optimize = 1 (0 with -O, as tcpdump -O), netmask PCAP_NETMASK_UNKNOWN, and prints one result
 * per expression, in order:
 *
 *   OK <insn-count> <verdicts>     verdicts: one '1'/'0' per packet, '1' when
 *                                  pcap_offline_filter() accepts the packet
 *   ERR <message>                  pcap_geterr() text, newlines made spaces
 *
 * With -p, each OK line is followed by <insn-count> lines, each a tab, then
 * "code jt jf k" (decimal, as tcpdump -ddd), a tab, then bpf_image()'s text
 * (as tcpdump -d, without the "(NNN) " prefix).
 *
 * Exit status: 0 when every expression was processed (compile errors included),
 * 2 on usage errors, 1 when the files cannot be read.
 */
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct packet {
	struct pcap_pkthdr hdr;
	u_char *data;
};

static void usage(void)
{
	fprintf(stderr, "usage: oracle [-p] [-O] PCAP EXPRESSIONS\n");
	exit(2);
}

static struct packet *load_packets(const char *path, size_t *count)
{
	char errbuf[PCAP_ERRBUF_SIZE];
	pcap_t *in = pcap_open_offline(path, errbuf);
	if (!in) {
		fprintf(stderr, "oracle: open \"%s\": %s\n", path, errbuf);
		exit(1);
	}
	size_t cap = 1024, n = 0;
	struct packet *pkts = malloc(cap * sizeof(*pkts));
	struct pcap_pkthdr *hdr;
	const u_char *data;
	int rc;
	while ((rc = pcap_next_ex(in, &hdr, &data)) == 1) {
		if (n == cap) {
			cap *= 2;
			pkts = realloc(pkts, cap * sizeof(*pkts));
		}
		pkts[n].hdr = *hdr;
		pkts[n].data = malloc(hdr->caplen ? hdr->caplen : 1);
		memcpy(pkts[n].data, data, hdr->caplen);
		n++;
	}
	if (rc == PCAP_ERROR) {
		fprintf(stderr, "oracle: read \"%s\": %s\n", path, pcap_geterr(in));
		exit(1);
	}
	pcap_close(in);
	*count = n;
	return pkts;
}

int main(int argc, char **argv)
{
	int print_program = 0;
	int optimize = 1;
	int opt;
	while ((opt = getopt(argc, argv, "pO")) != -1) {
		if (opt == 'p')
			print_program = 1;
		else if (opt == 'O')
			optimize = 0;
		else
			usage();
	}
	if (argc - optind != 2)
		usage();

	size_t npkts;
	struct packet *pkts = load_packets(argv[optind], &npkts);

	FILE *exprs = fopen(argv[optind + 1], "r");
	if (!exprs) {
		perror("oracle: open expressions");
		return 1;
	}

	pcap_t *dead = pcap_open_dead(DLT_EN10MB, 262144);
	char *verdicts = malloc(npkts + 1);
	char *line = NULL;
	size_t linecap = 0;
	ssize_t len;
	while ((len = getline(&line, &linecap, exprs)) != -1) {
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		struct bpf_program prog;
		if (pcap_compile(dead, &prog, line, optimize, PCAP_NETMASK_UNKNOWN) != 0) {
			char *msg = pcap_geterr(dead);
			for (char *c = msg; *c; c++)
				if (*c == '\n' || *c == '\r')
					*c = ' ';
			printf("ERR %s\n", msg);
			continue;
		}
		for (size_t i = 0; i < npkts; i++)
			verdicts[i] = pcap_offline_filter(&prog, &pkts[i].hdr, pkts[i].data) ? '1' : '0';
		verdicts[npkts] = '\0';
		printf("OK %u %s\n", prog.bf_len, verdicts);
		if (print_program) {
			for (u_int i = 0; i < prog.bf_len; i++) {
				const struct bpf_insn *in = &prog.bf_insns[i];
				const char *image = bpf_image(in, (int)i);
				/* bpf_image() starts with "(NNN) "; keep what follows */
				const char *rest = strchr(image, ' ');
				rest = rest ? rest + 1 : image;
				while (*rest == ' ')
					rest++;
				printf("\t%u %u %u %u\t%s\n", in->code, in->jt, in->jf, in->k, rest);
			}
		}
		pcap_freecode(&prog);
	}
	free(line);
	free(verdicts);
	fclose(exprs);
	pcap_close(dead);
	return 0;
}
