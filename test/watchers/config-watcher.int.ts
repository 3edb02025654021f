import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, mkdirSync, mkdtempSync, openSync, renameSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Subject, tap, type Observable } from 'rxjs';
import { ConfigError, checkConfigFiles, loadConfig, type Config } from '../../src/watchers/config.js';
import { watchConfig, type ConfigUpdate, type WatchConfigOptions } from '../../src/watchers/config-watcher.js';

// Generous: chokidar reports within milliseconds, but CI machines stall.
const EVENT_TIMEOUT_MS = 10_000;
// Proving that nothing is emitted needs a window; it covers several debounce periods.
const QUIET_MS = 400;

/** Collects updates so a test can wait for the next one, or check that none comes. */
function record(updates$: Observable<ConfigUpdate>) {
  const queue: ConfigUpdate[] = [];
  let wake: (() => void) | null = null;
  let failure: unknown = null;
  const sub = updates$.subscribe({
    next: (u) => {
      queue.push(u);
      wake?.();
    },
    error: (e) => {
      failure = e;
      wake?.();
    },
  });
  const arrival = (ms: number) =>
    new Promise<boolean>((res) => {
      if (queue.length > 0 || failure !== null) return res(true);
      const timer = setTimeout(() => {
        wake = null;
        res(false);
      }, ms);
      wake = () => {
        clearTimeout(timer);
        wake = null;
        res(true);
      };
    });
  return {
    async next(what: string): Promise<ConfigUpdate> {
      if (!(await arrival(EVENT_TIMEOUT_MS))) assert.unreachable(`no update within ${EVENT_TIMEOUT_MS} ms after ${what}`);
      if (failure !== null) throw failure;
      return queue.shift()!;
    },
    async quiet(what: string): Promise<void> {
      if (await arrival(QUIET_MS)) assert.unreachable(`unexpected update after ${what}: ${JSON.stringify(queue[0] ?? failure)}`);
    },
    stop: () => sub.unsubscribe(),
  };
}

interface Rig {
  dir: string;
  file: string;
  current: Config;
  rec: ReturnType<typeof record>;
  done(): void;
}

/** A temp dir with one conf file, the config the "daemon" runs with, and a ready watcher. */
async function rig(text: string, opts: Omit<WatchConfigOptions, 'onReady'> = {}): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'vmlockd-cw-'));
  const file = join(dir, 'vmlockd.conf');
  writeFileSync(file, text);
  const flags = { stateDir: dir };
  const r = { dir, file, current: loadConfig({ files: [file], flags }).config } as Rig;
  let ready!: () => void;
  const isReady = new Promise<void>((res) => (ready = res));
  r.rec = record(watchConfig([file], flags, () => r.current, { ...opts, onReady: ready }));
  await isReady;
  r.done = () => {
    r.rec.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return r;
}

/** What the daemon does with a change it accepts. */
function apply(r: Rig, u: ConfigUpdate): Extract<ConfigUpdate, { kind: 'changed' }> {
  assert.is(u.kind, 'changed', JSON.stringify(u));
  const changed = u as Extract<ConfigUpdate, { kind: 'changed' }>;
  r.current = changed.loaded.config;
  return changed;
}

test('given a ready watcher and unchanged files, then it emits nothing', async () => {
  const r = await rig('max_clients = 10\n');
  try {
    await r.rec.quiet('start-up');
  } finally {
    r.done();
  }
});

