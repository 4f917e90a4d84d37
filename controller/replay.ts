// Replay before deploy: runs a configuration's real pipeline over a capture in the kernel
// (BPF_PROG_TEST_RUN), in a throwaway instance that is attached to no device.
//
// What a replay builds. Each configuration (the candidate, and the running one when given) gets
// its own instance under a private bpffs directory, /sys/fs/bpf/sl-replay-<random>/{candidate,
// running}: its own shared set tries (SetStore opens them under the directory it is given, and
// pipeline.o's set maps (sl_set4_*, sl_set6) are pinned there, so nothing is shared with a live instance or with
// the other replay), and per attachment one pipeline object loaded as the real apply loads it
// (Attachment.load), with the classifier tables, rules, limiters and filter bank writeRuleSet
// writes. Nothing is attached: the pipeline's entry program (pipeline_xdp for "xdp", pipeline_tc
// for "tc-ingress" and "tc-egress", with an skb context) is test-run once per packet. The directory
// is removed when the replay ends, failures included; live pins and maps are never opened.
//
// Semantics the report depends on:
// - rules[].packets is the rule's counter in the throwaway instance (sl_rule_stats): the packets
//   the rule decided, plus, for a "count" rule, every packet it counted; a rule shadowed by an
//   earlier deciding rule counts nothing. Rules are listed in position order (priority, then the
//   order given), every rule of the attachment, zeros included.
// - verdicts has every verdict of SL_VERDICTS ("pass", "drop", "redirect", "tx"), zeros
//   included, from each packet's test-run return value.
// - changed counts the packets whose verdict differs from what the running configuration's
//   pipeline gives them, replayed the same way. An attachment the running configuration lacks
//   (or no running configuration at all) counts as "nothing attached": every packet passes, so
//   changed is then the packets the candidate does not pass. Attachments only the running
//   configuration has are not reported.
// - Devices are not needed: neither the attachment's device nor a redirect target has to exist.
//   A redirect rule's verdict is "redirect" for every IPv4/IPv6 packet with a TTL (hop limit)
//   above 1 that it decides, whatever route, neighbour or target the host has: the replay
//   pins every redirect to the loopback device (ifindex 1, a placeholder nothing is sent to) and,
//   where the rule has no `via`, a placeholder next-hop MAC, so the FIB lookup cannot turn it
//   into "drop" or "pass". What the pipeline decides before the FIB still holds: non-IP packets
//   a redirect rule decides give "drop", expiring ones "pass".
// - An attachment whose rule set (and every set it names) is the same in both configurations is
//   replayed once: its changed is 0 without a second run. (Only rate limiters could tell two
//   such runs apart, and then by the replay's own timing, not by the configuration.)
// - Rate limiters run on real time: the packets reach them at replay speed (millions per second),
//   not at the capture's timestamps, so a limiter sees the whole capture as one burst. Candidate
//   and running each have their own buckets.
// - Frames the kernel's test run refuses for being short (under 14 bytes; at TC, untagged IPv4 or
//   IPv6 cut inside the IP header) are ones the pipeline's parse calls truncated: they get the
//   attachment's `malformed` verdict (default drop) and count for no rule, as on a device.
//   Frames longer than REPLAY_MAX_FRAME (larger than a test run's page; GRO-merged captures) are
//   replayed cut to that length: their headers decide as usual, but byte counts, bit-rate
//   limiters and filters reading `len` or the cut bytes see the shorter frame.
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { BPFFS_ROOT, SyscallError, ensureBpffs } from '../bpf/index.js';
// The CLI's pcap reader: it imports nothing of sluice, so this is no cycle; it belongs below both.
import { PcapFormatError, parsePcap } from '../bpf/pcap.js';
import type { ReplayReport } from './contract.js';
import { SL_VERDICTS, type SlVerdict } from './dataplane/abi.js';
import { Attachment, type Hook } from './dataplane/attachment.js';
import { compileClassifier } from './dataplane/classify.js';
import { readCounters } from './dataplane/counters.js';
import type { DataplaneSpec } from './dataplane/dataplane.js';
import { DataplaneError } from './dataplane/errors.js';
import { validateRuleSet, type Rule, type SetAction } from './dataplane/model.js';
import { prefixKeys, type PrefixKeys } from './dataplane/prefix-keys.js';
import { SetStore } from './dataplane/set-store.js';

