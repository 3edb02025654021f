// virsh event lines -> LibvirtEvent, and the lock meaning of each event.
// Fixtures: real output of `virsh event --all --loop --timestamp` from libvirt 9.0 (see fixtures/README.md).
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  LIFECYCLE_DETAILS,
  LIFECYCLE_WORDS,
  mapLifecycle,
  parseVirshEventLine,
  type LibvirtEvent,
  type LifecycleAction,
} from '../../src/events/virsh-events.js';

const fixture = (name: string): string[] =>
  readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8').split('\n');

test('given a timestamped lifecycle line, then word, detail, domain and ISO UTC time are parsed', () => {
  const ev = parseVirshEventLine("2026-11-25 20:28:25.879+0000: event 'lifecycle' for domain 'vm1': Started Booted");
  assert.equal(ev, { kind: 'lifecycle', at: '2026-11-25T20:28:25.879Z', domain: 'vm1', word: 'Started', detail: 'Booted' });
});

test('given a line without timestamp, then at is null', () => {
  const ev = parseVirshEventLine("event 'lifecycle' for domain 'vm1': Stopped Destroyed");
  assert.equal(ev, { kind: 'lifecycle', at: null, domain: 'vm1', word: 'Stopped', detail: 'Destroyed' });
});

test('given a non-UTC offset in the timestamp, then it is converted to UTC', () => {
  const ev = parseVirshEventLine("2026-11-25 22:28:25.879+0200: event 'lifecycle' for domain 'vm1': Started Booted");
  assert.is((ev as { at: string }).at, '2026-11-25T20:28:25.879Z');
});

test('given a trailing CRLF, then the line still parses', () => {
  const ev = parseVirshEventLine("event 'lifecycle' for domain 'vm1': Resumed Unpaused\r\n");
  assert.is(ev.kind, 'lifecycle');
});

test('every lifecycle word with every detail virsh 9.0 spells is parsed', () => {
  let n = 0;
  for (const word of LIFECYCLE_WORDS) {
    for (const detail of LIFECYCLE_DETAILS[word]) {
      const ev = parseVirshEventLine(`event 'lifecycle' for domain 'd': ${word} ${detail}`);
      assert.equal(ev, { kind: 'lifecycle', at: null, domain: 'd', word, detail }, `${word} ${detail}`);
      n++;
    }
  }
  assert.is(n, 4 + 2 + 5 + 9 + 5 + 7 + 3 + 2 + 2);
});

test('given the detail "unknown" (daemon newer than virsh), then the event is kept', () => {
  const ev = parseVirshEventLine("event 'lifecycle' for domain 'd': Stopped unknown");
  assert.equal(ev, { kind: 'lifecycle', at: null, domain: 'd', word: 'Stopped', detail: 'unknown' });
});

test('given a domain name with quotes and "\': ", then the name is kept whole', () => {
  const ev = parseVirshEventLine("event 'lifecycle' for domain 'vm & 'quoted'': Defined Added");
  assert.equal(ev, { kind: 'lifecycle', at: null, domain: "vm & 'quoted'", word: 'Defined', detail: 'Added' });
  const ev2 = parseVirshEventLine("event 'lifecycle' for domain 'a': b': Shutdown Finished after guest request");
  assert.equal(ev2, { kind: 'lifecycle', at: null, domain: "a': b", word: 'Shutdown', detail: 'Finished after guest request' });
});

test('given the unquoted domain form of older virsh, then it parses too', () => {
  assert.equal(parseVirshEventLine("event 'lifecycle' for domain sid-lxde: Shutdown Finished"), {
    kind: 'lifecycle', at: null, domain: 'sid-lxde', word: 'Shutdown', detail: 'Finished',
  });
  assert.equal(parseVirshEventLine("event 'device-removed' for domain green: virtio-disk2"), {
    kind: 'device-removed', at: null, domain: 'green', alias: 'virtio-disk2',
  });
});

