/*
 * test_collector_dumptext.c - the text writers that skip jansson agree with
 * the reference path byte for byte:
 *   - coll_event_text() (collector/evtext.c) against coll_events_build() +
 *     coll_json_dump() for every event, compact and indented at any level,
 *     and the "exception" value against the stop event's info.etype;
 *   - coll_dump_text() (collector/dumptext.c, what coll_trace_render()
 *     uses for held records) against coll_trace_render_ref() (realize,
 *     report.c, json.c) for the same records;
 *   - coll_redis_dgram_cmds() against the events dumped compact in
 *     OSProfiler's push order;
 * on many generated traces: hostile strings (quotes, backslashes, control
 * bytes, DEL, non-ASCII, U+2028, astral characters, invalid UTF-8, NUL),
 * dotted keys that nest, collide and run into scalars, JSON values
 * (objects nested into, reals, escapes, duplicate keys), every span kind
 * and flag, repeated trace_ids, parent cycles, deep and wide trees, limits
 * and markers, resumed and merged traces.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/decode.h"
#include "collector/dumptext.h"
#include "collector/events.h"
#include "collector/evtext.h"
#include "collector/ingest.h"
#include "collector/json.h"
#include "collector/trace.h"
#include "wire_build.h"

#define T0 1704164645000100000ull

static void setup(void)
{
    coll_ingest_init("fallback-host");
}

TestSuite(collector_dumptext, .init = setup);

/* ---- a small deterministic generator */

static uint64_t rng;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static unsigned pick(unsigned n)
{
    return (unsigned)(rnd() % n);
}

static const char *const str_pool[] = {
    "plain",
    "",
    "quote \" and back\\slash",
    "ctl \x01\x02\x1f tab\t nl\n cr\r bs\b ff\f del\x7f",
    "caf\xc3\xa9 \xe2\x82\xac",
    "line sep \xe2\x80\xa8 para \xe2\x80\xa9",
    "astral \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf",
    "bad \xff\xfe utf-8",
    "cut \xe2\x80",
    "surrogate \xed\xa0\x80 end",
    "overlong \xc0\xaf \xe0\x80\xaf",
    "too big \xf4\x90\x80\x80",
    "lone cont \x80\xbf",
    "SELECT \"x\"\n FROM t WHERE a = '\xc3\xa9'",
    "/v2/queues/q1/messages?echo=true&limit=10",
};

static const char *const key_pool[] = {
    "a", "a.b", "a.b.c", "a.c", "b", "etype", "etype.x", "host", "host.name", "thread",
    "thread.pid", "thread.x", "ldprof", "ldprof.truncated", "x\"q", "back\\slash",
    "request.path", "request.method", "db.params", "db.statement", "k.l.m.n.o", "status_code",
    "message", "a.b.c.d", "\"lead", "\\", "tail\\", "q\".r",
};

static const char *const json_pool[] = {
    "{\"x\": 1, \"y\": {\"z\": [1, 2, {\"w\": null}]}}",
    "{}",
    "[]",
    "{\"a\": 1, \"a\": 2, \"b\": 3}",
    "[1, \"two\", {\"k\": null}, true, false]",
    "0.1",
    "1e-05",
    "1e16",
    "-0.0",
    "1.5e300",
    "123456789012345678",
    "-9223372036854775808",
    "\"esc \\u2028 \\ud83d\\ude00 \\u0000 \\\" \\\\ \\/\"",
    "{\"c\\u00e9\": \"\\u00e9\", \"ctl\": \"\\u0001\\u007f\"}",
    "null",
    "true",
    "  { \"spaced\" :  [ 1 ,2 ] }  ",
    "{\"etype\": \"inner\"}",
    "3.14159",
    "[0.5, 2.5e-7, 100.0]",
    /* keys to escape from their first byte on, and one whose escaped form
     * is several times its length */
    "{\"\\u00e9t\\u00e9\": 1, \"\\\"q\": {\"\\n\\u0001\": [2]}, \"\\ud83d\\ude00\": 0}",
    "{\"k\": {\""
    "\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac"
    "\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac"
    "\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac"
    "\": 1}}",
};

