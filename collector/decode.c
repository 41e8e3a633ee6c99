/*
 * collector/decode.c - datagram validation and iteration (see decode.h).
 *
 * Every multi-byte field is read with memcpy + le*toh: records follow each
 * other at arbitrary offsets (rec_len need not be a multiple of 8), so a
 * struct pointer into the buffer could be misaligned.
 */
#include "decode.h"

#include <endian.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

static const char *const reasons[COLL_DEC__COUNT] = {
    [COLL_DEC_OK] = "ok",
    [COLL_DEC_ESHORT] = "short",
    [COLL_DEC_EENDIAN] = "big_endian",
    [COLL_DEC_EMAGIC] = "bad_magic",
    [COLL_DEC_EVERSION] = "bad_version",
    [COLL_DEC_ETYPE] = "bad_type",
    [COLL_DEC_ETOOBIG] = "too_big",
    [COLL_DEC_ELEN] = "bad_length",
    [COLL_DEC_ERESERVED] = "reserved_not_zero",
    [COLL_DEC_EPROC] = "bad_process_block",
    [COLL_DEC_ERECLEN] = "bad_record_length",
    [COLL_DEC_EKIND] = "bad_kind",
    [COLL_DEC_EFLAGS] = "bad_flags",
    [COLL_DEC_EIDS] = "bad_ids",
    [COLL_DEC_ETIME] = "bad_times",
    [COLL_DEC_ETLV] = "bad_tlv",
    [COLL_DEC_ENREC] = "bad_record_count",
};

const char *coll_dec_reason(int err)
{
    if (err < 0 || err >= COLL_DEC__COUNT)
        return "unknown";
    return reasons[err];
}

__attribute__((format(printf, 3, 4))) static int fail(struct coll_dec *d, int err,
                                                      const char *fmt, ...)
{
    va_list ap;
    d->err = err;
    va_start(ap, fmt);
    vsnprintf(d->errstr, sizeof d->errstr, fmt, ap);
    va_end(ap);
    d->next_idx = d->hdr.nrec; /* nothing to iterate */
    return -1;
}

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return le16toh(v);
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static void read_hdr(struct ldprof_wire_hdr *h, const uint8_t *p)
{
    h->magic = rd32(p + 0);
    h->version = rd16(p + 4);
    h->type = rd16(p + 6);
    h->len = rd32(p + 8);
    h->pid = rd32(p + 12);
    h->nrec = rd32(p + 16);
    h->proc_len = rd16(p + 20);
    h->reserved = rd16(p + 22);
    h->dropped = rd64(p + 24);
}

static void read_span(struct ldprof_wire_span *s, const uint8_t *p)
{
    s->rec_len = rd16(p + 0);
    s->kind = p[2];
    s->flags = p[3];
    s->tid = rd32(p + 4);
    memcpy(s->base_id, p + 8, 16);
    memcpy(s->trace_id, p + 24, 16);
    memcpy(s->parent_id, p + 40, 16);
    s->start_ns = rd64(p + 56);
    s->end_ns = rd64(p + 64);
    s->info_len = rd16(p + 72);
    s->reserved = rd16(p + 74);
    s->reserved2 = rd32(p + 76);
}

/* A key is a dotted path of printable, non-space ASCII with no empty
 * segment: "request.path" yes; ".a", "a.", "a..b", "a b" no. */
/* Eight key bytes (little-endian word): any byte < 0x21 or > 0x7e, or two
 * dots in a row?  (Exact: the classic has-less/has-more/zero-byte tricks.) */
static inline int key_word_bad(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull,
                   low7 = 0x7f7f7f7f7f7f7f7full;
    if ((((x - ones * 0x21) & ~x) | (x + ones) | x) & high)
        return 1;
    uint64_t y = x ^ (ones * '.');
    uint64_t dots = ~(((y & low7) + low7) | y | low7); /* 0x80 where '.' */
    return (dots & (dots >> 8)) != 0;
}

static uint64_t key_word(const uint8_t *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return le64toh(x);
}

static int key_ok(const uint8_t *k, size_t n)
{
    if (n == 0 || k[0] == '.' || k[n - 1] == '.')
        return 0;
    if (n < 8) {
        uint8_t w[8] = {'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a'};
        memcpy(w, k, n);
        return !key_word_bad(key_word(w));
    }
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        if (key_word_bad(key_word(k + i)) || (i && k[i - 1] == '.' && k[i] == '.'))
            return 0;
    /* The last 8 bytes overlap the words above: every pair is covered. */
    return i == n || !key_word_bad(key_word(k + n - 8));
}

