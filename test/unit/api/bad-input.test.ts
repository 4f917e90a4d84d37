// Malformed requests across every write route: each is a 4xx problem and changes nothing.
import { describe, expect, test } from 'vitest';

import { expectProblem, seededServer } from '../../helpers/api-server.js';

interface Case {
  name: string;
  method: 'POST' | 'PUT' | 'DELETE';
  url: string;
  payload?: unknown;
  /** Raw body text, sent as is. */
  raw?: string;
  headers?: Record<string, string>;
  status: number;
  code: string;
  /** Extra members the problem must have. */
  has?: Record<string, unknown>;
}

const TOKEN = 'test-token';
const auth = { authorization: `Bearer ${TOKEN}` };

const rule = { device: 'veth0', action: 'drop' };
const cases: Case[] = [];
const add = (c: Omit<Case, 'headers'> & { headers?: Record<string, string> }): void => {
  cases.push({ ...c, headers: { ...auth, ...c.headers } });
};

// Every JSON write route: bad JSON, empty, wrong top-level types, unknown fields.
const jsonRoutes: { method: 'POST' | 'PUT' | 'DELETE'; url: string; valid: unknown }[] = [
  { method: 'POST', url: '/v1/attachments', valid: { device: 'veth1' } },
  { method: 'POST', url: '/v1/sets', valid: { name: 'new', prefixes: ['10.0.0.0/8'] } },
  { method: 'POST', url: '/v1/sets/blk/prefixes', valid: { prefixes: ['10.0.0.0/8'] } },
  { method: 'DELETE', url: '/v1/sets/blk/prefixes', valid: { prefixes: ['192.0.2.0/24'] } },
  { method: 'POST', url: '/v1/rules', valid: rule },
  { method: 'POST', url: '/v1/limits', valid: { device: 'veth0', rate: '10pps' } },
  {
    method: 'POST',
    url: '/v1/filters',
    valid: { device: 'veth0', expression: 'tcp', action: 'drop' },
  },
  { method: 'PUT', url: '/v1/config', valid: {} },
  {
    method: 'POST',
    url: '/v1/replay',
    valid: { pcap: Buffer.from('d4c3b2a1'.padEnd(48, '0'), 'hex').toString('base64') },
  },
  { method: 'POST', url: '/v1/compile', valid: { expression: 'ip' } },
];
for (const r of jsonRoutes) {
  const json = { 'content-type': 'application/json' };
  add({
    name: `${r.method} ${r.url}: truncated JSON`,
    ...r,
    raw: '{"a": ',
    headers: json,
    status: 400,
    code: 'API_BAD_JSON',
  });
  add({
    name: `${r.method} ${r.url}: empty JSON body`,
    ...r,
    raw: '',
    headers: json,
    status: 400,
    code: 'API_BAD_JSON',
  });
  add({
    name: `${r.method} ${r.url}: trailing garbage`,
    ...r,
    raw: '{} x',
    headers: json,
    status: 400,
    code: 'API_BAD_JSON',
  });
  add({
    name: `${r.method} ${r.url}: an array`,
    ...r,
    payload: [r.valid],
    status: 400,
    code: 'API_VALIDATION',
  });
  add({
    name: `${r.method} ${r.url}: a string`,
    ...r,
    raw: '"x"',
    headers: json,
    status: 400,
    code: 'API_VALIDATION',
  });
  add({
    name: `${r.method} ${r.url}: null`,
    ...r,
    raw: 'null',
    headers: json,
    status: 400,
    code: 'API_VALIDATION',
  });
  add({
    name: `${r.method} ${r.url}: an unknown field`,
    ...r,
    payload: { ...(r.valid as object), surprise: 1 },
    status: 400,
    code: 'API_VALIDATION',
    has: {
      errors: [expect.objectContaining({ pointer: '/surprise', detail: 'unknown property' })],
    },
  });
  add({
    name: `${r.method} ${r.url}: XML`,
    ...r,
    raw: '<a/>',
    headers: { 'content-type': 'application/xml' },
    status: 415,
    code: 'API_UNSUPPORTED_MEDIA',
  });
  add({
    name: `${r.method} ${r.url}: no token`,
    ...r,
    payload: r.valid,
    headers: { authorization: '' },
    status: 401,
    code: 'API_UNAUTHORIZED',
  });
  add({
    name: `${r.method} ${r.url}: wrong token`,
    ...r,
    payload: r.valid,
    headers: { authorization: 'Bearer nope' },
    status: 401,
    code: 'API_UNAUTHORIZED',
  });
  add({
    name: `${r.method} ${r.url}: bad dryRun`,
    ...r,
    url: `${r.url}?dryRun=yes`,
    payload: r.valid,
    status: 400,
    code: 'API_VALIDATION',
  });
  add({
    name: `${r.method} ${r.url}: unknown query parameter`,
    ...r,
    url: `${r.url}?force=1`,
    payload: r.valid,
    status: 400,
    code: 'API_VALIDATION',
  });
}

