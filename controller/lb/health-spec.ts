// Health-check specs of the L4 load balancer: the text form users type (`sluice lb backend add
// 10.0.0.100:80 10.1.0.11 --check http:/healthz`), the object form of the API, and the normalised
// CheckSpec that HealthChecker (health.ts) runs. Pure data: nothing here opens a socket.
//
// The text form is a user contract:
//
//   spec     = probe *(" " option)
//   probe    = "tcp" [":" port]                          TCP connect succeeds
//            | ("http" | "https") ":" [port] path ["#" status]
//                                                        GET path; the status is in range
//            | "udp:" [port] ":" payload [":" expect]    a reply (starting with expect) comes
//            | "icmp"                                    an echo reply comes (runs `ping`)
//   status   = code ["-" code]                           100-599; default 200-399
//   option   = "interval=" duration | "timeout=" duration | "rise=" count | "fall=" count
//   duration = digits ["." digits] ("ms" | "s")          "2s", "500ms", "1.5s"
//
// - A port left out means the target's own port (the service's), which the checker takes from
//   the target it probes; the spec keeps it out, so the text round-trips as written.
// - path: printable ASCII without spaces or "#" (percent-encode the rest); a query may follow.
// - payload, expect: text where \xHH, \n, \r, \t and \\ are escapes. In the text form ":" and
//   spaces must be written \x3a and \x20. CheckSpec holds both in one canonical escaped form
//   (printable ASCII as is; "\", ":", spaces and other bytes escaped), whichever form they came
//   in, so specs compare and format alike; payloadBytes() turns it into the bytes sent.
// - https does not verify the backend's certificate: backends mostly have self-signed ones, and
//   the check asks whether the server answers, not who it is.
// - Options, each at most once: interval (default 2s, 10ms to 3600s), timeout (default 1s, 10ms
//   up to the interval), rise (default 2) and fall (default 3), whole numbers from 1 to 100. The
//   timeout may not exceed the interval: the load balancer relies on a stopped server being
//   marked down within fall × interval + timeout, which a probe outlasting its interval would
//   break. A timeout left out is the default timeout or the interval, whichever is shorter.
//
// Errors are CheckSpecInvalidError (LB_HEALTH_CHECK_INVALID), naming the part at fault:
// `check "http:healthz": the path must start with "/"`.
import { CheckSpecInvalidError, type CheckSpecField } from './health-errors.js';

/** What a check probes. */
export type CheckType = 'tcp' | 'http' | 'https' | 'udp' | 'icmp';

/** The check types, in the order error messages list them. */
export const CHECK_TYPES: readonly CheckType[] = ['tcp', 'http', 'https', 'udp', 'icmp'];

/** HTTP statuses that count as a success, both ends included. */
export interface StatusRange {
  min: number;
  max: number;
}

/** When and how often a check runs; durations in milliseconds. */
export interface CheckTiming {
  /** Time between the starts of two probes. */
  interval: number;
  /** Longest a probe may take before it counts as a failure; never more than `interval`. */
  timeout: number;
  /** Consecutive successes that make a target 'up'. */
  rise: number;
  /** Consecutive failures that make a target 'down'. */
  fall: number;
}

/** Defaults for the options a spec leaves out (the built-in ones where these leave out too). */
export type CheckDefaults = Partial<CheckTiming>;

/** The built-in defaults: interval 2 s, timeout 1 s, rise 2, fall 3. */
export const CHECK_DEFAULTS: Readonly<CheckTiming> = Object.freeze({
  interval: 2000,
  timeout: 1000,
  rise: 2,
  fall: 3,
});

/** Bounds of the options (milliseconds, counts). */
export const CHECK_LIMITS = Object.freeze({
  minInterval: 10,
  maxInterval: 3_600_000,
  minTimeout: 10,
  minCount: 1,
  maxCount: 100,
});

/** TCP connect succeeds. `port` left out: the target's port. */
export interface TcpCheckSpec extends CheckTiming {
  type: 'tcp';
  port?: number;
}

/** GET `path` (Host: the target's address) answers a status within `status`. */
export interface HttpCheckSpec extends CheckTiming {
  type: 'http' | 'https';
  port?: number;
  path: string;
  status: StatusRange;
}

/** `payload` sent in one datagram gets a reply, one starting with `expect` when given. */
export interface UdpCheckSpec extends CheckTiming {
  type: 'udp';
  port?: number;
  /** Canonical escaped text (see the file header); payloadBytes() gives the bytes. */
  payload: string;
  /** Canonical escaped text; absent: any reply will do. */
  expect?: string;
}

