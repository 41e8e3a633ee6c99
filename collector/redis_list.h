/*
 * collector/redis_list.h - `ldprof trace list --redis URI`: the traces
 * stored in Redis in OSProfiler's layout (compat §8: one list
 * osprofiler_opt:<base_id> per trace), found with SCAN (never KEYS, which
 * blocks the server), each read with LRANGE (pipelined per SCAN batch) and
 * summarised exactly as a dump file of the same trace would be (the report
 * is built from the events as `ldprof trace show --redis` builds it), then
 * filtered with the directory listing's filters.
 */
#ifndef LDPROF_COLLECTOR_REDIS_LIST_H
#define LDPROF_COLLECTOR_REDIS_LIST_H

#include <stddef.h>

#include "render.h"

/* Called for a key that is skipped: `id` is the key without its prefix,
 * `why` a short reason ("not a list", "event 3 is not JSON", ...). */
typedef void (*coll_redis_list_warn)(void *arg, const char *id, const char *why);

/* List the traces of the Redis database at `uri` ("redis://HOST[:PORT][/DB]")
 * that pass `f`.  On success returns 0 with *rows a malloc'd array of *nrows
 * summaries (unsorted; the caller frees it) and *skipped the number of keys
 * passed to `warn` (may be NULL).  Returns -1 with `err` filled when the URI
 * is bad, the server cannot be reached or a command fails. */
int coll_redis_list(const char *uri, const struct coll_list_filter *f,
                    struct coll_summary **rows, size_t *nrows, size_t *skipped,
                    coll_redis_list_warn warn, void *arg, char *err, size_t errlen);

/* The ids (keys without "osprofiler_opt:") of the traces of the Redis
 * database at `uri` whose id starts with `prefix`, ignoring the case of
 * the hex letters (as `trace show` matches dump names), found with SCAN
 * MATCH (bounded; each id once).  `prefix` must hold only hex digits and
 * '-' (no glob characters).  Returns 0 with *ids a malloc'd array of *n
 * malloc'd strings (free with coll_redis_ids_free), or -1 with `err`. */
int coll_redis_find_ids(const char *uri, const char *prefix, char ***ids, size_t *n,
                        char *err, size_t errlen);
void coll_redis_ids_free(char **ids, size_t n);

#endif
