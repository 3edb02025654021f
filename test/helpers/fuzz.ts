// Shared settings for the property-based (fast-check) tests: bounded runs so the unit tier stays
// fast, reproducible from a seed. FUZZ_RUNS raises the runs per property (a longer local session),
// FUZZ_SEED replays a failure (fast-check prints the seed and the counterexample's path).
// Local runs draw a new seed each time (exploring); CI (CI=true) uses a fixed one unless FUZZ_SEED is
// set, so a submission's gate does not depend on the draw.
import fc, { type Parameters } from 'fast-check';

/** The seed CI runs with. */
export const CI_SEED = 20261130;

export function fuzzParams<T = unknown>(runs = 200): Parameters<T> {
  const seed = process.env.FUZZ_SEED ?? (process.env.CI === 'true' ? String(CI_SEED) : undefined);
  return {
    numRuns: Number(process.env.FUZZ_RUNS ?? runs),
    ...(seed !== undefined ? { seed: Number(seed) } : {}),
  };
}

/**
 * fc.assert whose error also carries the failing assertion's own message (uvu prints only the
 * message: fast-check keeps the property's error as `cause`).
 */
export async function assertProperty<Ts extends [unknown, ...unknown[]]>(prop: fc.IAsyncPropertyWithHooks<Ts> | fc.IPropertyWithHooks<Ts>, params: Parameters<unknown>): Promise<void> {
  try {
    await fc.assert(prop as fc.IAsyncProperty<Ts>, params as Parameters<Ts>);
  } catch (e) {
    const cause = (e as { cause?: unknown }).cause;
    if (cause instanceof Error) (e as Error).message += `\nThe property failed with: ${cause.message}`;
    throw e;
  }
}
