/*
 * hooks/libpq.c - libpq (PostgreSQL client) wrappers: `db` spans.
 *
 * `db` is OSProfiler's span name for SQL (osprofiler.sqlalchemy); the
 * toggle is therefore trace_sqlalchemy / LDPROF_TRACE_SQLALCHEMY, and
 * record_values / LDPROF_RECORD_VALUES decides whether parameter values are
 * recorded.  Fields: docs/formats.md, "db spans".
 *
 * Layers (style item 2): exported PQexec() -> static ldprof_PQexec() (span,
 * policy) -> real_PQexec (libpq's, found with dlsym(RTLD_NEXT) on the first
 * call of any wrapper here, since libpq may be loaded after our constructor
 * or never).  A symbol dlsym cannot find is looked up once more in an
 * already loaded libpq.so.5 (RTLD_NOLOAD: an app that dlopen()ed libpq
 * RTLD_LOCAL); if it is still missing the wrapper logs once and fails the
 * way libpq fails on out-of-memory (NULL / 0), never killing the host.
 *
 * Which calls record (all others make one call to real_* and return):
 *   ldprof on, trace_sqlalchemy on, and the thread is not already inside
 *   ldprof (depth 0).  The real call then runs at depth 1, so PQexec's own
 *   inner PQgetResult/PQsendQuery and the socket I/O below it record
 *   nothing: one libpq call, one span.  ldprof_span_begin() returns NULL
 *   when the thread is not in a trace: then the call is passed through.
 *
 * Spans and their lifetime:
 *   blocking   PQexec, PQexecParams, PQprepare, PQexecPrepared,
 *              PQdescribePrepared: the span covers the call.
 *   connect    PQconnectdb, PQconnectdbParams, PQsetdbLogin (PQsetdb is a
 *              macro for it): the span covers the call, db.operation
 *              "connect".
 *   nb-connect PQconnectStart, PQconnectStartParams (db.operation
 *              "connect"), PQresetStart (db.operation "reset"): the span
 *              runs from the start call to the PQconnectPoll/PQresetPoll
 *              that returns PGRES_POLLING_OK or PGRES_POLLING_FAILED, with
 *              the blocking connect's stop info; a connection PQfinish'ed
 *              (or PQreset) before that ends it with db.status
 *              "abandoned".  Kept in the pending table below (one entry
 *              per PGconn, table full: not recorded) and, like an async
 *              span, not the thread's current span.  A start that fails at
 *              once (NULL, CONNECTION_BAD, PQresetStart 0) ends the span
 *              with the error right there.
 *   async      PQsendQuery, PQsendQueryParams, PQsendPrepare,
 *              PQsendQueryPrepared: the span runs from the send to the NULL
 *              PQgetResult() that ends the command.  It is kept in a fixed
 *              table of LDPQ_PENDING entries keyed by PGconn (no malloc):
 *              at most ONE pending span per connection (a second send
 *              while one is pending, e.g. pipeline mode, is passed through
 *              unrecorded), and when the table is full the send is passed
 *              through unrecorded.  An async span is not the thread's
 *              current span (spans begun between send and result are not
 *              its children).  A pending span whose results the app never
 *              drains is ended (db.status "abandoned") by PQfinish/PQreset,
 *              or by the next traced blocking call on the same
 *              connection (libpq discards them there).
 *
 * Prepared statements: PQprepare/PQsendPrepare remember (conn, name) -> SQL
 * in a fixed table of LDPQ_PREPARED (256) entries (names up to 63 bytes, SQL up
 * to 511 bytes kept, longer SQL cut); PQexecPrepared, PQsendQueryPrepared
 * and PQdescribePrepared then show that SQL as db.statement.  When the
 * table is full, new statements are not remembered (db.statement is left
 * out; db.prepared always names the statement).  PQfinish forgets a
 * connection's statements; SQL-level PREPARE/DEALLOCATE are not followed.
 *
 * The PGresult and the connection are never changed: the wrappers only read
 * the result the app receives (PQresultStatus, PQntuples, PQcmdTuples,
 * PQresultErrorField, PQresultErrorMessage, PQnfields) and, after a
 * connect, PQstatus/PQerrorMessage/PQdb/PQhost/PQport/PQuser.  errno is
 * restored after the bookkeeping; return values are the real ones.
 */
#define PR_FMT "libpq"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "ldprof/ldprof.h"
#include "preload/config.h"
#include "preload/init.h"
#include "preload/log.h"
#include "preload/real.h"
#include "preload/span.h"
#include "preload/tls.h"

/* ------------------------------------------------------------ real symbols */

#define LDPQ_SYMBOLS(X)                                                                  \
    X(PQexec) X(PQexecParams) X(PQprepare) X(PQexecPrepared) X(PQdescribePrepared)       \
    X(PQsendQuery) X(PQsendQueryParams) X(PQsendPrepare) X(PQsendQueryPrepared)          \
    X(PQgetResult) X(PQconnectdb) X(PQconnectdbParams) X(PQsetdbLogin) X(PQfinish)       \
    X(PQreset) X(PQconnectStart) X(PQconnectStartParams) X(PQconnectPoll)                \
    X(PQresetStart) X(PQresetPoll)                                                       \
    /* readers of the result/connection the app gets (bookkeeping only) */             \
    X(PQresultStatus) X(PQntuples) X(PQcmdTuples) X(PQresultErrorField)                  \
    X(PQresultErrorMessage) X(PQresStatus) X(PQnparams) X(PQnfields) X(PQerrorMessage)   \
    X(PQstatus) X(PQhost) X(PQport) X(PQdb) X(PQuser)

#define LDPQ_DECL(sym) static __typeof__(sym) *real_##sym;
LDPQ_SYMBOLS(LDPQ_DECL)
#undef LDPQ_DECL

#define LDPQ_ENTRY(sym) {(void **)&real_##sym, #sym},
static const struct ldprof_sym pq_table[] = {LDPQ_SYMBOLS(LDPQ_ENTRY)};
#undef LDPQ_ENTRY
#define PQ_NSYMS ((int)(sizeof(pq_table) / sizeof(pq_table[0])))

static int pq_resolved;
static int pq_readers_ok; /* every reader resolved: recording allowed */

/* Resolve the whole table on the first call of any wrapper.  Idempotent
 * atomic stores of the same values: no lock needed (real.h). */
