// Maglev lookup tables with weights (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016): which backend each slot of the hash space goes to.
//
// A table is a Uint32Array of M slots (M prime, one of MAGLEV_SIZES); slot s holds the u32 key of
// the backend that new flows with `maglevSlot(flowHash(flow), M) === s` go to, or MAGLEV_NO_BACKEND.
//
// Permutations. Each backend's preference list depends only on its id (a stable string such as
// its address text, "10.1.0.11" or "2001:db8::11"): offset = h1(id) mod M,
// skip = h2(id) mod (M - 1) + 1, and its j-th preferred slot is (offset + j·skip) mod M, which
// visits every slot once because M is prime. h1 and h2 are jhash2 (flow-hash.ts) over the id's
// UTF-8 bytes packed little-endian into u32 words, the last word zero-padded, with the seeds
// MAGLEV_OFFSET_SEED and MAGLEV_SKIP_SEED. (Padding makes "a" and "a\0" hash alike; ids are
// addresses or names, never NUL-terminated.)
//
// Population. Backends take turns in the order of their ids (UTF-16 code unit order, so the
// table does not depend on the order they are given in); on its turn a backend takes its next
// preferred slot that is still free. Weights are credits: each round every backend adds
// weight / maxWeight to its credit and takes a turn when the credit reaches 1 (at most one turn
// a round, since weight <= maxWeight). Integers keep it exact: credits count in units of
// 1 / maxWeight. So after r rounds a backend has taken floor(r · weight / maxWeight) slots, and
// its final share is w / Σw to within a slot or two. The backends of the largest weight take a
// turn every round, so the table fills in about M · maxWeight / Σw rounds. Walking the rounds
// costs a check per backend and round: about M for equal weights, up to M · N when one weight
// dwarfs all others; past 8 checks a slot a binary heap orders the same turns instead
// (M · log N). Either way the probes for free slots add about M · ln M.
//
// Disruption. Because a permutation depends only on its id, adding or removing one backend leaves
// the others' preferences alone; the slots the change frees or takes are refilled from those
// preferences, with a small cascade (the paper's "minimal disruption" is close to, not exactly,
// the change's own share: removing one of 4 equal backends can move 27% of the slots, not 25%).
// test/unit/lb/maglev.test.ts measures it.
//
// Rebuilds. Given the table now installed (`previous`, same size), a build moves only what the
// change forces. Each backend's quota is its slot count in the plain build above of the same
// backends and size, so the balance is exactly Maglev's. A backend present with weight > 0 keeps
// its previous slots up to its quota; one over it (its weight went down, or others came) keeps
// first the slots the plain table also gives it, then its others in slot order. The free slots
// (those of backends gone or drained, the excess, MAGLEV_NO_BACKEND) go by the plain procedure:
// the same credit rounds from round 1 and the same permutations, each backend walking from its
// offset past taken slots, and a backend leaves the rounds when it reaches its quota. So removing
// a backend moves exactly its slots, adding one moves exactly the slots it takes, and in general
// the slots that move are those a key held beyond its new quota (all of them for a key gone or
// drained) and those of MAGLEV_NO_BACKEND: the least any table with these counts can move. An
// empty previous, or the plain table itself, gives the plain table. A rebuild costs the plain
// build, three passes over the slots and the turns still owed (rounds or the heap, as above).
//
// The price is that the table depends on history, not only on the backends: two builders agree
// only when they start from the same table. So the caller passes the live table, the one it
// installed or, after a restart, the one read back from the kernel. Previous slots are matched by
// key, as the kernel knows them: a key now given to another backend keeps its slots for that
// backend. A size change has no previous (a slot of one size is not a slot of another): a
// previous of another size is ignored and the table built fresh.
import type { LbFlow, LbHashMode } from './flow-hash.js';
import { flowHash, jhash2 } from './flow-hash.js';
import { BackendInvalidError, TableSizeError } from './errors.js';

