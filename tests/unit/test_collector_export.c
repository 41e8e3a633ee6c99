/*
 * test_collector_export.c - `ldprof trace show --dot|--chrome|--otlp` and
 * the `ldprof trace list` filters (collector/export_trace.c), checked by
 * structure on the OSProfiler reference dumps
 * (tests/data/collector-osprofiler-reports.json) and on edited copies of
 * them, plus the real binary ($LDPROF_BUILD/collector/ldprof) for the
 * options, their exit codes, and `dot -Tsvg` (skipped when Graphviz's dot
 * is not installed).  Also `--html` (collector/export_html.c: the embedded
 * data, nothing fetched, hostile names kept as data, 10k spans) and
 * `trace list --redis` (collector/redis_list.c) against the real Redis of
 * $LDPROF_TEST_REDIS_URI (db 10).
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "collector/decode.h"
#include "collector/events.h"
#include "collector/export_html.h"
#include "collector/ingest.h"
#include "collector/json.h"
#include "collector/redis_list.h"
#include "collector/redis_store.h"
#include "collector/render.h"
#include "collector/report.h"
#include "collector/trace.h"
#include "wire_build.h"

static char tmpdir[64];

static void cleanup(void)
{
    if (tmpdir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            cr_log_warn("cleanup failed");
        tmpdir[0] = '\0';
    }
}

TestSuite(collector_export, .timeout = 60, .fini = cleanup);

static const char *const TRACES[] = {"trace_synthetic", "trace_live", "trace_tiny"};
#define NTRACES 3

static json_t *reports(void)
{
    const char *top = getenv("LDPROF_TOP");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/collector-osprofiler-reports.json",
             top && *top ? top : ".");
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert_not_null(j, "cannot load %s: %s (set LDPROF_TOP)", path, je.text);
    return j;
}

/* The dump text of one reference trace (malloc'd). */
static char *dump_text(const char *trace, char base_id[64])
{
    json_t *r = reports();
    json_t *t = json_object_get(r, trace);
    cr_assert_not_null(t);
    char *s = strdup(json_string_value(json_object_get(t, "show_json_stdout")));
    if (base_id)
        snprintf(base_id, 64, "%s", json_string_value(json_object_get(t, "base_id")));
    json_decref(r);
    return s;
}

/* Every node of a report: count, and the trace_id -> parent_id map. */
static void collect(json_t *nodes, json_t *parents, size_t *n)
{
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        json_t *node = json_array_get(nodes, i);
        (*n)++;
        json_object_set(parents, json_string_value(json_object_get(node, "trace_id")),
                        json_object_get(node, "parent_id"));
        collect(json_object_get(node, "children"), parents, n);
    }
}

static size_t count_spans(const char *text, json_t *parents)
{
    json_t *r = json_loads(text, 0, NULL);
    cr_assert_not_null(r);
    size_t n = 0;
    collect(json_object_get(r, "children"), parents, &n);
    json_decref(r);
    return n;
}

static size_t count_sub(const char *s, const char *sub)
{
    size_t n = 0;
    for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub))
        n++;
    return n;
}

static int have_dot(void)
{
    return system("command -v dot >/dev/null 2>&1") == 0;
}

/* Pipe `text` through `dot -Tsvg`; returns its exit status. */
static int dot_accepts(const char *text)
{
    char path[] = "/tmp/ldprof-dot.XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "dot -Tsvg '%s' 2>&1 | grep -q '<svg'", path);
    int rc = system(cmd);
    unlink(path);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* ------------------------------------------------------------ DOT */

Test(collector_export, dot_synthetic_matches_osprofiler)
{
    char *text = dump_text("trace_synthetic", NULL);
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_export_dot(&b, text, strlen(text)), 0);
    /* the start of the example in the compat spec, §10.3 */
    const char *want = "digraph {\n"
                       "\t0 [label=\"total - 50 ms\"]\n"
                       "\t1 [label=\"demo-api:wsgi - 50 ms\\nGET /v2/servers/1..\"]\n"
                       "\t2 [label=\"demo-api:db - 18 ms\"]\n"
                       "\t1 -> 2\n"
                       "\t3 [label=\"demo-api:rpc - 10 ms\\nget\"]\n";
    cr_assert_eq(strncmp(b.p, want, strlen(want)), 0, "got:\n%s", b.p);
    cr_assert(b.len > 2 && strcmp(b.p + b.len - 2, "}\n") == 0);
    coll_buf_free(&b);
    free(text);
}

Test(collector_export, dot_structure_all_traces)
{
    for (int t = 0; t < NTRACES; t++) {
        char *text = dump_text(TRACES[t], NULL);
        json_t *parents = json_object();
        size_t n = count_spans(text, parents);
        struct coll_buf b;
        coll_buf_init(&b);
        cr_assert_eq(coll_export_dot(&b, text, strlen(text)), 0);
        cr_assert_eq(strncmp(b.p, "digraph {\n", 10), 0);
        cr_assert_eq(count_sub(b.p, " [label=\""), n + 1, "%s: nodes", TRACES[t]);
        cr_assert_eq(count_sub(b.p, " -> "), n, "%s: edges", TRACES[t]);
        /* node ids 0..n in order, each edge's ends declared before it */
        long next = 0;
        for (char *line = b.p; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
            long a, c;
            if (sscanf(line, "\t%ld -> %ld", &a, &c) == 2) {
                cr_assert(a < c && c < next, "%s: edge %ld -> %ld", TRACES[t], a, c);
            } else if (sscanf(line, "\t%ld [label=", &a) == 1) {
                cr_assert_eq(a, next, "%s: node id", TRACES[t]);
                next++;
            }
        }
        cr_assert_eq(next, (long)n + 1);
        if (have_dot())
            cr_assert_eq(dot_accepts(b.p), 0, "%s: dot -Tsvg rejected:\n%s", TRACES[t], b.p);
        coll_buf_free(&b);
        json_decref(parents);
        free(text);
    }
    if (!have_dot())
        cr_log_warn("dot (graphviz) not installed: `dot -Tsvg` part skipped");
}

/* A null service, quotes and backslashes in the path: no crash, escaped. */
Test(collector_export, dot_null_service_and_quotes)
{
    char *text = dump_text("trace_synthetic", NULL);
    json_t *r = json_loads(text, 0, NULL);
    json_t *wsgi = json_array_get(json_object_get(r, "children"), 0);
    json_t *info = json_object_get(wsgi, "info");
    json_object_set_new(info, "service", json_null());
    json_t *req = json_object_get(
        json_object_get(json_object_get(info, "meta.raw_payload.wsgi-start"), "info"), "request");
    json_object_set_new(req, "path", json_string("/a\"b\\c"));
    struct coll_buf src, b;
    coll_buf_init(&src);
    coll_buf_init(&b);
    cr_assert_eq(coll_json_dump(&src, r, 2), 0);
    cr_assert_eq(coll_export_dot(&b, src.p, src.len), 0);
    cr_assert_not_null(strstr(b.p, "\t1 [label=\":wsgi - 50 ms\\nGET /a\\\"b\\\\c..\"]\n"), "%s",
                       b.p);
    if (have_dot())
        cr_assert_eq(dot_accepts(b.p), 0, "dot -Tsvg rejected:\n%s", b.p);
    cr_assert_eq(coll_export_dot(&b, "{}", 2), -1);
    coll_buf_free(&src);
    coll_buf_free(&b);
    json_decref(r);
    free(text);
}

/* ------------------------------------------------------------ Chrome */

/* Structure of a --chrome export of `text`: every span exactly once, as a
 * complete event ("X") or as a balanced async pair ("b" then "e", same id,
 * name, cat, pid and tid); every pid named by a process_name event and
 * every thread_name event on a named pid; children inside their parents'
 * time range (same process); complete events on one (pid, tid) nested or
 * disjoint.  Returns the export (caller frees) with each span's
 * {ph, ts, dur, pid, tid, cat} by span id in *spans when asked. */
