/*
 * test_collector_compact.c - journal compaction from the held wire records
 * (coll_trace_journal_entries, collector/ingest.c; docs/formats.md §4).
 *
 * Many traces are built the way the daemon builds them (coll_trace_take of
 * every record of generated datagrams from three processes, records of
 * several traces per datagram): held only; realized midway (as a merge or
 * a reference render does) and then given more records; begun from a
 * journal line's events; cut by a small span limit; with late spans that
 * resend a trace_id; one trace larger than a datagram.  Their compaction
 * is written to a journal and replayed through the store's real scanner
 * into fresh traces, and the dumps compared, byte for byte, with
 *   - the old compaction (every trace realized, one JSON line per span,
 *     replayed the same way), and
 *   - the trace itself (for every trace without a limit marker: the old
 *     compaction loses the marker's counts too, docs/formats.md §4).
 * Also: compaction builds no event (held records stay held), a replayed
 * compaction compacts to the same bytes, each trace's entries hold only
 * its spans, and planted replay bugs (a record lost, records reordered, a
 * pid changed) are caught by the same comparison.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "collector/decode.h"
#include "collector/events.h"
#include "collector/ingest.h"
#include "collector/json.h"
#include "collector/store.h"
#include "collector/trace.h"
#include "tmpdir.h"
#include "wire_build.h"

#define T0 1704164645000100000ull
#define NTR 60   /* traces */
#define NDG 120  /* datagrams */
#define BIG 15   /* the trace larger than one datagram (kind RAW) */
#define HI0 0x00c0ffeeu

static char tmpdir[64];

static void setup(void)
{
    unit_tmpdir_make(tmpdir, sizeof tmpdir, "cmp");
    coll_ingest_init("fallback-host");
}

static void teardown(void)
{
    unit_tmpdir_remove(tmpdir);
}

TestSuite(collector_compact, .init = setup, .fini = teardown);

/* Kinds of trace, by index % 5. */
enum { RAW, REALIZED_MIDWAY, LIMITED, FROM_LINE, LATE };

static size_t max_spans_of(int i)
{
    return i % 5 == LIMITED ? 4 : 20000;
}

static uint32_t rnd_state = 12345;
static uint32_t rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return rnd_state >> 8;
}

/* Datagram k of the generated stream: process k % 3 (one without a host
 * in its block), records of random traces; some resend a span already
 * sent (a late span: unfinished before, finished now, or a new stop). */
static size_t gen_dgram(struct wb *b, int k, int *next_lo)
{
    static const char *const svc[3] = {"zaqard", "zaqar-worker", "redis-proxy"};
    int p = k % 3;
    wb_begin(b, LDPROF_MSG_SPANS, 4000 + (uint32_t)p, 0);
    if (p != 2)
        wb_proc(b, "host", p ? "host-b" : "host-a");
    wb_proc(b, "service", svc[p]);
    wb_proc(b, "project", "zaqar");
    int nrec = 1 + (int)(rnd() % 12);
    for (int r = 0; r < nrec; r++) {
        int i = (int)(rnd() % NTR);
        /* The big trace: 80 records of 1.6 KB, all from process 0 (one run
         * of records sharing a process block: split only by size). */
        if (i == BIG)
            i = BIG + 5;
        if (p == 0 && r < 2)
            i = BIG;
        uint8_t base[16], id[16], parent[16];
        wb_id(base, HI0 + (uint32_t)i, 0);
        int lo;
        if (next_lo[i] > 2 && rnd() % 5 == 0)
            lo = 1 + (int)(rnd() % (uint32_t)(next_lo[i] - 1)); /* resent */
        else
            lo = next_lo[i]++;
        wb_id(id, HI0 + (uint32_t)i, (uint64_t)lo);
        if (lo == 1)
            memcpy(parent, base, 16);
        else
            wb_id(parent, HI0 + (uint32_t)i, (uint64_t)(1 + rnd() % (uint32_t)lo));
        uint64_t t = T0 + (uint64_t)lo * 1000000ull + (rnd() % 3) * 1000ull;
        int unfinished = rnd() % 7 == 0;
        wb_span_begin(b, (uint8_t)(1 + rnd() % LDPROF_KIND_MAX),
                      (uint8_t)(unfinished ? LDPROF_SPAN_UNFINISHED : rnd() % 4), base, id,
                      parent, t, unfinished ? t : t + 1000 + rnd() % 900000);
        char v[1600];
        size_t vl = i == BIG ? 1500 : rnd() % 40;
        for (size_t c = 0; c < vl; c++)
            v[c] = (char)('a' + (c + (size_t)k) % 26);
        v[vl] = '\0';
        wb_str(b, 0, "db.statement", v);
        wb_str(b, 0, "db.raw", "bad \xff utf-8 \"q\"");
        wb_json(b, 0, "db.params", "[1, \"two\", {\"k\": null}]");
        wb_int(b, LDPROF_TLV_STOP, "db.rows", (int64_t)k);
        if (!unfinished)
            wb_str(b, LDPROF_TLV_STOP, "db.status", k % 2 ? "ok" : "PGRES_TUPLES_OK");
        wb_span_end(b);
    }
    return wb_finish(b);
}

