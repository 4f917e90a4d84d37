// Code generation from the syntax tree to libpcap's block graph, following gencode.c for DLT_EN10MB.
import type { Arth, Expr, IdValue, Qual, Span } from './ast.js';
import {
  BPF_ABS,
  BPF_ADD,
  BPF_ALU,
  BPF_AND,
  BPF_B,
  BPF_DIV,
  BPF_H,
  BPF_IMM,
  BPF_IND,
  BPF_JA,
  BPF_JEQ,
  BPF_JGE,
  BPF_JGT,
  BPF_JMP,
  BPF_JSET,
  BPF_K,
  BPF_LD,
  BPF_LDX,
  BPF_LEN,
  BPF_LSH,
  BPF_MEM,
  BPF_MEMWORDS,
  BPF_MISC,
  BPF_MOD,
  BPF_MSH,
  BPF_MUL,
  BPF_NEG,
  BPF_OR,
  BPF_RSH,
  BPF_ST,
  BPF_STX,
  BPF_SUB,
  BPF_TAX,
  BPF_TXA,
  BPF_W,
  BPF_X,
  BPF_XOR,
} from './cbpf.js';
import { FilterSyntaxError, FilterUnsupportedError } from './errors.js';
import { genAnd, genNot, genOr, newBlock, newStmt, type Block, type Stmt } from './ir.js';
import { parseIpv6 } from './lexer.js';
import {
  ETHER_PROTO_NAMES,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  ISO_PROTO_NAMES,
  LLC_PROTO_NAMES,
  PROTO_UNDEF,
  lookupIpProto,
  lookupNetwork,
  lookupPort,
  lookupPortRange,
} from './names.js';

const ETHERMTU = 1500;
const ETHERTYPE_IP = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const ETHERTYPE_REVARP = 0x8035;
const ETHERTYPE_ATALK = 0x809b;
const ETHERTYPE_AARP = 0x80f3;
const ETHERTYPE_DN = 0x6003;
const ETHERTYPE_SCA = 0x6007;
const ETHERTYPE_LAT = 0x6004;
const ETHERTYPE_MOPDL = 0x6001;
const ETHERTYPE_MOPRC = 0x6002;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_IPX = 0x8137;
const ETHERTYPE_8021Q = 0x8100;
const ETHERTYPE_8021AD = 0x88a8;
const ETHERTYPE_8021QINQ = 0x9100;
const ETHERTYPE_MPLS = 0x8847;
const ETHERTYPE_PPPOED = 0x8863;
const ETHERTYPE_PPPOES = 0x8864;
const ETHERTYPE_NS = 0x0600;
const ETHERTYPE_TEB = 0x6558;
const PPP_IP = 0x0021;
const PPP_IPV6 = 0x0057;
const PPP_DECNET = 0x0027;
const PPP_APPLE = 0x0029;
const PPP_NS = 0x0025;
const PPP_OSI = 0x0023;
const PPP_BRPDU = 0x0031;
const PPP_IPX = 0x002b;
const PPP_MPLS_UCAST = 0x0281;
const GENEVE_PORT = 6081;
const LLCSAP_IP = 0x06;
const LLCSAP_ISONS = 0xfe;
const LLCSAP_NETBEUI = 0xf0;
const LLCSAP_IPX = 0xe0;
const LLCSAP_8021D = 0x42;
const LLCSAP_SNAP = 0xaa;
const ISO8473_CLNP = 0x81;
const ISO9542_ESIS = 0x82;
const ISO10589_ISIS = 0x83;
const ISIS_L1_LAN_IIH = 15;
const ISIS_L2_LAN_IIH = 16;
const ISIS_PTP_IIH = 17;
const ISIS_L1_LSP = 18;
const ISIS_L2_LSP = 20;
const ISIS_L1_CSNP = 24;
const ISIS_L2_CSNP = 25;
const ISIS_L1_PSNP = 26;
const ISIS_L2_PSNP = 27;
const IPPROTO_ICMP = 1;
const IPPROTO_IGMP = 2;
const IPPROTO_IGRP = 9;
const IPPROTO_PIM = 103;
const IPPROTO_VRRP = 112;
const IPPROTO_CARP = 112;
const IPPROTO_ICMPV6 = 58;
const IPPROTO_AH = 51;
const IPPROTO_ESP = 50;
const IPPROTO_FRAGMENT = 44;
const IPPROTO_NONE = 59;
const IPPROTO_HOPOPTS = 0;
const IPPROTO_DSTOPTS = 60;
const IPPROTO_ROUTING = 43;

type OffRel =
  | 'packet'
  | 'linkhdr'
  | 'llc'
  | 'prevmplshdr'
  | 'linkpl'
  | 'linkpl_nosnap'
  | 'linktype'
  | 'tran_ipv4'
  | 'tran_ipv6';

/**
 * An offset into the packet (libpcap's bpf_abs_offset): a constant, plus, when
 * `isVariable`, a value computed at run time into scratch register `reg`
 * (-1 until one is allocated).
 */
interface AbsOffset {
  constantPart: number;
  isVariable: boolean;
  reg: number;
}

/** The link layers an expression can be in: Ethernet, or PPP after `pppoes`. */
type LinkType = 'EN10MB' | 'PPP';

/** libpcap's ethertype_to_ppptype: the PPP protocol number for an Ethernet type or LLC SAP. */
function ethertypeToPpptype(llProto: number): number {
  switch (llProto) {
    case ETHERTYPE_IP:
      return PPP_IP;
    case ETHERTYPE_IPV6:
      return PPP_IPV6;
    case ETHERTYPE_DN:
      return PPP_DECNET;
    case ETHERTYPE_ATALK:
      return PPP_APPLE;
    case ETHERTYPE_NS:
      return PPP_NS;
    case LLCSAP_ISONS:
      return PPP_OSI;
    case LLCSAP_8021D:
      return PPP_BRPDU;
    case LLCSAP_IPX:
      return PPP_IPX;
    default:
      return llProto;
  }
}

interface ArthValue {
  s: Stmt[];
  regno: number;
  b: Block | null;
}

/** Result of code generation: the expression's block (not yet closed) and whether optimizing is allowed. */
export interface GenResult {
  block: Block | null;
  noOptimize: boolean;
}

const JMP = (op: number): number => BPF_JMP | op | BPF_K;

class CodeGen {
  // Offsets for DLT_EN10MB (init_linktype), shifted by vlan, mpls, pppoes and geneve as they are parsed.
  private offLinktype: AbsOffset = { constantPart: 12, isVariable: false, reg: -1 };
  private offLinkpl: AbsOffset = { constantPart: 14, isVariable: false, reg: -1 };
  private offLinkhdr: AbsOffset = { constantPart: 0, isVariable: false, reg: -1 };
  private offNl = 0;
  private offNlNosnap = 3;
  private linktype: LinkType = 'EN10MB';
  /** Set by `geneve` until the next encapsulation: MAC address tests first check that an inner Ethernet header is present. */
  private isGeneve = false;
  private labelStackDepth = 0;
  private vlanStackDepth = 0;
  private readonly regused = new Array<boolean>(BPF_MEMWORDS).fill(false);
  private curreg = 0;
  noOptimize = false;
  /** Span blamed by errors raised while generating the current primitive. */
  private at: Span = { offset: 0, length: 1 };

  constructor(private readonly expression: string) {}

  error(message: string, span: Span = this.at): never {
    throw new FilterSyntaxError(`${message} at column ${span.offset + 1}`, {
      expression: this.expression,
      offset: span.offset,
      length: span.length,
    });
  }
  unsupported(message: string, span: Span = this.at): never {
    throw new FilterUnsupportedError(`${message} at column ${span.offset + 1}`, {
      expression: this.expression,
      offset: span.offset,
      length: span.length,
    });
  }

  // ---- expressions, generated in source order as libpcap's parser actions run ----

  gen(e: Expr): Block {
    // Iterative over and/or chains so long expressions do not exhaust the stack.
    switch (e.kind) {
      case 'and':
      case 'or': {
        const chain: Expr[] = [];
        let cur: Expr = e;
        while ((cur.kind === 'and' || cur.kind === 'or') && chain.length < 1e6) {
          chain.push(cur);
          cur = cur.left;
        }
        let acc = this.gen(cur);
        for (let i = chain.length - 1; i >= 0; i--) {
          const node = chain[i] as Extract<Expr, { kind: 'and' | 'or' }>;
          const right = this.gen(node.right);
          if (node.kind === 'and') genAnd(acc, right);
          else genOr(acc, right);
          acc = right;
        }
        return acc;
      }
      case 'not': {
        const b = this.gen(e.operand);
        genNot(b);
        return b;
      }
      case 'id':
        this.at = e.span;
        return this.genId(e.q, e.value, e.valueSpan);
      case 'pname':
        this.at = e.span;
        return this.genProtoAbbrev(e.proto);
      case 'relation': {
        this.at = e.span;
        const a0 = this.genArth(e.left);
        const a1 = this.genArth(e.right);
        this.at = e.span;
        return this.genRelation(
          e.op === 'jgt' ? BPF_JGT : e.op === 'jge' ? BPF_JGE : BPF_JEQ,
          a0,
          a1,
          e.reversed,
        );
      }
      case 'broadcast':
        this.at = e.span;
        return this.genBroadcast(e.proto);
      case 'multicast':
        this.at = e.span;
        return this.genMulticast(e.proto);
      case 'less': {
        const b = this.genLen(BPF_JGT, e.value);
        genNot(b);
        return b;
      }
      case 'greater':
        return this.genLen(BPF_JGE, e.value);
      case 'byte':
        return this.genByteop(e.op, e.index, e.value);
      case 'vlan':
        this.at = e.valueSpan ?? e.span;
        return this.genVlan(e.value ?? 0, e.value !== undefined);
      case 'mpls':
        this.at = e.valueSpan ?? e.span;
        return this.genMpls(e.value ?? 0, e.value !== undefined);
      case 'pppoed':
        return this.genLinktype(ETHERTYPE_PPPOED);
      case 'pppoes':
        this.at = e.valueSpan ?? e.span;
        return this.genPppoes(e.value ?? 0, e.value !== undefined);
      case 'geneve':
        this.at = e.valueSpan ?? e.span;
        return this.genGeneve(e.value ?? 0, e.value !== undefined);
      case 'llc':
        this.at = e.span;
        return this.genLlc(e.subtype);
    }
  }