static void add_tlv(struct wb *b, int stop_ok)
{
    uint8_t stop = stop_ok && pick(3) == 0 ? LDPROF_TLV_STOP : 0;
    const char *key = key_pool[pick(sizeof key_pool / sizeof key_pool[0])];
    switch (pick(4)) {
    case 0:
    case 1:
        wb_str(b, stop, key, str_pool[pick(sizeof str_pool / sizeof str_pool[0])]);
        break;
    case 2: {
        static const int64_t ints[] = {0, 1, -1, 201, INT64_MAX, INT64_MIN, 1234567890123};
        wb_int(b, stop, key, ints[pick(sizeof ints / sizeof ints[0])]);
        break;
    }
    default:
        if (pick(8) == 0) { /* a NUL byte inside a string */
            wb_tlv(b, (uint8_t)(LDPROF_TLV_STR | stop), key, "nul\0byte", 8);
            break;
        }
        wb_json(b, stop, key, json_pool[pick(sizeof json_pool / sizeof json_pool[0])]);
        break;
    }
}

/* Generated trace: ids drawn from a small pool so trace_ids repeat (and
 * records replace each other) and parents form trees, cycles and
 * dangling links. */
struct gen {
    uint32_t hi;
    int nids;
    int shape; /* 0 random, 1 deep chain, 2 wide, 3 random without cycles */
};

static size_t gen_dgram(struct wb *b, const struct gen *g, int seq)
{
    uint8_t base[16];
    wb_id(base, g->hi, 0);
    wb_begin(b, LDPROF_MSG_SPANS, 1000 + pick(3), 0);
    if (pick(4))
        wb_proc(b, "host", pick(5) ? "host-a" : "h\xc3\xb6st \"q\" \xff");
    if (pick(5))
        wb_proc(b, "service", pick(4) ? "zaqard" : "svc\n\xe2\x80\xa8");
    if (pick(5))
        wb_proc(b, "project", "zaqar");
    int nrec = g->shape == 1 || g->shape == 2 ? 40 : 1 + (int)pick(12);
    for (int r = 0; r < nrec; r++) {
        uint8_t id[16], parent[16];
        int me, par;
        if (g->shape == 1) { /* a chain: i's parent is i - 1 */
            me = seq * 40 + r + 1;
            par = me - 1;
        } else if (g->shape == 2) { /* all children of the root */
            me = seq * 40 + r + 1;
            par = 0;
        } else if (g->shape == 3) { /* no cycles: parents have lower ids */
            me = 1 + (int)pick((unsigned)g->nids);
            par = (int)pick((unsigned)me);
        } else {
            me = 1 + (int)pick((unsigned)g->nids);
            unsigned p = pick(10);
            par = p < 6 ? (int)pick((unsigned)g->nids + 1) /* 0: the base */
                  : p < 7 ? me                               /* itself */
                  : p < 8 ? 100000 + (int)pick(5)            /* unknown */
                          : (me % g->nids) + 1;              /* maybe a cycle */
        }
        wb_id(id, g->hi, (uint64_t)me);
        wb_id(parent, g->hi, (uint64_t)par);
        uint64_t start = T0 + (uint64_t)pick(4000) * (pick(2) ? 1000u : 1u) +
                         (uint64_t)seq * 100000u;
        uint64_t end = start + (uint64_t)pick(3000) * (pick(2) ? 1000u : 1u);
        if (pick(20) == 0)
            end = start - 5000; /* stops before it starts */
        uint8_t flags = 0;
        if (pick(6) == 0) {
            flags |= LDPROF_SPAN_UNFINISHED;
            end = start;
        }
        if (pick(8) == 0)
            flags |= LDPROF_SPAN_TRUNCATED;
        wb_span_begin(b, (uint8_t)(1 + pick(LDPROF_KIND_MAX)), flags, base, id, parent, start,
                      end);
        int ntlv = (int)pick(8);
        for (int k = 0; k < ntlv; k++)
            add_tlv(b, !(flags & LDPROF_SPAN_UNFINISHED));
        wb_span_end(b);
    }
    return wb_finish(b);
}

