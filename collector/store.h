/*
 * collector/store.h - the directory store: per-trace dumps written
 * atomically, and the append-only journal of received spans.
 *
 *   <dir>/<base_id>.json     the trace, `osprofiler trace show --json` bytes
 *   <dir>/journal.jsonl      every accepted datagram as received, and lines
 *                            of one span each (trace.h format) written by
 *                            compaction
 *   <dir>/.<name>.tmp.<pid>  transient, during an atomic write
 *
 * Durability contract (docs/formats.md): a span is appended to the journal
 * (one write(2) per datagram) before it is used for anything else, so a
 * crash of the collector process (kill -9) loses nothing it has read; the
 * journal is fdatasync()ed on the daemon's tick (power loss may cost the
 * last tick).  A trace's first dump is written to an unnamed file in the
 * directory (O_TMPFILE) and then linked under its name, which fails if a
 * dump exists (coll_store_create_dump); a dump that exists is rewritten to
 * a temporary file in the same directory and renamed over the old one
 * (atomic either way: readers see no file, the old or the new file, never
 * a part of one).  The journal drops spans (truncate/compact) only after
 * coll_store_sync_dir(), so every span is always durable in one of the two:
 *   sync_each = 1 (default, --fsync each): every dump is fsync()ed before its
 *       link or rename and sync_dir is fsync(dir);
 *   sync_each = 0 (--fsync batch): only rewrites of an existing dump are
 *       fsync()ed (their older spans are no longer in the journal); a first
 *       dump is not, and sync_dir is syncfs(), one call before the journal
 *       is trimmed.  A first dump torn by a power loss is rebuilt from the
 *       journal at the next start.  Several times faster on a busy disk.
 *
 * Not thread-safe; not async-signal-safe.
 */
#ifndef LDPROF_COLLECTOR_STORE_H
#define LDPROF_COLLECTOR_STORE_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "json.h"

#define COLL_JOURNAL_NAME "journal.jsonl"

struct coll_store {
    char dir[4096];
    int dirfd;
    int jfd;       /* journal, O_APPEND */
    off_t jsize;   /* bytes in the journal */
    int jdirty;    /* written since the last fdatasync */
    int sync_each; /* 1: fsync every dump; 0: batch (see above) */
    long pid;      /* ours, in temporary file names */
    /* How coll_store_create_dump() links its unnamed file: 0 not tried yet,
     * 1 linkat(fd, "", AT_EMPTY_PATH) (older kernels refuse it
     * without CAP_DAC_READ_SEARCH), 2 linkat of /proc/self/fd/N, -1 not available here (no O_TMPFILE on this file
     * system, or neither link works): the caller writes dumps the other
     * way. */
    int link_mode;
};

/* Open (creating the journal if needed) the store in the existing directory
 * `dir`.  Returns 0 or -1 with `err` filled. */
int coll_store_open(struct coll_store *s, const char *dir, char *err, size_t errlen);
void coll_store_close(struct coll_store *s);

/* Append `len` bytes (whole lines) with one write(2).  Returns 0 or -1
 * (errno set); a short write is completed, or cut off again on error so the
 * journal always ends with a whole line. */
int coll_store_journal_append(struct coll_store *s, const char *data, size_t len);

/* Journal entries (docs/formats.md §4).  A line (JSON, ends in "\n"), or
 * a datagram as received, framed as
 *     "\x1eLDG"  u32 little-endian length N  N bytes  "\n"
 * (0x1e never starts a line).  The daemon appends each accepted datagram
 * so; compaction writes lines. */
#define COLL_JOURNAL_DGRAM_MAGIC "\x1eLDG"
enum coll_jentry {
    COLL_JENT_LINE,  /* a line, without its "\n" (the last may be torn) */
    COLL_JENT_DGRAM, /* a whole datagram (the payload of a framed entry) */
    COLL_JENT_TORN,  /* a framed entry cut short or damaged (its bytes) */
};

/* Append one datagram entry (`len` bytes of datagram) with one writev(2).
 * Returns 0 or -1 as coll_store_journal_append(). */
int coll_store_journal_append_dgram(struct coll_store *s, const void *dgram, size_t len);

/* Call `cb` with every entry of the journal in order.  A damaged framed
 * entry is passed as COLL_JENT_TORN and reading goes on after the next
 * "\n" (a crash leaves damage only at the end).  Returns the number of
 * entries, or -1 on a read error. */
long coll_store_journal_scan(struct coll_store *s,
                             void (*cb)(void *arg, int kind, const char *p, size_t len),
                             void *arg);

/* fdatasync the journal if it was written since the last call. */
int coll_store_journal_sync(struct coll_store *s);

/* Call `cb` with each line of the journal (without "\n"); a torn last line
 * (no "\n") is passed too, the callback decides.  Datagram entries are
 * skipped (coll_store_journal_scan() gives them).  Returns the number of
 * lines, or -1 on a read error. */
long coll_store_journal_read(struct coll_store *s,
                             void (*cb)(void *arg, const char *line, size_t len),
                             void *arg);