test('given device-added and device-removed, then the alias is parsed', () => {
  assert.equal(parseVirshEventLine("2026-11-25 21:23:38.319+0000: event 'device-added' for domain 'tcg1': scsi0-0-0-1"), {
    kind: 'device-added', at: '2026-11-25T21:23:38.319Z', domain: 'tcg1', alias: 'scsi0-0-0-1',
  });
  assert.equal(parseVirshEventLine("event 'device-removed' for domain 'vm1': virtio-disk1"), {
    kind: 'device-removed', at: null, domain: 'vm1', alias: 'virtio-disk1',
  });
});

test('given other event types, in each of their virsh formats, then kind is other with the domain', () => {
  const lines: Array<[string, string]> = [
    ["event 'reboot' for domain 'vm1'", 'reboot'],
    ["event 'rtc-change' for domain 'vm1': -3600", 'rtc-change'],
    ["event 'watchdog' for domain 'vm1': reset", 'watchdog'],
    ["event 'io-error' for domain 'vm1': /img/a.qcow2 (virtio-disk0) pause", 'io-error'],
    ["event 'io-error-reason' for domain 'vm1': /img/a.qcow2 (virtio-disk0) pause due to enospc", 'io-error-reason'],
    ["event 'graphics' for domain 'vm1': connect local[IPv4 127.0.0.1 5900] remote[IPv4 127.0.0.1 4242] none", 'graphics'],
    ["event 'control-error' for domain 'vm1'", 'control-error'],
    ["event 'block-job' for domain 'vm1': Block Copy for /img/a.qcow2 ready", 'block-job'],
    ["event 'block-job-2' for domain 'vm1': Block Copy for vda ready", 'block-job-2'],
    ["event 'disk-change' for domain 'vm1' disk ide0-1-0: /a.iso -> <null>: dropped", 'disk-change'],
    ["event 'tray-change' for domain 'vm1' disk ide0-1-0: opened", 'tray-change'],
    ["event 'pm-wakeup' for domain 'vm1'", 'pm-wakeup'],
    ["event 'pm-suspend' for domain 'vm1'", 'pm-suspend'],
    ["event 'balloon-change' for domain 'vm1': 524288KiB", 'balloon-change'],
    ["event 'tunable' for domain 'vm1':", 'tunable'],
    ["event 'agent-lifecycle' for domain 'vm1': state: 'connected' reason: 'channel event'", 'agent-lifecycle'],
    ["event 'migration-iteration' for domain 'vm1': iteration: '3'", 'migration-iteration'],
    ["event 'job-completed' for domain 'vm1':", 'job-completed'],
    ["event 'device-removal-failed' for domain 'vm1': virtio-disk1", 'device-removal-failed'],
    ["event 'metadata-change' for domain 'vm1': type title, uri <null>", 'metadata-change'],
    ["event 'block-threshold' for domain 'vm1': dev: vda(/img/a.qcow2) 100 5", 'block-threshold'],
    ["event 'memory-failure' for domain 'vm1':", 'memory-failure'],
    ["event 'memory-device-size-change' for domain 'vm1':", 'memory-device-size-change'],
    ["event 'nic-mac-change' for domain 'vm1':", 'nic-mac-change'],
  ];
  for (const [line, event] of lines) {
    const ev = parseVirshEventLine(`2026-11-25 20:28:25.879+0000: ${line}`);
    assert.equal(ev, { kind: 'other', at: '2026-11-25T20:28:25.879Z', event, domain: 'vm1' }, line);
    assert.is(mapLifecycle(ev), 'ignore', line);
  }
});

test('given continuation lines of multi-line events and the loop trailer, then they are noise', () => {
  for (const raw of ['\tcpu_shares: 1024', 'recipient: guest', 'action: inject', 'flags:', 'alias: dimm0', 'size: 1048576',
    'oldMAC: 52:54:00:00:00:01', 'newMAC: 52:54:00:00:00:02', 'events received: 20', 'event loop interrupted',
    'event loop timed out', '', '   ']) {
    assert.equal(parseVirshEventLine(raw), { kind: 'noise', raw }, JSON.stringify(raw));
  }
});

test('given the disconnect line, then kind is disconnected with uri and reason', () => {
  const raw = 'error: Disconnected from test+unix:///default?socket=/tmp/s due to end of file';
  assert.equal(parseVirshEventLine(raw), { kind: 'disconnected', uri: 'test+unix:///default?socket=/tmp/s', reason: 'end of file', raw });
  const k = parseVirshEventLine('error: Disconnected from qemu:///system due to keepalive timeout');
  assert.is(k.kind === 'disconnected' && k.reason, 'keepalive timeout');
});

