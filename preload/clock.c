/*
 * preload/clock.c - the rdtsc clock's anchor (see clock.h).
 *
 * Writer side only: readers are the inline ldprof_clock_at()/_now() in
 * clock.h.  One writer at a time: the flusher thread (ldprof_clock_refresh
 * from its loop), or a test; its state below is private to it.
 */
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "log.h"

#if LDPROF_HAVE_TSC
#include <cpuid.h>
#endif

#define PR_FMT "clock"

struct ldprof_clock_anchor ldprof_clk __attribute__((aligned(64)));

/* The writer's state. */
static int state = LDPROF_CLOCK_UNKNOWN;
static int force_usable;           /* tests: skip the checks */
static uint64_t cal_c, cal_n;      /* first pair (calibration base) */
static uint64_t prev_c, prev_n;    /* last pair fed */
static uint64_t ref_mult;          /* the first calibrated rate */
static uint64_t base_mult;         /* the last measured rate */
static uint64_t next_c;            /* no re-anchoring before this TSC */
static unsigned steps;

uint64_t ldprof_clock_gettime_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int ldprof_clock_supported(void)
{
#if LDPROF_HAVE_TSC
    unsigned a, b, c, d;
    char buf[16];
    ssize_t n;
    int fd;

    if (!__get_cpuid(0x80000000, &a, &b, &c, &d) || a < 0x80000007)
        return 0;
    if (!__get_cpuid(0x80000007, &a, &b, &c, &d) || !(d & (1u << 8)))
        return 0; /* no invariant TSC */
    fd = open("/sys/devices/system/clocksource/clocksource0/current_clocksource",
              O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    return n == 4 && memcmp(buf, "tsc\n", 4) == 0;
#else
    return 0;
#endif
}

/* ticks in @ns at rate @mult (ns per tick << 32) */
static uint64_t ticks_for(uint64_t ns, uint64_t mult)
{
    return (uint64_t)(((unsigned __int128)ns << 32) / mult);
}

static void publish(uint64_t c0, uint64_t n0, uint64_t mult)
{
    uint32_t s = __atomic_load_n(&ldprof_clk.seq, __ATOMIC_RELAXED);

    if (s & 1)
        s++; /* even: readers take the fallback while the fields change */
    __atomic_store_n(&ldprof_clk.seq, s, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&ldprof_clk.c0, c0, __ATOMIC_RELAXED);
    __atomic_store_n(&ldprof_clk.n0, n0, __ATOMIC_RELAXED);
    __atomic_store_n(&ldprof_clk.mult, mult, __ATOMIC_RELAXED);
    __atomic_store_n(&ldprof_clk.dmax, ticks_for(LDPROF_CLOCK_MAX_AGE_MS * 1000000ull, mult),
                     __ATOMIC_RELAXED);
    __atomic_store_n(&ldprof_clk.seq, s + 1, __ATOMIC_RELEASE); /* odd: valid */
}

static void withdraw(void)
{
    uint32_t s = __atomic_load_n(&ldprof_clk.seq, __ATOMIC_RELAXED);

    if (s & 1)
        __atomic_store_n(&ldprof_clk.seq, s + 1, __ATOMIC_RELEASE);
}

static void go_off(const char *why)
{
    withdraw();
    if (state != LDPROF_CLOCK_OFF && why)
        pr_info("span times by clock_gettime from now on: %s", why);
    state = LDPROF_CLOCK_OFF;
}

int ldprof_clock_feed(uint64_t c, uint64_t n)
{
    switch (state) {
    case LDPROF_CLOCK_OFF:
        break;
    case LDPROF_CLOCK_UNKNOWN:
        cal_c = prev_c = c;
        cal_n = prev_n = n;
        state = LDPROF_CLOCK_CALIBRATING;
        break;
    case LDPROF_CLOCK_CALIBRATING: {
        uint64_t mult;

        if (c <= prev_c) {
            go_off("the TSC went backwards");
            break;
        }
        prev_c = c;
        prev_n = n;
        if (n < cal_n) {
            /* the realtime clock stepped back: start over from here */
            cal_c = c;
            cal_n = n;
            break;
        }
        if (n - cal_n < LDPROF_CLOCK_CAL_MS * 1000000ull)
            break;
        mult = (uint64_t)(((unsigned __int128)(n - cal_n) << 32) / (c - cal_c));
        /* 0.01 .. 10 ns per tick: anything else is not a usable TSC */
        if (mult < (1ull << 32) / 100 || mult > (10ull << 32)) {
            go_off("implausible TSC rate");
            break;
        }
        ref_mult = base_mult = mult;
        publish(c, n, mult);
        next_c = c + ticks_for(LDPROF_CLOCK_REFRESH_MS * 1000000ull, mult);
        state = LDPROF_CLOCK_TSC;
        break;
    }
    case LDPROF_CLOCK_TSC: {
        uint64_t c0 = ldprof_clk.c0, n0 = ldprof_clk.n0, mult = ldprof_clk.mult, p, r, dev;
        int64_t e, adj;

        if (c <= prev_c) {
            go_off("the TSC went backwards");
            break;
        }
        /* where the published anchor stands at c */
        p = n0 + (uint64_t)(((unsigned __int128)(c - c0) * mult) >> 32);
        e = (int64_t)(n - p);
        if (n <= prev_n || e > LDPROF_CLOCK_STEP_NS || e < -LDPROF_CLOCK_STEP_NS) {
            /* the realtime clock was stepped (or we are far off): re-anchor
             * on it, keep the rate (this interval's is not to be trusted) */
            steps++;
            publish(c, n, base_mult);
        } else {
            r = (uint64_t)(((unsigned __int128)(n - prev_n) << 32) / (c - prev_c));
            dev = r > ref_mult ? r - ref_mult : ref_mult - r;
            if (dev > ref_mult / (1000000 / LDPROF_CLOCK_MAX_PPM)) {
                go_off("the TSC rate changed");
                break;
            }
            base_mult = r;
            /* continuous: start at p, make the error up over the next period */
            adj = (int64_t)(((__int128)e * ((__int128)1 << 32)) /
                            (__int128)ticks_for(LDPROF_CLOCK_REFRESH_MS * 1000000ull, r));
            publish(c, p, (uint64_t)((int64_t)r + adj));
        }
        prev_c = c;
        prev_n = n;
        next_c = c + ticks_for(LDPROF_CLOCK_REFRESH_MS * 1000000ull, base_mult);
        break;
    }
    }
    return state;
}

void ldprof_clock_refresh(void)
{
#if LDPROF_HAVE_TSC
    uint64_t best_w = ~0ull, best_c = 0, best_n = 0, lim;

    if (state == LDPROF_CLOCK_OFF)
        return;
    if (state == LDPROF_CLOCK_UNKNOWN && !force_usable &&
        (!ldprof_cfg.fast_clock || !ldprof_clock_supported())) {
        go_off(NULL);
        return;
    }
    if (state == LDPROF_CLOCK_TSC && ldprof_clock_tsc() < next_c)
        return;
    /* The tightest of a few (tsc, clock_gettime, tsc) brackets. */
    for (int i = 0; i < 4; i++) {
        uint64_t t1 = ldprof_clock_tsc();
        uint64_t n = ldprof_clock_gettime_ns();
        uint64_t t2 = ldprof_clock_tsc();
        if (t2 >= t1 && t2 - t1 < best_w) {
            best_w = t2 - t1;
            best_c = t1 + (t2 - t1) / 2;
            best_n = n;
        }
    }
    /* before calibration: at most 5 ticks per ns (5 GHz) */
    lim = state == LDPROF_CLOCK_TSC ? ticks_for(LDPROF_CLOCK_PAIR_NS, base_mult)
                                    : LDPROF_CLOCK_PAIR_NS * 5ull;
    if (best_w > lim)
        return; /* preempted in the middle every time: try next wake-up */
    ldprof_clock_feed(best_c, best_n);
#else
    if (state != LDPROF_CLOCK_OFF)
        go_off(NULL);
#endif
}

int ldprof_clock_state(void)
{
    return state;
}

unsigned ldprof_clock_steps(void)
{
    return steps;
}

void ldprof_clock_reset(int usable)
{
    __atomic_store_n(&ldprof_clk.seq, 0, __ATOMIC_RELEASE);
    state = usable < 0 ? LDPROF_CLOCK_OFF : LDPROF_CLOCK_UNKNOWN;
    force_usable = usable > 0;
    steps = 0;
    cal_c = cal_n = prev_c = prev_n = ref_mult = base_mult = next_c = 0;
}
