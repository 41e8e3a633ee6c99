/*
 * test_collector_report.c - collector/report.c and collector/trace.c against
 * OSProfiler 3.4.3's own output: for trace_synthetic, trace_live and
 * trace_tiny (tests/data/collector-osprofiler-reports.json, copied from the
 * reference vectors) the report built from the Redis list must equal
 * `osprofiler trace show --json` stdout byte for byte; and so must the dump
 * collector/trace.c renders from the same events fed in any order.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/events.h"
#include "collector/json.h"
#include "collector/report.h"
#include "collector/trace.h"

TestSuite(collector_report);

static json_t *load_reports(void)
{
    const char *top = getenv("LDPROF_TOP");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/data/collector-osprofiler-reports.json",
             top && *top ? top : ".");
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    cr_assert_not_null(j, "cannot load %s: %s (run from the top directory or set LDPROF_TOP)",
                       path, je.text);
    return j;
}

/* The events of a vector trace, parsed from the Redis strings in LRANGE
 * order (jansson keeps key order, like Python's json.loads). */
static json_t *vector_events(json_t *rep, const char *name)
{
    json_t *lr = json_object_get(json_object_get(rep, name), "lrange");
    json_t *ev = json_array();
    for (size_t i = 0; i < json_array_size(lr); i++) {
        json_error_t je;
        json_t *e = json_loads(json_string_value(json_array_get(lr, i)), 0, &je);
        cr_assert_not_null(e, "%s[%zu]: %s", name, i, je.text);
        json_array_append_new(ev, e);
    }
    return ev;
}

static const char *expected(json_t *rep, const char *name)
{
    return json_string_value(json_object_get(json_object_get(rep, name), "show_json_stdout"));
}

static void check_vector(const char *name)
{
    json_t *rep = load_reports();
    json_t *events = vector_events(rep, name);
    struct coll_report_ctx ctx;
    json_t *r = coll_report_build(events, &ctx);
    cr_assert_not_null(r, "%s: %s", name, ctx.errstr);
    struct coll_buf b;
    coll_buf_init(&b);
    cr_assert_eq(coll_report_dump(&b, r), 0);
    const char *want = expected(rep, name);
    if (strcmp(b.p, want) != 0) {
        size_t i = 0;
        while (b.p[i] && b.p[i] == want[i])
            i++;
        cr_assert_fail("%s: differs at byte %zu:\n--- got ---\n%.200s\n--- want ---\n%.200s",
                       name, i, b.p + (i > 80 ? i - 80 : 0), want + (i > 80 ? i - 80 : 0));
    }
    coll_buf_free(&b);
    coll_report_free(r);
    json_decref(events);
    json_decref(rep);
}

Test(collector_report, synthetic_show_json_is_byte_exact) { check_vector("trace_synthetic"); }
Test(collector_report, live_show_json_is_byte_exact) { check_vector("trace_live"); }
Test(collector_report, tiny_show_json_is_byte_exact) { check_vector("trace_tiny"); }

/* The Redis strings themselves round-trip through the compact writer. */
Test(collector_report, redis_strings_round_trip)
{
    json_t *rep = load_reports();
    const char *names[] = {"trace_synthetic", "trace_live", "trace_tiny"};
    for (size_t k = 0; k < 3; k++) {
        json_t *lr = json_object_get(json_object_get(rep, names[k]), "lrange");
        for (size_t i = 0; i < json_array_size(lr); i++) {
            const char *s = json_string_value(json_array_get(lr, i));
            json_error_t je;
            json_t *e = json_loads(s, 0, &je);
            struct coll_buf b;
            coll_buf_init(&b);
            cr_assert_eq(coll_json_dump(&b, e, COLL_JSON_COMPACT), 0);
            cr_assert_str_eq(b.p, s);
            coll_buf_free(&b);
            json_decref(e);
        }
    }
    json_decref(rep);
}

/* trace.c's read order gives OSProfiler's report whatever order the events
 * arrive in (trace.h explains why interleaving does not matter). */
static void check_trace_render(const char *name, unsigned seed)
{
    json_t *rep = load_reports();
    json_t *events = vector_events(rep, name);
    size_t n = json_array_size(events);
    size_t *perm = calloc(n, sizeof *perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates with a fixed LCG */
        seed = seed * 1103515245u + 12345u;
        size_t j = (seed >> 8) % i;
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    struct coll_trace *t = coll_trace_new(json_string_value(
        json_object_get(json_object_get(rep, name), "base_id")));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(coll_trace_add_event(t, json_array_get(events, perm[i])), 1);
    /* adding the same events again changes nothing */
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(coll_trace_add_event(t, json_array_get(events, i)), 0);
    struct coll_buf b;
    struct coll_report_ctx ctx;
    coll_buf_init(&b);
    cr_assert_eq(coll_trace_render(t, &b, &ctx), 0, "%s", ctx.errstr);
    cr_assert_str_eq(b.p, expected(rep, name), "%s (seed %u)", name, seed);

    /* and a dump re-read gives the same spans and the same bytes */
    struct coll_trace *t2 = coll_trace_new(t->base_id);
    char err[160];
    cr_assert_eq(coll_trace_load_dump(t2, b.p, b.len, err, sizeof err), (int)n, "%s", err);
    cr_assert_eq(t2->n, t->n);
    struct coll_buf b2;
    coll_buf_init(&b2);
    cr_assert_eq(coll_trace_render(t2, &b2, &ctx), 0, "%s", ctx.errstr);
    cr_assert_str_eq(b2.p, b.p);
    cr_assert_eq(coll_trace_merge(t2, t), 0, "nothing new");

    coll_buf_free(&b);
    coll_buf_free(&b2);
    coll_trace_free(t);
    coll_trace_free(t2);
    free(perm);
    json_decref(events);
    json_decref(rep);
}

Test(collector_report, trace_order_reproduces_synthetic)
{
    for (unsigned seed = 1; seed <= 20; seed++)
        check_trace_render("trace_synthetic", seed);
}

Test(collector_report, trace_order_reproduces_live)
{
    for (unsigned seed = 1; seed <= 20; seed++)
        check_trace_render("trace_live", seed);
}

Test(collector_report, trace_order_reproduces_tiny) { check_trace_render("trace_tiny", 7); }

/* ------------------------------------------------------------ edge cases */

static json_t *ev(const char *name, const char *trace, const char *parent, const char *ts)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s},s:n,s:n}", "name", name, "base_id", "b",
                     "trace_id", trace, "parent_id", parent, "timestamp", ts, "info", "host",
                     "h", "project", "service");
}