static int trace_of_raw(const uint8_t base[16])
{
    uint32_t hi = (uint32_t)base[0] << 24 | (uint32_t)base[1] << 16 | (uint32_t)base[2] << 8 |
                  base[3];
    int i = (int)(hi - HI0);
    cr_assert(i >= 0 && i < NTR, "unknown base_id");
    return i;
}

static struct coll_trace **new_set(void)
{
    struct coll_trace **v = calloc(NTR, sizeof *v);
    for (int i = 0; i < NTR; i++) {
        uint8_t base[16];
        char text[37];
        wb_id(base, HI0 + (uint32_t)i, 0);
        coll_uuid_fmt(base, text);
        v[i] = coll_trace_new(text);
        cr_assert_not_null(v[i]);
        v[i]->max_spans = max_spans_of(i);
    }
    return v;
}

static void free_set(struct coll_trace **v)
{
    for (int i = 0; i < NTR; i++)
        coll_trace_free(v[i]);
    free(v);
}

/* The traces as the daemon holds them after the generated stream. */
static struct coll_trace **build_traces(void)
{
    static struct wb b;
    int next_lo[NTR];
    struct coll_trace **v = new_set();
    rnd_state = 12345;
    for (int i = 0; i < NTR; i++)
        next_lo[i] = 1;
    /* FROM_LINE traces begin with a span re-read from a journal line. */
    for (int i = FROM_LINE; i < NTR; i += 5) {
        uint8_t base[16], id[16];
        wb_id(base, HI0 + (uint32_t)i, 0);
        wb_id(id, HI0 + (uint32_t)i, 999);
        wb_begin(&b, LDPROF_MSG_SPANS, 77, 0);
        wb_proc(&b, "service", "old-line");
        wb_span_begin(&b, LDPROF_KIND_HTTP, 0, base, id, base, T0 - 5000, T0 + 5000);
        wb_str(&b, 0, "http.url", "http://x/y");
        wb_span_end(&b);
        size_t len = wb_finish(&b);
        struct coll_dec d;
        struct coll_span sp;
        json_t *start, *stop;
        cr_assert_eq(coll_decode(&d, b.buf, len), 0, "%s", d.errstr);
        cr_assert(coll_decode_next(&d, &sp));
        cr_assert_eq(coll_events_build(&d.proc, d.hdr.pid, &sp, "fallback-host", &start, &stop), 0);
        struct coll_buf line;
        coll_buf_init(&line);
        cr_assert_eq(coll_journal_line(&line, v[i]->base_id, json_object_get(start, "trace_id"),
                                       start, stop), 0);
        char bid[64];
        json_t *evs = coll_journal_parse(line.p, line.len, bid);
        cr_assert_not_null(evs);
        cr_assert_geq(coll_trace_add_events(v[i], evs), 0);
        json_decref(evs);
        json_decref(start);
        json_decref(stop);
        coll_buf_free(&line);
    }
    for (int k = 0; k < NDG; k++) {
        size_t len = gen_dgram(&b, k, next_lo);
        struct coll_dec d;
        struct coll_span sp;
        cr_assert_eq(coll_decode(&d, b.buf, len), 0, "datagram %d: %s", k, d.errstr);
        while (coll_decode_next(&d, &sp)) {
            int i = trace_of_raw(sp.hdr.base_id);
            cr_assert_eq(coll_trace_take(v[i], &d, &sp, "fallback-host"), 0);
        }
        if (k == NDG / 2) /* as a merge or a reference render would */
            for (int i = REALIZED_MIDWAY; i < NTR; i += 5)
                cr_assert_eq(coll_trace_realize(v[i]), 0);
    }
    return v;
}

