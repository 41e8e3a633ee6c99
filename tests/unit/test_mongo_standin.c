/*
 * test_mongo_standin.c - exercises the MongoDB stand-in
 * (tests/mongo-standin/standin.py) through libmongoc.
 *
 * The server is taken from LDPROF_TEST_MONGO_URI (set by the test harness,
 * e.g. mongodb://127.0.0.1:PORT/?appname=x).  The tests also pass against a
 * real mongod at that URI: every test works in its own database
 * "ldprof_test_<pid>_<n>" and drops it at the end.  Where the stand-in is
 * deliberately stricter than MongoDB (operators it does not implement), the
 * check detects the stand-in through buildInfo.mongoStandin.
 *
 * If LDPROF_TEST_MONGO_URI is unset the tests fail, unless
 * LDPROF_TEST_ALLOW_SKIP is set, in which case they are skipped.
 *
 * All unit suites are linked into one Criterion binary: mongoc_init() is
 * called from this suite's .init (it is idempotent), and mongoc_cleanup() is
 * never called, because libmongoc cannot be initialised again after it and
 * other suites in the same process may still use it.
 */
#include <criterion/criterion.h>
#include <mongoc/mongoc.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static mongoc_client_t *client;
static mongoc_database_t *database;
static char dbname[64];
static const char *uri_string;

/* Parse relaxed extended JSON (single quotes allowed for readability). */
static bson_t *json(const char *text)
{
    char buf[2048];
    bson_error_t error;
    size_t len = strlen(text);

    cr_assert_lt(len, sizeof buf, "JSON literal too long");
    for (size_t i = 0; i <= len; i++)
        buf[i] = text[i] == '\'' ? '"' : text[i];
    bson_t *doc = bson_new_from_json((const uint8_t *)buf, -1, &error);
    cr_assert_not_null(doc, "bad JSON in test: %s: %s", text, error.message);
    return doc;
}

static int64_t get_int(const bson_t *doc, const char *dotted)
{
    bson_iter_t it;

    cr_assert(bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, dotted, &it),
              "field %s missing", dotted);
    cr_assert(BSON_ITER_HOLDS_NUMBER(&it), "field %s is not a number", dotted);
    return bson_iter_as_int64(&it);
}

static bool has_field(const bson_t *doc, const char *dotted)
{
    bson_iter_t it;

    return bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, dotted, &it);
}

static mongoc_collection_t *collection(const char *name)
{
    return mongoc_client_get_collection(client, dbname, name);
}

/* count_documents (an aggregate command) with a JSON filter and options. */
static int64_t count_docs(mongoc_collection_t *coll, const char *filter, const char *opts)
{
    bson_t *f = json(filter), *o = opts ? json(opts) : NULL;
    bson_error_t error;

    int64_t n = mongoc_collection_count_documents(coll, f, o, NULL, NULL, &error);
    cr_assert_geq(n, 0, "count_documents(%s) failed: %s", filter, error.message);
    bson_destroy(f);
    if (o)
        bson_destroy(o);
    return n;
}

/* True if the server is the stand-in (it answers buildInfo.mongoStandin). */
static bool is_standin(void)
{
    bson_t *cmd = json("{'buildInfo': 1}");
    bson_t reply;
    bson_error_t error;
    bson_iter_t it;

    bool ok = mongoc_client_command_simple(client, "admin", cmd, NULL, &reply, &error);
    cr_assert(ok, "buildInfo failed: %s", error.message);
    bool standin = bson_iter_init_find(&it, &reply, "mongoStandin") && bson_iter_as_bool(&it);
    bson_destroy(&reply);
    bson_destroy(cmd);
    return standin;
}

static void suite_init(void)
{
    static int counter;

    mongoc_init();
    uri_string = getenv("LDPROF_TEST_MONGO_URI");
    if (uri_string == NULL || *uri_string == '\0') {
        if (getenv("LDPROF_TEST_ALLOW_SKIP"))
            cr_skip_test("LDPROF_TEST_MONGO_URI is not set");
        cr_assert_fail("LDPROF_TEST_MONGO_URI is not set: start "
                       "tests/mongo-standin/standin.py (or a mongod) and export "
                       "its URI, or set LDPROF_TEST_ALLOW_SKIP=1 to skip");
    }
    snprintf(dbname, sizeof dbname, "ldprof_test_%ld_%d", (long)getpid(), counter++);
    client = mongoc_client_new(uri_string);
    cr_assert_not_null(client, "invalid LDPROF_TEST_MONGO_URI: %s", uri_string);
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    database = mongoc_client_get_database(client, dbname);
}