/* A valid key of at most 16 bytes is exactly given by its length and two
 * words: bytes [0, 8) and [n - 8, n) (which cover it), or for n < 8 its
 * bytes padded with zeros.  Such keys repeat in every record of a
 * datagram, so the ones found valid are remembered in d's small two-way
 * cache and a key equal to one of them is not checked again:
 * the verdict is key_ok()'s either way (a planted wrong entry is caught by
 * test_collector_decode.c's key_cache tests). */
static int key_ok_cached(struct coll_dec *d, const uint8_t *k, size_t n)
{
    if (n == 0 || n > 16)
        return key_ok(k, n);
    uint64_t a, b = 0;
    if (n < 8) {
        uint8_t w[8] = {0};
        memcpy(w, k, n);
        memcpy(&a, w, 8);
    } else {
        memcpy(&a, k, 8);
        memcpy(&b, k + n - 8, 8);
    }
    uint64_t h = (a * 0x9e3779b97f4a7c15ull) ^ ((b + n) * 0xc2b2ae3d27d4eb4full);
    unsigned i = (unsigned)((h ^ h >> 29) & (COLL_DEC_KEYCACHE - 1));
    /* two ways: slots i and i ^ 1 */
    if ((d->key_n[i] == n && d->key_a[i] == a && d->key_b[i] == b) ||
        (d->key_n[i ^ 1] == n && d->key_a[i ^ 1] == a && d->key_b[i ^ 1] == b))
        return 1;
    if (!key_ok(k, n))
        return 0;
    if (d->key_n[i] && !d->key_n[i ^ 1])
        i ^= 1;
    d->key_n[i] = (uint8_t)n;
    d->key_a[i] = a;
    d->key_b[i] = b;
    return 1;
}

/* ---- JSON values: a fast check for the common simple texts.
 *
 * simple_json() answers 1 only for texts that are certainly valid JSON for
 * jansson's json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL): nesting at most
 * SIMPLE_DEPTH, strings of printable ASCII with the two-character escapes,
 * integers of at most 18 digits, reals of at most 18 digits with an
 * exponent of at most 2 digits (no overflow possible), the three literals.
 * Anything else (\u escapes, other bytes, long numbers, errors) answers 0
 * and json_loadb decides, so the verdict is always jansson's. */
#define SIMPLE_DEPTH 32

struct jscan {
    const uint8_t *p, *end;
};

static void js_ws(struct jscan *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int js_digits(struct jscan *j)
{
    int n = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        j->p++;
        n++;
    }
    return n;
}

static int js_number(struct jscan *j)
{
    if (j->p < j->end && *j->p == '-')
        j->p++;
    const uint8_t *d0 = j->p;
    int n = js_digits(j);
    if (n == 0 || (n > 1 && *d0 == '0'))
        return 0;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        int f = js_digits(j);
        if (f == 0)
            return 0;
        n += f;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        int e = js_digits(j);
        if (e == 0 || e > 2)
            return 0;
    }
    return n <= 18;
}

static int js_string(struct jscan *j)
{
    j->p++; /* the opening quote */
    while (j->p < j->end) {
        uint8_t c = *j->p++;
        if (c == '"')
            return 1;
        if (c == '\\') {
            if (j->p == j->end)
                return 0;
            c = *j->p++;
            if (!strchr("\"\\/bfnrt", c) || c == 0)
                return 0;
        } else if (c < 0x20 || c > 0x7e) {
            return 0;
        }
    }
    return 0;
}

static int js_lit(struct jscan *j, const char *w, size_t n)
{
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
        return 0;
    j->p += n;
    return 1;
}

