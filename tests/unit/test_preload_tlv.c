/*
 * tests/unit/test_preload_tlv.c - the record encoder: TLV entries, span info
 * limits and truncation, the process block, datagram headers, and the
 * per-thread buffer's drop-and-count when full.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "ldprof/wire.h"
#include "preload/buffer.h"
#include "preload/span.h"

struct tp_span {
    int kind, flags;
    uint8_t base[16], trace[16], parent[16];
    uint64_t start, end;
    int nfields;
    char key[16][64];
    char val[16][2100];
    int stop[16];
};
extern void tp_setup(void);
extern int tp_collect(struct tp_span *out, int max);
extern const char *tp_field(const struct tp_span *s, const char *key, int stop);
extern int tp_kicks;

static void setup(void)
{
    tp_setup();
}

TestSuite(preload_tlv, .init = setup);

Test(preload_tlv, entry_layout_is_little_endian_type_klen_vlen)
{
    uint8_t buf[64];
    int n = ldprof_tlv_put(buf, sizeof(buf), LDPROF_TLV_STR | LDPROF_TLV_STOP, "request.path", 12,
                           "/v2", 3);

    cr_assert_eq(n, 4 + 12 + 3);
    cr_assert_eq(buf[0], 0x81);
    cr_assert_eq(buf[1], 12);
    cr_assert_eq(buf[2], 3);
    cr_assert_eq(buf[3], 0);
    cr_assert_eq(memcmp(buf + 4, "request.path/v2", 15), 0);
}

Test(preload_tlv, int_entry_and_empty_string)
{
    uint8_t buf[64];
    int64_t v = -2, back;

    cr_assert_eq(ldprof_tlv_put(buf, sizeof(buf), LDPROF_TLV_INT, "n", 1, &v, 8), 13);
    memcpy(&back, buf + 5, 8);
    cr_assert_eq(back, -2);
    cr_assert_eq(ldprof_tlv_put(buf, sizeof(buf), LDPROF_TLV_STR, "q", 1, "", 0), 5);
    cr_assert_eq(buf[2] | buf[3], 0);
}

Test(preload_tlv, limits_are_enforced)
{
    static uint8_t big[70000];
    char key[300];

    memset(key, 'k', sizeof(key));
    cr_assert_eq(ldprof_tlv_put(big, sizeof(big), LDPROF_TLV_STR, key, 0, "v", 1), -1, "empty key");
    cr_assert_eq(ldprof_tlv_put(big, sizeof(big), LDPROF_TLV_STR, key, 256, "v", 1), -1);
    cr_assert_eq(ldprof_tlv_put(big, sizeof(big), LDPROF_TLV_STR, key, 255, "v", 1), 260);
    cr_assert_eq(ldprof_tlv_put(big, sizeof(big), LDPROF_TLV_STR, "k", 1, big, 65536), -1);
    cr_assert_eq(ldprof_tlv_put(big, 9, LDPROF_TLV_STR, "k", 1, "abcde", 5), -1, "no room");
    cr_assert_eq(ldprof_tlv_put(big, 10, LDPROF_TLV_STR, "k", 1, "abcde", 5), 10, "exact fit");
}

Test(preload_tlv, span_info_is_capped_and_flagged_truncated)
{
    static const uint8_t id[16] = {1};
    struct ldprof_span *s = ldprof_span_open(LDPROF_KIND_NET, id, id, 0);
    static char val[3000];
    struct tp_span out[2];

    cr_assert_not_null(s);
    memset(val, 'x', sizeof(val));
    /* a multi-byte UTF-8 character straddling the cut must not be split */
    for (size_t i = 0; i + 1 < sizeof(val); i += 2) {
        val[i] = (char)0xc3;
        val[i + 1] = (char)0xa9;
    }
    cr_assert_eq(ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "a", "first", 5), 0);
    cr_assert_eq(ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "big", val, sizeof(val)), -1);
    cr_assert_eq(ldprof_span_add(s, LDPROF_FIELD_STOP, LDPROF_TLV_STR, "late", "x", 1), -1);
    cr_assert_leq(s->info_len, LDPROF_WIRE_MAX_INFO);
    ldprof_span_close(s, 0);
    cr_assert_eq(tp_collect(out, 2), 1);
    cr_assert(out[0].flags & LDPROF_SPAN_TRUNCATED);
    cr_assert_str_eq(tp_field(&out[0], "a", 0), "first");
    const char *big = tp_field(&out[0], "big", 0);
    cr_assert_not_null(big, "the long value is cut, not lost");
    cr_assert_eq(strlen(big) % 2, 0, "cut on a character boundary");
}

