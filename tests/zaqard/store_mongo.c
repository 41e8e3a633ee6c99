/*
 * store_mongo.c - the MongoDB message store (libmongoc 1.23).
 *
 * Connection
 *   One mongoc_client_pool_t per store; every operation pops a client and
 *   pushes it back before returning (error API version 2, appname "zaqard"
 *   unless the URI sets one).  mongoc_init() runs once per process
 *   (pthread_once); mongoc_cleanup() is never called, other stores or
 *   libraries may still use the driver.  The database is the URI path
 *   ("mongodb://h:p/mydb"), "zaqar" when absent.  Unless the URI sets them,
 *   serverSelectionTimeoutMS=2000, connectTimeoutMS=2000 and
 *   socketTimeoutMS=30000, so an unreachable or hung server turns into
 *   ZQ_EBACKEND within seconds instead of blocking a worker.  The constructor
 *   never talks to the server (it fails only on a bad URI).
 *
 * Collections (all values written by this file only)
 *   messages  {_id: id (32 hex), p: project, q: queue, k: marker (int64),
 *              b: body, t: ttl s (int32), c: created ms, e: expires ms
 *              (= c + t*1000), u: poster's Client-ID, ce: claim expires ms
 *              (int64, 0 = never claimed / released), cid: claim id (absent
 *              when never claimed / released)}
 *   claims    {_id: claim id, p, q, t: claim ttl s, c: created ms, e: expires ms}
 *   counters  {_id: "project/queue", n: last marker handed out (int64)}
 *   A message is live while e > now, its claim is live while ce > now (the
 *   cid of an expired claim may stay behind and is ignored).  Times come from
 *   this host's clock (zq_now_ms), never from the server.
 *
 * Bodies are converted json_t <-> BSON directly (object -> document, array ->
 * array, integer -> int64, real -> double, string/true/false/null as such),
 * not through extended JSON text: a body such as {"$oid": "..."} or
 * {"$numberLong": "1"} must come back exactly as posted, which a trip through
 * bson_new_from_json() would not guarantee.  Inserts pass validate:false so
 * libmongoc does not refuse keys with '.' or a leading '$' inside bodies
 * (MongoDB >= 5.0 stores them; older servers answer an error -> ZQ_EBACKEND).
 * A body nested deeper than 90 levels is refused with ZQ_EINVAL before it
 * reaches the server (MongoDB's limit is 100 levels for the whole document).
 *
 * Markers: post() reserves a block of n markers with one findAndModify
 * {$inc: {n: count}} (upsert, new) on counters/"project/queue" and numbers
 * the batch from it, so markers are unique and increase with posting order
 * within a queue.  purge() keeps the counter: markers stay increasing across
 * queue deletion and re-creation (a client's old marker never hides new
 * messages).  As in Zaqar, two concurrent posts may become visible out of
 * marker order; a lister that paged past the later batch can miss the
 * earlier one.
 *
 * Atomicity
 *   claim: up to `limit` findAndModify, each taking the oldest message with
 *     e > now and ce <= now (sorted k:1) and setting {cid, ce}; every single
 *     update is atomic in MongoDB, so no message ends up in two live claims,
 *     whatever the number of threads or processes.  Messages that would
 *     expire before now + ttl + grace then get t/e raised (one bulk of
 *     update_one {_id, e < new_e}, so e never shrinks), and the claim
 *     document is inserted last (nothing is stored when nothing was free).
 *     If anything fails half-way the messages claimed so far are released.
 *   pop: up to `limit` findAndModify remove:true with the same filter.
 *   del: read the message, decide 403/404, then delete_one with a filter
 *     that restates the claim condition (free: ce <= now; with claim id:
 *     cid = that id); if that deleted nothing the state changed in between
 *     and the decision is made again (bounded; ZQ_ECONFLICT if it never
 *     settles).
 *   claim_update: update the live claim document, move ce of its live
 *     messages (cid = id, ce > now) and extend their ttl as claim() does.
 *   claim_delete: unset cid / ce = 0 on its messages, delete the claim doc.
 *
 * Garbage collection is lazy: at most once a minute per store, a post first
 * deletes every expired message and claim of the database (indexed on e).
 * Indexes are created on the first post that reaches the server (and again
 * after a network failure): messages {p,q,k} unique, {p,q,cid}, {e};
 * claims {p,q}, {e}.
 *
 * Arguments: project NULL is "", client_id NULL is "".  Names that store.h
 * excludes, NULL ids or body, ttl/limit < 1, grace < 0 and a Client-ID
 * longer than ZQ_CLIENT_LEN-1 give ZQ_EINVAL (a careless caller must not make
 * two queues share documents or a counter).  Unknown ids are just unknown.
 *
 * Errors: a bson_error_t becomes ZQ_EBACKEND with "mongodb pool NAME: OP:
 * MESSAGE" in err.  Output vectors are only appended to; on an error the
 * messages appended by the failing call are removed again, except in pop:
 * messages already removed from the database are returned (ZQ_OK) rather
 * than lost.  get and stats zero their output first (a failed get leaves a
 * message zq_message_clear() accepts); claim_get takes NULL info or out and
 * returns the claim's live messages in marker order.
 *
 * Clocks: claim atomicity relies on every zaqard sharing a database having
 * clocks that agree to well under the shortest claim ttl (60 s through the
 * API), as with Zaqar's own MongoDB driver.
 */
#include "store.h"
#include "util.h"

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DB "zaqar"
#define APPNAME "zaqard"
#define DEFAULT_SERVER_SELECTION_MS 2000
#define DEFAULT_CONNECT_MS 2000
#define DEFAULT_SOCKET_MS 30000
#define GC_INTERVAL_MS 60000LL
#define DEL_ATTEMPTS 8
#define BODY_MAX_DEPTH 90   /* MongoDB refuses documents nested > 100 deep */
#define JSON_MAX_DEPTH 512  /* reading: anything this store could have written */

typedef struct {
    zq_store base; /* first: zq_store * <-> mstore * */
    mongoc_client_pool_t *pool;
    mongoc_uri_t *uri;
    char *db;
    atomic_int indexes_done;
    atomic_llong last_gc_ms;
} mstore;

static const zq_store_ops mongo_ops;

/* ------------------------------------------------------------------ init */

static pthread_once_t mongo_once = PTHREAD_ONCE_INIT;

/* libmongoc's default log handler writes its own line format to stderr,
 * including DEBUG lines every 500 ms while a server is down.  Route the
 * driver's messages into zaqard's structured log instead (level mapped,
 * TRACE dropped, filtered by zq_log_min like every other line). */
