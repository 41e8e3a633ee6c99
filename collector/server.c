/*
 * collector/server.c - ldprof-collectord: ingest, assembly, flushing,
 * journal, stats (see server.h and docs/formats.md).
 *
 * Flow of one datagram: recv -> coll_decode (whole datagram or nothing) ->
 * ONE journal write of the datagram as received -> its span records held
 * in their traces in memory (ingest.h; the OSProfiler events are built
 * only when a trace is written).  The tick flushes a trace that received
 * nothing for idle_ms: it is merged with its existing dump (late spans),
 * rendered, and written atomically; then it leaves memory.  When memory
 * holds no trace any more the journal is emptied (after the directory
 * fsync), when it grows past journal_max it is compacted to the spans still
 * in memory.
 *
 * Before decoding, the sender's kernel-reported uid (SCM_CREDENTIALS) must
 * be ours, root's or an --allow-uid one (peer_allowed).  Memory is bounded
 * by max_open_traces (the least recently active trace, head of the LRU
 * list, is written early), max_spans_per_trace (trace.c counts the rest)
 * and max_trace_age_ms (flush_traces writes an old trace as it stands);
 * what they cut is marked in the dump (trace.h).  The tick also runs one
 * bounded step of the dump directory's retention (retention_step).
 */
#include "server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "decode.h"
#include "events.h"
#include "ingest.h"
#include "json.h"
#include "log.h"
#include "paths.h"
#include "evtext.h"
#include "redis_store.h"
#include "render.h"
#include "store.h"
#include "trace.h"

#define MAX_SENDERS 256
#define RECV_BATCH 256
#define REJECT_LOG_PER_MIN 10
#define STATS_LOG_MS 60000
#define STATS_FILE_MS 1000
#define DRAIN_MAX 100000
#define FLUSH_BUDGET_MS 20
#define LIMIT_LOG_PER_MIN 10
/* rejected_by[] index past the decoder's reasons: a uid not allowed */
#define REJ_PEER_UID COLL_DEC__COUNT
/* retention: a directory scan reads at most RET_SCAN_BATCH entries per
 * tick, a prune pass removes at most RET_PRUNE_BATCH dumps per tick */
#define RET_INTERVAL_MS 1000
#define RET_SCAN_BATCH 1024
#define RET_PRUNE_BATCH 128

struct sender {
    uint32_t pid;      /* the kernel's (SCM_CREDENTIALS), else the header's */
    uint32_t hdr_pid;  /* the header's pid of the last datagram */
    uint64_t dgrams, spans, bytes, dropped, last_ms, rejected, pid_mismatches;
    char service[64], exe[256];
};

struct counters {
    uint64_t dgrams, accepted, rejected, spans, bytes, stats_msgs;
    uint64_t rejected_by[COLL_DEC__COUNT + 1]; /* + REJ_PEER_UID */
    uint64_t written, rewritten, unchanged, write_errors, report_errors;
    uint64_t journal_errors, replayed_spans, journal_bad_lines, forced_flushes;
    uint64_t no_creds, pid_mismatches;
    uint64_t spans_cut, traces_cut, early_open, early_age, early_errors;
};

struct ret_ent {
    int64_t mtime_ns;
    char id[37];
};

/* Retention state: wait -> scan (incremental readdir) -> prune (oldest
 * first, bounded per tick) -> wait. */
struct retention {
    int phase; /* 0 wait, 1 scan, 2 prune */
    DIR *dp;
    struct ret_ent *v;
    size_t n, cap, pos, excess;
    int64_t cutoff_ns;
    uint64_t next_ms, scan_start_ms;
    uint64_t pruned_count, pruned_age, skipped_open, errors, scans, dumps;
    uint64_t cyc_count, cyc_age, cyc_open;
};

/* A slot of the trace table: h == 0 when empty; id: the raw base_id when
 * h's low bit is set (see key_of_text). */
struct tslot {
    uint64_t h;
    struct coll_trace *t;
    uint8_t id[16];
};

struct srv {
    const struct coll_opts *o;
    char stats_path[PATH_MAX];
    char host[256];
    int sock, sigfd, tfd, lockfd;
    dev_t sock_dev;
    ino_t sock_ino;
    struct coll_store store;
    /* open traces by base_id: open addressing, linear probing (table_*) */
    struct tslot *ts;
    size_t ns, ntraces, pending_spans;
    uint64_t pending_jbytes; /* journal bytes of the spans in memory */
    struct counters c;
    uint64_t dropped_gone; /* dropped of senders evicted from the table */
    struct sender senders[MAX_SENDERS];
    size_t nsenders;
    uint64_t started_ms, last_stats_log_ms, last_stats_file_ms, change_gen, logged_gen,
        filed_gen, reject_window_ms;
    unsigned reject_logged, reject_suppressed;
    char started_iso[40];
    int failures;   /* traces that could not be written at the last flush */
    int flush_more; /* the last budgeted flush pass left idle traces */
    size_t flush_pos; /* slot where the next budgeted pass resumes */
    size_t flush_done; /* slots walked in the current cycle */
    int min_ok;        /* min_last, min_first hold (see flush_traces) */
    uint64_t min_last, min_first;
    int use_redis;  /* --redis given */
    struct coll_redis redis;
    /* open traces, least recently active first (--max-open-traces) */
    struct coll_trace *lru_head, *lru_tail;
    /* peer credentials of the datagram being handled */
    int cur_cred;
    uint32_t cur_uid, cur_pid;
    uint32_t euid; /* ours, allowed to send (as is root) */
    unsigned limit_logged, limit_suppressed;
    struct retention ret;
    /* --fsync batch: the syncfs() before a journal trim runs on a thread of
     * its own (see flush_traces); sync_efd is signalled when it is done. */
    int sync_efd;  /* eventfd, -1: syncfs in line */
    int sync_busy; /* a sync thread is running */
    pthread_t sync_th;
    int sync_rc, sync_err; /* its result, read after the join */
    /* The compaction that thread writes after its sync (cj_on): the new
     * journal's entries as they were when it started, and per trace its
     * bytes in them and its jbytes then (see sync_start). */
    int cj_on;
    int cj_rc, cj_err; /* the write's result, read after the join */
    struct coll_store_compact cj;
    struct coll_buf cj_buf;
    struct cj_held {
        struct coll_trace *t;
        uint64_t sz, jb0;
    } *cj_v;
    size_t cj_n;
    uint64_t cj_ms;       /* time spent on it by this thread so far */
    uint64_t cj_write_ms; /* by the sync thread, writing and fsyncing it */
    int old_jfd;          /* the journal it replaced, closed by the next sync */
    int replaying;        /* flushing the traces of a journal replay */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void iso_now(char out[40])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char t[32];
    coll_ts_fmt((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec, t);
    snprintf(out, 40, "%sZ", t);
}

/* ------------------------------------------------------------ trace table */

/* The table is keyed by the raw 16-byte base_id of the wire records: a
 * span's lookup hashes and compares those 16 bytes in the slot, without
 * formatting the id or touching a trace that is not the one sought.  A
 * base_id known only as text (journal lines, dump names) is keyed by its
 * raw bytes when it is the canonical form coll_uuid_fmt() gives (so both
 * find the same trace), else by the text itself (a hash with the low bit
 * clear; compared with strcmp on the trace's base_id, as before). */
static uint64_t hash_raw(const uint8_t id[16])
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    uint64_t h = (a ^ (b << 29 | b >> 35)) * 0x9e3779b97f4a7c15ull;
    return (h ^ h >> 32) | 1;
}

static uint64_t hash_text(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = (h ^ h >> 32) & ~1ull;
    return h ? h : 2;
}

/* The key of a base_id given as text: 1 and id/hash of its raw bytes when
 * it is canonical, else 0 and the text's hash. */
static int key_of_text(const char *base_id, uint8_t id[16], uint64_t *h)
{
    char again[37];
    if (coll_uuid_parse(base_id, id) == 0) {
        coll_uuid_fmt(id, again);
        if (strcmp(again, base_id) == 0) {
            *h = hash_raw(id);
            return 1;
        }
    }
    memset(id, 0, 16);
    *h = hash_text(base_id);
    return 0;
}

/* The slot where the probe for hash h starts (the low bit is the kind of
 * key, not hashed). */
static size_t slot_home(uint64_t h, size_t mask)
{
    return (size_t)(h >> 1) & mask;
}

/* Slot of the trace with key (h, id) (raw when h's low bit is set, else
 * `text`), or of the empty slot where it would go.  Ends: the table is
 * never full (at most half used). */
static size_t slot_find(const struct srv *s, uint64_t h, const uint8_t *id, const char *text)
{
    size_t m = s->ns - 1, i = slot_home(h, m);
    for (;; i = (i + 1) & m) {
        const struct tslot *e = &s->ts[i];
        if (!e->h)
            return i;
        if (e->h == h &&
            ((h & 1) ? memcmp(e->id, id, 16) == 0 : strcmp(e->t->base_id, text) == 0))
            return i;
    }
}

static int table_grow(struct srv *s)
{
    size_t ns = s->ns ? s->ns * 2 : 2048;
    struct tslot *ts = calloc(ns, sizeof *ts);
    if (!ts)
        return -1;
    for (size_t i = 0; i < s->ns; i++) {
        if (!s->ts[i].h)
            continue;
        size_t j = slot_home(s->ts[i].h, ns - 1);
        while (ts[j].h)
            j = (j + 1) & (ns - 1);
        ts[j] = s->ts[i];
    }
    free(s->ts);
    s->ts = ts;
    s->ns = ns;
    return 0;
}

static void lru_unlink(struct srv *s, struct coll_trace *t)
{
    if (t->lru_prev)
        t->lru_prev->lru_next = t->lru_next;
    else if (s->lru_head == t)
        s->lru_head = t->lru_next;
    if (t->lru_next)
        t->lru_next->lru_prev = t->lru_prev;
    else if (s->lru_tail == t)
        s->lru_tail = t->lru_prev;
    t->lru_prev = t->lru_next = NULL;
}

