/*
 * tests/unit/test_preload_clock.c - the span clock (preload/clock.c): the
 * anchor arithmetic with planted (tsc, ns) pairs (calibration, continuous
 * re-anchoring, clock steps, a backward TSC, a rate change, a stale
 * anchor), the fallback when forced, and on a machine where the TSC may be
 * used, the real clock against clock_gettime across re-anchorings.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdlib.h>
#include <time.h>

#include "preload/clock.h"
#include "preload/config.h"
#include "preload/span.h"

extern void tp_setup(void);

static void setup(void)
{
    tp_setup();
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

TestSuite(preload_clock, .init = setup);

#define MS 1000000ull
#define SEC 1000000000ull

/* planted pairs: 3 ticks per ns, TSC at 1e12 when the clock says N0 */
#define C0 1000000000000ull
#define N0 1700000000000000000ull
#define T(ns) (C0 + 3 * (uint64_t)(ns))

static uint64_t gettime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

static void calibrate_planted(void)
{
    ldprof_clock_reset(1);
    cr_assert_eq(ldprof_clock_at(T(0)), 0, "no anchor before calibration");
    cr_assert_eq(ldprof_clock_feed(T(0), N0), LDPROF_CLOCK_CALIBRATING);
    cr_assert_eq(ldprof_clock_feed(T(100 * MS), N0 + 100 * MS), LDPROF_CLOCK_CALIBRATING,
                 "100 ms is too short to calibrate on");
    cr_assert_eq(ldprof_clock_at(T(100 * MS)), 0);
    cr_assert_eq(ldprof_clock_feed(T(300 * MS), N0 + 300 * MS), LDPROF_CLOCK_TSC);
}

static uint64_t absdiff(uint64_t a, uint64_t b)
{
    return a > b ? a - b : b - a;
}

Test(preload_clock, calibrates_then_converts_ticks_to_realtime)
{
    calibrate_planted();
    cr_assert_eq(ldprof_clock_at(T(300 * MS)), N0 + 300 * MS);
    cr_assert_leq(absdiff(ldprof_clock_at(T(1300 * MS)), N0 + 1300 * MS), 1);
    cr_assert_leq(absdiff(ldprof_clock_at(T(300 * MS) + 1), N0 + 300 * MS), 1);
    /* before the anchor, or older than LDPROF_CLOCK_MAX_AGE_MS: not used */
    cr_assert_eq(ldprof_clock_at(T(300 * MS) - 1), 0);
    cr_assert_neq(ldprof_clock_at(T((300 + LDPROF_CLOCK_MAX_AGE_MS - 1) * MS)), 0);
    cr_assert_eq(ldprof_clock_at(T((300 + LDPROF_CLOCK_MAX_AGE_MS + 1) * MS)), 0);
}

Test(preload_clock, reanchoring_is_continuous_and_makes_the_error_up)
{
    uint64_t before, at, prev = 0, want;

    calibrate_planted();
    /* 1 s later the realtime clock is 20 us ahead of the anchor's line
     * (NTP slewing it, say): the new anchor starts where the old line
     * stands (no jump) and reaches, 1 s later, the line of the measured
     * rate through the real pair */
    before = ldprof_clock_at(T(1300 * MS) - 3);
    cr_assert_eq(ldprof_clock_feed(T(1300 * MS), N0 + 1300 * MS + 20000), LDPROF_CLOCK_TSC);
    cr_assert_eq(ldprof_clock_steps(), 0);
    at = ldprof_clock_at(T(1300 * MS));
    cr_assert_leq(absdiff(at, N0 + 1300 * MS), 1, "no jump at the new anchor");
    cr_assert_geq(at, before);
    for (uint64_t ns = 1300 * MS; ns <= 2300 * MS; ns += 10 * MS) {
        uint64_t t = ldprof_clock_at(T(ns));
        cr_assert_geq(t, prev, "the clock went back at +%llu ns", (unsigned long long)ns);
        prev = t;
    }
    want = N0 + 1300 * MS + 20000 + (SEC + 20000); /* the real pair + 1 s at its rate */
    cr_assert_leq(absdiff(prev, want), 2, "error not made up: off by %lld ns",
                  (long long)(prev - want));
    /* a clock that is on that line at the next anchor stays on it */
    cr_assert_eq(ldprof_clock_feed(T(2300 * MS), want), LDPROF_CLOCK_TSC);
    cr_assert_leq(absdiff(ldprof_clock_at(T(2300 * MS)), want), 2);
    cr_assert_leq(absdiff(ldprof_clock_at(T(3300 * MS)), want + SEC + 20000), 2);
    cr_assert_eq(ldprof_clock_steps(), 0);
}

