/*
 * collector/json.c - Python-compatible JSON output over jansson values.
 * See json.h for the contract.
 */
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ buffer */

void coll_buf_init(struct coll_buf *b)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->oom = 0;
}

void coll_buf_free(struct coll_buf *b)
{
    free(b->p);
    coll_buf_init(b);
}

void coll_buf_reset(struct coll_buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

static int buf_grow(struct coll_buf *b, size_t need)
{
    if (b->oom)
        return -1;
    if (need < b->len || need == SIZE_MAX) {
        b->oom = 1;
        return -1;
    }
    if (need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return -1;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

int coll_buf_reserve(struct coll_buf *b, size_t n)
{
    if (b->oom)
        return -1;
    return buf_grow(b, b->len + n);
}

int coll_buf_add(struct coll_buf *b, const void *p, size_t n)
{
    if (buf_grow(b, b->len + n) < 0)
        return -1;
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int coll_buf_adds(struct coll_buf *b, const char *s)
{
    return coll_buf_add(b, s, strlen(s));
}

int coll_buf_addc(struct coll_buf *b, char c)
{
    if (b->len + 2 > b->cap && buf_grow(b, b->len + 1) < 0)
        return -1;
    if (b->oom)
        return -1;
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
    return 0;
}

int coll_buf_printf(struct coll_buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return -1;
    }
    if ((size_t)n < sizeof tmp)
        return coll_buf_add(b, tmp, (size_t)n);
    if (buf_grow(b, b->len + (size_t)n) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* ------------------------------------------------------------------ UTF-8 */

size_t coll_utf8_seq(const unsigned char *s, size_t avail, uint32_t *cp)
{
    if (avail == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    uint32_t v;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f; /* no UTF-16 surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        unsigned d = s[i];
        if (i == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xbf))
            return 0;
        v = (v << 6) | (d & 0x3f);
    }
    *cp = v;
    return n;
}

/* Bytes to skip for one U+FFFD at an invalid position: the maximal prefix
 * of a well-formed sequence (at least 1), as Python's decoder does. */
static size_t utf8_invalid_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 1;
    size_t i = 1;
    while (i < n && i < avail) {
        unsigned d = s[i];
        if (i == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xbf))
            break;
        i++;
    }
    return i;
}

int coll_utf8_sanitize(struct coll_buf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of the pending valid stretch */
    while (i < len) {
        uint32_t cp;
        size_t n = coll_utf8_seq(u + i, len - i, &cp);
        if (n) {
            i += n;
            continue;
        }
        if (coll_buf_add(b, s + run, i - run) < 0 ||
            coll_buf_add(b, "\xef\xbf\xbd", 3) < 0)
            return -1;
        i += utf8_invalid_len(u + i, len - i);
        run = i;
    }
    return coll_buf_add(b, s + run, len - run);
}

/* ------------------------------------------------------------------ strings */

static const char hexdig[] = "0123456789abcdef";

static int add_u16(struct coll_buf *b, unsigned v)
{
    char e[6] = {'\\', 'u', hexdig[(v >> 12) & 15], hexdig[(v >> 8) & 15],
                 hexdig[(v >> 4) & 15], hexdig[v & 15]};
    return coll_buf_put(b, e, 6);
}

/* Bytes written as they are: printable ASCII but '"' and '\\'. */
#define P16 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
static const unsigned char plain[256] = {
    [0x20] = 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20-0x2f, '"' */
    [0x30] = P16, P16, /* 0x30-0x4f */
    [0x50] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50-0x5f, '\\' */
    [0x60] = P16, /* 0x60-0x6f */
    [0x70] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, /* 0x70-0x7f, DEL */
};
#undef P16

int coll_json_string(struct coll_buf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    if (coll_buf_putc(b, '"') < 0)
        return -1;
    while (i < len) {
        unsigned c = u[i];
        if (plain[c]) {
            i++;
            continue;
        }
        if (coll_buf_put(b, s + run, i - run) < 0)
            return -1;
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        }
        if (esc) {
            if (coll_buf_put(b, esc, 2) < 0)
                return -1;
            i++;
        } else if (c < 0x80) {
            if (add_u16(b, c) < 0)
                return -1;
            i++;
        } else {
            uint32_t cp;
            size_t n = coll_utf8_seq(u + i, len - i, &cp);
            if (n == 0) {
                cp = 0xfffd;
                n = utf8_invalid_len(u + i, len - i);
            }
            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                if (add_u16(b, 0xd800 | (v >> 10)) < 0 ||
                    add_u16(b, 0xdc00 | (v & 0x3ff)) < 0)
                    return -1;
            } else if (add_u16(b, cp) < 0) {
                return -1;
            }
            i += n;
        }
        run = i;
    }
    if (coll_buf_put(b, s + run, len - run) < 0)
        return -1;
    return coll_buf_putc(b, '"');
}

/* ------------------------------------------------------------------ reals */

void coll_json_real(char out[32], double d)
{
    if (isnan(d)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(d)) {
        strcpy(out, d < 0 ? "-Infinity" : "Infinity");
        return;
    }
    /* Shortest precision that round-trips (what repr() uses). */
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, d);
        if (strtod(e, NULL) == d)
            break;
    }
    /* e = [-]D[.DDDD]e(+|-)XX: split into sign, digits, exponent. */
    const char *q = e;
    int neg = 0;
    if (*q == '-') {
        neg = 1;
        q++;
    }
    char dig[24];
    size_t nd = 0;
    while (*q && *q != 'e') {
        if (*q != '.' && nd < sizeof dig - 1)
            dig[nd++] = *q;
        q++;
    }
    dig[nd] = '\0';
    int exp10 = (*q == 'e') ? atoi(q + 1) : 0;
    while (nd > 1 && dig[nd - 1] == '0') /* "%.0e" never pads, but be safe */
        dig[--nd] = '\0';
    int decpt = exp10 + 1; /* value = 0.DIGITS * 10^decpt */

    char *o = out;
    if (neg)
        *o++ = '-';
    if (decpt <= -4 || decpt > 16) {
        *o++ = dig[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, dig + 1, nd - 1);
            o += nd - 1;
        }
        int x = decpt - 1;
        *o++ = 'e';
        *o++ = x < 0 ? '-' : '+';
        if (x < 0)
            x = -x;
        o += sprintf(o, "%02d", x);
    } else if (decpt <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -decpt; i++)
            *o++ = '0';
        memcpy(o, dig, nd);
        o += nd;
    } else if ((size_t)decpt < nd) {
        memcpy(o, dig, (size_t)decpt);
        o += decpt;
        *o++ = '.';
        memcpy(o, dig + decpt, nd - (size_t)decpt);
        o += nd - (size_t)decpt;
    } else {
        memcpy(o, dig, nd);
        o += nd;
        for (size_t i = nd; i < (size_t)decpt; i++)
            *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    }
    *o = '\0';
}