/* Mark `t` as the most recently active trace. */
static void lru_touch(struct srv *s, struct coll_trace *t)
{
    if (s->lru_tail == t)
        return;
    lru_unlink(s, t);
    t->lru_prev = s->lru_tail;
    if (s->lru_tail)
        s->lru_tail->lru_next = t;
    else
        s->lru_head = t;
    s->lru_tail = t;
}

/* The trace of key (h, id, text) (see slot_find), NULL when not open. */
static struct coll_trace *table_find(const struct srv *s, uint64_t h, const uint8_t *id,
                                     const char *text)
{
    if (!s->ns)
        return NULL;
    return s->ts[slot_find(s, h, id, text)].t;
}

/* A new trace `base_id` (text) with key (h, id), which is not open. */
static struct coll_trace *table_add(struct srv *s, uint64_t h, const uint8_t *id,
                                    const char *base_id)
{
    if ((s->ntraces + 1) * 2 > s->ns && table_grow(s) < 0)
        return NULL;
    struct coll_trace *t = coll_trace_new(base_id);
    if (!t)
        return NULL;
    struct tslot *e = &s->ts[slot_find(s, h, id, base_id)];
    e->h = h;
    e->t = t;
    memcpy(e->id, id, 16);
    s->ntraces++;
    t->max_spans = s->o->max_spans_per_trace;
    t->first_ms = t->last_ms = now_ms();
    lru_touch(s, t);
    return t;
}

/* The open trace `base_id` (text), NULL when there is none. */
static struct coll_trace *table_get(struct srv *s, const char *base_id)
{
    uint8_t id[16];
    uint64_t h;
    key_of_text(base_id, id, &h);
    return table_find(s, h, id, base_id);
}

/* Empty slot i, moving up the entries of its cluster that may take it
 * (linear probing without tombstones).  Entries only move to lower slots
 * of their cluster (cyclically). */
static void slot_clear(struct srv *s, size_t i)
{
    size_t m = s->ns - 1;
    for (size_t j = (i + 1) & m; s->ts[j].h; j = (j + 1) & m) {
        size_t home = slot_home(s->ts[j].h, m);
        if (((j - home) & m) >= ((j - i) & m)) {
            s->ts[i] = s->ts[j];
            i = j;
        }
    }
    memset(&s->ts[i], 0, sizeof s->ts[i]);
}

static void table_remove(struct srv *s, struct coll_trace *t)
{
    uint8_t id[16];
    uint64_t h;
    key_of_text(t->base_id, id, &h);
    size_t i = slot_find(s, h, id, t->base_id);
    if (s->ts[i].t == t)
        slot_clear(s, i);
    lru_unlink(s, t);
    s->ntraces--;
    size_t nsp = coll_trace_nspans(t); /* held records are counted too */
    s->pending_spans -= nsp < s->pending_spans ? nsp : s->pending_spans;
    s->pending_jbytes -= t->jbytes < s->pending_jbytes ? t->jbytes : s->pending_jbytes;
    coll_trace_free(t);
}

/* ------------------------------------------------------------ senders */

static struct sender *sender_get(struct srv *s, uint32_t pid, uint64_t now)
{
    for (size_t i = 0; i < s->nsenders; i++)
        if (s->senders[i].pid == pid)
            return &s->senders[i];
    struct sender *x;
    if (s->nsenders < MAX_SENDERS) {
        x = &s->senders[s->nsenders++];
    } else {
        x = &s->senders[0];
        for (size_t i = 1; i < s->nsenders; i++)
            if (s->senders[i].last_ms < x->last_ms)
                x = &s->senders[i];
        s->dropped_gone += x->dropped;
    }
    memset(x, 0, sizeof *x);
    x->pid = pid;
    x->last_ms = now;
    return x;
}

/* The sender of the datagram being handled: keyed by the kernel's pid when
 * the datagram carried credentials (it always does: SO_PASSCRED), else by
 * the pid its header claims.  A header pid that differs is counted. */
static struct sender *sender_for(struct srv *s, uint32_t hdr_pid, uint64_t now)
{
    uint32_t pid = s->cur_cred ? s->cur_pid : hdr_pid;
    struct sender *x = sender_get(s, pid, now);
    x->hdr_pid = hdr_pid;
    if (s->cur_cred && hdr_pid != s->cur_pid) {
        x->pid_mismatches++;
        s->c.pid_mismatches++;
    }
    return x;
}

/* Rate limit (LIMIT_LOG_PER_MIN lines a minute) of the limit events. */
static int limit_log_ok(struct srv *s)
{
    if (s->limit_logged < LIMIT_LOG_PER_MIN) {
        s->limit_logged++;
        return 1;
    }
    s->limit_suppressed++;
    return 0;
}

static uint64_t dropped_total(const struct srv *s)
{
    uint64_t d = s->dropped_gone;
    for (size_t i = 0; i < s->nsenders; i++)
        d += s->senders[i].dropped;
    return d;
}

static void copy_str(char *dst, size_t n, const struct coll_str *v)
{
    if (!v->p)
        return;
    size_t len = v->len < n - 1 ? v->len : n - 1;
    memcpy(dst, v->p, len);
    dst[len] = '\0';
    for (size_t i = 0; i < len; i++) /* only for stats/logs: keep them tidy */
        if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
            dst[i] = '?';
}

/* ------------------------------------------------------------ flushing */

/* Write one trace's dump.  Returns 0 (written or already current) or -1
 * (kept in memory for a retry; its spans stay in the journal). */
static int flush_trace(struct srv *s, struct coll_trace *t)
{
    struct coll_buf old, out;
    struct coll_trace *merged = NULL, *use = t;
    int rewrite = 0, rc = -1, rendered = 0; /* rendered: out holds t's dump */
    coll_buf_init(&old);
    coll_buf_init(&out);

    /* The normal case, a trace written for the first time, is rendered
     * and created without looking for its dump first: creating fails when
     * a dump exists (a late span, a restart), and the trace then takes the
     * way below (read, merge, rewrite), as do journal replays, where most
     * dumps exist. */
    if (!s->replaying && s->store.link_mode >= 0) {
        struct coll_report_ctx ctx;
        if (coll_trace_render(t, &out, &ctx) == 0) {
            int c = coll_store_create_dump(&s->store, t->base_id, out.p, out.len);
            if (c == 0) {
                s->c.written++;
                coll_log(COLL_LOG_DEBUG, "event=dump base_id=%s spans=%zu bytes=%zu rewrite=0",
                         t->base_id, coll_trace_nspans(t), out.len);
                rc = 0;
                goto out;
            }
            rendered = 1;
        } else {
            coll_buf_free(&out); /* the render below fails again, and reports */
            coll_buf_init(&out);
        }
    }

    int r = coll_store_read_dump(&s->store, t->base_id, &old);
    if (r == 0) {
        char err[160];
        merged = coll_trace_new(t->base_id);
        if (!merged)
            goto out;
        if (coll_trace_load_dump(merged, old.p ? old.p : "", old.len, err, sizeof err) < 0) {
            coll_log(COLL_LOG_WARN, "event=dump_unreadable base_id=%s error=%s action=overwrite",
                     t->base_id, coll_logq(err));
            coll_trace_free(merged);
            merged = NULL;
        } else {
            merged->max_spans = s->o->max_spans_per_trace;
            uint64_t cut0 = merged->cut_spans + t->cut_spans;
            int changed = coll_trace_merge(merged, t);
            if (changed < 0)
                goto out;
            if (merged->cut_spans > cut0) { /* the dump already holds the maximum */
                s->c.spans_cut += merged->cut_spans - cut0;
                s->c.traces_cut++;
                if (limit_log_ok(s))
                    coll_log(COLL_LOG_WARN,
                             "event=span_limit base_id=%s spans_dropped=%llu max=%zu where=dump",
                             t->base_id, (unsigned long long)(merged->cut_spans - cut0),
                             s->o->max_spans_per_trace);
                changed++;
            }
            if (changed == 0) {
                s->c.unchanged++;
                rc = 0;
                goto out;
            }
            use = merged;
            rewrite = 1;
        }
    } else if (r < 0) {
        coll_log(COLL_LOG_WARN, "event=dump_read_error base_id=%s error=%s", t->base_id,
                 coll_logq(strerror(errno)));
    }

    if (rendered && use != t) { /* merged with the dump: render that */
        coll_buf_free(&out);
        coll_buf_init(&out);
        rendered = 0;
    }
    struct coll_report_ctx ctx;
    if (!rendered && coll_trace_render(use, &out, &ctx) < 0) {
        /* Bad events (only a hand-edited journal can hold them): retrying
         * cannot help, so the trace is dropped, loudly. */
        s->c.report_errors++;
        coll_log(COLL_LOG_ERROR, "event=report_error base_id=%s error=%s action=dropped",
                 t->base_id, coll_logq(ctx.errstr));
        rc = ctx.err == COLL_REPORT_ENOMEM ? -1 : 0;
        goto out;
    }
    if (coll_store_write_dump(&s->store, t->base_id, out.p, out.len, r == 0) < 0) {
        s->c.write_errors++;
        coll_log(COLL_LOG_ERROR, "event=dump_write_error base_id=%s error=%s", t->base_id,
                 coll_logq(strerror(errno)));
        goto out;
    }
    if (rewrite)
        s->c.rewritten++;
    else
        s->c.written++;
    coll_log(COLL_LOG_DEBUG, "event=dump base_id=%s spans=%zu bytes=%zu rewrite=%d",
             t->base_id, coll_trace_nspans(use), out.len, rewrite);
    rc = 0;
out:
    coll_trace_free(merged);
    coll_buf_free(&old);
    coll_buf_free(&out);
    return rc;
}