/* ---- comparisons */

/* Assert a == b (bytes); on a difference say where, with some context
 * (whole dumps would be megabytes). */
static void same_bytes(const char *what, const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i = 0;
    while (i < alen && i < blen && a[i] == b[i])
        i++;
    if (i == alen && i == blen)
        return;
    size_t from = i > 80 ? i - 80 : 0;
    cr_assert_fail("%s differ at byte %zu (lengths %zu, %zu):\nfast: ...%.*s\nref:  ...%.*s", what, i,
             alen, blen, (int)((alen < i + 80 ? alen : i + 80) - from), a + from,
             (int)((blen < i + 80 ? blen : i + 80) - from), b + from);
}

static void check_events(const struct coll_dec *d0)
{
    struct coll_dec d = *d0;
    struct coll_span sp;
    while (coll_decode_next(&d, &sp)) {
        json_t *ev[2];
        cr_assert_eq(coll_events_build(&d.proc, d.hdr.pid, &sp, "fallback-host", &ev[0], &ev[1]),
                     0);
        for (int stop = 0; stop < 2; stop++) {
            if (!ev[stop])
                continue;
            static const int layouts[][2] = {{COLL_JSON_COMPACT, 0}, {2, 0}, {2, 4}, {4, 7}};
            for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++) {
                struct coll_buf ref, fast, et;
                coll_buf_init(&ref);
                coll_buf_init(&fast);
                coll_buf_init(&et);
                int indent = layouts[l][0], level = layouts[l][1];
                cr_assert_eq(coll_json_dump_at(&ref, ev[stop], indent, level), 0);
                cr_assert_eq(coll_event_text(&fast, &d.proc, d.hdr.pid, &sp, "fallback-host",
                                             stop, indent, level, stop ? &et : NULL, level + 1),
                             0);
                same_bytes("events", fast.p, fast.len, ref.p, ref.len);
                if (stop) {
                    json_t *e = json_object_get(json_object_get(ev[1], "info"), "etype");
                    struct coll_buf r2;
                    coll_buf_init(&r2);
                    if (e)
                        cr_assert_eq(coll_json_dump_at(&r2, e, indent, level + 1), 0);
                    else
                        coll_buf_adds(&r2, "\"None\"");
                    same_bytes("exception values", et.p, et.len, r2.p, r2.len);
                    coll_buf_free(&r2);
                }
                coll_buf_free(&ref);
                coll_buf_free(&fast);
                coll_buf_free(&et);
            }
        }
        json_decref(ev[0]);
        json_decref(ev[1]);
    }
}

/* The reference Redis values of a datagram: the events of each span,
 * start then stop, spans by stop time (oldest first), later start first,
 * datagram order; as "<key>\n<value>\n" lines. */
struct rref {
    json_t *start, *stop;
    char key[64];
    int64_t stop_us, start_us;
    unsigned i;
};

static int64_t ev_us(json_t *e)
{
    json_t *t = json_object_get(e, "timestamp");
    int64_t us = 0;
    cr_assert_eq(coll_ts_parse(json_string_value(t), json_string_length(t), &us), 0);
    return us;
}

