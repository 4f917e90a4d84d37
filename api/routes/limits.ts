// Rate limits: the rules whose action is "ratelimit", with their limiters' counters.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

import { NotFoundError } from '../../controller/errors.js';
import { RuleSchema } from '../../controller/document.js';
import type { RouteOptions } from '../context.js';
import { checkFilter } from '../filter-check.js';
import { removeByIdSchema, withProblems } from '../schemas/common.js';
import { addRuleSchema, StoredRuleSchema, withRuleId } from '../schemas/resources.js';

// eslint-disable-next-line @typescript-eslint/no-unused-vars
const { action: _action, rate, ...limitFields } = RuleSchema.properties;

/** A rate-limit rule as posted: a rule without `action` (it is "ratelimit"), `rate` required. */
export const LimitSchema = Type.Object(
  { ...limitFields, rate: Type.Required(Type.Object({ rate })).properties.rate },
  { additionalProperties: false },
);

const LimitViewSchema = Type.Object({
  ...StoredRuleSchema.properties,
  passed: Type.Number({ description: 'packets the limiter let through' }),
  dropped: Type.Number({ description: 'packets the limiter dropped' }),
});

export const limitRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, { controller }) => {
  const isLimit = (id: string): boolean =>
    controller.config().config.rules.some((r) => r.id === id && r.action === 'ratelimit');

  app.get(
    '/v1/limits',
    {
      schema: {
        summary: 'rate-limit rules with their counters',
        tags: ['limits'],
        response: withProblems({ 200: Type.Object({ limits: Type.Array(LimitViewSchema) }) }),
      },
    },
    async () => {
      const counters = new Map<string, { passed: number; dropped: number }>();
      let devices: ReturnType<typeof controller.stats>['devices'] = [];
      try {
        devices = controller.stats().devices;
      } catch {
        // counters unavailable (not ready): report zeros
      }
      for (const d of devices)
        for (const l of d.limiters) {
          const key = `${d.device}@${d.hook}/${l.id}`;
          const c = counters.get(key) ?? { passed: 0, dropped: 0 };
          counters.set(key, { passed: c.passed + l.passed, dropped: c.dropped + l.dropped });
        }
      return {
        limits: controller
          .config()
          .config.rules.filter((r) => r.action === 'ratelimit')
          .map((r) => ({
            ...r,
            ...(counters.get(`${r.device}@${r.hook ?? 'xdp'}/${r.id}`) ?? {
              passed: 0,
              dropped: 0,
            }),
          })),
      };
    },
  );

  app.post(
    '/v1/limits',
    {
      schema: addRuleSchema(
        'add a rate-limit rule (201; 200 for a dry run)',
        'limits',
        LimitSchema,
      ),
    },
    async (request, reply) => {
      if (request.body.filter !== undefined) checkFilter(request.body.filter, '/filter');
      const dryRun = request.query.dryRun === true;
      const result = await controller.addRule({ ...request.body, action: 'ratelimit' }, { dryRun });
      return reply.code(dryRun ? 200 : 201).send(withRuleId(result));
    },
  );

  app.delete(
    '/v1/limits/:id',
    { schema: removeByIdSchema('remove a rate-limit rule (404 when the id is not one)', 'limits') },
    async (request) => {
      if (!isLimit(request.params.id))
        throw new NotFoundError(`rate-limit rule "${request.params.id}" does not exist`);
      return controller.removeRule(request.params.id, { dryRun: request.query.dryRun === true });
    },
  );
};
