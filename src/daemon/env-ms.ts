// Millisecond settings read from the environment (VMLOCKD_TAKEOVER_TIMEOUT_MS,
// VMLOCKD_VIRTLOCKD_FRAME_TIMEOUT_MS, VMLOCKD_JOURNAL_FLUSH_MS): one rule and one message for all.
import { VmlockdError } from '../engine/errors.js';

/** The most setTimeout takes; a larger delay would fire at once. */
const MAX_MS = 2_147_483_647;

/**
 * The whole number of milliseconds `env[name]` gives (1 to 2147483647), or undefined when it is
 * unset or empty. Anything else is refused with an error naming the variable and what it held.
 */
export function envMs(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const ms = Number(raw);
  if (!Number.isSafeInteger(ms) || ms < 1 || ms > MAX_MS) {
    throw new VmlockdError('VMLOCKD_ERR_BAD_INPUT', `${name} must be a whole number of milliseconds from 1 to ${MAX_MS}, got ${JSON.stringify(raw)}`);
  }
  return ms;
}
