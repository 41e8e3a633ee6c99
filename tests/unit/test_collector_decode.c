/*
 * test_collector_decode.c - collector/decode.c: good datagrams, one test per
 * kind of bad datagram, and bounded fuzz-style loops (every prefix, random
 * byte flips with and without a consistent header, random garbage) run on a
 * buffer that ends at a PROT_NONE page, so any read past the datagram
 * crashes the test even without ASan.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "collector/decode.h"
#include "collector/events.h"
#include "wire_build.h"

TestSuite(collector_decode);

static struct wb B;
static uint8_t BASE[16], T1[16], T2[16];

#define T0 1704164645000100000ull

/* A good datagram: process block + two spans with every TLV type. */
static size_t build_good(struct wb *b)
{
    wb_id(BASE, 0x5ca1ab1e, 0);
    wb_id(T1, 0xaaaaaaaa, 10);
    wb_id(T2, 0xcccccccc, 12);
    wb_begin(b, LDPROF_MSG_SPANS, 4242, 7);
    wb_proc(b, "host", "host-a");
    wb_proc(b, "service", "demo-api");
    wb_proc(b, "project", "demo");
    wb_proc(b, "exe", "/usr/bin/zaqard");
    wb_span_begin(b, LDPROF_KIND_WSGI, 0, BASE, T1, BASE, T0, T0 + 50800000);
    wb_str(b, 0, "request.path", "/v2/queues");
    wb_str(b, 0, "request.method", "GET");
    wb_int(b, LDPROF_TLV_STOP, "response.status", 200);
    wb_span_end(b);
    wb_span_begin(b, LDPROF_KIND_DB, LDPROF_SPAN_ERROR, BASE, T2, T1, T0 + 1000, T0 + 2000);
    wb_str(b, 0, "db.statement", "SELECT 1");
    wb_json(b, 0, "db.params", "[1, \"x\", {\"a\": null}]");
    wb_str(b, LDPROF_TLV_STOP, "etype", "OSError");
    wb_span_end(b);
    return wb_finish(b);
}