/* Rewrite the journal with the spans still in memory.  Only after every
 * flushed dump is durable (caller ran coll_store_sync_dir).
 *
 * Each trace's spans are written as coll_trace_journal_entries() gives
 * them: its held wire records (the usual case) as datagram entries copied
 * from the records, without building their events; spans already realized
 * (merged, re-read from journal lines, past the span limit) as JSON lines.
 * A trace's entries hold only its spans, so its jbytes is exactly their
 * size and pending_jbytes the new journal's. */
static void journal_compact(struct srv *s)
{
    if (s->ntraces == 0) {
        if (s->store.jsize > 0 && coll_store_journal_truncate(&s->store) < 0)
            coll_log(COLL_LOG_ERROR, "event=journal_truncate_error error=%s",
                     coll_logq(strerror(errno)));
        return;
    }
    uint64_t t0 = now_ms();
    struct coll_buf b;
    coll_buf_init(&b);
    uint64_t *sz = malloc(s->ns * sizeof *sz); /* each slot's bytes */
    if (!sz) {
        b.oom = 1;
        goto fail;
    }
    for (size_t i = 0; i < s->ns; i++) {
        size_t at = b.len;
        if (s->ts[i].t && coll_trace_journal_entries(s->ts[i].t, &b) < 0) {
            b.oom = 1;
            goto fail;
        }
        sz[i] = b.len - at;
    }
    if (coll_store_journal_replace(&s->store, b.p ? b.p : "", b.len) < 0)
        goto fail;
    /* The journal now holds exactly the spans in memory: make the byte
     * accounting exact again (the shares of datagrams received for several
     * traces, and of realized duplicates, are gone). */
    s->pending_jbytes = 0;
    for (size_t i = 0; i < s->ns; i++)
        if (s->ts[i].t) {
            s->ts[i].t->jbytes = sz[i];
            s->pending_jbytes += sz[i];
        }
    coll_log(COLL_LOG_INFO, "event=journal_compacted bytes=%zu traces=%zu ms=%llu", b.len,
             s->ntraces, (unsigned long long)(now_ms() - t0));
    free(sz);
    coll_buf_free(&b);
    return;
fail:
    coll_log(COLL_LOG_ERROR, "event=journal_compact_error error=%s",
             coll_logq(b.oom ? "out of memory" : strerror(errno)));
    free(sz);
    coll_buf_free(&b);
}

/* Flush traces idle for idle_ms (all when `all`), then keep the journal
 * small.  Returns the number of traces that failed.
 *
 * Unless `all`, one call spends at most FLUSH_BUDGET_MS writing dumps (each
 * costs an fsync) and sets s->flush_more when idle traces remain: the loop
 * then polls the socket without sleeping and calls again.  The kernel
 * queues few datagrams per unix socket (net.unix.max_dgram_qlen), so a long
 * flush pass must not keep the socket unread.  A pass that runs out of
 * budget resumes at the slot where it stopped (s->flush_pos), and the
 * cycle ends once every slot was walked: a table too large to walk in one
 * budget is walked in several passes, never restarted from the top.
 *
 * A cycle walked in one call leaves the oldest last_ms and first_ms of the
 * traces it kept (s->min_last, s->min_first).  Those times only grow (a
 * trace's are set to now_ms(), and a new trace's are now_ms()), so until
 * they say that some trace may be due, a walk would find none and is
 * skipped: while traces arrive, the tick does not read every open trace. */
