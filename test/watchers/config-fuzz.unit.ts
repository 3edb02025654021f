// Property-based fuzzing (fast-check) of the config files (libvirt's conf syntax, then vmlockd's keys):
// any text parses to entries and at most one syntax problem with its line, never an exception;
// buildConfig gives a config or a ConfigError whose every problem names its file (and line); a value
// rendered by renderValue reads back as itself.
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseConf, renderValue, type ConfValue } from '../../src/watchers/conf-syntax.js';
import { CONFIG_KEYS, ConfigError, buildConfig, confName } from '../../src/watchers/config.js';
import { assertProperty, fuzzParams } from '../helpers/fuzz.js';

const params = fuzzParams();
const FILE = '/etc/vmlockd/vmlockd.conf';

const confChars = fc.constantFrom('a', 'z', 'K', '_', '1', '0', '-', '+', ' ', '\t', '\n', '\r', '=', '"', "'", '[', ']', ',', '#', ';', '\\', '\uFEFF', 'é', '"""');
const confText = fc.oneof(
  fc.string({ maxLength: 120 }),
  fc.array(confChars, { maxLength: 80 }).map((a) => a.join('')),
  fc.nat({ max: 20_000 }).map((n) => `x = ${'['.repeat(n)}${']'.repeat(n)}\n`),
  fc.nat({ max: 20_000 }).map((n) => `x = ${'['.repeat(n)}`),
);

test('fuzz: any conf text parses to entries and at most one problem on a line of the file, never an exception', async () => {
  await assertProperty(
    fc.property(confText, (text) => {
      const p = parseConf(text, FILE);
      const lines = text.split('\n').length;
      for (const e of p.entries) {
        assert.match(e.key, /^[A-Za-z][A-Za-z0-9_]*$/);
        assert.ok(e.line >= 1 && e.line <= lines);
      }
      if (p.error !== null) {
        assert.is(p.error.file, FILE);
        assert.ok(p.error.line >= 1 && p.error.line <= lines, `line ${p.error.line} of ${lines}`);
        assert.ok(p.error.message.length > 0);
      }
    }),
    params,
  );
});

const confValue: fc.Arbitrary<ConfValue> = fc.letrec<{ v: ConfValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.string({ maxLength: 20 }).filter((s) => !s.includes('"""') && !s.endsWith('"') && !/[\r]/.test(s)).map((value) => ({ type: 'string' as const, value })),
    fc.maxSafeInteger().map((value) => ({ type: 'integer' as const, value, raw: String(value) })),
    fc.array(tie('v'), { maxLength: 4 }).map((items) => ({ type: 'list' as const, items })),
  ),
})).v;

test('fuzz: a value rendered by renderValue reads back as itself', async () => {
  await assertProperty(
    fc.property(fc.stringMatching(/^[A-Za-z][A-Za-z0-9_]{0,10}$/), confValue, (key, value) => {
      const p = parseConf(`${key} = ${renderValue(value)}\n`, FILE);
      assert.is(p.error, null, JSON.stringify(value));
      assert.is(p.entries.length, 1);
      assert.equal(p.entries[0]!.value, value);
    }),
    params,
  );
});

test('fuzz: any value for any known key builds a config or a ConfigError naming the file, the line and the key', async () => {
  const known = CONFIG_KEYS.map(confName);
  await assertProperty(
    fc.property(
      fc.array(fc.tuple(fc.oneof(fc.constantFrom(...known), fc.stringMatching(/^[a-z][a-z_]{0,20}$/)), confValue), { maxLength: 5 }),
      (entries) => {
        const text = entries.map(([k, v]) => `${k} = ${renderValue(v)}`).join('\n') + '\n';
        try {
          const loaded = buildConfig([{ file: FILE, text }], {}, '/');
          assert.ok(loaded.config.stateDir.startsWith('/'));
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
          assert.is(e.code, 'VMLOCKD_ERR_CONFIG');
          assert.ok(e.problems.length > 0);
          for (const p of e.problems) {
            assert.ok(p.file === FILE || p.file === 'default', p.file);
            if (p.file === FILE) {
              assert.ok(p.line !== undefined && p.line >= 1, JSON.stringify(p));
              // The message names the key it is about (or says the file itself is broken).
              const key = entries[p.line! - 1]?.[0];
              assert.ok(key === undefined || p.message.includes(key), `${key}: ${p.message}`);
            }
          }
        }
      },
    ),
    params,
  );
});

test.run();