// Rules: types, ranges, patterns, combinations the data plane refuses.
const badRules: [string, Record<string, unknown>, number, string][] = [
  ['no action', { device: 'veth0' }, 400, 'API_VALIDATION'],
  ['no device', { action: 'drop' }, 400, 'API_VALIDATION'],
  ['an unknown action', { ...rule, action: 'explode' }, 400, 'API_VALIDATION'],
  ['a port past 65535', { ...rule, proto: 'tcp', dport: 65536 }, 400, 'API_VALIDATION'],
  ['a negative port', { ...rule, proto: 'tcp', sport: -1 }, 400, 'API_VALIDATION'],
  ['a fractional port', { ...rule, proto: 'tcp', dport: 80.5 }, 400, 'API_VALIDATION'],
  ['a port as words', { ...rule, proto: 'tcp', dport: 'http' }, 400, 'API_VALIDATION'],
  ['a port range past 65535', { ...rule, proto: 'tcp', dport: '1-70000' }, 422, 'RULE_INVALID'],
  ['a reversed port range', { ...rule, proto: 'tcp', dport: '90-80' }, 422, 'RULE_INVALID'],
  ['a port as an array', { ...rule, dport: [80] }, 400, 'API_VALIDATION'],
  ['an unknown protocol name', { ...rule, proto: 'tcpp' }, 400, 'API_VALIDATION'],
  ['a protocol past 255', { ...rule, proto: 256 }, 400, 'API_VALIDATION'],
  ['a vlan past 4095', { ...rule, vlan: 4096 }, 400, 'API_VALIDATION'],
  ['a vlan as a string', { ...rule, vlan: '10' }, 400, 'API_VALIDATION'],
  ['a priority past the maximum', { ...rule, priority: 1_000_001 }, 400, 'API_VALIDATION'],
  ['a negative priority', { ...rule, priority: -1 }, 400, 'API_VALIDATION'],
  ['a priority as a string', { ...rule, priority: '5' }, 400, 'API_VALIDATION'],
  ['a src with host bits', { ...rule, src: '10.0.0.1/8' }, 422, 'PREFIX_INVALID'],
  ['a src that is no address', { ...rule, src: 'localhost' }, 422, 'PREFIX_INVALID'],
  ['a dst with a bad length', { ...rule, dst: '10.0.0.0/33' }, 422, 'PREFIX_INVALID'],
  ['a dst with a zone', { ...rule, dst: 'fe80::1%eth0' }, 422, 'PREFIX_INVALID'],
  ['an IPv6 dst with host bits', { ...rule, dst: '2001:db8::1/32' }, 422, 'PREFIX_INVALID'],
  ['a src as a number', { ...rule, src: 167772160 }, 400, 'API_VALIDATION'],
  ['a src past 64 characters', { ...rule, src: '1'.repeat(65) }, 400, 'API_VALIDATION'],
  ['a missing srcSet', { ...rule, srcSet: 'nosuch' }, 422, 'SET_NOT_FOUND'],
  ['a bad set name', { ...rule, dstSet: 'bad name' }, 400, 'API_VALIDATION'],
  ['a device name past 15 bytes', { ...rule, device: 'a'.repeat(16) }, 400, 'API_VALIDATION'],
  ['a device name with a slash', { ...rule, device: 'a/b' }, 400, 'API_VALIDATION'],
  ['the device name ".."', { ...rule, device: '..' }, 400, 'API_VALIDATION'],
  ['a device without an attachment', { ...rule, device: 'veth1' }, 422, 'CONFIG_INVALID'],
  ['an unknown hook', { ...rule, hook: 'tc' }, 400, 'API_VALIDATION'],
  [
    'icmp with a type past 255',
    { ...rule, proto: 'icmp', icmp: { type: 256 } },
    400,
    'API_VALIDATION',
  ],
  [
    'icmp with an unknown field',
    { ...rule, proto: 'icmp', icmp: { type: 8, kind: 1 } },
    400,
    'API_VALIDATION',
  ],
  ['icmp without an icmp proto', { ...rule, proto: 'tcp', icmp: { type: 8 } }, 422, 'RULE_INVALID'],
  ['tcp flags with an unknown flag', { ...rule, tcpFlags: 'syn,bogus' }, 422, 'RULE_INVALID'],
  ['tcp flags with udp', { ...rule, proto: 'udp', tcpFlags: 'syn' }, 422, 'RULE_INVALID'],
  ['a ratelimit without a rate', { ...rule, action: 'ratelimit' }, 422, 'LIMIT_INVALID'],
  [
    'a ratelimit with a bad rate',
    { ...rule, action: 'ratelimit', rate: 'fast' },
    422,
    'LIMIT_INVALID',
  ],
  ['a rate of zero', { ...rule, action: 'ratelimit', rate: 0 }, 400, 'API_VALIDATION'],
  ['a burst of zero', { ...rule, action: 'ratelimit', rate: 10, burst: 0 }, 400, 'API_VALIDATION'],
  [
    'perSource as a string',
    { ...rule, action: 'ratelimit', rate: 10, perSource: 'yes' },
    400,
    'API_VALIDATION',
  ],
  ['a redirect without a target', { ...rule, action: 'redirect' }, 422, 'RULE_INVALID'],
  [
    'a redirect with a bad MAC',
    { ...rule, action: 'redirect', to: 'veth1', via: 'zz:zz' },
    400,
    'API_VALIDATION',
  ],
  ['a rate on a drop rule', { ...rule, rate: 10 }, 422, 'RULE_INVALID'],
  ['an id with a space', { ...rule, id: 'a b' }, 400, 'API_VALIDATION'],
  ['an id starting with "~"', { ...rule, id: '~abc' }, 400, 'API_VALIDATION'],
  ['a taken id', { ...rule, id: 'r1' }, 409, 'CONFIG_CONFLICT'],
  ['an empty filter', { ...rule, filter: '' }, 400, 'API_VALIDATION'],
  ['a filter that does not parse', { ...rule, filter: 'udp and and' }, 400, 'FILTER_SYNTAX'],
  ['a filter naming a host', { ...rule, filter: 'host example.com' }, 400, 'FILTER_UNSUPPORTED'],
];
for (const [name, payload, status, code] of badRules)
  add({ name: `POST /v1/rules: ${name}`, method: 'POST', url: '/v1/rules', payload, status, code });

