// The sd_notify backlog (src/daemon/service.ts Notifier) while the manager does not read its queue
// (review26a): an FDSTOREREMOVE is never dropped. A dropped one left systemd holding the descriptor
// of a released lock; after the next take of that disk the store held two descriptors under one name,
// and the restart's adoption met the released one first: "another owner holds the lock" (the other
// was its own), a false LeaseLost, and then both closed, dropping the lock a running VM holds
// (test/daemon/systemd-fdstore-remove.int.ts shows it under a real systemd). The manager here is a
// stand-in: sendFds fails with EAGAIN while `full`, else records the message.
import * as fs from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native, type NativeBinding } from '../../src/engine/native.js';
import { FdStore, Notifier } from '../../src/daemon/service.js';

function manager() {
  const m = { full: true, sent: [] as string[], fdsSent: 0 };
  // The real binding (its dupFd makes the backlog's real copies), with a manager that reads or not.
  const nat: NativeBinding = Object.create(native, {
    sendFds: {
      value: (_fd: number, _addr: string, text: string, fds: number[]) => {
        if (m.full) throw Object.assign(new Error('EAGAIN: resource temporarily unavailable, sendmsg'), { code: 'EAGAIN' });
        m.sent.push(text);
        m.fdsSent += fds.length;
      },
    },
  });
  return { m, nat };
}

const REMOVE = (name: string) => `FDSTOREREMOVE=1\nFDNAME=${name}`;

test('an FDSTOREREMOVE waiting in a full backlog is never dropped: other messages are', () => {
  const { m, nat } = manager();
  const n = new Notifier({ NOTIFY_SOCKET: '/run/nowhere' }, () => {}, nat);
  const store = new FdStore(n);
  try {
    store.remove('lock-x');
    // Far more than the backlog holds: the notifier must make room, but not by losing the removal.
    for (let i = 0; i < 60_000; i++) n.send(`RELOADING=1\nSTATUS=${i}`);
    m.full = false;
    n.flush();
    assert.is(n.pending, 0);
    assert.ok(m.sent.includes(REMOVE('lock-x')), `the FDSTOREREMOVE of lock-x was dropped (${m.sent.length} messages went out)`);
  } finally {
    n.close();
  }
});

test('removals are coalesced by name, in order with the stores of that name, and a removal is never refused', () => {
  const { m, nat } = manager();
  const n = new Notifier({ NOTIFY_SOCKET: '/run/nowhere' }, () => {}, nat, { maxBacklog: 4 });
  const store = new FdStore(n);
  const fd = fs.openSync('/dev/null', 'r');
  try {
    // Take x (its FDSTORE waits), release it (the FDSTORE is dropped, the removal waits), many times.
    for (let i = 0; i < 1000; i++) {
      store.store('lock-x', fd);
      store.remove('lock-x');
    }
    assert.is(n.pending, 1, 'one removal of lock-x waits, not a thousand');
    // Taken again: its FDSTORE waits after the removal. Two more stores fill the backlog (4).
    store.store('lock-x', fd);
    store.store('lock-s0', fd);
    store.store('lock-s1', fd);
    assert.is(n.pending, 4);
    // A store beyond is refused (that lock is then not in the store: the next start re-takes it).
    const stored = store.stored;
    store.store('lock-s2', fd);
    assert.is(store.stored, stored);
    // Removals are never refused.
    for (let i = 0; i < 10; i++) store.remove(`lock-r${i}`);
    assert.is(n.pending, 14);
    m.full = false;
    n.flush();
    assert.equal(m.sent, [REMOVE('lock-x'), 'FDSTORE=1\nFDNAME=lock-x', 'FDSTORE=1\nFDNAME=lock-s0', 'FDSTORE=1\nFDNAME=lock-s1', ...Array.from({ length: 10 }, (_, i) => REMOVE(`lock-r${i}`))]);
    assert.is(m.fdsSent, 3);
  } finally {
    n.close();
    fs.closeSync(fd);
  }
});

test.run();
