// A rule set's signature (what says "this attachment already holds these rules", also across a
// restart) is equal for equal rule sets however they were built, grown or copied, and differs
// when anything that matters differs.
import { describe, expect, it } from 'vitest';

import { ruleSetSignature } from '../../../controller/dataplane/dataplane.js';
import type { RuleSpec } from '../../../controller/dataplane/model.js';

const rule = (i: number): RuleSpec => ({ id: `r${i}`, dport: 1000 + i, action: 'drop' });

describe('rule set signatures', () => {
  it('are equal for equal rule sets, built whole, grown rule by rule, or copied', () => {
    const whole = Array.from({ length: 50 }, (_, i) => rule(i));
    let grown: RuleSpec[] = [];
    const seen: string[] = [];
    for (let i = 0; i < 50; i++) {
      grown = [...grown, rule(i)];
      seen.push(ruleSetSignature({ rules: grown }, 'xdp'));
    }
    expect(seen.at(-1)).toBe(ruleSetSignature({ rules: whole }, 'xdp'));
    expect(ruleSetSignature({ rules: structuredClone(whole) }, 'xdp')).toBe(seen.at(-1));
    expect(new Set(seen).size).toBe(50);
  });

  it('see an array that grew in place', () => {
    const rules = [rule(1), rule(2)];
    const before = ruleSetSignature({ rules }, 'xdp');
    rules.push(rule(3));
    expect(ruleSetSignature({ rules }, 'xdp')).not.toBe(before);
    expect(ruleSetSignature({ rules }, 'xdp')).toBe(
      ruleSetSignature({ rules: [rule(1), rule(2), rule(3)] }, 'xdp'),
    );
  });

  it('differ by hook, actions, order and any field', () => {
    const rules = [rule(1), rule(2)];
    const base = ruleSetSignature({ rules }, 'xdp');
    expect(ruleSetSignature({ rules }, 'tc-ingress')).not.toBe(base);
    expect(ruleSetSignature({ rules, defaultAction: 'drop' }, 'xdp')).not.toBe(base);
    expect(ruleSetSignature({ rules: [rule(2), rule(1)] }, 'xdp')).not.toBe(base);
    expect(ruleSetSignature({ rules: [rule(1), { ...rule(2), dport: 9 }] }, 'xdp')).not.toBe(base);
  });
});
