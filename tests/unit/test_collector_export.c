/*
 * test_collector_export.c - `ldprof trace show --dot|--chrome|--otlp` and
 * the `ldprof trace list` filters (collector/export_trace.c), checked by
 * structure on the OSProfiler reference dumps
 * (tests/data/collector-osprofiler-reports.json) and on edited copies of
 * them, plus the real binary ($LDPROF_BUILD/collector/ldprof) for the
 * options, their exit codes, and `dot -Tsvg` (skipped when Graphviz's dot
 * is not installed).
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "collector/events.h"
#include "collector/json.h"
#include "collector/render.h"

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

static void check_chrome(const char *trace, const char *text, int check_parents)
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
    json_t *by_id = json_object(), *pids = json_object();
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e) {
        const char *ph = json_string_value(json_object_get(e, "ph"));
        cr_assert_not_null(ph);
        char pid[32];
        snprintf(pid, sizeof pid, "%lld", json_integer_value(json_object_get(e, "pid")));
        if (strcmp(ph, "M") == 0) {
            cr_assert_str_eq(json_string_value(json_object_get(e, "name")), "process_name");
            json_object_set_new(pids, pid, json_true());
            continue;
        }
        cr_assert_str_eq(ph, "X", "%s: phase %s", trace, ph);
        cr_assert(json_is_object(json_object_get(e, "args")));
        const char *tid = json_string_value(json_object_get(json_object_get(e, "args"), "trace_id"));
        cr_assert_not_null(tid);
        cr_assert_null(json_object_get(by_id, tid), "%s: span %s twice", trace, tid);
        cr_assert_not_null(json_object_get(parents, tid), "%s: unknown span %s", trace, tid);
        cr_assert_geq(json_integer_value(json_object_get(e, "dur")), 0);
        cr_assert_geq(json_integer_value(json_object_get(e, "ts")), 0);
        cr_assert_gt(json_integer_value(json_object_get(e, "tid")), 0);
        cr_assert_not_null(json_object_get(pids, pid), "%s: pid %s without process_name", trace,
                           pid);
        cr_assert_gt(json_string_length(json_object_get(e, "name")), 0);
        json_object_set(by_id, tid, e);
    }
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
    /* on each (pid, tid) lane, complete events nest or are disjoint */
    json_t *a, *c;
    size_t j, k;
    json_array_foreach(evs, j, a) {
        json_array_foreach(evs, k, c) {
            if (k <= j || strcmp(json_string_value(json_object_get(a, "ph")), "X") ||
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
            cr_assert(disjoint || nested, "%s: overlapping events on one lane", trace);
        }
    }
    json_decref(by_id);
    json_decref(pids);
    json_decref(doc);
    json_decref(parents);
    coll_buf_free(&b);
}

Test(collector_export, chrome_structure_all_traces)
{
    for (int t = 0; t < NTRACES; t++) {
        char *text = dump_text(TRACES[t], NULL);
        check_chrome(TRACES[t], text, 1);
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
    check_chrome("odd", text, 0);
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