static json_t *check_chrome(const char *trace, const char *text, int check_parents,
                            json_t **spans)
{
    json_t *parents = json_object();
    size_t n = count_spans(text, parents);
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_export_chrome(&b, text, strlen(text)), 0);
    json_error_t je;
    json_t *doc = json_loads(b.p, 0, &je);
    cr_assert_not_null(doc, "%s: invalid JSON: %s", trace, je.text);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "displayTimeUnit")), "ms");
    json_t *evs = json_object_get(doc, "traceEvents");
    cr_assert(json_is_array(evs));
    json_t *by_id = json_object(), *pids = json_object(), *open = json_object();
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e) {
        const char *ph = json_string_value(json_object_get(e, "ph"));
        cr_assert_not_null(ph);
        char pid[32];
        snprintf(pid, sizeof pid, "%lld", json_integer_value(json_object_get(e, "pid")));
        if (strcmp(ph, "M") == 0) {
            const char *mn = json_string_value(json_object_get(e, "name"));
            cr_assert_not_null(mn);
            if (strcmp(mn, "thread_name") == 0) {
                cr_assert_not_null(json_object_get(pids, pid), "%s: thread_name before process",
                                   trace);
                cr_assert_gt(json_integer_value(json_object_get(e, "tid")), 0);
            } else {
                cr_assert_str_eq(mn, "process_name");
                cr_assert_null(json_object_get(pids, pid), "%s: pid %s named twice", trace, pid);
                json_object_set_new(pids, pid, json_true());
            }
            cr_assert(json_is_string(json_object_get(json_object_get(e, "args"), "name")));
            continue;
        }
        cr_assert(strcmp(ph, "X") == 0 || strcmp(ph, "b") == 0 || strcmp(ph, "e") == 0,
                  "%s: phase %s", trace, ph);
        cr_assert_geq(json_integer_value(json_object_get(e, "ts")), 0);
        cr_assert_gt(json_integer_value(json_object_get(e, "tid")), 0);
        cr_assert_not_null(json_object_get(pids, pid), "%s: pid %s without process_name", trace,
                           pid);
        cr_assert_gt(json_string_length(json_object_get(e, "name")), 0);
        if (strcmp(ph, "e") == 0) { /* closes its "b" */
            const char *aid = json_string_value(json_object_get(e, "id"));
            cr_assert_not_null(aid, "%s: async end without id", trace);
            json_t *sp = json_object_get(open, aid);
            cr_assert_not_null(sp, "%s: end of %s without begin", trace, aid);
            const char *same[] = {"name", "cat", "pid", "tid"};
            for (int k = 0; k < 4; k++)
                cr_assert(json_equal(json_object_get(e, same[k]), json_object_get(sp, same[k])),
                          "%s: %s of %s differs between b and e", trace, same[k], aid);
            json_int_t dur = json_integer_value(json_object_get(e, "ts")) -
                             json_integer_value(json_object_get(sp, "ts"));
            cr_assert_geq(dur, 0, "%s: %s ends before it begins", trace, aid);
            json_object_set_new(sp, "dur", json_integer(dur));
            json_object_del(open, aid);
            continue;
        }
        cr_assert(json_is_object(json_object_get(e, "args")));
        const char *tid = json_string_value(json_object_get(json_object_get(e, "args"), "trace_id"));
        cr_assert_not_null(tid);
        cr_assert_null(json_object_get(by_id, tid), "%s: span %s twice", trace, tid);
        cr_assert_not_null(json_object_get(parents, tid), "%s: unknown span %s", trace, tid);
        json_t *sp = json_pack("{s:O,s:O,s:O,s:O,s:O}", "ph", json_object_get(e, "ph"), "ts",
                               json_object_get(e, "ts"), "pid", json_object_get(e, "pid"), "tid",
                               json_object_get(e, "tid"), "cat", json_object_get(e, "cat"));
        json_object_set(sp, "name", json_object_get(e, "name"));
        if (strcmp(ph, "X") == 0) {
            cr_assert_geq(json_integer_value(json_object_get(e, "dur")), 0);
            json_object_set(sp, "dur", json_object_get(e, "dur"));
        } else {
            const char *aid = json_string_value(json_object_get(e, "id"));
            cr_assert_not_null(aid, "%s: async begin without id", trace);
            cr_assert_str_eq(aid, tid, "%s: async id is not the span id", trace);
            json_object_set(open, aid, sp);
        }
        json_object_set_new(by_id, tid, sp);
    }
    cr_assert_eq(json_object_size(open), 0, "%s: %zu async spans never end", trace,
                 json_object_size(open));
    cr_assert_eq(json_object_size(by_id), n, "%s: %zu spans, %zu events", trace, n,
                 json_object_size(by_id));
    /* children inside their parents' time range (same process: same clock) */
    const char *id;
    json_object_foreach(by_id, id, e) {
        json_t *p = json_object_get(by_id, json_string_value(json_object_get(parents, id)));
        if (!check_parents || !p ||
            !json_equal(json_object_get(p, "pid"), json_object_get(e, "pid")))
            continue;
        json_int_t ps = json_integer_value(json_object_get(p, "ts")),
                   pe = ps + json_integer_value(json_object_get(p, "dur")),
                   cs = json_integer_value(json_object_get(e, "ts")),
                   ce = cs + json_integer_value(json_object_get(e, "dur"));
        cr_assert(ps <= cs && ce <= pe, "%s: span %s outside its parent", trace, id);
    }
    /* on each (pid, tid), complete events nest or are disjoint */
    json_t *a, *c;
    const char *ka, *kc;
    json_object_foreach(by_id, ka, a) {
        json_object_foreach(by_id, kc, c) {
            if (strcmp(ka, kc) >= 0 || strcmp(json_string_value(json_object_get(a, "ph")), "X") ||
                strcmp(json_string_value(json_object_get(c, "ph")), "X") ||
                !json_equal(json_object_get(a, "pid"), json_object_get(c, "pid")) ||
                !json_equal(json_object_get(a, "tid"), json_object_get(c, "tid")))
                continue;
            json_int_t as = json_integer_value(json_object_get(a, "ts")),
                       ae = as + json_integer_value(json_object_get(a, "dur")),
                       cs = json_integer_value(json_object_get(c, "ts")),
                       ce = cs + json_integer_value(json_object_get(c, "dur"));
            int disjoint = ae <= cs || ce <= as;
            int nested = (as <= cs && ce <= ae) || (cs <= as && ae <= ce);
            cr_assert(disjoint || nested, "%s: overlapping events on one thread", trace);
        }
    }
    if (spans)
        *spans = json_incref(by_id);
    json_decref(by_id);
    json_decref(open);
    json_decref(pids);
    json_decref(parents);
    coll_buf_free(&b);
    return doc;
}

Test(collector_export, chrome_structure_all_traces)
{
    for (int t = 0; t < NTRACES; t++) {
        char *text = dump_text(TRACES[t], NULL);
        json_decref(check_chrome(TRACES[t], text, 1, NULL));
        free(text);
    }
}

/* trace_synthetic's db (1.9-19.9 ms) and rpc (1.4-11.9 ms) overlap without
 * nesting under the same wsgi: they must get different lanes. */
Test(collector_export, chrome_overlap_gets_own_lane)
{
    char *text = dump_text("trace_synthetic", NULL);
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_export_chrome(&b, text, strlen(text)), 0);
    json_t *doc = json_loads(b.p, 0, NULL);
    json_t *evs = json_object_get(doc, "traceEvents"), *e;
    size_t i;
    json_int_t db_tid = -1, rpc_tid = -2, wsgi_tid = -3;
    json_array_foreach(evs, i, e) {
        const char *tid = json_string_value(json_object_get(json_object_get(e, "args"), "trace_id"));
        json_int_t lane = json_integer_value(json_object_get(e, "tid"));
        if (!tid)
            continue;
        if (strncmp(tid, "cccccccc", 8) == 0)
            db_tid = lane;
        else if (strncmp(tid, "aaaaaaaa", 8) == 0)
            wsgi_tid = lane;
        else if (strcmp(json_string_value(json_object_get(e, "cat")), "rpc") == 0 &&
                 json_integer_value(json_object_get(e, "pid")) == 1)
            rpc_tid = lane;
    }
    cr_assert_eq(wsgi_tid, 1);
    cr_assert_neq(db_tid, rpc_tid);
    json_decref(doc);
    coll_buf_free(&b);
    free(text);
}

/* ------------------------------------------------------------ Chrome, real threads */

/* 2024-01-02T03:04:05 UTC; times below in µs from there */
#define TH_T0 1704164645000000000ull
#define TH_US(x) (TH_T0 + (uint64_t)(x) * 1000u)

static struct wb TW;
static uint8_t th_base[16];

