// Every `sluice` client command against a real daemon in a lab namespace, over its Unix socket (in-process) and over TCP with a token file (a process in the namespace): what it prints, human and --json, and what the kernel then holds.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { compileFilter, formatListing } from '../../bpf/filter/index.js';
import { runCli, runCliWith, type CliRun } from '../helpers/cli.js';
import { writePcap } from '../helpers/packets/index.js';
import { frame } from '../helpers/pipeline-frames.js';
import { describeKernel } from '../helpers/privileges.js';
import {
  kernelSnapshot,
  openDaemonLab,
  pinnedCounters,
  pinnedLink,
  pinnedRuleIds,
  pinnedSetHas,
  pinnedSetNames,
  runCliInNetns,
  sleep,
  xdpByDevice,
  type DaemonLab,
} from './daemon-e2e-lab.js';

const XDP_ATTACHED_DRV = 1;
const XDP_ATTACHED_SKB = 2;

await describeKernel('every CLI command against a real daemon', () => {
  let x: DaemonLab;
  let W: string;
  let S0: string;
  let S1: string;
  let tmp: string;

  /** `sluice --socket SOCK ...args`, in-process. */
  const cli = (...args: string[]): Promise<CliRun> => runCli('--socket', x.daemon.socket, ...args);
  /** Asserts exit 0 and nothing on stderr; returns stdout. */
  const ok = async (...args: string[]): Promise<string> => {
    const run = await cli(...args);
    expect({ code: run.code, stderr: run.stderr }, `sluice ${args.join(' ')}`).toEqual({
      code: 0,
      stderr: '',
    });
    return run.stdout;
  };
  /** Run-specific names and numbers out of printed text, for snapshots. */
  const normal = (text: string): string =>
    text
      .replaceAll(W, 'veth-wire')
      .replaceAll(S0, 'veth-sp-0')
      .replaceAll(S1, 'veth-sp-1')
      .replace(/generation (stays )?\d+/g, 'generation $1N')
      .replace(/desired \d+, applied \d+/g, 'desired N, applied N');
  const generation = async (): Promise<number> =>
    Number(JSON.parse(String((await x.daemon.api('GET', '/v1/config')).headers.etag)));

  beforeAll(async () => {
    x = await openDaemonLab({ tcp: true });
    W = x.wire;
    [S0, S1] = x.spare;
    tmp = mkdtempSync(join(tmpdir(), 'sluice-cli-lab-'));
  });

  afterAll(async () => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    await x?.destroy();
  });

  it('attach: xdp native, tc-ingress (--json), a dry run that attaches nothing', async () => {
    expect(normal(await ok('attach', W, '--hook', 'xdp', '--mode', 'native'))).toBe(
      'attached veth-wire (xdp) (generation N)\n',
    );
    expect((await xdpByDevice(x.netns))[W]?.mode).toBe(XDP_ATTACHED_DRV);

    const json = JSON.parse(await ok('attach', S0, '--hook', 'tc-ingress', '--json'));
    expect(json).toMatchObject({
      applied: true,
      diff: { attachments: { added: [`${S0}@tc-ingress`] } },
    });
    expect(pinnedLink(x.daemon.pinDir, S0, 'tc-ingress')).toMatchObject({
      kind: 'tcx',
      attachType: 'ingress',
    });

    const dry = await ok('attach', S1, '--hook', 'xdp', '--mode', 'generic', '--dry-run');
    expect(normal(dry)).toMatchInlineSnapshot(`
      "attachments:
        + veth-sp-1@xdp
      dry run: nothing applied (attached veth-sp-1 (xdp))
      "
    `);
    expect((await xdpByDevice(x.netns))[S1]).toBeUndefined();

    expect(normal(await ok('attach', S1, '--mode', 'generic'))).toBe(
      'attached veth-sp-1 (xdp) (generation N)\n',
    );
    expect((await xdpByDevice(x.netns))[S1]?.mode).toBe(XDP_ATTACHED_SKB);
    await ok('attach', S1, '--hook', 'tc-egress');
    expect(pinnedLink(x.daemon.pinDir, S1, 'tc-egress')).toMatchObject({ attachType: 'egress' });
  });

  it('detach: one hook, then the whole device', async () => {
    expect(normal(await ok('detach', S1, '--hook', 'xdp'))).toBe(
      'detached veth-sp-1 (xdp) (generation N)\n',
    );
    expect((await xdpByDevice(x.netns))[S1]).toBeUndefined();
    expect(pinnedLink(x.daemon.pinDir, S1, 'tc-egress')).not.toBeNull();
    expect(normal(await ok('detach', S1))).toBe('detached veth-sp-1 (generation N)\n');
    expect(pinnedLink(x.daemon.pinDir, S1, 'tc-egress')).toBeNull();
  });

  it('set add | ls | load (file and stdin) | rm', async () => {
    const pin = x.daemon.pinDir;
    expect(normal(await ok('set', 'add', 'blocklist', '10.0.0.0/8', '2001:db8::/32'))).toBe(
      'set blocklist: added 2 prefixes (generation N)\n',
    );
    expect(pinnedSetHas(pin, 'blocklist', '10.1.2.3/32')).toBe(true);
    expect(pinnedSetHas(pin, 'blocklist', '2001:db8:5::1/128')).toBe(true);
    await ok('set', 'add', 'blocklist', '203.0.113.7');
    expect(pinnedSetHas(pin, 'blocklist', '203.0.113.7/32')).toBe(true);

    const file = join(tmp, 'allow.txt');
    writeFileSync(file, '# peers\n198.51.100.0/25\n\n2001:db8:aa::/48\n');
    expect(normal(await ok('set', 'load', 'allow', '--file', file))).toBe(
      'set allow: loaded 2 prefixes (generation N)\n',
    );
    expect(pinnedSetHas(pin, 'allow', '198.51.100.5/32')).toBe(true);
    expect(pinnedSetHas(pin, 'allow', '2001:db8:aa::9/128')).toBe(true);

    const stdin = await runCliWith(
      { stdin: Readable.from(['198.51.100.128/25\n', '192.0.2.0/30\n']) },
      '--socket',
      x.daemon.socket,
      'set',
      'load',
      'allow',
      '--file',
      '-',
      '--json',
    );
    expect(stdin.code, stdin.stderr).toBe(0);
    expect(JSON.parse(stdin.stdout)).toMatchObject({ applied: true, count: 2 });
    expect(pinnedSetHas(pin, 'allow', '198.51.100.5/32')).toBe(false);
    expect(pinnedSetHas(pin, 'allow', '198.51.100.200/32')).toBe(true);
    expect(pinnedSetHas(pin, 'allow', '192.0.2.3/32')).toBe(true);

    expect(await ok('set', 'ls')).toMatchInlineSnapshot(`
      "NAME       PREFIXES
      blocklist         3
      allow             2
      "
    `);
    expect(await ok('set', 'ls', 'blocklist')).toBe('10.0.0.0/8\n2001:db8::/32\n203.0.113.7\n');
    expect(JSON.parse(await ok('set', 'ls', '--json'))).toEqual({
      sets: [
        { name: 'blocklist', count: 3 },
        { name: 'allow', count: 2 },
      ],
    });

    expect(normal(await ok('set', 'rm', 'blocklist', '203.0.113.7'))).toBe(
      'set blocklist: removed 1 prefixes (generation N)\n',
    );
    expect(pinnedSetHas(pin, 'blocklist', '203.0.113.7/32')).toBe(false);
    await ok('set', 'add', 'scratch');
    expect(pinnedSetNames(pin)).toContain('scratch');
    expect(normal(await ok('set', 'rm', 'scratch'))).toBe('removed set scratch (generation N)\n');
    expect(pinnedSetNames(pin)).not.toContain('scratch');
  });

  it("rule add in DESIGN.md's shapes, rule ls (table and --json), rule rm: the kernel runs those ids", async () => {
    const pin = x.daemon.pinDir;
    const shapes: [string, string[]][] = [
      ['blk', ['--src-set', 'blocklist', '--action', 'drop']],
      ['dns', ['--proto', 'udp', '--dport', '53', '--action', 'ratelimit', '--rate', '1000pps']],
      [
        'syn',
        [
          '--priority',
          '10',
          '--dst',
          '192.0.2.0/24',
          '--proto',
          'tcp',
          '--tcp-flags',
          'syn,!ack',
          '--action',
          'drop',
        ],
      ],
      ['frag', ['--filter', 'udp and ip[6:2] & 0x1fff != 0', '--action', 'drop']],
    ];
    for (const [id, flags] of shapes) {
      expect(normal(await ok('rule', 'add', '--dev', W, ...flags, '--id', id))).toBe(
        `added rule ${id} (generation N)\n`,
      );
    }
    // Generated id, redirect, every remaining match flag.
    const json = JSON.parse(
      await ok(
        'rule',
        'add',
        '--dev',
        W,
        '--src',
        '198.51.100.0/24',
        '--dst-set',
        'allow',
        '--sport',
        '1024-65535',
        '--proto',
        '17',
        '--vlan',
        '7',
        '--action',
        'redirect',
        '--to',
        S0,
        '--via',
        '02:00:00:00:00:01',
        '--json',
      ),
    );
    const generated = json.rule.id as string;
    expect(json.rule).toMatchObject({
      device: W,
      src: '198.51.100.0/24',
      dstSet: 'allow',
      sport: '1024-65535',
      proto: 17,
      vlan: 7,
      action: 'redirect',
      to: S0,
    });
    await ok(
      'rule',
      'add',
      '--dev',
      S0,
      '--hook',
      'tc-ingress',
      '--id',
      'echo',
      '--proto',
      'icmp',
      '--icmp-type',
      '8/0',
      '--action',
      'count',
    );
    expect(pinnedRuleIds(pin, W)).toEqual(['blk', 'dns', 'frag', generated, 'syn'].sort());
    expect(pinnedRuleIds(pin, S0, 'tc-ingress')).toEqual(['echo']);

    const table = normal(await ok('rule', 'ls', '--dev', W)).replace(generated, 'GEN');
    expect(table).toMatchInlineSnapshot(`
      "ID    DEVICE     HOOK  PRIO  MATCH                                                      ACTION                                       PACKETS  BYTES
      blk   veth-wire  xdp      -  src @blocklist                                             drop                                               0      0
      dns   veth-wire  xdp      -  udp dport 53                                               ratelimit 1000pps                                  0      0
      syn   veth-wire  xdp     10  dst 192.0.2.0/24 tcp flags syn,!ack                        drop                                               0      0
      frag  veth-wire  xdp      -  filter "udp and ip[6:2] & 0x1fff != 0"                     drop                                               0      0
      GEN    veth-wire  xdp      -  src 198.51.100.0/24 dst @allow vlan 7 17 sport 1024-65535  redirect to veth-sp-0 via 02:00:00:00:00:01        0      0
      "
    `);
    const listed = JSON.parse(await ok('rule', 'ls', '--json')) as {
      rules: { id: string; packets: number | null }[];
    };
    expect(listed.rules.map((r) => r.id).sort()).toEqual(
      ['blk', 'dns', 'frag', generated, 'syn', 'echo'].sort(),
    );
    expect(listed.rules.every((r) => r.packets === 0)).toBe(true);

    expect(normal(await ok('rule', 'rm', generated))).toBe(
      `removed rule ${generated} (generation N)\n`,
    );
    expect(pinnedRuleIds(pin, W)).not.toContain(generated);

    // The set a rule uses cannot go: one line on stderr, exit 1, nothing changed.
    const gen = await generation();
    const refused = await cli('set', 'rm', 'blocklist');
    expect(refused).toEqual({
      code: 1,
      stdout: '',
      stderr: expect.stringMatching(/^sluice: [^\n]*blocklist[^\n]*\n$/),
    });
    expect(normal(refused.stderr)).toMatchInlineSnapshot(`
      "sluice: remove set "blocklist": rule "blk" uses it; remove it first
      "
    `);
    expect(await generation()).toBe(gen);
    expect(pinnedSetNames(pin)).toContain('blocklist');
  });

  it('limit add | ls | rm', async () => {
    const pin = x.daemon.pinDir;
    const added = await ok(
      'limit',
      'add',
      '--dev',
      W,
      '--id',
      'mdns',
      '--proto',
      'udp',
      '--dport',
      '5353',
      '--rate',
      '500pps',
      '--burst',
      '50',
      '--per-source',
    );
    expect(normal(added)).toBe('added limit mdns (generation N)\n');
    const snap = await kernelSnapshot(pin, x.netns);
    expect(snap.attachments[`${W}@xdp`].limits).toEqual(['dns', 'mdns']);
    expect(normal(await ok('limit', 'ls'))).toMatchInlineSnapshot(`
      "ID    DEVICE     HOOK  MATCH              RATE  BURST  PER-SOURCE  PASSED  DROPPED
      dns   veth-wire  xdp   udp dport 53    1000pps      -  no               0        0
      mdns  veth-wire  xdp   udp dport 5353   500pps     50  yes              0        0
      "
    `);
    const json = JSON.parse(await ok('limit', 'ls', '--dev', W, '--json')) as {
      limits: { id: string; perSource?: boolean; passed: number }[];
    };
    expect(json.limits.map((l) => [l.id, l.perSource ?? false, l.passed])).toEqual([
      ['dns', false, 0],
      ['mdns', true, 0],
    ]);
    expect(normal(await ok('limit', 'rm', 'mdns'))).toBe('removed limit mdns (generation N)\n');
    expect((await kernelSnapshot(pin, x.netns)).attachments[`${W}@xdp`].limits).toEqual(['dns']);
  });

  it('filter add | ls | rm, and filter test over a pcap', async () => {
    const pin = x.daemon.pinDir;
    expect(
      normal(
        await ok(
          'filter',
          'add',
          '--dev',
          S0,
          '--hook',
          'tc-ingress',
          '--id',
          'no-dns',
          '--action',
          'drop',
          'udp dst port 53',
        ),
      ),
    ).toBe('added filter no-dns (generation N)\n');
    expect(pinnedRuleIds(pin, S0, 'tc-ingress')).toEqual(['echo', 'no-dns']);
    expect(normal(await ok('filter', 'ls'))).toMatchInlineSnapshot(`
      "ID      DEVICE     HOOK        PRIO  ACTION  EXPRESSION
      frag    veth-wire  xdp            -  drop    udp and ip[6:2] & 0x1fff != 0
      no-dns  veth-sp-0  tc-ingress     -  drop    udp dst port 53
      "
    `);
    const json = JSON.parse(await ok('filter', 'ls', '--dev', S0, '--json')) as {
      filters: { id: string; filter: string }[];
    };
    expect(json.filters).toMatchObject([{ id: 'no-dns', filter: 'udp dst port 53' }]);
    expect(normal(await ok('filter', 'rm', 'no-dns'))).toBe(
      'removed filter no-dns (generation N)\n',
    );
    expect(pinnedRuleIds(pin, S0, 'tc-ingress')).toEqual(['echo']);

    const pcap = join(tmp, 'dns.pcap');
    writeFileSync(
      pcap,
      writePcap([
        { data: frame({ src: '192.0.2.2', dst: '192.0.2.1', proto: 17, dport: 53 }) },
        { data: frame({ src: '192.0.2.2', dst: '192.0.2.1', proto: 6, dport: 53 }) },
        { data: frame({ src: '192.0.2.2', dst: '192.0.2.1', proto: 17, dport: 54 }) },
      ]),
    );
    expect(await ok('filter', 'test', '--pcap', pcap, '--verdicts', 'udp', 'port', '53')).toBe(
      '1\n0\n0\n',
    );
    expect(await ok('filter', 'test', '--pcap', pcap, 'udp')).toBe('matched 2 of 3 packets\n');
  });

  it('stats [DEV] --json in the documented shape, equal to the pinned counters after traffic', async () => {
    const pin = x.daemon.pinDir;
    await ok(
      'rule',
      'add',
      '--dev',
      W,
      '--id',
      'ping-drop',
      '--src',
      x.net.right.ipv4,
      '--proto',
      'icmp',
      '--action',
      'drop',
    );
    const before = pinnedCounters(pin, W);
    expect(await x.lab.ping(x.net.right, x.net.left, 4)).toBe(0);
    const after = pinnedCounters(pin, W);
    expect(after.rules['ping-drop'].packets - (before.rules['ping-drop']?.packets ?? 0)).toBe(4);

    const stats = JSON.parse(await ok('stats', W, '--json')) as {
      devices: {
        name: string;
        ifindex: number;
        actions: Record<string, { packets: number; bytes: number }>;
        rules: { id: string; packets: number; bytes: number }[];
        histogram: number[];
      }[];
    };
    expect(stats.devices).toHaveLength(1);
    const [d] = stats.devices;
    expect(d).toMatchObject({ name: W, ifindex: expect.any(Number) });
    expect(Object.keys(d.actions)).toEqual(expect.arrayContaining(['drop', 'pass']));
    expect(d.actions.drop).toEqual(after.actions.drop);
    expect(d.actions.pass).toEqual(after.actions.pass);
    expect(d.rules.find((r) => r.id === 'ping-drop')).toMatchObject(after.rules['ping-drop']);
    expect(d.histogram).toHaveLength(32);
    expect(d.histogram.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(4);

    const all = JSON.parse(await ok('stats', '--json')) as { devices: { name: string }[] };
    expect(all.devices.map((s) => s.name).sort()).toEqual([W, S0].sort());

    const human = await ok('stats', W, '--interval', '0');
    expect(human).toContain(W);
    expect(human).toMatch(/drop/);
  });

  it('stats --watch --count 2 prints two samples and returns', async () => {
    const json = await ok('stats', W, '--watch', '--count', '2', '--interval', '0.2', '--json');
    const lines = json.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(JSON.parse(line).devices[0].name).toBe(W);
    const screen = await ok('stats', '--watch', '--count', '2', '--interval', '0.2');
    expect(screen.split('\x1b[H').length - 1).toBe(2);
    expect(screen.endsWith('\x1b[?25h')).toBe(true);
  });

  it('apply -f YAML --dry-run (changes nothing), --pcap, then JSON for real', async () => {
    const pin = x.daemon.pinDir;
    const yaml = join(tmp, 'sluice.yaml');
    writeFileSync(
      yaml,
      [
        'version: 1',
        'attachments:',
        `  - device: ${W}`,
        '    mode: native',
        'sets:',
        '  - name: blocklist',
        '    prefixes: [10.0.0.0/8, 192.0.2.2/32]',
        'rules:',
        '  - id: blk',
        `    device: ${W}`,
        '    srcSet: blocklist',
        '    action: drop',
        '',
      ].join('\n'),
    );
    const before = await kernelSnapshot(pin, x.netns);
    const gen = await generation();
    expect(normal(await ok('apply', '-f', yaml, '--dry-run'))).toMatchInlineSnapshot(`
      "attachments:
        - veth-sp-0@tc-ingress
      sets:
        - allow
        ~ blocklist (+1 -1 prefixes)
      rules:
        - dns
        - syn
        - frag
        - echo
        - ping-drop
      dry run: nothing applied (generation stays N)
      "
    `);
    expect(await generation()).toBe(gen);
    expect(await kernelSnapshot(pin, x.netns)).toEqual(before);

    const pcap = join(tmp, 'sample.pcap');
    writeFileSync(
      pcap,
      writePcap([
        { data: frame({ src: '192.0.2.2', dst: '192.0.2.1', proto: 1 }) },
        { data: frame({ src: '198.51.100.9', dst: '192.0.2.1', proto: 17, dport: 53 }) },
      ]),
    );
    const replay = await ok('apply', '-f', yaml, '--dry-run', '--pcap', pcap);
    expect(normal(replay)).toMatchInlineSnapshot(`
      "attachments:
        - veth-sp-0@tc-ingress
      sets:
        - allow
        ~ blocklist (+1 -1 prefixes)
      rules:
        - dns
        - syn
        - frag
        - echo
        - ping-drop
      dry run: nothing applied (generation stays N)
      replayed 2 packets
      veth-wire@xdp:
        rule  packets
        blk         1
        verdicts: pass 1, drop 1, redirect 0, tx 0
        0 packets would change verdict
      "
    `);
    const replayJson = JSON.parse(
      await ok('apply', '-f', yaml, '--dry-run', '--pcap', pcap, '--json'),
    );
    expect(replayJson.result.applied).toBe(false);
    expect(replayJson.replay.packets).toBe(2);
    expect(await generation()).toBe(gen);

    const json = join(tmp, 'sluice.json');
    writeFileSync(
      json,
      JSON.stringify({
        version: 1,
        attachments: [{ device: W, mode: 'native' }],
        sets: [{ name: 'blocklist', prefixes: ['10.0.0.0/8', '192.0.2.2/32'] }],
        rules: [{ id: 'blk', device: W, srcSet: 'blocklist', action: 'drop' }],
      }),
    );
    expect(normal(await ok('apply', '-f', json))).toMatchInlineSnapshot(`
      "attachments:
        - veth-sp-0@tc-ingress
      sets:
        - allow
        ~ blocklist (+1 -1 prefixes)
      rules:
        - dns
        - syn
        - frag
        - echo
        - ping-drop
      applied: generation N
      "
    `);
    expect(await generation()).toBeGreaterThan(gen);
    expect(pinnedRuleIds(pin, W)).toEqual(['blk']);
    expect(pinnedSetNames(pin).filter(Boolean)).toEqual(['blocklist']);
    expect(pinnedSetHas(pin, 'blocklist', '192.0.2.2/32')).toBe(true);
    expect((await xdpByDevice(x.netns))[S0]).toBeUndefined();
    expect(pinnedLink(pin, S0, 'tc-ingress')).toBeNull();
    // The blocklist now holds the peer: its pings are dropped by rule blk.
    expect(await x.lab.ping(x.net.right, x.net.left, 2)).toBe(0);
    expect(pinnedCounters(pin, W).rules.blk.packets).toBe(2);
  });

  it('status and status --json', async () => {
    const human = normal(await ok('status')).replace(/(state dir|pin dir) +\S+/g, '$1 X');
    // The table's numbers (ifindex, generation) are the run's.
    const [head, table] = human.split(/(?=DEVICE)/);
    expect(head + table.replace(/\d+/g, 'N')).toMatchInlineSnapshot(`
      "generation  desired N, applied N
      ready       yes
      state dir X
      pin dir X

      DEVICE     HOOK  STATE     IFINDEX  GENERATION  ERROR
      veth-wire  xdp   attached        N          N
      "
    `);
    const json = JSON.parse(await ok('status', '--json'));
    expect(json).toMatchObject({
      ready: true,
      pinDir: x.daemon.pinDir,
      desiredGeneration: await generation(),
      attachments: [{ device: W, hook: 'xdp', state: 'attached' }],
    });
  });

  it('devices: the namespace as the daemon sees it, with the hook it runs', async () => {
    const json = JSON.parse(await ok('devices', '--json')) as {
      devices: { name: string; ifindex: number; up: boolean }[];
    };
    const wire = json.devices.find((d) => d.name === W);
    expect(wire).toMatchObject({ up: true });
    expect(json.devices.map((d) => d.name)).toContain('lo');
    const row = (await ok('devices')).split('\n').find((l) => l.startsWith(`${W} `));
    expect(row?.split(/\s+/)).toEqual([
      W,
      String(wire!.ifindex),
      'up',
      expect.any(String),
      expect.any(String),
      'xdp',
    ]);
  });

  it('events: hello, then a config event for a change, until interrupted', async () => {
    const stop = new AbortController();
    const running = runCliWith(
      { interrupt: stop.signal },
      '--socket',
      x.daemon.socket,
      'events',
      '--json',
    );
    await sleep(1500);
    await x.daemon.api('POST', '/v1/sets/blocklist/prefixes', { prefixes: ['203.0.113.99'] });
    await sleep(500);
    stop.abort();
    const run = await running;
    expect(run.code, run.stderr).toBe(0);
    const events = run.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; generation?: number });
    expect(events[0].type).toBe('hello');
    const config = events.find((e) => e.type === 'config');
    expect(config).toMatchObject({
      generation: await generation(),
      diff: { sets: { changed: [{ name: 'blocklist', added: 1, removed: 0 }] } },
    });
  });

  it('compile prints the listing of every layout; a bad expression is one positioned error', async () => {
    const program = compileFilter('udp and ip[6:2] & 0x1fff != 0');
    expect(await ok('compile', 'udp and ip[6:2] & 0x1fff != 0')).toBe(formatListing(program, 'd'));
    expect(await ok('compile', '-ddd', 'udp and ip[6:2] & 0x1fff != 0')).toBe(
      formatListing(program, 'ddd'),
    );
    expect(await ok('compile', '--ebpf', 'udp')).toMatch(/exit/);
    const bad = await cli('compile', 'udp and dst port and host 192.0.2.1');
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatchInlineSnapshot(`
      "udp and dst port and host 192.0.2.1
                       ^^^
      sluice: unexpected "and" at column 18: expected a port number or name
      "
    `);
  });

  it('over TCP with --server and --token-file, from inside the namespace', async () => {
    const server = ['--server', `http://127.0.0.1:${x.daemon.port}`];
    const auth = [...server, '--token-file', x.daemon.tokenFile];
    const status = await runCliInNetns(x.netns, [...auth, 'status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ desiredGeneration: await generation() });

    const added = await runCliInNetns(x.netns, [
      ...auth,
      'set',
      'add',
      'tcp-set',
      '203.0.113.64/26',
    ]);
    expect(added.code, added.stderr).toBe(0);
    expect(normal(added.stdout)).toBe('set tcp-set: added 1 prefixes (generation N)\n');
    expect(pinnedSetHas(x.daemon.pinDir, 'tcp-set', '203.0.113.70/32')).toBe(true);

    const loaded = await runCliInNetns(
      x.netns,
      [...auth, 'set', 'load', 'tcp-set', '--file', '-'],
      '203.0.113.128/26\n',
    );
    expect(loaded.code, loaded.stderr).toBe(0);
    expect(pinnedSetHas(x.daemon.pinDir, 'tcp-set', '203.0.113.70/32')).toBe(false);
    expect(pinnedSetHas(x.daemon.pinDir, 'tcp-set', '203.0.113.130/32')).toBe(true);

    const wrongToken = join(tmp, 'wrong-token');
    writeFileSync(wrongToken, 'not-the-token\n');
    const gen = await generation();
    const refused = await runCliInNetns(x.netns, [
      ...server,
      '--token-file',
      wrongToken,
      'set',
      'add',
      'nope',
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatchInlineSnapshot(`
      "sluice: the bearer token is malformed or not the right one
      "
    `);
    expect(await generation()).toBe(gen);
    expect(pinnedSetNames(x.daemon.pinDir)).not.toContain('nope');
  });
});