/** One ICMP echo request gets a reply. */
export interface IcmpCheckSpec extends CheckTiming {
  type: 'icmp';
}

/** A normalised check: every option filled in, payloads canonical. Plain data (JSON-safe). */
export type CheckSpec = TcpCheckSpec | HttpCheckSpec | UdpCheckSpec | IcmpCheckSpec;

/** The API's object form; the same rules as the text, durations in ms or as text ("2s"). */
export interface CheckSpecObject {
  type: string;
  port?: number;
  path?: string;
  /** 200, "200-299" or { min, max }. */
  status?: number | string | StatusRange;
  /** Text with escapes; ":" and spaces may appear as they are. */
  payload?: string;
  expect?: string;
  interval?: number | string;
  timeout?: number | string;
  rise?: number;
  fall?: number;
}

const DEFAULT_STATUS: Readonly<StatusRange> = Object.freeze({ min: 200, max: 399 });
const TYPE_LIST = 'tcp, http, https, udp or icmp';
const OBJECT_FIELDS = [
  'type',
  'port',
  'path',
  'status',
  'payload',
  'expect',
  'interval',
  'timeout',
  'rise',
  'fall',
] as const;
const TIMING_FIELDS = ['interval', 'timeout', 'rise', 'fall'] as const;
/** Which object fields each type takes besides type and the timing options. */
const TYPE_FIELDS: Record<CheckType, readonly string[]> = {
  tcp: ['port'],
  http: ['port', 'path', 'status'],
  https: ['port', 'path', 'status'],
  udp: ['port', 'payload', 'expect'],
  icmp: [],
};

type Fail = (field: CheckSpecField, message: string) => CheckSpecInvalidError;

/**
 * Parses a check from its text form (the CLI's `--check`) or its object form (the API), filling
 * in left-out options from `defaults`, then from CHECK_DEFAULTS.
 * Throws CheckSpecInvalidError naming the part at fault.
 */
export function parseCheckSpec(
  input: string | CheckSpecObject,
  defaults: CheckDefaults = {},
): CheckSpec {
  if (typeof input === 'string') return parseText(input, defaults);
  return parseObject(input, defaults);
}

/**
 * The text form of a spec, with the options that differ from `defaults` (then CHECK_DEFAULTS):
 * parseCheckSpec(formatCheckSpec(spec, d), d) equals spec.
 */
export function formatCheckSpec(spec: CheckSpec, defaults: CheckDefaults = {}): string {
  const d = resolveDefaults(defaults);
  let text: string;
  const port = spec.type !== 'icmp' && spec.port !== undefined ? String(spec.port) : '';
  switch (spec.type) {
    case 'tcp':
      text = port === '' ? 'tcp' : `tcp:${port}`;
      break;
    case 'http':
    case 'https': {
      const status = sameStatus(spec.status, DEFAULT_STATUS) ? '' : `#${formatStatus(spec.status)}`;
      text = `${spec.type}:${port}${spec.path}${status}`;
      break;
    }
    case 'udp':
      text = `udp:${port}:${spec.payload}${spec.expect !== undefined ? `:${spec.expect}` : ''}`;
      break;
    case 'icmp':
      text = 'icmp';
      break;
  }
  const options: string[] = [];
  if (spec.interval !== d.interval) options.push(`interval=${formatDuration(spec.interval)}`);
  if (spec.timeout !== Math.min(d.timeout, spec.interval))
    options.push(`timeout=${formatDuration(spec.timeout)}`);
  if (spec.rise !== d.rise) options.push(`rise=${spec.rise}`);
  if (spec.fall !== d.fall) options.push(`fall=${spec.fall}`);
  return [text, ...options].join(' ');
}

/** "200" for a single status, else "200-399". */
export function formatStatus(range: StatusRange): string {
  return range.min === range.max ? String(range.min) : `${range.min}-${range.max}`;
}