/* Offsets inside build_good()'s datagram. */
static size_t proc_len(const struct wb *b)
{
    return (size_t)b->buf[20] | (size_t)b->buf[21] << 8;
}
static size_t rec0(const struct wb *b)
{
    return 32 + proc_len(b);
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int decode_err(const void *buf, size_t len)
{
    struct coll_dec d;
    int rc = coll_decode(&d, buf, len);
    cr_assert((rc == 0) == (d.err == COLL_DEC_OK));
    if (rc < 0)
        cr_assert(d.errstr[0] != '\0', "errstr set for %s", coll_dec_reason(d.err));
    return d.err;
}

#define must_fail(buf, len, code)                                                          \
    do {                                                                                   \
        int e_ = decode_err(buf, len);                                                     \
        cr_assert_eq(e_, code, "want %s, got %s", coll_dec_reason(code), coll_dec_reason(e_)); \
    } while (0)

/* ------------------------------------------------------------ good */

Test(collector_decode, good_datagram)
{
    size_t len = build_good(&B);
    struct coll_dec d;
    cr_assert_eq(coll_decode(&d, B.buf, len), 0, "%s", d.errstr);
    cr_assert_eq(d.hdr.pid, 4242);
    cr_assert_eq(d.hdr.nrec, 2);
    cr_assert_eq(d.hdr.dropped, 7);
    cr_assert_eq(d.proc.host.len, 6);
    cr_assert(memcmp(d.proc.host.p, "host-a", 6) == 0);
    cr_assert(memcmp(d.proc.service.p, "demo-api", 8) == 0);
    cr_assert(memcmp(d.proc.project.p, "demo", 4) == 0);
    cr_assert(memcmp(d.proc.exe.p, "/usr/bin/zaqard", 15) == 0);

    struct coll_span sp;
    cr_assert_eq(coll_decode_next(&d, &sp), 1);
    cr_assert_eq(sp.hdr.kind, LDPROF_KIND_WSGI);
    cr_assert_eq(sp.hdr.start_ns, T0);
    cr_assert_eq(sp.hdr.end_ns, T0 + 50800000);
    cr_assert(memcmp(sp.hdr.trace_id, T1, 16) == 0);
    struct coll_tlv_iter it;
    struct coll_tlv t;
    coll_tlv_begin(&it, sp.info, sp.info_len);
    cr_assert_eq(coll_tlv_next(&it, &t), 1);
    cr_assert_eq(t.type, LDPROF_TLV_STR);
    cr_assert_eq(t.stop, 0);
    cr_assert_eq(t.key.len, 12);
    cr_assert(memcmp(t.key.p, "request.path", 12) == 0);
    cr_assert_eq(t.vlen, 10);
    cr_assert_eq(coll_tlv_next(&it, &t), 1);
    cr_assert_eq(coll_tlv_next(&it, &t), 1);
    cr_assert_eq(t.type, LDPROF_TLV_INT);
    cr_assert_eq(t.stop, 1);
    cr_assert_eq(t.ival, 200);
    cr_assert_eq(coll_tlv_next(&it, &t), 0);

    cr_assert_eq(coll_decode_next(&d, &sp), 1);
    cr_assert_eq(sp.hdr.kind, LDPROF_KIND_DB);
    cr_assert_eq(sp.hdr.flags, LDPROF_SPAN_ERROR);
    cr_assert_eq(coll_decode_next(&d, &sp), 0);
    cr_assert_eq(coll_decode_next(&d, &sp), 0);

    /* a second iteration, d's own being over: the same records */
    struct coll_dec again;
    cr_assert_eq(coll_decode(&again, B.buf, len), 0);
    struct coll_dec_pos pos;
    struct coll_span a, b;
    int n = 0;
    coll_decode_first(&d, &pos);
    while (coll_decode_next_at(&d, &pos, &a)) {
        cr_assert_eq(coll_decode_next(&again, &b), 1);
        cr_assert(memcmp(&a.hdr, &b.hdr, sizeof a.hdr) == 0);
        cr_assert_eq(a.info, b.info);
        cr_assert_eq(a.info_len, b.info_len);
        n++;
    }
    cr_assert_eq(n, 2);
    cr_assert_eq(coll_decode_next_at(&d, &pos, &a), 0);
    cr_assert_eq(coll_decode_next(&d, &sp), 0);
}

Test(collector_decode, stats_message_and_empty_batch)
{
    wb_begin(&B, LDPROF_MSG_STATS, 9, 123456789012ull);
    wb_proc(&B, "service", "svc");
    size_t len = wb_finish(&B);
    struct coll_dec d;
    cr_assert_eq(coll_decode(&d, B.buf, len), 0, "%s", d.errstr);
    cr_assert_eq(d.hdr.type, LDPROF_MSG_STATS);
    cr_assert_eq(d.hdr.dropped, 123456789012ull);
    struct coll_span sp;
    cr_assert_eq(coll_decode_next(&d, &sp), 0);

    wb_begin(&B, LDPROF_MSG_SPANS, 9, 0); /* no process block, no records */
    len = wb_finish(&B);
    cr_assert_eq(len, 32);
    cr_assert_eq(coll_decode(&d, B.buf, len), 0, "%s", d.errstr);
    cr_assert_null(d.proc.host.p);
}

Test(collector_decode, unknown_process_keys_are_ignored)
{
    wb_begin(&B, LDPROF_MSG_STATS, 1, 0);
    wb_proc(&B, "future.key", "x");
    wb_int(&B, 0, "ppid", 1); /* non-string unknown key: fine too */
    wb_proc(&B, "host", "h");
    size_t len = wb_finish(&B);
    struct coll_dec d;
    cr_assert_eq(coll_decode(&d, B.buf, len), 0, "%s", d.errstr);
    cr_assert_eq(d.proc.host.len, 1);
}

Test(collector_decode, every_kind_and_limits)
{
    uint8_t id[16];
    wb_id(id, 1, 1);
    wb_begin(&B, LDPROF_MSG_SPANS, 1, 0);
    for (int k = 1; k <= LDPROF_KIND_MAX; k++) {
        wb_span_begin(&B, (uint8_t)k, 0, id, id, id, 5, 6);
        wb_span_end(&B);
    }
    size_t len = wb_finish(&B);
    cr_assert_eq(decode_err(B.buf, len), COLL_DEC_OK);

    /* the biggest info block and a datagram of exactly the maximum size */
    static char val[LDPROF_WIRE_MAX_INFO];
    memset(val, 'v', sizeof val);
    wb_begin(&B, LDPROF_MSG_SPANS, 1, 0);
    size_t used = 32;
    while (used + 80 + LDPROF_WIRE_MAX_INFO <= LDPROF_WIRE_MAX_DGRAM) {
        wb_span_begin(&B, 1, 0, id, id, id, 5, 6);
        wb_tlv(&B, LDPROF_TLV_STR, "k", val, LDPROF_WIRE_MAX_INFO - 5);
        wb_span_end(&B);
        used += 80 + LDPROF_WIRE_MAX_INFO;
    }
    size_t rest = LDPROF_WIRE_MAX_DGRAM - used; /* fill up with one last span */
    cr_assert_geq(rest, 85);
    wb_span_begin(&B, 1, 0, id, id, id, 5, 6);
    wb_tlv(&B, LDPROF_TLV_STR, "k", val, rest - 80 - 5);
    wb_span_end(&B);
    len = wb_finish(&B);
    cr_assert_eq(len, LDPROF_WIRE_MAX_DGRAM);
    cr_assert_eq(decode_err(B.buf, len), COLL_DEC_OK);
}

/* ------------------------------------------------------------ bad: header */

Test(collector_decode, short_header)
{
    size_t len = build_good(&B);
    (void)len;
    must_fail(B.buf, 0, COLL_DEC_ESHORT);
    must_fail(B.buf, 31, COLL_DEC_ESHORT);
    must_fail(NULL, 0, COLL_DEC_ESHORT);
}

Test(collector_decode, big_endian_magic)
{
    size_t len = build_good(&B);
    put32(B.buf, __builtin_bswap32(LDPROF_WIRE_MAGIC));
    must_fail(B.buf, len, COLL_DEC_EENDIAN);
}

Test(collector_decode, bad_magic)
{
    size_t len = build_good(&B);
    put32(B.buf, 0);
    must_fail(B.buf, len, COLL_DEC_EMAGIC);
    memcpy(B.buf, "GET ", 4);
    must_fail(B.buf, len, COLL_DEC_EMAGIC);
}

Test(collector_decode, bad_version)
{
    size_t len = build_good(&B);
    put16(B.buf + 4, 2);
    must_fail(B.buf, len, COLL_DEC_EVERSION);
    put16(B.buf + 4, 0);
    must_fail(B.buf, len, COLL_DEC_EVERSION);
}

Test(collector_decode, bad_type)
{
    size_t len = build_good(&B);
    put16(B.buf + 6, 0);
    must_fail(B.buf, len, COLL_DEC_ETYPE);
    put16(B.buf + 6, 3);
    must_fail(B.buf, len, COLL_DEC_ETYPE);
}

Test(collector_decode, too_big)
{
    uint8_t id[16];
    wb_id(id, 1, 1);
    wb_begin(&B, LDPROF_MSG_SPANS, 1, 0);
    static char val[2000];
    memset(val, 'v', sizeof val);
    while (B.len <= LDPROF_WIRE_MAX_DGRAM) {
        wb_span_begin(&B, 1, 0, id, id, id, 5, 6);
        wb_tlv(&B, LDPROF_TLV_STR, "k", val, sizeof val);
        wb_span_end(&B);
    }
    size_t len = wb_finish(&B);
    must_fail(B.buf, len, COLL_DEC_ETOOBIG);
}

Test(collector_decode, length_mismatch)
{
    size_t len = build_good(&B);
    put32(B.buf + 8, (uint32_t)len + 1);
    must_fail(B.buf, len, COLL_DEC_ELEN);
    put32(B.buf + 8, (uint32_t)len - 1);
    must_fail(B.buf, len, COLL_DEC_ELEN);
    put32(B.buf + 8, 0xffffffffu);
    must_fail(B.buf, len, COLL_DEC_ELEN);
}

Test(collector_decode, reserved_fields)
{
    size_t len = build_good(&B);
    put16(B.buf + 22, 1);
    must_fail(B.buf, len, COLL_DEC_ERESERVED);
    len = build_good(&B);
    B.buf[rec0(&B) + 74] = 1;
    must_fail(B.buf, len, COLL_DEC_ERESERVED);
    len = build_good(&B);
    B.buf[rec0(&B) + 79] = 0x80;
    must_fail(B.buf, len, COLL_DEC_ERESERVED);
}

/* ------------------------------------------------------------ bad: process block */

Test(collector_decode, process_block)
{
    size_t len = build_good(&B);
    put16(B.buf + 20, (unsigned)(len - 32 + 1)); /* overruns the datagram */
    must_fail(B.buf, len, COLL_DEC_EPROC);

    len = build_good(&B);
    put16(B.buf + 20, (unsigned)proc_len(&B) - 1); /* cuts the last entry */
    must_fail(B.buf, len, COLL_DEC_EPROC);

    len = build_good(&B);
    B.buf[32] |= LDPROF_TLV_STOP; /* STOP makes no sense here */
    must_fail(B.buf, len, COLL_DEC_EPROC);

    len = build_good(&B);
    B.buf[32] = 9; /* bad type */
    must_fail(B.buf, len, COLL_DEC_EPROC);

    len = build_good(&B);
    B.buf[33] = 0; /* empty key */
    must_fail(B.buf, len, COLL_DEC_EPROC);

    wb_begin(&B, LDPROF_MSG_STATS, 1, 0);
    wb_int(&B, 0, "host", 5); /* a known key must be a string */
    len = wb_finish(&B);
    must_fail(B.buf, len, COLL_DEC_EPROC);

    wb_begin(&B, LDPROF_MSG_STATS, 1, 0);
    wb_tlv(&B, LDPROF_TLV_STR, "ho st", "x", 1);
    len = wb_finish(&B);
    must_fail(B.buf, len, COLL_DEC_EPROC);
}

/* ------------------------------------------------------------ bad: records */

Test(collector_decode, record_lengths)
{
    size_t len = build_good(&B);
    size_t r = rec0(&B);
    put16(B.buf + r, 79); /* shorter than the head */
    must_fail(B.buf, len, COLL_DEC_ERECLEN);

    len = build_good(&B);
    put16(B.buf + r, (unsigned)(B.buf[r] | B.buf[r + 1] << 8) + 1); /* != 80 + info_len */
    must_fail(B.buf, len, COLL_DEC_ERECLEN);

    len = build_good(&B);
    put16(B.buf + r + 72, LDPROF_WIRE_MAX_INFO + 1);
    put16(B.buf + r, 80 + LDPROF_WIRE_MAX_INFO + 1);
    must_fail(B.buf, len, COLL_DEC_ERECLEN);

    /* a consistent rec_len/info_len pair that runs past the datagram */
    len = build_good(&B);
    put16(B.buf + r + 72, 2000);
    put16(B.buf + r, 2080);
    must_fail(B.buf, len, COLL_DEC_ERECLEN);

    /* fewer than 80 bytes left for the second record head: keep the first
     * record and 30 bytes of the second, with a matching hdr.len */
    len = build_good(&B);
    size_t cut = r + (B.buf[r] | (size_t)B.buf[r + 1] << 8) + 30;
    put32(B.buf + 8, (uint32_t)cut);
    must_fail(B.buf, cut, COLL_DEC_ERECLEN);
}

Test(collector_decode, kind_range)
{
    unsigned bad[] = {0, LDPROF_KIND_MAX + 1, 255};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = build_good(&B);
        B.buf[rec0(&B) + 2] = (uint8_t)bad[i];
        must_fail(B.buf, len, COLL_DEC_EKIND);
    }
}