/* ---- replay through the store's scanner, as the daemon's replay does */

struct rep {
    struct coll_trace **v;
    int plant; /* 0 none, 1 lose a record, 2 reverse records, 3 change the pid */
    long dgrams, lines, bad;
};

static void rep_cb(void *arg, int kind, const char *p, size_t len)
{
    struct rep *r = arg;
    if (kind == COLL_JENT_DGRAM) {
        struct coll_dec d;
        struct coll_span sp[820];
        size_t n = 0;
        r->dgrams++;
        cr_assert_eq(coll_decode(&d, p, len), 0, "%s", d.errstr);
        cr_assert_eq(d.hdr.type, LDPROF_MSG_SPANS);
        cr_assert_leq(len, LDPROF_WIRE_MAX_DGRAM, "a compacted datagram fits the wire's limit");
        while (n < 820 && coll_decode_next(&d, &sp[n]))
            n++;
        cr_assert_eq(n, d.hdr.nrec);
        if (r->plant == 1 && n > 1)
            n--;
        if (r->plant == 3)
            d.hdr.pid++;
        for (size_t j = 0; j < n; j++) {
            size_t x = r->plant == 2 ? n - 1 - j : j;
            int i = trace_of_raw(sp[x].hdr.base_id);
            cr_assert_eq(i, trace_of_raw(sp[0].hdr.base_id), "one trace per compacted datagram");
            cr_assert_eq(coll_trace_take(r->v[i], &d, &sp[x], "fallback-host"), 0);
        }
        return;
    }
    cr_assert_eq(kind, COLL_JENT_LINE);
    char bid[64];
    uint8_t raw[16];
    json_t *evs = coll_journal_parse(p, len, bid);
    cr_assert_not_null(evs, "%.*s", (int)len, p);
    cr_assert_eq(coll_uuid_parse(bid, raw), 0);
    r->lines++;
    cr_assert_geq(coll_trace_add_events(r->v[trace_of_raw(raw)], evs), 0);
    json_decref(evs);
}

/* Write `j` as the journal of a store in a new directory and replay it. */
static struct coll_trace **replay(const struct coll_buf *j, int plant, struct rep *out)
{
    static int seq;
    char dir[128], err[256];
    struct coll_store st;
    snprintf(dir, sizeof dir, "%s/j%d", tmpdir, seq++);
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(coll_store_open(&st, dir, err, sizeof err), 0, "%s", err);
    cr_assert_eq(coll_store_journal_replace(&st, j->p ? j->p : "", j->len), 0);
    cr_assert_eq(st.jsize, (off_t)j->len);
    struct rep r = {.v = new_set(), .plant = plant};
    cr_assert_geq(coll_store_journal_scan(&st, rep_cb, &r), 0);
    coll_store_close(&st);
    if (out)
        *out = r;
    return r.v;
}

static char *render(struct coll_trace *t)
{
    struct coll_buf out;
    struct coll_report_ctx ctx;
    coll_buf_init(&out);
    cr_assert_eq(coll_trace_render(t, &out, &ctx), 0, "%s", ctx.errstr);
    return out.p;
}

/* The new compaction: every trace's entries, and each one's size. */
static void compact_new(struct coll_trace **v, struct coll_buf *j, size_t *sz)
{
    coll_buf_init(j);
    for (int i = 0; i < NTR; i++) {
        size_t at = j->len;
        cr_assert_eq(coll_trace_journal_entries(v[i], j), 0);
        sz[i] = j->len - at;
    }
}

