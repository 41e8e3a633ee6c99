/*
 * test_store_mongo.c - the MongoDB message store (tests/zaqard/store_mongo.c)
 * against the server named by LDPROF_TEST_MONGO_URI (the stand-in or a real
 * mongod; tests/env/with-services.sh exports it).
 *
 * Criterion runs every test in its own process, so each test uses its own
 * database "zq_test_<pid>" (the URI's path replaced), created through the
 * store and dropped (collection by collection) in the fixture's fini.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <limits.h>
#include <mongoc/mongoc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

static char g_base[1024]; /* LDPROF_TEST_MONGO_URI */
static char g_uri[1200];  /* with the per-test database */
static char g_db[64];
static zq_store *S;
static zq_err E;

#define OK(expr)                                                              \
    do {                                                                      \
        memset(&E, 0, sizeof E);                                              \
        int rc_ = (expr);                                                     \
        cr_assert_eq(rc_, ZQ_OK, "%s -> %d (%s)", #expr, rc_, E.msg);         \
    } while (0)
#define RC(want, expr)                                                        \
    do {                                                                      \
        memset(&E, 0, sizeof E);                                              \
        int rc_ = (expr);                                                     \
        cr_assert_eq(rc_, (want), "%s -> %d, want %d (%s)", #expr, rc_,       \
                     (want), E.msg);                                          \
    } while (0)

/* base URI with its database (path) replaced by db ("" = no path) */
static void uri_with_db(char *out, size_t cap, const char *base, const char *db)
{
    const char *hosts = strstr(base, "://");
    cr_assert(hosts, "bad LDPROF_TEST_MONGO_URI '%s'", base);
    hosts += 3;
    size_t hl = strcspn(hosts, "/?");
    const char *opts = strchr(hosts + hl, '?');
    snprintf(out, cap, "%.*s/%s%s%s", (int)(hosts - base + hl), base, db,
             opts ? "?" : "", opts ? opts + 1 : "");
}

static void setup(void)
{
    const char *base = getenv("LDPROF_TEST_MONGO_URI");
    cr_assert(base && *base,
              "LDPROF_TEST_MONGO_URI is not set: run the tests through "
              "tests/env/with-services.sh (it starts the MongoDB stand-in)");
    snprintf(g_base, sizeof g_base, "%s", base);
    snprintf(g_db, sizeof g_db, "zq_test_%ld", (long)getpid());
    uri_with_db(g_uri, sizeof g_uri, g_base, g_db);
    S = zq_store_mongo_new("mongo1", g_uri, &E);
    cr_assert(S, "zq_store_mongo_new(%s): %s", g_uri, E.msg);
}

static mongoc_client_t *raw_client(const char *uri)
{
    mongoc_init(); /* idempotent; the store ran it already */
    bson_error_t e;
    mongoc_uri_t *u = mongoc_uri_new_with_error(uri, &e);
    cr_assert(u, "%s", e.message);
    mongoc_client_t *c = mongoc_client_new_from_uri(u);
    mongoc_uri_destroy(u);
    cr_assert(c);
    mongoc_client_set_error_api(c, 2);
    return c;
}

static void drop_colls(const char *uri, const char *db)
{
    mongoc_client_t *c = raw_client(uri);
    static const char *const colls[] = {"messages", "claims", "counters"};
    for (int i = 0; i < 3; i++) {
        mongoc_collection_t *coll = mongoc_client_get_collection(c, db, colls[i]);
        bson_error_t e;
        (void)mongoc_collection_drop(coll, &e); /* absent: fine */
        mongoc_collection_destroy(coll);
    }
    mongoc_client_destroy(c);
}

static void teardown(void)
{
    if (S)
        S->ops->destroy(S);
    S = NULL;
    if (g_db[0])
        drop_colls(g_uri, g_db);
}

TestSuite(store_mongo, .init = setup, .fini = teardown, .timeout = 120);

/* documents in db.coll matching the JSON filter, straight from the server */
static long long raw_count(const char *uri, const char *db, const char *coll_name,
                           const char *filter_json)
{
    mongoc_client_t *c = raw_client(uri);
    mongoc_collection_t *coll = mongoc_client_get_collection(c, db, coll_name);
    bson_error_t e;
    bson_t *f = bson_new_from_json((const uint8_t *)filter_json, -1, &e);
    cr_assert(f, "%s: %s", filter_json, e.message);
    int64_t n = mongoc_collection_count_documents(coll, f, NULL, NULL, NULL, &e);
    cr_assert(n >= 0, "count: %s", e.message);
    bson_destroy(f);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(c);
    return n;
}

/* ------------------------------------------------------------- helpers */

#define CLIENT_A "0b1c6c5e-8e0b-4e53-9d0a-6f4a6f0c0a01"
#define CLIENT_B "0b1c6c5e-8e0b-4e53-9d0a-6f4a6f0c0b02"

/* Post n messages {"i": first+i} one batch at a time (at most 20 each). */
static void post_n(const char *p, const char *q, const char *client, int n, int first, int ttl,
                   char (*ids)[ZQ_ID_LEN])
{
    for (int done = 0; done < n;) {
        int batch = n - done > 20 ? 20 : n - done;
        zq_new_msg m[20];
        for (int i = 0; i < batch; i++) {
            m[i].body = json_pack("{s:i}", "i", first + done + i);
            m[i].ttl = ttl;
        }
        OK(S->ops->post(S, p, q, client, m, (size_t)batch, ids + done, &E));
        for (int i = 0; i < batch; i++)
            json_decref(m[i].body);
        done += batch;
    }
}

static int body_i(const zq_message *m)
{
    return (int)json_integer_value(json_object_get(m->body, "i"));
}

/* Every visible message (echo, include_claimed as given), paged by 7. */
static void list_all(const char *p, const char *q, const char *client, int echo, int include_claimed,
                     zq_msg_vec *out)
{
    long long marker = 0;
    for (;;) {
        zq_list_opts o = {.limit = 7, .marker = marker, .echo = echo, .include_claimed = include_claimed};
        size_t before = out->n;
        long long next = -1;
        OK(S->ops->list(S, p, q, client, &o, out, &next, &E));
        if (out->n == before) {
            cr_assert_eq(next, marker);
            return;
        }
        cr_assert_eq(next, out->v[out->n - 1].marker);
        marker = next;
    }
}

static int id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= ZQ_ID_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ------------------------------------------------------------- basics */

Test(store_mongo, kind_and_name)
{
    cr_assert_str_eq(S->ops->kind, "mongodb");
    cr_assert_str_eq(S->name, "mongo1");
    zq_store *s2 = zq_store_new("via-scheme", g_uri, &E);
    cr_assert(s2, "%s", E.msg);
    cr_assert_eq(s2->ops, S->ops);
    s2->ops->destroy(s2);
}

Test(store_mongo, bad_uri)
{
    static const char *const bad[] = {"mongodb://", "mongodb://host:notaport/db", "mongo://x/"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        zq_err err = {{0}};
        zq_store *s = zq_store_mongo_new("bad", bad[i], &err);
        cr_assert_null(s, "%s accepted", bad[i]);
        cr_assert(err.msg[0], "%s: no error message", bad[i]);
    }
}

Test(store_mongo, invalid_arguments)
{
    char ids[1][ZQ_ID_LEN], cid[ZQ_ID_LEN], longp[300], longc[200];
    memset(longp, 'a', 257);
    longp[257] = '\0';
    memset(longc, 'c', ZQ_CLIENT_LEN);
    longc[ZQ_CLIENT_LEN] = '\0';
    zq_new_msg m = {json_true(), 60}, nobody = {NULL, 60};
    zq_msg_vec v = {0};
    zq_message msg;
    zq_stats st;
    long long next;
    zq_list_opts lo = {.limit = 0, .echo = 1};
    RC(ZQ_EINVAL, S->ops->post(S, "p", "", CLIENT_A, &m, 1, ids, &E));
    RC(ZQ_EINVAL, S->ops->post(S, "p", "a/b", CLIENT_A, &m, 1, ids, &E));
    RC(ZQ_EINVAL, S->ops->post(S, "a/b", "q", CLIENT_A, &m, 1, ids, &E));
    RC(ZQ_EINVAL, S->ops->post(S, longp, "q", CLIENT_A, &m, 1, ids, &E));
    RC(ZQ_EINVAL, S->ops->post(S, "p", "q", longc, &m, 1, ids, &E));
    RC(ZQ_EINVAL, S->ops->post(S, "p", "q", CLIENT_A, &nobody, 1, ids, &E));
    RC(ZQ_EINVAL, S->ops->list(S, "p", "q", CLIENT_A, &lo, &v, &next, &E));
    RC(ZQ_EINVAL, S->ops->pop(S, "p", "q", 0, &v, &E));
    RC(ZQ_EINVAL, S->ops->claim(S, "p", "q", CLIENT_A, 0, 60, 5, cid, &v, &E));
    RC(ZQ_EINVAL, S->ops->claim(S, "p", "q", CLIENT_A, 60, -1, 5, cid, &v, &E));
    RC(ZQ_EINVAL, S->ops->claim(S, "p", "q", CLIENT_A, 60, 60, 0, cid, &v, &E));
    RC(ZQ_EINVAL, S->ops->claim_update(S, "p", "q", "x", 0, 60, &E));
    msg.body = json_true();
    RC(ZQ_EINVAL, S->ops->get(S, "p", "q q", "x", &msg, &E));
    cr_assert_null(msg.body, "a failed get leaves a clearable message");
    RC(ZQ_EINVAL, S->ops->stats(S, "p", "", &st, &E));
    RC(ZQ_EINVAL, S->ops->purge(S, "p", "q\n", &E));
    cr_assert_eq(v.n, 0);
    OK(S->ops->post(S, NULL, "q", NULL, &m, 1, ids, &E)); /* NULL project/client: "" */
    list_all("", "q", CLIENT_A, 0, 0, &v);
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].client_id, "");
    zq_msg_vec_free(&v);
}

