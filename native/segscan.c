// The published segments' fast path (issue 15, the read cache's catch-up; decision 0014): fact
// lines exactly as the one encoder writes them (src/journal/segment.ts encodeFact) are split, their
// fields located and their chain hash recomputed and compared here, in C, instead of JSON.parse and
// chainHash in JS per line. Only a strict subset is taken: the encoder's key order, no whitespace,
// ASCII-only field values (the payload may hold the escapes \" \\ \/ \b \f \n \r \t, nothing else),
// a seq that is exactly the one expected, and a hash that matches. Any other line (a header, a seal,
// a carried line, a non-ASCII or \u-escaped value, a wrong hash, a gap) ends the scan there and the
// JS decoder reads that line as before, so every problem is still found and named by the JS code.
// For these lines the raw JSON text of each field is what JSON.stringify writes for its value, so the
// canonical row text of the chain hash (schema.ts chainHash) is built from the bytes as they are.
//
// SHA-256 is OpenSSL's, the one the Node binary carries (crypto.hash uses it), looked up with dlsym
// at the first call: a Node without it makes the fast path unavailable (-1), never a crash.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>
#include <node_api.h>

#include "segscan.h"

/* OpenSSL's SHA256_CTX (public in <openssl/sha.h>: 8 + 2 + 16 + 2 words), with room to spare. */
typedef union {
  unsigned int words[28];
  unsigned char spare[256];
  double align;
} sha_ctx;

typedef int (*sha_init_fn)(sha_ctx *);
typedef int (*sha_update_fn)(sha_ctx *, const void *, size_t);
typedef int (*sha_final_fn)(unsigned char *, sha_ctx *);

static sha_init_fn sha_init;
static sha_update_fn sha_update;
static sha_final_fn sha_final;
static int sha_state; /* 0 not looked up, 1 found, -1 missing */

static int sha_lookup(void) {
  if (sha_state == 0) {
    sha_init = (sha_init_fn)dlsym(RTLD_DEFAULT, "SHA256_Init");
    sha_update = (sha_update_fn)dlsym(RTLD_DEFAULT, "SHA256_Update");
    sha_final = (sha_final_fn)dlsym(RTLD_DEFAULT, "SHA256_Final");
    /* (Written once with the same values by any thread: a benign race.) */
    sha_state = sha_init != NULL && sha_update != NULL && sha_final != NULL ? 1 : -1;
  }
  return sha_state;
}

enum { OUT_STRIDE = SEGSCAN_STRIDE };

/* Matches the literal `lit` at *p; advances. */
static int lit(const unsigned char **p, const unsigned char *e, const char *s, size_t n) {
  if ((size_t)(e - *p) < n || memcmp(*p, s, n) != 0) return 0;
  *p += n;
  return 1;
}

/*
 * A JSON string of printable ASCII without escapes at *p: its content range (without the quotes).
 * Its raw text is then exactly JSON.stringify's of the value.
 */
static int plain_str(const unsigned char **p, const unsigned char *e, double *s, double *t, const unsigned char *base) {
  const unsigned char *q = *p;
  if (q >= e || *q != '"') return 0;
  q++;
  const unsigned char *c = q;
  while (c < e && *c != '"') {
    if (*c < 0x20 || *c > 0x7f || *c == '\\') return 0;
    c++;
  }
  if (c >= e) return 0;
  *s = (double)(q - base);
  *t = (double)(c - base);
  *p = c + 1;
  return 1;
}

/* `null` or a plain string; s = t = -1 for null. */
static int nullable(const unsigned char **p, const unsigned char *e, double *s, double *t, const unsigned char *base) {
  if (lit(p, e, "null", 4)) {
    *s = -1;
    *t = -1;
    return 1;
  }
  return plain_str(p, e, s, t, base);
}