static void suite_fini(void)
{
    bson_error_t error;

    if (database) {
        /* Best effort: the database may never have been created. */
        (void)mongoc_database_drop(database, &error);
        mongoc_database_destroy(database);
        database = NULL;
    }
    if (client) {
        mongoc_client_destroy(client);
        client = NULL;
    }
}

TestSuite(mongo_standin, .init = suite_init, .fini = suite_fini, .timeout = 120);

/* Insert docs {_id: i, n: i, grp: i % 3} for i in [0, count). */
static void insert_numbered(mongoc_collection_t *coll, int count)
{
    bson_t **docs = calloc((size_t)count, sizeof *docs);
    bson_error_t error;

    cr_assert_not_null(docs);
    for (int i = 0; i < count; i++) {
        docs[i] = bson_new();
        BSON_APPEND_INT32(docs[i], "_id", i);
        BSON_APPEND_INT32(docs[i], "n", i);
        BSON_APPEND_INT32(docs[i], "grp", i % 3);
    }
    bool ok = mongoc_collection_insert_many(coll, (const bson_t **)docs, (size_t)count,
                                            NULL, NULL, &error);
    cr_assert(ok, "insert_many failed: %s", error.message);
    for (int i = 0; i < count; i++)
        bson_destroy(docs[i]);
    free(docs);
}

/* Run a find and collect the int field "n" of each result into out[]. */
static int find_ns(mongoc_collection_t *coll, const char *filter, const char *opts,
                   int *out, int max)
{
    bson_t *f = json(filter), *o = opts ? json(opts) : NULL;
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, f, o, NULL);
    const bson_t *doc;
    bson_error_t error;
    int count = 0;

    while (mongoc_cursor_next(cursor, &doc)) {
        cr_assert_lt(count, max, "too many results");
        out[count++] = (int)get_int(doc, "n");
    }
    cr_assert_not(mongoc_cursor_error(cursor, &error), "find failed: %s", error.message);
    mongoc_cursor_destroy(cursor);
    bson_destroy(f);
    if (o)
        bson_destroy(o);
    return count;
}

Test(mongo_standin, insert_and_find)
{
    mongoc_collection_t *coll = collection("items");
    bson_error_t error;
    bson_t reply;
    int got[16];

    bson_t *one = json("{'_id': 100, 'n': 100, 'grp': 1, 'sub': {'k': 'v'}}");
    cr_assert(mongoc_collection_insert_one(coll, one, NULL, &reply, &error),
              "insert_one failed: %s", error.message);
    cr_assert_eq(get_int(&reply, "insertedCount"), 1);
    bson_destroy(&reply);
    insert_numbered(coll, 10);

    /* Filter + sort + limit. */
    int n = find_ns(coll, "{'n': {'$gte': 2, '$lt': 50}}", "{'sort': {'n': -1}, 'limit': 3}", got, 16);
    cr_assert_eq(n, 3);
    cr_assert(got[0] == 9 && got[1] == 8 && got[2] == 7, "got %d %d %d", got[0], got[1], got[2]);

    /* Multi-key sort, skip, dotted path, $in, $or. */
    n = find_ns(coll, "{'grp': 1}", "{'sort': {'grp': 1, 'n': 1}, 'skip': 1}", got, 16);
    cr_assert_eq(n, 3);
    cr_assert(got[0] == 4 && got[1] == 7 && got[2] == 100);
    n = find_ns(coll, "{'sub.k': 'v'}", NULL, got, 16);
    cr_assert(n == 1 && got[0] == 100);
    n = find_ns(coll, "{'$or': [{'n': {'$in': [1, 3]}}, {'n': 5}]}", "{'sort': {'n': 1}}", got, 16);
    cr_assert(n == 3 && got[0] == 1 && got[1] == 3 && got[2] == 5);

    /* Duplicate _id is a write error 11000, and nothing was changed. */
    bool ok = mongoc_collection_insert_one(coll, one, NULL, NULL, &error);
    cr_assert_not(ok, "duplicate _id was accepted");
    cr_assert_eq(error.code, 11000, "code %u: %s", error.code, error.message);
    cr_assert_eq(count_docs(coll, "{}", NULL), 11);

    bson_destroy(one);
    mongoc_collection_destroy(coll);
}

