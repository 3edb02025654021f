// Shared settings for the property-based (fast-check) tests: bounded runs so the unit tier stays
// fast, reproducible from a seed. FUZZ_RUNS raises the runs per property (a longer local session),
// FUZZ_SEED replays a failure (fast-check prints the seed and the counterexample's path).
import type { Parameters } from 'fast-check';

export function fuzzParams<T = unknown>(runs = 200): Parameters<T> {
  const seed = process.env.FUZZ_SEED;
  return {
    numRuns: Number(process.env.FUZZ_RUNS ?? runs),
    ...(seed !== undefined ? { seed: Number(seed) } : {}),
    // The seed and the shrunk counterexample, so a failure in CI can be replayed exactly.
    verbose: 0,
  };
}