static void mongo_log_handler(mongoc_log_level_t level, const char *domain, const char *message,
                              void *data)
{
    (void)data;
    zq_log_level lvl;
    switch (level) {
    case MONGOC_LOG_LEVEL_ERROR:
    case MONGOC_LOG_LEVEL_CRITICAL:
        lvl = ZQ_LOG_ERROR;
        break;
    case MONGOC_LOG_LEVEL_WARNING:
        lvl = ZQ_LOG_WARN;
        break;
    case MONGOC_LOG_LEVEL_MESSAGE:
    case MONGOC_LOG_LEVEL_INFO:
        lvl = ZQ_LOG_INFO;
        break;
    case MONGOC_LOG_LEVEL_DEBUG:
        lvl = ZQ_LOG_DEBUG;
        break;
    default:
        return;
    }
    if (lvl < zq_log_min)
        return;
    char text[512];
    size_t i = 0;
    for (; message && message[i] && i < sizeof text - 1; i++) {
        char ch = message[i];
        text[i] = ch == '"' ? '\'' : (ch == '\n' || ch == '\r') ? ' ' : ch;
    }
    text[i] = '\0';
    zq_log(lvl, "mongoc", "domain=%s text=\"%s\"", domain ? domain : "", text);
}

static void mongo_init_once(void)
{
    mongoc_init();
    mongoc_log_set_handler(mongo_log_handler, NULL);
}

/* ---------------------------------------------------------------- errors */

static void set_err(zq_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(zq_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

static int backend_err(const mstore *ms, zq_err *err, const char *what, const bson_error_t *e)
{
    set_err(err, "mongodb pool %s: %s: %s", ms->base.name, what,
            e && e->message[0] ? e->message : "unknown error");
    return ZQ_EBACKEND;
}

/* ----------------------------------------------------------- connections */

typedef struct {
    mstore *ms;
    mongoc_client_t *client;
    mongoc_collection_t *msgs, *claims, *counters;
} conn;

static void conn_open(conn *c, zq_store *s)
{
    c->ms = (mstore *)s;
    c->client = mongoc_client_pool_pop(c->ms->pool);
    c->msgs = mongoc_client_get_collection(c->client, c->ms->db, "messages");
    c->claims = mongoc_client_get_collection(c->client, c->ms->db, "claims");
    c->counters = mongoc_client_get_collection(c->client, c->ms->db, "counters");
}

static void conn_close(conn *c)
{
    mongoc_collection_destroy(c->msgs);
    mongoc_collection_destroy(c->claims);
    mongoc_collection_destroy(c->counters);
    mongoc_client_pool_push(c->ms->pool, c->client);
    c->client = NULL;
}

/* ------------------------------------------------------- BSON shorthands */

static void append_pq(bson_t *b, const char *project, const char *queue)
{
    BSON_APPEND_UTF8(b, "p", project ? project : "");
    BSON_APPEND_UTF8(b, "q", queue);
}

/* {field: {op: v}} */
static void append_cmp(bson_t *b, const char *field, const char *op, int64_t v)
{
    bson_t sub;
    BSON_APPEND_DOCUMENT_BEGIN(b, field, &sub);
    BSON_APPEND_INT64(&sub, op, v);
    bson_append_document_end(b, &sub);
}

/* {p, q, e > now, ce <= now}: live, free messages of a queue */
static void free_filter(bson_t *f, const char *project, const char *queue, long long now)
{
    append_pq(f, project, queue);
    append_cmp(f, "e", "$gt", now);
    append_cmp(f, "ce", "$lte", now);
}

static void append_sort_k(bson_t *b, const char *key, int dir)
{
    bson_t sub;
    BSON_APPEND_DOCUMENT_BEGIN(b, key, &sub);
    BSON_APPEND_INT32(&sub, "k", dir);
    bson_append_document_end(b, &sub);
}

static int64_t reply_int(const bson_t *reply, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return 0;
}

/* The "value" document of a findAndModify reply; false when null/absent. */
static bool fam_value(const bson_t *reply, bson_t *value)
{
    bson_iter_t it;
    const uint8_t *data;
    uint32_t len;
    if (!bson_iter_init_find(&it, reply, "value") || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return false;
    bson_iter_document(&it, &len, &data);
    return bson_init_static(value, data, len);
}

/* --------------------------------------------------- JSON <-> BSON bodies */

static bool json_to_bson(bson_t *parent, const char *key, int keylen, json_t *v, int depth);

static bool json_children_to_bson(bson_t *doc, json_t *v, int depth)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach(v, k, child) {
            if (!json_to_bson(doc, k, (int)strlen(k), child, depth + 1))
                return false;
        }
        return true;
    }
    size_t i;
    json_t *child;
    json_array_foreach(v, i, child) {
        char buf[16];
        const char *k;
        size_t kl = bson_uint32_to_string((uint32_t)i, &k, buf, sizeof buf);
        if (!json_to_bson(doc, k, (int)kl, child, depth + 1))
            return false;
    }
    return true;
}

static bool json_to_bson(bson_t *parent, const char *key, int keylen, json_t *v, int depth)
{
    if (depth > BODY_MAX_DEPTH || !v)
        return false;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
    case JSON_ARRAY: {
        bson_t child;
        bool ok = json_is_object(v) ? bson_append_document_begin(parent, key, keylen, &child)
                                    : bson_append_array_begin(parent, key, keylen, &child);
        if (!ok)
            return false;
        ok = json_children_to_bson(&child, v, depth);
        bool end = json_is_object(v) ? bson_append_document_end(parent, &child)
                                     : bson_append_array_end(parent, &child);
        return ok && end;
    }
    case JSON_STRING:
        return bson_append_utf8(parent, key, keylen, json_string_value(v), (int)json_string_length(v));
    case JSON_INTEGER:
        return bson_append_int64(parent, key, keylen, (int64_t)json_integer_value(v));
    case JSON_REAL:
        return bson_append_double(parent, key, keylen, json_real_value(v));
    case JSON_TRUE:
        return bson_append_bool(parent, key, keylen, true);
    case JSON_FALSE:
        return bson_append_bool(parent, key, keylen, false);
    case JSON_NULL:
        return bson_append_null(parent, key, keylen);
    }
    return false;
}

