// Schema checks through compiled validators, cached per schema.
import type { TSchema } from 'typebox';
import { Compile, type Validator } from 'typebox/compile';

const validators = new WeakMap<TSchema, Validator>();

/**
 * True when `value` fits `schema`, through a compiled validator (cached per schema): a hundred
 * times faster than walking it with Value.Errors, which a million-prefix set makes seconds.
 */
export function fitsSchema(schema: TSchema, value: unknown): boolean {
  let validator = validators.get(schema);
  if (!validator) {
    validator = Compile(schema);
    validators.set(schema, validator);
  }
  return validator.Check(value);
}
