/*
 * tests/targets/redis_client.c - a fixed sequence of hiredis calls, for the
 * `redis` span tests (tests/e2e/30-redis-spans.sh).
 *
 * Usage: redis_client [URI]   (default $LDPROF_TEST_REDIS_URI,
 *                              redis://HOST:PORT[/DB])
 *
 * Every reply is printed in a canonical text form on stdout, one line per
 * step, so that runs without the preload, with enabled=0 and traced can be
 * compared byte for byte.  The steps (and the spans a traced run shows):
 *
 *   1 redisCommand     SET %s %b           SET       status
 *   2 redisCommand     GET %s              GET       string
 *   3 redisCommandArgv DEL/RPUSH           RPUSH     integer
 *   4 pipeline: 3 x redisAppendCommand(Argv), 3 x redisGetReply
 *                      INCR, LRANGE, GET   INCR integer, LRANGE array, GET nil
 *   5 redisCommand     INCR %s  on a string (error reply)   INCR error
 *   6 async: redisAsyncCommand SET, redisAsyncCommandArgv GET, driven by
 *     hand with poll() + redisAsyncHandleRead/Write (no event library)
 *                      SET status, GET string
 *   7 redisCommand     DEL %s %s %s        DEL       integer
 *   8 redisCommand     QUIT, then PING on the closed connection
 *                                          QUIT status, PING (no reply:
 *                                          etype RedisEOFError or RedisIOError)
 *   9 40 x redisAppendCommand INCR + 40 x redisGetReply (more than the
 *     hook's 32 pending spans per context), then GET and EXISTS pipelined,
 *     then DEL              32 INCR integer (8 untraced), GET string,
 *                           EXISTS integer, DEL integer
 *  10 8 threads, each with its own context: 20 pipelines of 3 INCR on its
 *     own key (480 pipelined INCR spans), then one redisCommandArgv DEL
 *
 * Keys are prefixed with "ldprof:rc:<pid>:" so runs never collide.
 * Exit status: 0 when every step behaved as expected, 1 otherwise.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

static int failures;

static void print_reply(const char *what, const redisReply *r, int indent)
{
    if (indent == 0)
        printf("%s: ", what);
    if (r == NULL) {
        printf("NULL\n");
        return;
    }
    switch (r->type) {
    case REDIS_REPLY_STRING:
        printf("string %zu \"", r->len);
        for (size_t i = 0; i < r->len; i++) {
            unsigned char ch = (unsigned char)r->str[i];
            if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '"')
                putchar(ch);
            else
                printf("\\x%02x", ch);
        }
        printf("\"\n");
        break;
    case REDIS_REPLY_STATUS:
        printf("status \"%.*s\"\n", (int)r->len, r->str);
        break;
    case REDIS_REPLY_ERROR:
        printf("error \"%.*s\"\n", (int)r->len, r->str);
        break;
    case REDIS_REPLY_INTEGER:
        printf("integer %lld\n", r->integer);
        break;
    case REDIS_REPLY_NIL:
        printf("nil\n");
        break;
    case REDIS_REPLY_ARRAY:
        printf("array %zu\n", r->elements);
        for (size_t i = 0; i < r->elements; i++) {
            printf("%*s[%zu] ", indent + 2, "", i);
            print_reply(what, r->element[i], indent + 2);
        }
        break;
    default:
        printf("type %d\n", r->type);
    }
}

static void expect_type(const char *what, redisReply *r, int type)
{
    print_reply(what, r, 0);
    if (r == NULL || r->type != type) {
        fprintf(stderr, "redis_client: %s: unexpected reply\n", what);
        failures++;
    }
    if (r != NULL)
        freeReplyObject(r);
}

static int parse_uri(const char *uri, char *host, size_t hcap, int *port, int *db)
{
    const char *p = uri, *colon, *slash;

    if (strncmp(p, "redis://", 8) == 0)
        p += 8;
    colon = strchr(p, ':');
    slash = strchr(p, '/');
    if (colon == NULL || (size_t)(colon - p) >= hcap)
        return -1;
    memcpy(host, p, (size_t)(colon - p));
    host[colon - p] = '\0';
    *port = atoi(colon + 1);
    *db = slash ? atoi(slash + 1) : 0;
    return *port > 0 ? 0 : -1;
}

/* ------------------------------------------------------------ async step */

static int async_pending;

/* A minimal event adapter: hiredis tells us what it wants to wait for. */
static int want_read, want_write;
static void ev_add_read(void *d) { (void)d; want_read = 1; }
static void ev_del_read(void *d) { (void)d; want_read = 0; }
static void ev_add_write(void *d) { (void)d; want_write = 1; }
static void ev_del_write(void *d) { (void)d; want_write = 0; }
static void ev_cleanup(void *d) { (void)d; want_read = want_write = 0; }

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    print_reply((const char *)privdata, reply, 0);
    if (reply == NULL)
        failures++;
    async_pending--;
}

