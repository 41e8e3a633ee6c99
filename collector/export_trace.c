/*
 * collector/export_trace.c - `ldprof trace show --dot|--chrome|--otlp` and
 * the `ldprof trace list` filters (declared in render.h; formats described
 * in docs/formats.md, "Exports").
 *
 * Every export reads the dump (the `osprofiler trace show --json` report)
 * and takes span times from the µs timestamps of the raw start/stop events
 * kept in each node (meta.raw_payload.<name>-start|-stop), so nothing is
 * rounded to the report's whole milliseconds.
 */
#include "render.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"
#include "export_flat.h"

/* ------------------------------------------------------------ helpers */

static const char *str_or(json_t *v, const char *dflt)
{
    return json_is_string(v) ? json_string_value(v) : dflt;
}

/* service / host of a span: the node's fields, else the start event's. */
static const char *span_service(const struct xspan *x)
{
    return str_or(json_object_get(x->info, "service"),
                  str_or(json_object_get(x->start, "service"), ""));
}

static const char *span_host(const struct xspan *x)
{
    return str_or(json_object_get(x->info, "host"),
                  str_or(json_object_get(json_object_get(x->start, "info"), "host"), ""));
}

static const char *span_name(const struct xspan *x)
{
    return str_or(json_object_get(x->info, "name"), "?");
}

/* ------------------------------------------------------------ DOT */

/* Append up to `max` code points of s (all when max is 0); returns 1 when
 * it was cut. */
static int add_cps(struct coll_buf *b, const char *s, size_t len, size_t max)
{
    size_t i = 0, cps = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = coll_utf8_seq((const unsigned char *)s + i, len - i, &cp);
        if (max && cps == max)
            return 1;
        if (n == 0) {
            coll_buf_adds(b, "\xef\xbf\xbd"); /* U+FFFD */
            n = 1;
        } else if (n == 1 && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)) {
            coll_buf_addc(b, ' ');
        } else {
            coll_buf_add(b, s + i, n);
        }
        i += n;
        cps++;
    }
    return 0;
}

static void add_value_text(struct coll_buf *b, json_t *v, size_t max)
{
    if (json_is_string(v)) {
        add_cps(b, json_string_value(v), json_string_length(v), max);
    } else if (v && !json_is_null(v)) {
        struct coll_buf t;
        coll_buf_init(&t);
        coll_json_dump(&t, v, COLL_JSON_COMPACT);
        add_cps(b, t.p ? t.p : "", t.len, max);
        coll_buf_free(&t);
    } else {
        coll_buf_adds(b, "None");
    }
}

/* A quoted DOT id: '"' and '\' escaped, except the "\n" line breaks we put
 * in ourselves (marked by \001 in the raw label). */
static void dot_quote(struct coll_buf *out, const struct coll_buf *raw)
{
    coll_buf_addc(out, '"');
    for (size_t i = 0; i < raw->len; i++) {
        char c = raw->p[i];
        if (c == '\001')
            coll_buf_adds(out, "\\n");
        else if (c == '"' || c == '\\') {
            coll_buf_addc(out, '\\');
            coll_buf_addc(out, c);
        } else
            coll_buf_addc(out, c);
    }
    coll_buf_addc(out, '"');
}

static void dot_label(struct coll_buf *raw, json_t *info)
{
    const char *name = str_or(json_object_get(info, "name"), "?");
    json_t *svc = json_object_get(info, "service");
    if (svc && !json_is_null(svc))
        add_value_text(raw, svc, 0); /* a null service: "" (OSProfiler crashes) */
    coll_buf_addc(raw, ':');
    add_cps(raw, name, strlen(name), 0);
    int64_t s = json_integer_value(json_object_get(info, "started"));
    int64_t f = json_integer_value(json_object_get(info, "finished"));
    coll_buf_printf(raw, " - %lld ms", (long long)(f - s));
    json_t *sinfo = json_object_get(coll_node_payload(info, "-start"), "info");
    if (strcmp(name, "wsgi") == 0) {
        json_t *req = json_object_get(sinfo, "request");
        coll_buf_addc(raw, '\001');
        add_value_text(raw, json_object_get(req, "method"), 0);
        coll_buf_addc(raw, ' ');
        add_value_text(raw, json_object_get(req, "path"), 30);
        coll_buf_adds(raw, "..");
    } else if (strcmp(name, "rpc") == 0 || strcmp(name, "driver") == 0) {
        json_t *fn = json_object_get(json_object_get(sinfo, "function"), "name");
        if (json_is_string(fn)) {
            const char *v = json_string_value(fn), *dot = strrchr(v, '.');
            const char *last = dot ? dot + 1 : v;
            coll_buf_addc(raw, '\001');
            add_cps(raw, last, strlen(last), 0);
        }
    }
}