/** Frames longer than this are replayed cut to it: a test run takes one page less head- and tailroom. */
export const REPLAY_MAX_FRAME = 3500;

export interface ReplayOptions {
  /**
   * The network namespace of the controller's devices. Replay sends nothing and attaches nothing;
   * the throwaway attachments only resolve their placeholder redirect slot (loopback) there.
   */
  netns?: string;
}

/** LINKTYPE_ETHERNET: the pipeline parses Ethernet frames only. */
const LINKTYPE_ETHERNET = 1;
const EINVAL = 22;
/** Ethernet header plus a whole IPv6 header: the kernel refuses only shorter frames as runts. */
const RUNT_MAX = 14 + 40;
/** Placeholder redirect target: the loopback device, ifindex 1 in every namespace. */
const PLACEHOLDER_IFINDEX = 1;
/** Placeholder next hop (locally administered, unicast): keeps the FIB out of the verdict. */
const PLACEHOLDER_NEXTHOP = Uint8Array.of(0x02, 0, 0, 0, 0, 1);

const VERDICT = Object.fromEntries(SL_VERDICTS.map((v, i) => [v, i])) as Record<SlVerdict, number>;

/**
 * Verdict index (SL_VERDICTS) of each program return code. The pipeline returns XDP_PASS,
 * XDP_DROP, XDP_REDIRECT (XDP_TX for "tx"), or TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT; the rest
 * are mapped as the hook treats them (XDP_ABORTED drops, other TC codes let the packet go on).
 */
function verdictOf(context: 'xdp' | 'tc', retval: number): number {
  if (context === 'xdp') {
    switch (retval) {
      case 2:
        return VERDICT.pass;
      case 3:
        return VERDICT.tx;
      case 4:
        return VERDICT.redirect;
      default: // 1 XDP_DROP, 0 XDP_ABORTED
        return VERDICT.drop;
    }
  }
  switch (retval) {
    case 2: // TC_ACT_SHOT
      return VERDICT.drop;
    case 7: // TC_ACT_REDIRECT
      return VERDICT.redirect;
    default: // TC_ACT_OK, TC_ACT_UNSPEC
      return VERDICT.pass;
  }
}

interface PlannedAttachment {
  /** "device@hook". */
  name: string;
  device: string;
  hook: Hook;
  rules: Rule[];
  defaultAction: SetAction;
  malformed: SetAction;
  /** The rule set as given, with the hook: equal text, equal pipeline (with equal sets). */
  signature: string;
}

interface Plan {
  sets: Map<string, PrefixKeys>;
  attachments: PlannedAttachment[];
}

/** Validates a whole spec without a kernel, as Dataplane.apply does first. */
function planOf(spec: DataplaneSpec): Plan {
  const sets = new Map<string, PrefixKeys>();
  for (const set of spec.sets ?? []) {
    if (sets.has(set.name)) {
      throw new DataplaneError(`set "${set.name}" is given twice`, 'SET_INVALID');
    }
    sets.set(set.name, prefixKeys(set.prefixes, set.name));
  }
  const attachments: PlannedAttachment[] = [];
  const names = new Set<string>();
  for (const att of spec.attachments ?? []) {
    const hook = att.hook ?? 'xdp';
    const name = `${att.device}@${hook}`;
    if (names.has(name)) {
      throw new DataplaneError(`attachment "${name}" is given twice`, 'ATTACHMENT_INVALID');
    }
    names.add(name);
    attachments.push({
      name,
      device: att.device,
      hook,
      rules: validateRuleSet(att.rules, { sets: new Set(sets.keys()) }),
      defaultAction: att.rules.defaultAction ?? 'pass',
      malformed: att.rules.malformed ?? 'drop',
      signature: JSON.stringify([att.rules, hook]),
    });
  }
  return { sets, attachments };
}

function sameKeys(a: PrefixKeys | undefined, b: PrefixKeys | undefined): boolean {
  if (!a || !b) return a === b;
  return (
    a.v4.length === b.v4.length &&
    a.v6.length === b.v6.length &&
    a.v4.every((key, i) => key === b.v4[i]) &&
    a.v6.every((key, i) => key === b.v6[i])
  );
}

