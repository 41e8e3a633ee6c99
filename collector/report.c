/*
 * collector/report.c - port of osprofiler 3.4.3 Driver._append_results(),
 * _parse_results() and _build_tree() (drivers/base.py); see report.h.
 *
 * While events are read, info.started / info.finished hold the parsed
 * timestamp as integer µs since the epoch (Python keeps datetime objects
 * there); _parse_results replaces them in place by ms since the trace start,
 * which keeps their key positions exactly as Python's dict does.
 */
#include "report.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"

__attribute__((format(printf, 3, 4))) static json_t *fail(struct coll_report_ctx *ctx,
                                                          int err, const char *fmt, ...)
{
    va_list ap;
    ctx->err = err;
    va_start(ap, fmt);
    vsnprintf(ctx->errstr, sizeof ctx->errstr, fmt, ap);
    va_end(ap);
    return NULL;
}

int64_t coll_report_msec(int64_t us)
{
    return (int64_t)((double)us / 1000.0);
}

struct sort_item {
    int64_t key;
    size_t idx;
    json_t *node;
};

static int cmp_item(const void *a, const void *b)
{
    const struct sort_item *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static int64_t node_started(json_t *node)
{
    return json_integer_value(json_object_get(json_object_get(node, "info"), "started"));
}

/* Stable sort of an array of nodes by info.started (Python's list.sort). */
static int sort_nodes(json_t *arr)
{
    size_t n = json_array_size(arr);
    if (n < 2)
        return 0;
    struct sort_item *it = calloc(n, sizeof *it);
    if (!it)
        return -1;
    for (size_t i = 0; i < n; i++) {
        it[i].node = json_incref(json_array_get(arr, i));
        it[i].key = node_started(it[i].node);
        it[i].idx = i;
    }
    qsort(it, n, sizeof *it, cmp_item);
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (json_array_set(arr, i, it[i].node) < 0)
            rc = -1;
    for (size_t i = 0; i < n; i++)
        json_decref(it[i].node);
    free(it);
    return rc;
}

static void mark_reachable(json_t *node, json_t *seen)
{
    /* Iterative DFS: trees can be deep (nested spans), keep the stack small. */
    json_t *stack = json_array();
    if (!stack)
        return;
    json_array_append(stack, node);
    while (json_array_size(stack)) {
        size_t last = json_array_size(stack) - 1;
        json_t *n = json_incref(json_array_get(stack, last));
        json_array_remove(stack, last);
        json_t *tid = json_object_get(n, "trace_id");
        if (json_is_string(tid))
            json_object_setn(seen, json_string_value(tid), json_string_length(tid),
                             json_true());
        json_t *ch = json_object_get(n, "children");
        for (size_t i = 0; i < json_array_size(ch); i++)
            json_array_append(stack, json_array_get(ch, i));
        json_decref(n);
    }
    json_decref(stack);
}

static int ends_with_stop(const char *s, size_t n)
{
    return n >= 4 && memcmp(s + n - 4, "stop", 4) == 0;
}

json_t *coll_report_build(json_t *events, struct coll_report_ctx *ctx)
{
    json_t *result = NULL, *report = NULL, *stats = NULL, *tree = NULL;
    int have_start_at = 0, have_last = 0;
    int64_t started_at = 0, finished_at = 0, last_started_at = 0;

    ctx->err = COLL_REPORT_OK;
    ctx->errstr[0] = '\0';
    if (!json_is_array(events))
        return fail(ctx, COLL_REPORT_EFIELD, "events are not a list");
    result = json_object();
    if (!result)
        return fail(ctx, COLL_REPORT_ENOMEM, "out of memory");

    /* ---- _append_results for each event, in read order */
    for (size_t i = 0; i < json_array_size(events); i++) {
        json_t *n = json_array_get(events, i);
        static const char *const req[] = {"trace_id", "parent_id", "name", "project",
                                          "service", "info"};
        if (!json_is_object(n)) {
            fail(ctx, COLL_REPORT_EFIELD, "event %zu is not an object", i);
            goto out;
        }
        for (size_t k = 0; k < sizeof req / sizeof req[0]; k++)
            if (!json_object_get(n, req[k])) {
                fail(ctx, COLL_REPORT_EFIELD, "event %zu: no \"%s\"", i, req[k]);
                goto out;
            }
        json_t *trace_id = json_object_get(n, "trace_id");
        json_t *parent_id = json_object_get(n, "parent_id");
        json_t *name = json_object_get(n, "name");
        json_t *info_in = json_object_get(n, "info");
        json_t *host = json_object_get(info_in, "host");
        json_t *ts = json_object_get(n, "timestamp");
        if (!host) {
            fail(ctx, COLL_REPORT_EFIELD, "event %zu: no \"info.host\"", i);
            goto out;
        }
        if (!ts) {
            fail(ctx, COLL_REPORT_EFIELD, "event %zu: no \"timestamp\"", i);
            goto out;
        }
        if (!json_is_string(trace_id) || !json_is_string(name)) {
            fail(ctx, COLL_REPORT_EFIELD, "event %zu: trace_id/name not a string", i);
            goto out;
        }
        int64_t t;
        if (!json_is_string(ts) ||
            coll_ts_parse(json_string_value(ts), json_string_length(ts), &t) < 0) {
            fail(ctx, COLL_REPORT_ETIME, "event %zu: bad timestamp", i);
            goto out;
        }
        const char *tid = json_string_value(trace_id);
        size_t tidlen = json_string_length(trace_id);
        const char *nm = json_string_value(name);
        size_t nmlen = json_string_length(name);

        json_t *node = json_object_getn(result, tid, tidlen);
        if (!node) {
            const char *dash = memchr(nm, '-', nmlen);
            json_t *ninfo = json_object();
            node = json_object();
            if (!ninfo || !node ||
                json_object_set_new(ninfo, "name",
                                    json_stringn(nm, dash ? (size_t)(dash - nm) : nmlen)) ||
                json_object_set(ninfo, "project", json_object_get(n, "project")) ||
                json_object_set(ninfo, "service", json_object_get(n, "service")) ||
                json_object_set(ninfo, "host", host) ||
                json_object_set_new(node, "info", ninfo) ||
                json_object_set(node, "trace_id", trace_id) ||
                json_object_set(node, "parent_id", parent_id) ||
                json_object_setn_new(result, tid, tidlen, node)) {
                fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
                goto out;
            }
        }
        json_t *info = json_object_get(node, "info");
        size_t klen = 17 + nmlen;
        char *key = malloc(klen + 1);
        if (!key) {
            fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(key, "meta.raw_payload.", 17);
        memcpy(key + 17, nm, nmlen);
        key[klen] = '\0';
        int rc = json_object_setn(info, key, klen, n);
        free(key);
        if (rc < 0) {
            fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
            goto out;
        }
        if (ends_with_stop(nm, nmlen)) {
            json_t *etype = json_is_object(info_in) ? json_object_get(info_in, "etype") : NULL;
            /* exception = info.get("etype", "None"): any JSON value */
            if (json_object_set_new(info, "finished", json_integer(t)) ||
                (etype ? json_object_set(info, "exception", etype)
                       : json_object_set_new(info, "exception", json_string("None")))) {
                fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
                goto out;
            }
        } else {
            if (json_object_set_new(info, "started", json_integer(t))) {
                fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
                goto out;
            }
            if (!have_last || last_started_at < t) {
                last_started_at = t;
                have_last = 1;
            }
        }
        if (!have_start_at || started_at > t)
            started_at = t;
        if (!have_start_at || finished_at < t)
            finished_at = t;
        have_start_at = 1;
    }

    /* ---- _parse_results */
    stats = json_object();
    if (!stats) {
        fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
        goto out;
    }
    const char *tid;
    json_t *node;
    json_object_foreach(result, tid, node) {
        json_t *info = json_object_get(node, "info");
        if (!json_object_get(info, "started"))
            json_object_set(info, "started", json_object_get(info, "finished"));
        if (!json_object_get(info, "finished"))
            json_object_set(info, "finished", json_object_get(info, "started"));
        int64_t s = coll_report_msec(json_integer_value(json_object_get(info, "started")) - started_at);
        int64_t f = coll_report_msec(json_integer_value(json_object_get(info, "finished")) - started_at);
        /* New integers, set in place: "started" and "finished" may share one
         * json_t (set just above), so never json_integer_set() them. */
        if (json_object_set_new(info, "started", json_integer(s)) ||
            json_object_set_new(info, "finished", json_integer(f))) {
            fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
            goto out;
        }
        json_t *op = json_object_get(info, "name");
        json_t *st = json_object_getn(stats, json_string_value(op), json_string_length(op));
        if (!st) {
            st = json_pack("{s:I,s:I}", "count", (json_int_t)1, "duration", (json_int_t)(f - s));
            if (!st || json_object_setn_new(stats, json_string_value(op),
                                            json_string_length(op), st)) {
                fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
                goto out;
            }
        } else {
            json_t *c = json_object_get(st, "count"), *d = json_object_get(st, "duration");
            json_integer_set(c, json_integer_value(c) + 1);
            json_integer_set(d, json_integer_value(d) + (f - s));
        }
    }
    if (have_start_at && !have_last) {
        fail(ctx, COLL_REPORT_ENOSTART,
             "no start event: osprofiler's report would fail here (TypeError)");
        goto out;
    }

    /* ---- _build_tree */
    tree = json_array();
    if (!tree) {
        fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
        goto out;
    }
    json_object_foreach(result, tid, node) {
        if (!json_object_get(node, "children"))
            json_object_set_new(node, "children", json_array());
        json_t *pid = json_object_get(node, "parent_id");
        json_t *parent = json_is_string(pid) ? json_object_getn(result, json_string_value(pid),
                                                                json_string_length(pid))
                                             : NULL;
        if (parent) {
            if (!json_object_get(parent, "children"))
                json_object_set_new(parent, "children", json_array());
            json_array_append(json_object_get(parent, "children"), node);
        } else {
            json_array_append(tree, node);
        }
    }
    json_object_foreach(result, tid, node) {
        if (sort_nodes(json_object_get(node, "children")) < 0) {
            fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
            goto out;
        }
    }
    if (sort_nodes(tree) < 0) {
        fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
        goto out;
    }

    report = json_object();
    json_t *rinfo = json_object();
    if (!report || !rinfo) {
        json_decref(rinfo);
        fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
        goto out;
    }
    json_object_set_new(rinfo, "name", json_string("total"));
    json_object_set_new(rinfo, "started", json_integer(0));
    json_object_set_new(rinfo, "finished",
                        have_start_at ? json_integer(coll_report_msec(finished_at - started_at))
                                      : json_null());
    json_object_set_new(rinfo, "last_trace_started",
                        have_start_at ? json_integer(coll_report_msec(last_started_at - started_at))
                                      : json_null());
    json_object_set_new(report, "info", rinfo);
    json_object_set(report, "children", tree);
    json_object_set(report, "stats", stats);

out:
    /* Break the reference cycles of nodes that were never attached (parent
     * cycles, compat §9: they "silently disappear"). */
    if (result) {
        json_t *seen = json_object();
        if (seen && tree)
            for (size_t i = 0; i < json_array_size(tree); i++)
                mark_reachable(json_array_get(tree, i), seen);
        json_object_foreach(result, tid, node) {
            json_t *t = json_object_get(node, "trace_id");
            if (!report || !seen || !json_object_getn(seen, json_string_value(t),
                                                      json_string_length(t)))
                json_array_clear(json_object_get(node, "children"));
        }
        json_decref(seen);
    }
    if (report && ctx->err != COLL_REPORT_OK) {
        json_decref(report);
        report = NULL;
    }
    if (report && (json_object_size(report) != 3 ||
                   json_object_size(json_object_get(report, "info")) != 4)) {
        json_decref(report);
        report = fail(ctx, COLL_REPORT_ENOMEM, "out of memory");
    }
    json_decref(tree);
    json_decref(stats);
    json_decref(result);
    return report;
}

int coll_report_dump(struct coll_buf *b, const json_t *report)
{
    if (coll_json_dump(b, report, 2) < 0)
        return -1;
    return coll_buf_addc(b, '\n');
}

void coll_report_free(json_t *report)
{
    json_decref(report);
}
