/*
 * collector/evtext.c - span record -> event JSON text (see evtext.h).
 *
 * The info object is assembled as a tree of nodes (indices into one
 * scratch array, reused for every event) with the semantics
 * coll_info_set_dotted() gets from jansson objects: a key set again keeps
 * its first position, a JSON object value can be nested into, a path that
 * runs into a non-object is kept flat at the top.  Then the tree, and the
 * rest of the event, are written with json.c's rules.
 */
#include "evtext.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "events.h"

enum { N_OBJ, N_STR, N_INT, N_JSON, N_TRUE };

struct inode {
    const char *key;
    size_t klen;
    int type;
    int64_t ival;      /* N_INT */
    const char *s;     /* N_STR: raw bytes (sanitised when written) */
    size_t slen;
    const json_t *jv;  /* N_JSON (owned by the scratch's jvals) */
    int first, last;   /* N_OBJ: children, -1 when none */
    int next;          /* next sibling, -1 */
};

static struct inode *nv;
static size_t nn, ncap;
static json_t **jvals;
static size_t njv, jcap;

static void scratch_reset(void)
{
    for (size_t i = 0; i < njv; i++)
        json_decref(jvals[i]);
    njv = 0;
    nn = 0;
}

static int node_new(int type)
{
    if (nn == ncap) {
        size_t cap = ncap ? ncap * 2 : 64;
        struct inode *v = realloc(nv, cap * sizeof *v);
        if (!v || cap > (size_t)1 << 30)
            return -1;
        nv = v;
        ncap = cap;
    }
    struct inode *x = &nv[nn];
    memset(x, 0, sizeof *x);
    x->type = type;
    x->first = x->last = x->next = -1;
    return (int)nn++;
}

static int keep_json(json_t *v)
{
    if (njv == jcap) {
        size_t cap = jcap ? jcap * 2 : 16;
        json_t **p = realloc(jvals, cap * sizeof *p);
        if (!p)
            return -1;
        jvals = p;
        jcap = cap;
    }
    jvals[njv++] = v;
    return 0;
}

/* Linear: a record's info holds at most LDPROF_WIRE_MAX_INFO bytes (2048),
 * so at most a few hundred fields. */
static int find_child(int obj, const char *key, size_t klen)
{
    for (int c = nv[obj].first; c >= 0; c = nv[c].next)
        if (nv[c].klen == klen && memcmp(nv[c].key, key, klen) == 0)
            return c;
    return -1;
}

static void append_child(int obj, int c)
{
    nv[c].next = -1;
    if (nv[obj].last < 0)
        nv[obj].first = c;
    else
        nv[nv[obj].last].next = c;
    nv[obj].last = c;
}

/* obj[key] = val (val's key already set): in place when the key exists. */
static void put(int obj, int val)
{
    int c = find_child(obj, nv[val].key, nv[val].klen);
    if (c < 0) {
        append_child(obj, c = val);
        return;
    }
    struct inode *x = &nv[c], *y = &nv[val];
    x->type = y->type;
    x->ival = y->ival;
    x->s = y->s;
    x->slen = y->slen;
    x->jv = y->jv;
    x->first = y->first;
    x->last = y->last;
}

/* coll_info_set_dotted() on the tree rooted at `root`. */
static int set_dotted(int root, const char *key, size_t klen, int val)
{
    int obj = root;
    size_t seg = 0;
    for (;;) {
        const char *dot = memchr(key + seg, '.', klen - seg);
        if (!dot)
            break;
        size_t n = (size_t)(dot - (key + seg));
        int child = find_child(obj, key + seg, n);
        if (child < 0) {
            if ((child = node_new(N_OBJ)) < 0)
                return -1;
            nv[child].key = key + seg;
            nv[child].klen = n;
            append_child(obj, child);
        } else if (nv[child].type != N_OBJ) {
            nv[val].key = key;
            nv[val].klen = klen;
            put(root, val);
            return 0;
        }
        obj = child;
        seg += n + 1;
    }
    nv[val].key = key + seg;
    nv[val].klen = klen - seg;
    put(obj, val);
    return 0;
}

/* A parsed JSON value as nodes: objects become N_OBJ (so dotted keys can
 * nest into them, as into a jansson object), the rest N_JSON leaves. */