static char *report_text(json_t *events, struct coll_report_ctx *ctx)
{
    json_t *r = coll_report_build(events, ctx);
    json_decref(events);
    if (!r)
        return NULL;
    struct coll_buf b;
    coll_buf_init(&b);
    coll_json_dump(&b, r, COLL_JSON_COMPACT);
    coll_report_free(r);
    return b.p;
}

Test(collector_report, empty_and_no_start)
{
    struct coll_report_ctx ctx;
    char *s = report_text(json_array(), &ctx);
    cr_assert_str_eq(s, "{\"info\": {\"name\": \"total\", \"started\": 0, \"finished\": null, "
                        "\"last_trace_started\": null}, \"children\": [], \"stats\": {}}");
    free(s);
    json_t *e = json_array();
    json_array_append_new(e, ev("db-stop", "t1", "b", "2024-01-02T03:04:05.000100"));
    cr_assert_null(report_text(e, &ctx));
    cr_assert_eq(ctx.err, COLL_REPORT_ENOSTART);
}

Test(collector_report, missing_fields_and_bad_time)
{
    struct coll_report_ctx ctx;
    json_t *e = json_array();
    json_t *x = ev("db-start", "t1", "b", "2024-01-02T03:04:05.000100");
    json_object_del(x, "project");
    json_array_append_new(e, x);
    cr_assert_null(report_text(e, &ctx));
    cr_assert_eq(ctx.err, COLL_REPORT_EFIELD);

    e = json_array();
    x = ev("db-start", "t1", "b", "2024-01-02T03:04:05.000100");
    json_object_del(json_object_get(x, "info"), "host");
    json_array_append_new(e, x);
    cr_assert_null(report_text(e, &ctx));
    cr_assert_eq(ctx.err, COLL_REPORT_EFIELD);

    e = json_array();
    json_array_append_new(e, ev("db-start", "t1", "b", "2024-01-02T03:04:05Z"));
    cr_assert_null(report_text(e, &ctx));
    cr_assert_eq(ctx.err, COLL_REPORT_ETIME);

    json_t *notalist = json_object();
    cr_assert_null(coll_report_build(notalist, &ctx));
    json_decref(notalist);
}

Test(collector_report, cycles_disappear_but_count)
{
    /* t1 <-> t2 is a parent cycle, t3 is self-parented: none is in the tree,
     * all are in the stats (compat §9); nothing leaks (ASan runs). */
    struct coll_report_ctx ctx;
    json_t *e = json_array();
    json_array_append_new(e, ev("a-start", "t1", "t2", "2024-01-02T03:04:05.000100"));
    json_array_append_new(e, ev("a-start", "t2", "t1", "2024-01-02T03:04:05.000200"));
    json_array_append_new(e, ev("a-start", "t3", "t3", "2024-01-02T03:04:05.000300"));
    json_array_append_new(e, ev("b-start", "t4", "b", "2024-01-02T03:04:05.002300"));
    char *s = report_text(e, &ctx);
    cr_assert_not_null(s, "%s", ctx.errstr);
    cr_assert_not_null(strstr(s, "\"stats\": {\"a\": {\"count\": 3, \"duration\": 0}, \"b\": "
                                 "{\"count\": 1, \"duration\": 0}}"), "%s", s);
    cr_assert_null(strstr(s, "\"t1\""), "%s", s);
    cr_assert_not_null(strstr(s, "\"t4\""), "%s", s);
    free(s);
}

Test(collector_report, exception_keeps_etype_json_value)
{
    struct coll_report_ctx ctx;
    json_t *e = json_array();
    json_t *stop = ev("x-stop", "t1", "b", "2024-01-02T03:04:05.000900");
    json_object_set_new(json_object_get(stop, "info"), "etype", json_null());
    json_array_append_new(e, stop);
    json_array_append_new(e, ev("x-start", "t1", "b", "2024-01-02T03:04:05.000100"));
    char *s = report_text(e, &ctx);
    cr_assert_not_null(strstr(s, "\"finished\": 0, \"exception\": null"), "%s", s);
    free(s);
}
