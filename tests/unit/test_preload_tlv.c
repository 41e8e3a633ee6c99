/*
 * tests/unit/test_preload_tlv.c - the record encoder: TLV entries, span info
 * limits and truncation, the process block, datagram headers, and the
 * per-thread buffer's drop-and-count when full.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ldprof/wire.h"
#include "preload/buffer.h"
#include "preload/span.h"
#include "preload/tls.h"

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
                  "a datagram's worth of records (LDPROF_BUF_CAP) fits one datagram");
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

/*
 * span.h routes ldprof_span_add_str/_int with a literal key to an inline
 * path that skips strlen and writes the TLV at the call site.  It must
 * write exactly what the exported functions write, fill the info up to the
 * same byte, and truncate and flag the same way: every literal key below,
 * every value length 0..70 (and NUL-terminated -1), START and STOP, added
 * until the span is full, one span by the inline path and one by the
 * exported functions (the parenthesised names bypass the macros).
 */
#define KEY255                                                                                  \
    "k123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567" \
    "89abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde" \
    "f0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01"
#define KEY256 KEY255 "x"

static void same_span_bytes(const struct ldprof_span *a, const struct ldprof_span *b,
                            const char *what, long vlen)
{
    cr_assert_eq(a->info_len, b->info_len, "%s vlen %ld: info_len %u vs %u", what, vlen,
                 a->info_len, b->info_len);
    cr_assert_eq(memcmp(a->info, b->info, a->info_len), 0, "%s vlen %ld: info bytes differ",
                 what, vlen);
    cr_assert_eq(a->w.flags, b->w.flags, "%s vlen %ld: flags differ", what, vlen);
}

#define FILL_BOTH(KEY)                                                                          \
    do {                                                                                        \
        for (long vl = -1; vl <= 70; vl++) {                                                    \
            struct ldprof_span *a = ldprof_span_open(LDPROF_KIND_NET, id, id, 0);               \
            struct ldprof_span *b = ldprof_span_open(LDPROF_KIND_NET, id, id, 0);               \
            cr_assert(a != NULL && b != NULL);                                                  \
            for (int i = 0; i < 2000; i++) {                                                    \
                int when = i & 1 ? LDPROF_FIELD_STOP : LDPROF_FIELD_START;                      \
                int ra, rb;                                                                     \
                if (i % 3 == 2) {                                                               \
                    ra = ldprof_span_add_int(a, when, KEY, -(int64_t)i * 77777);                \
                    rb = (ldprof_span_add_int)(b, when, KEY, -(int64_t)i * 77777);              \
                } else if (vl < 0) {                                                            \
                    ra = ldprof_span_add_str(a, when, KEY, "GET", -1);                          \
                    rb = (ldprof_span_add_str)(b, when, KEY, "GET", -1);                        \
                } else {                                                                        \
                    ra = ldprof_span_add_str(a, when, KEY, val + i % 7, vl);                    \
                    rb = (ldprof_span_add_str)(b, when, KEY, val + i % 7, vl);                  \
                }                                                                               \
                cr_assert_eq(ra, rb, "%s vlen %ld field %d: returns %d vs %d", KEY, vl, i, ra,  \
                             rb);                                                               \
                same_span_bytes(a, b, KEY, vl);                                                 \
                if (ra < 0 && (a->w.flags & LDPROF_SPAN_TRUNCATED) && i > 1 &&                  \
                    a->info_len > LDPROF_WIRE_MAX_INFO - 8)                                     \
                    break;                                                                      \
            }                                                                                   \
            ldprof_span_discard(a);                                                             \
            ldprof_span_discard(b);                                                             \
        }                                                                                       \
    } while (0)

Test(preload_tlv, literal_key_fast_path_writes_what_the_exported_functions_write)
{
    static const uint8_t id[16] = {6};
    char val[128];

    for (int i = 0; i < (int)sizeof(val); i++)
        val[i] = (char)('A' + i % 26);
    FILL_BOTH("k");
    FILL_BOTH("ab");
    FILL_BOTH("xyz");
    FILL_BOTH("redis.key");
    FILL_BOTH("redis.reply_type");
    FILL_BOTH("redis.reply_type!");
    FILL_BOTH("db.statement.parameters.positional");
    FILL_BOTH(KEY255);
    FILL_BOTH(KEY256); /* too long a key: refused by both */
    FILL_BOTH("");     /* empty key: refused by both */
}