static void th_span(uint8_t kind, uint32_t tid, uint32_t id, uint32_t parent, int64_t s,
                    int64_t e)
{
    uint8_t sid[16], pid[16];
    wb_id(sid, 0x7d000000 | id, id);
    if (parent)
        wb_id(pid, 0x7d000000 | parent, parent);
    else
        memcpy(pid, th_base, 16);
    wb_span_begin(&TW, kind, 0, th_base, sid, pid, TH_US(s), TH_US(e));
    wb_le(TW.buf + TW.rec_off + 4, tid, 4); /* the recording thread */
    wb_str(&TW, 0, kind == LDPROF_KIND_WSGI ? "request.path" : "db.statement", "x");
    wb_span_end(&TW);
}

static void th_add(struct coll_trace *t)
{
    size_t len = wb_finish(&TW);
    struct coll_dec d;
    struct coll_span sp;
    cr_assert_eq(coll_decode(&d, TW.buf, len), 0, "%s", d.errstr);
    while (coll_decode_next(&d, &sp))
        cr_assert_eq(coll_raw_add(t, &d, &sp), 0);
}

/* A dump of spans recorded on the wire with their threads, through the
 * collector's own path (held records -> events -> report):
 *   zaqard pid 4242 @host-a: main thread 4242 serves requests 1 (0-10 ms)
 *     and 2 (2-14 ms) interleaved (select loop), 1 has redis 5 (5-6 ms), 2
 *     has redis 6 (3-4 ms); worker thread 4300 serves request 3 (20-30 ms)
 *     with db 7 (21-25 ms), an async redis 8 (24-29 ms) that outlives db 7,
 *     and db 9 (26-28 ms);
 *   client pid 5151 @host-a thread 5160: http 10 (1-35 ms);
 *   zaqard pid 4242 @host-b (another machine, same pid): wsgi 11 (40-41 ms). */
static char *threaded_dump(void)
{
    wb_id(th_base, 0x7d0000ba, 1);
    struct coll_trace *t = coll_trace_new("7d0000ba-0000-4000-8000-000000000001");
    cr_assert_not_null(t);
    wb_begin(&TW, LDPROF_MSG_SPANS, 4242, 0);
    wb_proc(&TW, "host", "host-a");
    wb_proc(&TW, "service", "zaqard");
    th_span(LDPROF_KIND_WSGI, 4242, 1, 0, 0, 10000);
    th_span(LDPROF_KIND_WSGI, 4242, 2, 0, 2000, 14000);
    th_span(LDPROF_KIND_REDIS, 4242, 5, 1, 5000, 6000);
    th_span(LDPROF_KIND_REDIS, 4242, 6, 2, 3000, 4000);
    th_span(LDPROF_KIND_WSGI, 4300, 3, 0, 20000, 30000);
    th_span(LDPROF_KIND_DB, 4300, 7, 3, 21000, 25000);
    th_span(LDPROF_KIND_REDIS, 4300, 8, 3, 24000, 29000);
    th_span(LDPROF_KIND_DB, 4300, 9, 3, 26000, 28000);
    th_add(t);
    wb_begin(&TW, LDPROF_MSG_SPANS, 5151, 0);
    wb_proc(&TW, "host", "host-a");
    wb_proc(&TW, "service", "client");
    th_span(LDPROF_KIND_HTTP, 5160, 10, 0, 1000, 35000);
    th_add(t);
    wb_begin(&TW, LDPROF_MSG_SPANS, 4242, 0);
    wb_proc(&TW, "host", "host-b");
    wb_proc(&TW, "service", "zaqard");
    th_span(LDPROF_KIND_WSGI, 4242, 11, 0, 40000, 41000);
    th_add(t);
    struct coll_buf out;
    struct coll_report_ctx ctx;
    coll_buf_init(&out);
    cr_assert_eq(coll_trace_render(t, &out, &ctx), 0, "%s", ctx.errstr);
    coll_trace_free(t);
    return out.p;
}

static json_t *span_ev(json_t *spans, uint32_t n)
{
    uint8_t id[16];
    char text[37];
    wb_id(id, 0x7d000000 | n, n);
    coll_uuid_fmt(id, text);
    json_t *e = json_object_get(spans, text);
    cr_assert_not_null(e, "span %u missing", n);
    return e;
}

static const char *meta_name(json_t *evs, const char *what, json_int_t pid, json_int_t tid)
{
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "ph")), "M") == 0 &&
            strcmp(json_string_value(json_object_get(e, "name")), what) == 0 &&
            json_integer_value(json_object_get(e, "pid")) == pid &&
            (tid < 0 || json_integer_value(json_object_get(e, "tid")) == tid))
            return json_string_value(json_object_get(json_object_get(e, "args"), "name"));
    }
    return NULL;
}

Test(collector_export, chrome_real_threads_and_async_overlaps)
{
    char *text = threaded_dump();
    /* the dump keeps the thread in the start info, before host */
    json_t *r = json_loads(text, 0, NULL), *node;
    json_t *top = json_object_get(r, "children");
    size_t i, seen = 0;
    json_array_foreach(top, i, node) {
        json_t *info = json_object_get(node, "info");
        json_t *si = json_object_get(json_object_get(info, "meta.raw_payload.wsgi-start"), "info");
        if (!si || json_integer_value(json_object_get(info, "started")) != 20)
            continue;
        struct coll_buf k;
        coll_buf_init(&k);
        cr_assert_eq(coll_json_dump(&k, si, COLL_JSON_COMPACT), 0);
        cr_assert_str_eq(k.p, "{\"request\": {\"path\": \"x\"}, \"thread\": {\"pid\": 4242, "
                              "\"tid\": 4300}, \"host\": \"host-a\"}");
        coll_buf_free(&k);
        seen++;
    }
    cr_assert_eq(seen, 1);
    json_decref(r);
    json_t *spans;
    json_t *doc = check_chrome("threaded", text, 1, &spans);
    json_t *evs = json_object_get(doc, "traceEvents");
    static const struct {
        uint32_t n;
        const char *ph;
        json_int_t pid, tid, ts, dur;
    } want[] = {
        {1, "X", 4242, 4242, 0, 10000},     {2, "b", 4242, 4242, 2000, 12000},
        {5, "X", 4242, 4242, 5000, 1000},   {6, "b", 4242, 4242, 3000, 1000},
        {3, "X", 4242, 4300, 20000, 10000}, {7, "X", 4242, 4300, 21000, 4000},
        {8, "b", 4242, 4300, 24000, 5000},  {9, "X", 4242, 4300, 26000, 2000},
        {10, "X", 5151, 5160, 1000, 34000},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        json_t *e = span_ev(spans, want[k].n);
        cr_assert_str_eq(json_string_value(json_object_get(e, "ph")), want[k].ph, "span %u",
                         want[k].n);
        cr_assert_eq(json_integer_value(json_object_get(e, "pid")), want[k].pid, "span %u",
                     want[k].n);
        cr_assert_eq(json_integer_value(json_object_get(e, "tid")), want[k].tid, "span %u",
                     want[k].n);
        cr_assert_eq(json_integer_value(json_object_get(e, "ts")), want[k].ts, "span %u",
                     want[k].n);
        cr_assert_eq(json_integer_value(json_object_get(e, "dur")), want[k].dur, "span %u",
                     want[k].n);
    }
    /* the other machine's pid 4242 is another process: another number */
    json_t *b11 = span_ev(spans, 11);
    json_int_t p11 = json_integer_value(json_object_get(b11, "pid"));
    cr_assert(p11 != 4242 && p11 != 5151 && p11 > 0);
    cr_assert_eq(json_integer_value(json_object_get(b11, "tid")), 4242);
    cr_assert_str_eq(meta_name(evs, "process_name", 4242, -1), "zaqard@host-a (pid 4242)");
    cr_assert_str_eq(meta_name(evs, "process_name", 5151, -1), "client@host-a (pid 5151)");
    cr_assert_str_eq(meta_name(evs, "process_name", p11, -1), "zaqard@host-b (pid 4242)");
    cr_assert_str_eq(meta_name(evs, "thread_name", 4242, 4242), "main thread 4242");
    cr_assert_str_eq(meta_name(evs, "thread_name", 4242, 4300), "thread 4300");
    cr_assert_str_eq(meta_name(evs, "thread_name", 5151, 5160), "thread 5160");
    cr_assert_str_eq(meta_name(evs, "thread_name", p11, 4242), "main thread 4242");
    json_decref(spans);
    json_decref(doc);

    /* a mixed dump (one span without its thread, as OSProfiler writes
     * them): that span goes to a lane of its service@host, the rest stay */
    r = json_loads(text, 0, NULL);
    top = json_object_get(r, "children");
    json_array_foreach(top, i, node) {
        json_t *info = json_object_get(node, "info");
        if (strcmp(json_string_value(json_object_get(info, "name")), "http") == 0)
            json_object_del(json_object_get(json_object_get(info, "meta.raw_payload.http-start"),
                                            "info"),
                            "thread");
    }
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_json_dump(&b, r, 2), 0);
    json_decref(r);
    doc = check_chrome("mixed", b.p, 1, &spans);
    json_t *h = span_ev(spans, 10);
    json_int_t hp = json_integer_value(json_object_get(h, "pid"));
    p11 = json_integer_value(json_object_get(span_ev(spans, 11), "pid"));
    cr_assert(hp != 4242 && hp != 5151 && hp != p11 && hp > 0);
    cr_assert_eq(json_integer_value(json_object_get(h, "tid")), 1);
    cr_assert_str_eq(meta_name(json_object_get(doc, "traceEvents"), "process_name", hp, -1),
                     "client@host-a");
    cr_assert_str_eq(json_string_value(json_object_get(span_ev(spans, 2), "ph")), "b");
    json_decref(spans);
    json_decref(doc);
    coll_buf_free(&b);
    free(text);
}