Test(collector_compact, replayed_compaction_gives_the_same_dumps_as_the_old_one)
{
    struct coll_trace **v = build_traces();
    size_t n0[NTR], raw0[NTR], sz[NTR], cut = 0, mixed = 0, held = 0;
    for (int i = 0; i < NTR; i++) {
        n0[i] = v[i]->n;
        raw0[i] = coll_raw_count(v[i]);
        cut += v[i]->cut_spans != 0;
        mixed += n0[i] && raw0[i];
        held += n0[i] == 0 && raw0[i];
    }
    cr_assert_geq(cut, 5, "limit-marked traces");
    cr_assert_geq(mixed, 10, "traces with realized spans and held records");
    cr_assert_geq(held, 20, "traces of held records only");

    /* New: no event is built, nothing changes in the traces. */
    struct coll_buf jn;
    compact_new(v, &jn, sz);
    for (int i = 0; i < NTR; i++) {
        cr_assert_eq(v[i]->n, n0[i]);
        cr_assert_eq(coll_raw_count(v[i]), raw0[i]);
    }

    /* Old: realize everything, one line per span. */
    struct coll_buf jo;
    coll_buf_init(&jo);
    for (int i = 0; i < NTR; i++) {
        cr_assert_eq(coll_trace_realize(v[i]), 0);
        for (size_t k = 0; k < v[i]->n; k++) {
            cr_assert_eq(coll_trace_journal_line(v[i], k, &jo), 0);
            cr_assert_eq(coll_buf_addc(&jo, '\n'), 0);
        }
    }

    struct rep rn, ro;
    struct coll_trace **vn = replay(&jn, 0, &rn);
    struct coll_trace **vo = replay(&jo, 0, &ro);
    cr_assert_eq(rn.bad + ro.bad, 0);
    cr_assert_gt(rn.dgrams, NTR / 2);
    cr_assert_eq(ro.dgrams, 0);

    for (int i = 0; i < NTR; i++) {
        /* The replayed compaction holds the same records again (nothing
         * realized) and compacts to the same bytes. */
        cr_assert_eq(vn[i]->n, n0[i], "trace %d", i);
        cr_assert_eq(coll_raw_count(vn[i]), raw0[i], "trace %d", i);
        struct coll_buf again;
        coll_buf_init(&again);
        cr_assert_eq(coll_trace_journal_entries(vn[i], &again), 0);
        cr_assert_eq(again.len, sz[i], "trace %d: its entries are its jbytes", i);
        size_t off = 0;
        for (int k = 0; k < i; k++)
            off += sz[k];
        cr_assert_eq(memcmp(again.p, jn.p + off, sz[i]), 0, "trace %d compacts again the same", i);
        coll_buf_free(&again);

        char *a = render(vn[i]), *b = render(vo[i]), *m = render(v[i]);
        cr_assert_str_eq(a, b, "trace %d (kind %d): new and old compaction differ", i, i % 5);
        if (!coll_trace_marked(v[i]))
            cr_assert_str_eq(a, m, "trace %d: replay differs from memory", i);
        free(a);
        free(b);
        free(m);
    }
    cr_assert_gt(sz[BIG], LDPROF_WIRE_MAX_DGRAM, "the big trace needs several datagrams");
    free_set(vn);
    free_set(vo);
    free_set(v);
    coll_buf_free(&jn);
    coll_buf_free(&jo);
}

/* The comparison above catches a replay that loses, reorders or
 * misattributes records. */
Test(collector_compact, planted_replay_bugs_are_caught)
{
    struct coll_trace **v = build_traces();
    size_t sz[NTR];
    struct coll_buf jn;
    compact_new(v, &jn, sz);
    char *want[NTR];
    for (int i = 0; i < NTR; i++)
        want[i] = render(v[i]);
    for (int plant = 1; plant <= 3; plant++) {
        struct coll_trace **vn = replay(&jn, plant, NULL);
        int differ = 0;
        for (int i = 0; i < NTR; i++) {
            char *a = render(vn[i]);
            differ += strcmp(a, want[i]) != 0;
            free(a);
        }
        cr_assert_gt(differ, 0, "planted bug %d not caught", plant);
        free_set(vn);
    }
    for (int i = 0; i < NTR; i++)
        free(want[i]);
    free_set(v);
    coll_buf_free(&jn);
}

/* An empty trace and one of held records only: lines only for realized
 * spans, datagram entries that the store frames and the decoder accepts. */
Test(collector_compact, entry_forms)
{
    struct coll_trace **v = build_traces();
    struct coll_buf j;
    coll_buf_init(&j);
    struct coll_trace *e = coll_trace_new("empty");
    cr_assert_eq(coll_trace_journal_entries(e, &j), 0);
    cr_assert_eq(j.len, 0);
    coll_trace_free(e);
    int i = 5 * 2 + RAW;
    cr_assert_eq(v[i]->n, 0);
    cr_assert_gt(coll_raw_count(v[i]), 0);
    cr_assert_eq(coll_trace_journal_entries(v[i], &j), 0);
    cr_assert_eq(memcmp(j.p, COLL_JOURNAL_DGRAM_MAGIC, 4), 0);
    cr_assert_eq(j.p[j.len - 1], '\n');
    cr_assert_null(memchr(j.p, '{', 8), "no JSON line for held records");
    coll_buf_free(&j);
    free_set(v);
}