  // ---- loads and comparisons ----

  private genLoadA(offrel: OffRel, offset: number, size: number): Stmt[] {
    switch (offrel) {
      case 'packet':
        return [newStmt(BPF_LD | BPF_ABS | size, offset >>> 0)];
      case 'linkhdr':
        return this.genLoadAbsoffsetrel(this.offLinkhdr, offset, size);
      case 'llc':
        return this.genLoadAbsoffsetrel(this.offLinkpl, offset, size);
      case 'prevmplshdr':
        return this.genLoadAbsoffsetrel(this.offLinkpl, this.offNl - 4 + offset, size);
      case 'linkpl':
        return this.genLoadAbsoffsetrel(this.offLinkpl, this.offNl + offset, size);
      case 'linkpl_nosnap':
        return this.genLoadAbsoffsetrel(this.offLinkpl, this.offNlNosnap + offset, size);
      case 'linktype':
        return this.genLoadAbsoffsetrel(this.offLinktype, offset, size);
      case 'tran_ipv4': {
        const s = this.genLoadxIphdrlen();
        s.push(
          newStmt(
            BPF_LD | BPF_IND | size,
            (this.offLinkpl.constantPart + this.offNl + offset) >>> 0,
          ),
        );
        return s;
      }
      case 'tran_ipv6':
        return this.genLoadAbsoffsetrel(this.offLinkpl, this.offNl + 40 + offset, size);
    }
  }

  /** Loads the variable part of an offset into X (allocating its register on first use); empty when the offset is constant. */
  private genAbsOffsetVarpart(off: AbsOffset): Stmt[] | null {
    if (!off.isVariable) return null;
    if (off.reg === -1) off.reg = this.allocReg();
    return [newStmt(BPF_LDX | BPF_MEM, off.reg)];
  }

  private genLoadAbsoffsetrel(off: AbsOffset, offset: number, size: number): Stmt[] {
    const s = this.genAbsOffsetVarpart(off);
    const k = (off.constantPart + offset) >>> 0;
    if (s === null) return [newStmt(BPF_LD | BPF_ABS | size, k)];
    s.push(newStmt(BPF_LD | BPF_IND | size, k));
    return s;
  }

  /** Puts the IPv4 header length, plus any variable part of the link-layer payload offset, in X. */
  private genLoadxIphdrlen(): Stmt[] {
    const base = (this.offLinkpl.constantPart + this.offNl) >>> 0;
    const s = this.genAbsOffsetVarpart(this.offLinkpl);
    if (s === null) return [newStmt(BPF_LDX | BPF_MSH | BPF_B, base)];
    // No 4*([k]&0xf) form with a variable offset: compute the length in A and add X.
    s.push(
      newStmt(BPF_LD | BPF_IND | BPF_B, base),
      newStmt(BPF_ALU | BPF_AND | BPF_K, 0xf),
      newStmt(BPF_ALU | BPF_LSH | BPF_K, 2),
      newStmt(BPF_ALU | BPF_ADD | BPF_X),
      newStmt(BPF_MISC | BPF_TAX),
    );
    return s;
  }

  private genNcmp(
    offrel: OffRel,
    offset: number,
    size: number,
    mask: number,
    jtype: number,
    reverse: boolean,
    v: number,
  ): Block {
    const s = this.genLoadA(offrel, offset, size);
    if (mask >>> 0 !== 0xffffffff) s.push(newStmt(BPF_ALU | BPF_AND | BPF_K, mask >>> 0));
    const b = newBlock(JMP(jtype), v >>> 0);
    b.stmts = s;
    if (reverse && (jtype === BPF_JGT || jtype === BPF_JGE)) genNot(b);
    return b;
  }
  private genCmp(o: OffRel, off: number, size: number, v: number): Block {
    return this.genNcmp(o, off, size, 0xffffffff, BPF_JEQ, false, v);
  }
  private genCmpGt(o: OffRel, off: number, size: number, v: number): Block {
    return this.genNcmp(o, off, size, 0xffffffff, BPF_JGT, false, v);
  }
  private genCmpGe(o: OffRel, off: number, size: number, v: number): Block {
    return this.genNcmp(o, off, size, 0xffffffff, BPF_JGE, false, v);
  }
  private genCmpLt(o: OffRel, off: number, size: number, v: number): Block {
    return this.genNcmp(o, off, size, 0xffffffff, BPF_JGE, true, v);
  }
  private genCmpLe(o: OffRel, off: number, size: number, v: number): Block {
    return this.genNcmp(o, off, size, 0xffffffff, BPF_JGT, true, v);
  }
  private genMcmp(o: OffRel, off: number, size: number, v: number, mask: number): Block {
    return this.genNcmp(o, off, size, mask, BPF_JEQ, false, v);
  }

  private genBcmp(offrel: OffRel, offset: number, bytes: Uint8Array | number[]): Block {
    let size = bytes.length;
    let b: Block | null = null;
    const v = (i: number, n: number): number => {
      let x = 0;
      for (let j = 0; j < n; j++) x = x * 256 + bytes[i + j];
      return x >>> 0;
    };
    while (size >= 4) {
      const tmp = this.genCmp(offrel, offset + size - 4, BPF_W, v(size - 4, 4));
      if (b !== null) genAnd(b, tmp);
      b = tmp;
      size -= 4;
    }
    while (size >= 2) {
      const tmp = this.genCmp(offrel, offset + size - 2, BPF_H, v(size - 2, 2));
      if (b !== null) genAnd(b, tmp);
      b = tmp;
      size -= 2;
    }
    if (size > 0) {
      const tmp = this.genCmp(offrel, offset, BPF_B, bytes[0]);
      if (b !== null) genAnd(b, tmp);
      b = tmp;
    }
    return b!;
  }

  // ---- link layer ----

  private genSnap(orgcode: number, ptype: number): Block {
    return this.genBcmp('llc', 0, [
      LLCSAP_SNAP,
      LLCSAP_SNAP,
      0x03,
      (orgcode >> 16) & 0xff,
      (orgcode >> 8) & 0xff,
      orgcode & 0xff,
      (ptype >> 8) & 0xff,
      ptype & 0xff,
    ]);
  }

  private genEtherLinktype(llProto: number): Block {
    let b0: Block;
    let b1: Block;
    switch (llProto) {
      case LLCSAP_ISONS:
      case LLCSAP_IP:
      case LLCSAP_NETBEUI:
        b0 = this.genCmpGt('linktype', 0, BPF_H, ETHERMTU);
        genNot(b0);
        b1 = this.genCmp('llc', 0, BPF_H, (llProto << 8) | llProto);
        genAnd(b0, b1);
        return b1;
      case LLCSAP_IPX:
        b0 = this.genCmp('llc', 0, BPF_B, LLCSAP_IPX);
        b1 = this.genCmp('llc', 0, BPF_H, 0xffff);
        genOr(b0, b1);
        b0 = this.genSnap(0x000000, ETHERTYPE_IPX);
        genOr(b0, b1);
        b0 = this.genCmpGt('linktype', 0, BPF_H, ETHERMTU);
        genNot(b0);
        genAnd(b0, b1);
        b0 = this.genCmp('linktype', 0, BPF_H, ETHERTYPE_IPX);
        genOr(b0, b1);
        return b1;
      case ETHERTYPE_ATALK:
      case ETHERTYPE_AARP:
        b0 = this.genCmpGt('linktype', 0, BPF_H, ETHERMTU);
        genNot(b0);
        b1 =
          llProto === ETHERTYPE_ATALK
            ? this.genSnap(0x080007, ETHERTYPE_ATALK)
            : this.genSnap(0x000000, ETHERTYPE_AARP);
        genAnd(b0, b1);
        b0 = this.genCmp('linktype', 0, BPF_H, llProto);
        genOr(b0, b1);
        return b1;
      default:
        if (llProto <= ETHERMTU) {
          b0 = this.genCmpGt('linktype', 0, BPF_H, ETHERMTU);
          genNot(b0);
          b1 = this.genCmp('linktype', 2, BPF_B, llProto);
          genAnd(b0, b1);
          return b1;
        }
        return this.genCmp('linktype', 0, BPF_H, llProto);
    }
  }

  private genLinktype(llProto: number): Block {
    if (this.labelStackDepth > 0) return this.genMplsLinktype(llProto);
    if (this.linktype === 'PPP')
      return this.genCmp('linktype', 0, BPF_H, ethertypeToPpptype(llProto));
    // After `geneve` too: its protocol field is an Ethernet type, and without an inner
    // Ethernet header the type offset points at it; no check that the header is there.
    return this.genEtherLinktype(llProto);
  }

