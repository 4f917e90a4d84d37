// One pipeline object attached to one device and hook: its pinned maps, programs and link, and the
// two-generation writer that changes its rule set without a packet ever seeing half of one.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import {
  attachTc,
  attachXdp,
  isPinned,
  openObject,
  openPinned,
  possibleCpus,
  unpin,
  withNetns,
  type BpfLink,
  type BpfMap,
  type BpfObject,
  type BpfProgram,
  type LinkInfo,
} from '../../bpf/index.js';
import { SyscallError } from '../../bpf/errors.js';
import { bpfObjectPath } from '../../bpf/progs.js';
import {
  SIZE,
  SL_ACT,
  SL_MAX_CLASSES,
  SL_MAX_LIMITERS,
  SL_MAX_REDIRECTS,
  SL_MAX_RULES,
  SL_PROG_BANK0,
  SL_PROG_BANK1,
  SL_PROG_LB,
  SL_PROG_RESUME,
  SL_LIMIT_BITS,
  SL_LIMIT_PER_SOURCE,
  SL_RULE_FILTER,
  decodeCtl,
  encodeCtl,
  encodeGenCfg,
  encodeLimiter,
  encodePfx4Covers,
  encodePfxKey,
  encodeRule,
  encodeSetclsKey,
  encodeSetcls1,
  index,
  u32,
  type Gen,
} from './abi.js';
import type { ClassifierTables } from './classify.js';
import { DataplaneError } from './errors.js';
import { loadFilterBank } from './filter-bank.js';
import { NAME_BYTES, decodeName, encodeName, openNameTable } from './name-table.js';
import type { Rule } from './model.js';
import { SET4_PINS } from './set4-blocks.js';
import { SET6_PINS } from './set6-blocks.js';

/** Where a pipeline runs. */
export type Hook = 'xdp' | 'tc-ingress' | 'tc-egress';
export type XdpAttachMode = 'native' | 'generic';

/** What an attachment is: the key of its pin directory. */
export interface AttachmentKey {
  device: string;
  hook: Hook;
}

export interface AttachmentOptions extends AttachmentKey {
  mode?: XdpAttachMode;
  netns?: string;
}

/** The program pair of a hook and what the bank must return when it cannot resume. */
const PROGRAMS = {
  xdp: {
    main: 'pipeline_xdp',
    resume: 'resume_xdp',
    other: ['pipeline_tc', 'resume_tc'],
    fallback: 2,
  },
  tc: {
    main: 'pipeline_tc',
    resume: 'resume_tc',
    other: ['pipeline_xdp', 'resume_xdp'],
    fallback: 0,
  },
} as const;

/** Entries a write sends in one syscall on the calling thread (#batch); more go to a worker. */
const SYNC_BATCH = 4096;
/** A per-CPU rule counter as a batch writes it: 8-byte aligned, one per possible CPU. */
const PERCPU_COUNTER_BYTES = Math.ceil(SIZE.ruleCounter / 8) * 8 * possibleCpus();

/** Maps of pipeline.bpf.c that live beside the object (pinned per attachment) or per instance. */
const SHARED = new Set<string>([...SET4_PINS, ...SET6_PINS, 'sl_set6']);
/**
 * The kernel adds BPF_F_RDONLY_PROG to every devmap it creates, and libbpf 1.1 then refuses to reuse
 * a pinned one ("parameter mismatch"); the definition cannot carry the flag either (the kernel
 * rejects it at creation). So sl_tx is not reused: each load gets a new one, filled from the pinned
 * one before the program that reads it is attached, then pinned in its place.
 */
const NOT_REUSED = new Set(['sl_tx']);

/** Per-generation tables as last written, so the next write of that generation sends only differences. */
interface Shadow {
  /** The rule structs by position. */
  rules: Buffer;
  /** The struct sl_vec images by class. */
  vectors: Buffer;
  pfx: Map<string, number>;
  /** The sl_pfx4_cover values, SRC and DST. */
  covers: [Buffer, Buffer];
  setcls: Map<string, number>;
  arrays: Record<ArrayName, Uint32Array>;
}

type ArrayName = 'proto' | 'sport' | 'dport' | 'icmp4' | 'icmp6' | 'vlan' | 'flags' | 'setcls1';

/**
 * A pipeline attached to one device and hook. Created by Attachment.create or adopted from its pin
 * directory by Attachment.adopt; changed only through writeRuleSet; close() keeps it running.
 */
