// Public surface of the bpf area's kernel side: typed wrappers over the libbpf addon.
export * from './errors.js';
export * from './kinds.js';
export { BpfMap, createMap, getMapById, possibleCpus } from './map.js';
export type {
  BatchResult,
  FdHolder,
  LookupBatchResult,
  MapInfo,
  MapSpec,
  UpdateFlag,
} from './map.js';
export { BpfProgram, StatsHandle, enableStats, getProgramById, loadProgram } from './program.js';
export type {
  MapRelocation,
  ProgramInfo,
  ProgramSpec,
  RawProgramType,
  TestRunOptions,
  TestRunResult,
} from './program.js';
export { BpfObject, loadObject, openObject } from './object.js';
export type { LoadObjectOptions, ObjectMap, ObjectProgram } from './object.js';
export { BpfLink, attachTc, attachXdp, getLinkById } from './link.js';
export type {
  AttachOptions,
  AttachTcOptions,
  AttachXdpOptions,
  Device,
  LinkInfo,
  LinkKind,
  TcDirection,
  TcMode,
  XdpMode,
} from './link.js';
export {
  BPFFS_ROOT,
  ensureBpffs,
  isBpffs,
  isPinned,
  mkdirBpffs,
  openPinned,
  unpin,
} from './pin.js';
export type { Pinned } from './pin.js';
export { ifindexOf, withNetns } from './netns.js';
