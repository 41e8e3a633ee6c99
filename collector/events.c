/*
 * collector/events.c - span record -> OSProfiler events (see events.h).
 */
#include "events.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "json.h"

static const char *const kind_names[LDPROF_KIND_MAX + 1] = {
    [LDPROF_KIND_WSGI] = "wsgi",       [LDPROF_KIND_HTTP] = "http",
    [LDPROF_KIND_DB] = "db",           [LDPROF_KIND_MONGODB] = "mongodb",
    [LDPROF_KIND_REDIS] = "redis",     [LDPROF_KIND_POOLING] = "pooling",
    [LDPROF_KIND_NET] = "net",
};

const char *coll_kind_name(unsigned kind)
{
    if (kind < 1 || kind > LDPROF_KIND_MAX)
        return NULL;
    return kind_names[kind];
}

/* ------------------------------------------------------------------ ids */

/* "00".."ff", two characters per byte value. */
static const char hex2[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

void coll_uuid_fmt(const uint8_t id[16], char out[37])
{
    /* 8-4-4-4-12, straight-line (hot: several ids per event) */
#define HX(i, at) memcpy(out + (at), hex2 + 2 * id[i], 2)
    HX(0, 0);
    HX(1, 2);
    HX(2, 4);
    HX(3, 6);
    out[8] = '-';
    HX(4, 9);
    HX(5, 11);
    out[13] = '-';
    HX(6, 14);
    HX(7, 16);
    out[18] = '-';
    HX(8, 19);
    HX(9, 21);
    out[23] = '-';
    HX(10, 24);
    HX(11, 26);
    HX(12, 28);
    HX(13, 30);
    HX(14, 32);
    HX(15, 34);
    out[36] = '\0';
#undef HX
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int coll_uuid_parse(const char *s, uint8_t out[16])
{
    if (strlen(s) != 36)
        return -1;
    int n = 0;
    for (int i = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return -1;
            i++;
            continue;
        }
        int hi = hexval((unsigned char)s[i]), lo = hexval((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[n++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return 0;
}

/* ------------------------------------------------------------------ time */

/* Howard Hinnant's days_from_civil / civil_from_days: proleptic Gregorian,
 * valid for every year we can print, no time_t or TZ involved. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* Two decimal digits of v (0..99). */
static void dig2(char *o, unsigned v)
{
    memcpy(o, "0001020304050607080910111213141516171819202122232425262728293031323334"
              "3536373839404142434445464748495051525354555657585960616263646566676869"
              "707172737475767778798081828384858687888990919293949596979899" + 2 * v, 2);
}

void coll_ts_fmt_us(int64_t us, char out[32])
{
    int64_t days = us / 86400000000LL;
    int64_t rem = us % 86400000000LL;
    if (rem < 0) {
        rem += 86400000000LL;
        days--;
    }
    /* Hot (every event): the date of the last day formatted is kept. */
    static int64_t last_day = INT64_MIN;
    static char last_date[11];
    if (days == last_day) {
        unsigned secs = (unsigned)(rem / 1000000);
        unsigned frac = (unsigned)(rem % 1000000);
        memcpy(out, last_date, 10);
        out[10] = 'T';
        dig2(out + 11, secs / 3600);
        out[13] = ':';
        dig2(out + 14, secs / 60 % 60);
        out[16] = ':';
        dig2(out + 17, secs % 60);
        out[19] = '.';
        dig2(out + 20, frac / 10000);
        dig2(out + 22, frac / 100 % 100);
        dig2(out + 24, frac % 100);
        out[26] = '\0';
        return;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    unsigned secs = (unsigned)(rem / 1000000);
    unsigned frac = (unsigned)(rem % 1000000);
    /* "%04u-%02u-%02uT%02u:%02u:%02u.%06u" by hand (hot: every event); the
     * modulos keep each field to its width (all hold for years 1..9999,
     * the range Python's datetime has). */
    if (y < 1 || y > 9999) { /* out of datetime's range: as it always printed */
        snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%06u", (unsigned)(y % 10000),
                 m % 100, d % 100, secs / 3600 % 24, secs / 60 % 60, secs % 60,
                 frac % 1000000);
        return;
    }
    static const struct {
        unsigned char width, sep;
    } f[7] = {{4, '-'}, {2, '-'}, {2, 'T'}, {2, ':'}, {2, ':'}, {2, '.'}, {6, 0}};
    unsigned v[7] = {(unsigned)(y % 10000), m % 100, d % 100, secs / 3600 % 24,
                     secs / 60 % 60, secs % 60, frac % 1000000};
    char *o = out;
    for (int i = 0; i < 7; i++) {
        for (int k = f[i].width - 1; k >= 0; k--) {
            o[k] = (char)('0' + v[i] % 10);
            v[i] /= 10;
        }
        o += f[i].width;
        *o++ = (char)f[i].sep;
    }
    last_day = days;
    memcpy(last_date, out, 10);
}

void coll_ts_fmt(uint64_t ns, char out[32])
{
    coll_ts_fmt_us((int64_t)(ns / 1000), out);
}

static int num(const char *s, size_t len, size_t *i, size_t mind, size_t maxd, int *v)
{
    size_t n = 0;
    int x = 0;
    while (*i < len && n < maxd && isdigit((unsigned char)s[*i])) {
        x = x * 10 + (s[*i] - '0');
        (*i)++;
        n++;
    }
    if (n < mind)
        return -1;
    *v = x;
    return 0;
}

static int lit(const char *s, size_t len, size_t *i, char c)
{
    if (*i >= len || tolower((unsigned char)s[*i]) != tolower((unsigned char)c))
        return -1;
    (*i)++;
    return 0;
}

int coll_ts_parse(const char *s, size_t len, int64_t *us)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    size_t i = 0;
    int y, mo, d, h, mi, se, f;
    if (num(s, len, &i, 4, 4, &y) || lit(s, len, &i, '-') ||
        num(s, len, &i, 1, 2, &mo) || lit(s, len, &i, '-'))
        return -1;
    if (i < len && s[i] == ' ') /* Python's %d also takes " 5" */
        i++;
    if (num(s, len, &i, 1, 2, &d) || lit(s, len, &i, 'T') || num(s, len, &i, 1, 2, &h) ||
        lit(s, len, &i, ':') || num(s, len, &i, 1, 2, &mi) || lit(s, len, &i, ':') ||
        num(s, len, &i, 1, 2, &se) || lit(s, len, &i, '.'))
        return -1;
    size_t f0 = i;
    if (num(s, len, &i, 1, 6, &f) || i != len)
        return -1;
    for (size_t k = i - f0; k < 6; k++)
        f *= 10;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59)
        return -1;
    unsigned dim = mdays[mo - 1];
    if (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        dim = 29;
    if ((unsigned)d > dim)
        return -1;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *us = ((days * 86400 + h * 3600 + mi * 60 + se) * 1000000LL) + f;
    return 0;
}

/* ------------------------------------------------------------------ info */

int coll_info_set_dotted(json_t *info, const char *key, size_t klen, json_t *value)
{
    if (!value)
        return -1;
    json_t *obj = info;
    size_t seg = 0;
    for (;;) {
        const char *dot = memchr(key + seg, '.', klen - seg);
        if (!dot)
            break;
        size_t n = (size_t)(dot - (key + seg));
        json_t *child = json_object_getn(obj, key + seg, n);
        if (!child) {
            child = json_object();
            if (!child || json_object_setn_new(obj, key + seg, n, child) < 0) {
                json_decref(value);
                return -1;
            }
        } else if (!json_is_object(child)) {
            /* Path runs into a scalar: keep the field flat at the top. */
            return json_object_setn_new(info, key, klen, value) < 0 ? -1 : 0;
        }
        obj = child;
        seg = n + 1 + seg;
    }
    return json_object_setn_new(obj, key + seg, klen - seg, value) < 0 ? -1 : 0;
}

static json_t *str_value(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && (unsigned char)p[i] < 0x80)
        i++;
    if (i == n) /* ASCII: valid as it is */
        return json_stringn(p, n);
    struct coll_buf b;
    coll_buf_init(&b);
    if (coll_utf8_sanitize(&b, p, n) < 0) {
        coll_buf_free(&b);
        return NULL;
    }
    json_t *v = json_stringn(b.p ? b.p : "", b.len);
    coll_buf_free(&b);
    return v;
}

static json_t *opt_str(const struct coll_str *s)
{
    return s->p ? str_value(s->p, s->len) : json_null();
}

static json_t *make_event(const char *kind, const char *suffix, const char *ids[3],
                          const char *ts)
{
    char name[32];
    size_t kl = strlen(kind), sl = strlen(suffix);
    if (kl + 1 + sl >= sizeof name)
        return NULL;
    memcpy(name, kind, kl);
    name[kl] = '-';
    memcpy(name + kl + 1, suffix, sl + 1);
    json_t *ev = json_object();
    if (!ev)
        return NULL;
    if (json_object_set_new(ev, "name", json_string(name)) < 0 ||
        json_object_set_new(ev, "base_id", json_string(ids[0])) < 0 ||
        json_object_set_new(ev, "trace_id", json_string(ids[1])) < 0 ||
        json_object_set_new(ev, "parent_id", json_string(ids[2])) < 0 ||
        json_object_set_new(ev, "timestamp", json_string(ts)) < 0) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}

static int finish_event(json_t *ev, json_t *info, const struct coll_proc *proc,
                        json_t *host)
{
    /* host last, or in place if a field already used the name (dict
     * assignment in OSProfiler's profiler._notify). */
    if (json_object_set_new(info, "host", host) < 0)
        return -1;
    if (json_object_set(ev, "info", info) < 0 ||
        json_object_set_new(ev, "project", opt_str(&proc->project)) < 0 ||
        json_object_set_new(ev, "service", opt_str(&proc->service)) < 0)
        return -1;
    return 0;
}

int coll_events_build(const struct coll_proc *proc, uint32_t pid, const struct coll_span *sp,
                      const char *fallback_host, json_t **start, json_t **stop)
{
    const char *kind = coll_kind_name(sp->hdr.kind);
    char base[37], trace[37], parent[37], ts0[32], ts1[32];
    const char *ids[3] = {base, trace, parent};
    json_t *s_ev = NULL, *e_ev = NULL, *s_info = NULL, *e_info = NULL;
    int unfinished = (sp->hdr.flags & LDPROF_SPAN_UNFINISHED) != 0;

    *start = *stop = NULL;
    if (!kind)
        return -1;
    coll_uuid_fmt(sp->hdr.base_id, base);
    coll_uuid_fmt(sp->hdr.trace_id, trace);
    coll_uuid_fmt(sp->hdr.parent_id, parent);
    coll_ts_fmt(sp->hdr.start_ns, ts0);
    coll_ts_fmt(sp->hdr.end_ns, ts1);

    s_info = json_object();
    e_info = json_object();
    s_ev = make_event(kind, "start", ids, ts0);
    if (!unfinished)
        e_ev = make_event(kind, "stop", ids, ts1);
    if (!s_info || !e_info || !s_ev || (!unfinished && !e_ev))
        goto fail;

    struct coll_tlv_iter it;
    struct coll_tlv t;
    coll_tlv_begin(&it, sp->info, sp->info_len);
    while (coll_tlv_next(&it, &t)) {
        json_t *v = NULL;
        if (t.type == LDPROF_TLV_STR) {
            v = str_value((const char *)t.val, t.vlen);
        } else if (t.type == LDPROF_TLV_INT) {
            v = json_integer(t.ival);
        } else {
            json_error_t je;
            v = json_loadb((const char *)t.val, t.vlen, JSON_DECODE_ANY | JSON_ALLOW_NUL,
                           &je);
        }
        if (!v)
            goto fail;
        if (coll_info_set_dotted(t.stop ? e_info : s_info, t.key.p, t.key.len, v) < 0)
            goto fail;
    }
    if (sp->hdr.flags & LDPROF_SPAN_TRUNCATED) {
        if (coll_info_set_dotted(s_info, "ldprof.truncated", 16, json_true()) < 0)
            goto fail;
    }
    /* The recording process and thread (docs/formats.md §3.2): what the
     * Chrome export needs to put spans on their real threads. */
    if (coll_info_set_dotted(s_info, "thread.pid", 10, json_integer((json_int_t)pid)) < 0 ||
        coll_info_set_dotted(s_info, "thread.tid", 10,
                             json_integer((json_int_t)sp->hdr.tid)) < 0)
        goto fail;
    json_t *host = proc->host.p ? str_value(proc->host.p, proc->host.len)
                                : json_string(fallback_host ? fallback_host : "");
    if (!host)
        goto fail;
    if (finish_event(s_ev, s_info, proc, json_incref(host)) < 0) {
        json_decref(host);
        goto fail;
    }
    if (e_ev && finish_event(e_ev, e_info, proc, json_incref(host)) < 0) {
        json_decref(host);
        goto fail;
    }
    json_decref(host);
    json_decref(s_info);
    json_decref(e_info);
    *start = s_ev;
    *stop = e_ev;
    return 0;
fail:
    json_decref(s_info);
    json_decref(e_info);
    json_decref(s_ev);
    json_decref(e_ev);
    return -1;
}
