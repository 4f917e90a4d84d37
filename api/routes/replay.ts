// Replays a pcap through a candidate configuration in the kernel, nothing attached.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';

import { ConfigSchema } from '../../controller/document.js';
import type { RouteOptions } from '../context.js';
import { checkFilter } from '../filter-check.js';
import { ApiError } from '../problems.js';
import { withProblems } from '../schemas/common.js';
import { ReplayReportSchema } from '../schemas/resources.js';

const MiB = 1024 * 1024;
/** Base64 characters of the largest pcap taken (48 MiB of capture). */
const PCAP_MAX_CHARS = 64 * MiB;

/** Magic numbers of pcap (µs and ns, both byte orders) and pcapng files. */
const MAGICS = new Set([0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1, 0x0a0d0d0a]);

function badPcap(detail: string): ApiError {
  return new ApiError('API_VALIDATION', `body /pcap: ${detail}`, {
    members: { errors: [{ pointer: '/pcap', in: 'body', detail }] },
  });
}

/** The pcap bytes of base64 `text`. Throws ApiError API_VALIDATION for bad base64 or no pcap. */
function decodePcap(text: string): Uint8Array {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text))
    throw badPcap('is not base64 (RFC 4648, padded)');
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length < 24 || !MAGICS.has(bytes.readUInt32BE(0)))
    throw badPcap('is not a pcap or pcapng file');
  return bytes;
}

export const replayRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  app.post(
    '/v1/replay',
    {
      bodyLimit: PCAP_MAX_CHARS + opts.bodyLimit,
      schema: {
        summary: 'run a pcap through a configuration (default: the running one) in the kernel',
        tags: ['config'],
        querystring: Type.Object({}, { additionalProperties: false }),
        body: Type.Object(
          {
            config: Type.Optional(ConfigSchema),
            pcap: Type.String({
              maxLength: PCAP_MAX_CHARS,
              description: 'the capture file, base64',
            }),
          },
          { additionalProperties: false },
        ),
        response: withProblems({ 200: ReplayReportSchema }),
      },
    },
    async (request) => {
      const pcap = decodePcap(request.body.pcap);
      request.body.config?.rules?.forEach((rule, i) => {
        if (rule.filter !== undefined) checkFilter(rule.filter, `/config/rules/${i}/filter`);
      });
      return opts.controller.replay(request.body.config, pcap);
    },
  );
};
