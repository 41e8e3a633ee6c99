/*
 * collector/render.h - what `ldprof trace list|show` print, from dump files,
 * and trace-id prefix matching.  Pure functions over text and FILE*, so the
 * unit tests can check them without running the CLI.
 */
#ifndef LDPROF_COLLECTOR_RENDER_H
#define LDPROF_COLLECTOR_RENDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "json.h"

/* One row of `ldprof trace list`. */
struct coll_summary {
    char base_id[40];
    int64_t start_us;    /* earliest event timestamp, µs since the epoch */
    int64_t duration_ms; /* the report's total finished */
    char root[96];       /* first top-level span: "wsgi GET /path" */
    size_t spans;        /* spans in the tree */
    size_t errors;       /* spans whose stop event has an etype */
};

/* Parse a dump (the `osprofiler trace show --json` report): NULL when it
 * is not JSON or has no "info" object or "children" array. */
json_t *coll_report_load(const char *text, size_t len);

/* The raw event meta.raw_payload.<name><suffix> of a report node's info
 * (suffix "-start", "-stop", or "" for the first one), or NULL. */
json_t *coll_node_payload(json_t *info, const char *suffix);

/* Summarise one dump (the text of <base_id>.json).  0, or -1 when it is
 * not a report. */
int coll_summary_from_dump(const char *text, size_t len, struct coll_summary *s);

/* Sort newest first (start time descending, then base_id). */
void coll_summary_sort(struct coll_summary *v, size_t n);

/* Print the table (header + one row each). */
void coll_render_list(FILE *out, const struct coll_summary *v, size_t n);

/* Print the text tree of a dump: a heading, then one line per span in tree
 * order with its start offset and duration in ms, a time bar `bar_width`
 * characters wide scaled to the whole trace, and the indented span name
 * with its service@host and a short detail (HTTP method and path, SQL
 * statement, first other field; errors and unfinished spans flagged).
 * 0, or -1 when `text` is not a report. */
int coll_render_tree(FILE *out, const char *text, size_t len, int bar_width);

/* Is `name` a dump file name ("<lower-case uuid>.json")? */
int coll_is_dump_name(const char *name);

/* Resolve an id or unique id prefix (case-insensitive) among `n` dump ids.
 * Returns the index of the match, -1 when nothing matches, -2 when the
 * prefix is ambiguous (an exact match wins over longer ones). */
long coll_match_id(const char *prefix, char *const *ids, size_t n);

/* Append the short detail of a span node's info ("GET /path?q", the SQL
 * text, or the first info field), as in the text tree. */
void coll_render_span_detail(struct coll_buf *b, json_t *info);

/* Append at most `max` bytes of `s`, control bytes as '?', never cutting a
 * UTF-8 sequence, "..." when cut. */
void coll_render_clean(struct coll_buf *b, const char *s, size_t len, size_t max);

/* ---- exports (collector/export_trace.c); each takes the text of a dump and
 * appends one whole document (ending in "\n") to `out`.  0, or -1 when the
 * text is not a report (or on allocation failure). */

/* Graphviz DOT in the layout of `osprofiler trace show --dot`. */
int coll_export_dot(struct coll_buf *out, const char *text, size_t len);

/* Chrome trace-event JSON (Perfetto, chrome://tracing). */
int coll_export_chrome(struct coll_buf *out, const char *text, size_t len);

/* OTLP/JSON (an ExportTraceServiceRequest: {"resourceSpans": [...]}). */
int coll_export_otlp(struct coll_buf *out, const char *text, size_t len);

/* ---- `ldprof trace list` filters */
struct coll_list_filter {
    int64_t since_us;     /* keep start_us >= since_us; INT64_MIN: off */
    int64_t min_ms;       /* keep duration_ms >= min_ms; -1: off */
    const char *name;     /* substring of any span's name or of the ROOT
                           * column; NULL: off */
    int errors;           /* keep only traces with errors > 0 */
};

/* Parse a --since value: a duration back from `now_us` ("90s", "10m", "2h",
 * "3d", "1w"), or a UTC time "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS[.ffffff]]"
 * with an optional trailing "Z" (a space may replace the "T").  0, or -1. */
int coll_parse_since(const char *s, int64_t now_us, int64_t *out_us);

/* Does the dump (text) with its summary pass the filter?  1 or 0. */
int coll_list_match(const char *text, size_t len, const struct coll_summary *s,
                    const struct coll_list_filter *f);

/* Print the rows as a JSON array of objects with the table's columns
 * (base_id, start, duration_ms, root, spans, plus errors). */
void coll_render_list_json(FILE *out, const struct coll_summary *v, size_t n);

#endif
