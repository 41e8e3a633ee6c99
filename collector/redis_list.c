/*
 * collector/redis_list.c - see redis_list.h.
 */
#include "redis_list.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "json.h"
#include "redis_store.h"
#include "report.h"

#define LIST_TIMEOUT_MS 5000
#define SCAN_COUNT 500
#define SCAN_MAX_CALLS 1000000 /* a bound on the SCAN loop (500M keys) */

struct lister {
    const struct coll_list_filter *f;
    struct coll_summary *rows;
    size_t n, cap, skipped;
    coll_redis_list_warn warn;
    void *arg;
};

static void skip(struct lister *L, const char *id, const char *why)
{
    L->skipped++;
    if (L->warn)
        L->warn(L->arg, id, why);
}

/* One trace: its LRANGE reply -> a row (when it passes the filter).
 * 0, or -1 on allocation failure. */
static int one_trace(struct lister *L, const char *id, const redisReply *rep)
{
    char why[192];
    if (rep->type != REDIS_REPLY_ARRAY) {
        skip(L, id, rep->type == REDIS_REPLY_ERROR ? rep->str : "not a list");
        return 0;
    }
    if (rep->elements == 0)
        return 0; /* removed between SCAN and LRANGE */
    json_t *evs = json_array();
    if (!evs)
        return -1;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        json_error_t je;
        json_t *ev = e->type == REDIS_REPLY_STRING
                         ? json_loadb(e->str, e->len, JSON_ALLOW_NUL, &je)
                         : NULL;
        if (!ev) {
            snprintf(why, sizeof why, "event %zu is not JSON", i);
            skip(L, id, why);
            json_decref(evs);
            return 0;
        }
        json_array_append_new(evs, ev);
    }
    struct coll_report_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    json_t *rep_json = coll_report_build(evs, &ctx);
    if (!rep_json) {
        json_decref(evs);
        if (ctx.err == COLL_REPORT_ENOMEM)
            return -1;
        snprintf(why, sizeof why, "not a trace: %s", ctx.errstr);
        skip(L, id, why);
        return 0;
    }
    struct coll_buf b;
    coll_buf_init(&b);
    int rc = coll_report_dump(&b, rep_json);
    coll_report_free(rep_json);
    json_decref(evs);
    if (rc < 0 || b.oom) {
        coll_buf_free(&b);
        return -1;
    }
    if (L->n == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 64;
        struct coll_summary *nv = realloc(L->rows, nc * sizeof *nv);
        if (!nv) {
            coll_buf_free(&b);
            return -1;
        }
        L->rows = nv;
        L->cap = nc;
    }
    struct coll_summary *s = &L->rows[L->n];
    if (coll_summary_from_dump(b.p, b.len, s) < 0) {
        skip(L, id, "not a trace");
    } else if (coll_list_match(b.p, b.len, s, L->f)) {
        snprintf(s->base_id, sizeof s->base_id, "%s", id);
        L->n++;
    }
    coll_buf_free(&b);
    return 0;
}

#define KEY_PREFIX_LEN (sizeof COLL_REDIS_KEY_PREFIX - 1)

/* scan_all() callback of `trace list --redis`: the traces of one SCAN
 * batch (keys new to the scan), read with one pipeline of LRANGEs.  0, or
 * -1 with err. */
static int read_batch(redisContext *c, void *arg, const redisReply **keys, size_t nkeys,
                      char *err, size_t errlen)
{
    struct lister *L = arg;
    const size_t pl = KEY_PREFIX_LEN;
    char **ids = calloc(nkeys ? nkeys : 1, sizeof *ids);
    size_t n = 0;
    int rc = 0;
    if (!ids) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < nkeys; i++) {
        const redisReply *k = keys[i];
        const char *id = k->str + pl;
        if (k->len - pl >= sizeof L->rows[0].base_id) {
            skip(L, id, "id longer than 39 bytes");
            continue;
        }
        if (redisAppendCommand(c, "LRANGE %b 0 -1", k->str, k->len) != REDIS_OK) {
            snprintf(err, errlen, "LRANGE: %s", c->errstr);
            rc = -1;
            break;
        }
        ids[n++] = strdup(id);
    }
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (rc == 0 && (redisGetReply(c, &r) != REDIS_OK || !r)) {
            snprintf(err, errlen, "LRANGE: %s", c->errstr);
            rc = -1;
        }
        if (rc == 0 && (!ids[i] || one_trace(L, ids[i], r) < 0)) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
        if (r)
            freeReplyObject(r);
        free(ids[i]);
    }
    free(ids);
    return rc;
}

#define SCAN_CURSOR_MAX 32

/* One SCAN call with MATCH `pat` from `cursor`, which it advances: the
 * reply (element[1] holds the keys; the caller frees it), or NULL with
 * `err` set.  `*calls` counts the calls and bounds them (SCAN_MAX_CALLS). */
static redisReply *scan_next(redisContext *c, const char *pat, char cursor[SCAN_CURSOR_MAX],
                             int *calls, char *err, size_t errlen)
{
    if (++*calls > SCAN_MAX_CALLS) {
        snprintf(err, errlen, "SCAN did not end after %d calls", SCAN_MAX_CALLS);
        return NULL;
    }
    redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT %d", cursor, pat, SCAN_COUNT);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= SCAN_CURSOR_MAX ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "SCAN: %s",
                 !r ? c->errstr : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    memcpy(cursor, r->element[0]->str, r->element[0]->len);
    cursor[r->element[0]->len] = '\0';
    return r;
}

