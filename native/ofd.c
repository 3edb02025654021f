/*
 * vmlockd native binding: the three system calls Node cannot make.
 *
 *   ofdSetLk(fd, type, start, len)  -> true when granted, false when held elsewhere
 *   ofdGetLk(fd, type, start, len)  -> null when free, else { type, start, len, pid }
 *   peerCred(fd)                    -> { pid, uid, gid } of a connected AF_UNIX socket
 *   raiseNoFile()                   -> { soft, hard }: RLIMIT_NOFILE soft limit raised to the hard one
 *
 * type is "read", "write" or "unlock". Every call is non-blocking: a lock that is held
 * is an answer (false), never a wait, so no libuv thread is ever parked on a lock.
 * Other failures throw an Error carrying `code` (errno name) and `errno`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <node_api.h>

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#endif

static const char *errno_name(int e) {
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
    default: return "EUNKNOWN";
  }
}

static napi_value throw_errno(napi_env env, const char *syscall, int e) {
  napi_value msg, code, err, num;
  char buf[256];
  snprintf(buf, sizeof buf, "%s: %s (%s)", syscall, strerror(e), errno_name(e));
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, errno_name(e), NAPI_AUTO_LENGTH, &code);
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"ofdSetLk", NULL, ofd_setlk, NULL, NULL, NULL, napi_default, NULL},
    {"ofdGetLk", NULL, ofd_getlk, NULL, NULL, NULL, napi_default, NULL},
    {"peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_default, NULL},
    {"raiseNoFile", NULL, raise_nofile, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
