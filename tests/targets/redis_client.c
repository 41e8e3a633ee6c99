/*
 * tests/targets/redis_client.c - a fixed sequence of hiredis calls, for the
 * `redis` span tests (tests/e2e/30-redis-spans.sh).
 *
 * Usage: redis_client [--classify] [URI]   (default $LDPROF_TEST_REDIS_URI,
 *                                           redis://HOST:PORT[/DB])
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
 *
 * redis_client --classify [URI] runs another sequence instead, for the
 * hook's command classification (hooks/hiredis.c add_start_fields: the
 * keyless, subcommand and secret lists, EVAL/EVALSHA): commands of each
 * list, ordinary commands with the same first letters (the lists' first
 * letter masks) or near names (EXISTS with EVAL's numkeys shape, SUBSTR,
 * APPEND, COPY...), lower-case names, then an async ECHO (traced) and an
 * async SUBSCRIBE (untraced: its callback runs more than once) with a
 * PUBLISH the subscription receives, and on fresh contexts an async
 * psubscribe and MONITOR (untraced too: the hook's name list, not
 * hiredis's flags, decides for a context's first command) each seeing a
 * PUBLISH / PING.  Only the reply types are printed
 * (INFO, HELLO... carry per-run values), except the SCRIPT LOAD digest.
 * tests/e2e/30-redis-spans.sh lists the spans it expects.
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

/* One turn of the hand-made event loop: wait for what hiredis asked for,
 * then let it write and read.  0, or -1 (counted as a failure) on a 2 s
 * timeout. */
static int async_step(redisAsyncContext *ac)
{
    struct pollfd pfd = {ac->c.fd, 0, 0};
    if (want_read)
        pfd.events |= POLLIN;
    if (want_write)
        pfd.events |= POLLOUT;
    if (poll(&pfd, 1, 2000) <= 0) {
        fprintf(stderr, "redis_client: async poll timeout\n");
        failures++;
        return -1;
    }
    if (pfd.revents & POLLOUT)
        redisAsyncHandleWrite(ac);
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
        redisAsyncHandleRead(ac);
    return 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    print_reply((const char *)privdata, reply, 0);
    if (reply == NULL)
        failures++;
    async_pending--;
}

/* An async context driven by async_step (one at a time: the event flags
 * are global), or NULL after printing why. */
static redisAsyncContext *async_open(const char *host, int port)
{
    redisAsyncContext *ac = redisAsyncConnect(host, port);

    if (ac == NULL || ac->err) {
        fprintf(stderr, "redis_client: async connect: %s\n", ac ? ac->errstr : "NULL");
        if (ac != NULL)
            redisAsyncFree(ac);
        return NULL;
    }
    ac->ev.data = ac;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    want_read = 0;
    want_write = 1; /* the nonblocking connect completes on writability */
    return ac;
}

static int run_async(const char *host, int port, int db, const char *key)
{
    redisAsyncContext *ac = async_open(host, port);
    char dbs[16];
    const char *argv[2] = {"GET", key};
    int steps = 0;

    if (ac == NULL)
        return -1;
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
    while (async_pending > 0 && steps++ < 1000 && async_step(ac) == 0)
        ;
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

/* ------------------------------------------------------------ classify mode */

static const char *reply_kind(const redisReply *r)
{
    static const char *const kinds[] = {NULL, "string", "array", "integer", "nil", "status", "error"};

    if (r == NULL)
        return "NULL";
    return r->type >= 1 && r->type <= 6 ? kinds[r->type] : "other";
}

/* Print @what and the type of @r; a failure unless it is @type (-1: any
 * type but none). */
static void expect_kind(const char *what, redisReply *r, int type)
{
    printf("%s: %s\n", what, reply_kind(r));
    if (r == NULL || (type != -1 && r->type != type)) {
        fprintf(stderr, "redis_client: %s: unexpected reply %s\n", what,
                r && r->type == REDIS_REPLY_ERROR ? r->str : reply_kind(r));
        failures++;
    }
    if (r != NULL)
        freeReplyObject(r);
}

/* redisCommandArgv with its arguments listed: ARGV(c, "EVAL", "return 1", "0") */
#define ARGV(c, ...)                                                                      \
    redisCommandArgv((c), (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)), \
                     (const char *[]){__VA_ARGS__}, NULL)

static int sub_msgs, echo_done;

static void on_echo(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    (void)privdata;
    print_reply("async ECHO", reply, 0);
    if (reply == NULL)
        failures++;
    echo_done++;
}