static void dot_nodes(struct coll_buf *out, json_t *nodes, long parent, long *next, int depth)
{
    if (depth > COLL_EXPORT_MAX_DEPTH)
        return;
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        json_t *node = json_array_get(nodes, i);
        long me = (*next)++;
        struct coll_buf raw;
        coll_buf_init(&raw);
        dot_label(&raw, json_object_get(node, "info"));
        coll_buf_printf(out, "\t%ld [label=", me);
        dot_quote(out, &raw);
        coll_buf_adds(out, "]\n");
        coll_buf_free(&raw);
        dot_nodes(out, json_object_get(node, "children"), me, next, depth + 1);
        coll_buf_printf(out, "\t%ld -> %ld\n", parent, me);
    }
}

int coll_export_dot(struct coll_buf *out, const char *text, size_t len)
{
    json_t *r = coll_report_load(text, len);
    if (!r)
        return -1;
    json_t *info = json_object_get(r, "info");
    int64_t s = json_integer_value(json_object_get(info, "started"));
    int64_t f = json_integer_value(json_object_get(info, "finished"));
    long next = 1;
    coll_buf_adds(out, "digraph {\n");
    coll_buf_printf(out, "\t0 [label=\"total - %lld ms\"]\n", (long long)(f - s));
    dot_nodes(out, json_object_get(r, "children"), 0, &next, 0);
    coll_buf_adds(out, "}\n");
    json_decref(r);
    return out->oom ? -1 : 0;
}

/* ------------------------------------------------------------ groups */

/* Assign a group (1, 2, ...) in pre-order per distinct service@host, or,
 * for spans that carry their thread (start info.thread), per distinct
 * service@host and process id; returns the groups' names as a JSON array
 * of "service@host" or "service@host (pid N)" strings. */
static json_t *assign_groups(struct flat *f)
{
    json_t *names = json_array(), *idx = json_object();
    for (size_t i = 0; i < f->n; i++) {
        struct xspan *x = &f->v[i];
        struct coll_buf name, key;
        coll_buf_init(&name);
        coll_buf_init(&key);
        coll_buf_printf(&name, "%s@%s", span_service(x), span_host(x));
        if (x->rpid > 0)
            coll_buf_printf(&name, " (pid %ld)", x->rpid);
        /* the pid first: a service or host cannot make two keys equal */
        coll_buf_printf(&key, "%ld %s", x->rpid, name.p ? name.p : "@");
        const char *k = key.p ? key.p : "@";
        json_t *g = json_object_get(idx, k);
        if (!g) {
            json_t *nm = json_string(name.p ? name.p : "@");
            json_array_append_new(names, nm ? nm : json_string("?"));
            g = json_integer((json_int_t)json_array_size(names));
            json_object_set_new(idx, k, g);
        }
        x->group = (long)json_integer_value(g);
        coll_buf_free(&name);
        coll_buf_free(&key);
    }
    json_decref(idx);
    return names;
}

/* The Chrome pid of each group (array of ngroups): a group of spans with
 * their thread gets its real process id unless an earlier group took that
 * number; every other group gets the smallest number still free from 1 up
 * (so a dump without thread fields numbers its groups 1, 2, ... in
 * pre-order, as it always did). */
