// The package version, reported by the daemon (status, build info, host files, `vmlockd --version`);
// outside both rooms so a command may report it too. One source of truth: package.json's "version",
// read beside dist/ (a checkout's, or /usr/lib/vmlockd/package.json, which packaging/build-deb.sh
// installs and names the .deb from), so the package and the daemon never say two numbers (review14).
import { createRequire } from 'node:module';

export const VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
