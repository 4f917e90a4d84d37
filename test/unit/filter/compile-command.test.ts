// `sluice compile`: layouts chosen by repeating -d, words joined, errors thrown with a caret.
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { compileCommand } from '../../../cli/commands/compile.js';
import { FilterSyntaxError, compileFilter, formatListing } from '../../../bpf/filter/index.js';

async function run(args: string[]): Promise<string> {
  let out = '';
  const program = new Command('sluice')
    .exitOverride()
    .configureOutput({ writeOut: (s) => (out += s), writeErr: () => {} });
  const cmd = compileCommand()
    .exitOverride()
    .configureOutput({ writeOut: (s) => (out += s), writeErr: () => {} });
  program.addCommand(cmd);
  await program.parseAsync(['compile', ...args], { from: 'user' });
  return out;
}

describe('sluice compile', () => {
  it('prints the -d listing by default, joining the words', async () => {
    expect(await run(['tcp', 'port', '80'])).toBe(formatListing(compileFilter('tcp port 80'), 'd'));
  });
  it('takes -dd and -ddd as tcpdump does', async () => {
    expect(await run(['-dd', 'udp'])).toBe(formatListing(compileFilter('udp'), 'dd'));
    expect(await run(['-ddd', 'udp'])).toBe(formatListing(compileFilter('udp'), 'ddd'));
    expect(await run(['-d', '-d', 'udp'])).toBe(formatListing(compileFilter('udp'), 'dd'));
  });
  it('turns the optimizer off with -O', async () => {
    expect(await run(['-O', 'tcp'])).toBe(
      formatListing(compileFilter('tcp', { optimize: false }), 'd'),
    );
  });
  it('prints eBPF with --ebpf', async () => {
    expect(await run(['--ebpf', 'tcp'])).toMatch(/^\s+0: \(/);
  });
  it('refuses a classic layout with --ebpf, and an eBPF context without it', async () => {
    const usage = async (args: string[]): Promise<string> => {
      const err = (await run(args).catch((e: unknown) => e)) as { code?: string; message?: string };
      return `${err.code}: ${err.message}`;
    };
    expect(await usage(['--ebpf', '-dd', 'tcp'])).toBe(
      'commander.error: sluice: -d, -dd and -ddd are classic BPF layouts; --ebpf prints its own listing',
    );
    expect(await usage(['--context', 'tc', 'tcp'])).toBe(
      'commander.error: sluice: --context chooses the eBPF program type; add --ebpf',
    );
  });
  it('throws the positioned error for bad input', async () => {
    const err = await run(['udp', 'and', 'dst', 'port', 'and', 'host', '192.0.2.1']).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FilterSyntaxError);
    expect((err as FilterSyntaxError).format()).toMatchInlineSnapshot(`
      "udp and dst port and host 192.0.2.1
                       ^^^
      unexpected "and" at column 18: expected a port number or name"
    `);
  });
});
