/*
 * collector/dumptext.c - dump text from held wire records (see dumptext.h).
 *
 * What the reference does, step by step, and what stands for it here:
 *   coll_trace_realize: one span per trace_id, the last record's start
 *       event and the last finished record's stop event -> struct fspan;
 *   coll_trace_events: the read order (trace.h) -> sorting the fspans;
 *   coll_report_build: a node per span in read order, created by its first
 *       event (the stop when there is one), then its other event; the
 *       times in ms from the earliest event; stats per node name; children
 *       and roots in node order, stably sorted by started ms -> computed
 *       from the fspans, children as index ranges;
 *   coll_report_dump: the tree walked from the roots (spans in parent
 *       cycles are not reachable, as in OSProfiler), written with json.c's
 *       indent-2 layout; the events by evtext.c at their depth.
 */
#include "dumptext.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "evtext.h"
#include "ingest.h"
#include "report.h"
#include "trace.h"

#define INDENT 2

struct fspan {
    const struct coll_rawrec *start; /* always set */
    const struct coll_rawrec *stop;  /* NULL: unfinished */
    const struct coll_rawrec *first; /* stop, else start: creates the node */
    const uint8_t *tid;
    int64_t start_us, stop_us, push_us;
    int64_t s_ms, f_ms;
    size_t kid0, nkids; /* children: kids[kid0 .. kid0 + nkids) */
};

struct ctx {
    struct coll_buf *b;
    struct fspan *v;
    size_t *kids;
    const char *host;
    struct coll_buf *etype; /* scratch: a stop event's "exception" value */
};

/* Records by trace_id, then arrival (the index). */
static const struct coll_rawrec *g_recs;
static int cmp_rec_id(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = memcmp(g_recs[x].sp.hdr.trace_id, g_recs[y].sp.hdr.trace_id, 16);
    if (c)
        return c;
    return x < y ? -1 : x > y;
}

/* trace.c's cmp_span: push time newest first, start oldest first, id. */
static int cmp_fspan(const void *a, const void *b)
{
    const struct fspan *x = a, *y = b;
    if (x->push_us != y->push_us)
        return x->push_us > y->push_us ? -1 : 1;
    if (x->start_us != y->start_us)
        return x->start_us < y->start_us ? -1 : 1;
    return memcmp(x->tid, y->tid, 16);
}

static const struct fspan *g_spans;
static int cmp_span_id(const void *a, const void *b)
{
    return memcmp(g_spans[*(const size_t *)a].tid, g_spans[*(const size_t *)b].tid, 16);
}

/* Stable by started ms (node index breaks ties: lists are filled in node
 * order). */
