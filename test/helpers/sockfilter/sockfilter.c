// SPDX-License-Identifier: Apache-2.0
/*
 * sockfilter: the Linux kernel's classic BPF socket filter (SO_ATTACH_FILTER) as an engine of sluice's
 * filter differential tests.
 *
 * usage: sockfilter PCAP PROGRAMS
 *
 * Reads every packet of the pcap file PCAP (classic format, either byte order, micro- or nanosecond
 * timestamps; only the captured bytes are used) into memory, then reads the file PROGRAMS: one classic
 * program per line, as its instruction count followed by four decimal numbers per instruction (tcpdump
 * -ddd flattened): "N code jt jf k code jt jf k ...". For each program, in order, it prints one line:
 *
 *   <verdicts>            one char per packet: '1' the socket filter accepted the frame, '0' it
 *                         dropped it, 'x' not judged (the kernel would not transmit the frame: a packet
 *                         socket refuses frames shorter than lo's 14-byte Ethernet header, EINVAL)
 *   REFUSED <errno> <name> SO_ATTACH_FILTER refused the program (e.g. 22 EINVAL for a backward jump or more
 *                         than BPF_MAXINSNS instructions)
 *
 * Method. The process first moves into a network namespace of its own (unshare(CLONE_NEWNET)): it holds
 * only a loopback device, nothing else runs there, and it disappears with the process; the host's devices
 * are never touched. It brings that lo up (SIOCSIFFLAGS), turns IPv6 off on it (in its own namespace's
 * /proc/sys) and deletes its 127.0.0.1 address, so no stack answers a looped frame with frames of its own,
 * and opens three AF_PACKET sockets on lo:
 *   - a sender (protocol 0: it receives nothing);
 *   - the judged socket, carrying the program under test (attached with SO_ATTACH_FILTER before the socket
 *     is bound to ETH_P_ALL, so no frame reaches it unfiltered; later programs replace the filter);
 *   - a witness without the program under test, which sees every frame transmitted.
 * A packet socket sees each frame sent on lo twice: on transmit (sll_pkttype PACKET_OUTGOING, delivered by
 * dev_queue_xmit_nit synchronously inside sendto(), lo having no qdisc) and again on receive (later, from
 * the softirq). Only the outgoing copies count, so every verdict is settled when sendto() returns; the
 * incoming copies are read and ignored. The frame bytes on transmit are exactly those sent (a VLAN tag is
 * still in the data; the receive path would have moved it to metadata).
 *
 * Packets go out in batches; after each batch both sockets are drained (recvmmsg, non-blocking). The witness
 * must show every sent frame, in order, byte for byte, and nothing else; the judged socket's outgoing copies
 * must be a subsequence of them, matched greedily (two equal frames get equal verdicts, so a greedy match
 * cannot attribute a copy to the wrong packet). PACKET_STATISTICS must report no drops. Any deviation is a
 * fatal error, never a verdict.
 *
 * Exit status: 0 when every program was processed (refusals included), 2 on usage errors, 1 on any other
 * failure (message on stderr).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 256
#define RX_VLEN 64

struct packet {
	uint32_t len;
	uint8_t *data;
};

static struct packet *packets;
static size_t npackets;
static size_t maxlen;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("sockfilter: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint32_t rd32(const uint8_t *p, int swap)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return swap ? __builtin_bswap32(v) : v;
}

static void load_pcap(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		die("open \"%s\": %s", path, strerror(errno));
	uint8_t gh[24];
	if (fread(gh, 1, 24, f) != 24)
		die("\"%s\": no pcap file header", path);
	uint32_t magic;
	memcpy(&magic, gh, 4);
	int swap;
	if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d)
		swap = 0;
	else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1)
		swap = 1;
	else
		die("\"%s\": not a classic pcap file (magic 0x%08x)", path, magic);
	if (rd32(gh + 20, swap) != 1)
		die("\"%s\": link type %u, not DLT_EN10MB", path, rd32(gh + 20, swap));
	size_t cap = 1024;
	packets = malloc(cap * sizeof(*packets));
	uint8_t rh[16];
	size_t got;
	while ((got = fread(rh, 1, 16, f)) == 16) {
		uint32_t caplen = rd32(rh + 8, swap);
		if (caplen > (1u << 20))
			die("\"%s\": record %zu: captured length %u is implausible", path, npackets, caplen);
		if (npackets == cap) {
			cap *= 2;
			packets = realloc(packets, cap * sizeof(*packets));
		}
		packets[npackets].len = caplen;
		packets[npackets].data = malloc(caplen ? caplen : 1);
		if (caplen && fread(packets[npackets].data, 1, caplen, f) != caplen)
			die("\"%s\": record %zu is cut short", path, npackets);
		if (caplen > maxlen)
			maxlen = caplen;
		npackets++;
	}
	if (got != 0)
		die("\"%s\": truncated record header after %zu records", path, npackets);
	fclose(f);
}

/* ---- the private namespace and its lo ---------------------------------------------------------------- */

