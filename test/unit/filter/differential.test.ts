// Differential tests of the cBPF compiler: compileFilter + runCbpf must give libpcap's verdict on every packet of the generated corpus, for every corpus expression, random expression and random string.
import { beforeAll, describe, expect, it } from 'vitest';
import {
  cbpfEngine,
  getJudgedCorpus,
  getOracleResults,
  getPacketCorpus,
  isPassing,
  judgeEngine,
  loadFilterApi,
  mismatchIndices,
  randomExpressions,
  randomGarbage,
  summarizeJudgements,
  verdictsOf,
  type FilterApi,
  type JudgeInput,
  type JudgedCorpus,
  type PacketCorpus,
} from '../../helpers/differential.js';

/** Failures shown in full per test (SLUICE_DIFF_LIMIT overrides). */
const LIMIT = Number(process.env.SLUICE_DIFF_LIMIT ?? 10);
/** Seeds for the generated expressions: fixed, so a failure reproduces. */
const RANDOM_SEED = 0x5eed_0001;
const GARBAGE_SEED = 0x6a7b_0002;
/** Generous per-test limit, so a slow engine still ends with its summary (which prints the time taken). */
const SLOW = { timeout: 180_000 };

const loaded = await loadFilterApi();
let valid: JudgedCorpus;
let invalid: JudgedCorpus;
let corpus: PacketCorpus;

beforeAll(async () => {
  [valid, invalid, corpus] = await Promise.all([
    getJudgedCorpus('valid'),
    getJudgedCorpus('invalid'),
    getPacketCorpus(),
  ]);
});

function api(): FilterApi {
  if (!loaded.api) throw new Error(`the compiler is not available: ${loaded.error}`);
  return loaded.api;
}

function inputOf(judged: JudgedCorpus, file: string): JudgeInput {
  return {
    expressions: judged.entries.map((e) => e.expression),
    results: judged.results,
    where: judged.entries.map((e) => `${file}:${e.line}, ${e.section}`),
  };
}

async function expectAgreement(title: string, input: JudgeInput, optimize = true): Promise<void> {
  const started = performance.now();
  const judgements = await judgeEngine(input, cbpfEngine(api(), corpus.packets, { optimize }));
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const summary = summarizeJudgements(`${title} (${seconds} s)`, judgements, corpus.packets, LIMIT);
  const failing = judgements.filter((j) => !isPassing(j)).length;
  if (failing > 0) expect.fail(summary);
  console.info(summary);
}

describe('cBPF compiler against libpcap', () => {
  it(
    'runs libpcap’s own program of every valid.txt expression to libpcap’s verdicts (runCbpf alone)',
    SLOW,
    () => {
      const { runCbpf } = api();
      const differ: string[] = [];
      valid.results.forEach((r, i) => {
        if (!r.ok) return;
        const ours = verdictsOf(
          corpus.packets,
          (data, wire) => runCbpf(r.program!, data, wire) !== 0,
        );
        if (ours === r.verdicts) return;
        const at = mismatchIndices(r.verdicts, ours);
        const p = corpus.packets[at[0]!]!;
        differ.push(
          `${JSON.stringify(valid.entries[i]!.expression)}: ${at.length} packets differ, first #${at[0]} [${p.category}] ${p.description}\n${r.listing}`,
        );
      });
      if (differ.length > 0)
        expect.fail(
          `runCbpf disagrees with libpcap on ${differ.length} of libpcap's programs:\n\n${differ.slice(0, LIMIT).join('\n\n')}`,
        );
    },
  );

  it(
    'agrees with libpcap on every packet for every valid.txt expression (optimized)',
    SLOW,
    async () => {
      await expectAgreement('valid.txt, optimized', inputOf(valid, 'valid.txt'));
    },
  );

  it(
    'agrees with libpcap on every packet for every valid.txt expression (unoptimized)',
    SLOW,
    async () => {
      const unoptimized = await getJudgedCorpus('valid', { optimize: false });
      await expectAgreement('valid.txt, unoptimized', inputOf(unoptimized, 'valid.txt'), false);
    },
  );

  it('rejects every invalid.txt expression with a FILTER_* error', SLOW, async () => {
    await expectAgreement('invalid.txt', inputOf(invalid, 'invalid.txt'));
  });

  it('agrees with libpcap on 200 random well-formed expressions', SLOW, async () => {
    const expressions = randomExpressions(RANDOM_SEED, 200);
    const results = await getOracleResults(expressions, { program: true });
    await expectAgreement(`random expressions (seed 0x${RANDOM_SEED.toString(16)})`, {
      expressions,
      results,
    });
  });

  it(
    'rejects random strings libpcap rejects, and gives libpcap’s verdicts for those it accepts',
    SLOW,
    async () => {
      const expressions = randomGarbage(GARBAGE_SEED, 400);
      const results = await getOracleResults(expressions, { program: true });
      await expectAgreement(`random strings (seed 0x${GARBAGE_SEED.toString(16)})`, {
        expressions,
        results,
      });
    },
  );
});
