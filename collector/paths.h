/*
 * collector/paths.h - default locations and private-directory checks,
 * shared by ldprof-collectord and the ldprof CLI (so both agree).
 *
 * Socket:  $LDPROF_COLLECTOR, else $XDG_RUNTIME_DIR/ldprof/collector.sock,
 *          else /tmp/ldprof-$UID/collector.sock.
 * Traces:  $LDPROF_TRACE_DIR, else $XDG_STATE_HOME/ldprof/traces, else
 *          $HOME/.local/state/ldprof/traces, else /tmp/ldprof-$UID/traces.
 * Stats:   the socket path with ".sock" replaced by ".stats.json"
 *          (".stats.json" appended when it does not end in ".sock").
 *
 * Environment values that are empty or not absolute paths are ignored
 * (XDG base directory rules).
 */
#ifndef LDPROF_COLLECTOR_PATHS_H
#define LDPROF_COLLECTOR_PATHS_H

#include <stddef.h>
#include <sys/types.h>

/* Fill `out` with the default; 0, or -1 when it does not fit. */
int coll_default_socket(char *out, size_t n);
int coll_default_dir(char *out, size_t n);
int coll_stats_path(const char *socket_path, char *out, size_t n);

/* "/tmp/ldprof-<uid>" */
void coll_tmp_base(char *out, size_t n);

/* mkdir -p: missing components are created with `mode`.  0 or -1 (errno). */
int coll_mkdirs(const char *path, mode_t mode);

/* Create `path` (mkdir -p, 0700) and check it: a directory owned by our
 * effective uid; strict: not group- or world-writable; otherwise: not
 * world-writable.  A path under /tmp/ldprof-<uid>/ has that base checked
 * strictly too.  Returns 0, or -1 with a one-line reason in `err`. */
int coll_prepare_dir(const char *path, int strict, char *err, size_t errlen);

/* Does a datagram socket answer at `path`?  1: yes (something is bound);
 * 0: no (absent, or a stale socket file: ECONNREFUSED); -1: cannot tell
 * (errno set, e.g. EACCES, ENOTSOCK). */
int coll_socket_probe(const char *path);

/* Copy the directory part of `path` ("." when none). */
void coll_dirname(const char *path, char *out, size_t n);

#endif
