/*
 * vmlockd native binding: the system calls Node cannot make.
 *
 *   ofdSetLk(fd, type, start, len)  -> true when granted, false when held elsewhere
 *   ofdGetLk(fd, type, start, len)  -> null when free, else { type, start, len, pid }
 *   peerCred(fd)                    -> { pid, uid, gid } of a connected AF_UNIX socket
 *   raiseNoFile()                   -> { soft, hard }: RLIMIT_NOFILE soft limit raised to the hard one
 *   dgramSocket()                   -> fd of a new AF_UNIX datagram socket (close-on-exec), for sd_notify
 *   unixConnect(path)               -> fd of a new blocking AF_UNIX stream socket connected to path
 *   sendFds(fd, addr, data, fds)    -> bytes sent: sendmsg with the fds as SCM_RIGHTS (at most 253;
 *                                      a full non-blocking socket is waited for, up to 10 s);
 *                                      addr null on a connected socket, else a path ('@' = abstract name);
 *                                      a 5th argument true: never wait (MSG_DONTWAIT), a full queue throws EAGAIN
 *   recvFds(fd, maxBytes, timeoutMs)-> { data: Buffer, fds: number[] }: recvmsg (fds close-on-exec);
 *                                      data empty at end of stream; throws ETIMEDOUT after timeoutMs
 *   getFd(fd) / setFd(fd, flags)    -> F_GETFD / F_SETFD (FD_CLOEXEC is 1)
 *   dupFd(fd)                       -> F_DUPFD_CLOEXEC
 *   sealedMemfd(name, data)         -> fd of a new memfd (close-on-exec) holding data, sealed against
 *                                      any change (shrink, grow, write, seal): journald's way for an
 *                                      entry too big for one datagram (sent as SCM_RIGHTS)
 *   fstatId(fd)                     -> { dev, ino, type }: dev and ino as decimal strings, type "file",
 *                                      "socket", "dir" or "other"
 *   takeLockFile(path, flags, opts, out, scratch, leaseSpan, recordSize)
 *                                   -> the locker's take in one call (docs/decisions/0019): open (flags as
 *                                      given, plus O_CLOEXEC), fstat (a regular file; a block device too with
 *                                      TAKE_BLOCKDEV), non-blocking F_OFD_SETLK on byte 0 (TAKE_WRITE: write,
 *                                      else read), then with TAKE_IDENTITY stat(path) against fstat(fd) (dev
 *                                      and ino), and with TAKE_LEASE the lease read into `scratch` (page-
 *                                      aligned, for O_DIRECT) and each block's blank check. Returns a status
 *                                      (TAKEN 0, BUSY 1: fd left open for the JS to name the holder, REPLACED
 *                                      2, NOT_REGULAR 3, NOENT 4) and fills the Int32Array `out`
 *                                      (see TAKE_OUT_* below: with TAKE_IDENTITY or TAKE_LEASE the file's
 *                                      st_ino too); throws on any other failure (fd closed)
 *   writeRecord(fd, data, offset, growTo, sync)
 *                                   -> bytes written: pwrite through a page-aligned buffer, then
 *                                      ftruncate(growTo) when growTo > 0, then fdatasync when sync
 *   releaseLockFile(fd, data, offset, sync, close)
 *                                   -> the release in one call: the record (data, or null for none) written
 *                                      at offset (and synced when sync), F_OFD_SETLK F_UNLCK of the whole
 *                                      file, and close when close is true. Never throws for the descriptor's own failures (a
 *                                      broken cluster-filesystem descriptor holds nothing); returns a bit
 *                                      set of what failed (1 write, 2 sync, 4 unlock, 8 close)
 *   loopStatus(path)                -> { major, minor, ino } of the file a loop device (or a partition of
 *                                      one) reads (LOOP_GET_STATUS64's lo_device, lo_inode; ino a decimal
 *                                      string), null when the node is no loop device or is not bound; opens
 *                                      the node read-only for the one ioctl and closes it (resolve.ts)
 *   sockInfo(fd)                    -> { family, type, listening, path } of a socket, from the descriptor itself
 *                                      (getsockname, SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN): family "unix" or "other",
 *                                      type "stream", "dgram", "seqpacket" or "other"; path of a Unix socket
 *                                      ('@name' abstract, '' unbound), null for another family
 *
 * type is "read", "write" or "unlock". Every call is non-blocking: a lock that is held
 * is an answer (false), never a wait, so no libuv thread is ever parked on a lock.
 * Other failures throw an Error carrying `code` (errno name) and `errno`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/loop.h>
#include <node_api.h>

#include "segscan.h"

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#endif

/* The errno's name; an errno not named here is reported by its number ("errno 77"). */
static const char *errno_name(int e, char *buf, size_t n) {
  switch (e) {
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ENOLCK: return "ENOLCK";
    case EIO: return "EIO";
    case EDEADLK: return "EDEADLK";
    case ENOTCONN: return "ENOTCONN";
#ifdef EBADFD
    case EBADFD: return "EBADFD";
#endif
    case ESTALE: return "ESTALE";
    case EINTR: return "EINTR";
    case ENOTSOCK: return "ENOTSOCK";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EAGAIN: return "EAGAIN";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOBUFS: return "ENOBUFS";
    case ENOMEM: return "ENOMEM";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ETOOMANYREFS: return "ETOOMANYREFS";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    default: snprintf(buf, n, "errno %d", e); return buf;
  }
}