test('given another error line, then kind is error with the message', () => {
  const raw = 'error: internal error: client socket is closed';
  assert.equal(parseVirshEventLine(raw), { kind: 'error', message: 'internal error: client socket is closed', raw });
});

test('given garbled lines, then kind is garbled with a reason and nothing throws', () => {
  const bad = [
    "event 'lifecycle' for domain 'vm1': Exploded Booted",
    "event 'lifecycle' for domain 'vm1': unknown unknown",
    "event 'lifecycle' for domain 'vm1': Started Kaboom",
    "event 'lifecycle' for domain 'vm1': Started",
    "event 'lifecycle' for domain 'vm1'",
    "event 'device-added' for domain 'vm1'",
    "event 'Weird Type' for domain 'vm1'",
    "event 'reboot' for domain ''x",
    '2026-13-45 99:99:99.000+0000: event \'lifecycle\' for domain \'vm1\': Started Booted',
    "2026-11-25 20:28:25+0000: event 'lifecycle' for domain 'vm1': Started Booted",
    'Domain vm1 started',
    'événement « lifecycle » pour le domaine vm1 : Démarré',
  ];
  for (const raw of bad) {
    const ev = parseVirshEventLine(raw);
    assert.is(ev.kind, 'garbled', raw);
    assert.ok(ev.kind === 'garbled' && ev.reason.length > 0 && ev.raw === raw, raw);
    assert.is(mapLifecycle(ev), 'ignore');
  }
  const unknownWord = parseVirshEventLine("event 'lifecycle' for domain 'vm1': Exploded Booted");
  assert.match((unknownWord as { reason: string }).reason, /unknown lifecycle word "Exploded"/);
});

const lc = (word: string, detail: string): LibvirtEvent => parseVirshEventLine(`event 'lifecycle' for domain 'd': ${word} ${detail}`);

test('mapLifecycle: the mapping of every word and detail', () => {
  const expect = (word: string, detail: string): LifecycleAction => {
    switch (word) {
      case 'Started': return detail === 'Migrated' ? 'keep' : 'acquire';
      case 'Resumed': return 'acquire';
      case 'Stopped': case 'Crashed': case 'Undefined': return 'release-if-gone';
      case 'Suspended': return 'keep';
      default: return 'ignore';
    }
  };
  for (const word of LIFECYCLE_WORDS) {
    for (const detail of [...LIFECYCLE_DETAILS[word], 'unknown']) {
      assert.is(mapLifecycle(lc(word, detail)), expect(word, detail), `${word} ${detail}`);
    }
  }
});

test('mapLifecycle: spot checks of the brief', () => {
  assert.is(mapLifecycle(lc('Started', 'Booted')), 'acquire');
  assert.is(mapLifecycle(lc('Started', 'Restored')), 'acquire');
  assert.is(mapLifecycle(lc('Resumed', 'Post-copy')), 'acquire');
  assert.is(mapLifecycle(lc('Stopped', 'Migrated')), 'release-if-gone');
  assert.is(mapLifecycle(lc('Crashed', 'Panicked')), 'release-if-gone');
  assert.is(mapLifecycle(lc('Crashed', 'Crashloaded')), 'release-if-gone');
  assert.is(mapLifecycle(lc('Undefined', 'Removed')), 'release-if-gone');
  assert.is(mapLifecycle(lc('Suspended', 'Migrated')), 'keep');
  assert.is(mapLifecycle(lc('Suspended', 'Post-copy')), 'keep');
  assert.is(mapLifecycle(lc('Suspended', 'Post-copy Error')), 'keep');
  assert.is(mapLifecycle(lc('Suspended', 'I/O Error')), 'keep');
  assert.is(mapLifecycle(lc('Shutdown', 'Finished')), 'ignore');
  assert.is(mapLifecycle(lc('Defined', 'Added')), 'ignore');
  assert.is(mapLifecycle(lc('PMSuspended', 'Disk')), 'ignore');
});

