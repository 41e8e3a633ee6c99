/*
 * store.h - the message-store interface of zaqard.
 *
 * zaqard keeps its messages in "pools"; each pool is one message store
 * (Redis through hiredis, or MongoDB through libmongoc).  A queue lives on
 * exactly one pool, chosen when the queue is created and remembered in the
 * PostgreSQL catalog (catalog.h).  The HTTP layer finds the pool with a
 * catalog lookup and calls the operations below.
 *
 * Contract for every operation:
 *  - Thread-safe: called concurrently from many HTTP worker threads.  A store
 *    keeps its own connection pool (mongoc_client_pool_t for MongoDB, a
 *    mutex-protected free list of redisContext for Redis).
 *  - `project` and `queue` are validated by the caller (names match
 *    ^[A-Za-z0-9_-]{1,64}$, project ids ^[A-Za-z0-9_.-]{1,256}$ or "").
 *    Stores must isolate projects: the same queue name in two projects is
 *    two queues.
 *  - Returns ZQ_OK (0) or a negative zq_status.  On ZQ_EBACKEND `err` holds
 *    a human-readable message (the HTTP layer answers 503).
 *  - Expired messages (created + ttl <= now) are invisible to every
 *    operation; stores may garbage-collect them lazily.
 *  - A claim is "live" while now < claim expiry.  A message whose claim has
 *    expired is free again.
 *  - Output vectors are owned by the caller and released with
 *    zq_msg_vec_free().
 */
#ifndef ZAQARD_STORE_H
#define ZAQARD_STORE_H

#include <stddef.h>
#include <jansson.h>

#define ZQ_ID_LEN 48        /* room for any message or claim id + NUL */
#define ZQ_CLIENT_LEN 128   /* Client-ID (a UUID in practice) + NUL */

typedef enum {
    ZQ_OK = 0,
    ZQ_ENOENT = -1,      /* no such message / claim (HTTP 404) */
    ZQ_EFORBIDDEN = -2,  /* e.g. delete of a message claimed by another claim (403) */
    ZQ_ECONFLICT = -3,   /* (409) */
    ZQ_EBACKEND = -4,    /* the database failed or is unreachable (503) */
    ZQ_EINVAL = -5,      /* bad argument the caller should have caught (400) */
} zq_status;

typedef struct {
    char msg[256];
} zq_err;

/* One message as stored. */
typedef struct {
    char id[ZQ_ID_LEN];            /* opaque, URL-safe ([A-Za-z0-9_-]) */
    long long marker;              /* per-queue, strictly increasing with posting order */
    json_t *body;                  /* owned reference (any JSON value) */
    int ttl;                       /* seconds, as posted (or extended by a claim) */
    long long created_ms;          /* epoch milliseconds */
    char client_id[ZQ_CLIENT_LEN]; /* Client-ID of the poster */
    char claim_id[ZQ_ID_LEN];      /* "" when not claimed or the claim expired */
    long long claim_expires_ms;    /* 0 when not claimed */
} zq_message;

typedef struct {
    zq_message *v;
    size_t n, cap;
} zq_msg_vec;

/* A message to post. */
typedef struct {
    json_t *body; /* borrowed */
    int ttl;      /* seconds, already validated (60..1209600) */
} zq_new_msg;

typedef struct {
    int limit;            /* 1..20 */
    long long marker;     /* return only messages with marker > this; 0 = from the start */
    int echo;             /* 0: leave out messages posted by client_id */
    int include_claimed;  /* 0: leave out messages with a live claim */
} zq_list_opts;

typedef struct {
    long long free, claimed, total;
    /* oldest/newest live message, valid when total > 0 */
    zq_message oldest, newest; /* body is NULL here */
} zq_stats;

typedef struct {
    int ttl;              /* claim ttl in seconds as set at claim or last update */
    long long created_ms; /* when the claim was made (age = now - created) */
    long long expires_ms;
} zq_claim_info;

typedef struct zq_store zq_store;