static napi_value throw_errno(napi_env env, const char *syscall, int e) {
  napi_value msg, code, err, num;
  char buf[256], name[32];
  const char *en = errno_name(e, name, sizeof name);
  snprintf(buf, sizeof buf, "%s: %s (%s)", syscall, strerror(e), en);
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, en, NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &err);
  napi_create_int32(env, -e, &num);
  napi_set_named_property(env, err, "errno", num);
  napi_set_named_property(env, err, "syscall", (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &msg), msg));
  napi_throw(env, err);
  return NULL;
}

static int parse_type(napi_env env, napi_value v, short *out) {
  char s[16];
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, s, sizeof s, &n) != napi_ok) return -1;
  if (strcmp(s, "read") == 0) *out = F_RDLCK;
  else if (strcmp(s, "write") == 0) *out = F_WRLCK;
  else if (strcmp(s, "unlock") == 0) *out = F_UNLCK;
  else return -1;
  return 0;
}

static int lock_args(napi_env env, napi_callback_info info, int *fd, struct flock *fl) {
  size_t argc = 4;
  napi_value argv[4];
  int64_t start = 0, len = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) { napi_throw_type_error(env, "EINVAL", "expected (fd, type, start, len)"); return -1; }
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok) { napi_throw_type_error(env, "EINVAL", "fd must be a number"); return -1; }
  memset(fl, 0, sizeof *fl);
  if (parse_type(env, argv[1], &fl->l_type) != 0) { napi_throw_type_error(env, "EINVAL", "type must be read, write or unlock"); return -1; }
  if (napi_get_value_int64(env, argv[2], &start) != napi_ok || napi_get_value_int64(env, argv[3], &len) != napi_ok || start < 0 || len < 0) {
    napi_throw_type_error(env, "EINVAL", "start and len must be non-negative numbers");
    return -1;
  }
  fl->l_whence = SEEK_SET;
  fl->l_start = (off_t)start;
  fl->l_len = (off_t)len;
  fl->l_pid = 0; /* OFD commands require 0 */
  return 0;
}

static napi_value ofd_setlk(napi_env env, napi_callback_info info) {
  int fd;
  struct flock fl;
  napi_value result;
  if (lock_args(env, info, &fd, &fl) != 0) return NULL;
  int rc;
  do { rc = fcntl(fd, F_OFD_SETLK, &fl); } while (rc != 0 && errno == EINTR);
  if (rc == 0) { napi_get_boolean(env, true, &result); return result; }
  if (errno == EAGAIN || errno == EACCES) { napi_get_boolean(env, false, &result); return result; }
  return throw_errno(env, "fcntl(F_OFD_SETLK)", errno);
}

static napi_value ofd_getlk(napi_env env, napi_callback_info info) {
  int fd;
  struct flock fl;
  napi_value result, v;
  if (lock_args(env, info, &fd, &fl) != 0) return NULL;
  int rc;
  do { rc = fcntl(fd, F_OFD_GETLK, &fl); } while (rc != 0 && errno == EINTR);
  if (rc != 0) return throw_errno(env, "fcntl(F_OFD_GETLK)", errno);
  if (fl.l_type == F_UNLCK) { napi_get_null(env, &result); return result; }
  napi_create_object(env, &result);
  napi_create_string_utf8(env, fl.l_type == F_WRLCK ? "write" : "read", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "type", v);
  napi_create_int64(env, (int64_t)fl.l_start, &v);
  napi_set_named_property(env, result, "start", v);
  napi_create_int64(env, (int64_t)fl.l_len, &v);
  napi_set_named_property(env, result, "len", v);
  napi_create_int32(env, fl.l_pid, &v);
  napi_set_named_property(env, result, "pid", v);
  return result;
}

static napi_value peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, v;
  int fd;
  struct ucred cred;
  socklen_t len = sizeof cred;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "expected (fd)");
    return NULL;
  }
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
  napi_create_object(env, &result);
  napi_create_int32(env, cred.pid, &v);
  napi_set_named_property(env, result, "pid", v);
  napi_create_uint32(env, cred.uid, &v);
  napi_set_named_property(env, result, "uid", v);
  napi_create_uint32(env, cred.gid, &v);
  napi_set_named_property(env, result, "gid", v);
  return result;
}

/* One descriptor per held lock: the soft limit (often 1024) caps how many disks a host can lock. */
static napi_value raise_nofile(napi_env env, napi_callback_info info) {
  (void)info;
  struct rlimit rl;
  napi_value result, v;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return throw_errno(env, "getrlimit", errno);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return throw_errno(env, "setrlimit", errno);
  }
  napi_create_double(env, (double)rl.rlim_cur, &v);
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "soft", v);
  napi_create_double(env, (double)rl.rlim_max, &v);
  napi_set_named_property(env, result, "hard", v);
  return result;
}