/** The table sizes allowed: primes near powers of two (65537 = 2^16 + 1). */
export const MAGLEV_SIZES: readonly number[] = [
  251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65537, 131071, 262139, 524287, 1048573,
];

/** The table size used when none is given. */
export const MAGLEV_DEFAULT_SIZE = 65537;

/** The value of a slot with no backend: every slot of a table built with no backend of weight > 0. */
export const MAGLEV_NO_BACKEND = 0xffffffff;

/** The largest weight a backend may have. */
export const MAGLEV_MAX_WEIGHT = 65535;

/** jhash2 seed of h1, the hash that gives a backend's offset ("offs"). */
export const MAGLEV_OFFSET_SEED = 0x6f666673;

/** jhash2 seed of h2, the hash that gives a backend's skip ("skip"). */
export const MAGLEV_SKIP_SEED = 0x736b6970;

/** One backend of a Maglev table. */
export interface MaglevBackend {
  /** Stable identity, e.g. the address text: it alone decides the backend's permutation. */
  id: string;
  /**
   * Relative share of the slots, an integer from 0 to MAGLEV_MAX_WEIGHT, as given (1, 2, 4 or
   * 100, 7). 0 drains: the backend is present but gets no slot, so no new flow.
   */
  weight: number;
  /** What the table's slots hold for this backend: the u32 the kernel knows it by (not 0xffffffff). */
  key: number;
}

/** Throws `TableSizeError` (LB_TABLE_SIZE) unless `size` is one of MAGLEV_SIZES. */
export function checkTableSize(size: number): void {
  if (!MAGLEV_SIZES.includes(size))
    throw new TableSizeError(
      `build maglev table: size ${JSON.stringify(size)} is not allowed: expected a prime of ${MAGLEV_SIZES.join(', ')}`,
      { size, expected: [...MAGLEV_SIZES] },
    );
}

/** The id's UTF-8 bytes as little-endian u32 words, the last one zero-padded. */
function idWords(id: string): Uint32Array {
  const bytes = Buffer.from(id, 'utf8');
  const words = new Uint32Array((bytes.length + 3) >>> 2);
  for (let i = 0; i < bytes.length; i++) words[i >>> 2] |= bytes[i] << ((i & 3) * 8);
  return words;
}

/**
 * A backend's permutation of a table of `size` slots: its j-th preferred slot is
 * `(offset + j * skip) % size`. Throws `TableSizeError` for a size not in MAGLEV_SIZES.
 */
export function permutationOf(id: string, size: number): { offset: number; skip: number } {
  checkTableSize(size);
  const words = idWords(id);
  return {
    offset: jhash2(words, MAGLEV_OFFSET_SEED) % size,
    skip: (jhash2(words, MAGLEV_SKIP_SEED) % (size - 1)) + 1,
  };
}

function checkBackends(backends: readonly MaglevBackend[]): void {
  const ids = new Set<string>();
  const keys = new Set<number>();
  backends.forEach((b, index) => {
    const which = typeof b.id === 'string' ? `"${b.id}"` : `#${index}`;
    const fail = (field: 'id' | 'weight' | 'key', why: string): never => {
      throw new BackendInvalidError(`build maglev table: backend ${which} ${why}`, {
        index,
        field,
      });
    };
    if (typeof b.id !== 'string' || b.id === '')
      fail('id', `has id ${JSON.stringify(b.id)}: expected a non-empty string`);
    if (ids.has(b.id)) fail('id', 'is given twice');
    if (!Number.isInteger(b.weight) || b.weight < 0 || b.weight > MAGLEV_MAX_WEIGHT)
      fail(
        'weight',
        `has weight ${JSON.stringify(b.weight)}: expected an integer from 0 to ${MAGLEV_MAX_WEIGHT}`,
      );
    if (!Number.isInteger(b.key) || b.key < 0 || b.key >= MAGLEV_NO_BACKEND)
      fail(
        'key',
        `has key ${JSON.stringify(b.key)}: expected an integer from 0 to 4294967294 (0xffffffff means no backend)`,
      );
    if (keys.has(b.key)) fail('key', `has key ${b.key}, which another backend has`);
    ids.add(b.id);
    keys.add(b.key);
  });
}

