/*
 * collector/report.h - OSProfiler's report builder (compat §9), exactly.
 *
 * coll_report_build() is a line-by-line port of osprofiler 3.4.3
 * drivers/base.py Driver._append_results() + _parse_results() +
 * _build_tree() over events in read order (for Redis: LRANGE order, newest
 * pushed first).  Serialised with coll_report_dump() it reproduces
 * `osprofiler trace show --json` stdout byte for byte.
 */
#ifndef LDPROF_COLLECTOR_REPORT_H
#define LDPROF_COLLECTOR_REPORT_H

#include <stdint.h>

#include <jansson.h>

#include "json.h"

enum coll_report_err {
    COLL_REPORT_OK = 0,
    COLL_REPORT_EFIELD,   /* an event lacks a required member (Python: KeyError) */
    COLL_REPORT_ETIME,    /* a timestamp does not parse (Python: ValueError) */
    COLL_REPORT_ENOSTART, /* events but no start event (Python: TypeError) */
    COLL_REPORT_ENOMEM,
};

struct coll_report_ctx {
    int err;          /* enum coll_report_err */
    char errstr[160]; /* e.g. "event 3: no \"timestamp\"" */
};

/* Build the report from `events` (a JSON array of event objects in read
 * order; borrowed, never modified: the report references them as the
 * meta.raw_payload values).  Returns a new reference, or NULL with ctx->err
 * set where OSProfiler would raise.  An empty array gives OSProfiler's
 * report with null finished/last_trace_started (its CLI then says "not
 * found"). */
json_t *coll_report_build(json_t *events, struct coll_report_ctx *ctx);

/* Append `report` as `osprofiler trace show --json` prints it:
 * json.dumps(indent=2, separators=(",", ": ")) plus "\n".  Returns 0/-1. */
int coll_report_dump(struct coll_buf *b, const json_t *report);

/* OSProfiler's base.py msec(): int((µs as float) / 1000.0), truncating
 * toward 0 (the report's started/finished fields, also written by
 * dumptext.c). */
int64_t coll_report_msec(int64_t us);

/* Free a report built by coll_report_build().  Use this rather than a bare
 * json_decref(): spans whose parents form a cycle are (as in OSProfiler)
 * left out of the tree, and their children arrays form reference cycles
 * that coll_report_build() already broke; this is a plain decref, kept as
 * the one place to change if that ever differs. */
void coll_report_free(json_t *report);

#endif
