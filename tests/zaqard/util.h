/* util.h - small helpers shared by zaqard's files: ids, clocks, logging. */
#ifndef ZAQARD_UTIL_H
#define ZAQARD_UTIL_H

#include <stddef.h>

/* Random 32-hex-char id (UUID4 without hyphens) into out[33]. Thread-safe. */
void zq_new_id(char out[33]);

/* Wall clock in epoch milliseconds. */
long long zq_now_ms(void);

typedef enum { ZQ_LOG_DEBUG, ZQ_LOG_INFO, ZQ_LOG_WARN, ZQ_LOG_ERROR } zq_log_level;
extern zq_log_level zq_log_min;

/* One structured line on stderr:
 *   ts=2026-11-24T23:59:59.123Z level=info msg="..." k=v ...
 * `fmt` formats the key=value part after msg (may be NULL). */
void zq_log(zq_log_level lvl, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