/** Options of `buildMaglevTable`. */
export interface MaglevBuildOptions {
  /**
   * The table now installed (read back from the kernel after a restart), for a rebuild that
   * moves as few slots as the new quotas allow: see "Rebuilds" at the top of this file. Its slots
   * hold backend keys or MAGLEV_NO_BACKEND; a key no given backend has (or only a drained one)
   * frees its slot. A table of another size is ignored: a size change rebuilds fresh.
   */
  previous?: Uint32Array;
}

/**
 * Builds the Maglev table of `size` slots for `backends` (population and permutations at the
 * top of this file): a Uint32Array whose slots hold backend keys. Without `options.previous` the
 * result depends only on the set of (id, weight, key), not on the order given. With it (and of
 * the same size) each backend gets exactly as many slots as without it, keeping as many of its
 * previous slots as that count allows; the result then also depends on `previous`. With no
 * backend of weight > 0 every slot is MAGLEV_NO_BACKEND. Throws `TableSizeError`
 * (LB_TABLE_SIZE) for a size not in MAGLEV_SIZES and `BackendInvalidError` (LB_BACKEND_INVALID)
 * for an empty or repeated id, a weight that is not an integer from 0 to MAGLEV_MAX_WEIGHT, or a
 * key that is not a u32 below 0xffffffff or is repeated.
 */
export function buildMaglevTable(
  backends: readonly MaglevBackend[],
  size: number = MAGLEV_DEFAULT_SIZE,
  options: MaglevBuildOptions = {},
): Uint32Array {
  checkTableSize(size);
  checkBackends(backends);
  const slots = new Uint32Array(size).fill(MAGLEV_NO_BACKEND);
  const active = backends
    .filter((b) => b.weight > 0)
    .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  const n = active.length;
  if (n === 0) return slots;

  const offset = new Uint32Array(n);
  const skip = new Uint32Array(n);
  const key = new Uint32Array(n);
  const weight = new Int32Array(n);
  let maxWeight = 0;
  for (let i = 0; i < n; i++) {
    const p = permutationOf(active[i].id, size);
    offset[i] = p.offset;
    skip[i] = p.skip;
    key[i] = active[i].key;
    weight[i] = active[i].weight;
    maxWeight = Math.max(maxWeight, weight[i]);
  }
  const plain = populate(slots, offset.slice(), skip, key, weight, maxWeight);
  const { previous } = options;
  if (previous === undefined || previous.length !== size) return plain;
  return rebuild(previous, plain, offset, skip, key, weight, maxWeight);
}

/** The plain population of the empty `slots`: credit rounds, or the heap where those are slow. */
function populate(
  slots: Uint32Array,
  next: Uint32Array,
  skip: Uint32Array,
  key: Uint32Array,
  weight: Int32Array,
  maxWeight: number,
): Uint32Array {
  const n = next.length;
  const size = slots.length;
  // Rounds until the table is full, about: the backends of weight maxWeight take a turn each.
  let totalWeight = 0;
  for (let i = 0; i < n; i++) totalWeight += weight[i];
  const rounds = Math.ceil((size * maxWeight) / totalWeight) + 1;
  if (n * rounds > HEAP_THRESHOLD * size)
    return populateByHeap(slots, next, skip, key, weight, maxWeight);
  const credit = new Int32Array(n);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      credit[i] += weight[i];
      if (credit[i] < maxWeight) continue;
      credit[i] -= maxWeight;
      take(slots, i, next, skip, key);
      if (++filled === size) return slots;
    }
  }
}

