// Worklist for the filter compiler: runs the differential corpora through compileFilter + runCbpf and prints per-expression agreement with libpcap, then the failing ones in full.
//
// usage: npx tsx test/helpers/diff-report.ts [options]
//   --corpus valid|invalid|random|garbage|all   which expressions (default all)
//   --unoptimized                               compile with { optimize: false }
//   --failing                                   list only expressions that do not pass
//   --grep TEXT                                 only expressions containing TEXT
//   --limit N                                   failures shown in full (default 20; 0 = none)
//   --engine sluice|reference                   reference: libpcap's own programs in the reference
//                                               interpreter (checks the harness; needs no compiler)
//   --json                                      one JSON object per expression instead of text
import { runReferenceBpf } from './cbpf-reference.js';
import {
  cbpfEngine,
  describeJudgement,
  getJudgedCorpus,
  getOracleResults,
  getPacketCorpus,
  isPassing,
  judgeEngine,
  loadFilterApi,
  mismatchIndices,
  randomExpressions,
  randomGarbage,
  verdictsOf,
  type Engine,
  type JudgeInput,
  type Judgement,
} from './differential.js';

const RANDOM_SEED = 0x5eed_0001; // the same seeds as test/unit/filter/differential.test.ts
const GARBAGE_SEED = 0x6a7b_0002;

interface Options {
  corpus: string;
  optimize: boolean;
  failing: boolean;
  grep: string | undefined;
  limit: number;
  engine: 'sluice' | 'reference';
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    corpus: 'all',
    optimize: true,
    failing: false,
    grep: undefined,
    limit: 20,
    engine: 'sluice',
    json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`option ${a} needs a value`);
      return v;
    };
    if (a === '--corpus') o.corpus = value();
    else if (a === '--unoptimized') o.optimize = false;
    else if (a === '--failing') o.failing = true;
    else if (a === '--grep') o.grep = value();
    else if (a === '--limit') o.limit = Number(value());
    else if (a === '--engine') o.engine = value() === 'reference' ? 'reference' : 'sluice';
    else if (a === '--json') o.json = true;
    else
      throw new Error(
        `unknown option "${a}" (see the usage at the top of test/helpers/diff-report.ts)`,
      );
  }
  return o;
}

async function inputs(which: string, optimize: boolean): Promise<Array<[string, JudgeInput]>> {
  const out: Array<[string, JudgeInput]> = [];
  for (const name of ['valid', 'invalid'] as const) {
    if (which !== 'all' && which !== name) continue;
    const j = await getJudgedCorpus(name, { optimize });
    out.push([
      `${name}.txt`,
      {
        expressions: j.entries.map((e) => e.expression),
        results: j.results,
        where: j.entries.map((e) => `${name}.txt:${e.line}`),
      },
    ]);
  }
  if (which === 'all' || which === 'random') {
    const expressions = randomExpressions(RANDOM_SEED, 200);
    out.push([
      'random',
      {
        expressions,
        results: await getOracleResults(expressions, { program: true, optimize }),
      },
    ]);
  }
  if (which === 'all' || which === 'garbage') {
    const expressions = randomGarbage(GARBAGE_SEED, 400);
    out.push([
      'garbage',
      {
        expressions,
        results: await getOracleResults(expressions, { program: true, optimize }),
      },
    ]);
  }
  return out;
}

function filterInput(input: JudgeInput, grep: string | undefined): JudgeInput {
  if (grep === undefined) return input;
  const keep = input.expressions.map((e, i) => (e.includes(grep) ? i : -1)).filter((i) => i >= 0);
  return {
    expressions: keep.map((i) => input.expressions[i]!),
    results: keep.map((i) => input.results[i]!),
    where: input.where ? keep.map((i) => input.where![i]!) : undefined,
  };
}

function agreementOf(j: Judgement, packets: number): string {
  if (j.status === 'agree') return `${packets}/${packets}`;
  if (j.status === 'mismatch')
    return `${packets - mismatchIndices(j.expected, j.actual).length}/${packets}`;
  return '-';
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const corpus = await getPacketCorpus();
  let makeEngine: (input: JudgeInput) => Engine;
  if (o.engine === 'reference') {
    makeEngine = (input) => (expression) => {
      const r = input.results[input.expressions.indexOf(expression)]!;
      if (!r.ok) throw Object.assign(new Error(r.error), { code: 'FILTER_SYNTAX' });
      return {
        verdicts: verdictsOf(corpus.packets, (d, w) => runReferenceBpf(r.program!, d, w) !== 0),
        program: r.program,
      };
    };
  } else {
    const loaded = await loadFilterApi();
    if (!loaded.api) {
      process.stderr.write(`diff-report: the compiler is not available: ${loaded.error}\n`);
      return 1;
    }
    const engine = cbpfEngine(loaded.api, corpus.packets, { optimize: o.optimize });
    makeEngine = () => engine;
  }
  let total = 0;
  let passing = 0;
  const failures: Judgement[] = [];
  const started = performance.now();
  for (const [title, raw] of await inputs(o.corpus, o.optimize)) {
    const input = filterInput(raw, o.grep);
    const judgements = await judgeEngine(input, makeEngine(input));
    const ok = judgements.filter(isPassing).length;
    total += judgements.length;
    passing += ok;
    if (!o.json) process.stdout.write(`\n== ${title}: ${ok} of ${judgements.length} pass\n`);
    for (const j of judgements) {
      const pass = isPassing(j);
      if (!pass) failures.push(j);
      if (o.failing && pass) continue;
      if (o.json) {
        const error =
          'error' in j ? String(j.error instanceof Error ? j.error.message : j.error) : undefined;
        process.stdout.write(
          `${JSON.stringify({ set: title, where: j.where, expression: j.expression, status: j.status, agreement: agreementOf(j, corpus.packets.length), error })}\n`,
        );
      } else {
        process.stdout.write(
          `${pass ? 'PASS' : 'FAIL'}  ${j.status.padEnd(16)} ${agreementOf(j, corpus.packets.length).padStart(11)}  ${j.where ? `${j.where}  ` : ''}${j.expression}\n`,
        );
      }
    }
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (!o.json) {
    if (o.limit > 0 && failures.length > 0) {
      process.stdout.write(`\n== first ${Math.min(o.limit, failures.length)} failures in full\n\n`);
      for (const j of failures.slice(0, o.limit))
        process.stdout.write(`${describeJudgement(j, corpus.packets)}\n\n`);
    }
    process.stdout.write(
      `\n${passing} of ${total} expressions pass over ${corpus.packets.length} packets (seed 0x${corpus.seed.toString(16)}, ${o.optimize ? 'optimized' : 'unoptimized'}, ${o.engine}, ${seconds} s)\n`,
    );
  }
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`diff-report: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = 2;
  },
);
