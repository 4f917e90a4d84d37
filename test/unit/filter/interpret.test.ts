// The classic BPF interpreter: libpcap's bpf_filter semantics on hand-built packets and programs.
import { describe, expect, it } from 'vitest';
import { compileFilter, parseCbpfText, runCbpf } from '../../../bpf/filter/index.js';

function hex(s: string): Uint8Array {
  return Uint8Array.from(
    s
      .replace(/\s+/g, '')
      .match(/../g)!
      .map((b) => parseInt(b, 16)),
  );
}

const ETH = 'ffffffffffff 020000000001';
// IPv4 TCP 192.0.2.1:40000 -> 198.51.100.2:80, SYN.
const IPV4_TCP_SYN = hex(
  `${ETH} 0800 4500 0028 0001 0000 4006 0000 c0000201 c6336402 9c40 0050 00000000 00000000 5002 2000 0000 0000`,
);
// IPv4 UDP 10.0.0.1:5353 -> 10.0.0.2:53.
const IPV4_UDP_DNS = hex(
  `${ETH} 0800 4500 001c 0001 0000 4011 0000 0a000001 0a000002 14e9 0035 0008 0000`,
);
// IPv6 TCP 2001:db8::1 -> 2001:db8::2 port 443.
const IPV6_TCP = hex(
  `${ETH} 86dd 60000000 0014 0640 20010db8000000000000000000000001 20010db8000000000000000000000002 c000 01bb 00000000 00000000 5010 2000 0000 0000`,
);
// 802.1Q VLAN 100 carrying the IPv4 TCP SYN.
const VLAN_TCP = hex(
  `ffffffffffff 020000000001 8100 0064 ${Array.from(IPV4_TCP_SYN.slice(12), (b) => b.toString(16).padStart(2, '0')).join('')}`,
);
// ARP request.
const ARP = hex(`${ETH} 0806 0001 0800 0604 0001 020000000001 c0000201 000000000000 c0000202`);
// Second fragment of an IPv4 TCP datagram (offset 185*8).
const IPV4_FRAG = hex(
  `${ETH} 0800 4500 0028 0001 00b9 4006 0000 c0000201 c6336402 9c40 0050 00000000 00000000 5002 2000 0000 0000`,
);

const accepts = (expression: string, packet: Uint8Array): boolean =>
  runCbpf(compileFilter(expression), packet) !== 0;

