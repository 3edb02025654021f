// The libvirt qemu hook's argv (`/etc/libvirt/hooks/qemu NAME OP SUBOP EXTRA`, docs/hooks.rst)
// -> what vmlockd should do. The domain XML arrives on stdin and is parsed elsewhere (domain-xml.ts).
//
// A non-zero exit at prepare/start/started aborts the start, at migrate/restore aborts the incoming
// migration or restore, and at reconnect KILLS the running QEMU: so everything not mapped here
// must exit 0 at once. For migrate and restore, libvirt reads the hook's stdout as replacement
// domain XML (empty = unchanged): the hook must print nothing on stdout.
//
// Caution for the caller: libvirt also runs `prepare begin` on the DESTINATION of an incoming
// migration (qemuProcessInit is shared), right after `migrate begin`, while the source still runs
// and holds the disks. An 'acquire' there would be refused and abort the migration; the hook
// handler has to treat a `prepare begin` that follows `migrate begin` for the same domain as 'check'.
import { BadInputError } from '../engine/errors.js';

export type HookAction = 'acquire' | 'release' | 'check' | 'noop';

/** Every qemu hook operation libvirt documents, with the sub-operation it is called with. */
export const QEMU_HOOK_CALLS = [
  ['prepare', 'begin'],
  ['start', 'begin'],
  ['started', 'begin'],
  ['stopped', 'end'],
  ['release', 'end'],
  ['migrate', 'begin'],
  ['restore', 'begin'],
  ['reconnect', 'begin'],
  ['attach', 'begin'],
] as const;

export interface HookCall {
  readonly name: string;
  readonly op: string;
  readonly subop: string;
  /** '-' when libvirt passes none; since libvirt 10.5 `release end` passes the shutoff reason. */
  readonly extra: string;
  readonly action: HookAction;
}

export function hookAction(op: string, subop: string): HookAction {
  if (op === 'prepare' && subop === 'begin') return 'acquire';
  if (op === 'release' && subop === 'end') return 'release';
  if ((op === 'migrate' || op === 'restore') && subop === 'begin') return 'check';
  return 'noop';
}

/**
 * Parse the hook's arguments (process.argv.slice(2)). Fewer than three is a usage error: libvirt
 * always passes four. Extra arguments beyond four are ignored so a newer libvirt cannot make the
 * hook fail (and so abort or kill a domain).
 */
export function parseHookArgs(argv: readonly string[]): HookCall {
  if (argv.length < 3) {
    throw new BadInputError(`the qemu hook expects NAME OP SUBOP [EXTRA], got ${argv.length} argument(s): ${JSON.stringify(argv)}`);
  }
  const [name, op, subop, extra = '-'] = argv as [string, string, string, string?];
  if (name === '' || name === '-') throw new BadInputError(`the qemu hook needs a domain name as its first argument, got ${JSON.stringify(name)}`);
  return { name, op, subop, extra, action: hookAction(op, subop) };
}
