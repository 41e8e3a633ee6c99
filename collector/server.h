/*
 * collector/server.h - the ldprof-collectord event loop.
 *
 * One thread: poll(2) over the datagram socket, a signalfd (SIGTERM,
 * SIGINT, SIGHUP; no signal handlers run any code) and a timerfd (the tick
 * that flushes idle traces, syncs the journal and writes the stats).
 */
#ifndef LDPROF_COLLECTOR_SERVER_H
#define LDPROF_COLLECTOR_SERVER_H

#include <stddef.h>

#ifndef LDPROF_VERSION
#define LDPROF_VERSION "0.1.0"
#endif

struct coll_opts {
    const char *socket_path; /* resolved, never NULL */
    const char *dir;         /* resolved, never NULL */
    const char *log_path;    /* NULL: stderr */
    const char *ready_file;  /* NULL: none */
    const char *stats_file;  /* NULL: coll_stats_path(socket_path) */
    unsigned idle_ms;        /* flush a trace this long after its last span */
    size_t journal_max;      /* compact the journal past this many bytes */
    size_t max_pending;      /* spans held in memory before a forced flush */
    int rcvbuf;              /* SO_RCVBUF wish, bytes */
    int fsync_batch;         /* --fsync batch (store.h), default 0: each */
    const char *redis_uri;   /* --redis redis://HOST:PORT[/DB], NULL: none */
};

/* Set the defaults (idle 1000 ms, journal 64 MiB, 100,000 pending spans,
 * 4 MiB receive buffer); paths are left NULL. */
void coll_opts_defaults(struct coll_opts *o);

/* Run the daemon until SIGTERM/SIGINT.  Returns the process exit status:
 * 0 after a clean stop with every trace written, 1 when it could not start
 * or some trace could not be written (its spans stay in the journal). */
int coll_server_run(const struct coll_opts *o);

#endif
