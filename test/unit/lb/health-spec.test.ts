// Health-check specs (controller/lb/health-spec.ts): the text and object forms, defaults, formatting and every error.
import { describe, expect, it } from 'vitest';

import { CheckSpecInvalidError } from '../../../controller/lb/health-errors.js';
import {
  CHECK_DEFAULTS,
  formatCheckSpec,
  parseCheckSpec,
  payloadBytes,
  type CheckDefaults,
  type CheckSpecObject,
} from '../../../controller/lb/health-spec.js';

const timing = { interval: 2000, timeout: 1000, rise: 2, fall: 3 };

/** "field: message" of the error parseCheckSpec throws, one line per input. */
function errors(inputs: (string | CheckSpecObject)[], defaults?: CheckDefaults): string {
  return inputs
    .map((input) => {
      try {
        parseCheckSpec(input, defaults);
      } catch (error: unknown) {
        if (!(error instanceof CheckSpecInvalidError)) throw error;
        return `${error.field}: ${error.message}`;
      }
      throw new Error(`${JSON.stringify(input)} parsed`);
    })
    .join('\n');
}

describe('parseCheckSpec (text)', () => {
  it('parses tcp with and without a port', () => {
    expect(parseCheckSpec('tcp')).toEqual({ type: 'tcp', ...timing });
    expect(parseCheckSpec('tcp:8080')).toEqual({ type: 'tcp', port: 8080, ...timing });
    expect(parseCheckSpec('tcp')).not.toHaveProperty('port');
  });

  it('parses http and https paths, ports and statuses, defaulting to 200-399', () => {
    expect(parseCheckSpec('http:/healthz')).toEqual({
      type: 'http',
      path: '/healthz',
      status: { min: 200, max: 399 },
      ...timing,
    });
    expect(parseCheckSpec('https:8443/ready?full=1#204')).toEqual({
      type: 'https',
      port: 8443,
      path: '/ready?full=1',
      status: { min: 204, max: 204 },
      ...timing,
    });
    expect(parseCheckSpec('http:/#200-299')).toMatchObject({
      path: '/',
      status: { min: 200, max: 299 },
    });
  });

  it('parses udp payloads and expected replies into one canonical escaped form', () => {
    expect(parseCheckSpec('udp:53:PING')).toEqual({
      type: 'udp',
      port: 53,
      payload: 'PING',
      ...timing,
    });
    expect(parseCheckSpec('udp::\\x50ING\\x0a\\x3a\\x20\\xFF:PO\\x4eG')).toEqual({
      type: 'udp',
      payload: 'PING\\n\\x3a\\x20\\xff',
      expect: 'PONG',
      ...timing,
    });
    expect(parseCheckSpec('udp:7:a\\\\b\\r\\t\\x00')).toMatchObject({
      payload: 'a\\\\b\\r\\t\\x00',
    });
  });

  it('turns a canonical payload into its bytes, non-ASCII text as UTF-8', () => {
    expect(payloadBytes('PING\\n\\x3a\\x20\\xff')).toEqual(
      Buffer.from([0x50, 0x49, 0x4e, 0x47, 0x0a, 0x3a, 0x20, 0xff]),
    );
    const spec = parseCheckSpec({ type: 'udp', payload: 'é:ok now' });
    expect(spec).toMatchObject({ payload: '\\xc3\\xa9\\x3aok\\x20now' });
    expect(payloadBytes((spec as { payload: string }).payload).toString()).toBe('é:ok now');
  });

  it('parses icmp', () => {
    expect(parseCheckSpec('icmp')).toEqual({ type: 'icmp', ...timing });
  });

  it('parses options after the probe, in any order', () => {
    expect(parseCheckSpec('tcp fall=5 interval=1.5s rise=1 timeout=250ms')).toEqual({
      type: 'tcp',
      interval: 1500,
      timeout: 250,
      rise: 1,
      fall: 5,
    });
    expect(parseCheckSpec('  icmp   interval=10ms  ')).toMatchObject({ interval: 10 });
  });

  it('takes the defaults given, then the built-in ones: interval 2s, timeout 1s, rise 2, fall 3', () => {
    expect(CHECK_DEFAULTS).toEqual(timing);
    expect(parseCheckSpec('tcp', { interval: 5000, rise: 1 })).toEqual({
      type: 'tcp',
      interval: 5000,
      timeout: 1000,
      rise: 1,
      fall: 3,
    });
    expect(parseCheckSpec('tcp rise=4', { rise: 1, fall: undefined })).toMatchObject({
      rise: 4,
      fall: 3,
    });
  });

  it('shortens a left-out timeout to the interval', () => {
    expect(parseCheckSpec('tcp interval=300ms')).toMatchObject({ interval: 300, timeout: 300 });
    expect(parseCheckSpec('tcp', { interval: 50, timeout: 80 })).toMatchObject({
      interval: 50,
      timeout: 50,
    });
  });
});