static long *chrome_pids(const struct flat *f, size_t ngroups)
{
    long *pid = calloc(ngroups ? ngroups : 1, sizeof *pid);
    if (!pid)
        return NULL;
    size_t seen = 0; /* groups are numbered in order of their first span */
    for (size_t i = 0; i < f->n; i++) { /* real pids, first come */
        const struct xspan *x = &f->v[i];
        size_t g = (size_t)x->group - 1;
        if (g < seen)
            continue;
        seen = g + 1;
        if (x->rpid <= 0)
            continue;
        int taken = 0;
        for (size_t h = 0; h < ngroups && !taken; h++)
            taken = pid[h] == x->rpid;
        if (!taken)
            pid[g] = x->rpid;
    }
    long next = 1;
    for (size_t g = 0; g < ngroups; g++) {
        if (pid[g])
            continue;
        for (int taken = 1; taken; next++) {
            taken = 0;
            for (size_t h = 0; h < ngroups && !taken; h++)
                taken = pid[h] == next;
        }
        pid[g] = next - 1;
    }
    return pid;
}

/* ------------------------------------------------------------ Chrome */

static struct flat *g_flat; /* for cmp_start */

static int cmp_start(const void *a, const void *b)
{
    const struct xspan *x = &g_flat->v[*(const size_t *)a], *y = &g_flat->v[*(const size_t *)b];
    if (x->s_us != y->s_us)
        return x->s_us < y->s_us ? -1 : 1;
    int64_t dx = x->e_us - x->s_us, dy = y->e_us - y->s_us;
    if (dx != dy)
        return dx > dy ? -1 : 1; /* the longer (enclosing) one first */
    size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
    return ia < ib ? -1 : ia > ib;
}

/* A lane of one group (or a real thread: tid > 0): a stack of the end
 * times of the open spans. */
struct lane {
    long group, tid;
    int64_t *ends;
    size_t n, cap;
};

/* Can [s, e] go on lane L (popping the spans that ended by s)?  Events on
 * one thread must nest: the span fits when the lane is idle at s or when
 * the innermost open span encloses it. */
static int lane_fits(struct lane *L, int64_t s, int64_t e)
{
    while (L->n && L->ends[L->n - 1] <= s)
        L->n--;
    return L->n == 0 || L->ends[L->n - 1] >= e;
}

static int lane_push(struct lane *L, int64_t e)
{
    if (L->n == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 8;
        int64_t *nv = realloc(L->ends, nc * sizeof *nv);
        if (!nv)
            return -1;
        L->ends = nv;
        L->cap = nc;
    }
    L->ends[L->n++] = e;
    return 0;
}

/* For spans without their thread: lanes numbered from 1 within each group;
 * the parent's lane is tried first, then the group's lanes in order, then
 * a new one. */
static int assign_lanes(struct flat *f)
{
    size_t *order = malloc((f->n ? f->n : 1) * sizeof *order);
    struct lane *lanes = NULL;
    size_t nl = 0;
    long *lane_no = NULL; /* per lanes[] entry: number within its group */
    int rc = 0;
    if (!order)
        return -1;
    for (size_t i = 0; i < f->n; i++) {
        order[i] = i;
        f->v[i].lane = -1;
    }
    g_flat = f;
    qsort(order, f->n, sizeof *order, cmp_start);
    for (size_t k = 0; k < f->n && rc == 0; k++) {
        struct xspan *x = &f->v[order[k]];
        long pick = -1;
        if (x->rtid > 0)
            continue; /* assign_threads() */
        if (x->parent >= 0 && f->v[x->parent].group == x->group) {
            long pl = f->v[x->parent].lane; /* index into lanes[], -1: not placed yet */
            if (pl >= 0 && (size_t)pl < nl && lane_fits(&lanes[pl], x->s_us, x->e_us))
                pick = pl;
        }
        for (size_t l = 0; pick < 0 && l < nl; l++)
            if (lanes[l].group == x->group && lane_fits(&lanes[l], x->s_us, x->e_us))
                pick = (long)l;
        if (pick < 0) {
            struct lane *nv = realloc(lanes, (nl + 1) * sizeof *nv);
            long *nn = realloc(lane_no, (nl + 1) * sizeof *nn);
            if (nv)
                lanes = nv;
            if (nn)
                lane_no = nn;
            if (!nv || !nn) {
                rc = -1;
                break;
            }
            long num = 1;
            for (size_t l = 0; l < nl; l++)
                if (lanes[l].group == x->group)
                    num++;
            memset(&lanes[nl], 0, sizeof lanes[nl]);
            lanes[nl].group = x->group;
            lane_no[nl] = num;
            pick = (long)nl++;
        }
        if (lane_push(&lanes[pick], x->e_us) < 0)
            rc = -1;
        x->lane = pick;
    }
    /* store the lane numbers (tids) instead of the indexes */
    for (size_t i = 0; i < f->n && rc == 0; i++)
        if (f->v[i].rtid <= 0)
            f->v[i].lane = f->v[i].lane >= 0 ? lane_no[f->v[i].lane] : 1;
    for (size_t l = 0; l < nl; l++)
        free(lanes[l].ends);
    free(lanes);
    free(lane_no);
    free(order);
    return rc;
}