static int arg_fd(napi_env env, napi_value v, int *fd) {
  if (napi_get_value_int32(env, v, fd) != napi_ok || *fd < 0) { napi_throw_type_error(env, "EINVAL", "fd must be a non-negative number"); return -1; }
  return 0;
}

/* An AF_UNIX address from a path; a leading '@' names an abstract socket (sd_notify's convention). */
static int unix_addr(napi_env env, napi_value v, struct sockaddr_un *sa, socklen_t *len) {
  char path[sizeof sa->sun_path + 1];
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, path, sizeof path, &n) != napi_ok || n == 0) { napi_throw_type_error(env, "EINVAL", "address must be a non-empty string"); return -1; }
  if (n >= sizeof sa->sun_path) { napi_throw_type_error(env, "ENAMETOOLONG", "socket address too long"); return -1; }
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  memcpy(sa->sun_path, path, n);
  if (path[0] == '@') sa->sun_path[0] = '\0';
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '@' ? 0 : 1));
  return 0;
}

static napi_value dgram_socket(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_UNIX, SOCK_DGRAM)", errno);
  napi_create_int32(env, fd, &result);
  return result;
}

static napi_value unix_connect(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  struct sockaddr_un sa;
  socklen_t len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) { napi_throw_type_error(env, "EINVAL", "expected (path)"); return NULL; }
  if (unix_addr(env, argv[0], &sa, &len) != 0) return NULL;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_UNIX, SOCK_STREAM)", errno);
  int rc;
  do { rc = connect(fd, (struct sockaddr *)&sa, len); } while (rc != 0 && errno == EINTR);
  if (rc != 0) { int e = errno; close(fd); return throw_errno(env, "connect", e); }
  napi_create_int32(env, fd, &result);
  return result;
}

#define MAX_FDS 253 /* SCM_MAX_FD */

static napi_value send_fds(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result;
  int fd;
  bool nowait = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) { napi_throw_type_error(env, "EINVAL", "expected (fd, addr, data, fds)"); return NULL; }
  if (argc >= 5) napi_get_value_bool(env, argv[4], &nowait);
  if (arg_fd(env, argv[0], &fd) != 0) return NULL;
  struct sockaddr_un sa;
  socklen_t salen = 0;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_null && t != napi_undefined && unix_addr(env, argv[1], &sa, &salen) != 0) return NULL;
  void *data = NULL;
  size_t dlen = 0;
  bool isbuf = false;
  char *str = NULL;
  napi_is_buffer(env, argv[2], &isbuf);
  if (isbuf) napi_get_buffer_info(env, argv[2], &data, &dlen);
  else {
    if (napi_get_value_string_utf8(env, argv[2], NULL, 0, &dlen) != napi_ok) { napi_throw_type_error(env, "EINVAL", "data must be a string or a Buffer"); return NULL; }
    str = malloc(dlen + 1);
    if (!str) return throw_errno(env, "malloc", ENOMEM);
    napi_get_value_string_utf8(env, argv[2], str, dlen + 1, &dlen);
    data = str;
  }
  uint32_t nfds = 0;
  bool isarr = false;
  napi_is_array(env, argv[3], &isarr);
  if (!isarr || napi_get_array_length(env, argv[3], &nfds) != napi_ok) { free(str); napi_throw_type_error(env, "EINVAL", "fds must be an array"); return NULL; }
  if (nfds > MAX_FDS) { free(str); napi_throw_range_error(env, "EINVAL", "at most 253 descriptors per message"); return NULL; }
  int fds[MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value el;
    napi_get_element(env, argv[3], i, &el);
    if (arg_fd(env, el, &fds[i]) != 0) { free(str); return NULL; }
  }
  union { char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)]; struct cmsghdr align; } u;
  struct iovec iov = { .iov_base = data, .iov_len = dlen };
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  if (salen > 0) { msg.msg_name = &sa; msg.msg_namelen = salen; }
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    memset(u.buf, 0, sizeof u.buf);
    msg.msg_control = u.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  for (;;) {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL | (nowait ? MSG_DONTWAIT : 0));
    if (n >= 0 || errno == EINTR) { if (n >= 0) break; continue; }
    if (errno != EAGAIN || nowait) break;
    /* A non-blocking socket (one of Node's) that is full: wait until it drains, at most 10 s. */
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    int rc;
    do { rc = poll(&p, 1, 10000); } while (rc < 0 && errno == EINTR);
    if (rc <= 0) { if (rc == 0) errno = ETIMEDOUT; break; }
  }
  int e = errno;
  free(str);
  if (n < 0) return throw_errno(env, "sendmsg", e);
  napi_create_int64(env, (int64_t)n, &result);
  return result;
}

