// Accept table: expressions compile to exactly what the installed tcpdump (libpcap 1.10) prints for -d, -dd and -ddd.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { compileFilter, formatListing } from '../../../bpf/filter/index.js';

function tcpdump(flags: string[], expression: string): string {
  return execFileSync('tcpdump', [...flags, '-y', 'EN10MB', '--', expression], {
    stdio: ['ignore', 'pipe', 'pipe'],
  }).toString();
}

function probeTcpdump(): { ok: boolean; reason: string } {
  try {
    tcpdump(['-d'], 'tcp');
    return { ok: true, reason: '' };
  } catch (err: unknown) {
    return {
      ok: false,
      reason: `skipped: running "tcpdump -d" failed (${(err as Error).message.split('\n')[0]})`,
    };
  }
}

const oracle = probeTcpdump();

/** Expressions compared byte for byte with tcpdump's listings. */
const ACCEPT: string[] = [
  'tcp port 80',
  'host 1.2.3.4',
  'src host 10.0.0.1',
  'dst net 192.168.0.0/16',
  'net 10.0.0.0 mask 255.0.0.0',
  'net 10',
  'net 10.1',
  'host 10.1',
  'ip host 10.1',
  'portrange 10-5',
  'tcp portrange 1000-2000',
  'udp dst portrange 53-100',
  'port 53',
  'udp port 53',
  'sctp port 99',
  'src port 1024',
  'tcp src port 22 and dst port 80',
  'host 1.2.3.4 and port 80 or 443',
  'src or dst host 1.2.3.4 and 5.6.7.8',
  'host 1.2.3.4 and (5.6.7.8 or 9.9.9.9)',
  'host 1.2.3.4 and not 5.6.7.8',
  'tcp[tcpflags] & tcp-syn != 0',
  'tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn',
  'tcp[13] = 2',
  'ip[0] & 0xf > 5',
  'ip[2:2] > 1500',
  'udp[8:4] = 0x12345678',
  'icmp[icmptype] = icmp-echo',
  'icmp6[icmp6type] = icmp6-echo',
  'icmp[0] = 8 or icmp[0] = 0',
  'ether[0] & 1 = 0 and ip[2:2] > 100',
  'ether host aa:bb:cc:dd:ee:ff',
  'ether src 1:2:3:4:5:6',
  'ether dst ff:ff:ff:ff:ff:ff',
  'ether broadcast',
  'ether multicast',
  'broadcast',
  'multicast',
  'ip multicast',
  'ip6 multicast',
  'ether proto 0x88cc',
  'ether proto \\ip',
  'ether proto \\arp',
  'arp',
  'rarp',
  'ip6',
  'icmp6',
  'ah',
  'esp',
  'pim',
  'vrrp',
  'igmp',
  'igrp',
  'sctp',
  'ip proto 47',
  'ip proto \\tcp',
  'ip6 proto 17',
  'proto 89',
  'proto \\udp',
  'ip protochain 6',
  'ip6 protochain 17',
  'protochain 6',
  'vlan',
  'vlan 100',
  'vlan and vlan 20 and ip',
  'vlan 100 and tcp port 80',
  'vlan or tcp',
  'mpls',
  'mpls 5 and ip',
  'mpls 5 and mpls 7 and ip6',
  'mpls and host 1.2.3.4',
  'less 100',
  'greater 1000',
  'len > 100',
  'len - 14 > 20',
  'len * 2 < 3000',
  'ip[0] / 4 = 1',
  'ip[0] % 3 = 1',
  'ip[1] << 2 = 4',
  'ip[1] >> 2 = 4',
  '-ip[0] = 1',
  'ip[0] ^ 5 = 3',
  'ip[0] | 1 = 1',
  '1 = 1',
  '1 + 1 = 2',
  'not tcp',
  'not not tcp',
  'tcp or udp',
  'tcp and not port 22',
  '!(tcp && port 22)',
  'tcp || udp || icmp',
  'ip and (tcp or udp) and not port 53',
  'host ::1',
  'host ::ffff:1.2.3.4',
  'ip6 net 2001:db8::/32',
  'ip6 net 2001:db8::/33',
  'net ::/0',
  'src net 2001:db8::/48 and tcp',
  'ip6 src host fe80::1',
  'dst host 2001:db8::1 and udp port 53',
  'stp',
  'ipx',
  'netbeui',
  'iso',
  'isis',
  'esis',
  'clnp',
  'l1',
  'l2',
  'iih',
  'lsp',
  'snp',
  'csnp',
  'psnp',
  'atalk',
  'aarp',
  'decnet',
  'lat',
  'sca',
  'mopdl',
  'moprc',
  'llc',
  'llc i',
  'llc s',
  'llc u',
  'pppoed',
  'iso proto 0x83',
  'byte 5 & 3',
  'byte 5 = 3',
  'byte 5 < 3',
  'byte 5 > 3',
  'port http',
  'tcp port http',
  'port domain',
  'portrange http-https',
  'tcp portrange http-https',
  'ip[6:2] & 0x1fff != 0',
  'udp and ip[6:2] & 0x1fff != 0',
  'tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420',
  'arp[6:2] = 2',
  'ip6[6] = 6',
  'tcp port 80 or tcp port 443 or tcp port 8080',
  'host 1.2.3.4 or host 5.6.7.8 or host 9.10.11.12',
  '(tcp port 80 and host 1.2.3.4) or (udp port 53 and host 8.8.8.8)',
  'vlan 10 or vlan 20',
  'not vlan',
  'tcp dst port 80 and src host 1.2.3.4',
  'dst port 80 and (src host 1.2.3.4 or src host 5.6.7.8)',
  'ip and ip[8] < 5',
  'link[0] = 1',
  'ether[12:2] = 0x800',
  'icmp and icmp[4:2] = 0x1234',
  'ip[0:4] = 0x45000054',
  'llc rr',
  'llc ui',
  'llc rnr',
  '0 - ip[8] = 4294967295',
  'len ^ 2 * 3 = 0',
  'len * 2 ^ 3 = 0',
  '-ip[0] = 1',
  'ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) != 0',
  'pppoes',
  'pppoes 0x1234',
  'pppoes and ip',
  'pppoes 0x1234 and tcp port 80',
  'pppoes and ip6',
  'pppoes and host 192.0.2.1',
  'pppoes and decnet',
  'pppoes and mpls 5 and ip',
  'vlan and pppoes and ip',
  'vlan 10 and pppoes 7 and udp port 53',
  'not pppoes',
  'pppoed or pppoes',
  'geneve',
  'geneve 100',
  'geneve and ip',
  'geneve 100 and tcp port 80',
  'geneve and ip6',
  'geneve and host 192.0.2.1',
  'geneve and ether src 00:00:5e:00:53:01',
  'geneve and ether broadcast',
  'geneve and ether multicast',
  'geneve and vlan 10 and ip',
  'geneve and stp',
  'geneve and isis',
  'geneve and tcp[tcpflags] & tcp-syn != 0',
  'geneve and link[0] = 1',
  'geneve and icmp6[0] = 1',
  'not geneve',
  'pppoes and geneve and ip',
  'decnet host 1.2',
  'decnet src 10.5',
  'decnet dst 63.1023',
  'decnet src or dst 1.1',
  'decnet src and dst 1.1',
  'decnet host 1000',
  'decnet net 1.2',
  'decnet src 2.5 or decnet dst 10.123',
];