/** "2s" when whole seconds, else "500ms". */
export function formatDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * The bytes of a payload or expected reply (CheckSpec's `payload`, `expect`). Throws
 * CheckSpecInvalidError when the text has a bad escape (never for a spec parseCheckSpec made).
 */
export function payloadBytes(text: string): Buffer {
  const decoded = decodeText(text);
  if (typeof decoded === 'string') {
    throw new CheckSpecInvalidError(`payload ${JSON.stringify(text)} ${decoded}`, {
      check: text,
      field: 'payload',
    });
  }
  return decoded;
}

/** Bytes in the canonical escaped form: printable ASCII as is; "\", ":", space and the rest escaped. */
export function escapeBytes(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) {
    if (b === 0x5c) out += '\\\\';
    else if (b === 0x0a) out += '\\n';
    else if (b === 0x0d) out += '\\r';
    else if (b === 0x09) out += '\\t';
    else if (b > 0x20 && b < 0x7f && b !== 0x3a) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

function failFor(check: string, isObject: boolean): Fail {
  const shown = isObject ? check : `"${check}"`;
  return (field, message) =>
    new CheckSpecInvalidError(`check ${shown}: ${message}`, { check, field });
}

function parseText(text: string, defaults: CheckDefaults): CheckSpec {
  const fail = failFor(text, false);
  const words = text.trim().split(/\s+/);
  const probe = words[0];
  if (probe === '') throw fail('type', `the check is empty; expected ${TYPE_LIST}`);
  const colon = probe.indexOf(':');
  const type = colon < 0 ? probe : probe.slice(0, colon);
  const rest = colon < 0 ? undefined : probe.slice(colon + 1);
  const timing = (): CheckTiming =>
    resolveTiming(parseOptions(words.slice(1), fail), defaults, fail);

  switch (type) {
    case 'tcp': {
      const port = portField(rest === undefined ? undefined : toPort(rest, fail));
      return { type, ...port, ...timing() };
    }
    case 'http':
    case 'https':
      return { type, ...parseHttpText(type, rest, fail), ...timing() };
    case 'udp':
      return { type, ...parseUdpText(rest, fail), ...timing() };
    case 'icmp':
      if (rest !== undefined) throw fail('port', 'icmp takes no port');
      return { type, ...timing() };
    default:
      throw fail('type', `unknown check type ${JSON.stringify(type)}; expected ${TYPE_LIST}`);
  }
}

function parseHttpText(
  type: 'http' | 'https',
  rest: string | undefined,
  fail: Fail,
): { port?: number; path: string; status: StatusRange } {
  const example = `e.g. "${type}:/healthz"`;
  if (rest === undefined || rest === '') throw fail('path', `${type} needs a path, ${example}`);
  const hash = rest.indexOf('#');
  const target = hash < 0 ? rest : rest.slice(0, hash);
  const slash = target.indexOf('/');
  const before = slash < 0 ? target : target.slice(0, slash);
  if (slash !== 0 && !/^\d+$/.test(before)) throw fail('path', 'the path must start with "/"');
  if (slash < 0) {
    throw fail('path', `${type} needs a path after the port, e.g. "${type}:${before}/healthz"`);
  }
  const port = slash === 0 ? undefined : toPort(before, fail);
  const path = toPath(target.slice(slash), fail);
  const status = hash < 0 ? { ...DEFAULT_STATUS } : toStatus(rest.slice(hash + 1), fail);
  return { ...portField(port), path, status };
}

function parseUdpText(
  rest: string | undefined,
  fail: Fail,
): { port?: number; payload: string; expect?: string } {
  if (rest === undefined) {
    throw fail('payload', 'udp needs a port and a payload, e.g. "udp:53:PING"');
  }
  const parts = rest.split(':');
  if (parts.length === 1) {
    throw fail('payload', `udp needs a payload after the port, e.g. "udp:${parts[0]}:PING"`);
  }
  if (parts.length > 3) {
    throw fail('payload', 'udp takes PORT:PAYLOAD[:EXPECT]; write ":" in the payload as \\x3a');
  }
  const port = parts[0] === '' ? undefined : toPort(parts[0], fail);
  const payload = toPayload('payload', parts[1], fail);
  const expect = parts.length === 3 ? toPayload('expect', parts[2], fail) : undefined;
  return { ...portField(port), payload, ...(expect !== undefined ? { expect } : {}) };
}

function parseOptions(words: string[], fail: Fail): Partial<Record<string, string>> {
  const options: Partial<Record<string, string>> = {};
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq <= 0) {
      throw fail('options', `expected an option such as interval=2s, not ${JSON.stringify(word)}`);
    }
    const name = word.slice(0, eq);
    if (!(TIMING_FIELDS as readonly string[]).includes(name)) {
      throw fail(
        'options',
        `unknown option ${JSON.stringify(name)}; expected interval, timeout, rise or fall`,
      );
    }
    if (options[name] !== undefined) {
      throw fail(name as CheckSpecField, `the option "${name}" is given twice`);
    }
    options[name] = word.slice(eq + 1);
  }
  return options;
}