static napi_value recv_fds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result, v, arr;
  int fd, timeout = -1;
  uint32_t max = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) { napi_throw_type_error(env, "EINVAL", "expected (fd, maxBytes, timeoutMs)"); return NULL; }
  if (arg_fd(env, argv[0], &fd) != 0) return NULL;
  if (napi_get_value_uint32(env, argv[1], &max) != napi_ok || max == 0 || max > (1u << 24)) { napi_throw_type_error(env, "EINVAL", "maxBytes must be 1..16 MiB"); return NULL; }
  if (napi_get_value_int32(env, argv[2], &timeout) != napi_ok) { napi_throw_type_error(env, "EINVAL", "timeoutMs must be a number"); return NULL; }
  struct pollfd p = { .fd = fd, .events = POLLIN };
  int rc;
  do { rc = poll(&p, 1, timeout); } while (rc < 0 && errno == EINTR);
  if (rc < 0) return throw_errno(env, "poll", errno);
  if (rc == 0) return throw_errno(env, "recvmsg", ETIMEDOUT);
  char *data = malloc(max);
  if (!data) return throw_errno(env, "malloc", ENOMEM);
  union { char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)]; struct cmsghdr align; } u;
  struct iovec iov = { .iov_base = data, .iov_len = max };
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = sizeof u.buf;
  ssize_t n;
  do { n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); } while (n < 0 && errno == EINTR);
  if (n < 0) { int e = errno; free(data); return throw_errno(env, "recvmsg", e); }
  napi_create_array(env, &arr);
  uint32_t k = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *got = (int *)CMSG_DATA(c);
    for (size_t i = 0; i < cnt; i++) {
      napi_create_int32(env, got[i], &v);
      napi_set_element(env, arr, k++, v);
    }
  }
  napi_create_object(env, &result);
  void *copy;
  napi_create_buffer_copy(env, (size_t)n, data, &copy, &v);
  free(data);
  napi_set_named_property(env, result, "data", v);
  napi_set_named_property(env, result, "fds", arr);
  napi_get_boolean(env, (msg.msg_flags & MSG_CTRUNC) != 0, &v);
  napi_set_named_property(env, result, "truncated", v);
  return result;
}

static napi_value get_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || arg_fd(env, argv[0], &fd) != 0) return NULL;
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return throw_errno(env, "fcntl(F_GETFD)", errno);
  napi_create_int32(env, flags, &result);
  return result;
}

static napi_value set_fd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int fd, flags;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || arg_fd(env, argv[0], &fd) != 0) return NULL;
  if (napi_get_value_int32(env, argv[1], &flags) != napi_ok) { napi_throw_type_error(env, "EINVAL", "flags must be a number"); return NULL; }
  if (fcntl(fd, F_SETFD, flags) != 0) return throw_errno(env, "fcntl(F_SETFD)", errno);
  return NULL;
}

static napi_value dup_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || arg_fd(env, argv[0], &fd) != 0) return NULL;
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (nfd < 0) return throw_errno(env, "fcntl(F_DUPFD_CLOEXEC)", errno);
  napi_create_int32(env, nfd, &result);
  return result;
}

static napi_value sealed_memfd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[64];
  size_t nlen = 0;
  bool isbuf = false;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &nlen) != napi_ok) { napi_throw_type_error(env, "EINVAL", "expected (name, data)"); return NULL; }
  napi_is_buffer(env, argv[1], &isbuf);
  if (!isbuf) { napi_throw_type_error(env, "EINVAL", "data must be a Buffer"); return NULL; }
  void *data = NULL;
  size_t dlen = 0;
  napi_get_buffer_info(env, argv[1], &data, &dlen);
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return throw_errno(env, "memfd_create", errno);
  size_t off = 0;
  while (off < dlen) {
    ssize_t n = write(fd, (char *)data + off, dlen - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { int e = n < 0 ? errno : EIO; close(fd); return throw_errno(env, "write(memfd)", e); }
    off += (size_t)n;
  }
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) { int e = errno; close(fd); return throw_errno(env, "fcntl(F_ADD_SEALS)", e); }
  napi_create_int32(env, fd, &result);
  return result;
}

static napi_value fstat_id(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, v;
  int fd;
  struct stat st;
  char buf[32];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || arg_fd(env, argv[0], &fd) != 0) return NULL;
  if (fstat(fd, &st) != 0) return throw_errno(env, "fstat", errno);
  napi_create_object(env, &result);
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)st.st_dev);
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "dev", v);
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)st.st_ino);
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "ino", v);
  /* "block": a direct lock on a block device node (an LV, a LUN) is handed back too (review26a F4). */
  const char *type = S_ISREG(st.st_mode) ? "file" : S_ISBLK(st.st_mode) ? "block" : S_ISSOCK(st.st_mode) ? "socket" : S_ISDIR(st.st_mode) ? "dir" : "other";
  napi_create_string_utf8(env, type, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "type", v);
  return result;
}