/* For spans with their thread: tid = the real thread id.  In start order,
 * a span that nests in the innermost open complete event of its thread (or
 * finds the thread idle) is a complete event too; one that overlaps it
 * without nesting (requests interleaved on one event-loop thread, async
 * client calls that outlive their siblings), or whose parent on the same
 * thread is async, becomes an async event.  The threads, in order of their
 * first span, are returned in *threads (indexes of a span of each). */
static int assign_threads(struct flat *f, size_t **threads, size_t *nthreads)
{
    size_t *order = malloc((f->n ? f->n : 1) * sizeof *order);
    size_t *first = malloc((f->n ? f->n : 1) * sizeof *first);
    struct lane *th = NULL;
    size_t nt = 0;
    int rc = 0;
    *threads = NULL;
    *nthreads = 0;
    if (!order || !first) {
        free(order);
        free(first);
        return -1;
    }
    for (size_t i = 0; i < f->n; i++)
        order[i] = i;
    g_flat = f;
    qsort(order, f->n, sizeof *order, cmp_start);
    for (size_t k = 0; k < f->n && rc == 0; k++) {
        struct xspan *x = &f->v[order[k]];
        if (x->rtid <= 0)
            continue;
        size_t t = 0;
        while (t < nt && (th[t].group != x->group || th[t].tid != x->rtid))
            t++;
        if (t == nt) {
            struct lane *nv = realloc(th, (nt + 1) * sizeof *nv);
            if (!nv) {
                rc = -1;
                break;
            }
            th = nv;
            memset(&th[nt], 0, sizeof th[nt]);
            th[nt].group = x->group;
            th[nt].tid = x->rtid;
            first[nt++] = order[k];
        }
        x->lane = x->rtid;
        const struct xspan *p = x->parent >= 0 ? &f->v[x->parent] : NULL;
        if (p && p->async && p->group == x->group && p->rtid == x->rtid)
            x->async = 1;
        else if (lane_fits(&th[t], x->s_us, x->e_us))
            rc = lane_push(&th[t], x->e_us);
        else
            x->async = 1;
    }
    for (size_t t = 0; t < nt; t++)
        free(th[t].ends);
    free(th);
    free(order);
    if (rc < 0) {
        free(first);
        return -1;
    }
    *threads = first;
    *nthreads = nt;
    return 0;
}

/* Merge `src` into `dst`: objects on both sides merge, otherwise src wins. */
static void deep_merge(json_t *dst, json_t *src, int depth)
{
    const char *key;
    json_t *val;
    json_object_foreach(src, key, val) {
        json_t *old = json_object_get(dst, key);
        if (depth < 32 && json_is_object(old) && json_is_object(val)) {
            json_t *copy = json_deep_copy(old);
            deep_merge(copy, val, depth + 1);
            json_object_set_new(dst, key, copy);
        } else {
            json_object_set(dst, key, val);
        }
    }
}

/* The span's info fields: the start event's, then the stop event's merged
 * in (stop wins on equal leaves), plus its ids. */
static json_t *span_args(const struct xspan *x)
{
    json_t *a = json_object();
    json_t *si = json_object_get(x->start, "info"), *so = json_object_get(x->stop, "info");
    if (json_is_object(si))
        deep_merge(a, si, 0);
    if (json_is_object(so))
        deep_merge(a, so, 0);
    json_t *tid = json_object_get(x->node, "trace_id"), *pid = json_object_get(x->node, "parent_id");
    if (tid)
        json_object_set(a, "trace_id", tid);
    if (pid)
        json_object_set(a, "parent_id", pid);
    if (!x->has_stop)
        json_object_set_new(a, "unfinished", json_true());
    return a;
}

