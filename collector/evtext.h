/*
 * collector/evtext.h - the OSProfiler events of a span record written
 * straight as JSON text, without building jansson objects.
 *
 * coll_event_text() appends exactly what coll_json_dump() of the event
 * coll_events_build() builds would append (events.h has the field rules:
 * record order, dotted keys nested with Python dict semantics, flat keys
 * when a path runs into a non-object, STR sanitised to U+FFFD, JSON values
 * re-serialised, truncated/thread/host fields), for either layout
 * (COLL_JSON_COMPACT or an indent) at any nesting level.  events.c stays
 * the reference: the unit tests compare the two on generated records.
 *
 * The info fields are assembled in a small tree kept in static scratch
 * memory (reused, grown on demand): not thread-safe, like the daemon.
 */
#ifndef LDPROF_COLLECTOR_EVTEXT_H
#define LDPROF_COLLECTOR_EVTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "decode.h"
#include "events.h"
#include "json.h"

/* A process-block string as a JSON string, or null when absent. */
static inline int coll_text_opt_str(struct coll_buf *b, const struct coll_str *s)
{
    return s->p ? coll_json_string(b, s->p, s->len) : coll_buf_put(b, "null", 4);
}

/* A 16-byte id as a quoted 8-4-4-4-12 UUID string. */
static inline int coll_text_uuid(struct coll_buf *b, const uint8_t id[16])
{
    char u[40];
    u[0] = '"';
    coll_uuid_fmt(id, u + 1);
    u[37] = '"';
    return coll_buf_put(b, u, 38);
}

/* Append the start (stop = 0) or stop (stop = 1, only for a record without
 * LDPROF_SPAN_UNFINISHED) event of record `sp` as json.dumps would write it
 * as a value `level` levels deep with `indent` (COLL_JSON_COMPACT: one
 * line).  proc/pid/fallback_host as for coll_events_build().
 *
 * When `etype` is not NULL (stop events): also append to it the value
 * OSProfiler's report takes for "exception" (the stop info's "etype"
 * member, written at level `etype_level`, or "None" when there is none).
 *
 * Returns 0, or -1 on allocation failure or nesting deeper than
 * COLL_JSON_MAX_DEPTH (where coll_json_dump fails too). */
int coll_event_text(struct coll_buf *b, const struct coll_proc *proc, uint32_t pid,
                    const struct coll_span *sp, const char *fallback_host, int stop,
                    int indent, int level, struct coll_buf *etype, int etype_level);

/* The Redis commands for the spans of an accepted datagram `d` (all of
 * them, whatever d's own iteration has read; d is left alone): for every
 * span, in OSProfiler's push order (stop time, oldest first; of two
 * stopping in the same µs the later-started first; then datagram order),
 * `LPUSH osprofiler_opt:<base_id> <start event>` then the same with its
 * stop event, each event as json.dumps(event) (compact) writes it.
 * Appended to `out` in the Redis protocol (RESP arrays of bulk strings);
 * *nev is set to the number of commands.  0, or -1 on allocation failure. */
int coll_redis_dgram_cmds(struct coll_buf *out, const struct coll_dec *d,
                          const char *fallback_host, size_t *nev);

#endif
