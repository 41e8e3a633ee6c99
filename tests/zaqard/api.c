/*
 * api.c - the Zaqar v2 handlers of zaqard (see API.md for the contract).
 *
 * Every queue-scoped handler first finds the queue's pool in the catalog
 * (lookup_queue), then calls that pool's store.  Validation of the query
 * string and the body happens before any database is touched.
 */
#include "api.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* Limits (API.md, "Limits"). */
#define MSG_TTL_MIN 60
#define MSG_TTL_MAX 1209600
#define MSG_TTL_DEFAULT 3600
#define MSGS_PER_POST 20
#define CLAIM_TTL_MIN 60
#define CLAIM_TTL_MAX 43200
#define CLAIM_TTL_DEFAULT 60
#define GRACE_MIN 0
#define GRACE_MAX 43200
#define GRACE_DEFAULT 60
#define PAGE_MAX 20
#define PAGE_DEFAULT 10
#define QUEUE_PAGE_MAX 1000
#define QUEUE_PAGE_DEFAULT 10

static const char T_BAD[] = "Invalid API request";
static const char T_JSON[] = "Malformed JSON";
static const char T_NOT_FOUND[] = "Not found";
static const char T_FORBIDDEN[] = "Forbidden";
static const char T_UNAVAILABLE[] = "Service temporarily unavailable";

/* ------------------------------------------------------------ validators */

static int is_alnum_ascii(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_hex_ascii(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int zq_valid_project(const char *s)
{
    for (size_t n = 0; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= ZQ_PROJECT_MAX || !(is_alnum_ascii(c) || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

int zq_valid_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= ZQ_ID_LEN - 1 || !(is_alnum_ascii(c) || c == '_' || c == '-'))
            return 0;
    }
    return n > 0;
}

int zq_parse_client_id(const char *s, char out[37])
{
    size_t n = strlen(s), h = 0;
    char hex[32];
    if (n != 32 && n != 36)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int dash_pos = n == 36 && (i == 8 || i == 13 || i == 18 || i == 23);
        if (dash_pos ? c != '-' : !is_hex_ascii(c))
            return -1;
        if (!dash_pos)
            hex[h++] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    }
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
    return 0;
}

/* ------------------------------------------------------------ helpers */

/* Answers a failed store or catalog call: ENOENT 404, EFORBIDDEN 403,
 * ECONFLICT 409, EINVAL 400, anything else 503 (logged). */
static void reply_failure(zq_req *r, int rc, const zq_err *err, const char *what)
{
    switch (rc) {
    case ZQ_ENOENT:
        zq_reply_error(r, 404, T_NOT_FOUND, "%s not found", what);
        return;
    case ZQ_EFORBIDDEN:
        zq_reply_error(r, 403, T_FORBIDDEN,
                       "%s: claim_id is missing or does not match the message's live claim", what);
        return;
    case ZQ_ECONFLICT:
        zq_reply_error(r, 409, "Conflict", "%s: conflict", what);
        return;
    case ZQ_EINVAL:
        zq_reply_error(r, 400, T_BAD, "%s: %s", what, err->msg);
        return;
    }
    char safe[sizeof err->msg];
    snprintf(safe, sizeof safe, "%s", err->msg);
    for (char *p = safe; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '\'';
    zq_log(ZQ_LOG_WARN, "backend failure", "what=%s rc=%d error=\"%s\"", what, rc, safe);
    if (err->msg[0])
        zq_reply_error(r, 503, T_UNAVAILABLE, "%s", err->msg);
    else
        zq_reply_error(r, 503, T_UNAVAILABLE, "%s: database failure", what);
}

/* A query argument; an empty value counts as absent (as in Zaqar).
 * Returns 1 present, 0 absent, -1 after replying 400 (undecodable/too long). */
static int arg_get(zq_req *r, const char *key, char *out, size_t outlen)
{
    int got = zq_req_arg(r, key, out, outlen);
    if (got < 0) {
        zq_reply_error(r, 400, T_BAD, "query parameter %s is malformed or too long", key);
        return -1;
    }
    if (got == 0 || !out[0]) {
        out[0] = '\0';
        return 0;
    }
    return 1;
}

/* Integer argument in [min, max], def when absent.  0, or -1 after a 400. */
static int arg_int(zq_req *r, const char *key, long min, long max, long def, long *out)
{
    char buf[32];
    int got = arg_get(r, key, buf, sizeof buf);
    if (got < 0)
        return -1;
    *out = def;
    if (got == 1 && zq_parse_long(buf, min, max, out) != 0) {
        zq_reply_error(r, 400, T_BAD, "%s must be an integer in %ld..%ld", key, min, max);
        return -1;
    }
    return 0;
}

/* Boolean argument (true/false, 1/0, yes/no); *given tells if it was sent.
 * 0, or -1 after a 400. */
static int arg_bool(zq_req *r, const char *key, int *out, int *given)
{
    char buf[8];
    int got = arg_get(r, key, buf, sizeof buf);
    *given = got == 1;
    *out = 0;
    if (got <= 0)
        return got;
    if (!strcasecmp(buf, "true") || !strcmp(buf, "1") || !strcasecmp(buf, "yes"))
        *out = 1;
    else if (strcasecmp(buf, "false") && strcmp(buf, "0") && strcasecmp(buf, "no")) {
        zq_reply_error(r, 400, T_BAD, "%s must be true or false", key);
        return -1;
    }
    return 0;
}

/* The body as JSON (any type).  A blank body gives *out = NULL when
 * allow_empty, else 400.  0, or -1 after a 400. */
static int body_json(zq_req *r, int allow_empty, json_t **out)
{
    *out = NULL;
    size_t i = 0;
    while (i < r->body_len && strchr(" \t\r\n", r->body[i]) && r->body[i])
        i++;
    if (i == r->body_len) {
        if (allow_empty)
            return 0;
        zq_reply_error(r, 400, T_JSON, "a JSON body is required");
        return -1;
    }
    json_error_t je;
    *out = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &je);
    if (!*out) {
        zq_reply_error(r, 400, T_JSON, "%s (line %d, column %d)", je.text, je.line, je.column);
        return -1;
    }
    return 0;
}

/* obj[key] as an integer in [min, max], def when absent.  0, or -1 after a
 * 400 (wrong type, e.g. a string or a real, or out of range). */
static int field_int(zq_req *r, json_t *obj, const char *what, const char *key,
                     long min, long max, long def, long *out)
{
    json_t *v = json_object_get(obj, key);
    *out = def;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        zq_reply_error(r, 400, T_BAD, "%s%s must be an integer in %ld..%ld", what, key, min, max);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

static long long age_s(long long created_ms, long long now_ms)
{
    long long a = (now_ms - created_ms) / 1000;
    return a < 0 ? 0 : a;
}

/* json_pack that never yields NULL (a store handing back an id that is not
 * UTF-8 would be a store bug; answer with what can be encoded). */
static json_t *must(json_t *j)
{
    if (j)
        return j;
    zq_log(ZQ_LOG_ERROR, "cannot encode a response value", NULL);
    return json_object();
}

static json_t *message_json(const char *queue, const zq_message *m, long long now)
{
    char href[256];
    snprintf(href, sizeof href, "/v2/queues/%s/messages/%s", queue, m->id);
    return must(json_pack("{s:s, s:s, s:i, s:I, s:O}", "id", m->id, "href", href,
                          "ttl", m->ttl, "age", (json_int_t)age_s(m->created_ms, now),
                          "body", m->body ? m->body : json_null()));
}

static json_t *messages_json(const char *queue, const zq_msg_vec *v)
{
    long long now = zq_now_ms();
    json_t *a = json_array();
    for (size_t i = 0; i < v->n; i++)
        json_array_append_new(a, message_json(queue, &v->v[i], now));
    return a;
}

static const zq_pool *pool_by_name(const zq_app *app, const char *name)
{
    for (size_t i = 0; i < app->npools; i++)
        if (strcmp(app->pools[i].name, name) == 0)
            return &app->pools[i];
    return NULL;
}

enum { Q_FOUND, Q_MISSING, Q_REPLIED };

/* Finds the queue {name} of the request's project.  Q_FOUND: *pool set, and
 * *metadata (malloc'd JSON text) when metadata != NULL.  Q_MISSING: no such
 * queue.  Q_REPLIED: a failure was answered (503). */
static int lookup_queue(zq_app *app, zq_req *r, const zq_pool **pool, char **metadata)
{
    char pname[ZQ_NAME_MAX + 1];
    zq_err err = {0};
    int rc = zq_catalog_queue_get(app->catalog, r->project, r->name, pname, metadata, &err);
    if (rc == ZQ_ENOENT)
        return Q_MISSING;
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, "catalog");
        return Q_REPLIED;
    }
    *pool = pool_by_name(app, pname);
    if (!*pool) {
        if (metadata) {
            free(*metadata);
            *metadata = NULL;
        }
        zq_reply_error(r, 503, T_UNAVAILABLE, "queue %s is on pool %s, which is not configured",
                       r->name, pname);
        return Q_REPLIED;
    }
    return Q_FOUND;
}

