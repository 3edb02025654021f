// parseDomainXmlOffLoop (review25a F3): a large domain XML is parsed on a worker thread, with the
// same result and the same refusals as parseDomainXml, while the event loop goes on.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BadInputError } from '../../src/engine/errors.js';
import { parseDomainXml } from '../../src/events/domain-xml.js';
import { INLINE_MAX, parseDomainXmlOffLoop } from '../../src/events/domain-xml-offload.js';

const UUID = '0b6d4c56-3f1c-4b8e-9f6a-2d7e1c5a9b01';
function domain(metadataElements: number, disks = "<disk type='file'><source file='/img/a.img '/><target dev='vda'/></disk>"): string {
  return `<domain type='kvm'><name>big</name><uuid>${UUID}</uuid><metadata><a:m xmlns:a='u'>${'<a/>'.repeat(metadataElements)}</a:m></metadata><devices>${disks}</devices></domain>`;
}

test('a large document parses off the loop to what parseDomainXml gives; the loop runs meanwhile', async () => {
  const xml = domain(1 << 20);
  assert.ok(xml.length > INLINE_MAX);
  let ticks = 0;
  let run = true;
  const tick = (): void => {
    ticks++;
    if (run) setTimeout(tick, 1);
  };
  setTimeout(tick, 1);
  const info = await parseDomainXmlOffLoop(xml);
  run = false;
  assert.equal(info, parseDomainXml(xml));
  assert.equal(info.disks.map((d) => d.path), ['/img/a.img ']);
  assert.ok(ticks > 0, 'the event loop never turned while the worker parsed');
});

test('a large bad document is refused with the same BadInputError; the thread serves the next ones, in parallel calls', async () => {
  const bad = domain(20_000, "<disk type='file'><source file='/a&nbsp;b'/><target dev='vda'/></disk>");
  let err: unknown;
  try {
    await parseDomainXmlOffLoop(bad);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof BadInputError, String(err));
  assert.match((err as Error).message, /"&nbsp;", not an XML reference/);
  const broken = domain(20_000).replace('</devices>', '');
  await parseDomainXmlOffLoop(broken).then(
    () => assert.unreachable('a broken document parsed'),
    (e: unknown) => assert.ok(e instanceof BadInputError && /not well-formed/.test(e.message), String(e)),
  );
  const all = await Promise.all([1, 2, 3].map((i) => parseDomainXmlOffLoop(domain(20_000, `<disk type='block'><source dev='/dev/d${i}'/><target dev='vda'/></disk>`))));
  assert.equal(all.map((i) => i.disks[0]!.path), ['/dev/d1', '/dev/d2', '/dev/d3']);
});

test('a small document is parsed at once, with the same refusals', async () => {
  assert.equal((await parseDomainXmlOffLoop(domain(1))).disks.length, 1);
  await parseDomainXmlOffLoop('').then(
    () => assert.unreachable(),
    (e: unknown) => assert.ok(e instanceof BadInputError),
  );
});

test.run();