Test(collector_decode, unknown_flags)
{
    size_t len = build_good(&B);
    B.buf[rec0(&B) + 3] = 0x08;
    must_fail(B.buf, len, COLL_DEC_EFLAGS);
    B.buf[rec0(&B) + 3] = 0x80 | LDPROF_SPAN_ERROR;
    must_fail(B.buf, len, COLL_DEC_EFLAGS);
}

Test(collector_decode, zero_ids)
{
    for (int which = 0; which < 3; which++) {
        size_t len = build_good(&B);
        memset(B.buf + rec0(&B) + 8 + 16 * which, 0, 16);
        must_fail(B.buf, len, COLL_DEC_EIDS);
    }
}

Test(collector_decode, unfinished_times)
{
    size_t len = build_good(&B);
    B.buf[rec0(&B) + 3] = LDPROF_SPAN_UNFINISHED; /* but end_ns != start_ns */
    must_fail(B.buf, len, COLL_DEC_ETIME);
    memcpy(B.buf + rec0(&B) + 64, B.buf + rec0(&B) + 56, 8);
    cr_assert_eq(decode_err(B.buf, len), COLL_DEC_OK);
}

/* ------------------------------------------------------------ bad: info TLVs */

static size_t one_span_with(void (*add)(struct wb *))
{
    uint8_t id[16];
    wb_id(id, 1, 1);
    wb_begin(&B, LDPROF_MSG_SPANS, 1, 0);
    wb_span_begin(&B, 1, 0, id, id, id, 5, 6);
    add(&B);
    wb_span_end(&B);
    return wb_finish(&B);
}

