// The whole desired-state document: read with its generation as ETag, replace (If-Match), dry-run.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

import { ConfigSchema, type ConfigDoc } from '../../controller/document.js';
import type { RouteOptions } from '../context.js';
import { checkFilter } from '../filter-check.js';
import { ApiError } from '../problems.js';
import { ChangeResultSchema, DryRunQuerySchema, withProblems } from '../schemas/common.js';
import { StoredRuleSchema } from '../schemas/resources.js';

const NormalConfigSchema = Type.Object({
  version: Type.Literal(1),
  attachments: ConfigSchema.properties.attachments,
  sets: ConfigSchema.properties.sets,
  rules: Type.Array(StoredRuleSchema),
  services: ConfigSchema.properties.services,
  lb: ConfigSchema.properties.lb,
});

/**
 * The generation an If-Match header names: `"12"` → 12, `*` or absent → undefined. Throws
 * ApiError API_BAD_IF_MATCH for anything else (weak tags, several tags, unquoted numbers).
 */
export function parseIfMatch(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const text = header.trim();
  if (text === '*') return undefined;
  const match = /^"(\d{1,15})"$/.exec(text);
  if (match === null)
    throw new ApiError(
      'API_BAD_IF_MATCH',
      `If-Match ${JSON.stringify(header)} is not one quoted generation such as "12" (the ETag of GET /v1/config)`,
    );
  return Number(match[1]);
}

/** Compiles every rule's filter first, so that a bad one is answered with its position. */
function checkFilters(doc: ConfigDoc): void {
  doc.rules?.forEach((rule, i) => {
    if (rule.filter !== undefined) checkFilter(rule.filter, `/rules/${i}/filter`);
  });
}

export const configRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (
  app,
  { controller },
) => {
  app.get(
    '/v1/config',
    {
      schema: {
        summary: 'the desired-state document; ETag is its generation',
        tags: ['config'],
        response: withProblems({ 200: NormalConfigSchema }),
      },
    },
    async (_request, reply) => {
      const { config, generation } = controller.config();
      return reply.header('etag', `"${generation}"`).send(config);
    },
  );

  app.put(
    '/v1/config',
    {
      schema: {
        summary: 'replace the whole desired state, atomically (If-Match: the ETag read)',
        tags: ['config'],
        querystring: DryRunQuerySchema,
        headers: Type.Object({
          'if-match': Type.Optional(
            Type.String({ description: 'the ETag of GET /v1/config: stale → 412' }),
          ),
        }),
        body: ConfigSchema,
        response: withProblems({ 200: ChangeResultSchema }),
      },
    },
    async (request, reply) => {
      const ifGeneration = parseIfMatch(request.headers['if-match']);
      checkFilters(request.body);
      const dryRun = request.query.dryRun === true;
      const result = await controller.replaceConfig(request.body, {
        dryRun,
        ...(ifGeneration !== undefined ? { ifGeneration } : {}),
      });
      if (result.applied) reply.header('etag', `"${result.generation}"`);
      return reply.send(result);
    },
  );
};