static void pq_resolve(void)
{
    int saved = errno;

    if (ldprof_sym_resolve(pq_table, PQ_NSYMS) > 0) {
        /* libpq dlopen()ed RTLD_LOCAL: not in RTLD_NEXT's scope, but its
         * handle finds its own definitions. */
        void *h = dlopen("libpq.so.5", RTLD_LAZY | RTLD_NOLOAD);
        for (int i = 0; i < PQ_NSYMS; i++) {
            void *p = NULL;
            if (__atomic_load_n(pq_table[i].ptr, __ATOMIC_ACQUIRE) != LDPROF_SYM_MISSING)
                continue;
            if (h != NULL)
                p = dlsym(h, pq_table[i].name);
            if (p != NULL)
                __atomic_store_n(pq_table[i].ptr, p, __ATOMIC_RELEASE);
            else
                pr_warn("%s() not found: calls to it fail", pq_table[i].name);
        }
    }
    {
        int ok = 1;
        for (int i = 0; i < PQ_NSYMS; i++)
            if (__atomic_load_n(pq_table[i].ptr, __ATOMIC_ACQUIRE) == LDPROF_SYM_MISSING)
                ok = 0;
        __atomic_store_n(&pq_readers_ok, ok, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&pq_resolved, 1, __ATOMIC_RELEASE);
    errno = saved;
}

/* At the top of every wrapper: real_<sym> usable, else fail like libpq's
 * out-of-memory path. */
#define PQ_NEED(sym, failret)                                                            \
    do {                                                                                 \
        if (__builtin_expect(!__atomic_load_n(&pq_resolved, __ATOMIC_ACQUIRE), 0))       \
            pq_resolve();                                                                \
        void *p_ = __atomic_load_n((void **)&real_##sym, __ATOMIC_ACQUIRE);              \
        if (__builtin_expect(p_ == LDPROF_SYM_MISSING || p_ == NULL, 0))                 \
            return failret;                                                              \
    } while (0)

#define PQ_NEED_VOID(sym)                                                                \
    do {                                                                                 \
        if (__builtin_expect(!__atomic_load_n(&pq_resolved, __ATOMIC_ACQUIRE), 0))       \
            pq_resolve();                                                                \
        void *p_ = __atomic_load_n((void **)&real_##sym, __ATOMIC_ACQUIRE);              \
        if (__builtin_expect(p_ == LDPROF_SYM_MISSING || p_ == NULL, 0))                 \
            return;                                                                      \
    } while (0)

/* Does this call record?  (Cheap: no context lookup yet.) */
static inline int pq_want(void)
{
    return ldprof_tls.depth == 0 && ldprof_recording() && ldprof_cfg.trace_sqlalchemy &&
           __atomic_load_n(&pq_readers_ok, __ATOMIC_RELAXED);
}

/* Is real_<sym> resolved (not NULL, not missing)?  One load, one compare. */
#define PQ_READY(sym)                                                                    \
    ((uintptr_t)__atomic_load_n((void **)&real_##sym, __ATOMIC_ACQUIRE) >                \
     (uintptr_t)LDPROF_SYM_MISSING)

/*
 * pq_quiet - certainly no span for a call on this thread now (no trace
 * context possible).  A blocking wrapper's full path then only ends a
 * pending async span of the connection (none while no entry is claimed)
 * and makes the real call; an async one only holds the depth around it.
 * The quiet path does exactly that, without the lookups.
 */
static inline int pq_quiet(void)
{
    return !ldprof_ctx_maybe();
}

/*
 * The async sends (PQsendQuery, PQsendQueryParams, PQsendQueryPrepared)
 * pass through at their first test when the thread is quiet, WITHOUT
 * holding the depth (a tail call, no frame): their full path would only
 * hold it around the real call, and nothing underneath records on a
 * thread with no trace context: libpq makes no hooked call inside a send
 * but the socket write, which opens no `net` span (trace_socket) and no
 * outbound `http` span without a context; a connection still followed as
 * a possible HTTP client (its connect() ran in a traced PQconnectdb, under
 * the depth) is dropped by preload/http.c at its first untraced write (the
 * frontend/backend protocol is not HTTP), after which the read/write gate
 * of preload/real.h passes its I/O at once.  A traced thread keeps the
 * held path: the driver's I/O never makes `net` spans.
 */

/* ------------------------------------------------------------ pending async spans */

#define LDPQ_PENDING 256

struct pq_pending {
    PGconn *conn; /* owner (claimed with a CAS from NULL), NULL = free */
    struct ldprof_span *s;
    int64_t rows;
    int last_status; /* ExecStatusType of the last result, -1 = none */
    int errored;
    int connect; /* a non-blocking connect/reset span, not a command's */
};

static struct pq_pending pending[LDPQ_PENDING];
static int npending; /* entries claimed: 0 makes every lookup free */

/* A blocking call passes straight through: no span possible on this thread
 * and no pending async span to end, or this call does not record. */
static inline int pq_blocking_pass(void)
{
    /* (pq_quiet() && npending == 0), as one OR and one branch */
    return (ldprof_ctx_word() | (unsigned)__atomic_load_n(&npending, __ATOMIC_RELAXED)) == 0 ||
           !pq_want();
}

static struct pq_pending *pending_find(const PGconn *conn)
{
    if (conn == NULL || __atomic_load_n(&npending, __ATOMIC_ACQUIRE) == 0)
        return NULL;
    for (int i = 0; i < LDPQ_PENDING; i++)
        if (__atomic_load_n(&pending[i].conn, __ATOMIC_ACQUIRE) == conn)
            return &pending[i];
    return NULL;
}

static struct pq_pending *pending_claim(PGconn *conn)
{
    for (int i = 0; i < LDPQ_PENDING; i++) {
        PGconn *expected = NULL;
        if (__atomic_load_n(&pending[i].conn, __ATOMIC_RELAXED) == NULL &&
            __atomic_compare_exchange_n(&pending[i].conn, &expected, conn, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            __atomic_add_fetch(&npending, 1, __ATOMIC_ACQ_REL);
            return &pending[i];
        }
    }
    return NULL;
}

static void pending_release(struct pq_pending *p)
{
    p->s = NULL;
    __atomic_store_n(&p->conn, NULL, __ATOMIC_RELEASE);
    __atomic_sub_fetch(&npending, 1, __ATOMIC_ACQ_REL);
}

/* ------------------------------------------------------------ prepared statements */

#define LDPQ_PREPARED 256
#define LDPQ_NAME_MAX 64
#define LDPQ_SQL_MAX 512

/* Keys in compact arrays (the lookup scans them), texts aside. */
static const PGconn *prep_conn[LDPQ_PREPARED]; /* NULL = free */
static uint32_t prep_hash[LDPQ_PREPARED];
static struct pq_prepared {
    char name[LDPQ_NAME_MAX];
    char sql[LDPQ_SQL_MAX];
} prepared[LDPQ_PREPARED];

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static struct pq_prepared *prepared_find(const PGconn *conn, const char *name)
{
    uint32_t h;

    if (conn == NULL)
        return NULL;
    if (name == NULL)
        name = "";
    h = name_hash(name);
    for (int i = 0; i < LDPQ_PREPARED; i++)
        if (__atomic_load_n(&prep_conn[i], __ATOMIC_ACQUIRE) == conn && prep_hash[i] == h &&
            strncmp(prepared[i].name, name, LDPQ_NAME_MAX) == 0)
            return &prepared[i];
    return NULL;
}

static void prepared_remember(PGconn *conn, const char *name, const char *sql)
{
    struct pq_prepared *e;

    if (name == NULL)
        name = "";
    if (conn == NULL || sql == NULL || strlen(name) >= LDPQ_NAME_MAX)
        return;
    e = prepared_find(conn, name);
    if (e != NULL) {
        copy_cut(e->sql, sizeof(e->sql), sql);
        return;
    }
    for (int i = 0; i < LDPQ_PREPARED; i++) {
        const PGconn *expected = NULL;
        if (__atomic_load_n(&prep_conn[i], __ATOMIC_RELAXED) == NULL &&
            __atomic_compare_exchange_n(&prep_conn[i], &expected, (const PGconn *)1, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            copy_cut(prepared[i].name, sizeof(prepared[i].name), name);
            copy_cut(prepared[i].sql, sizeof(prepared[i].sql), sql);
            prep_hash[i] = name_hash(prepared[i].name);
            __atomic_store_n(&prep_conn[i], conn, __ATOMIC_RELEASE);
            return;
        }
    }
}

static void prepared_forget(const PGconn *conn)
{
    for (int i = 0; i < LDPQ_PREPARED; i++)
        if (__atomic_load_n(&prep_conn[i], __ATOMIC_ACQUIRE) == conn)
            __atomic_store_n(&prep_conn[i], NULL, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------ JSON params */

#define LDPQ_PARAMS_JSON 1024

struct jbuf {
    char *p;
    size_t len, cap;
};

static int jput(struct jbuf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        need = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (n < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return need;
}

/* Append @s (@n bytes) as a JSON string; invalid UTF-8 becomes U+FFFD. */
static int jstr(struct jbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";

    if (jput(b, "\"", 1) < 0)
        return -1;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t l;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

        if (c == '"' || c == '\\') {
            char e2[2] = {'\\', (char)c};
            if (jput(b, e2, 2) < 0)
                return -1;
            i++;
        } else if (c < 0x20) {
            if (jput(b, esc, 6) < 0)
                return -1;
            i++;
        } else if ((l = utf8_len((const unsigned char *)s + i, n - i)) == 0) {
            if (jput(b, "\\ufffd", 6) < 0)
                return -1;
            i++;
        } else {
            if (jput(b, s + i, l) < 0)
                return -1;
            i += l;
        }
    }
    return jput(b, "\"", 1);
}

/* Parameter @i as params_json writes it with record_values on.  Out of
 * line (with jstr): record_values is off by default. */
static __attribute__((noinline, cold)) int param_value(struct jbuf *b, int i,
                                                       const char *const *values,
                                                       const int *lengths, const int *formats)
{
    if (values == NULL || values[i] == NULL)
        return jput(b, "null", 4);
    if (formats != NULL && formats[i] == 1) {
        char tmp[48];
        int l = snprintf(tmp, sizeof(tmp), "\"<binary %d bytes>\"", lengths ? lengths[i] : 0);
        return jput(b, tmp, (size_t)l);
    }
    return jstr(b, values[i], strlen(values[i]));
}

/*
 * The db.params JSON array.  record_values off: one "?" per parameter.
 * On: each value as a JSON string (text format), null for a NULL value,
 * "<binary N bytes>" for a binary-format value.  What does not fit in
 * LDPQ_PARAMS_JSON bytes is replaced by one final "..." element: the text is
 * always valid JSON.  Returns its length.
 */
static size_t params_json(char *out, int n, const char *const *values, const int *lengths,
                          const int *formats)
{
    struct jbuf b = {out, 0, LDPQ_PARAMS_JSON - 8}; /* room for ,"..."] */
    int rec = ldprof_cfg.record_values;

    out[b.len++] = '[';
    for (int i = 0; i < n; i++) {
        size_t mark = b.len;
        int r;

        if (i > 0 && jput(&b, ",", 1) < 0)
            r = -1;
        else if (__builtin_expect(!rec, 1))
            r = jput(&b, "\"?\"", 3);
        else
            r = param_value(&b, i, values, lengths, formats);
        if (__builtin_expect(r < 0, 0)) {
            b.len = mark;
            b.cap = LDPQ_PARAMS_JSON;
            if (i > 0)
                jput(&b, ",", 1);
            jput(&b, "\"...\"", 5);
            break;
        }
    }
    b.cap = LDPQ_PARAMS_JSON;
    jput(&b, "]", 1);
    return b.len;
}

static void add_params(struct ldprof_span *s, int n, const char *const *values,
                       const int *lengths, const int *formats)
{
    char buf[LDPQ_PARAMS_JSON];
    size_t len = params_json(buf, n < 0 ? 0 : n, values, lengths, formats);

    ldprof_span_add(s, LDPROF_FIELD_START, LDPROF_TLV_JSON, "db.params", buf, len);
}

/* ------------------------------------------------------------ errors and results */

/*
 * etype: the PEP 249 / psycopg2 exception class a Python service would see
 * for this SQLSTATE (what OSProfiler's SQLAlchemy hook records as etype),
 * following psycopg2's exception_from_sqlstate().
 */
static const char *etype_for(const char *st)
{
    if (st == NULL || strlen(st) != 5)
        return "OperationalError";
    switch (st[0]) {
    case '0':
        if (st[1] == '8')
            return "OperationalError";
        if (st[1] == 'A')
            return "NotSupportedError";
        break;
    case '2':
        switch (st[1]) {
        case '0': case '1': return "ProgrammingError";
        case '2': return "DataError";
        case '3': return "IntegrityError";
        case '4': case '5': case 'B': case 'D': case 'F': return "InternalError";
        case '6': case '7': case '8': return "OperationalError";
        }
        break;
    case '3':
        switch (st[1]) {
        case '4': return "OperationalError";
        case '8': case '9': case 'B': return "InternalError";
        case 'D': case 'F': return "ProgrammingError";
        }
        break;
    case '4':
        if (st[1] == '0')
            return "TransactionRollbackError";
        if (st[1] == '2' || st[1] == '4')
            return "ProgrammingError";
        break;
    case '5':
        return strcmp(st, "57014") == 0 ? "QueryCanceledError" : "OperationalError";
    case 'F': case 'P': case 'X':
        return "InternalError";
    case 'H':
        return "OperationalError";
    }
    return "DatabaseError";
}

/* A libpq error text as psycopg2 shows it: the "SEVERITY:  " prefix
 * dropped, trailing white space trimmed, at most cap-1 bytes. */
static void error_text(char *out, size_t cap, const char *msg)
{
    const char *p;
    size_t n;

    if (msg == NULL)
        msg = "";
    p = strstr(msg, ":  ");
    if (p != NULL && p - msg < 16)
        msg = p + 3;
    n = strnlen(msg, cap - 1);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ' || msg[n - 1] == '\r' ||
                     msg[n - 1] == '\t'))
        n--;
    memcpy(out, msg, n);
    out[n] = '\0';
}

static __attribute__((noinline, cold)) void set_error(struct ldprof_span *s,
                                                        const char *sqlstate, const char *msg)
{
    char text[512];

    error_text(text, sizeof(text), msg);
    ldprof_span_set_error(s, etype_for(sqlstate), text);
    if (sqlstate != NULL && sqlstate[0] != '\0')
        ldprof_span_add_str(s, LDPROF_FIELD_STOP, "db.sqlstate", sqlstate, -1);
}

/* Rows of one result: PQntuples for row sets, PQcmdTuples for commands
 * that report a count; -1 when neither applies. */
static int64_t result_rows(const PGresult *r, ExecStatusType st)
{
    if (st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE)
        return real_PQntuples(r);
    if (st == PGRES_COMMAND_OK) {
        const char *t = real_PQcmdTuples((PGresult *)r);
        if (t != NULL && t[0] >= '0' && t[0] <= '9')
            return strtoll(t, NULL, 10);
    }
    return -1;
}

/* Stop info of a blocking call from the result the app gets. */
static void finish_result(struct ldprof_span *s, const PGresult *r, const PGconn *conn,
                          int describe)
{
    ExecStatusType st;
    int64_t rows;

    if (__builtin_expect(r == NULL, 0)) {
        set_error(s, NULL, conn ? real_PQerrorMessage(conn) : "no connection");
        return;
    }
    st = real_PQresultStatus(r);
    if (__builtin_expect(st == PGRES_FATAL_ERROR, 0))
        set_error(s, real_PQresultErrorField(r, PG_DIAG_SQLSTATE), real_PQresultErrorMessage(r));
    ldprof_span_add_str(s, LDPROF_FIELD_STOP, "db.status", real_PQresStatus(st), -1);
    if (describe && st == PGRES_COMMAND_OK) {
        ldprof_span_add_int(s, LDPROF_FIELD_STOP, "db.nparams", real_PQnparams(r));
        ldprof_span_add_int(s, LDPROF_FIELD_STOP, "db.nfields", real_PQnfields(r));
    } else if ((rows = result_rows(r, st)) >= 0)
        ldprof_span_add_int(s, LDPROF_FIELD_STOP, "db.rows", rows);
}

/* ------------------------------------------------------------ span helpers */

static struct ldprof_span *pq_begin(const char *op)
{
    struct ldprof_span *s = ldprof_span_begin(LDPROF_KIND_DB);

    if (s != NULL)
        ldprof_span_add_str(s, LDPROF_FIELD_START, "db.operation", op, -1);
    return s;
}

static void add_statement(struct ldprof_span *s, const char *sql)
{
    if (sql != NULL)
        ldprof_span_add_str(s, LDPROF_FIELD_START, "db.statement", sql, -1);
}

static void add_prepared(struct ldprof_span *s, const PGconn *conn, const char *name)
{
    const struct pq_prepared *e = prepared_find(conn, name);

    if (e != NULL)
        add_statement(s, e->sql);
    ldprof_span_add_str(s, LDPROF_FIELD_START, "db.prepared", name ? name : "", -1);
}

/* An async span is not the thread's current span: undo what
 * ldprof_span_begin did to the thread context and make ldprof_span_end
 * leave the context alone (it may run later, or on another thread). */
static void detach(struct ldprof_span *s)
{
    struct ldprof_ctx *c = &ldprof_tls.ctx;

    if (s->prev_valid && memcmp(c->cur_id, s->w.trace_id, 16) == 0)
        memcpy(c->cur_id, s->prev_id, 16);
    s->prev_valid = 0;
}

/* End @conn's pending async span, if any, without a final result. */
static void pending_abandon(const PGconn *conn)
{
    struct pq_pending *p = pending_find(conn);

    if (p == NULL)
        return;
    if (p->s != NULL) {
        ldprof_span_add_str(p->s, LDPROF_FIELD_STOP, "db.status", "abandoned", -1);
        if (p->rows >= 0)
            ldprof_span_add_int(p->s, LDPROF_FIELD_STOP, "db.rows", p->rows);
        ldprof_span_end(p->s);
    }
    pending_release(p);
}

/* The real call of a blocking wrapper runs at depth + 1.  (Changing the
 * depth does not touch errno: nothing to save around it.) */
#define PQ_CALL(expr)                                                                    \
    ({                                                                                   \
        ldprof_tls.depth++;                                                              \
        __typeof__(expr) r_ = (expr);                                                    \
        ldprof_tls.depth--;                                                              \
        r_;                                                                              \
    })

/* ------------------------------------------------------------ blocking execution */

static __attribute__((noinline)) PGresult *ldprof_PQexec(PGconn *conn, const char *query)
{
    struct ldprof_span *s;
    PGresult *r;
    int saved;

    pending_abandon(conn);
    s = pq_begin("query");
    if (s == NULL)
        return real_PQexec(conn, query);
    add_statement(s, query);
    add_params(s, 0, NULL, NULL, NULL);
    r = PQ_CALL(real_PQexec(conn, query));
    saved = errno;
    finish_result(s, r, conn, 0);
    ldprof_span_end(s);
    errno = saved;
    return r;
}

/* PQexec() when the gate did not let it through: the full path. */
static __attribute__((noinline)) PGresult *PQexec_full(PGconn *conn, const char *query)
{
    PQ_NEED(PQexec, NULL);
    if (pq_blocking_pass())
        return real_PQexec(conn, query);
    return ldprof_PQexec(conn, query);
}

LDPROF_EXPORT PGresult *PQexec(PGconn *conn, const char *query)
{
    if (__builtin_expect(PQ_READY(PQexec) && pq_blocking_pass(), 1))
        return real_PQexec(conn, query);
    return PQexec_full(conn, query);
}

static __attribute__((noinline)) PGresult *ldprof_PQexecParams(PGconn *conn, const char *command, int nParams,
                                     const Oid *paramTypes, const char *const *paramValues,
                                     const int *paramLengths, const int *paramFormats,
                                     int resultFormat)
{
    struct ldprof_span *s;
    PGresult *r;
    int saved;

    pending_abandon(conn);
    s = pq_begin("query");
    if (s == NULL)
        return real_PQexecParams(conn, command, nParams, paramTypes, paramValues, paramLengths,
                                 paramFormats, resultFormat);
    add_statement(s, command);
    add_params(s, nParams, paramValues, paramLengths, paramFormats);
    r = PQ_CALL(real_PQexecParams(conn, command, nParams, paramTypes, paramValues, paramLengths,
                                  paramFormats, resultFormat));
    saved = errno;
    finish_result(s, r, conn, 0);
    ldprof_span_end(s);
    errno = saved;
    return r;
}

/* PQexecParams() when the gate did not let it through: the full path. */
static __attribute__((noinline)) PGresult *PQexecParams_full(PGconn *conn, const char *command, int nParams,
                                     const Oid *paramTypes, const char *const *paramValues,
                                     const int *paramLengths, const int *paramFormats,
                                     int resultFormat)
{
    PQ_NEED(PQexecParams, NULL);
    if (pq_blocking_pass())
        return real_PQexecParams(conn, command, nParams, paramTypes, paramValues, paramLengths,
                                 paramFormats, resultFormat);
    return ldprof_PQexecParams(conn, command, nParams, paramTypes, paramValues, paramLengths,
                               paramFormats, resultFormat);
}

LDPROF_EXPORT PGresult *PQexecParams(PGconn *conn, const char *command, int nParams,
                                     const Oid *paramTypes, const char *const *paramValues,
                                     const int *paramLengths, const int *paramFormats,
                                     int resultFormat)
{
    if (__builtin_expect(PQ_READY(PQexecParams) && pq_blocking_pass(), 1))
        return real_PQexecParams(conn, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat);
    return PQexecParams_full(conn, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat);
}

static __attribute__((noinline)) PGresult *ldprof_PQprepare(PGconn *conn, const char *stmtName, const char *query,
                                  int nParams, const Oid *paramTypes)
{
    struct ldprof_span *s;
    PGresult *r;
    int saved;

    pending_abandon(conn);
    s = pq_begin("prepare");
    if (s == NULL) {
        /* remembered even outside a trace: servers prepare at connect time */
        r = real_PQprepare(conn, stmtName, query, nParams, paramTypes);
        saved = errno;
        prepared_remember(conn, stmtName, query);
        errno = saved;
        return r;
    }
    add_statement(s, query);
    ldprof_span_add_str(s, LDPROF_FIELD_START, "db.prepared", stmtName ? stmtName : "", -1);
    r = PQ_CALL(real_PQprepare(conn, stmtName, query, nParams, paramTypes));
    saved = errno;
    prepared_remember(conn, stmtName, query);
    finish_result(s, r, conn, 0);
    ldprof_span_end(s);
    errno = saved;
    return r;
}

/* PQprepare() when the gate did not let it through: the full path. */
static __attribute__((noinline)) PGresult *PQprepare_full(PGconn *conn, const char *stmtName, const char *query,
                                  int nParams, const Oid *paramTypes)
{
    PQ_NEED(PQprepare, NULL);
    if (!pq_want())
        return real_PQprepare(conn, stmtName, query, nParams, paramTypes);
    return ldprof_PQprepare(conn, stmtName, query, nParams, paramTypes);
}

LDPROF_EXPORT PGresult *PQprepare(PGconn *conn, const char *stmtName, const char *query,
                                  int nParams, const Oid *paramTypes)
{
    if (__builtin_expect(PQ_READY(PQprepare) && !pq_want(), 1))
        return real_PQprepare(conn, stmtName, query, nParams, paramTypes);
    return PQprepare_full(conn, stmtName, query, nParams, paramTypes);
}

static __attribute__((noinline)) PGresult *ldprof_PQexecPrepared(PGconn *conn, const char *stmtName, int nParams,
                                       const char *const *paramValues, const int *paramLengths,
                                       const int *paramFormats, int resultFormat)
{
    struct ldprof_span *s;
    PGresult *r;
    int saved;

    pending_abandon(conn);
    s = pq_begin("execute");
    if (s == NULL)
        return real_PQexecPrepared(conn, stmtName, nParams, paramValues, paramLengths,
                                   paramFormats, resultFormat);
    add_prepared(s, conn, stmtName);
    add_params(s, nParams, paramValues, paramLengths, paramFormats);
    r = PQ_CALL(real_PQexecPrepared(conn, stmtName, nParams, paramValues, paramLengths,
                                    paramFormats, resultFormat));
    saved = errno;
    finish_result(s, r, conn, 0);
    ldprof_span_end(s);
    errno = saved;
    return r;
}

/* PQexecPrepared() when the gate did not let it through: the full path. */
static __attribute__((noinline)) PGresult *PQexecPrepared_full(PGconn *conn, const char *stmtName, int nParams,
                                       const char *const *paramValues, const int *paramLengths,
                                       const int *paramFormats, int resultFormat)
{
    PQ_NEED(PQexecPrepared, NULL);
    if (pq_blocking_pass())
        return real_PQexecPrepared(conn, stmtName, nParams, paramValues, paramLengths,
                                   paramFormats, resultFormat);
    return ldprof_PQexecPrepared(conn, stmtName, nParams, paramValues, paramLengths,
                                 paramFormats, resultFormat);
}

LDPROF_EXPORT PGresult *PQexecPrepared(PGconn *conn, const char *stmtName, int nParams,
                                       const char *const *paramValues, const int *paramLengths,
                                       const int *paramFormats, int resultFormat)
{
    if (__builtin_expect(PQ_READY(PQexecPrepared) && pq_blocking_pass(), 1))
        return real_PQexecPrepared(conn, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat);
    return PQexecPrepared_full(conn, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat);
}

static __attribute__((noinline)) PGresult *ldprof_PQdescribePrepared(PGconn *conn, const char *stmt)
{
    struct ldprof_span *s;
    PGresult *r;
    int saved;

    pending_abandon(conn);
    s = pq_begin("describe");
    if (s == NULL)
        return real_PQdescribePrepared(conn, stmt);
    add_prepared(s, conn, stmt);
    r = PQ_CALL(real_PQdescribePrepared(conn, stmt));
    saved = errno;
    finish_result(s, r, conn, 1);
    ldprof_span_end(s);
    errno = saved;
    return r;
}

/* PQdescribePrepared() when the gate did not let it through: the full path. */
static __attribute__((noinline)) PGresult *PQdescribePrepared_full(PGconn *conn, const char *stmt)
{
    PQ_NEED(PQdescribePrepared, NULL);
    if (pq_blocking_pass())
        return real_PQdescribePrepared(conn, stmt);
    return ldprof_PQdescribePrepared(conn, stmt);
}

LDPROF_EXPORT PGresult *PQdescribePrepared(PGconn *conn, const char *stmt)
{
    if (__builtin_expect(PQ_READY(PQdescribePrepared) && pq_blocking_pass(), 1))
        return real_PQdescribePrepared(conn, stmt);
    return PQdescribePrepared_full(conn, stmt);
}

/* ------------------------------------------------------------ async */

/* Claim a pending entry for @key and begin its detached span (db.async 1):
 * the common start of async commands and non-blocking connects (@connect).
 * NULL when the table is full or nothing is recorded. */
static struct pq_pending *pending_open(PGconn *key, const char *op, int connect)
{
    struct pq_pending *p = pending_claim(key);
    struct ldprof_span *s;

    if (p == NULL)
        return NULL;
    s = pq_begin(op);
    if (s == NULL) {
        pending_release(p);
        return NULL;
    }
    detach(s);
    ldprof_span_add_int(s, LDPROF_FIELD_START, "db.async", 1);
    p->s = s;
    p->rows = -1;
    p->last_status = -1;
    p->errored = 0;
    p->connect = connect;
    return p;
}

/* Begin an async span (op, statement, params) for @conn before the send;
 * returns its pending entry, or NULL when nothing is recorded. */
static struct pq_pending *async_begin(PGconn *conn, const char *op)
{
    if (conn == NULL || pending_find(conn) != NULL)
        return NULL; /* one pending span per connection (pipeline mode) */
    return pending_open(conn, op, 0);
}

/* After the send: a failed send (0) ends the span with the error. */
static int async_sent(struct pq_pending *p, PGconn *conn, int ok)
{
    int saved = errno;

    if (p != NULL && !ok) {
        set_error(p->s, NULL, real_PQerrorMessage(conn));
        ldprof_span_end(p->s);
        pending_release(p);
    }
    errno = saved;
    return ok;
}

static __attribute__((noinline)) int ldprof_PQsendQuery(PGconn *conn, const char *query)
{
    struct pq_pending *p = async_begin(conn, "query");

    if (p != NULL) {
        add_statement(p->s, query);
        add_params(p->s, 0, NULL, NULL, NULL);
    }
    return async_sent(p, conn, PQ_CALL(real_PQsendQuery(conn, query)));
}

/* PQsendQuery() when the gate did not let it through: the full path. */
static __attribute__((noinline)) int PQsendQuery_full(PGconn *conn, const char *query)
{
    PQ_NEED(PQsendQuery, 0);
    if (!pq_want())
        return real_PQsendQuery(conn, query);
    if (pq_quiet())
        return PQ_CALL(real_PQsendQuery(conn, query));
    return ldprof_PQsendQuery(conn, query);
}

LDPROF_EXPORT int PQsendQuery(PGconn *conn, const char *query)
{
    if (__builtin_expect(PQ_READY(PQsendQuery) && (pq_quiet() || !pq_want()), 1))
        return real_PQsendQuery(conn, query);
    return PQsendQuery_full(conn, query);
}

static __attribute__((noinline)) int ldprof_PQsendQueryParams(PGconn *conn, const char *command, int nParams,
                                    const Oid *paramTypes, const char *const *paramValues,
                                    const int *paramLengths, const int *paramFormats,
                                    int resultFormat)
{
    struct pq_pending *p = async_begin(conn, "query");

    if (p != NULL) {
        add_statement(p->s, command);
        add_params(p->s, nParams, paramValues, paramLengths, paramFormats);
    }
    return async_sent(p, conn,
                      PQ_CALL(real_PQsendQueryParams(conn, command, nParams, paramTypes,
                                                     paramValues, paramLengths, paramFormats,
                                                     resultFormat)));
}

/* PQsendQueryParams() when the gate did not let it through: the full path. */
static __attribute__((noinline)) int PQsendQueryParams_full(PGconn *conn, const char *command, int nParams,
                                    const Oid *paramTypes, const char *const *paramValues,
                                    const int *paramLengths, const int *paramFormats,
                                    int resultFormat)
{
    PQ_NEED(PQsendQueryParams, 0);
    if (!pq_want())
        return real_PQsendQueryParams(conn, command, nParams, paramTypes, paramValues,
                                      paramLengths, paramFormats, resultFormat);
    if (pq_quiet())
        return PQ_CALL(real_PQsendQueryParams(conn, command, nParams, paramTypes, paramValues,
                                              paramLengths, paramFormats, resultFormat));
    return ldprof_PQsendQueryParams(conn, command, nParams, paramTypes, paramValues,
                                    paramLengths, paramFormats, resultFormat);
}

LDPROF_EXPORT int PQsendQueryParams(PGconn *conn, const char *command, int nParams,
                                    const Oid *paramTypes, const char *const *paramValues,
                                    const int *paramLengths, const int *paramFormats,
                                    int resultFormat)
{
    if (__builtin_expect(PQ_READY(PQsendQueryParams) && (pq_quiet() || !pq_want()), 1))
        return real_PQsendQueryParams(conn, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat);
    return PQsendQueryParams_full(conn, command, nParams, paramTypes, paramValues, paramLengths, paramFormats, resultFormat);
}

static __attribute__((noinline)) int ldprof_PQsendPrepare(PGconn *conn, const char *stmtName, const char *query,
                                int nParams, const Oid *paramTypes)
{
    struct pq_pending *p = async_begin(conn, "prepare");
    int ok;

    if (p != NULL) {
        add_statement(p->s, query);
        ldprof_span_add_str(p->s, LDPROF_FIELD_START, "db.prepared", stmtName ? stmtName : "",
                            -1);
    }
    ok = PQ_CALL(real_PQsendPrepare(conn, stmtName, query, nParams, paramTypes));
    if (ok) {
        int saved = errno;
        prepared_remember(conn, stmtName, query);
        errno = saved;
    }
    return async_sent(p, conn, ok);
}

/* PQsendPrepare() when the gate did not let it through: the full path. */
static __attribute__((noinline)) int PQsendPrepare_full(PGconn *conn, const char *stmtName, const char *query,
                                int nParams, const Oid *paramTypes)
{
    PQ_NEED(PQsendPrepare, 0);
    if (!pq_want())
        return real_PQsendPrepare(conn, stmtName, query, nParams, paramTypes);
    return ldprof_PQsendPrepare(conn, stmtName, query, nParams, paramTypes);
}

LDPROF_EXPORT int PQsendPrepare(PGconn *conn, const char *stmtName, const char *query,
                                int nParams, const Oid *paramTypes)
{
    if (__builtin_expect(PQ_READY(PQsendPrepare) && !pq_want(), 1))
        return real_PQsendPrepare(conn, stmtName, query, nParams, paramTypes);
    return PQsendPrepare_full(conn, stmtName, query, nParams, paramTypes);
}

static __attribute__((noinline)) int ldprof_PQsendQueryPrepared(PGconn *conn, const char *stmtName, int nParams,
                                      const char *const *paramValues, const int *paramLengths,
                                      const int *paramFormats, int resultFormat)
{
    struct pq_pending *p = async_begin(conn, "execute");

    if (p != NULL) {
        add_prepared(p->s, conn, stmtName);
        add_params(p->s, nParams, paramValues, paramLengths, paramFormats);
    }
    return async_sent(p, conn,
                      PQ_CALL(real_PQsendQueryPrepared(conn, stmtName, nParams, paramValues,
                                                       paramLengths, paramFormats,
                                                       resultFormat)));
}

/* PQsendQueryPrepared() when the gate did not let it through: the full path. */
static __attribute__((noinline)) int PQsendQueryPrepared_full(PGconn *conn, const char *stmtName, int nParams,
                                      const char *const *paramValues, const int *paramLengths,
                                      const int *paramFormats, int resultFormat)
{
    PQ_NEED(PQsendQueryPrepared, 0);
    if (!pq_want())
        return real_PQsendQueryPrepared(conn, stmtName, nParams, paramValues, paramLengths,
                                        paramFormats, resultFormat);
    if (pq_quiet())
        return PQ_CALL(real_PQsendQueryPrepared(conn, stmtName, nParams, paramValues,
                                                paramLengths, paramFormats, resultFormat));
    return ldprof_PQsendQueryPrepared(conn, stmtName, nParams, paramValues, paramLengths,
                                      paramFormats, resultFormat);
}

LDPROF_EXPORT int PQsendQueryPrepared(PGconn *conn, const char *stmtName, int nParams,
                                      const char *const *paramValues, const int *paramLengths,
                                      const int *paramFormats, int resultFormat)
{
    if (__builtin_expect(PQ_READY(PQsendQueryPrepared) && (pq_quiet() || !pq_want()), 1))
        return real_PQsendQueryPrepared(conn, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat);
    return PQsendQueryPrepared_full(conn, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat);
}

/*
 * PQgetResult: a result of the pending command adds its rows to the total
 * (single-row mode: one row per result) and, on the first
 * PGRES_FATAL_ERROR, the error; the NULL that ends the command ends the
 * span with db.status of the last result and db.rows.
 */
static __attribute__((noinline)) PGresult *ldprof_PQgetResult(PGconn *conn, struct pq_pending *p)
{
    PGresult *r = PQ_CALL(real_PQgetResult(conn));
    int saved = errno;

    if (r != NULL) {
        ExecStatusType st = real_PQresultStatus(r);
        int64_t rows = result_rows(r, st);

        if (rows >= 0)
            p->rows = (p->rows < 0 ? 0 : p->rows) + rows;
        if (st == PGRES_FATAL_ERROR && !p->errored) {
            p->errored = 1;
            set_error(p->s, real_PQresultErrorField(r, PG_DIAG_SQLSTATE), real_PQresultErrorMessage(r));
        }
        p->last_status = (int)st;
        /* COPY and pipeline results do not end with a NULL here: let the
         * span end at the connection's next call or PQfinish. */
    } else {
        struct ldprof_span *s = p->s;
        if (p->last_status >= 0)
            ldprof_span_add_str(s, LDPROF_FIELD_STOP, "db.status",
                                real_PQresStatus((ExecStatusType)p->last_status), -1);
        else if (!p->errored)
            set_error(s, NULL, real_PQerrorMessage(conn));
        if (p->rows >= 0)
            ldprof_span_add_int(s, LDPROF_FIELD_STOP, "db.rows", p->rows);
        pending_release(p);
        ldprof_span_end(s);
    }
    errno = saved;
    return r;
}

/* PQgetResult() when the gate did not let it through: the full path. */
static __attribute__((noinline)) PGresult *PQgetResult_full(PGconn *conn)
{
    struct pq_pending *p;

    PQ_NEED(PQgetResult, NULL);
    if (!ldprof_recording() || !ldprof_cfg.trace_sqlalchemy || ldprof_tls.depth != 0 || conn == NULL ||
        (p = pending_find(conn)) == NULL || p->s == NULL || p->connect)
        return real_PQgetResult(conn);
    return ldprof_PQgetResult(conn, p);
}

LDPROF_EXPORT PGresult *PQgetResult(PGconn *conn)
{
    if (__builtin_expect(PQ_READY(PQgetResult) &&
        (__atomic_load_n(&npending, __ATOMIC_RELAXED) == 0 || !pq_want() || conn == NULL), 1))
        return real_PQgetResult(conn);
    return PQgetResult_full(conn);
}

/* ------------------------------------------------------------ connect, finish */

static PGconn *connect_done(struct ldprof_span *s, PGconn *c)
{
    int saved = errno;

    if (c == NULL)
        set_error(s, NULL, "out of memory");
    else if (real_PQstatus(c) == CONNECTION_BAD)
        set_error(s, NULL, real_PQerrorMessage(c));
    else {
        const char *v;
        if ((v = real_PQhost(c)) != NULL)
            ldprof_span_add_str(s, LDPROF_FIELD_STOP, "db.host", v, -1);
        if ((v = real_PQport(c)) != NULL && v[0] != '\0')
            ldprof_span_add_int(s, LDPROF_FIELD_STOP, "db.port", strtol(v, NULL, 10));
        if ((v = real_PQdb(c)) != NULL)
            ldprof_span_add_str(s, LDPROF_FIELD_STOP, "db.name", v, -1);
        if ((v = real_PQuser(c)) != NULL)
            ldprof_span_add_str(s, LDPROF_FIELD_STOP, "db.user", v, -1);
    }
    ldprof_span_end(s);
    errno = saved;
    return c;
}

LDPROF_EXPORT PGconn *PQconnectdb(const char *conninfo)
{
    struct ldprof_span *s;

    PQ_NEED(PQconnectdb, NULL);
    if (!pq_want() || (s = pq_begin("connect")) == NULL)
        return real_PQconnectdb(conninfo);
    return connect_done(s, PQ_CALL(real_PQconnectdb(conninfo)));
}

LDPROF_EXPORT PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values,
                                        int expand_dbname)
{
    struct ldprof_span *s;

    PQ_NEED(PQconnectdbParams, NULL);
    if (!pq_want() || (s = pq_begin("connect")) == NULL)
        return real_PQconnectdbParams(keywords, values, expand_dbname);
    return connect_done(s, PQ_CALL(real_PQconnectdbParams(keywords, values, expand_dbname)));
}

LDPROF_EXPORT PGconn *PQsetdbLogin(const char *pghost, const char *pgport, const char *pgoptions,
                                   const char *pgtty, const char *dbName, const char *login,
                                   const char *pwd)
{
    struct ldprof_span *s;

    PQ_NEED(PQsetdbLogin, NULL);
    if (!pq_want() || (s = pq_begin("connect")) == NULL)
        return real_PQsetdbLogin(pghost, pgport, pgoptions, pgtty, dbName, login, pwd);
    return connect_done(s, PQ_CALL(real_PQsetdbLogin(pghost, pgport, pgoptions, pgtty, dbName,
                                                     login, pwd)));
}

/* ------------------------------------------------------------ non-blocking connect */

static void conn_gone(const PGconn *conn, int forget);

/*
 * Begin a non-blocking connect span (detached, db.async 1) and claim its
 * pending entry under a placeholder key (this thread's TLS block: never a
 * PGconn) until the PGconn is known.  NULL: nothing is recorded (no trace,
 * or the table is full).
 */
static struct pq_pending *nbconnect_begin(const char *op, PGconn *key)
{
    if (ldprof_ctx_current() == NULL)
        return NULL; /* not in a trace: leave the table alone */
    return pending_open(key, op, 1);
}

/* After PQconnectStart*: a NULL or already failed connection ends the span
 * with its error; else the entry now belongs to @c. */
static PGconn *nbconnect_started(struct pq_pending *p, PGconn *c)
{
    int saved = errno;
    struct ldprof_span *s = p->s;

    if (c == NULL || real_PQstatus(c) == CONNECTION_BAD || pending_find(c) != NULL) {
        pending_release(p);
        if (c != NULL && real_PQstatus(c) != CONNECTION_BAD)
            ldprof_span_add_str(s, LDPROF_FIELD_STOP, "db.status", "abandoned", -1);
        connect_done(s, c);
    } else
        __atomic_store_n(&p->conn, c, __ATOMIC_RELEASE);
    errno = saved;
    return c;
}

LDPROF_EXPORT PGconn *PQconnectStart(const char *conninfo)
{
    struct pq_pending *p;

    PQ_NEED(PQconnectStart, NULL);
    if (!pq_want() || (p = nbconnect_begin("connect", (PGconn *)&ldprof_tls)) == NULL)
        return real_PQconnectStart(conninfo);
    return nbconnect_started(p, PQ_CALL(real_PQconnectStart(conninfo)));
}

LDPROF_EXPORT PGconn *PQconnectStartParams(const char *const *keywords,
                                           const char *const *values, int expand_dbname)
{
    struct pq_pending *p;

    PQ_NEED(PQconnectStartParams, NULL);
    if (!pq_want() || (p = nbconnect_begin("connect", (PGconn *)&ldprof_tls)) == NULL)
        return real_PQconnectStartParams(keywords, values, expand_dbname);
    return nbconnect_started(p, PQ_CALL(real_PQconnectStartParams(keywords, values,
                                                                  expand_dbname)));
}

/* PQconnectPoll/PQresetPoll of a connection with a pending connect span:
 * the final state ends it with the blocking connect's stop info. */
static PostgresPollingStatusType nbconnect_polled(struct pq_pending *p, PGconn *conn,
                                                  PostgresPollingStatusType st)
{
    int saved = errno;

    if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED) {
        struct ldprof_span *s = p->s;
        pending_release(p);
        connect_done(s, conn);
    }
    errno = saved;
    return st;
}

/* The connection's pending connect entry when this call records, else NULL. */
static inline struct pq_pending *nbconnect_find(const PGconn *conn)
{
    struct pq_pending *p;

    if (!ldprof_recording() || !ldprof_cfg.trace_sqlalchemy || ldprof_tls.depth != 0 ||
        conn == NULL || (p = pending_find(conn)) == NULL || p->s == NULL || !p->connect)
        return NULL;
    return p;
}

LDPROF_EXPORT PostgresPollingStatusType PQconnectPoll(PGconn *conn)
{
    struct pq_pending *p;

    PQ_NEED(PQconnectPoll, PGRES_POLLING_FAILED);
    if ((p = nbconnect_find(conn)) == NULL)
        return real_PQconnectPoll(conn);
    return nbconnect_polled(p, conn, PQ_CALL(real_PQconnectPoll(conn)));
}

static __attribute__((noinline)) int ldprof_PQresetStart(PGconn *conn)
{
    struct pq_pending *p;
    int ok, saved;

    conn_gone(conn, 1);
    p = nbconnect_begin("reset", conn);
    if (p == NULL)
        return real_PQresetStart(conn);
    ok = PQ_CALL(real_PQresetStart(conn));
    saved = errno;
    if (!ok) {
        struct ldprof_span *s = p->s;
        pending_release(p);
        set_error(s, NULL, real_PQerrorMessage(conn));
        ldprof_span_end(s);
    }
    errno = saved;
    return ok;
}

LDPROF_EXPORT int PQresetStart(PGconn *conn)
{
    PQ_NEED(PQresetStart, 0);
    if (conn == NULL || !pq_want())
        return real_PQresetStart(conn);
    return ldprof_PQresetStart(conn);
}

LDPROF_EXPORT PostgresPollingStatusType PQresetPoll(PGconn *conn)
{
    struct pq_pending *p;

    PQ_NEED(PQresetPoll, PGRES_POLLING_FAILED);
    if ((p = nbconnect_find(conn)) == NULL)
        return real_PQresetPoll(conn);
    return nbconnect_polled(p, conn, PQ_CALL(real_PQresetPoll(conn)));
}

/* PQfinish/PQreset: end a pending span the app never drained and forget
 * the connection's prepared statements (the PGconn address may be reused).
 * Done even when tracing is off now, so no stale entry outlives its conn. */
static void conn_gone(const PGconn *conn, int forget)
{
    int saved = errno;

    pending_abandon(conn);
    if (forget)
        prepared_forget(conn);
    errno = saved;
}

LDPROF_EXPORT void PQfinish(PGconn *conn)
{
    PQ_NEED_VOID(PQfinish);
    if (conn != NULL && ldprof_recording() && ldprof_tls.depth == 0)
        conn_gone(conn, 1);
    real_PQfinish(conn);
}

LDPROF_EXPORT void PQreset(PGconn *conn)
{
    PQ_NEED_VOID(PQreset);
    if (conn != NULL && ldprof_recording() && ldprof_tls.depth == 0)
        conn_gone(conn, 1);
    real_PQreset(conn);
}
