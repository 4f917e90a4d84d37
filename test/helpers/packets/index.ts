// Test packet corpus: generator, pcap writer, and the CLI's pcap reader, in one import.
export { Prng } from './prng.js';
export {
  generatePackets,
  countTags,
  countCategories,
  DEFAULT_PACKET_SEED,
  DEFAULT_PACKET_COUNT,
  REQUIRED_TAGS,
  type GeneratedPacket,
} from './generate.js';
export {
  writePcap,
  writePcapFile,
  type PcapRecordInput,
  type PcapWriteOptions,
} from './pcap-writer.js';
export {
  parsePcap,
  readPcap,
  PcapFormatError,
  type PcapFile,
  type PcapPacket,
} from '../../../bpf/pcap.js';
