/*
 * collector/ingest.c - raw span records held per trace (see ingest.h).
 */
#include "ingest.h"

#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "events.h"
#include "json.h"
#include "store.h"
#include "trace.h"

/* A process block shared by the records of its datagrams. */
struct rproc {
    unsigned refs;
    uint16_t len;
    struct coll_proc p; /* points into bytes */
    uint8_t bytes[];
};

/* One held record: head, then rec_len bytes, padded to 8. */
struct rent {
    struct rproc *proc;
    uint32_t len;
    uint32_t pid; /* the datagram header's */
};

/* The records of one trace, back to back in one block grown by half its
 * size (moved: entries hold no pointers into the block), which wastes
 * about a fifth of it on average.  The block starts at RAW_FIRST bytes,
 * room for the 5 to 10 spans of a typical request. */
struct coll_raw {
    size_t count, used, cap;
    long cls; /* size class of the block, -1: from malloc (a long: keeps
               * data[] 8-byte aligned for struct rent) */
    unsigned char data[];
};

_Static_assert(offsetof(struct coll_raw, data) % 8 == 0, "records are 8-byte aligned");

#define RAW_FIRST 1024
#define PROC_CACHE 16

/* Blocks of the NCLASS sizes RAW_FIRST x 1.5^k (rounded to 64 bytes) are
 * carved from REGION-byte mappings populated when mapped (MAP_POPULATE:
 * one system call instead of 256 page faults), and kept on a free list per
 * size when released (never unmapped: the memory is bounded by the peak of
 * spans held, and reused without page faults).  Faulting in 4 KiB pages
 * one by one was a third of the ingest time of a fresh collector; huge
 * pages (MADV_HUGEPAGE) were as fast on average but stalled for
 * milliseconds zeroing them (docs/performance.md §5).  Larger blocks
 * (traces of more than ~250 spans) come from malloc. */
#define NCLASS 12
#define REGION (1u << 20)

static size_t class_bytes[NCLASS];
static void *free_list[NCLASS];
static unsigned char *reg_cur, *reg_end;

static void classes_init(void)
{
    size_t b = RAW_FIRST;
    for (int k = 0; k < NCLASS; k++) {
        class_bytes[k] = (b + 63) & ~(size_t)63;
        b += b / 2;
    }
}

/* The smallest class holding `bytes`, or -1. */
static int block_class(size_t bytes)
{
    for (int k = 0; k < NCLASS; k++)
        if (bytes <= class_bytes[k])
            return k;
    return -1;
}

