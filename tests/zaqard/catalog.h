/*
 * catalog.h - zaqard's management store: pools, flavors and queue placement
 * in PostgreSQL (libpq).
 *
 * Tables (created at start when missing):
 *   pools(name text primary key, uri text, weight int, pool_group text)
 *   flavors(project text, name text, pool_group text, primary key(project, name))
 *   queues(project text, name text, pool text, metadata text, created bigint,
 *          primary key(project, name))
 * queues.metadata is the queue's metadata object as compact ASCII-only JSON;
 * queues.created is epoch milliseconds.
 *
 * Contract for every operation:
 *  - Thread-safe.  The catalog owns a fixed pool of PGconn (connected lazily,
 *    handed out one per call under a mutex + condition variable), so a call
 *    blocks while every connection is busy.  A caller never holds more than
 *    one connection, so the pool cannot deadlock.
 *  - Only parameterised statements; the hot ones are prepared once per
 *    connection.
 *  - Returns ZQ_OK, ZQ_ENOENT (row absent), or ZQ_EBACKEND with err filled
 *    (PostgreSQL unreachable or failing: HTTP 503).  A broken connection is
 *    PQreset once before giving up.
 *  - Arguments are validated by the caller (names, projects).
 */
#ifndef ZAQARD_CATALOG_H
#define ZAQARD_CATALOG_H

#include <stddef.h>

#include "config.h"
#include "store.h"

typedef struct zq_catalog zq_catalog;

/* Connects once (to fail early), creates the tables and keeps nconns
 * connection slots (>= 1).  NULL with err filled on failure. */
zq_catalog *zq_catalog_open(const char *conninfo, size_t nconns, zq_err *err);
void zq_catalog_close(zq_catalog *c);

/* Upserts the configured pools into the pools table. */
int zq_catalog_register_pools(zq_catalog *c, const zq_pool_cfg *pools, size_t n, zq_err *err);

/* Round trip (SELECT 1). */
int zq_catalog_ping(zq_catalog *c, zq_err *err);

/* The queue's pool, and with metadata != NULL its metadata JSON text
 * (malloc'd, the caller frees).  ZQ_ENOENT when the queue does not exist. */
int zq_catalog_queue_get(zq_catalog *c, const char *project, const char *name,
                         char pool[ZQ_NAME_MAX + 1], char **metadata, zq_err *err);

/* Creates the queue on `new_pool` with `metadata`, or replaces the metadata
 * of an existing queue (which keeps its pool).  *created tells which; pool
 * receives the queue's actual pool. */
int zq_catalog_queue_put(zq_catalog *c, const char *project, const char *name,
                         const char *new_pool, const char *metadata, int *created,
                         char pool[ZQ_NAME_MAX + 1], zq_err *err);

/* Creates the queue on `new_pool` with metadata "{}" unless it exists (then
 * nothing changes).  pool/metadata (malloc'd) receive the queue's actual
 * values either way; metadata may be NULL when not wanted. */
int zq_catalog_queue_ensure(zq_catalog *c, const char *project, const char *name,
                            const char *new_pool, char pool[ZQ_NAME_MAX + 1],
                            char **metadata, zq_err *err);

/* Deletes the queue's row (ZQ_OK also when absent). */
int zq_catalog_queue_delete(zq_catalog *c, const char *project, const char *name, zq_err *err);

typedef struct {
    char name[ZQ_NAME_MAX + 1];
    char *metadata; /* malloc'd JSON text, NULL unless listed with metadata */
} zq_queue_entry;

typedef struct {
    zq_queue_entry *v;
    size_t n;
} zq_queue_list;

/* Queues of `project` whose name sorts (bytewise) after `marker` ("" = from
 * the start), at most `limit`, in name order. */
int zq_catalog_queue_list(zq_catalog *c, const char *project, const char *marker,
                          int limit, int with_metadata, zq_queue_list *out, zq_err *err);
void zq_queue_list_free(zq_queue_list *l);

/* Flavors: a project-scoped name for a pool group. */
int zq_catalog_flavor_put(zq_catalog *c, const char *project, const char *name,
                          const char *group, int *created, zq_err *err);
int zq_catalog_flavor_get(zq_catalog *c, const char *project, const char *name,
                          char group[ZQ_NAME_MAX + 1], zq_err *err);
int zq_catalog_flavor_delete(zq_catalog *c, const char *project, const char *name, zq_err *err);

#endif