Test(mongo_standin, update_and_upsert)
{
    mongoc_collection_t *coll = collection("upd");
    bson_error_t error;
    bson_t reply;
    int got[4];

    insert_numbered(coll, 3);
    bson_t *q = json("{'_id': 1}");
    bson_t *u = json("{'$set': {'tag': 'x', 'n': 41}, '$inc': {'hits': 2}}");
    cr_assert(mongoc_collection_update_one(coll, q, u, NULL, &reply, &error),
              "update_one failed: %s", error.message);
    cr_assert_eq(get_int(&reply, "matchedCount"), 1);
    cr_assert_eq(get_int(&reply, "modifiedCount"), 1);
    bson_destroy(&reply);
    bson_destroy(u);

    u = json("{'$inc': {'n': 1, 'hits': 3}}");
    cr_assert(mongoc_collection_update_one(coll, q, u, NULL, NULL, &error), "%s", error.message);
    cr_assert(find_ns(coll, "{'tag': 'x', 'hits': 5}", NULL, got, 4) == 1 && got[0] == 42);
    bson_destroy(u);
    bson_destroy(q);

    /* Upsert of a missing document inserts it, with the query's equality fields. */
    q = json("{'_id': 'new', 'n': 7}");
    u = json("{'$set': {'tag': 'up'}, '$setOnInsert': {'fresh': true}}");
    bson_t *opts = json("{'upsert': true}");
    cr_assert(mongoc_collection_update_one(coll, q, u, opts, &reply, &error), "%s", error.message);
    cr_assert_eq(get_int(&reply, "matchedCount"), 0);
    cr_assert_eq(get_int(&reply, "upsertedCount"), 1);
    cr_assert(has_field(&reply, "upsertedId"));
    bson_destroy(&reply);
    cr_assert(find_ns(coll, "{'_id': 'new', 'tag': 'up', 'fresh': true}", NULL, got, 4) == 1 && got[0] == 7);

    /* The same upsert again matches and updates; $setOnInsert is not reapplied. */
    bson_destroy(u);
    u = json("{'$set': {'tag': 'again'}, '$setOnInsert': {'fresh': false}}");
    cr_assert(mongoc_collection_update_one(coll, q, u, opts, &reply, &error), "%s", error.message);
    cr_assert_eq(get_int(&reply, "matchedCount"), 1);
    cr_assert_eq(get_int(&reply, "upsertedCount"), 0);
    bson_destroy(&reply);
    cr_assert_eq(find_ns(coll, "{'tag': 'again', 'fresh': true}", NULL, got, 4), 1);

    bson_destroy(opts);
    bson_destroy(u);
    bson_destroy(q);
    mongoc_collection_destroy(coll);
}

Test(mongo_standin, delete_and_count)
{
    mongoc_collection_t *coll = collection("del");
    bson_error_t error;
    bson_t reply;

    insert_numbered(coll, 12);
    cr_assert_eq(count_docs(coll, "{'grp': 0}", NULL), 4);
    cr_assert_eq(count_docs(coll, "{'grp': 0}", "{'skip': 1, 'limit': 2}"), 2);
    cr_assert_eq(count_docs(coll, "{'nothing': {'$exists': true}}", NULL), 0);

    bson_t *f = json("{'grp': 0}");
    cr_assert(mongoc_collection_delete_one(coll, f, NULL, &reply, &error), "%s", error.message);
    cr_assert_eq(get_int(&reply, "deletedCount"), 1);
    bson_destroy(&reply);
    cr_assert_eq(count_docs(coll, "{'grp': 0}", NULL), 3);

    bson_t *g = json("{'grp': {'$ne': 1}}");
    cr_assert(mongoc_collection_delete_many(coll, g, NULL, &reply, &error), "%s", error.message);
    cr_assert_eq(get_int(&reply, "deletedCount"), 7);
    bson_destroy(&reply);
    cr_assert_eq(count_docs(coll, "{}", NULL), 4);
    cr_assert_eq(count_docs(coll, "{'grp': 0}", NULL), 0);

    bson_destroy(g);
    bson_destroy(f);
    mongoc_collection_destroy(coll);
}

/* Claim the lowest unclaimed message for `who`; returns its _id, or -1 if none. */
static int claim_one(mongoc_collection_t *coll, int who, bson_error_t *error, bool *failed)
{
    mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
    bson_t *query = json("{'claimed': null}");
    bson_t *sort = json("{'_id': 1}");
    bson_t update = BSON_INITIALIZER, set, reply;
    bson_iter_t it, val;
    int id = -1;

    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_INT32(&set, "claimed", who);
    bson_append_document_end(&update, &set);
    mongoc_find_and_modify_opts_set_update(fam, &update);
    mongoc_find_and_modify_opts_set_sort(fam, sort);
    mongoc_find_and_modify_opts_set_flags(fam, MONGOC_FIND_AND_MODIFY_RETURN_NEW);

    *failed = !mongoc_collection_find_and_modify_with_opts(coll, query, fam, &reply, error);
    if (!*failed && bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)
        && bson_iter_recurse(&it, &val) && bson_iter_find(&val, "_id"))
        id = bson_iter_int32(&val);
    bson_destroy(&reply);
    bson_destroy(&update);
    bson_destroy(sort);
    bson_destroy(query);
    mongoc_find_and_modify_opts_destroy(fam);
    return id;
}