Test(store_mongo, ping)
{
    OK(S->ops->ping(S, &E));
}

Test(store_mongo, post_list_order_and_markers)
{
    char ids[5][ZQ_ID_LEN];
    long long t0 = zq_now_ms();
    post_n("p1", "q1", CLIENT_A, 5, 0, 300, ids);
    long long t1 = zq_now_ms();
    for (int i = 0; i < 5; i++) {
        cr_assert(id_ok(ids[i]), "id '%s'", ids[i]);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(ids[i], ids[j]);
    }
    zq_msg_vec v = {0};
    zq_list_opts o = {.limit = 10, .marker = 0, .echo = 1, .include_claimed = 0};
    long long next = -1;
    OK(S->ops->list(S, "p1", "q1", CLIENT_A, &o, &v, &next, &E));
    cr_assert_eq(v.n, 5);
    for (size_t i = 0; i < 5; i++) {
        zq_message *m = &v.v[i];
        cr_assert_str_eq(m->id, ids[i]);
        cr_assert_eq(body_i(m), (int)i);
        cr_assert_eq(m->ttl, 300);
        cr_assert(m->created_ms >= t0 - 5 && m->created_ms <= t1 + 5, "created %lld", m->created_ms);
        cr_assert_str_eq(m->client_id, CLIENT_A);
        cr_assert_str_eq(m->claim_id, "");
        cr_assert_eq(m->claim_expires_ms, 0);
        if (i > 0)
            cr_assert_gt(m->marker, v.v[i - 1].marker);
    }
    cr_assert_eq(next, v.v[4].marker);

    /* a second post continues the sequence */
    char more[2][ZQ_ID_LEN];
    post_n("p1", "q1", CLIENT_A, 2, 5, 300, more);
    zq_msg_vec w = {0};
    o.marker = next;
    long long next2 = -1;
    OK(S->ops->list(S, "p1", "q1", CLIENT_A, &o, &w, &next2, &E));
    cr_assert_eq(w.n, 2);
    cr_assert_str_eq(w.v[0].id, more[0]);
    cr_assert_str_eq(w.v[1].id, more[1]);
    cr_assert_gt(w.v[0].marker, next);
    cr_assert_eq(next2, w.v[1].marker);

    /* past the end: nothing, marker unchanged */
    zq_msg_vec x = {0};
    o.marker = next2;
    long long next3 = -1;
    OK(S->ops->list(S, "p1", "q1", CLIENT_A, &o, &x, &next3, &E));
    cr_assert_eq(x.n, 0);
    cr_assert_eq(next3, next2);

    /* an unknown queue is just empty */
    o.marker = 0;
    OK(S->ops->list(S, "p1", "nope", CLIENT_A, &o, &x, &next3, &E));
    cr_assert_eq(x.n, 0);
    cr_assert_eq(next3, 0);

    /* post of nothing */
    OK(S->ops->post(S, "p1", "q1", CLIENT_A, NULL, 0, NULL, &E));
    zq_msg_vec_free(&v);
    zq_msg_vec_free(&w);
    zq_msg_vec_free(&x);
}

Test(store_mongo, bodies_round_trip)
{
    json_error_t je;
    const char *texts[] = {
        "{\"a\": 1, \"b\": [1, 2.5, \"x\", null, true, false, {\"c\": {}}, []], \"nested\": {\"d\": {\"e\": [[1], [2]]}}}",
        "{\"$oid\": \"5f1d7a3e2b1c4a0012345678\", \"$numberLong\": \"12\", \"$date\": 1, \"x.y\": \"dots\"}",
        "\"just a string\"",
        "42",
        "-9223372036854775807",
        "9223372036854775807",
        "0.1",
        "1.0",
        "1e300",
        "true",
        "false",
        "null",
        "[]",
        "{}",
        "\"h\\u00e9llo \\u2603 \\ud83d\\ude00\"",
        "[{\"k\": \"v\"}, 3, [4, [5, [6]]]]",
    };
    size_t n = sizeof texts / sizeof *texts;
    zq_new_msg m[20];
    json_t *expect[20];
    for (size_t i = 0; i < n; i++) {
        expect[i] = json_loads(texts[i], JSON_DECODE_ANY, &je);
        cr_assert(expect[i], "%s: %s", texts[i], je.text);
        m[i].body = expect[i];
        m[i].ttl = 300;
    }
    /* a string with an embedded NUL (json_stringn allows it) */
    expect[n] = json_stringn("a\0b", 3);
    m[n].body = expect[n];
    m[n].ttl = 300;
    n++;
    char ids[20][ZQ_ID_LEN];
    OK(S->ops->post(S, "p", "bodies", CLIENT_A, m, n, ids, &E));
    zq_msg_vec v = {0};
    zq_list_opts o = {.limit = 20, .echo = 1};
    long long next;
    OK(S->ops->list(S, "p", "bodies", CLIENT_A, &o, &v, &next, &E));
    cr_assert_eq(v.n, n);
    for (size_t i = 0; i < n; i++) {
        char *want = json_dumps(expect[i], JSON_ENCODE_ANY | JSON_COMPACT);
        char *got = json_dumps(v.v[i].body, JSON_ENCODE_ANY | JSON_COMPACT);
        cr_assert(json_equal(v.v[i].body, expect[i]), "body %zu: got %s want %s", i, got, want);
        cr_assert_eq(json_typeof(v.v[i].body), json_typeof(expect[i]), "type of body %zu (%s)", i, want);
        free(want);
        free(got);
        /* and through get */
        zq_message one;
        OK(S->ops->get(S, "p", "bodies", ids[i], &one, &E));
        cr_assert(json_equal(one.body, expect[i]), "get body %zu", i);
        zq_message_clear(&one);
    }
    for (size_t i = 0; i < n; i++)
        json_decref(expect[i]);
    zq_msg_vec_free(&v);
}

static json_t *nested(int levels)
{
    json_t *v = json_integer(levels);
    for (int i = 0; i < levels; i++)
        v = (i % 2) ? json_pack("[o]", v) : json_pack("{s:o}", "n", v);
    return v;
}

