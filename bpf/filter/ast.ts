// Syntax tree of a pcap-filter expression, with qualifiers already inherited as libpcap's grammar does.

/** A span of the expression text (0-based offset). */
export interface Span {
  offset: number;
  length: number;
}

/** Protocol qualifier: 'default', or a protocol keyword ('link' for ether/ppp/...). */
export type ProtoQual = string;
/** Direction qualifier. */
export type DirQual = 'default' | 'src' | 'dst' | 'or' | 'and' | 'undef';
/** Address-type qualifier. */
export type AddrQual =
  'default' | 'host' | 'net' | 'port' | 'portrange' | 'proto' | 'protochain' | 'gateway' | 'undef';

/** The qualifiers in force for an identifier. */
export interface Qual {
  proto: ProtoQual | 'undef';
  dir: DirQual;
  addr: AddrQual;
}

/** libpcap's `qerr`: what a bare value inherits after a term that has no qualifiers. */
export const QUAL_ERR: Qual = { proto: 'undef', dir: 'undef', addr: 'undef' };

/** The value of an identifier (libpcap's `id` and `nid`). */
export type IdValue =
  | { type: 'num'; value: number }
  | { type: 'name'; text: string }
  | { type: 'hid'; text: string }
  | { type: 'hid-len'; text: string; len: number; lenSpan: Span }
  | { type: 'hid-mask'; text: string; mask: string; maskSpan: Span }
  | { type: 'hid6'; text: string; len: number; lenSpan?: Span }
  | { type: 'eid'; text: string }
  | { type: 'aid'; text: string };

/** Arithmetic expressions (libpcap's `arth`). */
export type Arth =
  | { kind: 'num'; value: number; span: Span }
  | { kind: 'len'; span: Span }
  | { kind: 'load'; proto: ProtoQual; index: Arth; size: number; span: Span; sizeSpan?: Span }
  | { kind: 'binop'; op: ArthOp; left: Arth; right: Arth; span: Span }
  | { kind: 'neg'; operand: Arth; span: Span };

export type ArthOp = '+' | '-' | '*' | '/' | '%' | '&' | '|' | '^' | '<<' | '>>';

/** Boolean expressions. */
export type Expr =
  | { kind: 'and' | 'or'; left: Expr; right: Expr; span: Span }
  | { kind: 'not'; operand: Expr; span: Span }
  | { kind: 'id'; q: Qual; value: IdValue; span: Span; valueSpan: Span }
  | { kind: 'pname'; proto: ProtoQual; span: Span }
  | {
      kind: 'relation';
      op: 'jgt' | 'jge' | 'jeq';
      reversed: boolean;
      left: Arth;
      right: Arth;
      span: Span;
    }
  | { kind: 'broadcast' | 'multicast'; proto: ProtoQual; span: Span }
  | { kind: 'less' | 'greater'; value: number; span: Span }
  | { kind: 'byte'; index: number; op: '&' | '|' | '<' | '>' | '='; value: number; span: Span }
  | { kind: 'vlan' | 'mpls' | 'pppoes' | 'geneve'; value?: number; span: Span; valueSpan?: Span }
  | { kind: 'pppoed'; span: Span }
  | { kind: 'llc'; subtype?: string; span: Span };
