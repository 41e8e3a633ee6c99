/* store.c - pool construction by URI scheme and the message-vector helpers. */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

zq_store *zq_store_new(const char *pool_name, const char *uri, zq_err *err)
{
    if (strncmp(uri, "redis://", 8) == 0)
        return zq_store_redis_new(pool_name, uri, err);
    if (strncmp(uri, "mongodb://", 10) == 0)
        return zq_store_mongo_new(pool_name, uri, err);
    snprintf(err->msg, sizeof err->msg,
             "pool %s: unsupported URI scheme in '%s' (want redis:// or mongodb://)",
             pool_name, uri);
    return NULL;
}

void zq_msg_vec_push(zq_msg_vec *v, zq_message *m)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        zq_message *nv = realloc(v->v, cap * sizeof *nv);
        if (!nv)
            abort(); /* out of memory: nothing sensible to do in a test server */
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = *m;
    m->body = NULL;
}

void zq_message_clear(zq_message *m)
{
    if (m->body)
        json_decref(m->body);
    m->body = NULL;
}

void zq_msg_vec_free(zq_msg_vec *v)
{
    for (size_t i = 0; i < v->n; i++)
        zq_message_clear(&v->v[i]);
    free(v->v);
    v->v = NULL;
    v->n = v->cap = 0;
}
