/*
 * tests/bench/micro_calls.c - intercepted calls in a loop, for
 * tests/bench/micro.sh (`make bench`, part 2: pass-through cost).
 *
 * Knows nothing about ldprof: micro.sh runs it with and without
 * LD_PRELOAD=libldprof.so (and with LDPROF_ENABLED=0, and traced through
 * client profile mode, LDPROF_PROFILE), natively for time and under
 * valgrind --tool=callgrind for instructions.
 *
 *   micro_calls MODE N
 *
 * MODE  sock   send() of 1 byte + recv() of it on a unix socketpair
 *              (one op = 2 intercepted calls)
 *       redis  redisCommand(c, "GET %s", key) on $LDPROF_TEST_REDIS_URI
 *       pg     PQexec(conn, "SELECT 1") on $LDPROF_TEST_PG_CONNINFO
 * N     operations timed, after a fixed warm-up of WARMUP operations.
 *
 * Prints "ns_per_op <float>" (CLOCK_MONOTONIC around the N operations).
 * Under callgrind the instructions of one run are start-up + warm-up +
 * N ops; micro.sh runs N and 2N and takes the difference, so start-up
 * and warm-up cancel.  Exit 0, or 1 with a message on any failure (a
 * benchmark that does not do what it says must not print a figure).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#define WARMUP 200

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "micro_calls: %s\n", what);
    exit(1);
}

/* ------------------------------------------------------------ sock */

static int sv[2];

static void sock_setup(void)
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        die(strerror(errno));
}

static void sock_op(void)
{
    char c = 'x';
    if (send(sv[0], &c, 1, 0) != 1 || recv(sv[1], &c, 1, 0) != 1)
        die("send/recv on the socketpair failed");
}

/* ------------------------------------------------------------ redis */

static redisContext *rc;

/* redis://HOST[:PORT][/DB] (the form with-services.sh exports). */
static void redis_setup(void)
{
    const char *uri = getenv("LDPROF_TEST_REDIS_URI");
    char host[256] = "127.0.0.1";
    int port = 6379, db = 0;

    if (uri == NULL || strncmp(uri, "redis://", 8) != 0)
        die("LDPROF_TEST_REDIS_URI (redis://HOST:PORT[/DB]) is not set");
    if (sscanf(uri + 8, "%255[^:/]:%d/%d", host, &port, &db) < 1)
        die("cannot parse LDPROF_TEST_REDIS_URI");
    rc = redisConnect(host, port);
    if (rc == NULL || rc->err)
        die("cannot connect to redis");
}

static void redis_op(void)
{
    redisReply *r = redisCommand(rc, "GET %s", "ldprof:bench:micro:absent");
    if (r == NULL || r->type != REDIS_REPLY_NIL)
        die("GET did not return nil");
    freeReplyObject(r);
}

/* ------------------------------------------------------------ pg */

static PGconn *pg;

static void pg_setup(void)
{
    const char *ci = getenv("LDPROF_TEST_PG_CONNINFO");

    if (ci == NULL)
        die("LDPROF_TEST_PG_CONNINFO is not set");
    pg = PQconnectdb(ci);
    if (PQstatus(pg) != CONNECTION_OK)
        die(PQerrorMessage(pg));
}

static void pg_op(void)
{
    PGresult *r = PQexec(pg, "SELECT 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        die(PQerrorMessage(pg));
    PQclear(r);
}

int main(int argc, char **argv)
{
    void (*op)(void);
    long n;
    double t0, t1;

    if (argc != 3 || (n = atol(argv[2])) <= 0) {
        fprintf(stderr, "usage: micro_calls sock|redis|pg N\n");
        return 2;
    }
    if (strcmp(argv[1], "sock") == 0) {
        sock_setup();
        op = sock_op;
    } else if (strcmp(argv[1], "redis") == 0) {
        redis_setup();
        op = redis_op;
    } else if (strcmp(argv[1], "pg") == 0) {
        pg_setup();
        op = pg_op;
    } else {
        fprintf(stderr, "micro_calls: unknown mode %s\n", argv[1]);
        return 2;
    }
    for (int i = 0; i < WARMUP; i++)
        op();
    t0 = now_ns();
    for (long i = 0; i < n; i++)
        op();
    t1 = now_ns();
    printf("ns_per_op %.1f\n", (t1 - t0) / (double)n);
    if (rc != NULL)
        redisFree(rc);
    if (pg != NULL)
        PQfinish(pg);
    return 0;
}
