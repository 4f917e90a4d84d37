// Prefix sets: list, read, create, replace from a streamed body, add and remove prefixes, delete.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifySchemaCompiler } from 'fastify';
import { Type, type TSchema } from 'typebox';
import { Compile } from 'typebox/compile';

import { ConfigInvalidError, NotFoundError } from '../../controller/errors.js';
import { PrefixInvalidError } from '../../controller/dataplane/errors.js';
import { SetSchema } from '../../controller/document.js';
import type { RouteOptions } from '../context.js';
import { ApiError, LocatedError, validationErrors } from '../problems.js';
import { LineMap, readPrefixLines, type SetBodyFormat } from '../set-stream.js';
import { ChangeResultSchema, DryRunQuerySchema, withProblems } from '../schemas/common.js';
import { SetChangeSchema, SetNameParamsSchema, SetSummarySchema } from '../schemas/resources.js';

/**
 * The bad prefix behind `err`: the data plane's own error, or the one the controller wrapped
 * when it pointed into its whole document (whose pointer means nothing to this request).
 */
function prefixErrorOf(err: unknown): PrefixInvalidError | undefined {
  if (err instanceof PrefixInvalidError) return err;
  if (err instanceof ConfigInvalidError && err.cause instanceof PrefixInvalidError)
    return err.cause;
  return undefined;
}

/** A bad prefix of a request body's `prefixes`, pointed at there. */
function locate(err: unknown): unknown {
  const bad = prefixErrorOf(err);
  return bad?.entry !== undefined
    ? new LocatedError(bad, { pointer: `/prefixes/${bad.entry}` }, '')
    : err;
}

const PrefixListSchema = Type.Object(
  { prefixes: SetSchema.properties.prefixes },
  { additionalProperties: false },
);
const checkPrefixList = Compile(PrefixListSchema);

/** Body parts are read by the handler (streams); the rest is validated as everywhere. */
const streamedBodyCompiler: FastifySchemaCompiler<TSchema> = (def) =>
  def.httpPart === 'body' ? () => true : TypeBoxValidatorCompiler(def);