/* An edited trace_synthetic: a child starting before its parent (clock
 * skew), a span without stop, a non-UUID trace_id, a null service and a
 * long non-ASCII host.  No export may fail, lanes must still nest. */
static char *odd_dump(void)
{
    char *text = dump_text("trace_synthetic", NULL);
    json_t *r = json_loads(text, 0, NULL);
    free(text);
    json_t *wsgi = json_array_get(json_object_get(r, "children"), 0);
    json_t *kids = json_object_get(wsgi, "children");
    json_t *db = json_object_get(json_array_get(kids, 0), "info");
    json_object_set_new(json_object_get(db, "meta.raw_payload.db-start"), "timestamp",
                        json_string("2024-01-02T03:04:04.999000"));
    json_t *rpc = json_object_get(json_array_get(kids, 1), "info");
    json_object_del(rpc, "meta.raw_payload.rpc-stop");
    json_object_set_new(json_array_get(kids, 2), "trace_id", json_string("not-a-uuid"));
    json_t *boot = json_object_get(json_array_get(json_object_get(r, "children"), 1), "info");
    json_object_set_new(boot, "service", json_null());
    char host[1300] = "";
    for (int i = 0; i < 600; i++)
        strcat(host, "\xc3\xa9");
    json_object_set_new(boot, "host", json_string(host));
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_json_dump(&b, r, 2), 0);
    json_decref(r);
    return b.p;
}

Test(collector_export, odd_dump_all_formats)
{
    char *text = odd_dump();
    json_decref(check_chrome("odd", text, 0, NULL));
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_export_otlp(&b, text, strlen(text)), 0);
    json_t *doc = json_loads(b.p, 0, NULL);
    cr_assert_not_null(doc);
    cr_assert_eq(json_array_size(json_object_get(doc, "resourceSpans")), 3);
    cr_assert_not_null(strstr(b.p, "\"ldprof.unfinished\""));
    json_decref(doc);
    coll_buf_reset(&b);
    cr_assert_eq(coll_export_dot(&b, text, strlen(text)), 0);
    if (have_dot())
        cr_assert_eq(dot_accepts(b.p), 0, "dot -Tsvg rejected:\n%s", b.p);
    coll_buf_free(&b);
    free(text);
    /* not reports */
    coll_buf_init(&b);
    cr_assert_eq(coll_export_chrome(&b, "[]", 2), -1);
    cr_assert_eq(coll_export_otlp(&b, "{\"info\": {}}", 12), -1);
    cr_assert_eq(coll_export_dot(&b, "nope", 4), -1);
    coll_buf_free(&b);
}

/* ------------------------------------------------------------ OTLP */

static int is_hex(const char *s, size_t len)
{
    if (strlen(s) != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return 0;
    return 1;
}

Test(collector_export, otlp_structure_all_traces)
{
    for (int t = 0; t < NTRACES; t++) {
        char base[64];
        char *text = dump_text(TRACES[t], base);
        json_t *parents = json_object();
        size_t n = count_spans(text, parents);
        struct coll_buf b;
        coll_buf_init(&b);
        cr_assert_eq(coll_export_otlp(&b, text, strlen(text)), 0);
        json_error_t je;
        json_t *doc = json_loads(b.p, 0, &je);
        cr_assert_not_null(doc, "%s: %s", TRACES[t], je.text);
        char want_trace[33];
        size_t k = 0;
        for (const char *p = base; *p; p++)
            if (*p != '-')
                want_trace[k++] = *p;
        want_trace[k] = '\0';
        json_t *ids = json_object(), *all = json_array();
        size_t i, j, m;
        json_t *rs, *ss, *sp;
        json_array_foreach(json_object_get(doc, "resourceSpans"), i, rs) {
            json_t *ra = json_object_get(json_object_get(rs, "resource"), "attributes");
            cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ra, 0), "key")),
                             "service.name");
            cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ra, 1), "key")),
                             "host.name");
            json_array_foreach(json_object_get(rs, "scopeSpans"), j, ss) {
                cr_assert_str_eq(
                    json_string_value(json_object_get(json_object_get(ss, "scope"), "name")),
                    "ldprof");
                json_array_foreach(json_object_get(ss, "spans"), m, sp) {
                    const char *tr = json_string_value(json_object_get(sp, "traceId"));
                    const char *id = json_string_value(json_object_get(sp, "spanId"));
                    cr_assert(is_hex(tr, 32), "traceId %s", tr);
                    cr_assert_str_eq(tr, want_trace);
                    cr_assert(is_hex(id, 16), "spanId %s", id);
                    cr_assert_null(json_object_get(ids, id), "spanId %s twice", id);
                    json_object_set_new(ids, id, json_true());
                    json_array_append(all, sp);
                    const char *s0 = json_string_value(json_object_get(sp, "startTimeUnixNano"));
                    const char *s1 = json_string_value(json_object_get(sp, "endTimeUnixNano"));
                    cr_assert(s0 && s1);
                    cr_assert_leq(strtoull(s0, NULL, 10), strtoull(s1, NULL, 10));
                    cr_assert_gt(strtoull(s0, NULL, 10), 1000000000000000000ULL);
                    json_int_t kind = json_integer_value(json_object_get(sp, "kind"));
                    const char *name = json_string_value(json_object_get(sp, "name"));
                    json_int_t want = strcmp(name, "wsgi") == 0 ? 2
                                      : (!strcmp(name, "db") || !strcmp(name, "http") ||
                                         !strcmp(name, "redis") || !strcmp(name, "mongodb"))
                                          ? 3
                                          : 1;
                    cr_assert_eq(kind, want, "%s: kind %lld", name, (long long)kind);
                    cr_assert(json_is_array(json_object_get(sp, "attributes")));
                    cr_assert(json_is_object(json_object_get(sp, "status")));
                }
            }
        }
        cr_assert_eq(json_array_size(all), n, "%s: spans", TRACES[t]);
        /* parent links resolve, except for top-level spans of the dump whose
         * parent_id is neither the base_id nor in the trace (kept dangling) */
        size_t dangling = 0, orphans = 0, empty = 0, top_base = 0;
        json_array_foreach(all, i, sp) {
            const char *pa = json_string_value(json_object_get(sp, "parentSpanId"));
            cr_assert_not_null(pa);
            if (!*pa)
                empty++;
            else if (!json_object_get(ids, pa))
                dangling++;
        }
        json_t *rep = json_loads(text, 0, NULL), *top;
        json_array_foreach(json_object_get(rep, "children"), i, top) {
            if (strcmp(json_string_value(json_object_get(top, "parent_id")), base) == 0)
                top_base++;
            else
                orphans++;
        }
        json_decref(rep);
        cr_assert_eq(empty, top_base, "%s: roots", TRACES[t]);
        cr_assert_eq(dangling, orphans, "%s: dangling parents", TRACES[t]);
        json_decref(all);
        json_decref(ids);
        json_decref(doc);
        json_decref(parents);
        coll_buf_free(&b);
        free(text);
    }
}