  /** libpcap's gen_prevlinkhdr_check: after `geneve`, that an inner Ethernet header is present. */
  private genPrevlinkhdrCheck(): Block | null {
    if (!this.isGeneve) return null;
    // Geneve offsets are purely variable, so comparing their registers is enough.
    const b0 = newBlock(BPF_JMP | BPF_JEQ | BPF_X, 0);
    b0.stmts = [
      newStmt(BPF_LD | BPF_MEM, this.offLinkhdr.reg),
      newStmt(BPF_LDX | BPF_MEM, this.offLinkpl.reg),
    ];
    genNot(b0);
    return b0;
  }

  /** libpcap's PUSH_LINKHDR: the link layer of an encapsulated frame. */
  private pushLinkhdr(
    linktype: LinkType,
    isVariable: boolean,
    constantPart: number,
    reg: number,
  ): void {
    this.linktype = linktype;
    this.offLinkhdr = { constantPart, isVariable, reg };
    this.isGeneve = false;
  }

  private genMplsLinktype(llProto: number): Block {
    if (llProto === ETHERTYPE_IP || llProto === ETHERTYPE_IPV6) {
      const b0 = this.genMcmp('linkpl', -2, BPF_B, 0x01, 0x01);
      const b1 = this.genMcmp('linkpl', 0, BPF_B, llProto === ETHERTYPE_IP ? 0x40 : 0x60, 0xf0);
      genAnd(b0, b1);
      return b1;
    }
    return this.error('unsupported protocol over mpls');
  }

  // ---- protocols ----

  private genProtoAbbrev(proto: string): Block {
    let b0: Block;
    let b1: Block;
    const orAll = (vals: number[]): Block => {
      b1 = this.genProto(vals[1], 'isis', 'default');
      b0 = this.genProto(vals[0], 'isis', 'default');
      // libpcap: b0 = first, b1 = second, gen_or(b0, b1); then each further b0 or'ed in front.
      genOr(b0, b1);
      for (const v of vals.slice(2)) {
        b0 = this.genProto(v, 'isis', 'default');
        genOr(b0, b1);
      }
      return b1;
    };
    switch (proto) {
      case 'sctp':
        return this.genProto(IPPROTO_SCTP, 'default', 'default');
      case 'tcp':
        return this.genProto(IPPROTO_TCP, 'default', 'default');
      case 'udp':
        return this.genProto(IPPROTO_UDP, 'default', 'default');
      case 'icmp':
        return this.genProto(IPPROTO_ICMP, 'ip', 'default');
      case 'igmp':
        return this.genProto(IPPROTO_IGMP, 'ip', 'default');
      case 'igrp':
        return this.genProto(IPPROTO_IGRP, 'ip', 'default');
      case 'pim':
        return this.genProto(IPPROTO_PIM, 'default', 'default');
      case 'vrrp':
        return this.genProto(IPPROTO_VRRP, 'ip', 'default');
      case 'carp':
        return this.genProto(IPPROTO_CARP, 'ip', 'default');
      case 'ip':
        return this.genLinktype(ETHERTYPE_IP);
      case 'arp':
        return this.genLinktype(ETHERTYPE_ARP);
      case 'rarp':
        return this.genLinktype(ETHERTYPE_REVARP);
      case 'link':
        return this.error('link layer applied in wrong context');
      case 'atalk':
        return this.genLinktype(ETHERTYPE_ATALK);
      case 'aarp':
        return this.genLinktype(ETHERTYPE_AARP);
      case 'decnet':
        return this.genLinktype(ETHERTYPE_DN);
      case 'sca':
        return this.genLinktype(ETHERTYPE_SCA);
      case 'lat':
        return this.genLinktype(ETHERTYPE_LAT);
      case 'mopdl':
        return this.genLinktype(ETHERTYPE_MOPDL);
      case 'moprc':
        return this.genLinktype(ETHERTYPE_MOPRC);
      case 'ip6':
        return this.genLinktype(ETHERTYPE_IPV6);
      case 'icmp6':
        return this.genProto(IPPROTO_ICMPV6, 'ip6', 'default');
      case 'ah':
        return this.genProto(IPPROTO_AH, 'default', 'default');
      case 'esp':
        return this.genProto(IPPROTO_ESP, 'default', 'default');
      case 'iso':
        return this.genLinktype(LLCSAP_ISONS);
      case 'esis':
        return this.genProto(ISO9542_ESIS, 'iso', 'default');
      case 'isis':
        return this.genProto(ISO10589_ISIS, 'iso', 'default');
      case 'l1':
        return orAll([ISIS_L1_LAN_IIH, ISIS_PTP_IIH, ISIS_L1_LSP, ISIS_L1_CSNP, ISIS_L1_PSNP]);
      case 'l2':
        return orAll([ISIS_L2_LAN_IIH, ISIS_PTP_IIH, ISIS_L2_LSP, ISIS_L2_CSNP, ISIS_L2_PSNP]);
      case 'iih':
        return orAll([ISIS_L1_LAN_IIH, ISIS_L2_LAN_IIH, ISIS_PTP_IIH]);
      case 'lsp':
        return orAll([ISIS_L1_LSP, ISIS_L2_LSP]);
      case 'snp':
        return orAll([ISIS_L1_CSNP, ISIS_L2_CSNP, ISIS_L1_PSNP, ISIS_L2_PSNP]);
      case 'csnp':
        return orAll([ISIS_L1_CSNP, ISIS_L2_CSNP]);
      case 'psnp':
        return orAll([ISIS_L1_PSNP, ISIS_L2_PSNP]);
      case 'clnp':
        return this.genProto(ISO8473_CLNP, 'iso', 'default');
      case 'stp':
        return this.genLinktype(LLCSAP_8021D);
      case 'ipx':
        return this.genLinktype(LLCSAP_IPX);
      case 'netbeui':
        return this.genLinktype(LLCSAP_NETBEUI);
      case 'radio':
        return this.error("'radio' is not a valid protocol type");
      default:
        return this.error(`unknown protocol ${proto}`);
    }
  }

  private genProto(v: number, proto: string, dir: string): Block {
    if (dir !== 'default') this.error("direction applied to 'proto'");
    let b0: Block;
    let b1: Block;
    let b2: Block;
    switch (proto) {
      case 'default':
        b0 = this.genProto(v, 'ip', dir);
        b1 = this.genProto(v, 'ip6', dir);
        genOr(b0, b1);
        return b1;
      case 'link':
        return this.genLinktype(v);
      case 'ip':
        b0 = this.genLinktype(ETHERTYPE_IP);
        b1 = this.genCmp('linkpl', 9, BPF_B, v);
        genAnd(b0, b1);
        return b1;
      case 'ip6':
        b0 = this.genLinktype(ETHERTYPE_IPV6);
        b2 = this.genCmp('linkpl', 6, BPF_B, IPPROTO_FRAGMENT);
        b1 = this.genCmp('linkpl', 40, BPF_B, v);
        genAnd(b2, b1);
        b2 = this.genCmp('linkpl', 6, BPF_B, v);
        genOr(b2, b1);
        genAnd(b0, b1);
        return b1;
      case 'iso':
        b0 = this.genLinktype(LLCSAP_ISONS);
        b1 = this.genCmp('linkpl_nosnap', 0, BPF_B, v);
        genAnd(b0, b1);
        return b1;
      case 'isis':
        b0 = this.genProto(ISO10589_ISIS, 'iso', 'default');
        b1 = this.genCmp('linkpl_nosnap', 4, BPF_B, v);
        genAnd(b0, b1);
        return b1;
      case 'arp':
        return this.error('arp does not encapsulate another protocol');
      case 'rarp':
        return this.error('rarp does not encapsulate another protocol');
      case 'atalk':
        return this.error('AppleTalk encapsulation is not specifiable');
      case 'decnet':
        return this.error('DECNET encapsulation is not specifiable');
      case 'lat':
        return this.error('LAT does not encapsulate another protocol');
      case 'sca':
        return this.error('SCA does not encapsulate another protocol');
      case 'moprc':
        return this.error('MOPRC does not encapsulate another protocol');
      case 'mopdl':
        return this.error('MOPDL does not encapsulate another protocol');
      case 'clnp':
        return this.error("'clnp proto' is not supported");
      default:
        return this.error(`'${proto} proto' is bogus`);
    }
  }

  private genIpfrag(): Block {
    const b = newBlock(JMP(BPF_JSET), 0x1fff);
    b.stmts = this.genLoadA('linkpl', 6, BPF_H);
    genNot(b);
    return b;
  }