// Limits and filters: their own shapes.
const badLimits: [string, Record<string, unknown>, number, string][] = [
  ['no rate', { device: 'veth0' }, 400, 'API_VALIDATION'],
  ['an action', { device: 'veth0', rate: 10, action: 'drop' }, 400, 'API_VALIDATION'],
  ['a rate as a boolean', { device: 'veth0', rate: true }, 400, 'API_VALIDATION'],
  ['a rate in unknown units', { device: 'veth0', rate: '10 parsecs' }, 422, 'LIMIT_INVALID'],
  ['a negative rate', { device: 'veth0', rate: -5 }, 400, 'API_VALIDATION'],
  ['a burst as a string', { device: 'veth0', rate: 10, burst: '5' }, 400, 'API_VALIDATION'],
  ['a bad filter', { device: 'veth0', rate: 10, filter: 'port' }, 400, 'FILTER_SYNTAX'],
];
for (const [name, payload, status, code] of badLimits)
  add({
    name: `POST /v1/limits: ${name}`,
    method: 'POST',
    url: '/v1/limits',
    payload,
    status,
    code,
  });

const flt = { device: 'veth0', action: 'drop' };
const badFilters: [string, Record<string, unknown>, number, string, Record<string, unknown>?][] = [
  ['no expression', flt, 400, 'API_VALIDATION'],
  ['an empty expression', { ...flt, expression: '' }, 400, 'API_VALIDATION'],
  ['an expression as a number', { ...flt, expression: 5 }, 400, 'API_VALIDATION'],
  ['a filter field', { ...flt, expression: 'tcp', filter: 'tcp' }, 400, 'API_VALIDATION'],
  [
    'a dangling "and"',
    { ...flt, expression: 'udp and' },
    400,
    'FILTER_SYNTAX',
    { expression: 'udp and', offset: 7, pointer: '/expression' },
  ],
  [
    'a port without a number',
    { ...flt, expression: 'udp and dst port and host 192.0.2.1' },
    400,
    'FILTER_SYNTAX',
    { offset: 17, length: 3 },
  ],
  ['an unknown keyword', { ...flt, expression: 'tcpp' }, 400, 'FILTER_SYNTAX', { offset: 0 }],
  ['an unbalanced parenthesis', { ...flt, expression: '(tcp or udp' }, 400, 'FILTER_SYNTAX'],
  ['a bad index', { ...flt, expression: 'ip[6:3] = 1' }, 400, 'FILTER_SYNTAX'],
  ['a port past 65535', { ...flt, expression: 'port 70000' }, 400, 'FILTER_SYNTAX'],
  ['a bad address', { ...flt, expression: 'host 300.1.1.1' }, 400, 'FILTER_SYNTAX'],
  ['a host name', { ...flt, expression: 'host example.com' }, 400, 'FILTER_UNSUPPORTED'],
  [
    'an expression past 4096 characters',
    { ...flt, expression: 'tcp or '.repeat(600) + 'tcp' },
    400,
    'API_VALIDATION',
  ],
  ['no action', { device: 'veth0', expression: 'tcp' }, 400, 'API_VALIDATION'],
  [
    'a device that is not attached',
    { device: 'veth1', expression: 'tcp', action: 'drop' },
    422,
    'CONFIG_INVALID',
  ],
];
for (const [name, payload, status, code, has] of badFilters)
  add({
    name: `POST /v1/filters: ${name}`,
    method: 'POST',
    url: '/v1/filters',
    payload,
    status,
    code,
    has,
  });