static void add_type0(struct wb *b) { wb_tlv(b, 0, "k", "v", 1); }
static void add_type4(struct wb *b) { wb_tlv(b, 4, "k", "v", 1); }
static void add_type_stop_only(struct wb *b) { wb_tlv(b, LDPROF_TLV_STOP, "k", "v", 1); }
static void add_type_flag40(struct wb *b) { wb_tlv(b, 0x40 | LDPROF_TLV_STR, "k", "v", 1); }
static void add_emptykey(struct wb *b) { wb_tlv(b, LDPROF_TLV_STR, "", "v", 1); }
static void add_spacekey(struct wb *b) { wb_tlv(b, LDPROF_TLV_STR, "a b", "v", 1); }
static void add_dotkey1(struct wb *b) { wb_tlv(b, LDPROF_TLV_STR, ".a", "v", 1); }
static void add_dotkey2(struct wb *b) { wb_tlv(b, LDPROF_TLV_STR, "a.", "v", 1); }
static void add_dotkey3(struct wb *b) { wb_tlv(b, LDPROF_TLV_STR, "a..b", "v", 1); }
static void add_ctlkey(struct wb *b) { wb_tlv(b, LDPROF_TLV_STR, "a\x01", "v", 1); }
static void add_hikey(struct wb *b) { wb_tlv(b, LDPROF_TLV_STR, "caf\xc3\xa9", "v", 1); }
static void add_int7(struct wb *b) { wb_tlv(b, LDPROF_TLV_INT, "n", "1234567", 7); }
static void add_int9(struct wb *b) { wb_tlv(b, LDPROF_TLV_INT, "n", "123456789", 9); }
static void add_badjson1(struct wb *b) { wb_json(b, 0, "j", "{\"a\": }"); }
static void add_badjson2(struct wb *b) { wb_json(b, 0, "j", ""); }
static void add_badjson3(struct wb *b) { wb_json(b, 0, "j", "[1] [2]"); }
static void add_badjson4(struct wb *b) { wb_json(b, 0, "j", "\"\xff\""); }
static void add_partial_head(struct wb *b)
{
    wb_str(b, 0, "k", "v");
    wb_tlv(b, LDPROF_TLV_STR, "x", "", 0);
    /* chop the last entry down to 2 bytes: rec/info lengths follow */
    b->len -= 3;
    size_t info = b->len - b->rec_off - 80;
    wb_le(b->buf + b->rec_off, 80 + info, 2);
    wb_le(b->buf + b->rec_off + 72, info, 2);
}
static void add_overrun(struct wb *b)
{
    wb_str(b, 0, "k", "value");
    wb_le(b->buf + b->len - 5 - 1 - 2, 6, 2); /* vlen 6 > 5 bytes present */
}

