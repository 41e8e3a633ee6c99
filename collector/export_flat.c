/*
 * collector/export_flat.c - a dump's span tree flattened in pre-order, with
 * µs times from the raw start/stop events: what the DOT, Chrome, OTLP and
 * HTML exports read (export_flat.h).
 */
#include "export_flat.h"

#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "render.h"

static int ts_of(json_t *ev, int64_t *us)
{
    json_t *ts = json_object_get(ev, "timestamp");
    if (!json_is_string(ts))
        return -1;
    return coll_ts_parse(json_string_value(ts), json_string_length(ts), us);
}

static int flatten(struct flat *f, json_t *nodes, long parent, int depth)
{
    if (depth > COLL_EXPORT_MAX_DEPTH)
        return 0;
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        json_t *node = json_array_get(nodes, i);
        if (f->n == f->cap) {
            size_t nc = f->cap ? f->cap * 2 : 32;
            struct xspan *nv = realloc(f->v, nc * sizeof *nv);
            if (!nv)
                return -1;
            f->v = nv;
            f->cap = nc;
        }
        struct xspan *x = &f->v[f->n];
        memset(x, 0, sizeof *x);
        x->node = node;
        x->info = json_object_get(node, "info");
        x->start = coll_node_payload(x->info, "-start");
        x->stop = coll_node_payload(x->info, "-stop");
        x->parent = parent;
        x->has_start = x->start && ts_of(x->start, &x->s_us) == 0;
        x->has_stop = x->stop && ts_of(x->stop, &x->e_us) == 0;
        if (!x->has_start && x->has_stop)
            x->s_us = x->e_us;
        if (!x->has_stop)
            x->e_us = x->s_us;
        if (x->e_us < x->s_us)
            x->e_us = x->s_us;
        json_t *th = json_object_get(json_object_get(x->start, "info"), "thread");
        json_t *tp = json_object_get(th, "pid"), *tt = json_object_get(th, "tid");
        if (json_is_integer(tp) && json_is_integer(tt) && json_integer_value(tp) > 0 &&
            json_integer_value(tt) > 0 && json_integer_value(tp) <= INT32_MAX &&
            json_integer_value(tt) <= INT32_MAX) {
            x->rpid = (long)json_integer_value(tp);
            x->rtid = (long)json_integer_value(tt);
        }
        json_t *et = json_object_get(json_object_get(x->stop, "info"), "etype");
        x->error = et && !json_is_null(et);
        if (x->has_start || x->has_stop) {
            if (x->s_us < f->min_us)
                f->min_us = x->s_us;
            if (x->e_us > f->max_us)
                f->max_us = x->e_us;
        }
        long me = (long)f->n++;
        if (flatten(f, json_object_get(node, "children"), me, depth + 1) < 0)
            return -1;
    }
    return 0;
}

json_t *coll_flat_load(struct flat *f, const char *text, size_t len)
{
    memset(f, 0, sizeof *f);
    json_t *report = coll_report_load(text, len);
    if (!report)
        return NULL;
    f->min_us = INT64_MAX;
    f->max_us = INT64_MIN;
    if (flatten(f, json_object_get(report, "children"), -1, 0) < 0) {
        free(f->v);
        f->v = NULL;
        json_decref(report);
        return NULL;
    }
    if (f->min_us == INT64_MAX)
        f->min_us = f->max_us = 0;
    /* spans without any timestamp sit at the trace start */
    for (size_t i = 0; i < f->n; i++)
        if (!f->v[i].has_start && !f->v[i].has_stop)
            f->v[i].s_us = f->v[i].e_us = f->min_us;
    return report;
}