/* Appends the raw JSON text of a field (null, or the quoted string) to the canonical text. */
static unsigned char *put_raw(unsigned char *w, const unsigned char *base, double s, double t) {
  if (s < 0) {
    memcpy(w, "null", 4);
    return w + 4;
  }
  size_t a = (size_t)s - 1, b = (size_t)t + 1;
  memcpy(w, base + a, b - a);
  return w + (b - a);
}

static const char HEX[] = "0123456789abcdef";

/*
 * One fact line [p, nl): fields into o, the canonical text after prev in work, the hash checked.
 * The payload, unescaped, goes to pay at *pay_at (room: pay_end). 1 when taken, 0 when not.
 */
static int scan_line(const unsigned char *base, const unsigned char *p, const unsigned char *nl, double expect, unsigned char *prev, double *o,
                     unsigned char *pay, size_t *pay_at, size_t pay_len, unsigned char *work, size_t work_len) {
  const unsigned char *e = nl;
  if ((size_t)(nl - p) + 32 > work_len) return 0;
  if (!lit(&p, e, "{\"t\":\"fact\",\"seq\":", 18)) return 0;
  /* seq: 1-16 digits, no leading zero, a safe integer equal to the one expected. */
  const unsigned char *d = p;
  double seq = 0;
  if (p >= e || *p < '1' || *p > '9') return 0;
  while (p < e && *p >= '0' && *p <= '9') {
    seq = seq * 10 + (*p - '0');
    p++;
  }
  if (p - d > 16 || seq > 9007199254740991.0 || seq != expect) return 0;
  o[0] = seq;
  if (!lit(&p, e, ",\"at\":", 6) || !plain_str(&p, e, &o[2], &o[3], base)) return 0;
  if (!lit(&p, e, ",\"host\":", 8) || !plain_str(&p, e, &o[4], &o[5], base)) return 0;
  if (!lit(&p, e, ",\"kind\":", 8) || !plain_str(&p, e, &o[6], &o[7], base)) return 0;
  if (!lit(&p, e, ",\"resource\":", 12) || !nullable(&p, e, &o[8], &o[9], base)) return 0;
  if (!lit(&p, e, ",\"disk\":", 8) || !nullable(&p, e, &o[10], &o[11], base)) return 0;
  if (!lit(&p, e, ",\"owner\":", 9) || !nullable(&p, e, &o[12], &o[13], base)) return 0;
  if (!lit(&p, e, ",\"owner_name\":", 14) || !nullable(&p, e, &o[14], &o[15], base)) return 0;
  if (!lit(&p, e, ",\"payload\":\"", 12)) return 0;
  /* The payload, unescaped into pay (ASCII in, ASCII out). */
  size_t w0 = *pay_at, w = w0;
  for (;;) {
    if (p >= e) return 0;
    unsigned char c = *p;
    if (c == '"') break;
    if (c < 0x20 || c > 0x7f) return 0;
    if (w >= pay_len) return 0;
    if (c == '\\') {
      if (p + 1 >= e) return 0;
      switch (p[1]) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        default: return 0; /* \u: the JS decoder */
      }
      p += 2;
    } else {
      p++;
    }
    pay[w++] = c;
  }
  p++;
  if (!lit(&p, e, ",\"hash\":\"", 9)) return 0;
  if (e - p != 66 || p[64] != '"' || p[65] != '}') return 0;
  const unsigned char *hx = p;
  /* The canonical row text: JSON of the eight columns, a newline, the payload. */
  unsigned char *t = work;
  memcpy(t, prev, 32);
  t += 32;
  *t++ = '[';
  {
    size_t n = 0;
    while (d[n] >= '0' && d[n] <= '9') n++;
    memcpy(t, d, n);
    t += n;
  }
  *t++ = ',';
  t = put_raw(t, base, o[2], o[3]);
  *t++ = ',';
  t = put_raw(t, base, o[4], o[5]);
  *t++ = ',';
  t = put_raw(t, base, o[6], o[7]);
  *t++ = ',';
  t = put_raw(t, base, o[8], o[9]);
  *t++ = ',';
  t = put_raw(t, base, o[10], o[11]);
  *t++ = ',';
  t = put_raw(t, base, o[12], o[13]);
  *t++ = ',';
  t = put_raw(t, base, o[14], o[15]);
  *t++ = ']';
  *t++ = '\n';
  if ((size_t)(t - work) + (w - w0) > work_len) return 0;
  memcpy(t, pay + w0, w - w0);
  t += w - w0;
  sha_ctx ctx;
  unsigned char md[32];
  if (!sha_init(&ctx) || !sha_update(&ctx, work, (size_t)(t - work)) || !sha_final(md, &ctx)) return 0;
  for (int i = 0; i < 32; i++) {
    if (hx[2 * i] != HEX[md[i] >> 4] || hx[2 * i + 1] != HEX[md[i] & 15]) return 0;
  }
  memcpy(prev, md, 32);
  o[1] = (double)(nl - base);
  o[16] = (double)w0;
  o[17] = (double)w;
  o[18] = (double)(hx - base);
  *pay_at = w;
  return 1;
}