// Attachments.
const badAttachments: [string, unknown, number, string][] = [
  ['no device', {}, 400, 'API_VALIDATION'],
  ['an unknown mode', { device: 'veth1', mode: 'offload' }, 400, 'API_VALIDATION'],
  ['an unknown default action', { device: 'veth1', defaultAction: 'count' }, 400, 'API_VALIDATION'],
  ['a device as a number', { device: 3 }, 400, 'API_VALIDATION'],
  ['an empty device', { device: '' }, 400, 'API_VALIDATION'],
  ['a device with a space', { device: 'eth 0' }, 400, 'API_VALIDATION'],
];
for (const [name, payload, status, code] of badAttachments)
  add({
    name: `POST /v1/attachments: ${name}`,
    method: 'POST',
    url: '/v1/attachments',
    payload,
    status,
    code,
  });
add({
  name: 'DELETE /v1/attachments: not attached',
  method: 'DELETE',
  url: '/v1/attachments/veth1',
  status: 404,
  code: 'CONFIG_NOT_FOUND',
});
add({
  name: 'DELETE /v1/attachments: a bad hook',
  method: 'DELETE',
  url: '/v1/attachments/veth0?hook=tc',
  status: 400,
  code: 'API_VALIDATION',
});
add({
  name: 'DELETE /v1/attachments: a bad device',
  method: 'DELETE',
  url: `/v1/attachments/${'x'.repeat(16)}`,
  status: 400,
  code: 'API_VALIDATION',
});

