/*
 * preload/log.c - see log.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "real.h"
#include "tls.h"

int ldprof_log_level = LDPROF_LOG_WARN;

void ldprof_log(int level, const char *module, const char *func, const char *file, int line,
                const char *fmt, ...)
{
    char buf[1024];
    int saved = errno;
    size_t n;
    int r;
    va_list ap;

    r = snprintf(buf, sizeof(buf), "ldprof[%d/%d]: %s: ", (int)syscall(SYS_getpid),
                 (int)ldprof_tls_tid(), module);
    n = r > 0 ? (size_t)r : 0;
    if (n < sizeof(buf)) {
        va_start(ap, fmt);
        r = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
        va_end(ap);
        if (r > 0)
            n += (size_t)r;
    }
    if (ldprof_log_level >= LDPROF_LOG_DEBUG && n < sizeof(buf)) {
        const char *base = strrchr(file, '/');
        r = snprintf(buf + n, sizeof(buf) - n, " (%s() at %s:%d)", func, base ? base + 1 : file,
                     line);
        if (r > 0)
            n += (size_t)r;
    }
    (void)level;
    if (n > sizeof(buf) - 1)
        n = sizeof(buf) - 1; /* truncated: keep room for the newline */
    buf[n++] = '\n';
    (void)ldprof_raw_write(STDERR_FILENO, buf, n);
    errno = saved;
}
