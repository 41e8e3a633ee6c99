/*
 * collector/json.h - a growable byte buffer and a JSON writer that produces
 * exactly what Python's json.dumps() produces, byte for byte.
 *
 * Why not jansson's json_dumps(): with JSON_ENSURE_ASCII it writes upper-case
 * \uXXXX escapes, leaves DEL (0x7f) unescaped and prints reals with "%.17g"
 * (0.1 -> 0.10000000000000001).  OSProfiler's files and Redis values are
 * written by Python (json.dumps / oslo jsonutils.dumps), so we serialise the
 * jansson tree ourselves.  jansson objects keep insertion order (2.8+), which
 * is what gives us Python's dict order.
 *
 * Nothing here allocates except through struct coll_buf; nothing is
 * async-signal-safe.
 */
#ifndef LDPROF_COLLECTOR_JSON_H
#define LDPROF_COLLECTOR_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <jansson.h>

/* A growable byte buffer.  Always NUL-terminated after a successful append
 * (the NUL is not counted in len).  After an allocation failure `oom` is set,
 * further appends are no-ops returning -1, so callers may check once at the
 * end.  Owner frees with coll_buf_free(). */
struct coll_buf {
    char *p;
    size_t len;
    size_t cap;
    int oom;
};

void coll_buf_init(struct coll_buf *b);
void coll_buf_free(struct coll_buf *b);
void coll_buf_reset(struct coll_buf *b); /* len = 0, keeps the memory */
int coll_buf_add(struct coll_buf *b, const void *p, size_t n);
int coll_buf_adds(struct coll_buf *b, const char *s);
int coll_buf_addc(struct coll_buf *b, char c);
int coll_buf_printf(struct coll_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Make room for `n` more bytes (and the NUL): 0, or -1 (oom set, or was). */
int coll_buf_reserve(struct coll_buf *b, size_t n);

/* coll_buf_add() for the hot writers: the common case inline. */
static inline int coll_buf_put(struct coll_buf *b, const void *p, size_t n)
{
    if (__builtin_expect(b->cap - b->len <= n || b->oom, 0) && coll_buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static inline int coll_buf_putc(struct coll_buf *b, char c)
{
    if (__builtin_expect(b->cap - b->len <= 1 || b->oom, 0) && coll_buf_reserve(b, 1) < 0)
        return -1;
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
    return 0;
}

/* A newline and indent * level blanks (json.dumps' indented layout). */
static inline int coll_buf_newline(struct coll_buf *b, int indent, int level)
{
    size_t n = (size_t)indent * (size_t)level;
    if ((b->cap - b->len <= n + 1 || b->oom) && coll_buf_reserve(b, n + 1) < 0)
        return -1;
    b->p[b->len] = '\n';
    memset(b->p + b->len + 1, ' ', n);
    b->len += n + 1;
    b->p[b->len] = '\0';
    return 0;
}

/* A decimal integer, as "%lld" prints it. */
static inline int coll_buf_int(struct coll_buf *b, long long v)
{
    char t[24], *e = t + sizeof t, *q = e;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--q = '-';
    return coll_buf_put(b, q, (size_t)(e - q));
}

/* Python json.dumps() layouts:
 *   COLL_JSON_COMPACT: json.dumps(v)  -> separators ", " and ": ", one line
 *                      (what oslo jsonutils.dumps writes into Redis)
 *   n >= 0:            json.dumps(v, indent=n, separators=(",", ": "))
 *                      (what `osprofiler trace show --json` prints)
 * Both are ensure_ascii=True. */
#define COLL_JSON_COMPACT (-1)

/* Append the serialisation of `v` to `b`.  Returns 0, or -1 on allocation
 * failure, nesting deeper than COLL_JSON_MAX_DEPTH, or a value jansson should
 * never hold (NULL).  No trailing newline is added. */
#define COLL_JSON_MAX_DEPTH 4096
int coll_json_dump(struct coll_buf *b, const json_t *v, int indent);

/* The same for a value written as a member `level` levels deep (the
 * indentation of its lines; the depth limit counts from 0 as if it were
 * nested that deep).  coll_json_dump() is level 0. */
int coll_json_dump_at(struct coll_buf *b, const json_t *v, int indent, int level);

/* Append `s` (len bytes of UTF-8) as a quoted JSON string with Python's
 * ensure_ascii escaping: \" \\ \n \r \t \b \f, other bytes < 0x20 and 0x7f as
 * \u00XX, everything above ASCII as lower-case \uXXXX (surrogate pairs above
 * the BMP).  Invalid UTF-8 sequences are written as \ufffd, one per maximal
 * invalid subpart (Python's bytes.decode("utf-8", "replace")).  Returns 0 or
 * -1 on allocation failure. */
int coll_json_string(struct coll_buf *b, const char *s, size_t len);

/* Python repr() of a float: shortest round-trip digits; exponent form when
 * the decimal exponent is < -4 or >= 16 ("1e-05", "1e+16"), otherwise fixed
 * with at least one fractional digit ("1.0", "0.1"); NaN, Infinity,
 * -Infinity as json.dumps writes them.  `out` must hold 32 bytes. */
void coll_json_real(char out[32], double d);

/* Copy `len` bytes of possibly-invalid UTF-8 into `b`, replacing every
 * invalid sequence by U+FFFD (EF BF BD), the way Python decodes with
 * errors="replace".  NUL bytes are kept (they are valid UTF-8).  Returns 0 or
 * -1 on allocation failure. */
int coll_utf8_sanitize(struct coll_buf *b, const char *s, size_t len);

/* Length of the valid UTF-8 sequence starting at s[0] (1..4), or 0 when the
 * bytes at s do not start a valid sequence.  `avail` bytes are readable. */
size_t coll_utf8_seq(const unsigned char *s, size_t avail, uint32_t *cp);

#endif