Test(collector_export, otlp_error_status_and_attributes)
{
    char *text = dump_text("trace_synthetic", NULL);
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_export_otlp(&b, text, strlen(text)), 0);
    json_t *doc = json_loads(b.p, 0, NULL);
    json_t *spans = json_object_get(
        json_array_get(json_object_get(json_array_get(json_object_get(doc, "resourceSpans"), 0),
                                       "scopeSpans"),
                       0),
        "spans");
    json_t *sp, *db = NULL, *wsgi = NULL;
    size_t i;
    json_array_foreach(spans, i, sp) {
        if (strcmp(json_string_value(json_object_get(sp, "spanId")), "800000000000000c") == 0)
            db = sp;
        if (strcmp(json_string_value(json_object_get(sp, "spanId")), "800000000000000a") == 0)
            wsgi = sp;
    }
    cr_assert_not_null(db);
    cr_assert_not_null(wsgi);
    cr_assert_str_eq(json_string_value(json_object_get(wsgi, "parentSpanId")), "");
    cr_assert_str_eq(json_string_value(json_object_get(db, "parentSpanId")), "800000000000000a");
    cr_assert_eq(json_object_size(json_object_get(wsgi, "status")), 0);
    json_t *st = json_object_get(db, "status");
    cr_assert_eq(json_integer_value(json_object_get(st, "code")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(st, "message")),
                     "sqlite3.OperationalError: no such table: t");
    int seen_stmt = 0, seen_param = 0;
    json_t *a;
    json_array_foreach(json_object_get(db, "attributes"), i, a) {
        const char *k = json_string_value(json_object_get(a, "key"));
        json_t *v = json_object_get(a, "value");
        if (strcmp(k, "db.statement") == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(v, "stringValue")),
                             "SELECT * FROM t WHERE id = ?");
            seen_stmt = 1;
        }
        if (strcmp(k, "db.params") == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(v, "stringValue")), "[1]");
            seen_param = 1;
        }
        cr_assert_neq(strcmp(k, "host"), 0);
    }
    cr_assert(seen_stmt && seen_param);
    json_decref(doc);
    coll_buf_free(&b);
    free(text);
}

/* ------------------------------------------------------------ list filters */