typedef int (*scan_batch_fn)(redisContext *c, void *arg, const redisReply **keys, size_t n,
                             char *err, size_t errlen);

/* Every key of the Redis database at `uri` matching `pat`, each once (SCAN
 * may return a key twice), handed to `batch` one SCAN batch at a time:
 * string keys longer than the prefix and holding no NUL.  0, or -1 with
 * `err` (the connection, SCAN, or `batch`'s own). */
static int scan_all(const char *uri, const char *pat, scan_batch_fn batch, void *arg,
                    char *err, size_t errlen)
{
    redisContext *c = coll_redis_open(uri, LIST_TIMEOUT_MS, err, errlen);
    if (!c)
        return -1;
    json_t *seen = json_object();
    char cursor[SCAN_CURSOR_MAX] = "0";
    int rc = seen ? 0 : -1, calls = 0;
    if (!seen)
        snprintf(err, errlen, "out of memory");
    while (rc == 0) {
        redisReply *r = scan_next(c, pat, cursor, &calls, err, errlen);
        if (!r) {
            rc = -1;
            break;
        }
        const redisReply *keys = r->element[1];
        const redisReply **fresh = calloc(keys->elements ? keys->elements : 1, sizeof *fresh);
        size_t n = 0;
        if (!fresh) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
        for (size_t i = 0; rc == 0 && i < keys->elements; i++) {
            const redisReply *k = keys->element[i];
            if (k->type != REDIS_REPLY_STRING || k->len <= KEY_PREFIX_LEN ||
                memchr(k->str, 0, k->len) || json_object_get(seen, k->str + KEY_PREFIX_LEN))
                continue;
            if (json_object_set_new(seen, k->str + KEY_PREFIX_LEN, json_true()) < 0) {
                snprintf(err, errlen, "out of memory");
                rc = -1;
                break;
            }
            fresh[n++] = k;
        }
        if (rc == 0)
            rc = batch(c, arg, fresh, n, err, errlen);
        free(fresh);
        freeReplyObject(r);
        if (strcmp(cursor, "0") == 0)
            break;
    }
    json_decref(seen);
    redisFree(c);
    return rc;
}

int coll_redis_list(const char *uri, const struct coll_list_filter *f,
                    struct coll_summary **rows, size_t *nrows, size_t *skipped,
                    coll_redis_list_warn warn, void *arg, char *err, size_t errlen)
{
    *rows = NULL;
    *nrows = 0;
    if (skipped)
        *skipped = 0;
    struct lister L = {.f = f, .warn = warn, .arg = arg};
    int rc = scan_all(uri, COLL_REDIS_KEY_PREFIX "*", read_batch, &L, err, errlen);
    if (rc < 0) {
        free(L.rows);
        return -1;
    }
    *rows = L.rows;
    *nrows = L.n;
    if (skipped)
        *skipped = L.skipped;
    return 0;
}

void coll_redis_ids_free(char **ids, size_t n)
{
    for (size_t i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
}

/* scan_all() callback of coll_redis_find_ids(): collect the ids. */
struct id_list {
    char **v;
    size_t n, cap;
};

static int add_ids(redisContext *c, void *arg, const redisReply **keys, size_t nkeys, char *err,
                   size_t errlen)
{
    struct id_list *L = arg;
    (void)c;
    for (size_t i = 0; i < nkeys; i++) {
        char *dup = strdup(keys[i]->str + KEY_PREFIX_LEN);
        if (L->n == L->cap) {
            size_t nc = L->cap ? L->cap * 2 : 16;
            char **nv = realloc(L->v, nc * sizeof *nv);
            if (nv) {
                L->v = nv;
                L->cap = nc;
            }
        }
        if (!dup || L->n == L->cap) {
            free(dup);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        L->v[L->n++] = dup;
    }
    return 0;
}

int coll_redis_find_ids(const char *uri, const char *prefix, char ***ids, size_t *n,
                        char *err, size_t errlen)
{
    *ids = NULL;
    *n = 0;
    /* the pattern: every hex letter as a [xX] class (case-insensitive) */
    char pat[sizeof COLL_REDIS_KEY_PREFIX + 4 * 36 + 2];
    size_t pl = strlen(prefix), o = sizeof COLL_REDIS_KEY_PREFIX - 1;
    if (pl > 36 || strspn(prefix, "0123456789abcdefABCDEF-") != pl) {
        snprintf(err, errlen, "'%s' is not a trace id or id prefix", prefix);
        return -1;
    }
    memcpy(pat, COLL_REDIS_KEY_PREFIX, o);
    for (size_t i = 0; i < pl; i++) {
        char ch = prefix[i];
        if ((ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')) {
            pat[o++] = '[';
            pat[o++] = (char)(ch | 0x20);
            pat[o++] = (char)(ch & ~0x20);
            pat[o++] = ']';
        } else {
            pat[o++] = ch;
        }
    }
    pat[o++] = '*';
    pat[o] = '\0';
    struct id_list L = {NULL, 0, 0};
    int rc = scan_all(uri, pat, add_ids, &L, err, errlen);
    *ids = L.v;
    *n = L.n;
    if (rc < 0) {
        coll_redis_ids_free(*ids, *n);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}