static int from_json(json_t *v, int depth)
{
    if (!json_is_object(v) || depth > COLL_JSON_MAX_DEPTH) {
        int x = node_new(N_JSON);
        if (x >= 0)
            nv[x].jv = v;
        return x;
    }
    int x = node_new(N_OBJ);
    if (x < 0)
        return -1;
    for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
        int c = from_json(json_object_iter_value(it), depth + 1);
        if (c < 0)
            return -1;
        nv[c].key = json_object_iter_key(it);
        nv[c].klen = json_object_iter_key_len(it);
        append_child(x, c);
    }
    return x;
}

static int leaf_int(int64_t v)
{
    int x = node_new(N_INT);
    if (x >= 0)
        nv[x].ival = v;
    return x;
}

/* The info tree of one event of `sp`; returns its root or -1. */
static int build_info(const struct coll_proc *proc, uint32_t pid, const struct coll_span *sp,
                      const char *fallback_host, int stop)
{
    scratch_reset();
    int root = node_new(N_OBJ);
    if (root < 0)
        return -1;
    struct coll_tlv_iter it;
    struct coll_tlv t;
    coll_tlv_begin(&it, sp->info, sp->info_len);
    while (coll_tlv_next(&it, &t)) {
        if (!t.stop != !stop)
            continue;
        int v;
        if (t.type == LDPROF_TLV_STR) {
            if ((v = node_new(N_STR)) >= 0) {
                nv[v].s = (const char *)t.val;
                nv[v].slen = t.vlen;
            }
        } else if (t.type == LDPROF_TLV_INT) {
            v = leaf_int(t.ival);
        } else {
            json_error_t je;
            json_t *j = json_loadb((const char *)t.val, t.vlen, JSON_DECODE_ANY | JSON_ALLOW_NUL,
                                   &je);
            if (!j)
                return -1;
            if (keep_json(j) < 0) {
                json_decref(j);
                return -1;
            }
            v = from_json(j, 0);
        }
        if (v < 0 || set_dotted(root, t.key.p, t.key.len, v) < 0)
            return -1;
    }
    if (!stop) {
        int v;
        if (sp->hdr.flags & LDPROF_SPAN_TRUNCATED) {
            if ((v = node_new(N_TRUE)) < 0 || set_dotted(root, "ldprof.truncated", 16, v) < 0)
                return -1;
        }
        if ((v = leaf_int((int64_t)pid)) < 0 || set_dotted(root, "thread.pid", 10, v) < 0 ||
            (v = leaf_int((int64_t)sp->hdr.tid)) < 0 || set_dotted(root, "thread.tid", 10, v) < 0)
            return -1;
    }
    int h = node_new(N_STR);
    if (h < 0)
        return -1;
    if (proc->host.p) {
        nv[h].s = proc->host.p;
        nv[h].slen = proc->host.len;
    } else {
        nv[h].s = fallback_host ? fallback_host : "";
        nv[h].slen = strlen(nv[h].s);
    }
    nv[h].key = "host";
    nv[h].klen = 4;
    put(root, h);
    return root;
}

/* ------------------------------------------------------------ writing */

static int nl(struct coll_buf *b, int indent, int level)
{
    return indent < 0 ? 0 : coll_buf_newline(b, indent, level);
}

/* A member's separator (none before the first), newline and indentation
 * (when indented), and `"key": `, in one go (hot: every info field).  One
 * pass over the key: copied while checked; from the first byte that needs
 * an escape on, coll_json_string() writes the rest. */