/* FNV-1a (64 bit) of "project/name". */
static uint64_t placement_hash(const char *project, const char *name)
{
    uint64_t h = 14695981039346656037ULL;
    for (const char *p = project; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ (unsigned char)'/') * 1099511628211ULL;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

/* Weighted choice among the pools accepted by `group` (NULL: every pool).
 * Deterministic: pools are sorted by name and the hash picks a point in the
 * cumulative weights.  Pools of weight 0 are skipped, unless a group has
 * only such pools (then they count equally). */
static const zq_pool *weighted_pick(const zq_app *app, const char *group, uint64_t h)
{
    unsigned long long total = 0;
    size_t members = 0;
    for (size_t i = 0; i < app->npools; i++)
        if (!group || strcmp(app->pools[i].group, group) == 0) {
            total += (unsigned long long)app->pools[i].weight;
            members++;
        }
    if (members == 0 || (total == 0 && !group))
        return NULL;
    int equal = total == 0;
    unsigned long long point = h % (equal ? members : total), acc = 0;
    for (size_t i = 0; i < app->npools; i++) {
        const zq_pool *p = &app->pools[i];
        if (group && strcmp(p->group, group) != 0)
            continue;
        acc += equal ? 1 : (unsigned long long)p->weight;
        if (point < acc)
            return p;
    }
    return NULL;
}

/* Chooses the pool of a new queue: the flavor's group when `flavor` is set
 * (400 if the flavor is unknown or its group has no pool), else the
 * weighted hash over every pool.  NULL after replying. */
static const zq_pool *place_queue(zq_app *app, zq_req *r, const char *flavor)
{
    char group[ZQ_NAME_MAX + 1];
    if (flavor) {
        zq_err err = {0};
        int rc = zq_catalog_flavor_get(app->catalog, r->project, flavor, group, &err);
        if (rc == ZQ_ENOENT) {
            zq_reply_error(r, 400, T_BAD, "flavor %s does not exist", flavor);
            return NULL;
        }
        if (rc != ZQ_OK) {
            reply_failure(r, rc, &err, "catalog");
            return NULL;
        }
    }
    const zq_pool *p = weighted_pick(app, flavor ? group : NULL,
                                     placement_hash(r->project, r->name));
    if (!p) {
        if (flavor)
            zq_reply_error(r, 400, T_BAD, "flavor %s: no pool in group '%s'", flavor, group);
        else
            zq_reply_error(r, 503, T_UNAVAILABLE, "no pool can take new queues");
    }
    return p;
}

/* Checks a queue metadata document: an object whose reserved keys are
 * _flavor (a flavor name), _default_message_ttl (a message ttl) or
 * _max_claim_count (>= 0).  *flavor points into md.  0, or -1 after a 400. */
static int check_metadata(zq_req *r, json_t *md, const char **flavor)
{
    *flavor = NULL;
    if (!json_is_object(md)) {
        zq_reply_error(r, 400, T_BAD, "queue metadata must be a JSON object");
        return -1;
    }
    const char *key;
    json_t *v;
    long ignored;
    json_object_foreach(md, key, v) {
        if (key[0] != '_')
            continue;
        if (strcmp(key, "_flavor") == 0) {
            if (!json_is_string(v) || !zq_valid_name(json_string_value(v))) {
                zq_reply_error(r, 400, T_BAD, "_flavor must be a flavor name");
                return -1;
            }
            *flavor = json_string_value(v);
        } else if (strcmp(key, "_default_message_ttl") == 0) {
            if (field_int(r, md, "", key, MSG_TTL_MIN, MSG_TTL_MAX, 0, &ignored) != 0)
                return -1;
        } else if (strcmp(key, "_max_claim_count") == 0) {
            if (field_int(r, md, "", key, 0, 1000000000L, 0, &ignored) != 0)
                return -1;
        } else {
            zq_reply_error(r, 400, T_BAD, "metadata keys starting with '_' are reserved");
            return -1;
        }
    }
    return 0;
}

/* The queue's default message ttl (its _default_message_ttl, else 3600). */
static int default_ttl(const char *metadata)
{
    json_t *md = metadata ? json_loads(metadata, 0, NULL) : NULL;
    json_t *v = json_object_get(md, "_default_message_ttl");
    int ttl = MSG_TTL_DEFAULT;
    if (json_is_integer(v) && json_integer_value(v) >= MSG_TTL_MIN &&
        json_integer_value(v) <= MSG_TTL_MAX)
        ttl = (int)json_integer_value(v);
    json_decref(md);
    return ttl;
}

static void iso8601(long long ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ------------------------------------------------------------ home, health */

void zq_api_home(zq_app *app, zq_req *r)
{
    static const struct {
        const char *rel, *href, *allow;
    } res[] = {
        {"rel/queues", "/v2/queues{?marker,limit,detailed}", "GET"},
        {"rel/queue", "/v2/queues/{queue_name}", "GET PUT DELETE"},
        {"rel/queue_stats", "/v2/queues/{queue_name}/stats", "GET"},
        {"rel/messages", "/v2/queues/{queue_name}/messages{?marker,limit,echo,include_claimed}", "GET"},
        {"rel/post_messages", "/v2/queues/{queue_name}/messages", "POST"},
        {"rel/messages_delete", "/v2/queues/{queue_name}/messages{?ids,pop}", "DELETE"},
        {"rel/message", "/v2/queues/{queue_name}/messages/{message_id}{?claim_id}", "GET DELETE"},
        {"rel/claim", "/v2/queues/{queue_name}/claims{?limit}", "POST"},
        {"rel/claim_item", "/v2/queues/{queue_name}/claims/{claim_id}", "GET PATCH DELETE"},
        {"rel/flavor", "/v2/flavors/{flavor_name}", "GET PUT DELETE"},
        {"rel/health", "/v2/health", "GET HEAD"},
        {"rel/ping", "/v2/ping", "GET HEAD"},
    };
    (void)app;
    json_t *resources = json_object();
    for (size_t i = 0; i < sizeof res / sizeof *res; i++) {
        json_t *allow = json_array();
        char buf[32], *save = NULL;
        snprintf(buf, sizeof buf, "%s", res[i].allow);
        for (char *m = strtok_r(buf, " ", &save); m; m = strtok_r(NULL, " ", &save))
            json_array_append_new(allow, json_string(m));
        json_object_set_new(resources, res[i].rel,
                            must(json_pack("{s:s, s:{s:o, s:{s:{}}}}", "href-template", res[i].href,
                                           "hints", "allow", allow, "formats",
                                           "application/json")));
    }
    zq_reply_json(r, 200, must(json_pack("{s:o}", "resources", resources)));
}

/* Pings the catalog and every pool; *doc receives the health document.
 * Returns 1 when everything answered. */
static int health_check(zq_app *app, json_t **doc)
{
    zq_err err = {0};
    int catalog_ok = zq_catalog_ping(app->catalog, &err) == ZQ_OK;
    int storage_ok = 1;
    json_t *pools = json_object();
    for (size_t i = 0; i < app->npools; i++) {
        const zq_pool *p = &app->pools[i];
        zq_err perr = {0};
        int ok = p->store->ops->ping(p->store, &perr) == ZQ_OK;
        if (!ok)
            zq_log(ZQ_LOG_WARN, "pool unreachable", "pool=%s", p->name);
        storage_ok &= ok;
        json_object_set_new(pools, p->name, must(json_pack("{s:s, s:b}", "kind", p->store->ops->kind,
                                                           "reachable", ok)));
    }
    if (!catalog_ok)
        zq_log(ZQ_LOG_WARN, "catalog unreachable", NULL);
    *doc = must(json_pack("{s:b, s:b, s:{}, s:o}", "catalog_reachable", catalog_ok,
                          "storage_reachable", storage_ok, "operation_status", "pools", pools));
    return catalog_ok && storage_ok;
}

void zq_api_health(zq_app *app, zq_req *r)
{
    json_t *doc;
    int ok = health_check(app, &doc);
    if (strcmp(r->method, "HEAD") == 0) {
        json_decref(doc);
        zq_reply_empty(r, ok ? 204 : 503);
        return;
    }
    zq_reply_json(r, ok ? 200 : 503, doc);
}

void zq_api_ping(zq_app *app, zq_req *r)
{
    json_t *doc;
    int ok = health_check(app, &doc);
    json_decref(doc);
    if (ok)
        zq_reply_empty(r, 204);
    else
        zq_reply_error(r, 503, T_UNAVAILABLE, "a database is unreachable");
}

/* ------------------------------------------------------------ queues */

void zq_api_queue_list(zq_app *app, zq_req *r)
{
    long limit;
    int detailed, detailed_given;
    char marker[ZQ_NAME_MAX + 2];
    if (arg_int(r, "limit", 1, QUEUE_PAGE_MAX, QUEUE_PAGE_DEFAULT, &limit) != 0)
        return;
    int got = arg_get(r, "marker", marker, sizeof marker);
    if (got < 0)
        return;
    if (got == 1 && !zq_valid_name(marker)) {
        zq_reply_error(r, 400, T_BAD, "marker must be a queue name");
        return;
    }
    if (arg_bool(r, "detailed", &detailed, &detailed_given) != 0)
        return;

    zq_queue_list l;
    zq_err err = {0};
    int rc = zq_catalog_queue_list(app->catalog, r->project, marker, (int)limit, detailed, &l, &err);
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, "catalog");
        return;
    }
    json_t *queues = json_array();
    for (size_t i = 0; i < l.n; i++) {
        char href[128];
        snprintf(href, sizeof href, "/v2/queues/%s", l.v[i].name);
        json_t *q = must(json_pack("{s:s, s:s}", "name", l.v[i].name, "href", href));
        if (detailed) {
            json_t *md = json_loads(l.v[i].metadata, 0, NULL);
            json_object_set_new(q, "metadata", md ? md : json_object());
        }
        json_array_append_new(queues, q);
    }
    json_t *links = json_array();
    if (l.n == (size_t)limit && l.n > 0) {
        char href[256];
        snprintf(href, sizeof href, "/v2/queues?marker=%s&limit=%ld%s", l.v[l.n - 1].name, limit,
                 detailed ? "&detailed=true" : "");
        json_array_append_new(links, must(json_pack("{s:s, s:s}", "rel", "next", "href", href)));
    }
    zq_queue_list_free(&l);
    zq_reply_json(r, 200, must(json_pack("{s:o, s:o}", "queues", queues, "links", links)));
}