// Sets.
const badSets: [string, string, unknown, number, string][] = [
  ['POST', '/v1/sets', { name: 'a b', prefixes: [] }, 400, 'API_VALIDATION'],
  ['POST', '/v1/sets', { name: 'x'.repeat(65), prefixes: [] }, 400, 'API_VALIDATION'],
  ['POST', '/v1/sets', { name: 'ok' }, 400, 'API_VALIDATION'],
  ['POST', '/v1/sets', { name: 'ok', prefixes: '10.0.0.0/8' }, 400, 'API_VALIDATION'],
  ['POST', '/v1/sets', { name: 'ok', prefixes: [10] }, 400, 'API_VALIDATION'],
  ['POST', '/v1/sets', { name: 'ok', prefixes: ['10.0.0.1/8'] }, 422, 'PREFIX_INVALID'],
  ['POST', '/v1/sets', { name: 'ok', prefixes: ['10.0.0.0/8', 'nope'] }, 422, 'PREFIX_INVALID'],
  ['POST', '/v1/sets', { name: 'ok', prefixes: ['::/129'] }, 422, 'PREFIX_INVALID'],
  ['POST', '/v1/sets', { name: 'ok', prefixes: ['1.2.3.4.5'] }, 422, 'PREFIX_INVALID'],
  ['POST', '/v1/sets', { name: 'ok', prefixes: ['x'.repeat(65)] }, 400, 'API_VALIDATION'],
  ['POST', '/v1/sets', { name: 'blk', prefixes: [] }, 409, 'CONFIG_CONFLICT'],
  ['POST', '/v1/sets/nosuch/prefixes', { prefixes: ['10.0.0.0/8'] }, 404, 'CONFIG_NOT_FOUND'],
  ['POST', '/v1/sets/blk/prefixes', { prefixes: ['10.0.0.0/33'] }, 422, 'PREFIX_INVALID'],
  ['POST', '/v1/sets/blk/prefixes', { prefixes: [null] }, 400, 'API_VALIDATION'],
  ['POST', '/v1/sets/blk/prefixes', {}, 400, 'API_VALIDATION'],
  ['POST', '/v1/sets/bad name/prefixes', { prefixes: [] }, 400, 'API_VALIDATION'],
  ['DELETE', '/v1/sets/blk/prefixes', { prefixes: ['300.0.0.0/8'] }, 422, 'PREFIX_INVALID'],
  ['DELETE', '/v1/sets/nosuch/prefixes', { prefixes: [] }, 404, 'CONFIG_NOT_FOUND'],
  ['DELETE', '/v1/sets/blk', undefined, 409, 'CONFIG_CONFLICT'],
  ['DELETE', '/v1/sets/nosuch', undefined, 404, 'CONFIG_NOT_FOUND'],
];
for (const [method, url, payload, status, code] of badSets)
  add({
    name: `${method} ${url}: ${JSON.stringify(payload)}`,
    method: method as Case['method'],
    url,
    payload,
    status,
    code,
  });