static int cmp_kid(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    if (g_spans[x].s_ms != g_spans[y].s_ms)
        return g_spans[x].s_ms < g_spans[y].s_ms ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int nl(struct coll_buf *b, int level)
{
    return coll_buf_newline(b, INDENT, level);
}

/* `,` (unless first), newline, indentation of `level`, `"key": ` (klen
 * bytes of plain ASCII). */
static int memn(struct coll_buf *b, const char *key, size_t klen, int first, int level)
{
    size_t n = (size_t)INDENT * (size_t)level, need = n + klen + 6;
    if ((b->cap - b->len <= need || b->oom) && coll_buf_reserve(b, need) < 0)
        return -1;
    char *o = b->p + b->len;
    if (!first)
        *o++ = ',';
    *o++ = '\n';
    memset(o, ' ', n);
    o += n;
    *o++ = '"';
    memcpy(o, key, klen);
    o += klen;
    memcpy(o, "\": ", 3);
    o += 3;
    *o = '\0';
    b->len = (size_t)(o - b->p);
    return 0;
}

#define mem(b, lit, first, level) memn(b, lit, sizeof lit - 1, first, level)

/* `"meta.raw_payload.<kind>-<suffix>": ` member (first never). */
static int payload_key(struct coll_buf *b, const struct coll_rawrec *r, const char *suffix,
                       int level)
{
    char k[64];
    const char *kind = coll_kind_name(r->sp.hdr.kind);
    size_t kl = strlen(kind), sl = strlen(suffix);
    memcpy(k, "meta.raw_payload.", 17);
    memcpy(k + 17, kind, kl);
    memcpy(k + 17 + kl, suffix, sl);
    return memn(b, k, 17 + kl + sl, 0, level);
}

static int write_node(struct ctx *c, size_t i, int level);

static int write_kids(struct ctx *c, const size_t *kids, size_t n, int level)
{
    struct coll_buf *b = c->b;
    if (n == 0)
        return coll_buf_put(b, "[]", 2);
    if (coll_buf_putc(b, '[') < 0)
        return -1;
    for (size_t k = 0; k < n; k++) {
        if ((k && coll_buf_putc(b, ',') < 0) || nl(b, level + 1) < 0 ||
            write_node(c, kids[k], level + 1) < 0)
            return -1;
    }
    if (nl(b, level) < 0)
        return -1;
    return coll_buf_putc(b, ']');
}

/* One report node, an object `level` deep. */
static int write_node(struct ctx *c, size_t i, int level)
{
    struct coll_buf *b = c->b;
    const struct fspan *s = &c->v[i];
    const struct coll_rawrec *f = s->first;
    const char *kind = coll_kind_name(f->sp.hdr.kind);
    int il = level + 2; /* the info members */
    if (il > COLL_JSON_MAX_DEPTH)
        return -1;
    if (coll_buf_putc(b, '{') < 0 || mem(b, "info", 1, level + 1) < 0 ||
        coll_buf_putc(b, '{') < 0 || mem(b, "name", 1, il) < 0 || coll_buf_putc(b, '"') < 0 ||
        coll_buf_put(b, kind, strlen(kind)) < 0 || coll_buf_putc(b, '"') < 0 ||
        mem(b, "project", 0, il) < 0 || coll_text_opt_str(b, &f->proc->project) < 0 ||
        mem(b, "service", 0, il) < 0 || coll_text_opt_str(b, &f->proc->service) < 0 ||
        mem(b, "host", 0, il) < 0)
        return -1;
    if (f->proc->host.p ? coll_json_string(b, f->proc->host.p, f->proc->host.len) < 0
                        : coll_json_string(b, c->host, strlen(c->host)) < 0)
        return -1;
    if (s->stop) {
        struct coll_buf *et = c->etype;
        coll_buf_reset(et);
        if (payload_key(b, s->stop, "-stop", il) < 0 ||
            coll_event_text(b, s->stop->proc, s->stop->pid, &s->stop->sp, c->host, 1, INDENT,
                            il, et, il) < 0 ||
            mem(b, "finished", 0, il) < 0 || coll_buf_int(b, s->f_ms) < 0 ||
            mem(b, "exception", 0, il) < 0 || coll_buf_put(b, et->p, et->len) < 0)
            return -1;
    }
    if (payload_key(b, s->start, "-start", il) < 0 ||
        coll_event_text(b, s->start->proc, s->start->pid, &s->start->sp, c->host, 0, INDENT,
                        il, NULL, 0) < 0 ||
        mem(b, "started", 0, il) < 0 || coll_buf_int(b, s->s_ms) < 0)
        return -1;
    if (!s->stop && (mem(b, "finished", 0, il) < 0 || coll_buf_int(b, s->f_ms) < 0))
        return -1;
    if (nl(b, level + 1) < 0 || coll_buf_putc(b, '}') < 0 ||
        mem(b, "trace_id", 0, level + 1) < 0 || coll_text_uuid(b, s->tid) < 0 ||
        mem(b, "parent_id", 0, level + 1) < 0 || coll_text_uuid(b, f->sp.hdr.parent_id) < 0 ||
        mem(b, "children", 0, level + 1) < 0 ||
        write_kids(c, c->kids + s->kid0, s->nkids, level + 1) < 0)
        return -1;
    if (nl(b, level) < 0)
        return -1;
    return coll_buf_putc(b, '}');
}

int coll_dump_text(const struct coll_trace *t, struct coll_buf *out, const json_t *marker)
{
    size_t nr = coll_raw_count(t);
    if (t->n != 0 || nr == 0 || (t->max_spans && nr > t->max_spans))
        return 1;
    int rc = -1;
    struct coll_buf et;
    coll_buf_init(&et);
    struct coll_rawrec *recs = malloc(nr * sizeof *recs);
    size_t *idx = malloc(nr * sizeof *idx);
    struct fspan *v = malloc(nr * sizeof *v);
    size_t *byid = malloc(nr * sizeof *byid);
    size_t *par = malloc(nr * sizeof *par);
    size_t *kids = malloc(nr * sizeof *kids);
    size_t *roots = malloc(nr * sizeof *roots);
    if (!recs || !idx || !v || !byid || !par || !kids || !roots)
        goto out;
    coll_raw_records(t, recs);

    /* ---- one span per trace_id (coll_trace_realize + add_event) */
    for (size_t i = 0; i < nr; i++)
        idx[i] = i;
    g_recs = recs;
    qsort(idx, nr, sizeof *idx, cmp_rec_id);
    size_t n = 0;
    for (size_t i = 0; i < nr;) {
        size_t j = i;
        struct fspan *s = &v[n++];
        memset(s, 0, sizeof *s);
        while (j < nr && memcmp(recs[idx[j]].sp.hdr.trace_id, recs[idx[i]].sp.hdr.trace_id,
                                16) == 0) {
            const struct coll_rawrec *r = &recs[idx[j]];
            s->start = r;
            if (!(r->sp.hdr.flags & LDPROF_SPAN_UNFINISHED))
                s->stop = r;
            j++;
        }
        s->tid = s->start->sp.hdr.trace_id;
        s->start_us = (int64_t)(s->start->sp.hdr.start_ns / 1000);
        s->stop_us = s->stop ? (int64_t)(s->stop->sp.hdr.end_ns / 1000) : s->start_us;
        s->push_us = s->stop_us;
        s->first = s->stop ? s->stop : s->start;
        i = j;
    }

    /* ---- read order, times (coll_trace_events, _append_results) */
    qsort(v, n, sizeof *v, cmp_fspan);
    int64_t started_at = INT64_MAX, finished_at = INT64_MIN, last_started = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        int64_t lo = v[i].start_us, hi = v[i].start_us;
        if (v[i].stop) {
            lo = v[i].stop_us < lo ? v[i].stop_us : lo;
            hi = v[i].stop_us > hi ? v[i].stop_us : hi;
        }
        started_at = lo < started_at ? lo : started_at;
        finished_at = hi > finished_at ? hi : finished_at;
        last_started = v[i].start_us > last_started ? v[i].start_us : last_started;
    }
    for (size_t i = 0; i < n; i++) {
        v[i].s_ms = coll_report_msec(v[i].start_us - started_at);
        v[i].f_ms = v[i].stop ? coll_report_msec(v[i].stop_us - started_at) : v[i].s_ms;
    }

    /* ---- _build_tree: parents, children in node order, stable sorts */
    for (size_t i = 0; i < n; i++)
        byid[i] = i;
    g_spans = v;
    qsort(byid, n, sizeof *byid, cmp_span_id);
    size_t nroots = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *pid = v[i].first->sp.hdr.parent_id;
        size_t lo = 0, hi = n;
        par[i] = SIZE_MAX;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = memcmp(v[byid[mid]].tid, pid, 16);
            if (c == 0) {
                par[i] = byid[mid];
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (par[i] == SIZE_MAX)
            roots[nroots++] = i;
        else
            v[par[i]].nkids++;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        v[i].kid0 = off;
        off += v[i].nkids;
        v[i].nkids = 0;
    }
    for (size_t i = 0; i < n; i++)
        if (par[i] != SIZE_MAX) {
            struct fspan *p = &v[par[i]];
            kids[p->kid0 + p->nkids++] = i;
        }
    for (size_t i = 0; i < n; i++)
        if (v[i].nkids > 1)
            qsort(kids + v[i].kid0, v[i].nkids, sizeof *kids, cmp_kid);
    qsort(roots, nroots, sizeof *roots, cmp_kid);

    /* ---- the report, indent 2 */
    struct ctx c = {out, v, kids, coll_ingest_host(), &et};
    struct coll_buf *b = out;
    /* about 1.9 KB of dump per span (zaqard-like spans): grow once */
    if (coll_buf_reserve(b, nr * 2048 + 1024) < 0)
        goto out;
    if (coll_buf_putc(b, '{') < 0 || mem(b, "info", 1, 1) < 0 ||
        coll_buf_putc(b, '{') < 0 || mem(b, "name", 1, 2) < 0 ||
        coll_buf_put(b, "\"total\"", 7) < 0 || mem(b, "started", 0, 2) < 0 ||
        coll_buf_putc(b, '0') < 0 || mem(b, "finished", 0, 2) < 0 ||
        coll_buf_int(b, coll_report_msec(finished_at - started_at)) < 0 ||
        mem(b, "last_trace_started", 0, 2) < 0 ||
        coll_buf_int(b, coll_report_msec(last_started - started_at)) < 0 || nl(b, 1) < 0 ||
        coll_buf_putc(b, '}') < 0 || mem(b, "children", 0, 1) < 0 ||
        write_kids(&c, roots, nroots, 1) < 0 || mem(b, "stats", 0, 1) < 0)
        goto out;
    /* stats: per node name (a kind name), in node order */
    struct {
        const char *name;
        int64_t count, dur;
    } st[LDPROF_KIND_MAX + 1];
    size_t nst = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = coll_kind_name(v[i].first->sp.hdr.kind);
        size_t k = 0;
        while (k < nst && st[k].name != name)
            k++;
        if (k == nst) {
            st[nst].name = name;
            st[nst].count = 0;
            st[nst].dur = 0;
            nst++;
        }
        st[k].count++;
        st[k].dur += v[i].f_ms - v[i].s_ms;
    }
    if (coll_buf_putc(b, '{') < 0)
        goto out;
    for (size_t k = 0; k < nst; k++)
        if (memn(b, st[k].name, strlen(st[k].name), k == 0, 2) < 0 || coll_buf_putc(b, '{') < 0 ||
            mem(b, "count", 1, 3) < 0 || coll_buf_int(b, st[k].count) < 0 ||
            mem(b, "duration", 0, 3) < 0 || coll_buf_int(b, st[k].dur) < 0 || nl(b, 2) < 0 ||
            coll_buf_putc(b, '}') < 0)
            goto out;
    if (nl(b, 1) < 0 || coll_buf_putc(b, '}') < 0)
        goto out;
    if (marker && (mem(b, "ldprof", 0, 1) < 0 || coll_json_dump_at(b, marker, INDENT, 1) < 0))
        goto out;
    if (nl(b, 0) < 0 || coll_buf_putc(b, '}') < 0 || coll_buf_putc(b, '\n') < 0)
        goto out;
    rc = b->oom ? -1 : 0;
out:
    coll_buf_free(&et);
    free(recs);
    free(idx);
    free(v);
    free(byid);
    free(par);
    free(kids);
    free(roots);
    return rc;
}
