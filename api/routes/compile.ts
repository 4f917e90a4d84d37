// Compiles a tcpdump expression and returns the listing, as `sluice compile` prints it.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

import { compileFilter, formatListing } from '../../bpf/filter/index.js';
import { cbpfToEbpf, formatEbpfListing } from '../../bpf/filter/ebpf.js';
import type { RouteOptions } from '../context.js';
import { withProblems } from '../schemas/common.js';

const XDP_DROP = 1;
const XDP_PASS = 2;

export const compileRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app) => {
  app.post(
    '/v1/compile',
    {
      schema: {
        summary: "compile a tcpdump expression: tcpdump's -d/-dd/-ddd listing, or eBPF for XDP",
        tags: ['filters'],
        querystring: Type.Object({}, { additionalProperties: false }),
        body: Type.Object(
          {
            expression: Type.String({ maxLength: 65536 }),
            format: Type.Optional(
              Type.Union(
                [Type.Literal('d'), Type.Literal('dd'), Type.Literal('ddd'), Type.Literal('ebpf')],
                { default: 'd' },
              ),
            ),
            linkType: Type.Optional(
              Type.Union([Type.Literal('EN10MB'), Type.Literal('ethernet')], {
                description: 'link type of the packets; only Ethernet (DLT_EN10MB) is supported',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: withProblems({
          200: Type.Object({
            listing: Type.String(),
            instructions: Type.Integer(),
          }),
        }),
      },
    },
    async (request) => {
      const { expression, format = 'd' } = request.body;
      const program = compileFilter(expression);
      if (format === 'ebpf') {
        const spec = cbpfToEbpf(program, {
          context: 'xdp',
          verdict: { kind: 'action', match: XDP_PASS, noMatch: XDP_DROP },
        });
        return { listing: formatEbpfListing(spec), instructions: spec.insnCount };
      }
      return { listing: formatListing(program, format), instructions: program.length };
    },
  );
};