static int rref_cmp(const void *a, const void *b)
{
    const struct rref *x = a, *y = b;
    if (x->stop_us != y->stop_us)
        return x->stop_us < y->stop_us ? -1 : 1;
    if (x->start_us != y->start_us)
        return x->start_us > y->start_us ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static void check_redis(const struct coll_dec *d0)
{
    struct coll_dec d = *d0;
    struct coll_span sp;
    struct rref *v = calloc(d.hdr.nrec + 1, sizeof *v);
    unsigned n = 0;
    while (coll_decode_next(&d, &sp)) {
        cr_assert_eq(coll_events_build(&d.proc, d.hdr.pid, &sp, "fallback-host", &v[n].start,
                                       &v[n].stop),
                     0);
        char id[37];
        coll_uuid_fmt(sp.hdr.base_id, id);
        snprintf(v[n].key, sizeof v[n].key, "osprofiler_opt:%s", id);
        v[n].start_us = ev_us(v[n].start);
        v[n].stop_us = ev_us(v[n].stop ? v[n].stop : v[n].start);
        v[n].i = n;
        n++;
    }
    qsort(v, n, sizeof *v, rref_cmp);
    struct coll_buf ref, fast, val;
    coll_buf_init(&ref);
    coll_buf_init(&fast);
    coll_buf_init(&val);
    size_t nref = 0, nfast = 0;
    for (unsigned i = 0; i < n; i++)
        for (int s = 0; s < 2; s++) {
            json_t *e = s ? v[i].stop : v[i].start;
            if (!e)
                continue;
            coll_buf_reset(&val);
            cr_assert_eq(coll_json_dump(&val, e, COLL_JSON_COMPACT), 0);
            coll_buf_printf(&ref, "*3\r\n$5\r\nLPUSH\r\n$%zu\r\n%s\r\n$%zu\r\n", strlen(v[i].key),
                            v[i].key, val.len);
            coll_buf_add(&ref, val.p, val.len);
            coll_buf_add(&ref, "\r\n", 2);
            nref++;
        }
    cr_assert_eq(coll_redis_dgram_cmds(&fast, d0, "fallback-host", &nfast), 0);
    cr_assert_eq(nfast, nref);
    same_bytes("Redis commands", fast.p, fast.len, ref.p, ref.len);
    /* the same from a decoder whose own iteration is over (the daemon's) */
    coll_buf_reset(&fast);
    nfast = 0;
    cr_assert_eq(d.next_idx, d.hdr.nrec);
    cr_assert_eq(coll_redis_dgram_cmds(&fast, &d, "fallback-host", &nfast), 0);
    cr_assert_eq(nfast, nref);
    same_bytes("Redis commands (iterated decoder)", fast.p, fast.len, ref.p, ref.len);
    for (unsigned i = 0; i < n; i++) {
        json_decref(v[i].start);
        json_decref(v[i].stop);
    }
    free(v);
    coll_buf_free(&ref);
    coll_buf_free(&fast);
    coll_buf_free(&val);
}

static void add_raw(struct coll_trace *t, const void *buf, size_t len)
{
    struct coll_dec d;
    struct coll_span sp;
    cr_assert_eq(coll_decode(&d, buf, len), 0, "%s", d.errstr);
    while (coll_decode_next(&d, &sp))
        cr_assert_eq(coll_raw_add(t, &d, &sp), 0);
}

/* The dump of `a` by the fast writer equals the reference's of `b` (the
 * same records).  Returns the dump (caller frees). */
static char *same_dump(struct coll_trace *a, struct coll_trace *b)
{
    struct coll_buf fast, ref;
    struct coll_report_ctx ctx;
    coll_buf_init(&fast);
    coll_buf_init(&ref);
    size_t held = coll_raw_count(a);
    cr_assert_eq(coll_trace_render(a, &fast, &ctx), 0, "%s", ctx.errstr);
    cr_assert_eq(coll_raw_count(a), held, "the fast path leaves the records held");
    cr_assert_eq(a->n, 0);
    cr_assert_eq(coll_trace_render_ref(b, &ref, &ctx), 0, "%s", ctx.errstr);
    same_bytes("dumps", fast.p, fast.len, ref.p, ref.len);
    coll_buf_free(&ref);
    return fast.p;
}

Test(collector_dumptext, generated_traces_match_the_reference)
{
    static struct wb w;
    size_t dumps = 0;
    for (uint64_t seed = 1; seed <= 400; seed++) {
        rng = seed * 0x9e3779b97f4a7c15ull;
        struct gen g = {(uint32_t)(0x10000 + seed), 2 + (int)pick(30), 0};
        if (seed % 50 == 0)
            g.shape = 1 + (int)(seed / 50 % 2);
        struct coll_trace *a = coll_trace_new("t"), *b = coll_trace_new("t");
        int nd = 1 + (int)pick(4);
        for (int k = 0; k < nd; k++) {
            size_t len = gen_dgram(&w, &g, k);
            struct coll_dec d;
            cr_assert_eq(coll_decode(&d, w.buf, len), 0, "seed %" PRIu64 ": %s", seed,
                         d.errstr);
            if (k == 0 && seed % 4 == 0) {
                check_events(&d);
                check_redis(&d);
            }
            add_raw(a, w.buf, len);
            add_raw(b, w.buf, len);
        }
        if (seed % 7 == 0) { /* written early / cut elsewhere: the marker */
            a->early_open = b->early_open = 1 + seed % 3;
            a->early_age = b->early_age = seed % 2;
        }
        if (seed % 11 == 0) { /* a limit that the held records stay within */
            a->max_spans = b->max_spans = coll_raw_count(a) + pick(3);
        }
        free(same_dump(a, b));
        dumps++;
        coll_trace_free(a);
        coll_trace_free(b);
    }
    cr_assert_eq(dumps, 400);
}

Test(collector_dumptext, every_event_of_many_records)
{
    static struct wb w;
    for (uint64_t seed = 1000; seed < 1300; seed++) {
        rng = seed * 0x2545f4914f6cdd1dull;
        struct gen g = {(uint32_t)seed, 8, 0};
        size_t len = gen_dgram(&w, &g, 0);
        struct coll_dec d;
        cr_assert_eq(coll_decode(&d, w.buf, len), 0, "%s", d.errstr);
        check_events(&d);
        check_redis(&d);
    }
}

Test(collector_dumptext, deep_and_wide_trees)
{
    static struct wb w;
    for (int shape = 1; shape <= 2; shape++) {
        rng = 77 + (uint64_t)shape;
        struct gen g = {0xdee9u + (uint32_t)shape, 1, shape};
        struct coll_trace *a = coll_trace_new("d"), *b = coll_trace_new("d");
        for (int k = 0; k < 25; k++) { /* 1000 spans: a chain 1000 deep, or 1000 wide */
            size_t len = gen_dgram(&w, &g, k);
            add_raw(a, w.buf, len);
            add_raw(b, w.buf, len);
        }
        cr_assert_eq(coll_raw_count(a), 1000);
        free(same_dump(a, b));
        coll_trace_free(a);
        coll_trace_free(b);
    }
}

Test(collector_dumptext, too_deep_fails_like_the_reference)
{
    /* A chain of 2100 spans nests beyond COLL_JSON_MAX_DEPTH: both paths
     * refuse (out of memory), neither writes a broken dump. */
    static struct wb w;
    rng = 5;
    struct gen g = {0xdee7u, 1, 1};
    struct coll_trace *a = coll_trace_new("d"), *b = coll_trace_new("d");
    for (int k = 0; k < 53; k++) {
        size_t len = gen_dgram(&w, &g, k);
        add_raw(a, w.buf, len);
        add_raw(b, w.buf, len);
    }
    struct coll_buf x, y;
    struct coll_report_ctx c1, c2;
    coll_buf_init(&x);
    coll_buf_init(&y);
    cr_assert_eq(coll_trace_render(a, &x, &c1), -1);
    cr_assert_eq(coll_trace_render_ref(b, &y, &c2), -1);
    cr_assert_eq(c1.err, COLL_REPORT_ENOMEM);
    cr_assert_eq(c2.err, COLL_REPORT_ENOMEM);
    coll_buf_free(&x);
    coll_buf_free(&y);
    coll_trace_free(a);
    coll_trace_free(b);
}

Test(collector_dumptext, only_held_records_take_the_fast_path)
{
    static struct wb w;
    rng = 99;
    struct gen g = {0xfa57u, 6, 2}; /* 40 records */
    size_t len = gen_dgram(&w, &g, 0);
    struct coll_buf out;
    coll_buf_init(&out);
    struct coll_trace *t = coll_trace_new("f");
    cr_assert_eq(coll_dump_text(t, &out, NULL), 1, "no records");
    add_raw(t, w.buf, len);
    t->max_spans = coll_raw_count(t) - 1;
    cr_assert_eq(coll_dump_text(t, &out, NULL), 1, "more records than the limit");
    t->max_spans = 0;
    cr_assert_eq(coll_trace_realize(t), 0);
    add_raw(t, w.buf, len);
    cr_assert_eq(coll_dump_text(t, &out, NULL), 1, "realized spans");
    cr_assert_eq(out.len, 0);
    coll_buf_free(&out);
    coll_trace_free(t);
}

Test(collector_dumptext, resumed_and_merged_traces)
{
    /* The daemon's paths: a trace resumed from the journal (its datagram
     * entries held again) is written fast; its dump re-read and merged with
     * later records (the reference path) equals every record rendered by
     * the reference; a trace with span lines (events) and records after. */
    static struct wb w1, w2;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        rng = seed * 31337u;
        struct gen g = {(uint32_t)(0x3e000 + seed), 3 + (int)pick(10), 3};
        size_t l1 = gen_dgram(&w1, &g, 0), l2 = gen_dgram(&w2, &g, 1);
        struct coll_trace *a = coll_trace_new("r"), *b = coll_trace_new("r");
        add_raw(a, w1.buf, l1);
        add_raw(b, w1.buf, l1);
        char *dump = same_dump(a, b);
        /* merge: load the dump, merge held records of the next datagram */
        struct coll_trace *m = coll_trace_new("r"), *later = coll_trace_new("r"),
                          *all = coll_trace_new("r");
        char err[160];
        cr_assert_geq(coll_trace_load_dump(m, dump, strlen(dump), err, sizeof err), 0, "%s",
                      err);
        add_raw(later, w2.buf, l2);
        cr_assert_geq(coll_trace_merge(m, later), 0);
        add_raw(all, w1.buf, l1);
        add_raw(all, w2.buf, l2);
        struct coll_buf x, y;
        struct coll_report_ctx ctx;
        coll_buf_init(&x);
        coll_buf_init(&y);
        cr_assert_eq(coll_trace_render(m, &x, &ctx), 0, "%s", ctx.errstr);
        cr_assert_eq(coll_trace_render_ref(all, &y, &ctx), 0, "%s", ctx.errstr);
        /* (no parent cycles: those are not in a dump) */
        same_bytes("merged dumps", x.p, x.len, y.p, y.len);
        coll_buf_free(&x);
        coll_buf_free(&y);
        free(dump);
        coll_trace_free(a);
        coll_trace_free(b);
        coll_trace_free(m);
        coll_trace_free(later);
        coll_trace_free(all);
    }
}

