// systemd's descriptor store as the locker's tests need it: every descriptor handed to it is kept
// as a dup'd copy (the same open file description, as systemd keeps it), under its name, in the
// order given; several may share a name.
import * as fs from 'node:fs';
import type { DescriptorStore, PassedFd } from '../../src/engine/locker.js';
import { native } from '../../src/engine/native.js';

export class TestStore implements DescriptorStore {
  readonly fds: Array<{ name: string; fd: number }> = [];
  /** Removals that never reach it (a lost FDSTOREREMOVE). */
  deaf = false;
  store(name: string, fd: number): void {
    this.fds.push({ name, fd: native.dupFd(fd) });
  }
  remove(name: string): void {
    if (this.deaf) return;
    for (let i = this.fds.length - 1; i >= 0; i--) {
      if (this.fds[i]!.name !== name) continue;
      fs.closeSync(this.fds[i]!.fd);
      this.fds.splice(i, 1);
    }
  }
  /** What the next start is handed: newest first (systemd prepends), or oldest first after a daemon-reload. */
  passed(order: 'newest' | 'oldest' = 'newest'): PassedFd[] {
    const list = order === 'newest' ? [...this.fds].reverse() : [...this.fds];
    return list.map(({ name, fd }) => ({ name, fd: native.dupFd(fd) }));
  }
  /** Closes every copy (the end of a test). */
  clear(): void {
    for (const { fd } of this.fds.splice(0)) fs.closeSync(fd);
  }
}
