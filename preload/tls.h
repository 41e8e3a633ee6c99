/*
 * preload/tls.h - per-thread state, in initial-exec TLS.
 *
 * initial-exec because the wrappers touch it on every call: no
 * __tls_get_addr, no allocation, usable from signal handlers and from
 * constructors of other libraries.  libldprof.so is loaded at startup
 * (LD_PRELOAD), so static TLS space is guaranteed.
 *
 * Reentrancy: `depth` counts how deep this thread is inside ldprof.  Only
 * the 0 -> 1 transition records anything; everything nested (our own
 * socket calls, a recv() inside a driver call that has its own span, a
 * signal handler interrupting our bookkeeping) goes straight to real_*.
 *
 * Context: the span the thread is working for.  It is set when a traced
 * request head completes on a connection this thread reads, and cleared
 * when that request's response completes (see http.c).  `root` is the span
 * that established the context; the context is only valid while that span
 * is still open with the same generation (a span ended by another thread
 * invalidates every thread's stale copy without touching their TLS).
 */
#ifndef LDPROF_TLS_H
#define LDPROF_TLS_H

#include <stdint.h>
#include <sys/types.h>

struct ldprof_span;
struct ldprof_buf;

struct ldprof_ctx {
    struct ldprof_span *root; /* NULL: no context */
    uint32_t root_gen;        /* root->gen when the context was set */
    int key_idx;              /* hmac key that verified the trace */
    uint8_t base_id[16];
    uint8_t cur_id[16]; /* innermost open span: the parent of new spans */
};

struct ldprof_tls {
    int depth;               /* reentrancy guard */
    pid_t tid;               /* cached gettid(), 0 = not cached */
    struct ldprof_buf *buf;  /* this thread's span buffer, NULL until its first span */
    struct ldprof_span *spare; /* a freed span slot kept for this thread's next span
                                  (span.c: slot_alloc/slot_free) */
    struct ldprof_ctx ctx;
};

/* ldprof_tls.spare of a thread that keeps no spare slot (exiting, or no
 * thread-exit hook) */
#define LDPROF_SPARE_OFF ((struct ldprof_span *)1)

extern __thread struct ldprof_tls ldprof_tls __attribute__((tls_model("initial-exec")));

/* ldprof_tls_tid - the calling thread's kernel tid (cached). Signal-safe. */
pid_t ldprof_tls_tid_slow(void);
static inline pid_t ldprof_tls_tid(void)
{
    pid_t t = ldprof_tls.tid;

    return __builtin_expect(t != 0, 1) ? t : ldprof_tls_tid_slow();
}

/* ldprof_tls_reset_after_fork - in the fork child: drop the cached tid. */
void ldprof_tls_reset_after_fork(void);

/* Enter/leave ldprof code on this thread.  ldprof_enter() returns 1 when
 * the caller is the outermost level and may record, 0 when nested (then it
 * must not record, but must still call ldprof_leave()). */
static inline int ldprof_enter(void)
{
    return ldprof_tls.depth++ == 0;
}

static inline void ldprof_leave(void)
{
    ldprof_tls.depth--;
}

#endif
