/*
 * test_store_redis.c - the Redis message store (tests/zaqard/store_redis.c)
 * against a real redis-server.
 *
 * The server comes from LDPROF_TEST_REDIS_URI (redis://127.0.0.1:PORT/0, set
 * by tests/env/with-services.sh --only redis).  When it is unset the tests
 * fail, unless LDPROF_TEST_ALLOW_SKIP is set (then they are skipped).
 *
 * Every test works in its own project "t<pid>_<n>_<random>", so parallel
 * runs (Criterion forks one process per test) and reruns never collide.
 * Tests that need time to pass (ttl = 1 s) sleep once, ~1.1 s.
 *
 * Besides the shared server, server_dies_and_comes_back starts (and kills)
 * its own redis-server on a free port, so it needs redis-server in PATH.
 * auth_select_and_stale_connections creates (and deletes) a uniquely named
 * ACL user on the shared server and kills only that user's connections.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

TestSuite(store_redis, .timeout = 60);

/* ------------------------------------------------------------- helpers */

static const char *redis_uri(void)
{
    const char *u = getenv("LDPROF_TEST_REDIS_URI");
    if (!u || !*u) {
        if (getenv("LDPROF_TEST_ALLOW_SKIP"))
            cr_skip_test("LDPROF_TEST_REDIS_URI is not set");
        cr_assert_fail("LDPROF_TEST_REDIS_URI is not set: run the tests under "
                 "tests/env/with-services.sh --only redis (or make unit)");
    }
    return u;
}

/* host and port of the test server (URI redis://HOST:PORT[/db]) */
static void redis_addr(char *host, size_t hcap, int *port)
{
    const char *u = redis_uri();
    cr_assert(strncmp(u, "redis://", 8) == 0, "unexpected URI %s", u);
    const char *h = u + 8;
    const char *at = strchr(h, '@');
    if (at)
        h = at + 1;
    const char *colon = strchr(h, ':');
    cr_assert_not_null(colon, "URI %s has no port", u);
    snprintf(host, hcap, "%.*s", (int)(colon - h), h);
    *port = atoi(colon + 1);
}

static zq_store *open_uri(const char *uri)
{
    zq_err e = {{0}};
    zq_store *s = zq_store_redis_new("redis-test", uri, &e);
    cr_assert_not_null(s, "zq_store_redis_new(%s): %s", uri, e.msg);
    return s;
}

static zq_store *open_store(void)
{
    return open_uri(redis_uri());
}

static void new_project(char *buf, size_t cap)
{
    static int n;
    char rnd[33];
    zq_new_id(rnd);
    snprintf(buf, cap, "t%d_%d_%.6s", (int)getpid(), ++n, rnd);
}

#define CLIENT_A "3b5a8e46-0a5b-4d3f-9f4f-3c6a2f5d7a11"
#define CLIENT_B "c0ffee00-1111-4222-8333-444455556666"

/* Post n messages (bodies {"i": first+k}) in posts of at most 20. */
static void post_n(zq_store *s, const char *p, const char *q, const char *client, int n,
                   int first, int ttl, char (*ids)[ZQ_ID_LEN])
{
    for (int done = 0; done < n;) {
        int batch = n - done < 20 ? n - done : 20;
        zq_new_msg m[20];
        for (int k = 0; k < batch; k++) {
            m[k].body = json_pack("{s:i}", "i", first + done + k);
            m[k].ttl = ttl;
        }
        zq_err e = {{0}};
        int rc = s->ops->post(s, p, q, client, m, (size_t)batch, ids + done, &e);
        for (int k = 0; k < batch; k++)
            json_decref(m[k].body);
        cr_assert_eq(rc, ZQ_OK, "post: %d %s", rc, e.msg);
        done += batch;
    }
}

static int body_i(const zq_message *m)
{
    json_t *i = json_object_get(m->body, "i");
    cr_assert(json_is_integer(i), "body without i");
    return (int)json_integer_value(i);
}

static zq_list_opts lopts(int limit, long long marker, int echo, int include_claimed)
{
    zq_list_opts o = {.limit = limit, .marker = marker, .echo = echo,
                      .include_claimed = include_claimed};
    return o;
}

/* List everything visible to client with these filters (paging by 20). */
static void list_all(zq_store *s, const char *p, const char *q, const char *client, int echo,
                     int incl, zq_msg_vec *out)
{
    long long marker = 0;
    for (int guard = 0; guard < 1000; guard++) {
        zq_list_opts o = lopts(20, marker, echo, incl);
        size_t before = out->n;
        long long next = -1;
        zq_err e = {{0}};
        int rc = s->ops->list(s, p, q, client, &o, out, &next, &e);
        cr_assert_eq(rc, ZQ_OK, "list: %s", e.msg);
        if (out->n == before) {
            cr_assert_eq(next, marker, "next_marker must stay when nothing is returned");
            return;
        }
        cr_assert_eq(next, out->v[out->n - 1].marker);
        marker = next;
    }
    cr_assert_fail("list_all did not terminate");
}

static int claim(zq_store *s, const char *p, const char *q, int ttl, int grace, int limit,
                 char cid[ZQ_ID_LEN], zq_msg_vec *out)
{
    zq_err e = {{0}};
    int rc = s->ops->claim(s, p, q, CLIENT_A, ttl, grace, limit, cid, out, &e);
    cr_assert_eq(rc, ZQ_OK, "claim: %d %s", rc, e.msg);
    cr_assert(strlen(cid) > 0 && strlen(cid) < ZQ_ID_LEN, "claim id '%s'", cid);
    return (int)out->n;
}

static long long now_ms(void)
{
    return zq_now_ms();
}

static redisContext *raw_connect(void)
{
    char host[256];
    int port;
    redis_addr(host, sizeof host, &port);
    struct timeval tv = {3, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    cr_assert(c && !c->err, "raw connect: %s", c ? c->errstr : "oom");
    return c;
}

/* Number of keys whose name contains `needle` (in the selected db). */
static long long count_keys(redisContext *c, const char *needle)
{
    long long n = 0;
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH *%s* COUNT 1000", cursor, needle);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2, "SCAN failed");
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        n += (long long)r->element[1]->elements;
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return n;
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd); /* bound but never listening: connections are refused */
    return ntohs(a.sin_port);
}

/* ------------------------------------------------------- construction */

Test(store_redis, uri_parsing)
{
    static const char *const bad[] = {
        "redis://",           "redis://:6379",         "redis://h:0",
        "redis://h:65536",    "redis://h:12ab",        "redis://h:",
        "redis://h/x",        "redis://h/1/2",         "redis://h/-1",
        "redis://h?db=1",     "redis://h#x",           "redis://user@h",
        "redis://:p%zz@h",    "redis://[::1",          "redis://[::1]x",
        "mongodb://h:27017/", "http://h",              "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        zq_err e = {{0}};
        zq_store *s = zq_store_redis_new("p", bad[i], &e);
        cr_expect_null(s, "accepted bad URI '%s'", bad[i]);
        cr_expect(e.msg[0] != '\0', "no message for bad URI '%s'", bad[i]);
        if (s)
            s->ops->destroy(s);
    }
    static const char *const good[] = {
        "redis://localhost",           "redis://127.0.0.1:6380",  "redis://h:1/15",
        "redis://h/",                  "redis://:secret@h:7000/2", "redis://u:p%40ss@[::1]:6379/0",
        "redis://[::1]",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        zq_err e = {{0}};
        zq_store *s = zq_store_redis_new("p", good[i], &e);
        cr_expect_not_null(s, "rejected good URI '%s': %s", good[i], e.msg);
        if (s) {
            cr_expect_str_eq(s->ops->kind, "redis");
            cr_expect_str_eq(s->name, "p");
            s->ops->destroy(s);
        }
    }
    /* the dispatcher picks this store; long pool names are truncated */
    char longname[100];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    zq_err e = {{0}};
    zq_store *s = zq_store_new(longname, "redis://127.0.0.1:1/0", &e);
    cr_assert_not_null(s, "%s", e.msg);
    cr_expect_str_eq(s->ops->kind, "redis");
    cr_expect_eq(strlen(s->name), 64);
    s->ops->destroy(s);
}

