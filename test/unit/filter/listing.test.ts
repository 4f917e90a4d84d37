// tcpdump layouts and parsing -ddd text back: round trips and validation errors.
import { describe, expect, it } from 'vitest';
import {
  compileFilter,
  FilterSyntaxError,
  formatListing,
  parseCbpfText,
} from '../../../bpf/filter/index.js';

function parseError(text: string): { message: string; offset: number; length: number } {
  try {
    parseCbpfText(text);
  } catch (err: unknown) {
    if (err instanceof FilterSyntaxError)
      return { message: err.message, offset: err.offset, length: err.length };
    throw err;
  }
  throw new Error('parsed');
}

describe('listings', () => {
  it('round-trips -ddd text', () => {
    for (const e of ['tcp port 80', 'ip6 protochain 6', 'vlan and ip[2:2] > 100', '']) {
      const insns = compileFilter(e);
      expect(parseCbpfText(formatListing(insns, 'ddd'))).toEqual(insns);
    }
  });
  it('prints the three layouts as tcpdump does', () => {
    const insns = compileFilter('ip');
    expect(formatListing(insns, 'd')).toMatchInlineSnapshot(`
      "(000) ldh      [12]
      (001) jeq      #0x800           jt 2	jf 3
      (002) ret      #262144
      (003) ret      #0
      "
    `);
    expect(formatListing(insns, 'dd')).toMatchInlineSnapshot(`
      "{ 0x28, 0, 0, 0x0000000c },
      { 0x15, 0, 1, 0x00000800 },
      { 0x6, 0, 0, 0x00040000 },
      { 0x6, 0, 0, 0x00000000 },
      "
    `);
    expect(formatListing(insns, 'ddd')).toMatchInlineSnapshot(`
      "4
      40 0 0 12
      21 0 1 2048
      6 0 0 262144
      6 0 0 0
      "
    `);
  });
  it('prints every opcode family', () => {
    const text =
      '13\n0 0 0 1\n1 0 0 2\n32 0 0 4294967295\n128 0 0 0\n97 0 0 3\n3 0 0 1\n12 0 0 0\n84 0 0 255\n135 0 0 0\n7 0 0 0\n177 0 0 14\n29 0 0 0\n22 0 0 0\n';
    expect(formatListing(parseCbpfText(text), 'd')).toMatchInlineSnapshot(`
      "(000) ld       #0x1
      (001) ldx      #0x2
      (002) ld       [-1]
      (003) ld       #pktlen
      (004) ldx      M[3]
      (005) stx      M[1]
      (006) add      x
      (007) and      #0xff
      (008) txa      
      (009) tax      
      (010) ldxb     4*([14]&0xf)
      (011) jeq      x                jt 12	jf 12
      (012) ret      
      "
    `);
  });
});

describe('parseCbpfText validation', () => {
  it('rejects jumps past the end', () => {
    expect(parseError('2\n21 0 5 1\n6 0 0 0\n')).toMatchInlineSnapshot(`
      {
        "length": 1,
        "message": "jump in instruction 0 goes to 6, past the end of the program",
        "offset": 7,
      }
    `);
  });
  it('rejects programs that do not end in ret', () => {
    expect(parseError('1\n40 0 0 12\n')).toMatchInlineSnapshot(`
      {
        "length": 2,
        "message": "cBPF program does not end in ret: the last instruction has opcode 40",
        "offset": 2,
      }
    `);
  });
  it('rejects unknown opcodes and bad numbers', () => {
    expect(parseError('2\n255 0 0 0\n6 0 0 0\n')).toMatchInlineSnapshot(`
      {
        "length": 3,
        "message": "unknown opcode 255 (0xff) in instruction 0",
        "offset": 2,
      }
    `);
    expect(parseError('1\n6 0 0 x\n')).toMatchInlineSnapshot(`
      {
        "length": 1,
        "message": "unexpected "x" at column 9: expected a 32-bit constant",
        "offset": 8,
      }
    `);
    expect(parseError('1\n6 0 0 4294967296\n')).toMatchInlineSnapshot(`
      {
        "length": 10,
        "message": "a 32-bit constant 4294967296 at column 9 is out of range (at most 4294967295)",
        "offset": 8,
      }
    `);
  });
  it('rejects a count that does not match the lines', () => {
    expect(parseError('3\n6 0 0 0\n')).toMatchInlineSnapshot(`
      {
        "length": 1,
        "message": "cBPF text has 1 instruction lines but the count says 3",
        "offset": 10,
      }
    `);
    expect(parseError('')).toMatchInlineSnapshot(`
      {
        "length": 1,
        "message": "empty cBPF text: expected an instruction count",
        "offset": 0,
      }
    `);
  });
});
