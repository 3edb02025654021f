// One log line per journaled fact worth an operator's eye, naming the fact's seq (so a line and
// `vmlockd audit` join) and its disk, VM and host as fields (src/daemon/log.ts). Routine facts
// (acquire, release, a re-take) are debug; refusals and lost input warnings; a lost lease an error.
import { TAKEN_AGAIN, type Fact } from '../engine/facts.js';
import type { Owner } from '../engine/types.js';
import type { Level, LogFields, Logger } from './log.js';

const who = (o: Owner): string => (o.name ? `${o.name} (${o.uuid})` : o.uuid);
const vm = (o: Owner): string => o.name ?? o.uuid;

export function logFact(log: Logger, f: Fact): void {
  // Every acquire, release and re-take passes here and its line is debug: nothing is built for it
  // below that level (a restart with 10,000 locks built and dropped 10,000 lines; issue 13).
  if (routine(f) && !log.enabled('debug')) return;
  const line = describe(f);
  if (!line || !log.enabled(line.level)) return;
  log.log(line.level, line.msg, { event: line.event ?? f.kind, seq: f.seq, host: f.host, ...line.fields });
}

/** The facts whose line is debug (describe's), so routine that none is built below that level. */
export function routine(f: Fact): boolean {
  return f.kind === 'LockAcquired' || f.kind === 'LockReleased' || (f.kind === 'Reacquired' && !f.payload.found);
}

interface Line {
  level: Level;
  msg: string;
  event?: string;
  fields?: LogFields;
}

export function describe(f: Fact): Line | undefined {
  switch (f.kind) {
    case 'LeaseLost': {
      const p = f.payload;
      return {
        level: 'error',
        // The fact's reason says what was found; a gap intrusion (decision 0020) was taken again for
        // the VM, every other loss was not (review24a: the line said "did not take it back" for both).
        msg:
          `LEASE LOST: disk ${p.disk} of VM ${who(p.owner)}: ${p.reason}` +
          `${p.holder.mode ? ` (${p.holder.mode} lock)` : ''}${p.holder.host ? ` (holder host ${p.holder.host})` : ''}` +
          (p.reason.endsWith(TAKEN_AGAIN) ? '. Another VM may have written the disk while vmlockd was down: check it now.' : '; vmlockd did not take it back. The VM may be running without its lock: check it now.'),
        fields: { disk: p.disk, vm: vm(p.owner) },
      };
    }
    case 'Reacquired': {
      const p = f.payload;
      if (p.found) return { level: 'warning', event: 'Found', msg: `FOUND: disk ${p.disk} of VM ${who(p.owner)} was held but the journal had forgotten it; taken again (${p.mode})`, fields: { disk: p.disk, vm: vm(p.owner) } };
      return { level: 'debug', msg: `re-took disk ${p.disk} of VM ${who(p.owner)} (${p.mode}${p.how ? `, ${p.how}` : ''})`, fields: { disk: p.disk, vm: vm(p.owner) } };
    }
    case 'LockRefused': {
      const p = f.payload;
      return { level: 'warning', msg: `refused disk ${p.disk} to VM ${who(p.owner)}: ${p.message}`, fields: { disk: p.disk, vm: vm(p.owner) } };
    }
    case 'LockAcquired': {
      const p = f.payload;
      return { level: 'debug', msg: `locked disk ${p.disk} for VM ${who(p.owner)} (${p.mode}, ${p.source})`, fields: { disk: p.disk, vm: vm(p.owner) } };
    }
    case 'LockReleased': {
      const p = f.payload;
      return { level: 'debug', msg: `released disk ${p.disk} of VM ${who(p.owner)} (${p.reason})`, fields: { disk: p.disk, vm: vm(p.owner) } };
    }
    case 'DaemonStarted': {
      const p = f.payload;
      return { level: 'info', msg: `started (pid ${p.pid}, version ${p.version}, ${p.held} lock(s) held${p.start ? `, ${p.start} start` : ''})` };
    }
    case 'DaemonStopped': {
      const p = f.payload;
      return { level: 'info', msg: `stopped (${p.reason}; ${p.held} lock(s) held)` };
    }
    case 'OwnerGone': {
      const p = f.payload;
      return { level: 'info', msg: `owner ${who(p.owner)} (pid ${p.pid}) is gone; released ${p.released} lock(s)`, fields: { vm: vm(p.owner) } };
    }
    case 'ConflictAction': {
      const p = f.payload;
      return { level: p.result === 'done' ? 'warning' : 'error', msg: `on_conflict ${p.action} of VM ${who(p.owner)}: ${p.result}${p.error ? ` (${p.error})` : ''}`, fields: { vm: vm(p.owner) } };
    }
    case 'ConfigRejected': {
      const p = f.payload;
      return { level: 'warning', msg: `config rejected (${p.trigger})${p.error ? `: ${p.error}` : ''}` };
    }
    case 'CommandFailed': {
      const p = f.payload;
      return { level: 'warning', msg: `command failed (${p.source}, ${p.code}): ${p.message}`, ...(p.owner ? { fields: { vm: vm(p.owner) } } : {}) };
    }
    case 'LibvirtVouched': {
      const p = f.payload;
      return { level: 'debug', msg: `VM ${who(p.owner)} runs on libvirt ${p.libvirt.uri} (host ${p.libvirt.host}): that libvirt answers for its locks`, fields: { vm: vm(p.owner) } };
    }
    case 'IdentityLearned': {
      const p = f.payload;
      const holders = [p.owner, ...(p.others ?? [])].map(who).join(', ');
      if (p.conflict === undefined || p.conflict.length === 0) {
        return { level: 'info', msg: `disk ${p.disk} of VM ${holders} now exists: identity ${p.inode} learnt; its hard links and bind mounts are this disk from now on`, fields: { disk: p.disk, vm: vm(p.owner) } };
      }
      const others = p.conflict.map((c) => `VM ${who(c.owner)} holds it as ${c.disk} (${c.mode})`).join('; ');
      return {
        level: 'error',
        event: 'DiskConflict',
        msg:
          `DISK CONFLICT: disk ${p.disk} of VM ${holders} (${p.mode}), held before it existed, turned out to be the same file as another held disk: ${others}. ` +
          'Two VMs were granted one disk under two names: check both now.',
        fields: { disk: p.disk, vm: vm(p.owner) },
      };
    }
    case 'FactsDropped': {
      const p = f.payload;
      const kinds = Object.entries(p.kinds).map(([k, n]) => `${n} ${k}`).join(', ');
      return { level: 'error', msg: `FACTS DROPPED: ${p.count} fact(s) (${kinds}) of ${p.from} to ${p.to} are not in the journal: ${p.reason}` };
    }
    case 'ClockStepped': {
      const p = f.payload;
      return {
        level: 'error',
        msg:
          `CLOCK STEPPED BACK by ${(p.backMs / 1000).toFixed(1)} s (${p.seenBy === 'start' ? 'since the journal\'s last fact, across the restart' : 'while running'}): the wall clock had reached ${p.from} and now reads ${p.to}. ` +
          `Facts keep ${p.from} as their time until the clock passes it again (each with the clock's own reading as wallAt); audit --at a time from ${p.to} to ${p.from} says it is ambiguous (this host's clock passed it twice). Check NTP and the RTC.`,
      };
    }
    case 'InputRejected': {
      const p = f.payload;
      return { level: 'warning', msg: `input rejected (${p.source}, ${p.code}): ${p.message}` };
    }
    default:
      return undefined;
  }
}