Test(store_redis, ping)
{
    zq_store *s = open_store();
    zq_err e = {{0}};
    cr_assert_eq(s->ops->ping(s, &e), ZQ_OK, "%s", e.msg);
    cr_assert_eq(s->ops->ping(s, &e), ZQ_OK, "%s", e.msg); /* pooled connection */
    s->ops->destroy(s);
}

Test(store_redis, unreachable_server)
{
    char uri[64];
    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/0", closed_port());
    zq_store *s = open_uri(uri);
    long long t0 = now_ms();
    zq_err e = {{0}};

    cr_expect_eq(s->ops->ping(s, &e), ZQ_EBACKEND);
    cr_expect(e.msg[0], "no error message");
    cr_expect(strstr(e.msg, "127.0.0.1") != NULL, "message lacks the address: %s", e.msg);

    char ids[1][ZQ_ID_LEN];
    zq_new_msg m = {.body = json_integer(1), .ttl = 60};
    e.msg[0] = '\0';
    cr_expect_eq(s->ops->post(s, "p", "q", CLIENT_A, &m, 1, ids, &e), ZQ_EBACKEND);
    cr_expect(e.msg[0]);
    json_decref(m.body);

    zq_msg_vec v = {0};
    zq_list_opts o = lopts(10, 0, 1, 1);
    long long next = 7;
    cr_expect_eq(s->ops->list(s, "p", "q", CLIENT_A, &o, &v, &next, &e), ZQ_EBACKEND);
    cr_expect_eq(v.n, 0);
    zq_message msg;
    cr_expect_eq(s->ops->get(s, "p", "q", "abc", &msg, &e), ZQ_EBACKEND);
    cr_expect_eq(s->ops->del(s, "p", "q", "abc", NULL, &e), ZQ_EBACKEND);
    const char *dids[] = {"abc"};
    cr_expect_eq(s->ops->del_many(s, "p", "q", dids, 1, &e), ZQ_EBACKEND);
    cr_expect_eq(s->ops->pop(s, "p", "q", 5, &v, &e), ZQ_EBACKEND);
    char cid[ZQ_ID_LEN] = "";
    cr_expect_eq(s->ops->claim(s, "p", "q", CLIENT_A, 60, 60, 5, cid, &v, &e), ZQ_EBACKEND);
    cr_expect_eq(v.n, 0);
    zq_claim_info ci;
    cr_expect_eq(s->ops->claim_get(s, "p", "q", "abc", &ci, &v, &e), ZQ_EBACKEND);
    cr_expect_eq(s->ops->claim_update(s, "p", "q", "abc", 60, 60, &e), ZQ_EBACKEND);
    cr_expect_eq(s->ops->claim_delete(s, "p", "q", "abc", &e), ZQ_EBACKEND);
    zq_stats st;
    cr_expect_eq(s->ops->stats(s, "p", "q", &st, &e), ZQ_EBACKEND);
    cr_expect_eq(s->ops->purge(s, "p", "q", &e), ZQ_EBACKEND);
    cr_expect(now_ms() - t0 < 5000, "refused connections must fail fast");
    zq_msg_vec_free(&v);
    s->ops->destroy(s);
}

Test(store_redis, auth_select_and_stale_connections)
{
    char host[256], uri[512], user[80], proj[64];
    int port;
    redis_addr(host, sizeof host, &port);
    redisContext *c = raw_connect();
    new_project(proj, sizeof proj);

    /* a password against a server without one: AUTH fails -> EBACKEND */
    snprintf(uri, sizeof uri, "redis://:wrong@%s:%d/0", host, port);
    zq_store *s = open_uri(uri);
    zq_err e = {{0}};
    cr_expect_eq(s->ops->ping(s, &e), ZQ_EBACKEND);
    cr_expect(strstr(e.msg, "AUTH") != NULL, "%s", e.msg);
    s->ops->destroy(s);

    /* an ACL user with a password, and database 3 */
    snprintf(user, sizeof user, "u%s", proj);
    redisReply *r = redisCommand(c, "ACL SETUSER %s on >p@ss:w0rd ~* &* +@all", user);
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "ACL SETUSER failed");
    freeReplyObject(r);
    snprintf(uri, sizeof uri, "redis://%s:p%%40ss%%3Aw0rd@%s:%d/3", user, host, port);
    s = open_uri(uri);
    cr_assert_eq(s->ops->ping(s, &e), ZQ_OK, "%s", e.msg);
    char ids[2][ZQ_ID_LEN];
    post_n(s, proj, "q", CLIENT_A, 2, 0, 60, ids);
    cr_expect_eq(count_keys(c, proj), 0, "keys landed in db 0");
    r = redisCommand(c, "SELECT 3");
    freeReplyObject(r);
    cr_expect_gt(count_keys(c, proj), 0, "no keys in db 3");

    /* kill the pooled connections behind the store's back: the next calls
     * must notice and reconnect rather than fail */
    r = redisCommand(c, "CLIENT KILL USER %s", user);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer >= 1, "CLIENT KILL failed");
    freeReplyObject(r);
    usleep(50 * 1000);
    cr_expect_eq(s->ops->ping(s, &e), ZQ_OK, "after CLIENT KILL: %s", e.msg);
    zq_message m;
    cr_expect_eq(s->ops->get(s, proj, "q", ids[1], &m, &e), ZQ_OK, "%s", e.msg);
    zq_message_clear(&m);

    cr_expect_eq(s->ops->purge(s, proj, "q", &e), ZQ_OK);
    cr_expect_eq(count_keys(c, proj), 0);
    s->ops->destroy(s);
    r = redisCommand(c, "ACL DELUSER %s", user);
    freeReplyObject(r);
    redisFree(c);
}

/* A private redis-server on 127.0.0.1:port (this test's own child, so it
 * can be killed and restarted); data in dir, nothing persisted. */