static int js_value(struct jscan *j, int depth)
{
    js_ws(j);
    if (j->p == j->end)
        return 0;
    switch (*j->p) {
    case '"':
        return js_string(j);
    case 't':
        return js_lit(j, "true", 4);
    case 'f':
        return js_lit(j, "false", 5);
    case 'n':
        return js_lit(j, "null", 4);
    case '[':
    case '{': {
        int obj = *j->p == '{';
        uint8_t close = obj ? '}' : ']';
        if (depth >= SIMPLE_DEPTH)
            return 0;
        j->p++;
        js_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 1;
        }
        for (;;) {
            if (obj) {
                js_ws(j);
                if (j->p == j->end || *j->p != '"' || !js_string(j))
                    return 0;
                js_ws(j);
                if (j->p == j->end || *j->p++ != ':')
                    return 0;
            }
            if (!js_value(j, depth + 1))
                return 0;
            js_ws(j);
            if (j->p == j->end)
                return 0;
            uint8_t c = *j->p++;
            if (c == close)
                return 1;
            if (c != ',')
                return 0;
        }
    }
    default:
        return js_number(j);
    }
}

static int simple_json(const uint8_t *v, size_t n)
{
    struct jscan j = {v, v + n};
    if (!js_value(&j, 0))
        return 0;
    js_ws(&j);
    return j.p == j.end;
}

static int json_ok(const uint8_t *v, size_t n)
{
    if (simple_json(v, n))
        return 1;
    json_error_t je;
    json_t *j = json_loadb((const char *)v, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j)
        return 0;
    json_decref(j);
    return 1;
}

/* The name of a block in errstr: "process block" (rec < 0) or "record 3". */
static const char *what_name(char buf[32], long rec)
{
    if (rec < 0)
        return "process block";
    snprintf(buf, 32, "record %ld", rec);
    return buf;
}

/* Check the TLV entries in [p, p + n).  `rec` names the block for errstr
 * (what_name(), formatted only on failure).  allow_stop: whether
 * LDPROF_TLV_STOP may be set.  Returns 0 or the error already recorded via
 * fail(). */
static int check_tlvs(struct coll_dec *d, int err, long rec, const uint8_t *p, size_t n,
                      int allow_stop)
{
    size_t off = 0;
    unsigned idx = 0;
    char w[32];
    while (off < n) {
        if (n - off < sizeof(struct ldprof_wire_tlv))
            return fail(d, err, "%s: field %u: %zu bytes left, head needs 4",
                        what_name(w, rec), idx, n - off);
        uint8_t type = p[off];
        uint8_t klen = p[off + 1];
        uint16_t vlen = rd16(p + off + 2);
        uint8_t base = type & (uint8_t)~LDPROF_TLV_STOP;
        if ((type & LDPROF_TLV_STOP) && !allow_stop)
            return fail(d, err, "%s: field %u: STOP flag not allowed here", what_name(w, rec),
                        idx);
        if (base != LDPROF_TLV_STR && base != LDPROF_TLV_INT && base != LDPROF_TLV_JSON)
            return fail(d, err, "%s: field %u: bad type 0x%02x", what_name(w, rec), idx, type);
        if ((size_t)klen + vlen > n - off - 4)
            return fail(d, err, "%s: field %u: key %u + value %u bytes overrun the block",
                        what_name(w, rec), idx, klen, vlen);
        const uint8_t *k = p + off + 4;
        if (!key_ok_cached(d, k, klen))
            return fail(d, err, "%s: field %u: bad key", what_name(w, rec), idx);
        const uint8_t *v = k + klen;
        if (base == LDPROF_TLV_INT && vlen != 8)
            return fail(d, err, "%s: field %u: INT value of %u bytes", what_name(w, rec), idx,
                        vlen);
        if (base == LDPROF_TLV_JSON && !json_ok(v, vlen))
            return fail(d, err, "%s: field %u: value is not valid JSON", what_name(w, rec),
                        idx);
        off += 4 + (size_t)klen + vlen;
        idx++;
    }
    return 0;
}

static int zero_id(const uint8_t id[16])
{
    for (int i = 0; i < 16; i++)
        if (id[i])
            return 0;
    return 1;
}

/* Store a known process key into *pr (NULL: only test).  Returns 1 when the
 * key is known, 0 when it is not. */
static int set_proc_field(struct coll_proc *pr, const struct coll_tlv *t)
{
    static const struct {
        const char *name;
        size_t off;
    } keys[] = {
        {LDPROF_PROC_HOST, offsetof(struct coll_proc, host)},
        {LDPROF_PROC_SERVICE, offsetof(struct coll_proc, service)},
        {LDPROF_PROC_PROJECT, offsetof(struct coll_proc, project)},
        {LDPROF_PROC_EXE, offsetof(struct coll_proc, exe)},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (t->key.len == strlen(keys[i].name) &&
            memcmp(t->key.p, keys[i].name, t->key.len) == 0) {
            if (pr) {
                struct coll_str *s = (struct coll_str *)((char *)pr + keys[i].off);
                s->p = (const char *)t->val;
                s->len = t->vlen;
            }
            return 1;
        }
    }
    return 0;
}

