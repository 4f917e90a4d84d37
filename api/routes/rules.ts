// Rules: the ordered match → action lists of the attachments.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

import { NotFoundError } from '../../controller/errors.js';
import { DeviceNameSchema, HookSchema, RuleSchema } from '../../controller/document.js';
import type { RouteOptions } from '../context.js';
import { checkFilter } from '../filter-check.js';
import { IdParamsSchema, removeByIdSchema, withProblems } from '../schemas/common.js';
import { addRuleSchema, StoredRuleSchema, withRuleId } from '../schemas/resources.js';

export const ruleRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, { controller }) => {
  app.get(
    '/v1/rules',
    {
      schema: {
        summary: 'rules, optionally of one device and hook',
        tags: ['rules'],
        querystring: Type.Object(
          { device: Type.Optional(DeviceNameSchema), hook: Type.Optional(HookSchema) },
          { additionalProperties: false },
        ),
        response: withProblems({ 200: Type.Object({ rules: Type.Array(StoredRuleSchema) }) }),
      },
    },
    async (request) => {
      const { device, hook } = request.query;
      return {
        rules: controller
          .config()
          .config.rules.filter(
            (r) =>
              (device === undefined || r.device === device) &&
              (hook === undefined || (r.hook ?? 'xdp') === hook),
          ),
      };
    },
  );

  app.post(
    '/v1/rules',
    { schema: addRuleSchema('add a rule (201; 200 for a dry run)', 'rules', RuleSchema) },
    async (request, reply) => {
      if (request.body.filter !== undefined) checkFilter(request.body.filter, '/filter');
      const dryRun = request.query.dryRun === true;
      const result = await controller.addRule(request.body, { dryRun });
      return reply.code(dryRun ? 200 : 201).send(withRuleId(result));
    },
  );

  app.get(
    '/v1/rules/:id',
    {
      schema: {
        summary: 'one rule',
        tags: ['rules'],
        params: IdParamsSchema,
        response: withProblems({ 200: StoredRuleSchema }),
      },
    },
    async (request) => {
      const rule = controller.config().config.rules.find((r) => r.id === request.params.id);
      if (rule === undefined) throw new NotFoundError(`rule "${request.params.id}" does not exist`);
      return rule;
    },
  );

  app.delete(
    '/v1/rules/:id',
    { schema: removeByIdSchema('remove a rule', 'rules') },
    async (request) =>
      controller.removeRule(request.params.id, { dryRun: request.query.dryRun === true }),
  );
};
