// Property-based fuzzing (fast-check) of the domain XML parser (the qemu hook's stdin, virsh dumpxml)
// and of the pool XML reader: any text parses or is refused with BadInputError saying what was wrong
// (pool XML: null), and a domain written as libvirt writes it parses to its disks and leases.
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BadInputError } from '../../src/engine/errors.js';
import { lockPlan, parseDomainXml } from '../../src/events/domain-xml.js';
import { volumePathFromPoolXml } from '../../src/events/pool-xml.js';
import { assertProperty, fuzzParams } from '../helpers/fuzz.js';

const params = fuzzParams(150);

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');

const hexN = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`));
const uuid = fc.tuple(hexN(8), hexN(4), hexN(4), hexN(4), hexN(12)).map((p) => p.join('-'));
/**
 * Text libvirt could write: any printable characters, and tab, newline, carriage return and spaces
 * anywhere (libvirt writes them literally and keeps them: review25a F8), XML-escaped when written.
 */
const text = fc
  .tuple(fc.constantFrom('', ' ', '\t', '\n', '\r', ' \n '), fc.string({ minLength: 1, maxLength: 16 }), fc.constantFrom('', ' ', '\t', '\n', '\r', '  '))
  .map(([a, s, b]) => a + s + b)
  .filter((s) => /^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\ud800-\udfff\ufffe\uffff]+$/.test(s));
const absPath = fc.array(text.filter((s) => !s.includes('/')), { minLength: 1, maxLength: 3 }).map((p) => '/' + p.join('/'));

interface GenDisk {
  type: 'file' | 'block' | 'dir' | 'network' | 'volume';
  device: 'disk' | 'cdrom' | 'floppy' | 'lun';
  target: string;
  path: string | null;
  readonly: boolean;
  shareable: boolean;
}
const genDisk: fc.Arbitrary<GenDisk> = fc.record({
  type: fc.constantFrom('file', 'block', 'dir', 'network', 'volume'),
  device: fc.constantFrom('disk', 'cdrom', 'floppy', 'lun'),
  target: fc.stringMatching(/^[a-z]{2,4}[0-9]?$/),
  path: fc.option(absPath, { nil: null }),
  readonly: fc.boolean(),
  shareable: fc.boolean(),
});
/** A lease's names stay inside its target path (review25a F14: no "/", ".", ".." component; tested in domain-xml.unit.ts). */
const component = text.filter((s) => !s.includes('/') && s !== '.' && s !== '..');
const genLease = fc.record({
  lockspace: component,
  key: component,
  target: fc.array(component, { minLength: 1, maxLength: 3 }).map((p) => '/' + p.join('/')),
  offset: fc.option(fc.nat({ max: 4096 }), { nil: undefined }),
});

function diskXml(d: GenDisk): string {
  const attrName = d.type === 'file' ? 'file' : d.type === 'block' ? 'dev' : d.type === 'dir' ? 'dir' : null;
  const source =
    d.type === 'network' ? `<source protocol="nbd" name="x"/>` : d.type === 'volume' ? `<source pool="p" volume="v"/>` : d.path !== null && attrName ? `<source ${attrName}="${esc(d.path)}"/>` : '';
  return `<disk type="${d.type}" device="${d.device}"><driver name="qemu" type="raw"/>${source}<target dev="${d.target}" bus="virtio"/>${d.readonly ? '<readonly/>' : ''}${d.shareable ? '<shareable/>' : ''}</disk>`;
}

function domainXml(name: string, id: string, disks: GenDisk[], leases: Array<fc.Arbitrary<unknown> extends never ? never : { lockspace: string; key: string; target: string; offset?: number }>): string {
  const ls = leases.map(
    (l) => `<lease><lockspace>${esc(l.lockspace)}</lockspace><key>${esc(l.key)}</key><target path="${esc(l.target)}"${l.offset !== undefined ? ` offset="${l.offset}"` : ''}/></lease>`,
  );
  return `<domain type="kvm" id="7">\n  <name>${esc(name)}</name>\n  <uuid>${id}</uuid>\n  <memory unit="KiB">1024</memory>\n  <devices>\n    ${disks.map(diskXml).join('\n    ')}\n    ${ls.join('\n    ')}\n  </devices>\n</domain>\n`;
}

function parseOrRefuse(xml: string): ReturnType<typeof parseDomainXml> | BadInputError {
  try {
    return parseDomainXml(xml);
  } catch (e) {
    if (!(e instanceof BadInputError)) throw new Error(`parseDomainXml threw ${(e as Error)?.name}: ${(e as Error)?.message} for ${JSON.stringify(xml.slice(0, 200))}`);
    assert.match(e.message, /^domain XML/);
    assert.ok(e.message.length > 'domain XML'.length + 5);
    return e;
  }
}

test('fuzz: a domain written as libvirt writes it parses to its name, uuid, disks and leases', async () => {
  await assertProperty(
    fc.property(text, uuid, fc.uniqueArray(genDisk, { selector: (d) => d.target, maxLength: 4 }), fc.array(genLease, { maxLength: 2 }), (name, id, disks, leases) => {
      const info = parseDomainXml(domainXml(name, id, disks, leases));
      assert.is(info.name, name);
      assert.is(info.uuid, id);
      assert.is(info.id, 7);
      assert.is(info.disks.length, disks.length);
      info.disks.forEach((d, i) => {
        const g = disks[i]!;
        assert.is(d.target, g.target);
        assert.is(d.type, g.type);
        assert.is(d.device, g.device);
        assert.is(d.readonly, g.readonly);
        assert.is(d.shareable, g.shareable);
        if (g.type === 'file' || g.type === 'block' || g.type === 'dir') assert.is(d.path, g.path);
      });
      assert.equal(
        info.leases.map((l) => [l.lockspace, l.key, l.target, l.offset]),
        leases.map((l) => [l.lockspace, l.key, l.target, l.offset]),
      );
      // The plan locks exactly the writable disks with a path, shared when shareable.
      const plan = lockPlan(info);
      const want = new Set(disks.filter((d) => !d.readonly && d.path !== null && ['file', 'block', 'dir'].includes(d.type)).map((d) => `${d.shareable}:${d.path}`));
      assert.equal(new Set(plan.lock.map((l) => `${l.shareable}:${l.path}`)), want);
    }),
    params,
  );
});

test('fuzz: any text, and valid domains with characters inserted, deleted or swapped, parse or are refused naming the problem', async () => {
  const valid = fc.tuple(text, uuid, fc.array(genDisk, { maxLength: 3 }), fc.array(genLease, { maxLength: 1 })).map(([n, u, d, l]) => domainXml(n, u, d, l));
  const mutated = fc
    .tuple(valid, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 3 }), fc.constantFrom('<', '>', '/', '"', "'", '&', '=', '!', '?', ' ', 'a', '<!DOCTYPE x>', ']]>', '<![CDATA[', '&#0;', '&#x110000;', '\u0000', '\uffff', '\ud800')), { maxLength: 5 }))
    .map(([xml, edits]) => {
      let s = xml;
      for (const [at, op, ch] of edits) {
        const i = at % (s.length + 1);
        s = op === 0 ? s.slice(0, i) + ch + s.slice(i) : op === 1 ? s.slice(0, i) + s.slice(i + 1) : op === 2 ? s.slice(0, i) + ch + s.slice(i + 1) : s.slice(i) + s.slice(0, i);
      }
      return s;
    });
  const nested = fc.nat({ max: 3000 }).map((n) => `<domain><name>x</name><uuid>11111111-1111-4111-8111-111111111111</uuid><devices>${'<disk>'.repeat(n)}${'</disk>'.repeat(n)}</devices></domain>`);
  await assertProperty(
    fc.property(fc.oneof(fc.string({ maxLength: 120 }), mutated, nested), (xml) => {
      const r = parseOrRefuse(xml);
      if (!(r instanceof BadInputError)) {
        // What parses has a name and a canonical uuid; plans never include a relative path.
        assert.ok(r.name.length > 0);
        assert.match(r.uuid, /^[0-9a-f-]{32,36}$/);
        for (const d of r.disks) assert.ok(d.target.length > 0);
      }
    }),
    params,
  );
});

test('fuzz: pool XML of any shape yields a path under its target or null, never an exception', async () => {
  const pool = fc
    .tuple(fc.constantFrom('dir', 'fs', 'netfs', 'logical', 'iscsi', ''), fc.option(absPath, { nil: null }), fc.string({ maxLength: 30 }))
    .map(([type, target, junk]) => `<pool type="${type}"><name>p</name>${target !== null ? `<target><path>${esc(target)}</path></target>` : ''}${junk}</pool>`);
  await assertProperty(
    fc.property(fc.oneof(pool, fc.string({ maxLength: 80 })), fc.oneof(text, fc.constant(''), fc.constant('a/b'), fc.constant('..'), fc.constant('.')), (xml, volume) => {
      const p = volumePathFromPoolXml(xml, volume);
      if (p !== null) {
        // Always a name inside the pool's target directory, never the directory or its parent.
        assert.ok(p.startsWith('/'), p);
        assert.not.ok(volume.includes('/'));
        assert.is(p.split('/').at(-1), volume);
      }
    }),
    params,
  );
});

test.run();
