/*
 * pq_client - a fixed sequence of libpq calls against
 * $LDPROF_TEST_PG_CONNINFO, every result printed in a canonical text form
 * (status, rows, fields, values, SQLSTATE; nothing time- or pid-dependent),
 * so that runs with and without the preload can be compared byte for byte.
 * Knows nothing about ldprof.  Exits 0 when the sequence ran (the expected
 * SQL error included), 1 otherwise.
 *
 * Sequence (tests/e2e/31-libpq-spans.sh expects exactly these db spans):
 *   1 PQconnectdb
 *   2 PQexec          CREATE TEMP TABLE t31 (id int primary key, name text)
 *   3 PQexecParams    INSERT INTO t31 VALUES ($1, $2)            [1, "one"]
 *   4 PQexecParams    INSERT INTO t31 VALUES ($1, $2)            [2, "two \"q\""]
 *   5 PQprepare       sel31: SELECT id, name FROM t31 WHERE id >= $1 ORDER BY id
 *   6 PQexecPrepared  sel31 [1]
 *   7 PQdescribePrepared sel31
 *   8 PQexecParams    INSERT INTO t31 VALUES ($1, $2)  [1, "dup"]  -> 23505
 *   9 PQexec          SELEC 1                                      -> 42601
 *  10 PQsendQueryParams SELECT id FROM t31 WHERE id <= $1 ORDER BY id [2]
 *     + PQgetResult until NULL
 *  11 PQsendQuery     UPDATE t31 SET name = name  + PQgetResult until NULL
 *  12 PQsendPrepare   ins31: INSERT INTO t31 VALUES ($1, $2)  + PQgetResult
 *  13 PQsendQueryPrepared ins31 [3, NULL]                       + PQgetResult
 *  14 PQsendQuery     SELECT 1 AS x; SELECT 1/0   (1 row, then 22012)
 *  15 PQexecParams    SELECT $1::int4 AS b  [binary int4 42]
 *  then PQfinish (no span)
 *  16 PQconnectdbParams (dbname = the conninfo, expand_dbname)
 *  17 PQsendQuery     SELECT 2, never drained: PQfinish ends it
 *  18 PQsetdbLogin    127.0.0.1 port 1: connection refused
 *  19 PQconnectStartParams + poll()/PQconnectPoll loop: connected
 *  20 PQresetStart + poll()/PQresetPoll loop on it: reconnected
 *  21 PQexec          SELECT 3 on it, then PQfinish
 *  22 PQconnectStartParams 127.0.0.1 port 1 + poll loop: refused
 *  23 PQconnectStart  (conninfo), one PQconnectPoll at most, then PQfinish
 *                     before it completed: abandoned
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

static void print_result(const char *what, PGresult *r)
{
    ExecStatusType st;
    const char *sqlstate;

    if (r == NULL) {
        printf("%s: NULL\n", what);
        return;
    }
    st = PQresultStatus(r);
    printf("%s: status=%s", what, PQresStatus(st));
    if (st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE) {
        printf(" rows=%d fields=%d\n", PQntuples(r), PQnfields(r));
        for (int i = 0; i < PQntuples(r); i++) {
            printf("  row %d:", i);
            for (int j = 0; j < PQnfields(r); j++)
                printf(" %s=%s", PQfname(r, j), PQgetisnull(r, i, j) ? "NULL" : PQgetvalue(r, i, j));
            printf("\n");
        }
        return;
    }
    if (st == PGRES_COMMAND_OK)
        printf(" cmd=%s tuples=%s nparams=%d nfields=%d\n", PQcmdStatus(r), PQcmdTuples(r),
               PQnparams(r), PQnfields(r));
    else if (st == PGRES_FATAL_ERROR) {
        sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        printf(" sqlstate=%s primary=%s\n", sqlstate ? sqlstate : "-",
               PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    } else
        printf("\n");
}

/* Print, compare with the expected status, clear.  1 when as expected. */
static int check(const char *what, PGresult *r, ExecStatusType want)
{
    int ok = r != NULL && PQresultStatus(r) == want;

    print_result(what, r);
    PQclear(r);
    return ok;
}