Test(store_mongo, deep_bodies)
{
    /* 80 levels round-trip; 95 cannot be stored in MongoDB (limit 100 for
     * the whole document): refused up front, nothing stored */
    json_t *ok = nested(80), *deep = nested(95);
    zq_new_msg m = {ok, 300};
    char id[1][ZQ_ID_LEN];
    OK(S->ops->post(S, "p", "deep", CLIENT_A, &m, 1, id, &E));
    zq_message got;
    OK(S->ops->get(S, "p", "deep", id[0], &got, &E));
    cr_assert(json_equal(got.body, ok));
    zq_message_clear(&got);
    zq_new_msg two[2] = {{ok, 300}, {deep, 300}};
    char ids[2][ZQ_ID_LEN];
    RC(ZQ_EINVAL, S->ops->post(S, "p", "deep", CLIENT_A, two, 2, ids, &E));
    cr_assert(E.msg[0]);
    zq_msg_vec v = {0};
    list_all("p", "deep", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 1, "a refused batch stores nothing");
    zq_msg_vec_free(&v);
    json_decref(ok);
    json_decref(deep);
}

Test(store_mongo, list_paging)
{
    char ids[45][ZQ_ID_LEN];
    post_n("", "paged", CLIENT_A, 45, 0, 300, ids);
    zq_msg_vec v = {0};
    long long marker = 0;
    int pages = 0;
    for (;;) {
        zq_list_opts o = {.limit = 10, .marker = marker, .echo = 1};
        size_t before = v.n;
        long long next;
        OK(S->ops->list(S, "", "paged", CLIENT_A, &o, &v, &next, &E));
        cr_assert_leq(v.n - before, 10);
        if (v.n == before)
            break;
        pages++;
        marker = next;
    }
    cr_assert_eq(pages, 5);
    cr_assert_eq(v.n, 45);
    for (size_t i = 0; i < 45; i++) {
        cr_assert_str_eq(v.v[i].id, ids[i]);
        cr_assert_eq(body_i(&v.v[i]), (int)i);
    }
    zq_msg_vec_free(&v);
}

Test(store_mongo, echo)
{
    char a[2][ZQ_ID_LEN], b[2][ZQ_ID_LEN];
    post_n("p", "e", CLIENT_A, 2, 0, 300, a);
    post_n("p", "e", CLIENT_B, 2, 2, 300, b);
    zq_msg_vec v = {0};
    list_all("p", "e", CLIENT_A, 0, 0, &v);
    cr_assert_eq(v.n, 2);
    cr_assert_str_eq(v.v[0].id, b[0]);
    cr_assert_str_eq(v.v[1].id, b[1]);
    zq_msg_vec_free(&v);
    list_all("p", "e", CLIENT_A, 1, 0, &v);
    cr_assert_eq(v.n, 4);
    cr_assert_str_eq(v.v[0].id, a[0]);
    cr_assert_str_eq(v.v[3].id, b[1]);
    cr_assert_str_eq(v.v[0].client_id, CLIENT_A);
    cr_assert_str_eq(v.v[3].client_id, CLIENT_B);
    zq_msg_vec_free(&v);
}

Test(store_mongo, include_claimed)
{
    char ids[4][ZQ_ID_LEN];
    post_n("p", "ic", CLIENT_A, 4, 0, 300, ids);
    char cid[ZQ_ID_LEN];
    zq_msg_vec c = {0};
    OK(S->ops->claim(S, "p", "ic", CLIENT_B, 120, 60, 2, cid, &c, &E));
    cr_assert_eq(c.n, 2);
    zq_msg_vec v = {0};
    list_all("p", "ic", CLIENT_B, 1, 0, &v);
    cr_assert_eq(v.n, 2);
    cr_assert_str_eq(v.v[0].id, ids[2]);
    cr_assert_str_eq(v.v[1].id, ids[3]);
    zq_msg_vec_free(&v);
    list_all("p", "ic", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_str_eq(v.v[i].id, ids[i]);
        cr_assert_str_eq(v.v[i].claim_id, i < 2 ? cid : "");
        if (i < 2)
            cr_assert_gt(v.v[i].claim_expires_ms, zq_now_ms() + 100000);
    }
    zq_msg_vec_free(&v);
    zq_msg_vec_free(&c);
}

Test(store_mongo, get)
{
    char ids[2][ZQ_ID_LEN];
    post_n("p", "g", CLIENT_A, 2, 0, 300, ids);
    zq_message m;
    OK(S->ops->get(S, "p", "g", ids[1], &m, &E));
    cr_assert_str_eq(m.id, ids[1]);
    cr_assert_eq(body_i(&m), 1);
    cr_assert_eq(m.ttl, 300);
    cr_assert_str_eq(m.client_id, CLIENT_A);
    cr_assert_str_eq(m.claim_id, "");
    zq_message_clear(&m);
    RC(ZQ_ENOENT, S->ops->get(S, "p", "g", "0123456789abcdef0123456789abcdef", &m, &E));
    RC(ZQ_ENOENT, S->ops->get(S, "p", "other", ids[0], &m, &E));
    RC(ZQ_ENOENT, S->ops->get(S, "q", "g", ids[0], &m, &E));
    RC(ZQ_ENOENT, S->ops->get(S, "", "g", ids[0], &m, &E));
}

Test(store_mongo, expiry)
{
    char dead[2][ZQ_ID_LEN], live[1][ZQ_ID_LEN];
    post_n("p", "x", CLIENT_A, 2, 0, 1, dead);
    post_n("p", "x", CLIENT_A, 1, 2, 60, live);
    sleep_ms(1100);
    zq_msg_vec v = {0};
    list_all("p", "x", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].id, live[0]);
    zq_msg_vec_free(&v);
    zq_message m;
    RC(ZQ_ENOENT, S->ops->get(S, "p", "x", dead[0], &m, &E));
    RC(ZQ_ENOENT, S->ops->del(S, "p", "x", dead[1], NULL, &E));
    zq_stats st;
    OK(S->ops->stats(S, "p", "x", &st, &E));
    cr_assert_eq(st.total, 1);
    cr_assert_eq(st.free, 1);
    cr_assert_str_eq(st.oldest.id, live[0]);
    cr_assert_str_eq(st.newest.id, live[0]);
    /* claim and pop skip expired messages too */
    char cid[ZQ_ID_LEN];
    OK(S->ops->claim(S, "p", "x", CLIENT_B, 60, 0, 10, cid, &v, &E));
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].id, live[0]);
    zq_msg_vec_free(&v);
    OK(S->ops->claim_delete(S, "p", "x", cid, &E));
    OK(S->ops->pop(S, "p", "x", 10, &v, &E));
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].id, live[0]);
    zq_msg_vec_free(&v);
    OK(S->ops->pop(S, "p", "x", 10, &v, &E));
    cr_assert_eq(v.n, 0);
}

/* ------------------------------------------------------------- deletes */

Test(store_mongo, del_unclaimed)
{
    char ids[2][ZQ_ID_LEN];
    post_n("p", "d", CLIENT_A, 2, 0, 300, ids);
    OK(S->ops->del(S, "p", "d", ids[0], NULL, &E));
    zq_message m;
    RC(ZQ_ENOENT, S->ops->get(S, "p", "d", ids[0], &m, &E));
    RC(ZQ_ENOENT, S->ops->del(S, "p", "d", ids[0], NULL, &E));
    RC(ZQ_ENOENT, S->ops->del(S, "p", "d", "nosuchid", NULL, &E));
    /* wrong queue / project: absent */
    RC(ZQ_ENOENT, S->ops->del(S, "p", "d2", ids[1], NULL, &E));
    RC(ZQ_ENOENT, S->ops->del(S, "p2", "d", ids[1], NULL, &E));
    OK(S->ops->get(S, "p", "d", ids[1], &m, &E));
    zq_message_clear(&m);
    /* a claim id on an unclaimed message: not that claim's message */
    RC(ZQ_EFORBIDDEN, S->ops->del(S, "p", "d", ids[1], "0123456789abcdef0123456789abcdef", &E));
    OK(S->ops->get(S, "p", "d", ids[1], &m, &E));
    zq_message_clear(&m);
}

