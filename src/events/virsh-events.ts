// One line of `virsh -c URI event --all --loop --timestamp` output -> a typed LibvirtEvent.
//
// The line formats follow libvirt's tools/virsh-domain-event.c (tools/virsh-domain.c before 8.x):
//   [<timestamp>: ]event 'lifecycle' for domain '<name>': <Word> <Detail>
//   [<timestamp>: ]event 'device-added' for domain '<name>': <alias>
//   [<timestamp>: ]event 'device-removed' for domain '<name>': <alias>
//   [<timestamp>: ]event '<other>' for domain '<name>'[...]
// The timestamp is virTimeStringNowRaw(): `YYYY-MM-DD HH:MM:SS.mmm+0000`, always UTC.
// virsh releases before about 6.x printed the domain name without quotes; both forms are accepted.
// virsh translates these strings with gettext: the supervisor must run it with LC_ALL=C.
//
// Never throws: a line we cannot read becomes { kind: 'garbled' } so the caller can journal it
// and keep reading, instead of one odd line killing the event stream.

/** Lifecycle words and their details, spelled exactly as virsh 9.0 prints them. */
export const LIFECYCLE_DETAILS = {
  Defined: ['Added', 'Updated', 'Renamed', 'Snapshot'],
  Undefined: ['Removed', 'Renamed'],
  Started: ['Booted', 'Migrated', 'Restored', 'Snapshot', 'Event wakeup'],
  Suspended: ['Paused', 'Migrated', 'I/O Error', 'Watchdog', 'Restored', 'Snapshot', 'API error', 'Post-copy', 'Post-copy Error'],
  Resumed: ['Unpaused', 'Migrated', 'Snapshot', 'Post-copy', 'Post-copy Error'],
  Stopped: ['Shutdown', 'Destroyed', 'Crashed', 'Migrated', 'Saved', 'Failed', 'Snapshot'],
  Shutdown: ['Finished', 'Finished after guest request', 'Finished after host request'],
  PMSuspended: ['Memory', 'Disk'],
  Crashed: ['Panicked', 'Crashloaded'],
} as const;

export type LifecycleWord = keyof typeof LIFECYCLE_DETAILS;
/**
 * `unknown` is what virsh prints when the daemon sends a detail newer than the client knows;
 * the word still tells us what happened, so such a line is kept rather than called garbled.
 */
export type LifecycleDetail<W extends LifecycleWord> = (typeof LIFECYCLE_DETAILS)[W][number] | 'unknown';

export const LIFECYCLE_WORDS = Object.keys(LIFECYCLE_DETAILS) as LifecycleWord[];

/** `at` is the ISO UTC time virsh stamped on the line, or null when it printed none. */
export type LifecycleEvent = {
  [W in LifecycleWord]: {
    readonly kind: 'lifecycle';
    readonly at: string | null;
    readonly domain: string;
    readonly word: W;
    readonly detail: LifecycleDetail<W>;
  };
}[LifecycleWord];

export type LibvirtEvent =
  | LifecycleEvent
  | { readonly kind: 'device-added'; readonly at: string | null; readonly domain: string; readonly alias: string }
  | { readonly kind: 'device-removed'; readonly at: string | null; readonly domain: string; readonly alias: string }
  /** Any other domain event type ('reboot', 'block-job', 'tunable', ...): no lock meaning. */
  | { readonly kind: 'other'; readonly at: string | null; readonly event: string; readonly domain: string }
  /** `error: Disconnected from URI due to REASON`: virsh exits next; the supervisor reconnects. */
  | { readonly kind: 'disconnected'; readonly uri: string; readonly reason: string; readonly raw: string }
  /** Any other `error: ...` line from virsh (connect failures and the like). */
  | { readonly kind: 'error'; readonly message: string; readonly raw: string }
  /** Blank lines, `events received: N`, `event loop ...`, continuation lines of multi-line events. */
  | { readonly kind: 'noise'; readonly raw: string }
  | { readonly kind: 'garbled'; readonly raw: string; readonly reason: string };