/**
 * The attachments of `running` to replay: those the candidate also has, with a different rule set
 * or a set one of its rules names holding different prefixes. The others would replay the same
 * pipeline over the same packets, or are not reported.
 */
function differing(candidate: Plan, running: Plan): Plan {
  const mine = new Map(candidate.attachments.map((a) => [a.name, a]));
  const attachments = running.attachments.filter((theirs) => {
    const planned = mine.get(theirs.name);
    if (!planned) return false; // not reported
    if (planned.signature !== theirs.signature) return true;
    return planned.rules.some((rule) =>
      [rule.srcSet, rule.dstSet].some(
        (set) => set !== undefined && !sameKeys(candidate.sets.get(set), running.sets.get(set)),
      ),
    );
  });
  return { sets: running.sets, attachments };
}

/** A throwaway instance: its set tries and one loaded, unattached pipeline per attachment. */
interface Instance {
  sets: SetStore;
  attachments: Map<string, Attachment>;
}

function closeInstance(instance: Instance): void {
  for (const att of instance.attachments.values()) att.close();
  instance.sets.close();
}

/**
 * Builds `plan` under `dir` the way Dataplane.apply builds a fresh instance: all sets at once, each
 * attachment's classifier compiled against the set bits and masks, loaded and written as one
 * generation. Redirects get the placeholder target and next hop (see the header).
 */
async function buildInstance(
  plan: Plan,
  dir: string,
  netns: string | undefined,
): Promise<Instance> {
  mkdirSync(join(dir, 'att'), { recursive: true });
  const instance: Instance = { sets: await SetStore.open(dir), attachments: new Map() };
  try {
    const pending = instance.sets.planReplaceAll(plan.sets);
    const masks = instance.sets.masks().map(BigInt);
    for (const planned of plan.attachments) {
      const devices = new Map<string, number>();
      const rules = planned.rules.map((rule) => {
        if (!rule.redirect) return rule;
        devices.set(rule.redirect.to, PLACEHOLDER_IFINDEX);
        return {
          ...rule,
          redirect: { ...rule.redirect, via: rule.redirect.via ?? PLACEHOLDER_NEXTHOP },
        };
      });
      const tables = compileClassifier(rules, {
        setBits: new Map(instance.sets.bits),
        masks,
        defaultAction: planned.defaultAction,
        malformed: planned.malformed,
      });
      const att = Attachment.load(
        { device: planned.device, hook: planned.hook, netns },
        join(dir, 'att', planned.name),
        dir,
      );
      instance.attachments.set(planned.name, att);
      await att.writeRuleSet(tables, devices);
    }
    await instance.sets.flush(pending);
    return instance;
  } catch (error: unknown) {
    closeInstance(instance);
    throw error;
  }
}

/** The capture as ranges of its own bytes: what testRunBatch takes, without a copy per packet. */
interface Frames {
  bytes: Uint8Array;
  starts: Uint32Array;
  lengths: Uint32Array;
}

/** Each packet's verdict index through one attachment's pipeline. */
async function replayAttachment(
  att: Attachment,
  planned: PlannedAttachment,
  frames: Frames,
): Promise<Uint8Array> {
  const context = att.context;
  const { retvals, errnos } = await att.program.testRunBatch(
    frames.bytes,
    frames.starts,
    frames.lengths,
  );
  const n = frames.starts.length;
  const verdicts = new Uint8Array(n);
  const truncated = VERDICT[planned.malformed];
  for (let i = 0; i < n; i++) {
    const errno = errnos[i];
    if (errno === 0) verdicts[i] = verdictOf(context, retvals[i]);
    else if (errno === EINVAL && frames.lengths[i] < RUNT_MAX) verdicts[i] = truncated;
    else {
      throw new SyscallError(
        `replay packet ${i + 1} (${frames.lengths[i]} bytes) through "${planned.name}"`,
        { errno, syscall: 'bpf_prog_test_run_opts' },
      );
    }
  }
  return verdicts;
}

async function replayInstance(
  instance: Instance,
  plan: Plan,
  frames: Frames,
): Promise<Map<string, Uint8Array>> {
  const runs = plan.attachments.map(
    async (planned) =>
      [
        planned.name,
        await replayAttachment(instance.attachments.get(planned.name)!, planned, frames),
      ] as const,
  );
  return new Map(await Promise.all(runs));
}