describe('runCbpf on compiled filters', () => {
  it('matches TCP port 80 over IPv4 and VLAN only after the vlan keyword', () => {
    expect(accepts('tcp port 80', IPV4_TCP_SYN)).toBe(true);
    expect(accepts('tcp port 80', VLAN_TCP)).toBe(false);
    expect(accepts('vlan 100 and tcp port 80', VLAN_TCP)).toBe(true);
    expect(accepts('vlan 101 and tcp port 80', VLAN_TCP)).toBe(false);
  });
  it('returns the snaplen for accepted packets and 0 for dropped ones', () => {
    expect(runCbpf(compileFilter('tcp'), IPV4_TCP_SYN)).toBe(262144);
    expect(runCbpf(compileFilter('udp'), IPV4_TCP_SYN)).toBe(0);
  });
  it('checks flags, hosts, nets and ports', () => {
    expect(accepts('tcp[tcpflags] & tcp-syn != 0', IPV4_TCP_SYN)).toBe(true);
    expect(accepts('tcp[tcpflags] & tcp-ack != 0', IPV4_TCP_SYN)).toBe(false);
    expect(accepts('src host 192.0.2.1 and dst net 198.51.100.0/24', IPV4_TCP_SYN)).toBe(true);
    expect(accepts('udp dst port 53', IPV4_UDP_DNS)).toBe(true);
    expect(accepts('ip6 and tcp port 443', IPV6_TCP)).toBe(true);
    expect(accepts('ip6 net 2001:db8::/32', IPV6_TCP)).toBe(true);
    expect(accepts('host 192.0.2.2', ARP)).toBe(true);
    expect(accepts('arp', ARP)).toBe(true);
  });
  it('does not look at ports of non-first fragments', () => {
    expect(accepts('tcp port 80', IPV4_FRAG)).toBe(false);
    expect(accepts('tcp', IPV4_FRAG)).toBe(true);
  });
  it('drops runts whose loads fall outside the packet', () => {
    expect(accepts('tcp port 80', IPV4_TCP_SYN.slice(0, 30))).toBe(false);
    expect(accepts('ip', IPV4_TCP_SYN.slice(0, 13))).toBe(false);
    expect(accepts('', new Uint8Array(0))).toBe(true);
  });
  it('sees the wire length in len, not the captured length', () => {
    expect(runCbpf(compileFilter('len > 1000'), IPV4_TCP_SYN, 1500)).not.toBe(0);
    expect(runCbpf(compileFilter('len > 1000'), IPV4_TCP_SYN)).toBe(0);
  });
  it('follows the protochain loop through IPv6 extension headers', () => {
    // Hop-by-hop options header (8 bytes) then TCP.
    const pkt = hex(
      `${ETH} 86dd 60000000 001c 0040 20010db8000000000000000000000001 20010db8000000000000000000000002 0600 0000 0000 0000 c000 01bb 00000000 00000000 5010 2000 0000 0000`,
    );
    expect(accepts('ip6 protochain 6', pkt)).toBe(true);
    expect(accepts('ip6 protochain 17', pkt)).toBe(false);
    expect(accepts('tcp', pkt)).toBe(false);
  });
});

describe('runCbpf instruction semantics', () => {
  const run = (text: string, packet = new Uint8Array(4)): number =>
    runCbpf(parseCbpfText(text), packet);
  it('returns A, X and constants', () => {
    expect(run('3\n0 0 0 7\n135 0 0 0\n22 0 0 0\n')).toBe(0);
    expect(run('3\n0 0 0 7\n7 0 0 0\n14 0 0 0\n')).toBe(7);
    expect(run('2\n0 0 0 7\n22 0 0 0\n')).toBe(7);
  });
  it('drops on division and modulus by a zero X', () => {
    expect(run('4\n0 0 0 7\n1 0 0 0\n60 0 0 0\n22 0 0 0\n')).toBe(0);
    expect(run('4\n0 0 0 7\n1 0 0 0\n156 0 0 0\n22 0 0 0\n')).toBe(0);
  });
  it('shifts everything out for counts of 32 and more, as libpcap', () => {
    expect(run('4\n0 0 0 1\n1 0 0 33\n108 0 0 0\n22 0 0 0\n')).toBe(0);
    expect(run('4\n0 0 0 1\n1 0 0 3\n108 0 0 0\n22 0 0 0\n')).toBe(8);
  });
  it('wraps unsigned arithmetic at 32 bits', () => {
    expect(run('3\n0 0 0 0\n132 0 0 0\n22 0 0 0\n')).toBe(0);
    expect(run('3\n0 0 0 1\n132 0 0 0\n22 0 0 0\n')).toBe(0xffffffff);
    expect(run('3\n0 0 0 4294967295\n4 0 0 2\n22 0 0 0\n')).toBe(1);
  });
  it('uses scratch memory and X-relative loads', () => {
    expect(run('5\n0 0 0 9\n2 0 0 3\n1 0 0 1\n96 0 0 3\n22 0 0 0\n')).toBe(9);
    expect(run('3\n1 0 0 2\n72 0 0 0\n22 0 0 0\n', Uint8Array.from([0, 0, 1, 2]))).toBe(0x102);
    expect(run('3\n1 0 0 3\n72 0 0 0\n22 0 0 0\n', Uint8Array.from([0, 0, 1, 2]))).toBe(0);
  });
});