static void drain(const char *what, PGconn *c)
{
    PGresult *r;
    int n = 0;
    char label[64];

    while ((r = PQgetResult(c)) != NULL) {
        snprintf(label, sizeof(label), "%s result %d", what, n++);
        print_result(label, r);
        PQclear(r);
    }
    printf("%s: %d result(s) then NULL\n", what, n);
}

/* Drive a PQconnectStart* connection to its end with poll() on PQsocket;
 * returns the final PQconnectPoll state. */
static PostgresPollingStatusType poll_connect(PGconn *c, int reset)
{
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;

    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        struct pollfd pfd = {PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        if (pfd.fd < 0 || poll(&pfd, 1, 10000) <= 0)
            return PGRES_POLLING_FAILED;
        st = reset ? PQresetPoll(c) : PQconnectPoll(c);
    }
    return st;
}

int main(void)
{
    const char *ci = getenv("LDPROF_TEST_PG_CONNINFO");
    PGconn *c;
    PGresult *r;
    const char *ins = "INSERT INTO t31 VALUES ($1, $2)";
    const char *v1[] = {"1", "one"}, *v2[] = {"2", "two \"q\""}, *v3[] = {"1", "dup"};
    const char *one[] = {"1"}, *two[] = {"2"}, *v4[] = {"3", NULL};
    const char *kw[] = {"dbname", NULL}, *vals[] = {ci, NULL};
    static const char be42[4] = {0, 0, 0, 42};
    const char *bin[] = {be42};
    const int binlen[] = {4}, binfmt[] = {1};
    const Oid int4[] = {23};
    int ok = 1;

    vals[0] = ci;
    if (ci == NULL) {
        fprintf(stderr, "pq_client: LDPROF_TEST_PG_CONNINFO is not set\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    c = PQconnectdb(ci);
    printf("connect: %s\n", PQstatus(c) == CONNECTION_OK ? "ok" : "bad");
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pq_client: %s", PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }

    r = PQexec(c, "CREATE TEMP TABLE t31 (id int primary key, name text)");
    ok &= check("create", r, PGRES_COMMAND_OK);

    r = PQexecParams(c, ins, 2, NULL, v1, NULL, NULL, 0);
    ok &= check("insert 1", r, PGRES_COMMAND_OK);
    r = PQexecParams(c, ins, 2, NULL, v2, NULL, NULL, 0);
    ok &= check("insert 2", r, PGRES_COMMAND_OK);

    r = PQprepare(c, "sel31", "SELECT id, name FROM t31 WHERE id >= $1 ORDER BY id", 1, NULL);
    ok &= check("prepare", r, PGRES_COMMAND_OK);
    r = PQexecPrepared(c, "sel31", 1, one, NULL, NULL, 0);
    ok &= check("execute", r, PGRES_TUPLES_OK);
    r = PQdescribePrepared(c, "sel31");
    ok &= check("describe", r, PGRES_COMMAND_OK);

    r = PQexecParams(c, ins, 2, NULL, v3, NULL, NULL, 0);
    ok &= check("duplicate", r, PGRES_FATAL_ERROR);
    r = PQexec(c, "SELEC 1");
    ok &= check("syntax", r, PGRES_FATAL_ERROR);

    if (!PQsendQueryParams(c, "SELECT id FROM t31 WHERE id <= $1 ORDER BY id", 1, NULL, two, NULL,
                           NULL, 0)) {
        printf("send params: failed\n");
        ok = 0;
    } else
        drain("send params", c);
    if (!PQsendQuery(c, "UPDATE t31 SET name = name")) {
        printf("send query: failed\n");
        ok = 0;
    } else
        drain("send query", c);

    /* 12-13: async prepare and execute (a NULL parameter) */
    if (!PQsendPrepare(c, "ins31", ins, 2, NULL)) {
        printf("send prepare: failed\n");
        ok = 0;
    } else
        drain("send prepare", c);
    if (!PQsendQueryPrepared(c, "ins31", 2, v4, NULL, NULL, 0)) {
        printf("send execute: failed\n");
        ok = 0;
    } else
        drain("send execute", c);
    /* 14: two statements, the second fails (22012) */
    if (!PQsendQuery(c, "SELECT 1 AS x; SELECT 1/0")) {
        printf("send multi: failed\n");
        ok = 0;
    } else
        drain("send multi", c);
    /* 15: a binary-format parameter */
    r = PQexecParams(c, "SELECT $1::int4 AS b", 1, int4, bin, binlen, binfmt, 0);
    ok &= check("binary", r, PGRES_TUPLES_OK);
    PQfinish(c);

    /* 16: PQconnectdbParams; 17: a send never drained before PQfinish */
    c = PQconnectdbParams(kw, vals, 1);
    printf("connect params: %s\n", PQstatus(c) == CONNECTION_OK ? "ok" : "bad");
    ok &= PQstatus(c) == CONNECTION_OK;
    printf("send undrained: %d\n", PQsendQuery(c, "SELECT 2"));
    PQfinish(c);

    /* 18: PQsetdbLogin to a closed port: connection refused */
    c = PQsetdbLogin("127.0.0.1", "1", NULL, NULL, "nodb", "nouser", NULL);
    printf("connect refused: %s\n", PQstatus(c) == CONNECTION_BAD ? "bad (expected)" : "ok?");
    ok &= PQstatus(c) == CONNECTION_BAD;
    PQfinish(c);

    /* 19-21: non-blocking connect, non-blocking reset, a query */
    c = PQconnectStartParams(kw, vals, 1);
    ok &= c != NULL && PQstatus(c) != CONNECTION_BAD;
    printf("connect start: %s\n",
           poll_connect(c, 0) == PGRES_POLLING_OK && PQstatus(c) == CONNECTION_OK ? "ok" : "bad");
    ok &= PQstatus(c) == CONNECTION_OK;
    ok &= PQresetStart(c) == 1;
    printf("reset start: %s\n",
           poll_connect(c, 1) == PGRES_POLLING_OK && PQstatus(c) == CONNECTION_OK ? "ok" : "bad");
    ok &= PQstatus(c) == CONNECTION_OK;
    r = PQexec(c, "SELECT 3");
    ok &= check("after connect start", r, PGRES_TUPLES_OK);
    PQfinish(c);

    /* 22: non-blocking connect to a closed port: refused */
    {
        const char *kw2[] = {"host", "port", "dbname", "user", NULL};
        const char *vals2[] = {"127.0.0.1", "1", "nodb", "nouser", NULL};
        c = PQconnectStartParams(kw2, vals2, 0);
        if (c != NULL && PQstatus(c) != CONNECTION_BAD) {
            PostgresPollingStatusType st = poll_connect(c, 0);
            printf("connect start refused: %s\n",
                   st == PGRES_POLLING_FAILED ? "failed (expected)" : "ok?");
            ok &= st == PGRES_POLLING_FAILED;
        } else {
            printf("connect start refused: start failed?\n");
            ok = 0;
        }
        PQfinish(c);
    }

    /* 23: PQconnectStart, abandoned before it completes */
    c = PQconnectStart(ci);
    printf("connect start abandoned: %s\n", c != NULL && PQstatus(c) != CONNECTION_BAD ? "started" : "bad");
    ok &= c != NULL && PQstatus(c) != CONNECTION_BAD;
    PQfinish(c);

    printf("done: %s\n", ok ? "ok" : "unexpected results");
    return ok ? 0 : 1;
}
