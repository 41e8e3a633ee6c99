/*
 * http.c - libmicrohttpd setup, routing, request bodies, JSON responses and
 * the access log of zaqard (see http.h).
 *
 * Request life cycle (MHD access handler, called several times per request):
 *   1st call  (no context yet): parse and route the path, pick the body cap,
 *             allocate the req_ctx and return.
 *   Nth call  (upload data):   append to the body up to the cap; beyond it
 *             remember "too large" and drop the bytes (the body is still
 *             consumed so the connection stays usable).
 *   last call (no more data):  check headers, run the handler, queue the
 *             response.
 *   completed callback:        log the request line and free the context.
 *
 * MHD is told not to unescape anything (unescape_none): the raw path is
 * split on '/' first and each segment percent-decoded on its own, so an
 * encoded "%2F" cannot change the route; query values are decoded on lookup.
 */
#include "http.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "util.h"

#define CONNECTION_TIMEOUT_S 30
/* Per connection: request line + headers (larger requests get 414/431 from
 * libmicrohttpd) and the read buffer bodies stream through. */
#define CONNECTION_MEMORY_LIMIT (64 * 1024)
#define SHUTDOWN_GRACE_MS 5000
#define MAX_SEGMENTS 6
#define SEGMENT_MAX 256
#define LOG_PATH_MAX 200

struct zq_http {
    struct MHD_Daemon *daemon;
    zq_app *app;
    unsigned port;
    atomic_int active; /* requests dispatched (body complete) and not yet completed */
};

/* ------------------------------------------------------------ routes */

typedef enum {
    R_HOME, R_HEALTH, R_PING, R_QUEUES, R_QUEUE, R_STATS, R_MESSAGES,
    R_MESSAGE, R_CLAIMS, R_CLAIM, R_FLAVOR,
} route_kind;

typedef struct {
    const char *method;
    zq_handler *fn;
} method_entry;

typedef struct {
    route_kind kind;
    const char *allow;   /* Allow header of a 405 */
    int needs_client_id; /* message and claim routes */
    method_entry methods[4];
} route_def;

static const route_def routes[] = {
    {R_HOME, "GET", 0, {{"GET", zq_api_home}}},
    {R_HEALTH, "GET, HEAD", 0, {{"GET", zq_api_health}, {"HEAD", zq_api_health}}},
    {R_PING, "GET, HEAD", 0, {{"GET", zq_api_ping}, {"HEAD", zq_api_ping}}},
    {R_QUEUES, "GET", 0, {{"GET", zq_api_queue_list}}},
    {R_QUEUE, "GET, PUT, DELETE", 0,
     {{"GET", zq_api_queue_get}, {"PUT", zq_api_queue_put}, {"DELETE", zq_api_queue_delete}}},
    {R_STATS, "GET", 0, {{"GET", zq_api_queue_stats}}},
    {R_MESSAGES, "GET, POST, DELETE", 1,
     {{"GET", zq_api_messages_list}, {"POST", zq_api_messages_post},
      {"DELETE", zq_api_messages_delete}}},
    {R_MESSAGE, "GET, DELETE", 1,
     {{"GET", zq_api_message_get}, {"DELETE", zq_api_message_delete}}},
    {R_CLAIMS, "POST", 1, {{"POST", zq_api_claim_create}}},
    {R_CLAIM, "GET, PATCH, DELETE", 1,
     {{"GET", zq_api_claim_get}, {"PATCH", zq_api_claim_update},
      {"DELETE", zq_api_claim_delete}}},
    {R_FLAVOR, "GET, PUT, DELETE", 0,
     {{"GET", zq_api_flavor_get}, {"PUT", zq_api_flavor_put}, {"DELETE", zq_api_flavor_delete}}},
};

static const route_def *route_of(route_kind k)
{
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (routes[i].kind == k)
            return &routes[i];
    return NULL;
}

/* Everything the MHD callbacks keep about one request. */
typedef struct {
    zq_req req;
    const route_def *route;  /* NULL: unknown path (404) */
    int name_invalid;        /* the {name} segment is not a valid name (400) */
    char *body;
    size_t len, cap, limit;
    int too_large;
    int dispatched;          /* counted in zq_http.active */
    struct timespec start;
    char log_path[LOG_PATH_MAX * 4 + 8]; /* the raw path, escaped for the log */
    char log_method[32];
} req_ctx;

/* ------------------------------------------------------------ decoding */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out (NUL-terminated).  -1 on a bad escape, a
 * NUL byte, or when the result does not fit. */
static int pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return -1;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0' || o + 1 >= outlen)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

typedef struct {
    char s[SEGMENT_MAX];
    int ok; /* decoded fine */
} segment;