function parseObject(input: CheckSpecObject, defaults: CheckDefaults): CheckSpec {
  const raw: unknown = input;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw failFor(String(JSON.stringify(raw)), true)('type', 'a check must be a text or an object');
  }
  const fail = failFor(JSON.stringify(raw), true);
  const obj = raw as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!(OBJECT_FIELDS as readonly string[]).includes(key)) {
      throw fail(
        'options',
        `unknown field ${JSON.stringify(key)}; expected ${OBJECT_FIELDS.join(', ')}`,
      );
    }
  }
  const type = obj.type;
  if (typeof type !== 'string' || !(CHECK_TYPES as readonly string[]).includes(type)) {
    throw fail('type', `unknown check type ${JSON.stringify(type)}; expected ${TYPE_LIST}`);
  }
  const checkType = type as CheckType;
  for (const key of OBJECT_FIELDS) {
    if (key === 'type' || (TIMING_FIELDS as readonly string[]).includes(key)) continue;
    if (obj[key] !== undefined && !TYPE_FIELDS[checkType].includes(key)) {
      throw fail(key, `${checkType} takes no ${key}`);
    }
  }
  const timing = resolveTiming(
    { interval: obj.interval, timeout: obj.timeout, rise: obj.rise, fall: obj.fall },
    defaults,
    fail,
  );
  const port = obj.port === undefined ? {} : portField(toPort(obj.port, fail));

  switch (checkType) {
    case 'tcp':
      return { type: checkType, ...port, ...timing };
    case 'http':
    case 'https': {
      if (obj.path === undefined) throw fail('path', `${checkType} needs a path, e.g. "/healthz"`);
      if (typeof obj.path !== 'string' || !obj.path.startsWith('/')) {
        throw fail('path', 'the path must start with "/"');
      }
      const status = obj.status === undefined ? { ...DEFAULT_STATUS } : toStatus(obj.status, fail);
      return { type: checkType, ...port, path: toPath(obj.path, fail), status, ...timing };
    }
    case 'udp': {
      if (obj.payload === undefined) throw fail('payload', 'udp needs a payload, e.g. "PING"');
      const payload = toPayload('payload', obj.payload, fail);
      const expect = obj.expect === undefined ? undefined : toPayload('expect', obj.expect, fail);
      return {
        type: checkType,
        ...port,
        payload,
        ...(expect !== undefined ? { expect } : {}),
        ...timing,
      };
    }
    case 'icmp':
      return { type: checkType, ...timing };
  }
}

function portField(port: number | undefined): { port?: number } {
  return port === undefined ? {} : { port };
}

function toPort(value: unknown, fail: Fail): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) {
    throw fail('port', `the port must be a number from 1 to 65535, not ${JSON.stringify(value)}`);
  }
  return n;
}

function toPath(path: string, fail: Fail): string {
  if (!/^\/[\x21-\x22\x24-\x7e]*$/.test(path)) {
    throw fail(
      'path',
      `the path may hold only printable ASCII without spaces or "#" (percent-encode the rest), ` +
        `not ${JSON.stringify(path)}`,
    );
  }
  return path;
}

function toStatus(value: unknown, fail: Fail): StatusRange {
  let min: unknown;
  let max: unknown;
  if (typeof value === 'number') {
    min = max = value;
  } else if (typeof value === 'string') {
    const m = /^(\d+)(?:-(\d+))?$/.exec(value);
    if (m) {
      min = Number(m[1]);
      max = m[2] === undefined ? min : Number(m[2]);
    }
  } else if (typeof value === 'object' && value !== null) {
    ({ min, max } = value as Record<string, unknown>);
  }
  const isCode = (n: unknown): n is number =>
    typeof n === 'number' && Number.isInteger(n) && n >= 100 && n <= 599;
  if (!isCode(min) || !isCode(max)) {
    throw fail(
      'status',
      'the status must be a code from 100 to 599 or a range such as 200-299, ' +
        `not ${JSON.stringify(value)}`,
    );
  }
  if (min > max) {
    throw fail('status', `the status range must run from low to high, not "${min}-${max}"`);
  }
  return { min, max };
}

function sameStatus(a: StatusRange, b: StatusRange): boolean {
  return a.min === b.min && a.max === b.max;
}

