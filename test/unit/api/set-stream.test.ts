// Streamed set loads: a million prefixes through PUT /v1/sets/:name, and the line reader itself.
import { Readable } from 'node:stream';

import { afterEach, describe, expect, test } from 'vitest';

import { LineMap, readPrefixLines } from '../../../api/set-stream.js';
import { testServer, type TestServer } from '../../helpers/api-server.js';
import { MemoryController, diffConfigs } from '../../helpers/memory-controller.js';

let server: TestServer;
afterEach(async () => {
  await server?.app.close();
});

async function collect(
  chunks: (string | Buffer)[],
  format: 'text' | 'ndjson',
  limit = 1 << 30,
): Promise<{ lines: string[]; map: LineMap }> {
  const map = new LineMap();
  const lines: string[] = [];
  for await (const line of readPrefixLines(Readable.from(chunks), format, limit, map))
    lines.push(line);
  return { lines, map };
}

describe('readPrefixLines', () => {
  test('splits across chunk boundaries, also inside a UTF-8 character', async () => {
    const text = Buffer.from('10.0.0.0/8\r\n# é comment\n192.0.2.0/24 # é\n\n2001:db8::/32');
    const chunks = Array.from({ length: text.length }, (_, i) => text.subarray(i, i + 1));
    const { lines, map } = await collect(chunks, 'text');
    expect(lines).toEqual(['10.0.0.0/8', '192.0.2.0/24', '2001:db8::/32']);
    expect([0, 1, 2].map((i) => map.lineOf(i))).toEqual([1, 3, 5]);
  });

  test('maps prefix indexes to lines with few entries', async () => {
    const body = [
      '# head',
      ...Array.from({ length: 1000 }, (_, i) => `10.0.${i >> 8}.${i & 255}`),
      '',
      '10.9.9.9',
    ].join('\n');
    const { map } = await collect([body], 'text');
    expect(map.lineOf(0)).toBe(2);
    expect(map.lineOf(999)).toBe(1001);
    expect(map.lineOf(1000)).toBe(1003);
    expect(map.count).toBe(1001);
  });

  test('reads NDJSON strings and {"prefix"} objects', async () => {
    const { lines } = await collect(['"10.0.0.0/8"\n', '{"prefix": "::/0"}\n\n'], 'ndjson');
    expect(lines).toEqual(['10.0.0.0/8', '::/0']);
  });
});

describe('PUT /v1/sets/:name with a million prefixes', () => {
  const lines: string[] = [];
  for (let i = 0; i < 1_000_000; i++)
    lines.push(`${10 + (i >>> 16)}.${(i >>> 8) & 255}.${i & 255}.0/24`);
  const body = `# generated\n${lines.join('\n')}\n`;

  async function put(): Promise<{
    ms: number;
    res: Awaited<ReturnType<TestServer['app']['inject']>>;
  }> {
    const started = performance.now();
    const res = await server.app.inject({
      method: 'PUT',
      url: '/v1/sets/big',
      headers: { 'content-type': 'text/plain' },
      payload: body,
    });
    return { ms: performance.now() - started, res };
  }

  test('the API streams 1,000,000 text prefixes to the controller in well under 3 s', async () => {
    // A controller that only consumes the stream: what the HTTP layer, parser and line reader cost.
    const controller = new MemoryController();
    let seen = 0;
    controller.putSet = async (_name, prefixes) => {
      for await (const p of prefixes as AsyncIterable<string>) if (p !== '') seen++;
      return {
        generation: 1,
        applied: true,
        count: seen,
        diff: diffConfigs(controller.config().config, controller.config().config),
      };
    };
    server = await testServer({ controller, setBodyLimit: 64 * 1024 * 1024 });
    const { ms, res } = await put();
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().count).toBe(1_000_000);
    console.log(
      `streamed set (API only): 1,000,000 prefixes, ${(body.length / 1e6).toFixed(1)} MB in ${ms.toFixed(0)} ms`,
    );
    expect(ms).toBeLessThan(3000);
  });

  test('loads 1,000,000 prefixes into the in-memory controller, which validates each', async () => {
    server = await testServer({ setBodyLimit: 64 * 1024 * 1024 });
    const { ms, res } = await put();
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ count: 1_000_000, applied: true });
    console.log(`streamed set (with validation): 1,000,000 prefixes in ${ms.toFixed(0)} ms`);
    expect(ms).toBeLessThan(10_000);
    const list = await server.app.inject({ url: '/v1/sets' });
    expect(list.json()).toEqual({ sets: [{ name: 'big', count: 1_000_000 }] });
  });

  test('names the line of a bad prefix deep in a large body', async () => {
    server = await testServer();
    const lines = Array.from(
      { length: 100_000 },
      (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`,
    );
    lines.splice(76_543, 0, '# a comment', '10.0.0.1/8');
    const res = await server.app.inject({
      method: 'PUT',
      url: '/v1/sets/big',
      headers: { 'content-type': 'text/plain' },
      payload: lines.join('\n'),
    });
    expect(res.statusCode).toBe(422);
    expect(res.json()).toMatchObject({ code: 'PREFIX_INVALID', line: 76_545 });
  });
});