/* ---- the string escaper the fast writers share, against Python's rules
 * written out independently: every byte value alone, and multi-byte cases. */
static void expect_string(const char *in, size_t len, const char *want)
{
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_json_string(&b, in, len), 0);
    cr_assert_str_eq(b.p, want);
    coll_buf_free(&b);
}

Test(collector_dumptext, string_escapes_every_byte)
{
    for (unsigned c = 0; c < 256; c++) {
        char in[3] = {'a', (char)c, 'z'}, want[16];
        if (c == '"')
            strcpy(want, "\"a\\\"z\"");
        else if (c == '\\')
            strcpy(want, "\"a\\\\z\"");
        else if (c == '\n')
            strcpy(want, "\"a\\nz\"");
        else if (c == '\r')
            strcpy(want, "\"a\\rz\"");
        else if (c == '\t')
            strcpy(want, "\"a\\tz\"");
        else if (c == '\b')
            strcpy(want, "\"a\\bz\"");
        else if (c == '\f')
            strcpy(want, "\"a\\fz\"");
        else if (c < 0x20 || c == 0x7f)
            snprintf(want, sizeof want, "\"a\\u%04xz\"", c);
        else if (c >= 0x80) /* alone, never valid UTF-8 */
            strcpy(want, "\"a\\ufffdz\"");
        else
            snprintf(want, sizeof want, "\"a%cz\"", (char)c);
        expect_string(in, 3, want);
    }
    expect_string("\xe2\x80\xa8", 3, "\"\\u2028\"");
    expect_string("\xf0\x9f\x98\x80", 4, "\"\\ud83d\\ude00\"");
    expect_string("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");
    expect_string("\xe2\x80", 2, "\"\\ufffd\"");
    expect_string("a\0b", 3, "\"a\\u0000b\"");
}

