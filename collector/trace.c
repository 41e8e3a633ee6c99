/*
 * collector/trace.c - span set, read order, dump rendering and re-reading
 * (see trace.h).
 */
#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dumptext.h"
#include "events.h"
#include "ingest.h"

struct coll_trace *coll_trace_new(const char *base_id)
{
    struct coll_trace *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    size_t n = strnlen(base_id, sizeof t->base_id - 1);
    memcpy(t->base_id, base_id, n); /* NUL: calloc */
    /* t->index is made by the first event added: a trace of held wire
     * records (the common case) is written without ever needing it. */
    return t;
}

void coll_trace_free(struct coll_trace *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        json_decref(t->v[i].trace_id);
        json_decref(t->v[i].start);
        json_decref(t->v[i].stop);
    }
    coll_raw_free(t->raw);
    free(t->v);
    json_decref(t->index);
    free(t);
}

static int event_time(json_t *ev, int64_t *us)
{
    json_t *ts = json_object_get(ev, "timestamp");
    if (!json_is_string(ts))
        return -1;
    return coll_ts_parse(json_string_value(ts), json_string_length(ts), us);
}

static int is_stop(json_t *ev)
{
    json_t *name = json_object_get(ev, "name");
    size_t n = json_string_length(name);
    return json_is_string(name) && n >= 4 &&
           memcmp(json_string_value(name) + n - 4, "stop", 4) == 0;
}

static void span_times(struct coll_tspan *s)
{
    int64_t a = 0, b = 0;
    if (s->start)
        event_time(s->start, &a);
    if (s->stop)
        event_time(s->stop, &b);
    s->start_us = s->start ? a : b;
    s->push_us = s->stop ? b : a;
}

int coll_trace_add_event(struct coll_trace *t, json_t *ev)
{
    if (t->raw && coll_trace_realize(t) < 0) /* older spans first */
        return -1;
    int64_t us;
    json_t *tid = json_object_get(ev, "trace_id");
    if (!json_is_object(ev) || !json_is_string(tid) || !json_is_string(json_object_get(ev, "name")) ||
        event_time(ev, &us) < 0)
        return -1;
    const char *k = json_string_value(tid);
    size_t klen = json_string_length(tid);
    json_t *pos = json_object_getn(t->index, k, klen);
    struct coll_tspan *s;
    if (pos) {
        s = &t->v[json_integer_value(pos)];
    } else {
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 8;
            struct coll_tspan *v = realloc(t->v, cap * sizeof *v);
            if (!v)
                return -1;
            t->v = v;
            t->cap = cap;
        }
        if ((!t->index && !(t->index = json_object())) ||
            json_object_setn_new(t->index, k, klen, json_integer((json_int_t)t->n)) < 0)
            return -1;
        s = &t->v[t->n++];
        memset(s, 0, sizeof *s);
        s->trace_id = json_incref(tid);
    }
    json_t **slot = is_stop(ev) ? &s->stop : &s->start;
    if (*slot && json_equal(*slot, ev))
        return 0;
    json_decref(*slot);
    *slot = json_incref(ev);
    span_times(s);
    return 1;
}

/* Is this a span `t` has no room for?  (Counted as cut when so.) */
static int over_limit(struct coll_trace *t, json_t *ev)
{
    if (!t->max_spans || t->n < t->max_spans || !ev)
        return 0;
    json_t *tid = json_object_get(ev, "trace_id");
    if (!json_is_string(tid) ||
        json_object_getn(t->index, json_string_value(tid), json_string_length(tid)))
        return 0;
    t->cut_spans++;
    t->cut_limit = t->max_spans;
    return 1;
}

int coll_trace_add_span(struct coll_trace *t, json_t *start, json_t *stop)
{
    int changed = 0, rc;
    if (t->raw && coll_trace_realize(t) < 0) /* older spans first */
        return -1;
    if (over_limit(t, stop ? stop : start))
        return 0;
    if (stop) {
        if ((rc = coll_trace_add_event(t, stop)) < 0)
            return -1;
        changed |= rc;
    }
    if (start) {
        if ((rc = coll_trace_add_event(t, start)) < 0)
            return -1;
        changed |= rc;
    }
    return changed;
}

int coll_trace_add_events(struct coll_trace *t, json_t *events)
{
    json_t *start = NULL, *stop = NULL;
    for (size_t i = 0; i < json_array_size(events); i++) {
        json_t *ev = json_array_get(events, i);
        if (is_stop(ev))
            stop = ev;
        else
            start = ev;
    }
    if (!start && !stop)
        return -1;
    return coll_trace_add_span(t, start, stop);
}

int coll_trace_merge(struct coll_trace *dst, const struct coll_trace *src)
{
    int changed = 0;
    if ((src->raw && coll_trace_realize((struct coll_trace *)src) < 0) ||
        (dst->raw && coll_trace_realize(dst) < 0))
        return -1;
    for (size_t i = 0; i < src->n; i++) {
        int rc = coll_trace_add_span(dst, src->v[i].start, src->v[i].stop);
        if (rc < 0)
            return -1;
        changed += rc;
    }
    if (src->cut_spans || src->early_open || src->early_age) {
        dst->cut_spans += src->cut_spans;
        if (src->cut_limit > dst->cut_limit)
            dst->cut_limit = src->cut_limit;
        dst->early_open += src->early_open;
        dst->early_age += src->early_age;
        changed++;
    }
    return changed;
}

