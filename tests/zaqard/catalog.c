/*
 * catalog.c - the PostgreSQL catalog (see catalog.h for the contract).
 *
 * Connection pool: `slots` is a fixed array of connections; `free_slots` is
 * a stack of the ones not in use.  A thread takes a slot (waiting on `cv`
 * while none is free), uses its PGconn alone, and gives it back.  Only the
 * free stack is shared: `mu` guards free_slots/nfree; a slot's own fields
 * belong to whoever holds the slot.
 */
#include "catalog.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Statements prepared once per connection (the hot paths). */
enum {
    ST_QUEUE_POOL,
    ST_QUEUE_GET,
    ST_QUEUE_PUT,
    ST_QUEUE_ENSURE,
    ST_QUEUE_LIST,
    ST_QUEUE_LIST_MD,
    ST_COUNT,
    ST_ADHOC = -1, /* run with PQexecParams */
};

/* `xmax = 0` in RETURNING is true for a freshly inserted row and false for
 * one updated by ON CONFLICT DO UPDATE: that is how created/updated is told
 * apart in one round trip.  Names sort bytewise (COLLATE "C") whatever the
 * database's collation. */
static const struct {
    const char *name;
    const char *sql;
    int nparams;
} prepared[ST_COUNT] = {
    [ST_QUEUE_POOL] = {"zq_queue_pool",
                       "SELECT pool FROM queues WHERE project = $1 AND name = $2", 2},
    [ST_QUEUE_GET] = {"zq_queue_get",
                      "SELECT pool, metadata FROM queues WHERE project = $1 AND name = $2", 2},
    [ST_QUEUE_PUT] = {"zq_queue_put",
                      "INSERT INTO queues (project, name, pool, metadata, created) "
                      "VALUES ($1, $2, $3, $4, $5) "
                      "ON CONFLICT (project, name) DO UPDATE SET metadata = EXCLUDED.metadata "
                      "RETURNING pool, (xmax = 0)", 5},
    [ST_QUEUE_ENSURE] = {"zq_queue_ensure",
                         "INSERT INTO queues (project, name, pool, metadata, created) "
                         "VALUES ($1, $2, $3, '{}', $4) "
                         "ON CONFLICT (project, name) DO UPDATE SET pool = queues.pool "
                         "RETURNING pool, metadata", 4},
    [ST_QUEUE_LIST] = {"zq_queue_list",
                       "SELECT name FROM queues WHERE project = $1 AND name COLLATE \"C\" > $2 "
                       "ORDER BY name COLLATE \"C\" LIMIT $3", 3},
    [ST_QUEUE_LIST_MD] = {"zq_queue_list_md",
                          "SELECT name, metadata FROM queues WHERE project = $1 "
                          "AND name COLLATE \"C\" > $2 ORDER BY name COLLATE \"C\" LIMIT $3", 3},
};

static const char *const schema[] = {
    "CREATE TABLE IF NOT EXISTS pools (name text PRIMARY KEY, uri text NOT NULL, "
    "weight int NOT NULL, pool_group text NOT NULL DEFAULT '')",
    "CREATE TABLE IF NOT EXISTS flavors (project text NOT NULL, name text NOT NULL, "
    "pool_group text NOT NULL, PRIMARY KEY (project, name))",
    "CREATE TABLE IF NOT EXISTS queues (project text NOT NULL, name text NOT NULL, "
    "pool text NOT NULL, metadata text NOT NULL DEFAULT '{}', created bigint NOT NULL, "
    "PRIMARY KEY (project, name))",
};

typedef struct {
    PGconn *conn;  /* NULL until first use */
    int prepared;  /* the statements above exist on conn */
} pg_slot;

struct zq_catalog {
    char *conninfo;
    pg_slot *slots;
    size_t nslots;
    pthread_mutex_t mu;    /* guards free_slots and nfree */
    pthread_cond_t cv;     /* signalled when a slot is returned */
    pg_slot **free_slots;
    size_t nfree;
};

/* ------------------------------------------------------------ connections */

static void set_err(zq_err *err, const char *what, const char *detail)
{
    snprintf(err->msg, sizeof err->msg, "catalog: %s: %s", what, detail ? detail : "");
    /* libpq messages span lines and quote names: make them one log-safe line */
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\t' || *p == '\r')
            *p = ' ';
        else if (*p == '"')
            *p = '\'';
    size_t n = strlen(err->msg);
    while (n && err->msg[n - 1] == ' ')
        err->msg[--n] = '\0';
}

/* Server notices (e.g. "relation already exists, skipping") go to the
 * debug log instead of libpq's default of printing to stderr. */
