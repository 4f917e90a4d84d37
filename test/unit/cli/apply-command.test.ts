// `sluice apply -f`: local validation located FILE:LINE:COL (YAML and JSON), the daemon's
// pointers mapped back into the file, the diff it prints, --dry-run and --pcap replay.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { formatChange } from '../../../cli/render.js';
import { emptyDiff, startApiStub, type ApiStub } from '../../helpers/api-stub.js';
import { runCliWith } from '../../helpers/cli.js';

let stub: ApiStub;
let dir: string;

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

const run = async (...args: string[]) => {
  const r = await runCliWith({ env: {} }, '--socket', stub.socket, ...args);
  return {
    ...r,
    stdout: r.stdout.replaceAll(dir, '<dir>'),
    stderr: r.stderr.replaceAll(dir, '<dir>'),
  };
};

const GOOD_YAML = `# desired state
attachments:
  - device: veth1
    hook: xdp
sets:
  - name: blocklist
    prefixes: [10.0.0.0/8, 2001:db8::/32, 192.0.2.1]
rules:
  - id: drop-blocklist
    device: veth1
    srcSet: blocklist
    action: drop
  - id: dns
    device: veth1
    proto: udp
    dport: 53
    action: ratelimit
    rate: 1000pps
`;

const diff = {
  attachments: { added: ['veth1@xdp'], removed: ['veth2@xdp'], changed: [] },
  sets: {
    added: ['blocklist'],
    removed: [],
    changed: [{ name: 'allow', added: 3, removed: 1 }],
  },
  rules: { added: ['drop-blocklist'], removed: ['old'], changed: ['dns'] },
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-apply-'));
  stub = await startApiStub({
    'PUT /v1/config': (req) => ({
      json: { generation: 12, applied: req.query.dryRun !== 'true', diff },
    }),
  });
});
afterAll(async () => {
  await stub.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  stub.requests.length = 0;
});