/* The value at `it` as a new json_t reference, NULL on failure. */
static json_t *bson_to_json(const bson_iter_t *it, int depth)
{
    if (depth > JSON_MAX_DEPTH)
        return NULL;
    switch (bson_iter_type(it)) {
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        bool is_obj = bson_iter_type(it) == BSON_TYPE_DOCUMENT;
        json_t *out = is_obj ? json_object() : json_array();
        bson_iter_t child;
        if (!out || !bson_iter_recurse(it, &child)) {
            json_decref(out);
            return NULL;
        }
        while (bson_iter_next(&child)) {
            json_t *v = bson_to_json(&child, depth + 1);
            int rc = !v ? -1
                     : is_obj ? json_object_setn_new(out, bson_iter_key(&child), bson_iter_key_len(&child), v)
                              : json_array_append_new(out, v);
            if (rc != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    case BSON_TYPE_UTF8: {
        uint32_t len;
        const char *s = bson_iter_utf8(it, &len);
        return json_stringn(s, len);
    }
    case BSON_TYPE_INT32:
        return json_integer(bson_iter_int32(it));
    case BSON_TYPE_INT64:
        return json_integer(bson_iter_int64(it));
    case BSON_TYPE_DOUBLE:
        return json_real(bson_iter_double(it));
    case BSON_TYPE_BOOL:
        return json_boolean(bson_iter_bool(it));
    case BSON_TYPE_DATE_TIME:
        return json_integer(bson_iter_date_time(it));
    case BSON_TYPE_OID: {
        char hex[25];
        bson_oid_to_string(bson_iter_oid(it), hex);
        return json_string(hex);
    }
    case BSON_TYPE_DECIMAL128: {
        bson_decimal128_t d;
        char buf[BSON_DECIMAL128_STRING];
        bson_iter_decimal128(it, &d);
        bson_decimal128_to_string(&d, buf);
        return json_string(buf);
    }
    default: /* not written by this store */
        return json_null();
    }
}

/* ----------------------------------------------------- documents -> zq_* */

static void copy_str(char *dst, size_t cap, const bson_iter_t *it)
{
    uint32_t len;
    const char *s = bson_iter_utf8(it, &len);
    if (len >= cap)
        len = (uint32_t)cap - 1;
    memcpy(dst, s, len);
    dst[len] = '\0';
}

/* Fill m from a messages document.  The claim is reported only while live
 * at `now`.  want_body=0 leaves body NULL.  Returns false on a malformed
 * document (the body could not be converted). */
static bool doc_to_msg(const bson_t *doc, long long now, int want_body, zq_message *m)
{
    memset(m, 0, sizeof *m);
    char cid[ZQ_ID_LEN] = "";
    long long ce = 0;
    bson_iter_t it;
    if (!bson_iter_init(&it, doc))
        return false;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (strcmp(key, "_id") == 0) {
            if (BSON_ITER_HOLDS_UTF8(&it))
                copy_str(m->id, sizeof m->id, &it);
            else if (BSON_ITER_HOLDS_OID(&it))
                bson_oid_to_string(bson_iter_oid(&it), m->id);
        } else if (strcmp(key, "k") == 0 && BSON_ITER_HOLDS_NUMBER(&it)) {
            m->marker = bson_iter_as_int64(&it);
        } else if (strcmp(key, "b") == 0 && want_body) {
            m->body = bson_to_json(&it, 0);
            if (!m->body)
                return false;
        } else if (strcmp(key, "t") == 0 && BSON_ITER_HOLDS_NUMBER(&it)) {
            m->ttl = (int)bson_iter_as_int64(&it);
        } else if (strcmp(key, "c") == 0 && BSON_ITER_HOLDS_NUMBER(&it)) {
            m->created_ms = bson_iter_as_int64(&it);
        } else if (strcmp(key, "u") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            copy_str(m->client_id, sizeof m->client_id, &it);
        } else if (strcmp(key, "cid") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            copy_str(cid, sizeof cid, &it);
        } else if (strcmp(key, "ce") == 0 && BSON_ITER_HOLDS_NUMBER(&it)) {
            ce = bson_iter_as_int64(&it);
        }
    }
    if (want_body && !m->body)
        m->body = json_null();
    if (ce > now && cid[0]) {
        memcpy(m->claim_id, cid, sizeof cid);
        m->claim_expires_ms = ce;
    }
    return true;
}

/* Drop the messages appended to v after index n0. */
static void vec_truncate(zq_msg_vec *v, size_t n0)
{
    while (v->n > n0)
        zq_message_clear(&v->v[--v->n]);
}

/* Run a find and append each result to out.  Returns ZQ_OK or ZQ_EBACKEND. */
static int find_msgs(conn *c, const bson_t *filter, const bson_t *opts, long long now,
                     int want_body, zq_msg_vec *out, const char *what, zq_err *err)
{
    size_t n0 = out->n;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c->msgs, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc = ZQ_OK;
    while (mongoc_cursor_next(cur, &doc)) {
        zq_message m;
        if (!doc_to_msg(doc, now, want_body, &m)) {
            zq_message_clear(&m);
            set_err(err, "mongodb pool %s: %s: undecodable message document", c->ms->base.name, what);
            rc = ZQ_EBACKEND;
            break;
        }
        zq_msg_vec_push(out, &m);
    }
    if (rc == ZQ_OK && mongoc_cursor_error(cur, &e))
        rc = backend_err(c->ms, err, what, &e);
    mongoc_cursor_destroy(cur);
    if (rc != ZQ_OK)
        vec_truncate(out, n0);
    return rc;
}

/* ------------------------------------------------------ indexes and GC */

static bool create_indexes_on(conn *c, const char *coll, const char *const names[],
                              const char *const keys[][4], const int unique[], int n, bson_error_t *e)
{
    bson_t cmd = BSON_INITIALIZER, arr, idx, key;
    BSON_APPEND_UTF8(&cmd, "createIndexes", coll);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &arr);
    for (int i = 0; i < n; i++) {
        char buf[16];
        const char *ik;
        bson_uint32_to_string((uint32_t)i, &ik, buf, sizeof buf);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, ik, &idx);
        BSON_APPEND_DOCUMENT_BEGIN(&idx, "key", &key);
        for (int j = 0; j < 4 && keys[i][j]; j++)
            BSON_APPEND_INT32(&key, keys[i][j], 1);
        bson_append_document_end(&idx, &key);
        BSON_APPEND_UTF8(&idx, "name", names[i]);
        if (unique[i])
            BSON_APPEND_BOOL(&idx, "unique", true);
        bson_append_document_end(&arr, &idx);
    }
    bson_append_array_end(&cmd, &arr);
    bool ok = mongoc_client_write_command_with_opts(c->client, c->ms->db, &cmd, NULL, NULL, e);
    bson_destroy(&cmd);
    return ok;
}

static void ensure_indexes(conn *c)
{
    if (atomic_load(&c->ms->indexes_done))
        return;
    static const char *const mnames[] = {"p_q_k", "p_q_cid", "e"};
    static const char *const mkeys[][4] = {{"p", "q", "k", NULL}, {"p", "q", "cid", NULL}, {"e", NULL}};
    static const int muniq[] = {1, 0, 0};
    static const char *const cnames[] = {"p_q", "e"};
    static const char *const ckeys[][4] = {{"p", "q", NULL}, {"e", NULL}};
    static const int cuniq[] = {0, 0};
    bson_error_t e;
    bool ok = create_indexes_on(c, "messages", mnames, mkeys, muniq, 3, &e) &&
              create_indexes_on(c, "claims", cnames, ckeys, cuniq, 2, &e);
    if (ok) {
        atomic_store(&c->ms->indexes_done, 1);
        return;
    }
    /* A server-side refusal (e.g. an index of the same name with other
     * options) will not go away by retrying: warn once and carry on.
     * A network failure: try again on the next post. */
    if (e.domain == MONGOC_ERROR_SERVER || e.domain == MONGOC_ERROR_WRITE_CONCERN) {
        atomic_store(&c->ms->indexes_done, 1);
        zq_log(ZQ_LOG_WARN, "mongodb index creation failed", "pool=%s error=\"%s\"",
               c->ms->base.name, e.message);
    }
}