Test(collector_dumptext, records_with_many_fields)
{
    /* Up to the info limit (2048 bytes): hundreds of tiny fields, dotted
     * collisions among them, some of them the stop event's. */
    static struct wb w;
    static const int counts[] = {64, 250};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        uint8_t base[16], id[16];
        wb_id(base, 0x3a11, 0);
        wb_id(id, 0x3a11, 1);
        wb_begin(&w, LDPROF_MSG_SPANS, 7, 0);
        wb_proc(&w, "host", "h");
        wb_span_begin(&w, LDPROF_KIND_DB, 0, base, id, base, T0, T0 + 5000);
        for (int k = 0; k < counts[c]; k++) {
            char key[16];
            snprintf(key, sizeof key, k % 3 ? "%c.%c" : "%c", 'a' + k % 26, 'a' + k % 7);
            wb_str(&w, k % 5 == 0 ? LDPROF_TLV_STOP : 0, k % 50 == 0 ? "etype" : key, "");
        }
        wb_span_end(&w);
        size_t len = wb_finish(&w);
        struct coll_dec d;
        cr_assert_eq(coll_decode(&d, w.buf, len), 0, "%s", d.errstr);
        check_events(&d);
        check_redis(&d);
        struct coll_trace *a = coll_trace_new("m"), *b = coll_trace_new("m");
        add_raw(a, w.buf, len);
        add_raw(b, w.buf, len);
        free(same_dump(a, b));
        coll_trace_free(a);
        coll_trace_free(b);
    }
}

