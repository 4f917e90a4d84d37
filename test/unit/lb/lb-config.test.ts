// Services and backends in the desired-state document (controller/lb/lb-config.ts, service-key.ts):
// how they are named, what is refused before anything is persisted, what a diff says, and that
// the state directory keeps them through the journal and a compaction.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { diffConfig, validateConfig } from '../../../controller/config.js';
import type { NormalConfig, ServiceDoc } from '../../../controller/document.js';
import { ConfigInvalidError } from '../../../controller/errors.js';
import { planServices } from '../../../controller/lb/lb-config.js';
import {
  backendKey,
  parseBackendRef,
  parseServiceKey,
  serviceKey,
} from '../../../controller/lb/service-key.js';
import { StateStore } from '../../../controller/store.js';

function withServices(services: ServiceDoc[], lb?: NormalConfig['lb']): NormalConfig {
  return { version: 1, attachments: [], sets: [], rules: [], services, ...(lb ? { lb } : {}) };
}

const web: ServiceDoc = {
  vip: '10.0.0.100',
  port: 80,
  backends: [{ address: '10.1.0.11', weight: 2, check: 'http:/healthz' }, { address: '10.1.0.12' }],
};

/** The pointer and message of the ConfigInvalidError `config` is refused with. */
function refusal(config: NormalConfig): { pointer: string; message: string } {
  try {
    validateConfig(config);
  } catch (error: unknown) {
    if (error instanceof ConfigInvalidError)
      return { pointer: error.pointer, message: error.message };
    throw error;
  }
  throw new Error('accepted');
}

describe('service and backend names', () => {
  it('names a service VIP:PORT/PROTO with the address canonical and IPv6 in brackets', () => {
    expect(serviceKey({ vip: '10.0.0.100', port: 80 })).toBe('10.0.0.100:80/tcp');
    expect(serviceKey({ vip: '2001:DB8:0::1', port: 443, proto: 'udp' })).toBe(
      '[2001:db8::1]:443/udp',
    );
    expect(backendKey({ address: '10.1.0.11' })).toBe('10.1.0.11');
    expect(backendKey({ address: '2001:db8::11', port: 8080 })).toBe('[2001:db8::11]:8080');
  });

  it('reads the names users type, tcp when no protocol is given', () => {
    expect(parseServiceKey('10.0.0.100:80')).toEqual({ vip: '10.0.0.100', port: 80, proto: 'tcp' });
    expect(parseServiceKey('[2001:db8::1]:53/UDP')).toEqual({
      vip: '2001:db8::1',
      port: 53,
      proto: 'udp',
    });
    expect(parseBackendRef('10.1.0.11')).toEqual({ address: '10.1.0.11' });
    expect(parseBackendRef('[2001:db8::11]:8080')).toEqual({ address: '2001:db8::11', port: 8080 });
    expect(parseBackendRef('2001:db8::11')).toEqual({ address: '2001:db8::11' });
  });

  it('says what a name should look like when it is not one', () => {
    expect(() => parseServiceKey('10.0.0.100')).toThrow(/expected VIP:PORT\[\/PROTO\]/);
    expect(() => parseServiceKey('10.0.0.100:80/icmp')).toThrow(
      /"icmp" is not one of tcp, udp, sctp/,
    );
    expect(() => parseServiceKey('web:80')).toThrow(ConfigInvalidError);
    expect(() => parseBackendRef('10.1.0.11:99999')).toThrow(/expected an address/);
  });
});