Test(collector_decode, bad_tlvs)
{
    void (*bad[])(struct wb *) = {add_type0,    add_type4,      add_type_stop_only,
                                  add_type_flag40, add_emptykey, add_spacekey,
                                  add_dotkey1,  add_dotkey2,    add_dotkey3,
                                  add_ctlkey,   add_hikey,      add_int7,
                                  add_int9,     add_badjson1,   add_badjson2,
                                  add_badjson3, add_badjson4,   add_partial_head,
                                  add_overrun};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = one_span_with(bad[i]);
        int e = decode_err(B.buf, len);
        cr_assert_eq(e, COLL_DEC_ETLV, "case %zu: got %s", i, coll_dec_reason(e));
    }
}

/* Keys found valid are remembered for the rest of the datagram (decode.c
 * key_ok_cached): a bad key that looks like a remembered one (same length,
 * same first or last 8 bytes, the same bytes plus a NUL) must still be
 * refused, in a late record, wherever the good one came first. */
static void tlv_key(struct wb *b, const char *key, size_t klen)
{
    uint8_t h[4] = {LDPROF_TLV_STR, (uint8_t)klen, 1, 0};
    wb_put(b, h, 4);
    wb_put(b, key, klen);
    wb_put(b, "v", 1);
    size_t info = b->len - b->rec_off - sizeof(struct ldprof_wire_span);
    wb_le(b->buf + b->rec_off + 0, sizeof(struct ldprof_wire_span) + info, 2);
    wb_le(b->buf + b->rec_off + 72, info, 2);
}

