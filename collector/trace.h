/*
 * collector/trace.h - one trace being assembled: its spans (each the pair of
 * OSProfiler events), their read order, and the dump they render to.
 *
 * Read order (the order the report builder sees, i.e. what LRANGE of
 * OSProfiler's LPUSH list would give): spans sorted by
 *     1. push time, newest first: the stop timestamp, or the start
 *        timestamp of a span without stop (the time its last event was
 *        emitted);
 *     2. then start time, oldest first (of a parent and a child that end in
 *        the same µs, the parent's stop was pushed last);
 *     3. then trace_id as text (only to make the order total);
 * and each span contributes its stop event, then its start event.  This is
 * OSProfiler's own order whenever timestamps differ; since the report only
 * depends on which event of a span is read first and on the order of the
 * spans' first events, interleaving the events strictly by time would give
 * the identical report.  Everything is taken from the µs timestamps written
 * in the events, so a trace re-read from its dump or from the journal gets
 * exactly the same order.
 *
 * Not thread-safe; nothing here touches files.
 */
#ifndef LDPROF_COLLECTOR_TRACE_H
#define LDPROF_COLLECTOR_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "json.h"
#include "report.h"

struct coll_tspan {
    json_t *trace_id; /* string, shared with the events */
    json_t *start;    /* "<kind>-start" event or NULL */
    json_t *stop;     /* "<kind>-stop" event or NULL (unfinished span) */
    int64_t start_us; /* start timestamp (stop's when there is no start) */
    int64_t push_us;  /* stop timestamp, else start timestamp */
};

struct coll_trace {
    char base_id[64];
    struct coll_tspan *v;
    size_t n, cap;
    json_t *index; /* trace_id -> position in v; NULL until the first event */
    /* Spans received but not yet in v (wire records, ingest.h): the
     * functions below realize them first (coll_trace_realize); n and v do
     * not count them until then. */
    struct coll_raw *raw;
    /* Limits and what they cut (the dump's "ldprof" marker, see
     * coll_trace_render).  max_spans: 0 = no limit; a span with a new
     * trace_id beyond it is not kept, only counted in cut_spans. */
    size_t max_spans;
    size_t cut_limit; /* the max_spans that cut (shown in the marker) */
    uint64_t cut_spans;
    uint64_t early_open; /* written before idle: too many open traces */
    uint64_t early_age;  /* written before idle: older than the max age */
    /* owner's bookkeeping (server.c); untouched here */
    struct coll_trace *next;
    struct coll_trace *lru_prev, *lru_next;
    uint64_t first_ms;
    uint64_t last_ms;
    uint64_t jbytes; /* journal bytes of its spans (server.c: compaction) */
};

/* Create an empty trace for `base_id`.  NULL on allocation failure. */
struct coll_trace *coll_trace_new(const char *base_id);
void coll_trace_free(struct coll_trace *t);

/* Add one event (a start or a stop, told apart by its name ending in
 * "stop"), borrowing `ev`.  The event's trace_id and timestamp must be valid
 * (a string and a parseable timestamp) or -1 is returned.  A span is keyed
 * by trace_id: a newer event replaces the same kind of event of that span.
 * Returns 1 when the trace changed, 0 when the same event was already there
 * (json_equal), -1 on error. */
int coll_trace_add_event(struct coll_trace *t, json_t *ev);

/* Add the start and (optional) stop of one span (either may be NULL, not
 * both).  A span with a trace_id not yet in `t` while t->n >= t->max_spans
 * (max_spans != 0) is not added: cut_spans is incremented and 0 returned. */
int coll_trace_add_span(struct coll_trace *t, json_t *start, json_t *stop);

/* The events of one span (a journal line's "events" array: its stop and/or
 * its start, in any order) added as coll_trace_add_span() does. */
int coll_trace_add_events(struct coll_trace *t, json_t *events);

/* Merge every span of `src` into `dst` (events of `src` win; dst's span
 * limit applies), and add src's cut/early counts to dst's.  Returns the
 * number of spans that changed dst (plus 1 when a count was added), or -1. */
int coll_trace_merge(struct coll_trace *dst, const struct coll_trace *src);

/* Does the trace carry a marker (something cut or written early)? */
int coll_trace_marked(const struct coll_trace *t);

/* The events in read order (see above), as a new JSON array. */
json_t *coll_trace_events(struct coll_trace *t);

/* Render the dump: report (report.c) over the read order, serialised as
 * `osprofiler trace show --json` prints it.  When coll_trace_marked(t), one
 * more top-level key follows "stats" (docs/formats.md):
 *     "ldprof": {"truncated": BOOL, "spans_dropped": N,
 *                "max_spans_per_trace": N, "written_early":
 *                {"max_open_traces": N, "max_trace_age": N}}
 * (counts that are 0 left out); OSProfiler's CLI re-renders such a file to
 * the same bytes.  Returns 0, or -1 with ctx set. */
int coll_trace_render(struct coll_trace *t, struct coll_buf *out,
                      struct coll_report_ctx *ctx);

/* How coll_trace_render() gets there: a trace made only of held wire
 * records (t->n == 0, the usual case: spans arrive, the trace goes idle,
 * it is written) is written straight from the records by coll_dump_text()
 * (dumptext.h), without realizing them (the trace is left as it was);
 * anything else, or when that declines, goes through
 * coll_trace_render_ref(): realize, build the report tree with jansson
 * (report.c), serialise it (json.c).  Both give the same bytes; the
 * reference is kept for merged and re-read traces and for the tests. */
int coll_trace_render_ref(struct coll_trace *t, struct coll_buf *out,
                          struct coll_report_ctx *ctx);

/* Spans of `t` including its held records (those are not deduplicated
 * by trace_id until realized). */
size_t coll_trace_nspans(const struct coll_trace *t);

/* Re-read the spans of a dump (the meta.raw_payload.* events of every node
 * in the tree) into `t`, and the counts of its "ldprof" marker if any.
 * Spans that OSProfiler's tree leaves out (parent cycles) are not in the
 * dump and so cannot come back.  t->max_spans is not applied.  Returns the
 * number of events read, or -1 when `text` is not a report (err filled). */
int coll_trace_load_dump(struct coll_trace *t, const char *text, size_t len, char *err,
                         size_t errlen);

/* Append one journal line (docs/formats.md), without "\n":
 *   {"v": 1, "base_id": ..., "trace_id": ..., "events": [stop, start]}
 * in Python's compact json.dumps style (ASCII only, so never a raw
 * newline).  `stop` may be NULL; `start` may be NULL only for spans re-read
 * from a foreign dump.  0 or -1. */
int coll_journal_line(struct coll_buf *out, const char *base_id, json_t *trace_id,
                      json_t *start, json_t *stop);

/* The journal line of span i of `t` (i < t->n: held raw spans are not
 * among them, coll_trace_realize() first). */
int coll_trace_journal_line(const struct coll_trace *t, size_t i, struct coll_buf *out);

/* Parse one journal line (without its "\n").  Returns its events array (a
 * new reference) and copies the base_id into `base_id`; NULL when the line
 * is not a complete v1 journal line (a torn last line after a crash). */
json_t *coll_journal_parse(const char *line, size_t len, char base_id[64]);

#endif