  private genProtochain(v: number, proto: string): Block {
    // libpcap allocates the scratch register first, and leaks it on the 'default' path.
    const reg2 = this.allocReg();
    if (proto === 'default') {
      const b0 = this.genProtochain(v, 'ip');
      const b = this.genProtochain(v, 'ip6');
      genOr(b0, b);
      return b;
    }
    if (proto !== 'ip' && proto !== 'ip6')
      return this.error("bad protocol applied for 'protochain'");
    if (this.offLinkpl.isVariable)
      return this.error("'protochain' not supported with variable length headers");
    // The loop jumps backwards, which the optimizer cannot handle.
    this.noOptimize = true;
    const s: Stmt[] = [newStmt(0)];
    let b0: Block;
    const base = this.offLinkpl.constantPart + this.offNl;
    if (proto === 'ip') {
      b0 = this.genLinktype(ETHERTYPE_IP);
      s.push(newStmt(BPF_LD | BPF_ABS | BPF_B, base + 9));
      s.push(newStmt(BPF_LDX | BPF_MSH | BPF_B, base));
    } else {
      b0 = this.genLinktype(ETHERTYPE_IPV6);
      s.push(newStmt(BPF_LD | BPF_ABS | BPF_B, base + 6));
      s.push(newStmt(BPF_LDX | BPF_IMM, 40));
    }
    const again = s.length;
    const fix5 = s.length;
    s.push(newStmt(BPF_JMP | BPF_JEQ | BPF_K, v));
    const fix2 = s.length;
    s.push(newStmt(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_NONE));
    s[fix5].jf = s[fix2];
    let fix3 = 0;
    if (proto === 'ip6') {
      const v6start = s.length;
      for (const k of [IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT]) {
        const st = newStmt(BPF_JMP | BPF_JEQ | BPF_K, k);
        s[s.length - 1].jf = st;
        s.push(st);
      }
      fix3 = s.length - 1;
      const v6end = fix3;
      const v6advance = s.length;
      s.push(newStmt(BPF_LD | BPF_IND | BPF_B, base));
      s.push(newStmt(BPF_ST, reg2));
      s.push(newStmt(BPF_LD | BPF_IND | BPF_B, base + 1));
      s.push(newStmt(BPF_ALU | BPF_ADD | BPF_K, 1));
      s.push(newStmt(BPF_ALU | BPF_MUL | BPF_K, 8));
      s.push(newStmt(BPF_ALU | BPF_ADD | BPF_X, 0));
      s.push(newStmt(BPF_MISC | BPF_TAX));
      s.push(newStmt(BPF_LD | BPF_MEM, reg2));
      const i = s.length;
      s.push(newStmt(BPF_JMP | BPF_JA, (again - i - 1) >>> 0));
      for (let j = v6start; j <= v6end; j++) s[j].jt = s[v6advance];
    } else {
      const nop = newStmt(BPF_ALU | BPF_ADD | BPF_K, 0);
      s[fix2].jf = nop;
      s.push(nop);
    }
    const ahcheck = s.length;
    s.push(newStmt(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_AH));
    if (fix3) s[fix3].jf = s[ahcheck];
    const fix4 = ahcheck;
    const txa = newStmt(BPF_MISC | BPF_TXA);
    s[fix4].jt = txa;
    s.push(txa);
    s.push(newStmt(BPF_LD | BPF_IND | BPF_B, base));
    s.push(newStmt(BPF_ST, reg2));
    s.push(newStmt(BPF_MISC | BPF_TXA));
    s.push(newStmt(BPF_ALU | BPF_ADD | BPF_K, 1));
    s.push(newStmt(BPF_MISC | BPF_TAX));
    s.push(newStmt(BPF_LD | BPF_IND | BPF_B, base));
    s.push(newStmt(BPF_ALU | BPF_ADD | BPF_K, 2));
    s.push(newStmt(BPF_ALU | BPF_MUL | BPF_K, 4));
    s.push(newStmt(BPF_MISC | BPF_TAX));
    s.push(newStmt(BPF_LD | BPF_MEM, reg2));
    const i = s.length;
    s.push(newStmt(BPF_JMP | BPF_JA, (again - i - 1) >>> 0));
    const end = newStmt(BPF_ALU | BPF_ADD | BPF_K, 0);
    s.push(end);
    s[fix2].jt = end;
    s[fix4].jf = end;
    s[fix5].jt = end;
    const b = newBlock(JMP(BPF_JEQ), v);
    b.stmts = s.slice(1);
    this.freeReg(reg2);
    genAnd(b0, b);
    return b;
  }

  // ---- hosts and networks ----

  private genHostop(
    addr: number,
    mask: number,
    dir: string,
    llProto: number,
    srcOff: number,
    dstOff: number,
  ): Block {
    let offset: number;
    switch (dir) {
      case 'src':
        offset = srcOff;
        break;
      case 'dst':
        offset = dstOff;
        break;
      case 'and':
      case 'default':
      case 'or': {
        const b0 = this.genHostop(addr, mask, 'src', llProto, srcOff, dstOff);
        const b1 = this.genHostop(addr, mask, 'dst', llProto, srcOff, dstOff);
        if (dir === 'and') genAnd(b0, b1);
        else genOr(b0, b1);
        return b1;
      }
      default:
        return this.error(`'${dir}' is not a valid qualifier for addresses`);
    }
    const b0 = this.genLinktype(llProto);
    const b1 = this.genMcmp('linkpl', offset, BPF_W, addr, mask);
    genAnd(b0, b1);
    return b1;
  }

  private genHost(addr: number, mask: number, proto: string, dir: string, type: string): Block {
    const typestr = type === 'net' ? 'net' : 'host';
    switch (proto) {
      case 'default': {
        let b0 = this.genHost(addr, mask, 'ip', dir, type);
        if (this.labelStackDepth === 0) {
          const b1 = this.genHost(addr, mask, 'arp', dir, type);
          genOr(b0, b1);
          b0 = this.genHost(addr, mask, 'rarp', dir, type);
          genOr(b1, b0);
        }
        return b0;
      }
      case 'link':
        return this.error(`link-layer modifier applied to ${typestr}`);
      case 'ip':
        return this.genHostop(addr, mask, dir, ETHERTYPE_IP, 12, 16);
      case 'rarp':
        return this.genHostop(addr, mask, dir, ETHERTYPE_REVARP, 14, 24);
      case 'arp':
        return this.genHostop(addr, mask, dir, ETHERTYPE_ARP, 14, 24);
      case 'atalk':
        return this.error('AppleTalk host filtering not implemented');
      case 'decnet':
        return this.genDnhostop(addr, dir);
      case 'lat':
        return this.error('LAT host filtering not implemented');
      case 'sca':
        return this.error('SCA host filtering not implemented');
      case 'moprc':
        return this.error('MOPRC host filtering not implemented');
      case 'mopdl':
        return this.error('MOPDL host filtering not implemented');
      case 'iso':
        return this.error('ISO host filtering not implemented');
      case 'ipx':
        return this.error('IPX host filtering not implemented');
      case 'ip6':
      case 'icmp6':
      case 'ah':
      case 'esp':
        return this.error(`'${proto}' modifier applied to ip ${typestr}`);
      default:
        return this.error(`'${proto}' modifier applied to ${typestr}`);
    }
  }

  private genHostop6(
    addr: Uint8Array,
    mask: Uint8Array,
    dir: string,
    srcOff: number,
    dstOff: number,
  ): Block {
    let offset: number;
    switch (dir) {
      case 'src':
        offset = srcOff;
        break;
      case 'dst':
        offset = dstOff;
        break;
      case 'and':
      case 'default':
      case 'or': {
        const b0 = this.genHostop6(addr, mask, 'src', srcOff, dstOff);
        const b1 = this.genHostop6(addr, mask, 'dst', srcOff, dstOff);
        if (dir === 'and') genAnd(b0, b1);
        else genOr(b0, b1);
        return b1;
      }
      default:
        return this.error(`'${dir}' is not a valid qualifier for addresses`);
    }
    const word = (a: Uint8Array, i: number): number =>
      ((a[4 * i] << 24) | (a[4 * i + 1] << 16) | (a[4 * i + 2] << 8) | a[4 * i + 3]) >>> 0;
    const b1 = this.genMcmp('linkpl', offset + 12, BPF_W, word(addr, 3), word(mask, 3));
    let b0 = this.genMcmp('linkpl', offset + 8, BPF_W, word(addr, 2), word(mask, 2));
    genAnd(b0, b1);
    b0 = this.genMcmp('linkpl', offset + 4, BPF_W, word(addr, 1), word(mask, 1));
    genAnd(b0, b1);
    b0 = this.genMcmp('linkpl', offset + 0, BPF_W, word(addr, 0), word(mask, 0));
    genAnd(b0, b1);
    b0 = this.genLinktype(ETHERTYPE_IPV6);
    genAnd(b0, b1);
    return b1;
  }

  private genHost6(
    addr: Uint8Array,
    mask: Uint8Array,
    proto: string,
    dir: string,
    type: string,
  ): Block {
    const typestr = type === 'net' ? 'net' : 'host';
    switch (proto) {
      case 'default':
      case 'ip6':
        return this.genHostop6(addr, mask, dir, 8, 24);
      case 'link':
        return this.error(`link-layer modifier applied to ip6 ${typestr}`);
      case 'atalk':
        return this.error(`AppleTalk modifier applied to ip6 ${typestr}`);
      default:
        return this.error(`'${proto}' modifier applied to ip6 ${typestr}`);
    }
  }

  private genEhostop(eaddr: Uint8Array, dir: string): Block {
    switch (dir) {
      case 'src':
        return this.genBcmp('linkhdr', 6, eaddr);
      case 'dst':
        return this.genBcmp('linkhdr', 0, eaddr);
      case 'and':
      case 'default':
      case 'or': {
        const b0 = this.genEhostop(eaddr, 'src');
        const b1 = this.genEhostop(eaddr, 'dst');
        if (dir === 'and') genAnd(b0, b1);
        else genOr(b0, b1);
        return b1;
      }
      default:
        return this.error(`'${dir}' is not a valid qualifier for MAC addresses`);
    }
  }

  // ---- ports ----

  private genPortatom(off: number, v: number): Block {
    return this.genCmp('tran_ipv4', off, BPF_H, v);
  }
  private genPortatom6(off: number, v: number): Block {
    return this.genCmp('tran_ipv6', off, BPF_H, v);
  }
  private genPortrangeatom(off: number, v1: number, v2: number, v6: boolean): Block {
    if (v1 > v2) [v1, v2] = [v2, v1];
    const rel: OffRel = v6 ? 'tran_ipv6' : 'tran_ipv4';
    const b1 = this.genCmpGe(rel, off, BPF_H, v1);
    const b2 = this.genCmpLe(rel, off, BPF_H, v2);
    genAnd(b1, b2);
    return b2;
  }

