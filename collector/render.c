/*
 * collector/render.c - `ldprof trace list|show` output (see render.h).
 */
#include "render.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "events.h"
#include "json.h"

/* ------------------------------------------------------------ helpers */

/* Copy at most `max` bytes of `s` into `b`, control bytes as '?', never
 * cutting a UTF-8 sequence; "..." when cut. */
static void add_clean(struct coll_buf *b, const char *s, size_t len, size_t max)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = coll_utf8_seq((const unsigned char *)s + i, len - i, &cp);
        if (n == 0)
            n = 1;
        if (i + n > max) {
            coll_buf_adds(b, "...");
            return;
        }
        if (n == 1 && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || (unsigned char)s[i] >= 0x80))
            coll_buf_addc(b, (s[i] == '\n' || s[i] == '\t') ? ' ' : '?');
        else
            coll_buf_add(b, s + i, n);
        i += n;
    }
}

static void add_value(struct coll_buf *b, json_t *v, size_t max)
{
    if (json_is_string(v)) {
        add_clean(b, json_string_value(v), json_string_length(v), max);
    } else {
        struct coll_buf t;
        coll_buf_init(&t);
        coll_json_dump(&t, v, COLL_JSON_COMPACT);
        add_clean(b, t.p ? t.p : "", t.len, max);
        coll_buf_free(&t);
    }
}

json_t *coll_node_payload(json_t *info, const char *suffix)
{
    const char *key;
    json_t *val;
    size_t sl = strlen(suffix);
    json_object_foreach(info, key, val) {
        size_t kl = strlen(key);
        if (strncmp(key, "meta.raw_payload.", 17) == 0 && kl >= 17 + sl &&
            strcmp(key + kl - sl, suffix) == 0)
            return val;
    }
    return NULL;
}

/* First scalar leaf of an info object other than host: "a.b=value". */
static int first_leaf(struct coll_buf *b, json_t *obj, const char *prefix)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        if (!*prefix && strcmp(key, "host") == 0)
            continue;
        char path[128];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
        if (json_is_object(val)) {
            if (first_leaf(b, val, path))
                return 1;
            continue;
        }
        add_clean(b, path, strlen(path), 40);
        coll_buf_addc(b, '=');
        add_value(b, val, 60);
        return 1;
    }
    return 0;
}

/* "GET /path?q", the SQL text, or the first field. */
static void span_detail(struct coll_buf *b, json_t *info)
{
    json_t *start = coll_node_payload(info, "-start");
    json_t *sinfo = json_object_get(start, "info");
    json_t *req = json_object_get(sinfo, "request");
    json_t *db = json_object_get(sinfo, "db");
    if (json_is_object(req) && json_object_get(req, "path")) {
        json_t *m = json_object_get(req, "method"), *q = json_object_get(req, "query");
        if (m) {
            add_value(b, m, 10);
            coll_buf_addc(b, ' ');
        }
        add_value(b, json_object_get(req, "path"), 60);
        if (json_is_string(q) && json_string_length(q)) {
            coll_buf_addc(b, '?');
            add_value(b, q, 30);
        }
    } else if (json_is_object(db) && json_object_get(db, "statement")) {
        add_value(b, json_object_get(db, "statement"), 80);
    } else if (json_is_object(sinfo)) {
        first_leaf(b, sinfo, "");
    }
}

void coll_render_span_detail(struct coll_buf *b, json_t *info)
{
    span_detail(b, info);
}

void coll_render_clean(struct coll_buf *b, const char *s, size_t len, size_t max)
{
    add_clean(b, s, len, max);
}

static const char *str_or(json_t *v, const char *dflt)
{
    return json_is_string(v) ? json_string_value(v) : dflt;
}

json_t *coll_report_load(const char *text, size_t len)
{
    json_error_t je;
    json_t *r = json_loadb(text, len, JSON_ALLOW_NUL, &je);
    if (!r)
        return NULL;
    if (!json_is_object(json_object_get(r, "info")) ||
        !json_is_array(json_object_get(r, "children"))) {
        json_decref(r);
        return NULL;
    }
    return r;
}

/* Count the nodes, the earliest timestamp and (when `errors` is not NULL)
 * the spans whose stop event has an etype. */
