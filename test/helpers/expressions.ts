// Generated filter expressions shared by the limit tests and the compile benchmark.

/** `host 10.0.0.0 or host 10.0.0.1 or …` with n terms. */
export function hostList(n: number): string {
  return Array.from(
    { length: n },
    (_, i) => `host 10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`,
  ).join(' or ');
}