int coll_export_chrome(struct coll_buf *out, const char *text, size_t len)
{
    struct flat f;
    json_t *r = coll_flat_load(&f, text, len);
    if (!r)
        return -1;
    json_t *groups = assign_groups(&f);
    size_t *threads = NULL, nthreads = 0;
    long *cpid = chrome_pids(&f, json_array_size(groups));
    int rc = cpid ? assign_lanes(&f) : -1;
    if (rc == 0)
        rc = assign_threads(&f, &threads, &nthreads);
    json_t *evs = json_array();
    for (size_t g = 0; g < json_array_size(groups) && rc == 0; g++) {
        json_t *m = json_object();
        json_object_set_new(m, "name", json_string("process_name"));
        json_object_set_new(m, "ph", json_string("M"));
        json_object_set_new(m, "pid", json_integer(cpid[g]));
        json_object_set_new(m, "tid", json_integer(0));
        json_t *a = json_object();
        json_object_set(a, "name", json_array_get(groups, g));
        json_object_set_new(m, "args", a);
        json_array_append_new(evs, m);
    }
    for (size_t t = 0; t < nthreads && rc == 0; t++) {
        const struct xspan *x = &f.v[threads[t]];
        char tn[48];
        snprintf(tn, sizeof tn, "%s %ld", x->rtid == x->rpid ? "main thread" : "thread",
                 x->rtid);
        json_t *m = json_object();
        json_object_set_new(m, "name", json_string("thread_name"));
        json_object_set_new(m, "ph", json_string("M"));
        json_object_set_new(m, "pid", json_integer(cpid[x->group - 1]));
        json_object_set_new(m, "tid", json_integer(x->rtid));
        json_object_set_new(m, "args", json_pack("{s:s}", "name", tn));
        json_array_append_new(evs, m);
    }
    for (size_t i = 0; i < f.n && rc == 0; i++) {
        struct xspan *x = &f.v[i];
        struct coll_buf nm;
        coll_buf_init(&nm);
        const char *n = span_name(x);
        coll_render_clean(&nm, n, strlen(n), 60);
        size_t mark = nm.len;
        coll_buf_addc(&nm, ' ');
        coll_render_span_detail(&nm, x->info);
        if (nm.len == mark + 1 && nm.p)
            nm.p[nm.len = mark] = '\0'; /* no detail: no trailing blank */
        json_t *e = json_object();
        json_object_set_new(e, "name", json_string(nm.p ? nm.p : ""));
        coll_buf_free(&nm);
        json_object_set_new(e, "cat", json_string(n));
        if (!x->async) {
            json_object_set_new(e, "ph", json_string("X"));
            json_object_set_new(e, "ts", json_integer(x->s_us - f.min_us));
            json_object_set_new(e, "dur", json_integer(x->e_us - x->s_us));
            json_object_set_new(e, "pid", json_integer(cpid[x->group - 1]));
            json_object_set_new(e, "tid", json_integer(x->lane));
            json_object_set_new(e, "args", span_args(x));
            json_array_append_new(evs, e);
            continue;
        }
        /* async: a "b"/"e" pair with the span id, on the span's thread */
        json_t *id = json_object_get(x->node, "trace_id");
        json_t *end = json_deep_copy(e); /* name, cat */
        json_object_set_new(e, "ph", json_string("b"));
        json_object_set_new(e, "ts", json_integer(x->s_us - f.min_us));
        json_object_set_new(end, "ph", json_string("e"));
        json_object_set_new(end, "ts", json_integer(x->e_us - f.min_us));
        json_t *both[2] = {e, end};
        for (int k = 0; k < 2; k++) {
            json_object_set_new(both[k], "pid", json_integer(cpid[x->group - 1]));
            json_object_set_new(both[k], "tid", json_integer(x->lane));
            json_object_set_new(both[k], "id", json_is_string(id) ? json_incref(id)
                                                                  : json_sprintf("span-%zu", i));
        }
        json_object_set_new(e, "args", span_args(x));
        json_array_append_new(evs, e);
        json_array_append_new(evs, end);
    }
    if (rc == 0) {
        json_t *doc = json_object();
        json_object_set_new(doc, "traceEvents", evs);
        json_object_set_new(doc, "displayTimeUnit", json_string("ms"));
        rc = coll_json_dump(out, doc, 1);
        coll_buf_addc(out, '\n');
        json_decref(doc);
    } else {
        json_decref(evs);
    }
    json_decref(groups);
    free(cpid);
    free(threads);
    free(f.v);
    json_decref(r);
    return rc < 0 || out->oom ? -1 : 0;
}

