/*
 * api.h - the Zaqar v2 handlers of zaqard (queues, messages, claims, stats,
 * health, home, flavors) and the application state they share.
 *
 * Each handler is called by the router (http.c) with a checked zq_req (see
 * http.h) and answers with exactly one zq_reply_*() call.
 */
#ifndef ZAQARD_API_H
#define ZAQARD_API_H

#include "catalog.h"
#include "config.h"
#include "http.h"
#include "store.h"

/* One message store, as configured. */
typedef struct {
    char name[ZQ_NAME_MAX + 1];
    int weight;
    char group[ZQ_NAME_MAX + 1];
    zq_store *store;
} zq_pool;

/* Set up by main() before the server starts and immutable while it runs,
 * so handlers read it without locking (the catalog and the stores are
 * thread-safe themselves). */
struct zq_app {
    zq_catalog *catalog;
    zq_pool *pools;   /* sorted by name (the placement hash depends on it) */
    size_t npools;
};

typedef void zq_handler(zq_app *app, zq_req *r);

zq_handler zq_api_home;
zq_handler zq_api_health;          /* GET/HEAD /v2/health */
zq_handler zq_api_ping;            /* GET/HEAD /v2/ping */
zq_handler zq_api_queue_list;      /* GET /v2/queues */
zq_handler zq_api_queue_put;
zq_handler zq_api_queue_get;
zq_handler zq_api_queue_delete;
zq_handler zq_api_queue_stats;
zq_handler zq_api_messages_post;
zq_handler zq_api_messages_list;
zq_handler zq_api_messages_delete; /* ?ids= or ?pop= */
zq_handler zq_api_message_get;
zq_handler zq_api_message_delete;
zq_handler zq_api_claim_create;
zq_handler zq_api_claim_get;
zq_handler zq_api_claim_update;
zq_handler zq_api_claim_delete;
zq_handler zq_api_flavor_put;      /* admin: PUT /v2/flavors/{name} {"pool_group": G} */
zq_handler zq_api_flavor_get;
zq_handler zq_api_flavor_delete;

/* Validators used by the router. */
int zq_valid_project(const char *s);  /* ^[A-Za-z0-9_.-]{0,256}$ */
int zq_valid_id(const char *s);       /* ^[A-Za-z0-9_-]{1,47}$ (message / claim ids) */
/* A UUID (36 chars with hyphens, or 32 hex) into lowercase 8-4-4-4-12 form;
 * 0 on success, -1 when malformed. */
int zq_parse_client_id(const char *s, char out[37]);

#endif