/* Records filling a datagram exactly: the first compacted datagram is
 * 65,536 bytes, the next record starts a second one. */
static void count_dgrams(void *arg, int kind, const char *p, size_t len)
{
    size_t *v = arg;
    (void)p;
    cr_assert_eq(kind, COLL_JENT_DGRAM);
    v[v[0] + 1] = len;
    v[0]++;
}

Test(collector_compact, datagrams_split_at_the_wire_limit)
{
    static struct wb b;
    uint8_t base[16], id[16];
    wb_id(base, HI0, 0);
    struct coll_trace *t = coll_trace_new("exact");
    size_t fill = 0;
    for (int k = 0; k < 42; k++) {
        wb_begin(&b, LDPROF_MSG_SPANS, 4000, 0);
        wb_proc(&b, "service", "zaqard");
        size_t hd = b.len; /* header + process block */
        /* 40 records of 1,600 bytes, then one filling the rest of 65,536,
         * then one more */
        size_t rec = k < 40 ? 1600 : k == 40 ? 65536 - hd - fill : 200;
        size_t vlen = rec - 80 - 4 - strlen("db.statement");
        char v[2048];
        cr_assert_lt(vlen, sizeof v);
        memset(v, 'x', vlen);
        v[vlen] = '\0';
        wb_id(id, HI0, (uint64_t)k + 1);
        wb_span_begin(&b, LDPROF_KIND_DB, 0, base, id, base, T0 + (uint64_t)k, T0 + 9999);
        wb_str(&b, 0, "db.statement", v);
        wb_span_end(&b);
        size_t len = wb_finish(&b);
        cr_assert_eq(len - hd, rec);
        fill += rec;
        struct coll_dec d;
        struct coll_span sp;
        cr_assert_eq(coll_decode(&d, b.buf, len), 0, "%s", d.errstr);
        cr_assert(coll_decode_next(&d, &sp));
        cr_assert_eq(coll_trace_take(t, &d, &sp, "fallback-host"), 0);
    }
    struct coll_buf j;
    coll_buf_init(&j);
    cr_assert_eq(coll_trace_journal_entries(t, &j), 0);
    char dir[128], err[256];
    struct coll_store st;
    snprintf(dir, sizeof dir, "%s/exact", tmpdir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(coll_store_open(&st, dir, err, sizeof err), 0, "%s", err);
    cr_assert_eq(coll_store_journal_replace(&st, j.p, j.len), 0);
    size_t got[8] = {0};
    cr_assert_eq(coll_store_journal_scan(&st, count_dgrams, got), 2);
    cr_assert_eq(got[1], 65536);
    cr_assert_lt(got[2], 1000);
    coll_store_close(&st);
    coll_buf_free(&j);
    coll_trace_free(t);
}

/* ---- the daemon: replay, compaction of what it could not write, kill -9,
 * replay of the compacted journal */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Start the collector on `dir` (its journal replayed before it is ready),
 * with the options `extra` (NULL-terminated) after the usual ones. */
static pid_t daemon_start_with(const char *dir, const char *tag, const char *const *extra)
{
    char sock[160], logp[160], ready[160], bin[256];
    const char *bd = getenv("LDPROF_BUILD");
    snprintf(bin, sizeof bin, "%s/collector/ldprof-collectord", bd && *bd ? bd : "build");
    cr_assert_eq(access(bin, X_OK), 0, "%s: %s (set LDPROF_BUILD)", bin, strerror(errno));
    snprintf(sock, sizeof sock, "%s/%s.sock", tmpdir, tag);
    snprintf(logp, sizeof logp, "%s/%s.log", tmpdir, tag);
    snprintf(ready, sizeof ready, "%s/%s.ready", tmpdir, tag);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        const char *argv[32] = {"ldprof-collectord", "--socket", sock, "--dir", dir, "--log",
                                logp, "--ready-file", ready, "--idle-ms", "600000"};
        int n = 11;
        for (int i = 0; extra && extra[i] && n < 31; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    /* (a replay writes every dump first: up to a minute on a busy disk) */
    for (int i = 0; i < 6000 && access(ready, F_OK) != 0; i++)
        sleep_ms(10);
    if (access(ready, F_OK) != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_assert_fail("the collector (%s) did not start", tag);
    }
    return pid;
}

static pid_t daemon_start(const char *dir, const char *tag)
{
    return daemon_start_with(dir, tag, NULL);
}

static int daemon_stop(pid_t pid, int sig)
{
    int status;
    kill(pid, sig);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static void base_path(char *out, size_t n, const char *dir, int i)
{
    uint8_t base[16];
    char text[37];
    wb_id(base, HI0 + (uint32_t)i, 0);
    coll_uuid_fmt(base, text);
    snprintf(out, n, "%s/%s.json", dir, text);
}

Test(collector_compact, daemon_compacts_and_replays_to_the_same_dumps)
{
    static struct wb b;
    char dir[2][128], path[256], err[256];
    int next_lo[NTR];
    rnd_state = 12345;
    for (int i = 0; i < NTR; i++)
        next_lo[i] = 1;
    /* Two trace directories with the same journal: the generated stream
     * (late spans included) after one journal line per FROM_LINE trace. */
    struct coll_store st[2];
    for (int x = 0; x < 2; x++) {
        snprintf(dir[x], sizeof dir[x], "%s/%s", tmpdir, x ? "ref" : "cmp");
        cr_assert_eq(mkdir(dir[x], 0700), 0);
        cr_assert_eq(coll_store_open(&st[x], dir[x], err, sizeof err), 0, "%s", err);
    }
    struct coll_trace **v = build_traces(); /* for its journal lines */
    for (int i = FROM_LINE; i < NTR; i += 5)
        for (int x = 0; x < 2; x++) {
            struct coll_buf line;
            coll_buf_init(&line);
            cr_assert_eq(coll_trace_journal_line(v[i], 0, &line), 0);
            cr_assert_eq(coll_buf_addc(&line, '\n'), 0);
            cr_assert_eq(coll_store_journal_append(&st[x], line.p, line.len), 0);
            coll_buf_free(&line);
        }
    free_set(v);
    rnd_state = 12345;
    for (int k = 0; k < NDG; k++) {
        size_t len = gen_dgram(&b, k, next_lo);
        for (int x = 0; x < 2; x++)
            cr_assert_eq(coll_store_journal_append_dgram(&st[x], b.buf, len), 0);
    }
    for (int x = 0; x < 2; x++)
        coll_store_close(&st[x]);

    /* cmp: half the dumps cannot be written (a directory has the name):
     * those traces stay in memory and the journal is compacted to them. */
    for (int i = 0; i < NTR; i += 2) {
        base_path(path, sizeof path, dir[0], i);
        cr_assert_eq(mkdir(path, 0700), 0);
    }
    pid_t pid = daemon_start(dir[0], "cmp1");
    struct coll_buf log, j;
    coll_buf_init(&log);
    coll_buf_init(&j);
    snprintf(path, sizeof path, "%s/cmp1.log", tmpdir);
    cr_assert_eq(coll_read_file(path, &log), 0);
    char want[64];
    snprintf(want, sizeof want, "event=journal_compacted bytes=");
    const char *c = strstr(log.p, want);
    cr_assert_not_null(c, "%s", log.p);
    snprintf(path, sizeof path, "%s/%s", dir[0], COLL_JOURNAL_NAME);
    cr_assert_eq(coll_read_file(path, &j), 0);
    cr_assert_eq(strtoull(c + strlen(want), NULL, 10), j.len);
    cr_assert_not_null(strstr(c, "traces=30"), "%s", c);
    /* datagram entries for the held records, lines only for realized spans */
    cr_assert_eq(memcmp(j.p, COLL_JOURNAL_DGRAM_MAGIC, 4) == 0 || j.p[0] == '{', 1);
    cr_assert_not_null(memmem(j.p, j.len, "\n" COLL_JOURNAL_DGRAM_MAGIC, 5));
    daemon_stop(pid, SIGKILL);

    /* cmp, restarted with the names free: every dump from the compacted
     * journal.  ref: straight from the original journal. */
    for (int i = 0; i < NTR; i += 2) {
        base_path(path, sizeof path, dir[0], i);
        cr_assert_eq(rmdir(path), 0);
    }
    int s0 = daemon_stop(daemon_start(dir[0], "cmp2"), SIGTERM);
    int s1 = daemon_stop(daemon_start(dir[1], "ref"), SIGTERM);
    cr_assert(WIFEXITED(s0) && WEXITSTATUS(s0) == 0);
    cr_assert(WIFEXITED(s1) && WEXITSTATUS(s1) == 0);
    for (int i = 0; i < NTR; i++) {
        struct coll_buf a, r;
        coll_buf_init(&a);
        coll_buf_init(&r);
        base_path(path, sizeof path, dir[0], i);
        cr_assert_eq(coll_read_file(path, &a), 0, "%s", path);
        base_path(path, sizeof path, dir[1], i);
        cr_assert_eq(coll_read_file(path, &r), 0, "%s", path);
        cr_assert_str_eq(a.p, r.p, "trace %d", i);
        coll_buf_free(&a);
        coll_buf_free(&r);
    }
    coll_buf_free(&log);
    coll_buf_free(&j);
}

/* ---- --fsync batch: the compaction is written and fsynced on the sync
 * thread while datagrams go on arriving (they are appended to the old
 * journal, then copied after the snapshot: tail_bytes).  Killed (-9) right
 * after such a compaction, the collector replays its journal to the dumps
 * a collector given every datagram at once writes, and the journal holds
 * no span twice. */

#define HI1 0x0bac6000u
#define BG_MAX 40000 /* datagrams at most */

/* Datagram k: trace k alone, a root span and 3 children. */
static size_t bg_dgram(struct wb *b, int k)
{
    uint8_t base[16], id[16], root[16];
    char v[201];
    for (int c = 0; c < 200; c++)
        v[c] = (char)('a' + (c + k) % 26);
    v[200] = '\0';
    wb_begin(b, LDPROF_MSG_SPANS, 4100, 0);
    wb_proc(b, "host", "host-a");
    wb_proc(b, "service", "zaqard");
    wb_id(base, HI1 + (uint32_t)k, 0);
    wb_id(root, HI1 + (uint32_t)k, 1);
    for (int r = 1; r <= 4; r++) {
        uint64_t t = T0 + (uint64_t)k * 1000000ull + (uint64_t)r * 1000ull;
        wb_id(id, HI1 + (uint32_t)k, (uint64_t)r);
        wb_span_begin(b, r == 1 ? LDPROF_KIND_WSGI : LDPROF_KIND_DB, 0, base, id,
                      r == 1 ? base : root, t, t + 500000);
        wb_str(b, 0, "db.statement", v);
        wb_span_end(b);
    }
    return wb_finish(b);
}

static int count_of(const char *path, const char *what)
{
    struct coll_buf l;
    coll_buf_init(&l);
    int n = 0;
    if (coll_read_file(path, &l) == 0 && l.p)
        for (const char *p = strstr(l.p, what); p; p = strstr(p + 1, what))
            n++;
    coll_buf_free(&l);
    return n;
}

/* Is `pid`'s main thread asleep in poll(2) (/proc/PID/syscall: the number
 * of the call it is blocked in)? */
static int in_poll(pid_t pid)
{
    char p[64], b[64];
    snprintf(p, sizeof p, "/proc/%d/syscall", (int)pid);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "%s: %s", p, strerror(errno));
    size_t n = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    b[n] = '\0';
    long nr = strtol(b, NULL, 10);
    return n > 0 && (nr == SYS_poll || nr == SYS_ppoll);
}

struct span_count {
    int *n; /* per trace k * 4 + span - 1 */
    int ntr, other;
};

static void count_spans(void *arg, int kind, const char *p, size_t len)
{
    struct span_count *c = arg;
    struct coll_dec d;
    struct coll_span sp;
    if (kind != COLL_JENT_DGRAM || coll_decode(&d, p, len) < 0) {
        c->other += kind != COLL_JENT_TORN; /* a kill -9 may tear the last */
        return;
    }
    while (coll_decode_next(&d, &sp)) {
        const uint8_t *t = sp.hdr.trace_id;
        int k = (int)(((uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 | (uint32_t)t[2] << 8 | t[3]) -
                      HI1);
        int r = t[15];
        cr_assert(k >= 0 && k < c->ntr && r >= 1 && r <= 4, "unknown span");
        c->n[k * 4 + r - 1]++;
    }
}

Test(collector_compact, background_compaction_then_kill9_loses_nothing, .timeout = 240)
{
    static struct wb b;
    char dir[2][128], logp[160], sock[160], path[256], err[256];
    for (int x = 0; x < 2; x++) {
        snprintf(dir[x], sizeof dir[x], "%s/%s", tmpdir, x ? "bgref" : "bg");
        cr_assert_eq(mkdir(dir[x], 0700), 0);
    }
    struct coll_store ref;
    cr_assert_eq(coll_store_open(&ref, dir[1], err, sizeof err), 0, "%s", err);
    static const char *const opts[] = {"--fsync", "batch", "--idle-ms", "200",
                                       "--journal-max-mb", "1", NULL};
    pid_t pid = daemon_start_with(dir[0], "bg1", opts);
    snprintf(logp, sizeof logp, "%s/bg1.log", tmpdir);
    snprintf(sock, sizeof sock, "%s/bg1.sock", tmpdir);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    cr_assert_lt(strlen(sock), sizeof sa.sun_path);
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "%s", strerror(errno));
    /* Until two compactions appended datagrams that came during their
     * write (blocking sends: none is dropped; a pause now and then so
     * that traces go idle and are written, which lets the journal be
     * compacted). */
    int k, with_tail = 0;
    for (k = 0; k < BG_MAX && with_tail < 2; k++) {
        size_t len = bg_dgram(&b, k);
        cr_assert_eq(send(fd, b.buf, len, 0), (ssize_t)len, "%s", strerror(errno));
        cr_assert_eq(coll_store_journal_append_dgram(&ref, b.buf, len), 0);
        if (k % 4 == 3)
            sleep_ms(1);
        if (k % 50 == 49)
            with_tail = count_of(logp, "event=journal_compacted") -
                        count_of(logp, "tail_bytes=0 ");
    }
    /* Killed once it has read every datagram (none is left charged to our
     * socket) and handled it (its main thread sleeps in poll again): what
     * it journaled must then hold every span it has not written. */
    int idle = 0;
    for (int i = 0; i < 10000 && !idle; i++) {
        int q = -1;
        idle = ioctl(fd, SIOCOUTQ, &q) == 0 && q == 0 && in_poll(pid);
        if (!idle)
            sleep_ms(1);
    }
    cr_assert(idle, "the collector did not read its queue");
    close(fd);
    daemon_stop(pid, SIGKILL);
    coll_store_close(&ref);
    cr_assert_geq(with_tail, 2, "%d datagrams, no compaction with a tail:\n%s", k,
                  logp);
    /* the journal holds each span at most once */
    struct coll_store st;
    struct span_count c = {calloc((size_t)k * 4, sizeof(int)), k, 0};
    cr_assert_eq(coll_store_open(&st, dir[0], err, sizeof err), 0, "%s", err);
    cr_assert_geq(coll_store_journal_scan(&st, count_spans, &c), 1);
    coll_store_close(&st);
    cr_assert_eq(c.other, 0);
    for (int i = 0; i < k * 4; i++)
        cr_assert_leq(c.n[i], 1, "span %d of trace %d %d times in the journal", i % 4 + 1,
                      i / 4, c.n[i]);
    free(c.n);
    /* restarted: every trace; the reference: the same from all datagrams */
    static const char *const batch[] = {"--fsync", "batch", NULL};
    int s0 = daemon_stop(daemon_start_with(dir[0], "bg2", batch), SIGTERM);
    int s1 = daemon_stop(daemon_start_with(dir[1], "bgref", batch), SIGTERM);
    cr_assert(WIFEXITED(s0) && WEXITSTATUS(s0) == 0);
    cr_assert(WIFEXITED(s1) && WEXITSTATUS(s1) == 0);
    for (int i = 0; i < k; i++) {
        uint8_t base[16];
        char text[37];
        struct coll_buf a, r;
        coll_buf_init(&a);
        coll_buf_init(&r);
        wb_id(base, HI1 + (uint32_t)i, 0);
        coll_uuid_fmt(base, text);
        snprintf(path, sizeof path, "%s/%s.json", dir[1], text);
        cr_assert_eq(coll_read_file(path, &r), 0, "%s", path);
        snprintf(path, sizeof path, "%s/%s.json", dir[0], text);
        cr_assert_eq(coll_read_file(path, &a), 0, "trace %d of %d lost: %s", i, k, path);
        cr_assert_str_eq(a.p, r.p, "trace %d", i);
        coll_buf_free(&a);
        coll_buf_free(&r);
    }
}