int coll_decode(struct coll_dec *d, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    memset(d, 0, sizeof *d);
    d->buf = b;
    d->len = len;
    if (len < sizeof(struct ldprof_wire_hdr))
        return fail(d, COLL_DEC_ESHORT, "%zu bytes, the header needs 32", len);
    read_hdr(&d->hdr, b);
    const struct ldprof_wire_hdr *h = &d->hdr;
    if (h->magic == __builtin_bswap32(LDPROF_WIRE_MAGIC))
        return fail(d, COLL_DEC_EENDIAN, "big-endian magic");
    if (h->magic != LDPROF_WIRE_MAGIC)
        return fail(d, COLL_DEC_EMAGIC, "magic 0x%08x", h->magic);
    if (h->version != LDPROF_WIRE_VERSION)
        return fail(d, COLL_DEC_EVERSION, "version %u, want %u", h->version,
                    LDPROF_WIRE_VERSION);
    if (h->type != LDPROF_MSG_SPANS && h->type != LDPROF_MSG_STATS)
        return fail(d, COLL_DEC_ETYPE, "type %u", h->type);
    if (len > LDPROF_WIRE_MAX_DGRAM)
        return fail(d, COLL_DEC_ETOOBIG, "%zu bytes, max %u", len, LDPROF_WIRE_MAX_DGRAM);
    if (h->len != len)
        return fail(d, COLL_DEC_ELEN, "header says %u bytes, datagram has %zu", h->len,
                    len);
    if (h->reserved != 0)
        return fail(d, COLL_DEC_ERESERVED, "header reserved 0x%04x", h->reserved);
    size_t off = sizeof(struct ldprof_wire_hdr);
    if (h->proc_len > len - off)
        return fail(d, COLL_DEC_EPROC, "process block of %u bytes overruns %zu left",
                    h->proc_len, len - off);
    if (check_tlvs(d, COLL_DEC_EPROC, -1, b + off, h->proc_len, 0) < 0)
        return -1;
    /* Known process keys must be strings. */
    struct coll_tlv_iter it;
    struct coll_tlv t;
    coll_tlv_begin(&it, b + off, h->proc_len);
    while (coll_tlv_next(&it, &t)) {
        if (!set_proc_field(NULL, &t))
            continue; /* unknown key: ignored (forward compatible) */
        if (t.type != LDPROF_TLV_STR)
            return fail(d, COLL_DEC_EPROC, "process block: \"%.*s\" is not a string",
                        (int)t.key.len, t.key.p);
        set_proc_field(&d->proc, &t);
    }
    off += h->proc_len;
    d->next_off = off;

    if (h->type == LDPROF_MSG_STATS && h->nrec != 0)
        return fail(d, COLL_DEC_ENREC, "STATS message with nrec %u", h->nrec);
    for (uint32_t i = 0; i < h->nrec; i++) {
        size_t left = len - off;
        if (left == 0)
            return fail(d, COLL_DEC_ENREC, "nrec %u but only %u records present", h->nrec,
                        i);
        if (left < sizeof(struct ldprof_wire_span))
            return fail(d, COLL_DEC_ERECLEN, "record %u: %zu bytes left, head needs 80",
                        i, left);
        struct ldprof_wire_span s;
        read_span(&s, b + off);
        if (s.info_len > LDPROF_WIRE_MAX_INFO)
            return fail(d, COLL_DEC_ERECLEN, "record %u: info_len %u > %u", i, s.info_len,
                        LDPROF_WIRE_MAX_INFO);
        if (s.rec_len != sizeof(struct ldprof_wire_span) + (size_t)s.info_len)
            return fail(d, COLL_DEC_ERECLEN, "record %u: rec_len %u != 80 + info_len %u",
                        i, s.rec_len, s.info_len);
        if (s.rec_len > left)
            return fail(d, COLL_DEC_ERECLEN, "record %u: rec_len %u overruns %zu left", i,
                        s.rec_len, left);
        if (s.reserved != 0 || s.reserved2 != 0)
            return fail(d, COLL_DEC_ERESERVED, "record %u: reserved fields not 0", i);
        if (s.kind < 1 || s.kind > LDPROF_KIND_MAX)
            return fail(d, COLL_DEC_EKIND, "record %u: kind %u out of range", i, s.kind);
        if (s.flags & ~(LDPROF_SPAN_ERROR | LDPROF_SPAN_TRUNCATED | LDPROF_SPAN_UNFINISHED))
            return fail(d, COLL_DEC_EFLAGS, "record %u: unknown flags 0x%02x", i, s.flags);
        if (zero_id(s.base_id) || zero_id(s.trace_id) || zero_id(s.parent_id))
            return fail(d, COLL_DEC_EIDS, "record %u: all-zero id", i);
        if ((s.flags & LDPROF_SPAN_UNFINISHED) && s.end_ns != s.start_ns)
            return fail(d, COLL_DEC_ETIME, "record %u: unfinished but end_ns != start_ns",
                        i);
        if (check_tlvs(d, COLL_DEC_ETLV, (long)i, b + off + sizeof s, s.info_len, 1) < 0)
            return -1;
        off += s.rec_len;
    }
    if (off != len)
        return fail(d, COLL_DEC_ENREC, "%zu bytes after the last of %u records", len - off,
                    h->nrec);
    d->err = COLL_DEC_OK;
    d->errstr[0] = '\0';
    d->next_idx = 0;
    return 0;
}

