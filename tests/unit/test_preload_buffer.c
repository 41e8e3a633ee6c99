/*
 * tests/unit/test_preload_buffer.c - the per-thread span buffers and their
 * drain (preload/buffer.c): a buffer holds LDPROF_BUF_DGRAMS datagrams'
 * worth of records, wakes the flusher once at one datagram's worth, and is
 * drained into datagrams of whole records of at most LDPROF_BUF_CAP bytes,
 * in order, none lost or duplicated, also when several buffers together
 * hold more than the drain's staging area; the flusher's nap flag makes the
 * next record kick it, once.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "ldprof/wire.h"
#include "preload/buffer.h"

extern void tp_setup(void);
extern int tp_kicks;

static void setup(void)
{
    tp_setup();
    tp_kicks = 0;
}

TestSuite(preload_buffer, .init = setup);

/* A record of @len bytes (>= the head) numbered @seq for thread @who; its
 * info bytes are a pattern derived from both. */
static size_t make_rec(uint8_t *out, size_t len, uint32_t who, uint32_t seq)
{
    struct ldprof_wire_span w;

    memset(&w, 0, sizeof(w));
    w.rec_len = (uint16_t)len;
    w.info_len = (uint16_t)(len - sizeof(w));
    w.tid = who;
    memcpy(w.base_id, &seq, sizeof(seq));
    memcpy(out, &w, sizeof(w));
    for (size_t i = sizeof(w); i < len; i++)
        out[i] = (uint8_t)(seq * 31 + who * 7 + i);
    return len;
}

/* Record sizes: @fixed_size when set, else sizes that do not divide a
 * datagram evenly, 80 .. 2128 bytes. */
static size_t fixed_size;
static size_t rec_size(uint32_t seq)
{
    if (fixed_size)
        return fixed_size;
    return sizeof(struct ldprof_wire_span) + (seq * 397u) % (LDPROF_WIRE_MAX_INFO + 1);
}

#define MAX_WHO 4
static struct {
    uint32_t next[MAX_WHO]; /* next expected seq per thread */
    uint32_t recs, dgrams;
} got;

/* The send callback: every datagram holds whole, intact records, in each
 * thread's order, and is no larger than a datagram's record room. */
static void check_send(const uint8_t *recs, size_t len, uint32_t nrec, void *arg)
{
    size_t off = 0;
    uint32_t n = 0;
    static uint8_t want[LDPROF_WIRE_MAX_INFO + sizeof(struct ldprof_wire_span)];

    (void)arg;
    cr_assert_leq(len, LDPROF_BUF_CAP, "a datagram's records fit in one datagram");
    cr_assert_gt(nrec, 0);
    while (off < len) {
        struct ldprof_wire_span w;
        uint32_t seq;

        cr_assert_leq(off + sizeof(w), len, "a record head cut at the datagram's end");
        memcpy(&w, recs + off, sizeof(w));
        cr_assert_leq(off + w.rec_len, len, "a record cut at the datagram's end");
        cr_assert_lt(w.tid, MAX_WHO);
        memcpy(&seq, w.base_id, sizeof(seq));
        cr_assert_eq(seq, got.next[w.tid], "thread %u: record %u where %u was due", w.tid, seq,
                     got.next[w.tid]);
        make_rec(want, rec_size(seq), w.tid, seq);
        cr_assert_eq(w.rec_len, rec_size(seq));
        cr_assert_eq(memcmp(recs + off, want, w.rec_len), 0, "record %u altered", seq);
        got.next[w.tid]++;
        off += w.rec_len;
        n++;
    }
    cr_assert_eq(n, nrec, "the datagram's record count");
    got.recs += n;
    got.dgrams++;
}

/* Record records of thread @who, seq 0.., until @bytes are buffered or the
 * buffer refuses one; returns how many were recorded. */
static uint32_t fill(uint32_t who, size_t bytes)
{
    static __thread uint8_t rec[LDPROF_WIRE_MAX_INFO + sizeof(struct ldprof_wire_span)];
    size_t total = 0;
    uint32_t seq = 0;

    for (;;) {
        size_t len = rec_size(seq);

        if (total + len > bytes)
            break;
        make_rec(rec, len, who, seq);
        if (ldprof_buf_record(rec, len) != 0)
            break;
        total += len;
        seq++;
    }
    return seq;
}

Test(preload_buffer, one_kick_at_a_datagrams_worth)
{
    uint8_t rec[200];
    uint32_t n;

    n = fill(0, LDPROF_BUF_CAP - 1);
    cr_assert_gt(n, 0);
    cr_assert_eq(tp_kicks, 0, "under one datagram's worth: no wake-up");
    /* one more record crosses LDPROF_BUF_CAP: one kick, and no more for
     * this fill */
    for (uint32_t i = 0; i < 3; i++) {
        make_rec(rec, sizeof(rec), 0, n + i);
        cr_assert_eq(ldprof_buf_record(rec, sizeof(rec)), 0, "room beyond one datagram");
    }
    cr_assert_eq(tp_kicks, 1);
}