static void maybe_gc(conn *c)
{
    long long now = zq_now_ms();
    long long last = atomic_load(&c->ms->last_gc_ms);
    if (now - last < GC_INTERVAL_MS || !atomic_compare_exchange_strong(&c->ms->last_gc_ms, &last, now))
        return;
    bson_t f = BSON_INITIALIZER;
    bson_error_t e;
    append_cmp(&f, "e", "$lte", now);
    bool ok = mongoc_collection_delete_many(c->msgs, &f, NULL, NULL, &e) &&
              mongoc_collection_delete_many(c->claims, &f, NULL, NULL, &e);
    bson_destroy(&f);
    if (!ok) {
        atomic_store(&c->ms->last_gc_ms, last); /* retry on a later post */
        zq_log(ZQ_LOG_DEBUG, "mongodb garbage collection failed", "pool=%s error=\"%s\"",
               c->ms->base.name, e.message);
    }
}

/* ------------------------------------------------------------- markers */

/* Reserve `count` markers; *first receives the first one. */
static int alloc_markers(conn *c, const char *project, const char *queue, size_t count,
                         long long *first, zq_err *err)
{
    char key[512];
    snprintf(key, sizeof key, "%s/%s", project ? project : "", queue);
    bson_t query = BSON_INITIALIZER, update = BSON_INITIALIZER, inc;
    BSON_APPEND_UTF8(&query, "_id", key);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
    BSON_APPEND_INT64(&inc, "n", (int64_t)count);
    bson_append_document_end(&update, &inc);
    mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_update(opts, &update);
    mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_UPSERT | MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    int rc = ZQ_EBACKEND;
    bson_error_t e = {0};
    /* Two first-ever upserts of the same counter can race into a duplicate
     * key error on _id; the loser simply retries (then it is an update). */
    for (int attempt = 0; attempt < 3; attempt++) {
        bson_t reply, value;
        bool ok = mongoc_collection_find_and_modify_with_opts(c->counters, &query, opts, &reply, &e);
        if (ok) {
            if (fam_value(&reply, &value)) {
                *first = reply_int(&value, "n") - (long long)count + 1;
                rc = ZQ_OK;
            } else {
                bson_set_error(&e, MONGOC_ERROR_SERVER, 0, "counter upsert returned no document");
            }
            bson_destroy(&reply);
            break;
        }
        bson_destroy(&reply);
        if (e.code != 11000)
            break;
    }
    if (rc != ZQ_OK)
        backend_err(c->ms, err, "allocating markers", &e);
    mongoc_find_and_modify_opts_destroy(opts);
    bson_destroy(&query);
    bson_destroy(&update);
    return rc;
}

/* ------------------------------------------------------------ arguments */

static bool name_ok(const char *v, size_t min, size_t max, bool dot)
{
    if (!v)
        return false;
    size_t n = strlen(v);
    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || (dot && ch == '.')))
            return false;
    }
    return true;
}

/* The caller validates names, but a careless one must not make two queues
 * share documents or a counter: ZQ_EINVAL for anything store.h excludes. */
static int check_pq(const char *project, const char *queue, zq_err *err)
{
    if (!name_ok(project ? project : "", 0, 256, true)) {
        set_err(err, "invalid project id");
        return ZQ_EINVAL;
    }
    if (!name_ok(queue, 1, 64, false)) {
        set_err(err, "invalid queue name");
        return ZQ_EINVAL;
    }
    return ZQ_OK;
}

static int check_id(const char *id, const char *what, zq_err *err)
{
    if (!id) {
        set_err(err, "no %s id", what);
        return ZQ_EINVAL;
    }
    return ZQ_OK;
}

#define CHECK(expr)                                                           \
    do {                                                                      \
        int chk_ = (expr);                                                    \
        if (chk_ != ZQ_OK)                                                    \
            return chk_;                                                      \
    } while (0)

/* ------------------------------------------------------------ operations */

static int m_post(zq_store *s, const char *project, const char *queue, const char *client_id,
                  const zq_new_msg *msgs, size_t n, char (*ids_out)[ZQ_ID_LEN], zq_err *err)
{
    CHECK(check_pq(project, queue, err));
    if (client_id && strlen(client_id) >= ZQ_CLIENT_LEN) {
        set_err(err, "client id too long");
        return ZQ_EINVAL;
    }
    if (n == 0)
        return ZQ_OK;
    conn c;
    conn_open(&c, s);
    ensure_indexes(&c);
    maybe_gc(&c);

    long long first;
    int rc = alloc_markers(&c, project, queue, n, &first, err);
    if (rc != ZQ_OK) {
        conn_close(&c);
        return rc;
    }
    long long now = zq_now_ms();
    bson_t **docs = calloc(n, sizeof *docs);
    if (!docs)
        abort();
    for (size_t i = 0; i < n && rc == ZQ_OK; i++) {
        char id[33];
        zq_new_id(id);
        bson_t *d = docs[i] = bson_new();
        BSON_APPEND_UTF8(d, "_id", id);
        append_pq(d, project, queue);
        BSON_APPEND_INT64(d, "k", first + (long long)i);
        if (!json_to_bson(d, "b", 1, msgs[i].body, 0)) {
            set_err(err, "message %zu: body cannot be stored (nested deeper than %d levels?)", i,
                    BODY_MAX_DEPTH);
            rc = ZQ_EINVAL;
        }
        BSON_APPEND_INT32(d, "t", msgs[i].ttl);
        BSON_APPEND_INT64(d, "c", now);
        BSON_APPEND_INT64(d, "e", now + (long long)msgs[i].ttl * 1000);
        BSON_APPEND_UTF8(d, "u", client_id ? client_id : "");
        BSON_APPEND_INT64(d, "ce", 0);
        snprintf(ids_out[i], ZQ_ID_LEN, "%s", id);
    }
    if (rc == ZQ_OK) {
        bson_t opts = BSON_INITIALIZER;
        bson_error_t e;
        BSON_APPEND_BOOL(&opts, "validate", false);
        BSON_APPEND_BOOL(&opts, "ordered", true);
        if (!mongoc_collection_insert_many(c.msgs, (const bson_t **)docs, n, &opts, NULL, &e)) {
            rc = backend_err(c.ms, err, "inserting messages", &e);
            /* all or nothing, as far as the server lets us */
            bson_t f = BSON_INITIALIZER, in, arr;
            append_pq(&f, project, queue);
            BSON_APPEND_DOCUMENT_BEGIN(&f, "_id", &in);
            BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
            for (size_t i = 0; i < n; i++) {
                char buf[16];
                const char *k;
                bson_uint32_to_string((uint32_t)i, &k, buf, sizeof buf);
                BSON_APPEND_UTF8(&arr, k, ids_out[i]);
            }
            bson_append_array_end(&in, &arr);
            bson_append_document_end(&f, &in);
            bson_error_t e2;
            (void)mongoc_collection_delete_many(c.msgs, &f, NULL, NULL, &e2);
            bson_destroy(&f);
        }
        bson_destroy(&opts);
    }
    for (size_t i = 0; i < n; i++)
        if (docs[i])
            bson_destroy(docs[i]);
    free(docs);
    conn_close(&c);
    return rc;
}