static int run_async(const char *host, int port, int db, const char *key)
{
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    char dbs[16];
    const char *argv[2] = {"GET", key};
    int steps = 0;

    if (ac == NULL || ac->err) {
        fprintf(stderr, "redis_client: async connect: %s\n", ac ? ac->errstr : "NULL");
        return -1;
    }
    ac->ev.data = ac;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    want_write = 1; /* the nonblocking connect completes on writability */
    snprintf(dbs, sizeof(dbs), "%d", db);
    /* (SELECT only when a database is named: the test URIs name none.) */
    if (db != 0 && redisAsyncCommand(ac, NULL, NULL, "SELECT %s", dbs) != REDIS_OK)
        failures++;
    if (redisAsyncCommand(ac, on_reply, (void *)"async SET", "SET %s %s", key, "async-value") != REDIS_OK)
        failures++;
    else
        async_pending++;
    usleep(1000);
    if (redisAsyncCommandArgv(ac, on_reply, (void *)"async GET", 2, argv, NULL) != REDIS_OK)
        failures++;
    else
        async_pending++;

    /* A hand-made event loop: connect completion, write, read. */
    while (async_pending > 0 && steps++ < 1000) {
        struct pollfd pfd = {ac->c.fd, 0, 0};
        if (want_read)
            pfd.events |= POLLIN;
        if (want_write)
            pfd.events |= POLLOUT;
        if (poll(&pfd, 1, 2000) <= 0) {
            fprintf(stderr, "redis_client: async poll timeout\n");
            failures++;
            break;
        }
        if (pfd.revents & POLLOUT)
            redisAsyncHandleWrite(ac);
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
            redisAsyncHandleRead(ac);
    }
    redisAsyncFree(ac);
    return 0;
}

/* ------------------------------------------------------------ threads step */

#define NTHREADS 8
#define ROUNDS 20

struct thr {
    pthread_t t;
    const char *host;
    int port, db, fails;
    char key[96];
    long long last;
};

/* Each thread: its own context, ROUNDS pipelines of 3 INCR. */
static void *thr_main(void *arg)
{
    struct thr *t = arg;
    redisContext *c = redisConnect(t->host, t->port);
    void *rep;

    if (c == NULL || c->err) {
        t->fails++;
        if (c)
            redisFree(c);
        return NULL;
    }
    if (t->db != 0) {
        redisReply *r = redisCommand(c, "SELECT %d", t->db);
        if (r)
            freeReplyObject(r);
    }
    for (int i = 0; i < ROUNDS; i++) {
        for (int j = 0; j < 3; j++)
            if (redisAppendCommand(c, "INCR %s", t->key) != REDIS_OK)
                t->fails++;
        for (int j = 0; j < 3; j++) {
            if (redisGetReply(c, &rep) != REDIS_OK) {
                t->fails++;
                continue;
            }
            redisReply *r = rep;
            if (r->type == REDIS_REPLY_INTEGER)
                t->last = r->integer;
            else
                t->fails++;
            freeReplyObject(r);
        }
    }
    redisFree(c);
    return NULL;
}

