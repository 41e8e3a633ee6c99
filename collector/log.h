/*
 * collector/log.h - key=value log lines for ldprof-collectord.
 *
 *   ts=2024-01-02T03:04:05.123Z level=info pid=42 event=listening socket=/run/...
 *
 * One write(2) per line (whole lines even with several writers on an
 * O_APPEND file).  The file is reopened by coll_log_reopen() (SIGHUP, for
 * logrotate).  Single-threaded use only: coll_logq() returns rotating static
 * buffers.  Not async-signal-safe (the daemon never logs from a handler: it
 * has none, signals arrive through a signalfd).
 */
#ifndef LDPROF_COLLECTOR_LOG_H
#define LDPROF_COLLECTOR_LOG_H

enum coll_log_level { COLL_LOG_ERROR, COLL_LOG_WARN, COLL_LOG_INFO, COLL_LOG_DEBUG };

/* Log to `path` (appending, created 0600) or to stderr when NULL.  Returns 0
 * or -1 (errno set; logging then goes to stderr). */
int coll_log_open(const char *path);

/* Reopen the log file (no-op for stderr).  0 or -1. */
int coll_log_reopen(void);

void coll_log_close(void);

/* Lines above this level are dropped (default COLL_LOG_INFO). */
void coll_log_set_level(int level);

/* Write one line: the ts/level/pid prefix, then `fmt` (the caller's
 * "event=... key=value" text).  Never fails visibly. */
void coll_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Quote a value for a key=value line when needed: returned as is when it is
 * non-empty and holds no space, '"', '=', '\\' or control byte; otherwise in
 * double quotes with \" \\ \n \t \xNN escapes.  Long values are cut at 400
 * bytes.  Returns one of 8 rotating static buffers: valid until the 8th next
 * call. */
const char *coll_logq(const char *s);

#endif
