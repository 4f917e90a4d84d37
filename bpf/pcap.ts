// Reads classic libpcap capture files (both byte orders, micro- and nanosecond timestamps): the packets that filter tests and dry-run replays run through the kernel.
import { readFile } from 'node:fs/promises';

// Error codes (PcapFormatError.code):
//   PCAP_BAD_MAGIC      the file does not start with a classic pcap magic number (pcapng is named as such)
//   PCAP_TRUNCATED      the file ends inside the file header, a record header or a record's data
//   PCAP_BAD_VERSION    the major version is not 2
//   PCAP_BAD_RECORD     a record's captured length is impossible (larger than the maximum snapshot length)
//   PCAP_READ           the file could not be read (cause attached)
//   PCAP_LINK_TYPE      the capture's link type is not one the caller can use (filters need Ethernet)

/** Codes a `PcapFormatError` carries. */
export type PcapErrorCode =
  | 'PCAP_BAD_MAGIC'
  | 'PCAP_TRUNCATED'
  | 'PCAP_BAD_VERSION'
  | 'PCAP_BAD_RECORD'
  | 'PCAP_READ'
  | 'PCAP_LINK_TYPE';

/** A capture file that cannot be read as classic pcap; `offset` is the byte where reading failed. */
export class PcapFormatError extends Error {
  override readonly name = 'PcapFormatError';
  readonly code: PcapErrorCode;
  readonly offset: number;
  readonly path: string | undefined;

  constructor(
    code: PcapErrorCode,
    message: string,
    offset: number,
    options?: { path?: string; cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.offset = offset;
    this.path = options?.path;
  }
}

/** One captured packet. */
export interface PcapPacket {
  /** The captured bytes (caplen of them). */
  data: Uint8Array;
  /** Length of the packet on the wire; at least data.length for well-formed captures. */
  wireLength: number;
  tsSec: number;
  /** Microseconds; nanosecond files are rounded down. */
  tsUsec: number;
  /** Nanoseconds (microsecond files: tsUsec × 1000). */
  tsNsec: number;
}

/** A parsed capture file. */
export interface PcapFile {
  /** DLT_/LINKTYPE_ value (1 = Ethernet), without the FCS bits of the header's link-type field. */
  linkType: number;
  snaplen: number;
  byteOrder: 'le' | 'be';
  precision: 'micro' | 'nano';
  versionMajor: number;
  versionMinor: number;
  packets: PcapPacket[];
}

/** Largest captured length accepted in a record, whatever the header's snaplen (libpcap allows up to 256 KiB). */
export const MAX_RECORD_CAPLEN = 262144;

const MAGIC_MICRO = 0xa1b2c3d4;
const MAGIC_NANO = 0xa1b23c4d;
const MAGIC_PCAPNG = 0x0a0d0d0a;

/**
 * Parses a classic pcap file held in memory.
 *
 * Throws `PcapFormatError`: `PCAP_BAD_MAGIC` for other formats (pcapng included), `PCAP_BAD_VERSION`,
 * `PCAP_TRUNCATED` when the data ends early, `PCAP_BAD_RECORD` for an impossible captured length.
 */
export function parsePcap(bytes: Uint8Array, path?: string): PcapFile {
  const where = path === undefined ? 'pcap data' : `pcap file "${path}"`;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4) {
    throw new PcapFormatError(
      'PCAP_TRUNCATED',
      `read ${where}: file is ${bytes.length} bytes, shorter than the 24-byte file header`,
      0,
      { path },
    );
  }
  const magicBe = view.getUint32(0, false);
  const magicLe = view.getUint32(0, true);
  let le: boolean;
  let nano: boolean;
  if (magicLe === MAGIC_MICRO || magicLe === MAGIC_NANO) {
    le = true;
    nano = magicLe === MAGIC_NANO;
  } else if (magicBe === MAGIC_MICRO || magicBe === MAGIC_NANO) {
    le = false;
    nano = magicBe === MAGIC_NANO;
  } else if (magicBe === MAGIC_PCAPNG) {
    throw new PcapFormatError(
      'PCAP_BAD_MAGIC',
      `read ${where}: pcapng files are not supported; convert with "editcap -F pcap"`,
      0,
      { path },
    );
  } else {
    const hex = magicBe.toString(16).padStart(8, '0');
    throw new PcapFormatError(
      'PCAP_BAD_MAGIC',
      `read ${where}: magic number 0x${hex} is not a pcap file`,
      0,
      { path },
    );
  }
  if (bytes.length < 24) {
    throw new PcapFormatError(
      'PCAP_TRUNCATED',
      `read ${where}: file is ${bytes.length} bytes, shorter than the 24-byte file header`,
      bytes.length,
      { path },
    );
  }
  const versionMajor = view.getUint16(4, le);
  const versionMinor = view.getUint16(6, le);
  if (versionMajor !== 2) {
    throw new PcapFormatError(
      'PCAP_BAD_VERSION',
      `read ${where}: version ${versionMajor}.${versionMinor} is not supported (expected 2.x)`,
      4,
      { path },
    );
  }
  const snaplen = view.getUint32(16, le);
  const linkType = view.getUint32(20, le) & 0x03ffffff;
  const packets: PcapPacket[] = [];
  let o = 24;
  while (o < bytes.length) {
    const index = packets.length;
    if (bytes.length - o < 16) {
      throw new PcapFormatError(
        'PCAP_TRUNCATED',
        `read ${where}: record ${index} header at byte ${o} is cut short (${bytes.length - o} of 16 bytes)`,
        o,
        { path },
      );
    }
    const tsSec = view.getUint32(o, le);
    const frac = view.getUint32(o + 4, le);
    const caplen = view.getUint32(o + 8, le);
    const wireLength = view.getUint32(o + 12, le);
    if (caplen > Math.max(snaplen, MAX_RECORD_CAPLEN)) {
      throw new PcapFormatError(
        'PCAP_BAD_RECORD',
        `read ${where}: record ${index} at byte ${o} has captured length ${caplen}, more than the maximum ${Math.max(snaplen, MAX_RECORD_CAPLEN)}`,
        o,
        { path },
      );
    }
    if (bytes.length - (o + 16) < caplen) {
      throw new PcapFormatError(
        'PCAP_TRUNCATED',
        `read ${where}: record ${index} at byte ${o} is cut short (${bytes.length - o - 16} of ${caplen} bytes)`,
        o,
        { path },
      );
    }
    const data = bytes.slice(o + 16, o + 16 + caplen);
    packets.push({
      data,
      wireLength,
      tsSec,
      tsUsec: nano ? Math.floor(frac / 1000) : frac,
      tsNsec: nano ? frac : frac * 1000,
    });
    o += 16 + caplen;
  }
  return {
    linkType,
    snaplen,
    byteOrder: le ? 'le' : 'be',
    precision: nano ? 'nano' : 'micro',
    versionMajor,
    versionMinor,
    packets,
  };
}

/** A file-system failure in words, without Node's repetition of the call and path ("ENOENT: …, open '…'"). */
function describeFsError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory, not a file';
  return error instanceof Error ? error.message : String(error);
}

/**
 * Reads and parses a classic pcap file.
 *
 * Throws `PcapFormatError` (see `parsePcap`), or with `PCAP_READ` and the file-system error as `cause` when the
 * file cannot be read.
 */
export async function readPcap(path: string): Promise<PcapFile> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error: unknown) {
    throw new PcapFormatError(
      'PCAP_READ',
      `read pcap file "${path}": ${describeFsError(error)}`,
      0,
      {
        path,
        cause: error,
      },
    );
  }
  return parsePcap(bytes, path);
}