static void *sync_main(void *arg)
{
    struct srv *s = arg;
    uint64_t one = 1;

    if (s->old_jfd >= 0) { /* frees the blocks of the journal last replaced */
        close(s->old_jfd);
        s->old_jfd = -1;
    }
    s->sync_rc = coll_store_sync_dir(&s->store);
    s->sync_err = s->sync_rc < 0 ? errno : 0;
    if (s->sync_rc == 0 && s->cj_on) {
        uint64_t t0 = now_ms();
        s->cj_rc = coll_store_compact_write(&s->cj, s->cj_buf.p ? s->cj_buf.p : "",
                                            s->cj_buf.len);
        s->cj_err = s->cj_rc < 0 ? errno : 0;
        s->cj_write_ms = now_ms() - t0;
    }
    while (write(s->sync_efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
    return NULL;
}

static void cj_free(struct srv *s)
{
    coll_buf_free(&s->cj_buf);
    free(s->cj_v);
    s->cj_v = NULL;
    s->cj_n = 0;
    s->cj_on = 0;
}

/* The compaction's snapshot: the entries journal_compact() would write
 * now.  0, or -1 (nothing kept). */
static int cj_snapshot(struct srv *s)
{
    uint64_t t0 = now_ms();
    coll_buf_init(&s->cj_buf);
    s->cj_n = 0;
    s->cj_v = malloc(s->ntraces * sizeof *s->cj_v);
    if (!s->cj_v)
        return -1;
    for (size_t i = 0; i < s->ns; i++) {
        struct coll_trace *t = s->ts[i].t;
        if (!t)
            continue;
        size_t at = s->cj_buf.len;
        if (s->cj_n == s->ntraces || coll_trace_journal_entries(t, &s->cj_buf) < 0) {
            cj_free(s);
            return -1;
        }
        s->cj_v[s->cj_n++] = (struct cj_held){t, s->cj_buf.len - at, t->jbytes};
    }
    coll_store_compact_begin(&s->store, &s->cj);
    s->cj_on = 1;
    s->cj_ms = now_ms() - t0;
    return 0;
}

/* Start the background sync that must precede a journal trim; 0, or -1
 * when no thread could be started (the caller syncs in line).
 *
 * When traces are held, the thread then also writes and fsyncs the
 * compacted journal: their entries as they are now (no trace leaves memory
 * before sync_finish, and what they receive meanwhile is appended to the
 * journal), which sync_finish completes with the journal's entries since
 * then and renames over it (coll_store_compact_*).  Without a snapshot
 * (none held, or no memory for it) sync_finish compacts in line as before. */
static int sync_start(struct srv *s)
{
    if (s->sync_efd < 0)
        return -1;
    if (s->ntraces > 0)
        cj_snapshot(s);
    if (pthread_create(&s->sync_th, NULL, sync_main, s) != 0) {
        if (s->cj_on)
            cj_free(s);
        return -1;
    }
    s->sync_busy = 1;
    return 0;
}

/* Complete the compaction the sync thread wrote: the journal is then the
 * snapshot and what arrived since, and each trace's jbytes its bytes in
 * it. */
static void cj_commit(struct srv *s)
{
    uint64_t t0 = now_ms();
    if (s->cj_rc < 0) {
        coll_store_compact_abort(&s->cj);
        errno = s->cj_err;
    }
    int rc = s->cj_rc < 0 ? -1 : coll_store_compact_commit(&s->store, &s->cj);
    if (s->cj.oldfd >= 0) {
        int e = errno;
        if (s->old_jfd >= 0) /* the sync thread did not run since: now */
            close(s->old_jfd);
        s->old_jfd = s->cj.oldfd;
        errno = e;
    }
    if (rc < 0) {
        coll_log(COLL_LOG_ERROR, "event=journal_compact_error error=%s",
                 coll_logq(strerror(errno)));
        cj_free(s);
        return;
    }
    for (size_t k = 0; k < s->cj_n; k++) {
        struct cj_held *h = &s->cj_v[k];
        h->t->jbytes = h->sz + (h->t->jbytes - h->jb0);
    }
    s->pending_jbytes = 0;
    for (size_t i = 0; i < s->ns; i++)
        if (s->ts[i].t)
            s->pending_jbytes += s->ts[i].t->jbytes;
    coll_log(COLL_LOG_INFO,
             "event=journal_compacted bytes=%lld traces=%zu ms=%llu tail_bytes=%lld "
             "write_ms=%llu",
             (long long)s->store.jsize, s->cj_n, (unsigned long long)(s->cj_ms + now_ms() - t0),
             (long long)s->store.jsize - (long long)s->cj_buf.len,
             (unsigned long long)s->cj_write_ms);
    cj_free(s);
}

/* Wait for the background sync (it may have finished already), then trim
 * the journal if it succeeded.  Every dump written before the sync started
 * is durable then; none was written while it ran (flush_traces waits for
 * it), so the traces gone from memory are exactly those whose dumps the
 * sync covered, and the compaction keeps everything else. */
static void sync_finish(struct srv *s)
{
    uint64_t v;

    if (!s->sync_busy)
        return;
    pthread_join(s->sync_th, NULL);
    s->sync_busy = 0;
    while (read(s->sync_efd, &v, sizeof v) < 0 && errno == EINTR)
        ;
    if (s->sync_rc < 0) {
        coll_log(COLL_LOG_ERROR, "event=dir_sync_error error=%s",
                 coll_logq(strerror(s->sync_err)));
        if (s->cj_on) {
            coll_store_compact_abort(&s->cj);
            cj_free(s);
        }
        return; /* do not drop journal lines */
    }
    if (s->cj_on)
        cj_commit(s);
    else
        journal_compact(s);
}

static int flush_traces(struct srv *s, int all)
{
    uint64_t now = now_ms();
    int flushed = 0, failed = 0;
    /* No dump is written while a journal-trim sync runs (sync_finish
     * relies on it); ingest goes on meanwhile.  A full flush waits. */
    if (s->sync_busy) {
        if (!all)
            return s->failures;
        sync_finish(s);
    }
    if (!all && !s->flush_more && s->min_ok && now - s->min_last < s->o->idle_ms &&
        (!s->o->max_trace_age_ms || now - s->min_first < s->o->max_trace_age_ms)) {
        s->failures = 0;
        return 0;
    }
    int whole = all || !s->flush_more || s->flush_pos >= s->ns;
    if (whole)
        s->flush_pos = 0, s->flush_done = 0;
    s->flush_more = 0;
    s->min_ok = 0;
    uint64_t min_last = now, min_first = now;
    unsigned since_check = 0;
    while (s->flush_done < s->ns) {
        size_t i = s->flush_pos;
        if (!all && ++since_check >= 256) {
            since_check = 0;
            if (now_ms() - now >= FLUSH_BUDGET_MS) {
                s->flush_more = 1; /* resume at slot i */
                goto done;
            }
        }
        struct coll_trace *t = s->ts[i].t;
        int removed = 0;
        if (t) {
            int old = !all && now - t->last_ms < s->o->idle_ms && s->o->max_trace_age_ms &&
                      now - t->first_ms >= s->o->max_trace_age_ms;
            if (all || now - t->last_ms >= s->o->idle_ms || old) {
                since_check = 256; /* a dump was written: check the budget */
                t->early_age += old;
                if (flush_trace(s, t) == 0) {
                    if (old) {
                        s->c.early_age++;
                        if (limit_log_ok(s))
                            coll_log(COLL_LOG_INFO,
                                     "event=written_early reason=max_trace_age base_id=%s "
                                     "spans=%zu age_ms=%llu note=%s",
                                     t->base_id, coll_trace_nspans(t),
                                     (unsigned long long)(now - t->first_ms),
                                     coll_logq("later spans are merged into the dump"));
                    }
                    table_remove(s, t);
                    flushed++;
                    removed = 1;
                } else {
                    failed++;
                    t->early_age -= old;
                    t->last_ms = t->first_ms = now; /* retry after another period */
                    lru_touch(s, t);
                }
            }
            if (!removed) {
                if (t->last_ms < min_last)
                    min_last = t->last_ms;
                if (t->first_ms < min_first)
                    min_first = t->first_ms;
            }
        }
        /* After a removal slot i may hold an entry moved up from later in
         * its cluster: look at it again. */
        if (!removed || !s->ts[i].t) {
            s->flush_done++;
            s->flush_pos = (s->flush_pos + 1) % s->ns;
        }
    }
    if (whole && !all) {
        s->min_ok = 1;
        s->min_last = min_last;
        s->min_first = min_first;
    }
done:
    if (flushed) {
        s->change_gen++;
        /* Trim the journal when memory is empty, or compact it when that at
         * least halves it (each compaction rewrites what is pending: the
         * cost stays amortised O(1) per span even with a large backlog).
         * Only after the dumps are durable (store.h). */
        int trim = s->ntraces == 0 || ((uint64_t)s->store.jsize > s->o->journal_max &&
                                       (uint64_t)s->store.jsize > 2 * s->pending_jbytes);
        /* --fsync batch: syncfs() waits for every dirty page of the file
         * system (50-160 ms on a busy disk); in line it would leave the
         * socket unread that long and senders would drop spans. */
        if (trim && !all && !s->store.sync_each && sync_start(s) == 0) {
            s->failures = failed;
            return failed;
        }
        if (trim || s->store.sync_each) {
            if (coll_store_sync_dir(&s->store) < 0) {
                coll_log(COLL_LOG_ERROR, "event=dir_sync_error error=%s",
                         coll_logq(strerror(errno)));
                return failed + 1; /* do not drop journal lines */
            }
        }
        if (trim)
            journal_compact(s);
    }
    s->failures = failed;
    return failed;
}

/* ------------------------------------------------------------ ingest */

static const char *reject_reason(int err)
{
    return err == REJ_PEER_UID ? "peer_uid" : coll_dec_reason(err);
}

/* Count and log (rate-limited) a refused datagram; `pid` is what its header
 * says (0 when it has none), the kernel's pid/uid are logged too. */
static void reject(struct srv *s, int err, const char *detail, uint32_t pid, size_t len)
{
    s->c.rejected++;
    if (err > 0 && err <= REJ_PEER_UID)
        s->c.rejected_by[err]++;
    s->change_gen++;
    /* per-sender count, for allowed uids only: a foreign uid must not be
     * able to push the real senders out of the table */
    if (err != REJ_PEER_UID && s->cur_cred)
        sender_get(s, s->cur_pid, now_ms())->rejected++;
    if (s->reject_logged < REJECT_LOG_PER_MIN) {
        s->reject_logged++;
        coll_log(COLL_LOG_WARN,
                 "event=reject reason=%s pid=%u uid=%ld header_pid=%u bytes=%zu detail=%s",
                 reject_reason(err), s->cur_cred ? s->cur_pid : 0,
                 s->cur_cred ? (long)s->cur_uid : -1L, pid, len, coll_logq(detail));
    } else {
        s->reject_suppressed++;
    }
}

/* May the datagram's sender use us?  Our euid, root and --allow-uid; a
 * datagram without credentials (cannot happen with SO_PASSCRED) is refused
 * too.  Refused ones are counted with reason peer_uid. */
static int peer_allowed(struct srv *s, size_t len)
{
    char d[96];
    if (!s->cur_cred) {
        reject(s, REJ_PEER_UID, "no credentials", 0, len);
        return 0;
    }
    if (s->cur_uid == s->euid || s->cur_uid == 0)
        return 1;
    for (size_t i = 0; i < s->o->nallow_uid; i++)
        if (s->cur_uid == (uint32_t)s->o->allow_uid[i])
            return 1;
    snprintf(d, sizeof d, "uid %u is not allowed (--allow-uid)", s->cur_uid);
    reject(s, REJ_PEER_UID, d, 0, len);
    return 0;
}

/* Write the least recently active open trace now (--max-open-traces).
 * Its later spans start a new open trace, merged into the dump when that
 * is written (as any late span). */
static void write_oldest_early(struct srv *s)
{
    struct coll_trace *t = s->lru_head;
    if (!t)
        return;
    sync_finish(s); /* no dump while a journal-trim sync runs */
    t->early_open++;
    if (flush_trace(s, t) == 0) {
        s->c.early_open++;
        if (limit_log_ok(s))
            coll_log(COLL_LOG_INFO,
                     "event=written_early reason=max_open_traces base_id=%s spans=%zu "
                     "open_traces=%zu max=%zu note=%s",
                     t->base_id, coll_trace_nspans(t), s->ntraces, s->o->max_open_traces,
                     coll_logq("later spans are merged into the dump"));
        table_remove(s, t);
        s->change_gen++;
    } else {
        t->early_open--;
        s->c.early_errors++;
        lru_touch(s, t); /* try another one next time */
    }
}

/* A new open trace `base_id` (text; key h, id as table_find; not open),
 * making room first. */
static struct coll_trace *new_trace(struct srv *s, uint64_t h, const uint8_t *id,
                                    const char *base_id)
{
    if (s->o->max_open_traces && s->ntraces >= s->o->max_open_traces)
        write_oldest_early(s);
    return table_add(s, h, id, base_id);
}

/* The open trace `base_id`, created when needed. */
static struct coll_trace *open_trace(struct srv *s, uint64_t h, const uint8_t *id,
                                     const char *base_id)
{
    struct coll_trace *t = table_find(s, h, id, base_id);
    return t ? t : new_trace(s, h, id, base_id);
}

/* Count what t's span limit cut since it held `cut0`. */
static void note_cut(struct srv *s, struct coll_trace *t, uint64_t cut0)
{
    if (t->cut_spans == cut0)
        return;
    s->c.spans_cut += t->cut_spans - cut0;
    if (cut0 == 0) {
        s->c.traces_cut++;
        if (limit_log_ok(s))
            coll_log(COLL_LOG_WARN,
                     "event=span_limit base_id=%s max=%zu where=memory note=%s", t->base_id,
                     t->max_spans, coll_logq("later spans of this trace are counted, not kept"));
    }
}

/* Add span `sp` of the accepted datagram `d` to its trace: held as its
 * wire record (ingest.h) while the trace is below its span limit, else as
 * events through coll_trace_add_span (which applies the limit).  `last`
 * caches the trace of the previous span of the datagram (records of one
 * trace follow each other): reused when the base_id is the same (nothing
 * is flushed between two spans of a datagram), else looked up. */
struct last_trace {
    struct coll_trace *t;
    uint8_t base[16];
};

static int add_span(struct srv *s, const struct coll_dec *d, const struct coll_span *sp,
                    struct last_trace *last, uint64_t now, size_t jbytes)
{
    struct coll_trace *t = last->t;
    if (!t || memcmp(last->base, sp->hdr.base_id, 16) != 0) {
        /* One lookup by the raw id; the text form only for a new trace. */
        uint64_t h = hash_raw(sp->hdr.base_id);
        t = table_find(s, h, sp->hdr.base_id, NULL);
        if (!t) {
            char base_id[37];
            coll_uuid_fmt(sp->hdr.base_id, base_id);
            t = new_trace(s, h, sp->hdr.base_id, base_id);
            if (!t) {
                last->t = NULL;
                coll_log(COLL_LOG_ERROR, "event=oom base_id=%s", base_id);
                return 1;
            }
        }
        last->t = t;
        memcpy(last->base, sp->hdr.base_id, 16);
    }
    const char *base_id = t->base_id;
    size_t before = coll_trace_nspans(t);
    uint64_t cut0 = t->cut_spans;
    int lost = 0, rc = coll_trace_take(t, d, sp, s->host);
    if (rc) {
        coll_log(COLL_LOG_ERROR, "event=%s base_id=%s", rc == COLL_TAKE_OOM ? "oom" : "bad_span",
                 base_id);
        lost = 1;
    }
    lost |= t->cut_spans != cut0;
    note_cut(s, t, cut0);
    size_t after = coll_trace_nspans(t);
    if (after >= before)
        s->pending_spans += after - before;
    else /* realized duplicates */
        s->pending_spans -= before - after < s->pending_spans ? before - after : s->pending_spans;
    t->jbytes += jbytes;
    s->pending_jbytes += jbytes;
    t->last_ms = now;
    lru_touch(s, t);
    return lost;
}

/* OSProfiler's Redis layout (compat §8): each span's start event, then its
 * stop event (the order OSProfiler pushes them in), the spans in the order
 * of their stop times (evtext.h), one pipeline for the datagram.  The
 * events are written as text straight from the records.  A failure is
 * counted and logged; the spans are in the journal and reach their dumps
 * as always. */
static void redis_push_dgram(struct srv *s, const struct coll_dec *d, uint64_t now)
{
    static struct coll_buf cmds; /* reused: one datagram at a time */
    size_t nev = 0;
    coll_buf_reset(&cmds);
    if (coll_redis_dgram_cmds(&cmds, d, s->host, &nev) < 0) {
        s->redis.failed += 2 * (uint64_t)d->hdr.nrec;
        coll_log(COLL_LOG_ERROR, "event=oom what=redis_push spans=%u", d->hdr.nrec);
        coll_buf_free(&cmds);
        return;
    }
    int was_down = s->redis.down;
    uint64_t errors = s->redis.errors;
    if (coll_redis_push_cmds(&s->redis, nev, cmds.p, cmds.len, now) < 0) {
        if (s->redis.errors != errors) /* a real attempt (not skipped in a backoff) */
            coll_log(COLL_LOG_ERROR,
                     "event=redis_error uri=%s error=%s events_failed=%llu retry_ms=%llu",
                     coll_logq(s->redis.uri), coll_logq(s->redis.lasterr),
                     (unsigned long long)s->redis.failed,
                     (unsigned long long)s->redis.backoff_ms);
    } else if (was_down) {
        coll_log(COLL_LOG_INFO, "event=redis_reconnected uri=%s events_failed=%llu",
                 coll_logq(s->redis.uri), (unsigned long long)s->redis.failed);
    }
    if (cmds.cap > (1u << 20)) /* keep no more than 1 MiB between datagrams */
        coll_buf_free(&cmds);
}

/* Per record of the datagram being handled: 1 when add_span did not keep
 * it (cut by a limit, or lost).  A record takes at least its 80-byte head. */
static uint8_t lost[LDPROF_WIRE_MAX_DGRAM / sizeof(struct ldprof_wire_span) + 1];

/* Push the records of the datagram `buf` (decoded as `d`; its iteration
 * may be over) that add_span kept (lost[i] == 0): a copy of the datagram
 * with only those records (same header and process block, len and nrec
 * set), pushed as any datagram. */
static void redis_push_kept(struct srv *s, const uint8_t *buf, const struct coll_dec *d,
                            uint64_t now)
{
    static uint8_t out[LDPROF_WIRE_MAX_DGRAM];
    size_t off = sizeof(struct ldprof_wire_hdr) + d->hdr.proc_len;
    memcpy(out, buf, off);
    struct coll_dec_pos it;
    struct coll_span sp;
    uint32_t i = 0, n = 0;
    coll_decode_first(d, &it);
    while (coll_decode_next_at(d, &it, &sp)) {
        if (!lost[i++]) {
            memcpy(out + off, sp.info - sizeof(struct ldprof_wire_span), sp.hdr.rec_len);
            off += sp.hdr.rec_len;
            n++;
        }
    }
    coll_put_le(out + 8, off, 4);  /* hdr.len */
    coll_put_le(out + 16, n, 4);   /* hdr.nrec */
    struct coll_dec kept;
    if (coll_decode(&kept, out, off) < 0) { /* cannot happen: parts of a valid one */
        s->redis.failed += 2 * (uint64_t)n;
        coll_log(COLL_LOG_ERROR, "event=redis_push_error error=%s", coll_logq(kept.errstr));
        return;
    }
    redis_push_dgram(s, &kept, now);
}

static void handle_dgram(struct srv *s, const uint8_t *buf, size_t len)
{
    uint64_t now = now_ms();
    s->c.dgrams++;
    s->c.bytes += len;
    s->change_gen++;
    if (!peer_allowed(s, len))
        return;
    if (len > LDPROF_WIRE_MAX_DGRAM) {
        char d[64];
        snprintf(d, sizeof d, "%zu bytes, max %u", len, LDPROF_WIRE_MAX_DGRAM);
        reject(s, COLL_DEC_ETOOBIG, d, 0, len);
        return;
    }
    struct coll_dec d;
    if (coll_decode(&d, buf, len) < 0) {
        reject(s, d.err, d.errstr, d.hdr.pid, len); /* hdr is zeroed when short */
        return;
    }
    s->c.accepted++;
    struct sender *snd = sender_for(s, d.hdr.pid, now);
    snd->dgrams++;
    snd->bytes += len;
    snd->last_ms = now;
    if (d.hdr.dropped < snd->dropped) /* pid reused by a new process */
        s->dropped_gone += snd->dropped;
    snd->dropped = d.hdr.dropped;
    copy_str(snd->service, sizeof snd->service, &d.proc.service);
    copy_str(snd->exe, sizeof snd->exe, &d.proc.exe);
    if (d.hdr.type == LDPROF_MSG_STATS) {
        s->c.stats_msgs++;
        return;
    }

    /* ONE journal write (the datagram as received), then memory. */
    uint32_t n = d.hdr.nrec;
    if (coll_store_journal_append_dgram(&s->store, buf, len) < 0) {
        s->c.journal_errors++;
        coll_log(COLL_LOG_ERROR, "event=journal_write_error error=%s",
                 coll_logq(strerror(errno)));
    }
    /* Journal bytes per span (for compaction): the entry shared out. */
    size_t entry = len + 9, share = n ? entry / n : 0, rest = n ? entry % n : 0;
    struct coll_span sp;
    struct last_trace last = {NULL, {0}};
    uint32_t i = 0, nlost = 0;
    while (coll_decode_next(&d, &sp)) {
        int l = add_span(s, &d, &sp, &last, now, share + (i == 0 ? rest : 0));
        lost[i] = (uint8_t)l;
        nlost += (uint32_t)l;
        i++;
    }
    s->c.spans += i;
    snd->spans += i;
    /* Redis gets the spans memory kept (those a limit cut are not pushed). */
    if (s->use_redis && nlost == 0)
        redis_push_dgram(s, &d, now);
    else if (s->use_redis && nlost < i)
        redis_push_kept(s, buf, &d, now);
    if (s->pending_spans > s->o->max_pending) {
        s->c.forced_flushes++;
        coll_log(COLL_LOG_WARN, "event=forced_flush pending_spans=%zu max=%zu",
                 s->pending_spans, s->o->max_pending);
        flush_traces(s, 1);
    }
}

/* The sender's credentials (SCM_CREDENTIALS, SO_PASSCRED) of a received
 * datagram into s->cur_*. */
static void take_creds(struct srv *s, struct msghdr *mh)
{
    s->cur_cred = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred uc;
            memcpy(&uc, CMSG_DATA(c), sizeof uc);
            s->cur_cred = 1;
            s->cur_uid = (uint32_t)uc.uid;
            s->cur_pid = (uint32_t)uc.pid;
        }
    }
}

