/*
 * collector/dumptext.h - a trace's dump written straight from its held wire
 * records (ingest.h), without jansson.
 *
 * coll_dump_text() appends the bytes coll_trace_render_ref() (realize the
 * records into events, report.c's port of OSProfiler's report builder,
 * json.c's writer) would append for the same trace: the spans keyed by
 * trace_id (of records with the same trace_id, the last start and the last
 * stop win), the read order of trace.h, OSProfiler's tree with its stable
 * sorts by started ms and its parent cycles left out, the stats, and the
 * "ldprof" marker.  Every event is written once, by evtext.c, at its depth.
 *
 * The unit tests (test_collector_dumptext.c) compare the two paths on
 * generated traces.
 */
#ifndef LDPROF_COLLECTOR_DUMPTEXT_H
#define LDPROF_COLLECTOR_DUMPTEXT_H

#include <jansson.h>

#include "json.h"

struct coll_trace;

/* Render `t` from its held records.  `marker`: the "ldprof" object to
 * append after "stats", or NULL.  Returns 0 (appended), -1 (allocation
 * failure or a dump nested deeper than COLL_JSON_MAX_DEPTH: the reference
 * fails then too; `out` may hold part of the dump), or 1 when the trace is
 * not made of held records only (it has realized spans, no held records,
 * or more held records than its span limit): nothing appended, use the
 * reference path.  The trace is not changed. */
int coll_dump_text(const struct coll_trace *t, struct coll_buf *out, const json_t *marker);

#endif