test('mapLifecycle: Started Migrated (destination, at Prepare, source still running) does not acquire', () => {
  assert.is(mapLifecycle(lc('Started', 'Migrated')), 'keep');
  assert.is(mapLifecycle(lc('Resumed', 'Migrated')), 'acquire');
});

test('mapLifecycle: device-added acquires, device-removed releases', () => {
  assert.is(mapLifecycle(parseVirshEventLine("event 'device-added' for domain 'vm1': virtio-disk1")), 'acquire');
  assert.is(mapLifecycle(parseVirshEventLine("event 'device-removed' for domain 'vm1': virtio-disk1")), 'release');
  assert.is(mapLifecycle(parseVirshEventLine('error: Disconnected from x due to end of file')), 'ignore');
});

test('given the recorded test-driver stream, then every line parses and none is garbled', () => {
  const events = fixture('virsh-events-test-driver.stdout').map(parseVirshEventLine);
  assert.is(events.filter((e) => e.kind === 'garbled').length, 0);
  const lifecycle = events.filter((e) => e.kind === 'lifecycle');
  assert.is(lifecycle.length, 19);
  assert.equal(lifecycle.map((e) => e.kind === 'lifecycle' && `${e.domain}|${e.word} ${e.detail}`), [
    'vm-all-disks|Defined Added',
    "vm & 'quoted'|Defined Added",
    'vm-all-disks|Started Booted',
    'vm-all-disks|Suspended Paused',
    'vm-all-disks|Resumed Unpaused',
    'vm-all-disks|Stopped Shutdown',
    'vm-all-disks|Started Booted',
    'vm-all-disks|Stopped Saved',
    'vm-all-disks|Started Restored',
    'vm-all-disks|Stopped Snapshot',
    'vm-all-disks|Started Snapshot',
    'vm-all-disks|Stopped Destroyed',
    "vm & 'quoted'|Started Booted",
    "vm & 'quoted'|Stopped Destroyed",
    'vm-all-disks|Undefined Removed',
    "vm & 'quoted'|Defined Updated",
    "vm & 'quoted'|Undefined Renamed",
    'renamed-vm|Defined Renamed',
    'renamed-vm|Undefined Removed',
  ]);
  assert.ok(events.some((e) => e.kind === 'other' && e.event === 'metadata-change' && e.domain === 'vm-all-disks'));
  assert.ok(events.every((e) => e.kind !== 'lifecycle' || /^2026-11-25T21:2\d:\d\d\.\d{3}Z$/.test(e.at ?? '')));
  assert.equal(events.slice(-2).map((e) => e.kind), ['noise', 'noise']);
});

test('given the recorded qemu stream, then start gives Resumed before Started and hot-plug gives aliases', () => {
  const events = fixture('virsh-events-qemu-session.stdout').map(parseVirshEventLine);
  assert.is(events.filter((e) => e.kind === 'garbled').length, 0);
  const summary = events.filter((e) => e.kind !== 'noise').map((e) =>
    e.kind === 'lifecycle' ? `${e.word} ${e.detail}` : e.kind === 'device-added' || e.kind === 'device-removed' ? `${e.kind} ${e.alias}` : e.kind);
  assert.equal(summary.slice(0, 9), [
    'Defined Added',
    'Resumed Unpaused',
    'Started Booted',
    'Suspended Paused',
    'Resumed Unpaused',
    'device-added scsi0-0-0-1',
    'device-removed scsi0-0-0-1',
    'Shutdown Finished after host request',
    'Stopped Destroyed',
  ]);
  assert.equal(events.filter((e) => e.kind !== 'noise').map(mapLifecycle).slice(0, 9), [
    'ignore', 'acquire', 'acquire', 'keep', 'acquire', 'acquire', 'release', 'ignore', 'release-if-gone',
  ]);
});

test('given the recorded stderr after the daemon stopped, then the first line is disconnected', () => {
  const lines = fixture('virsh-events-test-driver.stderr').filter((l) => l !== '').map(parseVirshEventLine);
  assert.is(lines[0]!.kind, 'disconnected');
  assert.is(lines[0]!.kind === 'disconnected' && lines[0]!.reason, 'end of file');
  assert.is(lines[1]!.kind, 'error');
});

test.run();