Test(store_mongo, del_claimed)
{
    char ids[3][ZQ_ID_LEN];
    post_n("p", "dc", CLIENT_A, 3, 0, 300, ids);
    char c1[ZQ_ID_LEN], c2[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    OK(S->ops->claim(S, "p", "dc", CLIENT_A, 120, 60, 1, c1, &v, &E));
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].id, ids[0]);
    zq_msg_vec_free(&v);
    OK(S->ops->claim(S, "p", "dc", CLIENT_A, 120, 60, 1, c2, &v, &E));
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].id, ids[1]);
    zq_msg_vec_free(&v);
    cr_assert_str_neq(c1, c2);

    RC(ZQ_EFORBIDDEN, S->ops->del(S, "p", "dc", ids[0], NULL, &E));
    RC(ZQ_EFORBIDDEN, S->ops->del(S, "p", "dc", ids[0], c2, &E));
    RC(ZQ_EFORBIDDEN, S->ops->del(S, "p", "dc", ids[0], "0123456789abcdef0123456789abcdef", &E));
    zq_message m;
    OK(S->ops->get(S, "p", "dc", ids[0], &m, &E));
    cr_assert_str_eq(m.claim_id, c1);
    zq_message_clear(&m);
    OK(S->ops->del(S, "p", "dc", ids[0], c1, &E));
    RC(ZQ_ENOENT, S->ops->get(S, "p", "dc", ids[0], &m, &E));
    RC(ZQ_ENOENT, S->ops->del(S, "p", "dc", ids[0], c1, &E));
    /* another message's claim id does not authorise deleting this one */
    RC(ZQ_EFORBIDDEN, S->ops->del(S, "p", "dc", ids[2], c1, &E));
    /* released: deletable without a claim id */
    OK(S->ops->claim_delete(S, "p", "dc", c2, &E));
    OK(S->ops->del(S, "p", "dc", ids[1], NULL, &E));
    OK(S->ops->del(S, "p", "dc", ids[2], NULL, &E));
    OK(S->ops->list(S, "p", "dc", CLIENT_B, &(zq_list_opts){.limit = 10, .echo = 1, .include_claimed = 1}, &v,
                    &(long long){0}, &E));
    cr_assert_eq(v.n, 0);
}

Test(store_mongo, del_many)
{
    char ids[5][ZQ_ID_LEN];
    post_n("p", "dm", CLIENT_A, 5, 0, 300, ids);
    char other[1][ZQ_ID_LEN];
    post_n("p", "dm-other", CLIENT_A, 1, 0, 300, other);
    char cid[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    OK(S->ops->claim(S, "p", "dm", CLIENT_A, 120, 60, 1, cid, &v, &E)); /* ids[0] */
    zq_msg_vec_free(&v);
    const char *del[] = {ids[0], ids[2], ids[4], "0123456789abcdef0123456789abcdef", other[0]};
    OK(S->ops->del_many(S, "p", "dm", del, 5, &E));
    OK(S->ops->del_many(S, "p", "dm", NULL, 0, &E));
    list_all("p", "dm", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 2);
    cr_assert_str_eq(v.v[0].id, ids[1]);
    cr_assert_str_eq(v.v[1].id, ids[3]);
    zq_msg_vec_free(&v);
    zq_message m;
    OK(S->ops->get(S, "p", "dm-other", other[0], &m, &E)); /* other queue untouched */
    zq_message_clear(&m);
}

Test(store_mongo, pop)
{
    char ids[5][ZQ_ID_LEN];
    post_n("p", "pop", CLIENT_A, 5, 0, 300, ids);
    char cid[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    OK(S->ops->claim(S, "p", "pop", CLIENT_A, 120, 60, 2, cid, &v, &E));
    cr_assert_eq(v.n, 2);
    zq_msg_vec_free(&v);
    OK(S->ops->pop(S, "p", "pop", 2, &v, &E));
    cr_assert_eq(v.n, 2);
    cr_assert_str_eq(v.v[0].id, ids[2]);
    cr_assert_str_eq(v.v[1].id, ids[3]);
    cr_assert_eq(body_i(&v.v[0]), 2);
    cr_assert_eq(v.v[0].ttl, 300);
    cr_assert_str_eq(v.v[0].claim_id, "");
    zq_msg_vec_free(&v);
    zq_message m;
    RC(ZQ_ENOENT, S->ops->get(S, "p", "pop", ids[2], &m, &E));
    OK(S->ops->pop(S, "p", "pop", 10, &v, &E));
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].id, ids[4]);
    zq_msg_vec_free(&v);
    OK(S->ops->pop(S, "p", "pop", 10, &v, &E));
    cr_assert_eq(v.n, 0);
    OK(S->ops->pop(S, "p", "never-posted", 10, &v, &E));
    cr_assert_eq(v.n, 0);
    /* the claimed ones are still there */
    list_all("p", "pop", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 2);
    cr_assert_str_eq(v.v[0].id, ids[0]);
    cr_assert_str_eq(v.v[1].id, ids[1]);
    zq_msg_vec_free(&v);
}

/* -------------------------------------------------------------- claims */

Test(store_mongo, claim_basic)
{
    char ids[3][ZQ_ID_LEN];
    post_n("p", "c", CLIENT_A, 3, 0, 3600, ids);
    char c1[ZQ_ID_LEN], c2[ZQ_ID_LEN], c3[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    long long t0 = zq_now_ms();
    OK(S->ops->claim(S, "p", "c", CLIENT_B, 90, 60, 2, c1, &v, &E));
    long long t1 = zq_now_ms();
    cr_assert(id_ok(c1), "claim id '%s'", c1);
    cr_assert_eq(v.n, 2);
    for (int i = 0; i < 2; i++) {
        cr_assert_str_eq(v.v[i].id, ids[i]);
        cr_assert_eq(body_i(&v.v[i]), i);
        cr_assert_str_eq(v.v[i].claim_id, c1);
        cr_assert(v.v[i].claim_expires_ms >= t0 + 90000 && v.v[i].claim_expires_ms <= t1 + 90000);
        cr_assert_eq(v.v[i].ttl, 3600); /* long enough already */
    }
    zq_msg_vec_free(&v);
    OK(S->ops->claim(S, "p", "c", CLIENT_B, 90, 60, 5, c2, &v, &E));
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].id, ids[2]);
    zq_msg_vec_free(&v);
    /* nothing free: a claim id anyway, nothing stored */
    OK(S->ops->claim(S, "p", "c", CLIENT_B, 90, 60, 5, c3, &v, &E));
    cr_assert_eq(v.n, 0);
    cr_assert(id_ok(c3));
    cr_assert_str_neq(c3, c1);
    cr_assert_str_neq(c3, c2);
    zq_claim_info info;
    RC(ZQ_ENOENT, S->ops->claim_get(S, "p", "c", c3, &info, &v, &E));
    cr_assert_eq(v.n, 0);
    cr_assert_eq(raw_count(g_uri, g_db, "claims", "{}"), 2);
    /* empty / unknown queue */
    OK(S->ops->claim(S, "p", "unknown", CLIENT_B, 90, 60, 5, c3, &v, &E));
    cr_assert_eq(v.n, 0);
}