/* Read what is queued, at most `max` datagrams. */
static size_t drain(struct srv *s, size_t max)
{
    static uint8_t buf[LDPROF_WIRE_MAX_DGRAM + 1];
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    size_t n = 0;
    while (n < max) {
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                            .msg_controllen = sizeof ctl.b};
        ssize_t r = recvmsg(s->sock, &mh, MSG_TRUNC | MSG_DONTWAIT);
        if (r >= 0)
            take_creds(s, &mh);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                coll_log(COLL_LOG_WARN, "event=recv_error error=%s",
                         coll_logq(strerror(errno)));
            break;
        }
        handle_dgram(s, buf, (size_t)r);
        n++;
    }
    return n;
}

/* ------------------------------------------------------------ replay */

struct replay {
    struct srv *s;
    long lines, bad;
};

/* A datagram entry: its spans, as when it was received (not journaled
 * again: the journal is rewritten after the replay). */
static void replay_dgram(struct replay *r, const char *p, size_t len)
{
    struct coll_dec d;
    if (coll_decode(&d, p, len) < 0 || d.hdr.type != LDPROF_MSG_SPANS) {
        r->bad++;
        return;
    }
    uint32_t n = d.hdr.nrec;
    size_t entry = len + 9, share = n ? entry / n : 0, rest = n ? entry % n : 0;
    struct coll_span sp;
    struct last_trace last = {NULL, {0}};
    uint64_t now = now_ms();
    uint32_t i = 0;
    while (coll_decode_next(&d, &sp)) {
        add_span(r->s, &d, &sp, &last, now, share + (i == 0 ? rest : 0));
        i++;
    }
    r->s->c.replayed_spans += i;
}

/* One journal entry (store.h): a datagram, a span line, or damage. */
static void replay_line(void *arg, int kind, const char *line, size_t len)
{
    struct replay *r = arg;
    char base_id[64];
    uint8_t raw[16];
    r->lines++;
    if (kind == COLL_JENT_DGRAM) {
        replay_dgram(r, line, len);
        return;
    }
    if (kind != COLL_JENT_LINE) {
        r->bad++;
        return;
    }
    json_t *evs = coll_journal_parse(line, len, base_id);
    if (!evs || coll_uuid_parse(base_id, raw) < 0) {
        r->bad++;
        json_decref(evs);
        return;
    }
    uint64_t h;
    key_of_text(base_id, raw, &h);
    struct coll_trace *t = open_trace(r->s, h, raw, base_id);
    if (!t) {
        r->bad++;
        json_decref(evs);
        return;
    }
    size_t before = coll_trace_nspans(t); /* held records are counted */
    uint64_t cut0 = t->cut_spans;
    if (coll_trace_add_events(t, evs) < 0)
        r->bad++;
    note_cut(r->s, t, cut0);
    size_t after = coll_trace_nspans(t);
    if (after >= before)
        r->s->pending_spans += after - before;
    else /* realized duplicates */
        r->s->pending_spans -= before - after < r->s->pending_spans ? before - after
                                                                    : r->s->pending_spans;
    t->jbytes += len + 1;
    r->s->pending_jbytes += len + 1;
    r->s->c.replayed_spans++;
    t->last_ms = now_ms();
    lru_touch(r->s, t);
    json_decref(evs);
}