/*
 * scanFacts(buf, start, end, expectSeq, prev, out, pay, work): the fact lines from `start` (a line's
 * first byte) on, while each is a whole line before `end` that the fast path takes. Returns how many
 * (each OUT_STRIDE numbers in out: seq, newline offset, content ranges of at, host, kind, resource,
 * disk, owner, owner_name in buf (-1 for null), the payload's range in pay, the hash's offset in buf);
 * prev (32 bytes) becomes the last one's hash. -1: no SHA-256 in this process.
 */
napi_value segscan_scan_facts(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_value result;
  if (argc < 8) {
    napi_throw_type_error(env, NULL, "scanFacts: 8 arguments");
    return NULL;
  }
  if (sha_lookup() < 0) {
    napi_create_int32(env, -1, &result);
    return result;
  }
  unsigned char *buf, *prev, *pay, *work;
  size_t buf_len, prev_len, pay_len, work_len, out_len;
  double start, end, expect;
  void *out_data;
  napi_typedarray_type tt;
  napi_value ab;
  size_t off;
  if (napi_get_buffer_info(env, argv[0], (void **)&buf, &buf_len) != napi_ok || napi_get_value_double(env, argv[1], &start) != napi_ok ||
      napi_get_value_double(env, argv[2], &end) != napi_ok || napi_get_value_double(env, argv[3], &expect) != napi_ok ||
      napi_get_buffer_info(env, argv[4], (void **)&prev, &prev_len) != napi_ok ||
      napi_get_typedarray_info(env, argv[5], &tt, &out_len, &out_data, &ab, &off) != napi_ok || tt != napi_float64_array ||
      napi_get_buffer_info(env, argv[6], (void **)&pay, &pay_len) != napi_ok || napi_get_buffer_info(env, argv[7], (void **)&work, &work_len) != napi_ok ||
      // Written as negations so a NaN fails them too; whole numbers only (they become a pointer offset).
      prev_len != 32 || !(start >= 0) || !(end <= (double)buf_len) || !(start <= end) || start != (double)(size_t)start ||
      end != (double)(size_t)end) {
    napi_throw_type_error(env, NULL, "scanFacts: bad arguments");
    return NULL;
  }
  double *out = (double *)out_data;
  size_t max = out_len / OUT_STRIDE, n = 0, pay_at = 0;
  const unsigned char *p = buf + (size_t)start, *e = buf + (size_t)end;
  while (n < max && p < e) {
    const unsigned char *nl = memchr(p, '\n', (size_t)(e - p));
    if (nl == NULL) break;
    if (!scan_line(buf, p, nl, expect, prev, out + n * OUT_STRIDE, pay, &pay_at, pay_len, work, work_len)) break;
    n++;
    expect += 1;
    p = nl + 1;
  }
  napi_create_int32(env, (int32_t)n, &result);
  return result;
}