test('given an edit between the daemon loading the config and the watcher starting, then it is reported before ready', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlockd-cw-'));
  const file = join(dir, 'vmlockd.conf');
  writeFileSync(file, 'max_clients = 10\n');
  const flags = { stateDir: dir };
  const current = loadConfig({ files: [file], flags }).config;
  writeFileSync(file, 'max_clients = 11\n');
  let readyCalled = false;
  const emittedBeforeReady: boolean[] = [];
  const rec = record(
    watchConfig([file], flags, () => current, { onReady: () => (readyCalled = true) }).pipe(
      tap(() => emittedBeforeReady.push(!readyCalled)),
    ),
  );
  try {
    const u = await rec.next('start-up after an unseen edit');
    assert.equal(u.kind === 'changed' && u.diff, [{ key: 'maxClients', from: 10, to: 11 }]);
    assert.equal(emittedBeforeReady, [true]);
  } finally {
    rec.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given the file missing when the watch starts, then it is rejected at once and its creation is seen', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlockd-cw-'));
  const file = join(dir, 'vmlockd.conf');
  const flags = { stateDir: dir };
  const current = loadConfig({ files: [], flags }).config;
  let ready!: () => void;
  const isReady = new Promise<void>((res) => (ready = res));
  const rec = record(watchConfig([file], flags, () => current, { onReady: ready }));
  try {
    await isReady;
    assert.equal(await rec.next('start-up without the file'), {
      kind: 'rejected',
      error: `${file}: cannot read the file (ENOENT)`,
      file,
    });
    writeFileSync(file, 'max_clients = 10\n');
    const u = await rec.next('creation');
    assert.equal(u.kind === 'changed' && u.diff, [{ key: 'maxClients', from: 1024, to: 10 }]);
  } finally {
    rec.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('given an in-place edit, then it emits the change with its diff and sources', async () => {
  const r = await rig('max_clients = 10\n');
  try {
    writeFileSync(r.file, '# tuned\nmax_clients = 20\n');
    const u = apply(r, await r.rec.next('in-place edit'));
    assert.equal(u.diff, [{ key: 'maxClients', from: 10, to: 20 }]);
    assert.is(u.loaded.sources.maxClients, `${r.file}:2`);
  } finally {
    r.done();
  }
});

test('given the file replaced by rename, twice, then both changes are seen', async () => {
  const r = await rig('max_clients = 10\n');
  try {
    for (const n of [11, 12]) {
      const tmp = join(r.dir, `.vmlockd.conf.${n}.tmp`);
      writeFileSync(tmp, `max_clients = ${n}\n`);
      renameSync(tmp, r.file);
      assert.equal(apply(r, await r.rec.next(`rename-replace ${n}`)).diff, [{ key: 'maxClients', from: n - 1, to: n }]);
    }
  } finally {
    r.done();
  }
});

test('given the file deleted, then it is rejected; when recreated, then the new content is seen', async () => {
  const r = await rig('max_clients = 10\n');
  try {
    unlinkSync(r.file);
    const gone = await r.rec.next('delete');
    assert.equal(gone, { kind: 'rejected', error: `${r.file}: cannot read the file (ENOENT)`, file: r.file });
    writeFileSync(r.file, 'max_clients = 30\n');
    assert.equal(apply(r, await r.rec.next('recreate')).diff, [{ key: 'maxClients', from: 10, to: 30 }]);
  } finally {
    r.done();
  }
});

test('given invalid content, then it is rejected with file:line, and a later fix is taken', async () => {
  const r = await rig('max_clients = 10\n');
  try {
    writeFileSync(r.file, 'max_clients = 10\nfile_lockspace_di = "/x"\n');
    const bad = await r.rec.next('bad edit');
    assert.equal(bad, {
      kind: 'rejected',
      error: `${r.file}:2: unknown key "file_lockspace_di" (did you mean "file_lockspace_dir"?)`,
      file: r.file,
    });
    writeFileSync(r.file, 'max_clients = 10\nfile_lockspace_dir = ""\n');
    const fixed = apply(r, await r.rec.next('fix'));
    assert.equal(fixed.diff.map((d) => [d.key, d.to]), [['fileLockspaceDir', null]]);
  } finally {
    r.done();
  }
});

test('given an edit that changes nothing effective, then nothing is emitted; a later real edit is', async () => {
  const r = await rig('max_clients = 10\n');
  try {
    writeFileSync(r.file, '# only a comment is new\nmax_clients   =   10   # same value\n');
    await r.rec.quiet('a no-op edit');
    writeFileSync(r.file, 'max_clients = 10\nlog_level = 4\n');
    assert.equal(apply(r, await r.rec.next('real edit')).diff, [{ key: 'logLevel', from: 'warning', to: 'error' }]);
  } finally {
    r.done();
  }
});

test('given a burst of writes, then one re-read after it settles reports the final content', async () => {
  const r = await rig('max_clients = 10\n', { debounceMs: 200 });
  try {
    for (let n = 101; n <= 105; n++) writeFileSync(r.file, `max_clients = ${n}\n`);
    assert.equal(apply(r, await r.rec.next('burst')).diff, [{ key: 'maxClients', from: 10, to: 105 }]);
    await r.rec.quiet('the burst settled');
  } finally {
    r.done();
  }
});

test('given a file caught half-written (truncate, write, a pause, the rest), then only the complete content is judged', async () => {
  // review25a F11: the debounce alone read "max_clients = 1" of "max_clients = 12" and reported it.
  const r = await rig('max_clients = 10\n', { settleMs: 2000 });
  try {
    const fd = openSync(r.file, 'w');
    writeSync(fd, 'max_clients = 1');
    await new Promise((res) => setTimeout(res, 300)); // several debounce periods: the half is read
    writeSync(fd, '2\n');
    closeSync(fd);
    assert.equal(apply(r, await r.rec.next('the complete write')).diff, [{ key: 'maxClients', from: 10, to: 12 }]);
    await r.rec.quiet('the write settled');
  } finally {
    r.done();
  }
});

test('given a reload trigger, then the files are re-read against the current config without any file event', async () => {
  const reload$ = new Subject<void>();
  const r = await rig('max_clients = 10\n', { reload$ });
  try {
    const onDisk = r.current;
    // The daemon's view drifted from the files (as after refusing a change); SIGHUP reconciles.
    r.current = { ...onDisk, maxClients: 99 };
    await r.rec.quiet('drift without a trigger');
    reload$.next();
    assert.equal(apply(r, await r.rec.next('reload')).diff, [{ key: 'maxClients', from: 99, to: 10 }]);
    reload$.next();
    await r.rec.quiet('a reload with nothing to change');
  } finally {
    r.done();
  }
});

test('given two files, when the later one overrides and is then removed from the override, then both changes are seen', async () => {
  const r = await rig('max_clients = 10\n');
  const other = join(r.dir, 'sub', 'override.conf');
  mkdirSync(join(r.dir, 'sub'));
  writeFileSync(other, '# nothing yet\n');
  const flags = { stateDir: r.dir };
  let current = loadConfig({ files: [r.file, other], flags }).config;
  let ready!: () => void;
  const isReady = new Promise<void>((res) => (ready = res));
  const rec = record(watchConfig([r.file, other], flags, () => current, { onReady: ready }));
  try {
    await isReady;
    writeFileSync(other, 'max_clients = 40\n');
    const u = await rec.next('override in the second directory');
    assert.is(u.kind, 'changed');
    if (u.kind !== 'changed') return;
    assert.equal(u.diff, [{ key: 'maxClients', from: 10, to: 40 }]);
    assert.is(u.loaded.sources.maxClients, `${other}:1`);
    current = u.loaded.config;
    writeFileSync(other, '# override removed\n');
    const back = await rec.next('override removed');
    assert.equal(back.kind === 'changed' && back.diff, [{ key: 'maxClients', from: 40, to: 10 }]);
  } finally {
    rec.stop();
    r.done();
  }
});

test('loadConfig reads real files relative to cwd, and a missing one is an error, not the defaults', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmlockd-cfg-'));
  try {
    writeFileSync(join(dir, 'a.conf'), 'file_lockspace_dir = "locks"\n');
    const loaded = loadConfig({ files: ['a.conf'], flags: {}, cwd: dir });
    assert.is(loaded.config.fileLockspaceDir, join(dir, 'locks'));
    assert.equal(loaded.files, [join(dir, 'a.conf')]);
    assert.throws(
      () => loadConfig({ files: ['a.conf', 'missing.conf'], flags: {}, cwd: dir }),
      (e: unknown) => e instanceof ConfigError && e.message === `${join(dir, 'missing.conf')}: cannot read the file (ENOENT)`,
    );
    writeFileSync(join(dir, 'b.conf'), 'auto_disk_leases = 2\nmax_clients = "x"\n');
    assert.equal(checkConfigFiles([join(dir, 'a.conf'), join(dir, 'b.conf')]), {
      ok: false,
      problems: [
        `${join(dir, 'b.conf')}:1: auto_disk_leases must be 0 or 1, got integer 2`,
        `${join(dir, 'b.conf')}:2: max_clients must be an integer from 1 to 1000000, got string "x"`,
      ],
    });
    assert.equal(checkConfigFiles([join(dir, 'a.conf')]), { ok: true, problems: [] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