static napi_value sock_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, v;
  int fd, domain = 0, type = 0, acc = 0;
  socklen_t ol;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || arg_fd(env, argv[0], &fd) != 0) return NULL;
  ol = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &ol) != 0) return throw_errno(env, "getsockopt(SO_DOMAIN)", errno);
  ol = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ol) != 0) return throw_errno(env, "getsockopt(SO_TYPE)", errno);
  ol = sizeof acc;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &ol) != 0) acc = 0;
  napi_create_object(env, &result);
  napi_create_string_utf8(env, domain == AF_UNIX ? "unix" : "other", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "family", v);
  napi_create_string_utf8(env, type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "dgram" : type == SOCK_SEQPACKET ? "seqpacket" : "other", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "type", v);
  napi_get_boolean(env, acc != 0, &v);
  napi_set_named_property(env, result, "listening", v);
  if (domain == AF_UNIX) {
    struct sockaddr_un sa;
    socklen_t len = sizeof sa;
    memset(&sa, 0, sizeof sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0) return throw_errno(env, "getsockname", errno);
    size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    char path[sizeof sa.sun_path + 1];
    if (n > 0 && sa.sun_path[0] == '\0') {
      path[0] = '@';
      memcpy(path + 1, sa.sun_path + 1, n - 1);
      path[n] = '\0';
    } else {
      memcpy(path, sa.sun_path, n);
      path[n] = '\0';
      path[strnlen(path, n)] = '\0';
    }
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &v);
  } else {
    napi_get_null(env, &v);
  }
  napi_set_named_property(env, result, "path", v);
  return result;
}

/* ---- The locker's take and release in one call each (docs/decisions/0019-native-take.md). ---- */

#define TAKE_WRITE 1    /* a write (exclusive) lock on byte 0, else a read (shared) one */
#define TAKE_BLOCKDEV 2 /* a block device may be locked too (a disk locked in place) */
#define TAKE_IDENTITY 4 /* after the lock: the path must still name the inode locked (dev and ino) */
#define TAKE_LEASE 8    /* after the lock: read the lease into scratch, and say which blocks are blank */

enum { TAKEN = 0, BUSY = 1, REPLACED = 2, NOT_REGULAR = 3, NOENT = 4 };

/* out[]: the descriptor, the file's size (from fstat after the lock), the bytes read, the file
 * type (st_mode & S_IFMT), whether the lease was read, then one entry per block: 1 when not blank. */
#define TAKE_OUT_FD 0
#define TAKE_OUT_SIZE 1
#define TAKE_OUT_READ 2
#define TAKE_OUT_TYPE 3
#define TAKE_OUT_LEASE 4
/* With TAKE_IDENTITY or TAKE_LEASE: the locked file's st_ino, low and high 32 bits (the start's
 * gap check compares it with the inode journaled at the take: decision 0020). */
#define TAKE_OUT_INO_LO 5
#define TAKE_OUT_INO_HI 6
#define TAKE_OUT_BLOCKS 8

/* An error thrown by a locker call: the errno's name as `code`, the syscall, and the path when one
 * was opened, in the form Node's fs errors have ("ENOENT: no such file or directory, open '/x'"). */
static napi_value throw_fs(napi_env env, const char *syscall, int e, const char *path) {
  napi_value msg, code, err, num, sc;
  char buf[4400], name[32];
  /* The locker's calls name every errno as Node's fs does (glibc >= 2.32 names them all: ELOOP,
   * ENXIO, EROFS, ENOSPC, ...); the binding's own list, then the number, only where glibc has none. */
  const char *en = strerrorname_np(e);
  if (en == NULL) en = errno_name(e, name, sizeof name);
  if (path) snprintf(buf, sizeof buf, "%s: %s, %s '%s'", en, strerror(e), syscall, path);
  else snprintf(buf, sizeof buf, "%s: %s, %s", en, strerror(e), syscall);
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, en, NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &err);
  napi_create_int32(env, -e, &num);
  napi_set_named_property(env, err, "errno", num);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, err, "syscall", sc);
  if (path) {
    napi_value pv;
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &pv);
    napi_set_named_property(env, err, "path", pv);
  }
  napi_throw(env, err);
  return NULL;
}

static napi_value int_result(napi_env env, int v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

/* Blank: nothing but NULs, spaces and newlines (locker-files.ts's blank(): an unused block). */
static const unsigned char zero_block[4096];

static int blank_block(const unsigned char *b, size_t n) {
  /* Most blocks of a lease are all zero (unused slots): one memcmp, the byte loop only for the rest. */
  if (n <= sizeof zero_block && memcmp(b, zero_block, n) == 0) return 1;
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0 && b[i] != 0x20 && b[i] != 0x0a) return 0;
  return 1;
}

static void close_keep_errno(int fd) {
  int e = errno;
  close(fd);
  errno = e;
}

