// Splits a pcap-filter expression into tokens the way libpcap's flex scanner does (longest match, rule order).
import { FilterSyntaxError } from './errors.js';

/** Token kinds; keywords use their libpcap token name. */
export type TokenKind =
  | 'NUM'
  | 'ID'
  | 'HID'
  | 'HID6'
  | 'EID'
  | 'AID'
  | 'PNAME'
  | 'DQUAL'
  | 'AQUAL'
  | 'NDAQUAL'
  | 'PROTO'
  | 'PROTOCHAIN'
  | 'NETMASK'
  | 'AND'
  | 'OR'
  | 'NOT'
  | 'LEN'
  | 'LESS'
  | 'GREATER'
  | 'CBYTE'
  | 'BROADCAST'
  | 'MULTICAST'
  | 'VLAN'
  | 'MPLS'
  | 'PPPOED'
  | 'PPPOES'
  | 'GENEVE'
  | 'INBOUND'
  | 'OUTBOUND'
  | 'IFINDEX'
  | 'LLC'
  | 'OTHERKW'
  | 'PUNCT'
  | 'EOF';

/** One token with its span in the expression. */
export interface Token {
  kind: TokenKind;
  /** The text as written (for ID tokens given as `\name`, without the backslash). */
  text: string;
  offset: number;
  length: number;
  /** NUM value (unsigned 32-bit). */
  value?: number;
  /** Keyword detail: the protocol name for PNAME, the qualifier for DQUAL/AQUAL, the punctuation. */
  word?: string;
}

const KEYWORDS: Record<string, { kind: TokenKind; word: string }> = {};
const kw = (kind: TokenKind, word: string, ...names: string[]): void => {
  for (const n of names) KEYWORDS[n] = { kind, word };
};
kw('DQUAL', 'src', 'src');
kw('DQUAL', 'dst', 'dst');
kw('PNAME', 'link', 'link', 'ether', 'ppp', 'slip', 'fddi', 'tr', 'wlan');
for (const p of [
  'arp',
  'rarp',
  'ip',
  'sctp',
  'tcp',
  'udp',
  'icmp',
  'igmp',
  'igrp',
  'pim',
  'vrrp',
  'carp',
  'radio',
  'ip6',
  'icmp6',
  'ah',
  'esp',
  'atalk',
  'aarp',
  'decnet',
  'lat',
  'sca',
  'moprc',
  'mopdl',
  'iso',
  'esis',
  'isis',
  'l1',
  'l2',
  'iih',
  'lsp',
  'snp',
  'csnp',
  'psnp',
  'clnp',
  'stp',
  'ipx',
  'netbeui',
])
  kw('PNAME', p, p);
kw('PNAME', 'esis', 'es-is');
kw('PNAME', 'isis', 'is-is');
kw('AQUAL', 'host', 'host');
kw('AQUAL', 'net', 'net');
kw('AQUAL', 'port', 'port');
kw('AQUAL', 'portrange', 'portrange');
kw('NETMASK', 'mask', 'mask');
kw('PROTO', 'proto', 'proto');
kw('PROTOCHAIN', 'protochain', 'protochain');
kw('NDAQUAL', 'gateway', 'gateway');
kw('LESS', 'less', 'less');
kw('GREATER', 'greater', 'greater');
kw('CBYTE', 'byte', 'byte');
kw('BROADCAST', 'broadcast', 'broadcast');
kw('MULTICAST', 'multicast', 'multicast');
kw('AND', 'and', 'and');
kw('OR', 'or', 'or');
kw('NOT', 'not', 'not');
kw('LEN', 'len', 'len', 'length');
kw('INBOUND', 'inbound', 'inbound');
kw('OUTBOUND', 'outbound', 'outbound');
kw('IFINDEX', 'ifindex', 'ifindex');
kw('VLAN', 'vlan', 'vlan');
kw('MPLS', 'mpls', 'mpls');
kw('PPPOED', 'pppoed', 'pppoed');
kw('PPPOES', 'pppoes', 'pppoes');
kw('GENEVE', 'geneve', 'geneve');
kw('LLC', 'llc', 'llc');
// Keywords for other link types (802.11, ATM, pflog, SS7/MTP); libpcap rejects them on Ethernet.
for (const w of [
  'type',
  'subtype',
  'direction',
  'dir',
  'address1',
  'addr1',
  'address2',
  'addr2',
  'address3',
  'addr3',
  'address4',
  'addr4',
  'ra',
  'ta',
  'lane',
  'metac',
  'bcc',
  'oam',
  'oamf4',
  'oamf4ec',
  'oamf4sc',
  'sc',
  'ilmic',
  'vpi',
  'vci',
  'connectmsg',
  'metaconnect',
  'on',
  'ifname',
  'rset',
  'ruleset',
  'rnr',
  'rulenum',
  'srnr',
  'subrulenum',
  'reason',
  'action',
  'fisu',
  'lssu',
  'lsu',
  'msu',
  'hfisu',
  'hlssu',
  'hmsu',
  'sio',
  'opc',
  'dpc',
  'sls',
  'hsio',
  'hopc',
  'hdpc',
  'hsls',
])
  kw('OTHERKW', w, w);

