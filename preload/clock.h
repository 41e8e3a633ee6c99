/*
 * preload/clock.h - span timestamps: CLOCK_REALTIME ns, read with rdtsc.
 *
 * The wire carries CLOCK_REALTIME nanoseconds (start and end of every
 * span).  clock_gettime costs two to three times an rdtsc on the machines
 * ldprof runs on (vDSO: rdtsc plus its own seqlock and scaling), and a span
 * reads the clock twice, so the time is taken from the TSC and converted
 * with an anchor that the flusher thread (transport.c) refreshes from
 * clock_gettime about once a second:
 *
 *     ns = n0 + ((tsc - c0) * mult) >> 32        while tsc - c0 <= dmax
 *
 * Only when the TSC is invariant (cpuid 0x80000007 EDX bit 8), the kernel's
 * clocksource is "tsc" and the fast_clock option is on.  Until the rate is
 * calibrated (two (tsc, clock_gettime) pairs >= LDPROF_CLOCK_CAL_MS apart),
 * when the anchor is older than dmax (the flusher stalled), while the
 * flusher writes a new anchor, and for good after anything looks wrong (the
 * TSC went backwards, a measured rate off by more than
 * LDPROF_CLOCK_MAX_PPM), every read is a clock_gettime: the fallback.
 *
 * Re-anchoring is continuous: the new anchor starts where the old one
 * stands at that TSC value and its rate is slewed so that the remaining
 * error (NTP slewing, calibration error; |error| <= LDPROF_CLOCK_STEP_NS)
 * is made up over the next second, so within a thread the clock never goes
 * back.  A larger error (the realtime clock was stepped) re-anchors on
 * clock_gettime directly: the clock steps as CLOCK_REALTIME did.
 *
 * Readers never block and never see a torn anchor: a sequence counter
 * (even while the single writer, the flusher, changes the anchor, and
 * while there is none) checked before and after; a reader that meets a
 * change takes the fallback.
 */
#ifndef LDPROF_CLOCK_H
#define LDPROF_CLOCK_H

#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define LDPROF_HAVE_TSC 1
#else
#define LDPROF_HAVE_TSC 0
#endif

#define LDPROF_CLOCK_CAL_MS 200        /* first rate measurement over >= this */
#define LDPROF_CLOCK_REFRESH_MS 1000   /* re-anchor at most this often */
#define LDPROF_CLOCK_MAX_AGE_MS 4000   /* dmax: an older anchor is not used */
#define LDPROF_CLOCK_STEP_NS 1000000   /* a larger error is a clock step */
#define LDPROF_CLOCK_MAX_PPM 1000      /* rate change beyond this: fallback for good */
#define LDPROF_CLOCK_PAIR_NS 5000      /* a (tsc, clock_gettime) pair must be this tight */

struct ldprof_clock_anchor {
    uint32_t seq;  /* odd: the fields below are valid; even: not (yet) (atomic) */
    uint32_t pad;
    uint64_t c0;   /* TSC at the anchor */
    uint64_t n0;   /* CLOCK_REALTIME ns at c0 */
    uint64_t mult; /* ns per TSC tick << 32 */
    uint64_t dmax; /* ticks after c0 the anchor may be used for */
};

extern struct ldprof_clock_anchor ldprof_clk __attribute__((visibility("hidden")));

/* ldprof_clock_gettime_ns - CLOCK_REALTIME ns by clock_gettime (the fallback). */
uint64_t ldprof_clock_gettime_ns(void);

/*
 * ldprof_clock_at - the time for TSC value @tsc by the published anchor,
 * or 0 when the anchor cannot be used for it (not calibrated, being
 * changed, @tsc before c0 or more than dmax after it).
 */
static inline uint64_t ldprof_clock_at(uint64_t tsc)
{
    uint32_t s = __atomic_load_n(&ldprof_clk.seq, __ATOMIC_ACQUIRE);
    uint64_t c0, n0, mult, dmax, d;

    if (__builtin_expect(!(s & 1), 0))
        return 0;
    c0 = __atomic_load_n(&ldprof_clk.c0, __ATOMIC_RELAXED);
    n0 = __atomic_load_n(&ldprof_clk.n0, __ATOMIC_RELAXED);
    mult = __atomic_load_n(&ldprof_clk.mult, __ATOMIC_RELAXED);
    dmax = __atomic_load_n(&ldprof_clk.dmax, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__builtin_expect(__atomic_load_n(&ldprof_clk.seq, __ATOMIC_RELAXED) != s, 0))
        return 0;
    d = tsc - c0; /* a TSC before c0 wraps to a huge d */
    if (__builtin_expect(d > dmax, 0))
        return 0;
    return n0 + (uint64_t)(((unsigned __int128)d * mult) >> 32);
}

static inline uint64_t ldprof_clock_tsc(void)
{
#if LDPROF_HAVE_TSC
    return __rdtsc();
#else
    return 0;
#endif
}

/* ldprof_clock_now - CLOCK_REALTIME ns, the wire's clock (see above). */
static inline uint64_t ldprof_clock_now(void)
{
    uint64_t t;

    /* no anchor (fallback): not even the rdtsc */
    if (__builtin_expect(!(__atomic_load_n(&ldprof_clk.seq, __ATOMIC_RELAXED) & 1), 0))
        return ldprof_clock_gettime_ns();
    t = ldprof_clock_at(ldprof_clock_tsc());
    return __builtin_expect(t != 0, 1) ? t : ldprof_clock_gettime_ns();
}

/*
 * ldprof_clock_refresh - the flusher's hook, called on every wake-up:
 * on the first call checks whether the TSC may be used (cpuid, the
 * clocksource, ldprof_cfg.fast_clock) and takes the first pair; later
 * calibrates, then re-anchors every LDPROF_CLOCK_REFRESH_MS.  Cheap when
 * there is nothing to do.  One writer at a time (the flusher; tests).
 */
void ldprof_clock_refresh(void);

/*
 * ldprof_clock_feed - the writer's step with an explicit pair (@tsc taken
 * at CLOCK_REALTIME @ns): what ldprof_clock_refresh() does with a measured
 * pair, for the tests to plant steps and backward TSCs.  Returns the state
 * after it.
 */
enum {
    LDPROF_CLOCK_OFF = 0,     /* fallback for good (unsupported, disabled, gone wrong) */
    LDPROF_CLOCK_UNKNOWN = 1, /* not checked yet */
    LDPROF_CLOCK_CALIBRATING = 2,
    LDPROF_CLOCK_TSC = 3,     /* anchor published */
};
int ldprof_clock_feed(uint64_t tsc, uint64_t ns);

/* ldprof_clock_state - LDPROF_CLOCK_*; ldprof_clock_steps - how many times
 * the anchor was reset on clock_gettime (clock steps). */
int ldprof_clock_state(void);
unsigned ldprof_clock_steps(void);

/*
 * ldprof_clock_reset - back to LDPROF_CLOCK_UNKNOWN, anchor withdrawn (tests;
 * @usable: 1 = skip the cpuid/clocksource/option checks and take the TSC,
 * 0 = run them, -1 = force the fallback).
 */
void ldprof_clock_reset(int usable);

/* ldprof_clock_supported - invariant TSC and the tsc clocksource (the checks). */
int ldprof_clock_supported(void);

#endif
