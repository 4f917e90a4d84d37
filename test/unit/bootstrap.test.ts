// scripts/bootstrap.sh installs a Debian package for every program the lab, tests and benchmarks run.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root, sourceFiles } from '../helpers/sources.js';

/** The `packages=( … )` list of scripts/bootstrap.sh, comments dropped. */
function bootstrapPackages(): string[] {
  const script = readFileSync(join(root, 'scripts/bootstrap.sh'), 'utf8');
  const list = /^packages=\(([^)]*)\)/m.exec(script);
  if (!list) throw new Error('scripts/bootstrap.sh has no packages=( … ) list');
  return list[1]
    .split('\n')
    .map((line) => line.replace(/#.*/, ''))
    .join(' ')
    .split(/\s+/)
    .filter(Boolean);
}

// Where a program name stands as the first word of a command the code runs.
const COMMANDS = [
  /\b(?:execFileSync|execFile|spawnSync|spawn)\(\s*'([^']+)'/g, // execFileSync('tcpdump', …)
  /\brun\(\s*'([^']+)'\s*,\s*\[/g, // promisified execFile: run('tcpdump', [ … ])
  /\.exec\(\s*[\w.]+\s*,\s*\[\s*'([^']+)'/g, // lab.exec(netns, ['ip', …])
];
// netns-lab's own runners take the whole argv: run(['ip', …], { netns }).
const LAB_COMMANDS = /\b(?:run|exec|spawnSyncQuiet)\(\s*(?:[\w.]+\s*,\s*)?\[\s*'([^']+)'/g;

/** Program → the files that run it, over the lab, tests, benchmarks, CLI, bpf and scripts. */
function programsRun(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const dir of ['netns-lab', 'test', 'bench', 'cli', 'bpf', 'scripts']) {
    for (const file of sourceFiles(dir, /\.(ts|sh)$/)) {
      const text = readFileSync(file, 'utf8');
      const patterns = dir === 'netns-lab' ? [...COMMANDS, LAB_COMMANDS] : COMMANDS;
      for (const pattern of patterns) {
        for (const [, program] of text.matchAll(pattern)) {
          found.set(program, [...(found.get(program) ?? []), file.slice(root.length)]);
        }
      }
    }
  }
  return found;
}

/** dpkg-query's output, also when it exits non-zero because some pattern matched nothing. */
function dpkgQuery(args: string[]): string {
  return spawnSync('dpkg-query', args, { encoding: 'utf8' }).stdout ?? '';
}

/** Program → the Debian package that installs it in a bin directory, in one query. */
function owningPackages(programs: string[]): Map<string, string> {
  const owners = new Map<string, string>();
  const out = dpkgQuery(['-S', ...programs.map((program) => `*bin/${program}`)]);
  for (const line of out.split('\n')) {
    const match = /^([a-z0-9][a-z0-9+.-]+)(?::\w+)?: \/(?:usr\/)?s?bin\/([^/]+)$/.exec(line);
    if (match && programs.includes(match[2])) owners.set(match[2], match[1]);
  }
  return owners;
}

/** Those of `packages` that Debian marks essential: installed everywhere, minbase included. */
function essentialPackages(packages: string[]): Set<string> {
  const out = dpkgQuery(['-W', '-f=${Package} ${Essential}\n', ...packages]);
  return new Set(
    out
      .split('\n')
      .filter((line) => line.endsWith(' yes'))
      .map((line) => line.split(' ')[0]),
  );
}

function hasDpkg(): boolean {
  try {
    execFileSync('dpkg-query', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// Programs the kernel runs on our behalf: `ip link add type veth` and a clsact qdisc load
// their modules through modprobe on a stock Debian kernel.
const KERNEL_HELPERS: Record<string, string> = { modprobe: 'kmod' };
// Programs bootstrap does not install from Debian: the Node toolchain.
const NOT_DEBIAN = new Set(['node', 'npm', 'npx']);

describe('bootstrap packages', () => {
  it('finds the programs the code runs', () => {
    expect([...programsRun().keys()]).toEqual(
      expect.arrayContaining(['ip', 'sysctl', 'ping', 'tcpdump']),
    );
  });

  it('installs the packages the kernel needs to load modules', () => {
    const packages = bootstrapPackages();
    for (const pkg of Object.values(KERNEL_HELPERS)) expect(packages).toContain(pkg);
  });

  it('installs a package for every program the lab, tests and benchmarks run', (ctx) => {
    if (!hasDpkg()) ctx.skip('skipped: dpkg-query is missing (not a Debian system)');
    const packages = new Set(bootstrapPackages());
    const programs = [...programsRun()].filter(([program]) => !NOT_DEBIAN.has(program));
    const owners = owningPackages(programs.map(([program]) => program));
    const essential = essentialPackages([...new Set(owners.values())]);
    const uncovered: string[] = [];
    for (const [program, files] of programs) {
      const pkg = owners.get(program);
      if (pkg === undefined) {
        uncovered.push(`${program} (no package installs it here; run by ${files[0]})`);
      } else if (!packages.has(pkg) && !essential.has(pkg)) {
        uncovered.push(`${program} from ${pkg} (run by ${files[0]})`);
      }
    }
    expect(uncovered).toEqual([]);
  });
});