  private genDirAtoms(dir: string, atom: (off: number) => Block): Block {
    switch (dir) {
      case 'src':
        return atom(0);
      case 'dst':
        return atom(2);
      case 'and':
      case 'default':
      case 'or': {
        const tmp = atom(0);
        const b1 = atom(2);
        if (dir === 'and') genAnd(tmp, b1);
        else genOr(tmp, b1);
        return b1;
      }
      default:
        return this.error(`'${dir}' is not a valid qualifier for ports`);
    }
  }

  private genPortop(atom: (off: number) => Block, proto: number, dir: string): Block {
    const tmp = this.genCmp('linkpl', 9, BPF_B, proto);
    const b0 = this.genIpfrag();
    genAnd(tmp, b0);
    const b1 = this.genDirAtoms(dir, atom);
    genAnd(b0, b1);
    return b1;
  }
  private genPortop6(atom: (off: number) => Block, proto: number, dir: string): Block {
    const b0 = this.genCmp('linkpl', 6, BPF_B, proto);
    const b1 = this.genDirAtoms(dir, atom);
    genAnd(b0, b1);
    return b1;
  }

  private genPortGeneric(
    v6: boolean,
    atom: (off: number) => Block,
    ipProto: number,
    dir: string,
  ): Block {
    const b0 = this.genLinktype(v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IP);
    const op = (p: number): Block =>
      v6 ? this.genPortop6(atom, p, dir) : this.genPortop(atom, p, dir);
    let b1: Block;
    if (ipProto === PROTO_UNDEF) {
      let tmp = op(IPPROTO_TCP);
      b1 = op(IPPROTO_UDP);
      genOr(tmp, b1);
      tmp = op(IPPROTO_SCTP);
      genOr(tmp, b1);
    } else b1 = op(ipProto);
    genAnd(b0, b1);
    return b1;
  }

  private genPortBoth(port: number, ipProto: number, dir: string): Block {
    const b = this.genPortGeneric(false, (off) => this.genPortatom(off, port), ipProto, dir);
    genOr(
      this.genPortGeneric(true, (off) => this.genPortatom6(off, port), ipProto, dir),
      b,
    );
    return b;
  }
  private genPortrangeBoth(p1: number, p2: number, ipProto: number, dir: string): Block {
    const b = this.genPortGeneric(
      false,
      (off) => this.genPortrangeatom(off, p1, p2, false),
      ipProto,
      dir,
    );
    genOr(
      this.genPortGeneric(true, (off) => this.genPortrangeatom(off, p1, p2, true), ipProto, dir),
      b,
    );
    return b;
  }

  // ---- identifiers (gen_ncode, gen_scode, gen_mcode, gen_mcode6, gen_ecode) ----

  private portProto(proto: string | 'undef', what: string): number {
    switch (proto) {
      case 'udp':
        return IPPROTO_UDP;
      case 'tcp':
        return IPPROTO_TCP;
      case 'sctp':
        return IPPROTO_SCTP;
      case 'default':
        return PROTO_UNDEF;
      default:
        return this.error(`illegal qualifier of '${what}'`);
    }
  }

  private genId(q: Qual, value: IdValue, span: Span): Block {
    if (q.addr === 'undef' || q.proto === 'undef')
      return this.error('syntax error in filter expression');
    switch (value.type) {
      case 'num':
        return this.genNcode(undefined, value.value, q);
      case 'hid': {
        const bad: Partial<Record<string, string>> = {
          port: 'port',
          portrange: 'portrange',
          proto: 'proto',
          protochain: 'protochain',
        };
        const b = bad[q.addr];
        if (b !== undefined) return this.error(`'${b}' modifier applied to ip host`);
        return this.genNcode(value.text, 0, q);
      }
      case 'hid-len':
        return this.genMcode(value.text, undefined, value.len, q);
      case 'hid-mask':
        return this.genMcode(value.text, value.mask, 0, q);
      case 'hid6':
        return this.genMcode6(value.text, value.len, q);
      case 'eid':
        return this.genEcode(value.text, q);
      case 'aid':
        return this.error('ARCnet address used in non-arc expression');
      case 'name':
        return this.genScode(value.text, q, span);
    }
  }

  /** libpcap's __pcap_atoin: dotted decimal parts, the address right-aligned, and its length in bits. */
  private atoin(s: string): { v: number; len: number } {
    let v = 0;
    let len = 0;
    for (const part of s.split('.')) {
      if (!/^[0-9]+$/.test(part) || Number(part) > 255)
        return this.error(`invalid IPv4 address '${s}'`);
      v = ((v << 8) | Number(part)) >>> 0;
      len += 8;
    }
    return { v, len };
  }

  /**
   * libpcap's __pcap_atodn: "area.node" as C's sscanf("%d.%d") reads it, to
   * the 16-bit DECnet address (6-bit area, 10-bit node).
   */
  private atodn(s: string): number {
    const m = /^\s*([+-]?\d+)\.\s*([+-]?\d+)/.exec(s);
    if (m === null) return this.error(`malformed decnet address '${s}'`);
    // %d into an int: strtol saturates at the long range, then the value is truncated to 32 bits.
    const toInt = (t: string): number => {
      let n = BigInt(t);
      const max = (1n << 63n) - 1n;
      if (n > max) n = max;
      if (n < -max - 1n) n = -max - 1n;
      return Number(BigInt.asUintN(32, n));
    };
    const area = toInt(m[1]);
    const node = toInt(m[2]);
    return (((area << 10) & 0xfc00) | (node & 0x03ff)) >>> 0;
  }

  /**
   * DECnet routing-header address match (libpcap's gen_dnhostop): long and
   * short headers, each with or without the padding byte that sets the top
   * bit of the first byte.
   */
  private genDnhostop(addr: number, dir: string): Block {
    let offsetSh: number;
    let offsetLh: number;
    switch (dir) {
      case 'dst':
        offsetSh = 1;
        offsetLh = 7;
        break;
      case 'src':
        offsetSh = 3;
        offsetLh = 15;
        break;
      case 'and':
      case 'default':
      case 'or': {
        const b0 = this.genDnhostop(addr, 'src');
        const b1 = this.genDnhostop(addr, 'dst');
        if (dir === 'and') genAnd(b0, b1);
        else genOr(b0, b1);
        return b1;
      }
      default:
        return this.error(`'${dir}' is not a valid qualifier for addresses`);
    }
    // The address is little-endian on the wire; libpcap byte-swaps it (and the
    // 16-bit masks) with ntohs on a little-endian host.
    const swap16 = (x: number): number => ((x & 0xff) << 8) | ((x >> 8) & 0xff);
    const a = swap16(addr & 0xffff);
    const b0 = this.genLinktype(ETHERTYPE_DN);
    // Padding byte present, long header.
    let tmp = this.genMcmp('linkpl', 2, BPF_H, swap16(0x0681), swap16(0x07ff));
    const b1 = this.genCmp('linkpl', 2 + 1 + offsetLh, BPF_H, a);
    genAnd(tmp, b1);
    // No padding, long header.
    tmp = this.genMcmp('linkpl', 2, BPF_B, 0x06, 0x07);
    let b2 = this.genCmp('linkpl', 2 + offsetLh, BPF_H, a);
    genAnd(tmp, b2);
    genOr(b2, b1);
    // Padding byte present, short header.
    tmp = this.genMcmp('linkpl', 2, BPF_H, swap16(0x0281), swap16(0x07ff));
    b2 = this.genCmp('linkpl', 2 + 1 + offsetSh, BPF_H, a);
    genAnd(tmp, b2);
    genOr(b2, b1);
    // No padding, short header.
    tmp = this.genMcmp('linkpl', 2, BPF_B, 0x02, 0x07);
    b2 = this.genCmp('linkpl', 2 + offsetSh, BPF_H, a);
    genAnd(tmp, b2);
    genOr(b2, b1);
    genAnd(b0, b1);
    return b1;
  }

  private genNcode(s: string | undefined, v: number, q: Qual): Block {
    const proto = q.proto as string;
    let vlen = 32;
    if (s !== undefined && proto === 'decnet') {
      v = this.atodn(s);
    } else if (s !== undefined) {
      const r = this.atoin(s);
      v = r.v;
      vlen = r.len;
    }
    switch (q.addr) {
      case 'default':
      case 'host':
      case 'net': {
        if (proto === 'decnet') return this.genHost(v, 0, proto, q.dir, q.addr);
        if (proto === 'link') return this.error('illegal link layer address');
        let mask = 0xffffffff;
        if (s === undefined && q.addr === 'net') {
          while (v && (v & 0xff000000) === 0) {
            v = (v << 8) >>> 0;
            mask = (mask << 8) >>> 0;
          }
        } else {
          v = vlen === 0 ? 0 : (v << (32 - vlen)) >>> 0;
          mask = vlen === 0 ? 0 : (mask << (32 - vlen)) >>> 0;
          if (vlen === 32) mask = 0xffffffff;
        }
        return this.genHost(v >>> 0, mask >>> 0, proto, q.dir, q.addr);
      }
      case 'port': {
        const p = this.portProto(proto, 'port');
        if (v > 65535) this.error(`illegal port number ${v} > 65535`);
        return this.genPortBoth(v, p, q.dir);
      }
      case 'portrange': {
        const p = this.portProto(proto, 'portrange');
        if (v > 65535) this.error(`illegal port number ${v} > 65535`);
        return this.genPortrangeBoth(v, v, p, q.dir);
      }
      case 'gateway':
        return this.error("'gateway' requires a name");
      case 'proto':
        return this.genProto(v, proto, q.dir);
      case 'protochain':
        return this.genProtochain(v, proto);
      default:
        return this.error('syntax error in filter expression');
    }
  }