void zq_api_queue_put(zq_app *app, zq_req *r)
{
    json_t *md;
    const char *flavor;
    char *text = NULL;
    if (body_json(r, 1, &md) != 0)
        return;
    if (!md)
        md = json_object();
    if (check_metadata(r, md, &flavor) != 0)
        goto out;
    /* Stored as ASCII-only JSON, whatever the database's encoding. */
    text = json_dumps(md, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!text) {
        zq_reply_error(r, 400, T_BAD, "metadata cannot be encoded");
        goto out;
    }
    const zq_pool *p = place_queue(app, r, flavor);
    if (!p)
        goto out;
    char pool[ZQ_NAME_MAX + 1];
    int created = 0;
    zq_err err = {0};
    int rc = zq_catalog_queue_put(app->catalog, r->project, r->name, p->name, text, &created,
                                  pool, &err);
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, "catalog");
    } else if (created) {
        snprintf(r->location, sizeof r->location, "/v2/queues/%s", r->name);
        zq_reply_empty(r, 201);
    } else {
        zq_reply_empty(r, 204);
    }
out:
    free(text);
    json_decref(md);
}

void zq_api_queue_get(zq_app *app, zq_req *r)
{
    char pool[ZQ_NAME_MAX + 1], *metadata = NULL;
    zq_err err = {0};
    int rc = zq_catalog_queue_get(app->catalog, r->project, r->name, pool, &metadata, &err);
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, rc == ZQ_ENOENT ? "queue" : "catalog");
        return;
    }
    json_t *md = json_loads(metadata, 0, NULL);
    if (!json_is_object(md)) {
        zq_log(ZQ_LOG_WARN, "stored metadata is not an object", "queue=%s", r->name);
        json_decref(md);
        md = json_object();
    }
    free(metadata);
    zq_reply_json(r, 200, md);
}