Test(preload_clock, a_clock_step_is_followed)
{
    calibrate_planted();
    /* the realtime clock was set 5 s back */
    cr_assert_eq(ldprof_clock_feed(T(1300 * MS), N0 + 1300 * MS - 5 * SEC), LDPROF_CLOCK_TSC);
    cr_assert_eq(ldprof_clock_steps(), 1);
    cr_assert_eq(ldprof_clock_at(T(1300 * MS)), N0 + 1300 * MS - 5 * SEC);
    cr_assert_leq(absdiff(ldprof_clock_at(T(2300 * MS)), N0 + 2300 * MS - 5 * SEC), 1,
                  "the rate is kept across a step");
    /* and 2 ms forward */
    cr_assert_eq(ldprof_clock_feed(T(2300 * MS), N0 + 2300 * MS - 5 * SEC + 2 * MS),
                 LDPROF_CLOCK_TSC);
    cr_assert_eq(ldprof_clock_steps(), 2);
    cr_assert_eq(ldprof_clock_at(T(2300 * MS)), N0 + 2300 * MS - 5 * SEC + 2 * MS);
}

Test(preload_clock, a_backward_tsc_turns_the_fast_clock_off)
{
    uint64_t t1, t, t2;

    calibrate_planted();
    cr_assert_eq(ldprof_clock_feed(T(200 * MS), N0 + 1300 * MS), LDPROF_CLOCK_OFF);
    cr_assert_eq(ldprof_clock_at(T(300 * MS)), 0, "anchor withdrawn");
    /* for good */
    cr_assert_eq(ldprof_clock_feed(T(2300 * MS), N0 + 2300 * MS), LDPROF_CLOCK_OFF);
    cr_assert_eq(ldprof_clock_at(T(2300 * MS)), 0);
    /* every read is then a clock_gettime */
    t1 = gettime();
    t = ldprof_now_ns();
    t2 = gettime();
    cr_assert(t1 <= t && t <= t2);
}

Test(preload_clock, a_tsc_backward_during_calibration_turns_it_off)
{
    ldprof_clock_reset(1);
    ldprof_clock_feed(T(0), N0);
    cr_assert_eq(ldprof_clock_feed(T(0) - 5, N0 + 300 * MS), LDPROF_CLOCK_OFF);
}

Test(preload_clock, a_rate_change_beyond_the_bound_turns_it_off)
{
    calibrate_planted();
    /* 0.4 s at a rate 2000 ppm off: 0.8 ms, under the step bound */
    cr_assert_eq(ldprof_clock_feed(T(700 * MS), N0 + 700 * MS + 800000), LDPROF_CLOCK_OFF);
    cr_assert_eq(ldprof_clock_at(T(700 * MS)), 0);
}

Test(preload_clock, a_rate_change_within_the_bound_is_taken)
{
    calibrate_planted();
    /* 400 ppm (NTP's frequency corrections stay within 500) */
    cr_assert_eq(ldprof_clock_feed(T(1300 * MS), N0 + 1300 * MS + 400000), LDPROF_CLOCK_TSC);
    cr_assert_eq(ldprof_clock_feed(T(2300 * MS), N0 + 2300 * MS + 800000), LDPROF_CLOCK_TSC);
    cr_assert_eq(ldprof_clock_steps(), 0);
    cr_assert_leq(absdiff(ldprof_clock_at(T(3300 * MS)), N0 + 3300 * MS + 1200000), 5);
}