  private genMcode(s1: string, s2: string | undefined, masklen: number, q: Qual): Block {
    const a = this.atoin(s1);
    const n = a.len === 32 ? a.v : (a.v << (32 - a.len)) >>> 0;
    let m: number;
    if (s2 !== undefined) {
      const b = this.atoin(s2);
      m = b.len === 32 ? b.v : (b.v << (32 - b.len)) >>> 0;
      if ((n & ~m) >>> 0 !== 0) this.error(`non-network bits set in "${s1} mask ${s2}"`);
    } else {
      if (masklen > 32) this.error('mask length must be <= 32');
      m = masklen === 0 ? 0 : (0xffffffff << (32 - masklen)) >>> 0;
      if ((n & ~m) >>> 0 !== 0) this.error(`non-network bits set in "${s1}/${masklen}"`);
    }
    if (q.addr !== 'net') return this.error('Mask syntax for networks only');
    return this.genHost(n, m, q.proto as string, q.dir, q.addr);
  }

  private genMcode6(s: string, masklen: number, q: Qual): Block {
    const addr = parseIpv6(s);
    if (addr === undefined) return this.error(`invalid ip6 address ${s}`);
    if (masklen > 128) this.error('mask length must be <= 128');
    const mask = new Uint8Array(16);
    mask.fill(0xff, 0, Math.floor(masklen / 8));
    if (masklen % 8) mask[Math.floor(masklen / 8)] = (0xff << (8 - (masklen % 8))) & 0xff;
    for (let i = 0; i < 16; i++)
      if ((addr[i] & ~mask[i]) !== 0) this.error(`non-network bits set in "${s}/${masklen}"`);
    switch (q.addr) {
      case 'default':
      case 'host':
        if (masklen !== 128) this.error('Mask syntax for networks only');
      // falls through
      case 'net':
        return this.genHost6(addr, mask, q.proto as string, q.dir, q.addr);
      default:
        return this.error('invalid qualifier against IPv6 address');
    }
  }

  private genEcode(s: string, q: Qual): Block {
    if ((q.addr === 'host' || q.addr === 'default') && q.proto === 'link') {
      const hex = s.replace(/[:.-]/g, (c) => c);
      let bytes: number[];
      if (/^[0-9A-Fa-f]{12}$/.test(hex)) bytes = hex.match(/../g)!.map((h) => parseInt(h, 16));
      else if (/^[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}$/.test(hex))
        bytes = hex
          .replace(/\./g, '')
          .match(/../g)!
          .map((h) => parseInt(h, 16));
      else bytes = hex.split(/[:.-]/).map((h) => parseInt(h, 16));
      if (this.linktype !== 'EN10MB')
        return this.error(
          'ethernet addresses supported only on ethernet/FDDI/token ring/802.11/ATM LANE/Fibre Channel',
        );
      const tmp = this.genPrevlinkhdrCheck();
      const b = this.genEhostop(Uint8Array.from(bytes), q.dir);
      if (tmp !== null) genAnd(tmp, b);
      return b;
    }
    return this.error('ethernet address used in non-ether expression');
  }

  private genScode(name: string, q: Qual, span: Span): Block {
    const proto = q.proto as string;
    switch (q.addr) {
      case 'net': {
        let addr = lookupNetwork(name);
        if (addr === undefined || addr === 0) return this.error(`unknown network '${name}'`);
        let mask = 0xffffffff;
        while (addr && (addr & 0xff000000) === 0) {
          addr = (addr << 8) >>> 0;
          mask = (mask << 8) >>> 0;
        }
        return this.genHost(addr, mask, proto, q.dir, q.addr);
      }
      case 'default':
      case 'host':
        if (proto === 'link') {
          if (this.linktype !== 'EN10MB')
            return this.error(
              'only ethernet/FDDI/token ring/802.11/ATM LANE/Fibre Channel supports link-level host name',
            );
          return this.unsupported(
            `MAC address names are not supported: "${name}" would need /etc/ethers`,
            span,
          );
        }
        // libpcap is built without a DECnet name library, so it always refuses these.
        if (proto === 'decnet')
          return this.error(`decnet name support not included, '${name}' cannot be translated`);
        return this.unsupported(
          `host names are not supported: "${name}" would need a DNS lookup; use an IP address`,
          span,
        );
      case 'port': {
        if (proto !== 'default' && proto !== 'udp' && proto !== 'tcp' && proto !== 'sctp')
          this.error("illegal qualifier of 'port'");
        const r = lookupPort(name);
        if (r === undefined) return this.error(`unknown port '${name}'`);
        let real = r.proto;
        real = this.checkPortProto(proto, real, `port '${name}'`);
        if (r.port > 65535) this.error(`illegal port number ${r.port} > 65535`);
        return this.genPortBoth(r.port, real, q.dir);
      }
      case 'portrange': {
        if (proto !== 'default' && proto !== 'udp' && proto !== 'tcp' && proto !== 'sctp')
          this.error("illegal qualifier of 'portrange'");
        const r = lookupPortRange(name);
        if (r === undefined) return this.error(`unknown port in range '${name}'`);
        const real = this.checkPortProto(proto, r.proto, `port in range '${name}'`);
        if (r.port1 > 65535) this.error(`illegal port number ${r.port1} > 65535`);
        if (r.port2 > 65535) this.error(`illegal port number ${r.port2} > 65535`);
        return this.genPortrangeBoth(r.port1, r.port2, real, q.dir);
      }
      case 'gateway':
        return this.unsupported(
          `"gateway ${name}" needs host name and /etc/ethers lookups, which are not supported`,
          span,
        );
      case 'proto':
        return this.genProto(this.lookupProto(name, proto), proto, q.dir);
      case 'protochain':
        return this.genProtochain(this.lookupProto(name, proto), proto);
      default:
        return this.error('syntax error in filter expression');
    }
  }

  private checkPortProto(proto: string, real: number, what: string): number {
    const names: Record<number, string> = {
      [IPPROTO_TCP]: 'tcp',
      [IPPROTO_UDP]: 'udp',
      [IPPROTO_SCTP]: 'sctp',
    };
    const want: Record<string, number> = { udp: IPPROTO_UDP, tcp: IPPROTO_TCP, sctp: IPPROTO_SCTP };
    const w = want[proto];
    if (w === undefined) return real;
    if (real !== PROTO_UNDEF && real !== w) this.error(`${what} is ${names[real]}`);
    return w;
  }

  private lookupProto(name: string, proto: string): number {
    switch (proto) {
      case 'default':
      case 'ip':
      case 'ip6': {
        const v = lookupIpProto(name);
        if (v === undefined) return this.error(`unknown ip proto '${name}'`);
        return v;
      }
      case 'link': {
        const v = ETHER_PROTO_NAMES[name] ?? LLC_PROTO_NAMES[name];
        if (v === undefined) return this.error(`unknown ether proto '${name}'`);
        return v;
      }
      case 'iso': {
        const v = ISO_PROTO_NAMES[name];
        if (v === undefined) return this.error(`unknown osi proto '${name}'`);
        return v;
      }
      default:
        return this.error(`unknown protocol: ${name}`);
    }
  }

  // ---- other primitives ----

  private genBroadcast(proto: string): Block {
    switch (proto) {
      case 'default':
      case 'link': {
        if (this.linktype !== 'EN10MB') return this.error('not a broadcast link');
        const b1 = this.genPrevlinkhdrCheck();
        const b0 = this.genEhostop(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 'dst');
        if (b1 !== null) genAnd(b1, b0);
        return b0;
      }
      case 'ip':
        // A compiled filter has no interface, so no netmask: libpcap's PCAP_NETMASK_UNKNOWN.
        return this.error("netmask not known, so 'ip broadcast' not supported");
      default:
        return this.error('only link-layer/IP broadcast filters supported');
    }
  }

  private genMulticast(proto: string): Block {
    switch (proto) {
      case 'default':
      case 'link': {
        if (this.linktype !== 'EN10MB') break;
        const b1 = this.genPrevlinkhdrCheck();
        const b0 = newBlock(JMP(BPF_JSET), 1);
        b0.stmts = this.genLoadA('linkhdr', 0, BPF_B);
        if (b1 !== null) genAnd(b1, b0);
        return b0;
      }
      case 'ip': {
        const b0 = this.genLinktype(ETHERTYPE_IP);
        const b1 = this.genCmpGe('linkpl', 16, BPF_B, 224);
        genAnd(b0, b1);
        return b1;
      }
      case 'ip6': {
        const b0 = this.genLinktype(ETHERTYPE_IPV6);
        const b1 = this.genCmp('linkpl', 24, BPF_B, 255);
        genAnd(b0, b1);
        return b1;
      }
      default:
        break;
    }
    return this.error(
      'link-layer multicast filters supported only on ethernet/FDDI/token ring/ARCNET/802.11/ATM LANE/Fibre Channel',
    );
  }

  private genLen(jmp: number, n: number): Block {
    const b = newBlock(JMP(jmp), n);
    b.stmts = [newStmt(BPF_LD | BPF_LEN)];
    return b;
  }