int coll_trace_marked(const struct coll_trace *t)
{
    return t->cut_spans || t->early_open || t->early_age;
}

/* The "ldprof" marker object (trace.h), or NULL on allocation failure. */
static json_t *marker_json(const struct coll_trace *t)
{
    json_t *m = json_object(), *early = json_object();
    if (!m || !early)
        goto fail;
    if (json_object_set_new(m, "truncated", json_boolean(t->cut_spans != 0)) < 0)
        goto fail;
    if (t->cut_spans &&
        (json_object_set_new(m, "spans_dropped", json_integer((json_int_t)t->cut_spans)) < 0 ||
         json_object_set_new(m, "max_spans_per_trace",
                             json_integer((json_int_t)t->cut_limit)) < 0))
        goto fail;
    if (t->early_open &&
        json_object_set_new(early, "max_open_traces", json_integer((json_int_t)t->early_open)) < 0)
        goto fail;
    if (t->early_age &&
        json_object_set_new(early, "max_trace_age", json_integer((json_int_t)t->early_age)) < 0)
        goto fail;
    if (json_object_size(early) && json_object_set(m, "written_early", early) < 0)
        goto fail;
    json_decref(early);
    return m;
fail:
    json_decref(m);
    json_decref(early);
    return NULL;
}

/* Read the counts of a dump's "ldprof" marker (absent: nothing). */
static void marker_load(struct coll_trace *t, json_t *m)
{
    if (!json_is_object(m))
        return;
    json_t *v = json_object_get(m, "spans_dropped");
    if (json_is_integer(v) && json_integer_value(v) > 0)
        t->cut_spans += (uint64_t)json_integer_value(v);
    v = json_object_get(m, "max_spans_per_trace");
    if (json_is_integer(v) && json_integer_value(v) > 0 && !t->cut_limit)
        t->cut_limit = (size_t)json_integer_value(v);
    json_t *e = json_object_get(m, "written_early");
    v = json_object_get(e, "max_open_traces");
    if (json_is_integer(v) && json_integer_value(v) > 0)
        t->early_open += (uint64_t)json_integer_value(v);
    v = json_object_get(e, "max_trace_age");
    if (json_is_integer(v) && json_integer_value(v) > 0)
        t->early_age += (uint64_t)json_integer_value(v);
}

static int cmp_span(const void *a, const void *b)
{
    const struct coll_tspan *x = *(const struct coll_tspan *const *)a;
    const struct coll_tspan *y = *(const struct coll_tspan *const *)b;
    if (x->push_us != y->push_us)
        return x->push_us > y->push_us ? -1 : 1; /* newest pushed first */
    if (x->start_us != y->start_us)
        return x->start_us < y->start_us ? -1 : 1; /* enclosing span first */
    return strcmp(json_string_value(x->trace_id), json_string_value(y->trace_id));
}

json_t *coll_trace_events(struct coll_trace *t)
{
    if (t->raw && coll_trace_realize(t) < 0)
        return NULL;
    json_t *arr = json_array();
    struct coll_tspan **order = calloc(t->n ? t->n : 1, sizeof *order);
    if (!arr || !order) {
        json_decref(arr);
        free(order);
        return NULL;
    }
    for (size_t i = 0; i < t->n; i++)
        order[i] = &t->v[i];
    qsort(order, t->n, sizeof *order, cmp_span);
    for (size_t i = 0; i < t->n; i++) {
        if ((order[i]->stop && json_array_append(arr, order[i]->stop) < 0) ||
            (order[i]->start && json_array_append(arr, order[i]->start) < 0)) {
            json_decref(arr);
            arr = NULL;
            break;
        }
    }
    free(order);
    return arr;
}

int coll_trace_render(struct coll_trace *t, struct coll_buf *out, struct coll_report_ctx *ctx)
{
    ctx->err = COLL_REPORT_OK;
    ctx->errstr[0] = '\0';
    if (t->raw && t->n == 0) {
        json_t *m = NULL;
        int rc = 0;
        if (coll_trace_marked(t) && !(m = marker_json(t)))
            rc = -1;
        if (rc == 0)
            rc = coll_dump_text(t, out, m);
        json_decref(m);
        if (rc <= 0) {
            if (rc < 0) {
                ctx->err = COLL_REPORT_ENOMEM;
                snprintf(ctx->errstr, sizeof ctx->errstr, "out of memory");
            }
            return rc;
        }
    }
    return coll_trace_render_ref(t, out, ctx);
}

size_t coll_trace_nspans(const struct coll_trace *t)
{
    return t->n + coll_raw_count(t);
}