static napi_value take_lock_file(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 7) { napi_throw_type_error(env, "EINVAL", "expected (path, flags, opts, out, scratch, leaseSpan, recordSize)"); return NULL; }
  char path[PATH_MAX + 1];
  size_t plen = 0, full = 0;
  /* The whole length first: a copy into a buffer too small is cut at a character boundary, and the
   * cut path would name (and with O_CREAT create, and lock) another file (review23a). */
  if (napi_get_value_string_utf8(env, argv[0], NULL, 0, &full) != napi_ok || full == 0) { napi_throw_type_error(env, "EINVAL", "path must be a non-empty string"); return NULL; }
  if (full >= PATH_MAX) return throw_fs(env, "open", ENAMETOOLONG, NULL);
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || plen != full || strlen(path) != plen) { napi_throw_type_error(env, "EINVAL", "path holds a NUL"); return NULL; }
  int32_t flags = 0, opts = 0, span = 0, rsize = 0;
  if (napi_get_value_int32(env, argv[1], &flags) != napi_ok || napi_get_value_int32(env, argv[2], &opts) != napi_ok) { napi_throw_type_error(env, "EINVAL", "flags and opts must be numbers"); return NULL; }
  if (napi_get_value_int32(env, argv[5], &span) != napi_ok || napi_get_value_int32(env, argv[6], &rsize) != napi_ok || rsize <= 0 || span <= 0 || span % rsize != 0) { napi_throw_type_error(env, "EINVAL", "leaseSpan must be a multiple of recordSize"); return NULL; }
  napi_typedarray_type tt;
  size_t olen = 0;
  void *odata = NULL;
  bool ista = false;
  napi_is_typedarray(env, argv[3], &ista);
  if (!ista || napi_get_typedarray_info(env, argv[3], &tt, &olen, &odata, NULL, NULL) != napi_ok || tt != napi_int32_array) { napi_throw_type_error(env, "EINVAL", "out must be an Int32Array"); return NULL; }
  size_t blocks = (size_t)(span / rsize);
  if (olen < TAKE_OUT_BLOCKS + blocks) { napi_throw_range_error(env, "EINVAL", "out is too short for the lease's blocks"); return NULL; }
  int32_t *out = odata;
  void *scratch = NULL;
  size_t slen = 0;
  bool isbuf = false;
  napi_is_buffer(env, argv[4], &isbuf);
  if (!isbuf || napi_get_buffer_info(env, argv[4], &scratch, &slen) != napi_ok) { napi_throw_type_error(env, "EINVAL", "scratch must be a Buffer"); return NULL; }
  /* O_DIRECT (a cluster filesystem's lock file) needs an aligned buffer: the caller's is page-aligned (aligned-io.ts). */
  if ((opts & TAKE_LEASE) && (slen < (size_t)span || ((uintptr_t)scratch % 4096) != 0)) { napi_throw_range_error(env, "EINVAL", "scratch must be page-aligned and hold the lease"); return NULL; }
  memset(out, 0, sizeof(int32_t) * (TAKE_OUT_BLOCKS + blocks));
  out[TAKE_OUT_FD] = -1;

  int fd;
  do { fd = open(path, flags | O_CLOEXEC, 0600); } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    if (errno == ENOENT) return int_result(env, NOENT);
    return throw_fs(env, "open", errno, path);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) { close_keep_errno(fd); return throw_fs(env, "fstat", errno, NULL); }
  out[TAKE_OUT_TYPE] = (int32_t)(st.st_mode & S_IFMT);
  if (!S_ISREG(st.st_mode) && !((opts & TAKE_BLOCKDEV) && S_ISBLK(st.st_mode))) {
    close(fd);
    return int_result(env, NOT_REGULAR);
  }
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = (opts & TAKE_WRITE) ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  int rc;
  do { rc = fcntl(fd, F_OFD_SETLK, &fl); } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    if (errno == EAGAIN || errno == EACCES) {
      out[TAKE_OUT_FD] = fd;
      return int_result(env, BUSY);
    }
    close_keep_errno(fd);
    return throw_fs(env, "fcntl(F_OFD_SETLK)", errno, NULL);
  }
  out[TAKE_OUT_FD] = fd;
  if (opts & TAKE_IDENTITY) {
    /* virtlockd unlinks a lease file at its release: between our open and our lock the path may have
     * come to name another file (or none). Any failure to tell counts as replaced: the JS tries again. */
    struct stat byfd, bypath;
    if (fstat(fd, &byfd) != 0 || stat(path, &bypath) != 0 || byfd.st_dev != bypath.st_dev || byfd.st_ino != bypath.st_ino) {
      close(fd);
      out[TAKE_OUT_FD] = -1;
      return int_result(env, REPLACED);
    }
    st = byfd;
  }
  if (opts & TAKE_LEASE) {
    if (!(opts & TAKE_IDENTITY) && fstat(fd, &st) != 0) { close_keep_errno(fd); out[TAKE_OUT_FD] = -1; return throw_fs(env, "fstat", errno, NULL); }
    /* The size after the lock: a taker before us may have grown the file. */
    out[TAKE_OUT_SIZE] = st.st_size > (off_t)INT32_MAX ? INT32_MAX : (int32_t)st.st_size;
    if (st.st_size > 0 && st.st_size <= (off_t)span && st.st_size % rsize == 0) {
      size_t want = (size_t)st.st_size;
      ssize_t n;
      do { n = pread(fd, scratch, want, 0); } while (n < 0 && errno == EINTR);
      if (n < 0) { close_keep_errno(fd); out[TAKE_OUT_FD] = -1; return throw_fs(env, "read", errno, NULL); }
      out[TAKE_OUT_READ] = (int32_t)n;
      for (size_t off = 0, i = 0; off + (size_t)rsize <= (size_t)n; off += (size_t)rsize, i++)
        out[TAKE_OUT_BLOCKS + i] = blank_block((const unsigned char *)scratch + off, (size_t)rsize) ? 0 : 1;
    }
    out[TAKE_OUT_LEASE] = 1;
  }
  if (opts & (TAKE_IDENTITY | TAKE_LEASE)) {
    uint64_t ino = (uint64_t)st.st_ino;
    out[TAKE_OUT_INO_LO] = (int32_t)(uint32_t)(ino & 0xffffffffu);
    out[TAKE_OUT_INO_HI] = (int32_t)(uint32_t)(ino >> 32);
  }
  return int_result(env, TAKEN);
}