export type LifecycleAction = 'acquire' | 'release' | 'release-if-gone' | 'keep' | 'ignore';

const TIMESTAMP_RE = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{3})([+-])(\d{2})(\d{2}): /;
const EVENT_RE = /^event '([^']*)' for domain (.*)$/;
// Greedy name: lifecycle details and aliases never contain ": ", so the last ": " ends the name,
// which keeps a domain name that itself contains "': " intact.
const LIFECYCLE_REST_RE = /^(.+): (\S+) (.+)$/;
const DEVICE_REST_RE = /^(.+): (\S+)$/;
const DISCONNECTED_RE = /^error: Disconnected from (.*) due to (.+)$/;
// Lines that belong to the previous multi-line event (tunable, job-completed, graphics,
// memory-failure, memory-device-size-change, nic-mac-change); virsh prints them unstamped.
const CONTINUATION_RE = /^(\t|(recipient|action|flags|alias|size|oldMAC|newMAC):( |$))/;
const LOOP_NOISE_RE = /^(events received: \d+|event loop interrupted|event loop timed out)$/;

function unquote(name: string): string {
  return name.length >= 2 && name.startsWith("'") && name.endsWith("'") ? name.slice(1, -1) : name;
}

function isDetailOf<W extends LifecycleWord>(word: W, detail: string): detail is LifecycleDetail<W> {
  return detail === 'unknown' || (LIFECYCLE_DETAILS[word] as readonly string[]).includes(detail);
}

function isWord(word: string): word is LifecycleWord {
  return Object.prototype.hasOwnProperty.call(LIFECYCLE_DETAILS, word);
}

/** The domain of a non-lifecycle event line: quoted up to the closing quote, else the first token. */
function otherDomain(rest: string): string | null {
  if (rest.startsWith("'")) {
    const m = /^'(.*?)'(?=$|:| )/.exec(rest);
    return m ? m[1]! : null;
  }
  const m = /^([^\s:]+)/.exec(rest);
  return m ? m[1]! : null;
}

function parseTimestamp(line: string): { at: string | null; body: string } | { error: string } {
  const m = TIMESTAMP_RE.exec(line);
  if (!m) {
    if (/^\d{4}-\d{2}-\d{2} /.test(line)) return { error: 'timestamp prefix is not YYYY-MM-DD HH:MM:SS.mmm+HHMM: ' };
    return { at: null, body: line };
  }
  const [, y, mo, d, h, mi, s, ms, sign, oh, om] = m;
  const iso = `${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}${sign}${oh}:${om}`;
  const t = Date.parse(iso);
  if (Number.isNaN(t) || Number(mo) > 12 || Number(d) > 31 || Number(h) > 23 || Number(mi) > 59 || Number(s) > 60) {
    return { error: `timestamp ${JSON.stringify(m[0].slice(0, -2))} is not a valid time` };
  }
  return { at: new Date(t).toISOString(), body: line.slice(m[0].length) };
}

