/*
 * ldprof/ldprof.h - the public manual-span API of libldprof.so.
 *
 * Everything ldprof records automatically (the `wsgi` span of an inbound
 * HTTP request, outbound `http` spans, driver spans) goes through the same
 * functions, so a program that wants a span of its own around some work can
 * call them too:
 *
 *     struct ldprof_span *s = ldprof_span_begin(LDPROF_KIND_NET);
 *     ldprof_span_add_str(s, LDPROF_FIELD_START, "net.op", "resolve", -1);
 *     ...work...
 *     ldprof_span_add_int(s, LDPROF_FIELD_STOP, "net.bytes", n);
 *     ldprof_span_end(s);
 *
 * Contract common to every function here:
 *   - All of them accept a NULL span and then do nothing (return -1 where
 *     they return an int): ldprof_span_begin() returns NULL whenever nothing
 *     is to be recorded (ldprof disabled, the calling thread is not inside a
 *     trace, the open-span pool is exhausted), and callers never need to test.
 *   - They never call malloc, never block and never change errno; they
 *     are safe to call from any thread.  (A thread's first span maps its
 *     span buffer; the process's first span starts ldprof's flusher
 *     thread.)  They are not async-signal-safe.
 *   - A span may be ended by a thread other than the one that began it.
 *   - A span must be ended exactly once; the handle is invalid afterwards.
 *
 * Linking: the functions are exported by libldprof.so.  A program that must
 * also run without the preload can declare them weak and test for NULL.
 */
#ifndef LDPROF_LDPROF_H
#define LDPROF_LDPROF_H

#include <stddef.h>
#include <stdint.h>

#include "ldprof/wire.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The one visibility macro of the project: libldprof.so is built with
 * -fvisibility=hidden, and only what carries LDPROF_EXPORT (the libc
 * wrappers and this API) is in the dynamic symbol table (see
 * preload/libldprof.map, checked by nm -D in the tests). */
#define LDPROF_EXPORT __attribute__((visibility("default")))

/* Where an info field goes: the span's start event or its stop event. */
#define LDPROF_FIELD_START 0
#define LDPROF_FIELD_STOP 1

struct ldprof_span;

/*
 * ldprof_span_begin - open a child span of the calling thread's current span.
 * @kind: enum ldprof_span_kind (LDPROF_KIND_*).
 *
 * The new span becomes the thread's current span until it ends, so spans
 * opened inside it are its children, and outbound HTTP requests made inside
 * it carry it as their parent.  Returns NULL when nothing is recorded.
 */
LDPROF_EXPORT struct ldprof_span *ldprof_span_begin(int kind);

/*
 * ldprof_span_add_str - add a string info field.
 * @when: LDPROF_FIELD_START or LDPROF_FIELD_STOP.
 * @key: dotted path ("request.path"), 1..255 bytes, copied.
 * @val: the value, copied; @vlen bytes, or strlen(val) when vlen < 0.
 *
 * Returns 0, or -1 when the field does not fit (the span is then marked
 * LDPROF_SPAN_TRUNCATED; a value longer than the room left is cut to fit
 * when at least a few bytes remain).
 */
LDPROF_EXPORT int ldprof_span_add_str(struct ldprof_span *s, int when, const char *key,
                                      const char *val, long vlen);

/* ldprof_span_add_int - add an integer info field (see ldprof_span_add_str). */
LDPROF_EXPORT int ldprof_span_add_int(struct ldprof_span *s, int when, const char *key,
                                      int64_t val);

/*
 * ldprof_span_set_error - mark the span failed: the stop event gets
 * info.etype and info.message (OSProfiler's error fields).
 */
LDPROF_EXPORT int ldprof_span_set_error(struct ldprof_span *s, const char *etype,
                                        const char *message);

/*
 * ldprof_span_end - close the span, record it, and make the span that was
 * current when it began current again (on the ending thread, if that thread
 * still has this span as its current one).
 */
LDPROF_EXPORT void ldprof_span_end(struct ldprof_span *s);

#ifdef __cplusplus
}
#endif

#endif
