// Kernel tests of the addon's programs: raw loads with map relocations, verifier rejections, BPF_PROG_TEST_RUN, info and stats.
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, expect, it } from 'vitest';

import {
  BpfObject,
  VerifierError,
  createMap,
  enableStats,
  getMapById,
  getProgramById,
  loadObject,
  loadProgram,
} from '../../bpf/index.js';
import { insn } from '../helpers/bpf-insn.js';
import { describeKernel } from '../helpers/privileges.js';

const fixture = fileURLToPath(new URL('../../bpf/progs/addon_test.o', import.meta.url));

const program = (...insns: Buffer[]): Buffer => Buffer.concat(insns);
const EXIT = insn(0x95, 0, 0, 0, 0);
const movImm = (dst: number, imm: number): Buffer => insn(0xb7, dst, 0, 0, imm);

/** Ethernet + IPv4 + UDP to `dport`, from 192.0.2.1 to 198.51.100.1. */
function udpPacket(dport: number): Buffer {
  const p = Buffer.alloc(14 + 20 + 8 + 4);
  p.writeUInt16BE(0x0800, 12);
  p[14] = 0x45;
  p.writeUInt16BE(20 + 8 + 4, 16);
  p[22] = 64;
  p[23] = 17;
  Buffer.from([192, 0, 2, 1]).copy(p, 26);
  Buffer.from([198, 51, 100, 1]).copy(p, 30);
  p.writeUInt16BE(40000, 34);
  p.writeUInt16BE(dport, 36);
  p.writeUInt16BE(12, 38);
  return p;
}

const XDP_DROP = 1;
const XDP_PASS = 2;

