/*
 * tests/bench/micro_preload.c - per-span and header costs, for
 * tests/bench/micro.sh (`make bench`, parts 3 and 4).
 *
 * Linked with the preload's own objects (the Makefile's
 * UNIT_PRELOAD_OBJS, as the unit tests are), so the code measured is the
 * code libldprof.so runs; transport.c is replaced by the two no-op
 * functions buffer.c calls (no flusher thread: the benchmark drains the
 * buffer itself between timed batches, outside the timing).
 *
 *   micro_preload MODE N REPS
 *
 * MODE  span_bare    ldprof_span_begin + ldprof_span_end (no info field)
 *       span_redis   the same with the fields hooks/hiredis.c adds to a
 *                    GET: redis.command, redis.key, redis.argc at start,
 *                    redis.reply_type at stop
 *       hdr_k1       ldprof_trace_verify of a signed inbound header pair,
 *                    then ldprof_trace_sign of the outbound pair (same
 *                    trace, another parent); 1 key.  Each iteration takes
 *                    the next of 64 header pairs of 64 different traces
 *                    (the per-thread HMAC memo of propagation.c then helps
 *                    the sign, never the verify; 64 pairs are more than
 *                    its verify cache holds, so every verify is computed)
 *       hdr_k1_same  the same, always the same header pair (a client whose
 *                    requests of one trace carry the same headers: the
 *                    verify is answered by propagation.c's per-thread
 *                    cache of accepted pairs, the sign hits the memo)
 *       hdr_k5_first the same with 5 keys, the header signed with the 1st
 *       hdr_k5_last_nohint  5 keys, signed with the 5th, the thread's
 *                    and the process's key hints forgotten before each
 *                    verify (the process's first request: every key is
 *                    tried, the 1st alone, then the 2nd-5th interleaved)
 *       hdr_k5_last  the same with only the thread's hint forgotten (a
 *                    thread's first request: the process's hint, the
 *                    5th, is tried first, alone, and matches)
 *       hdr_k5_last_hint  the same in steady state: the thread's hint
 *                    (the key that matched last on it, the 5th) is
 *                    tried first, alone, and matches
 *       verify_k1    ldprof_trace_verify alone, 1 key (what an inbound
 *                    traced request costs; micro.sh's whole-request
 *                    estimate uses it)
 *
 * Runs REPS repetitions of N operations and prints
 *   ns_per_op <median over the repetitions>
 *   ns_best <the fastest repetition> (machine noise only ever adds time)
 *   keys_per_verify <keys whose HMAC a verify computed, on average>
 *                                                  (header modes)
 *   bytes_per_span <record bytes in the buffer>   (span modes)
 * Under valgrind --tool=callgrind --collect-atstart=no only the timed
 * loops are collected (CALLGRIND_TOGGLE_COLLECT), so the collected
 * instructions divided by N * REPS are the instructions per operation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <valgrind/callgrind.h>

#include "ldprof/ldprof.h"
#include "preload/buffer.h"
#include "preload/clock.h"
#include "preload/config.h"
#include "preload/http.h"
#include "preload/init.h"
#include "preload/log.h"
#include "preload/propagation.h"
#include "preload/span.h"

/* transport.c stand-ins (the only two functions buffer.c calls). */
void ldprof_xport_kick(void)
{
}
void ldprof_xport_ensure_started(void)
{
}

#define BATCH 32 /* spans between two drains: the buffer never fills */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *env_none(const char *name)
{
    (void)name;
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what)
{
    fprintf(stderr, "micro_preload: %s\n", what);
    exit(1);
}

/* ------------------------------------------------------------ spans */

static size_t drained_bytes;
static uint32_t drained_recs;

static void count_send(const uint8_t *recs, size_t len, uint32_t nrec, void *arg)
{
    (void)recs;
    (void)arg;
    drained_bytes += len;
    drained_recs += nrec;
}

