/*
 * collector/events.h - one decoded span record -> the two OSProfiler events.
 *
 * An event is the dict OSProfiler's Redis driver stores (compat §4, §8.1):
 *
 *   {"name": "<kind>-start|-stop", "base_id", "trace_id", "parent_id",
 *    "timestamp": "%Y-%m-%dT%H:%M:%S.%f" (naive UTC),
 *    "info": {<fields in record order, dotted keys nested>..., "host"},
 *    "project", "service"}
 *
 * Also the id/timestamp text helpers the rest of the collector shares.
 */
#ifndef LDPROF_COLLECTOR_EVENTS_H
#define LDPROF_COLLECTOR_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "decode.h"

/* "wsgi", "http", "db", "mongodb", "redis", "pooling", "net"; NULL outside
 * 1..LDPROF_KIND_MAX. */
const char *coll_kind_name(unsigned kind);

/* 16 raw bytes -> "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (lower case). */
void coll_uuid_fmt(const uint8_t id[16], char out[37]);

/* Parse canonical 8-4-4-4-12 hex (either case) into 16 bytes.  Returns 0 or
 * -1.  `s` must be NUL-terminated. */
int coll_uuid_parse(const char *s, uint8_t out[16]);

/* CLOCK_REALTIME ns -> "2024-01-02T03:04:05.000100" (µs, truncated; naive
 * UTC, like datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")).  `out`
 * holds 32 bytes. */
void coll_ts_fmt(uint64_t ns, char out[32]);

/* Parse a timestamp the way Python's
 * datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f") does (4-digit year, 1-2
 * digit month/day/hour/minute/second, 1-6 fraction digits, nothing after)
 * into µs since 1970-01-01 (negative before).  Returns 0 or -1. */
int coll_ts_parse(const char *s, size_t len, int64_t *us);

/* µs since the epoch -> the same text as coll_ts_fmt (for years 1..9999). */
void coll_ts_fmt_us(int64_t us, char out[32]);

/* Build the events of one span.
 *   proc: the datagram's process fields (host/service/project);
 *   pid: the sending process (the datagram header's pid: the journal keeps
 *       only that, so a replayed trace comes out the same);
 *   fallback_host: info.host when the process block has none (the
 *       collector's own hostname: the socket is local), may be NULL ("").
 * On success returns 0 with *start set and *stop set, or NULL for an
 * LDPROF_SPAN_UNFINISHED span; the caller owns both references.
 * Returns -1 only on allocation failure (the record was validated).
 *
 * Field rules (documented in docs/formats.md):
 *   - TLVs without LDPROF_TLV_STOP go to the start event's info, with it to
 *     the stop event's info, in record order; host is then set last (or
 *     overwritten in place when a field was called "host", as OSProfiler's
 *     dict assignment does);
 *   - "a.b.c" nests into objects; a repeated key replaces the value in its
 *     first position (Python dict semantics); when a path runs into a
 *     non-object value the field is kept flat under its full dotted key;
 *   - STR: UTF-8 text (invalid sequences become U+FFFD); INT: integer;
 *     JSON: the parsed value (key order kept);
 *   - LDPROF_SPAN_TRUNCATED adds {"ldprof": {"truncated": true}} to the
 *     start info;
 *   - then the start info gets {"thread": {"pid": pid, "tid": record tid}}
 *     (dotted "thread.pid"/"thread.tid", so the rules above apply), before
 *     host. */
int coll_events_build(const struct coll_proc *proc, uint32_t pid, const struct coll_span *sp,
                      const char *fallback_host, json_t **start, json_t **stop);

/* Set `value` (stolen) at dotted `key` (klen bytes) in object `info` with
 * the nesting rules above.  Returns 0 or -1 (allocation failure). */
int coll_info_set_dotted(json_t *info, const char *key, size_t klen, json_t *value);

#endif
