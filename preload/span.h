/*
 * preload/span.h - open spans, the thread context, and the TLV encoder.
 *
 * An open span lives in a slot of a fixed pool (LDPROF_MAX_OPEN_SPANS,
 * mapped once at start, touched lazily) so that beginning and ending a span
 * never calls malloc, and so that a span begun on one thread (the one that
 * read a request head) can be ended on another (the one that wrote the
 * response).  Slots are taken and given back with atomic bit operations on
 * an allocation bitmap: no lock, async-signal-safe.  An exhausted pool
 * drops the span and counts it (buffer.c's dropped counter).
 *
 * A slot holds the wire record being built: struct ldprof_wire_span
 * immediately followed by its TLV info bytes, so ending a span is one
 * memcpy into the thread's buffer.
 */
#ifndef LDPROF_SPAN_H
#define LDPROF_SPAN_H

#include <stddef.h>
#include <stdint.h>

#include "ldprof/ldprof.h"
#include "ldprof/wire.h"
#include "tls.h"

#define LDPROF_MAX_OPEN_SPANS 4096

/* ctx.key_idx for the client profile trace (key from LDPROF_PROFILE, held
 * in its own keyring, see ldprof_profile_keyring()). */
#define LDPROF_KEY_PROFILE (-2)

enum {
    LDPROF_SPAN_FREE = 0,
    LDPROF_SPAN_OPEN = 1,
    LDPROF_SPAN_CLOSING = 2, /* being ended (or emitted as unfinished at exit) */
};

struct ldprof_span {
    uint32_t state;      /* LDPROF_SPAN_* (atomic) */
    uint32_t gen;        /* bumped when the slot is freed (atomic) */
    int key_idx;         /* key that verified the trace (context for children) */
    uint8_t is_root;     /* began a thread context (wsgi, profile) */
    uint8_t prev_valid;  /* prev_id holds the parent context to restore */
    uint16_t info_len;   /* TLV bytes used in info[] */
    uint8_t prev_id[16]; /* thread's cur_id before this child span began */
    uint8_t pad[8];
    struct ldprof_wire_span w; /* the record head ... */
    uint8_t info[LDPROF_WIRE_MAX_INFO]; /* ... and its TLV info, contiguous */
};

/* ldprof_span_pool_init - map the slot pool (idempotent).  0 or -1. */
int ldprof_span_pool_init(void);

/*
 * ldprof_span_open - begin a span with explicit ids (the wsgi span: ids from
 * the request headers).  A new trace_id is drawn; start time = now.
 * Returns NULL (and counts a drop) when the pool is exhausted.
 */
struct ldprof_span *ldprof_span_open(int kind, const uint8_t base_id[16],
                                     const uint8_t parent_id[16], int key_idx);

/*
 * ldprof_span_close - end @s with the extra @flags (LDPROF_SPAN_*), record
 * it into the calling thread's buffer and free the slot.  A span already
 * closed (or emitted at exit) is ignored.
 */
void ldprof_span_close(struct ldprof_span *s, unsigned flags);

/* ldprof_span_discard - free @s without recording it (the outcome is not
 * this process's to report). */
void ldprof_span_discard(struct ldprof_span *s);

/* ldprof_span_add - add a TLV field; @when LDPROF_FIELD_START/STOP. */
int ldprof_span_add(struct ldprof_span *s, int when, uint8_t type, const char *key,
                    const void *val, size_t vlen);

/* ldprof_span_emit_unfinished - at exit: record every open span once with
 * LDPROF_SPAN_UNFINISHED (end = start).  Returns how many. */
int ldprof_span_emit_unfinished(void);

/* Time now, CLOCK_REALTIME ns (the wire's clock). */
uint64_t ldprof_now_ns(void);

/*
 * The thread context (tls.h).
 *
 * ldprof_ctx_current - the calling thread's valid context, or NULL.  When
 * the thread has none and client profile mode is on, the profile trace's
 * context is installed first.
 */
struct ldprof_ctx *ldprof_ctx_current(void);

/* 1 in client profile mode (every thread then has a context). */
extern int ldprof_profile_on __attribute__((visibility("hidden")));

/*
 * ldprof_ctx_maybe - may ldprof_ctx_current() return a context?  0 means
 * certainly not (no root on this thread, no profile mode): the driver
 * wrappers' quiet path, two loads, no call.
 */
static inline int ldprof_ctx_maybe(void)
{
    return ldprof_tls.ctx.root != NULL || ldprof_profile_on;
}

/* ldprof_ctx_enter_root - make @s (an open span) the thread's context. */
void ldprof_ctx_enter_root(struct ldprof_span *s);

/* ldprof_ctx_leave_root - clear the thread's context if @s set it. */
void ldprof_ctx_leave_root(const struct ldprof_span *s);

/*
 * Client profile mode (LDPROF_PROFILE): ldprof_profile_start() draws a new
 * base_id and makes every thread's default context {base_id, parent =
 * base_id} signed with the profile key.  ldprof_profile_base() returns the
 * base id, or NULL when profile mode is off.
 */
int ldprof_profile_start(const char *key);
/* ldprof_profile_inherit - continue the trace whose base id is the UUID text
 * @id (LDPROF_TRACE_BASE, set for children by a profiled parent).  0 / -1. */
int ldprof_profile_inherit(const char *id);
const uint8_t *ldprof_profile_base(void);

/* The keyrings: hmac_keys (verify and sign) and the profile key. */
struct ldprof_keyring;
const struct ldprof_keyring *ldprof_keyring(void);
const struct ldprof_keyring *ldprof_keyring_for(int key_idx, int *index_in_ring);
int ldprof_keyrings_init(const char *hmac_keys);

/*
 * ldprof_tlv_put - encode one TLV entry (wire.h) at @dst.
 * @type: LDPROF_TLV_STR/_INT/_JSON, optionally | LDPROF_TLV_STOP.
 * @klen: 1..255.  @vlen: 0..65535.
 * Returns the bytes written (4 + klen + vlen), or -1 when it does not fit
 * in @cap or the lengths are out of range.  Pure function (tests).
 */
int ldprof_tlv_put(uint8_t *dst, size_t cap, uint8_t type, const char *key, size_t klen,
                   const void *val, size_t vlen);

#endif