Test(collector_export, parse_since)
{
    int64_t now = 1800000000LL * 1000000, v;
    cr_assert_eq(coll_parse_since("10m", now, &v), 0);
    cr_assert_eq(v, now - 600LL * 1000000);
    cr_assert_eq(coll_parse_since("2h", now, &v), 0);
    cr_assert_eq(v, now - 7200LL * 1000000);
    cr_assert_eq(coll_parse_since("90s", now, &v), 0);
    cr_assert_eq(v, now - 90LL * 1000000);
    cr_assert_eq(coll_parse_since("3d", now, &v), 0);
    cr_assert_eq(coll_parse_since("1w", now, &v), 0);
    cr_assert_eq(v, now - 604800LL * 1000000);
    int64_t t0;
    cr_assert_eq(coll_ts_parse("2026-11-24T10:00:00.0", 21, &t0), 0);
    const char *same[] = {"2026-11-24T10:00:00", "2026-11-24T10:00", "2026-11-24T10:00:00Z",
                          "2026-11-24 10:00:00", "2026-11-24T10:00:00.000000"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        cr_assert_eq(coll_parse_since(same[i], now, &v), 0, "%s", same[i]);
        cr_assert_eq(v, t0, "%s", same[i]);
    }
    cr_assert_eq(coll_parse_since("2026-11-24", now, &v), 0);
    cr_assert_eq(v, t0 - 10LL * 3600 * 1000000);
    const char *bad[] = {"", "10", "m", "10x", "-5m", "yesterday", "2026-13-01", "2026-11-24T25:00",
                         "2026/11/24", "10m5s", "99999999999h", "999999999w"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(coll_parse_since(bad[i], now, &v), -1, "'%s' accepted", bad[i]);
}

Test(collector_export, list_match_and_errors)
{
    char *syn = dump_text("trace_synthetic", NULL), *tiny = dump_text("trace_tiny", NULL);
    struct coll_summary s, t;
    cr_assert_eq(coll_summary_from_dump(syn, strlen(syn), &s), 0);
    cr_assert_eq(coll_summary_from_dump(tiny, strlen(tiny), &t), 0);
    cr_assert_eq(s.errors, 1);
    cr_assert_eq(t.errors, 0);
    struct coll_list_filter f = {.since_us = INT64_MIN, .min_ms = -1};
    cr_assert(coll_list_match(syn, strlen(syn), &s, &f));
    f.errors = 1;
    cr_assert(coll_list_match(syn, strlen(syn), &s, &f));
    cr_assert_not(coll_list_match(tiny, strlen(tiny), &t, &f));
    f.errors = 0;
    f.min_ms = 50;
    cr_assert(coll_list_match(syn, strlen(syn), &s, &f));
    f.min_ms = 51;
    cr_assert_not(coll_list_match(syn, strlen(syn), &s, &f));
    f.min_ms = -1;
    f.since_us = s.start_us;
    cr_assert(coll_list_match(syn, strlen(syn), &s, &f));
    f.since_us = s.start_us + 1;
    cr_assert_not(coll_list_match(syn, strlen(syn), &s, &f));
    f.since_us = INT64_MIN;
    f.name = "driver"; /* a nested span's name */
    cr_assert(coll_list_match(syn, strlen(syn), &s, &f));
    f.name = "/v2/servers"; /* the ROOT column */
    cr_assert(coll_list_match(syn, strlen(syn), &s, &f));
    f.name = "mongodb";
    cr_assert_not(coll_list_match(syn, strlen(syn), &s, &f));
    free(syn);
    free(tiny);
}

/* ------------------------------------------------------------ the binary */

static const char *ldprof(void)
{
    static char p[4096];
    const char *b = getenv("LDPROF_BUILD");
    snprintf(p, sizeof p, "%s/collector/ldprof", b && *b ? b : "build");
    cr_assert_eq(access(p, X_OK), 0, "%s: %s (set LDPROF_BUILD)", p, strerror(errno));
    return p;
}

/* A trace dir with the three reference dumps. */
static void make_dir(void)
{
    strcpy(tmpdir, "/tmp/ldprof-exp.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    for (int t = 0; t < NTRACES; t++) {
        char base[64], path[256];
        char *text = dump_text(TRACES[t], base);
        snprintf(path, sizeof path, "%s/%s.json", tmpdir, base);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fputs(text, f);
        fclose(f);
        free(text);
    }
}

/* Run `ldprof ARGS --dir tmpdir`; stdout into *out (malloc'd); exit code. */
static int run_ldprof(const char *args, char **out)
{
    static char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%.4000s' %.2000s --dir '%s' 2>/dev/null", ldprof(), args, tmpdir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    struct coll_buf b;
    coll_buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        coll_buf_add(&b, chunk, n);
    int rc = pclose(p);
    *out = b.p ? b.p : strdup("");
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(collector_export, cli_show_formats)
{
    make_dir();
    char *out;
    cr_assert_eq(run_ldprof("trace show 5ca1 --dot", &out), 0);
    cr_assert_eq(strncmp(out, "digraph {\n", 10), 0);
    if (have_dot())
        cr_assert_eq(dot_accepts(out), 0);
    else
        cr_log_warn("dot (graphviz) not installed: `dot -Tsvg` part skipped");
    free(out);
    cr_assert_eq(run_ldprof("trace show 6369 --chrome", &out), 0);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert(json_is_array(json_object_get(j, "traceEvents")));
    json_decref(j);
    free(out);
    cr_assert_eq(run_ldprof("trace show 7e57 --otlp", &out), 0);
    j = json_loads(out, 0, NULL);
    cr_assert_eq(json_array_size(json_object_get(j, "resourceSpans")), 1);
    json_decref(j);
    free(out);
    cr_assert_eq(run_ldprof("trace show 5ca1 --dot --otlp", &out), 2);
    free(out);
    cr_assert_eq(run_ldprof("trace show 5ca1 --json --chrome", &out), 2);
    free(out);
    cr_assert_eq(run_ldprof("trace show --help", &out), 0);
    cr_assert(strstr(out, "--dot") && strstr(out, "--chrome") && strstr(out, "--otlp"));
    free(out);
}

Test(collector_export, cli_list_filters)
{
    make_dir();
    char *out;
    cr_assert_eq(run_ldprof("trace list --format json", &out), 0);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert_eq(json_array_size(j), 3, "%s", out);
    json_t *row = json_array_get(j, 0); /* newest first: trace_live */
    cr_assert_str_eq(json_string_value(json_object_get(row, "base_id")),
                     "63697250-c951-484f-a7cc-909cb42ac67a");
    cr_assert_str_eq(json_string_value(json_object_get(row, "start")),
                     "2026-11-24T23:02:42.922379Z");
    cr_assert(json_is_integer(json_object_get(row, "duration_ms")));
    cr_assert(json_is_string(json_object_get(row, "root")));
    cr_assert_eq(json_integer_value(json_object_get(row, "spans")), 5);
    json_decref(j);
    free(out);

    struct {
        const char *args;
        int n;
    } cases[] = {
        {"trace list --format json --errors", 2}, /* live: 2 error spans, synthetic: 1 */
        {"trace list --format json --min-duration 2", 2},
        {"trace list --format json --min-duration 51", 0},
        {"trace list --format json --since 2025-01-01", 1},
        {"trace list --format json --since 2024-01-02T03:04:05.123456Z", 2},
        {"trace list --format json --name driver", 2}, /* nested spans */
        {"trace list --format json --name /v2/servers", 1}, /* ROOT column */
        {"trace list --format json --name db", 3},
        {"trace list --format json --name SELECT", 1}, /* trace_tiny's ROOT "db SELECT 1" */
        {"trace list --format json --name driver --min-duration 1 --errors", 2},
        {"trace list --format json --name driver --min-duration 3 --errors", 1},
        {"trace list --format json --since 1000w", 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cr_assert_eq(run_ldprof(cases[i].args, &out), 0, "%s", cases[i].args);
        j = json_loads(out, 0, NULL);
        cr_assert(json_is_array(j), "%s: %s", cases[i].args, out);
        cr_assert_eq(json_array_size(j), (size_t)cases[i].n, "%s: %s", cases[i].args, out);
        json_decref(j);
        free(out);
    }
    cr_assert_eq(run_ldprof("trace list --errors", &out), 0);
    cr_assert(strstr(out, "BASE_ID") && strstr(out, "5ca1ab1e-0000-4000-8000-000000000000"));
    cr_assert_null(strstr(out, "7e570000"));
    free(out);

    const char *bad[] = {"trace list --since 10x", "trace list --since ''",
                         "trace list --min-duration -1", "trace list --min-duration 1.5",
                         "trace list --min-duration abc", "trace list --format yaml",
                         "trace list --since"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(run_ldprof(bad[i], &out), 2, "%s", bad[i]);
        free(out);
    }
    cr_assert_eq(run_ldprof("trace list --help", &out), 0);
    cr_assert(strstr(out, "--since") && strstr(out, "--min-duration") && strstr(out, "--name") &&
              strstr(out, "--errors") && strstr(out, "--format"));
    free(out);
}

/* ------------------------------------------------------------ HTML */

#define HTML_DATA_OPEN "<script type=\"application/json\" id=\"ldprof-data\">"

/* The page for `text`, checked to have exactly one data element; *data gets
 * the parsed data (new reference), *outside the page without the data
 * (malloc'd). */
static char *html_page(const char *text, json_t **data, char **outside)
{
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_export_html(&b, text, strlen(text)), 0);
    cr_assert_not_null(b.p);
    cr_assert_eq(strncmp(b.p, "<!DOCTYPE html>\n", 16), 0);
    cr_assert(b.len > 8 && strcmp(b.p + b.len - 8, "</html>\n") == 0);
    cr_assert_eq(count_sub(b.p, HTML_DATA_OPEN), 1);
    const char *d = strstr(b.p, HTML_DATA_OPEN) + strlen(HTML_DATA_OPEN);
    const char *e = strstr(d, "</script>");
    cr_assert_not_null(e);
    json_error_t je;
    *data = json_loadb(d, (size_t)(e - d), 0, &je);
    cr_assert_not_null(*data, "embedded data does not parse: %s", je.text);
    if (outside) {
        struct coll_buf o;
        coll_buf_init(&o);
        coll_buf_add(&o, b.p, (size_t)(d - b.p));
        coll_buf_adds(&o, e);
        *outside = o.p;
    }
    return b.p;
}

static int has_sub_nocase(const char *s, const char *sub)
{
    size_t l = strlen(sub);
    for (; *s; s++)
        if (strncasecmp(s, sub, l) == 0)
            return 1;
    return 0;
}

Test(collector_export, html_every_span_and_the_stats)
{
    for (int t = 0; t < NTRACES; t++) {
        char *text = dump_text(TRACES[t], NULL);
        json_t *parents = json_object();
        size_t n = count_spans(text, parents);
        json_t *data;
        char *page = html_page(text, &data, NULL);
        json_t *spans = json_object_get(data, "spans");
        cr_assert_eq(json_array_size(spans), n, "%s", TRACES[t]);
        cr_assert_eq(json_integer_value(json_object_get(data, "span_count")), (json_int_t)n);
        /* every span id of the dump once, parent indexes earlier and right */
        json_t *seen = json_object(), *sp;
        size_t i;
        json_array_foreach(spans, i, sp) {
            const char *id = json_string_value(json_object_get(sp, "id"));
            cr_assert_not_null(id);
            cr_assert_not_null(json_object_get(parents, id), "%s: unknown id %s", TRACES[t], id);
            cr_assert_null(json_object_get(seen, id), "%s: %s twice", TRACES[t], id);
            json_object_set_new(seen, id, json_true());
            json_int_t p = json_integer_value(json_object_get(sp, "parent"));
            cr_assert(p < (json_int_t)i);
            const char *want_parent = json_string_value(json_object_get(parents, id));
            if (p >= 0)
                cr_assert_str_eq(json_string_value(json_object_get(json_array_get(spans, p), "id")),
                                 want_parent);
            cr_assert(json_integer_value(json_object_get(sp, "start_us")) >= 0);
            cr_assert(json_integer_value(json_object_get(sp, "dur_us")) >= 0);
            cr_assert(json_is_object(json_object_get(sp, "start_info")));
        }
        cr_assert_eq(json_object_size(seen), n);
        /* the stats are the report's */
        json_t *r = json_loads(text, 0, NULL);
        cr_assert(json_equal(json_object_get(data, "stats"), json_object_get(r, "stats")),
                  "%s: stats differ", TRACES[t]);
        json_decref(r);
        json_decref(seen);
        json_decref(data);
        json_decref(parents);
        free(page);
        free(text);
    }
}

Test(collector_export, html_fetches_nothing)
{
    char *text = dump_text("trace_live", NULL);
    json_t *data;
    char *outside;
    char *page = html_page(text, &data, &outside);
    cr_assert_not_null(strstr(outside, "<meta http-equiv=\"Content-Security-Policy\" "
                                       "content=\"default-src 'none'; "));
    const char *banned[] = {"http://", "https://", "src=", "href=", "url(", "@import",
                            "//", "innerHTML", "outerHTML", "insertAdjacentHTML",
                            "document.write", "eval(", "fetch(", "XMLHttpRequest"};
    for (size_t i = 0; i < sizeof banned / sizeof *banned; i++)
        cr_assert(!has_sub_nocase(outside, banned[i]), "the page has '%s'", banned[i]);
    /* one page of ASCII: nothing for a charset to misread */
    for (const unsigned char *p = (const unsigned char *)page; *p; p++)
        cr_assert(*p < 0x80 && (*p >= 0x20 || *p == '\n'), "byte 0x%02x", *p);
    cr_assert_eq(json_integer_value(json_object_get(data, "errors")), 2);
    json_decref(data);
    free(outside);
    free(page);
    free(text);
}

/* Span names, services and info from traffic are hostile: none may end the
 * data element, open a comment or an element, or hide a line separator. */
Test(collector_export, html_hostile_names_stay_data)
{
    static const char *const evil[] = {"</script><img src=x onerror=alert(1)>",
                                       "</SCRIPT >x", "<!--<script>", "]]>&amp;<",
                                       "a\xe2\x80\xa8" "b\xe2\x80\xa9" "c"};
    char *text = dump_text("trace_synthetic", NULL);
    json_t *r = json_loads(text, 0, NULL);
    free(text);
    json_t *wsgi = json_array_get(json_object_get(r, "children"), 0);
    json_t *kids = json_object_get(wsgi, "children");
    json_t *db = json_object_get(json_array_get(kids, 0), "info");
    json_object_set_new(json_object_get(wsgi, "info"), "name", json_string(evil[0]));
    json_object_set_new(db, "service", json_string(evil[1]));
    json_t *ev = json_object_get(db, "meta.raw_payload.db-start");
    json_object_set_new(json_object_get(ev, "info"), evil[2], json_string(evil[3]));
    json_object_set_new(json_object_get(ev, "info"), "sep", json_string(evil[4]));
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_json_dump(&b, r, 2), 0);
    json_decref(r);
    json_t *data;
    char *page = html_page(b.p, &data, NULL);
    coll_buf_free(&b);
    /* the only ends of script elements are the page's own two */
    size_t ends = 0;
    for (const char *p = page; *p; p++)
        if (strncasecmp(p, "</script", 8) == 0)
            ends++;
    cr_assert_eq(ends, 2);
    cr_assert(!has_sub_nocase(page, "<img"));
    cr_assert(!has_sub_nocase(page, "<!--"));
    cr_assert_null(strstr(page, "\xe2\x80\xa8"));
    cr_assert_null(strstr(page, "\xe2\x80\xa9"));
    /* ... and the data still says exactly what the trace said */
    json_t *spans = json_object_get(data, "spans");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(spans, 0), "name")),
                     evil[0]);
    json_t *s1 = json_array_get(spans, 1);
    cr_assert_str_eq(json_string_value(json_object_get(s1, "service")), evil[1]);
    json_t *si = json_object_get(s1, "start_info");
    cr_assert_str_eq(json_string_value(json_object_get(si, evil[2])), evil[3]);
    cr_assert_str_eq(json_string_value(json_object_get(si, "sep")), evil[4]);
    json_decref(data);
    free(page);
}

