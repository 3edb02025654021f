// A start in a new boot: a VM does not survive its host's reboot, so a lock whose owner is no live
// process (taken through the control API or JSON lines: no connection, no pid to watch) would be
// re-taken and kept forever, blocking every other host. The boot id (/proc/sys/kernel/random/boot_id)
// journaled at each start tells a reboot; config key after_reboot chooses release (default) or retake.
import { fact, type NewFact } from '../engine/facts.js';
import { resourceFields } from '../engine/locker.js';
import type { State } from '../engine/state.js';

/** Sources whose owners no process stands for: nothing tells when their VM is gone. */
export const UNWATCHED_SOURCES: ReadonlySet<string> = new Set(['api', 'jsonl']);

/**
 * Sources whose owners are processes of this host (the virtlockd protocol: QEMU registers its pid).
 * None survives a reboot: a new boot releases their locks whatever after_reboot says, instead of
 * judging each owner by a pid and start time that a process of the new boot may match by chance.
 */
export const PROCESS_SOURCES: ReadonlySet<string> = new Set(['virtlockd']);

export type AfterReboot = 'release' | 'retake';

/**
 * Pure: the releases a start in a new boot journals before re-taking anything. None when the boot
 * is the same or unknown on either side. Owners that were processes of this host (PROCESS_SOURCES)
 * are gone with the boot; unwatched owners (UNWATCHED_SOURCES) are released unless the policy is `retake`.
 */
export function rebootReleases(state: State, previousBoot: string | undefined, currentBoot: string | undefined, policy: AfterReboot, at: string): NewFact[] {
  if (!previousBoot || !currentBoot || previousBoot === currentBoot) return [];
  const out: NewFact[] = [];
  for (const res of state.resources.values()) {
    for (const h of res.holders.values()) {
      if (PROCESS_SOURCES.has(h.source)) {
        out.push(
          fact('LockReleased', at, {
            ...resourceFields(res.ref, h.path),
            owner: h.owner,
            source: 'reboot',
            reason: `the host rebooted (boot id ${previousBoot} -> ${currentBoot}): the owner, registered through ${h.source}, was a process of the previous boot`,
          }),
        );
        continue;
      }
      if (policy === 'retake' || !UNWATCHED_SOURCES.has(h.source)) continue;
      out.push(
        fact('LockReleased', at, {
          ...resourceFields(res.ref, h.path),
          owner: h.owner,
          source: 'reboot',
          reason: `the host rebooted (boot id ${previousBoot} -> ${currentBoot}) and the owner, taken through ${h.source}, is no live process (after_reboot = release)`,
        }),
      );
    }
  }
  return out;
}
