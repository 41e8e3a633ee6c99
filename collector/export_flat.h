/*
 * collector/export_flat.h - a dump's span tree flattened in DFS pre-order,
 * shared by the exports (export_trace.c, export_html.c).  Span times are the
 * µs timestamps of the raw start/stop events kept in each node
 * (meta.raw_payload.<name>-start|-stop), so nothing is rounded to the
 * report's whole milliseconds.
 */
#ifndef LDPROF_COLLECTOR_EXPORT_FLAT_H
#define LDPROF_COLLECTOR_EXPORT_FLAT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Deepest tree level the exports follow: deeper nodes are left out. */
#define COLL_EXPORT_MAX_DEPTH 10000

/* One span of the tree, flattened in DFS pre-order. */
struct xspan {
    json_t *node, *info, *start, *stop;
    long parent;        /* index in the flat array, -1 for top level */
    int has_start, has_stop;
    int64_t s_us, e_us; /* absolute; e_us >= s_us */
    int error;
    long group;         /* service/host(/pid) group, from 1 */
    long lane;          /* Chrome tid: the lane, or the real thread id */
    long rpid, rtid;    /* start info.thread {pid, tid}; 0 when absent */
    int async;          /* Chrome: async (b/e) instead of a complete event */
};

struct flat {
    struct xspan *v;
    size_t n, cap;
    int64_t min_us, max_us;
};

/* Parse a dump (coll_report_load) and flatten its children into f.
 * Spans without any timestamp sit at the trace start; min_us/max_us are 0
 * for a trace without timestamps.  Returns the report (json_decref it and
 * free f->v after), or NULL when the text is not a report or memory ran
 * out (nothing to free then). */
json_t *coll_flat_load(struct flat *f, const char *text, size_t len);

#endif
