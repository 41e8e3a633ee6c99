/*
 * collector/server.c - ldprof-collectord: ingest, assembly, flushing,
 * journal, stats (see server.h and docs/formats.md).
 *
 * Flow of one datagram: recv -> coll_decode (whole datagram or nothing) ->
 * events for every span -> ONE journal write with a line per span -> spans
 * added to their trace in memory.  The tick flushes a trace that received
 * nothing for idle_ms: it is merged with its existing dump (late spans),
 * rendered, and written atomically; then it leaves memory.  When memory
 * holds no trace any more the journal is emptied (after the directory
 * fsync), when it grows past journal_max it is compacted to the spans still
 * in memory.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "json.h"
#include "log.h"
#include "paths.h"
#include "redis_store.h"
#include "store.h"
#include "trace.h"

#define MAX_SENDERS 256
#define RECV_BATCH 256
#define REJECT_LOG_PER_MIN 10
#define STATS_LOG_MS 60000
#define STATS_FILE_MS 1000
#define DRAIN_MAX 100000
#define FLUSH_BUDGET_MS 20

struct sender {
    uint32_t pid;
    uint64_t dgrams, spans, bytes, dropped, last_ms;
    char service[64], exe[256];
};

struct counters {
    uint64_t dgrams, accepted, rejected, spans, bytes, stats_msgs;
    uint64_t rejected_by[COLL_DEC__COUNT];
    uint64_t written, rewritten, unchanged, write_errors, report_errors;
    uint64_t journal_errors, replayed_spans, journal_bad_lines, forced_flushes;
};

struct srv {
    const struct coll_opts *o;
    char stats_path[PATH_MAX];
    char host[256];
    int sock, sigfd, tfd, lockfd;
    dev_t sock_dev;
    ino_t sock_ino;
    struct coll_store store;
    /* traces by base_id: chained hash table */
    struct coll_trace **tb;
    size_t nb, ntraces, pending_spans;
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
    int use_redis;  /* --redis given */
    struct coll_redis redis;
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

static size_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

static int table_grow(struct srv *s)
{
    size_t nb = s->nb ? s->nb * 2 : 1024;
    struct coll_trace **tb = calloc(nb, sizeof *tb);
    if (!tb)
        return -1;
    for (size_t i = 0; i < s->nb; i++) {
        struct coll_trace *t = s->tb[i];
        while (t) {
            struct coll_trace *next = t->next;
            size_t h = hash_id(t->base_id) % nb;
            t->next = tb[h];
            tb[h] = t;
            t = next;
        }
    }
    free(s->tb);
    s->tb = tb;
    s->nb = nb;
    return 0;
}

static struct coll_trace *table_get(struct srv *s, const char *base_id, int create)
{
    if (s->nb) {
        for (struct coll_trace *t = s->tb[hash_id(base_id) % s->nb]; t; t = t->next)
            if (strcmp(t->base_id, base_id) == 0)
                return t;
    }
    if (!create)
        return NULL;
    if ((s->ntraces + 1 > s->nb * 2) && table_grow(s) < 0)
        return NULL;
    struct coll_trace *t = coll_trace_new(base_id);
    if (!t)
        return NULL;
    size_t h = hash_id(base_id) % s->nb;
    t->next = s->tb[h];
    s->tb[h] = t;
    s->ntraces++;
    return t;
}

static void table_remove(struct srv *s, struct coll_trace *t)
{
    struct coll_trace **pp = &s->tb[hash_id(t->base_id) % s->nb];
    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp)
        *pp = t->next;
    s->ntraces--;
    s->pending_spans -= t->n < s->pending_spans ? t->n : s->pending_spans;
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
    int rewrite = 0, rc = -1;
    coll_buf_init(&old);
    coll_buf_init(&out);

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
            int changed = coll_trace_merge(merged, t);
            if (changed < 0)
                goto out;
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

    struct coll_report_ctx ctx;
    if (coll_trace_render(use, &out, &ctx) < 0) {
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
             t->base_id, use->n, out.len, rewrite);
    rc = 0;
out:
    coll_trace_free(merged);
    coll_buf_free(&old);
    coll_buf_free(&out);
    return rc;
}

/* Rewrite the journal with the spans still in memory.  Only after every
 * flushed dump is durable (caller ran coll_store_sync_dir). */