/* ------------------------------------------------------------ OTLP */

static uint64_t fnv1a(const char *s, uint64_t h)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* The hex digits of `id` (dashes dropped, lower case) when it has exactly
 * `want` of them and nothing else; otherwise a hash of the text. */
static void hex_id(const char *id, size_t want, char *out)
{
    size_t n = 0;
    int ok = 1;
    for (const char *p = id; *p; p++) {
        if (*p == '-')
            continue;
        if (!isxdigit((unsigned char)*p) || n >= want) {
            ok = 0;
            break;
        }
        out[n++] = (char)tolower((unsigned char)*p);
    }
    if (!ok || n != want) {
        uint64_t h1 = fnv1a(id, 0xcbf29ce484222325ULL);
        uint64_t h2 = fnv1a(id, h1 ^ 0x9e3779b97f4a7c15ULL);
        if (want == 32)
            snprintf(out, 33, "%016llx%016llx", (unsigned long long)h1, (unsigned long long)h2);
        else
            snprintf(out, 17, "%016llx", (unsigned long long)h1);
        return;
    }
    out[n] = '\0';
}

/* spanId: the low 64 bits of a UUID trace_id (last 16 hex digits). */
static void span_id(const char *id, char out[17])
{
    char full[33];
    size_t n = 0;
    int ok = 1;
    for (const char *p = id; *p && ok; p++) {
        if (*p == '-')
            continue;
        if (!isxdigit((unsigned char)*p) || n >= 32)
            ok = 0;
        else
            full[n++] = (char)tolower((unsigned char)*p);
    }
    if (ok && n == 32) {
        memcpy(out, full + 16, 16);
        out[16] = '\0';
    } else {
        hex_id(id, 16, out);
    }
}

static json_t *attr(const char *key, json_t *value)
{
    json_t *a = json_object();
    json_object_set_new(a, "key", json_string(key));
    json_object_set_new(a, "value", value);
    return a;
}

static json_t *any_value(json_t *v)
{
    json_t *o = json_object();
    char num[32];
    if (json_is_string(v)) {
        json_object_set(o, "stringValue", v);
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        json_object_set_new(o, "intValue", json_string(num));
    } else if (json_is_real(v)) {
        json_object_set_new(o, "doubleValue", json_real(json_real_value(v)));
    } else if (json_is_boolean(v)) {
        json_object_set_new(o, "boolValue", json_boolean(json_is_true(v)));
    } else {
        struct coll_buf t;
        coll_buf_init(&t);
        coll_json_dump(&t, v, COLL_JSON_COMPACT);
        json_object_set_new(o, "stringValue", json_string(t.p ? t.p : ""));
        coll_buf_free(&t);
    }
    return o;
}

/* Flatten `obj` into `into` (key -> value, dotted keys); objects recurse,
 * everything else is a leaf (null leaves are dropped). */
static void flatten_attrs(json_t *into, json_t *obj, const char *prefix, int depth)
{
    const char *key;
    json_t *val;
    if (depth > 32)
        return;
    json_object_foreach(obj, key, val) {
        if (!*prefix && strcmp(key, "host") == 0)
            continue; /* a resource attribute */
        struct coll_buf k;
        coll_buf_init(&k);
        coll_buf_printf(&k, "%s%s%s", prefix, *prefix ? "." : "", key);
        if (k.p) {
            if (json_is_object(val))
                flatten_attrs(into, val, k.p, depth + 1);
            else if (!json_is_null(val))
                json_object_set(into, k.p, val);
        }
        coll_buf_free(&k);
    }
}

static int span_kind(const char *name)
{
    static const char *const client[] = {"http", "db", "redis", "mongodb", NULL};
    if (strcmp(name, "wsgi") == 0)
        return 2; /* SPAN_KIND_SERVER */
    for (int i = 0; client[i]; i++)
        if (strcmp(name, client[i]) == 0)
            return 3; /* SPAN_KIND_CLIENT */
    return 1;     /* SPAN_KIND_INTERNAL */
}