static pid_t spawn_redis(int port, const char *dir)
{
    char ps[16], logf[512];
    snprintf(ps, sizeof ps, "%d", port);
    snprintf(logf, sizeof logf, "%s/redis.log", dir);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", ps, "--save", "",
               "--appendonly", "no", "--dir", dir, "--logfile", logf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) { /* at most 10 s */
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            cr_assert_fail("redis-server exited at start (status %d): is it installed?", status);
        struct timeval tv = {1, 0};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        int up = c && !c->err;
        if (up) {
            redisReply *r = redisCommand(c, "PING");
            up = r && r->type == REDIS_REPLY_STATUS;
            if (r)
                freeReplyObject(r);
        }
        if (c)
            redisFree(c);
        if (up)
            return pid;
        usleep(50 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    cr_assert_fail("redis-server on port %d did not come up", port);
    return -1;
}

static void kill_redis(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

Test(store_redis, server_dies_and_comes_back)
{
    /* a dead server must give ZQ_EBACKEND, never a crash (SIGPIPE keeps its
     * default action here) nor a hang; a restarted one (with an empty script
     * cache) must work again without recreating the store */
    signal(SIGPIPE, SIG_DFL);
    char dir[] = "/tmp/zq-redis-test.XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    int port = closed_port();
    pid_t pid = spawn_redis(port, dir);
    char uri[64];
    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d", port);
    zq_store *s = open_uri(uri);
    char p[64];
    new_project(p, sizeof p);
    char ids[3][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 2, 0, 300, ids);
    zq_err e = {{0}};
    cr_assert_eq(s->ops->ping(s, &e), ZQ_OK, "%s", e.msg);

    kill_redis(pid);
    long long t0 = now_ms();
    e.msg[0] = '\0';
    cr_expect_eq(s->ops->ping(s, &e), ZQ_EBACKEND);
    cr_expect(e.msg[0]);
    zq_new_msg m = {.body = json_string("x"), .ttl = 60};
    cr_expect_eq(s->ops->post(s, p, "q", CLIENT_A, &m, 1, ids + 2, &e), ZQ_EBACKEND);
    zq_msg_vec v = {0};
    zq_list_opts o = lopts(10, 0, 1, 1);
    long long next;
    cr_expect_eq(s->ops->list(s, p, "q", CLIENT_A, &o, &v, &next, &e), ZQ_EBACKEND);
    cr_expect_eq(v.n, 0);
    cr_expect(now_ms() - t0 < 5000, "a dead server must fail fast");

    pid = spawn_redis(port, dir);
    cr_expect_eq(s->ops->ping(s, &e), ZQ_OK, "after restart: %s", e.msg);
    cr_expect_eq(s->ops->post(s, p, "q", CLIENT_A, &m, 1, ids + 2, &e), ZQ_OK,
                 "after restart: %s", e.msg);
    cr_expect_eq(s->ops->list(s, p, "q", CLIENT_A, &o, &v, &next, &e), ZQ_OK, "%s", e.msg);
    cr_expect_eq(v.n, 1, "the restarted server is empty but for the new message");
    zq_msg_vec_free(&v);
    json_decref(m.body);
    s->ops->destroy(s);
    kill_redis(pid);
    char logf[512];
    snprintf(logf, sizeof logf, "%s/redis.log", dir);
    unlink(logf);
    rmdir(dir);
}

/* ----------------------------------------------------- post and list */

Test(store_redis, post_list_order_and_markers)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    char ids[8][ZQ_ID_LEN];
    long long t0 = now_ms();
    post_n(s, p, "q", CLIENT_A, 5, 0, 300, ids);
    post_n(s, p, "q", CLIENT_A, 3, 5, 600, ids + 5);
    long long t1 = now_ms();
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(ids[i], ids[j]);

    zq_msg_vec v = {0};
    zq_list_opts o = lopts(20, 0, 1, 0);
    long long next = -1;
    zq_err e = {{0}};
    cr_assert_eq(s->ops->list(s, p, "q", CLIENT_A, &o, &v, &next, &e), ZQ_OK, "%s", e.msg);
    cr_assert_eq(v.n, 8);
    for (int i = 0; i < 8; i++) {
        zq_message *m = &v.v[i];
        cr_expect_str_eq(m->id, ids[i]);
        cr_expect_eq(body_i(m), i);
        cr_expect_eq(m->ttl, i < 5 ? 300 : 600);
        cr_expect(m->created_ms >= t0 - 1000 && m->created_ms <= t1 + 1000,
                  "created %lld not in [%lld, %lld]", m->created_ms, t0, t1);
        cr_expect_str_eq(m->client_id, CLIENT_A);
        cr_expect_str_eq(m->claim_id, "");
        cr_expect_eq(m->claim_expires_ms, 0);
        if (i)
            cr_expect_gt(m->marker, v.v[i - 1].marker, "markers must increase");
        else
            cr_expect_gt(m->marker, 0);
    }
    cr_expect_eq(next, v.v[7].marker);

    /* from a marker: only later messages */
    zq_msg_vec w = {0};
    o = lopts(20, v.v[2].marker, 1, 0);
    cr_assert_eq(s->ops->list(s, p, "q", CLIENT_A, &o, &w, &next, &e), ZQ_OK);
    cr_assert_eq(w.n, 5);
    cr_expect_str_eq(w.v[0].id, ids[3]);
    zq_msg_vec_free(&w);

    /* past the end: nothing, marker unchanged */
    o = lopts(20, v.v[7].marker, 1, 1);
    next = -1;
    cr_assert_eq(s->ops->list(s, p, "q", CLIENT_A, &o, &w, &next, &e), ZQ_OK);
    cr_expect_eq(w.n, 0);
    cr_expect_eq(next, v.v[7].marker);

    /* an unknown queue lists as empty */
    o = lopts(20, 0, 1, 1);
    next = -1;
    cr_assert_eq(s->ops->list(s, p, "nosuchqueue", CLIENT_A, &o, &w, &next, &e), ZQ_OK);
    cr_expect_eq(w.n, 0);
    cr_expect_eq(next, 0);

    /* out is appended to, not replaced */
    o = lopts(2, 0, 1, 1);
    cr_assert_eq(s->ops->list(s, p, "q", CLIENT_A, &o, &v, &next, &e), ZQ_OK);
    cr_assert_eq(v.n, 10);
    cr_expect_str_eq(v.v[9].id, ids[1]);
    cr_expect_eq(next, v.v[9].marker);

    zq_msg_vec_free(&v);
    zq_msg_vec_free(&w);
    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

Test(store_redis, bodies_round_trip)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    const char *texts[] = {
        "null", "true", "false", "0", "-12345678901234", "3.25", "\"\"",
        "\"h\\u00e9llo \\u2603 \\\"q\\\" \\\\ \\n\"", "\"nul\\u0000inside\"",
        "[]", "{}", "[1,[2,[3,{\"a\":null}]]]",
        "{\"event\":\"BackupStarted\",\"backup_id\":\"c378813c\",\"n\":1.5e300}",
    };
    size_t n = sizeof texts / sizeof *texts;
    zq_new_msg m[20];
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        m[i].body = json_loads(texts[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        cr_assert_not_null(m[i].body, "bad test JSON %s: %s", texts[i], je.text);
        m[i].ttl = 120;
    }
    char ids[20][ZQ_ID_LEN];
    zq_err e = {{0}};
    cr_assert_eq(s->ops->post(s, p, "q", CLIENT_A, m, n, ids, &e), ZQ_OK, "%s", e.msg);
    for (size_t i = 0; i < n; i++) {
        zq_message got;
        cr_assert_eq(s->ops->get(s, p, "q", ids[i], &got, &e), ZQ_OK, "%s", e.msg);
        cr_expect(json_equal(got.body, m[i].body), "body %zu (%s) changed", i, texts[i]);
        zq_message_clear(&got);
        json_decref(m[i].body);
    }
    /* a big body (the API allows 256 KiB per post) */
    char *big = malloc(200001);
    memset(big, 'x', 200000);
    big[200000] = '\0';
    zq_new_msg bm = {.body = json_string(big), .ttl = 60};
    cr_assert_eq(s->ops->post(s, p, "q", CLIENT_A, &bm, 1, ids, &e), ZQ_OK, "%s", e.msg);
    zq_message got;
    cr_assert_eq(s->ops->get(s, p, "q", ids[0], &got, &e), ZQ_OK);
    cr_expect(json_equal(got.body, bm.body));
    zq_message_clear(&got);
    json_decref(bm.body);
    free(big);
    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

Test(store_redis, paging)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    char ids[45][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 45, 0, 300, ids);
    long long marker = 0;
    int seen = 0, pages = 0;
    zq_err e = {{0}};
    for (;;) {
        zq_msg_vec v = {0};
        zq_list_opts o = lopts(10, marker, 1, 0);
        long long next = -1;
        cr_assert_eq(s->ops->list(s, p, "q", CLIENT_A, &o, &v, &next, &e), ZQ_OK, "%s", e.msg);
        if (v.n == 0) {
            cr_expect_eq(next, marker);
            break;
        }
        pages++;
        cr_expect_eq(v.n, seen + 10 <= 45 ? 10 : 45 - seen, "page %d short", pages);
        for (size_t i = 0; i < v.n; i++, seen++) {
            cr_expect_str_eq(v.v[i].id, ids[seen]);
            cr_expect_eq(body_i(&v.v[i]), seen);
        }
        cr_expect_eq(next, v.v[v.n - 1].marker);
        marker = next;
        zq_msg_vec_free(&v);
        cr_assert_lt(pages, 10);
    }
    cr_expect_eq(seen, 45);
    cr_expect_eq(pages, 5);
    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

Test(store_redis, echo_filtering_fills_pages)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    /* 250 of A's messages, then 3 of B's, then 30 of A's, then 4 of B's:
     * A listing without echo must still get full pages of B's messages
     * (the store scans past runs longer than one window) */
    static char a1[250][ZQ_ID_LEN], b1[3][ZQ_ID_LEN], a2[30][ZQ_ID_LEN], b2[4][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 250, 0, 300, a1);
    post_n(s, p, "q", CLIENT_B, 3, 1000, 300, b1);
    post_n(s, p, "q", CLIENT_A, 30, 2000, 300, a2);
    post_n(s, p, "q", CLIENT_B, 4, 3000, 300, b2);

    zq_msg_vec v = {0};
    zq_list_opts o = lopts(5, 0, 0, 0);
    long long next = -1;
    zq_err e = {{0}};
    cr_assert_eq(s->ops->list(s, p, "q", CLIENT_A, &o, &v, &next, &e), ZQ_OK, "%s", e.msg);
    cr_assert_eq(v.n, 5, "page must be full: got %zu", v.n);
    for (int i = 0; i < 3; i++)
        cr_expect_str_eq(v.v[i].id, b1[i]);
    cr_expect_str_eq(v.v[3].id, b2[0]);
    cr_expect_str_eq(v.v[4].id, b2[1]);
    cr_expect_eq(next, v.v[4].marker);
    zq_msg_vec_free(&v);

    o = lopts(5, next, 0, 0);
    cr_assert_eq(s->ops->list(s, p, "q", CLIENT_A, &o, &v, &next, &e), ZQ_OK);
    cr_assert_eq(v.n, 2);
    cr_expect_str_eq(v.v[1].id, b2[3]);
    zq_msg_vec_free(&v);

    /* B without echo sees only A's 280 */
    list_all(s, p, "q", CLIENT_B, 0, 0, &v);
    cr_expect_eq(v.n, 280);
    for (size_t i = 0; i < v.n; i++)
        cr_expect_str_eq(v.v[i].client_id, CLIENT_A);
    zq_msg_vec_free(&v);
    /* with echo: everything */
    list_all(s, p, "q", CLIENT_B, 1, 0, &v);
    cr_expect_eq(v.n, 287);
    zq_msg_vec_free(&v);
    /* a NULL client id is "" : nobody's own messages, all are listed */
    o = lopts(20, 0, 0, 0);
    cr_assert_eq(s->ops->list(s, p, "q", NULL, &o, &v, &next, &e), ZQ_OK);
    cr_expect_eq(v.n, 20);
    zq_msg_vec_free(&v);

    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

Test(store_redis, include_claimed)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    char ids[6][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 6, 0, 300, ids);
    char cid[ZQ_ID_LEN];
    zq_msg_vec c = {0};
    cr_assert_eq(claim(s, p, "q", 60, 60, 2, cid, &c), 2);
    zq_msg_vec_free(&c);

    zq_msg_vec v = {0};
    list_all(s, p, "q", CLIENT_B, 0, 0, &v);
    cr_assert_eq(v.n, 4);
    for (int i = 0; i < 4; i++) {
        cr_expect_str_eq(v.v[i].id, ids[i + 2]);
        cr_expect_str_eq(v.v[i].claim_id, "");
    }
    zq_msg_vec_free(&v);

    /* a page starting at claimed messages is still full */
    zq_list_opts o = lopts(3, 0, 1, 0);
    long long next;
    zq_err e = {{0}};
    cr_assert_eq(s->ops->list(s, p, "q", CLIENT_A, &o, &v, &next, &e), ZQ_OK);
    cr_assert_eq(v.n, 3);
    cr_expect_str_eq(v.v[0].id, ids[2]);
    zq_msg_vec_free(&v);

    long long now = now_ms();
    list_all(s, p, "q", CLIENT_B, 0, 1, &v);
    cr_assert_eq(v.n, 6);
    for (int i = 0; i < 6; i++) {
        cr_expect_str_eq(v.v[i].id, ids[i]);
        if (i < 2) {
            cr_expect_str_eq(v.v[i].claim_id, cid);
            cr_expect(v.v[i].claim_expires_ms > now + 55000 &&
                          v.v[i].claim_expires_ms < now + 65000,
                      "claim expiry %lld vs now %lld", v.v[i].claim_expires_ms, now);
        } else {
            cr_expect_str_eq(v.v[i].claim_id, "");
            cr_expect_eq(v.v[i].claim_expires_ms, 0);
        }
    }
    zq_msg_vec_free(&v);
    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

/* ------------------------------------------------------ get and delete */

Test(store_redis, get)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    char ids[2][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 2, 7, 300, ids);
    zq_message m;
    zq_err e = {{0}};
    cr_assert_eq(s->ops->get(s, p, "q", ids[1], &m, &e), ZQ_OK, "%s", e.msg);
    cr_expect_str_eq(m.id, ids[1]);
    cr_expect_eq(body_i(&m), 8);
    cr_expect_eq(m.ttl, 300);
    cr_expect_str_eq(m.client_id, CLIENT_A);
    cr_expect_str_eq(m.claim_id, "");
    cr_expect_gt(m.marker, 0);
    zq_message_clear(&m);
    cr_expect_null(m.body);

    cr_expect_eq(s->ops->get(s, p, "q", "0123456789abcdef0123456789abcdef", &m, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->get(s, p, "q", "../../etc", &m, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->get(s, p, "q", "", &m, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->get(s, p, "q", "a}:x", &m, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->get(s, p, "other", ids[0], &m, &e), ZQ_ENOENT);

    /* invalid names are refused, not turned into odd keys */
    cr_expect_eq(s->ops->get(s, p, "bad:queue", ids[0], &m, &e), ZQ_EINVAL);
    cr_expect_eq(s->ops->get(s, "bad}project", "q", ids[0], &m, &e), ZQ_EINVAL);
    cr_expect_eq(s->ops->get(s, p, "", ids[0], &m, &e), ZQ_EINVAL);
    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

Test(store_redis, delete_and_claims)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    char ids[4][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 4, 0, 300, ids);
    zq_err e = {{0}};
    zq_message m;

    /* unclaimed, no claim id: deleted, then absent */
    cr_expect_eq(s->ops->del(s, p, "q", ids[3], NULL, &e), ZQ_OK, "%s", e.msg);
    cr_expect_eq(s->ops->get(s, p, "q", ids[3], &m, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->del(s, p, "q", ids[3], NULL, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->del(s, p, "q", "nosuchid", NULL, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->del(s, p, "q", "bad:id", "x", &e), ZQ_ENOENT);

    char cid[ZQ_ID_LEN], cid2[ZQ_ID_LEN];
    zq_msg_vec c = {0};
    cr_assert_eq(claim(s, p, "q", 60, 0, 2, cid, &c), 2); /* ids[0], ids[1] */
    cr_expect_str_eq(c.v[0].id, ids[0]);
    zq_msg_vec_free(&c);
    cr_assert_eq(claim(s, p, "q", 60, 0, 1, cid2, &c), 1); /* ids[2] */
    zq_msg_vec_free(&c);

    /* claimed: 403 without the claim or with another claim */
    cr_expect_eq(s->ops->del(s, p, "q", ids[0], NULL, &e), ZQ_EFORBIDDEN);
    cr_expect_eq(s->ops->del(s, p, "q", ids[0], cid2, &e), ZQ_EFORBIDDEN);
    cr_expect_eq(s->ops->del(s, p, "q", ids[0], "0123456789abcdef0123456789abcdef", &e),
                 ZQ_EFORBIDDEN);
    cr_expect_eq(s->ops->del(s, p, "q", ids[0], "", &e), ZQ_EFORBIDDEN);
    cr_expect_eq(s->ops->get(s, p, "q", ids[0], &m, &e), ZQ_OK);
    zq_message_clear(&m);
    /* with its claim: deleted, and gone from the claim */
    cr_expect_eq(s->ops->del(s, p, "q", ids[0], cid, &e), ZQ_OK, "%s", e.msg);
    cr_expect_eq(s->ops->get(s, p, "q", ids[0], &m, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->del(s, p, "q", ids[0], cid, &e), ZQ_ENOENT);
    zq_claim_info ci;
    cr_assert_eq(s->ops->claim_get(s, p, "q", cid, &ci, &c, &e), ZQ_OK);
    cr_assert_eq(c.n, 1);
    cr_expect_str_eq(c.v[0].id, ids[1]);
    zq_msg_vec_free(&c);

    /* release: the message is free; a claim id no longer matches */
    cr_expect_eq(s->ops->claim_delete(s, p, "q", cid, &e), ZQ_OK);
    cr_expect_eq(s->ops->del(s, p, "q", ids[1], cid, &e), ZQ_EFORBIDDEN);
    cr_expect_eq(s->ops->del(s, p, "q", ids[1], NULL, &e), ZQ_OK);

    /* an unclaimed message with some claim id: 403 */
    char more[1][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 1, 9, 300, more);
    cr_expect_eq(s->ops->del(s, p, "q", more[0], cid2, &e), ZQ_EFORBIDDEN);
    cr_expect_eq(s->ops->del(s, p, "q", more[0], NULL, &e), ZQ_OK);
    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

Test(store_redis, del_many)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    char ids[6][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 6, 0, 300, ids);
    char cid[ZQ_ID_LEN];
    zq_msg_vec c = {0};
    cr_assert_eq(claim(s, p, "q", 60, 0, 1, cid, &c), 1); /* ids[0] */
    zq_msg_vec_free(&c);

    const char *del[] = {ids[0], ids[2], "0123456789abcdef0123456789abcdef", "bad:id", ids[4],
                         ids[2]};
    zq_err e = {{0}};
    cr_assert_eq(s->ops->del_many(s, p, "q", del, 6, &e), ZQ_OK, "%s", e.msg);
    cr_assert_eq(s->ops->del_many(s, p, "q", del, 0, &e), ZQ_OK);
    zq_msg_vec v = {0};
    list_all(s, p, "q", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 3);
    cr_expect_str_eq(v.v[0].id, ids[1]);
    cr_expect_str_eq(v.v[1].id, ids[3]);
    cr_expect_str_eq(v.v[2].id, ids[5]);
    zq_msg_vec_free(&v);
    /* the claimed one went too, and its claim no longer lists it */
    zq_claim_info ci;
    int rc = s->ops->claim_get(s, p, "q", cid, &ci, &c, &e);
    cr_expect(rc == ZQ_OK || rc == ZQ_ENOENT);
    cr_expect_eq(c.n, 0);
    zq_msg_vec_free(&c);
    zq_stats st;
    cr_assert_eq(s->ops->stats(s, p, "q", &st, &e), ZQ_OK);
    cr_expect_eq(st.total, 3);
    cr_expect_eq(st.claimed, 0);
    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

Test(store_redis, pop)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    char ids[5][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 5, 0, 300, ids);
    char cid[ZQ_ID_LEN];
    zq_msg_vec c = {0};
    cr_assert_eq(claim(s, p, "q", 60, 0, 2, cid, &c), 2); /* ids[0], ids[1] */
    zq_msg_vec_free(&c);

    zq_msg_vec v = {0};
    zq_err e = {{0}};
    cr_assert_eq(s->ops->pop(s, p, "q", 2, &v, &e), ZQ_OK, "%s", e.msg);
    cr_assert_eq(v.n, 2);
    cr_expect_str_eq(v.v[0].id, ids[2]);
    cr_expect_str_eq(v.v[1].id, ids[3]);
    cr_expect_eq(body_i(&v.v[0]), 2);
    cr_expect_eq(v.v[0].ttl, 300);
    zq_msg_vec_free(&v);
    zq_message m;
    cr_expect_eq(s->ops->get(s, p, "q", ids[2], &m, &e), ZQ_ENOENT);

    cr_assert_eq(s->ops->pop(s, p, "q", 10, &v, &e), ZQ_OK);
    cr_assert_eq(v.n, 1);
    cr_expect_str_eq(v.v[0].id, ids[4]);
    zq_msg_vec_free(&v);
    cr_assert_eq(s->ops->pop(s, p, "q", 10, &v, &e), ZQ_OK);
    cr_expect_eq(v.n, 0);
    cr_assert_eq(s->ops->pop(s, p, "empty", 10, &v, &e), ZQ_OK);
    cr_expect_eq(v.n, 0);

    /* the claimed ones are untouched */
    list_all(s, p, "q", CLIENT_A, 1, 1, &v);
    cr_expect_eq(v.n, 2);
    zq_msg_vec_free(&v);
    /* released, they can be popped */
    cr_expect_eq(s->ops->claim_delete(s, p, "q", cid, &e), ZQ_OK);
    cr_assert_eq(s->ops->pop(s, p, "q", 20, &v, &e), ZQ_OK);
    cr_expect_eq(v.n, 2);
    zq_msg_vec_free(&v);
    cr_expect_eq(s->ops->pop(s, p, "q", 0, &v, &e), ZQ_EINVAL);
    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

/* -------------------------------------------------------------- claims */

Test(store_redis, claim_limit_and_ttl_extension)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    char ids[7][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 4, 0, 60, ids);          /* short-lived */
    post_n(s, p, "q", CLIENT_A, 3, 4, 3600, ids + 4);    /* long-lived */

    char cid[ZQ_ID_LEN];
    zq_msg_vec c = {0};
    long long t0 = now_ms();
    cr_assert_eq(claim(s, p, "q", 100, 50, 5, cid, &c), 5);
    for (int i = 0; i < 5; i++) {
        zq_message *m = &c.v[i];
        cr_expect_str_eq(m->id, ids[i], "oldest first");
        cr_expect_eq(body_i(m), i);
        cr_expect_str_eq(m->claim_id, cid);
        cr_expect(m->claim_expires_ms >= t0 + 99000 && m->claim_expires_ms <= now_ms() + 101000);
        /* every claimed message lives at least until claim expiry + grace */
        cr_expect_geq(m->created_ms + m->ttl * 1000LL, m->claim_expires_ms + 50000,
                      "message %d: ttl %d not extended", i, m->ttl);
        if (i < 4)
            cr_expect(m->ttl >= 150 && m->ttl <= 160, "ttl %d", m->ttl);
        else
            cr_expect_eq(m->ttl, 3600, "a long enough ttl is kept");
    }
    /* the extension is stored */
    zq_message m;
    zq_err e = {{0}};
    cr_assert_eq(s->ops->get(s, p, "q", ids[0], &m, &e), ZQ_OK);
    cr_expect_eq(m.ttl, c.v[0].ttl);
    cr_expect_str_eq(m.claim_id, cid);
    zq_message_clear(&m);
    zq_msg_vec_free(&c);

    char cid2[ZQ_ID_LEN];
    cr_assert_eq(claim(s, p, "q", 60, 60, 5, cid2, &c), 2);
    cr_expect_str_neq(cid2, cid);
    cr_expect_str_eq(c.v[0].id, ids[5]);
    cr_expect_str_eq(c.v[1].id, ids[6]);
    zq_msg_vec_free(&c);

    /* nothing free: a new id anyway, but nothing stored under it */
    char cid3[ZQ_ID_LEN];
    cr_assert_eq(claim(s, p, "q", 60, 60, 5, cid3, &c), 0);
    cr_expect_str_neq(cid3, cid);
    cr_expect_str_neq(cid3, cid2);
    zq_claim_info ci;
    cr_expect_eq(s->ops->claim_get(s, p, "q", cid3, &ci, &c, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->claim_update(s, p, "q", cid3, 60, 60, &e), ZQ_ENOENT);

    /* on an unknown queue too */
    cr_assert_eq(claim(s, p, "nosuchqueue", 60, 60, 5, cid3, &c), 0);
    cr_expect_eq(s->ops->claim(s, p, "q", CLIENT_A, 0, 60, 5, cid3, &c, &e), ZQ_EINVAL);
    cr_expect_eq(s->ops->claim(s, p, "q", CLIENT_A, 60, 60, 0, cid3, &c, &e), ZQ_EINVAL);

    zq_stats st;
    cr_assert_eq(s->ops->stats(s, p, "q", &st, &e), ZQ_OK);
    cr_expect_eq(st.claimed, 7);
    cr_expect_eq(st.free, 0);
    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

Test(store_redis, claim_get_update_delete)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    char ids[5][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 5, 0, 100, ids);
    char cid[ZQ_ID_LEN];
    zq_msg_vec c = {0};
    long long t0 = now_ms();
    cr_assert_eq(claim(s, p, "q", 60, 0, 3, cid, &c), 3);
    zq_msg_vec_free(&c);
    long long t1 = now_ms();

    zq_claim_info ci;
    zq_err e = {{0}};
    cr_assert_eq(s->ops->claim_get(s, p, "q", cid, &ci, &c, &e), ZQ_OK, "%s", e.msg);
    cr_expect_eq(ci.ttl, 60);
    cr_expect(ci.created_ms >= t0 - 1000 && ci.created_ms <= t1 + 1000);
    cr_expect_eq(ci.expires_ms, ci.created_ms + 60000);
    cr_assert_eq(c.n, 3);
    for (int i = 0; i < 3; i++) {
        cr_expect_str_eq(c.v[i].id, ids[i], "claim_get in marker order");
        cr_expect_eq(body_i(&c.v[i]), i);
        cr_expect_str_eq(c.v[i].claim_id, cid);
        cr_expect_eq(c.v[i].claim_expires_ms, ci.expires_ms);
        cr_expect_eq(c.v[i].ttl, 100, "ttl 100 >= 60 + grace 0: unchanged");
    }
    zq_msg_vec_free(&c);
    /* info and out are optional */
    cr_expect_eq(s->ops->claim_get(s, p, "q", cid, NULL, NULL, &e), ZQ_OK);

    /* update: new ttl, expiry from now, messages extended to expiry + grace */
    long long u0 = now_ms();
    cr_assert_eq(s->ops->claim_update(s, p, "q", cid, 300, 30, &e), ZQ_OK, "%s", e.msg);
    zq_claim_info ci2;
    cr_assert_eq(s->ops->claim_get(s, p, "q", cid, &ci2, &c, &e), ZQ_OK);
    cr_expect_eq(ci2.ttl, 300);
    cr_expect_eq(ci2.created_ms, ci.created_ms, "an update keeps the claim's age");
    cr_expect(ci2.expires_ms >= u0 + 299000 && ci2.expires_ms <= now_ms() + 301000);
    cr_assert_eq(c.n, 3);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(c.v[i].claim_expires_ms, ci2.expires_ms);
        cr_expect_geq(c.v[i].created_ms + c.v[i].ttl * 1000LL, ci2.expires_ms + 30000);
    }
    zq_msg_vec_free(&c);
    /* the unclaimed ones keep their ttl */
    zq_message m;
    cr_assert_eq(s->ops->get(s, p, "q", ids[4], &m, &e), ZQ_OK);
    cr_expect_eq(m.ttl, 100);
    zq_message_clear(&m);

    /* unknown claims */
    const char *unknown = "0123456789abcdef0123456789abcdef";
    cr_expect_eq(s->ops->claim_get(s, p, "q", unknown, &ci, &c, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->claim_get(s, p, "q", "bad:id", &ci, &c, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->claim_update(s, p, "q", unknown, 60, 60, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->claim_delete(s, p, "q", unknown, &e), ZQ_OK);
    cr_expect_eq(s->ops->claim_delete(s, p, "q", "bad:id", &e), ZQ_OK);
    cr_expect_eq(s->ops->claim_get(s, p, "other", cid, &ci, &c, &e), ZQ_ENOENT);
    cr_expect_eq(c.n, 0);

    /* release: claim gone, messages free and claimable again */
    cr_assert_eq(s->ops->claim_delete(s, p, "q", cid, &e), ZQ_OK);
    cr_expect_eq(s->ops->claim_get(s, p, "q", cid, &ci, &c, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->claim_update(s, p, "q", cid, 60, 60, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->claim_delete(s, p, "q", cid, &e), ZQ_OK);
    list_all(s, p, "q", CLIENT_B, 0, 0, &c);
    cr_expect_eq(c.n, 5);
    for (size_t i = 0; i < c.n; i++)
        cr_expect_str_eq(c.v[i].claim_id, "");
    zq_msg_vec_free(&c);
    char cid2[ZQ_ID_LEN];
    cr_assert_eq(claim(s, p, "q", 60, 0, 10, cid2, &c), 5);
    cr_expect_str_eq(c.v[0].id, ids[0]);
    zq_msg_vec_free(&c);
    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

/* Everything that needs time to pass, with a single sleep. */
Test(store_redis, expiry)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    char shortids[3][ZQ_ID_LEN], longids[3][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 3, 10, 300, longids); /* ttl 300 s */
    post_n(s, p, "q", CLIENT_A, 3, 0, 1, shortids);   /* ttl 1 s */
    zq_err e = {{0}};
    zq_msg_vec c = {0};
    char cid[ZQ_ID_LEN];
    zq_message m;
    /* a 1-second claim without grace on the first long-lived message */
    cr_assert_eq(claim(s, p, "q", 1, 0, 1, cid, &c), 1);
    cr_expect_str_eq(c.v[0].id, longids[0]);
    cr_expect_eq(c.v[0].ttl, 300);
    zq_msg_vec_free(&c);
    /* one more short message in a second queue */
    char other[1][ZQ_ID_LEN];
    post_n(s, p, "q2", CLIENT_A, 1, 20, 1, other);
    /* take the Redis-level expiry off one message hash: the store itself
     * must still treat it as expired (created + ttl <= now) */
    redisContext *rc = raw_connect();
    char key[256];
    snprintf(key, sizeof key, "zq:{%zu:%s:q}:m:%s", strlen(p), p, shortids[0]);
    redisReply *r = redisCommand(rc, "PERSIST %s", key);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1,
              "PERSIST: the message hash has no expiry or another name");
    freeReplyObject(r);

    usleep(1100 * 1000);

    /* expired messages are invisible everywhere */
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(s->ops->get(s, p, "q", shortids[i], &m, &e), ZQ_ENOENT);
        cr_expect_eq(s->ops->del(s, p, "q", shortids[i], NULL, &e), ZQ_ENOENT);
    }
    cr_expect_eq(s->ops->del(s, p, "q2", other[0], cid, &e), ZQ_ENOENT);
    zq_msg_vec v = {0};
    list_all(s, p, "q", CLIENT_B, 1, 1, &v);
    cr_assert_eq(v.n, 3);
    for (int i = 0; i < 3; i++) {
        cr_expect_str_eq(v.v[i].id, longids[i]);
        cr_expect_str_eq(v.v[i].claim_id, "", "an expired claim is no claim");
        cr_expect_eq(v.v[i].claim_expires_ms, 0);
    }
    zq_msg_vec_free(&v);
    zq_stats st;
    cr_assert_eq(s->ops->stats(s, p, "q", &st, &e), ZQ_OK);
    cr_expect_eq(st.total, 3);
    cr_expect_eq(st.free, 3);
    cr_expect_eq(st.claimed, 0);
    cr_expect_str_eq(st.oldest.id, longids[0]);
    cr_assert_eq(s->ops->stats(s, p, "q2", &st, &e), ZQ_OK);
    cr_expect_eq(st.total, 0);

    /* the claim is gone: get/update fail, delete is fine */
    zq_claim_info ci;
    cr_expect_eq(s->ops->claim_get(s, p, "q", cid, &ci, &c, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->claim_update(s, p, "q", cid, 60, 60, &e), ZQ_ENOENT);
    /* its message is free: deletable without a claim, and not with it */
    cr_expect_eq(s->ops->del(s, p, "q", longids[0], cid, &e), ZQ_EFORBIDDEN);
    cr_assert_eq(s->ops->get(s, p, "q", longids[0], &m, &e), ZQ_OK);
    cr_expect_str_eq(m.claim_id, "");
    zq_message_clear(&m);

    /* expired messages are never claimed or popped */
    char cid2[ZQ_ID_LEN];
    cr_assert_eq(claim(s, p, "q", 60, 0, 10, cid2, &c), 3);
    cr_expect_str_eq(c.v[0].id, longids[0]);
    zq_msg_vec_free(&c);
    cr_assert_eq(s->ops->pop(s, p, "q2", 10, &v, &e), ZQ_OK);
    cr_expect_eq(v.n, 0);
    cr_expect_eq(s->ops->claim_delete(s, p, "q", cid, &e), ZQ_OK);
    /* the stale release did not free the new claim's messages */
    cr_assert_eq(s->ops->claim_get(s, p, "q", cid2, &ci, &c, &e), ZQ_OK);
    cr_expect_eq(c.n, 3);
    zq_msg_vec_free(&c);
    cr_expect_eq(s->ops->del(s, p, "q", longids[0], NULL, &e), ZQ_EFORBIDDEN);
    cr_expect_eq(s->ops->del(s, p, "q", longids[0], cid2, &e), ZQ_OK);

    /* the persisted hash was collected by the store, not left behind */
    s->ops->purge(s, p, "q", &e);
    s->ops->purge(s, p, "q2", &e);
    cr_expect_eq(count_keys(rc, p), 0);
    redisFree(rc);
    s->ops->destroy(s);
}

/* ---------------------------------------------------- stats and purge */

Test(store_redis, stats)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    zq_stats st;
    zq_err e = {{0}};
    memset(&st, 0x5a, sizeof st);
    cr_assert_eq(s->ops->stats(s, p, "q", &st, &e), ZQ_OK, "%s", e.msg);
    cr_expect_eq(st.free, 0);
    cr_expect_eq(st.claimed, 0);
    cr_expect_eq(st.total, 0);

    char ids[130][ZQ_ID_LEN];
    long long t0 = now_ms();
    post_n(s, p, "q", CLIENT_A, 130, 0, 300, ids); /* more than one scan window */
    long long t1 = now_ms();
    char cid[ZQ_ID_LEN];
    zq_msg_vec c = {0};
    cr_assert_eq(claim(s, p, "q", 60, 0, 20, cid, &c), 20);
    zq_msg_vec_free(&c);

    cr_assert_eq(s->ops->stats(s, p, "q", &st, &e), ZQ_OK, "%s", e.msg);
    cr_expect_eq(st.free, 110);
    cr_expect_eq(st.claimed, 20);
    cr_expect_eq(st.total, 130);
    cr_expect_str_eq(st.oldest.id, ids[0]);
    cr_expect_str_eq(st.newest.id, ids[129]);
    cr_expect_null(st.oldest.body);
    cr_expect_null(st.newest.body);
    cr_expect(st.oldest.created_ms >= t0 - 1000 && st.oldest.created_ms <= t1 + 1000);
    cr_expect_leq(st.oldest.created_ms, st.newest.created_ms);
    cr_expect_lt(st.oldest.marker, st.newest.marker);
    cr_expect_str_eq(st.oldest.claim_id, cid);
    cr_expect_str_eq(st.newest.claim_id, "");

    const char *d[] = {ids[0], ids[129]};
    cr_assert_eq(s->ops->del_many(s, p, "q", d, 2, &e), ZQ_OK);
    cr_assert_eq(s->ops->stats(s, p, "q", &st, &e), ZQ_OK);
    cr_expect_eq(st.total, 128);
    cr_expect_eq(st.claimed, 19);
    cr_expect_str_eq(st.oldest.id, ids[1]);
    cr_expect_str_eq(st.newest.id, ids[128]);
    s->ops->purge(s, p, "q", &e);
    s->ops->destroy(s);
}

Test(store_redis, purge)
{
    zq_store *s = open_store();
    redisContext *rc = raw_connect();
    char p[64];
    new_project(p, sizeof p);
    static char ids[620][ZQ_ID_LEN];
    post_n(s, p, "q", CLIENT_A, 620, 0, 300, ids); /* more than one purge batch */
    post_n(s, p, "keep", CLIENT_A, 2, 0, 300, ids);
    char cid[ZQ_ID_LEN];
    zq_msg_vec c = {0};
    cr_assert_eq(claim(s, p, "q", 60, 0, 3, cid, &c), 3);
    zq_msg_vec_free(&c);
    cr_expect_gt(count_keys(rc, p), 620);

    zq_err e = {{0}};
    cr_assert_eq(s->ops->purge(s, p, "q", &e), ZQ_OK, "%s", e.msg);
    zq_stats st;
    cr_assert_eq(s->ops->stats(s, p, "q", &st, &e), ZQ_OK);
    cr_expect_eq(st.total, 0);
    zq_msg_vec v = {0};
    list_all(s, p, "q", CLIENT_B, 1, 1, &v);
    cr_expect_eq(v.n, 0);
    zq_claim_info ci;
    cr_expect_eq(s->ops->claim_get(s, p, "q", cid, &ci, &v, &e), ZQ_ENOENT);
    /* only the other queue's keys are left */
    char keep[128];
    snprintf(keep, sizeof keep, "%s:keep}", p);
    cr_expect_eq(count_keys(rc, p), count_keys(rc, keep), "purge left keys behind");
    /* purging again, or an unknown queue, is fine */
    cr_expect_eq(s->ops->purge(s, p, "q", &e), ZQ_OK);
    cr_expect_eq(s->ops->purge(s, p, "nosuchqueue", &e), ZQ_OK);
    /* the queue works after a purge */
    post_n(s, p, "q", CLIENT_A, 2, 0, 300, ids);
    list_all(s, p, "q", CLIENT_B, 1, 1, &v);
    cr_expect_eq(v.n, 2);
    zq_msg_vec_free(&v);
    list_all(s, p, "keep", CLIENT_B, 1, 1, &v);
    cr_expect_eq(v.n, 2);
    zq_msg_vec_free(&v);

    s->ops->purge(s, p, "q", &e);
    s->ops->purge(s, p, "keep", &e);
    cr_expect_eq(count_keys(rc, p), 0);
    redisFree(rc);
    s->ops->destroy(s);
}

Test(store_redis, project_isolation)
{
    zq_store *s = open_store();
    char p[64], pa[96], pb[96], pc[96], pd[96], qe[96];
    new_project(p, sizeof p);
    /* pairs that would collide with a naive "project:queue" or
     * "project_queue" key layout */
    snprintf(pa, sizeof pa, "%s", p);
    snprintf(pb, sizeof pb, "%s_x", p);
    snprintf(pc, sizeof pc, "%s.x", p);
    snprintf(pd, sizeof pd, "%s-x", p);
    snprintf(qe, sizeof qe, "q_%.60s", p); /* unique queue in project "" */
    struct {
        const char *proj, *queue;
    } qs[] = {{pa, "x_q"}, {pb, "q"}, {pa, "q"}, {pc, "q"}, {pd, "q"}, {"", qe}};
    size_t nq = sizeof qs / sizeof *qs;
    char ids[6][2][ZQ_ID_LEN];
    for (size_t i = 0; i < nq; i++)
        post_n(s, qs[i].proj, qs[i].queue, CLIENT_A, 2, (int)i * 10, 300, ids[i]);
    zq_err e = {{0}};
    for (size_t i = 0; i < nq; i++) {
        zq_msg_vec v = {0};
        list_all(s, qs[i].proj, qs[i].queue, CLIENT_B, 1, 1, &v);
        cr_expect_eq(v.n, 2, "queue %zu sees %zu messages", i, v.n);
        for (size_t k = 0; k < v.n; k++)
            cr_expect_eq(body_i(&v.v[k]), (int)(i * 10 + k));
        zq_msg_vec_free(&v);
        for (size_t j = 0; j < nq; j++) {
            if (j == i)
                continue;
            zq_message m;
            cr_expect_eq(s->ops->get(s, qs[j].proj, qs[j].queue, ids[i][0], &m, &e), ZQ_ENOENT,
                         "message of queue %zu visible in queue %zu", i, j);
            cr_expect_eq(s->ops->del(s, qs[j].proj, qs[j].queue, ids[i][0], NULL, &e),
                         ZQ_ENOENT);
        }
    }
    /* claims, pops and purges stay in their queue */
    char cid[ZQ_ID_LEN];
    zq_msg_vec c = {0};
    cr_assert_eq(claim(s, pa, "q", 60, 0, 10, cid, &c), 2);
    zq_msg_vec_free(&c);
    zq_claim_info ci;
    cr_expect_eq(s->ops->claim_get(s, pb, "q", cid, &ci, &c, &e), ZQ_ENOENT);
    cr_expect_eq(s->ops->claim_delete(s, pb, "q", cid, &e), ZQ_OK);
    cr_expect_eq(s->ops->claim_get(s, pa, "q", cid, &ci, &c, &e), ZQ_OK);
    cr_expect_eq(c.n, 2);
    zq_msg_vec_free(&c);
    cr_assert_eq(s->ops->pop(s, pb, "q", 10, &c, &e), ZQ_OK);
    cr_expect_eq(c.n, 2);
    zq_msg_vec_free(&c);
    cr_assert_eq(s->ops->purge(s, pc, "q", &e), ZQ_OK);
    zq_stats st;
    size_t expect_total[] = {2, 0, 2, 0, 2, 2};
    for (size_t i = 0; i < nq; i++) {
        cr_assert_eq(s->ops->stats(s, qs[i].proj, qs[i].queue, &st, &e), ZQ_OK);
        cr_expect_eq(st.total, (long long)expect_total[i], "queue %zu total %lld", i, st.total);
    }
    for (size_t i = 0; i < nq; i++)
        s->ops->purge(s, qs[i].proj, qs[i].queue, &e);
    s->ops->destroy(s);
}

/* --------------------------------------------------------- concurrency */

#define CC_MSGS 200
#define CC_THREADS 4

struct cc_claim {
    char cid[ZQ_ID_LEN];
    char ids[5][ZQ_ID_LEN];
    int n;
};

struct cc_arg {
    zq_store *s;
    const char *project;
    struct cc_claim claims[CC_MSGS + 1];
    int nclaims;
    int failed;
    char error[512];
};

static void *cc_worker(void *p)
{
    struct cc_arg *a = p;
    for (int round = 0; round <= CC_MSGS; round++) {
        char cid[ZQ_ID_LEN] = "";
        zq_msg_vec v = {0};
        zq_err e = {{0}};
        int rc = a->s->ops->claim(a->s, a->project, "q", CLIENT_A, 120, 60, 5, cid, &v, &e);
        if (rc != ZQ_OK || v.n > 5) {
            a->failed = 1;
            snprintf(a->error, sizeof a->error, "claim rc=%d n=%zu %s", rc, v.n, e.msg);
            zq_msg_vec_free(&v);
            return NULL;
        }
        if (v.n == 0)
            return NULL; /* nothing free any more */
        struct cc_claim *c = &a->claims[a->nclaims++];
        memcpy(c->cid, cid, sizeof c->cid);
        for (size_t i = 0; i < v.n; i++) {
            memcpy(c->ids[i], v.v[i].id, ZQ_ID_LEN);
            if (strcmp(v.v[i].claim_id, cid) != 0) {
                a->failed = 1;
                snprintf(a->error, sizeof a->error, "message with claim %s in claim %s",
                         v.v[i].claim_id, cid);
            }
        }
        c->n = (int)v.n;
        zq_msg_vec_free(&v);
    }
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

Test(store_redis, concurrent_claims_never_overlap)
{
    /* two stores (two connection pools, as two server processes would
     * have), two threads on each */
    zq_store *s1 = open_store(), *s2 = open_store();
    char p[64];
    new_project(p, sizeof p);
    static char ids[CC_MSGS][ZQ_ID_LEN];
    post_n(s1, p, "q", CLIENT_A, CC_MSGS, 0, 600, ids);

    static struct cc_arg args[CC_THREADS];
    pthread_t th[CC_THREADS];
    for (int i = 0; i < CC_THREADS; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].s = i % 2 ? s2 : s1;
        args[i].project = p;
        cr_assert_eq(pthread_create(&th[i], NULL, cc_worker, &args[i]), 0);
    }
    for (int i = 0; i < CC_THREADS; i++)
        pthread_join(th[i], NULL);

    static char got[CC_MSGS * 2][ZQ_ID_LEN];
    int ngot = 0, nclaims = 0;
    for (int i = 0; i < CC_THREADS; i++) {
        cr_assert(!args[i].failed, "thread %d: %s", i, args[i].error);
        for (int k = 0; k < args[i].nclaims; k++) {
            struct cc_claim *c = &args[i].claims[k];
            nclaims++;
            for (int j = 0; j < c->n; j++) {
                cr_assert_lt(ngot, CC_MSGS * 2);
                memcpy(got[ngot++], c->ids[j], ZQ_ID_LEN);
            }
        }
    }
    cr_expect_eq(ngot, CC_MSGS, "claimed %d messages in %d claims", ngot, nclaims);
    cr_expect_geq(nclaims, CC_MSGS / 5);
    qsort(got, (size_t)ngot, ZQ_ID_LEN, cmp_id);
    for (int i = 1; i < ngot; i++)
        cr_expect_str_neq(got[i], got[i - 1], "message %s is in two claims", got[i]);
    qsort(ids, CC_MSGS, ZQ_ID_LEN, cmp_id);
    if (ngot == CC_MSGS)
        for (int i = 0; i < CC_MSGS; i++)
            cr_expect_str_eq(got[i], ids[i]);

    /* every claim still holds exactly what it was given */
    zq_err e = {{0}};
    for (int i = 0; i < CC_THREADS; i++) {
        for (int k = 0; k < args[i].nclaims; k++) {
            struct cc_claim *c = &args[i].claims[k];
            zq_msg_vec v = {0};
            zq_claim_info ci;
            cr_assert_eq(s1->ops->claim_get(s1, p, "q", c->cid, &ci, &v, &e), ZQ_OK, "%s",
                         e.msg);
            cr_expect_eq((int)v.n, c->n);
            for (size_t j = 0; j < v.n && (int)j < c->n; j++)
                cr_expect_str_eq(v.v[j].id, c->ids[j]);
            zq_msg_vec_free(&v);
        }
    }
    zq_stats st;
    cr_assert_eq(s2->ops->stats(s2, p, "q", &st, &e), ZQ_OK);
    cr_expect_eq(st.claimed, CC_MSGS);
    cr_expect_eq(st.free, 0);

    s1->ops->purge(s1, p, "q", &e);
    s1->ops->destroy(s1);
    s2->ops->destroy(s2);
}

/* Many threads on one store share (and grow) its pool: no errors, and every
 * posted message is listed exactly once. */
struct pp_arg {
    zq_store *s;
    const char *project;
    int idx;
    int failed;
    char error[512];
};

static void *pp_worker(void *p)
{
    struct pp_arg *a = p;
    char q[16];
    snprintf(q, sizeof q, "q%d", a->idx % 4);
    for (int i = 0; i < 25; i++) {
        zq_new_msg m = {.body = json_pack("{s:i,s:i}", "t", a->idx, "i", i), .ttl = 300};
        char id[1][ZQ_ID_LEN];
        zq_err e = {{0}};
        int rc = a->s->ops->post(a->s, a->project, q, CLIENT_A, &m, 1, id, &e);
        json_decref(m.body);
        if (rc == ZQ_OK)
            rc = a->s->ops->ping(a->s, &e);
        if (rc != ZQ_OK) {
            a->failed = 1;
            snprintf(a->error, sizeof a->error, "rc=%d %s", rc, e.msg);
            return NULL;
        }
    }
    return NULL;
}

Test(store_redis, shared_pool_many_threads)
{
    zq_store *s = open_store();
    char p[64];
    new_project(p, sizeof p);
    enum { N = 40 }; /* more threads than the pool has connections */
    static struct pp_arg a[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        a[i] = (struct pp_arg){.s = s, .project = p, .idx = i};
        cr_assert_eq(pthread_create(&th[i], NULL, pp_worker, &a[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++)
        cr_assert(!a[i].failed, "thread %d: %s", i, a[i].error);
    long long total = 0;
    zq_err e = {{0}};
    for (int q = 0; q < 4; q++) {
        char qn[16];
        snprintf(qn, sizeof qn, "q%d", q);
        zq_msg_vec v = {0};
        list_all(s, p, qn, CLIENT_B, 1, 1, &v);
        total += (long long)v.n;
        for (size_t i = 1; i < v.n; i++)
            cr_expect_gt(v.v[i].marker, v.v[i - 1].marker);
        zq_msg_vec_free(&v);
        s->ops->purge(s, p, qn, &e);
    }
    cr_expect_eq(total, N * 25);
    s->ops->destroy(s);
}