/* Empty the journal (ftruncate + fdatasync).  Only when every span it holds
 * is in a dump made durable by coll_store_sync_dir().  0 or -1. */
int coll_store_journal_truncate(struct coll_store *s);

/* Replace the journal by `data` (whole lines, may be empty): temporary file,
 * fsync, rename, fsync of the directory, reopen.  The caller must have made
 * every span that is not in `data` durable in a dump first
 * (coll_store_sync_dir() after the dumps).  -1 when the directory's fsync
 * failed too: the new journal is open and appended to all the same. */
int coll_store_journal_replace(struct coll_store *s, const char *data, size_t len);

/* The same in steps, for a compaction whose write and fsync run on another
 * thread while datagrams go on being appended to the journal:
 *   coll_store_compact_begin()  notes where the journal ends now;
 *   coll_store_compact_write()  (any one thread: it touches only *c)
 *       writes the new journal's `data` (whole entries) to its temporary
 *       file and fsyncs it;
 *   coll_store_compact_commit() after the write, appends to it what the
 *       journal received since the begin, fdatasyncs that, renames it over
 *       the journal, fsyncs the directory and reopens the journal; the
 *       old journal's descriptor is left in c->oldfd (>= 0) for the caller
 *       to close: that last close frees the replaced file's blocks, which
 *       takes milliseconds for a large one, so it may be done elsewhere;
 *   coll_store_compact_abort()  instead removes the temporary file.
 * The journal keeps every entry until the rename, and the new one has
 * them all from then on, so a crash at any point loses nothing (a kill -9
 * before the rename leaves the temporary file, removed at the next start).
 * `data` must hold what the journal held at the begin that is not in a
 * dump made durable before the commit, as for coll_store_journal_replace().
 * write and commit return 0 or -1 (errno set; after a failed commit the
 * journal is the old one, or the new one when only the directory's fsync
 * or the reopening failed). */
struct coll_store_compact {
    int dirfd, fd, oldfd;
    off_t from; /* the journal's size at the begin */
    char tmp[NAME_MAX + 64];
};
void coll_store_compact_begin(struct coll_store *s, struct coll_store_compact *c);
int coll_store_compact_write(struct coll_store_compact *c, const char *data, size_t len);
int coll_store_compact_commit(struct coll_store *s, struct coll_store_compact *c);
void coll_store_compact_abort(struct coll_store_compact *c);

/* Read <dir>/<base_id>.json into `out`.  Returns 0, 1 when there is no such
 * file, -1 on another error (errno set). */
int coll_store_read_dump(struct coll_store *s, const char *base_id, struct coll_buf *out);

/* Write <dir>/<base_id>.json atomically (tmp, fsync when sync_each or
 * `rewrite`, rename).  The rename is made durable by the next
 * coll_store_sync_dir().  0 or -1. */
int coll_store_write_dump(struct coll_store *s, const char *base_id, const char *data,
                          size_t len, int rewrite);

/* Write the first dump of a trace, <dir>/<base_id>.json: an unnamed file
 * in the directory (O_TMPFILE), written, fsync()ed when sync_each, then
 * linked under its name - which never replaces a file: linkat fails with
 * EEXIST when a dump exists.  No name appears before the whole file is
 * there, and a crash mid-write leaves nothing behind.  Fewer directory
 * operations than coll_store_read_dump() + coll_store_write_dump() (one
 * name lookup and one entry added, against four lookups, two entries
 * added and one removed).  The link is made durable by the next
 * coll_store_sync_dir().  Returns 0 (written), 1 (a dump exists: nothing
 * written; read, merge and coll_store_write_dump() it), or -1 (errno set)
 * when this way is not available here (link_mode -1) or failed: nothing
 * was written, and the caller writes the dump the other way, which
 * reports its own errors. */
int coll_store_create_dump(struct coll_store *s, const char *base_id, const char *data,
                           size_t len);

/* Make the dumps written so far durable: fsync(dir) when sync_each, else
 * syncfs().  0 or -1. */
int coll_store_sync_dir(struct coll_store *s);

/* The temporary file of an atomic write of `name` by process `pid`,
 * ".<name>.tmp.<pid>", into `out` (`size` bytes).  0, or -1 with errno
 * ENAMETOOLONG. */
int coll_store_tmp_name(char *out, size_t size, const char *name, long pid);

/* The pid in the name of a temporary file of a dump or of the journal, as
 * a writer killed mid-write leaves it (".<id>.json.tmp.<pid>" or
 * ".journal.jsonl.tmp.<pid>", the pid at most 9 digits), else 0. */
long coll_store_tmp_pid(const char *name);

/* Write `path` atomically: "<dir>/.<base>.tmp.<pid>" then rename; fsync
 * the file when do_fsync.  For the stats and ready files.  0 or -1. */
int coll_write_file_atomic(const char *path, const char *data, size_t len, int do_fsync);

/* Read a whole file into `out` (appended).  0, or -1 with errno set. */
int coll_read_file(const char *path, struct coll_buf *out);

#endif
