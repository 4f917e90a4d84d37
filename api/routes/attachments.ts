// Attachments: the pipeline on a device and hook.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

import type { AttachmentStatus } from '../../controller/contract.js';
import { AttachmentSchema, DeviceNameSchema, HookSchema } from '../../controller/document.js';
import type { RouteOptions } from '../context.js';
import { ChangeResultSchema, DryRunQuerySchema, withProblems } from '../schemas/common.js';
import { AttachmentWithStatusSchema } from '../schemas/resources.js';

export const attachmentRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (
  app,
  { controller },
) => {
  app.get(
    '/v1/attachments',
    {
      schema: {
        summary: 'configured attachments, each with where it stands in the kernel',
        tags: ['attachments'],
        response: withProblems({
          200: Type.Object({ attachments: Type.Array(AttachmentWithStatusSchema) }),
        }),
      },
    },
    async () => {
      const { config } = controller.config();
      const statuses = new Map<string, AttachmentStatus>();
      for (const s of controller.status().attachments) statuses.set(`${s.device}@${s.hook}`, s);
      return {
        attachments: config.attachments.map((a) => {
          const hook = a.hook ?? 'xdp';
          const status = statuses.get(`${a.device}@${hook}`) ?? {
            device: a.device,
            hook,
            state: 'pending' as const,
            ifindex: null,
            error: null,
            appliedGeneration: null,
          };
          return { ...a, status };
        }),
      };
    },
  );

  app.post(
    '/v1/attachments',
    {
      schema: {
        summary: 'attach the pipeline to a device (201; 200 for a dry run)',
        tags: ['attachments'],
        querystring: DryRunQuerySchema,
        body: AttachmentSchema,
        response: withProblems({ 200: ChangeResultSchema, 201: ChangeResultSchema }),
      },
    },
    async (request, reply) => {
      const dryRun = request.query.dryRun === true;
      const result = await controller.attach(request.body, { dryRun });
      return reply.code(dryRun ? 200 : 201).send(result);
    },
  );

  app.delete(
    '/v1/attachments/:device',
    {
      schema: {
        summary: 'detach the pipeline from a device (every hook, or `hook`)',
        tags: ['attachments'],
        params: Type.Object({ device: DeviceNameSchema }),
        querystring: Type.Object(
          {
            hook: Type.Optional(HookSchema),
            dryRun: DryRunQuerySchema.properties.dryRun,
          },
          { additionalProperties: false },
        ),
        response: withProblems({ 200: ChangeResultSchema }),
      },
    },
    async (request) =>
      controller.detach(request.params.device, request.query.hook, {
        dryRun: request.query.dryRun === true,
      }),
  );
};