// Streamed set bodies.
const text = { 'content-type': 'text/plain' };
const ndjson = { 'content-type': 'application/x-ndjson' };
add({
  name: 'PUT set: text with a bad prefix on line 3',
  method: 'PUT',
  url: '/v1/sets/s',
  raw: '10.0.0.0/8\n\nfoo\n',
  headers: text,
  status: 422,
  code: 'PREFIX_INVALID',
  has: { line: 3 },
});
add({
  name: 'PUT set: text with host bits after comments',
  method: 'PUT',
  url: '/v1/sets/s',
  raw: '# a\n# b\n10.0.0.1/8',
  headers: text,
  status: 422,
  code: 'PREFIX_INVALID',
  has: { line: 3, canonical: '10.0.0.0/8' },
});
add({
  name: 'PUT set: text with a line past 64 characters',
  method: 'PUT',
  url: '/v1/sets/s',
  raw: `10.0.0.0/8\n${'1'.repeat(65)}\n`,
  headers: text,
  status: 400,
  code: 'API_SET_LINE',
  has: { line: 2 },
});
add({
  name: 'PUT set: text with a huge line',
  method: 'PUT',
  url: '/v1/sets/s',
  raw: 'a'.repeat(100_000),
  headers: text,
  status: 400,
  code: 'API_SET_LINE',
});
add({
  name: 'PUT set: NDJSON that is not JSON',
  method: 'PUT',
  url: '/v1/sets/s',
  raw: '"10.0.0.0/8"\n10.1.0.0/16\n',
  headers: ndjson,
  status: 400,
  code: 'API_SET_LINE',
  has: { line: 2 },
});
add({
  name: 'PUT set: NDJSON with a number',
  method: 'PUT',
  url: '/v1/sets/s',
  raw: '5\n',
  headers: ndjson,
  status: 400,
  code: 'API_SET_LINE',
  has: { line: 1 },
});
add({
  name: 'PUT set: NDJSON with an extra key',
  method: 'PUT',
  url: '/v1/sets/s',
  raw: '{"prefix":"10.0.0.0/8","x":1}\n',
  headers: ndjson,
  status: 400,
  code: 'API_SET_LINE',
});
add({
  name: 'PUT set: NDJSON with a bad prefix',
  method: 'PUT',
  url: '/v1/sets/s',
  raw: '"10.0.0.0/8"\n\n{"prefix":"10.0.0.0/40"}\n',
  headers: ndjson,
  status: 422,
  code: 'PREFIX_INVALID',
  has: { line: 3 },
});
add({
  name: 'PUT set: JSON that is not JSON',
  method: 'PUT',
  url: '/v1/sets/s',
  raw: '{"prefixes": [',
  headers: { 'content-type': 'application/json' },
  status: 400,
  code: 'API_BAD_JSON',
});
add({
  name: 'PUT set: JSON with an unknown field',
  method: 'PUT',
  url: '/v1/sets/s',
  payload: { prefixes: [], name: 's' },
  status: 400,
  code: 'API_VALIDATION',
});
add({
  name: 'PUT set: JSON with a bad prefix',
  method: 'PUT',
  url: '/v1/sets/s',
  payload: { prefixes: ['10.0.0.0/8', '10.0.0.1/8'] },
  status: 422,
  code: 'PREFIX_INVALID',
  has: { pointer: '/prefixes/1' },
});
add({
  name: 'PUT set: a bad set name',
  method: 'PUT',
  url: '/v1/sets/a%20b',
  raw: '10.0.0.0/8',
  headers: text,
  status: 400,
  code: 'API_VALIDATION',
});
add({
  name: 'PUT set: XML',
  method: 'PUT',
  url: '/v1/sets/s',
  raw: '<a/>',
  headers: { 'content-type': 'application/xml' },
  status: 415,
  code: 'API_UNSUPPORTED_MEDIA',
});
add({
  name: 'PUT set: no token',
  method: 'PUT',
  url: '/v1/sets/s',
  raw: '10.0.0.0/8',
  headers: { ...text, authorization: '' },
  status: 401,
  code: 'API_UNAUTHORIZED',
});

