// Waiting on kernel writes that run side by side, so that none is still running when one fails.

/** The values of `writes` once all have ended, or the first one's error: none runs on behind it. */
export async function settled<T>(writes: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(writes);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