/* Purges the queue's messages and claims from its pool, then forgets the
 * queue.  A queue on a pool that is no longer configured is forgotten all
 * the same (its messages cannot be reached anyway). */
void zq_api_queue_delete(zq_app *app, zq_req *r)
{
    char pname[ZQ_NAME_MAX + 1];
    zq_err err = {0};
    int rc = zq_catalog_queue_get(app->catalog, r->project, r->name, pname, NULL, &err);
    if (rc == ZQ_ENOENT) {
        zq_reply_empty(r, 204);
        return;
    }
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, "catalog");
        return;
    }
    const zq_pool *p = pool_by_name(app, pname);
    if (p && (rc = p->store->ops->purge(p->store, r->project, r->name, &err)) != ZQ_OK) {
        reply_failure(r, rc, &err, "purge");
        return;
    }
    if (!p)
        zq_log(ZQ_LOG_WARN, "deleting a queue of an unconfigured pool", "queue=%s pool=%s",
               r->name, pname);
    rc = zq_catalog_queue_delete(app->catalog, r->project, r->name, &err);
    if (rc != ZQ_OK)
        reply_failure(r, rc, &err, "catalog");
    else
        zq_reply_empty(r, 204);
}

static json_t *stats_message_json(const char *queue, const zq_message *m, long long now)
{
    char href[256], created[32];
    snprintf(href, sizeof href, "/v2/queues/%s/messages/%s", queue, m->id);
    iso8601(m->created_ms, created);
    return must(json_pack("{s:s, s:s, s:I, s:s}", "id", m->id, "href", href,
                          "age", (json_int_t)age_s(m->created_ms, now), "created", created));
}