static void walk_nodes(json_t *nodes, size_t *count, int64_t *min_us, size_t *errors,
                       int depth)
{
    if (depth > 10000)
        return;
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        json_t *node = json_array_get(nodes, i);
        json_t *info = json_object_get(node, "info");
        const char *key;
        json_t *val;
        (*count)++;
        json_t *et = json_object_get(json_object_get(coll_node_payload(info, "-stop"), "info"), "etype");
        if (errors && et && !json_is_null(et))
            (*errors)++;
        json_object_foreach(info, key, val) {
            if (strncmp(key, "meta.raw_payload.", 17) != 0)
                continue;
            json_t *ts = json_object_get(val, "timestamp");
            int64_t us;
            if (json_is_string(ts) &&
                coll_ts_parse(json_string_value(ts), json_string_length(ts), &us) == 0 &&
                us < *min_us)
                *min_us = us;
        }
        walk_nodes(json_object_get(node, "children"), count, min_us, errors, depth + 1);
    }
}

/* ------------------------------------------------------------ list */

/* " <detail>" of a span (span_detail), or nothing when it has none. */
static void add_detail(struct coll_buf *b, json_t *info)
{
    size_t mark = b->len;
    coll_buf_addc(b, ' ');
    span_detail(b, info);
    if (b->len == mark + 1) { /* no detail: take the blank back */
        b->len = mark;
        if (b->p)
            b->p[mark] = '\0';
    }
}

int coll_summary_from_dump(const char *text, size_t len, struct coll_summary *s)
{
    json_t *r = coll_report_load(text, len);
    if (!r)
        return -1;
    memset(s, 0, sizeof *s);
    int64_t min_us = INT64_MAX;
    json_t *children = json_object_get(r, "children");
    walk_nodes(children, &s->spans, &min_us, &s->errors, 0);
    s->start_us = min_us == INT64_MAX ? 0 : min_us;
    s->duration_ms = json_integer_value(json_object_get(json_object_get(r, "info"), "finished"));
    json_t *first = json_array_get(children, 0);
    if (first) {
        json_t *info = json_object_get(first, "info");
        struct coll_buf b;
        coll_buf_init(&b);
        add_clean(&b, str_or(json_object_get(info, "name"), "?"),
                  strlen(str_or(json_object_get(info, "name"), "?")), 20);
        add_detail(&b, info);
        if (json_array_size(children) > 1)
            coll_buf_printf(&b, " (+%zu)", json_array_size(children) - 1);
        snprintf(s->root, sizeof s->root, "%s", b.p ? b.p : "");
        coll_buf_free(&b);
    }
    json_decref(r);
    return 0;
}

static int cmp_summary(const void *a, const void *b)
{
    const struct coll_summary *x = a, *y = b;
    if (x->start_us != y->start_us)
        return x->start_us > y->start_us ? -1 : 1;
    return strcmp(x->base_id, y->base_id);
}

void coll_summary_sort(struct coll_summary *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_summary);
}

void coll_render_list(FILE *out, const struct coll_summary *v, size_t n)
{
    int rootw = 4;
    for (size_t i = 0; i < n; i++) {
        int w = (int)strlen(v[i].root);
        if (w > rootw)
            rootw = w;
    }
    fprintf(out, "%-36s  %-27s  %11s  %-*s  %5s\n", "BASE_ID", "START (UTC)", "DURATION_MS",
            rootw, "ROOT", "SPANS");
    for (size_t i = 0; i < n; i++) {
        char ts[32];
        coll_ts_fmt_us(v[i].start_us, ts);
        fprintf(out, "%-36s  %sZ  %11lld  %-*s  %5zu\n", v[i].base_id, ts,
                (long long)v[i].duration_ms, rootw, v[i].root, v[i].spans);
    }
}

/* ------------------------------------------------------------ tree */

struct tree_ctx {
    FILE *out;
    int64_t total;
    int width;
};

static void bar(struct coll_buf *b, int64_t s, int64_t f, int64_t total, int w)
{
    if (total <= 0)
        total = 1;
    if (s < 0)
        s = 0;
    if (f < s)
        f = s;
    int c0 = (int)(s * w / total);
    int c1 = (int)((f * w + total - 1) / total);
    if (c0 >= w)
        c0 = w - 1;
    if (c1 > w)
        c1 = w;
    if (c1 <= c0)
        c1 = c0 + 1;
    coll_buf_addc(b, '|');
    for (int i = 0; i < w; i++)
        coll_buf_addc(b, i >= c0 && i < c1 ? '#' : ' ');
    coll_buf_addc(b, '|');
}