Test(preload_tlv, literal_key_fields_decode_as_given)
{
    static const uint8_t id[16] = {7};
    struct ldprof_span *s = ldprof_span_open(LDPROF_KIND_REDIS, id, id, 0);
    struct tp_span out[1];

    cr_assert_eq(ldprof_span_add_str(s, LDPROF_FIELD_START, "redis.command", "GET", -1), 0);
    cr_assert_eq(ldprof_span_add_str(s, LDPROF_FIELD_START, "redis.key", "zq:{7:p:q}:msgs", 15), 0);
    cr_assert_eq(ldprof_span_add_int(s, LDPROF_FIELD_START, "redis.argc", 2), 0);
    cr_assert_eq(ldprof_span_add_str(s, LDPROF_FIELD_STOP, "redis.reply_type", "nil", -1), 0);
    cr_assert_eq(ldprof_span_add_str(NULL, LDPROF_FIELD_STOP, "redis.reply_type", "nil", -1), -1);
    cr_assert_eq(ldprof_span_add_str(s, LDPROF_FIELD_STOP, "redis.reply_type", NULL, -1), -1);
    cr_assert_eq(ldprof_span_add_int(NULL, LDPROF_FIELD_STOP, "redis.argc", 1), -1);
    ldprof_span_close(s, 0);
    cr_assert_eq(tp_collect(out, 1), 1);
    cr_assert_eq(out[0].nfields, 4);
    cr_assert_str_eq(tp_field(&out[0], "redis.command", 0), "GET");
    cr_assert_str_eq(tp_field(&out[0], "redis.key", 0), "zq:{7:p:q}:msgs");
    cr_assert_str_eq(tp_field(&out[0], "redis.argc", 0), "2");
    cr_assert_str_eq(tp_field(&out[0], "redis.reply_type", 1), "nil");
}

/* A span never ends before it began, whatever the clock did meanwhile. */
Test(preload_tlv, duration_is_never_negative)
{
    static const uint8_t id[16] = {8};
    struct ldprof_span *s = ldprof_span_open(LDPROF_KIND_NET, id, id, 0);
    struct tp_span out[1];

    s->w.start_ns = ldprof_now_ns() + 3600ull * 1000000000ull; /* as if the clock stepped back */
    ldprof_span_close(s, 0);
    cr_assert_eq(tp_collect(out, 1), 1);
    cr_assert_eq(out[0].end, out[0].start);
}

/*
 * The spare slot: a thread that ends a span keeps its slot for its next
 * span (no bitmap operation); the slot goes back to the pool when the
 * thread exits, and in a fork child for every thread that did not follow.
 */
static struct ldprof_span *begin_end_at_depth1(void)
{
    struct ldprof_span *s = ldprof_span_begin(LDPROF_KIND_NET);
    ldprof_span_end(s);
    return s;
}

static void enter_trace(void)
{
    static const uint8_t id[16] = {9};
    struct ldprof_span *root = ldprof_span_open(LDPROF_KIND_WSGI, id, id, 0);

    cr_assert_not_null(root);
    ldprof_ctx_enter_root(root);
}

static void *thread_spans(void *arg)
{
    (void)arg;
    enter_trace();
    cr_assert_not_null(begin_end_at_depth1());
    cr_assert(ldprof_tls.spare != NULL && ldprof_tls.spare != LDPROF_SPARE_OFF,
              "the ended span's slot is kept");
    return NULL;
}

/* open every free slot of the pool directly; returns how many */
static int open_all(struct ldprof_span **open)
{
    static const uint8_t id[16] = {10};
    int n = 0;

    while (n < LDPROF_MAX_OPEN_SPANS && (open[n] = ldprof_span_open(LDPROF_KIND_NET, id, id, 0)))
        n++;
    return n;
}