static int lo_index;

static void write_own_sysctl(const char *path, const char *value)
{
	/* /proc/sys/net resolves to the namespace of the opening process: ours, after unshare. */
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return; /* no IPv6 in this kernel: nothing to turn off */
		die("open %s: %s", path, strerror(errno));
	}
	if (write(fd, value, strlen(value)) < 0)
		die("write %s: %s", path, strerror(errno));
	close(fd);
}

static void setup_namespace(void)
{
	if (unshare(CLONE_NEWNET) != 0)
		die("unshare(CLONE_NEWNET): %s (needs CAP_SYS_ADMIN)", strerror(errno));
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket(AF_INET): %s", strerror(errno));
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFINDEX, &ifr) != 0)
		die("SIOCGIFINDEX lo: %s", strerror(errno));
	lo_index = ifr.ifr_ifindex;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0)
		die("SIOCGIFFLAGS lo: %s", strerror(errno));
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
		die("SIOCSIFFLAGS lo up: %s", strerror(errno));
	/*
	 * No local addresses, so a looped frame is never answered (no TCP reset, ICMP reply or neighbour advert):
	 * setting 0.0.0.0 deletes lo's IPv4 address (as `ifconfig lo 0.0.0.0`), IPv6 is turned off below.
	 */
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_ANY);
	if (ioctl(fd, SIOCSIFADDR, &ifr) != 0)
		die("SIOCSIFADDR lo 0.0.0.0 (delete 127.0.0.1): %s", strerror(errno));
	close(fd);
	write_own_sysctl("/proc/sys/net/ipv6/conf/lo/disable_ipv6", "1\n");
}

static int packet_socket(void)
{
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket(AF_PACKET): %s", strerror(errno));
	int size = 32 << 20;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0)
		die("SO_RCVBUFFORCE: %s", strerror(errno));
	return fd;
}

static void bind_lo(int fd, int protocol)
{
	struct sockaddr_ll sll;
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(protocol);
	sll.sll_ifindex = lo_index;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) != 0)
		die("bind AF_PACKET to lo: %s", strerror(errno));
}

/* ---- receiving ------------------------------------------------------------------------------------- */

struct rx {
	int fd;
	uint8_t *bufs;
	size_t bufsize;
	struct mmsghdr msgs[RX_VLEN];
	struct iovec iov[RX_VLEN];
	struct sockaddr_ll from[RX_VLEN];
	/* Outgoing frames of the current batch: offsets into `frames`. */
	uint8_t *frames;
	size_t *flen;
	size_t count, cap;
};

static void rx_init(struct rx *r, int fd)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->bufsize = maxlen + 64;
	r->bufs = malloc(r->bufsize * RX_VLEN);
	r->cap = BATCH * 2;
	r->frames = malloc(r->bufsize * r->cap);
	r->flen = malloc(sizeof(size_t) * r->cap);
}