/** Named constants the scanner turns into numbers (tcpflags, icmp types, ...). */
export const NAMED_NUMBERS: Record<string, number> = {
  icmptype: 0,
  icmpcode: 1,
  'icmp-echoreply': 0,
  'icmp-unreach': 3,
  'icmp-sourcequench': 4,
  'icmp-redirect': 5,
  'icmp-echo': 8,
  'icmp-routeradvert': 9,
  'icmp-routersolicit': 10,
  'icmp-timxceed': 11,
  'icmp-paramprob': 12,
  'icmp-tstamp': 13,
  'icmp-tstampreply': 14,
  'icmp-ireq': 15,
  'icmp-ireqreply': 16,
  'icmp-maskreq': 17,
  'icmp-maskreply': 18,
  icmp6type: 0,
  icmp6code: 1,
  'icmp6-destinationunreach': 1,
  'icmp6-packettoobig': 2,
  'icmp6-timeexceeded': 3,
  'icmp6-parameterproblem': 4,
  'icmp6-echo': 128,
  'icmp6-echoreply': 129,
  'icmp6-multicastlistenerquery': 130,
  'icmp6-multicastlistenerreportv1': 131,
  'icmp6-multicastlistenerdone': 132,
  'icmp6-routersolicit': 133,
  'icmp6-routeradvert': 134,
  'icmp6-neighborsolicit': 135,
  'icmp6-neighboradvert': 136,
  'icmp6-redirect': 137,
  'icmp6-routerrenum': 138,
  'icmp6-nodeinformationquery': 139,
  'icmp6-nodeinformationresponse': 140,
  'icmp6-ineighbordiscoverysolicit': 141,
  'icmp6-ineighbordiscoveryadvert': 142,
  'icmp6-multicastlistenerreportv2': 143,
  'icmp6-homeagentdiscoveryrequest': 144,
  'icmp6-homeagentdiscoveryreply': 145,
  'icmp6-mobileprefixsolicit': 146,
  'icmp6-mobileprefixadvert': 147,
  'icmp6-certpathsolicit': 148,
  'icmp6-certpathadvert': 149,
  'icmp6-multicastrouteradvert': 151,
  'icmp6-multicastroutersolicit': 152,
  'icmp6-multicastrouterterm': 153,
  tcpflags: 13,
  'tcp-fin': 0x01,
  'tcp-syn': 0x02,
  'tcp-rst': 0x04,
  'tcp-push': 0x08,
  'tcp-ack': 0x10,
  'tcp-urg': 0x20,
  'tcp-ece': 0x40,
  'tcp-cwr': 0x80,
};

