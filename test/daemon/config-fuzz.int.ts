// Property-based fuzzing (fast-check) of the config file as a front door: a running daemon whose
// --config file is rewritten with random and mutated texts and reloaded (SIGHUP) never dies, answers
// every change with ConfigChanged or a ConfigRejected naming the file, and keeps its locks.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { renderValue, type ConfValue } from '../../src/watchers/conf-syntax.js';
import { CONFIG_KEYS, confName } from '../../src/watchers/config.js';
import { UUID1, startDaemon, tmpdir } from '../helpers/daemon.js';
import { assertProperty, fuzzParams } from '../helpers/fuzz.js';
import { settled } from '../helpers/settled.js';

function configFacts(stateDir: string): Array<{ kind: string; payload: Record<string, unknown> }> {
  settled(stateDir);
  const db = new Database(path.join(stateDir, 'journal.db'), { readonly: true });
  try {
    return (db.prepare("SELECT kind, payload FROM facts WHERE kind IN ('ConfigChanged', 'ConfigRejected') ORDER BY seq").all() as Array<{ kind: string; payload: string }>).map((r) => ({
      kind: r.kind,
      payload: JSON.parse(r.payload) as Record<string, unknown>,
    }));
  } finally {
    db.close();
  }
}

const value: fc.Arbitrary<ConfValue> = fc.oneof(
  fc.string({ maxLength: 12 }).filter((s) => !s.includes('"""') && !s.endsWith('"') && !s.includes('\r')).map((v) => ({ type: 'string' as const, value: v })),
  fc.integer({ min: -5, max: 100_000 }).map((v) => ({ type: 'integer' as const, value: v, raw: String(v) })),
  fc.array(fc.constantFrom('1:stderr', 'a', ''), { maxLength: 3 }).map((xs) => ({ type: 'list' as const, items: xs.map((v) => ({ type: 'string' as const, value: v })) })),
);

test('fuzz: random config texts reloaded into a running daemon: it lives, says ConfigChanged or ConfigRejected naming the file, and keeps its locks', async () => {
  const dir = tmpdir('vmlockd-conffuzz-');
  const conf = path.join(dir, 'vmlockd.conf');
  const base = `log_level = 3\non_conflict = "report"\nverify_interval = 10\nfile_lockspace_dir = "${path.join(dir, 'ls')}"\n`;
  fs.writeFileSync(conf, base);
  fs.writeFileSync(path.join(dir, 'a.img'), 'x');
  const d = await startDaemon({ stateDir: path.join(dir, 'state'), hostId: 'hv-a', extra: ['--config', conf] });
  try {
    assert.is(d.cli(['acquire', '--vm', UUID1, path.join(dir, 'a.img')]).code, 0);
    const locks = d.cli(['locks', '--json']).stdout;
    const known = CONFIG_KEYS.map(confName).filter((k) => k !== 'file_lockspace_dir');
    const text = fc.oneof(
      fc.array(fc.tuple(fc.constantFrom(...known), value), { minLength: 1, maxLength: 3 }).map((kv) => base + kv.map(([k, v]) => `${k} = ${renderValue(v)}`).join('\n') + '\n'),
      fc.tuple(fc.nat(), fc.constantFrom('"', '[', ']', '=', '#', '\n', 'x', '\u0000', '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[', ';')).map(([at, ch]) => base.slice(0, at % base.length) + ch + base.slice(at % base.length)),
      fc.string({ maxLength: 60 }),
    );
    let changes = 0;
    await assertProperty(
      fc.asyncProperty(text, async (t) => {
        const before = configFacts(d.opts.stateDir).length;
        fs.writeFileSync(conf, t);
        d.proc!.kill('SIGHUP');
        // A text that means the config in effect changes nothing and says nothing: wait a little for a fact.
        const end = Date.now() + 1500;
        while (configFacts(d.opts.stateDir).length === before && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
        assert.is(d.proc!.exitCode, null, `the daemon died on a config reload:\n${d.stderr.slice(-2000)}`);
        for (const f of configFacts(d.opts.stateDir).slice(before)) {
          changes++;
          if (f.kind !== 'ConfigRejected') continue;
          // Either the file is wrong (the error names it, with the line), or a key may not change live (each named, with why).
          const p = f.payload as { error?: string; refused?: Array<{ key?: string; reason?: string }> };
          const clear = (typeof p.error === 'string' && p.error.includes(conf)) || (Array.isArray(p.refused) && p.refused.length > 0 && p.refused.every((r) => !!r.key && !!r.reason));
          assert.ok(clear, `a rejection that does not say what was wrong: ${JSON.stringify(f.payload)}`);
        }
        assert.is(d.cli(['locks', '--json']).stdout, locks, 'a config reload changed the locks');
        // Back to the base text, so every run starts from the same config.
        fs.writeFileSync(conf, base);
        d.proc!.kill('SIGHUP');
      }),
      fuzzParams(15),
    );
    assert.ok(changes > 0, 'no reload was answered at all');
    assert.is(d.proc!.exitCode, null);
  } finally {
    await d.kill('SIGKILL');
  }
});

test.run();