/* Subscription callback: the confirmation, then the message (and NULL
 * when the context is freed). */
static void on_sub(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *r = reply;

    (void)ac;
    (void)privdata;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_STRING)
        printf("async SUBSCRIBE: %s\n", r->element[0]->str);
    else
        failures++;
    sub_msgs++;
}

/* Callback of psubscribe and MONITOR (@privdata: the step's name): the
 * confirmation, then each message (NULL when the context is freed).  The
 * reply's kind is printed (psubscribe / pmessage, OK), for a MONITOR line
 * (a time, a client port, the command) only whether it is the PING sent. */
static int multi_msgs;

static void on_multi(redisAsyncContext *ac, void *reply, void *privdata)
{
    const redisReply *r = reply, *w;
    const char *what = privdata;

    (void)ac;
    if (r == NULL)
        return;
    if (what == NULL || (strcmp(what, "async psubscribe") != 0 && strcmp(what, "async MONITOR") != 0)) {
        failures++; /* not the caller's privdata */
        return;
    }
    w = r->type == REDIS_REPLY_ARRAY && r->elements >= 3 ? r->element[0] : r;
    if (w->type != REDIS_REPLY_STRING && w->type != REDIS_REPLY_STATUS)
        failures++;
    else if (w != r || strcmp(w->str, "OK") == 0)
        printf("%s: %s\n", what, w->str);
    else /* a MONITOR line: a time, the client, the command */
        printf("%s: %s\n", what, strstr(w->str, "\"PING\" \"monitored\"") ? "the PING" : w->str);
    multi_msgs++;
}

/* Drive @ac (the hand-made loop of run_async) until *@count reaches @want. */
static void async_drive(redisAsyncContext *ac, const int *count, int want)
{
    for (int steps = 0; *count < want && steps < 1000 && async_step(ac) == 0; steps++)
        ;
}