// Patterns of the scanner's rules, all anchored (sticky).
const N = '(?:0[Xx][0-9A-Fa-f]+|[0-9]+)';
const B = '[0-9A-Fa-f][0-9A-Fa-f]?';
const B2 = '[0-9A-Fa-f]{4}';
const RE_AID = /\$[0-9A-Fa-f][0-9A-Fa-f]?/y;
const RE_MAC = new RegExp(
  `(?:${B}:${B}:${B}:${B}:${B}:${B}|${B}-${B}-${B}-${B}-${B}-${B}|${B}\\.${B}\\.${B}\\.${B}\\.${B}\\.${B}|${B2}\\.${B2}\\.${B2}|${B2}${B2}${B2})`,
  'y',
);
const RE_N = new RegExp(N, 'y');
const RE_HID = new RegExp(`${N}\\.${N}(?:\\.${N}(?:\\.${N})?)?`, 'y');
const RE_V6ISH = /[0-9A-Fa-f:.]{2,45}/y;
const RE_BOGUS_EID = new RegExp(`${B}:+(?:${B}:+)+`, 'y');
const RE_ID = /[A-Za-z0-9](?:[-_.A-Za-z0-9]*[.A-Za-z0-9])?/y;
const RE_ESCAPED_ID = /\\[^ !()\n\t]+/y;
const TWO_CHAR = new Map([
  ['>=', 'GEQ'],
  ['<=', 'LEQ'],
  ['!=', 'NEQ'],
  ['==', '='],
  ['<<', 'LSH'],
  ['>>', 'RSH'],
  ['&&', 'AND'],
  ['||', 'OR'],
]);
const ONE_CHAR = '+-*/%:[]!<>()&|^=';

function matchAt(re: RegExp, s: string, pos: number): string | undefined {
  re.lastIndex = pos;
  const m = re.exec(s);
  return m === null ? undefined : m[0];
}

/** Longest match of libpcap's V6 rule at `pos`: the longest valid IPv6 literal made of a prefix of the run. */
function matchV6(s: string, pos: number): string | undefined {
  const run = matchAt(RE_V6ISH, s, pos);
  if (run === undefined || !run.includes(':')) return undefined;
  for (let end = run.length; end > 1; end--) {
    const candidate = run.slice(0, end);
    if (isIpv6Literal(candidate)) return candidate;
  }
  return undefined;
}

