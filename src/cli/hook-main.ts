#!/usr/bin/env node
// The qemu hook's own entry point: `node dist/cli/hook-main.js qemu NAME OP SUBOP EXTRA ...`.
// Same as `vmlockd hook ...`, but loads only the hook's modules instead of the whole CLI (SQLite,
// rxjs, chokidar): libvirt waits for this process on every VM start. See bench/README.md.
import { runHook } from './hook.js';

runHook(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`vmlockd hook: ${(e as Error).message ?? e}\n`);
    process.exitCode = 1;
  },
);