static void *block_alloc(int k)
{
    if (free_list[k]) {
        void *p = free_list[k];
        free_list[k] = *(void **)p;
        return p;
    }
    size_t n = class_bytes[k];
    if ((size_t)(reg_end - reg_cur) < n) {
        void *r = mmap(NULL, REGION, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (r == MAP_FAILED)
            return NULL;
        reg_cur = r;
        reg_end = reg_cur + REGION;
    }
    void *p = reg_cur;
    reg_cur += n;
    return p;
}

static void raw_release(struct coll_raw *r)
{
    if (r->cls < 0) {
        free(r);
        return;
    }
    *(void **)r = free_list[r->cls];
    free_list[r->cls] = r;
}

static char fallback_host[256];
static struct rproc *proc_cache[PROC_CACHE];
static unsigned proc_next;

void coll_ingest_init(const char *host)
{
    snprintf(fallback_host, sizeof fallback_host, "%s", host ? host : "");
    if (!class_bytes[0])
        classes_init();
    /* Keep freed heap (up to 64 MiB) instead of giving it back after each
     * flush: the next spans reuse it without page faults.  Grow the heap
     * 4 MiB at a time. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 4 << 20);
}

static void proc_put(struct rproc *p)
{
    if (p && --p->refs == 0)
        free(p);
}

/* The shared copy of the process block of `d` (a new reference). */
static struct rproc *proc_get(const struct coll_dec *d)
{
    const uint8_t *b = d->buf + sizeof(struct ldprof_wire_hdr);
    uint16_t len = d->hdr.proc_len;
    for (unsigned i = 0; i < PROC_CACHE; i++) {
        struct rproc *p = proc_cache[(proc_next + PROC_CACHE - 1 - i) % PROC_CACHE];
        if (p && p->len == len && memcmp(p->bytes, b, len) == 0) {
            p->refs++;
            return p;
        }
    }
    struct rproc *p = malloc(sizeof *p + len);
    if (!p)
        return NULL;
    p->refs = 2; /* the cache's and the caller's */
    p->len = len;
    memcpy(p->bytes, b, len);
    coll_decode_proc(p->bytes, len, &p->p);
    proc_put(proc_cache[proc_next]);
    proc_cache[proc_next] = p;
    proc_next = (proc_next + 1) % PROC_CACHE;
    return p;
}

static size_t ent_size(size_t len)
{
    return (sizeof(struct rent) + len + 7) & ~(size_t)7;
}

int coll_raw_add(struct coll_trace *t, const struct coll_dec *d, const struct coll_span *sp)
{
    size_t len = sizeof(struct ldprof_wire_span) + sp->info_len;
    size_t need = ent_size(len);
    struct coll_raw *r = t->raw;
    if (!r || r->cap - r->used < need) {
        size_t used = r ? r->used : 0;
        size_t total = r ? sizeof *r + r->cap + r->cap / 2 : RAW_FIRST;
        while (total - sizeof *r < used + need)
            total += total / 2;
        if (!class_bytes[0])
            classes_init();
        int k = block_class(total);
        struct coll_raw *n;
        if (k >= 0) {
            n = block_alloc(k);
            total = class_bytes[k];
        } else {
            n = malloc(total);
        }
        if (!n)
            return -1;
        n->cls = k;
        n->cap = total - sizeof *n;
        n->count = r ? r->count : 0;
        n->used = used;
        if (r) {
            memcpy(n->data, r->data, used);
            raw_release(r);
        }
        t->raw = r = n;
    }
    struct rproc *p = proc_get(d);
    if (!p)
        return -1;
    struct rent *e = (struct rent *)(void *)(r->data + r->used);
    e->proc = p;
    e->len = (uint32_t)len;
    e->pid = d->hdr.pid;
    /* The record head as it was on the wire, then its info bytes. */
    memcpy((unsigned char *)(e + 1), sp->info - sizeof(struct ldprof_wire_span), len);
    r->used += need;
    r->count++;
    return 0;
}

size_t coll_raw_count(const struct coll_trace *t)
{
    return t->raw ? t->raw->count : 0;
}

void coll_raw_records(const struct coll_trace *t, struct coll_rawrec *v)
{
    const struct coll_raw *r = t->raw;
    if (!r)
        return;
    size_t i = 0;
    for (size_t off = 0; off < r->used; i++) {
        const struct rent *e = (const struct rent *)(const void *)(r->data + off);
        v[i].proc = &e->proc->p;
        v[i].pid = e->pid;
        coll_decode_record((const uint8_t *)(e + 1), &v[i].sp);
        off += ent_size(e->len);
    }
}

const char *coll_ingest_host(void)
{
    return fallback_host;
}

void coll_raw_free(struct coll_raw *r)
{
    if (!r)
        return;
    for (size_t off = 0; off < r->used;) {
        struct rent *e = (struct rent *)(void *)(r->data + off);
        proc_put(e->proc);
        off += ent_size(e->len);
    }
    raw_release(r);
}

int coll_trace_realize(struct coll_trace *t)
{
    struct coll_raw *r = t->raw;
    int rc = 0;
    if (!r)
        return 0;
    t->raw = NULL; /* coll_trace_add_span must not realize again */
    for (size_t off = 0; off < r->used;) {
        struct rent *e = (struct rent *)(void *)(r->data + off);
        struct coll_span sp;
        json_t *start, *stop;
        coll_decode_record((const uint8_t *)(e + 1), &sp);
        if (coll_events_build(&e->proc->p, e->pid, &sp, fallback_host, &start, &stop) < 0) {
            rc = -1;
        } else {
            if (coll_trace_add_span(t, start, stop) < 0)
                rc = -1;
            json_decref(start);
            json_decref(stop);
        }
        off += ent_size(e->len);
    }
    coll_raw_free(r);
    return rc;
}

/* Close the datagram entry that starts at out->p + f (its frame head):
 * fill in the lengths and the record count, add the "\n". */
static int dgram_close(struct coll_buf *out, size_t f, uint32_t nrec)
{
    if (out->oom)
        return -1;
    size_t len = out->len - f - 8;
    coll_put_le(out->p + f + 4, len, 4);       /* frame: datagram bytes */
    coll_put_le(out->p + f + 8 + 8, len, 4);   /* hdr.len */
    coll_put_le(out->p + f + 8 + 16, nrec, 4); /* hdr.nrec */
    return coll_buf_addc(out, '\n');
}

int coll_trace_journal_entries(const struct coll_trace *t, struct coll_buf *out)
{
    for (size_t i = 0; i < t->n; i++)
        if (coll_trace_journal_line(t, i, out) < 0 || coll_buf_addc(out, '\n') < 0)
            return -1;
    const struct coll_raw *r = t->raw;
    if (!r)
        return 0;
    const struct rproc *cur = NULL;
    uint32_t cur_pid = 0, nrec = 0;
    size_t f = 0, dlen = 0;
    for (size_t off = 0; off < r->used;) {
        const struct rent *e = (const struct rent *)(const void *)(r->data + off);
        if (nrec &&
            (e->proc != cur || e->pid != cur_pid || dlen + e->len > LDPROF_WIRE_MAX_DGRAM)) {
            if (dgram_close(out, f, nrec) < 0)
                return -1;
            nrec = 0;
        }
        if (!nrec) {
            /* Frame head and datagram header; lengths and nrec filled in by
             * dgram_close.  dropped is 0: a replay does not read it. */
            char head[8 + sizeof(struct ldprof_wire_hdr)];
            memset(head, 0, sizeof head);
            memcpy(head, COLL_JOURNAL_DGRAM_MAGIC, 4);
            coll_put_le(head + 8, LDPROF_WIRE_MAGIC, 4);
            coll_put_le(head + 8 + 4, LDPROF_WIRE_VERSION, 2);
            coll_put_le(head + 8 + 6, LDPROF_MSG_SPANS, 2);
            coll_put_le(head + 8 + 12, e->pid, 4);
            coll_put_le(head + 8 + 20, e->proc->len, 2);
            f = out->len;
            coll_buf_add(out, head, sizeof head);
            coll_buf_add(out, e->proc->bytes, e->proc->len);
            cur = e->proc;
            cur_pid = e->pid;
            dlen = sizeof(struct ldprof_wire_hdr) + e->proc->len;
        }
        coll_buf_add(out, (const unsigned char *)(e + 1), e->len);
        dlen += e->len;
        nrec++;
        off += ent_size(e->len);
    }
    return dgram_close(out, f, nrec);
}

int coll_trace_take(struct coll_trace *t, const struct coll_dec *d, const struct coll_span *sp,
                    const char *host)
{
    if (!t->max_spans || coll_trace_nspans(t) < t->max_spans)
        return coll_raw_add(t, d, sp) < 0 ? COLL_TAKE_OOM : 0;
    json_t *start = NULL, *stop = NULL;
    int rc = 0;
    if (coll_events_build(&d->proc, d->hdr.pid, sp, host, &start, &stop) < 0 ||
        coll_trace_add_span(t, start, stop) < 0)
        rc = COLL_TAKE_BAD;
    json_decref(start);
    json_decref(stop);
    return rc;
}