static int m_list(zq_store *s, const char *project, const char *queue, const char *client_id,
                  const zq_list_opts *o, zq_msg_vec *out, long long *next_marker, zq_err *err)
{
    CHECK(check_pq(project, queue, err));
    if (o->limit < 1) {
        set_err(err, "limit must be positive");
        return ZQ_EINVAL;
    }
    long long now = zq_now_ms();
    bson_t f = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    append_pq(&f, project, queue);
    append_cmp(&f, "k", "$gt", o->marker);
    append_cmp(&f, "e", "$gt", now);
    if (!o->echo && client_id) {
        bson_t ne;
        BSON_APPEND_DOCUMENT_BEGIN(&f, "u", &ne);
        BSON_APPEND_UTF8(&ne, "$ne", client_id);
        bson_append_document_end(&f, &ne);
    }
    if (!o->include_claimed)
        append_cmp(&f, "ce", "$lte", now);
    append_sort_k(&opts, "sort", 1);
    BSON_APPEND_INT64(&opts, "limit", o->limit);

    conn c;
    conn_open(&c, s);
    size_t n0 = out->n;
    int rc = find_msgs(&c, &f, &opts, now, 1, out, "listing messages", err);
    conn_close(&c);
    bson_destroy(&f);
    bson_destroy(&opts);
    if (rc == ZQ_OK && next_marker)
        *next_marker = out->n > n0 ? out->v[out->n - 1].marker : o->marker;
    return rc;
}

static int m_get(zq_store *s, const char *project, const char *queue, const char *id,
                 zq_message *out, zq_err *err)
{
    memset(out, 0, sizeof *out); /* body NULL whatever happens */
    CHECK(check_pq(project, queue, err));
    CHECK(check_id(id, "message", err));
    long long now = zq_now_ms();
    bson_t f = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&f, "_id", id);
    append_pq(&f, project, queue);
    append_cmp(&f, "e", "$gt", now);
    BSON_APPEND_INT64(&opts, "limit", 1);
    zq_msg_vec v = {0};
    conn c;
    conn_open(&c, s);
    int rc = find_msgs(&c, &f, &opts, now, 1, &v, "getting a message", err);
    conn_close(&c);
    bson_destroy(&f);
    bson_destroy(&opts);
    if (rc == ZQ_OK && v.n == 0) {
        set_err(err, "message %s not found", id);
        rc = ZQ_ENOENT;
    }
    if (rc == ZQ_OK) {
        *out = v.v[0];
        v.v[0].body = NULL;
    }
    zq_msg_vec_free(&v);
    return rc;
}

static int m_del(zq_store *s, const char *project, const char *queue, const char *id,
                 const char *claim_id, zq_err *err)
{
    CHECK(check_pq(project, queue, err));
    CHECK(check_id(id, "message", err));
    conn c;
    conn_open(&c, s);
    int rc = ZQ_ECONFLICT;
    for (int attempt = 0; attempt < DEL_ATTEMPTS; attempt++) {
        long long now = zq_now_ms();
        bson_t f = BSON_INITIALIZER, opts = BSON_INITIALIZER, proj;
        BSON_APPEND_UTF8(&f, "_id", id);
        append_pq(&f, project, queue);
        append_cmp(&f, "e", "$gt", now);
        BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
        BSON_APPEND_INT32(&proj, "cid", 1);
        BSON_APPEND_INT32(&proj, "ce", 1);
        bson_append_document_end(&opts, &proj);
        BSON_APPEND_INT64(&opts, "limit", 1);
        zq_msg_vec v = {0};
        int r = find_msgs(&c, &f, &opts, now, 0, &v, "reading a message to delete", err);
        bson_destroy(&f);
        bson_destroy(&opts);
        if (r != ZQ_OK) {
            rc = r;
            break;
        }
        if (v.n == 0) {
            set_err(err, "message %s not found", id);
            rc = ZQ_ENOENT;
            break;
        }
        zq_message m = v.v[0];
        zq_msg_vec_free(&v);
        bool live = m.claim_id[0] != '\0';

        bson_t df = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&df, "_id", id);
        append_pq(&df, project, queue);
        if (!claim_id) {
            if (live) {
                set_err(err, "message %s is claimed", id);
                rc = ZQ_EFORBIDDEN;
                bson_destroy(&df);
                break;
            }
            append_cmp(&df, "ce", "$lte", now);
        } else {
            if (!live || strcmp(m.claim_id, claim_id) != 0) {
                set_err(err, "message %s is not claimed by claim %s", id, claim_id);
                rc = ZQ_EFORBIDDEN;
                bson_destroy(&df);
                break;
            }
            BSON_APPEND_UTF8(&df, "cid", claim_id);
        }
        bson_t reply;
        bson_error_t e;
        bool ok = mongoc_collection_delete_one(c.msgs, &df, NULL, &reply, &e);
        int64_t deleted = ok ? reply_int(&reply, "deletedCount") : 0;
        bson_destroy(&reply);
        bson_destroy(&df);
        if (!ok) {
            rc = backend_err(c.ms, err, "deleting a message", &e);
            break;
        }
        if (deleted > 0) {
            rc = ZQ_OK;
            break;
        }
        /* deleted or (re)claimed in between: look again */
    }
    if (rc == ZQ_ECONFLICT)
        set_err(err, "message %s kept changing while being deleted", id);
    conn_close(&c);
    return rc;
}

static void append_id_in(bson_t *f, const char *const *ids, size_t n)
{
    bson_t in, arr;
    BSON_APPEND_DOCUMENT_BEGIN(f, "_id", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (size_t i = 0; i < n; i++) {
        char buf[16];
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, buf, sizeof buf);
        BSON_APPEND_UTF8(&arr, k, ids[i]);
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(f, &in);
}

static int m_del_many(zq_store *s, const char *project, const char *queue, const char *const *ids,
                      size_t n, zq_err *err)
{
    CHECK(check_pq(project, queue, err));
    for (size_t i = 0; i < n; i++)
        CHECK(check_id(ids[i], "message", err));
    if (n == 0)
        return ZQ_OK;
    bson_t f = BSON_INITIALIZER;
    append_pq(&f, project, queue);
    append_id_in(&f, ids, n);
    bson_error_t e;
    conn c;
    conn_open(&c, s);
    int rc = mongoc_collection_delete_many(c.msgs, &f, NULL, NULL, &e)
                 ? ZQ_OK
                 : backend_err(c.ms, err, "deleting messages", &e);
    conn_close(&c);
    bson_destroy(&f);
    return rc;
}

/* One findAndModify on messages: query free messages of the queue, oldest
 * first; update (or remove when update is NULL).  *got is false when no
 * message was free. */
static int take_one(conn *c, const char *project, const char *queue, long long now,
                    const bson_t *update, zq_message *m, bool *got, const char *what, zq_err *err)
{
    bson_t q = BSON_INITIALIZER, sort = BSON_INITIALIZER, reply, value;
    bson_error_t e;
    free_filter(&q, project, queue, now);
    BSON_APPEND_INT32(&sort, "k", 1);
    mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_sort(opts, &sort);
    if (update) {
        mongoc_find_and_modify_opts_set_update(opts, update);
        mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    } else {
        mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_REMOVE);
    }
    int rc = ZQ_OK;
    *got = false;
    if (!mongoc_collection_find_and_modify_with_opts(c->msgs, &q, opts, &reply, &e)) {
        rc = backend_err(c->ms, err, what, &e);
    } else if (fam_value(&reply, &value)) {
        if (doc_to_msg(&value, now, 1, m)) {
            *got = true;
        } else {
            zq_message_clear(m);
            set_err(err, "mongodb pool %s: %s: undecodable message document", c->ms->base.name, what);
            rc = ZQ_EBACKEND;
        }
    }
    bson_destroy(&reply);
    mongoc_find_and_modify_opts_destroy(opts);
    bson_destroy(&q);
    bson_destroy(&sort);
    return rc;
}