int coll_trace_render_ref(struct coll_trace *t, struct coll_buf *out,
                          struct coll_report_ctx *ctx)
{
    json_t *events = coll_trace_events(t);
    if (!events) {
        ctx->err = COLL_REPORT_ENOMEM;
        snprintf(ctx->errstr, sizeof ctx->errstr, "out of memory");
        return -1;
    }
    json_t *report = coll_report_build(events, ctx);
    json_decref(events);
    if (!report)
        return -1;
    int rc = 0;
    if (coll_trace_marked(t)) {
        json_t *m = marker_json(t);
        if (!m || json_object_set_new(report, "ldprof", m) < 0)
            rc = -1;
    }
    if (rc == 0)
        rc = coll_report_dump(out, report);
    coll_report_free(report);
    if (rc < 0) {
        ctx->err = COLL_REPORT_ENOMEM;
        snprintf(ctx->errstr, sizeof ctx->errstr, "out of memory");
    }
    return rc;
}

/* Walk a report node list, adding every meta.raw_payload.* event. */
static int load_nodes(struct coll_trace *t, json_t *nodes, int depth, int *count)
{
    if (!json_is_array(nodes) || depth > 10000)
        return -1;
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        json_t *node = json_array_get(nodes, i);
        json_t *info = json_object_get(node, "info");
        if (!json_is_object(info))
            return -1;
        const char *key;
        json_t *val;
        json_object_foreach(info, key, val) {
            if (strncmp(key, "meta.raw_payload.", 17) != 0)
                continue;
            if (coll_trace_add_event(t, val) < 0)
                return -1;
            (*count)++;
        }
        if (load_nodes(t, json_object_get(node, "children"), depth + 1, count) < 0)
            return -1;
    }
    return 0;
}

int coll_trace_load_dump(struct coll_trace *t, const char *text, size_t len, char *err,
                         size_t errlen)
{
    json_error_t je;
    json_t *r = json_loadb(text, len, JSON_ALLOW_NUL, &je);
    if (!r) {
        snprintf(err, errlen, "not JSON: %s (line %d)", je.text, je.line);
        return -1;
    }
    int count = 0;
    size_t max = t->max_spans;
    t->max_spans = 0; /* what a dump holds was kept already */
    json_t *ch = json_object_get(r, "children");
    int bad = !json_is_array(ch) || load_nodes(t, ch, 0, &count) < 0;
    t->max_spans = max;
    if (bad) {
        snprintf(err, errlen, "not an osprofiler report");
        json_decref(r);
        return -1;
    }
    marker_load(t, json_object_get(r, "ldprof"));
    json_decref(r);
    return count;
}

int coll_journal_line(struct coll_buf *out, const char *base_id, json_t *trace_id,
                      json_t *start, json_t *stop)
{
    json_t *line = json_object(), *evs = json_array();
    int rc = -1;
    if (!line || !evs)
        goto out;
    if ((stop && json_array_append(evs, stop) < 0) ||
        (start && json_array_append(evs, start) < 0))
        goto out;
    if (json_object_set_new(line, "v", json_integer(1)) < 0 ||
        json_object_set_new(line, "base_id", json_string(base_id)) < 0 ||
        json_object_set(line, "trace_id", trace_id) < 0 ||
        json_object_set(line, "events", evs) < 0)
        goto out;
    rc = coll_json_dump(out, line, COLL_JSON_COMPACT);
out:
    json_decref(line);
    json_decref(evs);
    return rc;
}

int coll_trace_journal_line(const struct coll_trace *t, size_t i, struct coll_buf *out)
{
    const struct coll_tspan *s = &t->v[i];
    return coll_journal_line(out, t->base_id, s->trace_id, s->start, s->stop);
}

json_t *coll_journal_parse(const char *line, size_t len, char base_id[64])
{
    json_error_t je;
    json_t *j = json_loadb(line, len, JSON_ALLOW_NUL, &je);
    if (!j)
        return NULL;
    json_t *v = json_object_get(j, "v");
    json_t *b = json_object_get(j, "base_id");
    json_t *evs = json_object_get(j, "events");
    if (json_integer_value(v) != 1 || !json_is_string(b) || json_string_length(b) >= 64 ||
        !json_is_array(evs) || json_array_size(evs) == 0) {
        json_decref(j);
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(evs); i++) {
        json_t *ev = json_array_get(evs, i);
        int64_t us;
        /* What the report builder needs (report.c), so a damaged line is
         * dropped here rather than breaking the whole trace later. */
        if (!json_is_object(ev) || !json_is_string(json_object_get(ev, "trace_id")) ||
            !json_is_string(json_object_get(ev, "name")) ||
            !json_object_get(ev, "parent_id") || !json_object_get(ev, "project") ||
            !json_object_get(ev, "service") ||
            !json_object_get(json_object_get(ev, "info"), "host") ||
            event_time(ev, &us) < 0) {
            json_decref(j);
            return NULL;
        }
    }
    snprintf(base_id, 64, "%s", json_string_value(b));
    json_incref(evs);
    json_decref(j);
    return evs;
}