Test(store_mongo, claim_extends_message_ttl)
{
    char shortm[1][ZQ_ID_LEN], longm[1][ZQ_ID_LEN];
    post_n("p", "ext", CLIENT_A, 1, 0, 60, shortm);
    post_n("p", "ext", CLIENT_A, 1, 1, 1000, longm);
    char cid[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    long long t0 = zq_now_ms();
    OK(S->ops->claim(S, "p", "ext", CLIENT_B, 100, 50, 5, cid, &v, &E));
    long long t1 = zq_now_ms();
    cr_assert_eq(v.n, 2);
    cr_assert_str_eq(v.v[0].id, shortm[0]);
    cr_assert_geq(v.v[0].created_ms + v.v[0].ttl * 1000LL, t0 + 150000);
    cr_assert_leq(v.v[0].created_ms + v.v[0].ttl * 1000LL, t1 + 151000);
    cr_assert_eq(v.v[1].ttl, 1000);
    zq_message m;
    OK(S->ops->get(S, "p", "ext", shortm[0], &m, &E));
    cr_assert_eq(m.ttl, v.v[0].ttl, "stored ttl %d, returned %d", m.ttl, v.v[0].ttl);
    cr_assert(m.ttl >= 150 && m.ttl <= 151, "ttl %d", m.ttl);
    zq_message_clear(&m);
    OK(S->ops->get(S, "p", "ext", longm[0], &m, &E));
    cr_assert_eq(m.ttl, 1000);
    zq_message_clear(&m);
    zq_msg_vec_free(&v);

    /* claim_update: claim ttl 300 + grace 200 -> messages live >= 500 s */
    t0 = zq_now_ms();
    OK(S->ops->claim_update(S, "p", "ext", cid, 300, 200, &E));
    t1 = zq_now_ms();
    zq_claim_info info;
    OK(S->ops->claim_get(S, "p", "ext", cid, &info, &v, &E));
    cr_assert_eq(info.ttl, 300);
    cr_assert(info.expires_ms >= t0 + 300000 && info.expires_ms <= t1 + 300000);
    cr_assert_eq(v.n, 2);
    cr_assert(v.v[0].ttl >= 500 && v.v[0].ttl <= 501, "ttl %d", v.v[0].ttl);
    cr_assert_eq(v.v[1].ttl, 1000);
    for (int i = 0; i < 2; i++) {
        cr_assert_str_eq(v.v[i].claim_id, cid);
        cr_assert_eq(v.v[i].claim_expires_ms, info.expires_ms);
    }
    zq_msg_vec_free(&v);
}

Test(store_mongo, claim_get)
{
    char ids[3][ZQ_ID_LEN];
    post_n("p", "cg", CLIENT_A, 3, 0, 600, ids);
    char cid[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    long long t0 = zq_now_ms();
    OK(S->ops->claim(S, "p", "cg", CLIENT_B, 120, 30, 2, cid, &v, &E));
    long long t1 = zq_now_ms();
    zq_msg_vec_free(&v);
    zq_claim_info info;
    OK(S->ops->claim_get(S, "p", "cg", cid, &info, &v, &E));
    cr_assert_eq(info.ttl, 120);
    cr_assert(info.created_ms >= t0 && info.created_ms <= t1);
    cr_assert_eq(info.expires_ms, info.created_ms + 120000);
    cr_assert_eq(v.n, 2);
    cr_assert_str_eq(v.v[0].id, ids[0]);
    cr_assert_str_eq(v.v[1].id, ids[1]);
    cr_assert_eq(body_i(&v.v[1]), 1);
    cr_assert_str_eq(v.v[1].claim_id, cid);
    zq_msg_vec_free(&v);
    /* a deleted message leaves the claim */
    OK(S->ops->del(S, "p", "cg", ids[0], cid, &E));
    OK(S->ops->claim_get(S, "p", "cg", cid, &info, &v, &E));
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].id, ids[1]);
    zq_msg_vec_free(&v);
    RC(ZQ_ENOENT, S->ops->claim_get(S, "p", "cg", "0123456789abcdef0123456789abcdef", &info, &v, &E));
    RC(ZQ_ENOENT, S->ops->claim_get(S, "p", "other", cid, &info, &v, &E));
    RC(ZQ_ENOENT, S->ops->claim_get(S, "other", "cg", cid, &info, &v, &E));
    cr_assert_eq(v.n, 0);
}

Test(store_mongo, claim_update_unknown)
{
    RC(ZQ_ENOENT, S->ops->claim_update(S, "p", "cu", "0123456789abcdef0123456789abcdef", 100, 60, &E));
    char ids[1][ZQ_ID_LEN];
    post_n("p", "cu", CLIENT_A, 1, 0, 600, ids);
    char cid[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    OK(S->ops->claim(S, "p", "cu", CLIENT_B, 120, 30, 2, cid, &v, &E));
    zq_msg_vec_free(&v);
    RC(ZQ_ENOENT, S->ops->claim_update(S, "p", "other", cid, 100, 60, &E));
    RC(ZQ_ENOENT, S->ops->claim_update(S, "x", "cu", cid, 100, 60, &E));
    /* shorter is allowed too: expires = now + ttl */
    long long t0 = zq_now_ms();
    OK(S->ops->claim_update(S, "p", "cu", cid, 60, 0, &E));
    zq_claim_info info;
    OK(S->ops->claim_get(S, "p", "cu", cid, &info, &v, &E));
    cr_assert_eq(info.ttl, 60);
    cr_assert(info.expires_ms >= t0 + 60000 && info.expires_ms < t0 + 70000);
    cr_assert_eq(v.n, 1);
    cr_assert_eq(v.v[0].claim_expires_ms, info.expires_ms);
    cr_assert_eq(v.v[0].ttl, 600);
    zq_msg_vec_free(&v);
}

Test(store_mongo, claim_expiry)
{
    char ids[2][ZQ_ID_LEN];
    post_n("p", "ce", CLIENT_A, 2, 0, 60, ids);
    char cid[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    OK(S->ops->claim(S, "p", "ce", CLIENT_B, 1, 0, 10, cid, &v, &E));
    cr_assert_eq(v.n, 2);
    zq_msg_vec_free(&v);
    list_all("p", "ce", CLIENT_B, 1, 0, &v);
    cr_assert_eq(v.n, 0);
    sleep_ms(1100);
    zq_claim_info info;
    RC(ZQ_ENOENT, S->ops->claim_get(S, "p", "ce", cid, &info, &v, &E));
    RC(ZQ_ENOENT, S->ops->claim_update(S, "p", "ce", cid, 60, 60, &E));
    list_all("p", "ce", CLIENT_B, 1, 0, &v);
    cr_assert_eq(v.n, 2);
    for (int i = 0; i < 2; i++) {
        cr_assert_str_eq(v.v[i].claim_id, "");
        cr_assert_eq(v.v[i].claim_expires_ms, 0);
    }
    zq_msg_vec_free(&v);
    zq_message m;
    OK(S->ops->get(S, "p", "ce", ids[0], &m, &E));
    cr_assert_str_eq(m.claim_id, "");
    zq_message_clear(&m);
    /* an expired claim's id no longer authorises a delete */
    RC(ZQ_EFORBIDDEN, S->ops->del(S, "p", "ce", ids[0], cid, &E));
    OK(S->ops->del(S, "p", "ce", ids[0], NULL, &E));
    /* and the message can be claimed again */
    char c2[ZQ_ID_LEN];
    OK(S->ops->claim(S, "p", "ce", CLIENT_B, 60, 0, 10, c2, &v, &E));
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].id, ids[1]);
    cr_assert_str_eq(v.v[0].claim_id, c2);
    zq_msg_vec_free(&v);
    /* releasing the dead claim must not free the new one */
    OK(S->ops->claim_delete(S, "p", "ce", cid, &E));
    OK(S->ops->claim_get(S, "p", "ce", c2, &info, &v, &E));
    cr_assert_eq(v.n, 1);
    zq_msg_vec_free(&v);
}

Test(store_mongo, claim_delete)
{
    char ids[3][ZQ_ID_LEN];
    post_n("p", "cd", CLIENT_A, 3, 0, 600, ids);
    char cid[ZQ_ID_LEN], other[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    OK(S->ops->claim(S, "p", "cd", CLIENT_B, 120, 30, 2, cid, &v, &E));
    zq_msg_vec_free(&v);
    OK(S->ops->claim(S, "p", "cd", CLIENT_B, 120, 30, 2, other, &v, &E));
    cr_assert_eq(v.n, 1);
    zq_msg_vec_free(&v);
    /* wrong project/queue: nothing released */
    OK(S->ops->claim_delete(S, "p", "other", cid, &E));
    OK(S->ops->claim_delete(S, "x", "cd", cid, &E));
    zq_claim_info info;
    OK(S->ops->claim_get(S, "p", "cd", cid, &info, &v, &E));
    cr_assert_eq(v.n, 2);
    zq_msg_vec_free(&v);

    OK(S->ops->claim_delete(S, "p", "cd", cid, &E));
    RC(ZQ_ENOENT, S->ops->claim_get(S, "p", "cd", cid, &info, &v, &E));
    list_all("p", "cd", CLIENT_B, 1, 0, &v);
    cr_assert_eq(v.n, 2);
    cr_assert_str_eq(v.v[0].id, ids[0]);
    cr_assert_str_eq(v.v[1].id, ids[1]);
    zq_msg_vec_free(&v);
    OK(S->ops->claim_delete(S, "p", "cd", cid, &E)); /* again */
    OK(S->ops->claim_delete(S, "p", "cd", "0123456789abcdef0123456789abcdef", &E));
    /* the other claim is intact */
    OK(S->ops->claim_get(S, "p", "cd", other, &info, &v, &E));
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].id, ids[2]);
    zq_msg_vec_free(&v);
    /* the released messages can be claimed again */
    OK(S->ops->claim(S, "p", "cd", CLIENT_B, 120, 30, 5, cid, &v, &E));
    cr_assert_eq(v.n, 2);
    zq_msg_vec_free(&v);
}