static int run_classify(const char *host, int port, int db)
{
    static const char script[] = "return redis.call('GET',KEYS[1])";
    char ks[96], kc[96], kh[96], km[96], kl[96], kn[96], kp[96], kch[96], kx[96], dbs[16], sha[48] = "";
    redisAsyncContext *ac;
    redisContext *c;
    redisReply *r;
    int pid = (int)getpid();

    snprintf(ks, sizeof(ks), "ldprof:rc:%d:str", pid);
    snprintf(kc, sizeof(kc), "ldprof:rc:%d:copy", pid);
    snprintf(kh, sizeof(kh), "ldprof:rc:%d:hash", pid);
    snprintf(km, sizeof(km), "ldprof:rc:%d:m", pid);
    snprintf(kl, sizeof(kl), "ldprof:rc:%d:list", pid);
    snprintf(kn, sizeof(kn), "ldprof:rc:%d:n", pid);
    snprintf(kp, sizeof(kp), "ldprof:rc:%d:hll", pid);
    snprintf(kch, sizeof(kch), "ldprof:rc:%d:chan", pid);
    snprintf(kx, sizeof(kx), "ldprof:rc:%d:missing", pid);
    c = redisConnect(host, port);
    if (c == NULL || c->err) {
        fprintf(stderr, "redis_client: connect: %s\n", c ? c->errstr : "NULL");
        return -1;
    }

    /* keyless commands with an argument (no redis.key) */
    snprintf(dbs, sizeof(dbs), "%d", db);
    expect_kind("SELECT", redisCommand(c, "SELECT %s", dbs), REDIS_REPLY_STATUS);
    expect_kind("PING", redisCommand(c, "PING hello"), REDIS_REPLY_STRING);
    expect_kind("ECHO", redisCommand(c, "ECHO hello"), REDIS_REPLY_STRING);
    expect_kind("echo", redisCommand(c, "echo hello"), REDIS_REPLY_STRING);
    /* (no password configured: an error reply) */
    expect_kind("AUTH", redisCommand(c, "AUTH ldprof-secret-pw"), REDIS_REPLY_ERROR);
    expect_kind("HELLO", redisCommand(c, "HELLO 2 SETNAME ldprof-hello-secret"), REDIS_REPLY_ARRAY);
    expect_kind("WAIT", redisCommand(c, "WAIT 0 0"), REDIS_REPLY_INTEGER);
    expect_kind("PUBLISH", redisCommand(c, "PUBLISH %s hello", kch), REDIS_REPLY_INTEGER);
    expect_kind("UNSUBSCRIBE", redisCommand(c, "UNSUBSCRIBE %s", kch), REDIS_REPLY_ARRAY);
    expect_kind("INFO", redisCommand(c, "INFO server"), REDIS_REPLY_STRING);

    /* ordinary commands: same first letters as list entries, near names */
    expect_kind("SET", redisCommand(c, "SET %s value", ks), REDIS_REPLY_STATUS);
    expect_kind("append", redisCommand(c, "append %s -more", ks), REDIS_REPLY_INTEGER);
    expect_kind("HSET", redisCommand(c, "HSET %s field hvalue", kh), REDIS_REPLY_INTEGER);
    expect_kind("MSET", redisCommand(c, "MSET %s mvalue", km), REDIS_REPLY_STATUS);
    expect_kind("COPY", redisCommand(c, "COPY %s %s", ks, kc), REDIS_REPLY_INTEGER);
    expect_kind("EXISTS", redisCommand(c, "EXISTS %s 1 %s", ks, kc), REDIS_REPLY_INTEGER);
    expect_kind("PFADD", redisCommand(c, "PFADD %s a", kp), REDIS_REPLY_INTEGER);
    expect_kind("LPUSH", redisCommand(c, "LPUSH %s a", kl), REDIS_REPLY_INTEGER);
    expect_kind("TTL", redisCommand(c, "TTL %s", ks), REDIS_REPLY_INTEGER);
    expect_kind("INCR", redisCommand(c, "INCR %s", kn), REDIS_REPLY_INTEGER);
    expect_kind("BITCOUNT", redisCommand(c, "BITCOUNT %s", ks), REDIS_REPLY_INTEGER);
    expect_kind("UNLINK", redisCommand(c, "UNLINK %s", kp), REDIS_REPLY_INTEGER);
    expect_kind("WATCH", redisCommand(c, "WATCH %s", ks), REDIS_REPLY_STATUS);
    expect_kind("RPUSH", redisCommand(c, "RPUSH %s b", kl), REDIS_REPLY_INTEGER);
    expect_kind("DECR", redisCommand(c, "DECR %s", kn), REDIS_REPLY_INTEGER);
    expect_kind("SUBSTR", redisCommand(c, "SUBSTR %s 0 1", ks), REDIS_REPLY_STRING);

    /* subcommands (and no key) */
    r = redisCommand(c, "SCRIPT LOAD %s", script);
    if (r != NULL && r->type == REDIS_REPLY_STRING && r->len < sizeof(sha)) {
        memcpy(sha, r->str, r->len + 1);
        printf("SCRIPT LOAD: %s\n", sha);
        freeReplyObject(r);
    } else {
        expect_kind("SCRIPT LOAD", r, REDIS_REPLY_STRING);
    }
    expect_kind("SCRIPT EXISTS", redisCommand(c, "SCRIPT EXISTS %s", sha), REDIS_REPLY_ARRAY);
    expect_kind("CONFIG GET", redisCommand(c, "CONFIG GET maxmemory"), REDIS_REPLY_ARRAY);
    expect_kind("config get", redisCommand(c, "config get maxmemory"), REDIS_REPLY_ARRAY);
    expect_kind("CLIENT SETNAME", redisCommand(c, "CLIENT SETNAME ldprof-rc"), REDIS_REPLY_STATUS);
    /* (cluster support disabled: an error reply) */
    expect_kind("CLUSTER INFO", redisCommand(c, "CLUSTER INFO"), REDIS_REPLY_ERROR);
    expect_kind("COMMAND COUNT", redisCommand(c, "COMMAND COUNT"), REDIS_REPLY_INTEGER);
    expect_kind("SLOWLOG LEN", redisCommand(c, "SLOWLOG LEN"), REDIS_REPLY_INTEGER);
    expect_kind("LATENCY LATEST", redisCommand(c, "LATENCY LATEST"), REDIS_REPLY_ARRAY);
    expect_kind("MODULE LIST", redisCommand(c, "MODULE LIST"), REDIS_REPLY_ARRAY);
    expect_kind("ACL WHOAMI", redisCommand(c, "ACL WHOAMI"), REDIS_REPLY_STRING);
    expect_kind("PUBSUB NUMPAT", redisCommand(c, "PUBSUB NUMPAT"), REDIS_REPLY_INTEGER);
    /* (an array or, where the DEBUG command is disabled, an error) */
    expect_kind("DEBUG HELP", redisCommand(c, "DEBUG HELP"), -1);
    expect_kind("MEMORY USAGE", redisCommand(c, "MEMORY USAGE %s", ks), REDIS_REPLY_INTEGER);
    expect_kind("FUNCTION LIST", redisCommand(c, "FUNCTION LIST"), REDIS_REPLY_ARRAY);

    /* scripts: EVALSHA names its script, EVAL does not; keys after numkeys */
    expect_kind("EVAL 0", ARGV(c, "EVAL", "return 1", "0"), REDIS_REPLY_INTEGER);
    expect_kind("EVAL 1", ARGV(c, "EVAL", script, "1", ks), REDIS_REPLY_STRING);
    expect_kind("EVALSHA", redisCommand(c, "EVALSHA %s 1 %s", sha, ks), REDIS_REPLY_STRING);
    expect_kind("evalsha", ARGV(c, "evalsha", sha, "1", ks), REDIS_REPLY_STRING);
    expect_kind("EVALSHA_RO", redisCommand(c, "EVALSHA_RO %s 1 %s", sha, ks), REDIS_REPLY_STRING);
    expect_kind("EVAL_RO", ARGV(c, "EVAL_RO", "return 1", "0"), REDIS_REPLY_INTEGER);
    /* (no KEYS[1]: the script fails, an error reply) */
    expect_kind("EVALSHA 0", redisCommand(c, "EVALSHA %s 0", sha), REDIS_REPLY_ERROR);

    /* secret (no key missing: NOKEY before any connection) */
    expect_kind("MIGRATE", redisCommand(c, "MIGRATE 127.0.0.1 1 %s 0 1000", kx), REDIS_REPLY_STATUS);

    /* async: ECHO traced, SUBSCRIBE not; the PUBLISH reaches it */
    ac = async_open(host, port);
    if (ac == NULL) {
        failures++;
    } else {
        if (redisAsyncCommand(ac, on_echo, NULL, "ECHO hello") != REDIS_OK ||
            redisAsyncCommand(ac, on_sub, NULL, "SUBSCRIBE %s", kch) != REDIS_OK)
            failures++;
        async_drive(ac, &echo_done, 1);
        async_drive(ac, &sub_msgs, 1);
        expect_kind("PUBLISH to async", redisCommand(c, "PUBLISH %s news", kch), REDIS_REPLY_INTEGER);
        async_drive(ac, &sub_msgs, 2);
        if (echo_done != 1 || sub_msgs != 2)
            failures++;
        redisAsyncFree(ac);
    }

    /* async, the first command of a fresh context each (the hook's name
     * list decides, not hiredis's subscribed/monitoring flags): psubscribe
     * (lower case) and MONITOR, untraced, their callbacks run for every
     * message with the caller's privdata */
    if ((ac = async_open(host, port)) == NULL) {
        failures++;
    } else {
        if (redisAsyncCommand(ac, on_multi, (void *)"async psubscribe", "psubscribe %s*", kch) !=
            REDIS_OK)
            failures++;
        async_drive(ac, &multi_msgs, 1);
        expect_kind("PUBLISH to psubscribe", redisCommand(c, "PUBLISH %s pnews", kch),
                    REDIS_REPLY_INTEGER);
        async_drive(ac, &multi_msgs, 2);
        if (multi_msgs != 2)
            failures++;
        redisAsyncFree(ac);
    }
    multi_msgs = 0;
    if ((ac = async_open(host, port)) == NULL) {
        failures++;
    } else {
        if (redisAsyncCommand(ac, on_multi, (void *)"async MONITOR", "MONITOR") != REDIS_OK)
            failures++;
        async_drive(ac, &multi_msgs, 1);
        expect_kind("PING to MONITOR", redisCommand(c, "PING monitored"), REDIS_REPLY_STRING);
        async_drive(ac, &multi_msgs, 2);
        if (multi_msgs != 2)
            failures++;
        redisAsyncFree(ac);
    }

    expect_kind("DEL", redisCommand(c, "DEL %s %s %s %s %s %s", ks, kc, kh, km, kl, kn),
                REDIS_REPLY_INTEGER);
    redisFree(c);
    printf("failures: %d\n", failures);
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    int classify = argc > 1 && strcmp(argv[1], "--classify") == 0;
    const char *uri = argc > 1 + classify ? argv[1 + classify] : getenv("LDPROF_TEST_REDIS_URI");
    char host[256], k1[96], k2[96], k3[96], k4[96];
    int port, db;
    redisContext *c;
    redisReply *r;
    void *rep;

    if (uri == NULL || parse_uri(uri, host, sizeof(host), &port, &db) != 0) {
        fprintf(stderr, "usage: redis_client [--classify] redis://HOST:PORT[/DB]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (classify)
        return run_classify(host, port, db);
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
