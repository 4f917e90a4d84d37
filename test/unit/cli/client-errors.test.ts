// How the client reaches the daemon (socket, SLUICE_SOCKET, --server with a bearer token) and
// how it reports the daemon's problems and its absence: one line, exit 1.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startApiStub, type ApiStub } from '../../helpers/api-stub.js';
import { runCliWith } from '../../helpers/cli.js';

const status = {
  desiredGeneration: 1,
  appliedGeneration: 1,
  ready: true,
  stateDir: '/s',
  pinDir: '/p',
  attachments: [],
};

let stub: ApiStub;
let dir: string;

beforeAll(async () => {
  stub = await startApiStub({ 'GET /v1/status': { json: status } }, { tcp: true });
  dir = await mkdtemp(join(tmpdir(), 'sluice-cli-errors-'));
});
afterAll(async () => {
  await stub.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  stub.requests.length = 0;
});

describe('finding the daemon', () => {
  it('uses SLUICE_SOCKET when --socket is not given, and --socket over it', async () => {
    const viaEnv = await runCliWith({ env: { SLUICE_SOCKET: stub.socket } }, 'status', '--json');
    expect(viaEnv.code).toBe(0);
    const missing = join(dir, 'absent.sock');
    const viaFlag = await runCliWith(
      { env: { SLUICE_SOCKET: stub.socket } },
      '--socket',
      missing,
      'status',
    );
    expect(viaFlag.code).toBe(1);
    expect(viaFlag.stderr.replace(dir, '<dir>')).toMatchInlineSnapshot(`
      "sluice: the sluice daemon is not running at <dir>/absent.sock (no such socket); start it with \`sluice serve\`, or point at it with --socket PATH or SLUICE_SOCKET
      "
    `);
  });

  it('says the daemon is not running when the socket refuses connections', async () => {
    const stale = join(dir, 'stale.sock');
    await writeFile(stale, '');
    const r = await runCliWith({ env: {} }, '--socket', stale, 'rule', 'ls');
    expect([r.code, r.stdout]).toEqual([1, '']);
    expect(r.stderr.replace(dir, '<dir>')).toMatchInlineSnapshot(`
      "sluice: the sluice daemon is not running at <dir>/stale.sock (connection refused); start it with \`sluice serve\`, or point at it with --socket PATH or SLUICE_SOCKET
      "
    `);
  });

  it('sends the bearer token of --token to --server', async () => {
    const r = await runCliWith({ env: {} }, '--server', stub.url!, '--token', 's3cret', 'status');
    expect(r.code).toBe(0);
    expect(stub.requests[0].headers.authorization).toBe('Bearer s3cret');
  });

  it('reads the token from --token-file, else SLUICE_TOKEN', async () => {
    const file = join(dir, 'token');
    await writeFile(file, 'from-file\n');
    await runCliWith(
      { env: { SLUICE_TOKEN: 'env' } },
      '--server',
      stub.url!,
      '--token-file',
      file,
      'status',
    );
    await runCliWith({ env: { SLUICE_TOKEN: 'from-env' } }, '--server', stub.url!, 'status');
    expect(stub.requests.map((r) => r.headers.authorization)).toEqual([
      'Bearer from-file',
      'Bearer from-env',
    ]);
  });

  it('never sends a token over the Unix socket', async () => {
    await runCliWith({ env: { SLUICE_TOKEN: 'x' } }, '--socket', stub.socket, 'status');
    expect(stub.requests[0].headers.authorization).toBeUndefined();
  });

  it('names a --server that does not answer', async () => {
    const r = await runCliWith({ env: {} }, '--server', 'http://127.0.0.1:1', 'status');
    expect([r.code, r.stderr]).toEqual([
      1,
      'sluice: the sluice daemon is not reachable at http://127.0.0.1:1 (connection refused); start it with `sluice serve --listen HOST:PORT --token-file F`\n',
    ]);
  });
});

