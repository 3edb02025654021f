// This test process playing the new daemon's half of the take-over hand-off (src/daemon/takeover.ts):
// connect to the running daemon's handoff.sock, send the protocol's lines, read what it sends and keep
// every descriptor it passes. Closing them all (`goAway`) is the new daemon dying: nothing is unlocked,
// since the old daemon still has its own descriptions.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as assert from 'uvu/assert';
import { native } from '../../src/engine/native.js';

export class HandoffPlayer {
  readonly fd: number;
  /** Every descriptor received so far. */
  readonly got: number[] = [];
  /** Everything read so far. */
  text = '';

  constructor(stateDir: string) {
    this.fd = native.unixConnect(path.join(stateDir, 'handoff.sock'));
  }

  send(line: string): void {
    native.sendFds(this.fd, null, line, []);
  }

  /** Reads, keeping every descriptor, until the line `end` has come; the stream ending first fails the test. */
  readUntil(end: string, timeoutMs = 20_000): void {
    while (!this.text.includes(`${end}\n`)) {
      const r = native.recvFds(this.fd, 1 << 16, timeoutMs);
      assert.ok(r.data.length > 0, `end of stream before ${end}`);
      this.text += r.data.toString('utf8');
      this.got.push(...r.fds);
    }
  }

  /** The hand-off up to DONE: `takeover` (TAKEOVER, or TAKEOVER conns), every lock until END, STOP, the rest until DONE. */
  upToDone(takeover: 'TAKEOVER' | 'TAKEOVER conns'): this {
    this.send(`${takeover}\n`);
    this.readUntil('END');
    this.send('STOP\n');
    this.readUntil('DONE');
    return this;
  }

  /** Closes every descriptor received and the connection: the new daemon gone. */
  goAway(): void {
    for (const f of [...this.got, this.fd]) fs.closeSync(f);
  }
}
