/*
 * collector/log.c - key=value log lines (see log.h).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static char *log_path;
static int log_level = COLL_LOG_INFO;

static int open_path(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

int coll_log_open(const char *path)
{
    coll_log_close();
    if (!path)
        return 0;
    int fd = open_path(path);
    if (fd < 0)
        return -1;
    log_path = strdup(path);
    log_fd = fd;
    return 0;
}

int coll_log_reopen(void)
{
    if (!log_path)
        return 0;
    int fd = open_path(log_path);
    if (fd < 0)
        return -1;
    if (log_fd != 2)
        close(log_fd);
    log_fd = fd;
    return 0;
}

void coll_log_close(void)
{
    if (log_fd != 2)
        close(log_fd);
    log_fd = 2;
    free(log_path);
    log_path = NULL;
}

void coll_log_set_level(int level)
{
    log_level = level;
}

void coll_log(int level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (level > log_level)
        return;
    int saved = errno;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s pid=%ld ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, names[level < 0 ? 0 : level > 3 ? 3 : level],
                     (long)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(log_fd, line, len);
    (void)w;
    errno = saved;
}

const char *coll_logq(const char *s)
{
    static char bufs[8][512];
    static unsigned next;
    char *b = bufs[next++ % 8];
    if (!s)
        s = "";
    int plain = *s != '\0';
    for (const unsigned char *p = (const unsigned char *)s; *p && plain; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            plain = 0;
    if (plain && strlen(s) <= 400) {
        snprintf(b, 512, "%s", s);
        return b;
    }
    size_t o = 0;
    b[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p && o < 400; p++) {
        if (*p == '"' || *p == '\\') {
            b[o++] = '\\';
            b[o++] = (char)*p;
        } else if (*p == '\n') {
            b[o++] = '\\';
            b[o++] = 'n';
        } else if (*p == '\t') {
            b[o++] = '\\';
            b[o++] = 't';
        } else if (*p < ' ' || *p == 0x7f) {
            o += (size_t)snprintf(b + o, 8, "\\x%02x", *p);
        } else {
            b[o++] = (char)*p;
        }
    }
    b[o++] = '"';
    b[o] = '\0';
    return b;
}