static size_t spans_with_keys(const char *good, const char *last, size_t last_len)
{
    uint8_t id[16];
    wb_id(id, 1, 1);
    wb_begin(&B, LDPROF_MSG_SPANS, 1, 0);
    wb_proc(&B, "service", "svc");
    for (int r = 0; r < 3; r++) {
        wb_span_begin(&B, 1, 0, id, id, id, 5, 6);
        wb_str(&B, 0, "other.key", "x");
        if (r < 2)
            tlv_key(&B, good, strlen(good));
        else
            tlv_key(&B, last, last_len);
        wb_span_end(&B);
    }
    return wb_finish(&B);
}

Test(collector_decode, key_cache_never_accepts_a_bad_key)
{
    static const struct {
        const char *good, *bad;
        size_t bad_len;
    } c[] = {
        {"request.path", "request.pa h", 12},    /* same first word */
        {"request.path", "re\x7fuest.path", 12}, /* same last word */
        {"request.path", "request..ath", 12},
        {"a.b", "a.b\0", 4}, /* same bytes, zero padded alike */
        {"a.b", "a.b.", 4},
        {"a", "a\0\0\0\0\0\0\0", 8},
        {"abcdefg.ijklmnop", "abcdefg..jklmnop", 16},
        {"abcdefgh", "abcdefgh\0", 9},
        {"service.instance.request.id", "service.instance.req est.id", 27},
        {"service.instance.request.id", "service.instance..equest.id", 27},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        size_t len = spans_with_keys(c[i].good, c[i].good, strlen(c[i].good));
        cr_assert_eq(decode_err(B.buf, len), COLL_DEC_OK, "case %zu: good key refused", i);
        len = spans_with_keys(c[i].good, c[i].bad, c[i].bad_len);
        struct coll_dec d;
        cr_assert_eq(coll_decode(&d, B.buf, len), -1, "case %zu: bad key accepted", i);
        cr_assert_eq(d.err, COLL_DEC_ETLV, "case %zu: %s", i, coll_dec_reason(d.err));
        cr_assert(strstr(d.errstr, "record 2: field 1: bad key"), "case %zu: %s", i, d.errstr);
    }
}

