/*
 * collector/redis_store.h - OSProfiler's Redis layout (compat §8): every
 * event is `LPUSH osprofiler_opt:<base_id> <json.dumps(event)>`, no TTL;
 * a trace is read back with `LRANGE osprofiler_opt:<base_id> 0 -1`.
 *
 * The daemon side never blocks for long: connect/IO timeouts of 1 s, one
 * pipeline per datagram, and after a failure no attempt until a backoff
 * (1 s doubling up to 30 s) has passed; events that could not be pushed are
 * counted (they are in the journal and the dumps as always).
 *
 * Not thread-safe.
 */
#ifndef LDPROF_COLLECTOR_REDIS_STORE_H
#define LDPROF_COLLECTOR_REDIS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define COLL_REDIS_KEY_PREFIX "osprofiler_opt:"

struct coll_redis_uri {
    char host[256];
    int port; /* default 6379 */
    int db;   /* default 0 */
};

/* Parse "redis://HOST[:PORT][/DB]".  Returns 0 or -1. */
int coll_redis_parse_uri(const char *uri, struct coll_redis_uri *u);

/* Connect to u (connect and I/O timeouts of timeout_ms) and SELECT its
 * database.  Returns a redisContext *, or NULL with `err` filled. */
void *coll_redis_connect(const struct coll_redis_uri *u, unsigned timeout_ms, char *err,
                         size_t errlen);

/* coll_redis_parse_uri() + coll_redis_connect(): NULL with `err` filled
 * ("bad Redis URI ..." or the connection's error). */
void *coll_redis_open(const char *uri, unsigned timeout_ms, char *err, size_t errlen);

struct coll_redis {
    struct coll_redis_uri u;
    char uri[512];
    void *ctx; /* redisContext *, NULL while disconnected */
    uint64_t next_try_ms, backoff_ms;
    uint64_t pushed, failed, errors, connects;
    int down; /* the last attempt failed */
    char lasterr[160];
};

/* Set up (no connection yet: the first push connects).  0 or -1. */
int coll_redis_init(struct coll_redis *r, const char *uri);
void coll_redis_close(struct coll_redis *r);

/* Send `n` commands already in the Redis protocol (`len` bytes of cmds,
 * e.g. the LPUSHes of coll_redis_dgram_cmds()) as one pipeline, in one
 * write, and read their n replies.  `now_ms`: a monotonic clock for the
 * backoff.  Returns 0 when every command succeeded, -1 otherwise (r->failed
 * counts the events lost for Redis, r->lasterr says why; the caller logs). */
int coll_redis_push_cmds(struct coll_redis *r, size_t n, const char *cmds, size_t len,
                         uint64_t now_ms);

/* The events of trace `base_id` in LRANGE order, as a new JSON array (each
 * element parsed from its stored text).  NULL with `err` filled on a
 * connection, command or parse error. */
json_t *coll_redis_fetch(const char *uri, const char *base_id, char *err, size_t errlen);

#endif
