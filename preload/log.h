/*
 * preload/log.h - the preload's logger: silent by default, signal-safe output.
 *
 * Lines look like
 *     ldprof[1234/1240]: config: bad value "maybe" for trace_wsgi (...), using default true
 * and, at log_level=debug, end with "(func() at file:line)".
 *
 * The level is set once from the configuration (log_level, default warn) and
 * read with a plain load.  A message is formatted into a stack buffer and
 * written with ONE write(2) to stderr (the real write, never our wrapper);
 * errno is preserved.  No stdio, no malloc: usable from wrappers and from
 * signal handlers (vsnprintf with %s/%d/%u/%x/%p formats does not allocate in
 * glibc; do not log floats).
 *
 * Each .c file defines PR_FMT, its module prefix, before using pr_*().
 */
#ifndef LDPROF_LOG_H
#define LDPROF_LOG_H

enum ldprof_log_level {
    LDPROF_LOG_OFF = 0,
    LDPROF_LOG_ERROR = 1,
    LDPROF_LOG_WARN = 2,
    LDPROF_LOG_INFO = 3,
    LDPROF_LOG_DEBUG = 4,
};

extern int ldprof_log_level;

/* ldprof_log - format and write one line (use the pr_* macros). */
void ldprof_log(int level, const char *module, const char *func, const char *file, int line,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#define LDPROF_LOG_AT(lvl, fmt, ...)                                                    \
    do {                                                                                \
        if (__builtin_expect(ldprof_log_level >= (lvl), 0))                             \
            ldprof_log((lvl), PR_FMT, __func__, __FILE__, __LINE__, fmt, ##__VA_ARGS__); \
    } while (0)

#define pr_err(fmt, ...) LDPROF_LOG_AT(LDPROF_LOG_ERROR, fmt, ##__VA_ARGS__)
#define pr_warn(fmt, ...) LDPROF_LOG_AT(LDPROF_LOG_WARN, fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...) LDPROF_LOG_AT(LDPROF_LOG_INFO, fmt, ##__VA_ARGS__)
#define pr_dbg(fmt, ...) LDPROF_LOG_AT(LDPROF_LOG_DEBUG, fmt, ##__VA_ARGS__)

/* Log at most once per call site (the flag is per expansion). */
#define pr_warn_once(fmt, ...)                                                          \
    do {                                                                                \
        static int once_;                                                               \
        if (!__atomic_exchange_n(&once_, 1, __ATOMIC_RELAXED))                          \
            pr_warn(fmt, ##__VA_ARGS__);                                                \
    } while (0)

#endif