static void on_notice(void *arg, const char *message)
{
    char line[256];
    size_t i = 0;
    (void)arg;
    for (; message[i] && i + 1 < sizeof line; i++)
        line[i] = (message[i] == '"' || (unsigned char)message[i] < 0x20) ? ' ' : message[i];
    line[i] = '\0';
    zq_log(ZQ_LOG_DEBUG, "catalog notice", "detail=\"%s\"", line);
}

static PGconn *pg_connect(const char *conninfo)
{
    /* Later entries win, so the user's conninfo (expanded from "dbname")
     * overrides our defaults: bounded connects, and TCP keepalives so that
     * a vanished server is noticed within seconds instead of hanging. */
    const char *const keys[] = {"connect_timeout", "keepalives", "keepalives_idle",
                                "keepalives_interval", "keepalives_count",
                                "fallback_application_name", "client_encoding", "dbname", NULL};
    const char *const vals[] = {"5", "1", "5", "2", "3", "zaqard", "UTF8", conninfo, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn)
        PQsetNoticeProcessor(conn, on_notice, NULL);
    return conn;
}

static int prepare_all(pg_slot *s, zq_err *err)
{
    for (int i = 0; i < ST_COUNT; i++) {
        PGresult *r = PQprepare(s->conn, prepared[i].name, prepared[i].sql,
                                prepared[i].nparams, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            set_err(err, "prepare", PQresultErrorMessage(r));
        PQclear(r);
        if (!ok)
            return ZQ_EBACKEND;
    }
    s->prepared = 1;
    return ZQ_OK;
}

/* Makes the slot's connection usable: connects on first use, PQresets a
 * broken one (once per call).  A fresh session has no prepared statements
 * (run() prepares them on first need: the tables must exist by then). */
static int slot_ready(zq_catalog *c, pg_slot *s, zq_err *err)
{
    if (!s->conn) {
        s->conn = pg_connect(c->conninfo);
        s->prepared = 0;
        if (!s->conn) {
            set_err(err, "connect", "out of memory");
            return ZQ_EBACKEND;
        }
    } else if (PQstatus(s->conn) == CONNECTION_BAD) {
        PQreset(s->conn);
        s->prepared = 0;
    }
    if (PQstatus(s->conn) != CONNECTION_OK) {
        set_err(err, "connect", PQerrorMessage(s->conn));
        return ZQ_EBACKEND;
    }
    return ZQ_OK;
}

static pg_slot *acquire(zq_catalog *c)
{
    pthread_mutex_lock(&c->mu);
    while (c->nfree == 0)
        pthread_cond_wait(&c->cv, &c->mu);
    pg_slot *s = c->free_slots[--c->nfree];
    pthread_mutex_unlock(&c->mu);
    return s;
}

static void release(zq_catalog *c, pg_slot *s)
{
    pthread_mutex_lock(&c->mu);
    c->free_slots[c->nfree++] = s;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Runs one statement (prepared `st`, or `sql` when st == ST_ADHOC) with text
 * parameters.  When the connection turns out to be broken, it is reset and
 * the statement retried once (every statement here is idempotent, except
 * that a retried create may then report "updated").  *out receives the
 * successful result (the caller PQclears it), NULL on failure. */
static int run(zq_catalog *c, pg_slot *s, int st, const char *sql, int n,
               const char *const *vals, PGresult **out, zq_err *err)
{
    *out = NULL;
    for (int attempt = 0;; attempt++) {
        if (slot_ready(c, s, err) != ZQ_OK)
            return ZQ_EBACKEND;
        if (st != ST_ADHOC && !s->prepared && prepare_all(s, err) != ZQ_OK) {
            if (PQstatus(s->conn) != CONNECTION_BAD || attempt > 0)
                return ZQ_EBACKEND;
            continue;
        }
        PGresult *r = st == ST_ADHOC
            ? PQexecParams(s->conn, sql, n, NULL, vals, NULL, NULL, 0)
            : PQexecPrepared(s->conn, prepared[st].name, n, vals, NULL, NULL, 0);
        ExecStatusType rs = PQresultStatus(r);
        if (rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK) {
            *out = r;
            return ZQ_OK;
        }
        set_err(err, st == ST_ADHOC ? "query" : prepared[st].name,
                r ? PQresultErrorMessage(r) : PQerrorMessage(s->conn));
        PQclear(r);
        if (PQstatus(s->conn) != CONNECTION_BAD || attempt > 0)
            return ZQ_EBACKEND;
    }
}

/* run() on a pooled connection, for one-statement operations. */
static int run1(zq_catalog *c, int st, const char *sql, int n, const char *const *vals,
                PGresult **out, zq_err *err)
{
    pg_slot *s = acquire(c);
    int rc = run(c, s, st, sql, n, vals, out, err);
    release(c, s);
    return rc;
}

/* run1() for statements whose result is not needed. */
static int run1_void(zq_catalog *c, const char *sql, int n, const char *const *vals, zq_err *err)
{
    PGresult *r = NULL;
    int rc = run1(c, ST_ADHOC, sql, n, vals, &r, err);
    PQclear(r);
    return rc;
}

static char *dup_value(const PGresult *r, int row, int col)
{
    const char *v = PQgetisnull(r, row, col) ? "{}" : PQgetvalue(r, row, col);
    char *d = strdup(v);
    if (!d)
        abort(); /* out of memory in a test server */
    return d;
}

/* ------------------------------------------------------------ lifecycle */

/* Creates the tables inside a transaction serialised by an advisory lock,
 * so several zaqards starting on one database do not race. */
static int create_schema(zq_catalog *c, pg_slot *s, zq_err *err)
{
    PGresult *r = NULL;
    const char *lock_key[] = {"7305937281"};
    int rc = run(c, s, ST_ADHOC, "BEGIN", 0, NULL, &r, err);
    PQclear(r);
    if (rc == ZQ_OK) {
        rc = run(c, s, ST_ADHOC, "SELECT pg_advisory_xact_lock($1::bigint)", 1, lock_key, &r, err);
        PQclear(r);
    }
    for (size_t i = 0; rc == ZQ_OK && i < sizeof schema / sizeof *schema; i++) {
        rc = run(c, s, ST_ADHOC, schema[i], 0, NULL, &r, err);
        PQclear(r);
    }
    if (rc == ZQ_OK) {
        rc = run(c, s, ST_ADHOC, "COMMIT", 0, NULL, &r, err);
    } else {
        zq_err ignored; /* keep the first error */
        run(c, s, ST_ADHOC, "ROLLBACK", 0, NULL, &r, &ignored);
    }
    PQclear(r);
    return rc;
}

zq_catalog *zq_catalog_open(const char *conninfo, size_t nconns, zq_err *err)
{
    zq_catalog *c = calloc(1, sizeof *c);
    if (!c || nconns == 0) {
        set_err(err, "open", "bad arguments or out of memory");
        free(c);
        return NULL;
    }
    c->conninfo = strdup(conninfo);
    c->slots = calloc(nconns, sizeof *c->slots);
    c->free_slots = calloc(nconns, sizeof *c->free_slots);
    if (!c->conninfo || !c->slots || !c->free_slots) {
        set_err(err, "open", "out of memory");
        zq_catalog_close(c);
        return NULL;
    }
    c->nslots = nconns;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    for (size_t i = 0; i < nconns; i++)
        c->free_slots[c->nfree++] = &c->slots[nconns - 1 - i];
    pg_slot *s = acquire(c);
    int rc = create_schema(c, s, err);
    release(c, s);
    if (rc != ZQ_OK) {
        zq_catalog_close(c);
        return NULL;
    }
    return c;
}

void zq_catalog_close(zq_catalog *c)
{
    if (!c)
        return;
    if (c->slots) {
        for (size_t i = 0; i < c->nslots; i++)
            if (c->slots[i].conn)
                PQfinish(c->slots[i].conn);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
    }
    free(c->slots);
    free(c->free_slots);
    free(c->conninfo);
    free(c);
}

int zq_catalog_register_pools(zq_catalog *c, const zq_pool_cfg *pools, size_t n, zq_err *err)
{
    static const char sql[] =
        "INSERT INTO pools (name, uri, weight, pool_group) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (name) DO UPDATE SET uri = EXCLUDED.uri, weight = EXCLUDED.weight, "
        "pool_group = EXCLUDED.pool_group";
    for (size_t i = 0; i < n; i++) {
        char weight[16];
        snprintf(weight, sizeof weight, "%d", pools[i].weight);
        const char *v[] = {pools[i].name, pools[i].uri, weight, pools[i].group};
        int rc = run1_void(c, sql, 4, v, err);
        if (rc != ZQ_OK)
            return rc;
    }
    return ZQ_OK;
}

int zq_catalog_ping(zq_catalog *c, zq_err *err)
{
    return run1_void(c, "SELECT 1", 0, NULL, err);
}

/* ------------------------------------------------------------ queues */

int zq_catalog_queue_get(zq_catalog *c, const char *project, const char *name,
                         char pool[ZQ_NAME_MAX + 1], char **metadata, zq_err *err)
{
    const char *v[] = {project, name};
    PGresult *r = NULL;
    int rc = run1(c, metadata ? ST_QUEUE_GET : ST_QUEUE_POOL, NULL, 2, v, &r, err);
    if (rc == ZQ_OK && PQntuples(r) == 0)
        rc = ZQ_ENOENT;
    if (rc == ZQ_OK) {
        snprintf(pool, ZQ_NAME_MAX + 1, "%s", PQgetvalue(r, 0, 0));
        if (metadata)
            *metadata = dup_value(r, 0, 1);
    }
    PQclear(r);
    return rc;
}

int zq_catalog_queue_put(zq_catalog *c, const char *project, const char *name,
                         const char *new_pool, const char *metadata, int *created,
                         char pool[ZQ_NAME_MAX + 1], zq_err *err)
{
    char now[24];
    snprintf(now, sizeof now, "%lld", zq_now_ms());
    const char *v[] = {project, name, new_pool, metadata, now};
    PGresult *r = NULL;
    int rc = run1(c, ST_QUEUE_PUT, NULL, 5, v, &r, err);
    if (rc == ZQ_OK && PQntuples(r) != 1) {
        set_err(err, "queue put", "no row returned");
        rc = ZQ_EBACKEND;
    }
    if (rc == ZQ_OK) {
        snprintf(pool, ZQ_NAME_MAX + 1, "%s", PQgetvalue(r, 0, 0));
        *created = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    }
    PQclear(r);
    return rc;
}

int zq_catalog_queue_ensure(zq_catalog *c, const char *project, const char *name,
                            const char *new_pool, char pool[ZQ_NAME_MAX + 1],
                            char **metadata, zq_err *err)
{
    char now[24];
    snprintf(now, sizeof now, "%lld", zq_now_ms());
    const char *v[] = {project, name, new_pool, now};
    PGresult *r = NULL;
    int rc = run1(c, ST_QUEUE_ENSURE, NULL, 4, v, &r, err);
    if (rc == ZQ_OK && PQntuples(r) != 1) {
        set_err(err, "queue ensure", "no row returned");
        rc = ZQ_EBACKEND;
    }
    if (rc == ZQ_OK) {
        snprintf(pool, ZQ_NAME_MAX + 1, "%s", PQgetvalue(r, 0, 0));
        if (metadata)
            *metadata = dup_value(r, 0, 1);
    }
    PQclear(r);
    return rc;
}

int zq_catalog_queue_delete(zq_catalog *c, const char *project, const char *name, zq_err *err)
{
    const char *v[] = {project, name};
    return run1_void(c, "DELETE FROM queues WHERE project = $1 AND name = $2", 2, v, err);
}

int zq_catalog_queue_list(zq_catalog *c, const char *project, const char *marker,
                          int limit, int with_metadata, zq_queue_list *out, zq_err *err)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *v[] = {project, marker, lim};
    PGresult *r = NULL;
    out->v = NULL;
    out->n = 0;
    int rc = run1(c, with_metadata ? ST_QUEUE_LIST_MD : ST_QUEUE_LIST, NULL, 3, v, &r, err);
    if (rc != ZQ_OK)
        return rc;
    int rows = PQntuples(r);
    if (rows > 0) {
        out->v = calloc((size_t)rows, sizeof *out->v);
        if (!out->v)
            abort(); /* out of memory in a test server */
    }
    for (int i = 0; i < rows; i++) {
        snprintf(out->v[i].name, sizeof out->v[i].name, "%s", PQgetvalue(r, i, 0));
        if (with_metadata)
            out->v[i].metadata = dup_value(r, i, 1);
    }
    out->n = (size_t)rows;
    PQclear(r);
    return ZQ_OK;
}

void zq_queue_list_free(zq_queue_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].metadata);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* ------------------------------------------------------------ flavors */