describe('services in the desired state', () => {
  it('fills in the defaults the kernel side applies', () => {
    expect(planServices(withServices([web]))).toEqual([
      {
        key: '10.0.0.100:80/tcp',
        vip: '10.0.0.100',
        port: 80,
        proto: 'tcp',
        mode: 'dsr',
        hash: '5tuple',
        tableSize: 65537,
        udpTimeout: 30,
        tcpTimeout: 0,
        drainTimeout: 30,
        devices: null,
        backends: [
          {
            key: '10.1.0.11',
            address: '10.1.0.11',
            port: 0,
            weight: 2,
            drain: false,
            check: 'http:/healthz',
          },
          {
            key: '10.1.0.12',
            address: '10.1.0.12',
            port: 0,
            weight: 1,
            drain: false,
            check: undefined,
          },
        ],
      },
    ]);
  });

  it('accepts a valid service of each mode and family', () => {
    expect(() =>
      validateConfig(
        withServices(
          [
            web,
            { vip: '2001:db8::1', port: 443, mode: 'ipip', backends: [{ address: '10.1.0.11' }] },
            {
              vip: '10.0.0.101',
              port: 0,
              proto: 'udp',
              mode: 'nat',
              backends: [{ address: '10.1.0.11', port: 53, check: 'icmp' }],
            },
          ],
          { ipipSource4: '198.51.100.0/24', ipipSource6: '2001:db8:ff::/96' },
        ),
      ),
    ).not.toThrow();
  });

  it('refuses what it cannot run, pointing at the field', () => {
    expect(refusal(withServices([web, { ...web, vip: '10.0.0.100', backends: [] }]))).toEqual({
      pointer: '/services/1',
      message: expect.stringContaining('service 10.0.0.100:80/tcp is also /services/0'),
    });
    expect(refusal(withServices([{ vip: 'web', port: 80 }])).pointer).toBe('/services/0/vip');
    expect(refusal(withServices([{ ...web, tableSize: 65536 }])).message).toContain(
      'not a Maglev table size',
    );
    expect(
      refusal(
        withServices([{ vip: '10.0.0.1', port: 80, backends: [{ address: '2001:db8::1' }] }]),
      ),
    ).toEqual({
      pointer: '/services/0/backends/0/address',
      message: expect.stringContaining('dsr forwards within one address family'),
    });
    expect(
      refusal(
        withServices([
          { vip: '10.0.0.1', port: 80, backends: [{ address: '10.1.0.1', port: 8080 }] },
        ]),
      ).message,
    ).toContain('a backend port needs mode nat');
    expect(
      refusal(
        withServices([
          {
            vip: '10.0.0.1',
            port: 80,
            backends: [{ address: '10.1.0.1' }, { address: '10.1.0.1' }],
          },
        ]),
      ).pointer,
    ).toBe('/services/0/backends/1');
    expect(
      refusal(
        withServices([
          { vip: '10.0.0.1', port: 80, backends: [{ address: '10.1.0.1', check: 'http:healthz' }] },
        ]),
      ).pointer,
    ).toBe('/services/0/backends/0/check');
    expect(
      refusal(
        withServices([
          { vip: '10.0.0.1', port: 0, backends: [{ address: '10.1.0.1', check: 'tcp' }] },
        ]),
      ).message,
    ).toContain('the check must name one');
    expect(refusal(withServices([], { ipipSource6: '2001:db8::/64' })).pointer).toBe(
      '/lb/ipipSource6',
    );
    // Two NAT services to one backend address and port: replies could not be told apart.
    const nat = (vip: string, port: number, backendPort?: number): ServiceDoc => ({
      vip,
      port,
      mode: 'nat',
      backends: [{ address: '10.1.0.11', ...(backendPort ? { port: backendPort } : {}) }],
    });
    expect(refusal(withServices([nat('10.0.0.1', 80, 8080), nat('10.0.0.2', 443, 8080)]))).toEqual({
      pointer: '/services/1/backends/0',
      message: expect.stringContaining('also a backend of NAT service 10.0.0.1:80/tcp'),
    });
    expect(() =>
      validateConfig(withServices([nat('10.0.0.1', 80, 8080), nat('10.0.0.2', 443, 8443)])),
    ).not.toThrow();
  });

  it('reports services added, removed and changed by key, and the settings as "lb"', () => {
    const before = withServices([web, { vip: '10.0.0.101', port: 53, proto: 'udp' }]);
    const after = withServices(
      [
        { ...web, backends: [{ address: '10.1.0.11' }] },
        { vip: '10.0.0.102', port: 80 },
      ],
      { insertCap: { rate: 1000, burst: 100 } },
    );
    expect(diffConfig(before, after).services).toEqual({
      added: ['10.0.0.102:80/tcp'],
      removed: ['10.0.0.101:53/udp'],
      changed: ['10.0.0.100:80/tcp', 'lb'],
    });
    // The same service written again, defaults spelled out: no change.
    const spelled = withServices([
      { ...web, proto: 'tcp', mode: 'dsr', hash: '5tuple' },
      { vip: '10.0.0.101', port: 53, proto: 'udp' },
    ]);
    expect(diffConfig(before, spelled).services).toBeUndefined();
  });

  it('keeps services and settings through the journal and a compaction', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-lbstate-'));
    try {
      let store = StateStore.open(dir);
      const empty = await store.load();
      const one = withServices([web], { flowTable: 'per-cpu' });
      await store.save({ config: one, generation: 1, nextRuleId: 1 });
      const two: NormalConfig = { ...one, services: [web, { vip: '10.0.0.9', port: 9 }] };
      await store.save({ config: two, generation: 2, nextRuleId: 1 });
      const none: NormalConfig = { ...empty.config };
      await store.save({ config: { ...none, lb: one.lb }, generation: 3, nextRuleId: 1 });
      store.close();
      store = StateStore.open(dir);
      expect((await store.load()).config).toEqual({ ...none, lb: { flowTable: 'per-cpu' } });
      await store.save({ config: two, generation: 4, nextRuleId: 1 });
      await store.compact();
      store.close();
      store = StateStore.open(dir);
      expect(await store.load()).toEqual({ config: two, generation: 4, nextRuleId: 1 });
      store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