/** Parse one line of virsh event output (without its trailing newline; a trailing \r or \n is tolerated). */
export function parseVirshEventLine(line: string): LibvirtEvent {
  const raw = line.replace(/\r?\n$/, '');
  if (raw.trim() === '' || LOOP_NOISE_RE.test(raw.trim()) || CONTINUATION_RE.test(raw)) return { kind: 'noise', raw };

  const dis = DISCONNECTED_RE.exec(raw);
  if (dis) return { kind: 'disconnected', uri: dis[1]!, reason: dis[2]!, raw };
  if (raw.startsWith('error: ')) return { kind: 'error', message: raw.slice('error: '.length), raw };

  const ts = parseTimestamp(raw);
  if ('error' in ts) return { kind: 'garbled', raw, reason: ts.error };
  const { at, body } = ts;

  const ev = EVENT_RE.exec(body);
  if (!ev) return { kind: 'garbled', raw, reason: "not an event line: expected \"event '<type>' for domain '<name>'...\"" };
  const [, type, rest] = ev as unknown as [string, string, string];

  switch (type) {
    case 'lifecycle': {
      const m = LIFECYCLE_REST_RE.exec(rest);
      if (!m) return { kind: 'garbled', raw, reason: "lifecycle event without \"': <Word> <Detail>\"" };
      const [, name, word, detail] = m as unknown as [string, string, string, string];
      if (!isWord(word)) return { kind: 'garbled', raw, reason: `unknown lifecycle word ${JSON.stringify(word)}` };
      if (!isDetailOf(word, detail)) {
        return { kind: 'garbled', raw, reason: `unknown detail ${JSON.stringify(detail)} for lifecycle word ${word}` };
      }
      return { kind: 'lifecycle', at, domain: unquote(name), word, detail } as LifecycleEvent;
    }
    case 'device-added':
    case 'device-removed': {
      const m = DEVICE_REST_RE.exec(rest);
      if (!m) return { kind: 'garbled', raw, reason: `${type} event without a device alias` };
      return { kind: type, at, domain: unquote(m[1]!), alias: m[2]! };
    }
    default: {
      if (!/^[a-z0-9-]+$/.test(type)) return { kind: 'garbled', raw, reason: `event type ${JSON.stringify(type)} is not a virsh event name` };
      const domain = otherDomain(rest);
      if (domain === null) return { kind: 'garbled', raw, reason: `${type} event without a domain name` };
      return { kind: 'other', at, event: type, domain };
    }
  }
}

/**
 * What a parsed event means for the domain's locks. Mirrors where libvirt's lock manager acts:
 * locks follow running vCPUs, so they are taken on start/resume and dropped on stop/crash.
 * - 'acquire': take the domain's disks (device-added: that one disk).
 * - 'release': drop the domain's disks (device-removed: that one disk).
 * - 'release-if-gone': the domain may have stopped (Stopped, Crashed, Undefined); drop its locks only
 *   once libvirt says (domstate, by uuid) that it no longer runs. An event names the domain only, so
 *   a late Stopped of an earlier run, a crash kernel loading (Crashed Crashloaded) or an in-place
 *   restart after a panic (on_crash=restart) must not release the locks of a QEMU that runs.
 * - 'keep': the domain lives on paused; its locks stay as they are.
 * - 'ignore': no lock meaning.
 */
export function mapLifecycle(ev: LibvirtEvent): LifecycleAction {
  switch (ev.kind) {
    case 'lifecycle':
      return mapWord(ev);
    case 'device-added':
      return 'acquire';
    case 'device-removed':
      return 'release';
    case 'other':
    case 'disconnected':
    case 'error':
    case 'noise':
    case 'garbled':
      return 'ignore';
    default: {
      const _exhaustive: never = ev;
      return _exhaustive;
    }
  }
}

function mapWord(ev: LifecycleEvent): LifecycleAction {
  switch (ev.word) {
    case 'Started':
      // Incoming migration: libvirt emits "Started Migrated" on the destination at Prepare,
      // while the source still runs and holds the disks; taking them here would be refused.
      // The destination takes them at "Resumed Migrated"/"Resumed Post-copy", as virtlockd does.
      return ev.detail === 'Migrated' ? 'keep' : 'acquire';
    case 'Resumed':
      return 'acquire';
    case 'Stopped':
    case 'Crashed':
    case 'Undefined':
      return 'release-if-gone';
    case 'Suspended':
      // Paused, and on a migration source paused for the hand-over (Migrated, Post-copy): the source
      // keeps its locks until the migration is over there (Stopped Migrated, its release end hook),
      // which is after the destination resumed; so no third host can take the disks in between and
      // the destination takes them as soon as they are free (docs/decisions/0009).
      return 'keep';
    case 'Defined':
    case 'PMSuspended':
      return 'ignore';
    case 'Shutdown':
      // Always followed by "Stopped Shutdown", which releases.
      return 'ignore';
    default: {
      const _exhaustive: never = ev;
      return _exhaustive;
    }
  }
}