static int m_pop(zq_store *s, const char *project, const char *queue, int limit, zq_msg_vec *out,
                 zq_err *err)
{
    CHECK(check_pq(project, queue, err));
    if (limit < 1) {
        set_err(err, "limit must be positive");
        return ZQ_EINVAL;
    }
    long long now = zq_now_ms();
    conn c;
    conn_open(&c, s);
    int rc = ZQ_OK;
    for (int i = 0; i < limit; i++) {
        zq_message m;
        bool got;
        rc = take_one(&c, project, queue, now, NULL, &m, &got, "popping a message", err);
        if (rc != ZQ_OK || !got)
            break;
        zq_msg_vec_push(out, &m);
    }
    /* Messages already removed are gone: on a later failure they are still
     * handed back, so a partial pop loses nothing. */
    if (rc != ZQ_OK && out->n > 0)
        rc = ZQ_OK;
    conn_close(&c);
    return rc;
}

/* Raise t/e of the messages v[n0..] (claimed at `now`) whose expiry is
 * before `target`, in one bulk write; updates the copies in v. */
static int extend_ttls(conn *c, zq_msg_vec *v, size_t n0, long long target, zq_err *err)
{
    mongoc_bulk_operation_t *bulk = NULL;
    int rc = ZQ_OK;
    bson_error_t e;
    for (size_t i = n0; i < v->n && rc == ZQ_OK; i++) {
        zq_message *m = &v->v[i];
        if (m->created_ms + (long long)m->ttl * 1000 >= target)
            continue;
        long long t = (target - m->created_ms + 999) / 1000;
        long long new_e = m->created_ms + t * 1000;
        if (!bulk) {
            bson_t bo = BSON_INITIALIZER;
            BSON_APPEND_BOOL(&bo, "ordered", false);
            bulk = mongoc_collection_create_bulk_operation_with_opts(c->msgs, &bo);
            bson_destroy(&bo);
        }
        bson_t sel = BSON_INITIALIZER, upd = BSON_INITIALIZER, set;
        BSON_APPEND_UTF8(&sel, "_id", m->id);
        append_cmp(&sel, "e", "$lt", new_e);
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
        BSON_APPEND_INT32(&set, "t", (int32_t)t);
        BSON_APPEND_INT64(&set, "e", new_e);
        bson_append_document_end(&upd, &set);
        if (!mongoc_bulk_operation_update_one_with_opts(bulk, &sel, &upd, NULL, &e))
            rc = backend_err(c->ms, err, "extending message ttls", &e);
        bson_destroy(&sel);
        bson_destroy(&upd);
        m->ttl = (int)t;
    }
    if (bulk && rc == ZQ_OK) {
        bson_t reply;
        if (!mongoc_bulk_operation_execute(bulk, &reply, &e))
            rc = backend_err(c->ms, err, "extending message ttls", &e);
        bson_destroy(&reply);
    }
    if (bulk)
        mongoc_bulk_operation_destroy(bulk);
    return rc;
}

/* Best effort: free the messages of claim cid (claim_delete, and claim()
 * failing half-way). */
static bool release_msgs(conn *c, const char *project, const char *queue, const char *cid,
                         bson_error_t *e)
{
    bson_t f = BSON_INITIALIZER, u = BSON_INITIALIZER, set, unset;
    append_pq(&f, project, queue);
    BSON_APPEND_UTF8(&f, "cid", cid);
    BSON_APPEND_DOCUMENT_BEGIN(&u, "$set", &set);
    BSON_APPEND_INT64(&set, "ce", 0);
    bson_append_document_end(&u, &set);
    BSON_APPEND_DOCUMENT_BEGIN(&u, "$unset", &unset);
    BSON_APPEND_UTF8(&unset, "cid", "");
    bson_append_document_end(&u, &unset);
    bool ok = mongoc_collection_update_many(c->msgs, &f, &u, NULL, NULL, e);
    bson_destroy(&f);
    bson_destroy(&u);
    return ok;
}

static int m_claim(zq_store *s, const char *project, const char *queue, const char *client_id,
                   int ttl, int grace, int limit, char claim_id_out[ZQ_ID_LEN], zq_msg_vec *out,
                   zq_err *err)
{
    CHECK(check_pq(project, queue, err));
    (void)client_id;
    if (limit < 1 || ttl < 1 || grace < 0) {
        set_err(err, "bad claim limit/ttl/grace (%d/%d/%d)", limit, ttl, grace);
        return ZQ_EINVAL;
    }
    char cid[33];
    zq_new_id(cid);
    snprintf(claim_id_out, ZQ_ID_LEN, "%s", cid);
    long long now = zq_now_ms();
    long long ce = now + (long long)ttl * 1000;
    long long target = ce + (long long)grace * 1000;

    bson_t upd = BSON_INITIALIZER, set;
    BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
    BSON_APPEND_UTF8(&set, "cid", cid);
    BSON_APPEND_INT64(&set, "ce", ce);
    bson_append_document_end(&upd, &set);

    conn c;
    conn_open(&c, s);
    size_t n0 = out->n;
    int rc = ZQ_OK;
    for (int i = 0; i < limit; i++) {
        zq_message m;
        bool got;
        rc = take_one(&c, project, queue, now, &upd, &m, &got, "claiming a message", err);
        if (rc != ZQ_OK || !got)
            break;
        zq_msg_vec_push(out, &m);
    }
    bson_destroy(&upd);
    if (rc == ZQ_OK && out->n > n0)
        rc = extend_ttls(&c, out, n0, target, err);
    if (rc == ZQ_OK && out->n > n0) {
        bson_t d = BSON_INITIALIZER;
        bson_error_t e;
        BSON_APPEND_UTF8(&d, "_id", cid);
        append_pq(&d, project, queue);
        BSON_APPEND_INT32(&d, "t", ttl);
        BSON_APPEND_INT64(&d, "c", now);
        BSON_APPEND_INT64(&d, "e", ce);
        if (!mongoc_collection_insert_one(c.claims, &d, NULL, NULL, &e))
            rc = backend_err(c.ms, err, "storing the claim", &e);
        bson_destroy(&d);
    }
    if (rc != ZQ_OK && out->n > n0) {
        bson_error_t e;
        (void)release_msgs(&c, project, queue, cid, &e);
        vec_truncate(out, n0);
    }
    conn_close(&c);
    return rc;
}