int zq_catalog_flavor_put(zq_catalog *c, const char *project, const char *name,
                          const char *group, int *created, zq_err *err)
{
    const char *v[] = {project, name, group};
    PGresult *r = NULL;
    int rc = run1(c, ST_ADHOC,
                  "INSERT INTO flavors (project, name, pool_group) VALUES ($1, $2, $3) "
                  "ON CONFLICT (project, name) DO UPDATE SET pool_group = EXCLUDED.pool_group "
                  "RETURNING (xmax = 0)", 3, v, &r, err);
    if (rc == ZQ_OK)
        *created = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return rc;
}

int zq_catalog_flavor_get(zq_catalog *c, const char *project, const char *name,
                          char group[ZQ_NAME_MAX + 1], zq_err *err)
{
    const char *v[] = {project, name};
    PGresult *r = NULL;
    int rc = run1(c, ST_ADHOC, "SELECT pool_group FROM flavors WHERE project = $1 AND name = $2",
                  2, v, &r, err);
    if (rc == ZQ_OK && PQntuples(r) == 0)
        rc = ZQ_ENOENT;
    if (rc == ZQ_OK)
        snprintf(group, ZQ_NAME_MAX + 1, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

int zq_catalog_flavor_delete(zq_catalog *c, const char *project, const char *name, zq_err *err)
{
    const char *v[] = {project, name};
    return run1_void(c, "DELETE FROM flavors WHERE project = $1 AND name = $2", 2, v, err);
}
