/*
 * collector/export_html.h - `ldprof trace show --html`: one trace as a
 * single self-contained HTML page (docs/formats.md, "Exports").
 *
 * The page fetches nothing: its CSS and script are inline, a
 * Content-Security-Policy meta tag (default-src 'none') forbids any other
 * source, and no src/href attribute names a URL.  The trace travels as JSON
 * in a <script type="application/json"> element, escaped so that no input
 * can end that element ('<', '>', '&' as \u003c \u003e \u0026; every
 * non-ASCII character, U+2028/U+2029 included, as \uXXXX).  The script
 * builds the page from it with textContent only (never innerHTML): a
 * header, the stats per category (the report's "stats": count, total ms),
 * and the span tree, one row per span (data-span-id="<trace_id>") in tree
 * order, each with a timeline bar placed at its start offset and scaled to
 * its duration, a toggle for its children, its details (every start and
 * stop info field) on click, and errors highlighted.  Opening the page at
 * #span=<trace_id> opens that span's details.
 */
#ifndef LDPROF_COLLECTOR_EXPORT_HTML_H
#define LDPROF_COLLECTOR_EXPORT_HTML_H

#include <stddef.h>

#include "json.h"

/* Append the page for the dump `text` (the `osprofiler trace show --json`
 * report) to `out`.  0, or -1 when the text is not a report (or on
 * allocation failure). */
int coll_export_html(struct coll_buf *out, const char *text, size_t len);

#endif