static int key_line(struct coll_buf *b, int first, int indent, int level, const char *k,
                    size_t klen)
{
    size_t sp = indent < 0 ? 0 : (size_t)indent * (size_t)level;
    size_t need = 2 + sp + klen + 4;
    if ((b->cap - b->len <= need || b->oom) && coll_buf_reserve(b, need) < 0)
        return -1;
    char *o = b->p + b->len;
    if (indent < 0) {
        if (!first) {
            *o++ = ',';
            *o++ = ' ';
        }
    } else {
        if (!first)
            *o++ = ',';
        *o++ = '\n';
        for (size_t i = 0; i < sp; i++)
            *o++ = ' ';
    }
    *o++ = '"';
    for (size_t i = 0; i < klen; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            /* '"' and k[0..i) are written as coll_json_string(k) would
             * write them (plain ASCII).  It writes k[i..] after a quote of
             * its own: put that over the last byte written, then put the
             * byte back. */
            size_t at = (size_t)(o - 1 - b->p);
            char last = o[-1];
            b->len = at;
            if (coll_json_string(b, k + i, klen - i) < 0)
                return -1;
            b->p[at] = last; /* b->p may have moved */
            return coll_buf_put(b, ": ", 2);
        }
        *o++ = (char)c;
    }
    *o++ = '"';
    *o++ = ':';
    *o++ = ' ';
    *o = '\0';
    b->len = (size_t)(o - b->p);
    return 0;
}

static int write_node(struct coll_buf *b, int x, int indent, int level)
{
    if (level > COLL_JSON_MAX_DEPTH)
        return -1;
    const struct inode *n = &nv[x];
    switch (n->type) {
    case N_STR:
        return coll_json_string(b, n->s, n->slen);
    case N_INT:
        return coll_buf_int(b, n->ival);
    case N_TRUE:
        return coll_buf_put(b, "true", 4);
    case N_JSON:
        return coll_json_dump_at(b, n->jv, indent, level);
    default:
        break;
    }
    if (n->first < 0)
        return coll_buf_put(b, "{}", 2);
    if (coll_buf_putc(b, '{') < 0)
        return -1;
    for (int c = n->first; c >= 0; c = nv[c].next) {
        if (key_line(b, c == n->first, indent, level + 1, nv[c].key, nv[c].klen) < 0 ||
            write_node(b, c, indent, level + 1) < 0)
            return -1;
    }
    if (nl(b, indent, level) < 0)
        return -1;
    return coll_buf_putc(b, '}');
}

/* Member `"key": ` (a literal) after the separator `sep` (sl bytes), or
 * for the first one after sep without its ',' (the newline and indentation;
 * nothing when compact: sl == 2). */
#define MEMBER(b, sep, sl, first, lit) \
    ((first) ? coll_buf_put(b, (sep) + 1, (sl) == 2 && (sep)[1] == ' ' ? 0 : (sl) - 1) \
             : coll_buf_put(b, sep, sl)) < 0 || \
        coll_buf_put(b, lit, sizeof lit - 1) < 0

int coll_event_text(struct coll_buf *b, const struct coll_proc *proc, uint32_t pid,
                    const struct coll_span *sp, const char *fallback_host, int stop,
                    int indent, int level, struct coll_buf *etype, int etype_level)
{
    const char *kind = coll_kind_name(sp->hdr.kind);
    if (!kind || level + 1 > COLL_JSON_MAX_DEPTH)
        return -1;
    int root = build_info(proc, pid, sp, fallback_host, stop);
    if (root < 0)
        return -1;
    /* The member separator: ", " or ",\n" and the members' indentation. */
    char sepbuf[256], *sep = sepbuf;
    size_t sl;
    if (indent < 0) {
        memcpy(sep, ", ", 2);
        sl = 2;
    } else {
        sl = 2 + (size_t)indent * (size_t)(level + 1);
        if (sl > sizeof sepbuf && !(sep = malloc(sl)))
            return -1;
        sep[0] = ',';
        sep[1] = '\n';
        memset(sep + 2, ' ', sl - 2);
    }
    /* "<kind>-start" etc.: ids and time as ASCII text, no escaping needed */
    char ts[40];
    int rc = -1;
    ts[0] = '"';
    if (coll_buf_putc(b, '{') < 0 || MEMBER(b, sep, sl, 1, "\"name\": \"") ||
        coll_buf_put(b, kind, strlen(kind)) < 0 ||
        coll_buf_put(b, stop ? "-stop\"" : "-start\"", stop ? 6 : 7) < 0)
        goto out;
    if (MEMBER(b, sep, sl, 0, "\"base_id\": ") || coll_text_uuid(b, sp->hdr.base_id) < 0)
        goto out;
    if (MEMBER(b, sep, sl, 0, "\"trace_id\": ") || coll_text_uuid(b, sp->hdr.trace_id) < 0)
        goto out;
    if (MEMBER(b, sep, sl, 0, "\"parent_id\": ") || coll_text_uuid(b, sp->hdr.parent_id) < 0)
        goto out;
    coll_ts_fmt(stop ? sp->hdr.end_ns : sp->hdr.start_ns, ts + 1);
    size_t tl = strlen(ts);
    ts[tl++] = '"';
    if (MEMBER(b, sep, sl, 0, "\"timestamp\": ") || coll_buf_put(b, ts, tl) < 0)
        goto out;
    if (MEMBER(b, sep, sl, 0, "\"info\": ") || write_node(b, root, indent, level + 1) < 0)
        goto out;
    if (MEMBER(b, sep, sl, 0, "\"project\": ") || coll_text_opt_str(b, &proc->project) < 0 ||
        MEMBER(b, sep, sl, 0, "\"service\": ") || coll_text_opt_str(b, &proc->service) < 0)
        goto out;
    if (nl(b, indent, level) < 0 || coll_buf_putc(b, '}') < 0)
        goto out;
    if (etype) {
        int e = find_child(root, "etype", 5);
        if (e < 0 ? coll_buf_put(etype, "\"None\"", 6) < 0
                  : write_node(etype, e, indent, etype_level) < 0)
            goto out;
    }
    rc = b->oom ? -1 : 0;
out:
    if (sep != sepbuf)
        free(sep);
    return rc;
}