/* ------------------------------------------------------- stats / purge */

Test(store_mongo, stats)
{
    zq_stats st;
    OK(S->ops->stats(S, "p", "st", &st, &E));
    cr_assert_eq(st.free, 0);
    cr_assert_eq(st.claimed, 0);
    cr_assert_eq(st.total, 0);
    char ids[4][ZQ_ID_LEN];
    long long t0 = zq_now_ms();
    post_n("p", "st", CLIENT_A, 4, 0, 600, ids);
    char cid[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    OK(S->ops->claim(S, "p", "st", CLIENT_B, 120, 30, 1, cid, &v, &E));
    zq_msg_vec_free(&v);
    OK(S->ops->stats(S, "p", "st", &st, &E));
    cr_assert_eq(st.free, 3);
    cr_assert_eq(st.claimed, 1);
    cr_assert_eq(st.total, 4);
    cr_assert_str_eq(st.oldest.id, ids[0]);
    cr_assert_str_eq(st.newest.id, ids[3]);
    cr_assert_lt(st.oldest.marker, st.newest.marker);
    cr_assert_geq(st.oldest.created_ms, t0 - 5);
    cr_assert_geq(st.newest.created_ms, st.oldest.created_ms);
    cr_assert_eq(st.oldest.ttl, 600);
    cr_assert_null(st.oldest.body);
    cr_assert_null(st.newest.body);
    cr_assert_str_eq(st.oldest.claim_id, cid);
    /* another queue / project sees nothing */
    OK(S->ops->stats(S, "p", "st2", &st, &E));
    cr_assert_eq(st.total, 0);
    OK(S->ops->stats(S, "p2", "st", &st, &E));
    cr_assert_eq(st.total, 0);
}

Test(store_mongo, purge)
{
    char ids[3][ZQ_ID_LEN], keep[2][ZQ_ID_LEN];
    post_n("p", "pu", CLIENT_A, 3, 0, 600, ids);
    post_n("p", "pu-keep", CLIENT_A, 2, 0, 600, keep);
    char cid[ZQ_ID_LEN], kcid[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    OK(S->ops->claim(S, "p", "pu", CLIENT_B, 120, 30, 1, cid, &v, &E));
    zq_msg_vec_free(&v);
    OK(S->ops->claim(S, "p", "pu-keep", CLIENT_B, 120, 30, 1, kcid, &v, &E));
    zq_msg_vec_free(&v);
    long long last_marker;
    {
        zq_message m;
        OK(S->ops->get(S, "p", "pu", ids[2], &m, &E));
        last_marker = m.marker;
        zq_message_clear(&m);
    }
    OK(S->ops->purge(S, "p", "pu", &E));
    list_all("p", "pu", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 0);
    zq_claim_info info;
    RC(ZQ_ENOENT, S->ops->claim_get(S, "p", "pu", cid, &info, &v, &E));
    zq_stats st;
    OK(S->ops->stats(S, "p", "pu", &st, &E));
    cr_assert_eq(st.total, 0);
    cr_assert_eq(raw_count(g_uri, g_db, "messages", "{\"q\": \"pu\"}"), 0);
    cr_assert_eq(raw_count(g_uri, g_db, "claims", "{\"q\": \"pu\"}"), 0);
    OK(S->ops->purge(S, "p", "pu", &E)); /* again: fine */
    /* the other queue is intact */
    list_all("p", "pu-keep", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 2);
    zq_msg_vec_free(&v);
    OK(S->ops->claim_get(S, "p", "pu-keep", kcid, &info, &v, &E));
    cr_assert_eq(v.n, 1);
    zq_msg_vec_free(&v);
    /* re-created queue: markers keep increasing (documented choice) */
    char again[1][ZQ_ID_LEN];
    post_n("p", "pu", CLIENT_A, 1, 0, 600, again);
    list_all("p", "pu", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 1);
    cr_assert_gt(v.v[0].marker, last_marker);
    zq_msg_vec_free(&v);
}

Test(store_mongo, project_isolation)
{
    static const char *const projects[] = {"", "p1", "p.2", "P1"};
    char ids[4][2][ZQ_ID_LEN];
    for (int i = 0; i < 4; i++)
        post_n(projects[i], "shared", CLIENT_A, 2, i * 10, 600, ids[i]);
    zq_msg_vec v = {0};
    for (int i = 0; i < 4; i++) {
        list_all(projects[i], "shared", CLIENT_B, 1, 1, &v);
        cr_assert_eq(v.n, 2, "project '%s'", projects[i]);
        cr_assert_str_eq(v.v[0].id, ids[i][0]);
        cr_assert_eq(body_i(&v.v[0]), i * 10);
        cr_assert_eq(body_i(&v.v[1]), i * 10 + 1);
        zq_msg_vec_free(&v);
    }
    /* a claim in p1 takes only p1's messages */
    char cid[ZQ_ID_LEN];
    OK(S->ops->claim(S, "p1", "shared", CLIENT_B, 120, 30, 10, cid, &v, &E));
    cr_assert_eq(v.n, 2);
    cr_assert_str_eq(v.v[0].id, ids[1][0]);
    zq_msg_vec_free(&v);
    zq_stats st;
    OK(S->ops->stats(S, "", "shared", &st, &E));
    cr_assert_eq(st.free, 2);
    cr_assert_eq(st.claimed, 0);
    /* ids do not cross projects */
    zq_message m;
    RC(ZQ_ENOENT, S->ops->get(S, "p.2", "shared", ids[0][0], &m, &E));
    RC(ZQ_ENOENT, S->ops->del(S, "P1", "shared", ids[1][0], NULL, &E));
    const char *dm[] = {ids[3][0], ids[3][1]};
    OK(S->ops->del_many(S, "p1", "shared", dm, 2, &E));
    OK(S->ops->pop(S, "p.2", "shared", 1, &v, &E));
    cr_assert_eq(v.n, 1);
    cr_assert_str_eq(v.v[0].id, ids[2][0]);
    zq_msg_vec_free(&v);
    OK(S->ops->purge(S, "", "shared", &E));
    list_all("P1", "shared", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 2);
    zq_msg_vec_free(&v);
    list_all("p1", "shared", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 2);
    zq_msg_vec_free(&v);
    list_all("", "shared", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 0);
}

/* ------------------------------------------------- URI, GC, failures */

Test(store_mongo, database_from_uri)
{
    char ids[1][ZQ_ID_LEN];
    post_n("p", "dbname", CLIENT_A, 1, 0, 600, ids);
    cr_assert_eq(raw_count(g_uri, g_db, "messages", "{\"q\": \"dbname\"}"), 1);

    /* no path: database "zaqar" (cleaned up precisely afterwards) */
    char nodb[1200], project[64];
    uri_with_db(nodb, sizeof nodb, g_base, "");
    snprintf(project, sizeof project, "zq_test_default_%ld", (long)getpid());
    long long before = raw_count(nodb, "zaqar", "messages", "{}");
    zq_store *d = zq_store_mongo_new("dflt", nodb, &E);
    cr_assert(d, "%s", E.msg);
    zq_new_msg m = {json_true(), 600};
    char id[1][ZQ_ID_LEN];
    memset(&E, 0, sizeof E);
    int rc = d->ops->post(d, project, "q", CLIENT_A, &m, 1, id, &E);
    long long in_zaqar = raw_count(nodb, "zaqar", "messages", "{}") - before;
    OK(d->ops->purge(d, project, "q", &E));
    d->ops->destroy(d);
    /* remove the counter and, if nothing else lives there, the collections */
    mongoc_client_t *c = raw_client(nodb);
    mongoc_collection_t *counters = mongoc_client_get_collection(c, "zaqar", "counters");
    char key[128];
    snprintf(key, sizeof key, "%s/q", project);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(key));
    bson_error_t e;
    cr_assert(mongoc_collection_delete_one(counters, f, NULL, NULL, &e), "%s", e.message);
    bson_destroy(f);
    mongoc_collection_destroy(counters);
    mongoc_client_destroy(c);
    if (raw_count(nodb, "zaqar", "messages", "{}") == 0 && raw_count(nodb, "zaqar", "claims", "{}") == 0 &&
        raw_count(nodb, "zaqar", "counters", "{}") == 0)
        drop_colls(nodb, "zaqar");
    cr_assert_eq(rc, ZQ_OK, "post: %s", E.msg);
    cr_assert_eq(in_zaqar, 1);
}

Test(store_mongo, gc_removes_expired)
{
    char dead[2][ZQ_ID_LEN], live[1][ZQ_ID_LEN];
    post_n("p", "gc", CLIENT_A, 2, 0, 1, dead);
    post_n("p", "gc", CLIENT_A, 1, 2, 600, live);
    /* a claim that expires (in another queue: a claim extends the ttl of
     * the messages it takes) */
    char other[1][ZQ_ID_LEN], cid[ZQ_ID_LEN];
    post_n("p", "gc-claim", CLIENT_A, 1, 0, 600, other);
    zq_msg_vec v = {0};
    OK(S->ops->claim(S, "p", "gc-claim", CLIENT_B, 1, 0, 1, cid, &v, &E));
    cr_assert_eq(v.n, 1);
    zq_msg_vec_free(&v);
    sleep_ms(1100);
    cr_assert_eq(raw_count(g_uri, g_db, "messages", "{\"q\": \"gc\"}"), 3);
    cr_assert_eq(raw_count(g_uri, g_db, "claims", "{}"), 1);
    /* a fresh store collects on its first post */
    zq_store *s2 = zq_store_mongo_new("gc", g_uri, &E);
    cr_assert(s2, "%s", E.msg);
    zq_new_msg m = {json_true(), 600};
    char id[1][ZQ_ID_LEN];
    memset(&E, 0, sizeof E);
    int rc = s2->ops->post(s2, "p", "gc2", CLIENT_A, &m, 1, id, &E);
    s2->ops->destroy(s2);
    cr_assert_eq(rc, ZQ_OK, "%s", E.msg);
    cr_assert_eq(raw_count(g_uri, g_db, "messages", "{\"q\": \"gc\"}"), 1);
    cr_assert_eq(raw_count(g_uri, g_db, "claims", "{}"), 0);
    zq_message one;
    OK(S->ops->get(S, "p", "gc", live[0], &one, &E));
    zq_message_clear(&one);
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* nobody listens there now */
    return ntohs(a.sin_port);
}

static void expect_backend(int rc, const char *what, const zq_err *err)
{
    cr_assert_eq(rc, ZQ_EBACKEND, "%s -> %d (%s)", what, rc, err->msg);
    cr_assert(strstr(err->msg, "down"), "%s: message '%s' lacks the pool name", what, err->msg);
}

Test(store_mongo, unreachable_server)
{
    char uri[256];
    int port = closed_port();
    snprintf(uri, sizeof uri, "mongodb://127.0.0.1:%d/zq?serverSelectionTimeoutMS=300", port);
    zq_err err = {{0}};
    zq_store *d = zq_store_mongo_new("down", uri, &err);
    cr_assert(d, "constructor must not need the server: %s", err.msg);
    const zq_store_ops *o = d->ops;
    zq_new_msg nm = {json_true(), 600};
    char ids[1][ZQ_ID_LEN], cid[ZQ_ID_LEN];
    zq_msg_vec v = {0};
    zq_message m;
    zq_claim_info info;
    zq_stats st;
    long long next;
    const char *one[] = {"x"};
    zq_list_opts lo = {.limit = 10, .echo = 1};
#define DOWN(expr)                                                            \
    do {                                                                      \
        memset(&err, 0, sizeof err);                                          \
        expect_backend((expr), #expr, &err);                                  \
    } while (0)
    DOWN(o->ping(d, &err));
    DOWN(o->post(d, "p", "q", CLIENT_A, &nm, 1, ids, &err));
    DOWN(o->list(d, "p", "q", CLIENT_A, &lo, &v, &next, &err));
    DOWN(o->get(d, "p", "q", "x", &m, &err));
    DOWN(o->del(d, "p", "q", "x", NULL, &err));
    DOWN(o->del_many(d, "p", "q", one, 1, &err));
    DOWN(o->pop(d, "p", "q", 5, &v, &err));
    DOWN(o->claim(d, "p", "q", CLIENT_A, 60, 60, 5, cid, &v, &err));
    DOWN(o->claim_get(d, "p", "q", "x", &info, &v, &err));
    DOWN(o->claim_update(d, "p", "q", "x", 60, 60, &err));
    DOWN(o->claim_delete(d, "p", "q", "x", &err));
    DOWN(o->stats(d, "p", "q", &st, &err));
    DOWN(o->purge(d, "p", "q", &err));
    cr_assert_eq(v.n, 0);
    o->destroy(d);

    /* without serverSelectionTimeoutMS in the URI the store's default keeps
     * a dead server from blocking for long */
    snprintf(uri, sizeof uri, "mongodb://127.0.0.1:%d/", port);
    d = zq_store_mongo_new("down", uri, &err);
    cr_assert(d, "%s", err.msg);
    long long t0 = zq_now_ms();
    DOWN(d->ops->ping(d, &err));
    long long took = zq_now_ms() - t0;
    cr_assert_lt(took, 6000, "ping against a closed port took %lld ms", took);
    d->ops->destroy(d);
#undef DOWN
}

/* -------------------------------------------------------- concurrency */

#define CONC_THREADS 4
#define CONC_MSGS 200

struct claimer {
    pthread_t th;
    char (*got)[ZQ_ID_LEN];
    int n, cap;
    int failed;
    char why[300];
};

static void *claimer_main(void *arg)
{
    struct claimer *c = arg;
    for (;;) {
        char cid[ZQ_ID_LEN];
        zq_msg_vec v = {0};
        zq_err err = {{0}};
        int rc = S->ops->claim(S, "p", "conc", CLIENT_B, 300, 60, 5, cid, &v, &err);
        if (rc != ZQ_OK) {
            c->failed = 1;
            snprintf(c->why, sizeof c->why, "claim -> %d: %s", rc, err.msg);
            break;
        }
        if (v.n == 0)
            break;
        if (v.n > 5) {
            c->failed = 1;
            snprintf(c->why, sizeof c->why, "claim limit 5 returned %zu", v.n);
        }
        for (size_t i = 0; i < v.n; i++) {
            if (strcmp(v.v[i].claim_id, cid) != 0) {
                c->failed = 1;
                snprintf(c->why, sizeof c->why, "message %s has claim '%s', want '%s'", v.v[i].id,
                         v.v[i].claim_id, cid);
            }
            if (c->n < c->cap)
                memcpy(c->got[c->n++], v.v[i].id, ZQ_ID_LEN);
            else
                c->failed = 1;
        }
        zq_msg_vec_free(&v);
    }
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

Test(store_mongo, concurrent_claims_take_each_message_once)
{
    static char ids[CONC_MSGS][ZQ_ID_LEN];
    post_n("p", "conc", CLIENT_A, CONC_MSGS, 0, 600, ids);
    struct claimer cl[CONC_THREADS];
    for (int t = 0; t < CONC_THREADS; t++) {
        memset(&cl[t], 0, sizeof cl[t]);
        cl[t].cap = CONC_MSGS + 1;
        cl[t].got = calloc((size_t)cl[t].cap, ZQ_ID_LEN);
        cr_assert_eq(pthread_create(&cl[t].th, NULL, claimer_main, &cl[t]), 0);
    }
    static char all[CONC_THREADS * (CONC_MSGS + 1)][ZQ_ID_LEN];
    int total = 0, busy = 0;
    for (int t = 0; t < CONC_THREADS; t++) {
        pthread_join(cl[t].th, NULL);
        cr_assert_not(cl[t].failed, "thread %d: %s", t, cl[t].why);
        memcpy(all[total], cl[t].got, (size_t)cl[t].n * ZQ_ID_LEN);
        total += cl[t].n;
        busy += cl[t].n > 0;
        free(cl[t].got);
    }
    cr_assert_eq(total, CONC_MSGS, "claimed %d messages in all", total);
    qsort(all, (size_t)total, ZQ_ID_LEN, cmp_id);
    qsort(ids, CONC_MSGS, ZQ_ID_LEN, cmp_id);
    for (int i = 0; i < CONC_MSGS; i++)
        cr_assert_str_eq(all[i], ids[i], "message %d claimed twice or never", i);
    cr_log_info("concurrent claims: %d of %d threads got messages", busy, CONC_THREADS);
    zq_stats st;
    OK(S->ops->stats(S, "p", "conc", &st, &E));
    cr_assert_eq(st.claimed, CONC_MSGS);
    cr_assert_eq(st.free, 0);
}

struct popper {
    pthread_t th;
    const char *queue;
    int n, failed, posts;
    long long markers[100];
    char why[300];
};

static void *popper_main(void *arg)
{
    struct popper *p = arg;
    for (;;) {
        zq_msg_vec v = {0};
        zq_err err = {{0}};
        int rc = S->ops->pop(S, "p", p->queue, 3, &v, &err);
        if (rc != ZQ_OK) {
            p->failed = 1;
            snprintf(p->why, sizeof p->why, "pop -> %d: %s", rc, err.msg);
            break;
        }
        if (v.n == 0)
            break;
        for (size_t i = 0; i < v.n && p->n < 100; i++)
            p->markers[p->n++] = v.v[i].marker;
        zq_msg_vec_free(&v);
    }
    return NULL;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static void *poster_main(void *arg)
{
    struct popper *p = arg;
    for (int i = 0; i < p->posts; i++) {
        zq_new_msg m[5];
        char ids[5][ZQ_ID_LEN];
        for (int j = 0; j < 5; j++) {
            m[j].body = json_integer(j);
            m[j].ttl = 600;
        }
        zq_err err = {{0}};
        int rc = S->ops->post(S, "p", p->queue, CLIENT_A, m, 5, ids, &err);
        for (int j = 0; j < 5; j++)
            json_decref(m[j].body);
        if (rc != ZQ_OK) {
            p->failed = 1;
            snprintf(p->why, sizeof p->why, "post -> %d: %s", rc, err.msg);
            break;
        }
    }
    return NULL;
}

Test(store_mongo, concurrent_posts_and_pops)
{
    /* 4 threads post 5 batches of 5 to one fresh queue: 100 distinct markers */
    struct popper w[CONC_THREADS];
    for (int t = 0; t < CONC_THREADS; t++) {
        memset(&w[t], 0, sizeof w[t]);
        w[t].queue = "cpp";
        w[t].posts = 5;
        cr_assert_eq(pthread_create(&w[t].th, NULL, poster_main, &w[t]), 0);
    }
    for (int t = 0; t < CONC_THREADS; t++) {
        pthread_join(w[t].th, NULL);
        cr_assert_not(w[t].failed, "poster %d: %s", t, w[t].why);
    }
    /* then 4 threads pop them: each exactly once */
    struct popper p[CONC_THREADS];
    for (int t = 0; t < CONC_THREADS; t++) {
        memset(&p[t], 0, sizeof p[t]);
        p[t].queue = "cpp";
        cr_assert_eq(pthread_create(&p[t].th, NULL, popper_main, &p[t]), 0);
    }
    long long all[4 * 100];
    int total = 0;
    for (int t = 0; t < CONC_THREADS; t++) {
        pthread_join(p[t].th, NULL);
        cr_assert_not(p[t].failed, "popper %d: %s", t, p[t].why);
        memcpy(all + total, p[t].markers, (size_t)p[t].n * sizeof *all);
        total += p[t].n;
    }
    cr_assert_eq(total, 100);
    qsort(all, (size_t)total, sizeof *all, cmp_ll);
    for (int i = 1; i < total; i++)
        cr_assert_lt(all[i - 1], all[i], "marker %lld twice", all[i]);
    zq_stats st;
    OK(S->ops->stats(S, "p", "cpp", &st, &E));
    cr_assert_eq(st.total, 0);
}

/* Claims racing deletes without a claim id: every message ends up either
 * claimed (once) or deleted (once), never both. */
#define RACE_MSGS 100

static char race_ids[RACE_MSGS][ZQ_ID_LEN];

struct racer {
    pthread_t th;
    int reverse;
    int hits[RACE_MSGS]; /* claimed (claimers) or deleted (deleters) */
    int failed;
    char why[300];
};

static int race_index(const char *id)
{
    for (int i = 0; i < RACE_MSGS; i++)
        if (strcmp(race_ids[i], id) == 0)
            return i;
    return -1;
}

static void *race_claimer(void *arg)
{
    struct racer *r = arg;
    for (;;) {
        char cid[ZQ_ID_LEN];
        zq_msg_vec v = {0};
        zq_err err = {{0}};
        int rc = S->ops->claim(S, "p", "race", CLIENT_B, 300, 60, 2, cid, &v, &err);
        if (rc != ZQ_OK) {
            r->failed = 1;
            snprintf(r->why, sizeof r->why, "claim -> %d: %s", rc, err.msg);
            return NULL;
        }
        if (v.n == 0)
            return NULL;
        for (size_t i = 0; i < v.n; i++) {
            int k = race_index(v.v[i].id);
            if (k < 0) {
                r->failed = 1;
                snprintf(r->why, sizeof r->why, "claimed unknown message %s", v.v[i].id);
            } else {
                r->hits[k]++;
            }
        }
        zq_msg_vec_free(&v);
    }
}

static void *race_deleter(void *arg)
{
    struct racer *r = arg;
    for (int j = 0; j < RACE_MSGS; j++) {
        int k = r->reverse ? RACE_MSGS - 1 - j : j;
        zq_err err = {{0}};
        int rc = S->ops->del(S, "p", "race", race_ids[k], NULL, &err);
        if (rc == ZQ_OK)
            r->hits[k]++;
        else if (rc != ZQ_EFORBIDDEN && rc != ZQ_ENOENT) {
            r->failed = 1;
            snprintf(r->why, sizeof r->why, "del -> %d: %s", rc, err.msg);
        }
    }
    return NULL;
}

Test(store_mongo, claims_race_deletes)
{
    post_n("p", "race", CLIENT_A, RACE_MSGS, 0, 600, race_ids);
    struct racer r[4];
    memset(r, 0, sizeof r);
    r[3].reverse = 1;
    for (int t = 0; t < 4; t++)
        cr_assert_eq(pthread_create(&r[t].th, NULL, t < 2 ? race_claimer : race_deleter, &r[t]), 0);
    for (int t = 0; t < 4; t++) {
        pthread_join(r[t].th, NULL);
        cr_assert_not(r[t].failed, "thread %d: %s", t, r[t].why);
    }
    int claimed = 0, deleted = 0;
    for (int k = 0; k < RACE_MSGS; k++) {
        int c = r[0].hits[k] + r[1].hits[k], d = r[2].hits[k] + r[3].hits[k];
        cr_assert_eq(c + d, 1, "message %d: claimed %d times, deleted %d times", k, c, d);
        claimed += c;
        deleted += d;
    }
    cr_log_info("race: %d claimed, %d deleted", claimed, deleted);
    zq_stats st;
    OK(S->ops->stats(S, "p", "race", &st, &E));
    cr_assert_eq(st.claimed, claimed);
    cr_assert_eq(st.free, 0);
}
