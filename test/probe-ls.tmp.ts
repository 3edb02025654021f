import * as fs from 'node:fs';
import * as path from 'node:path';
import { TestDaemon, tmpdir, UUID1, UUID2 } from './helpers/daemon.js';
import { kernelLockedFiles } from './helpers/kernel-locks.js';
const dir = tmpdir('vmlockd-lsprobe-');
const ls = path.join(dir, 'ls');
fs.mkdirSync(path.join(dir, 'img'));
const img = path.join(dir, 'img', 'a.img'); fs.writeFileSync(img, 'x');
const a = await new TestDaemon({ stateDir: path.join(dir, 'sa'), lockspace: ls, hostId: 'ha', extra: ['--verify-interval', '1'] }).start();
const b = await new TestDaemon({ stateDir: path.join(dir, 'sb'), lockspace: ls, hostId: 'hb', extra: ['--verify-interval', '1'] }).start();
console.log('A acquire', a.cli(['acquire', '--vm', UUID1, img]).code);
const mode = process.argv[2];
if (mode === 'rm') fs.rmSync(ls, { recursive: true });
if (mode === 'replace') { fs.renameSync(ls, ls + '.old'); fs.mkdirSync(ls); }
if (mode === 'file') { fs.rmSync(ls, { recursive: true }); fs.writeFileSync(ls, 'x'); }
console.log('B acquire right away', JSON.stringify(b.cli(['acquire', '--vm', UUID2, img])));
await new Promise((r) => setTimeout(r, 3500));
console.log('B acquire after 3.5s', JSON.stringify(b.cli(['acquire', '--vm', UUID2, img])));
console.log('A locks', a.cli(['locks']).stdout, 'B locks', b.cli(['locks']).stdout);
console.log('A kernel', [...kernelLockedFiles(a.proc!.pid!)], 'B kernel', [...kernelLockedFiles(b.proc!.pid!)]);
console.log('A audit', a.cli(['audit', '--json', '--kind', 'LeaseLost,Reacquired']).stdout.slice(0, 1500));
console.log('A stderr', a.stderr.slice(-1500));
console.log('alive', a.proc!.exitCode, b.proc!.exitCode);
await a.kill('SIGTERM'); await b.kill('SIGTERM');
