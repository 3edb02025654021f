// Domain XML -> disks and leases -> lock plan. Fixtures are real `virsh dumpxml` output of
// libvirt 9.0 (test driver and a real QEMU session domain); see fixtures/README.md.
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { VmlockdError } from '../../src/engine/errors.js';
import { lockPlan, parseDomainXml, type DomainInfo } from '../../src/events/domain-xml.js';

const fixture = (name: string): string => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
const VOL_PATH = fixture('vol-path.txt').trim();
const volPath = (pool: string, vol: string): string | null => (pool === 'vmpool' && vol === 'data.qcow2' ? VOL_PATH : null);

function throwsBadInput(fn: () => unknown, re: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, VmlockdError);
    assert.is((e as VmlockdError).code, 'VMLOCKD_ERR_BAD_INPUT');
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected a throw matching ${re}`);
}

test("given the test driver's built-in domain, then name, uuid, id and its one disk are parsed", () => {
  const d = parseDomainXml(fixture('test-builtin.xml'));
  assert.equal(d, {
    uuid: '6695eb01-f6a4-8304-79aa-97f2502e193f',
    name: 'test',
    id: 1,
    disks: [{ target: 'vda', type: 'file', device: 'disk', path: '/guest/diskimage1', readonly: false, shareable: false }],
    leases: [],
  });
});

test('given the all-disks domain, then every disk kind is read as libvirt printed it', () => {
  const d = parseDomainXml(fixture('all-disks-inactive.xml'));
  assert.is(d.name, 'vm-all-disks');
  assert.is(d.uuid, '0b6d4c56-3f1c-4b8e-9f6a-2d7e1c5a9b01');
  assert.is(d.id, undefined);
  const byTarget = Object.fromEntries(d.disks.map((x) => [x.target, x]));
  assert.equal(Object.keys(byTarget), ['vda', 'vdb', 'vdc', 'vdd', 'vde', 'vdf', 'vdg', 'vdh', 'hda', 'sda', 'fda', 'sdb']);
  assert.equal(byTarget.vda, { target: 'vda', type: 'file', device: 'disk', path: '/var/lib/libvirt/images/root.qcow2', readonly: false, shareable: false });
  assert.equal(byTarget.vdb!.path, '/dev/vg0/data');
  assert.is(byTarget.vdb!.type, 'block');
  assert.equal(byTarget.vdc, { target: 'vdc', type: 'volume', device: 'disk', path: null, pool: 'vmpool', volume: 'data.qcow2', readonly: false, shareable: false });
  assert.equal(byTarget.vdd, { target: 'vdd', type: 'network', device: 'disk', path: null, protocol: 'nbd', sourceName: 'export1', readonly: false, shareable: false });
  assert.is(byTarget.vde!.protocol, 'rbd');
  assert.is(byTarget.vdf!.protocol, 'iscsi');
  assert.is(byTarget.vdg!.readonly, true);
  assert.is(byTarget.vdh!.shareable, true);
  assert.equal(byTarget.hda!.path, '/srv/share');
  assert.equal(byTarget.sda, { target: 'sda', type: 'file', device: 'cdrom', path: null, readonly: true, shareable: false });
  assert.equal(byTarget.fda, { target: 'fda', type: 'file', device: 'floppy', path: null, readonly: false, shareable: false });
  assert.equal(byTarget.sdb, { target: 'sdb', type: 'block', device: 'lun', path: '/dev/disk/by-id/scsi-36001405abcdef', readonly: false, shareable: true });
  // libvirt drops offset='0' when it prints the lease.
  assert.equal(d.leases, [{ lockspace: 'somearea', key: 'somekey', target: '/var/lib/libvirt/lockd/leases' }]);
});

test('given the running copy, then id is read and the disks are the same', () => {
  const running = parseDomainXml(fixture('all-disks-running.xml'));
  const inactive = parseDomainXml(fixture('all-disks-inactive.xml'));
  assert.is(running.id, 2);
  assert.equal(running.disks, inactive.disks);
});

test('lockPlan of the all-disks domain: locks, shared locks, skips read-only, reports the rest', () => {
  const plan = lockPlan(parseDomainXml(fixture('all-disks-running.xml')), { volPath });
  assert.equal(plan.lock, [
    { path: '/var/lib/libvirt/images/root.qcow2', readonly: false, shareable: false },
    { path: '/dev/vg0/data', readonly: false, shareable: false },
    { path: '/var/lib/vmlockd-test/pool/data.qcow2', readonly: false, shareable: false },
    { path: '/var/lib/libvirt/images/cluster-shared.img', readonly: false, shareable: true },
    { path: '/srv/share', readonly: false, shareable: false },
    { path: '/dev/disk/by-id/scsi-36001405abcdef', readonly: false, shareable: true },
  ]);
  assert.equal(plan.unprotected.map((u) => u.target), ['vdd', 'vde', 'vdf', 'fda']);
  assert.match(plan.unprotected[0]!.reason, /network disk \(nbd export1\)/);
  assert.match(plan.unprotected[1]!.reason, /rbd rbdpool\/image1/);
  assert.match(plan.unprotected[3]!.reason, /empty floppy drive/);
  // The read-only base image and the read-only empty cdrom are neither locked nor reported.
  assert.not.ok(plan.lock.some((l) => l.path.endsWith('base-ro.img')));
  assert.not.ok(plan.unprotected.some((u) => u.target === 'vdg' || u.target === 'sda'));
  assert.equal(plan.leases, [{
    lockspace: '/var/lib/libvirt/lockd/leases/somearea',
    name: 'somekey',
    path: '/var/lib/libvirt/lockd/leases/somearea/somekey',
    lease: { lockspace: 'somearea', key: 'somekey', target: '/var/lib/libvirt/lockd/leases' },
  }]);
});

test('lockPlan: a volume that cannot be resolved, or resolves to a non-local path, is unprotected', () => {
  const d = parseDomainXml(fixture('all-disks-inactive.xml'));
  const none = lockPlan(d);
  assert.ok(none.unprotected.some((u) => u.target === 'vdc' && /volume vmpool\/data.qcow2 could not be resolved/.test(u.reason)));
  assert.not.ok(none.lock.some((l) => l.path === VOL_PATH));
  const rbd = lockPlan(d, { volPath: () => 'rbdpool/data.qcow2' });
  assert.ok(rbd.unprotected.some((u) => u.target === 'vdc' && /not a local path/.test(u.reason)));
});

test('given a real QEMU domain, then aliases, the hot-plugged disk and index/backingStore noise are handled', () => {
  const d = parseDomainXml(fixture('qemu-session-running.xml'));
  assert.is(d.name, 'tcg1');
  assert.is(d.id, 2);
  assert.equal(d.disks.map((x) => [x.target, x.alias, x.path]), [
    ['vda', 'virtio-disk0', '/tmp/lvsess/home/root.qcow2'],
    ['sdb', 'scsi0-0-0-1', '/tmp/lvsess/home/hot.img'],
  ]);
  assert.equal(lockPlan(d).lock.map((l) => l.path), ['/tmp/lvsess/home/root.qcow2', '/tmp/lvsess/home/hot.img']);
});

test('given entities in name and path, then they are decoded', () => {
  const d = parseDomainXml(fixture('named-entities.xml'));
  assert.is(d.name, "vm & 'quoted'");
  assert.is(d.disks[0]!.path, '/var/lib/libvirt/images/a&b.qcow2');
});

test('given a lease with a non-zero offset (sanlock style), then it is unprotected, not locked', () => {
  const d = parseDomainXml(fixture('lease-offset.xml'));
  assert.equal(d.leases, [{ lockspace: 'cluster1', key: 'vm-lease-offset-disk', target: '/var/lib/sanlock/leases', offset: 1048576 }]);
  assert.is(d.disks[0]!.alias, 'ua-rootdisk');
  const plan = lockPlan(d);
  assert.equal(plan.leases, []);
  assert.equal(plan.unprotected, [{ target: 'lease:cluster1/vm-lease-offset-disk', reason: 'lease offset 1048576 is not 0 (a sanlock lease?)' }]);
});

const wrap = (devices: string, extra = ''): string =>
  `<domain type='kvm'${extra}><name>x</name><uuid>0B6D4C56-3F1C-4B8E-9F6A-2D7E1C5A9B01</uuid><devices>${devices}</devices></domain>`;

test('given a lease whose lockspace, key or target path climbs out of its directory, then it is bad input (review25a F14)', () => {
  const lease = (ls: string, key: string, target = '/var/lib/libvirt/lockd') => wrap(`<lease><lockspace>${ls}</lockspace><key>${key}</key><target path='${target}'/></lease>`);
  throwsBadInput(() => parseDomainXml(lease('../../../../etc/sudoers.d', 'zz')), /<lockspace> is "..\/..\/..\/..\/etc\/sudoers.d", expected a name inside the lease's target path/);
  throwsBadInput(() => parseDomainXml(lease('/etc', 'zz')), /<lockspace> is "\/etc"/);
  throwsBadInput(() => parseDomainXml(lease('area/./x', 'zz')), /<lockspace> is "area\/.\/x"/);
  throwsBadInput(() => parseDomainXml(lease('area', '../x')), /<key> is "..\/x"/);
  throwsBadInput(() => parseDomainXml(lease('area', 'k', 'relative/dir')), /<target path="relative\/dir">, expected an absolute path/);
  throwsBadInput(() => parseDomainXml(lease('area', 'k', '/var/lib/../../etc')), /<target path="\/var\/lib\/..\/..\/etc">/);
  // A lockspace with sub-directories inside the target path is still a lease.
  assert.equal(parseDomainXml(lease('area/sub', 'k')).leases, [{ lockspace: 'area/sub', key: 'k', target: '/var/lib/libvirt/lockd' }]);
});

test('given the same image twice, then it is locked once; given a numeric name, it stays a string', () => {
  const xml = `<domain><name>123</name><uuid>0b6d4c56-3f1c-4b8e-9f6a-2d7e1c5a9b01</uuid><devices>
    <disk type='file' device='disk'><source file='/a.img'/><target dev='vda'/></disk>
    <disk type='file' device='disk'><source file='/a.img'/><target dev='vdb'/></disk></devices></domain>`;
  const d = parseDomainXml(xml);
  assert.is(d.name, '123');
  assert.equal(lockPlan(d).lock, [{ path: '/a.img', readonly: false, shareable: false }]);
});

test('given an uppercase uuid and a <domstatus> wrapper, then the uuid is lowercased and the domain found', () => {
  assert.is(parseDomainXml(wrap('')).uuid, '0b6d4c56-3f1c-4b8e-9f6a-2d7e1c5a9b01');
  const status = `<domstatus state='running' pid='42'>${wrap("<disk type='block'><source dev='/dev/sdx'/><target dev='vda'/></disk>", " id='7'")}</domstatus>`;
  const d = parseDomainXml(status);
  assert.is(d.id, 7);
  assert.is(d.disks[0]!.path, '/dev/sdx');
});

test('given vhostuser, nvme and a future disk type, then they are unprotected and never locked by their socket path', () => {
  const d = parseDomainXml(wrap(`
    <disk type='vhostuser' device='disk'><source type='unix' path='/tmp/vhost-blk.sock'/><target dev='vda'/></disk>
    <disk type='nvme' device='disk'><source type='pci' managed='yes' namespace='1'/><target dev='vdb'/></disk>
    <disk type='quantum' device='disk'><source file='/q.img'/><target dev='vdc'/></disk>`));
  const plan = lockPlan(d);
  assert.equal(plan.lock, []);
  assert.equal(plan.unprotected.map((u) => u.target), ['vda', 'vdb', 'vdc']);
  assert.match(plan.unprotected[0]!.reason, /disk type "vhostuser"/);
});

test('given malformed XML, then a BadInputError names what is wrong', () => {
  throwsBadInput(() => parseDomainXml(''), /domain XML is empty/);
  throwsBadInput(() => parseDomainXml('<domain><name>x</nam></domain>'), /not well-formed: Expected closing tag 'name'.*line 1/);
  throwsBadInput(() => parseDomainXml('<domain>'), /not well-formed: Unclosed tag 'domain'/);
  throwsBadInput(() => parseDomainXml('<network><name>x</name></network>'), /root element must be <domain>, got <network>/);
  throwsBadInput(() => parseDomainXml('<domain><uuid>0b6d4c56-3f1c-4b8e-9f6a-2d7e1c5a9b01</uuid></domain>'), /has no <name>/);
  throwsBadInput(() => parseDomainXml('<domain><name>x</name></domain>'), /domain "x" has no <uuid>/);
  throwsBadInput(() => parseDomainXml('<domain><name>x</name><uuid>nope</uuid></domain>'), /<uuid>nope<\/uuid>, expected a UUID/);
  throwsBadInput(() => parseDomainXml(wrap('', " id='one'")), /id="one", expected an integer/);
  throwsBadInput(() => parseDomainXml(wrap("<disk type='file'><source file='/a'/></disk>")), /<disk> #1 has no <target dev=...>/);
  throwsBadInput(() => parseDomainXml(wrap("<disk type='file' device='tape'><target dev='vda'/></disk>")), /device="tape"/);
  throwsBadInput(() => parseDomainXml(wrap("<disk type='file'><source file='/a'/><source file='/b'/><target dev='vda'/></disk>")), /disk vda has 2 <source> elements/);
  throwsBadInput(() => parseDomainXml(wrap("<lease><lockspace>s</lockspace><target path='/p'/></lease>")), /<lease> #1 has no <key>/);
  throwsBadInput(() => parseDomainXml(wrap("<lease><key>k</key><target path='/p'/></lease>")), /\(key "k"\) has no <lockspace>/);
  throwsBadInput(() => parseDomainXml(wrap('<lease><lockspace>s</lockspace><key>k</key></lease>')), /has no <target path=...>/);
  throwsBadInput(() => parseDomainXml(wrap("<lease><lockspace>s</lockspace><key>k</key><target path='/p' offset='-1'/></lease>")), /offset="-1"/);
});

test('a domain with no devices has nothing to lock', () => {
  const d: DomainInfo = parseDomainXml('<domain><name>x</name><uuid>0b6d4c56-3f1c-4b8e-9f6a-2d7e1c5a9b01</uuid></domain>');
  assert.equal(lockPlan(d), { lock: [], unprotected: [], leases: [] });
});

test('attribute and text values are taken byte-exact as libvirt holds them: no trimming, no whitespace folding (review25a F8)', () => {
  // libvirt writes tab, newline and carriage return literally and keeps leading/trailing spaces:
  // each is part of the name QEMU opens.
  const d = parseDomainXml(
    wrap(
      "<disk type='file'><source file='/x/a.img '/><target dev='vda'/></disk>" +
        "<disk type='block'><source dev=' /dev/b\tc\nd\r\n'/><target dev='vdb'/></disk>" +
        "<disk type='dir'><source dir='/d&#10;&#x9;&amp;&lt;&gt;&quot;&apos;'/><target dev='vdc'/></disk>" +
        "<lease><lockspace> ls </lockspace><key> k\n</key><target path='/t '/></lease>",
    ),
  );
  assert.equal(
    d.disks.map((x) => x.path),
    ['/x/a.img ', ' /dev/b\tc\nd\r\n', '/d\n\t&<>"\''],
  );
  assert.equal(d.leases, [{ lockspace: ' ls ', key: ' k\n', target: '/t ' }]);
  assert.equal(lockPlan(d).leases.map((l) => l.path), ['/t / ls / k\n']);
  assert.equal(parseDomainXml("<domain><name> a b </name><uuid> 0b6d4c56-3f1c-4b8e-9f6a-2d7e1c5a9b01\n</uuid></domain>").name, ' a b ');
});

test('a reference libxml2 refuses (undefined entity, bare &, a non-character) is bad input, not a path', () => {
  throwsBadInput(() => parseDomainXml(wrap("<disk type='file'><source file='/a&nbsp;b'/><target dev='vda'/></disk>")), /"&nbsp;", not an XML reference/);
  throwsBadInput(() => parseDomainXml(wrap("<disk type='file'><source file='/a&#0;b'/><target dev='vda'/></disk>")), /"&#0;"/);
  throwsBadInput(() => parseDomainXml(wrap('<lease><lockspace>s&x;</lockspace><key>k</key><target path="/p"/></lease>')), /<lockspace> holds "&x;"/);
});

test('<metadata> is kept as one raw string: an element, comment, CDATA or attribute in it never reads as the domain\'s own (review25a F3)', () => {
  const fake = "<devices xmlns='u'><disk type='file'><source file='/fake'/><target dev='vdz'/></disk></devices>";
  for (const inner of [`<a:x xmlns:a='u'><!-- </metadata> -->${fake}</a:x>`, `<a:x xmlns:a='u'><![CDATA[</metadata>]]>${fake}</a:x>`, `<a:x xmlns:a='u' v='</metadata>'>${fake}</a:x>`, `<metadata xmlns='u'><metadata/>${fake}</metadata>`]) {
    const d = parseDomainXml(`<domain><name>m</name><uuid>0b6d4c56-3f1c-4b8e-9f6a-2d7e1c5a9b01</uuid><metadata>${inner}</metadata><devices><disk type='file'><source file='/real'/><target dev='vda'/></disk></devices></domain>`);
    assert.equal(d.disks.map((x) => x.path), ['/real'], inner);
  }
  const big = parseDomainXml(`<domain><name>m</name><uuid>0b6d4c56-3f1c-4b8e-9f6a-2d7e1c5a9b01</uuid><metadata><a:m xmlns:a='u'>${'<a/>'.repeat(50_000)}</a:m></metadata><devices><disk type='file'><source file='/real'/><target dev='vda'/></disk></devices></domain>`);
  assert.equal(big.disks.map((x) => x.path), ['/real']);
});

test.run();
