// `sluice lb service add|rm|ls`, `sluice lb backend add|set|rm`, `sluice lb ls`: load-balanced
// services (VIP:PORT/PROTO) and their weighted backends (/v1/lb/services).
import { Command, InvalidArgumentError, Option } from 'commander';
import type { ChangeResult, LbServiceView } from '../../controller/contract.js';
import type { BackendDoc, ServiceDoc } from '../../controller/document.js';
import { parseCheckSpec } from '../../controller/lb/health-spec.js';
import { MAGLEV_SIZES } from '../../controller/lb/maglev.js';
import {
  backendKey,
  parseBackendRef,
  parseServiceKey,
  serviceKey,
} from '../../controller/lb/service-key.js';
import {
  dryRunQuery,
  printChange,
  printJson,
  withClient,
  withExamples,
  writeOptions,
  type CommandContext,
  type WriteOptions,
} from '../context.js';
import { print } from '../output.js';
import { formatLbServices, formatMoves } from '../render.js';
import { integerParser } from '../rule-options.js';

type Proto = NonNullable<ServiceDoc['proto']>;

/** A VIP:PORT[/PROTO] argument: its parts, and whether the protocol was written. */
interface ServiceArg {
  vip: string;
  port: number;
  proto: Proto;
  protoGiven: boolean;
}

/** The reason of a key parser's error, without its `service "…": ` opening (commander names the argument). */
function reason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^[a-z]+ "[^"]*": /, '');
}

function parseServiceArg(value: string): ServiceArg {
  try {
    return { ...parseServiceKey(value), protoGiven: value.includes('/') };
  } catch (error: unknown) {
    throw new InvalidArgumentError(reason(error));
  }
}

function parseBackendArg(value: string): { address: string; port?: number } {
  try {
    return parseBackendRef(value);
  } catch (error: unknown) {
    throw new InvalidArgumentError(reason(error));
  }
}

function parseCheck(value: string): string {
  try {
    parseCheckSpec(value);
  } catch (error: unknown) {
    throw new InvalidArgumentError(reason(error));
  }
  return value;
}

function parseTableSize(value: string): number {
  if (!/^\d+$/.test(value) || !MAGLEV_SIZES.includes(Number(value)))
    throw new InvalidArgumentError(
      `expected a Maglev table size, a prime of ${MAGLEV_SIZES.join(', ')}`,
    );
  return Number(value);
}

const seconds = integerParser('seconds', 0, 86400);

/** "/v1/lb/services/10.0.0.100%3A80%2Ftcp" for the service an argument names. */
function servicePath(service: ServiceArg): string {
  return `/v1/lb/services/${encodeURIComponent(serviceKey(service))}`;
}

function backendPath(service: ServiceArg, backend: { address: string; port?: number }): string {
  return `${servicePath(service)}/backends/${encodeURIComponent(backendKey(backend))}`;
}

const SERVICE_HELP = 'VIP:PORT[/PROTO] ([v6]:PORT for IPv6; protocol default tcp)';
const BACKEND_HELP = 'backend ADDR, or ADDR:PORT ([v6]:PORT) for one with its own port (NAT)';

/** printChange, then what the change moves in each service whose table changes. */
function printLbChange(
  command: Command,
  options: WriteOptions,
  result: ChangeResult,
  done: string,
): void {
  printChange(command, options, result, done);
  if (!options.json) print(command, formatMoves(result.lb));
}

interface ServiceAddOptions extends WriteOptions {
  proto?: Proto;
  mode?: ServiceDoc['mode'];
  hash?: ServiceDoc['hash'];
  tableSize?: number;
  udpTimeout?: number;
  tcpTimeout?: number;
  drainTimeout?: number;
  dev?: string[];
}