Test(preload_clock, forced_fallback_reads_clock_gettime)
{
    /* LDPROF_FAST_CLOCK=0 */
    ldprof_clock_reset(0);
    ldprof_cfg.fast_clock = 0;
    for (int i = 0; i < 5; i++)
        ldprof_clock_refresh();
    cr_assert_eq(ldprof_clock_state(), LDPROF_CLOCK_OFF);
    /* and the tests' own switch */
    ldprof_clock_reset(-1);
    ldprof_clock_refresh();
    cr_assert_eq(ldprof_clock_state(), LDPROF_CLOCK_OFF);
    for (int i = 0; i < 1000; i++) {
        uint64_t t1 = gettime(), t = ldprof_now_ns(), t2 = gettime();
        cr_assert(t1 <= t && t <= t2, "not a clock_gettime: %llu not in [%llu, %llu]",
                  (unsigned long long)t, (unsigned long long)t1, (unsigned long long)t2);
    }
}

Test(preload_clock, the_option_is_read_from_the_environment)
{
    struct ldprof_config c;

    setenv("LDPROF_FAST_CLOCK", "0", 1);
    ldprof_config_load(&c, NULL, env_get);
    unsetenv("LDPROF_FAST_CLOCK");
    cr_assert_eq(c.fast_clock, 0);
    ldprof_config_load(&c, NULL, env_get);
    cr_assert_eq(c.fast_clock, 1, "on by default");
}

/*
 * The real clock, as the flusher drives it (a refresh every ~100 ms),
 * against clock_gettime for 2.5 s: within 100 us of it (the dumps print
 * microseconds; typically well under one), never going back, and
 * re-anchored at least twice.  Only where the TSC may be used.
 */
Test(preload_clock, tracks_clock_gettime_across_reanchoring, .timeout = 30)
{
    uint64_t prev = 0, worst = 0, anchors = 0, last_c0 = 0, fast = 0;

    if (!ldprof_clock_supported())
        cr_skip_test("no invariant TSC or not the tsc clocksource: the fallback is used");
    ldprof_clock_reset(0);
    ldprof_cfg.fast_clock = 1;
    for (int i = 0; i < 100 && ldprof_clock_state() != LDPROF_CLOCK_TSC; i++) {
        struct timespec ts = {0, 20 * 1000000L};
        ldprof_clock_refresh();
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(ldprof_clock_state(), LDPROF_CLOCK_TSC, "not calibrated in 2 s");
    for (int round = 0; round < 25; round++) {
        struct timespec ts = {0, 100 * 1000000L};
        ldprof_clock_refresh();
        if (ldprof_clk.c0 != last_c0) {
            last_c0 = ldprof_clk.c0;
            anchors++;
        }
        for (int i = 0; i < 2000; i++) {
            uint64_t t1 = gettime(), t = ldprof_now_ns(), t2 = gettime();
            uint64_t err = t < t1 ? t1 - t : t > t2 ? t - t2 : 0;
            if (ldprof_clock_at(ldprof_clock_tsc()) != 0)
                fast++;
            if (err > worst)
                worst = err;
            cr_assert_geq(t, prev, "the clock went back by %llu ns",
                          (unsigned long long)(prev - t));
            prev = t;
        }
        nanosleep(&ts, NULL);
    }
    cr_log_info("rdtsc clock: worst distance to clock_gettime %llu ns, %llu anchors",
                (unsigned long long)worst, (unsigned long long)anchors);
    cr_assert_eq(ldprof_clock_steps(), 0);
    cr_assert_geq(anchors, 3, "calibration and at least two re-anchorings");
    cr_assert_gt(fast, 25 * 2000 / 2, "the rdtsc path was taken");
    cr_assert_leq(worst, 100000, "%llu ns from clock_gettime", (unsigned long long)worst);
}
