#!/usr/bin/python3
# Like test/helpers/socket-activate.py, but a child keeps a copy of each listening socket open
# (as systemd does while the service is down or restarting): activate-keep.py NAME=PATH... -- CMD...
import os, socket, sys, time, signal
sep = sys.argv.index("--")
specs, cmd = sys.argv[1:sep], sys.argv[sep + 1:]
socks, names = [], []
for spec in specs:
    name, path = spec.split("=", 1)
    try: os.unlink(path)
    except FileNotFoundError: pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(path); s.listen(128)
    socks.append(s); names.append(name)
if os.fork() == 0:      # the "manager" copy
    os.setsid()
    with open(os.environ.get("KEEP_PIDFILE", "/dev/null"), "w") as f: f.write(str(os.getpid()))
    while True: time.sleep(3600)
high = [os.dup(s.fileno()) for s in socks]
for s in socks: s.detach()
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True); os.close(fd)
os.environ.update(LISTEN_FDS=str(len(high)), LISTEN_FDNAMES=":".join(names), LISTEN_PID=str(os.getpid()))
os.execvp(cmd[0], cmd)