static inline void one_span(int redis)
{
    struct ldprof_span *s = ldprof_span_begin(LDPROF_KIND_REDIS);

    if (redis) {
        ldprof_span_add_str(s, LDPROF_FIELD_START, "redis.command", "GET", -1);
        ldprof_span_add_str(s, LDPROF_FIELD_START, "redis.key", "zq:{7:project:queue}:msgs", 25);
        ldprof_span_add_int(s, LDPROF_FIELD_START, "redis.argc", 2);
        ldprof_span_add_str(s, LDPROF_FIELD_STOP, "redis.reply_type", "nil", -1);
    }
    ldprof_span_end(s);
}

static double span_rep(int redis, long n)
{
    double total = 0;

    for (long done = 0; done < n;) {
        long k = n - done < BATCH ? n - done : BATCH;
        double t0 = now_ns();
        CALLGRIND_TOGGLE_COLLECT;
        for (long i = 0; i < k; i++)
            one_span(redis);
        CALLGRIND_TOGGLE_COLLECT;
        total += now_ns() - t0;
        done += k;
        ldprof_buf_drain_all(count_send, NULL, -1);
    }
    return total / (double)n;
}

static void span_setup(void)
{
    uint8_t base[16];
    struct ldprof_span *root;

    ldprof_log_level = LDPROF_LOG_OFF;
    ldprof_config_load(&ldprof_cfg, NULL, env_none);
    ldprof_keyrings_init("SECRET_KEY");
    if (ldprof_span_pool_init() != 0 || ldprof_buf_init() != 0 || ldprof_http_init() != 0)
        die("cannot set up the span pool, buffers or fd table");
    ldprof_on = 1;
    /* The span clock as the flusher thread sets it up (it calls
     * ldprof_clock_refresh on every wake-up, at least every 100 ms):
     * calibrated within ~0.2 s, unless unsupported or LDPROF_FAST_CLOCK=0. */
    ldprof_cfg.fast_clock = !(getenv("LDPROF_FAST_CLOCK") && strcmp(getenv("LDPROF_FAST_CLOCK"), "0") == 0);
    for (int i = 0; i < 50 && ldprof_clock_state() != LDPROF_CLOCK_TSC &&
                    ldprof_clock_state() != LDPROF_CLOCK_OFF;
         i++) {
        struct timespec ts = {0, 20 * 1000000L};
        ldprof_clock_refresh();
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "micro_preload: span clock %s\n",
            ldprof_clock_state() == LDPROF_CLOCK_TSC ? "rdtsc" : "clock_gettime");
    /* The thread context a traced request sets up (as http.c does for a
     * wsgi span): every span below is its child. */
    ldprof_uuid_new(base);
    root = ldprof_span_open(LDPROF_KIND_WSGI, base, base, 0);
    if (root == NULL)
        die("cannot open the root span");
    ldprof_ctx_enter_root(root);
}

/* ------------------------------------------------------------ headers */

#define NHDR 64
static struct ldprof_keyring kr;
static char in_info[NHDR][LDPROF_TRACE_INFO_SIZE], in_hmac[NHDR][LDPROF_TRACE_HMAC_SIZE];
static int nhdr = NHDR;

static void hdr_setup(int nkeys, int sign_with)
{
    uint8_t base[16], parent[16];

    ldprof_keyring_init(&kr, nkeys == 1 ? "key-one" : "key-one,key-two,key-three,key-four,key-five");
    if (kr.nkeys != nkeys)
        die("keyring");
    for (int i = 0; i < NHDR; i++) {
        ldprof_uuid_new(base);
        ldprof_uuid_new(parent);
        if (ldprof_trace_sign(&kr, sign_with, base, parent, in_info[i], sizeof(in_info[i]),
                              in_hmac[i]) != LDPROF_TRACE_INFO_LEN)
            die("sign");
    }
}

static volatile int sink;
static int verify_only, forget_hint, forget_process_hint;

