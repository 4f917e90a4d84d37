// Writes classic libpcap files (either byte order, micro- or nanosecond timestamps) for tests.
import { writeFile } from 'node:fs/promises';

/** A packet to write: captured bytes, length on the wire, optional timestamp. */
export interface PcapRecordInput {
  data: Uint8Array;
  wireLength?: number;
  tsSec?: number;
  /** Sub-second part: microseconds, or nanoseconds when the file is written with nanosecond precision. */
  tsFrac?: number;
}

export interface PcapWriteOptions {
  linkType?: number; // default 1 (DLT_EN10MB)
  snaplen?: number; // default 262144
  byteOrder?: 'le' | 'be'; // default 'le'
  precision?: 'micro' | 'nano'; // default 'micro'
}

/** Serialises packets as a classic pcap file; timestamps default to a fixed, increasing sequence. */
export function writePcap(
  packets: readonly PcapRecordInput[],
  options: PcapWriteOptions = {},
): Uint8Array {
  const le = (options.byteOrder ?? 'le') === 'le';
  const nano = options.precision === 'nano';
  let size = 24;
  for (const p of packets) size += 16 + p.data.length;
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  view.setUint32(0, nano ? 0xa1b23c4d : 0xa1b2c3d4, le);
  view.setUint16(4, 2, le);
  view.setUint16(6, 4, le);
  view.setInt32(8, 0, le);
  view.setUint32(12, 0, le);
  view.setUint32(16, options.snaplen ?? 262144, le);
  view.setUint32(20, options.linkType ?? 1, le);
  let o = 24;
  packets.forEach((p, i) => {
    view.setUint32(o, p.tsSec ?? 1_700_000_000 + Math.floor(i / 1000), le);
    view.setUint32(o + 4, p.tsFrac ?? ((i % 1000) * 1000 + 7) * (nano ? 1000 : 1), le);
    view.setUint32(o + 8, p.data.length, le);
    view.setUint32(o + 12, p.wireLength ?? p.data.length, le);
    buf.set(p.data, o + 16);
    o += 16 + p.data.length;
  });
  return buf;
}

/** Writes packets to a pcap file at `path`. */
export async function writePcapFile(
  path: string,
  packets: readonly PcapRecordInput[],
  options?: PcapWriteOptions,
): Promise<void> {
  await writeFile(path, writePcap(packets, options));
}