/* Splits an origin-form path into decoded segments ("/v2/queues/" gives
 * "v2", "queues": one trailing slash is ignored).  Returns the count, or -1
 * when the path is not origin-form or has too many segments. */
static int split_path(const char *url, segment *segs, int max)
{
    if (url[0] != '/')
        return -1;
    const char *p = url + 1;
    size_t len = strlen(p);
    if (len && p[len - 1] == '/')
        len--;
    if (len == 0)
        return 0;
    const char *end = p + len;
    int n = 0;
    while (p <= end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        if (!slash)
            slash = end;
        if (n == max)
            return -1;
        segment *sg = &segs[n++];
        sg->ok = pct_decode(p, (size_t)(slash - p), sg->s, sizeof sg->s) == 0;
        p = slash + 1;
    }
    return n;
}

static int seg_is(const segment *s, const char *lit)
{
    return s->ok && strcmp(s->s, lit) == 0;
}

/* Matches the path against the route table; fills ctx->req.name/id. */
static const route_def *match_route(req_ctx *ctx, const char *url)
{
    segment segs[MAX_SEGMENTS];
    int n = split_path(url, segs, MAX_SEGMENTS);
    zq_req *r = &ctx->req;
    if (n < 1 || !seg_is(&segs[0], "v2"))
        return NULL;
    if (n == 1)
        return route_of(R_HOME);
    if (n == 2 && seg_is(&segs[1], "health"))
        return route_of(R_HEALTH);
    if (n == 2 && seg_is(&segs[1], "ping"))
        return route_of(R_PING);
    if (n == 2 && seg_is(&segs[1], "queues"))
        return route_of(R_QUEUES);
    if (n < 3 || !(seg_is(&segs[1], "queues") || seg_is(&segs[1], "flavors")))
        return NULL;

    /* /v2/queues/{name}... or /v2/flavors/{name} */
    if (segs[2].ok && zq_valid_name(segs[2].s))
        snprintf(r->name, sizeof r->name, "%.*s", ZQ_NAME_MAX, segs[2].s);
    else
        ctx->name_invalid = 1;
    if (seg_is(&segs[1], "flavors"))
        return n == 3 ? route_of(R_FLAVOR) : NULL;
    if (n == 3)
        return route_of(R_QUEUE);
    if (n == 4 && seg_is(&segs[3], "stats"))
        return route_of(R_STATS);
    int messages = seg_is(&segs[3], "messages"), claims = seg_is(&segs[3], "claims");
    if (!messages && !claims)
        return NULL;
    if (n == 4)
        return route_of(messages ? R_MESSAGES : R_CLAIMS);
    if (n != 5)
        return NULL;
    r->id_valid = segs[4].ok && zq_valid_id(segs[4].s);
    if (r->id_valid)
        snprintf(r->id, sizeof r->id, "%.*s", ZQ_ID_LEN - 1, segs[4].s);
    return route_of(messages ? R_MESSAGE : R_CLAIM);
}

int zq_req_arg(const zq_req *r, const char *key, char *out, size_t outlen)
{
    const char *v = NULL;
    size_t vlen = 0;
    if (MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, key, strlen(key),
                                      &v, &vlen) != MHD_YES)
        return 0;
    if (!v) {
        v = "";
        vlen = 0;
    }
    return pct_decode(v, vlen, out, outlen) == 0 ? 1 : -1;
}

/* ------------------------------------------------------------ replies */

void zq_reply_json(zq_req *r, unsigned status, json_t *body)
{
    if (r->resp)
        json_decref(r->resp);
    r->status = status;
    r->resp = body;
}

void zq_reply_empty(zq_req *r, unsigned status)
{
    zq_reply_json(r, status, NULL);
}