static double hdr_rep(long n)
{
    double t0 = now_ns();

    CALLGRIND_TOGGLE_COLLECT;
    for (long i = 0; i < n; i++) {
        struct ldprof_trace_ids ids;
        char out_info[LDPROF_TRACE_INFO_SIZE], out_hmac[LDPROF_TRACE_HMAC_SIZE];
        int h = (int)(i % nhdr), k;

        if (forget_hint) /* hdr_k5_last: every request a thread's first */
            ldprof_trace_hint_forget();
        if (forget_process_hint) /* hdr_k5_last_nohint: the process's first */
            ldprof_trace_hint_forget_process();
        k = ldprof_trace_verify(&kr, in_info[h], LDPROF_TRACE_INFO_LEN, in_hmac[h],
                                LDPROF_TRACE_HMAC_LEN, &ids);
        if (verify_only) {
            sink += k + ids.base_id[0];
            continue;
        }
        /* outbound: same trace, the new span as parent */
        ids.parent_id[15] ^= (uint8_t)i;
        sink += ldprof_trace_sign(&kr, k, ids.base_id, ids.parent_id, out_info,
                                  sizeof(out_info), out_hmac);
    }
    CALLGRIND_TOGGLE_COLLECT;
    return (now_ns() - t0) / (double)n;
}

int main(int argc, char **argv)
{
    long n, reps;
    const char *mode;
    double *t;
    int span = 0, redis = 0;
    unsigned long tried0;

    if (argc != 4 || (n = atol(argv[2])) <= 0 || (reps = atol(argv[3])) <= 0) {
        fprintf(stderr, "usage: micro_preload MODE N REPS\n");
        return 2;
    }
    mode = argv[1];
    if (strcmp(mode, "span_bare") == 0 || strcmp(mode, "span_redis") == 0) {
        span = 1;
        redis = mode[5] == 'r';
        span_setup();
    } else if (strcmp(mode, "hdr_k1") == 0) {
        hdr_setup(1, 0);
    } else if (strcmp(mode, "hdr_k1_same") == 0) {
        hdr_setup(1, 0);
        nhdr = 1;
    } else if (strcmp(mode, "hdr_k5_first") == 0) {
        hdr_setup(5, 0);
    } else if (strcmp(mode, "hdr_k5_last_nohint") == 0) {
        hdr_setup(5, 4);
        forget_hint = forget_process_hint = 1;
    } else if (strcmp(mode, "hdr_k5_last") == 0) {
        hdr_setup(5, 4);
        forget_hint = 1;
    } else if (strcmp(mode, "hdr_k5_last_hint") == 0) {
        hdr_setup(5, 4);
    } else if (strcmp(mode, "verify_k1") == 0) {
        hdr_setup(1, 0);
        verify_only = 1;
    } else {
        fprintf(stderr, "micro_preload: unknown mode %s\n", mode);
        return 2;
    }
    /* The header pair must verify, or the figure would be of a rejection. */
    for (int i = 0; !span && i < NHDR; i++) {
        struct ldprof_trace_ids ids;
        if (ldprof_trace_verify(&kr, in_info[i], LDPROF_TRACE_INFO_LEN, in_hmac[i],
                                LDPROF_TRACE_HMAC_LEN, &ids) < 0)
            die("the signed header pair does not verify");
    }
    t = calloc((size_t)reps, sizeof(*t));
    if (t == NULL)
        die("out of memory");
    tried0 = ldprof_trace_keys_tried();
    for (long r = 0; r < reps; r++)
        t[r] = span ? span_rep(redis, n) : hdr_rep(n);
    qsort(t, (size_t)reps, sizeof(*t), cmp_double);
    printf("ns_per_op %.1f\n", t[reps / 2]);
    printf("ns_best %.1f\n", t[0]);
    if (!span)
        printf("keys_per_verify %.2f\n",
               (double)(ldprof_trace_keys_tried() - tried0) / (double)(n * reps));
    if (span) {
        if (drained_recs != (uint32_t)(n * reps))
            die("not every span reached the buffer");
        printf("bytes_per_span %zu\n", drained_bytes / drained_recs);
    }
    free(t);
    return 0;
}
