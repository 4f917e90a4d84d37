// Filter rules: rules whose match is a tcpdump expression, posted as the expression itself.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

import { NotFoundError } from '../../controller/errors.js';
import { RuleSchema } from '../../controller/document.js';
import type { RouteOptions } from '../context.js';
import { checkFilter } from '../filter-check.js';
import { removeByIdSchema, withProblems } from '../schemas/common.js';
import { addRuleSchema, StoredRuleSchema, withRuleId } from '../schemas/resources.js';

const r = RuleSchema.properties;

/** A filter rule as posted: the expression and what to do with matching packets. */
export const FilterSchema = Type.Object(
  {
    id: r.id,
    device: r.device,
    hook: r.hook,
    priority: r.priority,
    expression: Type.String({
      minLength: 1,
      maxLength: 4096,
      description: 'a tcpdump (pcap-filter) expression',
    }),
    action: r.action,
    rate: r.rate,
    burst: r.burst,
    perSource: r.perSource,
    to: r.to,
    via: r.via,
  },
  { additionalProperties: false },
);

export const filterRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (
  app,
  { controller },
) => {
  app.get(
    '/v1/filters',
    {
      schema: {
        summary: 'rules that match a tcpdump expression',
        tags: ['filters'],
        response: withProblems({ 200: Type.Object({ filters: Type.Array(StoredRuleSchema) }) }),
      },
    },
    async () => ({
      filters: controller.config().config.rules.filter((rule) => rule.filter !== undefined),
    }),
  );

  app.post(
    '/v1/filters',
    {
      schema: addRuleSchema(
        'add a filter rule (201; 200 for a dry run); a bad expression is a positioned 400',
        'filters',
        FilterSchema,
      ),
    },
    async (request, reply) => {
      const { expression, ...rest } = request.body;
      checkFilter(expression, '/expression');
      const dryRun = request.query.dryRun === true;
      const result = await controller.addRule({ ...rest, filter: expression }, { dryRun });
      return reply.code(dryRun ? 200 : 201).send(withRuleId(result));
    },
  );

  app.delete(
    '/v1/filters/:id',
    { schema: removeByIdSchema('remove a filter rule (404 when the id is not one)', 'filters') },
    async (request) => {
      const { id } = request.params;
      if (
        !controller
          .config()
          .config.rules.some((rule) => rule.id === id && rule.filter !== undefined)
      )
        throw new NotFoundError(`filter rule "${id}" does not exist`);
      return controller.removeRule(id, { dryRun: request.query.dryRun === true });
    },
  );
};