static void run_threads(const char *host, int port, int db, redisContext *c)
{
    struct thr th[NTHREADS];
    const char *argv[NTHREADS + 1];

    for (int i = 0; i < NTHREADS; i++) {
        memset(&th[i], 0, sizeof(th[i]));
        th[i].host = host;
        th[i].port = port;
        th[i].db = db;
        snprintf(th[i].key, sizeof(th[i].key), "ldprof:rc:%d:t%d", (int)getpid(), i);
        if (pthread_create(&th[i].t, NULL, thr_main, &th[i]) != 0) {
            failures++;
            th[i].fails = -1;
        }
    }
    for (int i = 0; i < NTHREADS; i++) {
        if (th[i].fails != -1)
            pthread_join(th[i].t, NULL);
        failures += th[i].fails > 0 ? th[i].fails : 0;
        printf("thread %d: last INCR %lld\n", i, th[i].last);
        argv[i + 1] = th[i].key;
    }
    argv[0] = "DEL";
    expect_type("DEL threads", redisCommandArgv(c, NTHREADS + 1, argv, NULL), REDIS_REPLY_INTEGER);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    const char *uri = argc > 1 ? argv[1] : getenv("LDPROF_TEST_REDIS_URI");
    char host[256], k1[96], k2[96], k3[96], k4[96];
    int port, db;
    redisContext *c;
    redisReply *r;
    void *rep;

    if (uri == NULL || parse_uri(uri, host, sizeof(host), &port, &db) != 0) {
        fprintf(stderr, "usage: redis_client redis://HOST:PORT[/DB]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN); /* step 8 writes to a closed connection */
    snprintf(k1, sizeof(k1), "ldprof:rc:%d:str", (int)getpid());
    snprintf(k2, sizeof(k2), "ldprof:rc:%d:list", (int)getpid());
    snprintf(k3, sizeof(k3), "ldprof:rc:%d:missing", (int)getpid());
    snprintf(k4, sizeof(k4), "ldprof:rc:%d:many", (int)getpid());

    c = redisConnect(host, port);
    if (c == NULL || c->err) {
        fprintf(stderr, "redis_client: connect: %s\n", c ? c->errstr : "NULL");
        return 1;
    }
    if (db != 0) {
        r = redisCommand(c, "SELECT %d", db);
        if (r)
            freeReplyObject(r);
    }

    /* 1, 2: redisCommand with %s and binary-safe %b */
    expect_type("SET", redisCommand(c, "SET %s %b", k1, "v\0alue", (size_t)6),
                REDIS_REPLY_STATUS);
    r = redisCommand(c, "GET %s", k1);
    print_reply("GET", r, 0);
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 6 || memcmp(r->str, "v\0alue", 6))
        failures++;
    if (r)
        freeReplyObject(r);

    /* 3: redisCommandArgv */
    {
        const char *av[4] = {"RPUSH", k2, "a", "b"};
        expect_type("RPUSH", redisCommandArgv(c, 4, av, NULL), REDIS_REPLY_INTEGER);
    }

    /* 4: a pipeline of three */
    {
        const char *av[4] = {"LRANGE", k2, "0", "-1"};
        /* (1 ms apart: the spans' start timestamps, in microseconds, then
         * order them in the dump without ties) */
        if (redisAppendCommand(c, "INCR %s", k3) != REDIS_OK)
            failures++;
        usleep(1000);
        if (redisAppendCommandArgv(c, 4, av, NULL) != REDIS_OK)
            failures++;
        usleep(1000);
        if (redisAppendCommand(c, "GET %s:nokey", k3) != REDIS_OK)
            failures++;
        if (redisGetReply(c, &rep) == REDIS_OK)
            expect_type("pipe INCR", rep, REDIS_REPLY_INTEGER);
        else
            failures++;
        if (redisGetReply(c, &rep) == REDIS_OK)
            expect_type("pipe LRANGE", rep, REDIS_REPLY_ARRAY);
        else
            failures++;
        if (redisGetReply(c, &rep) == REDIS_OK)
            expect_type("pipe GET", rep, REDIS_REPLY_NIL);
        else
            failures++;
    }

    /* 5: an error reply (INCR on a non-integer string) */
    expect_type("INCR err", redisCommand(c, "INCR %s", k1), REDIS_REPLY_ERROR);

    /* 6: async */
    if (run_async(host, port, db, k1) != 0)
        failures++;

    /* 7: clean up */
    r = redisCommand(c, "DEL %s %s %s", k1, k2, k3);
    expect_type("DEL", r, REDIS_REPLY_INTEGER);
    redisFree(c);

    /* 8: no reply at all: the server closed the connection (QUIT), the
     * next command fails in hiredis (EOF or a reset: the etype varies, the
     * printed result does not) */
    c = redisConnect(host, port);
    if (c == NULL || c->err) {
        fprintf(stderr, "redis_client: connect: %s\n", c ? c->errstr : "NULL");
        return 1;
    }
    expect_type("QUIT", redisCommand(c, "QUIT"), REDIS_REPLY_STATUS);
    r = redisCommand(c, "PING");
    print_reply("PING after QUIT", r, 0);
    if (r != NULL) {
        failures++;
        freeReplyObject(r);
    }
    redisFree(c);

    /* 9: a pipeline longer than the hook's per-context FIFO (32): 40 INCR,
     * their 40 replies, then GET and EXISTS pipelined: their spans must get
     * their own replies (string, integer) */
    c = redisConnect(host, port);
    if (c == NULL || c->err) {
        fprintf(stderr, "redis_client: connect: %s\n", c ? c->errstr : "NULL");
        return 1;
    }
    if (db != 0) {
        r = redisCommand(c, "SELECT %d", db);
        if (r)
            freeReplyObject(r);
    }
    for (int i = 0; i < 40; i++)
        if (redisAppendCommand(c, "INCR %s", k4) != REDIS_OK)
            failures++;
    for (int i = 0; i < 40; i++) {
        if (redisGetReply(c, &rep) != REDIS_OK) {
            failures++;
            break;
        }
        r = rep;
        if (r->type != REDIS_REPLY_INTEGER || r->integer != i + 1)
            failures++;
        if (i == 39)
            print_reply("pipe40 INCR", r, 0);
        freeReplyObject(r);
    }
    if (redisAppendCommand(c, "GET %s", k4) != REDIS_OK)
        failures++;
    usleep(1000);
    if (redisAppendCommand(c, "EXISTS %s", k4) != REDIS_OK)
        failures++;
    if (redisGetReply(c, &rep) == REDIS_OK)
        expect_type("pipe40 GET", rep, REDIS_REPLY_STRING);
    else
        failures++;
    if (redisGetReply(c, &rep) == REDIS_OK)
        expect_type("pipe40 EXISTS", rep, REDIS_REPLY_INTEGER);
    else
        failures++;
    expect_type("DEL many", redisCommand(c, "DEL %s", k4), REDIS_REPLY_INTEGER);

    /* 10: 8 threads, each with its own context, 20 pipelines of 3 INCR */
    run_threads(host, port, db, c);
    redisFree(c);

    printf("failures: %d\n", failures);
    return failures ? 1 : 0;
}