/* Reads everything queued on the socket without blocking; keeps the outgoing copies. */
static void rx_drain(struct rx *r, const char *what)
{
	r->count = 0;
	for (int rounds = 0;; rounds++) {
		if (rounds > 1000000)
			die("%s socket: more frames than were ever sent", what);
		for (int i = 0; i < RX_VLEN; i++) {
			r->iov[i].iov_base = r->bufs + (size_t)i * r->bufsize;
			r->iov[i].iov_len = r->bufsize;
			memset(&r->msgs[i].msg_hdr, 0, sizeof(r->msgs[i].msg_hdr));
			r->msgs[i].msg_hdr.msg_iov = &r->iov[i];
			r->msgs[i].msg_hdr.msg_iovlen = 1;
			r->msgs[i].msg_hdr.msg_name = &r->from[i];
			r->msgs[i].msg_hdr.msg_namelen = sizeof(r->from[i]);
		}
		int n = recvmmsg(r->fd, r->msgs, RX_VLEN, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			die("%s socket: recvmmsg: %s", what, strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			if (r->from[i].sll_pkttype != PACKET_OUTGOING)
				continue;
			if (r->msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
				die("%s socket: a frame longer than any packet sent", what);
			if (r->count == r->cap)
				die("%s socket: more outgoing frames than the batch sent", what);
			memcpy(r->frames + r->count * r->bufsize, r->bufs + (size_t)i * r->bufsize,
			       r->msgs[i].msg_len);
			r->flen[r->count++] = r->msgs[i].msg_len;
		}
		if (n < RX_VLEN)
			return;
	}
}

static int same_frame(const struct rx *r, size_t j, const struct packet *p)
{
	return r->flen[j] == p->len && memcmp(r->frames + j * r->bufsize, p->data, p->len) == 0;
}

static unsigned packet_drops(int fd, const char *what)
{
	struct tpacket_stats st;
	socklen_t len = sizeof(st);
	if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) != 0)
		die("%s socket: PACKET_STATISTICS: %s", what, strerror(errno));
	return st.tp_drops;
}

/* ---- programs -------------------------------------------------------------------------------------- */

static const char *errno_name(int e)
{
	switch (e) {
	case EINVAL: return "EINVAL";
	case ENOMEM: return "ENOMEM";
	case EPERM: return "EPERM";
	case EFAULT: return "EFAULT";
	case ENOTSUP: return "ENOTSUP";
	default: return "E?";
	}
}