Test(preload_tlv, spare_slot_is_reused_and_given_back)
{
    static struct ldprof_span *open[LDPROF_MAX_OPEN_SPANS];
    struct ldprof_span *a, *b;
    pthread_t th;

    enter_trace(); /* the root takes one slot */
    a = begin_end_at_depth1();
    cr_assert_not_null(a);
    cr_assert_eq(ldprof_tls.spare, a);
    b = begin_end_at_depth1();
    cr_assert_eq(b, a, "the next span takes the spare slot");
    cr_assert_eq(tp_collect(NULL, 0), 2);

    /* a thread that exits gives its spare back */
    cr_assert_eq(pthread_create(&th, NULL, thread_spans, NULL), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    /* every slot but the two roots (ours, the thread's) and our spare */
    cr_assert_eq(open_all(open), LDPROF_MAX_OPEN_SPANS - 3);
    for (int i = 0; i < LDPROF_MAX_OPEN_SPANS - 3; i++)
        ldprof_span_discard(open[i]);
}

static pthread_mutex_t hold = PTHREAD_MUTEX_INITIALIZER;

static void *thread_spans_and_wait(void *arg)
{
    thread_spans(arg);
    pthread_mutex_lock(&hold); /* alive (with its spare) until the fork is done */
    pthread_mutex_unlock(&hold);
    return NULL;
}

Test(preload_tlv, fork_child_gets_the_spare_slots_back)
{
    static struct ldprof_span *open[LDPROF_MAX_OPEN_SPANS];
    pthread_t th;
    pid_t pid;
    int status;

    enter_trace();
    cr_assert_not_null(begin_end_at_depth1());
    cr_assert_eq(tp_collect(NULL, 0), 1);
    pthread_mutex_lock(&hold);
    cr_assert_eq(pthread_create(&th, NULL, thread_spans_and_wait, NULL), 0);
    for (int i = 0; i < 10000 && tp_collect(NULL, 0) == 0; i++)
        usleep(1000); /* until the thread's span is in its buffer */
    ldprof_buf_fork_prepare();
    pid = fork();
    if (pid == 0) {
        ldprof_buf_fork_child();
        /* both roots are still open; both spares are back */
        _exit(open_all(open) == LDPROF_MAX_OPEN_SPANS - 2 ? 0 : 1);
    }
    ldprof_buf_fork_parent();
    pthread_mutex_unlock(&hold);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_gt(pid, 0);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child: spare slots leaked");
}

/*
 * The one out-of-line field writer (span.c span_add, behind every
 * ldprof_span_add* call whose value length is not a constant) against the
 * reference encoder ldprof_tlv_put: every key length 1..40 and value
 * length 0..70 (the copy's size classes 0, 1-3, 4-7, 8-16 and longer, at
 * every offset in the info), START and STOP, through each entry point.
 */
Test(preload_tlv, field_writer_matches_the_reference_encoder)
{
    static const uint8_t id[16] = {7};
    char key[41], val[80];
    uint8_t want[LDPROF_WIRE_MAX_INFO];

    for (int i = 0; i < (int)sizeof(val); i++)
        val[i] = (char)(' ' + (i * 7) % 90);
    for (int i = 0; i < 40; i++)
        key[i] = (char)('a' + i % 26);
    key[40] = '\0';
    for (size_t kl = 1; kl <= 40; kl++) {
        for (long vl = 0; vl <= 70; vl++) {
            struct ldprof_span *s = ldprof_span_open(LDPROF_KIND_NET, id, id, 0);
            size_t used = 0;
            char k[41];
            int64_t iv = -vl * 1234567;

            cr_assert(s != NULL);
            memcpy(k, key, kl);
            k[kl] = '\0';
            for (int f = 0; f < 4; f++) {
                int when = f & 1 ? LDPROF_FIELD_STOP : LDPROF_FIELD_START;
                uint8_t stop = when == LDPROF_FIELD_STOP ? LDPROF_TLV_STOP : 0;
                int n;
                if (f == 3) {
                    cr_assert_eq((ldprof_span_add_int)(s, when, k, iv), 0);
                    n = ldprof_tlv_put(want + used, sizeof(want) - used,
                                       LDPROF_TLV_INT | stop, k, kl, &iv, sizeof(iv));
                } else {
                    if (f == 0)
                        cr_assert_eq(ldprof_span_add_str_k(s, when, k, (long)kl, val + f, vl), 0);
                    else if (f == 1)
                        cr_assert_eq((ldprof_span_add_str)(s, when, k, val + f, vl), 0);
                    else
                        cr_assert_eq(ldprof_span_add(s, when, LDPROF_TLV_STR, k, val + f,
                                                     (size_t)vl), 0);
                    n = ldprof_tlv_put(want + used, sizeof(want) - used,
                                       LDPROF_TLV_STR | stop, k, kl, val + f, (size_t)vl);
                }
                cr_assert(n > 0);
                used += (size_t)n;
                cr_assert_eq(s->info_len, used, "key %zu value %ld field %d: length", kl, vl, f);
                cr_assert_eq(memcmp(s->info, want, used), 0,
                             "key %zu value %ld field %d: bytes differ", kl, vl, f);
            }
            cr_assert_eq(s->w.flags & LDPROF_SPAN_TRUNCATED, 0);
            ldprof_span_discard(s);
        }
    }
}
