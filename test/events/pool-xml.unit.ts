// Volume paths from pool XML (the hook cannot ask libvirtd). Fixture: the dir pool used for vol-path.txt.
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { volumePathFromPoolXml } from '../../src/events/pool-xml.js';

const POOL = readFileSync(new URL('./fixtures/input/pool.xml', import.meta.url), 'utf8');
const VOL_PATH = readFileSync(new URL('./fixtures/vol-path.txt', import.meta.url), 'utf8').trim();

test('given a dir pool, then the volume path is what `virsh vol-path` printed for it', () => {
  assert.is(volumePathFromPoolXml(POOL, 'data.qcow2'), VOL_PATH);
});

test('given a pool type that does not name volumes by path, then null', () => {
  assert.is(volumePathFromPoolXml("<pool type='rbd'><name>r</name><source><name>rbd</name></source></pool>", 'img'), null);
  assert.is(volumePathFromPoolXml("<pool type='iscsi'><name>i</name><target><path>/dev/disk/by-path</path></target></pool>", 'unit:0:0:1'), null);
});

test('given a logical pool, then the volume is target/name', () => {
  assert.is(volumePathFromPoolXml("<pool type='logical'><name>vg0</name><target><path>/dev/vg0</path></target></pool>", 'data'), '/dev/vg0/data');
});

test('given a volume name that would leave the pool directory, or garbage XML, then null', () => {
  assert.is(volumePathFromPoolXml(POOL, '../etc/passwd'), null);
  assert.is(volumePathFromPoolXml(POOL, '..'), null);
  assert.is(volumePathFromPoolXml(POOL, '.'), null);
  assert.is(volumePathFromPoolXml('<<<', 'x'), null);
});

test('given a pool directory whose name ends in a space or holds a reference, then the path is exact (review25a F8)', () => {
  assert.is(volumePathFromPoolXml("<pool type='dir'><name>p</name><target><path>/srv/pool </path></target></pool>", 'v '), '/srv/pool /v ');
  assert.is(volumePathFromPoolXml("<pool type='dir'><name>p</name><target><path>/srv/a&amp;b&#9;</path></target></pool>", 'v'), '/srv/a&b\t/v');
  assert.is(volumePathFromPoolXml("<pool type='dir'><name>p</name><target><path>/srv/a&nbsp;b</path></target></pool>", 'v'), null);
});

test.run();