await describeKernel('addon programs', () => {
  let object: BpfObject;
  beforeAll(() => {
    object = loadObject(fixture);
  });
  afterAll(() => object?.close());

  it('returns the verdicts the program computes for crafted packets', async () => {
    const parse = object.program('addon_parse_xdp');
    try {
      expect((await parse.testRun({ data: udpPacket(53) })).retval).toBe(XDP_DROP);
      expect((await parse.testRun({ data: udpPacket(54) })).retval).toBe(XDP_PASS);
      const tcp = udpPacket(53);
      tcp[23] = 6;
      expect((await parse.testRun({ data: tcp })).retval).toBe(XDP_PASS);
      const arp = udpPacket(53);
      arp.writeUInt16BE(0x0806, 12);
      expect((await parse.testRun({ data: arp })).retval).toBe(XDP_PASS);
      expect((await parse.testRun({ data: udpPacket(53).subarray(0, 30) })).retval).toBe(XDP_PASS);
    } finally {
      parse.close();
    }
  });

  it('runs packets given as ranges of one buffer, as testRunEach runs them one by one', async () => {
    const parse = object.program('addon_parse_xdp');
    try {
      const packets = [udpPacket(53), udpPacket(54), udpPacket(53).subarray(0, 8), udpPacket(53)];
      const data = Buffer.concat([Buffer.from([0xaa]), ...packets]);
      const starts = new Uint32Array(packets.length);
      const lengths = new Uint32Array(packets.map((p) => p.length));
      for (let i = 1; i < packets.length; i++) starts[i] = starts[i - 1] + lengths[i - 1];
      starts.forEach((_, i) => (starts[i] += 1));
      const batch = await parse.testRunBatch(data, starts, lengths);
      expect([...batch.retvals]).toEqual([XDP_DROP, XDP_PASS, 0, XDP_DROP]);
      expect([...batch.errnos]).toEqual([0, 0, 22, 0]); // a runt: EINVAL, the others still run
      const each = await parse.testRunEach(packets);
      expect(batch).toEqual(each);

      await expect(parse.testRunBatch(data, starts, new Uint32Array(3))).rejects.toThrow(
        /starts and lengths must have the same length, got 4 and 3/,
      );
      await expect(
        parse.testRunBatch(data, Uint32Array.of(data.length - 4), Uint32Array.of(5)),
      ).rejects.toMatchObject({ name: 'InvalidArgumentError', message: /ends past the data's/ });
    } finally {
      parse.close();
    }
  });

  it('returns the packet as the program left it', async () => {
    // if (data + 1 <= data_end) data[0] = 0xff; return XDP_PASS
    const prog = loadProgram({
      type: 'xdp',
      name: 'write_first',
      insns: program(
        insn(0x61, 2, 1, 0, 0),
        insn(0x61, 3, 1, 4, 0),
        insn(0xbf, 4, 2, 0, 0),
        insn(0x07, 4, 0, 0, 1),
        insn(0x2d, 4, 3, 2, 0),
        movImm(5, 0xff),
        insn(0x73, 2, 5, 0, 0),
        movImm(0, XDP_PASS),
        EXIT,
      ),
    });
    try {
      const data = udpPacket(53);
      const result = await prog.testRun({ data, dataOut: true });
      expect(result.retval).toBe(XDP_PASS);
      expect(result.dataOut?.length).toBe(data.length);
      expect(result.dataOut?.[0]).toBe(0xff);
      expect(result.dataOut?.subarray(1)).toEqual(data.subarray(1));
      expect((await prog.testRun({ data })).dataOut).toBeUndefined();
    } finally {
      prog.close();
    }
  });

  it('repeats a run and reports the average duration', async () => {
    const pass = object.program('addon_pass_xdp');
    const result = await pass.testRun({ data: udpPacket(1), repeat: 100_000 });
    expect(result.retval).toBe(XDP_PASS);
    expect(result.durationNs).toBeGreaterThan(0);
    expect(result.durationNs).toBeLessThan(100_000);
    pass.close();
  });

  it('runs tc and socket filter programs', async () => {
    const tc = object.program('addon_pass_tc');
    expect((await tc.testRun({ data: udpPacket(1) })).retval).toBe(0); // TC_ACT_OK
    tc.close();
    const accept = loadProgram({
      type: 'socket_filter',
      name: 'accept_all',
      insns: program(movImm(0, -1), EXIT),
    });
    expect((await accept.testRun({ data: udpPacket(1) })).retval).toBe(0xffffffff);
    accept.close();
  });

  it('loads raw instructions that reference a map through a relocation', async () => {
    const verdict = createMap({
      type: 'array',
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name: 'verdict_raw',
    });
    // key = 0; v = map_lookup_elem(map, &key); return v ? *v : XDP_PASS
    const insns = program(
      movImm(1, 0),
      insn(0x63, 10, 1, -4, 0),
      insn(0xbf, 2, 10, 0, 0),
      insn(0x07, 2, 0, 0, -4),
      insn(0x18, 1, 0, 0, 0),
      insn(0x00, 0, 0, 0, 0),
      insn(0x85, 0, 0, 0, 1),
      insn(0x15, 0, 0, 2, 0),
      insn(0x61, 0, 0, 0, 0),
      EXIT,
      movImm(0, XDP_PASS),
      EXIT,
    );
    const prog = loadProgram({
      type: 'xdp',
      name: 'map_verdict',
      insns,
      relocations: [{ insnIndex: 4, map: verdict }],
    });
    const byFd = loadProgram({
      type: 'xdp',
      name: 'map_verdict_fd',
      insns,
      relocations: [{ insnIndex: 4, mapFd: verdict.fd }],
    });
    try {
      expect((await prog.testRun({ data: udpPacket(1) })).retval).toBe(0);
      verdict.update(Buffer.alloc(4), Buffer.from([XDP_DROP, 0, 0, 0]));
      expect((await prog.testRun({ data: udpPacket(1) })).retval).toBe(XDP_DROP);
      expect((await byFd.testRun({ data: udpPacket(1) })).retval).toBe(XDP_DROP);
      expect(prog.info().mapIds).toEqual([verdict.id]);
    } finally {
      prog.close();
      byFd.close();
      verdict.close();
    }
  });

  it('rejects reading an uninitialised register with the verifier log', () => {
    let error: unknown;
    try {
      loadProgram({
        type: 'xdp',
        name: 'uninit_reg',
        insns: program(insn(0xbf, 0, 2, 0, 0), EXIT),
      });
    } catch (e: unknown) {
      error = e;
    }
    expect(error).toBeInstanceOf(VerifierError);
    const verifierError = error as VerifierError;
    expect(verifierError.code).toBe('BPF_VERIFIER');
    expect(verifierError.message).toMatchInlineSnapshot(
      `"load program "uninit_reg": rejected by the verifier: R2 !read_ok"`,
    );
    expect(verifierError.log).toContain('R2 !read_ok');
    expect(verifierError.log.some((line) => line.startsWith('processed 1 insns'))).toBe(true);
  });

  it('rejects packet access without a bounds check with the verifier log', () => {
    let error: unknown;
    try {
      loadProgram({
        type: 'xdp',
        name: 'oob_packet',
        insns: program(insn(0x61, 2, 1, 0, 0), insn(0x61, 0, 2, 0, 0), EXIT),
      });
    } catch (e: unknown) {
      error = e;
    }
    expect(error).toBeInstanceOf(VerifierError);
    expect((error as VerifierError).message).toMatchInlineSnapshot(
      `"load program "oob_packet": rejected by the verifier: R2 offset is outside of the packet"`,
    );
    expect(
      (error as VerifierError).log.some((line) => line.startsWith('invalid access to packet')),
    ).toBe(true);
  });

  it('rejects a program without an exit', () => {
    expect(() =>
      loadProgram({ type: 'xdp', name: 'no_exit', insns: movImm(0, 2) }),
    ).toThrowErrorMatchingInlineSnapshot(
      `[VerifierError: load program "no_exit": rejected by the verifier: last insn is not an exit or jmp]`,
    );
  });

  it('fills run counters while statistics are enabled and finds objects by id', async () => {
    const count = object.program('addon_count_xdp');
    const stats = enableStats();
    try {
      await count.testRun({ data: udpPacket(1), repeat: 10 });
      const info = count.info();
      expect(info.runCnt).toBeGreaterThanOrEqual(10);
      expect(info.runTimeNs).toBeGreaterThan(0);
      expect(info).toMatchObject({ name: 'addon_count_xdp', type: 'xdp', tag: count.tag });
      expect(info.xlatedLen).toBeGreaterThan(0);
      expect(info.mapIds).toHaveLength(1);
      const pcpu = getMapById(info.mapIds[0]);
      expect(pcpu.name).toBe('test_pcpu');
      pcpu.close();
      const again = getProgramById(count.id);
      expect(again.name).toBe('addon_count_xdp');
      again.close();
    } finally {
      stats.close();
      count.close();
    }
  });
});
