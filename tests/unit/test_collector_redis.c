/*
 * test_collector_redis.c - collector/redis_store.c: URI parsing, the
 * never-blocking failure path (a dead server: counted, then skipped during
 * the backoff), and, with $LDPROF_TEST_REDIS_URI, an LPUSH pipeline read
 * back with LRANGE (db 7, a fresh key, removed afterwards).  The pipelines
 * go through coll_redis_push_cmds(), the daemon's entry point, as protocol
 * text that hiredis' own redisFormatCommand() writes.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "collector/redis_store.h"

TestSuite(collector_redis);

Test(collector_redis, parse_uri)
{
    struct coll_redis_uri u;
    cr_assert_eq(coll_redis_parse_uri("redis://127.0.0.1:6380/7", &u), 0);
    cr_assert_str_eq(u.host, "127.0.0.1");
    cr_assert_eq(u.port, 6380);
    cr_assert_eq(u.db, 7);
    cr_assert_eq(coll_redis_parse_uri("redis://localhost", &u), 0);
    cr_assert_str_eq(u.host, "localhost");
    cr_assert_eq(u.port, 6379);
    cr_assert_eq(u.db, 0);
    cr_assert_eq(coll_redis_parse_uri("redis://h:1/", &u), 0);
    cr_assert_eq(u.port, 1);
    cr_assert_eq(u.db, 0);
    cr_assert_eq(coll_redis_parse_uri("redis://h/3", &u), 0);
    cr_assert_eq(u.db, 3);
    const char *bad[] = {"", "h:1", "http://h:1", "redis://", "redis://:1", "redis://h:0",
                         "redis://h:65536", "redis://h:x", "redis://h:1/x", "redis://h:1/-1",
                         "redis://h:1x", NULL};
    for (int i = 0; bad[i]; i++)
        cr_expect_eq(coll_redis_parse_uri(bad[i], &u), -1, "%s", bad[i]);
}

/* LPUSH vals[i] onto COLL_REDIS_KEY_PREFIX keys[i], i < n, as one
 * pipeline: the commands in the Redis protocol (redisFormatCommand),
 * concatenated, then coll_redis_push_cmds(). */
static int push(struct coll_redis *r, size_t n, const char *const *keys,
                const char *const *vals, uint64_t now_ms)
{
    char *cmds = NULL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char *c;
        int l = redisFormatCommand(&c, "LPUSH " COLL_REDIS_KEY_PREFIX "%s %b", keys[i], vals[i],
                                   strlen(vals[i]));
        cr_assert_gt(l, 0);
        cmds = realloc(cmds, len + (size_t)l);
        cr_assert_not_null(cmds);
        memcpy(cmds + len, c, (size_t)l);
        len += (size_t)l;
        redisFreeCommand(c);
    }
    int rc = coll_redis_push_cmds(r, n, cmds, len, now_ms);
    free(cmds);
    return rc;
}

static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd); /* nothing listens there now */
    return ntohs(a.sin_port);
}

Test(collector_redis, server_down_counted_and_backed_off)
{
    char uri[64];
    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d/7", dead_port());
    struct coll_redis r;
    cr_assert_eq(coll_redis_init(&r, uri), 0);
    const char *keys[] = {"b", "b"}, *vals[] = {"{}", "[]"};
    cr_assert_eq(push(&r, 2, keys, vals, 1000), -1);
    cr_assert_eq(r.failed, 2);
    cr_assert_eq(r.errors, 1);
    cr_assert(r.down);
    /* within the backoff: no attempt, still counted */
    cr_assert_eq(push(&r, 2, keys, vals, 1500), -1);
    cr_assert_eq(r.failed, 4);
    cr_assert_eq(r.errors, 1);
    /* after it: a new attempt, and a longer backoff */
    cr_assert_eq(push(&r, 1, keys, vals, 2001), -1);
    cr_assert_eq(r.errors, 2);
    cr_assert_eq(r.backoff_ms, 2000);
    cr_assert_eq(r.pushed, 0);
    coll_redis_close(&r);
    char err[256];
    cr_assert_null(coll_redis_fetch(uri, "b", err, sizeof err));
    cr_assert_null(coll_redis_fetch("nope", "b", err, sizeof err));
}

Test(collector_redis, push_then_lrange)
{
    const char *env = getenv("LDPROF_TEST_REDIS_URI");
    if (!env || !*env) {
        if (getenv("LDPROF_TEST_ALLOW_SKIP"))
            cr_skip_test("LDPROF_TEST_REDIS_URI is not set");
        cr_assert_fail("LDPROF_TEST_REDIS_URI is not set (LDPROF_TEST_ALLOW_SKIP=1 to skip)");
    }
    char uri[512], id[64];
    const char *slash = strrchr(env, '/');
    int hl = slash && slash > env + 8 ? (int)(slash - env) : (int)strlen(env);
    snprintf(uri, sizeof uri, "%.*s/7", hl, env);
    snprintf(id, sizeof id, "unit-%d-%ld", (int)getpid(), (long)random());
    struct coll_redis r;
    cr_assert_eq(coll_redis_init(&r, uri), 0);
    const char *keys[] = {id, id, id};
    const char *vals[] = {"{\"name\": \"a-start\"}", "{\"name\": \"a-stop\"}",
                          "{\"name\": \"b\", \"x\": [1, 2]}"};
    cr_assert_eq(push(&r, 3, keys, vals, 0), 0, "%s", r.lasterr);
    cr_assert_eq(r.pushed, 3);
    cr_assert_eq(r.failed, 0);
    coll_redis_close(&r);
    char err[256];
    json_t *a = coll_redis_fetch(uri, id, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    cr_assert_eq(json_array_size(a), 3);
    /* LPUSH: newest first */
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 0), "name")), "b");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 1), "name")), "a-stop");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(a, 2), "name")), "a-start");
    json_decref(a);
    json_t *e = coll_redis_fetch(uri, "no-such-trace", err, sizeof err);
    cr_assert_not_null(e);
    cr_assert_eq(json_array_size(e), 0);
    json_decref(e);
    struct coll_redis_uri u;
    coll_redis_parse_uri(uri, &u);
    redisContext *c = redisConnect(u.host, u.port);
    if (c && !c->err) {
        freeReplyObject(redisCommand(c, "SELECT 7"));
        freeReplyObject(redisCommand(c, "DEL " COLL_REDIS_KEY_PREFIX "%s", id));
    }
    if (c)
        redisFree(c);
}
