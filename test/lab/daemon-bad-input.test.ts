// Malformed requests to every write route of a real daemon in a lab namespace: each is a 4xx application/problem+json, and afterwards the desired state (document and generation) and the data plane (set tries, rule and limiter id tables, links, XDP programs) are exactly what they were; the CLI turns them into one `sluice: …` line and exit 1 (API) or 2 (usage).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { writePcap } from '../helpers/packets/index.js';
import { frame } from '../helpers/pipeline-frames.js';
import { runCli } from '../helpers/cli.js';
import { describeKernel } from '../helpers/privileges.js';
import {
  curlInNetns,
  declaredBodyRequest,
  kernelSnapshot,
  openDaemonLab,
  problemOf,
  type DaemonLab,
  type KernelSnapshot,
  type Problem,
} from './daemon-e2e-lab.js';

/** One malformed request and the problem it must get. */
interface Case {
  name: string;
  method: string;
  path: string;
  /** Objects go as JSON; strings as they are, with `type` (default application/json). */
  body?: unknown;
  type?: string;
  headers?: Record<string, string>;
  /** A body this long is announced (Content-Length), and only its first KiB sent. */
  declaredLength?: number;
  status: number;
  code: string;
  /** More members the problem must have. */
  problem?: Record<string, unknown>;
}

const BAD_EXPRESSION = 'udp and dst port and host 192.0.2.1';
const MiB = 1024 * 1024;