void zq_api_queue_stats(zq_app *app, zq_req *r)
{
    const zq_pool *p;
    switch (lookup_queue(app, r, &p, NULL)) {
    case Q_MISSING:
        zq_reply_error(r, 404, T_NOT_FOUND, "queue %s does not exist", r->name);
        return;
    case Q_REPLIED:
        return;
    }
    zq_stats st;
    memset(&st, 0, sizeof st);
    zq_err err = {0};
    int rc = p->store->ops->stats(p->store, r->project, r->name, &st, &err);
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, "stats");
        return;
    }
    json_t *m = must(json_pack("{s:I, s:I, s:I}", "free", (json_int_t)st.free,
                               "claimed", (json_int_t)st.claimed, "total", (json_int_t)st.total));
    if (st.total > 0) {
        long long now = zq_now_ms();
        json_object_set_new(m, "oldest", stats_message_json(r->name, &st.oldest, now));
        json_object_set_new(m, "newest", stats_message_json(r->name, &st.newest, now));
    }
    zq_message_clear(&st.oldest);
    zq_message_clear(&st.newest);
    zq_reply_json(r, 200, must(json_pack("{s:o}", "messages", m)));
}

/* ------------------------------------------------------------ messages */

/* Checks {"messages": [{"body": ..., "ttl": N}, ...]} (1..20 entries) and
 * fills msgs (ttl 0 = "use the queue's default").  Returns the count, or -1
 * after a 400. */
static int parse_post(zq_req *r, json_t *doc, zq_new_msg msgs[MSGS_PER_POST])
{
    json_t *arr = json_is_object(doc) ? json_object_get(doc, "messages") : NULL;
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > MSGS_PER_POST) {
        zq_reply_error(r, 400, T_BAD, "the body must be {\"messages\": [...]} with 1..%d messages",
                       MSGS_PER_POST);
        return -1;
    }
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        json_t *body = json_object_get(m, "body");
        if (!json_is_object(m) || !body) {
            zq_reply_error(r, 400, T_BAD, "message %zu must be an object with a body", i);
            return -1;
        }
        char what[32];
        long ttl;
        snprintf(what, sizeof what, "message %zu: ", i);
        if (field_int(r, m, what, "ttl", MSG_TTL_MIN, MSG_TTL_MAX, 0, &ttl) != 0)
            return -1;
        msgs[i].body = body;
        msgs[i].ttl = (int)ttl;
    }
    return (int)n;
}

/* The queue's pool and metadata, creating the queue when it does not exist
 * (POST messages does, as in Zaqar v2).  NULL after replying. */
static const zq_pool *queue_for_post(zq_app *app, zq_req *r, char **metadata)
{
    const zq_pool *p = NULL;
    int q = lookup_queue(app, r, &p, metadata);
    if (q == Q_FOUND)
        return p;
    if (q == Q_REPLIED)
        return NULL;
    const zq_pool *placed = place_queue(app, r, NULL);
    if (!placed)
        return NULL;
    char pname[ZQ_NAME_MAX + 1];
    zq_err err = {0};
    int rc = zq_catalog_queue_ensure(app->catalog, r->project, r->name, placed->name, pname,
                                     metadata, &err);
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, "catalog");
        return NULL;
    }
    /* A concurrent PUT may have won the race: use the pool it chose. */
    p = pool_by_name(app, pname);
    if (!p) {
        free(*metadata);
        *metadata = NULL;
        zq_reply_error(r, 503, T_UNAVAILABLE, "queue %s is on pool %s, which is not configured",
                       r->name, pname);
    }
    return p;
}