/* ------------------------------------------------------------ Redis */

struct rspan {
    struct coll_span sp;
    uint32_t i;
    int64_t stop_us, start_us;
};

static int rspan_cmp(const void *a, const void *b)
{
    const struct rspan *x = a, *y = b;
    if (x->stop_us != y->stop_us)
        return x->stop_us < y->stop_us ? -1 : 1;
    if (x->start_us != y->start_us)
        return x->start_us > y->start_us ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

int coll_redis_dgram_cmds(struct coll_buf *out, const struct coll_dec *d,
                          const char *fallback_host, size_t *nev)
{
    struct coll_dec_pos it;
    uint32_t n = d->hdr.nrec, k = 0;
    struct rspan *v = malloc((n ? n : 1) * sizeof *v);
    struct coll_buf ev;
    int rc = -1;
    *nev = 0;
    coll_buf_init(&ev);
    if (!v)
        return -1;
    coll_decode_first(d, &it);
    while (k < n && coll_decode_next_at(d, &it, &v[k].sp)) {
        const struct ldprof_wire_span *h = &v[k].sp.hdr;
        v[k].i = k;
        v[k].start_us = (int64_t)(h->start_ns / 1000);
        v[k].stop_us = (h->flags & LDPROF_SPAN_UNFINISHED) ? v[k].start_us
                                                            : (int64_t)(h->end_ns / 1000);
        k++;
    }
    qsort(v, k, sizeof *v, rspan_cmp);
    for (uint32_t x = 0; x < k; x++) {
        char key[sizeof "osprofiler_opt:" + 36];
        memcpy(key, "osprofiler_opt:", 15);
        coll_uuid_fmt(v[x].sp.hdr.base_id, key + 15);
        for (int stop = 0; stop < 2; stop++) {
            if (stop && (v[x].sp.hdr.flags & LDPROF_SPAN_UNFINISHED))
                continue;
            coll_buf_reset(&ev);
            if (coll_event_text(&ev, &d->proc, d->hdr.pid, &v[x].sp, fallback_host, stop,
                                COLL_JSON_COMPACT, 0, NULL, 0) < 0)
                goto out;
            coll_buf_put(out, "*3\r\n$5\r\nLPUSH\r\n$51\r\n", 20);
            coll_buf_put(out, key, 51);
            coll_buf_put(out, "\r\n$", 3);
            coll_buf_int(out, (int64_t)ev.len);
            coll_buf_put(out, "\r\n", 2);
            coll_buf_put(out, ev.p, ev.len);
            if (coll_buf_put(out, "\r\n", 2) < 0)
                goto out;
            (*nev)++;
        }
    }
    rc = out->oom ? -1 : 0;
out:
    coll_buf_free(&ev);
    free(v);
    return rc;
}