static json_t *nano(int64_t us)
{
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)us * 1000);
    return json_string(b);
}

int coll_export_otlp(struct coll_buf *out, const char *text, size_t len)
{
    struct flat f;
    json_t *r = coll_flat_load(&f, text, len);
    if (!r)
        return -1;
    json_t *groups = assign_groups(&f);
    json_t *rs = json_array();
    for (size_t g = 0; g < json_array_size(groups); g++) {
        json_t *spans = json_array();
        const char *svc = "", *host = "";
        for (size_t i = 0; i < f.n; i++) {
            struct xspan *x = &f.v[i];
            if (x->group != (long)g + 1)
                continue;
            svc = span_service(x);
            host = span_host(x);
            const char *base = str_or(json_object_get(x->start ? x->start : x->stop, "base_id"), "");
            const char *tid = str_or(json_object_get(x->node, "trace_id"), "");
            const char *pid = str_or(json_object_get(x->node, "parent_id"), "");
            char tr[33], sp[17], pa[17] = "";
            hex_id(base, 32, tr);
            span_id(tid, sp);
            if (*pid && strcmp(pid, base) != 0)
                span_id(pid, pa);
            json_t *s = json_object();
            json_object_set_new(s, "traceId", json_string(tr));
            json_object_set_new(s, "spanId", json_string(sp));
            json_object_set_new(s, "parentSpanId", json_string(pa));
            json_object_set_new(s, "name", json_string(span_name(x)));
            json_object_set_new(s, "kind", json_integer(span_kind(span_name(x))));
            json_object_set_new(s, "startTimeUnixNano", nano(x->s_us));
            json_object_set_new(s, "endTimeUnixNano", nano(x->e_us));
            json_t *flat_a = json_object();
            flatten_attrs(flat_a, json_object_get(x->start, "info"), "", 0);
            flatten_attrs(flat_a, json_object_get(x->stop, "info"), "", 0);
            json_object_set_new(flat_a, "osprofiler.trace_id", json_string(tid));
            json_object_set_new(flat_a, "osprofiler.parent_id", json_string(pid));
            if (!x->has_stop)
                json_object_set_new(flat_a, "ldprof.unfinished", json_true());
            json_t *attrs = json_array();
            const char *k;
            json_t *v;
            json_object_foreach(flat_a, k, v)
                json_array_append_new(attrs, attr(k, any_value(v)));
            json_decref(flat_a);
            json_object_set_new(s, "attributes", attrs);
            json_t *st = json_object();
            if (x->error) {
                json_t *sinfo = json_object_get(x->stop, "info");
                struct coll_buf m;
                coll_buf_init(&m);
                add_value_text(&m, json_object_get(sinfo, "etype"), 0);
                json_t *msg = json_object_get(sinfo, "message");
                if (msg && !json_is_null(msg)) {
                    coll_buf_adds(&m, ": ");
                    add_value_text(&m, msg, 0);
                }
                json_object_set_new(st, "code", json_integer(2));
                json_object_set_new(st, "message", json_string(m.p ? m.p : ""));
                coll_buf_free(&m);
            }
            json_object_set_new(s, "status", st);
            json_array_append_new(spans, s);
        }
        json_t *res_attrs = json_array();
        json_t *sv = json_object(), *hv = json_object();
        json_object_set_new(sv, "stringValue", json_string(svc));
        json_object_set_new(hv, "stringValue", json_string(host));
        json_array_append_new(res_attrs, attr("service.name", sv));
        json_array_append_new(res_attrs, attr("host.name", hv));
        json_t *resource = json_object();
        json_object_set_new(resource, "attributes", res_attrs);
        json_t *scope = json_object();
        json_object_set_new(scope, "name", json_string("ldprof"));
        json_t *ss = json_object();
        json_object_set_new(ss, "scope", scope);
        json_object_set_new(ss, "spans", spans);
        json_t *ssa = json_array();
        json_array_append_new(ssa, ss);
        json_t *one = json_object();
        json_object_set_new(one, "resource", resource);
        json_object_set_new(one, "scopeSpans", ssa);
        json_array_append_new(rs, one);
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "resourceSpans", rs);
    int rc = coll_json_dump(out, doc, 2);
    coll_buf_addc(out, '\n');
    json_decref(doc);
    json_decref(groups);
    free(f.v);
    json_decref(r);
    return rc < 0 || out->oom ? -1 : 0;
}