/* One record at a time, through a page-aligned buffer (O_DIRECT). */
static _Alignas(4096) unsigned char record_buf[4096];

static int record_arg(napi_env env, napi_value v, void **data, size_t *len) {
  bool isbuf = false;
  napi_is_buffer(env, v, &isbuf);
  if (!isbuf || napi_get_buffer_info(env, v, data, len) != napi_ok) { napi_throw_type_error(env, "EINVAL", "data must be a Buffer"); return -1; }
  if (*len > sizeof record_buf) { napi_throw_range_error(env, "EINVAL", "a record is at most 4096 bytes"); return -1; }
  return 0;
}

static napi_value write_record(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int fd;
  int64_t offset = 0, grow = 0;
  bool sync = false;
  void *data;
  size_t len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) { napi_throw_type_error(env, "EINVAL", "expected (fd, data, offset, growTo, sync)"); return NULL; }
  if (arg_fd(env, argv[0], &fd) != 0 || record_arg(env, argv[1], &data, &len) != 0) return NULL;
  if (napi_get_value_int64(env, argv[2], &offset) != napi_ok || napi_get_value_int64(env, argv[3], &grow) != napi_ok || offset < 0 || grow < 0) { napi_throw_type_error(env, "EINVAL", "offset and growTo must be non-negative numbers"); return NULL; }
  napi_get_value_bool(env, argv[4], &sync);
  memcpy(record_buf, data, len);
  ssize_t n;
  do { n = pwrite(fd, record_buf, len, (off_t)offset); } while (n < 0 && errno == EINTR);
  if (n < 0) return throw_fs(env, "write", errno, NULL);
  if (grow > 0) {
    int rc;
    do { rc = ftruncate(fd, (off_t)grow); } while (rc != 0 && errno == EINTR);
    if (rc != 0) return throw_fs(env, "ftruncate", errno, NULL);
  }
  if (sync && fdatasync(fd) != 0) return throw_fs(env, "fdatasync", errno, NULL);
  return int_result(env, (int)n);
}

static napi_value release_lock_file(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int fd;
  int64_t offset = 0;
  bool sync = false;
  void *data = NULL;
  size_t len = 0;
  int failed = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) { napi_throw_type_error(env, "EINVAL", "expected (fd, data, offset, sync, close)"); return NULL; }
  if (arg_fd(env, argv[0], &fd) != 0) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_null && t != napi_undefined && record_arg(env, argv[1], &data, &len) != 0) return NULL;
  if (napi_get_value_int64(env, argv[2], &offset) != napi_ok || offset < 0) { napi_throw_type_error(env, "EINVAL", "offset must be a non-negative number"); return NULL; }
  napi_get_value_bool(env, argv[3], &sync);
  bool doclose = false;
  napi_get_value_bool(env, argv[4], &doclose);
  if (data != NULL) {
    /* Written under our lock on byte 0, so every taker after us reads it before it writes. */
    memcpy(record_buf, data, len);
    ssize_t n;
    do { n = pwrite(fd, record_buf, len, (off_t)offset); } while (n < 0 && errno == EINTR);
    if (n < 0) failed |= 1;
    else if (sync && fdatasync(fd) != 0) failed |= 2;
  }
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_UNLCK;
  fl.l_whence = SEEK_SET;
  int rc;
  do { rc = fcntl(fd, F_OFD_SETLK, &fl); } while (rc != 0 && errno == EINTR);
  if (rc != 0) failed |= 4;
  /* close(2) is not retried on EINTR: the descriptor is gone either way on Linux. */
  if (doclose && close(fd) != 0) failed |= 8;
  return int_result(env, failed);
}

/* loopStatus(path): the backing file's identity of a loop device, so a loop device and the image it
 * reads are one disk (resolve.ts, review27 F1). LOOP_GET_STATUS64 works on a partition of a loop
 * device too (the ioctl goes to the whole disk). */
static napi_value loop_status(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, v;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[PATH_MAX + 1];
  size_t plen = 0, full = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], NULL, 0, &full) != napi_ok || full == 0) { napi_throw_type_error(env, "EINVAL", "path must be a non-empty string"); return NULL; }
  if (full >= PATH_MAX) return throw_fs(env, "open", ENAMETOOLONG, NULL);
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || plen != full || strlen(path) != plen) { napi_throw_type_error(env, "EINVAL", "path holds a NUL"); return NULL; }
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return throw_fs(env, "open", errno, path);
  struct stat st;
  if (fstat(fd, &st) != 0) { int e = errno; close(fd); return throw_fs(env, "fstat", e, path); }
  if (!S_ISBLK(st.st_mode)) { close(fd); napi_get_null(env, &result); return result; }
  struct loop_info64 li;
  memset(&li, 0, sizeof li);
  int rc = ioctl(fd, LOOP_GET_STATUS64, &li);
  int e = errno;
  close(fd);
  if (rc != 0) {
    /* Not a loop device (ENOTTY, EINVAL) or one bound to no file (ENXIO). */
    if (e == ENOTTY || e == EINVAL || e == ENXIO) { napi_get_null(env, &result); return result; }
    return throw_fs(env, "ioctl(LOOP_GET_STATUS64)", e, path);
  }
  /* lo_device is the kernel's huge_encode_dev (new_encode_dev) of the backing file's st_dev. */
  unsigned long long d = (unsigned long long)li.lo_device;
  unsigned major = (unsigned)((d & 0xfff00ULL) >> 8);
  unsigned minor = (unsigned)((d & 0xffULL) | ((d >> 12) & 0xfff00ULL));
  char buf[32];
  napi_create_object(env, &result);
  napi_create_uint32(env, major, &v);
  napi_set_named_property(env, result, "major", v);
  napi_create_uint32(env, minor, &v);
  napi_set_named_property(env, result, "minor", v);
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)li.lo_inode);
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, result, "ino", v);
  return result;
}