void coll_decode_first(const struct coll_dec *d, struct coll_dec_pos *pos)
{
    pos->off = sizeof(struct ldprof_wire_hdr) + d->hdr.proc_len;
    pos->idx = 0;
}

int coll_decode_next_at(const struct coll_dec *d, struct coll_dec_pos *pos,
                        struct coll_span *out)
{
    if (d->err != COLL_DEC_OK || pos->idx >= d->hdr.nrec)
        return 0;
    read_span(&out->hdr, d->buf + pos->off);
    out->info = d->buf + pos->off + sizeof(struct ldprof_wire_span);
    out->info_len = out->hdr.info_len;
    pos->off += out->hdr.rec_len;
    pos->idx++;
    return 1;
}

int coll_decode_next(struct coll_dec *d, struct coll_span *out)
{
    struct coll_dec_pos pos = {d->next_off, d->next_idx};

    if (!coll_decode_next_at(d, &pos, out))
        return 0;
    d->next_off = pos.off;
    d->next_idx = pos.idx;
    return 1;
}

void coll_decode_record(const uint8_t *rec, struct coll_span *out)
{
    read_span(&out->hdr, rec);
    out->info = rec + sizeof(struct ldprof_wire_span);
    out->info_len = out->hdr.info_len;
}

void coll_decode_proc(const uint8_t *p, size_t len, struct coll_proc *out)
{
    struct coll_tlv_iter it;
    struct coll_tlv t;
    memset(out, 0, sizeof *out);
    coll_tlv_begin(&it, p, len);
    while (coll_tlv_next(&it, &t))
        if (t.type == LDPROF_TLV_STR)
            set_proc_field(out, &t);
}

void coll_tlv_begin(struct coll_tlv_iter *it, const uint8_t *p, size_t len)
{
    it->p = p;
    it->end = p + len;
}

int coll_tlv_next(struct coll_tlv_iter *it, struct coll_tlv *t)
{
    /* The bounds were validated, but stay safe if misused. */
    if ((size_t)(it->end - it->p) < sizeof(struct ldprof_wire_tlv))
        return 0;
    uint8_t type = it->p[0];
    uint8_t klen = it->p[1];
    uint16_t vlen = rd16(it->p + 2);
    if ((size_t)klen + vlen > (size_t)(it->end - it->p) - 4) {
        it->p = it->end;
        return 0;
    }
    t->type = type & (uint8_t)~LDPROF_TLV_STOP;
    t->stop = (type & LDPROF_TLV_STOP) != 0;
    t->key.p = (const char *)it->p + 4;
    t->key.len = klen;
    t->val = it->p + 4 + klen;
    t->vlen = vlen;
    t->ival = 0;
    if (t->type == LDPROF_TLV_INT && vlen == 8)
        t->ival = (int64_t)rd64(t->val);
    it->p += 4 + (size_t)klen + vlen;
    return 1;
}