void zq_api_messages_post(zq_app *app, zq_req *r)
{
    json_t *doc;
    zq_new_msg msgs[MSGS_PER_POST];
    char *metadata = NULL;
    if (body_json(r, 0, &doc) != 0)
        return;
    int n = parse_post(r, doc, msgs);
    const zq_pool *p = n > 0 ? queue_for_post(app, r, &metadata) : NULL;
    if (!p)
        goto out;
    int dttl = default_ttl(metadata);
    for (int i = 0; i < n; i++)
        if (msgs[i].ttl == 0)
            msgs[i].ttl = dttl;
    char ids[MSGS_PER_POST][ZQ_ID_LEN];
    memset(ids, 0, sizeof ids);
    zq_err err = {0};
    int rc = p->store->ops->post(p->store, r->project, r->name, r->client_id, msgs, (size_t)n,
                                 ids, &err);
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, "post");
        goto out;
    }
    json_t *resources = json_array();
    for (int i = 0; i < n; i++) {
        char href[256];
        snprintf(href, sizeof href, "/v2/queues/%s/messages/%.*s", r->name, ZQ_ID_LEN - 1, ids[i]);
        json_array_append_new(resources, json_string(href));
    }
    zq_reply_json(r, 201, must(json_pack("{s:o}", "resources", resources)));
out:
    free(metadata);
    json_decref(doc);
}

/* A message marker: decimal digits.  0, or -1 after a 400. */
static int arg_marker(zq_req *r, long long *out)
{
    char buf[32];
    int got = arg_get(r, "marker", buf, sizeof buf);
    *out = 0;
    if (got <= 0)
        return got;
    size_t n = strspn(buf, "0123456789");
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (n != strlen(buf) || n > 18 || *end || v < 0) {
        zq_reply_error(r, 400, T_BAD, "marker must be a message marker (decimal digits)");
        return -1;
    }
    *out = v;
    return 0;
}

void zq_api_messages_list(zq_app *app, zq_req *r)
{
    long limit;
    long long marker;
    int echo, echo_given, incl, incl_given;
    if (arg_int(r, "limit", 1, PAGE_MAX, PAGE_DEFAULT, &limit) != 0 || arg_marker(r, &marker) != 0 ||
        arg_bool(r, "echo", &echo, &echo_given) != 0 ||
        arg_bool(r, "include_claimed", &incl, &incl_given) != 0)
        return;
    const zq_pool *p;
    switch (lookup_queue(app, r, &p, NULL)) {
    case Q_MISSING:
        zq_reply_json(r, 200, must(json_pack("{s:[], s:[]}", "messages", "links")));
        return;
    case Q_REPLIED:
        return;
    }
    zq_list_opts opts = {.limit = (int)limit, .marker = marker, .echo = echo,
                         .include_claimed = incl};
    zq_msg_vec v = {0};
    long long next = marker;
    zq_err err = {0};
    int rc = p->store->ops->list(p->store, r->project, r->name, r->client_id, &opts, &v, &next, &err);
    if (rc != ZQ_OK) {
        zq_msg_vec_free(&v);
        reply_failure(r, rc, &err, "list");
        return;
    }
    json_t *links = json_array();
    if (v.n > 0) {
        char href[512];
        snprintf(href, sizeof href, "/v2/queues/%s/messages?marker=%lld&limit=%ld%s%s%s%s",
                 r->name, next, limit, echo_given ? "&echo=" : "",
                 echo_given ? (echo ? "true" : "false") : "", incl_given ? "&include_claimed=" : "",
                 incl_given ? (incl ? "true" : "false") : "");
        json_array_append_new(links, must(json_pack("{s:s, s:s}", "rel", "next", "href", href)));
    }
    json_t *doc = must(json_pack("{s:o, s:o}", "messages", messages_json(r->name, &v), "links", links));
    zq_msg_vec_free(&v);
    zq_reply_json(r, 200, doc);
}

void zq_api_message_get(zq_app *app, zq_req *r)
{
    const zq_pool *p;
    if (!r->id_valid) {
        zq_reply_error(r, 404, T_NOT_FOUND, "message not found");
        return;
    }
    switch (lookup_queue(app, r, &p, NULL)) {
    case Q_MISSING:
        zq_reply_error(r, 404, T_NOT_FOUND, "queue %s does not exist", r->name);
        return;
    case Q_REPLIED:
        return;
    }
    zq_message m;
    memset(&m, 0, sizeof m);
    zq_err err = {0};
    int rc = p->store->ops->get(p->store, r->project, r->name, r->id, &m, &err);
    if (rc != ZQ_OK)
        reply_failure(r, rc, &err, "message");
    else
        zq_reply_json(r, 200, message_json(r->name, &m, zq_now_ms()));
    zq_message_clear(&m);
}

void zq_api_message_delete(zq_app *app, zq_req *r)
{
    char claim[ZQ_ID_LEN + 1];
    int got = arg_get(r, "claim_id", claim, sizeof claim);
    if (got < 0)
        return;
    if (got == 1 && !zq_valid_id(claim)) {
        zq_reply_error(r, 400, T_BAD, "claim_id is not a claim id");
        return;
    }
    const zq_pool *p;
    if (!r->id_valid) { /* cannot name a message: already absent */
        zq_reply_empty(r, 204);
        return;
    }
    switch (lookup_queue(app, r, &p, NULL)) {
    case Q_MISSING:
        zq_reply_empty(r, 204);
        return;
    case Q_REPLIED:
        return;
    }
    zq_err err = {0};
    int rc = p->store->ops->del(p->store, r->project, r->name, r->id, got == 1 ? claim : NULL, &err);
    if (rc == ZQ_OK || rc == ZQ_ENOENT)
        zq_reply_empty(r, 204);
    else
        reply_failure(r, rc, &err, "delete");
}