  private genByteop(op: string, idx: number, val: number): Block {
    switch (op) {
      case '=':
        return this.genCmp('linkhdr', idx, BPF_B, val);
      case '<':
        return this.genCmpLt('linkhdr', idx, BPF_B, val);
      case '>':
        return this.genCmpGt('linkhdr', idx, BPF_B, val);
      default: {
        // libpcap emits the operation without loading the byte (its long-standing behaviour).
        const s = newStmt(BPF_ALU | (op === '|' ? BPF_OR : BPF_AND) | BPF_K, val);
        const b = newBlock(JMP(BPF_JEQ), 0);
        b.stmts = [s];
        genNot(b);
        return b;
      }
    }
  }

  private genVlan(vlanNum: number, hasTag: boolean): Block {
    if (this.labelStackDepth > 0) this.error('no VLAN match after MPLS');
    if (this.linktype !== 'EN10MB') this.error(`no VLAN support for ${this.linktype}`);
    let b0 = this.genLinktype(ETHERTYPE_8021Q);
    let b1 = this.genLinktype(ETHERTYPE_8021AD);
    genOr(b0, b1);
    b0 = b1;
    b1 = this.genLinktype(ETHERTYPE_8021QINQ);
    genOr(b0, b1);
    b0 = b1;
    if (hasTag) {
      if (vlanNum > 0x0fff) this.error(`VLAN tag ${vlanNum} greater than maximum 4095`);
      b1 = this.genMcmp('linkpl', 0, BPF_H, vlanNum, 0x0fff);
      genAnd(b0, b1);
      b0 = b1;
    }
    this.offLinkpl.constantPart += 4;
    this.offLinktype.constantPart += 4;
    this.vlanStackDepth++;
    return b0;
  }

  private genMpls(labelNum: number, hasLabel: boolean): Block {
    let b0: Block;
    if (this.labelStackDepth > 0) b0 = this.genMcmp('prevmplshdr', 2, BPF_B, 0, 0x01);
    else b0 = this.genLinktype(this.linktype === 'PPP' ? PPP_MPLS_UCAST : ETHERTYPE_MPLS);
    if (hasLabel) {
      if (labelNum > 0xfffff) this.error(`MPLS label ${labelNum} greater than maximum 1048575`);
      const b1 = this.genMcmp('linkpl', 0, BPF_W, (labelNum << 12) >>> 0, 0xfffff000);
      genAnd(b0, b1);
      b0 = b1;
    }
    this.offNlNosnap += 4;
    this.offNl += 4;
    this.labelStackDepth++;
    return b0;
  }

  private genPppoes(sessNum: number, hasSessNum: boolean): Block {
    let b0 = this.genLinktype(ETHERTYPE_PPPOES);
    if (hasSessNum) {
      if (sessNum > 0xffff)
        this.error(`PPPoE session number ${sessNum} greater than maximum 65535`);
      const b1 = this.genMcmp('linkpl', 0, BPF_W, sessNum, 0xffff);
      genAnd(b0, b1);
      b0 = b1;
    }
    // What follows is PPP: its protocol field ends the 6-byte PPPoE session header.
    this.pushLinkhdr(
      'PPP',
      this.offLinkpl.isVariable,
      this.offLinkpl.constantPart + this.offNl + 6,
      this.offLinkpl.reg,
    );
    this.offLinktype = { ...this.offLinkhdr };
    this.offLinkpl.constantPart = this.offLinkhdr.constantPart + 2;
    this.offNl = 0;
    this.offNlNosnap = 0;
    return b0;
  }

  /** UDP destination port 6081, Geneve version 0 and, if given, the VNI, with `offrel` locating the UDP header. */
  private genGeneveCheck(v6: boolean, vni: number, hasVni: boolean): Block {
    const offrel: OffRel = v6 ? 'tran_ipv6' : 'tran_ipv4';
    let b0 = v6
      ? this.genPortGeneric(true, (off) => this.genPortatom6(off, GENEVE_PORT), IPPROTO_UDP, 'dst')
      : this.genPortGeneric(false, (off) => this.genPortatom(off, GENEVE_PORT), IPPROTO_UDP, 'dst');
    // The version is the top two bits of the first byte of the Geneve header.
    let b1 = this.genMcmp(offrel, 8, BPF_B, 0, 0xc0);
    genAnd(b0, b1);
    b0 = b1;
    if (hasVni) {
      if (vni > 0xffffff) this.error(`Geneve VNI ${vni} greater than maximum 16777215`);
      b1 = this.genMcmp(offrel, 12, BPF_W, (vni << 8) >>> 0, 0xffffff00);
      genAnd(b0, b1);
      b0 = b1;
    }
    return b0;
  }

  /** Geneve over IPv4, leaving the IPv4 header length (plus any variable offset) in A. */
  private genGeneve4(vni: number, hasVni: boolean): Block {
    const b0 = this.genGeneveCheck(false, vni, hasVni);
    const s = this.genLoadxIphdrlen();
    s.push(newStmt(BPF_MISC | BPF_TXA));
    // An always-true block (A == X) carries the statements onto the true branch.
    const b1 = newBlock(BPF_JMP | BPF_JEQ | BPF_X, 0);
    b1.stmts = s;
    genAnd(b0, b1);
    return b1;
  }

  /** Geneve over IPv6, leaving the IPv6 header length (plus any variable offset) in A. */
  private genGeneve6(vni: number, hasVni: boolean): Block {
    const b0 = this.genGeneveCheck(true, vni, hasVni);
    let s = this.genAbsOffsetVarpart(this.offLinkpl);
    if (s !== null) s.push(newStmt(BPF_LD | BPF_IMM, 40), newStmt(BPF_ALU | BPF_ADD | BPF_X));
    else s = [newStmt(BPF_LD | BPF_IMM, 40)];
    s.push(newStmt(BPF_MISC | BPF_TAX));
    const b1 = newBlock(BPF_JMP | BPF_JEQ | BPF_X, 0);
    b1.stmts = s;
    genAnd(b0, b1);
    return b1;
  }

  /**
   * Computes, from the IP header length in A, the run-time offsets of the
   * inner link-layer type, header and payload into scratch registers, and
   * points later primitives at them.
   */
  private genGeneveOffsets(): Stmt[] {
    // The Geneve header starts after the IP header (in A) and the fixed link and UDP headers; keep it in X.
    const s: Stmt[] = [
      newStmt(BPF_ALU | BPF_ADD | BPF_K, this.offLinkpl.constantPart + this.offNl + 8),
      newStmt(BPF_MISC | BPF_TAX),
    ];
    // The protocol type is 2 bytes into the Geneve header.
    s.push(newStmt(BPF_ALU | BPF_ADD | BPF_K, 2));
    this.offLinktype = { constantPart: 0, isVariable: true, reg: this.allocReg() };
    s.push(newStmt(BPF_ST, this.offLinktype.reg));
    // Header length: the option length (6 bits, in 4-byte words) plus the 8-byte base header.
    s.push(
      newStmt(BPF_LD | BPF_IND | BPF_B, 0),
      newStmt(BPF_ALU | BPF_AND | BPF_K, 0x3f),
      newStmt(BPF_ALU | BPF_MUL | BPF_K, 4),
      newStmt(BPF_ALU | BPF_ADD | BPF_K, 8),
      newStmt(BPF_ALU | BPF_ADD | BPF_X),
    );
    // Treat the payload as Ethernet: the type field is an Ethernet type either way,
    // and whether an Ethernet header is really there is checked at run time.
    this.pushLinkhdr('EN10MB', true, 0, this.allocReg());
    s.push(newStmt(BPF_ST, this.offLinkhdr.reg));
    // The block-local jump below cannot go through the optimizer.
    this.noOptimize = true;
    s.push(newStmt(BPF_LD | BPF_IND | BPF_H, 2), newStmt(BPF_LDX | BPF_MEM, this.offLinkhdr.reg));
    // Transparent Ethernet bridging: the inner type and payload follow a 14-byte
    // Ethernet header. Otherwise the payload starts where the header ended (in X).
    const isTeb = newStmt(JMP(BPF_JEQ), ETHERTYPE_TEB);
    const txa = newStmt(BPF_MISC | BPF_TXA);
    isTeb.jt = txa;
    s.push(
      isTeb,
      txa,
      newStmt(BPF_ALU | BPF_ADD | BPF_K, 12),
      newStmt(BPF_ST, this.offLinktype.reg),
    );
    s.push(newStmt(BPF_ALU | BPF_ADD | BPF_K, 2), newStmt(BPF_MISC | BPF_TAX));
    this.offLinkpl = { constantPart: 0, isVariable: true, reg: this.allocReg() };
    const stx = newStmt(BPF_STX, this.offLinkpl.reg);
    isTeb.jf = stx;
    s.push(stx);
    this.offNl = 0;
    return s;
  }

  private genGeneve(vni: number, hasVni: boolean): Block {
    const b0 = this.genGeneve4(vni, hasVni);
    let b1 = this.genGeneve6(vni, hasVni);
    genOr(b0, b1);
    const b2 = b1;
    // Later primitives look inside the Geneve payload: compute its offsets when Geneve matched.
    const s = this.genGeneveOffsets();
    b1 = this.genTrue();
    s.push(...b1.stmts);
    b1.stmts = s;
    genAnd(b2, b1);
    this.isGeneve = true;
    return b1;
  }

  /** libpcap's gen_true: an always-true block. */
  private genTrue(): Block {
    const b = newBlock(JMP(BPF_JEQ), 0);
    b.stmts = [newStmt(BPF_LD | BPF_IMM, 0)];
    return b;
  }

  private genLlcInternal(): Block {
    if (this.linktype !== 'EN10MB') this.error(`'llc' not supported for ${this.linktype}`);
    const b0 = this.genCmpGt('linktype', 0, BPF_H, ETHERMTU);
    genNot(b0);
    const b1 = this.genCmp('llc', 0, BPF_H, 0xffff);
    genNot(b1);
    genAnd(b0, b1);
    return b1;
  }