Test(collector_export, html_empty_odd_and_errors)
{
    /* OSProfiler's report of no events */
    const char *empty = "{\"info\": {\"name\": \"total\", \"started\": 0, \"finished\": null, "
                        "\"last_trace_started\": null}, \"children\": [], \"stats\": {}}";
    json_t *data;
    char *page = html_page(empty, &data, NULL);
    cr_assert_eq(json_array_size(json_object_get(data, "spans")), 0);
    cr_assert_eq(json_integer_value(json_object_get(data, "duration_ms")), 0);
    cr_assert(json_is_null(json_object_get(data, "start")));
    json_decref(data);
    free(page);
    /* odd_dump: skew, no stop, non-UUID id, null service */
    char *text = odd_dump();
    page = html_page(text, &data, NULL);
    size_t unfinished = 0, i;
    json_t *sp;
    json_array_foreach(json_object_get(data, "spans"), i, sp) {
        cr_assert(json_integer_value(json_object_get(sp, "start_us")) >= 0);
        unfinished += json_is_true(json_object_get(sp, "unfinished"));
    }
    cr_assert_eq(unfinished, 2); /* the driver span was already, rpc is now */
    json_decref(data);
    free(page);
    free(text);
    /* error spans carry their etype and message */
    text = dump_text("trace_synthetic", NULL);
    page = html_page(text, &data, NULL);
    size_t errs = 0;
    json_array_foreach(json_object_get(data, "spans"), i, sp) {
        if (json_object_get(sp, "etype")) {
            errs++;
            cr_assert_str_eq(json_string_value(json_object_get(sp, "etype")),
                             "sqlite3.OperationalError");
            cr_assert_str_eq(json_string_value(json_object_get(sp, "message")),
                             "no such table: t");
        }
    }
    cr_assert_eq(errs, 1);
    cr_assert_eq(json_integer_value(json_object_get(data, "errors")), 1);
    json_decref(data);
    free(page);
    free(text);
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_export_html(&b, "[]", 2), -1);
    cr_assert_eq(coll_export_html(&b, "nope", 4), -1);
    coll_buf_free(&b);
}

/* A report of `n` spans (a wsgi root, the others an 8-ary tree below it),
 * built from events as the collector builds dumps. */
static char *big_dump(size_t n, const char *base)
{
    json_t *evs = json_array();
    char (*ids)[40] = calloc(n, sizeof *ids);
    cr_assert_not_null(ids);
    for (size_t i = 0; i < n; i++)
        snprintf(ids[i], sizeof ids[i], "%.8s-0000-4000-8000-%012zx", base, i + 1);
    for (size_t i = n; i-- > 0;) {
        const char *parent = i == 0 ? base : ids[(i - 1) / 8];
        const char *name = i == 0 ? "wsgi" : i % 2 ? "db" : "redis";
        for (int stop = 1; stop >= 0; stop--) {
            char nm[32], ts[32];
            snprintf(nm, sizeof nm, "%s-%s", name, stop ? "stop" : "start");
            int64_t us = 1767322800000000LL + (int64_t)i * 10 + (stop ? (i ? 5 : (int64_t)n * 10) : 0);
            coll_ts_fmt_us(us, ts);
            json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s}, s:n, s:s}", "name", nm,
                                   "base_id", base, "trace_id", ids[i], "parent_id", parent,
                                   "timestamp", ts, "info", "host", "h", "project", "service",
                                   "svc");
            cr_assert_not_null(ev);
            json_array_append_new(evs, ev);
        }
    }
    struct coll_report_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    json_t *rep = coll_report_build(evs, &ctx);
    cr_assert_not_null(rep, "%s", ctx.errstr);
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_report_dump(&b, rep), 0);
    coll_report_free(rep);
    json_decref(evs);
    free(ids);
    return b.p;
}

Test(collector_export, html_ten_thousand_spans)
{
    const size_t n = 10000;
    char *text = big_dump(n, "b16b16b1-0000-4000-8000-000000000000");
    json_t *parents = json_object();
    cr_assert_eq(count_spans(text, parents), n);
    json_t *data;
    char *page = html_page(text, &data, NULL);
    json_t *spans = json_object_get(data, "spans"), *sp;
    cr_assert_eq(json_array_size(spans), n);
    size_t i;
    json_array_foreach(spans, i, sp)
        cr_assert_not_null(json_object_get(parents, json_string_value(json_object_get(sp, "id"))));
    cr_assert_eq(json_integer_value(json_object_get(data, "total_us")), (json_int_t)n * 10);
    /* the page grows with the data only: a few hundred bytes per span */
    cr_assert_lt(strlen(page), n * 700);
    json_decref(data);
    json_decref(parents);
    free(page);
    free(text);
}

Test(collector_export, cli_show_html)
{
    make_dir();
    char *out;
    cr_assert_eq(run_ldprof("trace show 6369 --html", &out), 0);
    cr_assert_eq(strncmp(out, "<!DOCTYPE html>", 15), 0);
    cr_assert_not_null(strstr(out, "63697250-c951-484f-a7cc-909cb42ac67a"));
    free(out);
    cr_assert_eq(run_ldprof("trace show 6369 --html --json", &out), 2);
    free(out);
    cr_assert_eq(run_ldprof("trace show 6369 --otlp --html", &out), 2);
    free(out);
    cr_assert_eq(run_ldprof("trace show --help", &out), 0);
    cr_assert_not_null(strstr(out, "--html"));
    free(out);
}

/* ------------------------------------------------------------ trace list --redis */

static void redis_uri(char *uri, size_t n, int db)
{
    const char *env = getenv("LDPROF_TEST_REDIS_URI");
    if (!env || !*env) {
        if (getenv("LDPROF_TEST_ALLOW_SKIP"))
            cr_skip_test("LDPROF_TEST_REDIS_URI is not set");
        cr_assert_fail("LDPROF_TEST_REDIS_URI is not set (LDPROF_TEST_ALLOW_SKIP=1 to skip)");
    }
    const char *slash = strrchr(env, '/');
    int hl = slash && slash > env + 8 ? (int)(slash - env) : (int)strlen(env);
    snprintf(uri, n, "%.*s/%d", hl, env, db);
}