/** Canonical escaped text for a payload or an expected reply. */
function toPayload(field: 'payload' | 'expect', value: unknown, fail: Fail): string {
  const what = field === 'payload' ? 'the payload' : 'the expected reply';
  if (typeof value !== 'string') throw fail(field, `${what} must be text`);
  if (value === '') {
    throw fail(
      field,
      field === 'payload'
        ? 'the payload is empty'
        : 'the expected reply is empty; leave it out to accept any reply',
    );
  }
  const decoded = decodeText(value);
  if (typeof decoded === 'string') throw fail(field, `${what} ${decoded}`);
  return escapeBytes(decoded);
}

/** Decodes escaped text to bytes (non-ASCII as UTF-8); a string says what is wrong with it. */
function decodeText(text: string): Buffer | string {
  const bytes: number[] = [];
  const help = 'use \\xHH, \\n, \\r, \\t or \\\\';
  const simple: Record<string, number> = { n: 0x0a, r: 0x0d, t: 0x09, '\\': 0x5c };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== '\\') {
      bytes.push(...Buffer.from(c, 'utf8'));
      continue;
    }
    const next = text[i + 1];
    if (next === 'x') {
      const hex = text.slice(i + 2, i + 4);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
        return `has a bad escape "\\x${hex}" (\\x needs two hex digits)`;
      }
      bytes.push(parseInt(hex, 16));
      i += 3;
      continue;
    }
    if (next === undefined) return `ends with a lone "\\"; ${help}`;
    if (simple[next] === undefined) return `has a bad escape "\\${next}"; ${help}`;
    bytes.push(simple[next]);
    i += 1;
  }
  return Buffer.from(bytes);
}

function resolveDefaults(defaults: CheckDefaults): CheckTiming {
  return {
    interval: defaults.interval ?? CHECK_DEFAULTS.interval,
    timeout: defaults.timeout ?? CHECK_DEFAULTS.timeout,
    rise: defaults.rise ?? CHECK_DEFAULTS.rise,
    fall: defaults.fall ?? CHECK_DEFAULTS.fall,
  };
}

/** Validates the given options (text or numbers) and fills in the rest. */
function resolveTiming(
  given: Partial<Record<'interval' | 'timeout' | 'rise' | 'fall', unknown>>,
  defaults: CheckDefaults,
  fail: Fail,
): CheckTiming {
  const d = resolveDefaults(defaults);
  const { minInterval, maxInterval, minTimeout } = CHECK_LIMITS;
  const interval =
    given.interval === undefined
      ? d.interval
      : toDuration('interval', given.interval, minInterval, maxInterval, fail);
  const timeout =
    given.timeout === undefined
      ? Math.min(d.timeout, interval)
      : toDuration('timeout', given.timeout, minTimeout, maxInterval, fail);
  if (timeout > interval) {
    throw fail(
      'timeout',
      `the timeout (${formatDuration(timeout)}) must not exceed the interval ` +
        `(${formatDuration(interval)})`,
    );
  }
  const rise = given.rise === undefined ? d.rise : toCount('rise', given.rise, fail);
  const fall = given.fall === undefined ? d.fall : toCount('fall', given.fall, fail);
  return { interval, timeout, rise, fall };
}

function toDuration(
  name: 'interval' | 'timeout',
  value: unknown,
  min: number,
  max: number,
  fail: Fail,
): number {
  let ms: number | undefined;
  if (typeof value === 'number') {
    ms = Number.isInteger(value) ? value : undefined;
  } else if (typeof value === 'string') {
    const m = /^(\d+)(?:\.(\d+))?(ms|s)$/.exec(value);
    if (m && m[3] === 's' && (m[2] ?? '').length <= 3) {
      ms = Number(m[1]) * 1000 + Number((m[2] ?? '').padEnd(3, '0'));
    } else if (m && m[3] === 'ms' && m[2] === undefined) {
      ms = Number(m[1]);
    }
  }
  if (ms === undefined) {
    throw fail(
      name,
      `the ${name} must be a duration such as 2s or 500ms, not ${JSON.stringify(value)}`,
    );
  }
  if (ms < min || ms > max) {
    throw fail(
      name,
      `the ${name} must be from ${formatDuration(min)} to ${formatDuration(max)}, ` +
        `not ${JSON.stringify(value)}`,
    );
  }
  return ms;
}

function toCount(name: 'rise' | 'fall', value: unknown, fail: Fail): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  const { minCount, maxCount } = CHECK_LIMITS;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < minCount || n > maxCount) {
    throw fail(
      name,
      `${name} must be a whole number from ${minCount} to ${maxCount}, not ${JSON.stringify(value)}`,
    );
  }
  return n;
}