  private genLlc(subtype: string | undefined): Block {
    if (subtype === undefined) return this.genLlcInternal();
    const st = subtype.toLowerCase();
    if (st === 'i') {
      const b0 = this.genLlcInternal();
      const b1 = newBlock(JMP(BPF_JSET), 0x01);
      b1.stmts = this.genLoadA('llc', 2, BPF_B);
      genNot(b1);
      genAnd(b0, b1);
      return b1;
    }
    if (st === 's' || st === 'u') {
      const b0 = this.genLlcInternal();
      const b1 = this.genMcmp('llc', 2, BPF_B, st === 's' ? 1 : 3, 0x03);
      genAnd(b0, b1);
      return b1;
    }
    const sSubtypes: Record<string, number> = { rr: 0x01, rnr: 0x05, rej: 0x09 };
    const uSubtypes: Record<string, number> = {
      ui: 0x03,
      ua: 0x63,
      disc: 0x43,
      dm: 0x0f,
      sabme: 0x6f,
      test: 0xe3,
      xid: 0xaf,
      frmr: 0x87,
    };
    const sv = sSubtypes[st];
    const uv = uSubtypes[st];
    if (sv === undefined && uv === undefined)
      return this.error(`unknown LLC type name "${subtype}"`);
    const b0 = this.genLlcInternal();
    const b1 =
      sv !== undefined
        ? this.genMcmp('llc', 2, BPF_B, sv, 0x0f)
        : this.genMcmp('llc', 2, BPF_B, uv!, 0xef);
    genAnd(b0, b1);
    return b1;
  }

  // ---- arithmetic ----

  private allocReg(): number {
    for (let n = BPF_MEMWORDS; n > 0; n--) {
      if (this.regused[this.curreg]) this.curreg = (this.curreg + 1) % BPF_MEMWORDS;
      else {
        this.regused[this.curreg] = true;
        return this.curreg;
      }
    }
    return this.error('too many registers needed to evaluate expression');
  }
  private freeReg(n: number): void {
    this.regused[n] = false;
  }

  private genArth(a: Arth): ArthValue {
    switch (a.kind) {
      case 'num': {
        const reg = this.allocReg();
        return {
          s: [newStmt(BPF_LD | BPF_IMM, a.value >>> 0), newStmt(BPF_ST, reg)],
          regno: reg,
          b: null,
        };
      }
      case 'len': {
        const reg = this.allocReg();
        return { s: [newStmt(BPF_LD | BPF_LEN), newStmt(BPF_ST, reg)], regno: reg, b: null };
      }
      case 'neg': {
        const v = this.genArth(a.operand);
        v.s.push(
          newStmt(BPF_LD | BPF_MEM, v.regno),
          newStmt(BPF_ALU | BPF_NEG, 0),
          newStmt(BPF_ST, v.regno),
        );
        return v;
      }
      case 'binop': {
        const a0 = this.genArth(a.left);
        const a1 = this.genArth(a.right);
        this.at = a.span;
        const code = (
          {
            '+': BPF_ADD,
            '-': BPF_SUB,
            '*': BPF_MUL,
            '/': BPF_DIV,
            '%': BPF_MOD,
            '&': BPF_AND,
            '|': BPF_OR,
            '^': BPF_XOR,
            '<<': BPF_LSH,
            '>>': BPF_RSH,
          } as const
        )[a.op];
        const first = a1.s[0];
        const constRhs = first.code === (BPF_LD | BPF_IMM);
        if (code === BPF_DIV && constRhs && first.k === 0)
          this.error('division by zero', a.right.span);
        if (code === BPF_MOD && constRhs && first.k === 0)
          this.error('modulus by zero', a.right.span);
        if ((code === BPF_LSH || code === BPF_RSH) && constRhs && first.k >>> 0 > 31)
          this.error('shift by more than 31 bits', a.right.span);
        const s0 = [
          newStmt(BPF_LDX | BPF_MEM, a1.regno),
          newStmt(BPF_LD | BPF_MEM, a0.regno),
          newStmt(BPF_ALU | BPF_X | code),
        ];
        a1.s.push(...s0);
        a0.s.push(...a1.s);
        this.freeReg(a0.regno);
        this.freeReg(a1.regno);
        a0.regno = this.allocReg();
        a0.s.push(newStmt(BPF_ST, a0.regno));
        // libpcap's gen_arth keeps only the left operand's protocol checks (a0->b):
        // those of the right operand are dropped, and so are they here.
        return a0;
      }
      case 'load':
        return this.genLoad(a);
    }
  }

  private genLoad(a: Extract<Arth, { kind: 'load' }>): ArthValue {
    const inst = this.genArth(a.index);
    this.at = a.span;
    const regno = this.allocReg();
    this.freeReg(inst.regno);
    let sizeCode: number;
    switch (a.size) {
      case 1:
        sizeCode = BPF_B;
        break;
      case 2:
        sizeCode = BPF_H;
        break;
      case 4:
        sizeCode = BPF_W;
        break;
      default:
        return this.error('data size must be 1, 2, or 4', a.sizeSpan ?? a.span);
    }
    const proto = a.proto;
    switch (proto) {
      case 'link':
        inst.s.push(
          ...this.xferOffsetToX(this.offLinkhdr, inst.regno),
          newStmt(BPF_LD | BPF_IND | sizeCode, this.offLinkhdr.constantPart),
        );
        break;
      case 'ip':
      case 'arp':
      case 'rarp':
      case 'atalk':
      case 'decnet':
      case 'sca':
      case 'lat':
      case 'moprc':
      case 'mopdl':
      case 'ip6': {
        inst.s.push(
          ...this.xferOffsetToX(this.offLinkpl, inst.regno),
          newStmt(BPF_LD | BPF_IND | sizeCode, this.offLinkpl.constantPart + this.offNl),
        );
        const b = this.genProtoAbbrev(proto);
        if (inst.b) genAnd(inst.b, b);
        inst.b = b;
        break;
      }
      case 'sctp':
      case 'tcp':
      case 'udp':
      case 'icmp':
      case 'igmp':
      case 'igrp':
      case 'pim':
      case 'vrrp':
      case 'carp': {
        const s = this.genLoadxIphdrlen();
        s.push(
          newStmt(BPF_LD | BPF_MEM, inst.regno),
          newStmt(BPF_ALU | BPF_ADD | BPF_X),
          newStmt(BPF_MISC | BPF_TAX),
          newStmt(BPF_LD | BPF_IND | sizeCode, this.offLinkpl.constantPart + this.offNl),
        );
        inst.s.push(...s);
        const b = this.genIpfrag();
        genAnd(this.genProtoAbbrev(proto), b);
        if (inst.b) genAnd(inst.b, b);
        genAnd(this.genProtoAbbrev('ip'), b);
        inst.b = b;
        break;
      }
      case 'icmp6': {
        let b = this.genProtoAbbrev('ip6');
        if (inst.b) genAnd(inst.b, b);
        inst.b = b;
        b = this.genCmp('linkpl', 6, BPF_B, 58);
        genAnd(inst.b, b);
        inst.b = b;
        inst.s.push(
          ...this.xferOffsetToX(this.offLinkpl, inst.regno),
          newStmt(BPF_LD | BPF_IND | sizeCode, this.offLinkpl.constantPart + this.offNl + 40),
        );
        break;
      }
      case 'radio':
        return this.error('radio_tap, 802.11 radio header, or AVS header not present');
      default:
        return this.error('unsupported index operation');
    }
    inst.regno = regno;
    inst.s.push(newStmt(BPF_ST, regno));
    return inst;
  }

  /** X := the index in register `regno`, plus the variable part of `off` if it has one. */
  private xferOffsetToX(off: AbsOffset, regno: number): Stmt[] {
    const s = this.genAbsOffsetVarpart(off);
    if (s === null) return [newStmt(BPF_LDX | BPF_MEM, regno)];
    s.push(
      newStmt(BPF_LD | BPF_MEM, regno),
      newStmt(BPF_ALU | BPF_ADD | BPF_X),
      newStmt(BPF_MISC | BPF_TAX),
    );
    return s;
  }

  private genRelation(code: number, a0: ArthValue, a1: ArthValue, reversed: boolean): Block {
    const s0 = [newStmt(BPF_LDX | BPF_MEM, a1.regno)];
    const s1 = [newStmt(BPF_LD | BPF_MEM, a0.regno)];
    let b: Block;
    if (code === BPF_JEQ) {
      s1.push(newStmt(BPF_ALU | BPF_SUB | BPF_X));
      b = newBlock(JMP(code), 0);
    } else b = newBlock(BPF_JMP | code | BPF_X, 0);
    if (reversed) genNot(b);
    s0.push(...s1);
    a1.s.push(...s0);
    a0.s.push(...a1.s);
    b.stmts = a0.s;
    this.freeReg(a0.regno);
    this.freeReg(a1.regno);
    let tmp: Block | null;
    if (a0.b) {
      if (a1.b) {
        genAnd(a0.b, a1.b);
        tmp = a1.b;
      } else tmp = a0.b;
    } else tmp = a1.b;
    if (tmp) genAnd(tmp, b);
    return b;
  }
}

/** Generates libpcap's (unclosed) block graph for a parsed expression. */
export function generate(expression: string, ast: Expr): GenResult {
  const cg = new CodeGen(expression);
  const block = cg.gen(ast);
  return { block, noOptimize: cg.noOptimize };
}
