// Validating a rule set that is another plus appended rules (a rule add) checks only the new
// rules, and must give exactly what checking the whole set afresh gives: positions, ids
// (generated ones too), and the same error for a bad new rule.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { validateRuleSet, type RuleSpec } from '../../../controller/dataplane/model.js';
import { SCENARIO_SETS } from '../../helpers/pipeline-rules.js';
import { ruleList } from '../../helpers/rule-arbitraries.js';

const CONTEXT = { sets: new Set(SCENARIO_SETS) };

/** What a validation gives, or the error it throws, as comparable data. */
function outcome(rules: RuleSpec[]): unknown {
  try {
    return validateRuleSet({ rules }, CONTEXT).map((r) => ({ ...r }));
  } catch (error: unknown) {
    return { error: (error as Error).message };
  }
}

describe('validating a rule set grown by appended rules', () => {
  it('gives what a fresh check of the whole set gives, for 500 random sets grown in steps', () => {
    fc.assert(
      fc.property(ruleList, fc.array(fc.nat(6), { minLength: 1, maxLength: 4 }), (specs, cuts) => {
        let at = 0;
        for (const cut of [...cuts, specs.length]) {
          at = Math.min(specs.length, at + cut);
          // The same objects as the step before, then the new ones: the incremental path.
          const grown = outcome(specs.slice(0, at));
          // Copies: nothing cached applies.
          const fresh = outcome(structuredClone(specs.slice(0, at)));
          expect(grown).toEqual(fresh);
        }
      }),
      { numRuns: 500, seed: 0x7a11d },
    );
  });

  it('refuses an appended rule whose id is taken, naming both', () => {
    const rules: RuleSpec[] = [
      { id: 'a', dport: 80, action: 'drop' },
      { id: 'b', dport: 81, action: 'drop' },
    ];
    validateRuleSet({ rules }, CONTEXT);
    expect(() =>
      validateRuleSet({ rules: [...rules, { id: 'a', dport: 82, action: 'drop' }] }, CONTEXT),
    ).toThrow(/rule "a": id is also rule #0's/);
  });

  it('puts an appended rule of lower priority before the rules it outranks', () => {
    const rules: RuleSpec[] = [
      { id: 'a', priority: 10, action: 'count' },
      { id: 'b', priority: 20, action: 'count' },
    ];
    validateRuleSet({ rules }, CONTEXT);
    const grown = validateRuleSet(
      { rules: [...rules, { id: 'c', priority: 15, action: 'drop' }] },
      CONTEXT,
    );
    expect(grown.map((r) => r.id)).toEqual(['a', 'c', 'b']);
  });
});