static void add_good_json(struct wb *b)
{
    wb_json(b, 0, "a", "null");
    wb_json(b, 0, "b", " {\"x\": [1, 2.5, true, \"\\u0000\"]} ");
    wb_str(b, 0, "c", "raw \xff bytes are fine in STR");
    wb_int(b, LDPROF_TLV_STOP, "d", -1);
    wb_tlv(b, LDPROF_TLV_STR, "e", "", 0);
}

Test(collector_decode, good_tlv_values)
{
    size_t len = one_span_with(add_good_json);
    cr_assert_eq(decode_err(B.buf, len), COLL_DEC_OK);
}

/* ------------------------------------------------------------ bad: record count */

Test(collector_decode, record_count)
{
    size_t len = build_good(&B);
    put32(B.buf + 16, 3);
    must_fail(B.buf, len, COLL_DEC_ENREC);
    put32(B.buf + 16, 1); /* second record is left over */
    must_fail(B.buf, len, COLL_DEC_ENREC);
    put32(B.buf + 16, 0xffffffffu);
    must_fail(B.buf, len, COLL_DEC_ENREC);

    wb_begin(&B, LDPROF_MSG_STATS, 1, 0);
    len = wb_finish(&B);
    put32(B.buf + 16, 1);
    must_fail(B.buf, len, COLL_DEC_ENREC);
    wb_begin(&B, LDPROF_MSG_STATS, 1, 0);
    wb_put(&B, "xx", 2); /* bytes after the (empty) process block */
    len = wb_finish(&B);
    put16(B.buf + 20, 0);
    must_fail(B.buf, len, COLL_DEC_ENREC);
}

Test(collector_decode, reason_names)
{
    for (int i = 0; i < COLL_DEC__COUNT; i++) {
        const char *r = coll_dec_reason(i);
        cr_assert(r && *r && strcmp(r, "unknown") != 0);
        for (const char *p = r; *p; p++)
            cr_assert((*p >= 'a' && *p <= 'z') || *p == '_', "%s", r);
    }
    cr_assert_str_eq(coll_dec_reason(-1), "unknown");
    cr_assert_str_eq(coll_dec_reason(COLL_DEC__COUNT), "unknown");
}

/* ------------------------------------------------------------ fuzz-style */

/* A buffer whose end touches a PROT_NONE page. */
struct guarded {
    uint8_t *map;
    size_t maplen;
};

static uint8_t *guarded_copy(struct guarded *g, const void *src, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t data_pages = (len + (size_t)pg - 1) / (size_t)pg + 1;
    g->maplen = (data_pages + 1) * (size_t)pg;
    g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(g->map, MAP_FAILED);
    uint8_t *guard = g->map + data_pages * (size_t)pg;
    cr_assert_eq(mprotect(guard, (size_t)pg, PROT_NONE), 0);
    uint8_t *p = guard - len;
    if (len)
        memcpy(p, src, len);
    return p;
}

static void guarded_free(struct guarded *g)
{
    munmap(g->map, g->maplen);
}

/* Decode, and when accepted walk everything and build the events, the way
 * the daemon does. */