static void journal_compact(struct srv *s)
{
    if (s->ntraces == 0) {
        if (s->store.jsize > 0 && coll_store_journal_truncate(&s->store) < 0)
            coll_log(COLL_LOG_ERROR, "event=journal_truncate_error error=%s",
                     coll_logq(strerror(errno)));
        return;
    }
    struct coll_buf b;
    coll_buf_init(&b);
    for (size_t i = 0; i < s->nb; i++)
        for (struct coll_trace *t = s->tb[i]; t; t = t->next)
            for (size_t k = 0; k < t->n; k++)
                if (coll_trace_journal_line(t, k, &b) < 0 || coll_buf_addc(&b, '\n') < 0)
                    goto fail;
    if (coll_store_journal_replace(&s->store, b.p ? b.p : "", b.len) < 0)
        goto fail;
    /* The journal now holds exactly one line per span in memory: make the
     * byte accounting exact again (duplicates were merged). */
    s->pending_jbytes = 0;
    for (size_t i = 0; i < s->nb; i++)
        for (struct coll_trace *t = s->tb[i]; t; t = t->next) {
            struct coll_buf one;
            coll_buf_init(&one);
            for (size_t k = 0; k < t->n; k++) {
                coll_trace_journal_line(t, k, &one);
                coll_buf_addc(&one, '\n');
            }
            t->jbytes = one.len;
            s->pending_jbytes += one.len;
            coll_buf_free(&one);
        }
    coll_log(COLL_LOG_INFO, "event=journal_compacted bytes=%zu traces=%zu", b.len, s->ntraces);
    coll_buf_free(&b);
    return;
fail:
    coll_log(COLL_LOG_ERROR, "event=journal_compact_error error=%s",
             coll_logq(b.oom ? "out of memory" : strerror(errno)));
    coll_buf_free(&b);
}

/* Flush traces idle for idle_ms (all when `all`), then keep the journal
 * small.  Returns the number of traces that failed.
 *
 * Unless `all`, one call spends at most FLUSH_BUDGET_MS writing dumps (each
 * costs an fsync) and sets s->flush_more when idle traces remain: the loop
 * then polls the socket without sleeping and calls again.  The kernel
 * queues few datagrams per unix socket (net.unix.max_dgram_qlen), so a long
 * flush pass must not keep the socket unread. */