/** Different spellings that must give the same program. */
const ALIASES: [string, string][] = [
  ['tcp && port 22', 'tcp and port 22'],
  ['tcp || udp', 'tcp or udp'],
  ['! tcp', 'not tcp'],
  ['ip[0] == 69', 'ip[0] = 69'],
  ['ether host aa-bb-cc-dd-ee-ff', 'ether host aa:bb:cc:dd:ee:ff'],
  ['ether host aabb.ccdd.eeff', 'ether host aa:bb:cc:dd:ee:ff'],
  ['link host aa:bb:cc:dd:ee:ff', 'ether host aa:bb:cc:dd:ee:ff'],
  ['len >= 100', 'greater 100'],
  ['length > 99', 'len > 99'],
  ['port 0x50', 'port 80'],
  ['port 0120', 'port 80'],
  ['tcp port http', 'tcp port 80'],
  ['ip proto \\tcp', 'ip proto 6'],
  ['es-is', 'esis'],
  ['src or dst host 1.2.3.4', 'host 1.2.3.4'],
  ['host 1.2.3.4 and port (80 or 443)', 'host 1.2.3.4 and (port 80 or port 443)'],
  ['net 10.0.0.0/8', 'net 10'],
  ['net 10.1.0.0 mask 255.255.0.0', 'net 10.1'],
];

describe.skipIf(!oracle.ok)(`accept table against tcpdump ${oracle.reason}`, () => {
  it.each(ACCEPT)('compiles %j as tcpdump -d/-dd/-ddd prints it', (expression) => {
    const insns = compileFilter(expression);
    expect(formatListing(insns, 'd')).toBe(tcpdump(['-d'], expression));
    expect(formatListing(insns, 'dd')).toBe(tcpdump(['-dd'], expression));
    expect(formatListing(insns, 'ddd')).toBe(tcpdump(['-ddd'], expression));
  });

  it.each(ACCEPT.filter((_, i) => i % 5 === 0))(
    'compiles %j without the optimizer as tcpdump -O -d prints it',
    (expression) => {
      expect(formatListing(compileFilter(expression, { optimize: false }), 'd')).toBe(
        tcpdump(['-O', '-d'], expression),
      );
    },
  );
});

describe('aliases', () => {
  it.each(ALIASES)('compiles %j like %j', (alias, canonical) => {
    expect(compileFilter(alias)).toEqual(compileFilter(canonical));
  });

  it('compiles the empty expression to accept everything', () => {
    expect(formatListing(compileFilter(''), 'd')).toBe('(000) ret      #262144\n');
    expect(compileFilter('   ')).toEqual([{ code: 6, jt: 0, jf: 0, k: 262144 }]);
  });

  it('returns the snaplen given for accepted packets', () => {
    expect(compileFilter('', { snaplen: 96 })).toEqual([{ code: 6, jt: 0, jf: 0, k: 96 }]);
    expect(
      compileFilter('tcp', { snaplen: 65535 })
        .filter((i) => i.code === 6)
        .map((i) => i.k),
    ).toEqual([65535, 0]);
  });
});