describe('parseCheckSpec (object)', () => {
  it('parses the API object form to the same spec as the text form', () => {
    expect(
      parseCheckSpec({ type: 'https', port: 8443, path: '/ready', status: '200-299' }),
    ).toEqual(parseCheckSpec('https:8443/ready#200-299'));
    expect(parseCheckSpec({ type: 'http', path: '/', status: 204 })).toEqual(
      parseCheckSpec('http:/#204'),
    );
    expect(parseCheckSpec({ type: 'http', path: '/', status: { min: 200, max: 204 } })).toEqual(
      parseCheckSpec('http:/#200-204'),
    );
    expect(
      parseCheckSpec({ type: 'udp', port: 53, payload: 'PING', expect: 'PONG', rise: 1 }),
    ).toEqual(parseCheckSpec('udp:53:PING:PONG rise=1'));
    expect(parseCheckSpec({ type: 'icmp', interval: 500, timeout: '200ms', fall: 2 })).toEqual(
      parseCheckSpec('icmp interval=500ms timeout=200ms fall=2'),
    );
    expect(parseCheckSpec({ type: 'tcp', interval: '1s' }, { timeout: 3000 })).toEqual({
      type: 'tcp',
      interval: 1000,
      timeout: 1000,
      rise: 2,
      fall: 3,
    });
  });
});

describe('formatCheckSpec', () => {
  const canonical = [
    'tcp',
    'tcp:8080',
    'http:/healthz',
    'http:8080/healthz',
    'https:/ready?full=1#204',
    'https:8443/#200-299',
    'udp:53:PING',
    'udp::PING\\n\\x3a\\x20:PONG',
    'icmp',
    'tcp interval=500ms',
    'tcp interval=500ms timeout=100ms',
    'http:/x#500 interval=1500ms rise=1 fall=10',
    'icmp timeout=20ms',
  ];

  it('gives canonical text back as it was written', () => {
    expect(canonical.map((text) => formatCheckSpec(parseCheckSpec(text)))).toEqual(canonical);
  });

  it('writes what parses back to the same spec, for other defaults too', () => {
    const defaultsList: CheckDefaults[] = [{}, { interval: 500, timeout: 200, rise: 1, fall: 5 }];
    for (const defaults of defaultsList) {
      for (const text of canonical) {
        const spec = parseCheckSpec(text, defaults);
        expect(parseCheckSpec(formatCheckSpec(spec, defaults), defaults)).toEqual(spec);
        expect(parseCheckSpec(formatCheckSpec(spec), {})).toEqual(spec);
      }
    }
  });

  it('writes canonical text for other spellings', () => {
    expect(
      [
        'http:/x#200-399',
        'http:/x#204-204',
        'udp:1:\\x41\\x42',
        'tcp interval=2s timeout=1000ms rise=2 fall=3',
        'tcp interval=0.5s',
        'tcp interval=1s',
        'tcp interval=500ms timeout=500ms',
      ].flatMap((text) => {
        try {
          return [formatCheckSpec(parseCheckSpec(text))];
        } catch {
          return [`(${text} does not parse)`];
        }
      }),
    ).toMatchInlineSnapshot(`
      [
        "http:/x",
        "http:/x#204",
        "udp:1:AB",
        "tcp",
        "tcp interval=500ms",
        "tcp interval=1s",
        "tcp interval=500ms",
      ]
    `);
  });

  it('escapes ":" and spaces of an object payload so the text parses back', () => {
    const spec = parseCheckSpec({ type: 'udp', payload: 'GET a:b\r\n', expect: 'OK 1' });
    const text = formatCheckSpec(spec);
    expect(text).toBe('udp::GET\\x20a\\x3ab\\r\\n:OK\\x201');
    expect(parseCheckSpec(text)).toEqual(spec);
  });
});

