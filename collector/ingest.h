/*
 * collector/ingest.h - spans held as their wire records until a trace is
 * written.
 *
 * Turning a span into its two OSProfiler events (events.c, jansson
 * objects) costs about 20 µs and 5 KB; keeping its wire record costs a
 * copy of about 200 bytes.  So the daemon keeps, per open trace, the raw
 * records it received (struct coll_raw, t->raw) and builds the events only
 * when something needs them: coll_trace_realize() adds every held record to
 * the trace, in arrival order, exactly as coll_trace_add_span() of its
 * events would have at arrival, and frees the records.  trace.c realizes a
 * trace before anything reads or changes its spans (merge, adding an
 * event, the reference render), so the dumps are byte for byte what they
 * were.  A trace made only of held records is rendered straight from them
 * (dumptext.h: the same bytes, without building any event) and is not
 * realized at all.
 *
 * Records are copied into chunks owned by the trace; the process block of
 * their datagram (host, service, project) is shared between records (one
 * copy per distinct block, reference counted).  A journal compaction
 * writes them back as datagrams (coll_trace_journal_entries), again
 * without building their events.
 *
 * Not thread-safe (the daemon has one thread).
 */
#ifndef LDPROF_COLLECTOR_INGEST_H
#define LDPROF_COLLECTOR_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "decode.h"

struct coll_buf;
struct coll_trace;
struct coll_raw;

/* Once, before the first span is held: `host` is the info.host of events
 * whose process block has none (the daemon's own hostname: the socket is
 * local; copied, "" until set), and malloc keeps up to 64 MiB of freed
 * heap for the next spans (mallopt M_TRIM_THRESHOLD, M_TOP_PAD). */
void coll_ingest_init(const char *host);

/* Hold span record `sp` of the accepted datagram `d` in t->raw.  Returns 0,
 * or -1 on allocation failure (nothing held). */
int coll_raw_add(struct coll_trace *t, const struct coll_dec *d, const struct coll_span *sp);

/* Records held by `t` (not yet in t->n). */
size_t coll_raw_count(const struct coll_trace *t);

/* Add every held record of `t` to its spans (coll_trace_add_span of the
 * record's events, in arrival order) and free them.  Returns 0, or -1 when
 * some record could not be added (allocation failure; the others are). */
int coll_trace_realize(struct coll_trace *t);

/* One held record: its datagram's process block and pid, and the record. */
struct coll_rawrec {
    const struct coll_proc *proc;
    uint32_t pid;
    struct coll_span sp;
};

/* Fill v[0 .. coll_raw_count(t)) with the held records of `t` in arrival
 * order (pointing into t's memory: valid until the trace changes). */
void coll_raw_records(const struct coll_trace *t, struct coll_rawrec *v);

/* Append the journal entries of every span `t` holds (docs/formats.md §4,
 * compaction), in the order a replay must add them: one JSON line per
 * realized span (coll_trace_journal_line, i < t->n), then its held records
 * as framed datagram entries ("\x1eLDG", length, datagram, "\n"), each
 * datagram a header, the records' process block and a run of consecutive
 * records sharing that block and pid, split so that none exceeds
 * LDPROF_WIRE_MAX_DGRAM.  Replaying them (coll_decode, then the records in
 * order) holds the same records again, in the same order, without ever
 * building their events.  Returns 0, or -1 (out of memory; `out` may hold
 * part of the entries). */
int coll_trace_journal_entries(const struct coll_trace *t, struct coll_buf *out);

/* Add span `sp` of the accepted datagram `d` to `t` the way the daemon
 * does (and a replay of its journal entry does again): held as its wire
 * record while t is below its span limit (t->n + held < t->max_spans, or no
 * limit), else as its events through coll_trace_add_span (which applies the
 * limit, counting a cut span in t->cut_spans).  `host` is the info.host of
 * events whose process block has none.  Returns 0, COLL_TAKE_OOM (nothing
 * held) or COLL_TAKE_BAD (the events could not be built or added). */
#define COLL_TAKE_OOM 1
#define COLL_TAKE_BAD 2
int coll_trace_take(struct coll_trace *t, const struct coll_dec *d, const struct coll_span *sp,
                    const char *host);

/* The info.host of events whose process block has none (coll_ingest_init). */
const char *coll_ingest_host(void);

/* Free a record list (NULL is fine). */
void coll_raw_free(struct coll_raw *r);

#endif