Test(mongo_standin, find_and_modify_claim)
{
    mongoc_collection_t *coll = collection("queue");
    bson_error_t error;
    bool failed;

    insert_numbered(coll, 3);
    for (int expect = 0; expect < 3; expect++) {
        int id = claim_one(coll, 7, &error, &failed);
        cr_assert_not(failed, "findAndModify failed: %s", error.message);
        cr_assert_eq(id, expect, "claimed %d, expected %d", id, expect);
    }
    cr_assert_eq(claim_one(coll, 7, &error, &failed), -1, "claimed from an empty queue");
    cr_assert_not(failed, "%s", error.message);

    /* lastErrorObject of a plain (returning the old document) claim. */
    bson_t *extra = json("{'_id': 50, 'n': 50}");
    cr_assert(mongoc_collection_insert_one(coll, extra, NULL, NULL, &error), "%s", error.message);
    bson_t *query = json("{'claimed': {'$exists': false}}");
    bson_t *update = json("{'$set': {'claimed': 8}}");
    bson_t reply;
    bson_iter_t it;
    cr_assert(mongoc_collection_find_and_modify(coll, query, NULL, update, NULL, false, false,
                                                false, &reply, &error),
              "%s", error.message);
    cr_assert_eq(get_int(&reply, "lastErrorObject.n"), 1);
    cr_assert(bson_iter_init(&it, &reply) &&
              bson_iter_find_descendant(&it, "lastErrorObject.updatedExisting", &it) &&
              bson_iter_as_bool(&it));
    cr_assert_eq(get_int(&reply, "value._id"), 50);
    cr_assert_not(has_field(&reply, "value.claimed"), "old document expected");
    bson_destroy(&reply);

    bson_destroy(update);
    bson_destroy(query);
    bson_destroy(extra);
    mongoc_collection_destroy(coll);
}

Test(mongo_standin, drop_missing_collection)
{
    mongoc_collection_t *coll = collection("never_created");
    bson_error_t error;

    bool ok = mongoc_collection_drop(coll, &error);
    if (ok) {
        /* MongoDB >= 7.0 no longer reports this; the stand-in imitates 5.0. */
        cr_assert_not(is_standin(), "stand-in accepted a drop of a missing collection");
    } else {
        cr_assert_eq(error.domain, MONGOC_ERROR_SERVER, "domain %u: %s", error.domain, error.message);
        cr_assert_eq(error.code, 26, "code %u: %s", error.code, error.message);
    }
    mongoc_collection_destroy(coll);
}

/* Run a find and return whether it failed; *count gets the number of results. */
static bool find_fails(mongoc_collection_t *coll, const char *filter, int *count, bson_error_t *error)
{
    bson_t *f = json(filter);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, f, NULL, NULL);
    const bson_t *doc;

    *count = 0;
    while (mongoc_cursor_next(cursor, &doc))
        (*count)++;
    bool failed = mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    bson_destroy(f);
    return failed;
}

Test(mongo_standin, unsupported_operator_is_an_error)
{
    mongoc_collection_t *coll = collection("strict");
    bson_error_t error;
    int count;

    insert_numbered(coll, 5);
    bool standin = is_standin();

    /* An operator no server knows is an error everywhere. */
    cr_assert(find_fails(coll, "{'n': {'$bogusOp': 1}}", &count, &error), "$bogusOp gave %d results", count);
    cr_assert_eq(error.domain, MONGOC_ERROR_SERVER);
    cr_assert(error.code == 2 || error.code == 9, "code %u: %s", error.code, error.message);
    cr_assert(strstr(error.message, "$bogusOp"), "errmsg does not name the operator: %s", error.message);

    /* $regex: the stand-in must refuse it; MongoDB must answer correctly. */
    bool failed = find_fails(coll, "{'s': {'$regex': '^a'}, 'n': {'$gte': 0}}", &count, &error);
    if (standin || failed) {
        cr_assert(failed, "stand-in silently answered $regex (%d results)", count);
        cr_assert(error.code == 2 || error.code == 9, "code %u: %s", error.code, error.message);
        cr_assert(strstr(error.message, "$regex"), "errmsg does not name $regex: %s", error.message);
    } else {
        cr_assert_eq(count, 0, "no document has a field s");
    }

    /* An unsupported update operator in a write is an error too. */
    bson_t *q = json("{'_id': 1}");
    bson_t *u = json("{'$bogusUpdate': {'n': 1}}");
    cr_assert_not(mongoc_collection_update_one(coll, q, u, NULL, NULL, &error),
                  "unknown update operator accepted");
    cr_assert(strstr(error.message, "$bogusUpdate"), "errmsg: %s", error.message);
    bson_destroy(u);
    bson_destroy(q);

    /* The same client keeps working afterwards. */
    int got[8];
    cr_assert_eq(find_ns(coll, "{'n': {'$gt': 2}}", "{'sort': {'n': 1}}", got, 8), 2);
    cr_assert(got[0] == 3 && got[1] == 4);
    cr_assert_eq(count_docs(coll, "{}", NULL), 5);
    mongoc_collection_destroy(coll);
}