describe('apply -f', () => {
  it('puts the parsed document and prints the diff', async () => {
    const path = await file('good.yaml', GOOD_YAML);
    const r = await run('apply', '-f', path);
    expect(r.code).toBe(0);
    expect(stub.requests).toHaveLength(1);
    expect(stub.requests[0]).toMatchObject({ method: 'PUT', path: '/v1/config', query: {} });
    expect((stub.requests[0].json as { rules: unknown[] }).rules[1]).toEqual({
      id: 'dns',
      device: 'veth1',
      proto: 'udp',
      dport: 53,
      action: 'ratelimit',
      rate: '1000pps',
    });
    expect(r.stdout).toMatchInlineSnapshot(`
      "attachments:
        + veth1@xdp
        - veth2@xdp
      sets:
        + blocklist (3 prefixes)
        ~ allow (+3 -1 prefixes)
      rules:
        + drop-blocklist
        - old
        ~ dns
      applied: generation 12
      "
    `);
  });

  it('sends dryRun=true with --dry-run and says nothing was applied', async () => {
    const path = await file(
      'dry.json',
      JSON.stringify({ rules: [{ device: 'veth1', action: 'drop' }] }),
    );
    const r = await run('apply', '-f', path, '--dry-run');
    expect(stub.requests[0].query).toEqual({ dryRun: 'true' });
    expect(r.stdout.split('\n').at(-2)).toBe('dry run: nothing applied (generation stays 12)');
    const json = await run('apply', '-f', path, '--dry-run', '--json');
    expect(JSON.parse(json.stdout).result.applied).toBe(false);
  });

  it('reports every schema error of a YAML file at its line and column, sending nothing', async () => {
    const path = await file(
      'bad.yaml',
      `attachments:
  - device: veth1
    hook: xpd
  - mode: native
rules:
  - device: veth1
    action: drp
    dport: 70000
    proto: tcpp
    icmp: { code: 1 }
    colour: red
`,
    );
    const r = await run('apply', '-f', path);
    expect(r.code).toBe(1);
    expect(stub.requests).toEqual([]);
    expect(r.stderr).toMatchInlineSnapshot(`
      "<dir>/bad.yaml:3:11: attachments[0].hook must be one of "xdp", "tc-ingress" or "tc-egress", not "xpd"
      <dir>/bad.yaml:4:5: attachments[1] is missing "device"
      <dir>/bad.yaml:7:13: rules[0].action must be one of "drop", "pass", "count", "ratelimit" or "redirect", not "drp"
      <dir>/bad.yaml:8:12: rules[0].dport must be <= 65535
      <dir>/bad.yaml:9:12: rules[0].proto must be one of "tcp", "udp", "icmp", "icmpv6" or "sctp" or an integer, not "tcpp"
      <dir>/bad.yaml:10:11: rules[0].icmp is missing "type"
      <dir>/bad.yaml:11:5: rules[0].colour is not a known field
      sluice: "<dir>/bad.yaml": 7 errors, nothing applied
      "
    `);
  });

  it('locates schema errors in a JSON file too', async () => {
    const path = await file(
      'bad.json',
      `{
  "sets": [
    { "name": "bad name!", "prefixes": ["10.0.0.0/8"] }
  ],
  "rules": [
    { "device": "veth1", "action": "drop", "via": "nope", "priority": "high" }
  ]
}
`,
    );
    const r = await run('apply', '-f', path);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatchInlineSnapshot(`
      "<dir>/bad.json:3:15: sets[0].name "bad name!" does not match ^[A-Za-z0-9_.-]{1,64}$
      <dir>/bad.json:6:51: rules[0].via expected next-hop MAC, not "nope"
      <dir>/bad.json:6:71: rules[0].priority must be an integer, not string
      sluice: "<dir>/bad.json": 3 errors, nothing applied
      "
    `);
  });

  it('locates syntax errors', async () => {
    const yaml = await file(
      'syntax.yaml',
      'rules:\n  - device: veth1\n    action: drop\n   bad: [\n',
    );
    const r = await run('apply', '-f', yaml);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')[0]).toMatch(/^<dir>\/syntax\.yaml:4:\d+: /);
    const json = await file('syntax.json', '{\n  "rules": [\n    { "device": "veth1", }\n  ]\n}\n');
    const j = await run('apply', '-f', json);
    expect(j.code).toBe(1);
    expect(j.stderr).toMatch(/^<dir>\/syntax\.json:3:\d+: /);
    const dup = await file('dup.yaml', 'rules: []\nrules: []\n');
    expect((await run('apply', '-f', dup)).stderr).toMatchInlineSnapshot(`
      "<dir>/dup.yaml:2:1: map keys must be unique
      sluice: "<dir>/dup.yaml": 1 error, nothing applied
      "
    `);
  });

  it("maps the daemon's pointer back to the file's line and column", async () => {
    stub.route('PUT /v1/config', {
      problem: {
        title: 'Invalid configuration',
        status: 422,
        code: 'CONFIG_INVALID',
        detail: 'set "blocklist" is not defined',
        pointer: '/rules/0/srcSet',
      },
    });
    const path = await file(
      'ref.yaml',
      'rules:\n  - device: veth1\n    srcSet: blocklist\n    action: drop\n',
    );
    const r = await run('apply', '-f', path);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatchInlineSnapshot(`
      "<dir>/ref.yaml:3:13: rules[0].srcSet set "blocklist" is not defined
      sluice: "<dir>/ref.yaml": 1 error, nothing applied
      "
    `);
    stub.route('PUT /v1/config', (req) => ({
      json: { generation: 12, applied: req.query.dryRun !== 'true', diff },
    }));
  });

  it('replays a pcap through the new document before applying it', async () => {
    stub.route('POST /v1/replay', {
      json: {
        packets: 10,
        attachments: [
          {
            attachment: 'veth1@xdp',
            rules: [
              { id: 'drop-blocklist', packets: 4 },
              { id: 'dns', packets: 2 },
            ],
            verdicts: { pass: 6, drop: 4 },
            changed: 4,
          },
        ],
      },
    });
    const path = await file('good2.yaml', GOOD_YAML);
    const pcap = await file('sample.pcap', 'pcap-bytes');
    const r = await run('apply', '-f', path, '--dry-run', '--pcap', pcap);
    expect(r.code).toBe(0);
    expect(stub.requests.map((q) => `${q.method} ${q.path}`)).toEqual([
      'POST /v1/replay',
      'PUT /v1/config',
    ]);
    const body = stub.requests[0].json as { config: unknown; pcap: string };
    expect(Buffer.from(body.pcap, 'base64').toString()).toBe('pcap-bytes');
    expect(body.config).toEqual(stub.requests[1].json);
    expect(r.stdout.slice(r.stdout.indexOf('replayed'))).toMatchInlineSnapshot(`
      "replayed 10 packets
      veth1@xdp:
        rule            packets
        drop-blocklist        4
        dns                   2
        verdicts: pass 6, drop 4
        4 packets would change verdict
      "
    `);
  });

  it('says which file is missing', async () => {
    const r = await run('apply', '-f', join(dir, 'absent.yaml'));
    expect([r.code, r.stderr]).toEqual([1, 'sluice: read "<dir>/absent.yaml": no such file\n']);
  });
});

describe('formatChange', () => {
  it('says when nothing changes', () => {
    expect(formatChange({ generation: 3, applied: true, diff: emptyDiff() })).toBe(
      'no changes\napplied: generation 3\n',
    );
  });
});