static int flush_traces(struct srv *s, int all)
{
    uint64_t now = now_ms();
    int flushed = 0, failed = 0;
    s->flush_more = 0;
    for (size_t i = 0; i < s->nb; i++) {
        struct coll_trace *t = s->tb[i];
        while (t) {
            struct coll_trace *next = t->next;
            if (!all && now_ms() - now >= FLUSH_BUDGET_MS) {
                s->flush_more = 1;
                goto done;
            }
            if (all || now - t->last_ms >= s->o->idle_ms) {
                if (flush_trace(s, t) == 0) {
                    table_remove(s, t);
                    flushed++;
                } else {
                    failed++;
                    t->last_ms = now; /* retry after another idle period */
                }
            }
            t = next;
        }
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

static void reject(struct srv *s, int err, const char *detail, uint32_t pid, size_t len)
{
    s->c.rejected++;
    if (err > 0 && err < COLL_DEC__COUNT)
        s->c.rejected_by[err]++;
    s->change_gen++;
    if (s->reject_logged < REJECT_LOG_PER_MIN) {
        s->reject_logged++;
        coll_log(COLL_LOG_WARN, "event=reject reason=%s pid=%u bytes=%zu detail=%s",
                 coll_dec_reason(err), pid, len, coll_logq(detail));
    } else {
        s->reject_suppressed++;
    }
}

static void add_span(struct srv *s, const char *base_id, json_t *start, json_t *stop,
                     uint64_t now, size_t jbytes)
{
    struct coll_trace *t = table_get(s, base_id, 1);
    if (!t) {
        coll_log(COLL_LOG_ERROR, "event=oom base_id=%s", base_id);
        return;
    }
    size_t before = t->n;
    if (coll_trace_add_span(t, start, stop) < 0)
        coll_log(COLL_LOG_ERROR, "event=bad_span base_id=%s", base_id);
    s->pending_spans += t->n - before;
    t->jbytes += jbytes;
    s->pending_jbytes += jbytes;
    t->last_ms = now;
}

/* Push order of a datagram's spans: the order OSProfiler's pushes of their
 * stop events would have (stop time, oldest first; of two that stop in the
 * same µs the one that started later first, as a child stops before its
 * parent; then datagram order), so that LRANGE gives what trace.h calls the
 * read order. */
struct rorder {
    uint32_t i;
    int64_t stop_us, start_us;
};

static int64_t ev_us(json_t *e)
{
    json_t *t = json_object_get(e, "timestamp");
    int64_t us = 0;
    if (json_is_string(t))
        coll_ts_parse(json_string_value(t), json_string_length(t), &us);
    return us;
}

static int rorder_cmp(const void *a, const void *b)
{
    const struct rorder *x = a, *y = b;
    if (x->stop_us != y->stop_us)
        return x->stop_us < y->stop_us ? -1 : 1;
    if (x->start_us != y->start_us)
        return x->start_us > y->start_us ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* OSProfiler's Redis layout (compat §8): each span's start event, then its
 * stop event (the order OSProfiler pushes them in), one pipeline for the
 * datagram.  A failure is counted and logged; the spans are in the journal
 * and reach their dumps as always. */
static void redis_push_spans(struct srv *s, json_t **ev, char (*ids)[37], uint32_t n,
                             uint64_t now)
{
    size_t cap = 2 * (size_t)n, k = 0;
    const char **keys = calloc(cap ? cap : 1, sizeof *keys);
    const char **vals = calloc(cap ? cap : 1, sizeof *vals);
    size_t *vlens = calloc(cap ? cap : 1, sizeof *vlens);
    struct coll_buf *bufs = calloc(cap ? cap : 1, sizeof *bufs);
    if (!keys || !vals || !vlens || !bufs) {
        s->redis.failed += cap;
        coll_log(COLL_LOG_ERROR, "event=oom what=redis_push");
        goto out;
    }
    struct rorder *ord = calloc(n ? n : 1, sizeof *ord);
    if (!ord) {
        s->redis.failed += cap;
        coll_log(COLL_LOG_ERROR, "event=oom what=redis_push");
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        ord[i].i = i;
        ord[i].stop_us = ev_us(ev[2 * i + 1] ? ev[2 * i + 1] : ev[2 * i]);
        ord[i].start_us = ev_us(ev[2 * i]);
    }
    qsort(ord, n, sizeof *ord, rorder_cmp);
    for (uint32_t x = 0; x < n; x++)
        for (int j = 0; j < 2; j++) {
            uint32_t i = ord[x].i;
            json_t *e = ev[2 * i + j];
            if (!e)
                continue;
            coll_buf_init(&bufs[k]);
            if (coll_json_dump(&bufs[k], e, COLL_JSON_COMPACT) < 0 || bufs[k].oom) {
                coll_buf_free(&bufs[k]);
                s->redis.failed++;
                continue;
            }
            keys[k] = ids[i];
            vals[k] = bufs[k].p;
            vlens[k] = bufs[k].len;
            k++;
        }
    int was_down = s->redis.down;
    uint64_t errors = s->redis.errors;
    if (coll_redis_push(&s->redis, k, keys, vals, vlens, now) < 0) {
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
    for (size_t x = 0; x < k; x++)
        coll_buf_free(&bufs[x]);
    free(ord);
out:
    free(keys);
    free(vals);
    free(vlens);
    free(bufs);
}

static void handle_dgram(struct srv *s, const uint8_t *buf, size_t len)
{
    uint64_t now = now_ms();
    s->c.dgrams++;
    s->c.bytes += len;
    s->change_gen++;
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
    struct sender *snd = sender_get(s, d.hdr.pid, now);
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

    /* Events first, then ONE journal write, then memory. */
    uint32_t n = d.hdr.nrec;
    json_t **ev = calloc(n ? 2 * (size_t)n : 1, sizeof *ev);
    char(*ids)[37] = calloc(n ? n : 1, sizeof *ids);
    size_t *llen = calloc(n ? n : 1, sizeof *llen);
    struct coll_buf lines;
    coll_buf_init(&lines);
    if (!ev || !ids || !llen)
        goto oom;
    struct coll_span sp;
    uint32_t i = 0;
    while (coll_decode_next(&d, &sp)) {
        if (coll_events_build(&d.proc, &sp, s->host, &ev[2 * i], &ev[2 * i + 1]) < 0)
            goto oom;
        coll_uuid_fmt(sp.hdr.base_id, ids[i]);
        size_t before = lines.len;
        if (coll_journal_line(&lines, ids[i], json_object_get(ev[2 * i], "trace_id"),
                              ev[2 * i], ev[2 * i + 1]) < 0 ||
            coll_buf_addc(&lines, '\n') < 0)
            goto oom;
        llen[i] = lines.len - before;
        i++;
    }
    if (coll_store_journal_append(&s->store, lines.p, lines.len) < 0) {
        s->c.journal_errors++;
        coll_log(COLL_LOG_ERROR, "event=journal_write_error error=%s",
                 coll_logq(strerror(errno)));
    }
    if (s->use_redis)
        redis_push_spans(s, ev, ids, i, now);
    for (uint32_t k = 0; k < i; k++)
        add_span(s, ids[k], ev[2 * k], ev[2 * k + 1], now, llen[k]);
    s->c.spans += i;
    snd->spans += i;
    goto out;
oom:
    coll_log(COLL_LOG_ERROR, "event=oom pid=%u spans=%u", d.hdr.pid, n);
out:
    if (ev)
        for (size_t k = 0; k < 2 * (size_t)n; k++)
            json_decref(ev[k]);
    free(ev);
    free(ids);
    free(llen);
    coll_buf_free(&lines);
    if (s->pending_spans > s->o->max_pending) {
        s->c.forced_flushes++;
        coll_log(COLL_LOG_WARN, "event=forced_flush pending_spans=%zu max=%zu",
                 s->pending_spans, s->o->max_pending);
        flush_traces(s, 1);
    }
}

/* Read what is queued, at most `max` datagrams. */
static size_t drain(struct srv *s, size_t max)
{
    static uint8_t buf[LDPROF_WIRE_MAX_DGRAM + 1];
    size_t n = 0;
    while (n < max) {
        ssize_t r = recv(s->sock, buf, sizeof buf, MSG_TRUNC | MSG_DONTWAIT);
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

static void replay_line(void *arg, const char *line, size_t len)
{
    struct replay *r = arg;
    char base_id[64];
    uint8_t raw[16];
    r->lines++;
    json_t *evs = coll_journal_parse(line, len, base_id);
    if (!evs || coll_uuid_parse(base_id, raw) < 0) {
        r->bad++;
        json_decref(evs);
        return;
    }
    struct coll_trace *t = table_get(r->s, base_id, 1);
    if (!t) {
        r->bad++;
        json_decref(evs);
        return;
    }
    size_t before = t->n;
    for (size_t i = 0; i < json_array_size(evs); i++)
        if (coll_trace_add_event(t, json_array_get(evs, i)) < 0)
            r->bad++;
    r->s->pending_spans += t->n - before;
    t->jbytes += len + 1;
    r->s->pending_jbytes += len + 1;
    r->s->c.replayed_spans++;
    t->last_ms = now_ms();
    json_decref(evs);
}

static int replay_journal(struct srv *s)
{
    struct replay r = {.s = s};
    if (s->store.jsize == 0)
        return 0;
    long n = coll_store_journal_read(&s->store, replay_line, &r);
    if (n < 0) {
        coll_log(COLL_LOG_ERROR, "event=journal_read_error error=%s",
                 coll_logq(strerror(errno)));
        return -1;
    }
    s->c.journal_bad_lines += (uint64_t)r.bad;
    size_t traces = s->ntraces;
    uint64_t w0 = s->c.written + s->c.rewritten;
    int failed = flush_traces(s, 1);
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
    for (int i = 1; i < COLL_DEC__COUNT; i++)
        if (s->c.rejected_by[i])
            json_object_set_new(rej, coll_dec_reason(i),
                                json_integer((json_int_t)s->c.rejected_by[i]));
    json_t *snd = json_array();
    for (size_t i = 0; i < s->nsenders; i++) {
        struct sender *x = &s->senders[i];
        json_array_append_new(
            snd, json_pack("{s:i,s:s,s:s,s:I,s:I,s:I,s:I}", "pid", (int)x->pid, "service",
                           x->service, "exe", x->exe, "datagrams", (json_int_t)x->dgrams,
                           "spans", (json_int_t)x->spans, "bytes", (json_int_t)x->bytes,
                           "dropped", (json_int_t)x->dropped));
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

static void tick(struct srv *s)
{
    uint64_t now = now_ms();
    flush_traces(s, 0);
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
        s->reject_window_ms = now;
    }
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
    if (s->sock < 0)
        goto fail;
    strcpy(sa.sun_path, path);
    mode_t old = umask(0177);
    int rc = bind(s->sock, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0 || chmod(path, 0600) < 0)
        goto fail;
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
}

static void teardown(struct srv *s)
{
    for (size_t i = 0; i < s->nb; i++) {
        struct coll_trace *t = s->tb[i];
        while (t) {
            struct coll_trace *next = t->next;
            coll_trace_free(t);
            t = next;
        }
    }
    free(s->tb);
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
    s->sock = s->sigfd = s->tfd = s->lockfd = -1;
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
    replay_journal(s);
    write_stats_file(s, 1);
    write_ready(s);

    int stopping = 0;
    while (!stopping) {
        struct pollfd pf[3] = {
            {.fd = s->sock, .events = POLLIN},
            {.fd = s->sigfd, .events = POLLIN},
            {.fd = s->tfd, .events = POLLIN},
        };
        if (poll(pf, 3, s->flush_more ? 0 : -1) < 0) {
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
        if (pf[2].revents & POLLIN) {
            uint64_t exp;
            if (read(s->tfd, &exp, sizeof exp) > 0)
                tick(s);
        } else if (s->flush_more) {
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
