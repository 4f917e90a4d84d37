// Schemas every route shares: the dry-run query, what a change returns, the problem responses.
import { Type, type TSchema } from 'typebox';

import { ProblemSchema } from '../problems.js';

/** `?dryRun=true` on every write route: compute the diff, change nothing. */
export const DryRunQuerySchema = Type.Object(
  {
    dryRun: Type.Optional(
      Type.Boolean({ description: 'compute and return the diff without applying it' }),
    ),
  },
  { additionalProperties: false },
);

const NamesDiff = Type.Object({
  added: Type.Array(Type.String()),
  removed: Type.Array(Type.String()),
  changed: Type.Array(Type.String()),
});

export const ConfigDiffSchema = Type.Object({
  attachments: NamesDiff,
  sets: Type.Object({
    added: Type.Array(Type.String()),
    removed: Type.Array(Type.String()),
    changed: Type.Array(
      Type.Object({ name: Type.String(), added: Type.Integer(), removed: Type.Integer() }),
    ),
  }),
  rules: NamesDiff,
  services: Type.Optional(
    Type.Object(NamesDiff.properties, {
      description: 'service keys ("10.0.0.100:80/tcp"); present when services changed',
    }),
  ),
});

/** What a change to a service's backends moves (contract.ts's LbMovePrediction). */
export const LbMovePredictionSchema = Type.Object({
  service: Type.String({ description: 'the service key, "10.0.0.100:80/tcp"' }),
  movedShare: Type.Number({
    minimum: 0,
    maximum: 1,
    description: 'share of the Maglev table slots whose backend changes',
  }),
  flows: Type.Integer({ description: 'flow-table entries of the service looked at' }),
  flowsMoved: Type.Integer({
    description: 'of those, entries whose flow would now hash to another backend',
  }),
});

export const ChangeResultProperties = {
  generation: Type.Integer({ description: 'desired-state generation after the change' }),
  diff: ConfigDiffSchema,
  applied: Type.Boolean({ description: 'false for a dry run' }),
  lb: Type.Optional(
    Type.Array(LbMovePredictionSchema, {
      description: 'changes to services: what moves, per service whose table changes',
    }),
  ),
};

export const ChangeResultSchema = Type.Object(ChangeResultProperties);

const problemResponse = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: ProblemSchema } },
});

/** The error responses every route documents, beside its own success responses. */
export function withProblems<R extends Record<number, TSchema>>(responses: R) {
  return {
    ...responses,
    '4xx': problemResponse('the request was refused: see `code`'),
    '5xx': problemResponse('the controller failed or is not ready'),
  };
}

/** A route's `name` or `id` path parameter. */
export const NameParamsSchema = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) });
export const IdParamsSchema = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

/** The schema of `DELETE /v1/<tag>/:id`: remove one member by id, `?dryRun` to only diff. */
export function removeByIdSchema(summary: string, tag: string) {
  return {
    summary,
    tags: [tag],
    params: IdParamsSchema,
    querystring: DryRunQuerySchema,
    response: withProblems({ 200: ChangeResultSchema }),
  };
}