/* ------------------------------------------------------------------ values */

static int dump(struct coll_buf *b, const json_t *v, int indent, int level)
{
    if (!v || level > COLL_JSON_MAX_DEPTH)
        return -1;
    const char *item_sep = indent < 0 ? ", " : ",";
    switch (json_typeof(v)) {
    case JSON_NULL:
        return coll_buf_add(b, "null", 4);
    case JSON_TRUE:
        return coll_buf_add(b, "true", 4);
    case JSON_FALSE:
        return coll_buf_add(b, "false", 5);
    case JSON_INTEGER:
        return coll_buf_int(b, (long long)json_integer_value(v));
    case JSON_REAL: {
        char r[32];
        coll_json_real(r, json_real_value(v));
        return coll_buf_adds(b, r);
    }
    case JSON_STRING:
        return coll_json_string(b, json_string_value(v), json_string_length(v));
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (n == 0)
            return coll_buf_add(b, "[]", 2);
        if (coll_buf_addc(b, '[') < 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            if (i && coll_buf_adds(b, item_sep) < 0)
                return -1;
            if (indent >= 0 && coll_buf_newline(b, indent, level + 1) < 0)
                return -1;
            if (dump(b, json_array_get(v, i), indent, level + 1) < 0)
                return -1;
        }
        if (indent >= 0 && coll_buf_newline(b, indent, level) < 0)
            return -1;
        return coll_buf_addc(b, ']');
    }
    case JSON_OBJECT: {
        if (json_object_size(v) == 0)
            return coll_buf_add(b, "{}", 2);
        if (coll_buf_addc(b, '{') < 0)
            return -1;
        int first = 1;
        /* json_object_iter() takes a non-const pointer but does not modify */
        json_t *o = (json_t *)v;
        for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
            if (!first && coll_buf_adds(b, item_sep) < 0)
                return -1;
            first = 0;
            if (indent >= 0 && coll_buf_newline(b, indent, level + 1) < 0)
                return -1;
            if (coll_json_string(b, json_object_iter_key(it),
                                 json_object_iter_key_len(it)) < 0 ||
                coll_buf_add(b, ": ", 2) < 0 ||
                dump(b, json_object_iter_value(it), indent, level + 1) < 0)
                return -1;
        }
        if (indent >= 0 && coll_buf_newline(b, indent, level) < 0)
            return -1;
        return coll_buf_addc(b, '}');
    }
    }
    return -1;
}

int coll_json_dump(struct coll_buf *b, const json_t *v, int indent)
{
    return coll_json_dump_at(b, v, indent, 0);
}

int coll_json_dump_at(struct coll_buf *b, const json_t *v, int indent, int level)
{
    if (dump(b, v, indent, level) < 0)
        return -1;
    return b->oom ? -1 : 0;
}
