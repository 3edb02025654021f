// The daemon's log lives in src/daemon/log.ts; this name stays for older imports.
export { Logger, type Level } from '../daemon/log.js';