/** Reads a JSON body of at most `limit` bytes into a string. */
async function readAll(body: AsyncIterable<Buffer>, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    bytes += chunk.length;
    if (bytes > limit)
      throw new ApiError('API_BODY_TOO_LARGE', `set body exceeds ${limit} bytes`, {
        members: { limit },
      });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function formatOf(contentType: string | undefined): SetBodyFormat | 'json' {
  const media = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (media === 'application/json') return 'json';
  if (media === 'application/x-ndjson') return 'ndjson';
  return 'text';
}

export const setRoutes: FastifyPluginAsyncTypebox<RouteOptions> = async (app, opts) => {
  const { controller } = opts;
  const setOf = (name: string) => controller.config().config.sets.find((s) => s.name === name);

  app.get(
    '/v1/sets',
    {
      schema: {
        summary: 'prefix sets and their sizes',
        tags: ['sets'],
        response: withProblems({ 200: Type.Object({ sets: Type.Array(SetSummarySchema) }) }),
      },
    },
    async () => ({
      sets: controller
        .config()
        .config.sets.map((s) => ({ name: s.name, count: s.prefixes.length })),
    }),
  );

  app.get(
    '/v1/sets/:name',
    {
      schema: {
        summary: 'one prefix set',
        tags: ['sets'],
        params: SetNameParamsSchema,
        response: withProblems({ 200: SetSchema }),
      },
    },
    async (request) => {
      const set = setOf(request.params.name);
      if (set === undefined) throw new NotFoundError(`set "${request.params.name}" does not exist`);
      return set;
    },
  );

  app.post(
    '/v1/sets',
    {
      schema: {
        summary: 'create a prefix set (409 when it exists; 201, 200 for a dry run)',
        tags: ['sets'],
        querystring: DryRunQuerySchema,
        body: SetSchema,
        response: withProblems({ 200: SetChangeSchema, 201: SetChangeSchema }),
      },
    },
    async (request, reply) => {
      const { name, prefixes } = request.body;
      const dryRun = request.query.dryRun === true;
      try {
        const result = await controller.putSet(name, prefixes, { dryRun, create: true });
        return await reply.code(dryRun ? 200 : 201).send(result);
      } catch (err: unknown) {
        throw locate(err);
      }
    },
  );

  // Replacing a set reads its body as a stream, so it lives in a scope of its own parsers.
  await app.register(async (plain) => {
    const scope = plain.withTypeProvider<TypeBoxTypeProvider>();
    scope.removeContentTypeParser(['application/json', 'text/plain']);
    scope.addContentTypeParser(
      ['application/json', 'text/plain', 'application/x-ndjson'],
      async (_request: unknown, payload: unknown) => payload,
    );
    scope.put(
      '/v1/sets/:name',
      {
        validatorCompiler: streamedBodyCompiler,
        schema: {
          summary: 'create or replace a prefix set from a streamed body',
          description:
            'text/plain: one prefix a line, blank lines and # comments skipped. ' +
            'application/x-ndjson: one JSON string or {"prefix": "..."} a line. ' +
            'application/json: {"prefixes": [...]}. A bad prefix is named by its line (or pointer).',
          tags: ['sets'],
          params: SetNameParamsSchema,
          querystring: DryRunQuerySchema,
          body: {
            content: {
              'text/plain': { schema: Type.String() },
              'application/x-ndjson': { schema: Type.String() },
              'application/json': { schema: PrefixListSchema },
            },
          },
          response: withProblems({ 200: SetChangeSchema }),
        },
      },
      async (request) => {
        const { name } = request.params;
        const dryRun = request.query.dryRun === true;
        const body = request.body as AsyncIterable<Buffer>;
        const format = formatOf(request.headers['content-type']);
        if (format === 'json') {
          const text = await readAll(body, opts.setBodyLimit);
          let doc: unknown;
          try {
            doc = JSON.parse(text);
          } catch (err: unknown) {
            throw new ApiError('API_BAD_JSON', (err as Error).message, { cause: err });
          }
          if (!checkPrefixList.Check(doc)) {
            const errors = validationErrors(checkPrefixList.Errors(doc), 'body');
            throw new ApiError(
              'API_VALIDATION',
              `body ${errors[0]?.pointer ?? ''}: ${errors[0]?.detail ?? 'invalid'}`,
              { members: { errors } },
            );
          }
          try {
            return await controller.putSet(name, doc.prefixes, { dryRun });
          } catch (err: unknown) {
            throw locate(err);
          }
        }
        const map = new LineMap();
        try {
          return await controller.putSet(
            name,
            readPrefixLines(body, format, opts.setBodyLimit, map),
            { dryRun },
          );
        } catch (err: unknown) {
          if (map.failure !== undefined) throw map.failure;
          const bad = prefixErrorOf(err);
          if (bad) {
            const line = bad.entry !== undefined ? map.lineOf(bad.entry) : map.lastLine;
            throw new LocatedError(bad, { line }, `line ${line}: `);
          }
          throw err;
        }
      },
    );
  });

  const prefixChange = (summary: string) => ({
    summary,
    tags: ['sets'],
    params: SetNameParamsSchema,
    querystring: DryRunQuerySchema,
    body: PrefixListSchema,
    response: withProblems({ 200: ChangeResultSchema }),
  });

  app.post(
    '/v1/sets/:name/prefixes',
    { schema: prefixChange('add prefixes to a set') },
    async (request) => {
      try {
        return await controller.addPrefixes(request.params.name, request.body.prefixes, {
          dryRun: request.query.dryRun === true,
        });
      } catch (err: unknown) {
        throw locate(err);
      }
    },
  );

  app.delete(
    '/v1/sets/:name/prefixes',
    { schema: prefixChange('remove prefixes from a set') },
    async (request) => {
      try {
        return await controller.removePrefixes(request.params.name, request.body.prefixes, {
          dryRun: request.query.dryRun === true,
        });
      } catch (err: unknown) {
        throw locate(err);
      }
    },
  );

  app.delete(
    '/v1/sets/:name',
    {
      schema: {
        summary: 'delete a set (409 while a rule references it)',
        tags: ['sets'],
        params: SetNameParamsSchema,
        querystring: DryRunQuerySchema,
        response: withProblems({ 200: ChangeResultSchema }),
      },
    },
    async (request) =>
      controller.removeSet(request.params.name, { dryRun: request.query.dryRun === true }),
  );
};
