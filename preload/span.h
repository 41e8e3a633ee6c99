/*
 * preload/span.h - open spans, the thread context, and the TLV encoder.
 *
 * An open span lives in a slot of a fixed pool (LDPROF_MAX_OPEN_SPANS,
 * mapped once at start, touched lazily) so that beginning and ending a span
 * never calls malloc, and so that a span begun on one thread (the one that
 * read a request head) can be ended on another (the one that wrote the
 * response).  Slots are taken and given back with atomic bit operations on
 * an allocation bitmap: no lock, async-signal-safe.  An exhausted pool
 * drops the span and counts it (buffer.c's dropped counter).  The last slot
 * a thread freed stays taken as that thread's spare (ldprof_tls.spare), so
 * a span begun and ended on one thread touches the bitmap not at all.
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
#include "clock.h"
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

/*
 * The field writers: ldprof_span_add (a TLV field of any type; @when
 * LDPROF_FIELD_START/STOP; a macro below) and the public
 * ldprof_span_add_str/_int (ldprof.h) as the library's own code calls
 * them: with a key (and a NUL-terminated value) known at compile time,
 * its length is passed along instead of measured with strlen on every
 * call.  Same result, same bytes: the _k functions with @klen (or @vlen)
 * -1 measure it as the exported functions do.  Code that wants the
 * exported functions themselves writes (ldprof_span_add_str)(...).
 */
int ldprof_span_add_k(struct ldprof_span *s, int when, uint8_t type, const char *key, long klen,
                      const void *val, size_t vlen);
int ldprof_span_add_str_k(struct ldprof_span *s, int when, const char *key, long klen,
                          const char *val, long vlen);
int ldprof_span_add_int_k(struct ldprof_span *s, int when, const char *key, long klen,
                          int64_t val);

/* memcpy for the short keys and values of info fields: one or two
 * overlapping loads and stores up to 16 bytes, no call. */