/**
 * The rebuild from `previous` (see "Rebuilds" at the top): each backend's quota is its slot
 * count in `plain`; it keeps its previous slots up to the quota (those `plain` also gives it
 * first, then the others in slot order), and the free slots are filled by the plain turns of the
 * backends still under quota. Backend i is key[i], in id order, as in `plain`.
 */
function rebuild(
  previous: Uint32Array,
  plain: Uint32Array,
  offset: Uint32Array,
  skip: Uint32Array,
  key: Uint32Array,
  weight: Int32Array,
  maxWeight: number,
): Uint32Array {
  const n = key.length;
  const size = plain.length;
  const indexOf = keyIndex(key);
  const quota = new Int32Array(n);
  const had = new Int32Array(n);
  // owner[s]: the backend previous[s] holds, -1 for none (a key gone, drained or MAGLEV_NO_BACKEND)
  const owner = new Int32Array(size);
  for (let s = 0; s < size; s++) {
    const p = plain[s];
    const q = indexOf(p);
    quota[q]++;
    const o = previous[s] === p ? q : indexOf(previous[s]);
    owner[s] = o;
    if (o >= 0) had[o]++;
  }
  const slots = new Uint32Array(size).fill(MAGLEV_NO_BACKEND);
  const left = quota.slice();
  // Within its quota a backend keeps every previous slot. Over it (its weight went down or
  // others came), the slots the plain table also gives it come first: there are at most quota.
  for (let s = 0; s < size; s++) {
    const o = owner[s];
    if (o < 0 || (had[o] > quota[o] && previous[s] !== plain[s])) continue;
    slots[s] = key[o];
    left[o]--;
  }
  // Then its other previous slots, in slot order, up to the quota.
  for (let s = 0; s < size; s++) {
    const o = owner[s];
    if (o < 0 || left[o] <= 0 || slots[s] !== MAGLEV_NO_BACKEND) continue;
    slots[s] = key[o];
    left[o]--;
  }
  // The quotas add up to size, so the free slots are exactly the turns still owed.
  return fill(slots, offset.slice(), skip, key, weight, maxWeight, left);
}

/**
 * Backend index by key, -1 for a key no backend has: open addressing (a multiplicative hash,
 * linear probing) in a table at least twice the backends, a few times faster than a Map here.
 */
function keyIndex(key: Uint32Array): (k: number) => number {
  let bits = 1;
  while (1 << bits < 2 * key.length) bits++;
  const mask = (1 << bits) - 1;
  const keys = new Uint32Array(mask + 1);
  const index = new Int32Array(mask + 1).fill(-1);
  const home = (k: number): number => Math.imul(k, 0x9e3779b1) >>> (32 - bits);
  for (let i = 0; i < key.length; i++) {
    let h = home(key[i]);
    while (index[h] >= 0) h = (h + 1) & mask;
    keys[h] = key[i];
    index[h] = i;
  }
  return (k: number): number => {
    for (let h = home(k); index[h] >= 0; h = (h + 1) & mask) if (keys[h] === k) return index[h];
    return -1;
  };
}

/**
 * The rebuild's turns: backend i takes left[i] more turns of the credit rounds (from round 1, in
 * index order within a round) and then leaves; left counts down to 0. The free slots must be as
 * many as the turns owed. Rounds cost a check per backend still owing and round, and the last
 * backend's last turn comes in round max(ceil(left[i] · maxWeight / weight[i])); past
 * HEAP_THRESHOLD checks per turn owed, `populateByHeap` orders the same turns.
 */
