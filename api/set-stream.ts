// Streamed prefix-set bodies: text (a prefix a line) and NDJSON read line by line as they arrive,
// handed to the controller as an async iterable, with each prefix's line remembered cheaply so
// that an error about the n-th prefix can name its line.
import { StringDecoder } from 'node:string_decoder';

import { ApiError } from './problems.js';

export type SetBodyFormat = 'text' | 'ndjson';

/**
 * Maps prefix indexes (0-based, in the order yielded) to line numbers (1-based). Lines that hold
 * no prefix (blank, comments) shift the mapping; only the shifts are stored, so a million-line
 * body with a handful of comments costs a handful of entries.
 */
export class LineMap {
  /** [first prefix index, line - index] per shift, ascending. */
  private readonly shifts: number[][] = [];
  private shift = 0;
  /** Line of the prefix yielded last, 0 before the first. */
  lastLine = 0;
  /** Prefixes yielded. */
  count = 0;
  /** What failed while reading the body, if anything (to rethrow over the controller's error). */
  failure: unknown;

  record(line: number): void {
    const shift = line - this.count;
    if (shift !== this.shift) {
      this.shifts.push([this.count, shift]);
      this.shift = shift;
    }
    this.lastLine = line;
    this.count++;
  }

  /** Line of the prefix at `index` (0-based). */
  lineOf(index: number): number {
    let lo = 0;
    let hi = this.shifts.length - 1;
    let shift = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.shifts[mid][0] <= index) {
        shift = this.shifts[mid][1];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return index + shift;
  }
}

function lineError(line: number, message: string): ApiError {
  return new ApiError('API_SET_LINE', `line ${line}: ${message}`, { members: { line } });
}

/** The prefix an NDJSON line holds: a JSON string, or {"prefix": "..."}. */
function ndjsonPrefix(text: string, line: number): string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw lineError(line, 'not JSON: expected a JSON string or {"prefix": "..."}');
  }
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const keys = Object.keys(value);
    const prefix = (value as { prefix?: unknown }).prefix;
    if (keys.length === 1 && typeof prefix === 'string') return prefix;
  }
  throw lineError(line, 'expected a JSON string or {"prefix": "..."}');
}

/**
 * The prefixes of a streamed body, one a line: text lines are trimmed, blank lines and `#`
 * comments (whole lines or after a prefix) skipped; NDJSON lines are JSON strings or
 * {"prefix": "..."}. Throws (and records in `map.failure`) an ApiError: API_BODY_TOO_LARGE past
 * `limit` bytes, API_SET_LINE for a malformed NDJSON line or a prefix longer than 64 characters.
 * The prefixes of one chunk are split at once and handed out from an array: an async generator
 * costs a few microtasks per item, which is most of the time for a million short lines.
 */
export function readPrefixLines(
  body: AsyncIterable<Buffer | string>,
  format: SetBodyFormat,
  limit: number,
  map: LineMap,
): AsyncIterableIterator<string> {
  const source = body[Symbol.asyncIterator]();
  const decoder = new StringDecoder('utf8');
  let carry = '';
  let bytes = 0;
  let line = 0;
  let ready: string[] = [];
  let next = 0;
  let ended = false;
  /** True when `text` needs no trimming: no whitespace at either end (the common case). */
  const bare = (text: string): boolean =>
    text.length > 0 && text.charCodeAt(0) > 32 && text.charCodeAt(text.length - 1) > 32;
  const take = (raw: string): void => {
    line++;
    let text = raw;
    if (format === 'text' && bare(text) && text.indexOf('#') < 0) {
      // fast path: a bare prefix, kept as the slice it is
    } else if (format === 'text') {
      const hash = text.indexOf('#');
      if (hash >= 0) text = text.slice(0, hash);
      text = text.trim();
      if (text === '') return;
    } else {
      text = text.trim();
      if (text === '') return;
      text = ndjsonPrefix(text, line);
    }
    if (text.length > 64) throw lineError(line, `prefix of ${text.length} characters: at most 64`);
    map.record(line);
    ready.push(text);
  };
  const fill = async (): Promise<void> => {
    ready = [];
    next = 0;
    while (ready.length === 0 && !ended) {
      const step = await source.next();
      if (step.done === true) {
        ended = true;
        const rest = carry + decoder.end();
        carry = '';
        if (rest !== '') take(rest);
        return;
      }
      const chunk = step.value;
      bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      if (bytes > limit)
        throw new ApiError('API_BODY_TOO_LARGE', `set body exceeds ${limit} bytes`, {
          members: { limit },
        });
      const text = carry + (typeof chunk === 'string' ? chunk : decoder.write(chunk));
      let start = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
        take(text.slice(start, nl));
        start = nl + 1;
      }
      carry = text.slice(start);
      if (carry.length > 4096) throw lineError(line + 1, 'longer than 4096 characters');
    }
  };
  const iterator: AsyncIterableIterator<string> = {
    [Symbol.asyncIterator]: () => iterator,
    next: async (): Promise<IteratorResult<string>> => {
      if (next < ready.length) return { value: ready[next++], done: false };
      try {
        await fill();
      } catch (err: unknown) {
        map.failure = err;
        ended = true;
        throw err;
      }
      if (next < ready.length) return { value: ready[next++], done: false };
      return { value: undefined, done: true };
    },
    return: async (): Promise<IteratorResult<string>> => {
      ended = true;
      await source.return?.();
      return { value: undefined, done: true };
    },
  };
  return iterator;
}