function serviceAddCommand(context: CommandContext): Command {
  const command = new Command('add')
    .description('add a load-balanced service (backends come with `sluice lb backend add`)')
    .argument('<service>', SERVICE_HELP, parseServiceArg)
    .addOption(
      new Option('--proto <proto>', 'protocol (default tcp, or the one the key gives)').choices([
        'tcp',
        'udp',
        'sctp',
      ]),
    )
    .addOption(
      new Option(
        '--mode <mode>',
        'dsr: rewrite the MAC (default); ipip, gue: encapsulate (IP-in-IP, or UDP 6080 + GUE); nat: rewrite address and port',
      ).choices(['dsr', 'ipip', 'gue', 'nat']),
    )
    .addOption(
      new Option('--hash <hash>', 'what the flow hash covers (default 5tuple)').choices([
        '5tuple',
        'src',
        'src-port',
      ]),
    )
    .option('--table-size <m>', 'Maglev table size, a prime (default 65537)', parseTableSize)
    .option('--udp-timeout <s>', 'seconds a non-TCP flow lives idle (default 30)', seconds)
    .option(
      '--tcp-timeout <s>',
      'seconds a TCP flow lives idle (default 0: until FIN/RST)',
      seconds,
    )
    .option(
      '--drain-timeout <s>',
      'seconds a removed backend keeps its established flows (default 30)',
      seconds,
    )
    .option(
      '--dev <device...>',
      'run it only on these devices (their XDP attachments); default every XDP attachment',
    );
  writeOptions(command).action(async function (
    this: Command,
    service: ServiceArg,
    options: ServiceAddOptions,
  ) {
    if (options.proto !== undefined && service.protoGiven && options.proto !== service.proto)
      this.error(
        `sluice: the service says /${service.proto} and --proto says ${options.proto}: give one`,
        { exitCode: 2 },
      );
    const proto = options.proto ?? (service.protoGiven ? service.proto : undefined);
    const key = { ...service, proto: proto ?? 'tcp' };
    const body: ServiceDoc = {
      vip: service.vip,
      port: service.port,
      ...(proto !== undefined ? { proto } : {}),
      ...(options.mode !== undefined ? { mode: options.mode } : {}),
      ...(options.hash !== undefined ? { hash: options.hash } : {}),
      ...(options.tableSize !== undefined ? { tableSize: options.tableSize } : {}),
      ...(options.udpTimeout !== undefined ? { udpTimeout: options.udpTimeout } : {}),
      ...(options.tcpTimeout !== undefined ? { tcpTimeout: options.tcpTimeout } : {}),
      ...(options.drainTimeout !== undefined ? { drainTimeout: options.drainTimeout } : {}),
      ...(options.dev !== undefined ? { devices: options.dev } : {}),
    };
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult>('POST', '/v1/lb/services', {
        json: body,
        query: dryRunQuery(options),
      }),
    );
    printLbChange(this, options, result, `added service ${serviceKey(key)}`);
  });
  return withExamples(
    command,
    'sluice lb service add 10.0.0.100:80 --proto tcp --mode dsr',
    'sluice lb service add [2001:db8::100]:53/udp --hash src --udp-timeout 10',
    'sluice lb service add 10.0.0.100:443 --mode ipip --dev veth1',
  );
}

function serviceRmCommand(context: CommandContext): Command {
  const command = new Command('rm')
    .description('remove a service and its backends')
    .argument('<service>', SERVICE_HELP, parseServiceArg);
  writeOptions(command).action(async function (
    this: Command,
    service: ServiceArg,
    options: WriteOptions,
  ) {
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult>('DELETE', servicePath(service), { query: dryRunQuery(options) }),
    );
    printLbChange(this, options, result, `removed service ${serviceKey(service)}`);
  });
  return withExamples(
    command,
    'sluice lb service rm 10.0.0.100:80',
    'sluice lb service rm 10.0.0.100:53/udp',
  );
}

/** `ls` (under `lb service` and `lb` itself): every service, or one, with its backends. */
function lsCommand(context: CommandContext, prefix: string): Command {
  const command = new Command('ls')
    .description(
      'list services with their backends: weight, state, health, table and traffic shares',
    )
    .argument('[service]', `only this service: ${SERVICE_HELP}`, parseServiceArg)
    .option('--json', 'print the API response as JSON')
    .action(async function (
      this: Command,
      service: ServiceArg | undefined,
      options: { json?: boolean },
    ) {
      if (service !== undefined) {
        const view = await withClient(this, context, (client) =>
          client.get<LbServiceView>(servicePath(service)),
        );
        if (options.json) return printJson(this, view);
        return print(this, formatLbServices([view]));
      }
      const { services } = await withClient(this, context, (client) =>
        client.get<{ services: LbServiceView[] }>('/v1/lb/services'),
      );
      if (options.json) return printJson(this, { services });
      print(this, formatLbServices(services));
    });
  return withExamples(command, `${prefix} ls`, `${prefix} ls 10.0.0.100:80 --json`);
}

interface BackendAddOptions extends WriteOptions {
  weight?: number;
  check?: string;
  drain?: boolean;
}

const weight = integerParser('a weight', 0, 65535);

function backendAddCommand(context: CommandContext): Command {
  const command = new Command('add')
    .description('add a backend to a service')
    .argument('<service>', SERVICE_HELP, parseServiceArg)
    .argument('<backend>', BACKEND_HELP, parseBackendArg)
    .option('--weight <w>', 'share of new flows, 0 to 65535 (default 1)', weight)
    .option(
      '--check <spec>',
      'health check: tcp, http:/healthz, https::8443/ready#200, udp::ping:pong, icmp',
      parseCheck,
    )
    .option('--drain', 'add it draining: no new flows');
  writeOptions(command).action(async function (
    this: Command,
    service: ServiceArg,
    backend: { address: string; port?: number },
    options: BackendAddOptions,
  ) {
    const body: BackendDoc = {
      ...backend,
      ...(options.weight !== undefined ? { weight: options.weight } : {}),
      ...(options.drain ? { drain: true } : {}),
      ...(options.check !== undefined ? { check: options.check } : {}),
    };
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult>('POST', `${servicePath(service)}/backends`, {
        json: body,
        query: dryRunQuery(options),
      }),
    );
    printLbChange(
      this,
      options,
      result,
      `service ${serviceKey(service)}: added backend ${backendKey(backend)}`,
    );
  });
  return withExamples(
    command,
    'sluice lb backend add 10.0.0.100:80 10.1.0.11 --weight 2 --check http:/healthz',
    'sluice lb backend add 10.0.0.100:80 10.1.0.12:8080 --check tcp',
  );
}

