# Drop a lock from another process's open file description (pidfd_getfd: the same description).
import ctypes, fcntl, os, struct, sys
pid, path = int(sys.argv[1]), sys.argv[2]
ranges = [(int(a), int(b)) for a, b in (r.split(':') for r in sys.argv[3:])] or [(0, 1)]
libc = ctypes.CDLL(None, use_errno=True)
SYS_pidfd_getfd = 438
F_OFD_SETLK = 37
pidfd = os.pidfd_open(pid)
done = 0
for name in os.listdir(f'/proc/{pid}/fd'):
    try:
        if os.readlink(f'/proc/{pid}/fd/{name}') != path: continue
    except OSError:
        continue
    fd = libc.syscall(SYS_pidfd_getfd, pidfd, int(name), 0)
    if fd < 0: raise OSError(ctypes.get_errno(), 'pidfd_getfd')
    for start, length in ranges:
        # struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
        fl = struct.pack('hhqqi4x', fcntl.F_UNLCK, 0, start, length, 0)
        fcntl.fcntl(fd, F_OFD_SETLK, fl)
    os.close(fd)
    done += 1
print(done)