describe('problems from the daemon', () => {
  const run = (...args: string[]) => runCliWith({ env: {} }, '--socket', stub.socket, ...args);

  it('prints the detail and where it points on one line, exit 1', async () => {
    stub.route('POST /v1/rules', {
      problem: {
        type: 'https://sluice.dev/problems/config-invalid',
        title: 'Invalid configuration',
        status: 422,
        detail: 'rule "r9": set "nosuch" does not exist',
        code: 'CONFIG_INVALID',
        pointer: '/srcSet',
      },
    });
    const r = await run('rule', 'add', '--dev', 'veth1', '--src-set', 'nosuch', '--action', 'drop');
    expect([r.code, r.stdout]).toEqual([1, '']);
    expect(r.stderr).toMatchInlineSnapshot(`
      "sluice: rule "r9": set "nosuch" does not exist (at /srcSet)
      "
    `);
  });

  it("joins a schema failure's errors into the line", async () => {
    stub.route('POST /v1/attachments', {
      problem: {
        title: 'Bad Request',
        status: 400,
        detail: 'the request body does not match the schema',
        code: 'REQUEST_INVALID',
        errors: [{ pointer: '/mode', detail: 'must be native or generic' }],
      },
    });
    const r = await run('attach', 'veth1');
    expect(r.stderr).toMatchInlineSnapshot(`
      "sluice: the request body does not match the schema: /mode must be native or generic
      "
    `);
  });

  it('draws the caret under a bad filter expression', async () => {
    stub.route('POST /v1/filters', {
      problem: {
        title: 'Bad filter expression',
        status: 400,
        detail: 'unexpected "and" at column 18: expected a port number or name',
        code: 'FILTER_SYNTAX',
        expression: 'udp and dst port and host 192.0.2.1',
        offset: 17,
        length: 3,
      },
    });
    const r = await run(
      'filter',
      'add',
      '--dev',
      'veth1',
      '--action',
      'drop',
      'udp and dst port and host 192.0.2.1',
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatchInlineSnapshot(`
      "udp and dst port and host 192.0.2.1
                       ^^^
      sluice: unexpected "and" at column 18: expected a port number or name
      "
    `);
  });

  it('prints the problem object on stdout with --json', async () => {
    const problem = {
      type: 'about:blank',
      title: 'Conflict',
      status: 409,
      detail: 'set "blocklist" is used by rule "r1"',
      code: 'CONFIG_CONFLICT',
      instance: '/v1/sets/blocklist',
    };
    stub.route('DELETE /v1/sets/blocklist', { problem });
    const r = await run('set', 'rm', 'blocklist', '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual(problem);
    expect(r.stderr).toBe('sluice: set "blocklist" is used by rule "r1"\n');
  });

  it('turns a failing answer that is not problem+json into a line too', async () => {
    stub.route('GET /v1/status', { status: 502, text: 'Bad Gateway\n' });
    const r = await run('status');
    expect([r.code, r.stderr]).toEqual([1, 'sluice: Bad Gateway\n']);
    stub.route('GET /v1/status', { json: status });
  });
});

describe('help', () => {
  it('documents the exit codes and global options at the root', async () => {
    const r = await runCliWith({ env: {} }, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Exit status:\n  0  success\n  1  failure');
    expect(r.stdout).toContain('--token-file <file>');
  });

  it.each([
    ['attach'],
    ['detach'],
    ['set', 'add'],
    ['set', 'load'],
    ['rule', 'add'],
    ['rule', 'ls'],
    ['limit', 'add'],
    ['filter', 'add'],
    ['filter', 'ls'],
    ['stats'],
    ['apply'],
    ['status'],
    ['events'],
    ['serve'],
  ])('`%s %s --help` has examples', async (...words) => {
    const r = await runCliWith({ env: {} }, ...words, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\nExamples:\n {2}\$ sluice /);
  });
});