// Rules, limits and filters by id.
for (const route of ['rules', 'limits', 'filters']) {
  add({
    name: `DELETE /v1/${route}: unknown id`,
    method: 'DELETE',
    url: `/v1/${route}/nosuch`,
    status: 404,
    code: 'CONFIG_NOT_FOUND',
  });
  add({
    name: `DELETE /v1/${route}: bad dryRun`,
    method: 'DELETE',
    url: `/v1/${route}/r1?dryRun=1x`,
    status: 400,
    code: 'API_VALIDATION',
  });
}
add({
  name: 'DELETE /v1/limits: not a ratelimit rule',
  method: 'DELETE',
  url: '/v1/limits/r1',
  status: 404,
  code: 'CONFIG_NOT_FOUND',
});
add({
  name: 'DELETE /v1/filters: not a filter rule',
  method: 'DELETE',
  url: '/v1/filters/lim',
  status: 404,
  code: 'CONFIG_NOT_FOUND',
});

// Whole-document replace.
const badConfigs: [
  string,
  unknown,
  Record<string, string>,
  number,
  string,
  Record<string, unknown>?,
][] = [
  ['a stale If-Match', {}, { 'if-match': '"0"' }, 412, 'CONFIG_PRECONDITION', { current: 1 }],
  ['a future If-Match', {}, { 'if-match': '"7"' }, 412, 'CONFIG_PRECONDITION'],
  ['an unquoted If-Match', {}, { 'if-match': '1' }, 400, 'API_BAD_IF_MATCH'],
  ['a weak If-Match', {}, { 'if-match': 'W/"1"' }, 400, 'API_BAD_IF_MATCH'],
  ['two If-Match tags', {}, { 'if-match': '"1", "2"' }, 400, 'API_BAD_IF_MATCH'],
  ['a non-numeric If-Match', {}, { 'if-match': '"abc"' }, 400, 'API_BAD_IF_MATCH'],
  ['an empty If-Match', {}, { 'if-match': '""' }, 400, 'API_BAD_IF_MATCH'],
  ['version 2', { version: 2 }, {}, 400, 'API_VALIDATION'],
  ['rules as an object', { rules: {} }, {}, 400, 'API_VALIDATION'],
  ['an unknown top-level field', { attachments: [], extra: [] }, {}, 400, 'API_VALIDATION'],
  [
    'an attachment twice',
    { attachments: [{ device: 'veth0' }, { device: 'veth0', hook: 'xdp' }] },
    {},
    422,
    'CONFIG_INVALID',
    { pointer: '/attachments/1' },
  ],
  [
    'a set twice',
    {
      sets: [
        { name: 'a', prefixes: [] },
        { name: 'a', prefixes: [] },
      ],
    },
    {},
    422,
    'CONFIG_INVALID',
    { pointer: '/sets/1' },
  ],
  [
    'a rule id twice',
    {
      attachments: [{ device: 'veth0' }],
      rules: [
        { ...rule, id: 'a' },
        { ...rule, id: 'a' },
      ],
    },
    {},
    422,
    'CONFIG_INVALID',
    { pointer: '/rules/1/id' },
  ],
  [
    'a rule with a bad port',
    { attachments: [{ device: 'veth0' }], rules: [{ ...rule, dport: 99999 }] },
    {},
    400,
    'API_VALIDATION',
  ],
  [
    'a rule with an unknown field',
    { rules: [{ ...rule, colour: 'red' }] },
    {},
    400,
    'API_VALIDATION',
  ],
  [
    'a rule with a bad filter',
    { attachments: [{ device: 'veth0' }], rules: [rule, { ...rule, filter: 'udp port' }] },
    {},
    400,
    'FILTER_SYNTAX',
    { pointer: '/rules/1/filter' },
  ],
  [
    'a rule on a missing set',
    { attachments: [{ device: 'veth0' }], rules: [{ ...rule, srcSet: 'gone' }] },
    {},
    422,
    'SET_NOT_FOUND',
  ],
  [
    'a set with a bad prefix',
    { sets: [{ name: 'a', prefixes: ['1.2.3.4/40'] }] },
    {},
    422,
    'PREFIX_INVALID',
  ],
  [
    'a rule without its attachment',
    { rules: [rule] },
    {},
    422,
    'CONFIG_INVALID',
    { pointer: '/rules/0/device' },
  ],
  [
    'attachments with a bad mode',
    { attachments: [{ device: 'veth0', mode: 'fast' }] },
    {},
    400,
    'API_VALIDATION',
  ],
];
for (const [name, payload, headers, status, code, has] of badConfigs)
  add({
    name: `PUT /v1/config: ${name}`,
    method: 'PUT',
    url: '/v1/config',
    payload,
    headers,
    status,
    code,
    has,
  });