/* The live claim document; ZQ_ENOENT when unknown or expired. */
static int read_claim(conn *c, const char *project, const char *queue, const char *claim_id,
                      long long now, zq_claim_info *info, zq_err *err)
{
    bson_t f = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&f, "_id", claim_id);
    append_pq(&f, project, queue);
    append_cmp(&f, "e", "$gt", now);
    BSON_APPEND_INT64(&opts, "limit", 1);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c->claims, &f, &opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc = ZQ_ENOENT;
    if (mongoc_cursor_next(cur, &doc)) {
        rc = ZQ_OK;
        if (info) {
            info->ttl = (int)reply_int(doc, "t");
            info->created_ms = reply_int(doc, "c");
            info->expires_ms = reply_int(doc, "e");
        }
    } else if (mongoc_cursor_error(cur, &e)) {
        rc = backend_err(c->ms, err, "reading a claim", &e);
    } else {
        set_err(err, "claim %s not found", claim_id);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(&f);
    bson_destroy(&opts);
    return rc;
}

static void claimed_filter(bson_t *f, const char *project, const char *queue, const char *claim_id,
                           long long now)
{
    append_pq(f, project, queue);
    BSON_APPEND_UTF8(f, "cid", claim_id);
    append_cmp(f, "ce", "$gt", now);
    append_cmp(f, "e", "$gt", now);
}

static int m_claim_get(zq_store *s, const char *project, const char *queue, const char *claim_id,
                       zq_claim_info *info, zq_msg_vec *out, zq_err *err)
{
    if (info)
        memset(info, 0, sizeof *info);
    CHECK(check_pq(project, queue, err));
    CHECK(check_id(claim_id, "claim", err));
    long long now = zq_now_ms();
    conn c;
    conn_open(&c, s);
    int rc = read_claim(&c, project, queue, claim_id, now, info, err);
    if (rc == ZQ_OK && out) {
        bson_t f = BSON_INITIALIZER, opts = BSON_INITIALIZER;
        claimed_filter(&f, project, queue, claim_id, now);
        append_sort_k(&opts, "sort", 1);
        rc = find_msgs(&c, &f, &opts, now, 1, out, "listing claimed messages", err);
        bson_destroy(&f);
        bson_destroy(&opts);
    }
    conn_close(&c);
    return rc;
}

static int m_claim_update(zq_store *s, const char *project, const char *queue, const char *claim_id,
                          int ttl, int grace, zq_err *err)
{
    CHECK(check_pq(project, queue, err));
    CHECK(check_id(claim_id, "claim", err));
    if (ttl < 1 || grace < 0) {
        set_err(err, "bad claim ttl/grace (%d/%d)", ttl, grace);
        return ZQ_EINVAL;
    }
    long long now = zq_now_ms();
    long long ce = now + (long long)ttl * 1000;
    long long target = ce + (long long)grace * 1000;
    conn c;
    conn_open(&c, s);
    bson_error_t e;
    int rc = ZQ_OK;

    /* 1. the claim document, if still live */
    bson_t f = BSON_INITIALIZER, u = BSON_INITIALIZER, set, reply;
    BSON_APPEND_UTF8(&f, "_id", claim_id);
    append_pq(&f, project, queue);
    append_cmp(&f, "e", "$gt", now);
    BSON_APPEND_DOCUMENT_BEGIN(&u, "$set", &set);
    BSON_APPEND_INT32(&set, "t", ttl);
    BSON_APPEND_INT64(&set, "e", ce);
    bson_append_document_end(&u, &set);
    if (!mongoc_collection_update_one(c.claims, &f, &u, NULL, &reply, &e))
        rc = backend_err(c.ms, err, "updating a claim", &e);
    else if (reply_int(&reply, "matchedCount") == 0) {
        set_err(err, "claim %s not found", claim_id);
        rc = ZQ_ENOENT;
    }
    bson_destroy(&reply);
    bson_destroy(&f);
    bson_destroy(&u);

    /* 2. its live messages get the new claim expiry */
    if (rc == ZQ_OK) {
        bson_t mf = BSON_INITIALIZER, mu = BSON_INITIALIZER, mset;
        append_pq(&mf, project, queue);
        BSON_APPEND_UTF8(&mf, "cid", claim_id);
        append_cmp(&mf, "ce", "$gt", now);
        BSON_APPEND_DOCUMENT_BEGIN(&mu, "$set", &mset);
        BSON_APPEND_INT64(&mset, "ce", ce);
        bson_append_document_end(&mu, &mset);
        if (!mongoc_collection_update_many(c.msgs, &mf, &mu, NULL, NULL, &e))
            rc = backend_err(c.ms, err, "updating claimed messages", &e);
        bson_destroy(&mf);
        bson_destroy(&mu);
    }

    /* 3. and live at least until target */
    if (rc == ZQ_OK) {
        bson_t mf = BSON_INITIALIZER, opts = BSON_INITIALIZER, proj;
        append_pq(&mf, project, queue);
        BSON_APPEND_UTF8(&mf, "cid", claim_id);
        BSON_APPEND_INT64(&mf, "ce", ce);
        bson_t er;
        BSON_APPEND_DOCUMENT_BEGIN(&mf, "e", &er); /* now < e < target */
        BSON_APPEND_INT64(&er, "$gt", now);
        BSON_APPEND_INT64(&er, "$lt", target);
        bson_append_document_end(&mf, &er);
        BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
        BSON_APPEND_INT32(&proj, "c", 1);
        BSON_APPEND_INT32(&proj, "t", 1);
        bson_append_document_end(&opts, &proj);
        zq_msg_vec v = {0};
        rc = find_msgs(&c, &mf, &opts, now, 0, &v, "reading claimed messages", err);
        if (rc == ZQ_OK)
            rc = extend_ttls(&c, &v, 0, target, err);
        zq_msg_vec_free(&v);
        bson_destroy(&mf);
        bson_destroy(&opts);
    }
    conn_close(&c);
    return rc;
}

static int m_claim_delete(zq_store *s, const char *project, const char *queue, const char *claim_id,
                          zq_err *err)
{
    CHECK(check_pq(project, queue, err));
    CHECK(check_id(claim_id, "claim", err));
    conn c;
    conn_open(&c, s);
    bson_error_t e;
    int rc = ZQ_OK;
    if (!release_msgs(&c, project, queue, claim_id, &e)) {
        rc = backend_err(c.ms, err, "releasing claimed messages", &e);
    } else {
        bson_t f = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&f, "_id", claim_id);
        append_pq(&f, project, queue);
        if (!mongoc_collection_delete_one(c.claims, &f, NULL, NULL, &e))
            rc = backend_err(c.ms, err, "deleting a claim", &e);
        bson_destroy(&f);
    }
    conn_close(&c);
    return rc;
}

