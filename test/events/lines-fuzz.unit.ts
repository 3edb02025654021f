// Property-based fuzzing (fast-check) of the line parsers: JSON-lines events (`ingest`, /v1/events),
// the bounded line splitter every stream source uses, virsh event lines and the qemu hook's
// arguments. Properties: only BadInputError escapes, and it names the field that was wrong; valid
// input parses as expected; the splitter matches a plain model whatever the chunking.
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BadInputError } from '../../src/engine/errors.js';
import { VM_EVENT_TYPES } from '../../src/engine/types.js';
import { parseHookArgs } from '../../src/events/hook-args.js';
import { boundedLines, parseEventLine } from '../../src/events/jsonl.js';
import { LIFECYCLE_DETAILS, LIFECYCLE_WORDS, mapLifecycle, parseVirshEventLine, type LifecycleWord } from '../../src/events/virsh-events.js';
import { assertProperty, fuzzParams } from '../helpers/fuzz.js';

const params = fuzzParams();
const NOW = '2026-11-30T06:00:00.000Z';

// ── JSON lines ───────────────────────────────────────────────────────────────────────────────

const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-fA-F]{${n}}$`));
const uuid = fc.tuple(hex(8), hex(4), hex(4), hex(4), hex(12), fc.boolean()).map(([a, b, c, d, e, dashes]) => [a, b, c, d, e].join(dashes ? '-' : ''));
const absPath = fc.array(fc.stringMatching(/^[A-Za-z0-9._ -]{1,12}$/), { minLength: 1, maxLength: 4 }).map((parts) => '/' + parts.join('/'));
const disk = fc.record({ path: absPath, readonly: fc.boolean(), shareable: fc.boolean(), create: fc.boolean() }, { requiredKeys: ['path'] });
const validEvent = fc.record(
  {
    type: fc.constantFrom(...VM_EVENT_TYPES),
    vm: fc.record({ uuid, name: fc.string({ maxLength: 20 }) }, { requiredKeys: ['uuid'] }),
    disks: fc.array(disk, { maxLength: 3 }),
    at: fc.date({ min: new Date('2000-01-01'), max: new Date('2099-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
  },
  { requiredKeys: ['type', 'vm', 'disks'] },
);

/** The fields an event has: every refusal must name one of them (or say the line is not JSON). */
const FIELD_RE = /^(type|vm|vm\.uuid|vm\.name|disks(\[\d+\](\.(path|readonly|shareable|create))?)?|at) must|^disks is required|^not valid JSON|^an event must be a JSON object|^the event is nested deeper/;

function parseOrBadInput(line: string): ReturnType<typeof parseEventLine> | BadInputError {
  try {
    return parseEventLine(line, 'jsonl', NOW);
  } catch (e) {
    if (!(e instanceof BadInputError)) throw e;
    assert.is(e.code, 'VMLOCKD_ERR_BAD_INPUT');
    assert.match(e.message, FIELD_RE);
    return e;
  }
}

test('fuzz: JSON lines of any text, any JSON value or a deeply nested one parse or are refused naming the field', async () => {
  await assertProperty(
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 80 }),
        fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
        fc.nat({ max: 5000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
        fc.nat({ max: 3000 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)),
      ),
      (line) => {
        parseOrBadInput(line);
      },
    ),
    params,
  );
});

test('fuzz: a valid event parses to itself (uuid canonical, the daemon\'s time first, the client\'s kept)', async () => {
  await assertProperty(
    fc.property(validEvent, (ev) => {
      const got = parseEventLine(JSON.stringify(ev), 'jsonl', NOW);
      assert.ok(got !== null);
      assert.is(got!.type, ev.type);
      assert.is(got!.vm.uuid, ev.vm.uuid.replace(/-/g, '').toLowerCase().replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5'));
      assert.is(got!.vm.name, ev.vm.name);
      assert.is(got!.at, NOW);
      assert.is(got!.clientAt, ev.at);
      assert.equal(
        got!.disks.map((d) => d.path),
        ev.disks.map((d) => d.path),
      );
      got!.disks.forEach((d, i) => {
        assert.is(d.readonly, ev.disks[i]!.readonly ?? false);
        assert.is(d.shareable, ev.disks[i]!.shareable ?? false);
      });
    }),
    params,
  );
});

test('fuzz: one field of a valid event replaced by anything: accepted, or refused naming that field', async () => {
  const fields = ['type', 'vm', 'vm.uuid', 'vm.name', 'disks', 'disks.0', 'disks.0.path', 'disks.0.readonly', 'disks.0.shareable', 'disks.0.create', 'at'] as const;
  await assertProperty(
    fc.property(validEvent, fc.constantFrom(...fields), fc.jsonValue({ maxDepth: 2 }), (ev, field, value) => {
      const e = structuredClone(ev) as Record<string, unknown>;
      const parts = field.split('.');
      let node: Record<string, unknown> = e;
      for (const p of parts.slice(0, -1)) {
        if (typeof node[p] !== 'object' || node[p] === null) return; // no disks to corrupt
        node = node[p] as Record<string, unknown>;
      }
      node[parts.at(-1)!] = value;
      const r = parseOrBadInput(JSON.stringify(e));
      if (r instanceof BadInputError) {
        const named = field.replace(/\.(\d+)/, '[$1]').replace(/\[0\]$/, '');
        const top = named.split(/[.[]/)[0]!;
        assert.ok(r.message.startsWith(top) || r.message.startsWith('disks is required'), `${field} := ${JSON.stringify(value)}: ${r.message}`);
      }
    }),
    params,
  );
});

// ── the bounded line splitter ────────────────────────────────────────────────────────────────

async function collect(chunks: Buffer[], max: number): Promise<Array<{ line: string } | { tooLong: number }>> {
  const out: Array<{ line: string } | { tooLong: number }> = [];
  async function* gen() {
    for (const c of chunks) yield c;
  }
  for await (const l of boundedLines(gen(), max)) out.push(l);
  return out;
}

/** The model: split on \n, drop an empty last piece, a piece over max is tooLong, a trailing \r goes. */
function model(all: Buffer, max: number): Array<{ line: string } | { tooLong: number }> {
  const out: Array<{ line: string } | { tooLong: number }> = [];
  let at = 0;
  for (;;) {
    const nl = all.indexOf(0x0a, at);
    const piece = all.subarray(at, nl < 0 ? all.length : nl);
    if (nl < 0 && piece.length === 0) break;
    if (piece.length > max) out.push({ tooLong: piece.length });
    else {
      const s = piece.toString('utf8');
      out.push({ line: s.endsWith('\r') ? s.slice(0, -1) : s });
    }
    if (nl < 0) break;
    at = nl + 1;
  }
  return out;
}

test('fuzz: boundedLines matches the model whatever the chunking, and never holds a line over its limit', async () => {
  const bytes = fc.array(fc.oneof(fc.constant(0x0a), fc.constant(0x0d), fc.integer({ min: 0, max: 255 })), { maxLength: 200 });
  await assertProperty(
    fc.asyncProperty(bytes, fc.array(fc.nat({ max: 200 }), { maxLength: 10 }), fc.integer({ min: 1, max: 40 }), async (raw, cuts, max) => {
      const all = Buffer.from(raw);
      const points = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let at = 0;
      for (const p of [...points, all.length]) {
        chunks.push(all.subarray(at, p));
        at = p;
      }
      assert.equal(await collect(chunks, max), model(all, max));
    }),
    params,
  );
});

// ── virsh event lines ────────────────────────────────────────────────────────────────────────

const KINDS = new Set(['lifecycle', 'device-added', 'device-removed', 'other', 'disconnected', 'error', 'noise', 'garbled']);
const pad = (n: number, w = 2) => String(n).padStart(w, '0');
const stamp = fc
  .record({ d: fc.date({ min: new Date('2000-01-01'), max: new Date('2099-01-01'), noInvalidDate: true }), offMin: fc.integer({ min: -12 * 60, max: 14 * 60 }) })
  .map(({ d, offMin }) => {
    const local = new Date(d.getTime() + offMin * 60_000);
    const sign = offMin < 0 ? '-' : '+';
    const off = Math.abs(offMin);
    const text = `${local.getUTCFullYear()}-${pad(local.getUTCMonth() + 1)}-${pad(local.getUTCDate())} ${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())}:${pad(local.getUTCSeconds())}.${pad(local.getUTCMilliseconds(), 3)}${sign}${pad(Math.floor(off / 60))}${pad(off % 60)}`;
    return { text, iso: d.toISOString() };
  });
/** libvirt domain names: no '/', no newline; anything else, quotes and ": " included. */
const domainName = fc.string({ minLength: 1, maxLength: 24 }).filter((s) => !/[/\n\r]/.test(s) && s.trim() === s && s.length > 0);
const lifecycle = fc.constantFrom(...LIFECYCLE_WORDS).chain((word: LifecycleWord) => fc.tuple(fc.constant(word), fc.constantFrom(...LIFECYCLE_DETAILS[word], 'unknown')));

test('fuzz: any virsh output line parses to a known kind without throwing; garbled lines say why', async () => {
  await assertProperty(
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 100 }),
        fc.tuple(stamp, fc.string({ maxLength: 60 })).map(([s, rest]) => `${s.text}: event ${rest}`),
        fc.tuple(stamp, fc.stringMatching(/^[a-z-]{1,20}$/), fc.string({ maxLength: 40 })).map(([s, t, rest]) => `${s.text}: event '${t}' for domain ${rest}`),
        fc.string({ maxLength: 40 }).map((s) => `2026-13-40 99:99:99.999+9999: ${s}`),
      ),
      (line) => {
        const ev = parseVirshEventLine(line);
        assert.ok(KINDS.has(ev.kind), ev.kind);
        if (ev.kind === 'garbled') assert.ok(ev.reason.length > 0);
        assert.ok(['acquire', 'release', 'release-if-gone', 'keep', 'ignore'].includes(mapLifecycle(ev)));
      },
    ),
    params,
  );
});

test('fuzz: a lifecycle line as virsh prints it parses back to its time, domain, word and detail', async () => {
  await assertProperty(
    fc.property(stamp, domainName, lifecycle, (s, name, [word, detail]) => {
      const ev = parseVirshEventLine(`${s.text}: event 'lifecycle' for domain '${name}': ${word} ${detail}\n`);
      assert.equal(ev, { kind: 'lifecycle', at: s.iso, domain: name, word, detail }, JSON.stringify(name));
    }),
    params,
  );
});

test('fuzz: device events as virsh prints them parse back to their domain and alias', async () => {
  await assertProperty(
    fc.property(stamp, domainName, fc.constantFrom('device-added', 'device-removed'), fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/), (s, name, type, alias) => {
      const ev = parseVirshEventLine(`${s.text}: event '${type}' for domain '${name}': ${alias}`);
      assert.equal(ev, { kind: type, at: s.iso, domain: name, alias });
    }),
    params,
  );
});

// ── qemu hook arguments ──────────────────────────────────────────────────────────────────────

test('fuzz: the qemu hook\'s arguments parse or are refused naming what is missing', async () => {
  await assertProperty(
    fc.property(fc.array(fc.string({ maxLength: 12 }), { maxLength: 6 }), (argv) => {
      try {
        const call = parseHookArgs(argv);
        assert.is(call.name, argv[0]);
        assert.ok(['acquire', 'release', 'check', 'noop'].includes(call.action));
      } catch (e) {
        if (!(e instanceof BadInputError)) throw e;
        assert.match(e.message, /expects NAME OP SUBOP|needs a domain name/);
      }
    }),
    params,
  );
});

test.run();