/** Reads the capture's records as ranges of `pcap`, cut to REPLAY_MAX_FRAME. */
function framesOf(pcap: Uint8Array): Frames {
  // A Buffer view: parsePcap's per-record slices are then views too, not copies.
  const bytes = Buffer.from(pcap.buffer, pcap.byteOffset, pcap.byteLength);
  const capture = parsePcap(bytes);
  if (capture.linkType !== LINKTYPE_ETHERNET) {
    throw new PcapFormatError(
      'PCAP_LINK_TYPE',
      `replay pcap data: link type ${capture.linkType} is not Ethernet (1), the only one the pipeline parses`,
      20,
    );
  }
  const n = capture.packets.length;
  const starts = new Uint32Array(n);
  const lengths = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const { data } = capture.packets[i];
    starts[i] = data.byteOffset - bytes.byteOffset;
    lengths[i] = Math.min(data.length, REPLAY_MAX_FRAME);
  }
  return { bytes, starts, lengths };
}

/**
 * Replays every packet of `pcap` (classic pcap, Ethernet) through the pipelines `candidate` would
 * run, and through `running`'s to count changed verdicts, with nothing attached to any device
 * (semantics: this file's header). Validates both specs before touching the kernel and throws
 * what Dataplane.apply throws for them (DataplaneError subclasses naming the rule and field);
 * PcapFormatError for a capture that is not classic pcap or not Ethernet (PCAP_LINK_TYPE);
 * VerifierError or SyscallError when the kernel refuses the pipeline or a test run. Needs CAP_BPF
 * and a bpffs; Linux >= 5.17 (the pipeline's bpf_loop).
 */
export async function replayPcap(
  candidate: DataplaneSpec,
  running: DataplaneSpec | undefined,
  pcap: Uint8Array,
  options: ReplayOptions = {},
): Promise<ReplayReport> {
  const frames = framesOf(pcap);
  const candidatePlan = planOf(candidate);
  const runningPlan = running === undefined ? undefined : planOf(running);
  const replayed = runningPlan && differing(candidatePlan, runningPlan);
  // Attachments running the very pipeline the candidate has: nothing changes, nothing to replay.
  const unchanged = new Set(runningPlan?.attachments.map((a) => a.name));
  for (const a of replayed?.attachments ?? []) unchanged.delete(a.name);

  ensureBpffs();
  const root = join(BPFFS_ROOT, `sl-replay-${randomBytes(6).toString('hex')}`);
  const instances: Instance[] = [];
  let inFlight: Promise<unknown> | undefined;
  try {
    mkdirSync(root);
    const candidateInstance = await buildInstance(
      candidatePlan,
      join(root, 'candidate'),
      options.netns,
    );
    instances.push(candidateInstance);
    // Test runs go on worker threads: the candidate's run while the running instance is built
    // (the verifier works on this thread).
    const candidateRuns = replayInstance(candidateInstance, candidatePlan, frames);
    inFlight = candidateRuns;
    let theirs = new Map<string, Uint8Array>();
    if (replayed && replayed.attachments.length > 0) {
      const runningInstance = await buildInstance(replayed, join(root, 'running'), options.netns);
      instances.push(runningInstance);
      theirs = await replayInstance(runningInstance, replayed, frames);
    }
    const mine = await candidateRuns;

    return {
      packets: frames.starts.length,
      attachments: candidatePlan.attachments.map((planned) => {
        const verdicts = mine.get(planned.name)!;
        const before = theirs.get(planned.name);
        const totals = Object.fromEntries(SL_VERDICTS.map((v) => [v, 0])) as Record<string, number>;
        let changed = 0;
        for (let i = 0; i < verdicts.length; i++) {
          totals[SL_VERDICTS[verdicts[i]]]++;
          if (!unchanged.has(planned.name) && verdicts[i] !== (before ? before[i] : VERDICT.pass))
            changed++;
        }
        const counters = readCounters(candidateInstance.attachments.get(planned.name)!);
        return {
          attachment: planned.name,
          rules: counters.rules.map(({ id, packets }) => ({ id, packets })),
          verdicts: totals,
          changed,
        };
      }),
    };
  } finally {
    // A failure elsewhere must not close handles or remove pins under a test run still going.
    await inFlight?.catch(() => undefined);
    for (const instance of instances) closeInstance(instance);
    rmSync(root, { recursive: true, force: true });
  }
}
