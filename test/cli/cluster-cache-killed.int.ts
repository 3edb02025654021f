// A catch-up of the read cache SIGKILLed part way (issue 15: the cache must answer truly next time).
// Two hosts' published histories, big enough that a fresh chain is bulk loaded (its indexes dropped for
// the load and built at the end) in many commits; a real `vmlockd audit --cluster` process is killed
// after its first commits and before it answers; the next question on that cache must answer exactly
// what a fresh cache answers, and so must a cache killed again during the next catch-up.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GENESIS_HASH, chainHash, type ChainRow } from '../../src/journal/schema.js';
import { MAIN, cli, tmpdir, until } from '../helpers/daemon.js';
import { segmentWriter } from '../helpers/segments.js';

const FACTS = 45_000; // ~20 MiB a host: more than the bulk load's 16 MiB
const T0 = Date.UTC(2026, 0, 1);

function publish(lockspace: string, host: string, journal: string, h: number): void {
  const w = segmentWriter(lockspace, host, journal, { segmentBytes: 4 * 1024 * 1024 });
  let prev = GENESIS_HASH;
  const held = new Map<string, string>();
  for (let seq = 1; seq <= FACTS; seq++) {
    const vm = (seq * 7 + h) % 300;
    const uuid = `5a1e0000-0000-4000-8000-${String(h * 1000 + vm).padStart(12, '0')}`;
    const name = `vm-${h}-${vm}`;
    // Shared disks held by both hosts at times (so --overlaps has something to say), own disks otherwise.
    const disk = seq % 10 === 0 ? `/srv/shared/d${seq % 40}.img` : `/var/lib/libvirt/images/${name}.qcow2`;
    const releasing = held.get(disk) === uuid;
    const kind = seq % 97 === 0 ? 'LockRefused' : releasing ? 'LockReleased' : 'LockAcquired';
    if (kind === 'LockAcquired') held.set(disk, uuid);
    if (kind === 'LockReleased') held.delete(disk);
    const row: ChainRow = {
      seq,
      at: new Date(T0 + seq * 1000 + h * 333).toISOString(),
      host,
      kind,
      resource: `/ls/${disk.replace(/\W/g, '')}`,
      disk,
      owner: uuid,
      owner_name: name,
      payload: JSON.stringify({ owner: { uuid, name }, mode: 'exclusive', source: 'virsh', n: seq }),
    };
    prev = chainHash(prev, row);
    w.add(row, prev);
  }
  w.flush();
}

/**
 * Facts committed so far in a cache's chain files (0 while none exists), and 1 for each file a new
 * chain is being built in (`<journal>.db.build-<host>-<pid>`, linked in as the chain file once
 * complete; exclusively locked meanwhile) once it holds more than 1 MiB: part of a bulk load.
 */
function committed(cache: string): number {
  let n = 0;
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.db\.build-[^.]*-\d+$/.test(e.name)) {
        try {
          if (fs.statSync(p).size > 1024 * 1024) n += 1;
        } catch {
          // linked in and removed meanwhile
        }
      } else if (e.name.endsWith('.db')) {
        try {
          const db = new Database(p, { readonly: true, fileMustExist: true });
          try {
            db.pragma('busy_timeout = 1000');
            n += (db.prepare('SELECT count(*) FROM facts').pluck().get() as number) ?? 0;
          } finally {
            db.close();
          }
        } catch {
          // not created yet, or mid-creation
        }
      }
    }
  };
  if (fs.existsSync(cache)) walk(cache);
  return n;
}

/** Starts a question on `cache` and SIGKILLs it once some facts (fewer than all) are committed. */
async function killMidway(args: string[], cache: string, env: NodeJS.ProcessEnv, total: number): Promise<number> {
  const p = spawn(process.execPath, [MAIN, ...args, '--cache', cache], { env: { ...process.env, ...env }, stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => p.on('exit', () => resolve()));
  let seen = 0;
  try {
    await until('the catch-up committed its first facts', () => {
      if (p.exitCode !== null) throw new Error('the question answered before it could be killed: make the fixture bigger');
      seen = committed(cache);
      return seen > 0;
    }, 120_000);
  } finally {
    p.kill('SIGKILL');
    await exited;
  }
  assert.ok(seen < total, `killed after ${seen} of ${total} facts`);
  return seen;
}

test('audit --cluster after a catch-up SIGKILLed part way (twice) answers exactly as a fresh cache', async () => {
  const root = tmpdir('vmlockd-cache-killed-');
  const ls = path.join(root, 'lockspace');
  publish(ls, 'hv-a', 'a000000000000001', 1);
  publish(ls, 'hv-b', 'b000000000000001', 2);
  const home = path.join(root, 'home');
  fs.mkdirSync(home);
  const env = { HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), VMLOCKD_CONFIG: '/nonexistent', VMLOCKD_SOCKET: path.join(home, 'none.sock') };
  const killed = path.join(root, 'cache-killed');
  const fresh = path.join(root, 'cache-fresh');
  const base = ['audit', '--cluster', '--lockspace', ls];
  const at = new Date(T0 + 30_000 * 1000).toISOString();
  // (Each answer under the cli helper's 1 MiB of output: spawnSync's maxBuffer.)
  const questions = [
    ['--disk', '/srv/shared/d10.img', '--at', at, '--json'],
    ['--disk', '/srv/shared/d20.img', '--json', '--limit', '300'],
    ['--vm', 'vm-1-17', '--json', '--limit', '0'],
    ['--overlaps', '--json'],
    ['--conflicts', '--json', '--limit', '0'],
    ['--json', '--limit', '500', '--since', new Date(T0 + 44_000 * 1000).toISOString()],
  ];
  const first = await killMidway([...base, ...questions[0]!], killed, env, 2 * FACTS);
  // Killed again during the catch-up that resumes from the first kill's commits.
  const second = await killMidway([...base, ...questions[1]!], killed, env, 2 * FACTS).catch((e: Error) => (/answered before/.test(e.message) ? -1 : Promise.reject(e)));
  for (const q of questions) {
    const a = cli([...base, ...q, '--cache', killed], { env });
    const b = cli([...base, ...q, '--cache', fresh], { env });
    assert.is(a.code, 0, `${q.join(' ')} on the killed cache (${root}): ${a.stderr} ${a.stdout.slice(0, 300)}`);
    assert.is(b.code, 0, `${q.join(' ')} on a fresh cache: ${b.stderr} ${b.stdout.slice(0, 300)}`);
    assert.ok(a.stdout.length > 2, `${q.join(' ')} answered something`);
    assert.is(a.stdout, b.stdout, `${q.join(' ')}: the killed cache (killed after ${first}, then ${second} facts) answers otherwise than a fresh one`);
    assert.is(a.stderr, b.stderr);
  }
  assert.is(committed(killed), 2 * FACTS);
  // The killed builds are removed by the next catch-up (their processes are gone): only the chain files stay.
  const left = fs.readdirSync(killed, { recursive: true }).map(String).filter((f) => f.includes('.build-'));
  assert.equal(left, [], 'no build left behind');
  fs.rmSync(root, { recursive: true, force: true });
});

test.run();