/* ------------------------------------------------------------ list filters */

int coll_parse_since(const char *s, int64_t now_us, int64_t *out_us)
{
    size_t len = strlen(s);
    if (len == 0 || len > 40)
        return -1;
    /* a duration: digits and one unit */
    if (isdigit((unsigned char)s[0]) && strchr("smhdw", s[len - 1]) &&
        strspn(s, "0123456789") == len - 1) {
        if (len - 1 > 9)
            return -1;
        long long n = strtoll(s, NULL, 10);
        long long mul = s[len - 1] == 's' ? 1 : s[len - 1] == 'm' ? 60 : s[len - 1] == 'h' ? 3600
                      : s[len - 1] == 'd' ? 86400 : 604800;
        if (n * mul > 100000000000LL) /* more than ~3000 years */
            return -1;
        *out_us = now_us - (int64_t)n * mul * 1000000;
        return 0;
    }
    /* a UTC time */
    char buf[48];
    snprintf(buf, sizeof buf, "%s", s);
    size_t bl = strlen(buf);
    if (bl && (buf[bl - 1] == 'Z' || buf[bl - 1] == 'z'))
        buf[--bl] = '\0';
    if (bl == 10)
        snprintf(buf + bl, sizeof buf - bl, "T00:00:00");
    else if (bl > 10 && buf[10] == ' ')
        buf[10] = 'T';
    bl = strlen(buf);
    if (bl == 16) /* YYYY-MM-DDTHH:MM */
        snprintf(buf + bl, sizeof buf - bl, ":00");
    bl = strlen(buf);
    if (!strchr(buf, '.'))
        snprintf(buf + bl, sizeof buf - bl, ".0");
    if (strlen(buf) < 21 || buf[4] != '-' || buf[7] != '-' || buf[10] != 'T')
        return -1;
    return coll_ts_parse(buf, strlen(buf), out_us);
}

static int name_in_tree(json_t *nodes, const char *sub, int depth)
{
    if (depth > COLL_EXPORT_MAX_DEPTH)
        return 0;
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        json_t *node = json_array_get(nodes, i);
        const char *n = str_or(json_object_get(json_object_get(node, "info"), "name"), "");
        if (strstr(n, sub) || name_in_tree(json_object_get(node, "children"), sub, depth + 1))
            return 1;
    }
    return 0;
}

int coll_list_match(const char *text, size_t len, const struct coll_summary *s,
                    const struct coll_list_filter *f)
{
    if (s->start_us < f->since_us)
        return 0;
    if (f->min_ms >= 0 && s->duration_ms < f->min_ms)
        return 0;
    if (f->errors && s->errors == 0)
        return 0;
    if (f->name && *f->name && !strstr(s->root, f->name)) {
        json_t *r = coll_report_load(text, len);
        int hit = r && name_in_tree(json_object_get(r, "children"), f->name, 0);
        json_decref(r);
        if (!hit)
            return 0;
    }
    return 1;
}

void coll_render_list_json(FILE *out, const struct coll_summary *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        char ts[40];
        coll_ts_fmt_us(v[i].start_us, ts);
        strcat(ts, "Z");
        json_t *o = json_object();
        json_object_set_new(o, "base_id", json_string(v[i].base_id));
        json_object_set_new(o, "start", json_string(ts));
        json_object_set_new(o, "duration_ms", json_integer(v[i].duration_ms));
        json_object_set_new(o, "root", json_string(v[i].root));
        json_object_set_new(o, "spans", json_integer((json_int_t)v[i].spans));
        json_object_set_new(o, "errors", json_integer((json_int_t)v[i].errors));
        json_array_append_new(a, o);
    }
    struct coll_buf b;
    coll_buf_init(&b);
    coll_json_dump(&b, a, 2);
    fprintf(out, "%s\n", b.p ? b.p : "[]");
    coll_buf_free(&b);
    json_decref(a);
}