/* Concurrent claims: 4 threads from one pool claim 200 messages. */
#define MESSAGES 200
#define WORKERS 4

struct worker {
    mongoc_client_pool_t *pool;
    int who;
    int *claims; /* claims[_id] = number of times claimed */
    int *owner;  /* owner[_id] = who claimed it */
    int claimed;
    bool failed;
    bson_error_t error;
};

static void *claim_worker(void *arg)
{
    struct worker *w = arg;
    mongoc_client_t *c = mongoc_client_pool_pop(w->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(c, dbname, "bus");
    int id;

    while ((id = claim_one(coll, w->who, &w->error, &w->failed)) >= 0) {
        /* A claim that does not stick would loop forever: bound it. */
        if (id >= MESSAGES || w->claimed >= MESSAGES) {
            w->failed = true;
            snprintf(w->error.message, sizeof w->error.message,
                     "claimed _id %d after %d claims", id, w->claimed);
            break;
        }
        __atomic_fetch_add(&w->claims[id], 1, __ATOMIC_SEQ_CST);
        __atomic_store_n(&w->owner[id], w->who, __ATOMIC_SEQ_CST);
        w->claimed++;
    }
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(w->pool, c);
    return NULL;
}

Test(mongo_standin, concurrent_claims_from_pool)
{
    mongoc_collection_t *coll = collection("bus");
    bson_error_t error;
    static int claims[MESSAGES], owner[MESSAGES];
    struct worker workers[WORKERS];
    pthread_t threads[WORKERS];

    /* Half the messages have claimed: null, half have no claimed field. */
    for (int i = 0; i < MESSAGES; i++) {
        bson_t *doc = bson_new();
        BSON_APPEND_INT32(doc, "_id", i);
        BSON_APPEND_INT32(doc, "n", i);
        if (i % 2)
            BSON_APPEND_NULL(doc, "claimed");
        cr_assert(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "%s", error.message);
        bson_destroy(doc);
    }

    mongoc_uri_t *uri = mongoc_uri_new(uri_string);
    cr_assert_not_null(uri);
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    cr_assert_not_null(pool);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_max_size(pool, WORKERS);

    for (int t = 0; t < WORKERS; t++) {
        workers[t] = (struct worker){.pool = pool, .who = t + 1, .claims = claims, .owner = owner};
        cr_assert_eq(pthread_create(&threads[t], NULL, claim_worker, &workers[t]), 0);
    }
    int total = 0;
    for (int t = 0; t < WORKERS; t++) {
        pthread_join(threads[t], NULL);
        cr_assert_not(workers[t].failed, "worker %d: %s", t + 1, workers[t].error.message);
        total += workers[t].claimed;
    }
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);

    cr_assert_eq(total, MESSAGES, "claimed %d of %d", total, MESSAGES);
    for (int i = 0; i < MESSAGES; i++)
        cr_assert_eq(claims[i], 1, "message %d claimed %d times", i, claims[i]);

    /* The store agrees: every message is claimed, by the thread that saw it. */
    cr_assert_eq(count_docs(coll, "{'claimed': null}", NULL), 0);
    bson_t *all = json("{}");
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, all, NULL, NULL);
    const bson_t *doc;
    int seen = 0;
    while (mongoc_cursor_next(cursor, &doc)) {
        int id = (int)get_int(doc, "_id");
        cr_assert_eq(get_int(doc, "claimed"), owner[id], "message %d owner mismatch", id);
        seen++;
    }
    cr_assert_not(mongoc_cursor_error(cursor, &error), "%s", error.message);
    cr_assert_eq(seen, MESSAGES);
    mongoc_cursor_destroy(cursor);
    bson_destroy(all);
    mongoc_collection_destroy(coll);
}