void zq_reply_error(zq_req *r, unsigned status, const char *title, const char *fmt, ...)
{
    char desc[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(desc, sizeof desc, fmt, ap);
    va_end(ap);
    /* Details may quote request bytes (JSON parser errors): keep them
     * printable ASCII so the error body always encodes. */
    for (char *p = desc; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    zq_reply_json(r, status, json_pack("{s:s, s:s}", "title", title, "description", desc));
}

/* r->resp as compact JSON plus a final newline (so that pipelined
 * responses read with line tools stay apart), malloc'd; NULL on failure. */
static char *encode_body(const json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *t = realloc(text, n + 2);
    if (!t) {
        free(text);
        return NULL;
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    return t;
}

/* Builds and queues the MHD response from r's output fields. */
static enum MHD_Result send_reply(struct MHD_Connection *conn, zq_req *r)
{
    struct MHD_Response *resp;
    char *text = r->resp ? encode_body(r->resp) : NULL;
    if (r->resp && !text) {
        /* Should not happen (bodies are built from valid JSON), but never
         * answer a 2xx without the body the client expects. */
        static const char oops[] =
            "{\"title\":\"Internal error\",\"description\":\"response encoding failed\"}\n";
        r->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        text = strdup(oops);
        if (!text)
            return MHD_NO;
    }
    if (text) {
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(text);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "application/json; charset=UTF-8");
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
    }
    if (r->location[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
    if (r->allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    enum MHD_Result ok = MHD_queue_response(conn, r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* ------------------------------------------------------------ dispatch */

static zq_handler *find_method(const route_def *rd, const char *method)
{
    for (size_t i = 0; i < sizeof rd->methods / sizeof *rd->methods && rd->methods[i].method; i++)
        if (strcmp(rd->methods[i].method, method) == 0)
            return rd->methods[i].fn;
    return NULL;
}

/* RFC 9110 field names are tokens: 1+ of ALPHA DIGIT !#$%&'*+-.^_`|~ */
static int valid_field_name(const char *k)
{
    if (!k || !*k)
        return 0;
    for (; *k; k++) {
        unsigned char c = (unsigned char)*k;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c && strchr("!#$%&'*+-.^_`|~", c))))
            return 0;
    }
    return 1;
}

static enum MHD_Result field_name_check(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    int *bad = cls;
    (void)kind;
    (void)value;
    if (!valid_field_name(key)) {
        *bad = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

/* Header checks of a routed request; 0 when fine, else replied 400. */
static int check_headers(struct MHD_Connection *conn, req_ctx *ctx)
{
    zq_req *r = &ctx->req;
    const char *project = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Project-ID");
    if (project) {
        if (!zq_valid_project(project)) {
            zq_reply_error(r, 400, "Invalid API request",
                           "X-Project-ID must match ^[A-Za-z0-9_.-]{0,256}$");
            return -1;
        }
        snprintf(r->project, sizeof r->project, "%s", project);
    }
    if (ctx->route->needs_client_id) {
        const char *cid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Client-ID");
        if (!cid || zq_parse_client_id(cid, r->client_id) != 0) {
            zq_reply_error(r, 400, "Invalid API request",
                           cid ? "Client-ID must be a UUID" : "the Client-ID header is missing");
            return -1;
        }
    }
    return 0;
}

static void dispatch(zq_http *h, struct MHD_Connection *conn, req_ctx *ctx)
{
    zq_req *r = &ctx->req;
    /* libmicrohttpd tolerates header lines such as ": value"; we do not. */
    int bad_name = 0;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, field_name_check, &bad_name);
    if (bad_name) {
        zq_reply_error(r, 400, "Invalid API request", "malformed header field name");
        return;
    }
    if (!ctx->route) {
        zq_reply_error(r, 404, "Not found", "no such resource");
        return;
    }
    zq_handler *fn = find_method(ctx->route, r->method);
    if (!fn) {
        r->allow = ctx->route->allow;
        zq_reply_error(r, 405, "Method not allowed", "%s is not allowed here (allowed: %s)",
                       ctx->log_method, ctx->route->allow);
        return;
    }
    if (check_headers(conn, ctx) != 0)
        return;
    if (ctx->name_invalid) {
        zq_reply_error(r, 400, ctx->route->kind == R_FLAVOR ? "Invalid API request" : "Invalid queue name",
                       "names must match ^[A-Za-z0-9_-]{1,64}$");
        return;
    }
    if (ctx->too_large) {
        zq_reply_error(r, 400, "Invalid API request", "the request body exceeds %zu bytes",
                       ctx->limit);
        return;
    }
    r->body = ctx->len ? ctx->body : NULL;
    r->body_len = ctx->len;
    fn(h->app, r);
    if (r->status == 0) /* a handler forgot to answer: a bug, but do not hang */
        zq_reply_error(r, 500, "Internal error", "no response");
}

/* ------------------------------------------------------------ MHD callbacks */

/* Copies s into out for a key="value" log field: quotes, backslashes,
 * control and non-ASCII bytes become \xHH; long values are cut. */
static void log_escape(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; s[i] && o + 8 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == LOG_PATH_MAX) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static req_ctx *ctx_new(struct MHD_Connection *conn, const char *url, const char *method)
{
    req_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, &ctx->start);
    ctx->req.conn = conn;
    ctx->req.method = method;
    log_escape(method, ctx->log_method, sizeof ctx->log_method);
    log_escape(url, ctx->log_path, sizeof ctx->log_path);
    ctx->route = match_route(ctx, url);
    ctx->limit = ctx->route && ctx->route->kind == R_MESSAGES && strcmp(method, "POST") == 0
                     ? ZQ_MAX_MESSAGES_BODY : ZQ_MAX_OTHER_BODY;
    return ctx;
}

/* Appends upload data, or drops it once the body went over the cap. */
static int body_append(req_ctx *ctx, const char *data, size_t n)
{
    if (ctx->too_large)
        return 0;
    if (n > ctx->limit - ctx->len) {
        ctx->too_large = 1;
        free(ctx->body);
        ctx->body = NULL;
        ctx->len = ctx->cap = 0;
        return 0;
    }
    if (ctx->len + n > ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap : 4096;
        while (cap < ctx->len + n)
            cap *= 2;
        if (cap > ctx->limit)
            cap = ctx->limit;
        char *nb = realloc(ctx->body, cap);
        if (!nb)
            return -1;
        ctx->body = nb;
        ctx->cap = cap;
    }
    memcpy(ctx->body + ctx->len, data, n);
    ctx->len += n;
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    zq_http *h = cls;
    req_ctx *ctx = *con_cls;
    (void)version;
    if (!ctx) {
        ctx = ctx_new(conn, url, method);
        if (!ctx)
            return MHD_NO;
        *con_cls = ctx;
        return MHD_YES;
    }
    if (*upload_size) {
        if (body_append(ctx, upload_data, *upload_size) != 0)
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    ctx->dispatched = 1;
    atomic_fetch_add(&h->active, 1);
    dispatch(h, conn, ctx);
    return send_reply(conn, &ctx->req);
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return "ok";
    case MHD_REQUEST_TERMINATED_WITH_ERROR: return "error";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "shutdown";
    case MHD_REQUEST_TERMINATED_READ_ERROR: return "read_error";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client_abort";
    }
    return "unknown";
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    zq_http *h = cls;
    req_ctx *ctx = *con_cls;
    (void)conn;
    if (!ctx)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - ctx->start.tv_sec) * 1e3 +
                (double)(now.tv_nsec - ctx->start.tv_nsec) / 1e6;
    zq_log(toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? ZQ_LOG_INFO : ZQ_LOG_WARN, "request",
           "method=%s path=\"%s\" status=%u duration_ms=%.3f project=\"%s\"%s%s",
           ctx->log_method, ctx->log_path, ctx->req.status, ms, ctx->req.project,
           toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " end=",
           toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : termination_name(toe));
    if (ctx->req.resp)
        json_decref(ctx->req.resp);
    if (ctx->dispatched)
        atomic_fetch_sub(&h->active, 1);
    free(ctx->body);
    free(ctx);
    *con_cls = NULL;
}

/* Leave every byte of the URL and the query as sent (see the file comment). */
static size_t unescape_none(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512], esc[LOG_PATH_MAX * 4 + 8];
    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n')
        line[--n] = '\0';
    log_escape(line, esc, sizeof esc);
    zq_log(ZQ_LOG_WARN, "libmicrohttpd", "detail=\"%s\"", esc);
}

/* ------------------------------------------------------------ start / stop */

zq_http *zq_http_start(const zq_config *cfg, zq_app *app, char *err, size_t errlen)
{
    zq_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->app = app;
    atomic_init(&h->active, 0);
    unsigned int flags = MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_INTERNAL_POLLING_THREAD;
    if (cfg->thread_per_connection)
        flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
    else
        flags |= MHD_USE_EPOLL;
    if (cfg->addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The thread pool option comes last so that thread-per-connection (and
     * a single thread, which libmicrohttpd runs without a pool) can end the
     * list before it. */
    int pool = !cfg->thread_per_connection && cfg->threads > 1;
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, /* first, so it sees every message */
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&cfg->addr,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY_LIMIT,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
        pool ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
        (unsigned int)cfg->threads,
        MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "cannot start the HTTP daemon on %s (address in use or not local?)",
                 cfg->listen);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : 0;
    return h;
}

unsigned zq_http_port(const zq_http *h)
{
    return h->port;
}

void zq_http_stop(zq_http *h)
{
    if (!h)
        return;
    MHD_socket s = MHD_quiesce_daemon(h->daemon);
    if (s != MHD_INVALID_SOCKET)
        close(s);
    /* Requests being handled or answered get a bounded time to finish;
     * idle keep-alive connections and requests whose body is still being
     * uploaded are simply closed by MHD_stop_daemon. */
    for (int waited = 0; atomic_load(&h->active) > 0 && waited < SHUTDOWN_GRACE_MS; waited += 10) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    int left = atomic_load(&h->active);
    if (left > 0)
        zq_log(ZQ_LOG_WARN, "stopping with requests in flight", "count=%d", left);
    MHD_stop_daemon(h->daemon);
    free(h);
}