/* Splits "a,b,c" in place into ids (1..MSGS_PER_POST valid ids).  Returns
 * the count, or -1 after a 400. */
static int split_ids(zq_req *r, char *list, const char *ids[MSGS_PER_POST])
{
    int n = 0;
    char *save = NULL;
    if (strstr(list, ",,") || list[0] == ',' || list[strlen(list) - 1] == ',') {
        zq_reply_error(r, 400, T_BAD, "ids must be a comma-separated list of message ids");
        return -1;
    }
    for (char *id = strtok_r(list, ",", &save); id; id = strtok_r(NULL, ",", &save)) {
        if (n == MSGS_PER_POST) {
            zq_reply_error(r, 400, T_BAD, "at most %d ids", MSGS_PER_POST);
            return -1;
        }
        if (!zq_valid_id(id)) {
            zq_reply_error(r, 400, T_BAD, "ids must be a comma-separated list of message ids");
            return -1;
        }
        ids[n++] = id;
    }
    return n;
}

static void delete_by_ids(zq_app *app, zq_req *r, char *list)
{
    const char *ids[MSGS_PER_POST];
    int n = split_ids(r, list, ids);
    if (n < 0)
        return;
    const zq_pool *p;
    switch (lookup_queue(app, r, &p, NULL)) {
    case Q_MISSING:
        zq_reply_empty(r, 204);
        return;
    case Q_REPLIED:
        return;
    }
    zq_err err = {0};
    int rc = p->store->ops->del_many(p->store, r->project, r->name, ids, (size_t)n, &err);
    if (rc == ZQ_OK)
        zq_reply_empty(r, 204);
    else
        reply_failure(r, rc, &err, "delete");
}

static void pop_messages(zq_app *app, zq_req *r, long n)
{
    const zq_pool *p;
    switch (lookup_queue(app, r, &p, NULL)) {
    case Q_MISSING:
        zq_reply_json(r, 200, must(json_pack("{s:[]}", "messages")));
        return;
    case Q_REPLIED:
        return;
    }
    zq_msg_vec v = {0};
    zq_err err = {0};
    int rc = p->store->ops->pop(p->store, r->project, r->name, (int)n, &v, &err);
    if (rc == ZQ_OK)
        zq_reply_json(r, 200, must(json_pack("{s:o}", "messages", messages_json(r->name, &v))));
    else
        reply_failure(r, rc, &err, "pop");
    zq_msg_vec_free(&v);
}

void zq_api_messages_delete(zq_app *app, zq_req *r)
{
    /* 20 ids of at most 47 characters and their commas, with room to spare
     * so that "too many ids" is told apart from "too long". */
    char ids[4096];
    int got_ids = arg_get(r, "ids", ids, sizeof ids);
    if (got_ids < 0)
        return;
    char pop_buf[32];
    int got_pop = arg_get(r, "pop", pop_buf, sizeof pop_buf);
    if (got_pop < 0)
        return;
    if (got_ids == got_pop) {
        zq_reply_error(r, 400, T_BAD, "give either ids or pop");
        return;
    }
    if (got_ids) {
        delete_by_ids(app, r, ids);
        return;
    }
    long n;
    if (arg_int(r, "pop", 1, PAGE_MAX, 0, &n) == 0)
        pop_messages(app, r, n);
}

/* ------------------------------------------------------------ claims */

/* Claim ttl and grace from an optional body (defaults 60 and 60), ttl
 * required when require_ttl.  0, or -1 after a 400. */
static int claim_params(zq_req *r, int require_ttl, long *ttl, long *grace)
{
    json_t *doc;
    if (body_json(r, !require_ttl, &doc) != 0)
        return -1;
    int rc = 0;
    if (doc && !json_is_object(doc)) {
        zq_reply_error(r, 400, T_BAD, "the body must be a JSON object");
        rc = -1;
    } else if (require_ttl && !json_object_get(doc, "ttl")) {
        zq_reply_error(r, 400, T_BAD, "ttl is required");
        rc = -1;
    } else if (field_int(r, doc, "", "ttl", CLAIM_TTL_MIN, CLAIM_TTL_MAX, CLAIM_TTL_DEFAULT, ttl) != 0 ||
               field_int(r, doc, "", "grace", GRACE_MIN, GRACE_MAX, GRACE_DEFAULT, grace) != 0) {
        rc = -1;
    }
    json_decref(doc);
    return rc;
}

