/*
 * hooks/mongoc.c - libmongoc wrappers: `mongodb` and `pooling` spans.
 *
 * Every wrapper has the three layers of style item 2:
 *
 *   exported mongoc_x()    pass-through test: ldprof off, the toggle off,
 *                          or nested inside another ldprof/driver call ->
 *                          one call to real_mongoc_x, nothing else
 *   static ldprof_mongoc_x() span begin (NULL when the thread is in no
 *                          trace: then just the real call), the real call
 *                          under the reentrancy guard, stop info, span end
 *   real_mongoc_x          libmongoc's function, resolved lazily with
 *                          dlsym(RTLD_NEXT) on the first call (the library
 *                          never links libmongoc or libbson)
 *
 * One driver call is one span: the real call runs with the thread's depth
 * raised, so libmongoc's own nested calls to exported functions
 * (find_and_modify -> find_and_modify_with_opts, ...) and its socket I/O
 * record nothing.
 *
 * Decisions (documented in docs/formats.md, `mongodb` and `pooling`):
 *
 *  - Cursors.  find_with_opts and aggregate do no I/O; the round trips happen
 *    in mongoc_cursor_next.  The span of a find/aggregate runs from the
 *    find_with_opts/aggregate call until the cursor's mongoc_cursor_next
 *    returns false (exhausted or failed) or the cursor is destroyed,
 *    whichever comes first; `mongodb.count` is the number of documents the
 *    app got from the cursor, and a cursor error (mongoc_cursor_error, a
 *    getter with no I/O) is the span's error.  The span is NOT the thread's
 *    current span while the app iterates (other spans begun in between are
 *    not its children).  Open cursor spans are kept in a fixed table
 *    (MG_CURSORS slots, no allocation); when it is full the cursor is not
 *    traced.
 *  - Reply documents.  Counts are read from the reply the app receives,
 *    after the real call.  When the app passes reply == NULL the hook passes
 *    NULL too (a reply would make the driver build and allocate a document
 *    the app did not ask for), and `mongodb.count` is then absent.
 *  - bson_error_t.  When the app passes error == NULL the hook passes a
 *    bson_error_t of its own (stack): libmongoc only fills that plain struct,
 *    nothing the app sees changes, and the span gets the error message.
 *  - Pooling.  pop and try_pop are spans (pop's measures the wait for a
 *    client); push is a (tiny) span too, so a trace shows every checkout
 *    and return.
 *
 * No wrapper allocates, locks, uses stdio or getenv; errno, return values
 * and out-parameters are the real function's.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include "ldprof/ldprof.h"
#include "preload/config.h"
#include "preload/init.h"
#include "preload/real.h"
#include "preload/span.h"
#include "preload/tls.h"

/* ------------------------------------------------------------ real symbols */

/* Hooked functions. */
#define MG_HOOKED(X)                                                                     \
    X(mongoc_client_pool_pop) X(mongoc_client_pool_try_pop) X(mongoc_client_pool_push)   \
    X(mongoc_collection_insert_one) X(mongoc_collection_insert_many)                     \
    X(mongoc_collection_update_one) X(mongoc_collection_update_many)                     \
    X(mongoc_collection_replace_one) X(mongoc_collection_delete_one)                     \
    X(mongoc_collection_delete_many) X(mongoc_collection_count_documents)                \
    X(mongoc_collection_estimated_document_count)                                        \
    X(mongoc_collection_find_and_modify_with_opts) X(mongoc_collection_find_and_modify)  \
    X(mongoc_collection_find_with_opts) X(mongoc_collection_aggregate)                   \
    X(mongoc_cursor_next) X(mongoc_cursor_destroy)                                       \
    X(mongoc_client_command_simple) X(mongoc_client_command_with_opts)                   \
    X(mongoc_client_read_command_with_opts) X(mongoc_client_write_command_with_opts)     \
    X(mongoc_database_command_simple) X(mongoc_collection_command_simple)                \
    X(mongoc_bulk_operation_execute) X(mongoc_collection_drop)                           \
    X(mongoc_collection_drop_with_opts) X(mongoc_collection_drop_index)                  \
    X(mongoc_collection_drop_index_with_opts) X(mongoc_collection_create_index)          \
    X(mongoc_collection_create_index_with_opts)

/* Helpers called (getters of libmongoc and libbson; no I/O, no allocation). */
#define MG_HELPERS(X)                                                                    \
    X(mongoc_collection_get_name) X(mongoc_database_get_name) X(mongoc_cursor_error)     \
    X(bson_iter_init) X(bson_iter_init_find) X(bson_iter_next) X(bson_iter_key)          \
    X(bson_iter_type) X(bson_iter_recurse) X(bson_iter_find_descendant)                  \
    X(bson_iter_as_int64) X(bson_iter_utf8) X(bson_iter_int32) X(bson_iter_int64)        \
    X(bson_iter_double) X(bson_iter_bool) X(bson_iter_oid) X(bson_oid_to_string)

#define MG_DECL(sym) static __typeof__(sym) *real_##sym;
/* create_index* are deprecated since libmongoc 1.23: their use here is on
 * purpose (apps still call them). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
MG_HOOKED(MG_DECL)
#pragma GCC diagnostic pop
MG_HELPERS(MG_DECL)
#undef MG_DECL

#define MG_ENTRY(sym) {(void **)&real_##sym, #sym},
static const struct ldprof_sym mg_syms[] = {MG_HOOKED(MG_ENTRY) MG_HELPERS(MG_ENTRY)};
#undef MG_ENTRY

static int mg_resolved; /* atomic: the table has been resolved once */
static int mg_helpers_ok; /* atomic: every helper was found */

static void mg_resolve(void)
{
    if (__atomic_load_n(&mg_resolved, __ATOMIC_ACQUIRE))
        return;
    ldprof_sym_resolve(mg_syms, (int)(sizeof(mg_syms) / sizeof(mg_syms[0])));
#define MG_CHECK(sym) ok = ok && real_##sym != NULL && (void *)real_##sym != LDPROF_SYM_MISSING;
    int ok = 1;
    MG_HELPERS(MG_CHECK)
#undef MG_CHECK
    __atomic_store_n(&mg_helpers_ok, ok, __ATOMIC_RELEASE);
    __atomic_store_n(&mg_resolved, 1, __ATOMIC_RELEASE);
}

/* MG_NEED(sym, failret): real_sym usable, else (symbol missing: cannot
 * happen for a program that calls it, but never kill the host) ENOSYS. */