function fill(
  slots: Uint32Array,
  next: Uint32Array,
  skip: Uint32Array,
  key: Uint32Array,
  weight: Int32Array,
  maxWeight: number,
  left: Int32Array,
): Uint32Array {
  const owing: number[] = [];
  let owed = 0;
  let rounds = 0;
  for (let i = 0; i < left.length; i++) {
    if (left[i] <= 0) continue;
    owing.push(i);
    owed += left[i];
    rounds = Math.max(rounds, Math.ceil((left[i] * maxWeight) / weight[i]));
  }
  if (owing.length * rounds > HEAP_THRESHOLD * owed)
    return populateByHeap(slots, next, skip, key, weight, maxWeight, left);
  const credit = new Int32Array(left.length);
  let m = owing.length;
  while (m > 0) {
    // one round; a backend whose last turn it was drops out, the others keep their order
    let kept = 0;
    for (let r = 0; r < m; r++) {
      const i = owing[r];
      credit[i] += weight[i];
      if (credit[i] >= maxWeight) {
        credit[i] -= maxWeight;
        take(slots, i, next, skip, key);
        if (--left[i] === 0) continue;
      }
      owing[kept++] = i;
    }
    m = kept;
  }
  return slots;
}

/**
 * Rounds in which most backends do nothing (one weight far above the others) cost a check per
 * backend and round; past this many checks per slot, `populateByHeap` orders the same turns.
 */
const HEAP_THRESHOLD = 8;

/** Backend i's turn: its next preferred slot still free gets its key. */
function take(
  slots: Uint32Array,
  i: number,
  next: Uint32Array,
  skip: Uint32Array,
  key: Uint32Array,
): void {
  const size = slots.length;
  let c = next[i];
  const step = skip[i];
  while (slots[c] !== MAGLEV_NO_BACKEND) {
    c += step;
    if (c >= size) c -= size;
  }
  slots[c] = key[i];
  c += step;
  next[i] = c >= size ? c - size : c;
}

/**
 * The same turns as the credit rounds, in the same order, from a binary heap: backend i takes its
 * j-th turn in round ceil(j · maxWeight / weight[i]) (the first round its credit reaches 1), and
 * turns of one round go in index (id) order. Costs M · log N instead of a check per backend
 * and round. Without `left` the backends take turns until every slot is taken; with it backend i
 * takes left[i] turns and then leaves (the rebuild's quotas; left counts down), and the free
 * slots must be as many as the turns owed.
 */
function populateByHeap(
  slots: Uint32Array,
  next: Uint32Array,
  skip: Uint32Array,
  key: Uint32Array,
  weight: Int32Array,
  maxWeight: number,
  left?: Int32Array,
): Uint32Array {
  // Rounds reach M · maxWeight (about 7e10 at most): beyond int32, exact in a double.
  const round = new Float64Array(next.length);
  const turns = new Float64Array(next.length);
  const heap = new Int32Array(next.length);
  let n = 0;
  let owed = left === undefined ? slots.length : 0;
  for (let i = 0; i < next.length; i++) {
    if (left !== undefined) {
      if (left[i] <= 0) continue;
      owed += left[i];
    }
    turns[i] = 1;
    round[i] = Math.ceil(maxWeight / weight[i]);
    heap[n++] = i;
  }
  const before = (x: number, y: number): boolean =>
    round[x] < round[y] || (round[x] === round[y] && x < y);
  const siftDown = (at: number): void => {
    const item = heap[at];
    for (;;) {
      let child = 2 * at + 1;
      if (child >= n) break;
      if (child + 1 < n && before(heap[child + 1], heap[child])) child++;
      if (!before(heap[child], item)) break;
      heap[at] = heap[child];
      at = child;
    }
    heap[at] = item;
  };
  for (let at = (n >>> 1) - 1; at >= 0; at--) siftDown(at);
  for (; owed > 0; owed--) {
    const i = heap[0];
    take(slots, i, next, skip, key);
    if (left !== undefined && --left[i] === 0) {
      // its quota reached: the last of the heap takes its place
      heap[0] = heap[--n];
      siftDown(0);
      continue;
    }
    turns[i]++;
    // integers below 2^53 and a divisor below 2^16: the quotient is never misrounded across an integer
    round[i] = Math.ceil((turns[i] * maxWeight) / weight[i]);
    siftDown(0);
  }
  return slots;
}