typedef struct zq_store_ops {
    const char *kind; /* "redis" or "mongodb" */

    /* Post n messages in order; ids_out[i] receives message i's id. */
    int (*post)(zq_store *s, const char *project, const char *queue,
                const char *client_id, const zq_new_msg *msgs, size_t n,
                char (*ids_out)[ZQ_ID_LEN], zq_err *err);

    /* List messages in marker order.  *next_marker receives the marker of
     * the last message returned (unchanged input marker when none). */
    int (*list)(zq_store *s, const char *project, const char *queue,
                const char *client_id, const zq_list_opts *opts,
                zq_msg_vec *out, long long *next_marker, zq_err *err);

    /* One message by id: ZQ_ENOENT if absent or expired. */
    int (*get)(zq_store *s, const char *project, const char *queue,
               const char *id, zq_message *out, zq_err *err);

    /* Delete one message.  claim_id NULL: ZQ_EFORBIDDEN if the message has
     * a live claim.  claim_id set: ZQ_EFORBIDDEN unless the message's live
     * claim is that claim.  ZQ_ENOENT if absent. */
    int (*del)(zq_store *s, const char *project, const char *queue,
               const char *id, const char *claim_id, zq_err *err);

    /* Delete messages by id, ignoring absent ones (claims are not checked,
     * as in Zaqar's bulk delete). */
    int (*del_many)(zq_store *s, const char *project, const char *queue,
                    const char *const *ids, size_t n, zq_err *err);

    /* Atomically remove and return up to `limit` free (unclaimed) messages,
     * oldest first. */
    int (*pop)(zq_store *s, const char *project, const char *queue, int limit,
               zq_msg_vec *out, zq_err *err);

    /* Atomically claim up to `limit` free messages, oldest first.  A message
     * is never in two live claims.  Claimed messages whose expiry is earlier
     * than now + ttl + grace get their ttl extended to reach it.
     * claim_id_out receives a new claim id even when no message was free
     * (then out->n == 0 and nothing is stored). */
    int (*claim)(zq_store *s, const char *project, const char *queue,
                 const char *client_id, int ttl, int grace, int limit,
                 char claim_id_out[ZQ_ID_LEN], zq_msg_vec *out, zq_err *err);

    /* A live claim and its messages; ZQ_ENOENT if unknown or expired. */
    int (*claim_get)(zq_store *s, const char *project, const char *queue,
                     const char *claim_id, zq_claim_info *info,
                     zq_msg_vec *out, zq_err *err);

    /* Renew a live claim: expires = now + ttl, messages extended as in
     * claim().  ZQ_ENOENT if unknown or expired. */
    int (*claim_update)(zq_store *s, const char *project, const char *queue,
                        const char *claim_id, int ttl, int grace, zq_err *err);

    /* Release a claim: its messages become free.  ZQ_OK even if unknown. */
    int (*claim_delete)(zq_store *s, const char *project, const char *queue,
                        const char *claim_id, zq_err *err);

    int (*stats)(zq_store *s, const char *project, const char *queue,
                 zq_stats *out, zq_err *err);

    /* Remove every message and claim of the queue (queue deletion). */
    int (*purge)(zq_store *s, const char *project, const char *queue, zq_err *err);

    /* Cheap round trip to the database (health check). */
    int (*ping)(zq_store *s, zq_err *err);

    void (*destroy)(zq_store *s);
} zq_store_ops;

struct zq_store {
    const zq_store_ops *ops;
    char name[65]; /* pool name */
};

/* Constructors: parse the URI, connect lazily or eagerly, return NULL with
 * err filled on a bad URI.  Implemented in store_redis.c / store_mongo.c. */
zq_store *zq_store_redis_new(const char *pool_name, const char *uri, zq_err *err);
zq_store *zq_store_mongo_new(const char *pool_name, const char *uri, zq_err *err);

/* Picks the constructor from the URI scheme (redis:// or mongodb://). */
zq_store *zq_store_new(const char *pool_name, const char *uri, zq_err *err);

/* Helpers shared by the stores (store.c). */
void zq_msg_vec_push(zq_msg_vec *v, zq_message *m); /* moves m (takes its body) */
void zq_msg_vec_free(zq_msg_vec *v);
void zq_message_clear(zq_message *m);               /* drops the body reference */

#endif
