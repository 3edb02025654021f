// Which defaults this copy of vmlockd uses: a checkout's (`./var` of the working directory) or an
// installed package's (/etc/vmlockd/vmlockd.conf, /var/lib/vmlockd, /run/vmlockd). The package
// writes `install-layout.json` next to dist/ (packaging/build-deb.sh); a checkout has none. The
// marker decides, never the uid: root running `npm test` in a checkout keeps ./var, a user running
// the installed binary gets the system paths (and a clear EACCES where it may not go).
// docs/configuration.md "Defaults", docs/decisions/0013-debian-package.md.
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VmlockdError } from './engine/errors.js';

export interface InstallLayout {
  /** Where the marker was read (for messages). */
  readonly marker: string;
  /** The config file read when no --config is given (read only if it exists). */
  readonly configFile: string;
  /** state_dir's default. */
  readonly stateDir: string;
  /** The control socket's directory: socket's default is `<runtimeDir>/vmlockd.sock` while state_dir is the default one. */
  readonly runtimeDir: string;
}

/** dist/install-layout.js (or src/) -> the package root, where the package writes the marker. */
export const LAYOUT_MARKER = join(fileURLToPath(new URL('..', import.meta.url)), 'install-layout.json');

/** The marker's text checked: every path absolute; anything else is an error naming the marker. */
export function parseLayout(text: string, marker: string): InstallLayout {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new VmlockdError('VMLOCKD_ERR_CONFIG', `${marker}: not JSON (${(e as Error).message}); reinstall the package`);
  }
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const path = (key: string): string => {
    const p = o[key];
    if (typeof p !== 'string' || !isAbsolute(p) || p.includes('\0')) {
      throw new VmlockdError('VMLOCKD_ERR_CONFIG', `${marker}: "${key}" must be an absolute path, got ${JSON.stringify(p)}; reinstall the package`);
    }
    return p;
  };
  return { marker, configFile: path('configFile'), stateDir: path('stateDir'), runtimeDir: path('runtimeDir') };
}

let cached: InstallLayout | null | undefined;

/** The installed layout, or null in a checkout (no marker). Read once per process. */
export function installLayout(): InstallLayout | null {
  if (cached !== undefined) return cached;
  let text: string;
  try {
    text = readFileSync(LAYOUT_MARKER, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new VmlockdError('VMLOCKD_ERR_CONFIG', `cannot read ${LAYOUT_MARKER}: ${(e as Error).message}`);
    return (cached = null);
  }
  return (cached = parseLayout(text, LAYOUT_MARKER));
}