Test(collector_dumptext, escaped_keys_at_every_buffer_fill)
{
    /* Keys that need escapes (from their first byte, from a later one),
     * written into a buffer already holding 0..600 bytes: wherever the
     * escaped form makes the buffer grow, the fast text stays the
     * reference's. */
    static struct wb w;
    uint8_t base[16], id[16];
    wb_id(base, 0x3a12, 0);
    wb_id(id, 0x3a12, 1);
    wb_begin(&w, LDPROF_MSG_SPANS, 7, 0);
    wb_proc(&w, "host", "h");
    wb_span_begin(&w, LDPROF_KIND_DB, 0, base, id, base, T0, T0 + 5000);
    wb_str(&w, 0, "x\"q", "v");
    wb_str(&w, 0, "\\lead", "v");
    wb_json(&w, 0, "j", "{\"\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac"
                        "\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\": 1, "
                        "\"ab\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac"
                        "\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\": 2}");
    wb_span_end(&w);
    size_t len = wb_finish(&w);
    struct coll_dec d;
    cr_assert_eq(coll_decode(&d, w.buf, len), 0, "%s", d.errstr);
    struct coll_span sp;
    cr_assert(coll_decode_next(&d, &sp));
    json_t *ev[2];
    cr_assert_eq(coll_events_build(&d.proc, d.hdr.pid, &sp, "h", &ev[0], &ev[1]), 0);
    for (int indent = COLL_JSON_COMPACT; indent <= 2; indent += 3) {
        for (size_t pad = 0; pad <= 600; pad++) {
            struct coll_buf ref, fast;
            coll_buf_init(&fast);
            coll_buf_init(&ref);
            for (size_t i = 0; i < pad; i++) {
                coll_buf_putc(&fast, 'x');
                coll_buf_putc(&ref, 'x');
            }
            cr_assert_eq(coll_json_dump_at(&ref, ev[0], indent, 0), 0);
            cr_assert_eq(coll_event_text(&fast, &d.proc, d.hdr.pid, &sp, "h", 0, indent, 0,
                                         NULL, 0),
                         0);
            same_bytes("events", fast.p, fast.len, ref.p, ref.len);
            coll_buf_free(&ref);
            coll_buf_free(&fast);
        }
    }
    json_decref(ev[0]);
    json_decref(ev[1]);
}
