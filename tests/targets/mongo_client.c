/*
 * tests/targets/mongo_client.c - a fixed libmongoc sequence for the mongodb
 * and pooling spans (tests/e2e/32-mongo-spans.sh).
 *
 * usage: mongo_client COLLECTION   (URI from $LDPROF_TEST_MONGO_URI,
 *                                   database "ldprof_test")
 *
 * Through a mongoc_client_pool_t: pop, insert_one, insert_many,
 * find_with_opts + iterate, update_one ($set), count_documents,
 * find_and_modify_with_opts, delete_many, a find that fails ($where is not
 * supported by the stand-in), aggregate + iterate, a find whose cursor is
 * destroyed after one document, estimated_document_count, a ping command
 * (client_command_simple), create_index_with_opts and create_index (both
 * deprecated in libmongoc 1.23, still used by apps), drop, push.  Prints each result canonically
 * (one line each, no ids, no timings) so that runs with and without the
 * preload can be compared byte for byte.  Exit status 0 when every step
 * behaved as expected, 1 otherwise.
 */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t reply_int(const bson_t *reply, const char *key)
{
    bson_iter_t it;

    if (bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return -1;
}

static void print_err(const char *what, const bson_error_t *e)
{
    printf("%s: error domain=%u code=%u\n", what, e->domain, e->code);
}

int main(int argc, char **argv)
{
    const char *uri_s = getenv("LDPROF_TEST_MONGO_URI");
    const char *collname = argc > 1 ? argv[1] : "mongo_client";
    bson_error_t e;
    int bad = 0;

    if (uri_s == NULL) {
        fprintf(stderr, "mongo_client: LDPROF_TEST_MONGO_URI is not set\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    mongoc_init();
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_s, &e);
    if (uri == NULL) {
        fprintf(stderr, "mongo_client: bad URI: %s\n", e.message);
        return 2;
    }
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "ldprof_test", collname);
    bson_t reply;

    /* insert_one */
    bson_t *d1 = BCON_NEW("name", BCON_UTF8("a"), "n", BCON_INT32(1));
    if (mongoc_collection_insert_one(coll, d1, NULL, &reply, &e))
        printf("insert_one: insertedCount=%lld\n", (long long)reply_int(&reply, "insertedCount"));
    else
        print_err("insert_one", &e), bad = 1;
    bson_destroy(&reply);
    bson_destroy(d1);

    /* insert_many */
    bson_t *d2 = BCON_NEW("name", BCON_UTF8("b"), "n", BCON_INT32(2));
    bson_t *d3 = BCON_NEW("name", BCON_UTF8("c"), "n", BCON_INT32(3));
    const bson_t *docs[] = {d2, d3};
    if (mongoc_collection_insert_many(coll, docs, 2, NULL, &reply, &e))
        printf("insert_many: insertedCount=%lld\n", (long long)reply_int(&reply, "insertedCount"));
    else
        print_err("insert_many", &e), bad = 1;
    bson_destroy(&reply);
    bson_destroy(d2);
    bson_destroy(d3);

    /* find_with_opts + iterate */
    bson_t *f = BCON_NEW("n", "{", "$gte", BCON_INT32(2), "}");
    bson_t *fo = BCON_NEW("sort", "{", "n", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, f, fo, NULL);
    const bson_t *doc;
    printf("find:");
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it))
            printf(" %s", bson_iter_utf8(&it, NULL));
    }
    printf("\n");
    if (mongoc_cursor_error(cur, &e))
        print_err("find", &e), bad = 1;
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    bson_destroy(fo);

    /* update_one with $set */
    bson_t *us = BCON_NEW("name", BCON_UTF8("a"));
    bson_t *uu = BCON_NEW("$set", "{", "n", BCON_INT32(10), "}");
    if (mongoc_collection_update_one(coll, us, uu, NULL, &reply, &e))
        printf("update_one: matchedCount=%lld modifiedCount=%lld\n",
               (long long)reply_int(&reply, "matchedCount"),
               (long long)reply_int(&reply, "modifiedCount"));
    else
        print_err("update_one", &e), bad = 1;
    bson_destroy(&reply);
    bson_destroy(us);
    bson_destroy(uu);

    /* count_documents */
    bson_t *cf = BCON_NEW("n", "{", "$gt", BCON_INT32(1), "}");
    int64_t n = mongoc_collection_count_documents(coll, cf, NULL, NULL, NULL, &e);
    if (n >= 0)
        printf("count_documents: %lld\n", (long long)n);
    else
        print_err("count_documents", &e), bad = 1;
    bson_destroy(cf);

    /* find_and_modify_with_opts */
    bson_t *q = BCON_NEW("name", BCON_UTF8("b"));
    bson_t *upd = BCON_NEW("$set", "{", "claimed", BCON_BOOL(true), "}");
    mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_update(fam, upd);
    mongoc_find_and_modify_opts_set_flags(fam, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    if (mongoc_collection_find_and_modify_with_opts(coll, q, fam, &reply, &e)) {
        bson_iter_t it;
        int claimed = bson_iter_init(&it, &reply) &&
                      bson_iter_find_descendant(&it, "value.claimed", &it) &&
                      BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
        printf("find_and_modify: claimed=%d\n", claimed);
    } else {
        print_err("find_and_modify", &e), bad = 1;
    }
    bson_destroy(&reply);
    mongoc_find_and_modify_opts_destroy(fam);
    bson_destroy(q);
    bson_destroy(upd);

    /* delete_many */
    bson_t *ds = BCON_NEW("n", "{", "$lt", BCON_INT32(5), "}");
    if (mongoc_collection_delete_many(coll, ds, NULL, &reply, &e))
        printf("delete_many: deletedCount=%lld\n", (long long)reply_int(&reply, "deletedCount"));
    else
        print_err("delete_many", &e), bad = 1;
    bson_destroy(&reply);
    bson_destroy(ds);

    /* an error: $where is not supported (stand-in: BadValue) */
    bson_t *wf = BCON_NEW("$where", BCON_UTF8("this.n > 1"));
    cur = mongoc_collection_find_with_opts(coll, wf, NULL, NULL);
    int got = 0;
    while (mongoc_cursor_next(cur, &doc))
        got++;
    if (mongoc_cursor_error(cur, &e))
        printf("find $where: docs=%d error domain=%u code=%u\n", got, e.domain, e.code);
    else
        printf("find $where: docs=%d no error\n", got), bad = 1;
    mongoc_cursor_destroy(cur);
    bson_destroy(wf);

    /* aggregate + iterate */
    bson_t *pl = BCON_NEW("pipeline", "[", "{", "$match", "{", "n", "{", "$gte", BCON_INT32(0), "}",
                          "}", "}", "{", "$count", BCON_UTF8("k"), "}", "]");
    cur = mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, pl, NULL, NULL);
    printf("aggregate:");
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "k") && BSON_ITER_HOLDS_NUMBER(&it))
            printf(" k=%lld", (long long)bson_iter_as_int64(&it));
    }
    printf("\n");
    if (mongoc_cursor_error(cur, &e))
        print_err("aggregate", &e), bad = 1;
    mongoc_cursor_destroy(cur);
    bson_destroy(pl);

    /* a cursor destroyed before it is exhausted */
    bson_t *all = bson_new();
    cur = mongoc_collection_find_with_opts(coll, all, NULL, NULL);
    printf("find first: %d\n", mongoc_cursor_next(cur, &doc) ? 1 : 0);
    mongoc_cursor_destroy(cur);
    bson_destroy(all);

    /* estimated_document_count */
    n = mongoc_collection_estimated_document_count(coll, NULL, NULL, NULL, &e);
    if (n >= 0)
        printf("estimated_document_count: %lld\n", (long long)n);
    else
        print_err("estimated_document_count", &e), bad = 1;

    /* a command */
    bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
    if (mongoc_client_command_simple(client, "ldprof_test", ping, NULL, NULL, &e))
        printf("ping: ok\n");
    else
        print_err("ping", &e), bad = 1;
    bson_destroy(ping);

    /* create_index_with_opts, create_index (deprecated: apps still call them) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    bson_t *ik = BCON_NEW("n", BCON_INT32(1), "name", BCON_INT32(-1));
    bson_t ireply;
    if (mongoc_collection_create_index_with_opts(coll, ik, NULL, NULL, &ireply, &e))
        printf("create_index_with_opts: ok\n");
    else
        print_err("create_index_with_opts", &e), bad = 1;
    bson_destroy(&ireply);
    bson_destroy(ik);
    ik = BCON_NEW("name", BCON_INT32(1));
    if (mongoc_collection_create_index(coll, ik, NULL, &e))
        printf("create_index: ok\n");
    else
        print_err("create_index", &e), bad = 1;
    bson_destroy(ik);
#pragma GCC diagnostic pop

    /* drop */
    if (mongoc_collection_drop(coll, &e))
        printf("drop: ok\n");
    else
        print_err("drop", &e), bad = 1;

    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(pool, client);
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    printf("done bad=%d\n", bad);
    return bad;
}
