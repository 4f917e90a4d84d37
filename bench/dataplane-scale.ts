// Scale of the data plane's control path: a million-prefix set load, a 4,096-rule apply, one-prefix and one-rule changes.
import { randomBytes } from 'node:crypto';

import { Dataplane } from '../controller/dataplane/dataplane.js';
import type { RuleSpec } from '../controller/dataplane/model.js';
import { Lab } from '../netns-lab/lab.js';
import type { BenchTable } from './table.js';

/** Random distinct-looking prefixes: IPv4 /16–/32 and IPv6 /32–/64, host bits clear. */
function randomPrefixes(v4: number, v6: number): string[] {
  const out: string[] = [];
  const bytes = randomBytes(v4 * 5);
  for (let i = 0; i < v4; i++) {
    const len = 16 + (bytes[i * 5 + 4] % 17);
    const x = bytes.readUInt32BE(i * 5);
    const a = len === 0 ? 0 : (x & ((0xffffffff << (32 - len)) >>> 0)) >>> 0;
    out.push(`${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/${len}`);
  }
  const b6 = randomBytes(v6 * 4);
  for (let i = 0; i < v6; i++) {
    out.push(
      `2001:db8:${b6.readUInt16BE(i * 4).toString(16)}:${b6.readUInt16BE(i * 4 + 2).toString(16)}::/64`,
    );
  }
  // Flatten the strings as text read from a file would be (template literals build ropes).
  return out.join('\n').split('\n');
}

function rulesOf(n: number, port: number): RuleSpec[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `r${i}`,
    dst: `10.${i >> 8}.${i & 255}.0/24`,
    proto: i % 2 ? 'tcp' : 'udp',
    dport: port + (i % 1000),
    action: 'drop',
  }));
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Runs the scale measurements in a throw-away namespace; everything is removed at the end. */
export async function benchDataplaneScale(): Promise<{ tables: BenchTable[]; notes: string[] }> {
  const lab = new Lab();
  const net = await lab.pair();
  let dp = await Dataplane.open({ dir: `/sys/fs/bpf/${lab.id}`, netns: net.right.netns });
  try {
    const prefixes = randomPrefixes(1_000_000, 100_000);
    const sets = [{ name: 'big', prefixes }];
    const attach = (rules: RuleSpec[]) => [{ device: net.right.device, rules: { rules } }];

    const setLoad = await timed(() => dp.apply({ sets, attachments: [] }));
    const rss = process.memoryUsage().rss;
    const firstAttach = await timed(() =>
      dp.apply({ sets, attachments: attach(rulesOf(8, 1000)) }),
    );
    const rules4096 = await timed(() =>
      dp.apply({ sets, attachments: attach(rulesOf(4096, 1000)) }),
    );
    const changeOne = rulesOf(4096, 1000);
    changeOne[17].dport = 7;
    const oneRule = await timed(() => dp.apply({ sets, attachments: attach(changeOne) }));
    const identical = await timed(() => dp.apply({ sets, attachments: attach(changeOne) }));
    const onePrefix = await timed(() => dp.addPrefixes('big', ['203.0.113.0/24']));
    await dp.removePrefixes('big', ['203.0.113.0/24']);
    dp.close();
    const restart = await timed(async () => {
      dp = await Dataplane.open({ dir: `/sys/fs/bpf/${lab.id}`, netns: net.right.netns });
      await dp.apply({ sets, attachments: attach(changeOne) });
    });
    return {
      tables: [
        {
          title: 'data-plane control path (one run, this machine)',
          unit: 'ms',
          peer: 'target',
          rows: [
            {
              workload: 'load 1,000,000 IPv4 + 100,000 IPv6 prefixes (parse, nest, batch-write)',
              sluice: setLoad,
              peer: 2000,
              target: '≤ 1.00',
            },
            {
              workload: 'apply 4,096 rules to an attached device (one generation flip)',
              sluice: rules4096,
              peer: 1000,
              target: '≤ 1.00',
            },
            {
              workload: 'change one rule of 4,096 (diffed generation write)',
              sluice: oneRule,
              peer: 1000,
              target: '≤ 1.00',
            },
            {
              workload: 'apply the same desired state again (sets unchanged: not parsed again)',
              sluice: identical,
              peer: 1000,
              target: '≤ 1.00',
            },
            {
              workload: 'restart: open (adopt the pins, read the set tries back) + apply',
              sluice: restart,
              peer: 2000,
              target: '≤ 1.00',
            },
            {
              workload: 'add one prefix to the 1,100,000-prefix set',
              sluice: onePrefix,
              peer: 1000,
              target: '≤ 1.00',
            },
          ],
        },
      ],
      notes: [
        `first attach with 8 rules (object load, verifier, both generations' tables): ${firstAttach.toFixed(0)} ms`,
        `process RSS after the set load: ${(rss / 2 ** 20).toFixed(0)} MiB`,
        'times are wall clock of Dataplane.apply()/addPrefixes() on an otherwise idle pipeline',
      ],
    };
  } finally {
    await dp.destroy().catch(() => undefined);
    await lab.destroy();
  }
}