#define MG_NEED(sym, failret) LDPROF_SYM_NEED(sym, mg_resolve, failret)
#define MG_NEED_VOID(sym) LDPROF_SYM_NEED_VOID(sym, mg_resolve)

/* ------------------------------------------------------------ gates */

/* Record a mongodb span for this call?  (Outermost level, toggle on.)
 * ldprof_ctx_maybe() is tested first: a thread with no trace context (the
 * common untraced call) passes after two loads.  That is what the full
 * path does for it too: every ldprof_mongoc_*() begins with
 * ldprof_span_begin(), which returns NULL without a context, and then
 * makes the real call without holding the depth. */
static inline int mg_on(void)
{
    return ldprof_ctx_maybe() && ldprof_recording() && ldprof_cfg.trace_mongodb &&
           ldprof_tls.depth == 0 && __atomic_load_n(&mg_helpers_ok, __ATOMIC_RELAXED);
}

static inline int pool_on(void)
{
    return ldprof_ctx_maybe() && ldprof_recording() && ldprof_cfg.trace_pooling &&
           ldprof_tls.depth == 0;
}

/* ------------------------------------------------------------ bson helpers */

/* A small bounded string builder (stack buffer). */
struct sb {
    char *p;
    size_t n, cap;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (b->n >= b->cap)
        return;
    if (n > b->cap - b->n)
        n = b->cap - b->n;
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void sb_str(struct sb *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_int(struct sb *b, int64_t v)
{
    char t[24];
    int i = (int)sizeof(t);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        t[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u && i > 1);
    if (v < 0)
        t[--i] = '-';
    sb_put(b, t + i, sizeof(t) - (size_t)i);
}

/* A JSON string (quotes, escapes of " \ and control bytes). */
static void sb_json_str(struct sb *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";

    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sb_put(b, e, 6);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* Top-level field names of @doc joined with ",". */
static void bson_keys(const bson_t *doc, struct sb *b)
{
    bson_iter_t it;
    int first = 1;

    if (doc == NULL || !real_bson_iter_init(&it, doc))
        return;
    while (real_bson_iter_next(&it)) {
        if (!first)
            sb_put(b, ",", 1);
        sb_str(b, real_bson_iter_key(&it));
        first = 0;
    }
}

/*
 * @doc as relaxed extended JSON (record_values), bounded by @b: strings,
 * numbers, booleans, null, ObjectIds ({"$oid": ...}), documents and arrays
 * (to depth 4); other types as {"$type": N}.  A cut value is simply cut.
 */
static void bson_json_iter(bson_iter_t *it, struct sb *b, int is_array, int depth)
{
    int first = 1;

    sb_put(b, is_array ? "[" : "{", 1);
    while (real_bson_iter_next(it)) {
        bson_type_t t = real_bson_iter_type(it);
        bson_iter_t sub;
        uint32_t len = 0;
        const char *s;
        char oid[25];

        if (!first)
            sb_put(b, ", ", 2);
        first = 0;
        if (!is_array) {
            const char *k = real_bson_iter_key(it);
            sb_json_str(b, k, strlen(k));
            sb_put(b, ": ", 2);
        }
        switch (t) {
        case BSON_TYPE_UTF8:
            s = real_bson_iter_utf8(it, &len);
            sb_json_str(b, s, len);
            break;
        case BSON_TYPE_INT32:
            sb_int(b, real_bson_iter_int32(it));
            break;
        case BSON_TYPE_INT64:
            sb_int(b, real_bson_iter_int64(it));
            break;
        case BSON_TYPE_DOUBLE: {
            double d = real_bson_iter_double(it);
            if (d == (double)(int64_t)d && d > -9e15 && d < 9e15) {
                sb_int(b, (int64_t)d);
                sb_put(b, ".0", 2);
            } else {
                sb_str(b, "{\"$numberDouble\": \"?\"}");
            }
            break;
        }
        case BSON_TYPE_BOOL:
            sb_str(b, real_bson_iter_bool(it) ? "true" : "false");
            break;
        case BSON_TYPE_NULL:
            sb_str(b, "null");
            break;
        case BSON_TYPE_OID:
            real_bson_oid_to_string(real_bson_iter_oid(it), oid);
            sb_str(b, "{\"$oid\": \"");
            sb_str(b, oid);
            sb_str(b, "\"}");
            break;
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY:
            if (depth < 4 && real_bson_iter_recurse(it, &sub))
                bson_json_iter(&sub, b, t == BSON_TYPE_ARRAY, depth + 1);
            else
                sb_str(b, t == BSON_TYPE_ARRAY ? "[...]" : "{...}");
            break;
        default:
            sb_str(b, "{\"$type\": ");
            sb_int(b, (int64_t)t);
            sb_put(b, "}", 1);
            break;
        }
        if (b->n >= b->cap)
            return;
    }
    sb_put(b, is_array ? "]" : "}", 1);
}

/* Add @doc (a filter, query or pipeline) under @key: field names only, or
 * the document as JSON with record_values. */
static void add_doc(struct ldprof_span *s, const char *key, const bson_t *doc)
{
    char buf[512];
    struct sb b = {buf, 0, sizeof(buf)};
    bson_iter_t it;

    if (s == NULL || doc == NULL)
        return;
    if (ldprof_cfg.record_values) {
        if (!real_bson_iter_init(&it, doc))
            return;
        bson_json_iter(&it, &b, 0, 0);
    } else {
        bson_keys(doc, &b);
    }
    ldprof_span_add_str(s, LDPROF_FIELD_START, key, buf, (long)b.n);
}

/* Aggregation pipeline: the stage names ("$match,$sort"), or JSON. */
static void add_pipeline(struct ldprof_span *s, const bson_t *pipeline)
{
    char buf[512];
    struct sb b = {buf, 0, sizeof(buf)};
    bson_iter_t it, st;
    int first = 1;

    if (s == NULL || pipeline == NULL)
        return;
    if (ldprof_cfg.record_values) {
        if (!real_bson_iter_init(&it, pipeline))
            return;
        bson_json_iter(&it, &b, 0, 0);
    } else {
        /* Either {"pipeline": [stages]} or the array of stages itself. */
        if (!real_bson_iter_init(&it, pipeline))
            return;
        if (real_bson_iter_init_find(&st, pipeline, "pipeline") &&
            real_bson_iter_type(&st) == BSON_TYPE_ARRAY && real_bson_iter_recurse(&st, &it)) {
            /* it: the stages */
        } else if (!real_bson_iter_init(&it, pipeline)) {
            return;
        }
        while (real_bson_iter_next(&it)) {
            if (real_bson_iter_type(&it) != BSON_TYPE_DOCUMENT ||
                !real_bson_iter_recurse(&it, &st) || !real_bson_iter_next(&st))
                continue;
            if (!first)
                sb_put(&b, ",", 1);
            sb_str(&b, real_bson_iter_key(&st));
            first = 0;
        }
    }
    ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.pipeline", buf, (long)b.n);
}

/* Sum of the integer fields @k1.. of @reply (NULL-terminated); -1 when
 * none is present. */
static int64_t reply_count(const bson_t *reply, const char *const *keys)
{
    int64_t n = 0;
    int found = 0;
    bson_iter_t it;

    if (reply == NULL)
        return -1;
    for (; *keys; keys++) {
        if (!real_bson_iter_init(&it, reply))
            return -1;
        if (real_bson_iter_find_descendant(&it, *keys, &it)) {
            bson_type_t t = real_bson_iter_type(&it);
            if (t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE) {
                n += real_bson_iter_as_int64(&it);
                found = 1;
            }
        }
    }
    return found ? n : -1;
}

/* ------------------------------------------------------------ span helpers */

static struct ldprof_span *mg_begin(const char *command, const char *database,
                                    const char *collection)
{
    struct ldprof_span *s = ldprof_span_begin(LDPROF_KIND_MONGODB);

    if (s == NULL)
        return NULL;
    ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.command", command, -1);
    if (database != NULL)
        ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.database", database, -1);
    if (collection != NULL)
        ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.collection", collection, -1);
    return s;
}

/* The same for a collection's call (its name read only when traced). */
static struct ldprof_span *mg_begin_coll(const char *command, mongoc_collection_t *c)
{
    struct ldprof_span *s = mg_begin(command, NULL, NULL);

    if (s != NULL && c != NULL)
        ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.collection",
                            real_mongoc_collection_get_name(c), -1);
    return s;
}

/* The stop side: count (when >= 0), error (when failed), end. */
static void mg_end(struct ldprof_span *s, int failed, const bson_error_t *e, int64_t count)
{
    if (count >= 0)
        ldprof_span_add_int(s, LDPROF_FIELD_STOP, "mongodb.count", count);
    if (failed && e != NULL) {
        ldprof_span_add_int(s, LDPROF_FIELD_STOP, "mongodb.error.domain", e->domain);
        ldprof_span_add_int(s, LDPROF_FIELD_STOP, "mongodb.error.code", e->code);
        ldprof_span_set_error(s, "MongoError", e->message);
    } else if (failed) {
        ldprof_span_set_error(s, "MongoError", "");
    }
    ldprof_span_end(s);
}

static const char *const K_INSERTED[] = {"insertedCount", NULL};
static const char *const K_MATCHED[] = {"matchedCount", NULL};
static const char *const K_DELETED[] = {"deletedCount", NULL};
static const char *const K_FAM[] = {"lastErrorObject.n", NULL};
static const char *const K_BULK[] = {"nInserted", "nMatched", "nRemoved", "nUpserted", NULL};
static const char *const K_CMD[] = {"n", NULL};

/* Run the real call @call (an expression assigning r) with depth raised,
 * errno saved right after it. */
#define MG_REAL(call)                                                                    \
    do {                                                                                 \
        ldprof_enter();                                                                  \
        call;                                                                            \
        saved = errno;                                                                   \
        ldprof_leave();                                                                  \
    } while (0)

/* ------------------------------------------------------------ pooling */

static mongoc_client_t *ldprof_mongoc_client_pool_pop(mongoc_client_pool_t *pool, int try)
{
    struct ldprof_span *s = ldprof_span_begin(LDPROF_KIND_POOLING);
    mongoc_client_t *r;
    int saved;

    if (s == NULL)
        return try ? real_mongoc_client_pool_try_pop(pool) : real_mongoc_client_pool_pop(pool);
    ldprof_span_add_str(s, LDPROF_FIELD_START, "pooling.op", try ? "try_pop" : "pop", -1);
    ldprof_span_add_str(s, LDPROF_FIELD_START, "pooling.driver", "mongoc", -1);
    MG_REAL(r = try ? real_mongoc_client_pool_try_pop(pool) : real_mongoc_client_pool_pop(pool));
    ldprof_span_add_int(s, LDPROF_FIELD_STOP, "pooling.got", r != NULL);
    ldprof_span_end(s);
    errno = saved;
    return r;
}

LDPROF_EXPORT mongoc_client_t *mongoc_client_pool_pop(mongoc_client_pool_t *pool)
{
    MG_NEED(mongoc_client_pool_pop, NULL);
    if (!pool_on())
        return real_mongoc_client_pool_pop(pool);
    return ldprof_mongoc_client_pool_pop(pool, 0);
}

LDPROF_EXPORT mongoc_client_t *mongoc_client_pool_try_pop(mongoc_client_pool_t *pool)
{
    MG_NEED(mongoc_client_pool_try_pop, NULL);
    if (!pool_on())
        return real_mongoc_client_pool_try_pop(pool);
    return ldprof_mongoc_client_pool_pop(pool, 1);
}

static void ldprof_mongoc_client_pool_push(mongoc_client_pool_t *pool, mongoc_client_t *client)
{
    struct ldprof_span *s = ldprof_span_begin(LDPROF_KIND_POOLING);
    int saved;

    if (s == NULL) {
        real_mongoc_client_pool_push(pool, client);
        return;
    }
    ldprof_span_add_str(s, LDPROF_FIELD_START, "pooling.op", "push", -1);
    ldprof_span_add_str(s, LDPROF_FIELD_START, "pooling.driver", "mongoc", -1);
    MG_REAL(real_mongoc_client_pool_push(pool, client));
    ldprof_span_end(s);
    errno = saved;
}

LDPROF_EXPORT void mongoc_client_pool_push(mongoc_client_pool_t *pool, mongoc_client_t *client)
{
    MG_NEED_VOID(mongoc_client_pool_push);
    if (!pool_on()) {
        real_mongoc_client_pool_push(pool, client);
        return;
    }
    ldprof_mongoc_client_pool_push(pool, client);
}

/* ------------------------------------------------------------ writes */

/*
 * The write wrappers share one shape: span with command/collection/filter,
 * the real call with the app's reply (maybe NULL) and an error struct (ours
 * when the app gave none), count from the reply, error when it failed.
 */
#define MG_ERR_LOCAL                                                                     \
    bson_error_t local_err_;                                                             \
    if (error == NULL)                                                                   \
        error = &local_err_

static bool ldprof_mongoc_collection_insert_one(mongoc_collection_t *c, const bson_t *doc,
                                                const bson_t *opts, bson_t *reply,
                                                bson_error_t *error)
{
    struct ldprof_span *s = mg_begin_coll("insert", c);
    bool r;
    int saved;

    if (s == NULL)
        return real_mongoc_collection_insert_one(c, doc, opts, reply, error);
    MG_ERR_LOCAL;
    ldprof_span_add_int(s, LDPROF_FIELD_START, "mongodb.documents", 1);
    MG_REAL(r = real_mongoc_collection_insert_one(c, doc, opts, reply, error));
    mg_end(s, !r, error, reply ? reply_count(reply, K_INSERTED) : -1);
    errno = saved;
    return r;
}

LDPROF_EXPORT bool mongoc_collection_insert_one(mongoc_collection_t *c, const bson_t *doc,
                                                const bson_t *opts, bson_t *reply,
                                                bson_error_t *error)
{
    MG_NEED(mongoc_collection_insert_one, false);
    if (!mg_on())
        return real_mongoc_collection_insert_one(c, doc, opts, reply, error);
    return ldprof_mongoc_collection_insert_one(c, doc, opts, reply, error);
}

static bool ldprof_mongoc_collection_insert_many(mongoc_collection_t *c, const bson_t **docs,
                                                 size_t n, const bson_t *opts, bson_t *reply,
                                                 bson_error_t *error)
{
    struct ldprof_span *s = mg_begin_coll("insert", c);
    bool r;
    int saved;

    if (s == NULL)
        return real_mongoc_collection_insert_many(c, docs, n, opts, reply, error);
    MG_ERR_LOCAL;
    ldprof_span_add_int(s, LDPROF_FIELD_START, "mongodb.documents", (int64_t)n);
    MG_REAL(r = real_mongoc_collection_insert_many(c, docs, n, opts, reply, error));
    mg_end(s, !r, error, reply ? reply_count(reply, K_INSERTED) : -1);
    errno = saved;
    return r;
}

LDPROF_EXPORT bool mongoc_collection_insert_many(mongoc_collection_t *c, const bson_t **docs,
                                                 size_t n, const bson_t *opts, bson_t *reply,
                                                 bson_error_t *error)
{
    MG_NEED(mongoc_collection_insert_many, false);
    if (!mg_on())
        return real_mongoc_collection_insert_many(c, docs, n, opts, reply, error);
    return ldprof_mongoc_collection_insert_many(c, docs, n, opts, reply, error);
}

/* update_one / update_many / replace_one: same signature. */
typedef bool (*mg_update_fn)(mongoc_collection_t *, const bson_t *, const bson_t *,
                             const bson_t *, bson_t *, bson_error_t *);

static bool ldprof_mongoc_update(mg_update_fn fn, const char *what, mongoc_collection_t *c,
                                 const bson_t *sel, const bson_t *upd, const bson_t *opts,
                                 bson_t *reply, bson_error_t *error)
{
    struct ldprof_span *s = mg_begin_coll("update", c);
    bool r;
    int saved;

    if (s == NULL)
        return fn(c, sel, upd, opts, reply, error);
    MG_ERR_LOCAL;
    ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.op", what, -1);
    add_doc(s, "mongodb.filter", sel);
    MG_REAL(r = fn(c, sel, upd, opts, reply, error));
    mg_end(s, !r, error, reply ? reply_count(reply, K_MATCHED) : -1);
    errno = saved;
    return r;
}

#define MG_UPDATE_WRAPPER(name, what)                                                    \
    LDPROF_EXPORT bool mongoc_collection_##name(mongoc_collection_t *c, const bson_t *sel, \
                                                const bson_t *upd, const bson_t *opts,   \
                                                bson_t *reply, bson_error_t *error)      \
    {                                                                                    \
        MG_NEED(mongoc_collection_##name, false);                                        \
        if (!mg_on())                                                                    \
            return real_mongoc_collection_##name(c, sel, upd, opts, reply, error);       \
        return ldprof_mongoc_update(real_mongoc_collection_##name, what, c, sel, upd,    \
                                    opts, reply, error);                                 \
    }

MG_UPDATE_WRAPPER(update_one, "update_one")
MG_UPDATE_WRAPPER(update_many, "update_many")
MG_UPDATE_WRAPPER(replace_one, "replace_one")

typedef bool (*mg_delete_fn)(mongoc_collection_t *, const bson_t *, const bson_t *, bson_t *,
                             bson_error_t *);

static bool ldprof_mongoc_delete(mg_delete_fn fn, const char *what, mongoc_collection_t *c,
                                 const bson_t *sel, const bson_t *opts, bson_t *reply,
                                 bson_error_t *error)
{
    struct ldprof_span *s = mg_begin_coll("delete", c);
    bool r;
    int saved;

    if (s == NULL)
        return fn(c, sel, opts, reply, error);
    MG_ERR_LOCAL;
    ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.op", what, -1);
    add_doc(s, "mongodb.filter", sel);
    MG_REAL(r = fn(c, sel, opts, reply, error));
    mg_end(s, !r, error, reply ? reply_count(reply, K_DELETED) : -1);
    errno = saved;
    return r;
}

#define MG_DELETE_WRAPPER(name, what)                                                    \
    LDPROF_EXPORT bool mongoc_collection_##name(mongoc_collection_t *c, const bson_t *sel, \
                                                const bson_t *opts, bson_t *reply,       \
                                                bson_error_t *error)                     \
    {                                                                                    \
        MG_NEED(mongoc_collection_##name, false);                                        \
        if (!mg_on())                                                                    \
            return real_mongoc_collection_##name(c, sel, opts, reply, error);            \
        return ldprof_mongoc_delete(real_mongoc_collection_##name, what, c, sel, opts,   \
                                    reply, error);                                       \
    }

MG_DELETE_WRAPPER(delete_one, "delete_one")
MG_DELETE_WRAPPER(delete_many, "delete_many")

/* ------------------------------------------------------------ counts */

static int64_t ldprof_mongoc_collection_count_documents(mongoc_collection_t *c,
                                                        const bson_t *filter,
                                                        const bson_t *opts,
                                                        const mongoc_read_prefs_t *rp,
                                                        bson_t *reply, bson_error_t *error)
{
    struct ldprof_span *s = mg_begin_coll("count", c);
    int64_t r;
    int saved;

    if (s == NULL)
        return real_mongoc_collection_count_documents(c, filter, opts, rp, reply, error);
    MG_ERR_LOCAL;
    add_doc(s, "mongodb.filter", filter);
    MG_REAL(r = real_mongoc_collection_count_documents(c, filter, opts, rp, reply, error));
    mg_end(s, r < 0, error, r);
    errno = saved;
    return r;
}

LDPROF_EXPORT int64_t mongoc_collection_count_documents(mongoc_collection_t *c,
                                                        const bson_t *filter,
                                                        const bson_t *opts,
                                                        const mongoc_read_prefs_t *rp,
                                                        bson_t *reply, bson_error_t *error)
{
    MG_NEED(mongoc_collection_count_documents, -1);
    if (!mg_on())
        return real_mongoc_collection_count_documents(c, filter, opts, rp, reply, error);
    return ldprof_mongoc_collection_count_documents(c, filter, opts, rp, reply, error);
}

static int64_t ldprof_mongoc_collection_estimated_document_count(mongoc_collection_t *c,
                                                                 const bson_t *opts,
                                                                 const mongoc_read_prefs_t *rp,
                                                                 bson_t *reply,
                                                                 bson_error_t *error)
{
    struct ldprof_span *s = mg_begin_coll("count", c);
    int64_t r;
    int saved;

    if (s == NULL)
        return real_mongoc_collection_estimated_document_count(c, opts, rp, reply, error);
    MG_ERR_LOCAL;
    ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.op", "estimated_document_count", -1);
    MG_REAL(r = real_mongoc_collection_estimated_document_count(c, opts, rp, reply, error));
    mg_end(s, r < 0, error, r);
    errno = saved;
    return r;
}

LDPROF_EXPORT int64_t mongoc_collection_estimated_document_count(mongoc_collection_t *c,
                                                                 const bson_t *opts,
                                                                 const mongoc_read_prefs_t *rp,
                                                                 bson_t *reply,
                                                                 bson_error_t *error)
{
    MG_NEED(mongoc_collection_estimated_document_count, -1);
    if (!mg_on())
        return real_mongoc_collection_estimated_document_count(c, opts, rp, reply, error);
    return ldprof_mongoc_collection_estimated_document_count(c, opts, rp, reply, error);
}

/* ------------------------------------------------------------ findAndModify */

static bool ldprof_mongoc_collection_find_and_modify_with_opts(
    mongoc_collection_t *c, const bson_t *query, const mongoc_find_and_modify_opts_t *opts,
    bson_t *reply, bson_error_t *error)
{
    struct ldprof_span *s = mg_begin_coll("findAndModify", c);
    bool r;
    int saved;

    if (s == NULL)
        return real_mongoc_collection_find_and_modify_with_opts(c, query, opts, reply, error);
    MG_ERR_LOCAL;
    add_doc(s, "mongodb.filter", query);
    MG_REAL(r = real_mongoc_collection_find_and_modify_with_opts(c, query, opts, reply, error));
    mg_end(s, !r, error, reply ? reply_count(reply, K_FAM) : -1);
    errno = saved;
    return r;
}

LDPROF_EXPORT bool mongoc_collection_find_and_modify_with_opts(
    mongoc_collection_t *c, const bson_t *query, const mongoc_find_and_modify_opts_t *opts,
    bson_t *reply, bson_error_t *error)
{
    MG_NEED(mongoc_collection_find_and_modify_with_opts, false);
    if (!mg_on())
        return real_mongoc_collection_find_and_modify_with_opts(c, query, opts, reply, error);
    return ldprof_mongoc_collection_find_and_modify_with_opts(c, query, opts, reply, error);
}

static bool ldprof_mongoc_collection_find_and_modify(mongoc_collection_t *c, const bson_t *query,
                                                     const bson_t *sort, const bson_t *update,
                                                     const bson_t *fields, bool rm, bool upsert,
                                                     bool nw, bson_t *reply, bson_error_t *error)
{
    struct ldprof_span *s = mg_begin_coll("findAndModify", c);
    bool r;
    int saved;

    if (s == NULL)
        return real_mongoc_collection_find_and_modify(c, query, sort, update, fields, rm,
                                                      upsert, nw, reply, error);
    MG_ERR_LOCAL;
    add_doc(s, "mongodb.filter", query);
    MG_REAL(r = real_mongoc_collection_find_and_modify(c, query, sort, update, fields, rm,
                                                       upsert, nw, reply, error));
    mg_end(s, !r, error, reply ? reply_count(reply, K_FAM) : -1);
    errno = saved;
    return r;
}

LDPROF_EXPORT bool mongoc_collection_find_and_modify(mongoc_collection_t *c, const bson_t *query,
                                                     const bson_t *sort, const bson_t *update,
                                                     const bson_t *fields, bool rm, bool upsert,
                                                     bool nw, bson_t *reply, bson_error_t *error)
{
    MG_NEED(mongoc_collection_find_and_modify, false);
    if (!mg_on())
        return real_mongoc_collection_find_and_modify(c, query, sort, update, fields, rm,
                                                      upsert, nw, reply, error);
    return ldprof_mongoc_collection_find_and_modify(c, query, sort, update, fields, rm, upsert,
                                                    nw, reply, error);
}

/* ------------------------------------------------------------ cursors */

#define MG_CURSORS 256

static struct mg_cursor {
    mongoc_cursor_t *cursor; /* atomic; NULL = free slot */
    struct ldprof_span *span;
    int64_t n; /* documents handed to the app */
} mg_cur[MG_CURSORS];
static int mg_cur_used; /* atomic: slots in use (fast path when 0) */

/* Detach @s from the thread's context: it stays open across the app's
 * iteration without being the parent of what the app does meanwhile. */
static void mg_detach(struct ldprof_span *s)
{
    struct ldprof_ctx *c = &ldprof_tls.ctx;

    if (s->prev_valid && memcmp(c->cur_id, s->w.trace_id, 16) == 0)
        memcpy(c->cur_id, s->prev_id, 16);
    s->prev_valid = 0;
}

static void mg_cursor_track(mongoc_cursor_t *cur, struct ldprof_span *s)
{
    for (int i = 0; i < MG_CURSORS; i++) {
        mongoc_cursor_t *expect = NULL;
        if (__atomic_load_n(&mg_cur[i].cursor, __ATOMIC_RELAXED) == NULL &&
            __atomic_compare_exchange_n(&mg_cur[i].cursor, &expect, cur, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            mg_cur[i].span = s;
            mg_cur[i].n = 0;
            __atomic_add_fetch(&mg_cur_used, 1, __ATOMIC_RELEASE);
            return;
        }
    }
    /* Table full: the span ends now, without the round trips. */
    ldprof_span_add_str(s, LDPROF_FIELD_STOP, "mongodb.cursor", "untracked", -1);
    ldprof_span_end(s);
}

/* The slot of @cur, or NULL.  A cursor is used by one thread at a time
 * (libmongoc's rule), so the slot's fields need no lock. */
static struct mg_cursor *mg_cursor_find(const mongoc_cursor_t *cur)
{
    if (cur == NULL || __atomic_load_n(&mg_cur_used, __ATOMIC_ACQUIRE) == 0)
        return NULL;
    for (int i = 0; i < MG_CURSORS; i++)
        if (__atomic_load_n(&mg_cur[i].cursor, __ATOMIC_ACQUIRE) == cur)
            return &mg_cur[i];
    return NULL;
}

/* End the cursor's span (exhausted, failed or destroyed) and free the slot. */
static void mg_cursor_finish(struct mg_cursor *m, const char *how)
{
    struct ldprof_span *s = m->span;
    bson_error_t e;
    int failed;

    failed = real_mongoc_cursor_error(m->cursor, &e);
    ldprof_span_add_str(s, LDPROF_FIELD_STOP, "mongodb.cursor", how, -1);
    m->span = NULL;
    __atomic_store_n(&m->cursor, NULL, __ATOMIC_RELEASE);
    __atomic_sub_fetch(&mg_cur_used, 1, __ATOMIC_RELEASE);
    mg_end(s, failed, &e, m->n);
}

static mongoc_cursor_t *ldprof_mongoc_collection_find_with_opts(mongoc_collection_t *c,
                                                                const bson_t *filter,
                                                                const bson_t *opts,
                                                                const mongoc_read_prefs_t *rp)
{
    struct ldprof_span *s = mg_begin_coll("find", c);
    mongoc_cursor_t *r;
    int saved;

    if (s == NULL)
        return real_mongoc_collection_find_with_opts(c, filter, opts, rp);
    mg_detach(s);
    add_doc(s, "mongodb.filter", filter);
    MG_REAL(r = real_mongoc_collection_find_with_opts(c, filter, opts, rp));
    if (r == NULL)
        mg_end(s, 1, NULL, -1);
    else
        mg_cursor_track(r, s);
    errno = saved;
    return r;
}

LDPROF_EXPORT mongoc_cursor_t *mongoc_collection_find_with_opts(mongoc_collection_t *c,
                                                                const bson_t *filter,
                                                                const bson_t *opts,
                                                                const mongoc_read_prefs_t *rp)
{
    MG_NEED(mongoc_collection_find_with_opts, NULL);
    if (!mg_on())
        return real_mongoc_collection_find_with_opts(c, filter, opts, rp);
    return ldprof_mongoc_collection_find_with_opts(c, filter, opts, rp);
}

static mongoc_cursor_t *ldprof_mongoc_collection_aggregate(mongoc_collection_t *c,
                                                           mongoc_query_flags_t flags,
                                                           const bson_t *pipeline,
                                                           const bson_t *opts,
                                                           const mongoc_read_prefs_t *rp)
{
    struct ldprof_span *s = mg_begin_coll("aggregate", c);
    mongoc_cursor_t *r;
    int saved;

    if (s == NULL)
        return real_mongoc_collection_aggregate(c, flags, pipeline, opts, rp);
    mg_detach(s);
    add_pipeline(s, pipeline);
    MG_REAL(r = real_mongoc_collection_aggregate(c, flags, pipeline, opts, rp));
    if (r == NULL)
        mg_end(s, 1, NULL, -1);
    else
        mg_cursor_track(r, s);
    errno = saved;
    return r;
}

LDPROF_EXPORT mongoc_cursor_t *mongoc_collection_aggregate(mongoc_collection_t *c,
                                                           mongoc_query_flags_t flags,
                                                           const bson_t *pipeline,
                                                           const bson_t *opts,
                                                           const mongoc_read_prefs_t *rp)
{
    MG_NEED(mongoc_collection_aggregate, NULL);
    if (!mg_on())
        return real_mongoc_collection_aggregate(c, flags, pipeline, opts, rp);
    return ldprof_mongoc_collection_aggregate(c, flags, pipeline, opts, rp);
}

/* cursor_next / cursor_destroy: not gated on the toggle or the thread's
 * trace (a tracked cursor's span was begun when they allowed it, and must
 * end); untracked cursors cost one atomic load. */
static bool ldprof_mongoc_cursor_next(mongoc_cursor_t *cur, const bson_t **bson,
                                      struct mg_cursor *m)
{
    bool r;
    int saved;

    MG_REAL(r = real_mongoc_cursor_next(cur, bson));
    if (r)
        m->n++;
    else
        mg_cursor_finish(m, "exhausted");
    errno = saved;
    return r;
}

LDPROF_EXPORT bool mongoc_cursor_next(mongoc_cursor_t *cur, const bson_t **bson)
{
    struct mg_cursor *m;

    MG_NEED(mongoc_cursor_next, false);
    if (ldprof_tls.depth != 0 || (m = mg_cursor_find(cur)) == NULL)
        return real_mongoc_cursor_next(cur, bson);
    return ldprof_mongoc_cursor_next(cur, bson, m);
}

LDPROF_EXPORT void mongoc_cursor_destroy(mongoc_cursor_t *cur)
{
    struct mg_cursor *m;
    int saved = errno;

    MG_NEED_VOID(mongoc_cursor_destroy);
    if (ldprof_tls.depth == 0 && (m = mg_cursor_find(cur)) != NULL) {
        mg_cursor_finish(m, "destroyed");
        errno = saved;
    }
    real_mongoc_cursor_destroy(cur);
}

/* ------------------------------------------------------------ commands */

/* The command name (first key) and, when its value is a string, the
 * collection it names. */
static struct ldprof_span *mg_begin_cmd(const bson_t *cmd, const char *db)
{
    bson_iter_t it;
    struct ldprof_span *s = ldprof_span_begin(LDPROF_KIND_MONGODB);

    if (s == NULL)
        return NULL;
    if (cmd != NULL && real_bson_iter_init(&it, cmd) && real_bson_iter_next(&it)) {
        ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.command", real_bson_iter_key(&it), -1);
        if (db != NULL)
            ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.database", db, -1);
        if (real_bson_iter_type(&it) == BSON_TYPE_UTF8)
            ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.collection",
                                real_bson_iter_utf8(&it, NULL), -1);
    } else {
        ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.command", "command", -1);
        if (db != NULL)
            ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.database", db, -1);
    }
    return s;
}

/* Every command wrapper: span named after the command, count = the reply's
 * "n" when present. */
#define MG_CMD_BODY(realcall, dbexpr)                                                    \
    struct ldprof_span *s = mg_begin_cmd(cmd, (dbexpr));                                 \
    bool r;                                                                              \
    int saved;                                                                           \
    if (s == NULL)                                                                       \
        return realcall;                                                                 \
    MG_ERR_LOCAL;                                                                        \
    MG_REAL(r = realcall);                                                               \
    mg_end(s, !r, error, reply ? reply_count(reply, K_CMD) : -1);                        \
    errno = saved;                                                                       \
    return r

static bool ldprof_mongoc_client_command_simple(mongoc_client_t *cl, const char *db,
                                                const bson_t *cmd, const mongoc_read_prefs_t *rp,
                                                bson_t *reply, bson_error_t *error)
{
    MG_CMD_BODY(real_mongoc_client_command_simple(cl, db, cmd, rp, reply, error), db);
}

LDPROF_EXPORT bool mongoc_client_command_simple(mongoc_client_t *cl, const char *db,
                                                const bson_t *cmd, const mongoc_read_prefs_t *rp,
                                                bson_t *reply, bson_error_t *error)
{
    MG_NEED(mongoc_client_command_simple, false);
    if (!mg_on())
        return real_mongoc_client_command_simple(cl, db, cmd, rp, reply, error);
    return ldprof_mongoc_client_command_simple(cl, db, cmd, rp, reply, error);
}

static bool ldprof_mongoc_client_command_with_opts(mongoc_client_t *cl, const char *db,
                                                   const bson_t *cmd,
                                                   const mongoc_read_prefs_t *rp,
                                                   const bson_t *opts, bson_t *reply,
                                                   bson_error_t *error)
{
    MG_CMD_BODY(real_mongoc_client_command_with_opts(cl, db, cmd, rp, opts, reply, error), db);
}

LDPROF_EXPORT bool mongoc_client_command_with_opts(mongoc_client_t *cl, const char *db,
                                                   const bson_t *cmd,
                                                   const mongoc_read_prefs_t *rp,
                                                   const bson_t *opts, bson_t *reply,
                                                   bson_error_t *error)
{
    MG_NEED(mongoc_client_command_with_opts, false);
    if (!mg_on())
        return real_mongoc_client_command_with_opts(cl, db, cmd, rp, opts, reply, error);
    return ldprof_mongoc_client_command_with_opts(cl, db, cmd, rp, opts, reply, error);
}

static bool ldprof_mongoc_client_read_command_with_opts(mongoc_client_t *cl, const char *db,
                                                        const bson_t *cmd,
                                                        const mongoc_read_prefs_t *rp,
                                                        const bson_t *opts, bson_t *reply,
                                                        bson_error_t *error)
{
    MG_CMD_BODY(real_mongoc_client_read_command_with_opts(cl, db, cmd, rp, opts, reply, error),
                db);
}

LDPROF_EXPORT bool mongoc_client_read_command_with_opts(mongoc_client_t *cl, const char *db,
                                                        const bson_t *cmd,
                                                        const mongoc_read_prefs_t *rp,
                                                        const bson_t *opts, bson_t *reply,
                                                        bson_error_t *error)
{
    MG_NEED(mongoc_client_read_command_with_opts, false);
    if (!mg_on())
        return real_mongoc_client_read_command_with_opts(cl, db, cmd, rp, opts, reply, error);
    return ldprof_mongoc_client_read_command_with_opts(cl, db, cmd, rp, opts, reply, error);
}

static bool ldprof_mongoc_client_write_command_with_opts(mongoc_client_t *cl, const char *db,
                                                         const bson_t *cmd, const bson_t *opts,
                                                         bson_t *reply, bson_error_t *error)
{
    MG_CMD_BODY(real_mongoc_client_write_command_with_opts(cl, db, cmd, opts, reply, error), db);
}

LDPROF_EXPORT bool mongoc_client_write_command_with_opts(mongoc_client_t *cl, const char *db,
                                                         const bson_t *cmd, const bson_t *opts,
                                                         bson_t *reply, bson_error_t *error)
{
    MG_NEED(mongoc_client_write_command_with_opts, false);
    if (!mg_on())
        return real_mongoc_client_write_command_with_opts(cl, db, cmd, opts, reply, error);
    return ldprof_mongoc_client_write_command_with_opts(cl, db, cmd, opts, reply, error);
}

static bool ldprof_mongoc_database_command_simple(mongoc_database_t *d, const bson_t *cmd,
                                                  const mongoc_read_prefs_t *rp, bson_t *reply,
                                                  bson_error_t *error)
{
    MG_CMD_BODY(real_mongoc_database_command_simple(d, cmd, rp, reply, error),
                d ? real_mongoc_database_get_name(d) : NULL);
}

LDPROF_EXPORT bool mongoc_database_command_simple(mongoc_database_t *d, const bson_t *cmd,
                                                  const mongoc_read_prefs_t *rp, bson_t *reply,
                                                  bson_error_t *error)
{
    MG_NEED(mongoc_database_command_simple, false);
    if (!mg_on())
        return real_mongoc_database_command_simple(d, cmd, rp, reply, error);
    return ldprof_mongoc_database_command_simple(d, cmd, rp, reply, error);
}

static bool ldprof_mongoc_collection_command_simple(mongoc_collection_t *c, const bson_t *cmd,
                                                    const mongoc_read_prefs_t *rp,
                                                    bson_t *reply, bson_error_t *error)
{
    MG_CMD_BODY(real_mongoc_collection_command_simple(c, cmd, rp, reply, error), NULL);
}

LDPROF_EXPORT bool mongoc_collection_command_simple(mongoc_collection_t *c, const bson_t *cmd,
                                                    const mongoc_read_prefs_t *rp,
                                                    bson_t *reply, bson_error_t *error)
{
    MG_NEED(mongoc_collection_command_simple, false);
    if (!mg_on())
        return real_mongoc_collection_command_simple(c, cmd, rp, reply, error);
    return ldprof_mongoc_collection_command_simple(c, cmd, rp, reply, error);
}

/* ------------------------------------------------------------ bulk, drop */

static uint32_t ldprof_mongoc_bulk_operation_execute(mongoc_bulk_operation_t *bulk,
                                                     bson_t *reply, bson_error_t *error)
{
    struct ldprof_span *s = mg_begin("bulk", NULL, NULL);
    uint32_t r;
    int saved;

    if (s == NULL)
        return real_mongoc_bulk_operation_execute(bulk, reply, error);
    MG_ERR_LOCAL;
    MG_REAL(r = real_mongoc_bulk_operation_execute(bulk, reply, error));
    mg_end(s, r == 0, error, reply ? reply_count(reply, K_BULK) : -1);
    errno = saved;
    return r;
}

LDPROF_EXPORT uint32_t mongoc_bulk_operation_execute(mongoc_bulk_operation_t *bulk,
                                                     bson_t *reply, bson_error_t *error)
{
    MG_NEED(mongoc_bulk_operation_execute, 0);
    if (!mg_on())
        return real_mongoc_bulk_operation_execute(bulk, reply, error);
    return ldprof_mongoc_bulk_operation_execute(bulk, reply, error);
}

static bool ldprof_mongoc_collection_drop_with_opts(mongoc_collection_t *c, const bson_t *opts,
                                                    bson_error_t *error, int with_opts)
{
    struct ldprof_span *s = mg_begin_coll("drop", c);
    bool r;
    int saved;

    if (s == NULL)
        return with_opts ? real_mongoc_collection_drop_with_opts(c, opts, error)
                         : real_mongoc_collection_drop(c, error);
    MG_ERR_LOCAL;
    MG_REAL(r = with_opts ? real_mongoc_collection_drop_with_opts(c, opts, error)
                          : real_mongoc_collection_drop(c, error));
    mg_end(s, !r, error, -1);
    errno = saved;
    return r;
}

LDPROF_EXPORT bool mongoc_collection_drop(mongoc_collection_t *c, bson_error_t *error)
{
    MG_NEED(mongoc_collection_drop, false);
    if (!mg_on())
        return real_mongoc_collection_drop(c, error);
    return ldprof_mongoc_collection_drop_with_opts(c, NULL, error, 0);
}

LDPROF_EXPORT bool mongoc_collection_drop_with_opts(mongoc_collection_t *c, const bson_t *opts,
                                                    bson_error_t *error)
{
    MG_NEED(mongoc_collection_drop_with_opts, false);
    if (!mg_on())
        return real_mongoc_collection_drop_with_opts(c, opts, error);
    return ldprof_mongoc_collection_drop_with_opts(c, opts, error, 1);
}

static bool ldprof_mongoc_collection_drop_index_with_opts(mongoc_collection_t *c,
                                                          const char *index,
                                                          const bson_t *opts,
                                                          bson_error_t *error, int with_opts)
{
    struct ldprof_span *s = mg_begin_coll("dropIndexes", c);
    bool r;
    int saved;

    if (s == NULL)
        return with_opts ? real_mongoc_collection_drop_index_with_opts(c, index, opts, error)
                         : real_mongoc_collection_drop_index(c, index, error);
    MG_ERR_LOCAL;
    if (index != NULL)
        ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.index", index, -1);
    MG_REAL(r = with_opts ? real_mongoc_collection_drop_index_with_opts(c, index, opts, error)
                          : real_mongoc_collection_drop_index(c, index, error));
    mg_end(s, !r, error, -1);
    errno = saved;
    return r;
}

LDPROF_EXPORT bool mongoc_collection_drop_index(mongoc_collection_t *c, const char *index,
                                                bson_error_t *error)
{
    MG_NEED(mongoc_collection_drop_index, false);
    if (!mg_on())
        return real_mongoc_collection_drop_index(c, index, error);
    return ldprof_mongoc_collection_drop_index_with_opts(c, index, NULL, error, 0);
}

LDPROF_EXPORT bool mongoc_collection_drop_index_with_opts(mongoc_collection_t *c,
                                                          const char *index, const bson_t *opts,
                                                          bson_error_t *error)
{
    MG_NEED(mongoc_collection_drop_index_with_opts, false);
    if (!mg_on())
        return real_mongoc_collection_drop_index_with_opts(c, index, opts, error);
    return ldprof_mongoc_collection_drop_index_with_opts(c, index, opts, error, 1);
}

/* ------------------------------------------------------------ indexes */

/*
 * mongoc_collection_create_index (-> create_index_with_opts inside
 * libmongoc: one span) and create_index_with_opts: command "createIndexes",
 * mongodb.index = the key document's field names joined with ",".
 * (libmongoc 1.23 has no mongoc_collection_create_indexes_with_opts; an app
 * that sends createIndexes with a *_command_* call gets the command span.)
 */
static bool ldprof_mongoc_collection_create_index_with_opts(mongoc_collection_t *c,
                                                            const bson_t *keys,
                                                            const mongoc_index_opt_t *opt,
                                                            const bson_t *opts, bson_t *reply,
                                                            bson_error_t *error, int with_opts)
{
    struct ldprof_span *s = mg_begin_coll("createIndexes", c);
    bool r;
    int saved;

    if (s == NULL)
        return with_opts ? real_mongoc_collection_create_index_with_opts(c, keys, opt, opts,
                                                                         reply, error)
                         : real_mongoc_collection_create_index(c, keys, opt, error);
    MG_ERR_LOCAL;
    {
        char buf[256];
        struct sb b = {buf, 0, sizeof(buf)};
        bson_keys(keys, &b);
        ldprof_span_add_str(s, LDPROF_FIELD_START, "mongodb.index", buf, (int)b.n);
    }
    MG_REAL(r = with_opts ? real_mongoc_collection_create_index_with_opts(c, keys, opt, opts,
                                                                          reply, error)
                          : real_mongoc_collection_create_index(c, keys, opt, error));
    mg_end(s, !r, error, -1);
    errno = saved;
    return r;
}

LDPROF_EXPORT bool mongoc_collection_create_index(mongoc_collection_t *c, const bson_t *keys,
                                                  const mongoc_index_opt_t *opt,
                                                  bson_error_t *error)
{
    MG_NEED(mongoc_collection_create_index, false);
    if (!mg_on())
        return real_mongoc_collection_create_index(c, keys, opt, error);
    return ldprof_mongoc_collection_create_index_with_opts(c, keys, opt, NULL, NULL, error, 0);
}

LDPROF_EXPORT bool mongoc_collection_create_index_with_opts(mongoc_collection_t *c,
                                                            const bson_t *keys,
                                                            const mongoc_index_opt_t *opt,
                                                            const bson_t *opts, bson_t *reply,
                                                            bson_error_t *error)
{
    MG_NEED(mongoc_collection_create_index_with_opts, false);
    if (!mg_on())
        return real_mongoc_collection_create_index_with_opts(c, keys, opt, opts, reply, error);
    return ldprof_mongoc_collection_create_index_with_opts(c, keys, opt, opts, reply, error, 1);
}