static int exercise(const uint8_t *p, size_t len)
{
    struct coll_dec d;
    if (coll_decode(&d, p, len) < 0) {
        cr_assert_neq(d.err, COLL_DEC_OK);
        cr_assert_lt(strlen(d.errstr), sizeof d.errstr);
        return 0;
    }
    struct coll_span sp;
    unsigned n = 0;
    while (coll_decode_next(&d, &sp)) {
        struct coll_tlv_iter it;
        struct coll_tlv t;
        coll_tlv_begin(&it, sp.info, sp.info_len);
        while (coll_tlv_next(&it, &t))
            cr_assert(t.key.len >= 1);
        json_t *s = NULL, *e = NULL;
        cr_assert_eq(coll_events_build(&d.proc, d.hdr.pid, &sp, "fallback", &s, &e), 0);
        cr_assert_not_null(s);
        cr_assert_eq(e == NULL, (sp.hdr.flags & LDPROF_SPAN_UNFINISHED) != 0);
        json_decref(s);
        json_decref(e);
        n++;
    }
    cr_assert_eq(n, d.hdr.nrec);
    return 1;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

Test(collector_decode, every_prefix_is_rejected)
{
    size_t len = build_good(&B);
    for (size_t n = 0; n < len; n++) {
        struct guarded g;
        uint8_t *p = guarded_copy(&g, B.buf, n);
        cr_assert_eq(exercise(p, n), 0, "prefix of %zu bytes accepted", n);
        guarded_free(&g);
    }
    struct guarded g;
    uint8_t *p = guarded_copy(&g, B.buf, len);
    cr_assert_eq(exercise(p, len), 1);
    guarded_free(&g);
}

Test(collector_decode, every_prefix_with_fixed_length_is_rejected)
{
    /* same, but with hdr.len patched to the prefix length, so the checks
     * behind the length check see the cut */
    size_t len = build_good(&B);
    static uint8_t tmp[WB_CAP];
    for (size_t n = 32; n < len; n++) {
        memcpy(tmp, B.buf, n);
        put32(tmp + 8, (uint32_t)n);
        struct guarded g;
        uint8_t *p = guarded_copy(&g, tmp, n);
        cr_assert_eq(exercise(p, n), 0, "cut at %zu bytes accepted", n);
        guarded_free(&g);
    }
}

Test(collector_decode, random_flips, .timeout = 60)
{
    size_t len = build_good(&B);
    static uint8_t tmp[WB_CAP];
    struct guarded g;
    uint8_t *p = guarded_copy(&g, B.buf, len);
    unsigned accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(tmp, B.buf, len);
        int flips = 1 + (int)(rnd() % 4);
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t)(rnd() % len);
            if (rnd() % 2)
                tmp[at] ^= (uint8_t)(1u << (rnd() % 8));
            else
                tmp[at] = (uint8_t)rnd();
        }
        if (iter % 2) /* keep the header's own fields consistent half the time */
            memcpy(tmp, B.buf, 12);
        memcpy(p, tmp, len);
        accepted += (unsigned)exercise(p, len);
    }
    guarded_free(&g);
    cr_log_info("random_flips: %u of 20000 mutants accepted", accepted);
}

Test(collector_decode, random_cut_and_flip, .timeout = 60)
{
    size_t len = build_good(&B);
    static uint8_t tmp[WB_CAP];
    for (int iter = 0; iter < 5000; iter++) {
        size_t n = (size_t)(rnd() % (len + 1));
        memcpy(tmp, B.buf, len);
        for (int f = 0; f < 3; f++)
            tmp[rnd() % len] ^= (uint8_t)rnd();
        if (n >= 12) {
            memcpy(tmp, B.buf, 8);
            put32(tmp + 8, (uint32_t)n);
        }
        struct guarded g;
        uint8_t *p = guarded_copy(&g, tmp, n);
        exercise(p, n);
        guarded_free(&g);
    }
}

Test(collector_decode, random_garbage, .timeout = 60)
{
    static uint8_t tmp[4096];
    for (int iter = 0; iter < 5000; iter++) {
        size_t n = (size_t)(rnd() % sizeof tmp);
        for (size_t i = 0; i < n; i++)
            tmp[i] = (uint8_t)rnd();
        if (n >= 12 && iter % 2) { /* a valid-looking header over garbage */
            put32(tmp, LDPROF_WIRE_MAGIC);
            put16(tmp + 4, 1);
            put16(tmp + 6, 1 + (unsigned)(rnd() % 2));
            put32(tmp + 8, (uint32_t)n);
            if (n >= 24) {
                put16(tmp + 20, (unsigned)(rnd() % 64));
                put16(tmp + 22, 0);
                put32(tmp + 16, (uint32_t)(rnd() % 4));
            }
        }
        struct guarded g;
        uint8_t *p = guarded_copy(&g, tmp, n);
        exercise(p, n);
        guarded_free(&g);
    }
}