await describeKernel('malformed requests to a real daemon change nothing', () => {
  let x: DaemonLab;
  let W: string;
  let S0: string;
  let tmp: string;
  let baseline: { config: unknown; etag: string; kernel: KernelSnapshot };

  const state = async (): Promise<{ config: unknown; etag: string }> => {
    const res = await x.daemon.api('GET', '/v1/config');
    expect(res.status).toBe(200);
    return { config: res.body, etag: String(res.headers.etag) };
  };

  /** The whole state and the data plane are as they were before any bad request. */
  const expectUnchanged = async (after: string): Promise<void> => {
    expect(await state(), `desired state after ${after}`).toEqual({
      config: baseline.config,
      etag: baseline.etag,
    });
    expect(await kernelSnapshot(x.daemon.pinDir, x.netns), `data plane after ${after}`).toEqual(
      baseline.kernel,
    );
  };

  beforeAll(async () => {
    x = await openDaemonLab({ tcp: true });
    W = x.wire;
    S0 = x.spare[0];
    tmp = mkdtempSync(join(tmpdir(), 'sluice-bad-input-'));
    const put = await x.daemon.api('PUT', '/v1/config', {
      version: 1,
      attachments: [
        { device: W, hook: 'xdp', mode: 'native' },
        { device: S0, hook: 'tc-ingress' },
      ],
      sets: [
        { name: 'blocklist', prefixes: ['10.0.0.0/8', '2001:db8::/32', '203.0.113.7'] },
        { name: 'allow', prefixes: ['198.51.100.0/24'] },
      ],
      rules: [
        { id: 'blk', device: W, srcSet: 'blocklist', action: 'drop' },
        { id: 'lim', device: W, proto: 'udp', dport: 53, action: 'ratelimit', rate: '1000pps' },
        { id: 'flt', device: S0, hook: 'tc-ingress', filter: 'udp port 9', action: 'drop' },
      ],
    });
    expect(put.status, put.text).toBe(200);
    const kernel = await kernelSnapshot(x.daemon.pinDir, x.netns);
    // The baseline is worth comparing against: it holds something of everything.
    expect(kernel.set4).toBeGreaterThan(0);
    expect(kernel.set6).toBeGreaterThan(0);
    expect(kernel.attachments[`${W}@xdp`]).toMatchObject({
      rules: ['blk', 'lim'],
      limits: ['lim'],
    });
    expect(kernel.attachments[`${S0}@tc-ingress`]).toMatchObject({ rules: ['flt'] });
    expect(kernel.xdp[W]).toBeDefined();
    baseline = { ...(await state()), kernel };
    expect(baseline.etag).toBe('"1"');
  });

  afterAll(async () => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    await x?.destroy();
  });

  /** The cases, built once the lab's device names are known. */
  const cases = (): Case[] => {
    const out: Case[] = [];
    const add = (c: Case): void => {
      out.push(c);
    };
    const validation = (name: string, method: string, path: string, body: unknown): void =>
      add({ name, method, path, body, status: 400, code: 'API_VALIDATION' });

    // Malformations every JSON write route gets.
    const jsonRoutes: [string, string, unknown][] = [
      ['POST', '/v1/attachments', { device: W }],
      ['POST', '/v1/sets', { name: 'new', prefixes: [] }],
      ['POST', '/v1/sets/allow/prefixes', { prefixes: ['192.0.2.9'] }],
      ['DELETE', '/v1/sets/allow/prefixes', { prefixes: ['198.51.100.0/24'] }],
      ['POST', '/v1/rules', { device: W, action: 'drop' }],
      ['POST', '/v1/limits', { device: W, rate: '10pps' }],
      ['POST', '/v1/filters', { device: W, expression: 'tcp', action: 'drop' }],
      ['PUT', '/v1/config', { version: 1 }],
      ['POST', '/v1/compile', { expression: 'tcp' }],
      ['POST', '/v1/replay', { pcap: '' }],
    ];
    for (const [method, path, good] of jsonRoutes) {
      const at = `${method} ${path}`;
      add({
        name: `${at}: truncated JSON`,
        method,
        path,
        body: '{"device": ',
        status: 400,
        code: 'API_BAD_JSON',
      });
      add({
        name: `${at}: JSON with a trailing comma`,
        method,
        path,
        body: '{"a": 1,}',
        status: 400,
        code: 'API_BAD_JSON',
      });
      add({
        name: `${at}: an empty JSON body`,
        method,
        path,
        body: '',
        status: 400,
        code: 'API_BAD_JSON',
      });
      validation(`${at}: an array, not an object`, method, path, [good]);
      add({
        name: `${at}: a JSON string, not an object`,
        method,
        path,
        body: '"just text"',
        status: 400,
        code: 'API_VALIDATION',
      });
      validation(`${at}: an unknown field`, method, path, { ...(good as object), surprise: true });
      add({
        name: `${at}: an XML body`,
        method,
        path,
        body: '<config/>',
        type: 'application/xml',
        status: 415,
        code: 'API_UNSUPPORTED_MEDIA',
      });
      validation(`${at}: ?dryRun=maybe`, method, `${path}?dryRun=maybe`, good);
      validation(`${at}: an unknown query parameter`, method, `${path}?force=1`, good);
      if (path !== '/v1/replay')
        add({
          name: `${at}: a body over 1 MiB`,
          method,
          path,
          declaredLength: MiB + 1,
          status: 413,
          code: 'API_BODY_TOO_LARGE',
        });
    }

    // Attachments.
    const att = (name: string, body: unknown, status = 400, code = 'API_VALIDATION'): void =>
      add({ name: `attach: ${name}`, method: 'POST', path: '/v1/attachments', body, status, code });
    att('a 16-byte device name', { device: 'a'.repeat(16) });
    att('a device name with "/"', { device: 'veth/1' });
    att('a device name "."', { device: '.' });
    att('a number as device', { device: 5 });
    att('no device', { hook: 'xdp' });
    att('hook "xdp-offload"', { device: W, hook: 'xdp-offload' });
    att('mode "turbo"', { device: W, mode: 'turbo' });
    att('defaultAction "reject"', { device: W, defaultAction: 'reject' });
    att('malformed 1', { device: W, malformed: 1 });
    att(
      'a mode on a tc hook',
      { device: S0, hook: 'tc-egress', mode: 'native' },
      422,
      'CONFIG_INVALID',
    );
    for (const [name, path, status, code] of [
      ['an unknown device', `/v1/attachments/nosuchdev`, 404, 'CONFIG_NOT_FOUND'],
      ['a hook not attached', `/v1/attachments/${W}?hook=tc-egress`, 404, 'CONFIG_NOT_FOUND'],
      ['hook "bogus"', `/v1/attachments/${W}?hook=bogus`, 400, 'API_VALIDATION'],
      ['a 16-byte device', `/v1/attachments/${'d'.repeat(16)}`, 400, 'API_VALIDATION'],
      ['?dryRun=1x', `/v1/attachments/${W}?dryRun=1x`, 400, 'API_VALIDATION'],
    ] as const)
      add({ name: `detach: ${name}`, method: 'DELETE', path, status, code });

    // Sets.
    const set = (
      name: string,
      body: unknown,
      status = 400,
      code = 'API_VALIDATION',
      problem?: Record<string, unknown>,
    ): void =>
      add({
        name: `create set: ${name}`,
        method: 'POST',
        path: '/v1/sets',
        body,
        status,
        code,
        problem,
      });
    set('a name with a space', { name: 'my set', prefixes: [] });
    set('a 65-character name', { name: 's'.repeat(65), prefixes: [] });
    set('prefixes as a string', { name: 'n', prefixes: '10.0.0.0/8' });
    set('a number among the prefixes', { name: 'n', prefixes: [10] });
    set('a 65-character prefix', { name: 'n', prefixes: ['1'.repeat(65)] });
    set('no prefixes', { name: 'n' });
    set('a /33', { name: 'n', prefixes: ['192.0.2.0/24', '10.0.0.0/33'] }, 422, 'PREFIX_INVALID');
    set('an octet of 300', { name: 'n', prefixes: ['300.1.1.1'] }, 422, 'PREFIX_INVALID');
    set('an IPv6 /129', { name: 'n', prefixes: ['2001:db8::/129'] }, 422, 'PREFIX_INVALID');
    set('a word', { name: 'n', prefixes: ['hello'] }, 422, 'PREFIX_INVALID');
    set('a negative length', { name: 'n', prefixes: ['10.0.0.0/-1'] }, 422, 'PREFIX_INVALID');
    set('a name taken', { name: 'blocklist', prefixes: [] }, 409, 'CONFIG_CONFLICT');

    const put = (
      name: string,
      body: string,
      type: string,
      status: number,
      code: string,
      problem?: Record<string, unknown>,
      path = '/v1/sets/blocklist',
    ): void =>
      add({ name: `replace set: ${name}`, method: 'PUT', path, body, type, status, code, problem });
    put(
      'a bad line of text',
      '10.0.0.0/8\n# ok\n10.0.0.0/33\n',
      'text/plain',
      422,
      'PREFIX_INVALID',
    );
    put('a word in text', '192.0.2.0/24\nnot-a-prefix\n', 'text/plain', 422, 'PREFIX_INVALID');
    put('an NDJSON number', '"10.0.0.0/8"\n5\n', 'application/x-ndjson', 400, 'API_SET_LINE', {
      line: 2,
    });
    put(
      'NDJSON that is not JSON',
      '"10.0.0.0/8"\n{"prefix": \n',
      'application/x-ndjson',
      400,
      'API_SET_LINE',
      { line: 2 },
    );
    put(
      'an NDJSON object without prefix',
      '{"net": "10.0.0.0/8"}\n',
      'application/x-ndjson',
      400,
      'API_SET_LINE',
      { line: 1 },
    );
    put(
      'a bad NDJSON prefix',
      '"10.0.0.0/8"\n"10.0.0.0/40"\n',
      'application/x-ndjson',
      422,
      'PREFIX_INVALID',
    );
    put(
      'JSON prefixes not a list',
      '{"prefixes": "10.0.0.0/8"}',
      'application/json',
      400,
      'API_VALIDATION',
    );
    put('JSON that does not parse', '{"prefixes": [', 'application/json', 400, 'API_BAD_JSON');
    put(
      'a bad JSON prefix',
      '{"prefixes": ["10.0.0.0/8", "1.2.3"]}',
      'application/json',
      422,
      'PREFIX_INVALID',
    );
    put('an XML body', '<set/>', 'application/xml', 415, 'API_UNSUPPORTED_MEDIA');
    put(
      'a name with a space',
      '10.0.0.0/8\n',
      'text/plain',
      400,
      'API_VALIDATION',
      undefined,
      '/v1/sets/a%20b',
    );
    put(
      '?dryRun=sure',
      '10.0.0.0/8\n',
      'text/plain',
      400,
      'API_VALIDATION',
      undefined,
      '/v1/sets/blocklist?dryRun=sure',
    );

    for (const [method, verb] of [
      ['POST', 'add to'],
      ['DELETE', 'remove from'],
    ] as const) {
      const path = '/v1/sets/blocklist/prefixes';
      add({
        name: `${verb} an unknown set`,
        method,
        path: '/v1/sets/nosuch/prefixes',
        body: { prefixes: ['10.0.0.0/8'] },
        status: 404,
        code: 'CONFIG_NOT_FOUND',
      });
      validation(`${verb} a set: prefixes not a list`, method, path, { prefixes: '10.0.0.0/8' });
      validation(`${verb} a set: no prefixes`, method, path, {});
      validation(`${verb} a set: a name with "/"`, method, '/v1/sets/a%2Fb/prefixes', {
        prefixes: [],
      });
    }
    add({
      name: 'add a /33 to a set',
      method: 'POST',
      path: '/v1/sets/blocklist/prefixes',
      body: { prefixes: ['192.0.2.0/24', '192.0.2.0/33'] },
      status: 422,
      code: 'PREFIX_INVALID',
    });
    add({
      name: 'delete an unknown set',
      method: 'DELETE',
      path: '/v1/sets/nosuch',
      status: 404,
      code: 'CONFIG_NOT_FOUND',
    });
    add({
      name: 'delete a set a rule uses',
      method: 'DELETE',
      path: '/v1/sets/blocklist',
      status: 409,
      code: 'CONFIG_CONFLICT',
    });
    add({
      name: 'delete a set with a bad name',
      method: 'DELETE',
      path: '/v1/sets/a%20b',
      status: 400,
      code: 'API_VALIDATION',
    });

    // Rules: every field out of its range or of the wrong type.
    const rule = (
      name: string,
      fields: Record<string, unknown>,
      status = 400,
      code = 'API_VALIDATION',
      problem?: Record<string, unknown>,
    ): void =>
      add({
        name: `rule: ${name}`,
        method: 'POST',
        path: '/v1/rules',
        body: { device: W, action: 'drop', ...fields },
        status,
        code,
        problem,
      });
    rule('dport 65536', { proto: 'udp', dport: 65536 });
    rule('dport -1', { proto: 'udp', dport: -1 });
    rule('dport "99999"', { proto: 'udp', dport: '99999' }, 422, 'CONFIG_INVALID');
    rule('dport "80-70"', { proto: 'tcp', dport: '80-70' }, 422, 'CONFIG_INVALID');
    rule('dport "http"', { proto: 'tcp', dport: 'http' });
    rule('sport 1.5', { proto: 'tcp', sport: 1.5 });
    rule('proto "gre"', { proto: 'gre' });
    rule('proto 256', { proto: 256 });
    rule('icmp type 256', { proto: 'icmp', icmp: { type: 256 } });
    rule('icmp without a type', { proto: 'icmp', icmp: { code: 1 } });
    rule('icmp with an extra field', { proto: 'icmp', icmp: { type: 8, id: 1 } });
    rule('vlan 4096', { vlan: 4096 });
    rule('vlan "7"', { vlan: '7' });
    rule('tcpFlags "syn,bogus"', { proto: 'tcp', tcpFlags: 'syn,bogus' }, 422, 'CONFIG_INVALID');
    rule('priority -1', { priority: -1 });
    rule('priority 1000001', { priority: 1_000_001 });
    rule('src "10.0.0.0/33"', { src: '10.0.0.0/33' }, 422, 'CONFIG_INVALID');
    rule('dst "not-an-address"', { dst: 'not-an-address' }, 422, 'CONFIG_INVALID');
    rule('src as a number', { src: 167772160 });
    rule('srcSet that does not exist', { srcSet: 'nosuch' }, 422, 'CONFIG_INVALID');
    rule('dstSet with a bad name', { dstSet: 'no such' });
    rule('action "reject"', { action: 'reject' });
    rule('no action', { action: undefined });
    rule('ratelimit without a rate', { action: 'ratelimit' }, 422, 'CONFIG_INVALID');
    rule('rate "fast"', { action: 'ratelimit', rate: 'fast' }, 422, 'CONFIG_INVALID');
    rule('rate 0', { action: 'ratelimit', rate: 0 });
    rule('burst 0', { action: 'ratelimit', rate: '10pps', burst: 0 });
    rule('perSource "yes"', { action: 'ratelimit', rate: '10pps', perSource: 'yes' });
    rule('redirect without a target', { action: 'redirect' }, 422, 'CONFIG_INVALID');
    rule('via "zz:zz"', { action: 'redirect', to: S0, via: 'zz:zz' });
    rule('to with a "/"', { action: 'redirect', to: 'a/b' });
    rule('id "~gen"', { id: '~gen' });
    rule('id of 65 characters', { id: 'r'.repeat(65) });
    rule('id taken', { id: 'blk' }, 409, 'CONFIG_CONFLICT');
    rule('no device', { device: undefined });
    rule('a 16-byte device', { device: 'x'.repeat(16) });
    rule('hook "ingress"', { hook: 'ingress' });
    rule('an empty filter', { filter: '' });
    rule('a filter that does not parse', { filter: BAD_EXPRESSION }, 400, 'FILTER_SYNTAX', {
      expression: BAD_EXPRESSION,
      offset: 17,
      length: 3,
    });
    rule('a filter over 4096 characters', { filter: 'tcp or '.repeat(600) + 'udp' });
    for (const [name, path, status, code] of [
      ['an unknown id', '/v1/rules/nosuch', 404, 'CONFIG_NOT_FOUND'],
      ['an id of 65 characters', `/v1/rules/${'r'.repeat(65)}`, 400, 'API_VALIDATION'],
      ['?dryRun=yes', '/v1/rules/blk?dryRun=yes', 400, 'API_VALIDATION'],
    ] as const)
      add({ name: `remove rule: ${name}`, method: 'DELETE', path, status, code });

    // Limits and filters.
    const limit = (
      name: string,
      fields: Record<string, unknown>,
      status = 400,
      code = 'API_VALIDATION',
    ): void =>
      add({
        name: `limit: ${name}`,
        method: 'POST',
        path: '/v1/limits',
        body: { device: W, rate: '10pps', ...fields },
        status,
        code,
      });
    limit('no rate', { rate: undefined });
    limit('an action', { action: 'drop' });
    limit('rate "lots"', { rate: 'lots' }, 422, 'CONFIG_INVALID');
    limit('rate -5', { rate: -5 });
    limit('dport 70000', { proto: 'udp', dport: 70000 });
    limit('a filter that does not parse', { filter: BAD_EXPRESSION }, 400, 'FILTER_SYNTAX');
    limit('id taken', { id: 'lim' }, 409, 'CONFIG_CONFLICT');
    add({
      name: 'remove limit: a rule that is not a limit',
      method: 'DELETE',
      path: '/v1/limits/blk',
      status: 404,
      code: 'CONFIG_NOT_FOUND',
    });
    add({
      name: 'remove limit: an unknown id',
      method: 'DELETE',
      path: '/v1/limits/nosuch',
      status: 404,
      code: 'CONFIG_NOT_FOUND',
    });

    const filter = (
      name: string,
      fields: Record<string, unknown>,
      status = 400,
      code = 'API_VALIDATION',
      problem?: Record<string, unknown>,
    ): void =>
      add({
        name: `filter: ${name}`,
        method: 'POST',
        path: '/v1/filters',
        body: { device: W, action: 'drop', expression: 'udp', ...fields },
        status,
        code,
        problem,
      });
    filter('no expression', { expression: undefined });
    filter('an empty expression', { expression: '' });
    filter(
      'an expression that does not parse',
      { expression: BAD_EXPRESSION },
      400,
      'FILTER_SYNTAX',
      {
        expression: BAD_EXPRESSION,
        offset: 17,
        length: 3,
      },
    );
    filter('an unclosed parenthesis', { expression: '(udp or tcp' }, 400, 'FILTER_SYNTAX');
    filter('port 70000', { expression: 'udp port 70000' }, 400, 'FILTER_SYNTAX');
    filter('a match field (filters take none)', { proto: 'udp' });
    filter('action "reject"', { action: 'reject' });
    filter('id taken', { id: 'flt' }, 409, 'CONFIG_CONFLICT');
    add({
      name: 'remove filter: a rule that is not a filter',
      method: 'DELETE',
      path: '/v1/filters/blk',
      status: 404,
      code: 'CONFIG_NOT_FOUND',
    });
    add({
      name: 'remove filter: an unknown id',
      method: 'DELETE',
      path: '/v1/filters/nosuch',
      status: 404,
      code: 'CONFIG_NOT_FOUND',
    });

    // The whole document.
    const doc = (
      name: string,
      body: unknown,
      status = 400,
      code = 'API_VALIDATION',
      headers?: Record<string, string>,
      problem?: Record<string, unknown>,
    ): void =>
      add({
        name: `config: ${name}`,
        method: 'PUT',
        path: '/v1/config',
        body,
        status,
        code,
        headers,
        problem,
      });
    // The baseline's generation is 1 (one PUT): "0" is stale, "7" not yet reached.
    doc('a stale If-Match', { version: 1 }, 412, 'CONFIG_PRECONDITION', { 'if-match': '"0"' });
    doc('a future If-Match', { version: 1 }, 412, 'CONFIG_PRECONDITION', { 'if-match': '"7"' });
    add({
      name: 'config: a stale If-Match on a dry run',
      method: 'PUT',
      path: '/v1/config?dryRun=true',
      body: { version: 1 },
      headers: { 'if-match': '"0"' },
      status: 412,
      code: 'CONFIG_PRECONDITION',
    });
    doc('a weak If-Match', { version: 1 }, 400, 'API_BAD_IF_MATCH', { 'if-match': 'W/"1"' });
    doc('an unquoted If-Match', { version: 1 }, 400, 'API_BAD_IF_MATCH', { 'if-match': '1' });
    doc('two If-Match tags', { version: 1 }, 400, 'API_BAD_IF_MATCH', { 'if-match': '"1", "2"' });
    doc('version 2', { version: 2 });
    doc('attachments as an object', { attachments: {} });
    doc('a rule with a bad port', { rules: [{ device: W, action: 'drop', dport: 65536 }] });
    doc(
      'duplicate rule ids',
      {
        rules: [
          { id: 'a', device: W, action: 'drop' },
          { id: 'a', device: W, action: 'pass' },
        ],
      },
      422,
      'CONFIG_INVALID',
      undefined,
      { pointer: '/rules/1/id' },
    );
    doc(
      'the same attachment twice',
      { attachments: [{ device: W }, { device: W, hook: 'xdp' }] },
      422,
      'CONFIG_INVALID',
      undefined,
      { pointer: '/attachments/1' },
    );
    doc(
      'duplicate set names',
      {
        sets: [
          { name: 'a', prefixes: [] },
          { name: 'a', prefixes: [] },
        ],
      },
      422,
      'CONFIG_INVALID',
      undefined,
      { pointer: '/sets/1/name' },
    );
    doc(
      'a rule naming an unknown set',
      { rules: [{ device: W, srcSet: 'gone', action: 'drop' }] },
      422,
      'CONFIG_INVALID',
    );
    doc(
      'a bad prefix in a set',
      { sets: [{ name: 'a', prefixes: ['10.0.0.0/8', '10.0.0.0/99'] }] },
      422,
      'CONFIG_INVALID',
      undefined,
      { pointer: '/sets/0/prefixes/1' },
    );
    doc(
      '33 sets',
      { sets: Array.from({ length: 33 }, (_, i) => ({ name: `s${i}`, prefixes: [] })) },
      422,
      'CONFIG_INVALID',
    );
    doc(
      'a filter that does not parse',
      { rules: [{ device: W, action: 'drop', filter: BAD_EXPRESSION }] },
      400,
      'FILTER_SYNTAX',
      undefined,
      { offset: 17, length: 3 },
    );
    add({
      name: 'config: a bad document on a dry run',
      method: 'PUT',
      path: '/v1/config?dryRun=true',
      body: { rules: [{ device: W, action: 'explode' }] },
      status: 400,
      code: 'API_VALIDATION',
    });

    // Replay and compile.
    const pcap = Buffer.from(writePcap([{ data: frame({ proto: 17, dport: 53 }) }])).toString(
      'base64',
    );
    const replay = (
      name: string,
      body: unknown,
      status = 400,
      code = 'API_VALIDATION',
      problem?: Record<string, unknown>,
    ): void =>
      add({
        name: `replay: ${name}`,
        method: 'POST',
        path: '/v1/replay',
        body,
        status,
        code,
        problem,
      });
    replay('no pcap', { config: { version: 1 } });
    replay('a pcap that is not base64', { pcap: 'not base64!' });
    replay('base64 that is not a pcap', {
      pcap: Buffer.from('hello, this is not a capture file').toString('base64'),
    });
    replay('a pcap as a number', { pcap: 5 });
    replay('a config with an unknown field', { pcap, config: { version: 1, extra: 1 } });
    replay(
      'a config with a bad filter',
      { pcap, config: { rules: [{ device: W, action: 'drop', filter: BAD_EXPRESSION }] } },
      400,
      'FILTER_SYNTAX',
      { offset: 17 },
    );
    replay(
      'a config naming an unknown set',
      { pcap, config: { rules: [{ device: W, srcSet: 'gone', action: 'drop' }] } },
      422,
      'CONFIG_INVALID',
    );
    const compile = (
      name: string,
      body: unknown,
      status = 400,
      code = 'API_VALIDATION',
      problem?: Record<string, unknown>,
    ): void =>
      add({
        name: `compile: ${name}`,
        method: 'POST',
        path: '/v1/compile',
        body,
        status,
        code,
        problem,
      });
    compile(
      'an expression that does not parse',
      { expression: BAD_EXPRESSION },
      400,
      'FILTER_SYNTAX',
      { offset: 17, length: 3 },
    );
    compile('a trailing operator', { expression: 'tcp and' }, 400, 'FILTER_SYNTAX');
    compile('format "x"', { expression: 'tcp', format: 'x' });
    compile('linkType "raw"', { expression: 'tcp', linkType: 'raw' });
    compile('an expression as a number', { expression: 6 });

    add({
      name: 'an unknown route',
      method: 'POST',
      path: '/v1/nothing-here',
      body: {},
      status: 404,
      code: 'API_NOT_FOUND',
    });
    return out;
  };

  it('answers at least 150 malformed requests with 4xx problems and changes nothing', async () => {
    const all = cases();
    expect(all.length).toBeGreaterThanOrEqual(150);
    const seen: string[] = [];
    for (const c of all) {
      const headers: Record<string, string> = { ...c.headers };
      let body = c.body;
      if (typeof body === 'string' || c.type !== undefined) {
        headers['content-type'] = c.type ?? 'application/json';
        if (typeof body !== 'string') body = JSON.stringify(body);
      }
      const res =
        c.declaredLength === undefined
          ? await x.daemon.api(c.method, c.path, body, headers)
          : await declaredBodyRequest(x.daemon.socket, c.method, c.path, c.declaredLength);
      let problem: Problem;
      try {
        problem = problemOf(res);
      } catch (error: unknown) {
        throw new Error(`${c.name}: ${(error as Error).message}`, { cause: error });
      }
      expect.soft({ status: res.status, code: problem.code }, `${c.name}: ${res.text}`).toEqual({
        status: c.status,
        code: c.code,
      });
      expect.soft(problem, c.name).toMatchObject({
        status: c.status,
        type: expect.stringMatching(/^urn:sluice:problem:/),
        title: expect.any(String),
        detail: expect.any(String),
        instance: c.path,
        ...c.problem,
      });
      if (c.code === 'API_VALIDATION') expect(problem.errors, c.name).toEqual(expect.any(Array));
      await expectUnchanged(c.name);
      seen.push(c.name);
    }
    expect(seen).toHaveLength(all.length);
  });

  it('names the bad line of a streamed set body', async () => {
    const res = await x.daemon.api('PUT', '/v1/sets/blocklist', '10.0.0.0/8\n# ok\n10.0.0.0/33\n');
    expect(problemOf(res)).toMatchObject({ status: 422, code: 'PREFIX_INVALID', line: 3 });
    await expectUnchanged('a bad line');
  });

  it('points at the bad prefix of POST /v1/sets in the request body', async () => {
    const res = await x.daemon.api('POST', '/v1/sets', {
      name: 'n',
      prefixes: ['192.0.2.0/24', '10.0.0.0/33'],
    });
    expect(problemOf(res)).toMatchObject({ status: 422, pointer: '/prefixes/1' });
    await expectUnchanged('a bad prefix');
  });

  it('answers requests over TCP without the right token with 401, changing nothing', async () => {
    const port = x.daemon.port!;
    const writes: [string, string, unknown][] = [
      ['POST', '/v1/attachments', { device: S0 }],
      ['DELETE', `/v1/attachments/${W}`, undefined],
      ['POST', '/v1/sets', { name: 'tcp', prefixes: [] }],
      ['DELETE', '/v1/sets/allow', undefined],
      ['POST', '/v1/rules', { device: W, action: 'drop' }],
      ['DELETE', '/v1/rules/blk', undefined],
      ['POST', '/v1/limits', { device: W, rate: '1pps' }],
      ['POST', '/v1/filters', { device: W, action: 'drop', expression: 'tcp' }],
      ['PUT', '/v1/config', { version: 1 }],
    ];
    const credentials: [string, { token?: string; headers?: Record<string, string> }][] = [
      ['no token', {}],
      ['a wrong token', { token: 'f'.repeat(48) }],
      ['the token as Basic', { headers: { authorization: `Basic ${x.daemon.token}` } }],
    ];
    let n = 0;
    for (const [what, options] of credentials) {
      for (const [method, path, body] of writes) {
        const res = await curlInNetns(x.netns, port, method, path, { ...options, body });
        expect(res.status, `${what}: ${method} ${path}: ${res.text}`).toBe(401);
        expect(problemOf(res)).toMatchObject({ status: 401, code: 'API_UNAUTHORIZED' });
        n++;
      }
    }
    expect(n).toBe(27);
    await expectUnchanged('the unauthenticated requests');
    // The token itself works: the refusals were about the token, not the route.
    const res = await curlInNetns(x.netns, port, 'GET', '/v1/config', { token: x.daemon.token });
    expect(res.status).toBe(200);
  });

  it('turns bad commands into one `sluice: …` line: exit 2 for usage, 1 for what the daemon refuses', async () => {
    const badSet = join(tmp, 'bad-set.txt');
    writeFileSync(badSet, '10.0.0.0/8\n10.0.0.0/33\n');
    const badApply = join(tmp, 'bad.yaml');
    writeFileSync(
      badApply,
      `version: 1\nrules:\n  - device: ${W}\n    srcSet: gone\n    action: drop\n`,
    );
    const commands: [number, string[]][] = [
      // Usage errors: refused before any request.
      [2, ['rule', 'add', '--dev', W, '--proto', 'udp', '--dport', '70000', '--action', 'drop']],
      [2, ['rule', 'add', '--dev', W, '--proto', 'gre', '--action', 'drop']],
      [2, ['rule', 'add', '--dev', W, '--src', '10.0.0.0/33', '--action', 'drop']],
      [2, ['rule', 'add', '--dev', W, '--tcp-flags', 'syn,bogus', '--action', 'drop']],
      [2, ['rule', 'add', '--dev', W, '--action', 'reject']],
      [2, ['rule', 'add', '--action', 'drop']],
      [2, ['rule', 'add', '--dev', W, '--action', 'ratelimit']],
      [2, ['rule', 'add', '--dev', W, '--vlan', '5000', '--action', 'drop']],
      [2, ['rule', 'add', '--dev', 'a/b', '--action', 'drop']],
      [2, ['attach', W, '--hook', 'bogus']],
      [2, ['set', 'add', 'blocklist', 'not-a-prefix']],
      [2, ['limit', 'add', '--dev', W, '--proto', 'udp']],
      [2, ['stats', '--interval', 'often']],
      [2, ['frobnicate']],
      [2, ['compile', '--ebpf', '-dd', 'tcp']],
      // The daemon refuses (or the command fails locally): exit 1.
      [1, ['rule', 'add', '--dev', W, '--src-set', 'nosuch', '--action', 'drop']],
      [1, ['rule', 'add', '--dev', W, '--id', 'blk', '--action', 'drop']],
      [2, ['rule', 'add', '--dev', W, '--proto', 'tcp', '--dport', '80-70', '--action', 'drop']],
      [1, ['rule', 'add', '--dev', W, '--action', 'ratelimit', '--rate', '0pps']],
      [1, ['rule', 'rm', 'nosuch']],
      [1, ['set', 'rm', 'blocklist']],
      [1, ['set', 'rm', 'nosuch', '10.0.0.0/8']],
      [1, ['set', 'load', 'blocklist', '--file', badSet]],
      [1, ['set', 'load', 'blocklist', '--file', join(tmp, 'missing.txt')]],
      [1, ['detach', 'nosuchdev']],
      [1, ['limit', 'rm', 'blk']],
      [1, ['limit', 'add', '--dev', W, '--rate', '10pps', '--id', 'lim']],
      [1, ['filter', 'rm', 'blk']],
      [1, ['apply', '-f', badApply]],
      [1, ['apply', '-f', join(tmp, 'missing.yaml')]],
      [1, ['stats', 'nosuchdev']],
    ];
    for (const [code, args] of commands) {
      const run = await runCli('--socket', x.daemon.socket, ...args);
      const what = `sluice ${args.join(' ')}`;
      expect(run.code, `${what}: ${run.stderr}`).toBe(code);
      expect(run.stdout, what).toBe('');
      // One `sluice: …` line, last; only apply puts the file's located errors above it.
      const lines = run.stderr.trimEnd().split('\n');
      expect(
        lines.filter((l) => l.startsWith('sluice: ')),
        what,
      ).toHaveLength(1);
      expect(lines.at(-1), what).toMatch(/^sluice: /);
      if (args[0] !== 'apply') expect(lines, what).toHaveLength(1);
    }
    await expectUnchanged('the refused commands');

    // A filter that does not parse: the one `sluice:` line under the expression and its caret.
    const filter = await runCli(
      '--socket',
      x.daemon.socket,
      'filter',
      'add',
      '--dev',
      W,
      '--action',
      'drop',
      BAD_EXPRESSION,
    );
    expect(filter.code).toBe(1);
    expect(filter.stderr).toMatchInlineSnapshot(`
      "udp and dst port and host 192.0.2.1
                       ^^^
      sluice: unexpected "and" at column 18: expected a port number or name (at /expression)
      "
    `);
    expect(filter.stderr.split('\n').filter((l) => l.startsWith('sluice: '))).toHaveLength(1);
    await expectUnchanged('the bad filter');
  });
});
