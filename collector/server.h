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
#include <stdint.h>
#include <sys/types.h>

#ifndef LDPROF_VERSION
#define LDPROF_VERSION "0.1.0"
#endif

#define COLL_MAX_ALLOW_UIDS 64

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
    /* Bounded memory (0 = no limit); what they cut is marked in the dump. */
    size_t max_open_traces;     /* write the least recently active trace early */
    size_t max_spans_per_trace; /* spans beyond it are counted, not kept */
    uint64_t max_trace_age_ms;  /* write a trace this old (first span) as it stands */
    /* Retention of the dump directory (0 = keep everything). */
    size_t max_traces;   /* keep the newest N dumps (by mtime) */
    uint64_t max_age_ms; /* remove dumps last written longer ago */
    /* Peer credentials: uids allowed besides our euid and root. */
    uid_t allow_uid[COLL_MAX_ALLOW_UIDS];
    size_t nallow_uid;
};

/* Set the defaults (idle 1000 ms, journal 64 MiB, 100,000 pending spans,
 * 4 MiB receive buffer, 10,000 open traces, 20,000 spans per trace, trace
 * age 10 min, no retention); paths are left NULL. */
void coll_opts_defaults(struct coll_opts *o);

/* Run the daemon until SIGTERM/SIGINT.  Returns the process exit status:
 * 0 after a clean stop with every trace written, 1 when it could not start
 * or some trace could not be written (its spans stay in the journal). */
int coll_server_run(const struct coll_opts *o);

#endif