void zq_api_claim_create(zq_app *app, zq_req *r)
{
    long limit, ttl, grace;
    if (arg_int(r, "limit", 1, PAGE_MAX, PAGE_DEFAULT, &limit) != 0 ||
        claim_params(r, 0, &ttl, &grace) != 0)
        return;
    const zq_pool *p;
    switch (lookup_queue(app, r, &p, NULL)) {
    case Q_MISSING: /* nothing to claim */
        zq_reply_empty(r, 204);
        return;
    case Q_REPLIED:
        return;
    }
    char cid[ZQ_ID_LEN] = "";
    zq_msg_vec v = {0};
    zq_err err = {0};
    int rc = p->store->ops->claim(p->store, r->project, r->name, r->client_id, (int)ttl, (int)grace,
                                  (int)limit, cid, &v, &err);
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, "claim");
    } else if (v.n == 0) {
        zq_reply_empty(r, 204);
    } else {
        snprintf(r->location, sizeof r->location, "/v2/queues/%s/claims/%s", r->name, cid);
        zq_reply_json(r, 201, must(json_pack("{s:o}", "messages", messages_json(r->name, &v))));
    }
    zq_msg_vec_free(&v);
}

void zq_api_claim_get(zq_app *app, zq_req *r)
{
    const zq_pool *p;
    if (!r->id_valid) {
        zq_reply_error(r, 404, T_NOT_FOUND, "claim not found");
        return;
    }
    switch (lookup_queue(app, r, &p, NULL)) {
    case Q_MISSING:
        zq_reply_error(r, 404, T_NOT_FOUND, "queue %s does not exist", r->name);
        return;
    case Q_REPLIED:
        return;
    }
    zq_claim_info info = {0};
    zq_msg_vec v = {0};
    zq_err err = {0};
    int rc = p->store->ops->claim_get(p->store, r->project, r->name, r->id, &info, &v, &err);
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, "claim");
    } else {
        char href[256];
        snprintf(href, sizeof href, "/v2/queues/%s/claims/%s", r->name, r->id);
        zq_reply_json(r, 200, must(json_pack("{s:I, s:i, s:s, s:o}",
                                             "age", (json_int_t)age_s(info.created_ms, zq_now_ms()),
                                             "ttl", info.ttl, "href", href,
                                             "messages", messages_json(r->name, &v))));
    }
    zq_msg_vec_free(&v);
}

void zq_api_claim_update(zq_app *app, zq_req *r)
{
    long ttl, grace;
    if (claim_params(r, 1, &ttl, &grace) != 0)
        return;
    const zq_pool *p;
    if (!r->id_valid) {
        zq_reply_error(r, 404, T_NOT_FOUND, "claim not found");
        return;
    }
    switch (lookup_queue(app, r, &p, NULL)) {
    case Q_MISSING:
        zq_reply_error(r, 404, T_NOT_FOUND, "queue %s does not exist", r->name);
        return;
    case Q_REPLIED:
        return;
    }
    zq_err err = {0};
    int rc = p->store->ops->claim_update(p->store, r->project, r->name, r->id, (int)ttl,
                                         (int)grace, &err);
    if (rc == ZQ_OK)
        zq_reply_empty(r, 204);
    else
        reply_failure(r, rc, &err, "claim");
}

void zq_api_claim_delete(zq_app *app, zq_req *r)
{
    const zq_pool *p;
    if (!r->id_valid) {
        zq_reply_empty(r, 204);
        return;
    }
    switch (lookup_queue(app, r, &p, NULL)) {
    case Q_MISSING:
        zq_reply_empty(r, 204);
        return;
    case Q_REPLIED:
        return;
    }
    zq_err err = {0};
    int rc = p->store->ops->claim_delete(p->store, r->project, r->name, r->id, &err);
    if (rc == ZQ_OK || rc == ZQ_ENOENT)
        zq_reply_empty(r, 204);
    else
        reply_failure(r, rc, &err, "claim");
}

/* ------------------------------------------------------------ flavors */

void zq_api_flavor_put(zq_app *app, zq_req *r)
{
    json_t *doc;
    if (body_json(r, 0, &doc) != 0)
        return;
    json_t *g = json_is_object(doc) ? json_object_get(doc, "pool_group") : NULL;
    if (!json_is_string(g) || !zq_valid_name(json_string_value(g))) {
        zq_reply_error(r, 400, T_BAD, "the body must be {\"pool_group\": \"<group name>\"}");
        json_decref(doc);
        return;
    }
    int created = 0;
    zq_err err = {0};
    int rc = zq_catalog_flavor_put(app->catalog, r->project, r->name, json_string_value(g),
                                   &created, &err);
    json_decref(doc);
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, "catalog");
    } else if (created) {
        snprintf(r->location, sizeof r->location, "/v2/flavors/%s", r->name);
        zq_reply_empty(r, 201);
    } else {
        zq_reply_empty(r, 204);
    }
}

void zq_api_flavor_get(zq_app *app, zq_req *r)
{
    char group[ZQ_NAME_MAX + 1], href[128];
    zq_err err = {0};
    int rc = zq_catalog_flavor_get(app->catalog, r->project, r->name, group, &err);
    if (rc != ZQ_OK) {
        reply_failure(r, rc, &err, rc == ZQ_ENOENT ? "flavor" : "catalog");
        return;
    }
    snprintf(href, sizeof href, "/v2/flavors/%s", r->name);
    zq_reply_json(r, 200, must(json_pack("{s:s, s:s, s:s}", "name", r->name, "pool_group", group,
                                         "href", href)));
}

void zq_api_flavor_delete(zq_app *app, zq_req *r)
{
    zq_err err = {0};
    int rc = zq_catalog_flavor_delete(app->catalog, r->project, r->name, &err);
    if (rc != ZQ_OK)
        reply_failure(r, rc, &err, "catalog");
    else
        zq_reply_empty(r, 204);
}