/* Parses "N code jt jf k ..." into prog; returns 0, or -1 with a message in err. */
static int parse_program(char *line, struct sock_filter **prog, unsigned *count, char *err, size_t errlen)
{
	char *p = line, *end;
	errno = 0;
	unsigned long n = strtoul(p, &end, 10);
	if (end == p || errno || n > 1000000) {
		snprintf(err, errlen, "no instruction count");
		return -1;
	}
	p = end;
	struct sock_filter *f = calloc(n ? n : 1, sizeof(*f));
	for (unsigned long i = 0; i < n; i++) {
		unsigned long v[4];
		for (int j = 0; j < 4; j++) {
			errno = 0;
			v[j] = strtoul(p, &end, 10);
			if (end == p || errno) {
				snprintf(err, errlen, "instruction %lu: missing or bad number", i);
				free(f);
				return -1;
			}
			p = end;
		}
		if (v[0] > 0xffff || v[1] > 0xff || v[2] > 0xff || v[3] > 0xffffffffUL) {
			snprintf(err, errlen, "instruction %lu: field out of range", i);
			free(f);
			return -1;
		}
		f[i].code = (uint16_t)v[0];
		f[i].jt = (uint8_t)v[1];
		f[i].jf = (uint8_t)v[2];
		f[i].k = (uint32_t)v[3];
	}
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p) {
		snprintf(err, errlen, "more numbers than %lu instructions", n);
		free(f);
		return -1;
	}
	*prog = f;
	*count = (unsigned)n;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: sockfilter PCAP PROGRAMS\n");
		return 2;
	}
	load_pcap(argv[1]);
	FILE *in = fopen(argv[2], "r");
	if (!in)
		die("open \"%s\": %s", argv[2], strerror(errno));

	setup_namespace();
	int tx = packet_socket();
	bind_lo(tx, 0);
	int judged = packet_socket();
	int witness = packet_socket();
	bind_lo(witness, ETH_P_ALL);
	int judged_bound = 0;

	struct rx jr, wr;
	rx_init(&jr, judged);
	rx_init(&wr, witness);
	struct sockaddr_ll to;
	memset(&to, 0, sizeof(to));
	to.sll_family = AF_PACKET;
	to.sll_ifindex = lo_index;
	to.sll_halen = ETH_ALEN;

	char *verdicts = malloc(npackets + 2);
	char *line = NULL;
	size_t linecap = 0;
	ssize_t linelen;
	unsigned lineno = 0;
	while ((linelen = getline(&line, &linecap, in)) >= 0) {
		lineno++;
		struct sock_filter *prog;
		unsigned count;
		char err[128];
		if (parse_program(line, &prog, &count, err, sizeof(err)) != 0)
			die("\"%s\" line %u: %s", argv[2], lineno, err);
		struct sock_fprog fprog = { .len = (unsigned short)count, .filter = prog };
		if (count > 0xffff || setsockopt(judged, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof(fprog)) != 0) {
			int e = count > 0xffff ? EINVAL : errno;
			free(prog);
			printf("REFUSED %d %s\n", e, errno_name(e));
			continue;
		}
		free(prog);
		if (!judged_bound) {
			bind_lo(judged, ETH_P_ALL);
			judged_bound = 1;
		}
		/* Anything queued now was judged by an earlier program (incoming copies arriving late). */
		rx_drain(&jr, "judged");
		rx_drain(&wr, "witness");
		packet_drops(judged, "judged");
		packet_drops(witness, "witness");

		for (size_t start = 0; start < npackets; start += BATCH) {
			size_t end = start + BATCH < npackets ? start + BATCH : npackets;
			size_t sent[BATCH];
			size_t nsent = 0;
			for (size_t i = start; i < end; i++) {
				const struct packet *p = &packets[i];
				ssize_t rc;
				do
					rc = sendto(tx, p->data, p->len, 0, (struct sockaddr *)&to, sizeof(to));
				while (rc < 0 && errno == EINTR);
				if (rc < 0) {
					if (errno == EINVAL && p->len < ETH_HLEN) {
						verdicts[i] = 'x';
						continue;
					}
					die("send packet %zu (%u bytes): %s", i, p->len, strerror(errno));
				}
				if ((size_t)rc != p->len)
					die("send packet %zu: %zd of %u bytes sent", i, rc, p->len);
				sent[nsent++] = i;
			}
			rx_drain(&jr, "judged");
			rx_drain(&wr, "witness");
			if (wr.count != nsent)
				die("program %u: the witness saw %zu outgoing frames for %zu sent (packets %zu-%zu)",
				    lineno, wr.count, nsent, start, end - 1);
			size_t j = 0;
			for (size_t s = 0; s < nsent; s++) {
				const struct packet *p = &packets[sent[s]];
				if (!same_frame(&wr, s, p))
					die("program %u: the witness saw packet %zu changed on transmit", lineno, sent[s]);
				if (j < jr.count && same_frame(&jr, j, p)) {
					verdicts[sent[s]] = '1';
					j++;
				} else {
					verdicts[sent[s]] = '0';
				}
			}
			if (j != jr.count)
				die("program %u: the judged socket got %zu outgoing frames that match no packet sent "
				    "(packets %zu-%zu)", lineno, jr.count - j, start, end - 1);
			if (packet_drops(judged, "judged") || packet_drops(witness, "witness"))
				die("program %u: the kernel dropped frames (socket receive buffer full)", lineno);
		}
		verdicts[npackets] = '\n';
		verdicts[npackets + 1] = 0;
		fputs(verdicts, stdout);
	}
	if (ferror(in))
		die("read \"%s\": %s", argv[2], strerror(errno));
	if (fflush(stdout) != 0)
		die("write: %s", strerror(errno));
	return 0;
}