static inline __attribute__((always_inline)) void ldprof_copy_short(uint8_t *dst,
                                                                    const void *src, size_t n)
{
    const uint8_t *s = src;

    if (n > 16) {
        __builtin_memcpy(dst, s, n);
    } else if (n >= 8) {
        uint64_t a, b;
        __builtin_memcpy(&a, s, 8);
        __builtin_memcpy(&b, s + n - 8, 8);
        __builtin_memcpy(dst, &a, 8);
        __builtin_memcpy(dst + n - 8, &b, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        __builtin_memcpy(&a, s, 4);
        __builtin_memcpy(&b, s + n - 4, 4);
        __builtin_memcpy(dst, &a, 4);
        __builtin_memcpy(dst + n - 4, &b, 4);
    } else if (n > 0) {
        /* 1..3 bytes: first, middle, last (overlapping) */
        uint8_t a = s[0], b = s[n / 2], c = s[n - 1];
        dst[0] = a;
        dst[n / 2] = b;
        dst[n - 1] = c;
    }
}

/* A field's TLV type: @type, with LDPROF_TLV_STOP for a stop field. */
#define LDPROF_SPAN_TYPE(when, type)                                                          \
    ((uint8_t)((when) == LDPROF_FIELD_STOP ? (type) | LDPROF_TLV_STOP : (type)))

/*
 * ldprof_span_put - the one fast path of every field writer: the field
 * (@type with its STOP bit, a key of @klen bytes) appended to @s's info
 * when it fits as it is, what ldprof_tlv_put writes then: 0.  1 when it
 * does not (key length not 1..255, or no room): the caller takes span.c's
 * slow path, which cuts a long string or marks the span truncated.
 * Inlined both where the lengths are constants (a field written in place
 * at the call site: the copies are fixed-size moves, no call) and in
 * span.c's one out-of-line writer (every other field).
 */
static inline __attribute__((always_inline)) int ldprof_span_put(struct ldprof_span *s,
                                                                 uint8_t type, const char *key,
                                                                 size_t klen, const void *val,
                                                                 size_t vlen)
{
    size_t used = s->info_len;

    _Static_assert(LDPROF_WIRE_MAX_INFO <= 65535, "vlen fits the TLV");
    if (__builtin_expect(klen - 1 < 255 && vlen <= LDPROF_WIRE_MAX_INFO &&
                             used + 4 + klen + vlen <= LDPROF_WIRE_MAX_INFO,
                         1)) {
        struct ldprof_wire_tlv t = {type, (uint8_t)klen, (uint16_t)vlen};
        uint8_t *d = s->info + used;

        _Static_assert(sizeof(t) == 4, "TLV head is 4 bytes");
        __builtin_memcpy(d, &t, sizeof(t));
        ldprof_copy_short(d + sizeof(t), key, klen);
        ldprof_copy_short(d + sizeof(t) + klen, val, vlen);
        s->info_len = (uint16_t)(used + sizeof(t) + klen + vlen);
        return 0;
    }
    return 1;
}

/* strlen(@p) when the compiler knows it, else -1 (also for NULL: the
 * test keeps UBSan's non-null check of the builtin's argument from
 * firing on a NULL key the callee refuses; it folds away for a literal) */
#define LDPROF_CONST_STRLEN(p)                                                                 \
    ((p) != NULL && __builtin_constant_p(__builtin_strlen(p)) ? (long)__builtin_strlen(p) : -1L)

static inline __attribute__((always_inline)) int
ldprof_span_add_str_inl(struct ldprof_span *s, int when, const char *key, const char *val,
                        long vlen)
{
    long klen = LDPROF_CONST_STRLEN(key);

    if (vlen < 0 && val != NULL)
        vlen = LDPROF_CONST_STRLEN(val);
    /* In place only when both lengths are constants (fixed-size moves); a
     * value of variable length goes to the one out-of-line copy of the
     * writer (span.c), whose code lines all fields share, rather than a
     * length-dispatched copy at every call site. */
    if (__builtin_constant_p(klen) && klen > 0 && __builtin_constant_p(vlen) && vlen >= 0 &&
        s != NULL && val != NULL &&
        ldprof_span_put(s, LDPROF_SPAN_TYPE(when, LDPROF_TLV_STR), key, (size_t)klen, val,
                        (size_t)vlen) == 0)
        return 0;
    return ldprof_span_add_str_k(s, when, key, klen, val, vlen);
}

static inline __attribute__((always_inline)) int
ldprof_span_add_int_inl(struct ldprof_span *s, int when, const char *key, int64_t val)
{
    long klen = LDPROF_CONST_STRLEN(key);

    if (__builtin_constant_p(klen) && klen > 0 && s != NULL &&
        ldprof_span_put(s, LDPROF_SPAN_TYPE(when, LDPROF_TLV_INT), key, (size_t)klen, &val,
                        sizeof(val)) == 0)
        return 0;
    return ldprof_span_add_int_k(s, when, key, klen, val);
}

/* ldprof_span_add: in place when the key and the value length are
 * constants, else span.c's writer, told the key's length when it is a
 * constant (a literal key: no strlen). */
static inline __attribute__((always_inline)) int
ldprof_span_add_inl(struct ldprof_span *s, int when, uint8_t type, const char *key,
                    const void *val, size_t vlen)
{
    long klen = LDPROF_CONST_STRLEN(key);

    if (__builtin_constant_p(klen) && klen > 0 && __builtin_constant_p(vlen) && s != NULL &&
        ldprof_span_put(s, LDPROF_SPAN_TYPE(when, type), key, (size_t)klen, val, vlen) == 0)
        return 0;
    return ldprof_span_add_k(s, when, type, key, klen, val, vlen);
}

#define ldprof_span_add(s, when, type, key, val, vlen)                                         \
    ldprof_span_add_inl((s), (when), (type), (key), (val), (vlen))
#define ldprof_span_add_str(s, when, key, val, vlen)                                           \
    ldprof_span_add_str_inl((s), (when), (key), (val), (vlen))
#define ldprof_span_add_int(s, when, key, val) ldprof_span_add_int_inl((s), (when), (key), (val))

/* ldprof_span_spare_release - at thread exit (buffer.c): give the thread's
 * spare slot back and keep none from now on.  ldprof_span_fork_child - in
 * the fork child (buffer.c): give back the spare slots of the threads that
 * did not follow. */
void ldprof_span_spare_release(void);
void ldprof_span_fork_child(void);

/* ldprof_span_emit_unfinished - at exit: record every open span once with
 * LDPROF_SPAN_UNFINISHED (end = start).  Returns how many. */
int ldprof_span_emit_unfinished(void);

/* Time now, CLOCK_REALTIME ns (the wire's clock; clock.h). */
static inline uint64_t ldprof_now_ns(void)
{
    return ldprof_clock_now();
}

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
 * ldprof_ctx_word - the two words that say whether ldprof_ctx_current()
 * may return a context, OR'ed: 0 means certainly not (no root on this
 * thread, no profile mode).  Wrappers OR a word of their own into it and
 * test once (one branch instead of one per word).
 */
static inline uintptr_t ldprof_ctx_word(void)
{
    return (uintptr_t)ldprof_tls.ctx.root | (unsigned)ldprof_profile_on;
}

/* ldprof_ctx_maybe - may the thread have a context?  The driver wrappers'
 * quiet path: two loads, one branch, no call. */
static inline int ldprof_ctx_maybe(void)
{
    return ldprof_ctx_word() != 0;
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