export class Attachment {
  #gen: Gen;
  #shadow: [Shadow | null, Shadow | null] = [null, null];
  /** Generations never written since their maps were created: all zeros, no shadow needed. */
  #zeroed: [boolean, boolean] = [false, false];
  /** Rule identity → counter slot; limiter identity → limiter slot; ifindex → devmap slot. */
  readonly #statSlots = new Map<string, number>();
  readonly #limitSlots = new Map<string, number>();
  readonly #txSlots = new Map<number, number>();
  readonly #banks: [BpfProgram | null, BpfProgram | null] = [null, null];
  /** True where this process emptied a generation's bank slot (after adoption: not known). */
  readonly #bankSlotEmpty: [boolean, boolean] = [false, false];
  /** The load balancer's program in SL_PROG_LB as this process last wrote it (undefined: not yet). */
  #balancer: BpfProgram | null | undefined;
  #rules: Rule[] = [];
  /** The rule structs of the generation written last, by position, and its redirect devices. */
  #lastImages: Buffer | undefined;
  #lastDevices: ReadonlyMap<string, number> = new Map();
  /**
   * The stamp last given to a generation (sl_stamp). The pipeline memoizes each walk's outcome under
   * its generation's stamp, so every write of a generation takes a stamp never used before.
   */
  #stamp: number;
  /** Where each write encodes the sl_pfx4_cover values before comparing them with the shadow's. */
  readonly #coverScratch: [Buffer, Buffer] = [
    Buffer.alloc(SIZE.pfx4Cover),
    Buffer.alloc(SIZE.pfx4Cover),
  ];

  private constructor(
    readonly key: AttachmentKey,
    readonly dir: string,
    readonly maps: Record<string, BpfMap>,
    readonly ids: BpfMap,
    readonly limitIds: BpfMap,
    private main: BpfProgram,
    private resume: BpfProgram,
    private link: BpfLink | null,
    readonly netns: string | undefined,
    readonly expectedAttachType: number,
  ) {
    this.#gen = decodeCtl(maps.sl_ctl.lookup(u32(0)) ?? Buffer.alloc(8));
    const stampOf = (gen: Gen): number => maps.sl_stamp.lookup(u32(gen))?.readUInt32LE(0) ?? 0;
    this.#stamp = Math.max(stampOf(0), stampOf(1));
  }

  get context(): 'xdp' | 'tc' {
    return this.key.hook === 'xdp' ? 'xdp' : 'tc';
  }

  /** The generation packets use now. */
  get generation(): Gen {
    return this.#gen;
  }

  /** The rules of the current generation, in position order. */
  get rules(): readonly Rule[] {
    return this.#rules;
  }

  /**
   * After adoption, takes `rules` (in position order) as those of the running generation without
   * writing anything, when each already owns its counter slots in the pins; false otherwise.
   * For a generation the pins say was written from exactly these rules (see Dataplane).
   */
  adoptRules(rules: readonly Rule[]): boolean {
    for (const rule of rules) {
      if (!this.#statSlots.has(rule.id)) return false;
      if (rule.action === 'ratelimit' && !this.#limitSlots.has(rule.id)) return false;
    }
    this.#rules = [...rules];
    return true;
  }

  /** The program packets enter (for test runs). */
  get program(): BpfProgram {
    return this.main;
  }

  /** Rule identity → counter slot. */
  get statSlots(): ReadonlyMap<string, number> {
    return this.#statSlots;
  }

  get limitSlots(): ReadonlyMap<string, number> {
    return this.#limitSlots;
  }

  /**
   * Loads a pipeline object for `key` with its maps pinned under `dir` (reusing maps already pinned
   * there, and the instance's shared set maps under `instanceDir`), and the programs of its hook.
   * With 'adopt', programs this very build pinned there are used as they are (a restart then runs
   * no verifier); otherwise, or when there are none, they are loaded anew. Does not attach: call
   * attach() after the first writeRuleSet(), so the device never runs an empty rule set.
   */
  static load(
    options: AttachmentOptions,
    dir: string,
    instanceDir: string,
    programs: 'adopt' | 'reload' = 'adopt',
  ): Attachment {
    // Nothing pinned yet: every map is new and empty, so there are no slots to read back (which
    // costs two syscalls per name-table entry, some 10,000).
    const fresh = !existsSync(dir) || readdirSync(dir).length === 0;
    mkdirSync(dir, { recursive: true });
    const context = options.hook === 'xdp' ? 'xdp' : 'tc';
    const loaded =
      (!fresh && programs === 'adopt' && adoptPinned(context, dir, instanceDir)) ||
      loadAndPin(context, dir, instanceDir, options.netns);
    {
      const { maps, main, resume, expectedAttachType } = loaded;
      const ids = openNameTable(join(dir, 'sl_rule_ids'), SL_MAX_RULES, 'sl_rule_ids');
      const limitIds = openNameTable(join(dir, 'sl_limit_ids'), SL_MAX_LIMITERS, 'sl_limit_ids');
      let link: BpfLink | null = null;
      if (isPinned(join(dir, 'link'))) {
        const pinned = openPinned(join(dir, 'link'));
        if (pinned.kind === 'link') link = pinned.link;
      }
      const att = new Attachment(
        options,
        dir,
        maps,
        ids,
        limitIds,
        main,
        resume,
        link,
        options.netns,
        expectedAttachType,
      );
      if (!fresh) att.#readSlots();
      // New maps hold zeros: what the first write of each generation is diffed against.
      else att.#zeroed = [true, true];
      return att;
    }
  }

  /**
   * Attaches the program to the device, or — when a pinned link exists (a restarted process) —
   * replaces the program behind it atomically (bpf_link_update: no gap, counters kept).
   */
  attach(mode: XdpAttachMode = 'native'): void {
    if (this.link) {
      try {
        this.link.update(this.main);
        return;
      } catch (error: unknown) {
        // A link whose device went away is defunct (ENOLINK): drop it and attach anew below,
        // which fails with DeviceNotFoundError while the device is still missing.
        if (!(error instanceof SyscallError) || error.code !== 'ENOLINK') throw error;
        this.link.close();
        this.link = null;
        unpin(join(this.dir, 'link'));
      }
    }
    const { device, hook } = this.key;
    const link =
      hook === 'xdp'
        ? attachXdp(this.main, device, { netns: this.netns, mode })
        : attachTc(this.main, device, {
            netns: this.netns,
            direction: hook === 'tc-ingress' ? 'ingress' : 'egress',
            mode: 'tcx',
          });
    link.pin(join(this.dir, 'link'));
    this.link = link;
  }

  /**
   * Makes `program` (lb_xdp, lb_nat_tc) run on what this pipeline's rules pass, or nothing when
   * null: one prog-array write, atomic for the packets in flight; none when it is already so.
   */
  setLoadBalancer(program: BpfProgram | null): void {
    if (this.#balancer === program) return;
    if (program) this.maps.sl_progs.setFd(u32(SL_PROG_LB), program);
    else this.maps.sl_progs.delete(u32(SL_PROG_LB));
    this.#balancer = program;
  }

  get attached(): boolean {
    return this.link !== null;
  }

  /**
   * The kernel's view of the link: the ifindex it is attached to (0 once its device is gone or
   * someone detached it behind our back) and the program behind it. Null when there is no link.
   */
  linkInfo(): LinkInfo | null {
    return this.link?.info() ?? null;
  }

  /**
   * Writes `tables` as the inactive generation, then flips sl_ctl to it: one u32 write, so a packet
   * sees the old rule set or the new one, never a mix. Counter slots of rules that stay keep their
   * counts; new rules start at zero.
   */
  async writeRuleSet(
    tables: ClassifierTables,
    devices: ReadonlyMap<string, number>,
  ): Promise<void> {
    const next: Gen = this.#gen === 0 ? 1 : 0;
    const rules = tables.positions.map((p) => p.rule);
    // Rules appended behind the very rules written last (a rule add): only the new ones need
    // slots, limiter settings and encoding, and no slot is freed.
    const before = this.#rules;
    const appended =
      this.#lastImages?.length === before.length * SIZE.rule &&
      rules.length >= before.length &&
      before.every((r, i) => r === rules[i]) &&
      (!before.some((r) => r.redirect) || sameEntries(devices, this.#lastDevices))
        ? before.length
        : 0;
    const fresh = appended > 0 ? rules.slice(appended) : rules;
    const keepStats = new Set(fresh.map((r) => r.id));
    const newStats = this.#assign(this.#statSlots, keepStats, SL_MAX_RULES, 'rules');
    const limited = fresh.filter((r) => r.action === 'ratelimit');
    const newLimits = this.#assign(
      this.#limitSlots,
      new Set(limited.map((r) => r.id)),
      SL_MAX_LIMITERS,
      'rate limits',
    );
    // New rules' counters from zero and their names, a batch each (a rule add brings dozens).
    const statSlots = newStats.map((id) => this.#statSlots.get(id)!);
    await this.#batch(
      this.maps.sl_rule_stats,
      statSlots,
      Buffer.alloc(statSlots.length * PERCPU_COUNTER_BYTES),
      PERCPU_COUNTER_BYTES,
    );
    await this.#batch(
      this.ids,
      statSlots,
      Buffer.concat(newStats.map((id) => encodeName(id))),
      NAME_BYTES,
    );
    for (const id of newLimits) {
      const slot = this.#limitSlots.get(id)!;
      this.maps.sl_limit_stats.update(u32(slot), Buffer.alloc(SIZE.limiterCounter));
      this.maps.sl_buckets.update(u32(slot), Buffer.alloc(SIZE.bucket));
      this.limitIds.update(u32(slot), encodeName(id));
    }
    for (const rule of limited) {
      const limit = rule.limit!;
      const flags =
        (limit.unit === 'bits' ? SL_LIMIT_BITS : 0) | (limit.perSource ? SL_LIMIT_PER_SOURCE : 0);
      this.maps.sl_limiters.update(
        u32(this.#limitSlots.get(rule.id)!),
        encodeLimiter({ rate: BigInt(limit.rate), burst: BigInt(limit.burst), flags }),
      );
    }

    // Rules: one struct per position (the appended ones behind a copy of the last images).
    const ruleImages = Buffer.alloc(rules.length * SIZE.rule);
    if (appended > 0) this.#lastImages!.copy(ruleImages);
    tables.positions.forEach(({ rule, filterBit }, position) => {
      if (position < appended) return;
      let ifindex = 0;
      let redirect = 0;
      if (rule.action === 'redirect') {
        ifindex = devices.get(rule.redirect!.to) ?? 0;
        if (ifindex === 0) {
          throw new DataplaneError(
            `rule "${rule.id}": redirect target device "${rule.redirect!.to}" does not exist`,
            'DEVICE_NOT_FOUND',
          );
        }
        redirect = this.#txSlot(ifindex);
      }
      encodeRule(
        {
          action: SL_ACT[rule.action],
          flags: filterBit === undefined ? 0 : SL_RULE_FILTER,
          stats: this.#statSlots.get(rule.id)!,
          limiter: rule.action === 'ratelimit' ? this.#limitSlots.get(rule.id)! : 0,
          filter: filterBit ?? 0,
          redirect,
          ifindex,
          nexthop: rule.redirect?.via,
        },
        ruleImages,
        position * SIZE.rule,
      );
    });
    // Only the positions whose struct differs from what this generation last held.
    const shadow = this.#shadow[next];
    const zeroed = this.#zeroed[next];
    const changed = changedRecords(
      ruleImages,
      shadow?.rules ?? (zeroed ? Buffer.alloc(ruleImages.length) : undefined),
      SIZE.rule,
    );
    // Until this generation is written whole, what it holds is not known.
    this.#shadow[next] = null;
    this.#zeroed[next] = false;
    if (changed.length > 0) {
      await this.#batch(
        this.maps.sl_rules,
        changed.map((p) => index.rule(next, p)),
        pickRecords(ruleImages, changed, SIZE.rule),
        SIZE.rule,
      );
    }

    await this.#writeTables(next, tables, ruleImages, shadow, zeroed);

    // The bank of the new generation, where rules have expressions.
    const bankSlot = next === 0 ? SL_PROG_BANK0 : SL_PROG_BANK1;
    this.#banks[next]?.close();
    this.#banks[next] = null;
    if (tables.filters.length > 0) {
      const bank = loadFilterBank(
        {
          context: this.context,
          gen: next,
          expressions: tables.filters,
          fallback: PROGRAMS[this.context].fallback,
        },
        { scratch: this.maps.sl_scratch, progs: this.maps.sl_progs },
        this.expectedAttachType,
      );
      this.maps.sl_progs.setFd(u32(bankSlot), bank);
      this.#banks[next] = bank;
      this.#bankSlotEmpty[next] = false;
    } else if (!this.#bankSlotEmpty[next]) {
      this.maps.sl_progs.delete(u32(bankSlot));
      this.#bankSlotEmpty[next] = true;
    }

    // A new stamp before the flip: outcomes memoized under this generation's last stamp are
    // never read again.
    this.#stamp = (this.#stamp + 1) >>> 0;
    this.maps.sl_stamp.update(u32(next), u32(this.#stamp));
    this.maps.sl_gen.update(
      u32(next),
      encodeGenCfg({
        defaultAction: SL_ACT[tables.defaultAction],
        malformedAction: SL_ACT[tables.malformed],
        dims: tables.dims,
        nrules: tables.nrules,
        absent: tables.absent,
        filterCls: tables.filterCls,
        hasFilters: tables.hasFilters,
      }),
    );
    this.maps.sl_ctl.update(u32(0), encodeCtl(next));
    this.#gen = next;
    this.#rules = rules;
    this.#lastImages = ruleImages;
    this.#lastDevices = devices;
    if (appended > 0) return;

    // Slots of rules that left are free again; a new rule zeroes its slot before it is used.
    for (const id of [...this.#statSlots.keys()]) {
      if (!keepStats.has(id)) {
        this.ids.update(u32(this.#statSlots.get(id)!), encodeName(''));
        this.#statSlots.delete(id);
      }
    }
    const keepLimits = new Set(limited.map((r) => r.id));
    for (const id of [...this.#limitSlots.keys()]) {
      if (!keepLimits.has(id)) {
        this.limitIds.update(u32(this.#limitSlots.get(id)!), encodeName(''));
        this.#limitSlots.delete(id);
      }
    }
  }

  /** Detaches, unpins everything of this attachment and closes its handles. */
  destroy(): void {
    if (this.link) {
      try {
        this.link.detach();
      } catch {
        // already gone with its device
      }
      this.link = null;
    }
    this.close();
    for (const name of existsSync(this.dir) ? readdirSync(this.dir) : []) {
      try {
        unpin(join(this.dir, name));
      } catch {
        // gone already
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Closes this process's handles; the pinned link keeps the program running. */
  close(): void {
    for (const bank of this.#banks) bank?.close();
    for (const map of Object.values(this.maps)) map.close();
    this.ids.close();
    this.limitIds.close();
    this.main.close();
    this.resume.close();
    this.link?.close();
  }

  #txSlot(ifindex: number): number {
    let slot = this.#txSlots.get(ifindex);
    if (slot === undefined) {
      slot = this.#txSlots.size;
      if (slot >= SL_MAX_REDIRECTS) {
        throw new DataplaneError(
          `redirect: at most ${SL_MAX_REDIRECTS} target devices per attachment`,
          'LIMIT_EXCEEDED',
        );
      }
      // The kernel resolves a devmap's ifindex in the writer's network namespace: write from the
      // device's, or the slot names whatever device has that ifindex here.
      const write = (): void => this.maps.sl_tx.update(u32(slot!), u32(ifindex));
      if (this.netns === undefined) write();
      else withNetns(this.netns, write);
      this.#txSlots.set(ifindex, slot);
    }
    return slot;
  }

  /** Gives every identity in `wanted` a slot, keeping existing ones; returns the new identities. */
  #assign(slots: Map<string, number>, wanted: Set<string>, max: number, what: string): string[] {
    // Slots of identities not wanted stay taken until after the flip: packets may still use them.
    const used = new Set(slots.values());
    const added: string[] = [];
    let next = 0;
    for (const id of wanted) {
      if (slots.has(id)) continue;
      while (used.has(next)) next++;
      if (next >= max) {
        throw new DataplaneError(`at most ${max} ${what} per attachment`, 'LIMIT_EXCEEDED');
      }
      slots.set(id, next);
      used.add(next);
      added.push(id);
    }
    return added;
  }

  /** Reads the identity maps back after adoption, so counters stay with their rules. */
  #readSlots(): void {
    for (const [ids, slots] of [
      [this.ids, this.#statSlots],
      [this.limitIds, this.#limitSlots],
    ] as const) {
      for (const [key, value] of ids.entries()) {
        const id = decodeName(value as Buffer);
        if (id) slots.set(id, key.readUInt32LE(0));
      }
    }
    for (const [key, value] of this.maps.sl_tx.entries()) {
      const ifindex = (value as Buffer).readUInt32LE(0);
      if (ifindex) this.#txSlots.set(ifindex, key.readUInt32LE(0));
    }
  }

  async #writeTables(
    gen: Gen,
    t: ClassifierTables,
    rules: Buffer,
    old: Shadow | null,
    zeroed: boolean,
  ): Promise<void> {
    // Vectors: only classes whose image changed.
    const images = Buffer.from(
      t.vectorImages.buffer,
      t.vectorImages.byteOffset,
      t.vectorImages.byteLength,
    );
    const classes = images.length / SIZE.vec;
    if (classes > SL_MAX_CLASSES) {
      throw new DataplaneError(
        `the rule set needs ${classes} classes, more than ${SL_MAX_CLASSES}`,
        'LIMIT_EXCEEDED',
      );
    }
    const oldVectors = old?.vectors ?? (zeroed ? Buffer.alloc(images.length) : undefined);
    const vecChanged = changedRecords(images, oldVectors, SIZE.vec);
    await this.#batch(
      this.maps.sl_vecs,
      vecChanged.map((cls) => index.vec(gen, cls)),
      pickRecords(images, vecChanged, SIZE.vec),
      SIZE.vec,
    );

    // Prefix tries: delete what the generation held and the new one lacks, write the rest.
    const pfx = new Map<string, number>();
    for (const e of t.pfx4) pfx.set(encodePfxKey(gen, e.dim, e.addr, e.len).toString('hex'), e.cls);
    for (const e of t.pfx6) pfx.set(encodePfxKey(gen, e.dim, e.addr, e.len).toString('hex'), e.cls);
    const oldPfx = old?.pfx ?? (zeroed ? new Map<string, number>() : this.#readTrieKeys(gen));
    for (const [key] of oldPfx) {
      if (!pfx.has(key)) this.#trieOf(key).delete(Buffer.from(key, 'hex'));
    }
    for (const [key, cls] of pfx) {
      if (oldPfx.get(key) !== cls) this.#trieOf(key).update(Buffer.from(key, 'hex'), u32(cls));
    }
    // What the IPv4 trie holds, by /16, so that most addresses skip it (8 KiB per dimension);
    // written where it differs from what this generation held.
    const covers = encodePfx4Covers(t.pfx4, this.#coverScratch);
    const heldCovers = old?.covers ?? [Buffer.alloc(SIZE.pfx4Cover), Buffer.alloc(SIZE.pfx4Cover)];
    for (const dim of [0, 1] as const) {
      if (old && heldCovers[dim].equals(covers[dim])) continue;
      this.maps.sl_pfx4_cover.update(u32(gen * 2 + dim), covers[dim]);
      covers[dim].copy(heldCovers[dim]);
    }

    const setcls = new Map<string, number>();
    for (const e of t.setcls)
      setcls.set(encodeSetclsKey(gen, e.dim, e.mask).toString('hex'), e.cls);
    const oldSetcls =
      old?.setcls ?? (zeroed ? new Map<string, number>() : this.#readSetclsKeys(gen));
    for (const [key] of oldSetcls) {
      if (!setcls.has(key)) this.maps.sl_setcls.delete(Buffer.from(key, 'hex'));
    }
    for (const [key, cls] of setcls) {
      if (oldSetcls.get(key) !== cls) this.maps.sl_setcls.update(Buffer.from(key, 'hex'), u32(cls));
    }

    const arrays: Record<ArrayName, Uint32Array> = {
      proto: t.proto,
      sport: t.ports[0],
      dport: t.ports[1],
      icmp4: t.icmp[0],
      icmp6: t.icmp[1],
      vlan: t.vlan,
      flags: t.flags,
      // the one-set masks of sl_setcls again, as an array (written whole when no shadow says
      // what the generation holds: after a restart, or when a new build added the map)
      setcls1: encodeSetcls1(t),
    };
    const where: Record<ArrayName, [BpfMap, (i: number) => number]> = {
      proto: [this.maps.sl_proto, (i) => index.proto(gen, i)],
      sport: [this.maps.sl_ports, (i) => index.port(gen, false, i)],
      dport: [this.maps.sl_ports, (i) => index.port(gen, true, i)],
      icmp4: [this.maps.sl_icmp, (i) => index.icmp(gen, false, i)],
      icmp6: [this.maps.sl_icmp, (i) => index.icmp(gen, true, i)],
      vlan: [this.maps.sl_vlan, (i) => index.vlan(gen, i)],
      flags: [this.maps.sl_flags, (i) => index.flags(gen, i)],
      setcls1: [this.maps.sl_setcls1, (i) => index.setcls1(gen, i)],
    };
    const shadowArrays = {} as Record<ArrayName, Uint32Array>;
    for (const name of Object.keys(arrays) as ArrayName[]) {
      const now = arrays[name];
      const before = old?.arrays[name] ?? (zeroed ? new Uint32Array(now.length) : undefined);
      const idx = changedIndexes(now, before);
      shadowArrays[name] = before?.length === now.length ? before : now.slice();
      if (idx.length === 0) continue;
      const values = Buffer.alloc(idx.length * 4);
      idx.forEach((i, n) => values.writeUInt32LE(now[i], n * 4));
      const [map, at] = where[name];
      await this.#batch(map, idx.map(at), values, 4);
      for (const i of idx) shadowArrays[name][i] = now[i];
    }

    // Copies, patched where they differ: an extension changes tables in place after they are
    // written (classify-extend), so the shadow cannot be a view of them.
    this.#shadow[gen] = {
      rules,
      vectors: patchRecords(oldVectors, images, vecChanged, SIZE.vec),
      pfx,
      covers: heldCovers,
      setcls,
      arrays: shadowArrays,
    };
  }

  #trieOf(hexKey: string): BpfMap {
    return hexKey.length === SIZE.pfx4Key * 2 ? this.maps.sl_pfx4 : this.maps.sl_pfx6;
  }

  /** After adoption nothing is known of the inactive generation: read its keys from the kernel. */
  #readTrieKeys(gen: Gen): Map<string, number> {
    const out = new Map<string, number>();
    for (const map of [this.maps.sl_pfx4, this.maps.sl_pfx6]) {
      // Class -1 matches no new entry, so every key of this generation is rewritten or deleted.
      for (const key of map.keys()) if (key[4] === gen) out.set(key.toString('hex'), -1);
    }
    return out;
  }

  #readSetclsKeys(gen: Gen): Map<string, number> {
    const out = new Map<string, number>();
    for (const key of this.maps.sl_setcls.keys())
      if (key[0] === gen) out.set(key.toString('hex'), -1);
    return out;
  }

  /** Array-map writes by index, batched. */
  async #batch(map: BpfMap, indexes: number[], values: Buffer, size: number): Promise<void> {
    if (indexes.length === 0) return;
    // Up to a few thousand entries, one syscall on this thread beats the round trip to a worker
    // thread (a rule add writes dozens); more would hold the thread that answers requests.
    if (indexes.length <= SYNC_BATCH) {
      map.updateBatchSync(Buffer.from(Uint32Array.from(indexes).buffer), values, {
        count: indexes.length,
      });
      return;
    }
    const CHUNK = 65536;
    for (let at = 0; at < indexes.length; at += CHUNK) {
      const n = Math.min(CHUNK, indexes.length - at);
      const keys = Buffer.alloc(n * 4);
      for (let i = 0; i < n; i++) keys.writeUInt32LE(indexes[at + i], i * 4);
      await map.updateBatch(keys, values.subarray(at * size, (at + n) * size), { count: n });
    }
  }
}

/**
 * Copies the entries of the map pinned at `path` (if any) into `map`, then pins `map` there. The
 * copy runs in `netns`: a devmap resolves the ifindex it is given in the writer's namespace.
 */
function takeOver(map: BpfMap, path: string, netns?: string): void {
  if (isPinned(path)) {
    const pinned = openPinned(path);
    if (pinned.kind === 'map') {
      const copy = (): void => {
        for (const [key, value] of pinned.map.entries()) map.update(key, value as Buffer);
      };
      if (netns === undefined) copy();
      else withNetns(netns, copy);
      pinned.map.close();
    }
    unpin(path);
  }
  map.pin(path);
}

/** Loads pipeline.o with every map pinned: shared sets under the instance, the rest per attachment. */
/** An attachment's programs and maps, loaded or adopted from the pins. */
interface Loaded {
  maps: Record<string, BpfMap>;
  main: BpfProgram;
  resume: BpfProgram;
  expectedAttachType: number;
}

/** Pins of the programs, and of the build that loaded them, beside the attachment's maps. */
const MAIN_PIN = 'prog_main';
const RESUME_PIN = 'prog_resume';
const BUILD_PIN = 'sl_build';

let build: string | undefined;

/** This build's pipeline object, hashed once: what runs is reused only when it is this build. */
export function pipelineBuild(): string {
  build ??= createHash('sha256')
    .update(readFileSync(bpfObjectPath('pipeline')))
    .digest('hex');
  return build;
}

/** What sl_build holds: the context and this build (within a name table's value). */
function buildStamp(context: 'xdp' | 'tc'): string {
  return `${context}:${pipelineBuild().slice(0, 40)}`;
}

/**
 * Loads the pipeline's programs (the verifier: a few hundred ms), pins them with the build that
 * loaded them, and fills the devmap, which is never reused, from the one pinned before.
 */
function loadAndPin(
  context: 'xdp' | 'tc',
  dir: string,
  instanceDir: string,
  netns?: string,
): Loaded {
  const programs = PROGRAMS[context];
  const object: BpfObject = loadObjectFor(context, dir, instanceDir);
  try {
    const maps: Record<string, BpfMap> = {};
    for (const m of object.maps()) if (!m.internal) maps[m.name] = object.map(m.name);
    const main = object.program(programs.main);
    const resume = object.program(programs.resume);
    const expectedAttachType =
      object.programs().find((p) => p.name === programs.main)?.expectedAttachType ?? 0;
    maps.sl_progs.setFd(u32(SL_PROG_RESUME), resume);
    for (const name of NOT_REUSED) takeOver(maps[name], join(dir, name), netns);
    // The build first goes blank: a crash between the two pins must not pair old and new.
    const stamp = openNameTable(join(dir, BUILD_PIN), 1, BUILD_PIN);
    try {
      stamp.update(u32(0), encodeName(''));
      for (const [pin, program] of [
        [MAIN_PIN, main],
        [RESUME_PIN, resume],
      ] as const) {
        if (isPinned(join(dir, pin))) unpin(join(dir, pin));
        program.pin(join(dir, pin));
      }
      stamp.update(u32(0), encodeName(buildStamp(context)));
    } finally {
      stamp.close();
    }
    return { maps, main, resume, expectedAttachType };
  } finally {
    object.close();
  }
}

/**
 * The programs and maps a process of this very build pinned, opened as they are: a restart then
 * costs no verifier run. Null when anything is missing or another build pinned them.
 */
function adoptPinned(context: 'xdp' | 'tc', dir: string, instanceDir: string): Loaded | null {
  if (!isPinned(join(dir, BUILD_PIN)) || !isPinned(join(dir, MAIN_PIN))) return null;
  const opened: { close(): void }[] = [];
  const open = <K extends 'map' | 'program'>(path: string, kind: K) => {
    const pinned = openPinned(path);
    const handle =
      pinned.kind === 'map' ? pinned.map : pinned.kind === 'program' ? pinned.program : pinned.link;
    opened.push(handle);
    if (pinned.kind !== kind) throw new Error(`"${path}" is not a ${kind}`);
    return handle as K extends 'map' ? BpfMap : BpfProgram;
  };
  try {
    const stamp = open(join(dir, BUILD_PIN), 'map');
    if (decodeName(stamp.lookup(u32(0))) !== buildStamp(context)) throw new Error('other build');
    const programs = PROGRAMS[context];
    const object = openObject(bpfObjectPath('pipeline'), { name: 'pipeline' });
    let names: string[];
    let expectedAttachType: number;
    try {
      names = object
        .maps()
        .filter((m) => !m.internal)
        .map((m) => m.name);
      expectedAttachType =
        object.programs().find((p) => p.name === programs.main)?.expectedAttachType ?? 0;
    } finally {
      object.close();
    }
    const maps: Record<string, BpfMap> = {};
    for (const name of names) {
      const path = SHARED.has(name) ? join(instanceDir, name) : join(dir, name);
      if (!isPinned(path)) throw new Error(`"${path}" is not pinned`);
      maps[name] = open(path, 'map');
    }
    const main = open(join(dir, MAIN_PIN), 'program');
    const resume = open(join(dir, RESUME_PIN), 'program');
    stamp.close();
    return { maps, main, resume, expectedAttachType };
  } catch {
    for (const handle of opened) handle.close();
    return null;
  }
}

function loadObjectFor(context: 'xdp' | 'tc', dir: string, instanceDir: string): BpfObject {
  const programs = PROGRAMS[context];
  return loadObjectWith(bpfObjectPath('pipeline'), (object) => {
    for (const name of programs.other) object.setAutoload(name, false);
    for (const m of object.maps()) {
      if (m.internal || NOT_REUSED.has(m.name)) continue;
      object.setPinPath(m.name, SHARED.has(m.name) ? join(instanceDir, m.name) : join(dir, m.name));
    }
  });
}

function loadObjectWith(path: string, adjust: (object: BpfObject) => void): BpfObject {
  const object = openObject(path, { name: 'pipeline' });
  try {
    adjust(object);
    object.load();
    return object;
  } catch (error: unknown) {
    object.close();
    throw error;
  }
}

/**
 * The indexes of the `size`-byte records of `now` that differ from `before`'s (every one past its
 * end; all without it). A rule change leaves most records as they were: blocks of records are
 * compared by memcmp, and only a block that differs is compared record by record.
 */
function changedRecords(now: Buffer, before: Buffer | undefined, size: number): number[] {
  const count = now.length / size;
  const changed: number[] = [];
  const common = before ? Math.min(count, Math.floor(before.length / size)) : 0;
  const block = Math.max(1, Math.floor(16384 / size));
  for (let start = 0; start < common; start += block) {
    const end = Math.min(start + block, common);
    if (before!.compare(now, start * size, end * size, start * size, end * size) === 0) continue;
    for (let r = start; r < end; r++) {
      const at = r * size;
      if (before!.compare(now, at, at + size, at, at + size) !== 0) changed.push(r);
    }
  }
  for (let r = common; r < count; r++) changed.push(r);
  return changed;
}

/** True when both maps hold the same keys with the same values. */
function sameEntries<K, V>(a: ReadonlyMap<K, V>, b: ReadonlyMap<K, V>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/**
 * `before` made equal to `now` by copying the records `changed` (every record past before's end
 * among them): in place when its buffer has room, else in a new buffer with room to grow.
 */
function patchRecords(
  before: Buffer | undefined,
  now: Buffer,
  changed: readonly number[],
  size: number,
): Buffer {
  if (!before || before.byteOffset + now.length > before.buffer.byteLength) {
    const room = Buffer.alloc(Math.max(now.length, 2 * (before?.length ?? 0)));
    now.copy(room);
    return room.subarray(0, now.length);
  }
  const out = Buffer.from(before.buffer, before.byteOffset, now.length);
  for (const r of changed) now.copy(out, r * size, r * size, (r + 1) * size);
  return out;
}

/** The records `which` of `from` (`size` bytes each), one after another. */
function pickRecords(from: Buffer, which: readonly number[], size: number): Buffer {
  if (which.length * size === from.length) return from;
  const out = Buffer.allocUnsafe(which.length * size);
  which.forEach((r, i) => from.copy(out, i * size, r * size, (r + 1) * size));
  return out;
}

/**
 * The indexes where `now` differs from `before` (all of them without `before`). Most tables are
 * as they were after a rule change: one memcmp says so. A changed one (a port table of 65,536
 * entries where a rule change alters a few) is compared by memcmp 8,192 entries at a time and
 * scanned only where a block differs.
 */
function changedIndexes(now: Uint32Array, before: Uint32Array | undefined): number[] {
  if (!before || before.length !== now.length) return Array.from(now.keys());
  const a = Buffer.from(now.buffer, now.byteOffset, now.byteLength);
  const b = Buffer.from(before.buffer, before.byteOffset, before.byteLength);
  if (a.equals(b)) return [];
  // Large blocks: a rule add changes a few slots, and each compare is a call into C++.
  const BLOCK = 8192;
  const idx: number[] = [];
  for (let start = 0; start < now.length; start += BLOCK) {
    const end = Math.min(start + BLOCK, now.length);
    if (a.compare(b, start * 4, end * 4, start * 4, end * 4) === 0) continue;
    for (let i = start; i < end; i++) if (before[i] !== now[i]) idx.push(i);
  }
  return idx;
}
