// Shared mounts from mountinfo, and the warning for one filesystem mounted at different paths.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mountWarnings, sharedMounts } from '../../src/engine/host-mounts.js';

// Shaped as /proc/self/mountinfo on a Debian 12 host with the CI's GlusterFS and an NFS share.
const H1 = [
  '22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro',
  '40 22 0:44 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw',
  '61 22 0:52 / /images rw,relatime shared:30 - fuse.glusterfs localhost:/vmlockd rw,user_id=0,group_id=0,default_permissions,allow_other,max_read=131072',
  '62 22 0:53 / /var/lib/lock\\040space rw,relatime shared:31 - nfs4 nas:/export/locks rw,vers=4.2',
].join('\n');

test('sharedMounts keeps network and cluster filesystems, with octal escapes undone', () => {
  assert.equal(sharedMounts(H1), [
    { source: 'localhost:/vmlockd', root: '/', fstype: 'fuse.glusterfs', mountpoint: '/images' },
    { source: 'nas:/export/locks', root: '/', fstype: 'nfs4', mountpoint: '/var/lib/lock space' },
  ]);
  assert.equal(sharedMounts('garbage\n\n1 2 3 - \n'), []);
});

test('one filesystem at one path everywhere: no warning', () => {
  const m = sharedMounts(H1);
  assert.equal(mountWarnings(new Map([['h1', m], ['h2', m]]), new Map([['h1', ['/images/a.qcow2']], ['h2', ['/images/a.qcow2']]])), []);
});

test('one filesystem at two paths on two hosts, or twice on one host: a warning naming both', () => {
  const h2 = sharedMounts(H1.replace(' /images ', ' /mnt/images '));
  const w = mountWarnings(new Map([['h1', sharedMounts(H1)], ['h2', h2]]), new Map([['h1', ['/images/a.qcow2']]]));
  assert.is(w.length, 1);
  assert.match(w[0]!, 'fuse.glusterfs localhost:/vmlockd is mounted at different paths: /images on h1; /mnt/images on h2');
  const twice = sharedMounts(`${H1}\n70 22 0:52 / /srv/images rw - fuse.glusterfs localhost:/vmlockd rw`);
  assert.match(mountWarnings(new Map([['h1', twice]]), new Map([['h1', ['/srv/images/ls']]]))[0]!, '/images on h1; /srv/images on h1');
  // A subdirectory of the volume bind-mounted elsewhere is another tree (another root): not the same paths.
  const sub = sharedMounts(`${H1}\n71 22 0:52 /vm1 /srv/vm1 rw - fuse.glusterfs localhost:/vmlockd rw`);
  assert.equal(mountWarnings(new Map([['h1', sub]]), new Map([['h1', ['/images/x', '/srv/vm1/y']]])), []);
});

test('a filesystem that holds neither the lockspace nor a held disk is not reported, however it is mounted', () => {
  const h2 = sharedMounts(H1.replace(' /images ', ' /mnt/images '));
  const byHost = new Map([['h1', sharedMounts(H1)], ['h2', h2]]);
  // The lockspace on the NFS share (one path everywhere), disks on local storage.
  assert.equal(mountWarnings(byHost, new Map([['h1', ['/var/lib/lock space/ls', '/var/lib/libvirt/images/a.img']], ['h2', ['/var/lib/lock space/ls']]])), []);
  // The longest mount point wins: a local path under / is not on a share mounted elsewhere.
  assert.equal(mountWarnings(byHost, new Map([['h1', ['/tmp/ls']]])), []);
});

test.run();
