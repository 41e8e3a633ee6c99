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

/* One row of `ldprof trace list`. */
struct coll_summary {
    char base_id[40];
    int64_t start_us;    /* earliest event timestamp, µs since the epoch */
    int64_t duration_ms; /* the report's total finished */
    char root[96];       /* first top-level span: "wsgi GET /path" */
    size_t spans;        /* spans in the tree */
};

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

#endif