Test(preload_tlv, error_fields_go_to_the_stop_event)
{
    static const uint8_t id[16] = {2};
    struct ldprof_span *s = ldprof_span_open(LDPROF_KIND_WSGI, id, id, 0);
    struct tp_span out[2];

    ldprof_span_set_error(s, "ConnectionClosed", "gone");
    ldprof_span_close(s, 0);
    ldprof_span_close(s, 0); /* a second end is ignored */
    cr_assert_eq(tp_collect(out, 2), 1);
    cr_assert(out[0].flags & LDPROF_SPAN_ERROR);
    cr_assert_str_eq(tp_field(&out[0], "etype", 1), "ConnectionClosed");
    cr_assert_str_eq(tp_field(&out[0], "message", 1), "gone");
    cr_assert_null(tp_field(&out[0], "etype", 0));
}

Test(preload_tlv, process_block_leaves_out_an_empty_project)
{
    uint8_t pb[LDPROF_PROC_MAX];
    size_t n = ldprof_proc_block(pb, sizeof(pb), "host-a", "svc", "", "/usr/bin/x");
    size_t off = 0;
    int count = 0, saw_project = 0;

    while (off < n) {
        struct ldprof_wire_tlv t;
        memcpy(&t, pb + off, 4);
        cr_assert_eq(t.type, LDPROF_TLV_STR);
        if (t.klen == 7 && memcmp(pb + off + 4, "project", 7) == 0)
            saw_project = 1;
        off += 4 + t.klen + t.vlen;
        count++;
    }
    cr_assert_eq(off, n);
    cr_assert_eq(count, 3);
    cr_assert_not(saw_project);
    cr_assert_gt(ldprof_proc_block(pb, sizeof(pb), "h", "s", "p", "e"), n - 12);
}

Test(preload_tlv, process_block_never_exceeds_its_cap)
{
    static char longv[5000];
    uint8_t pb[LDPROF_PROC_MAX + 64];

    memset(longv, 'v', sizeof(longv) - 1);
    size_t n = ldprof_proc_block(pb, sizeof(pb), longv, longv, longv, longv);
    cr_assert_leq(n, LDPROF_PROC_MAX);
}

Test(preload_tlv, header_lengths)
{
    struct ldprof_wire_hdr h;

    ldprof_hdr_fill(&h, LDPROF_MSG_SPANS, 42, 3, 100, 1000, 7);
    cr_assert_eq(h.magic, LDPROF_WIRE_MAGIC);
    cr_assert_eq(h.version, LDPROF_WIRE_VERSION);
    cr_assert_eq(h.len, 32 + 100 + 1000);
    cr_assert_eq(h.nrec, 3);
    cr_assert_eq(h.proc_len, 100);
    cr_assert_eq(h.dropped, 7);
    cr_assert_eq(h.reserved, 0);
    cr_assert_leq(32 + LDPROF_PROC_MAX + LDPROF_BUF_CAP, LDPROF_WIRE_MAX_DGRAM,
                  "a full thread buffer fits one datagram");
}

Test(preload_tlv, full_buffer_drops_and_counts)
{
    static const uint8_t id[16] = {3};
    static char val[1500];
    uint64_t before = ldprof_buf_dropped();
    int recorded = 0;

    memset(val, 'y', sizeof(val));
    tp_kicks = 0;
    for (int i = 0; i < 100; i++) {
        struct ldprof_span *s = ldprof_span_open(LDPROF_KIND_NET, id, id, 0);
        ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_STR, "v", val, sizeof(val));
        ldprof_span_close(s, 0);
    }
    recorded = tp_collect(NULL, 0);
    cr_assert_lt(recorded, 100);
    cr_assert_eq(ldprof_buf_dropped() - before, (uint64_t)(100 - recorded));
    cr_assert_geq(tp_kicks, 1, "the flusher is woken when the buffer fills");
}

Test(preload_tlv, pool_exhaustion_drops_and_counts)
{
    static const uint8_t id[16] = {4};
    static struct ldprof_span *open[LDPROF_MAX_OPEN_SPANS];
    uint64_t before = ldprof_buf_dropped();

    for (int i = 0; i < LDPROF_MAX_OPEN_SPANS; i++) {
        open[i] = ldprof_span_open(LDPROF_KIND_NET, id, id, 0);
        cr_assert_not_null(open[i]);
    }
    cr_assert_null(ldprof_span_open(LDPROF_KIND_NET, id, id, 0));
    cr_assert_eq(ldprof_buf_dropped() - before, 1);
    ldprof_span_discard(open[7]);
    cr_assert_not_null(ldprof_span_open(LDPROF_KIND_NET, id, id, 0), "a freed slot is reused");
}

Test(preload_tlv, unfinished_spans_are_emitted_once)
{
    static const uint8_t id[16] = {5};
    struct ldprof_span *s = ldprof_span_open(LDPROF_KIND_NET, id, id, 0);
    struct tp_span out[2];

    cr_assert_eq(ldprof_span_emit_unfinished(), 1);
    ldprof_span_close(s, 0); /* the owner ends it later: ignored */
    cr_assert_eq(tp_collect(out, 2), 1);
    cr_assert(out[0].flags & LDPROF_SPAN_UNFINISHED);
    cr_assert_eq(out[0].start, out[0].end);
}