/* The journal's staging-file check before each append (src/journal/stage-replace.ts): fstat(fd) and
 * stat(path) in one call that makes no JS object (two fs.Stats were ~1.8 KB of garbage per append).
 * Fills out (a Float64Array of 3): [0] the fd's st_nlink, [1] its st_size, [2] 1 when path is the
 * same file (dev and ino), 0 when another, -1 when path does not exist (ENOENT). Other failures throw
 * as Node's fs does (code, errno, syscall 'fstat' / 'stat', path). */
static napi_value stage_check(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (argc < 3) { napi_throw_type_error(env, "EINVAL", "expected (fd, path, out)"); return NULL; }
  if (arg_fd(env, argv[0], &fd) != 0) return NULL;
  char path[PATH_MAX + 1];
  size_t plen = 0, full = 0;
  if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &full) != napi_ok || full == 0) { napi_throw_type_error(env, "EINVAL", "path must be a non-empty string"); return NULL; }
  if (full >= PATH_MAX) return throw_fs(env, "stat", ENAMETOOLONG, NULL);
  if (napi_get_value_string_utf8(env, argv[1], path, sizeof path, &plen) != napi_ok || plen != full || strlen(path) != plen) { napi_throw_type_error(env, "EINVAL", "path holds a NUL"); return NULL; }
  napi_typedarray_type tt;
  size_t olen = 0;
  void *odata = NULL;
  bool ista = false;
  napi_is_typedarray(env, argv[2], &ista);
  if (!ista || napi_get_typedarray_info(env, argv[2], &tt, &olen, &odata, NULL, NULL) != napi_ok || tt != napi_float64_array || olen < 3) { napi_throw_type_error(env, "EINVAL", "out must be a Float64Array of 3"); return NULL; }
  double *out = odata;
  struct stat own, at;
  if (fstat(fd, &own) != 0) return throw_fs(env, "fstat", errno, NULL);
  out[0] = (double)own.st_nlink;
  out[1] = (double)own.st_size;
  if (stat(path, &at) != 0) {
    if (errno != ENOENT) return throw_fs(env, "stat", errno, path);
    out[2] = -1;
  } else {
    out[2] = (own.st_dev == at.st_dev && own.st_ino == at.st_ino) ? 1 : 0;
  }
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"ofdSetLk", NULL, ofd_setlk, NULL, NULL, NULL, napi_default, NULL},
    {"ofdGetLk", NULL, ofd_getlk, NULL, NULL, NULL, napi_default, NULL},
    {"peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_default, NULL},
    {"raiseNoFile", NULL, raise_nofile, NULL, NULL, NULL, napi_default, NULL},
    {"dgramSocket", NULL, dgram_socket, NULL, NULL, NULL, napi_default, NULL},
    {"unixConnect", NULL, unix_connect, NULL, NULL, NULL, napi_default, NULL},
    {"sendFds", NULL, send_fds, NULL, NULL, NULL, napi_default, NULL},
    {"recvFds", NULL, recv_fds, NULL, NULL, NULL, napi_default, NULL},
    {"getFd", NULL, get_fd, NULL, NULL, NULL, napi_default, NULL},
    {"setFd", NULL, set_fd, NULL, NULL, NULL, napi_default, NULL},
    {"dupFd", NULL, dup_fd, NULL, NULL, NULL, napi_default, NULL},
    {"sealedMemfd", NULL, sealed_memfd, NULL, NULL, NULL, napi_default, NULL},
    {"fstatId", NULL, fstat_id, NULL, NULL, NULL, napi_default, NULL},
    {"sockInfo", NULL, sock_info, NULL, NULL, NULL, napi_default, NULL},
    {"takeLockFile", NULL, take_lock_file, NULL, NULL, NULL, napi_default, NULL},
    {"writeRecord", NULL, write_record, NULL, NULL, NULL, napi_default, NULL},
    {"releaseLockFile", NULL, release_lock_file, NULL, NULL, NULL, napi_default, NULL},
    {"scanFacts", NULL, segscan_scan_facts, NULL, NULL, NULL, napi_default, NULL},
    {"stageCheck", NULL, stage_check, NULL, NULL, NULL, napi_default, NULL},
    {"loopStatus", NULL, loop_status, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
