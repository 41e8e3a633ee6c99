/*
 * http.h - zaqard's HTTP layer (libmicrohttpd): daemon setup, routing,
 * request bodies, JSON responses and the per-request log line.
 *
 * The handlers (api.h) never see libmicrohttpd: the router hands them a
 * zq_req with the path parameters decoded and validated, the headers checked
 * (X-Project-ID always, Client-ID on message and claim routes) and the whole
 * body in memory (already size-checked); a handler answers with exactly one
 * zq_reply_*() call.
 */
#ifndef ZAQARD_HTTP_H
#define ZAQARD_HTTP_H

#include <jansson.h>
#include <stddef.h>

#include "config.h"
#include "store.h"

#define ZQ_PROJECT_MAX 256
#define ZQ_MAX_MESSAGES_BODY 262144 /* POST .../messages */
#define ZQ_MAX_OTHER_BODY 65536     /* metadata and every other body */

typedef struct zq_app zq_app;

typedef struct zq_req {
    /* ---- input, set by the router */
    const char *method;                 /* "GET", "PUT", ... */
    char project[ZQ_PROJECT_MAX + 1];   /* X-Project-ID, "" when absent */
    char client_id[37];                 /* Client-ID as lowercase 8-4-4-4-12; "" when not required */
    char name[ZQ_NAME_MAX + 1];         /* {name}: queue or flavor, valid */
    char id[ZQ_ID_LEN];                 /* {id}: message or claim id, when id_valid */
    int id_valid;                       /* 0: the path id cannot name anything (malformed) */
    const char *body;                   /* request body, not NUL-terminated; NULL when empty */
    size_t body_len;
    void *conn;                         /* opaque: the MHD connection (zq_req_arg) */

    /* ---- output, set by zq_reply_*() */
    unsigned status;
    json_t *resp;                       /* owned; NULL = empty body */
    char location[512];                 /* Location header, "" = none */
    const char *allow;                  /* Allow header (static string) or NULL */
} zq_req;

/* Query-string argument `key`, percent-decoded into out.  Returns 1 when
 * present (out may be ""), 0 when absent, -1 when undecodable (bad escape,
 * NUL byte) or longer than outlen - 1. */
int zq_req_arg(const zq_req *r, const char *key, char *out, size_t outlen);

/* Responses.  zq_reply_json takes ownership of body. */
void zq_reply_json(zq_req *r, unsigned status, json_t *body);
void zq_reply_empty(zq_req *r, unsigned status);
void zq_reply_error(zq_req *r, unsigned status, const char *title, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The server. */
typedef struct zq_http zq_http;

/* Starts listening on cfg->addr in cfg's concurrency mode; NULL with err
 * filled when the daemon cannot start (e.g. the address is taken). */
zq_http *zq_http_start(const zq_config *cfg, zq_app *app, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
unsigned zq_http_port(const zq_http *h);

/* Stops accepting, lets in-flight requests finish (bounded wait), closes
 * every connection and frees h. */
void zq_http_stop(zq_http *h);

#endif