static void tree_nodes(struct tree_ctx *t, json_t *nodes, int depth)
{
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        json_t *node = json_array_get(nodes, i);
        json_t *info = json_object_get(node, "info");
        int64_t s = json_integer_value(json_object_get(info, "started"));
        int64_t f = json_integer_value(json_object_get(info, "finished"));
        struct coll_buf b;
        coll_buf_init(&b);
        coll_buf_printf(&b, "%7lld %7lld  ", (long long)s, (long long)(f - s));
        bar(&b, s, f, t->total, t->width);
        coll_buf_addc(&b, ' ');
        for (int d = 0; d < depth && d < 40; d++)
            coll_buf_adds(&b, "  ");
        const char *name = str_or(json_object_get(info, "name"), "?");
        add_clean(&b, name, strlen(name), 40);
        const char *svc = str_or(json_object_get(info, "service"), NULL);
        const char *host = str_or(json_object_get(info, "host"), NULL);
        if (svc || host) {
            coll_buf_adds(&b, " [");
            if (svc)
                add_clean(&b, svc, strlen(svc), 40);
            if (host) {
                coll_buf_addc(&b, '@');
                add_clean(&b, host, strlen(host), 40);
            }
            coll_buf_addc(&b, ']');
        }
        add_detail(&b, info);
        json_t *stop = coll_node_payload(info, "-stop");
        json_t *sinfo = json_object_get(stop, "info");
        json_t *etype = json_object_get(sinfo, "etype");
        if (!stop) {
            coll_buf_adds(&b, "  (unfinished)");
        } else if (etype && !json_is_null(etype)) {
            coll_buf_adds(&b, "  ERROR ");
            add_value(&b, etype, 60);
            json_t *msg = json_object_get(sinfo, "message");
            if (msg && !json_is_null(msg)) {
                coll_buf_adds(&b, ": ");
                add_value(&b, msg, 80);
            }
        }
        fprintf(t->out, "%s\n", b.p ? b.p : "");
        coll_buf_free(&b);
        if (depth < 10000)
            tree_nodes(t, json_object_get(node, "children"), depth + 1);
    }
}

int coll_render_tree(FILE *out, const char *text, size_t len, int bar_width)
{
    json_t *r = coll_report_load(text, len);
    if (!r)
        return -1;
    json_t *children = json_object_get(r, "children");
    size_t count = 0;
    int64_t min_us = INT64_MAX;
    walk_nodes(children, &count, &min_us, NULL, 0);
    struct tree_ctx t = {
        .out = out,
        .total = json_integer_value(json_object_get(json_object_get(r, "info"), "finished")),
        .width = bar_width < 10 ? 10 : bar_width,
    };
    json_t *first = json_array_get(children, 0);
    json_t *fp = first ? coll_node_payload(json_object_get(first, "info"), "") : NULL;
    char ts[32] = "?";
    if (min_us != INT64_MAX)
        coll_ts_fmt_us(min_us, ts);
    fprintf(out, "trace %s\n", str_or(json_object_get(fp, "base_id"), "?"));
    fprintf(out, "started %sZ, %lld ms, %zu span%s", ts, (long long)t.total, count,
            count == 1 ? "" : "s");
    const char *cat;
    json_t *st;
    int first_cat = 1;
    json_object_foreach(json_object_get(r, "stats"), cat, st) {
        struct coll_buf b;
        coll_buf_init(&b);
        add_clean(&b, cat, strlen(cat), 40);
        fprintf(out, "%s%s %lld/%lld ms", first_cat ? " (" : ", ", b.p ? b.p : "",
                (long long)json_integer_value(json_object_get(st, "count")),
                (long long)json_integer_value(json_object_get(st, "duration")));
        coll_buf_free(&b);
        first_cat = 0;
    }
    fprintf(out, "%s\n\n", first_cat ? "" : ")");
    char scale[64];
    snprintf(scale, sizeof scale, "0..%lld ms", (long long)t.total);
    fprintf(out, "%7s %7s  %-*s  %s\n", "START", "MS", t.width, scale, "SPAN");
    tree_nodes(&t, children, 0);
    json_decref(r);
    return 0;
}

/* ------------------------------------------------------------ ids */

int coll_is_dump_name(const char *name)
{
    uint8_t raw[16];
    char id[37];
    if (strlen(name) != 41 || strcmp(name + 36, ".json") != 0)
        return 0;
    memcpy(id, name, 36);
    id[36] = '\0';
    if (coll_uuid_parse(id, raw) < 0)
        return 0;
    for (int i = 0; i < 36; i++)
        if (isupper((unsigned char)id[i]))
            return 0;
    return 1;
}

long coll_match_id(const char *prefix, char *const *ids, size_t n)
{
    size_t pl = strlen(prefix);
    long found = -1;
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        if (strlen(ids[i]) == pl && strcasecmp(ids[i], prefix) == 0)
            return (long)i;
        if (strncasecmp(ids[i], prefix, pl) == 0) {
            found = (long)i;
            hits++;
        }
    }
    if (hits > 1)
        return -2;
    return found;
}