Test(preload_buffer, a_buffer_holds_two_datagrams_and_drains_into_whole_records)
{
    uint64_t dropped = ldprof_buf_dropped();
    uint32_t n = fill(0, LDPROF_BUF_SIZE), d;

    cr_assert_gt(n, 0);
    cr_assert_eq(ldprof_buf_dropped(), dropped, "nothing dropped below LDPROF_BUF_SIZE");
    memset(&got, 0, sizeof(got));
    d = ldprof_buf_drain_all(check_send, NULL, -1);
    cr_assert_eq(d, n);
    cr_assert_eq(got.recs, n);
    cr_assert_eq(got.next[0], n);
    cr_assert_geq(got.dgrams, 2, "more than a datagram's worth: split");
    cr_assert_leq(got.dgrams, 3);
    /* emptied: the next fill starts from the front, and kicks again */
    tp_kicks = 0;
    cr_assert_eq(ldprof_buf_drain_all(check_send, NULL, -1), 0);
    fill(1, LDPROF_BUF_CAP + 4096);
    cr_assert_eq(tp_kicks, 1);
}

/* Records that fill a datagram exactly, and records of which one more
 * would overrun it by a few bytes: the split is exact at the edge. */
static void edge(size_t size, uint32_t per_dgram)
{
    uint32_t n;

    fixed_size = size;
    n = fill(0, LDPROF_BUF_SIZE);
    cr_assert_eq(n, 2 * per_dgram + (LDPROF_BUF_SIZE - 2 * per_dgram * size) / size);
    memset(&got, 0, sizeof(got));
    cr_assert_eq(ldprof_buf_drain_all(check_send, NULL, -1), n);
    cr_assert_eq(got.recs, n);
    cr_assert_eq(got.dgrams, n / per_dgram + (n % per_dgram != 0));
}

Test(preload_buffer, split_at_the_datagram_edge_exact_fit)
{
    cr_assert_eq(LDPROF_BUF_CAP % 2015, 0, "2015-byte records fill a datagram exactly");
    edge(2015, LDPROF_BUF_CAP / 2015);
}

Test(preload_buffer, split_at_the_datagram_edge_one_record_short)
{
    /* 39 records leave 1573 bytes: the 40th (1613) overruns by 40 */
    cr_assert_eq(LDPROF_BUF_CAP / 1613, 39);
    edge(1613, 39);
}

Test(preload_buffer, a_full_buffer_drops_and_counts)
{
    uint8_t rec[1000];
    uint64_t dropped = ldprof_buf_dropped();
    uint32_t n = fill(0, LDPROF_BUF_SIZE);
    int refused = 0;

    for (uint32_t i = 0; i < 200; i++) {
        make_rec(rec, sizeof(rec), 0, n + i);
        refused += ldprof_buf_record(rec, sizeof(rec)) != 0;
    }
    cr_assert_gt(refused, 0);
    cr_assert_eq(ldprof_buf_dropped() - dropped, (uint64_t)refused);
}

static void *thread_fill(void *arg)
{
    uint32_t who = (uint32_t)(uintptr_t)arg;

    return (void *)(uintptr_t)fill(who, LDPROF_BUF_SIZE);
}

Test(preload_buffer, buffers_beyond_the_staging_area_drain_in_several_passes)
{
    /* 1 + 3 buffers of ~2 datagrams each: twice the 4 datagrams one pass
     * of the drain stages, so records are left over and moved */
    pthread_t th[MAX_WHO - 1];
    uint32_t n[MAX_WHO], total = 0, d;

    n[0] = fill(0, LDPROF_BUF_SIZE);
    for (int i = 1; i < MAX_WHO; i++)
        cr_assert_eq(pthread_create(&th[i - 1], NULL, thread_fill, (void *)(uintptr_t)i), 0);
    for (int i = 1; i < MAX_WHO; i++) {
        void *r;

        pthread_join(th[i - 1], &r);
        n[i] = (uint32_t)(uintptr_t)r;
    }
    for (int i = 0; i < MAX_WHO; i++)
        total += n[i];
    memset(&got, 0, sizeof(got));
    d = ldprof_buf_drain_all(check_send, NULL, -1);
    cr_assert_eq(d, total);
    cr_assert_eq(got.recs, total);
    for (int i = 0; i < MAX_WHO; i++)
        cr_assert_eq(got.next[i], n[i], "thread %d: %u of %u records", i, got.next[i], n[i]);
    cr_assert_geq(got.dgrams, 8);
    cr_assert_eq(ldprof_buf_drain_all(check_send, NULL, -1), 0, "nothing left, nothing twice");
}

Test(preload_buffer, a_napping_flusher_is_kicked_by_the_next_record_once)
{
    uint8_t rec[LDPROF_WIRE_MAX_INFO + sizeof(struct ldprof_wire_span)];

    cr_assert_eq(ldprof_buf_record(rec, make_rec(rec, rec_size(0), 0, 0)), 0);
    cr_assert_eq(tp_kicks, 0, "not napping: no kick for a record");
    ldprof_buf_nap_begin();
    cr_assert_eq(ldprof_buf_record(rec, make_rec(rec, rec_size(1), 0, 1)), 0);
    cr_assert_eq(tp_kicks, 1, "napping: the next record kicks");
    cr_assert_eq(ldprof_buf_record(rec, make_rec(rec, rec_size(2), 0, 2)), 0);
    cr_assert_eq(tp_kicks, 1, "one kick per nap");
    ldprof_buf_nap_begin();
    ldprof_buf_nap_end();
    cr_assert_eq(ldprof_buf_record(rec, make_rec(rec, rec_size(3), 0, 3)), 0);
    cr_assert_eq(tp_kicks, 1, "nap ended: no kick");
    memset(&got, 0, sizeof(got));
    cr_assert_eq(ldprof_buf_drain_all(check_send, NULL, -1), 4);
}
