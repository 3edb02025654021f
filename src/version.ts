// The package version, reported by the daemon (status, build info, host files); outside both rooms so a command may report it too.
export const VERSION = '0.1.0';
