// Reject table: expressions libpcap rejects (or sluice refuses) → code, message, offset, length.
import { describe, expect, it } from 'vitest';
import {
  compileFilter,
  FilterLimitError,
  FilterSyntaxError,
  FilterUnsupportedError,
} from '../../../bpf/filter/index.js';

function rejection(expression: string): {
  code: string;
  message: string;
  offset: number;
  length: number;
  expected?: string;
} {
  try {
    compileFilter(expression);
  } catch (err: unknown) {
    if (
      err instanceof FilterSyntaxError ||
      err instanceof FilterUnsupportedError ||
      err instanceof FilterLimitError
    ) {
      const out: {
        code: string;
        message: string;
        offset: number;
        length: number;
        expected?: string;
      } = { code: err.code, message: err.message, offset: err.offset, length: err.length };
      if (err.expected !== undefined) out.expected = err.expected;
      return out;
    }
    throw err;
  }
  throw new Error(`"${expression}" compiled`);
}

describe('reject table', () => {
  it('rejects `port` without a number', () => {
    expect(rejection('udp and dst port and host 192.0.2.1')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": "a port number or name",
        "length": 3,
        "message": "unexpected "and" at column 18: expected a port number or name",
        "offset": 17,
      }
    `);
    expect(rejection('port')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": "a port number or name",
        "length": 1,
        "message": "unexpected end of expression at column 5: expected a port number or name",
        "offset": 4,
      }
    `);
  });
  it('rejects an IPv4 address with ip6', () => {
    expect(rejection('ip6 host 1.2.3.4')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 16,
        "message": "'ip6' modifier applied to ip host at column 1",
        "offset": 0,
      }
    `);
  });
  it('rejects a network with host bits set', () => {
    expect(rejection('net 10.0.0.1/8')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 14,
        "message": "non-network bits set in "10.0.0.1/8" at column 1",
        "offset": 0,
      }
    `);
    expect(rejection('net 1.2.3.4 mask 255.0.0.0')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 26,
        "message": "non-network bits set in "1.2.3.4 mask 255.0.0.0" at column 1",
        "offset": 0,
      }
    `);
  });
  it('rejects an IPv4 address as a MAC address', () => {
    expect(rejection('ether host 1.2.3.4')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 18,
        "message": "illegal link layer address at column 1",
        "offset": 0,
      }
    `);
  });
  it('rejects division by a constant zero', () => {
    expect(rejection('ip[0] / 0 = 1')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 1,
        "message": "division by zero at column 9",
        "offset": 8,
      }
    `);
    expect(rejection('ip[0] % 0 = 1')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 1,
        "message": "modulus by zero at column 9",
        "offset": 8,
      }
    `);
    expect(rejection('ip[0] << 32 = 1')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 2,
        "message": "shift by more than 31 bits at column 10",
        "offset": 9,
      }
    `);
  });
  it('rejects a bare value after a term without qualifiers', () => {
    expect(rejection('tcp and 80')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 2,
        "message": "syntax error in filter expression at column 9",
        "offset": 8,
      }
    `);
  });
  it('refuses host names, naming the token', () => {
    expect(rejection('host example.com')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_UNSUPPORTED",
        "length": 11,
        "message": "host names are not supported: "example.com" would need a DNS lookup; use an IP address at column 6",
        "offset": 5,
      }
    `);
    expect(rejection('tcp and src host foo')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_UNSUPPORTED",
        "length": 3,
        "message": "host names are not supported: "foo" would need a DNS lookup; use an IP address at column 18",
        "offset": 17,
      }
    `);
    expect(rejection('ether host foo')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_UNSUPPORTED",
        "length": 3,
        "message": "MAC address names are not supported: "foo" would need /etc/ethers at column 12",
        "offset": 11,
      }
    `);
  });
  it('rejects unknown names', () => {
    expect(rejection('port nosuchservice')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 18,
        "message": "unknown port 'nosuchservice' at column 1",
        "offset": 0,
      }
    `);
    expect(rejection('ip proto nosuchproto')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 20,
        "message": "unknown ip proto 'nosuchproto' at column 1",
        "offset": 0,
      }
    `);
    expect(rejection('foo')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": "a primitive such as host, port, tcp or an expression in parentheses",
        "length": 3,
        "message": "unexpected "foo" at column 1: expected a primitive such as host, port, tcp or an expression in parentheses",
        "offset": 0,
      }
    `);
    expect(rejection('udp port http')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 13,
        "message": "port 'http' is tcp at column 1",
        "offset": 0,
      }
    `);
  });
  it('rejects out-of-range numbers', () => {
    expect(rejection('tcp port 99999')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 14,
        "message": "illegal port number 99999 > 65535 at column 1",
        "offset": 0,
      }
    `);
    expect(rejection('vlan 5000')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 4,
        "message": "VLAN tag 5000 greater than maximum 4095 at column 6",
        "offset": 5,
      }
    `);
    expect(rejection('ip[08] = 1')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": "an octal number",
        "length": 2,
        "message": "number 08 contains non-octal digit at column 4",
        "offset": 3,
      }
    `);
    expect(rejection('ip[4294967296] = 1')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": "a number below 2^32",
        "length": 10,
        "message": "number 4294967296 overflows 32 bits at column 4",
        "offset": 3,
      }
    `);
    expect(rejection('tcp[0:3] = 1')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 1,
        "message": "data size must be 1, 2, or 4 at column 7",
        "offset": 6,
      }
    `);
  });
  it('rejects unbalanced brackets and parentheses', () => {
    expect(rejection('ip[')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": "a number, "len" or a packet access such as ip[0]",
        "length": 1,
        "message": "unexpected end of expression at column 4: expected a number, "len" or a packet access such as ip[0]",
        "offset": 3,
      }
    `);
    expect(rejection('(tcp')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": "")" or "and"/"or"",
        "length": 1,
        "message": "unexpected end of expression at column 5: expected ")" or "and"/"or"",
        "offset": 4,
      }
    `);
    expect(rejection('tcp)')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": ""and", "or" or the end of the expression (unbalanced ")")",
        "length": 1,
        "message": "unexpected ")" at column 4: expected "and", "or" or the end of the expression (unbalanced ")")",
        "offset": 3,
      }
    `);
    expect(rejection('ip[0 = 1')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": "":" and a size, or "]"",
        "length": 1,
        "message": "unexpected "=" at column 6: expected ":" and a size, or "]"",
        "offset": 5,
      }
    `);
  });
  it('rejects stray characters and bogus addresses', () => {
    expect(rejection('tcp @ udp')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": "an operator, a keyword, a number or an address",
        "length": 1,
        "message": "unexpected character "@" at column 5",
        "offset": 4,
      }
    `);
    expect(rejection('host 1::2::3')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": "a MAC address",
        "length": 6,
        "message": "bogus ethernet address 1::2:: at column 6",
        "offset": 5,
      }
    `);
    expect(rejection('TCP')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "expected": "a primitive such as host, port, tcp or an expression in parentheses",
        "length": 3,
        "message": "unexpected "TCP" at column 1: expected a primitive such as host, port, tcp or an expression in parentheses",
        "offset": 0,
      }
    `);
  });
  it('rejects what libpcap rejects semantically', () => {
    expect(rejection('ip and not ip')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 13,
        "message": "expression rejects all packets",
        "offset": 0,
      }
    `);
    expect(rejection('arp proto 5')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 11,
        "message": "arp does not encapsulate another protocol at column 1",
        "offset": 0,
      }
    `);
    expect(rejection('mpls and vlan')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 4,
        "message": "no VLAN match after MPLS at column 10",
        "offset": 9,
      }
    `);
    expect(rejection('mpls and arp')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 3,
        "message": "unsupported protocol over mpls at column 10",
        "offset": 9,
      }
    `);
    expect(rejection('ah[0] = 1')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 5,
        "message": "unsupported index operation at column 1",
        "offset": 0,
      }
    `);
    expect(rejection('gateway 1.2.3.4')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 15,
        "message": "'gateway' requires a name at column 1",
        "offset": 0,
      }
    `);
    expect(rejection('host 10.0.0.0/8')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 15,
        "message": "Mask syntax for networks only at column 1",
        "offset": 0,
      }
    `);
  });
  it('refuses primitives of other link types and capture directions', () => {
    expect(rejection('inbound')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_UNSUPPORTED",
        "length": 7,
        "message": ""inbound" depends on the capture direction, which a packet filter on a device does not see (column 1)",
        "offset": 0,
      }
    `);
    expect(rejection('vpi 1')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_UNSUPPORTED",
        "length": 3,
        "message": ""vpi" applies to another link type (802.11, ATM, pflog or SS7), not Ethernet (column 1)",
        "offset": 0,
      }
    `);
  });
  it('rejects what libpcap rejects inside PPPoE and Geneve payloads', () => {
    expect(rejection('pppoes 65536')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 5,
        "message": "PPPoE session number 65536 greater than maximum 65535 at column 8",
        "offset": 7,
      }
    `);
    expect(rejection('geneve 16777216')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 8,
        "message": "Geneve VNI 16777216 greater than maximum 16777215 at column 8",
        "offset": 7,
      }
    `);
    expect(rejection('pppoes and vlan')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 4,
        "message": "no VLAN support for PPP at column 12",
        "offset": 11,
      }
    `);
    expect(rejection('pppoes and ether host 1:2:3:4:5:6')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 22,
        "message": "ethernet addresses supported only on ethernet/FDDI/token ring/802.11/ATM LANE/Fibre Channel at column 12",
        "offset": 11,
      }
    `);
    expect(rejection('pppoes and llc')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 3,
        "message": "'llc' not supported for PPP at column 12",
        "offset": 11,
      }
    `);
    expect(rejection('geneve and protochain 6')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 12,
        "message": "'protochain' not supported with variable length headers at column 12",
        "offset": 11,
      }
    `);
  });
  it('rejects malformed DECnet addresses and DECnet host names', () => {
    expect(rejection('decnet host 0x1.2')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 17,
        "message": "malformed decnet address '0x1.2' at column 1",
        "offset": 0,
      }
    `);
    expect(rejection('decnet host foo')).toMatchInlineSnapshot(`
      {
        "code": "FILTER_SYNTAX",
        "length": 15,
        "message": "decnet name support not included, 'foo' cannot be translated at column 1",
        "offset": 0,
      }
    `);
  });
});

describe('error formatting', () => {
  it('draws a caret under the offending token', () => {
    let error: unknown;
    try {
      compileFilter('udp and dst port and host 192.0.2.1');
    } catch (err: unknown) {
      error = err;
    }
    expect(error).toBeInstanceOf(FilterSyntaxError);
    expect((error as FilterSyntaxError).format()).toMatchInlineSnapshot(`
      "udp and dst port and host 192.0.2.1
                       ^^^
      unexpected "and" at column 18: expected a port number or name"
    `);
    expect((error as FilterSyntaxError).name).toBe('FilterSyntaxError');
  });
  it('draws a caret at the end for a missing token', () => {
    try {
      compileFilter('tcp port');
    } catch (err: unknown) {
      expect((err as FilterSyntaxError).format()).toMatchInlineSnapshot(`
        "tcp port
                ^
        unexpected end of expression at column 9: expected a port number or name"
      `);
    }
  });
});
