// Kernel enum values for map, program and link types, with the names sluice uses for them.

/** Map types, named as in the kernel's BPF_MAP_TYPE_* without the prefix. */
export const MAP_TYPES = {
  hash: 1,
  array: 2,
  prog_array: 3,
  perf_event_array: 4,
  percpu_hash: 5,
  percpu_array: 6,
  stack_trace: 7,
  cgroup_array: 8,
  lru_hash: 9,
  lru_percpu_hash: 10,
  lpm_trie: 11,
  array_of_maps: 12,
  hash_of_maps: 13,
  devmap: 14,
  sockmap: 15,
  cpumap: 16,
  xskmap: 17,
  sockhash: 18,
  cgroup_storage: 19,
  reuseport_sockarray: 20,
  percpu_cgroup_storage: 21,
  queue: 22,
  stack: 23,
  sk_storage: 24,
  devmap_hash: 25,
  struct_ops: 26,
  ringbuf: 27,
  inode_storage: 28,
  task_storage: 29,
  bloom_filter: 30,
  user_ringbuf: 31,
  cgrp_storage: 32,
  arena: 33,
} as const;

export type MapType = keyof typeof MAP_TYPES;

/** Program types, named as in the kernel's BPF_PROG_TYPE_* without the prefix. */
export const PROGRAM_TYPES = {
  socket_filter: 1,
  kprobe: 2,
  sched_cls: 3,
  sched_act: 4,
  tracepoint: 5,
  xdp: 6,
  perf_event: 7,
  cgroup_skb: 8,
  cgroup_sock: 9,
  lwt_in: 10,
  lwt_out: 11,
  lwt_xmit: 12,
  sock_ops: 13,
  sk_skb: 14,
  cgroup_device: 15,
  sk_msg: 16,
  raw_tracepoint: 17,
  cgroup_sock_addr: 18,
  lwt_seg6local: 19,
  lirc_mode2: 20,
  sk_reuseport: 21,
  flow_dissector: 22,
  cgroup_sysctl: 23,
  raw_tracepoint_writable: 24,
  cgroup_sockopt: 25,
  tracing: 26,
  struct_ops: 27,
  ext: 28,
  lsm: 29,
  sk_lookup: 30,
  syscall: 31,
  netfilter: 32,
} as const;

export type ProgramType = keyof typeof PROGRAM_TYPES;

/** Link types (BPF_LINK_TYPE_*). */
export const LINK_TYPES = {
  unspec: 0,
  raw_tracepoint: 1,
  tracing: 2,
  cgroup: 3,
  iter: 4,
  netns: 5,
  xdp: 6,
  perf_event: 7,
  kprobe_multi: 8,
  struct_ops: 9,
  netfilter: 10,
  tcx: 11,
  uprobe_multi: 12,
  netkit: 13,
} as const;

export type LinkType = keyof typeof LINK_TYPES;

function invert<T extends Record<string, number>>(table: T): Map<number, keyof T> {
  return new Map(Object.entries(table).map(([name, value]) => [value, name as keyof T]));
}

const mapTypeNames = invert(MAP_TYPES);
const programTypeNames = invert(PROGRAM_TYPES);
const linkTypeNames = invert(LINK_TYPES);

/** 'hash' for 1; an unknown number gives 'type_<n>'. */
export function mapTypeName(type: number): MapType | `type_${number}` {
  return mapTypeNames.get(type) ?? `type_${type}`;
}

/** 'xdp' for 6; an unknown number gives 'type_<n>'. */
export function programTypeName(type: number): ProgramType | `type_${number}` {
  return programTypeNames.get(type) ?? `type_${type}`;
}

/** 'tcx' for 11; an unknown number gives 'type_<n>'. */
export function linkTypeName(type: number): LinkType | `type_${number}` {
  return linkTypeNames.get(type) ?? `type_${type}`;
}

/** Map creation flags (BPF_F_*). */
export const MAP_FLAGS = {
  NO_PREALLOC: 1 << 0,
  NO_COMMON_LRU: 1 << 1,
  NUMA_NODE: 1 << 2,
  RDONLY: 1 << 3,
  WRONLY: 1 << 4,
  RDONLY_PROG: 1 << 7,
  WRONLY_PROG: 1 << 8,
  MMAPABLE: 1 << 10,
  INNER_MAP: 1 << 12,
} as const;