static int replay_journal(struct srv *s)
{
    struct replay r = {.s = s};
    coll_ingest_init(s->host); /* once, before any span is held */
    if (s->store.jsize == 0)
        return 0;
    long n = coll_store_journal_scan(&s->store, replay_line, &r);
    if (n < 0) {
        coll_log(COLL_LOG_ERROR, "event=journal_read_error error=%s",
                 coll_logq(strerror(errno)));
        return -1;
    }
    s->c.journal_bad_lines += (uint64_t)r.bad;
    size_t traces = s->ntraces;
    uint64_t w0 = s->c.written + s->c.rewritten;
    s->replaying = 1;
    int failed = flush_traces(s, 1);
    s->replaying = 0;
    /* Always rewrite/empty the journal once here: it may end in a torn line
     * (kill -9 mid-write) that the next append would otherwise extend.
     * Traces that failed to write stay in it. */
    if (coll_store_sync_dir(&s->store) == 0)
        journal_compact(s);
    coll_log(COLL_LOG_INFO,
             "event=journal_replayed lines=%ld bad_lines=%ld traces=%zu dumps_written=%llu "
             "failed=%d",
             r.lines, r.bad, traces, (unsigned long long)(s->c.written + s->c.rewritten - w0),
             failed);
    return 0;
}

/* ------------------------------------------------------------ stats */

static void stats_json(struct srv *s, struct coll_buf *b, int running)
{
    char upd[40];
    iso_now(upd);
    json_t *rej = json_object();
    for (int i = 1; i <= REJ_PEER_UID; i++)
        if (s->c.rejected_by[i])
            json_object_set_new(rej, reject_reason(i),
                                json_integer((json_int_t)s->c.rejected_by[i]));
    json_t *snd = json_array();
    for (size_t i = 0; i < s->nsenders; i++) {
        struct sender *x = &s->senders[i];
        json_t *o = json_pack("{s:i,s:s,s:s,s:I,s:I,s:I,s:I}", "pid", (int)x->pid, "service",
                              x->service, "exe", x->exe, "datagrams", (json_int_t)x->dgrams,
                              "spans", (json_int_t)x->spans, "bytes", (json_int_t)x->bytes,
                              "dropped", (json_int_t)x->dropped);
        if (o) {
            json_object_set_new(o, "rejected", json_integer((json_int_t)x->rejected));
            json_object_set_new(o, "header_pid", json_integer((json_int_t)x->hdr_pid));
            json_object_set_new(o, "pid_mismatches",
                                json_integer((json_int_t)x->pid_mismatches));
        }
        json_array_append_new(snd, o);
    }
    json_t *j = json_pack(
        "{s:i,s:b,s:s,s:s,s:s,s:s,s:s,"
        "s:{s:I,s:I,s:I,s:I,s:o},"
        "s:I,s:I,s:I,"
        "s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I},"
        "s:{s:I,s:I,s:I,s:I},"
        "s:o}",
        "pid", (int)getpid(), "running", running, "version", LDPROF_VERSION, "socket", s->o->socket_path, "dir",
        s->o->dir, "started", s->started_iso, "updated", upd,
        "datagrams", "received", (json_int_t)s->c.dgrams, "accepted",
        (json_int_t)s->c.accepted, "rejected", (json_int_t)s->c.rejected, "stats_messages",
        (json_int_t)s->c.stats_msgs, "rejected_by_reason", rej,
        "spans", (json_int_t)s->c.spans, "bytes", (json_int_t)s->c.bytes, "dropped",
        (json_int_t)dropped_total(s),
        "traces", "pending", (json_int_t)s->ntraces, "pending_spans",
        (json_int_t)s->pending_spans, "written", (json_int_t)s->c.written, "rewritten",
        (json_int_t)s->c.rewritten, "unchanged", (json_int_t)s->c.unchanged, "write_errors",
        (json_int_t)s->c.write_errors, "report_errors", (json_int_t)s->c.report_errors,
        "journal", "bytes", (json_int_t)s->store.jsize, "write_errors",
        (json_int_t)s->c.journal_errors, "replayed_spans", (json_int_t)s->c.replayed_spans,
        "bad_lines", (json_int_t)s->c.journal_bad_lines,
        "senders", snd);
    if (j) {
        json_t *uids = json_array();
        for (size_t i = 0; i < s->o->nallow_uid; i++)
            json_array_append_new(uids, json_integer((json_int_t)s->o->allow_uid[i]));
        json_object_set_new(
            j, "peers",
            json_pack("{s:i,s:o,s:I,s:I}", "euid", (int)geteuid(), "allowed_uids", uids,
                      "uid_rejected", (json_int_t)s->c.rejected_by[REJ_PEER_UID],
                      "pid_mismatches", (json_int_t)s->c.pid_mismatches));
        json_object_set_new(
            j, "limits",
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I},s:I}", "max_open_traces",
                      (json_int_t)s->o->max_open_traces, "max_spans_per_trace",
                      (json_int_t)s->o->max_spans_per_trace, "max_trace_age_ms",
                      (json_int_t)s->o->max_trace_age_ms, "spans_dropped",
                      (json_int_t)s->c.spans_cut, "traces_truncated",
                      (json_int_t)s->c.traces_cut, "written_early", "max_open_traces",
                      (json_int_t)s->c.early_open, "max_trace_age",
                      (json_int_t)s->c.early_age, "early_write_errors",
                      (json_int_t)s->c.early_errors));
        json_object_set_new(
            j, "retention",
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "max_traces",
                      (json_int_t)s->o->max_traces, "max_age_ms", (json_int_t)s->o->max_age_ms,
                      "pruned_by_count", (json_int_t)s->ret.pruned_count, "pruned_by_age",
                      (json_int_t)s->ret.pruned_age, "skipped_open",
                      (json_int_t)s->ret.skipped_open, "errors", (json_int_t)s->ret.errors,
                      "scans", (json_int_t)s->ret.scans, "dumps", (json_int_t)s->ret.dumps));
    }
    if (j && s->use_redis)
        json_object_set_new(
            j, "redis",
            json_pack("{s:s,s:b,s:I,s:I,s:I,s:I}", "uri", s->redis.uri, "connected",
                      s->redis.ctx != NULL, "pushed", (json_int_t)s->redis.pushed, "failed",
                      (json_int_t)s->redis.failed, "errors", (json_int_t)s->redis.errors,
                      "connects", (json_int_t)s->redis.connects));
    if (j) {
        coll_json_dump(b, j, 2);
        coll_buf_addc(b, '\n');
        json_decref(j);
    }
}

static void write_stats_file(struct srv *s, int running)
{
    struct coll_buf b;
    coll_buf_init(&b);
    stats_json(s, &b, running);
    if (!b.oom && b.len &&
        coll_write_file_atomic(s->stats_path, b.p, b.len, 0) < 0)
        coll_log(COLL_LOG_WARN, "event=stats_write_error path=%s error=%s",
                 coll_logq(s->stats_path), coll_logq(strerror(errno)));
    coll_buf_free(&b);
    s->filed_gen = s->change_gen;
}

static void log_stats(struct srv *s, const char *why)
{
    coll_log(COLL_LOG_INFO,
             "event=stats why=%s datagrams=%llu accepted=%llu rejected=%llu spans=%llu "
             "bytes=%llu dropped=%llu senders=%zu traces_pending=%zu traces_written=%llu "
             "traces_rewritten=%llu write_errors=%llu journal_bytes=%lld",
             why, (unsigned long long)s->c.dgrams, (unsigned long long)s->c.accepted,
             (unsigned long long)s->c.rejected, (unsigned long long)s->c.spans,
             (unsigned long long)s->c.bytes, (unsigned long long)dropped_total(s),
             s->nsenders, s->ntraces, (unsigned long long)s->c.written,
             (unsigned long long)s->c.rewritten, (unsigned long long)s->c.write_errors,
             (long long)s->store.jsize);
    s->logged_gen = s->change_gen;
}

/* ------------------------------------------------------------ retention */