/** Parses an IPv6 literal (groups of at most 4 hex digits, one `::`, optional trailing dotted quad) to 16 bytes. */
export function parseIpv6(text: string): Uint8Array | undefined {
  let head = text;
  let tailV4: number[] | undefined;
  const v4 = /(?:^|:)([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)$/.exec(text);
  if (v4 !== null) {
    const parts = v4[1].split('.').map((p) => (/^(0|[1-9][0-9]{0,2})$/.test(p) ? Number(p) : 256));
    if (parts.some((p) => p > 255)) return undefined;
    tailV4 = parts;
    head = text.slice(0, text.length - v4[1].length);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const groupsNeeded = tailV4 ? 6 : 8;
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const gs = part.split(':');
    const out: number[] = [];
    for (const g of gs) {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  let groups: number[];
  if (halves.length === 2) {
    const a = parseGroups(halves[0]);
    const b = parseGroups(halves[1]);
    if (a === undefined || b === undefined || a.length + b.length > groupsNeeded - 1)
      return undefined;
    groups = [...a, ...new Array<number>(groupsNeeded - a.length - b.length).fill(0), ...b];
  } else {
    const a = parseGroups(halves[0]);
    if (a === undefined || a.length !== groupsNeeded) return undefined;
    groups = a;
  }
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  if (tailV4) bytes.set(tailV4, 12);
  return bytes;
}

function isIpv6Literal(text: string): boolean {
  if (!text.includes(':')) return false;
  return parseIpv6(text) !== undefined;
}

/** Converts NUM text as libpcap's stoulen does: 0x hex, leading-0 octal, decimal; 32 bits at most. */
function convertNumber(text: string, offset: number, expression: string): number {
  let value = 0n;
  let base = 10n;
  let digits = text;
  if (/^0[Xx]/.test(text)) {
    base = 16n;
    digits = text.slice(2);
  } else if (text.length > 1 && text.startsWith('0')) {
    base = 8n;
    digits = text.slice(1);
    if (/[89]/.test(digits)) {
      throw new FilterSyntaxError(
        `number ${text} contains non-octal digit at column ${offset + 1}`,
        { expression, offset, length: text.length, expected: 'an octal number' },
      );
    }
  }
  for (const ch of digits) {
    value = value * base + BigInt(parseInt(ch, 16));
    if (value > 0xffffffffn) {
      throw new FilterSyntaxError(`number ${text} overflows 32 bits at column ${offset + 1}`, {
        expression,
        offset,
        length: text.length,
        expected: 'a number below 2^32',
      });
    }
  }
  return Number(value);
}

/**
 * Splits `expression` into tokens, ending with an EOF token.
 * Throws `FilterSyntaxError` on characters the scanner rejects, malformed
 * numbers and bogus addresses.
 */
export function tokenize(expression: string): Token[] {
  const tokens: Token[] = [];
  const s = expression;
  let pos = 0;
  const fail = (message: string, offset: number, length: number, expected?: string): never => {
    throw new FilterSyntaxError(message, {
      expression,
      offset,
      length: Math.max(1, length),
      expected,
    });
  };
  while (pos < s.length) {
    const c = s[pos];
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
      pos++;
      continue;
    }
    // Candidate rules in the scanner's order; the longest match wins, ties go to the earlier rule.
    let best: { len: number; make: () => Token } | undefined;
    const offer = (len: number | undefined, make: () => Token): void => {
      if (len !== undefined && len > 0 && (best === undefined || len > best.len))
        best = { len, make };
    };
    const id = matchAt(RE_ID, s, pos);
    // Keywords: literal strings, so they match when the text starts with them.
    if (id !== undefined) {
      for (let l = id.length; l > 0; l--) {
        const k = KEYWORDS[id.slice(0, l)];
        if (k !== undefined) {
          const text = id.slice(0, l);
          offer(l, () => ({ kind: k.kind, text, offset: pos, length: l, word: k.word }));
          break;
        }
      }
    }
    const two = s.slice(pos, pos + 2);
    if (c === '!') offer(1, () => ({ kind: 'NOT', text: c, offset: pos, length: 1, word: 'not' }));
    else if (ONE_CHAR.includes(c))
      offer(1, () => ({ kind: 'PUNCT', text: c, offset: pos, length: 1, word: c }));
    const twoKind = TWO_CHAR.get(two);
    if (twoKind !== undefined) {
      offer(2, () =>
        twoKind === 'AND' || twoKind === 'OR'
          ? { kind: twoKind, text: two, offset: pos, length: 2, word: twoKind.toLowerCase() }
          : { kind: 'PUNCT', text: two, offset: pos, length: 2, word: twoKind },
      );
    }
    const aid = matchAt(RE_AID, s, pos);
    offer(aid?.length, () => ({ kind: 'AID', text: aid!, offset: pos, length: aid!.length }));
    const mac = matchAt(RE_MAC, s, pos);
    offer(mac?.length, () => ({ kind: 'EID', text: mac!, offset: pos, length: mac!.length }));
    const num = matchAt(RE_N, s, pos);
    offer(num?.length, () => ({
      kind: 'NUM',
      text: num!,
      offset: pos,
      length: num!.length,
      value: convertNumber(num!, pos, expression),
    }));
    const hid = matchAt(RE_HID, s, pos);
    offer(hid?.length, () => ({ kind: 'HID', text: hid!, offset: pos, length: hid!.length }));
    const v6 = matchV6(s, pos);
    offer(v6?.length, () => ({ kind: 'HID6', text: v6!, offset: pos, length: v6!.length }));
    const bogus = matchAt(RE_BOGUS_EID, s, pos);
    offer(bogus?.length, () =>
      fail(
        `bogus ethernet address ${bogus} at column ${pos + 1}`,
        pos,
        bogus!.length,
        'a MAC address',
      ),
    );
    if (id !== undefined && Object.prototype.hasOwnProperty.call(NAMED_NUMBERS, id)) {
      offer(id.length, () => ({
        kind: 'NUM',
        text: id,
        offset: pos,
        length: id.length,
        value: NAMED_NUMBERS[id],
      }));
    } else if (id !== undefined) {
      // Named constants are literal strings too: a prefix may match when the ID rule does not win.
      offer(id.length, () => ({ kind: 'ID', text: id, offset: pos, length: id.length }));
    }
    const esc = matchAt(RE_ESCAPED_ID, s, pos);
    offer(esc?.length, () => ({
      kind: 'ID',
      text: esc!.slice(1),
      offset: pos,
      length: esc!.length,
    }));
    if (best === undefined) {
      const cp = s.codePointAt(pos) ?? 0;
      const ch = String.fromCodePoint(cp);
      return fail(
        `unexpected character ${JSON.stringify(ch)} at column ${pos + 1}`,
        pos,
        ch.length,
        'an operator, a keyword, a number or an address',
      );
    }
    const token = best.make();
    tokens.push(token);
    pos += best.len;
  }
  tokens.push({ kind: 'EOF', text: '', offset: s.length, length: 0 });
  return tokens;
}
