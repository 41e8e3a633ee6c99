/*
 * collector/redis_store.c - see redis_store.h.
 */
#include "redis_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#define REDIS_TIMEOUT_MS 1000
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000

int coll_redis_parse_uri(const char *uri, struct coll_redis_uri *u)
{
    static const char pfx[] = "redis://";
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (!uri || strncmp(uri, pfx, sizeof pfx - 1) != 0)
        return -1;
    const char *p = uri + sizeof pfx - 1;
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof u->host)
        return -1;
    memcpy(u->host, p, hl);
    u->host[hl] = 0;
    p += hl;
    if (*p == ':') {
        char *end;
        errno = 0;
        long v = strtol(p + 1, &end, 10);
        if (errno || end == p + 1 || v < 1 || v > 65535 || (*end && *end != '/'))
            return -1;
        u->port = (int)v;
        p = end;
    }
    if (*p == '/') {
        p++;
        if (*p) {
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (errno || end == p || *end || v < 0 || v > 1000000)
                return -1;
            u->db = (int)v;
        }
    } else if (*p) {
        return -1;
    }
    return 0;
}

void *coll_redis_connect(const struct coll_redis_uri *u, unsigned timeout_ms, char *err,
                         size_t errlen)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(u->host, u->port, tv);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(err, errlen, "connect %s:%d: %s", u->host, u->port, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(err, errlen, "set timeout: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    if (u->db) {
        redisReply *rep = redisCommand(c, "SELECT %d", u->db);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "SELECT %d: %s", u->db,
                     rep ? rep->str : c->errstr);
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(rep);
    }
    return c;
}

void *coll_redis_open(const char *uri, unsigned timeout_ms, char *err, size_t errlen)
{
    struct coll_redis_uri u;
    if (coll_redis_parse_uri(uri, &u) < 0) {
        snprintf(err, errlen, "bad Redis URI '%s' (redis://HOST[:PORT][/DB])", uri);
        return NULL;
    }
    return coll_redis_connect(&u, timeout_ms, err, errlen);
}

int coll_redis_init(struct coll_redis *r, const char *uri)
{
    memset(r, 0, sizeof *r);
    if (coll_redis_parse_uri(uri, &r->u) < 0 || strlen(uri) >= sizeof r->uri)
        return -1;
    snprintf(r->uri, sizeof r->uri, "%s", uri);
    return 0;
}

void coll_redis_close(struct coll_redis *r)
{
    if (r->ctx)
        redisFree(r->ctx);
    r->ctx = NULL;
}

static void failed(struct coll_redis *r, uint64_t now_ms)
{
    coll_redis_close(r);
    r->errors++;
    r->down = 1;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (r->backoff_ms > BACKOFF_MAX_MS)
        r->backoff_ms = BACKOFF_MAX_MS;
    r->next_try_ms = now_ms + r->backoff_ms;
}

/* Connected (or connect now, unless in a backoff)?  0, or -1 with the n
 * events counted as failed. */
static int ensure_conn(struct coll_redis *r, size_t n, uint64_t now_ms)
{
    if (r->ctx)
        return 0;
    if (r->down && now_ms < r->next_try_ms) {
        r->failed += n;
        snprintf(r->lasterr, sizeof r->lasterr, "down (retry in %llu ms)",
                 (unsigned long long)(r->next_try_ms - now_ms));
        return -1;
    }
    r->ctx = coll_redis_connect(&r->u, REDIS_TIMEOUT_MS, r->lasterr, sizeof r->lasterr);
    if (!r->ctx) {
        r->failed += n;
        failed(r, now_ms);
        return -1;
    }
    r->connects++;
    return 0;
}

/* Send the pipeline and read the replies of its n LPUSHes. */
static int read_replies(struct coll_redis *r, size_t n, uint64_t now_ms)
{
    redisContext *c = r->ctx;
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        void *rep = NULL;
        if (redisGetReply(c, &rep) != REDIS_OK || !rep) {
            snprintf(r->lasterr, sizeof r->lasterr, "LPUSH: %s", c->errstr);
            r->pushed += ok;
            r->failed += n - ok;
            failed(r, now_ms);
            return -1;
        }
        redisReply *rr = rep;
        if (rr->type == REDIS_REPLY_ERROR)
            snprintf(r->lasterr, sizeof r->lasterr, "LPUSH: %s", rr->str);
        else
            ok++;
        freeReplyObject(rep);
    }
    r->pushed += ok;
    r->failed += n - ok;
    if (ok < n) {
        r->errors++;
        return -1;
    }
    r->down = 0;
    r->backoff_ms = 0;
    return 0;
}

int coll_redis_push_cmds(struct coll_redis *r, size_t n, const char *cmds, size_t len,
                         uint64_t now_ms)
{
    if (n == 0)
        return 0;
    if (ensure_conn(r, n, now_ms) < 0)
        return -1;
    redisContext *c = r->ctx;
    if (redisAppendFormattedCommand(c, cmds, len) != REDIS_OK) {
        snprintf(r->lasterr, sizeof r->lasterr, "pipeline: %s", c->errstr);
        r->failed += n;
        failed(r, now_ms);
        return -1;
    }
    return read_replies(r, n, now_ms);
}

json_t *coll_redis_fetch(const char *uri, const char *base_id, char *err, size_t errlen)
{
    redisContext *c = coll_redis_open(uri, REDIS_TIMEOUT_MS, err, errlen);
    if (!c)
        return NULL;
    json_t *arr = NULL;
    redisReply *rep = redisCommand(c, "LRANGE " COLL_REDIS_KEY_PREFIX "%s 0 -1", base_id);
    if (!rep) {
        snprintf(err, errlen, "LRANGE: %s", c->errstr);
        goto out;
    }
    if (rep->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "LRANGE: %s",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        goto out;
    }
    arr = json_array();
    for (size_t i = 0; arr && i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        json_error_t je;
        json_t *ev = NULL;
        if (e->type == REDIS_REPLY_STRING)
            ev = json_loadb(e->str, e->len, JSON_ALLOW_NUL, &je);
        if (!ev) {
            snprintf(err, errlen, "event %zu of %s: not JSON", i, base_id);
            json_decref(arr);
            arr = NULL;
            break;
        }
        if (json_array_append_new(arr, ev) < 0) {
            snprintf(err, errlen, "out of memory");
            json_decref(arr);
            arr = NULL;
        }
    }
out:
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return arr;
}