// Replay and compile.
const badReplays: [string, unknown, number, string][] = [
  ['no pcap', {}, 400, 'API_VALIDATION'],
  ['pcap as a number', { pcap: 5 }, 400, 'API_VALIDATION'],
  ['pcap that is not base64', { pcap: '!!!!' }, 400, 'API_VALIDATION'],
  ['pcap with bad padding', { pcap: 'abc' }, 400, 'API_VALIDATION'],
  ['pcap that is no capture', { pcap: Buffer.alloc(32).toString('base64') }, 400, 'API_VALIDATION'],
  ['a config with an unknown field', { pcap: '', config: { x: 1 } }, 400, 'API_VALIDATION'],
  [
    'a config with a bad filter',
    {
      pcap: Buffer.from('d4c3b2a1'.padEnd(48, '0'), 'hex').toString('base64'),
      config: { rules: [{ ...rule, filter: 'ip[' }] },
    },
    400,
    'FILTER_SYNTAX',
  ],
];
for (const [name, payload, status, code] of badReplays)
  add({
    name: `POST /v1/replay: ${name}`,
    method: 'POST',
    url: '/v1/replay',
    payload,
    status,
    code,
  });
const badCompiles: [string, unknown, number, string][] = [
  ['no expression', {}, 400, 'API_VALIDATION'],
  ['an unknown format', { expression: 'ip', format: 'dddd' }, 400, 'API_VALIDATION'],
  ['an unknown link type', { expression: 'ip', linkType: 'RAW' }, 400, 'API_VALIDATION'],
  ['a syntax error', { expression: 'ip and' }, 400, 'FILTER_SYNTAX'],
  ['a host name', { expression: 'host example.com' }, 400, 'FILTER_UNSUPPORTED'],
  ['an expression past 64 KiB', { expression: 'x'.repeat(70_000) }, 413, 'API_BODY_TOO_LARGE'],
];
for (const [name, payload, status, code] of badCompiles)
  add({
    name: `POST /v1/compile: ${name}`,
    method: 'POST',
    url: '/v1/compile',
    payload,
    status,
    code,
  });

// Oversized JSON bodies on every JSON route (replay takes captures of up to 64 MiB).
for (const r of jsonRoutes.filter((j) => j.url !== '/v1/replay'))
  add({
    name: `${r.method} ${r.url}: a body past the limit`,
    ...r,
    raw: JSON.stringify({ pad: 'x'.repeat(70_000) }),
    headers: { 'content-type': 'application/json' },
    status: 413,
    code: 'API_BODY_TOO_LARGE',
  });

describe('malformed requests', () => {
  test('there are at least 150 of them', () => {
    expect(cases.length).toBeGreaterThanOrEqual(150);
  });

  test.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const { app, controller } = await seededServer({ token: TOKEN, bodyLimit: 64 * 1024 });
    try {
      const before = controller.config();
      const applied = controller.applied;
      const headers = { ...c.headers };
      if (headers.authorization === '') delete headers.authorization;
      const res = await app.inject({
        method: c.method,
        url: c.url,
        headers,
        ...(c.raw !== undefined
          ? { payload: c.raw }
          : c.payload !== undefined
            ? { payload: c.payload as object }
            : {}),
      });
      const problem = expectProblem(res, c.status, c.code);
      if (c.has !== undefined) expect(problem).toMatchObject(c.has);
      expect(controller.config()).toEqual(before);
      expect(controller.applied).toBe(applied);
    } finally {
      await app.close();
    }
  });
});
