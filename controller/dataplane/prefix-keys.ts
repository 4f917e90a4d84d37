// Bulk prefix parsing straight to index keys: a million IPv4 prefixes without a million objects.
import { PrefixInvalidError } from './errors.js';
import { parsePrefix } from './model.js';
import { prefixKey, type KeyArray } from './prefix-index.js';

/** One set's prefixes as sorted, repeat-free keys per family. */
export interface PrefixKeys {
  v4: Float64Array;
  v6: string[];
}

/**
 * The keys of "a.b.c.d[/len]" without allocating, or -1 when the text is not that shape (then the
 * full parser decides, with its precise errors). Host bits set also give -1.
 */
function fastV4(text: string): number {
  let addr = 0;
  let octet = -1;
  let dots = 0;
  let i = 0;
  const n = text.length;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      octet = octet < 0 ? c - 48 : octet * 10 + (c - 48);
      if (octet > 255) return -1;
    } else if (c === 46) {
      if (octet < 0 || dots === 3) return -1;
      addr = addr * 256 + octet;
      octet = -1;
      dots++;
    } else if (c === 47) break;
    else return -1;
  }
  if (octet < 0 || dots !== 3) return -1;
  addr = addr * 256 + octet;
  let len = 32;
  if (i < n) {
    if (i + 1 >= n || n - i > 3) return -1;
    len = 0;
    for (i++; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c < 48 || c > 57) return -1;
      len = len * 10 + (c - 48);
    }
    if (len > 32) return -1;
  }
  const size = 2 ** (32 - len);
  if (addr % size !== 0) return -1;
  return addr * 64 + len;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * The key of an IPv6 "groups[/len]" text ("2001:db8::/32", no embedded IPv4, no zone) without the
 * full parser, or null when the text is not that shape or has host bits set.
 */
function fastV6(text: string): string | null {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  let len = 128;
  if (slash >= 0) {
    const l = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(l)) return null;
    len = Number(l);
    if (len > 128) return null;
  }
  const halves = addr.split('::');
  if (halves.length > 2) return null;
  const parse = (part: string): string[] | null => {
    if (part === '') return [];
    const groups = part.split(':');
    for (const g of groups) if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    return groups.map((g) => g.toLowerCase().padStart(4, '0'));
  };
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const hex = [...head, ...new Array<string>(missing).fill('0000'), ...tail].join('');
  // Host bits must be zero: every nibble past len, and the partial one.
  const whole = len >> 2;
  const rem = len & 3;
  for (let i = whole + (rem ? 1 : 0); i < 32; i++) if (hex[i] !== '0') return null;
  if (rem && (parseInt(hex[whole], 16) & (0xf >> rem)) !== 0) return null;
  return hex + HEX[len];
}

/**
 * Parses the prefixes of set `set` into sorted keys. Throws PrefixInvalidError naming the set
 * and the entry's index for anything parsePrefix rejects (host bits set, bad syntax).
 */
export function prefixKeys(list: Iterable<string>, set: string): PrefixKeys {
  // Keys past 2^31 would be boxed in a plain array: collect them in a growing Float64Array.
  let v4 = new Float64Array(Array.isArray(list) ? (list as string[]).length : 1024);
  let n4 = 0;
  const push4 = (key: number): void => {
    if (n4 === v4.length) {
      const bigger = new Float64Array(v4.length * 2);
      bigger.set(v4);
      v4 = bigger;
    }
    v4[n4++] = key;
  };
  const v6: string[] = [];
  let entry = 0;
  for (const raw of list) {
    const text = raw.trim();
    const fast = fastV4(text);
    const fast6 = fast < 0 ? fastV6(text) : null;
    if (fast >= 0) push4(fast);
    else if (fast6 !== null) v6.push(fast6);
    else {
      let p;
      try {
        p = parsePrefix(text, `set "${set}": prefixes[${entry}]`);
      } catch (error: unknown) {
        if (error instanceof PrefixInvalidError) {
          throw new PrefixInvalidError(error.message, {
            prefix: text,
            canonical: error.canonical,
            set,
            entry,
            cause: error,
          });
        }
        throw error;
      }
      const key = prefixKey(p);
      if (typeof key === 'number') push4(key);
      else v6.push(key);
    }
    entry++;
  }
  return {
    v4: unique(v4.subarray(0, n4).sort()) as Float64Array,
    v6: unique(v6.sort()) as string[],
  };
}

function unique(keys: KeyArray): KeyArray {
  let w = 0;
  for (let r = 0; r < keys.length; r++) {
    if (r > 0 && keys[r] === keys[r - 1]) continue;
    keys[w++] = keys[r];
  }
  return keys instanceof Float64Array ? keys.subarray(0, w) : keys.slice(0, w);
}

/** FNV-1a over the prefix texts and their boundaries: equal text gives an equal fingerprint. */
export function fingerprintTexts(list: readonly string[]): string {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193;
  for (const text of list) {
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    }
    h1 = Math.imul(h1 ^ 10, 0x01000193);
    h2 = Math.imul(h2 ^ 10, 0x5bd1e995);
  }
  return `${list.length}:${(h1 >>> 0).toString(16)}:${(h2 >>> 0).toString(16)}`;
}

/** Keys already parsed per prefix array, with the fingerprint of the text they came from. */
const parsedKeys = new WeakMap<readonly string[], { fp: string; keys: PrefixKeys }>();

/**
 * prefixKeys() for an array that may have been parsed before (the controller validates a set,
 * then the data plane loads the same array): the keys are reused while the array's text still
 * has fingerprint `fp`. The returned keys are shared: callers must not change them.
 */
export function prefixKeysOf(
  list: readonly string[],
  set: string,
  fp: string = fingerprintTexts(list),
): PrefixKeys {
  const hit = parsedKeys.get(list);
  if (hit && hit.fp === fp) return hit.keys;
  const keys = prefixKeys(list, set);
  parsedKeys.set(list, { fp, keys });
  return keys;
}
