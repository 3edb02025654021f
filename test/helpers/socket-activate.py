#!/usr/bin/python3
# Socket activation as systemd does it, for tests without a service manager:
#   socket-activate.py NAME=PATH... -- COMMAND ARGS...
# binds and listens on each Unix stream socket PATH (mode 0600), puts them at fd 3, 4, ... and execs
# COMMAND with LISTEN_FDS, LISTEN_FDNAMES (the NAMEs) and LISTEN_PID (its own pid, kept by exec).
# Nothing here keeps a copy: once COMMAND exits the sockets close (their paths stay).
import os, socket, sys

sep = sys.argv.index("--")
specs, cmd = sys.argv[1:sep], sys.argv[sep + 1:]
socks, names = [], []
for spec in specs:
    name, path = spec.split("=", 1)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    s.bind(path)
    os.umask(old)
    s.listen(128)
    socks.append(s)
    names.append(name)
# Out of the way first, so that moving one to 3+i never closes another.
high = [os.dup(s.fileno()) for s in socks]
for s in socks:
    s.detach()
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True)
    os.close(fd)
os.environ.update(LISTEN_FDS=str(len(high)), LISTEN_FDNAMES=":".join(names), LISTEN_PID=str(os.getpid()))
os.execvp(cmd[0], cmd)