/**
 * The slot of a flow of u32 hash `hash` in a table of `size` slots: floor(hash * size / 2^32), as
 * lb.bpf.c computes it ((hash * M) >> 32 in 64 bits). Each slot gets floor or ceil of 2^32 / size
 * hashes, as with hash % size, and the program needs no division. Exact in a double: the product
 * stays below 2^53 for every size up to 2^21.
 */
export function maglevSlot(hash: number, size: number): number {
  return Math.floor(((hash >>> 0) * size) / 2 ** 32);
}

/** The key of the backend a flow of hash `hash` goes to, or MAGLEV_NO_BACKEND. */
export function lookupBackend(table: Uint32Array, hash: number): number {
  return table[maglevSlot(hash, table.length)];
}

/**
 * The share of the table's slots (0 to 1) each of `keys` holds, in a map by key; a key the table
 * does not hold has 0. Slots of other keys, or MAGLEV_NO_BACKEND, count for none of them.
 */
export function tableShares(table: Uint32Array, keys: Iterable<number>): Map<number, number> {
  const counts = new Map<number, number>();
  for (const k of keys) counts.set(k, 0);
  for (let s = 0; s < table.length; s++) {
    const count = counts.get(table[s]);
    if (count !== undefined) counts.set(table[s], count + 1);
  }
  for (const [k, count] of counts) counts.set(k, table.length === 0 ? 0 : count / table.length);
  return counts;
}

/**
 * The share of the hash space that moves from one table to the next: the fraction of slots (0 to
 * 1) whose value differs. Throws `TableSizeError` (LB_TABLE_SIZE) when the tables differ in size,
 * where a slot of one is not a slot of the other.
 */
export function movedShare(oldTable: Uint32Array, newTable: Uint32Array): number {
  if (oldTable.length !== newTable.length)
    throw new TableSizeError(
      `compare maglev tables: sizes differ (${oldTable.length} and ${newTable.length}): a slot of one is not a slot of the other`,
      { size: newTable.length, expected: [oldTable.length] },
    );
  let moved = 0;
  for (let s = 0; s < oldTable.length; s++) if (oldTable[s] !== newTable[s]) moved++;
  return oldTable.length === 0 ? 0 : moved / oldTable.length;
}

/** A flow the kernel's flow table holds, and the key of the backend it is pinned to. */
export interface FlowEntry {
  flow: LbFlow;
  backend: number;
}

/** What `predictMoves` found. */
export interface MovePrediction {
  /** Entries looked at. */
  flows: number;
  /** Entries whose flow would now hash to another backend (those with no backend included). */
  moved: number;
  /** Of `moved`, those that would hash to a MAGLEV_NO_BACKEND slot. */
  noBackend: number;
  /** `moved` by the backend key the flows are pinned to now. */
  movedFrom: Map<number, number>;
}

/**
 * Dry run of a table change: how many of the flow table's entries would hash, under `mode` and
 * `seed` (the kernel program's), to a backend other than the one they are pinned to in
 * `newTable`. Those flows then stay on their backend only because the flow table keeps them.
 * Throws what `flowHash` throws for an entry's flow.
 */
export function predictMoves(
  entries: Iterable<FlowEntry>,
  newTable: Uint32Array,
  mode: LbHashMode,
  seed = 0,
): MovePrediction {
  const prediction: MovePrediction = { flows: 0, moved: 0, noBackend: 0, movedFrom: new Map() };
  for (const entry of entries) {
    prediction.flows++;
    const now = lookupBackend(newTable, flowHash(entry.flow, mode, seed));
    if (now === entry.backend) continue;
    prediction.moved++;
    if (now === MAGLEV_NO_BACKEND) prediction.noBackend++;
    prediction.movedFrom.set(entry.backend, (prediction.movedFrom.get(entry.backend) ?? 0) + 1);
  }
  return prediction;
}