static redisContext *redis_db(const char *uri)
{
    struct coll_redis_uri u;
    cr_assert_eq(coll_redis_parse_uri(uri, &u), 0);
    redisContext *c = redisConnect(u.host, u.port);
    cr_assert(c && !c->err, "connect %s", uri);
    redisReply *r = redisCommand(c, "SELECT %d", u.db);
    cr_assert(r && r->type != REDIS_REPLY_ERROR);
    freeReplyObject(r);
    return c;
}

static void redis_do(redisContext *c, redisReply *r)
{
    cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s", r ? r->str : c->errstr);
    freeReplyObject(r);
}

/* Store a dump's events under osprofiler_opt:<key> so that LRANGE gives
 * them in read order (LPUSH the last one first), as OSProfiler would. */
static void store_dump(redisContext *c, const char *key, const char *text)
{
    char e[256];
    struct coll_trace *t = coll_trace_new("x");
    cr_assert_gt(coll_trace_load_dump(t, text, strlen(text), e, sizeof e), 0, "%s", e);
    json_t *evs = coll_trace_events(t);
    for (size_t i = json_array_size(evs); i-- > 0;) {
        struct coll_buf b;
        coll_buf_init(&b);
        cr_assert_eq(coll_json_dump(&b, json_array_get(evs, i), COLL_JSON_COMPACT), 0);
        redis_do(c, redisCommand(c, "LPUSH osprofiler_opt:%s %b", key, b.p, b.len));
        coll_buf_free(&b);
    }
    json_decref(evs);
    coll_trace_free(t);
}

struct warned {
    char ids[8][64];
    int n;
};

static void on_warn(void *arg, const char *id, const char *why)
{
    struct warned *w = arg;
    cr_log_info("skipped %s: %s", id, why);
    if (w->n < 8)
        snprintf(w->ids[w->n++], sizeof w->ids[0], "%s", id);
}

static const struct coll_summary *row_of(const struct coll_summary *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].base_id, id) == 0)
            return &v[i];
    return NULL;
}

/* db 10 of the test Redis: the three reference traces under keys of this
 * run, a key that is not a list and a list that is not JSON; the listing
 * (SCAN) finds them, summarises them as the dump files are summarised, and
 * filters them the same way; foreign keys of the db are left alone. */
Test(collector_export, redis_list_real_server)
{
    char uri[512];
    redis_uri(uri, sizeof uri, 10);
    redisContext *c = redis_db(uri);
    char keys[NTRACES][40], bad1[40], bad2[40];
    long tag = (long)getpid() * 1000 + (random() % 1000);
    for (int t = 0; t < NTRACES; t++)
        snprintf(keys[t], sizeof keys[t], "u%ld-%d", tag, t);
    snprintf(bad1, sizeof bad1, "u%ld-str", tag);
    snprintf(bad2, sizeof bad2, "u%ld-nojson", tag);
    struct coll_summary want[NTRACES];
    for (int t = 0; t < NTRACES; t++) {
        char *text = dump_text(TRACES[t], NULL);
        cr_assert_eq(coll_summary_from_dump(text, strlen(text), &want[t]), 0);
        redis_do(c, redisCommand(c, "DEL osprofiler_opt:%s", keys[t]));
        store_dump(c, keys[t], text);
        free(text);
    }
    redis_do(c, redisCommand(c, "SET osprofiler_opt:%s x", bad1));
    redis_do(c, redisCommand(c, "DEL osprofiler_opt:%s", bad2));
    redis_do(c, redisCommand(c, "RPUSH osprofiler_opt:%s {nope", bad2));
    redis_do(c, redisCommand(c, "SET unrelated:%s x", bad1));

    struct coll_list_filter all = {.since_us = INT64_MIN, .min_ms = -1};
    struct coll_summary *rows;
    size_t n, skipped;
    struct warned w = {.n = 0};
    char e[256];
    cr_assert_eq(coll_redis_list(uri, &all, &rows, &n, &skipped, on_warn, &w, e, sizeof e), 0,
                 "%s", e);
    for (int t = 0; t < NTRACES; t++) {
        const struct coll_summary *s = row_of(rows, n, keys[t]);
        cr_assert_not_null(s, "%s not listed", keys[t]);
        cr_assert_eq(s->start_us, want[t].start_us, "%s", TRACES[t]);
        cr_assert_eq(s->duration_ms, want[t].duration_ms, "%s", TRACES[t]);
        cr_assert_str_eq(s->root, want[t].root, "%s", TRACES[t]);
        cr_assert_eq(s->spans, want[t].spans, "%s", TRACES[t]);
        cr_assert_eq(s->errors, want[t].errors, "%s", TRACES[t]);
    }
    cr_assert_null(row_of(rows, n, bad1));
    cr_assert_null(row_of(rows, n, bad2));
    int got1 = 0, got2 = 0;
    for (int i = 0; i < w.n; i++) {
        got1 |= strcmp(w.ids[i], bad1) == 0;
        got2 |= strcmp(w.ids[i], bad2) == 0;
    }
    cr_assert(got1 && got2 && skipped >= 2, "bad keys not reported (%zu skipped)", skipped);
    free(rows);

    /* the filters, as in cli_list_filters: (filter, traces it keeps) */
    struct {
        struct coll_list_filter f;
        int keep[NTRACES]; /* synthetic, live, tiny */
    } cases[] = {
        {{.since_us = INT64_MIN, .min_ms = -1, .errors = 1}, {1, 1, 0}},
        {{.since_us = INT64_MIN, .min_ms = 51}, {0, 0, 0}},
        {{.since_us = INT64_MIN, .min_ms = -1, .name = "driver"}, {1, 1, 0}},
        {{.since_us = INT64_MIN, .min_ms = -1, .name = "SELECT"}, {0, 0, 1}},
        {{.since_us = 1735689600000000LL /* 2025-01-01 */, .min_ms = -1}, {0, 1, 0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        cr_assert_eq(coll_redis_list(uri, &cases[k].f, &rows, &n, NULL, NULL, NULL, e, sizeof e),
                     0, "%s", e);
        for (int t = 0; t < NTRACES; t++)
            cr_assert_eq(row_of(rows, n, keys[t]) != NULL, cases[k].keep[t],
                         "case %zu, %s", k, TRACES[t]);
        free(rows);
    }

    /* the CLI: same rows, table and json; --dir and --redis exclude each other */
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, "'%s' trace list --redis '%s' --format json --errors 2>/dev/null",
             ldprof(), uri);
    FILE *p = popen(cmd, "r");
    struct coll_buf ob;
    coll_buf_init(&ob);
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, p)) > 0)
        coll_buf_add(&ob, chunk, got);
    int rc = pclose(p);
    cr_assert_eq(WEXITSTATUS(rc), 1, "skipped keys: exit status 1"); /* bad1, bad2 */
    json_t *j = json_loads(ob.p ? ob.p : "", 0, NULL);
    cr_assert(json_is_array(j), "%s", ob.p);
    int hits = 0;
    json_t *o;
    size_t i;
    json_array_foreach(j, i, o) {
        for (int t = 0; t < NTRACES; t++)
            if (strcmp(json_string_value(json_object_get(o, "base_id")), keys[t]) == 0) {
                hits++;
                cr_assert_eq(json_integer_value(json_object_get(o, "spans")),
                             (json_int_t)want[t].spans);
            }
    }
    cr_assert_eq(hits, 2);
    json_decref(j);
    coll_buf_free(&ob);
    make_dir();
    snprintf(cmd, sizeof cmd, "trace list --redis '%s'", uri);
    cr_assert_eq(run_ldprof(cmd, &out), 2);
    free(out);

    for (int t = 0; t < NTRACES; t++)
        redis_do(c, redisCommand(c, "DEL osprofiler_opt:%s", keys[t]));
    redis_do(c, redisCommand(c, "DEL osprofiler_opt:%s osprofiler_opt:%s unrelated:%s", bad1,
                             bad2, bad1));
    redisFree(c);

    /* an unreachable server or a bad URI: an error, no rows */
    cr_assert_eq(coll_redis_list("redis://127.0.0.1:1/0", &all, &rows, &n, NULL, NULL, NULL, e,
                                 sizeof e),
                 -1);
    cr_assert_not_null(strstr(e, "connect"), "%s", e);
    cr_assert_eq(coll_redis_list("http://x", &all, &rows, &n, NULL, NULL, NULL, e, sizeof e), -1);
}