static int ret_cmp(const void *a, const void *b)
{
    const struct ret_ent *x = a, *y = b;
    if (x->mtime_ns != y->mtime_ns)
        return x->mtime_ns < y->mtime_ns ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int64_t st_mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* Read up to RET_SCAN_BATCH directory entries; at the end, sort the dumps
 * oldest first and switch to pruning.  Returns 0, or -1 on an error (the
 * cycle is abandoned). */
static int ret_scan(struct srv *s, struct retention *r)
{
    for (int k = 0; k < RET_SCAN_BATCH; k++) {
        errno = 0;
        struct dirent *de = readdir(r->dp);
        if (!de) {
            if (errno)
                return -1;
            closedir(r->dp);
            r->dp = NULL;
            if (r->n)
                qsort(r->v, r->n, sizeof *r->v, ret_cmp);
            r->excess = s->o->max_traces && r->n > s->o->max_traces ? r->n - s->o->max_traces : 0;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            r->cutoff_ns = s->o->max_age_ms ? (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec -
                                                  (int64_t)s->o->max_age_ms * 1000000
                                            : INT64_MIN;
            r->dumps = r->n;
            r->pos = 0;
            r->phase = 2;
            return 0;
        }
        struct stat st;
        if (!coll_is_dump_name(de->d_name) ||
            fstatat(s->store.dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (r->n == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 256;
            struct ret_ent *v = realloc(r->v, cap * sizeof *v);
            if (!v) {
                errno = ENOMEM;
                return -1;
            }
            r->v = v;
            r->cap = cap;
        }
        r->v[r->n].mtime_ns = st_mtime_ns(&st);
        memcpy(r->v[r->n].id, de->d_name, 36);
        r->v[r->n].id[36] = '\0';
        r->n++;
    }
    return 0;
}

/* Remove up to RET_PRUNE_BATCH dumps, oldest first: those beyond
 * --max-traces and those last written before --max-age.  Never a trace
 * still open in memory, never a dump rewritten since the scan.  1 when the
 * pass is over. */
static int ret_prune(struct srv *s, struct retention *r)
{
    for (int k = 0; k < RET_PRUNE_BATCH; k++, r->pos++) {
        if (r->pos >= r->n)
            return 1;
        struct ret_ent *e = &r->v[r->pos];
        int by_count = r->pos < r->excess, by_age = e->mtime_ns < r->cutoff_ns;
        if (!by_count && !by_age)
            return 1; /* sorted: the rest is newer */
        if (table_get(s, e->id)) {
            r->skipped_open++;
            r->cyc_open++;
            s->change_gen++;
            continue;
        }
        char name[48];
        struct stat st;
        snprintf(name, sizeof name, "%s.json", e->id);
        if (fstatat(s->store.dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            st_mtime_ns(&st) != e->mtime_ns)
            continue; /* gone, or rewritten since the scan */
        if (unlinkat(s->store.dirfd, name, 0) < 0) {
            if (errno != ENOENT) {
                r->errors++;
                coll_log(COLL_LOG_ERROR, "event=retention_error base_id=%s error=%s", e->id,
                         coll_logq(strerror(errno)));
            }
            continue;
        }
        if (by_count) {
            r->pruned_count++;
            r->cyc_count++;
        } else {
            r->pruned_age++;
            r->cyc_age++;
        }
        s->change_gen++;
    }
    return 0;
}

/* One bounded step of the retention cycle (--max-traces, --max-age). */
static void retention_step(struct srv *s, uint64_t now)
{
    struct retention *r = &s->ret;
    if (!s->o->max_traces && !s->o->max_age_ms)
        return;
    if (r->phase == 0) {
        if (now < r->next_ms)
            return;
        int fd = openat(s->store.dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r->dp = fd >= 0 ? fdopendir(fd) : NULL;
        if (!r->dp) {
            if (fd >= 0)
                close(fd);
            r->errors++;
            coll_log(COLL_LOG_ERROR, "event=retention_error error=%s",
                     coll_logq(strerror(errno)));
            r->next_ms = now + RET_INTERVAL_MS;
            return;
        }
        r->n = 0;
        r->cyc_count = r->cyc_age = r->cyc_open = 0;
        r->scan_start_ms = now;
        r->scans++;
        r->phase = 1;
    }
    if (r->phase == 1) {
        if (ret_scan(s, r) < 0) {
            r->errors++;
            coll_log(COLL_LOG_ERROR, "event=retention_error error=%s",
                     coll_logq(strerror(errno)));
            closedir(r->dp);
            r->dp = NULL;
            r->phase = 0;
            r->next_ms = now + RET_INTERVAL_MS;
        }
        return; /* prune at the next tick */
    }
    if (ret_prune(s, r)) {
        if (r->cyc_count || r->cyc_age || r->cyc_open)
            coll_log(COLL_LOG_INFO,
                     "event=retention_pruned by_count=%llu by_age=%llu skipped_open=%llu "
                     "dumps_before=%zu max_traces=%zu max_age_ms=%llu",
                     (unsigned long long)r->cyc_count, (unsigned long long)r->cyc_age,
                     (unsigned long long)r->cyc_open, r->n, s->o->max_traces,
                     (unsigned long long)s->o->max_age_ms);
        r->phase = 0;
        /* at most half the time scanning a big directory */
        uint64_t took = now - r->scan_start_ms;
        r->next_ms = now + (took > RET_INTERVAL_MS ? took : RET_INTERVAL_MS);
    }
}

static void tick(struct srv *s)
{
    uint64_t now = now_ms();
    flush_traces(s, 0);
    retention_step(s, now);
    if (coll_store_journal_sync(&s->store) < 0)
        coll_log(COLL_LOG_ERROR, "event=journal_sync_error error=%s",
                 coll_logq(strerror(errno)));
    if (s->filed_gen != s->change_gen && now - s->last_stats_file_ms >= STATS_FILE_MS) {
        write_stats_file(s, 1);
        s->last_stats_file_ms = now;
    }
    if (now - s->last_stats_log_ms >= STATS_LOG_MS) {
        if (s->logged_gen != s->change_gen)
            log_stats(s, "periodic");
        s->last_stats_log_ms = now;
    }
    if (now - s->reject_window_ms >= STATS_LOG_MS) {
        if (s->reject_suppressed)
            coll_log(COLL_LOG_WARN, "event=reject_suppressed count=%u", s->reject_suppressed);
        s->reject_logged = s->reject_suppressed = 0;
        if (s->limit_suppressed)
            coll_log(COLL_LOG_WARN, "event=limit_log_suppressed count=%u", s->limit_suppressed);
        s->limit_logged = s->limit_suppressed = 0;
        s->reject_window_ms = now;
    }
}

/* ------------------------------------------------------------ temp files */

/* At start: remove the temporary files of writers that are gone (a kill -9
 * during a dump or journal write leaves one).  A file whose pid is alive is
 * kept: another collector may write dumps into the same directory (one
 * collector per socket, not per directory).  Our own pid cannot have
 * written one yet: its file is from an earlier process. */
static void remove_stale_tmp(struct srv *s)
{
    int fd = dup(s->store.dirfd);
    DIR *dp = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dp) {
        if (fd >= 0)
            close(fd);
        coll_log(COLL_LOG_WARN, "event=tmp_scan_error error=%s", coll_logq(strerror(errno)));
        return;
    }
    long self = (long)getpid();
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        long pid = coll_store_tmp_pid(de->d_name);
        if (pid <= 0)
            continue;
        if (pid != self && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
            coll_log(COLL_LOG_INFO, "event=tmp_file_kept file=%s pid=%ld reason=%s",
                     coll_logq(de->d_name), pid, coll_logq("its writer is running"));
            continue;
        }
        if (unlinkat(s->store.dirfd, de->d_name, 0) < 0) {
            coll_log(COLL_LOG_WARN, "event=tmp_remove_error file=%s error=%s",
                     coll_logq(de->d_name), coll_logq(strerror(errno)));
            continue;
        }
        coll_log(COLL_LOG_INFO, "event=stale_tmp_removed file=%s pid=%ld",
                 coll_logq(de->d_name), pid);
    }
    closedir(dp);
}

/* ------------------------------------------------------------ setup */

static int open_socket(struct srv *s)
{
    const char *path = s->o->socket_path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char dir[PATH_MAX], err[512], lock[PATH_MAX + 8];

    if (strlen(path) >= sizeof sa.sun_path) {
        coll_log(COLL_LOG_ERROR, "event=socket_error path=%s error=%s", coll_logq(path),
                 coll_logq("path longer than 107 bytes"));
        return -1;
    }
    coll_dirname(path, dir, sizeof dir);
    if (coll_prepare_dir(dir, 1, err, sizeof err) < 0) {
        coll_log(COLL_LOG_ERROR, "event=socket_dir_error error=%s", coll_logq(err));
        return -1;
    }
    /* One collector per socket: the lock serialises the stale check below
     * between two collectors starting at once.  The lock file is never
     * removed (removing it would reopen that race). */
    snprintf(lock, sizeof lock, "%s.lock", path);
    s->lockfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->lockfd < 0 || flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
        coll_log(COLL_LOG_ERROR, "event=already_running socket=%s error=%s", coll_logq(path),
                 coll_logq(errno == EWOULDBLOCK ? "another collector holds the lock"
                                                : strerror(errno)));
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            coll_log(COLL_LOG_ERROR, "event=socket_error path=%s error=%s", coll_logq(path),
                     coll_logq("exists and is not a socket"));
            return -1;
        }
        int p = coll_socket_probe(path);
        if (p != 0) {
            coll_log(COLL_LOG_ERROR, "event=already_running socket=%s error=%s",
                     coll_logq(path),
                     coll_logq(p > 0 ? "something answers on it" : strerror(errno)));
            return -1;
        }
        if (unlink(path) < 0 && errno != ENOENT) {
            coll_log(COLL_LOG_ERROR, "event=socket_error path=%s error=%s", coll_logq(path),
                     coll_logq(strerror(errno)));
            return -1;
        }
        coll_log(COLL_LOG_INFO, "event=stale_socket_removed socket=%s", coll_logq(path));
    }
    s->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    /* Every datagram then carries its sender's pid/uid/gid (SCM_CREDENTIALS,
     * filled in by the kernel: a sender cannot forge them without
     * CAP_SYS_ADMIN/CAP_SETUID).  Set before bind: no datagram without. */
    int one = 1;
    if (s->sock < 0 || setsockopt(s->sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0)
        goto fail;
    strcpy(sa.sun_path, path);
    mode_t old = umask(0177);
    int rc = bind(s->sock, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    /* Only our uid (and root) may send, unless --allow-uid: then anyone who
     * can reach the socket may send and the uid check decides. */
    if (rc < 0 || chmod(path, s->o->nallow_uid ? 0666 : 0600) < 0)
        goto fail;
    if (s->o->nallow_uid) {
        /* other uids must be able to traverse the socket's directory (not
         * list it); the directories above are the operator's business */
        if (stat(dir, &st) < 0 ||
            ((st.st_mode & 0011) != 0011 && chmod(dir, (st.st_mode & 07777) | 0011) < 0))
            goto fail;
        char uids[COLL_MAX_ALLOW_UIDS * 12] = "";
        for (size_t i = 0, l = 0; i < s->o->nallow_uid && l < sizeof uids; i++)
            l += (size_t)snprintf(uids + l, sizeof uids - l, "%s%lu", i ? "," : "",
                                  (unsigned long)s->o->allow_uid[i]);
        coll_log(COLL_LOG_INFO,
                 "event=socket_shared socket_mode=0666 dir=%s dir_mode=%04o allow_uids=%s",
                 coll_logq(dir), (unsigned)((st.st_mode & 07777) | 0011), uids);
    }
    if (lstat(path, &st) == 0) {
        s->sock_dev = st.st_dev;
        s->sock_ino = st.st_ino;
    }
    /* Large receive buffer: bursts from many threads.  SO_RCVBUFFORCE
     * passes rmem_max when we may (CAP_NET_ADMIN).  Note that a unix
     * datagram socket also limits its queue to net.unix.max_dgram_qlen
     * datagrams (often 10), whatever the byte size: senders should batch. */
    int want = s->o->rcvbuf, got = 0;
    socklen_t gl = sizeof got;
    if (setsockopt(s->sock, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) < 0)
        setsockopt(s->sock, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
    getsockopt(s->sock, SOL_SOCKET, SO_RCVBUF, &got, &gl);
    int qlen = -1;
    FILE *f = fopen("/proc/sys/net/unix/max_dgram_qlen", "re");
    if (f) {
        if (fscanf(f, "%d", &qlen) != 1)
            qlen = -1;
        fclose(f);
    }
    coll_log(COLL_LOG_INFO, "event=socket socket=%s rcvbuf=%d max_dgram_qlen=%d",
             coll_logq(path), got, qlen);
    return 0;
fail:
    coll_log(COLL_LOG_ERROR, "event=socket_error path=%s error=%s", coll_logq(path),
             coll_logq(strerror(errno)));
    return -1;
}

static void close_socket(struct srv *s)
{
    if (s->sock < 0)
        return;
    close(s->sock);
    s->sock = -1;
    /* Unlink only our own socket file: a successor may already own the path. */
    struct stat st;
    if (lstat(s->o->socket_path, &st) == 0 && st.st_dev == s->sock_dev &&
        st.st_ino == s->sock_ino)
        unlink(s->o->socket_path);
}

static int setup_fds(struct srv *s)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    s->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s->sigfd < 0)
        return -1;
    s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (s->tfd < 0)
        return -1;
    unsigned tick_ms = s->o->idle_ms / 4;
    if (tick_ms < 5)
        tick_ms = 5;
    if (tick_ms > 250)
        tick_ms = 250;
    struct itimerspec its = {
        .it_interval = {.tv_sec = tick_ms / 1000, .tv_nsec = (long)(tick_ms % 1000) * 1000000},
        .it_value = {.tv_sec = tick_ms / 1000, .tv_nsec = (long)(tick_ms % 1000) * 1000000},
    };
    return timerfd_settime(s->tfd, 0, &its, NULL);
}

static void write_ready(struct srv *s)
{
    if (!s->o->ready_file)
        return;
    char b[32];
    int n = snprintf(b, sizeof b, "%ld\n", (long)getpid());
    if (coll_write_file_atomic(s->o->ready_file, b, (size_t)n, 0) < 0)
        coll_log(COLL_LOG_WARN, "event=ready_file_error path=%s error=%s",
                 coll_logq(s->o->ready_file), coll_logq(strerror(errno)));
}

void coll_opts_defaults(struct coll_opts *o)
{
    memset(o, 0, sizeof *o);
    o->idle_ms = 1000;
    o->journal_max = 64u << 20;
    o->max_pending = 100000;
    o->rcvbuf = 4 << 20;
    o->max_open_traces = 10000;
    o->max_spans_per_trace = 20000;
    o->max_trace_age_ms = 600000;
}

static void teardown(struct srv *s)
{
    if (s->sync_busy) {
        pthread_join(s->sync_th, NULL);
        s->sync_busy = 0;
    }
    if (s->cj_on) { /* not committed: the journal is whole as it is */
        coll_store_compact_abort(&s->cj);
        cj_free(s);
    }
    if (s->old_jfd >= 0)
        close(s->old_jfd);
    if (s->sync_efd >= 0)
        close(s->sync_efd);
    for (size_t i = 0; i < s->ns; i++)
        coll_trace_free(s->ts[i].t);
    free(s->ts);
    if (s->ret.dp)
        closedir(s->ret.dp);
    free(s->ret.v);
    if (s->sigfd >= 0)
        close(s->sigfd);
    if (s->tfd >= 0)
        close(s->tfd);
    coll_store_close(&s->store);
    if (s->use_redis)
        coll_redis_close(&s->redis);
    if (s->lockfd >= 0)
        close(s->lockfd);
}

int coll_server_run(const struct coll_opts *o)
{
    static struct srv srv;
    struct srv *s = &srv;
    char err[512];
    int status = 1;

    memset(s, 0, sizeof *s);
    s->o = o;
    s->sock = s->sigfd = s->tfd = s->lockfd = s->old_jfd = -1;
    s->sync_efd = o->fsync_batch ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1; /* batch only */
    s->euid = (uint32_t)geteuid();
    s->store.jfd = s->store.dirfd = -1;
    s->started_ms = s->last_stats_log_ms = s->last_stats_file_ms = s->reject_window_ms = now_ms();
    iso_now(s->started_iso);
    if (gethostname(s->host, sizeof s->host - 1) < 0)
        strcpy(s->host, "localhost");
    if (o->stats_file)
        snprintf(s->stats_path, sizeof s->stats_path, "%s", o->stats_file);
    else
        coll_stats_path(o->socket_path, s->stats_path, sizeof s->stats_path);
    if (o->ready_file)
        unlink(o->ready_file);

    if (o->redis_uri) {
        if (coll_redis_init(&s->redis, o->redis_uri) < 0) {
            coll_log(COLL_LOG_ERROR, "event=setup_error error=%s",
                     coll_logq("bad --redis URI (redis://HOST[:PORT][/DB])"));
            goto out;
        }
        s->use_redis = 1;
    }
    if (setup_fds(s) < 0) {
        coll_log(COLL_LOG_ERROR, "event=setup_error error=%s", coll_logq(strerror(errno)));
        goto out;
    }
    if (coll_prepare_dir(o->dir, 0, err, sizeof err) < 0 ||
        coll_store_open(&s->store, o->dir, err, sizeof err) < 0) {
        coll_log(COLL_LOG_ERROR, "event=dir_error error=%s", coll_logq(err));
        goto out;
    }
    s->store.sync_each = !o->fsync_batch;
    /* Bind before the replay so senders can queue meanwhile. */
    if (open_socket(s) < 0)
        goto out;
    coll_log(COLL_LOG_INFO,
             "event=start version=%s socket=%s dir=%s idle_ms=%u fsync=%s stats=%s",
             LDPROF_VERSION, coll_logq(o->socket_path), coll_logq(o->dir), o->idle_ms,
             o->fsync_batch ? "batch" : "each", coll_logq(s->stats_path));
    coll_log(COLL_LOG_INFO,
             "event=limits max_open_traces=%zu max_spans_per_trace=%zu max_trace_age_ms=%llu "
             "max_traces=%zu max_age_ms=%llu",
             o->max_open_traces, o->max_spans_per_trace,
             (unsigned long long)o->max_trace_age_ms, o->max_traces,
             (unsigned long long)o->max_age_ms);
    remove_stale_tmp(s);
    /* Every trace opened from now on has last_ms, first_ms >= this. */
    s->min_ok = 1;
    s->min_last = s->min_first = now_ms();
    replay_journal(s);
    write_stats_file(s, 1);
    write_ready(s);

    int stopping = 0;
    while (!stopping) {
        struct pollfd pf[4] = {
            {.fd = s->sock, .events = POLLIN},
            {.fd = s->sigfd, .events = POLLIN},
            {.fd = s->tfd, .events = POLLIN},
        };
        struct pollfd *pq = &pf[3];
        pq->fd = s->sync_busy ? s->sync_efd : -1;
        pq->events = POLLIN;
        pq->revents = 0;
        if (poll(pf, 4, s->flush_more && !s->sync_busy ? 0 : -1) < 0) {
            if (errno == EINTR)
                continue;
            coll_log(COLL_LOG_ERROR, "event=poll_error error=%s", coll_logq(strerror(errno)));
            break;
        }
        if (pf[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGHUP) {
                    if (coll_log_reopen() < 0)
                        coll_log(COLL_LOG_ERROR, "event=log_reopen_error error=%s",
                                 coll_logq(strerror(errno)));
                    else
                        coll_log(COLL_LOG_INFO, "event=log_reopened");
                } else {
                    coll_log(COLL_LOG_INFO, "event=stopping signal=%s sender_pid=%u",
                             si.ssi_signo == SIGTERM ? "TERM" : "INT", si.ssi_pid);
                    stopping = 1;
                }
            }
        }
        if (pf[0].revents & POLLIN)
            drain(s, RECV_BATCH);
        if (pf[3].revents & POLLIN)
            sync_finish(s);
        if (pf[2].revents & POLLIN) {
            uint64_t exp;
            if (read(s->tfd, &exp, sizeof exp) > 0)
                tick(s);
        } else if (s->flush_more && !s->sync_busy) {
            flush_traces(s, 0);
        }
    }

    /* Clean stop: take what is queued, stop listening, write everything. */
    drain(s, DRAIN_MAX);
    close_socket(s);
    int failed = flush_traces(s, 1);
    coll_store_journal_sync(&s->store);
    status = failed ? 1 : 0;
    if (failed)
        coll_log(COLL_LOG_ERROR, "event=unflushed traces=%d note=%s", failed,
                 coll_logq("spans kept in the journal; replayed at next start"));
    log_stats(s, "exit");
    if (s->use_redis)
        coll_log(COLL_LOG_INFO, "event=redis_stats uri=%s pushed=%llu failed=%llu errors=%llu",
                 coll_logq(s->redis.uri), (unsigned long long)s->redis.pushed,
                 (unsigned long long)s->redis.failed, (unsigned long long)s->redis.errors);
    write_stats_file(s, 0);
out:
    if (o->ready_file)
        unlink(o->ready_file);
    close_socket(s);
    teardown(s);
    coll_log(COLL_LOG_INFO, "event=exit status=%d", status);
    return status;
}