describe('errors', () => {
  it('names the check, the code and the field', () => {
    let caught: unknown;
    try {
      parseCheckSpec('http:healthz');
    } catch (error: unknown) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(CheckSpecInvalidError);
    expect(caught).toMatchObject({
      name: 'CheckSpecInvalidError',
      code: 'LB_HEALTH_CHECK_INVALID',
      check: 'http:healthz',
      field: 'path',
      message: 'check "http:healthz": the path must start with "/"',
    });
  });

  it('rejects an empty check and unknown types', () => {
    expect(errors(['', '   ', 'smtp:25', 'HTTP:/x', ':80', 'tcp80'])).toMatchInlineSnapshot(`
      "type: check "": the check is empty; expected tcp, http, https, udp or icmp
      type: check "   ": the check is empty; expected tcp, http, https, udp or icmp
      type: check "smtp:25": unknown check type "smtp"; expected tcp, http, https, udp or icmp
      type: check "HTTP:/x": unknown check type "HTTP"; expected tcp, http, https, udp or icmp
      type: check ":80": unknown check type ""; expected tcp, http, https, udp or icmp
      type: check "tcp80": unknown check type "tcp80"; expected tcp, http, https, udp or icmp"
    `);
  });

  it('rejects bad ports', () => {
    expect(
      errors(['tcp:', 'tcp:0', 'tcp:65536', 'tcp:http', 'tcp:80:1', 'http:99999/x', 'udp:x:P']),
    ).toMatchInlineSnapshot(`
      "port: check "tcp:": the port must be a number from 1 to 65535, not ""
      port: check "tcp:0": the port must be a number from 1 to 65535, not "0"
      port: check "tcp:65536": the port must be a number from 1 to 65535, not "65536"
      port: check "tcp:http": the port must be a number from 1 to 65535, not "http"
      port: check "tcp:80:1": the port must be a number from 1 to 65535, not "80:1"
      port: check "http:99999/x": the port must be a number from 1 to 65535, not "99999"
      port: check "udp:x:P": the port must be a number from 1 to 65535, not "x""
    `);
  });

  it('rejects http paths that are missing, relative or not printable ASCII', () => {
    expect(
      errors([
        'http',
        'http:',
        'https:8443',
        'http:healthz',
        'http:healthz/live',
        'http:#200',
        'http:/é',
        'http:/a\u0001',
      ]),
    ).toMatchInlineSnapshot(`
      "path: check "http": http needs a path, e.g. "http:/healthz"
      path: check "http:": http needs a path, e.g. "http:/healthz"
      path: check "https:8443": https needs a path after the port, e.g. "https:8443/healthz"
      path: check "http:healthz": the path must start with "/"
      path: check "http:healthz/live": the path must start with "/"
      path: check "http:#200": the path must start with "/"
      path: check "http:/é": the path may hold only printable ASCII without spaces or "#" (percent-encode the rest), not "/é"
      path: check "http:/a": the path may hold only printable ASCII without spaces or "#" (percent-encode the rest), not "/a\\u0001""
    `);
  });

  it('rejects bad statuses', () => {
    expect(
      errors(['http:/#', 'http:/#ok', 'http:/#99', 'http:/#600', 'http:/#300-200', 'http:/#2-3-4']),
    ).toMatchInlineSnapshot(`
      "status: check "http:/#": the status must be a code from 100 to 599 or a range such as 200-299, not ""
      status: check "http:/#ok": the status must be a code from 100 to 599 or a range such as 200-299, not "ok"
      status: check "http:/#99": the status must be a code from 100 to 599 or a range such as 200-299, not "99"
      status: check "http:/#600": the status must be a code from 100 to 599 or a range such as 200-299, not "600"
      status: check "http:/#300-200": the status range must run from low to high, not "300-200"
      status: check "http:/#2-3-4": the status must be a code from 100 to 599 or a range such as 200-299, not "2-3-4""
    `);
  });

  it('rejects udp without a payload, empty parts, bad escapes and stray colons', () => {
    expect(
      errors([
        'udp',
        'udp:53',
        'udp:53:',
        'udp:53:PING:',
        'udp:53:a:b:c',
        'udp:53:\\x4',
        'udp:53:\\q',
        'udp:53:P\\',
        'udp:53:P:\\xZZ',
      ]),
    ).toMatchInlineSnapshot(`
      "payload: check "udp": udp needs a port and a payload, e.g. "udp:53:PING"
      payload: check "udp:53": udp needs a payload after the port, e.g. "udp:53:PING"
      payload: check "udp:53:": the payload is empty
      expect: check "udp:53:PING:": the expected reply is empty; leave it out to accept any reply
      payload: check "udp:53:a:b:c": udp takes PORT:PAYLOAD[:EXPECT]; write ":" in the payload as \\x3a
      payload: check "udp:53:\\x4": the payload has a bad escape "\\x4" (\\x needs two hex digits)
      payload: check "udp:53:\\q": the payload has a bad escape "\\q"; use \\xHH, \\n, \\r, \\t or \\\\
      payload: check "udp:53:P\\": the payload ends with a lone "\\"; use \\xHH, \\n, \\r, \\t or \\\\
      expect: check "udp:53:P:\\xZZ": the expected reply has a bad escape "\\xZZ" (\\x needs two hex digits)"
    `);
  });

  it('rejects icmp with a port', () => {
    expect(errors(['icmp:80', 'icmp:'])).toMatchInlineSnapshot(`
      "port: check "icmp:80": icmp takes no port
      port: check "icmp:": icmp takes no port"
    `);
  });

  it('rejects unknown, repeated and malformed options', () => {
    expect(
      errors([
        'tcp interval',
        'tcp =2s',
        'tcp every=2s',
        'tcp rise=1 rise=2',
        'tcp interval=2',
        'tcp interval=2m',
        'tcp interval=1.0001s',
        'tcp interval=1.5ms',
        'tcp interval=5ms',
        'tcp interval=3601s',
        'tcp timeout=5ms',
        'tcp timeout=3s',
        'tcp interval=1s timeout=1001ms',
        'tcp rise=0',
        'tcp fall=101',
        'tcp fall=two',
      ]),
    ).toMatchInlineSnapshot(`
      "options: check "tcp interval": expected an option such as interval=2s, not "interval"
      options: check "tcp =2s": expected an option such as interval=2s, not "=2s"
      options: check "tcp every=2s": unknown option "every"; expected interval, timeout, rise or fall
      rise: check "tcp rise=1 rise=2": the option "rise" is given twice
      interval: check "tcp interval=2": the interval must be a duration such as 2s or 500ms, not "2"
      interval: check "tcp interval=2m": the interval must be a duration such as 2s or 500ms, not "2m"
      interval: check "tcp interval=1.0001s": the interval must be a duration such as 2s or 500ms, not "1.0001s"
      interval: check "tcp interval=1.5ms": the interval must be a duration such as 2s or 500ms, not "1.5ms"
      interval: check "tcp interval=5ms": the interval must be from 10ms to 3600s, not "5ms"
      interval: check "tcp interval=3601s": the interval must be from 10ms to 3600s, not "3601s"
      timeout: check "tcp timeout=5ms": the timeout must be from 10ms to 3600s, not "5ms"
      timeout: check "tcp timeout=3s": the timeout (3s) must not exceed the interval (2s)
      timeout: check "tcp interval=1s timeout=1001ms": the timeout (1001ms) must not exceed the interval (1s)
      rise: check "tcp rise=0": rise must be a whole number from 1 to 100, not "0"
      fall: check "tcp fall=101": fall must be a whole number from 1 to 100, not "101"
      fall: check "tcp fall=two": fall must be a whole number from 1 to 100, not "two""
    `);
  });

  it('rejects a timeout longer than the interval the defaults give', () => {
    expect(errors(['tcp timeout=900ms'], { interval: 500 })).toMatchInlineSnapshot(
      `"timeout: check "tcp timeout=900ms": the timeout (900ms) must not exceed the interval (500ms)"`,
    );
  });

  it('rejects bad objects, quoting them as JSON', () => {
    expect(
      errors([
        null as unknown as CheckSpecObject,
        ['tcp'] as unknown as CheckSpecObject,
        { type: 'smtp' },
        { type: 'tcp', colour: 'red' } as CheckSpecObject,
        { type: 'tcp', path: '/x' },
        { type: 'icmp', port: 80 },
        { type: 'udp', port: 53, payload: 'P', status: 200 },
        { type: 'tcp', port: 80.5 },
        { type: 'http' },
        { type: 'http', path: 'x' },
        { type: 'http', path: '/a b' },
        { type: 'http', path: '/', status: { min: 300, max: 200 } },
        { type: 'http', path: '/', status: 'any' },
        { type: 'udp' },
        { type: 'udp', payload: '' },
        { type: 'udp', payload: 7 as unknown as string },
        { type: 'udp', payload: 'P', expect: '' },
        { type: 'tcp', interval: 1.5 },
        { type: 'tcp', interval: 2000, timeout: 2001 },
        { type: 'tcp', rise: 0 },
      ]),
    ).toMatchInlineSnapshot(`
      "type: check null: a check must be a text or an object
      type: check ["tcp"]: a check must be a text or an object
      type: check {"type":"smtp"}: unknown check type "smtp"; expected tcp, http, https, udp or icmp
      options: check {"type":"tcp","colour":"red"}: unknown field "colour"; expected type, port, path, status, payload, expect, interval, timeout, rise, fall
      path: check {"type":"tcp","path":"/x"}: tcp takes no path
      port: check {"type":"icmp","port":80}: icmp takes no port
      status: check {"type":"udp","port":53,"payload":"P","status":200}: udp takes no status
      port: check {"type":"tcp","port":80.5}: the port must be a number from 1 to 65535, not 80.5
      path: check {"type":"http"}: http needs a path, e.g. "/healthz"
      path: check {"type":"http","path":"x"}: the path must start with "/"
      path: check {"type":"http","path":"/a b"}: the path may hold only printable ASCII without spaces or "#" (percent-encode the rest), not "/a b"
      status: check {"type":"http","path":"/","status":{"min":300,"max":200}}: the status range must run from low to high, not "300-200"
      status: check {"type":"http","path":"/","status":"any"}: the status must be a code from 100 to 599 or a range such as 200-299, not "any"
      payload: check {"type":"udp"}: udp needs a payload, e.g. "PING"
      payload: check {"type":"udp","payload":""}: the payload is empty
      payload: check {"type":"udp","payload":7}: the payload must be text
      expect: check {"type":"udp","payload":"P","expect":""}: the expected reply is empty; leave it out to accept any reply
      interval: check {"type":"tcp","interval":1.5}: the interval must be a duration such as 2s or 500ms, not 1.5
      timeout: check {"type":"tcp","interval":2000,"timeout":2001}: the timeout (2001ms) must not exceed the interval (2s)
      rise: check {"type":"tcp","rise":0}: rise must be a whole number from 1 to 100, not 0"
    `);
  });
});
