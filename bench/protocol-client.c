/*
 * A second client for bench/protocol.ts, in C: the same ACQUIRE + RELEASE pairs over the virtlockd
 * wire protocol, one thread and one blocking connection per client, one outstanding call per
 * connection (as libvirt's lockd plugin). It shows what the daemons do when the client costs
 * (nearly) nothing: the Node client's own event loop is a large part of the no-op floor.
 *
 *   protocol-client SOCKET FRAMES CLIENTS PAIRS WARMUP
 *
 * FRAMES holds one CREATE_LOCKSPACE frame (sent first, on a connection of its own), then per client three complete frames as bench/protocol.ts encoded them (REGISTER,
 * ACQUIRE, RELEASE; each starts with its big-endian total length); the serial word (byte 20) is
 * rewritten per call. Prints one JSON line: {"clients","pairs","ms","p50","p99"} (milliseconds).
 * Built by bench/protocol.ts with `cc -O2 -pthread` at bench time.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct frame { unsigned char *b; uint32_t len; };

static uint32_t be32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static int read_frame(FILE *in, struct frame *f) {
  unsigned char w[4];
  if (fread(w, 1, 4, in) != 4) return -1;
  f->len = be32(w);
  if (f->len < 28) return -1;
  f->b = malloc(f->len);
  memcpy(f->b, w, 4);
  return fread(f->b + 4, 1, f->len - 4, in) == f->len - 4 ? 0 : -1;
}

struct client {
  int idx;
  struct frame f[3];
  double *lat;
  int fd;
  uint32_t serial;
};

static const char *sock_path;
static long pairs, warmup;
static pthread_barrier_t start_barrier, done_barrier;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what) {
  fprintf(stderr, "protocol-client: %s: %s\n", what, strerror(errno));
  exit(2);
}


static void put32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static void read_full(int fd, unsigned char *b, size_t n) {
  size_t off = 0;
  while (off < n) {
    ssize_t r = read(fd, b + off, n - off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) { if (r == 0) errno = ECONNRESET; die("read"); }
    off += (size_t)r;
  }
}

/* One call: send the frame with the next serial, wait for its reply, fail on an ERROR reply. */
static void call(struct client *c, int which) {
  struct frame *f = &c->f[which];
  put32(f->b + 20, c->serial++);
  size_t off = 0;
  while (off < f->len) {
    ssize_t w = write(c->fd, f->b + off, f->len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("write");
    off += (size_t)w;
  }
  unsigned char head[28];
  read_full(c->fd, head, sizeof head);
  uint32_t len = be32(head);
  if (len < 28 || len > (1u << 20)) { fprintf(stderr, "protocol-client: bad reply length %u\n", len); exit(2); }
  if (len > 28) {
    unsigned char *rest = malloc(len - 28);
    read_full(c->fd, rest, len - 28);
    free(rest);
  }
  if (be32(head + 24) != 0) { fprintf(stderr, "protocol-client: client %d got an ERROR reply to call %d\n", c->idx, which); exit(3); }
}

static int connect_to(void) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  strncpy(a.sun_path, sock_path, sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  return fd;
}

static void *run(void *arg) {
  struct client *c = arg;
  c->fd = connect_to();
  call(c, 0);
  for (long k = 0; k < warmup; k++) { call(c, 1); call(c, 2); }
  pthread_barrier_wait(&start_barrier);
  for (long k = 0; k < pairs; k++) {
    double t0 = now_ms();
    call(c, 1);
    c->lat[k] = now_ms() - t0;
    call(c, 2);
  }
  pthread_barrier_wait(&done_barrier);
  close(c->fd);
  return NULL;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 6) { fprintf(stderr, "usage: protocol-client SOCKET FRAMES CLIENTS PAIRS WARMUP\n"); return 2; }
  sock_path = argv[1];
  int n = atoi(argv[3]);
  pairs = atol(argv[4]);
  warmup = atol(argv[5]);
  FILE *in = fopen(argv[2], "rb");
  if (!in) die("open frames");
  struct client *cs = calloc((size_t)n, sizeof *cs);
  double *lat = calloc((size_t)n * (size_t)pairs, sizeof *lat);
  struct client setup = { .idx = -1 };
  if (read_frame(in, &setup.f[0]) < 0) { fprintf(stderr, "protocol-client: bad frames file\n"); return 2; }
  for (int i = 0; i < n; i++) {
    cs[i].idx = i;
    cs[i].lat = lat + (size_t)i * (size_t)pairs;
    for (int j = 0; j < 3; j++)
      if (read_frame(in, &cs[i].f[j]) < 0) { fprintf(stderr, "protocol-client: bad frames file\n"); return 2; }
  }
  fclose(in);
  setup.fd = connect_to();
  call(&setup, 0);
  close(setup.fd);
  pthread_barrier_init(&start_barrier, NULL, (unsigned)n + 1);
  pthread_barrier_init(&done_barrier, NULL, (unsigned)n + 1);
  pthread_t *t = calloc((size_t)n, sizeof *t);
  for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, run, &cs[i]);
  pthread_barrier_wait(&start_barrier);
  double t0 = now_ms();
  pthread_barrier_wait(&done_barrier);
  double ms = now_ms() - t0;
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  size_t total = (size_t)n * (size_t)pairs;
  qsort(lat, total, sizeof *lat, cmp);
  size_t i50 = total / 2, i99 = (size_t)(0.99 * (double)total);
  if (i99 >= total) i99 = total - 1;
  printf("{\"clients\":%d,\"pairs\":%zu,\"ms\":%.3f,\"p50\":%.4f,\"p99\":%.4f}\n", n, total, ms, lat[i50], lat[i99]);
  return 0;
}