interface BackendSetOptions extends WriteOptions {
  weight?: number;
  drain?: boolean;
  /** false: --no-check. */
  check?: string | false;
}

function backendSetCommand(context: CommandContext): Command {
  const command = new Command('set')
    .description("change a backend's weight, drain or health check")
    .argument('<service>', SERVICE_HELP, parseServiceArg)
    .argument('<backend>', BACKEND_HELP, parseBackendArg)
    .option('--weight <w>', 'share of new flows, 0 to 65535', weight)
    .option('--drain', 'take no new flows; established flows stay')
    .option('--no-drain', 'take new flows again')
    .option('--check <spec>', 'health check (replaces the one it has)', parseCheck)
    .option('--no-check', 'remove the health check');
  writeOptions(command).action(async function (
    this: Command,
    service: ServiceArg,
    backend: { address: string; port?: number },
    options: BackendSetOptions,
  ) {
    const patch: { weight?: number; drain?: boolean; check?: string | null } = {
      ...(options.weight !== undefined ? { weight: options.weight } : {}),
      ...(options.drain !== undefined ? { drain: options.drain } : {}),
      ...(options.check !== undefined
        ? { check: options.check === false ? null : options.check }
        : {}),
    };
    if (Object.keys(patch).length === 0)
      this.error(
        'sluice: nothing to change: give --weight, --drain, --no-drain, --check or --no-check',
        {
          exitCode: 2,
        },
      );
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult>('PATCH', backendPath(service, backend), {
        json: patch,
        query: dryRunQuery(options),
      }),
    );
    printLbChange(
      this,
      options,
      result,
      `service ${serviceKey(service)}: changed backend ${backendKey(backend)}`,
    );
  });
  return withExamples(
    command,
    'sluice lb backend set 10.0.0.100:80 10.1.0.11 --weight 4',
    'sluice lb backend set 10.0.0.100:80 10.1.0.11 --drain',
    'sluice lb backend set 10.0.0.100:80 10.1.0.11 --no-drain --no-check',
  );
}

function backendRmCommand(context: CommandContext): Command {
  const command = new Command('rm')
    .description(
      'remove a backend: new flows leave it now, established ones after the drain timeout',
    )
    .argument('<service>', SERVICE_HELP, parseServiceArg)
    .argument('<backend>', BACKEND_HELP, parseBackendArg);
  writeOptions(command).action(async function (
    this: Command,
    service: ServiceArg,
    backend: { address: string; port?: number },
    options: WriteOptions,
  ) {
    const result = await withClient(this, context, (client) =>
      client.call<ChangeResult>('DELETE', backendPath(service, backend), {
        query: dryRunQuery(options),
      }),
    );
    printLbChange(
      this,
      options,
      result,
      `service ${serviceKey(service)}: removed backend ${backendKey(backend)}`,
    );
  });
  return withExamples(command, 'sluice lb backend rm 10.0.0.100:80 10.1.0.11 --dry-run');
}

/** `sluice lb …`: the load-balancer commands; actions throw the client's errors. */
export function lbCommand(context: CommandContext): Command {
  const service = withExamples(
    new Command('service')
      .description('load-balanced services: VIP:PORT/PROTO over weighted backends')
      .addCommand(serviceAddCommand(context))
      .addCommand(serviceRmCommand(context))
      .addCommand(lsCommand(context, 'sluice lb service')),
    'sluice lb service add 10.0.0.100:80 --proto tcp --mode dsr',
    'sluice lb service ls',
  );
  const backend = withExamples(
    new Command('backend')
      .description("a service's backends: weights, draining, health checks")
      .addCommand(backendAddCommand(context))
      .addCommand(backendSetCommand(context))
      .addCommand(backendRmCommand(context)),
    'sluice lb backend add 10.0.0.100:80 10.1.0.11 --weight 2 --check http:/healthz',
    'sluice lb backend set 10.0.0.100:80 10.1.0.11 --drain',
  );
  return withExamples(
    new Command('lb')
      .description('L4 load balancer: services, backends, Maglev hashing, health checks')
      .addCommand(service)
      .addCommand(backend)
      .addCommand(lsCommand(context, 'sluice lb')),
    'sluice lb service add 10.0.0.100:80 --proto tcp --mode dsr',
    'sluice lb backend add 10.0.0.100:80 10.1.0.11 --weight 2 --check http:/healthz',
    'sluice lb ls',
  );
}