static int count_msgs(conn *c, const bson_t *f, long long *n, zq_err *err)
{
    bson_error_t e;
    int64_t r = mongoc_collection_count_documents(c->msgs, f, NULL, NULL, NULL, &e);
    if (r < 0)
        return backend_err(c->ms, err, "counting messages", &e);
    *n = r;
    return ZQ_OK;
}

/* The oldest (dir 1) or newest (dir -1) live message, without its body. */
static int edge_msg(conn *c, const char *project, const char *queue, long long now, int dir,
                    zq_message *out, bool *found, zq_err *err)
{
    bson_t f = BSON_INITIALIZER, opts = BSON_INITIALIZER, proj;
    append_pq(&f, project, queue);
    append_cmp(&f, "e", "$gt", now);
    append_sort_k(&opts, "sort", dir);
    BSON_APPEND_INT64(&opts, "limit", 1);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, "b", 0);
    bson_append_document_end(&opts, &proj);
    zq_msg_vec v = {0};
    int rc = find_msgs(c, &f, &opts, now, 0, &v, "reading queue stats", err);
    *found = rc == ZQ_OK && v.n > 0;
    if (*found)
        *out = v.v[0];
    zq_msg_vec_free(&v);
    bson_destroy(&f);
    bson_destroy(&opts);
    return rc;
}

static int m_stats(zq_store *s, const char *project, const char *queue, zq_stats *out, zq_err *err)
{
    memset(out, 0, sizeof *out);
    CHECK(check_pq(project, queue, err));
    long long now = zq_now_ms();
    conn c;
    conn_open(&c, s);
    bson_t ff = BSON_INITIALIZER, cf = BSON_INITIALIZER;
    free_filter(&ff, project, queue, now);
    append_pq(&cf, project, queue);
    append_cmp(&cf, "e", "$gt", now);
    append_cmp(&cf, "ce", "$gt", now);
    int rc = count_msgs(&c, &ff, &out->free, err);
    if (rc == ZQ_OK)
        rc = count_msgs(&c, &cf, &out->claimed, err);
    out->total = out->free + out->claimed;
    if (rc == ZQ_OK && out->total > 0) {
        bool f1 = false, f2 = false;
        rc = edge_msg(&c, project, queue, now, 1, &out->oldest, &f1, err);
        if (rc == ZQ_OK)
            rc = edge_msg(&c, project, queue, now, -1, &out->newest, &f2, err);
        if (rc == ZQ_OK && !(f1 && f2)) /* emptied meanwhile */
            memset(out, 0, sizeof *out);
    }
    if (rc != ZQ_OK)
        memset(out, 0, sizeof *out);
    bson_destroy(&ff);
    bson_destroy(&cf);
    conn_close(&c);
    return rc;
}

static int m_purge(zq_store *s, const char *project, const char *queue, zq_err *err)
{
    CHECK(check_pq(project, queue, err));
    bson_t f = BSON_INITIALIZER;
    append_pq(&f, project, queue);
    bson_error_t e;
    conn c;
    conn_open(&c, s);
    int rc = ZQ_OK;
    if (!mongoc_collection_delete_many(c.msgs, &f, NULL, NULL, &e))
        rc = backend_err(c.ms, err, "purging messages", &e);
    else if (!mongoc_collection_delete_many(c.claims, &f, NULL, NULL, &e))
        rc = backend_err(c.ms, err, "purging claims", &e);
    conn_close(&c);
    bson_destroy(&f);
    return rc;
}

static int m_ping(zq_store *s, zq_err *err)
{
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    bson_error_t e;
    conn c;
    conn_open(&c, s);
    int rc = mongoc_client_command_simple(c.client, "admin", &cmd, NULL, NULL, &e)
                 ? ZQ_OK
                 : backend_err(c.ms, err, "ping", &e);
    conn_close(&c);
    bson_destroy(&cmd);
    return rc;
}

static void m_destroy(zq_store *s)
{
    if (!s)
        return;
    mstore *ms = (mstore *)s;
    mongoc_client_pool_destroy(ms->pool);
    mongoc_uri_destroy(ms->uri);
    free(ms->db);
    free(ms);
}

static const zq_store_ops mongo_ops = {
    .kind = "mongodb",
    .post = m_post,
    .list = m_list,
    .get = m_get,
    .del = m_del,
    .del_many = m_del_many,
    .pop = m_pop,
    .claim = m_claim,
    .claim_get = m_claim_get,
    .claim_update = m_claim_update,
    .claim_delete = m_claim_delete,
    .stats = m_stats,
    .purge = m_purge,
    .ping = m_ping,
    .destroy = m_destroy,
};

/* ---------------------------------------------------------- constructor */

static void default_int_option(mongoc_uri_t *uri, const char *opt, int32_t v)
{
    if (!mongoc_uri_has_option(uri, opt))
        mongoc_uri_set_option_as_int32(uri, opt, v);
}

zq_store *zq_store_mongo_new(const char *pool_name, const char *uri_str, zq_err *err)
{
    pthread_once(&mongo_once, mongo_init_once);
    const char *name = pool_name ? pool_name : "";
    if (!uri_str) {
        set_err(err, "pool %s: no MongoDB URI", name);
        return NULL;
    }
    bson_error_t e;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &e);
    if (!uri) {
        set_err(err, "pool %s: bad MongoDB URI: %s", name, e.message);
        return NULL;
    }
    default_int_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, DEFAULT_SERVER_SELECTION_MS);
    default_int_option(uri, MONGOC_URI_CONNECTTIMEOUTMS, DEFAULT_CONNECT_MS);
    default_int_option(uri, MONGOC_URI_SOCKETTIMEOUTMS, DEFAULT_SOCKET_MS);
    const char *db = mongoc_uri_get_database(uri);
    if (!db || !*db)
        db = DEFAULT_DB;

    mongoc_client_pool_t *pool = mongoc_client_pool_new_with_error(uri, &e);
    if (!pool) {
        set_err(err, "pool %s: cannot create a MongoDB client pool: %s", name, e.message);
        mongoc_uri_destroy(uri);
        return NULL;
    }
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    if (!mongoc_uri_get_appname(uri))
        mongoc_client_pool_set_appname(pool, APPNAME);

    mstore *ms = calloc(1, sizeof *ms);
    char *dbcopy = strdup(db);
    if (!ms || !dbcopy) {
        free(ms);
        free(dbcopy);
        mongoc_client_pool_destroy(pool);
        mongoc_uri_destroy(uri);
        set_err(err, "pool %s: out of memory", name);
        return NULL;
    }
    ms->base.ops = &mongo_ops;
    snprintf(ms->base.name, sizeof ms->base.name, "%s", name);
    ms->pool = pool;
    ms->uri = uri;
    ms->db = dbcopy;
    atomic_init(&ms->indexes_done, 0);
    atomic_init(&ms->last_gc_ms, 0);
    return &ms->base;
}
