/*
 * store_redis.c - the Redis message store (hiredis, synchronous API).
 *
 * URI: redis://[[user]:password@]host[:port][/db]
 *   host may be a name, an IPv4 address or a bracketed IPv6 address; port
 *   defaults to 6379, db to 0.  user and password are percent-decoded.
 *   "user:password@" sends AUTH user password (Redis 6 ACL), ":password@"
 *   sends AUTH password.  A userinfo without ':' is rejected as ambiguous, and
 *   so is a query string or fragment (no option would be honoured).
 *   The constructor only parses: connections are made lazily.
 *
 * Connections: one pool per store, a mutex + condvar protected free list of
 * redisContext (at most POOL_MAX open).  A context is made on demand
 * (connect timeout CONNECT_TIMEOUT_MS, then AUTH and SELECT as needed) and
 * every command runs with a COMMAND_TIMEOUT_MS socket timeout, so no call
 * blocks forever.  A context that reports an error is freed instead of being
 * returned to the pool; an idle context is checked with a zero-timeout
 * poll() before reuse (readable/hung-up = the server closed it: reconnect).
 * A caller waits at most POOL_WAIT_S for a free context.  hiredis writes
 * with write(2), so SIGPIPE is blocked in the calling thread around each
 * command and a SIGPIPE raised by it is consumed.
 *
 * Keys of queue Q in project P all start with the prefix
 *     zq:{<strlen(P)>:<P>:<Q>}:
 * (the project is length-prefixed, the queue ends at '}', which no valid
 * name contains, so two (project, queue) pairs never share a prefix; the
 * braces make it a Redis Cluster hash tag, so one queue is one slot):
 *     <pfx>ctr          INCR counter: the queue's markers
 *     <pfx>msgs         ZSET member=message id, score=marker
 *     <pfx>m:<id>       HASH body (compact JSON text), ttl (s), created (ms),
 *                       client, marker, cid (claim id, "" = none),
 *                       cexp (claim expiry ms, 0 = none);
 *                       PEXPIREAT created+ttl (backstop; re-set on extension)
 *     <pfx>c:<cid>      HASH ttl (s), created (ms), expires (ms);
 *                       PEXPIREAT expires
 *     <pfx>cm:<cid>     SET of the claim's message ids; PEXPIREAT expires
 *     <pfx>cl           ZSET member=claim id, score=expiry (used by purge;
 *                       entries with score <= now are trimmed by claim)
 *
 * Time: every operation but ping runs as Lua scripts (EVALSHA, loaded with
 * SCRIPT LOAD on first use, EVAL fallback on NOSCRIPT) that read the clock
 * with Redis's TIME, so all zaqard processes sharing a server agree on
 * "now", and the PEXPIREAT backstops use the same clock as the visibility
 * checks.  created_ms/expires are therefore Redis-server time.  (TIME
 * before writes needs effects replication: the default since Redis 5, and
 * requested with redis.replicate_commands() for 3.2-4.)  Scripts build the
 * per-message and per-claim key names themselves from the prefix, so not
 * every key they touch is declared in KEYS: fine for a standalone server
 * (and all of a queue's keys share one hash slot).
 *
 * Visibility: a message is live while now < created + ttl*1000; a dead one
 * (or a zset entry whose hash the backstop already removed) is deleted by
 * whichever script meets it.  A claim is live while now < expires; the cid
 * field of a message only counts while now < cexp.  Messages returned with
 * a dead claim show claim_id "" and claim_expires_ms 0.
 *
 * Scripts (all atomic; messages never get two live claims because "is it
 * free?" and "claim it" happen inside the same script):
 *   post         INCR + HSET + PEXPIREAT + ZADD for each message
 *   get, del     one message; del checks the claim (0 ok/1 absent/2 forbidden)
 *   del_many     delete ids, dropping them from their claim's member set
 *   list, claim, pop, stats
 *                walk the zset from a cursor marker with ZRANGEBYSCORE
 *                (cursor, +inf] in windows of at most SCAN_WINDOW ids and
 *                return {now, last-scanned-marker, done, ...}.  The C side
 *                calls the script again from the returned cursor until it
 *                has `limit` matches or the zset is exhausted, so a page is
 *                never short while matching messages remain, and no single
 *                script runs longer than one window.  claim continues the
 *                same claim id in later windows (expiry fixed by the first).
 *   claim_get, claim_update, claim_delete
 *                through the claim's member set; update sets a new expiry on
 *                the claim and its still-held messages (extending their ttl
 *                to expiry + grace), delete frees them.
 *   purge        deletes up to PURGE_BATCH messages/claims per call, C loops;
 *                the last call also deletes the counter, so a queue that is
 *                deleted and created again starts its markers from 1.
 *
 * Choices where store.h leaves room:
 *   - project NULL is "", client_id NULL is "".  Invalid project/queue names
 *     give ZQ_EINVAL (so keys can never collide even with a careless
 *     caller), as do ttl/limit < 1, grace < 0, a NULL body, and a client id
 *     that does not fit ZQ_CLIENT_LEN.  Any ttl >= 1 is accepted.
 *   - Message or claim ids that cannot be ours ([A-Za-z0-9_-]{1,47}) are
 *     simply unknown: ZQ_ENOENT (get, del, claim_get, claim_update),
 *     skipped (del_many), ZQ_OK (claim_delete).
 *   - del with a claim_id on a message without a live claim, or with
 *     claim_id "", is ZQ_EFORBIDDEN (read literally: "unless the message's
 *     live claim is that claim"); an absent or expired message is ZQ_ENOENT.
 *   - claim_update keeps the claim's created time (age counts from the
 *     claim), sets ttl and expires = now + ttl (which may shorten it).
 *   - If a later window of claim/pop fails after earlier windows already
 *     claimed/removed messages, the call returns ZQ_OK with those messages
 *     (rather than losing popped messages or hiding claimed ones); list and
 *     stats fail as a whole.  On every error the output vector is left as
 *     it was on entry.
 *   - claim_get returns the claim's live messages in marker order; info and
 *     out may be NULL.
 *   - get and stats zero their output first (a failed get leaves a message
 *     that zq_message_clear() accepts).
 */
#include "store.h"
#include "util.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_MAX 32
#define POOL_WAIT_S 10
#define CONNECT_TIMEOUT_MS 3000
#define COMMAND_TIMEOUT_MS 5000
#define SCAN_WINDOW 100
#define PURGE_BATCH 500
#define DEL_MANY_CHUNK 500
#define PFX_MAX 400 /* "zq:{" + 3 + ":" + 256 + ":" + 64 + "}:" + NUL < 400 */
#define MSG_FIELDS 8 /* id marker body ttl created client cid cexp */

/* ------------------------------------------------------------------ Lua */

#define LUA_COMMON                                                              \
    "if redis.replicate_commands then redis.replicate_commands() end\n"         \
    "local function now_ms()\n"                                                 \
    "  local t = redis.call('TIME')\n"                                          \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"     \
    "end\n"                                                                     \
    "local function fmt(x) return string.format('%.0f', x) end\n"               \
    "local function load(pfx, zkey, id, now)\n"                                 \
    "  local k = pfx .. 'm:' .. id\n"                                           \
    "  local v = redis.call('HMGET', k, 'body', 'ttl', 'created', 'client',\n"  \
    "                       'marker', 'cid', 'cexp')\n"                         \
    "  local ttl, created = tonumber(v[2]), tonumber(v[3])\n"                   \
    "  if not ttl or not created then\n"                                        \
    "    redis.call('ZREM', zkey, id)\n"                                        \
    "    return nil\n"                                                          \
    "  end\n"                                                                   \
    "  if created + ttl * 1000 <= now then\n"                                   \
    "    redis.call('DEL', k)\n"                                                \
    "    redis.call('ZREM', zkey, id)\n"                                        \
    "    return nil\n"                                                          \
    "  end\n"                                                                   \
    "  local raw = v[6] or ''\n"                                                \
    "  local cid, cexp = raw, tonumber(v[7]) or 0\n"                            \
    "  if cid == '' or cexp <= now then cid, cexp = '', 0 end\n"                \
    "  return {id = id, key = k, body = v[1] or 'null', ttl = ttl,\n"           \
    "          created = created, client = v[4] or '', marker = v[5] or '0',\n" \
    "          cid = cid, cexp = cexp, rawcid = raw}\n"                         \
    "end\n"                                                                     \
    "local function emit(r, m, with_body)\n"                                    \
    "  r[#r + 1] = m.id\n"                                                      \
    "  r[#r + 1] = m.marker\n"                                                  \
    "  if with_body then r[#r + 1] = m.body else r[#r + 1] = '' end\n"          \
    "  r[#r + 1] = fmt(m.ttl)\n"                                                \
    "  r[#r + 1] = fmt(m.created)\n"                                            \
    "  r[#r + 1] = m.client\n"                                                  \
    "  r[#r + 1] = m.cid\n"                                                     \
    "  r[#r + 1] = fmt(m.cexp)\n"                                               \
    "end\n"                                                                     \
    "local function extend(m, until_ms)\n"                                      \
    "  if m.created + m.ttl * 1000 < until_ms then\n"                           \
    "    m.ttl = math.ceil((until_ms - m.created) / 1000)\n"                    \
    "    redis.call('HSET', m.key, 'ttl', fmt(m.ttl))\n"                        \
    "    redis.call('PEXPIREAT', m.key, fmt(m.created + m.ttl * 1000))\n"       \
    "  end\n"                                                                   \
    "end\n"

/* Window scripts: KEYS[1] = msgs; ARGV = pfx, cursor, window, limit, ...
 * Return {now, last scanned marker, done (1 = zset exhausted), items}. */
#define LUA_WINDOW_HEAD                                                         \
    "local now = now_ms()\n"                                                    \
    "local pfx, cursor = ARGV[1], ARGV[2]\n"                                    \
    "local window, limit = tonumber(ARGV[3]), tonumber(ARGV[4])\n"              \
    "local w = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. cursor, '+inf',\n"   \
    "                     'WITHSCORES', 'LIMIT', 0, window)\n"                  \
    "local res, n, last = {}, 0, cursor\n"                                      \
    "local done = 1\n"                                                          \
    "if #w / 2 >= window then done = 0 end\n"

#define LUA_WINDOW_TAKE                                                         \
    "    n = n + 1\n"                                                           \
    "    if n >= limit then\n"                                                  \
    "      if i + 1 < #w then done = 0 end\n"                                   \
    "      break\n"                                                             \
    "    end\n"

enum {
    S_POST,
    S_GET,
    S_DEL,
    S_DEL_MANY,
    S_LIST,
    S_CLAIM,
    S_POP,
    S_STATS,
    S_CLAIM_GET,
    S_CLAIM_UPDATE,
    S_CLAIM_DELETE,
    S_PURGE,
    S_COUNT
};

static const char *const script_name[S_COUNT] = {
    "post", "get", "del", "del_many", "list", "claim", "pop", "stats",
    "claim_get", "claim_update", "claim_delete", "purge",
};

static const char *const script_src[S_COUNT] = {
    /* S_POST: KEYS ctr, msgs; ARGV pfx, client, {id, ttl, body}... -> now */
    [S_POST] = LUA_COMMON
    "local now = now_ms()\n"
    "local pfx, client = ARGV[1], ARGV[2]\n"
    "for i = 3, #ARGV, 3 do\n"
    "  local id, ttl = ARGV[i], tonumber(ARGV[i + 1])\n"
    "  local marker = fmt(redis.call('INCR', KEYS[1]))\n"
    "  local k = pfx .. 'm:' .. id\n"
    "  redis.call('HSET', k, 'body', ARGV[i + 2], 'ttl', fmt(ttl),\n"
    "             'created', fmt(now), 'client', client, 'marker', marker,\n"
    "             'cid', '', 'cexp', '0')\n"
    "  redis.call('PEXPIREAT', k, fmt(now + ttl * 1000))\n"
    "  redis.call('ZADD', KEYS[2], marker, id)\n"
    "end\n"
    "return now\n",

    /* S_GET: KEYS msgs; ARGV pfx, id -> {now, msg fields or {}} */
    [S_GET] = LUA_COMMON
    "local now = now_ms()\n"
    "local m = load(ARGV[1], KEYS[1], ARGV[2], now)\n"
    "local r = {}\n"
    "if m then emit(r, m, true) end\n"
    "return {now, r}\n",

    /* S_DEL: KEYS msgs; ARGV pfx, id, has_cid, cid -> 0 ok, 1 absent, 2 forbidden */
    [S_DEL] = LUA_COMMON
    "local now = now_ms()\n"
    "local m = load(ARGV[1], KEYS[1], ARGV[2], now)\n"
    "if not m then return 1 end\n"
    "if ARGV[3] == '1' then\n"
    "  if ARGV[4] == '' or m.cid ~= ARGV[4] then return 2 end\n"
    "elseif m.cid ~= '' then\n"
    "  return 2\n"
    "end\n"
    "redis.call('DEL', m.key)\n"
    "redis.call('ZREM', KEYS[1], m.id)\n"
    "if m.rawcid ~= '' then\n"
    "  redis.call('SREM', ARGV[1] .. 'cm:' .. m.rawcid, m.id)\n"
    "end\n"
    "return 0\n",

    /* S_DEL_MANY: KEYS msgs; ARGV pfx, ids... -> 0 */
    [S_DEL_MANY] =
    "local pfx = ARGV[1]\n"
    "for i = 2, #ARGV do\n"
    "  local k = pfx .. 'm:' .. ARGV[i]\n"
    "  local cid = redis.call('HGET', k, 'cid')\n"
    "  if cid and cid ~= '' then\n"
    "    redis.call('SREM', pfx .. 'cm:' .. cid, ARGV[i])\n"
    "  end\n"
    "  redis.call('DEL', k)\n"
    "  redis.call('ZREM', KEYS[1], ARGV[i])\n"
    "end\n"
    "return 0\n",

    /* S_LIST: ARGV ..., client, echo, include_claimed */
    [S_LIST] = LUA_COMMON LUA_WINDOW_HEAD
    "local client, echo, incl = ARGV[5], ARGV[6] == '1', ARGV[7] == '1'\n"
    "for i = 1, #w, 2 do\n"
    "  last = w[i + 1]\n"
    "  local m = load(pfx, KEYS[1], w[i], now)\n"
    "  if m and (echo or m.client ~= client) and (incl or m.cid == '') then\n"
    "    emit(res, m, true)\n"
    LUA_WINDOW_TAKE
    "  end\n"
    "end\n"
    "return {now, last, done, res}\n",

    /* S_CLAIM: KEYS msgs, cl, claim hash, claim members;
     * ARGV ..., cid, ttl, grace */
    [S_CLAIM] = LUA_COMMON LUA_WINDOW_HEAD
    "local cid, ttl, grace = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local exp = tonumber(redis.call('HGET', KEYS[3], 'expires'))\n"
    "local fresh = not exp\n"
    "if fresh then exp = now + ttl * 1000 end\n"
    "if exp <= now then return {now, cursor, 1, {}} end\n"
    "for i = 1, #w, 2 do\n"
    "  last = w[i + 1]\n"
    "  local m = load(pfx, KEYS[1], w[i], now)\n"
    "  if m and m.cid == '' then\n"
    "    redis.call('HSET', m.key, 'cid', cid, 'cexp', fmt(exp))\n"
    "    m.cid, m.cexp = cid, exp\n"
    "    extend(m, exp + grace * 1000)\n"
    "    redis.call('SADD', KEYS[4], m.id)\n"
    "    emit(res, m, true)\n"
    LUA_WINDOW_TAKE
    "  end\n"
    "end\n"
    "if n > 0 then\n"
    "  if fresh then\n"
    "    redis.call('HSET', KEYS[3], 'ttl', fmt(ttl), 'created', fmt(now),\n"
    "               'expires', fmt(exp))\n"
    "  end\n"
    "  redis.call('PEXPIREAT', KEYS[3], fmt(exp))\n"
    "  redis.call('PEXPIREAT', KEYS[4], fmt(exp))\n"
    "  redis.call('ZADD', KEYS[2], fmt(exp), cid)\n"
    "end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))\n"
    "return {now, last, done, res}\n",

    /* S_POP */
    [S_POP] = LUA_COMMON LUA_WINDOW_HEAD
    "for i = 1, #w, 2 do\n"
    "  last = w[i + 1]\n"
    "  local m = load(pfx, KEYS[1], w[i], now)\n"
    "  if m and m.cid == '' then\n"
    "    redis.call('DEL', m.key)\n"
    "    redis.call('ZREM', KEYS[1], m.id)\n"
    "    if m.rawcid ~= '' then\n"
    "      redis.call('SREM', pfx .. 'cm:' .. m.rawcid, m.id)\n"
    "    end\n"
    "    emit(res, m, true)\n"
    LUA_WINDOW_TAKE
    "  end\n"
    "end\n"
    "return {now, last, done, res}\n",

    /* S_STATS: ARGV pfx, cursor, window, limit (ignored)
     * -> {now, last, done, free, claimed, first msg or {}, last msg or {}} */
    [S_STATS] = LUA_COMMON LUA_WINDOW_HEAD
    "local free, claimed, first, newest = 0, 0, nil, nil\n"
    "for i = 1, #w, 2 do\n"
    "  last = w[i + 1]\n"
    "  local m = load(pfx, KEYS[1], w[i], now)\n"
    "  if m then\n"
    "    if m.cid == '' then free = free + 1 else claimed = claimed + 1 end\n"
    "    if not first then first = m end\n"
    "    newest = m\n"
    "  end\n"
    "end\n"
    "local f, l = {}, {}\n"
    "if first then emit(f, first, false) emit(l, newest, false) end\n"
    "return {now, last, done, free, claimed, f, l}\n",

    /* S_CLAIM_GET: KEYS msgs, claim hash, claim members; ARGV pfx, cid
     * -> {now} when not live, else {now, ttl, created, expires, msgs} */
    [S_CLAIM_GET] = LUA_COMMON
    "local now = now_ms()\n"
    "local c = redis.call('HMGET', KEYS[2], 'ttl', 'created', 'expires')\n"
    "local exp = tonumber(c[3])\n"
    "if not exp or exp <= now then return {now} end\n"
    "local ms = {}\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do\n"
    "  local m = load(ARGV[1], KEYS[1], id, now)\n"
    "  if m and m.cid == ARGV[2] then\n"
    "    ms[#ms + 1] = m\n"
    "  else\n"
    "    redis.call('SREM', KEYS[3], id)\n"
    "  end\n"
    "end\n"
    "table.sort(ms, function(a, b) return tonumber(a.marker) < tonumber(b.marker) end)\n"
    "local r = {}\n"
    "for _, m in ipairs(ms) do emit(r, m, true) end\n"
    "return {now, c[1] or '0', c[2] or '0', c[3], r}\n",

    /* S_CLAIM_UPDATE: KEYS msgs, cl, claim hash, claim members;
     * ARGV pfx, cid, ttl, grace -> 0 ok, 1 unknown/expired */
    [S_CLAIM_UPDATE] = LUA_COMMON
    "local now = now_ms()\n"
    "local old = tonumber(redis.call('HGET', KEYS[3], 'expires'))\n"
    "if not old or old <= now then return 1 end\n"
    "local ttl, grace = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local exp = now + ttl * 1000\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do\n"
    "  local m = load(ARGV[1], KEYS[1], id, now)\n"
    "  if m and m.cid == ARGV[2] then\n"
    "    redis.call('HSET', m.key, 'cexp', fmt(exp))\n"
    "    extend(m, exp + grace * 1000)\n"
    "  else\n"
    "    redis.call('SREM', KEYS[4], id)\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', KEYS[3], 'ttl', fmt(ttl), 'expires', fmt(exp))\n"
    "redis.call('PEXPIREAT', KEYS[3], fmt(exp))\n"
    "redis.call('PEXPIREAT', KEYS[4], fmt(exp))\n"
    "redis.call('ZADD', KEYS[2], fmt(exp), ARGV[2])\n"
    "return 0\n",

    /* S_CLAIM_DELETE: KEYS msgs, cl, claim hash, claim members; ARGV pfx, cid */
    [S_CLAIM_DELETE] =
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do\n"
    "  local k = ARGV[1] .. 'm:' .. id\n"
    "  if redis.call('HGET', k, 'cid') == ARGV[2] then\n"
    "    redis.call('HSET', k, 'cid', '', 'cexp', '0')\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', KEYS[3], KEYS[4])\n"
    "redis.call('ZREM', KEYS[2], ARGV[2])\n"
    "return 0\n",

    /* S_PURGE: KEYS msgs, cl, ctr; ARGV pfx, batch -> 0 done, 1 call again */
    [S_PURGE] =
    "local pfx, batch = ARGV[1], tonumber(ARGV[2])\n"
    "local ids = redis.call('ZRANGE', KEYS[1], 0, batch - 1)\n"
    "for _, id in ipairs(ids) do\n"
    "  redis.call('DEL', pfx .. 'm:' .. id)\n"
    "  redis.call('ZREM', KEYS[1], id)\n"
    "end\n"
    "local left = batch - #ids\n"
    "if left > 0 then\n"
    "  local cids = redis.call('ZRANGE', KEYS[2], 0, left - 1)\n"
    "  for _, c in ipairs(cids) do\n"
    "    redis.call('DEL', pfx .. 'c:' .. c, pfx .. 'cm:' .. c)\n"
    "    redis.call('ZREM', KEYS[2], c)\n"
    "  end\n"
    "  left = left - #cids\n"
    "end\n"
    "if left > 0 then\n"
    "  redis.call('DEL', KEYS[3])\n"
    "  return 0\n"
    "end\n"
    "return 1\n",
};

/* --------------------------------------------------------------- store */

typedef struct {
    zq_store base; /* first: a zq_store * is a redis_store * */
    char *host;
    int port;
    int db;
    char *user;     /* NULL: none */
    char *password; /* NULL: no AUTH */

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* signalled when a context is returned or closed */
    redisContext *idle[POOL_MAX];
    int nidle;
    int nopen; /* idle + in use + being connected */
    char sha[S_COUNT][41];
} redis_store;

static const zq_store_ops redis_ops;

static void errf(zq_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errf(zq_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- URI */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode [p, p+n) into a new string; NULL on a bad escape or a
 * decoded NUL. */
static char *pct_decode(const char *p, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%') {
            int h, l;
            if (i + 2 >= n || (h = hexval((unsigned char)p[i + 1])) < 0 ||
                (l = hexval((unsigned char)p[i + 2])) < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            *o++ = (char)(h * 16 + l);
            i += 2;
        } else {
            *o++ = p[i];
        }
    }
    *o = '\0';
    return out;
}

static int parse_uint(const char *p, size_t n, long max, long *out)
{
    if (n == 0 || n > 10)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_uri(redis_store *s, const char *uri, zq_err *err)
{
    if (!uri || strncmp(uri, "redis://", 8) != 0) {
        errf(err, "redis URI must start with redis://");
        return -1;
    }
    const char *a = uri + 8;
    if (strpbrk(a, "?#")) {
        errf(err, "redis URI '%s': query strings and fragments are not supported", uri);
        return -1;
    }
    const char *slash = strchr(a, '/');
    const char *aend = slash ? slash : a + strlen(a);

    /* userinfo: up to the last '@' of the authority */
    const char *at = NULL;
    for (const char *p = a; p < aend; p++)
        if (*p == '@')
            at = p;
    const char *h = a;
    if (at) {
        const char *colon = memchr(a, ':', (size_t)(at - a));
        if (!colon) {
            errf(err, "redis URI: userinfo without ':' is ambiguous "
                      "(use redis://:password@host or redis://user:password@host)");
            return -1;
        }
        if (colon > a) {
            s->user = pct_decode(a, (size_t)(colon - a));
            if (!s->user) {
                errf(err, "redis URI: bad percent-escape in the user name");
                return -1;
            }
        }
        s->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
        if (!s->password) {
            errf(err, "redis URI: bad percent-escape in the password");
            return -1;
        }
        h = at + 1;
    }

    /* host[:port] */
    const char *hend, *pstart = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(aend - h));
        if (!rb || rb == h + 1) {
            errf(err, "redis URI '%s': bad IPv6 address", uri);
            return -1;
        }
        s->host = strndup(h + 1, (size_t)(rb - h - 1));
        hend = rb + 1;
        if (hend < aend) {
            if (*hend != ':') {
                errf(err, "redis URI '%s': junk after the IPv6 address", uri);
                return -1;
            }
            pstart = hend + 1;
        }
    } else {
        const char *colon = memchr(h, ':', (size_t)(aend - h));
        hend = colon ? colon : aend;
        if (hend == h) {
            errf(err, "redis URI '%s': empty host", uri);
            return -1;
        }
        s->host = strndup(h, (size_t)(hend - h));
        if (colon)
            pstart = colon + 1;
    }
    if (!s->host) {
        errf(err, "out of memory");
        return -1;
    }
    s->port = 6379;
    if (pstart) {
        long port;
        if (parse_uint(pstart, (size_t)(aend - pstart), 65535, &port) < 0 || port == 0) {
            errf(err, "redis URI '%s': bad port", uri);
            return -1;
        }
        s->port = (int)port;
    }

    s->db = 0;
    if (slash && slash[1]) {
        long db;
        if (parse_uint(slash + 1, strlen(slash + 1), INT_MAX, &db) < 0) {
            errf(err, "redis URI '%s': the path must be a database number", uri);
            return -1;
        }
        s->db = (int)db;
    }
    return 0;
}

/* ------------------------------------------------------- connection pool */

/* Run one command with SIGPIPE blocked in this thread (hiredis uses
 * write(2)); a SIGPIPE it raised is consumed before unblocking. */
static redisReply *rcmd(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    int saved_errno = errno;
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);

    redisReply *r = redisCommandArgv(c, argc, argv, lens);

    if (!was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    if (!sigismember(&old, SIGPIPE))
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved_errno;
    return r;
}

/* A simple command; ZQ_OK or ZQ_EBACKEND with err filled. */
static int simple_cmd(redisContext *c, const char *what, int argc, const char **argv,
                      const size_t *lens, zq_err *err)
{
    redisReply *r = rcmd(c, argc, argv, lens);
    if (!r) {
        errf(err, "redis %s: %s", what, c->errstr[0] ? c->errstr : "no reply");
        return ZQ_EBACKEND;
    }
    int rc = ZQ_OK;
    if (r->type == REDIS_REPLY_ERROR) {
        errf(err, "redis %s: %.*s", what, (int)r->len, r->str);
        rc = ZQ_EBACKEND;
    }
    freeReplyObject(r);
    return rc;
}

static redisContext *conn_open(redis_store *s, zq_err *err)
{
    struct timeval ctv = {CONNECT_TIMEOUT_MS / 1000, (CONNECT_TIMEOUT_MS % 1000) * 1000};
    struct timeval rtv = {COMMAND_TIMEOUT_MS / 1000, (COMMAND_TIMEOUT_MS % 1000) * 1000};
    int saved_errno = errno;
    redisContext *c = redisConnectWithTimeout(s->host, s->port, ctv);
    errno = saved_errno;
    if (!c) {
        errf(err, "redis %s:%d: out of memory", s->host, s->port);
        return NULL;
    }
    if (c->err) {
        errf(err, "redis %s:%d: connect: %s", s->host, s->port, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, rtv) != REDIS_OK) {
        errf(err, "redis %s:%d: setting the timeout: %s", s->host, s->port, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (s->password) {
        const char *argv[3] = {"AUTH"};
        size_t lens[3] = {4};
        int argc = 1;
        if (s->user) {
            argv[argc] = s->user;
            lens[argc++] = strlen(s->user);
        }
        argv[argc] = s->password;
        lens[argc++] = strlen(s->password);
        if (simple_cmd(c, "AUTH", argc, argv, lens, err) != ZQ_OK) {
            redisFree(c);
            return NULL;
        }
    }
    if (s->db != 0) {
        char dbs[16];
        int n = snprintf(dbs, sizeof dbs, "%d", s->db);
        const char *argv[2] = {"SELECT", dbs};
        size_t lens[2] = {6, (size_t)n};
        if (simple_cmd(c, "SELECT", 2, argv, lens, err) != ZQ_OK) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

/* An idle context is usable when nothing is readable and the peer has not
 * hung up (a reply we did not ask for, EOF or an error all mean: drop). */
static int conn_idle_ok(redisContext *c)
{
    if (c->err)
        return 0;
    struct pollfd p = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
    int saved_errno = errno;
    int n = poll(&p, 1, 0);
    errno = saved_errno;
    return n == 0;
}

static redisContext *pool_get(redis_store *s, zq_err *err)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += POOL_WAIT_S;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->nidle > 0) {
            redisContext *c = s->idle[--s->nidle];
            pthread_mutex_unlock(&s->mu);
            if (conn_idle_ok(c))
                return c;
            redisFree(c);
            pthread_mutex_lock(&s->mu);
            s->nopen--;
        }
        if (s->nopen < POOL_MAX) {
            s->nopen++;
            pthread_mutex_unlock(&s->mu);
            redisContext *c = conn_open(s, err);
            if (!c) {
                pthread_mutex_lock(&s->mu);
                s->nopen--;
                pthread_cond_signal(&s->cv);
                pthread_mutex_unlock(&s->mu);
            }
            return c;
        }
        int rc = pthread_cond_timedwait(&s->cv, &s->mu, &deadline);
        if (rc == ETIMEDOUT && s->nidle == 0 && s->nopen >= POOL_MAX) {
            pthread_mutex_unlock(&s->mu);
            errf(err, "redis %s:%d: all %d connections busy for %d s", s->host,
                 s->port, POOL_MAX, POOL_WAIT_S);
            return NULL;
        }
    }
}

static void pool_put(redis_store *s, redisContext *c)
{
    int keep = !c->err;
    if (!keep)
        redisFree(c);
    pthread_mutex_lock(&s->mu);
    if (keep)
        s->idle[s->nidle++] = c;
    else
        s->nopen--;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ----------------------------------------------------------- arguments */

typedef struct {
    int argc, cap;
    const char **argv;
    size_t *lens;
    char **owned;
    int nowned, owned_cap;
    int oom;
} args;

/* Slots 0..2 are reserved for EVALSHA/EVAL, the script and numkeys. */
static void args_init(args *a)
{
    memset(a, 0, sizeof *a);
    a->cap = 16;
    a->argv = malloc((size_t)a->cap * sizeof *a->argv);
    a->lens = malloc((size_t)a->cap * sizeof *a->lens);
    if (!a->argv || !a->lens) {
        a->oom = 1;
        a->cap = 0;
        return;
    }
    a->argc = 3;
}

static void args_addb(args *a, const char *p, size_t len)
{
    if (a->oom)
        return;
    if (a->argc == a->cap) {
        int cap = a->cap * 2;
        const char **nv = realloc(a->argv, (size_t)cap * sizeof *nv);
        if (!nv) {
            a->oom = 1;
            return;
        }
        a->argv = nv;
        size_t *nl = realloc(a->lens, (size_t)cap * sizeof *nl);
        if (!nl) {
            a->oom = 1;
            return;
        }
        a->lens = nl;
        a->cap = cap;
    }
    a->argv[a->argc] = p;
    a->lens[a->argc++] = len;
}

static void args_adds(args *a, const char *p)
{
    args_addb(a, p, strlen(p));
}

/* Take ownership of p (freed by args_free) and add it. */
static void args_own(args *a, char *p, size_t len)
{
    if (!p)
        a->oom = 1;
    if (a->oom) {
        free(p);
        return;
    }
    if (a->nowned == a->owned_cap) {
        int cap = a->owned_cap ? a->owned_cap * 2 : 8;
        char **no = realloc(a->owned, (size_t)cap * sizeof *no);
        if (!no) {
            a->oom = 1;
            free(p);
            return;
        }
        a->owned = no;
        a->owned_cap = cap;
    }
    a->owned[a->nowned++] = p;
    args_addb(a, p, len);
}

static void args_addf(args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void args_addf(args *a, const char *fmt, ...)
{
    char *p = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (n < 0) {
        a->oom = 1;
        return;
    }
    args_own(a, p, (size_t)n);
}

static void args_free(args *a)
{
    for (int i = 0; i < a->nowned; i++)
        free(a->owned[i]);
    free(a->owned);
    free(a->argv);
    free(a->lens);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------- scripts */

/* SHA of a script: known, or loaded now with SCRIPT LOAD. */
static int script_sha(redis_store *s, redisContext *c, int sid, char sha[41], zq_err *err)
{
    pthread_mutex_lock(&s->mu);
    memcpy(sha, s->sha[sid], 41);
    pthread_mutex_unlock(&s->mu);
    if (sha[0])
        return ZQ_OK;
    const char *argv[3] = {"SCRIPT", "LOAD", script_src[sid]};
    size_t lens[3] = {6, 4, strlen(script_src[sid])};
    redisReply *r = rcmd(c, 3, argv, lens);
    if (!r) {
        errf(err, "redis %s:%d: SCRIPT LOAD: %s", s->host, s->port,
             c->errstr[0] ? c->errstr : "no reply");
        return ZQ_EBACKEND;
    }
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        errf(err, "redis %s:%d: SCRIPT LOAD %s: %.*s", s->host, s->port, script_name[sid],
             r->type == REDIS_REPLY_ERROR ? (int)r->len : 16,
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
        return ZQ_EBACKEND;
    }
    memcpy(sha, r->str, 40);
    sha[40] = '\0';
    freeReplyObject(r);
    pthread_mutex_lock(&s->mu);
    memcpy(s->sha[sid], sha, 41);
    pthread_mutex_unlock(&s->mu);
    return ZQ_OK;
}

/* Run script sid with the arguments in a (keys first, nkeys of them) on a
 * pooled connection.  Returns the reply (never an error reply) or NULL with
 * err filled. */
static redisReply *run_script(redis_store *s, int sid, args *a, int nkeys, zq_err *err)
{
    if (a->oom) {
        errf(err, "redis: out of memory");
        return NULL;
    }
    redisContext *c = pool_get(s, err);
    if (!c)
        return NULL;
    char sha[41], nk[16];
    redisReply *r = NULL;
    int n = snprintf(nk, sizeof nk, "%d", nkeys);
    a->argv[2] = nk;
    a->lens[2] = (size_t)n;
    if (script_sha(s, c, sid, sha, err) != ZQ_OK)
        goto out;
    a->argv[0] = "EVALSHA";
    a->lens[0] = 7;
    a->argv[1] = sha;
    a->lens[1] = 40;
    r = rcmd(c, a->argc, a->argv, a->lens);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* the server lost its script cache (restart, SCRIPT FLUSH): EVAL
         * caches it again under the same SHA */
        freeReplyObject(r);
        a->argv[0] = "EVAL";
        a->lens[0] = 4;
        a->argv[1] = script_src[sid];
        a->lens[1] = strlen(script_src[sid]);
        r = rcmd(c, a->argc, a->argv, a->lens);
    }
    if (!r) {
        errf(err, "redis %s:%d: %s: %s", s->host, s->port, script_name[sid],
             c->errstr[0] ? c->errstr : "no reply");
    } else if (r->type == REDIS_REPLY_ERROR) {
        errf(err, "redis %s:%d: %s: %.*s", s->host, s->port, script_name[sid], (int)r->len,
             r->str);
        freeReplyObject(r);
        r = NULL;
    }
out:
    pool_put(s, c);
    return r;
}

/* --------------------------------------------------------------- names */

static int valid_chars(const char *p, size_t max, size_t min, int dot)
{
    size_t n = 0;
    for (; p[n]; n++) {
        unsigned char ch = (unsigned char)p[n];
        if (n >= max)
            return 0;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || (dot && ch == '.')))
            return 0;
    }
    return n >= min;
}

/* Could this be one of our message or claim ids? */
static int valid_id(const char *id)
{
    return id && valid_chars(id, ZQ_ID_LEN - 1, 1, 0);
}

static int mkprefix(const char *project, const char *queue, char pfx[PFX_MAX], zq_err *err)
{
    if (!project)
        project = "";
    if (!valid_chars(project, 256, 0, 1)) {
        errf(err, "invalid project id");
        return ZQ_EINVAL;
    }
    if (!queue || !valid_chars(queue, 64, 1, 0)) {
        errf(err, "invalid queue name");
        return ZQ_EINVAL;
    }
    snprintf(pfx, PFX_MAX, "zq:{%zu:%s:%s}:", strlen(project), project, queue);
    return ZQ_OK;
}

/* ------------------------------------------------------------- replies */

static int bad_reply(zq_err *err, const char *what)
{
    errf(err, "redis: unexpected reply to %s", what);
    return ZQ_EBACKEND;
}

static int is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static int rep_ll(const redisReply *r, long long *out)
{
    if (r && r->type == REDIS_REPLY_INTEGER) {
        *out = r->integer;
        return 0;
    }
    if (!is_str(r) || r->len == 0 || r->len > 30)
        return -1;
    char buf[32], *end;
    memcpy(buf, r->str, r->len);
    buf[r->len] = '\0';
    int saved_errno = errno, rc = 0;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end != '\0') {
        /* scores may come back in floating-point notation */
        double d = strtod(buf, &end);
        if (*end != '\0' || d != d || d > 9.2e18 || d < -9.2e18)
            rc = -1;
        else
            v = (long long)d;
    } else if (errno) {
        rc = -1;
    }
    errno = saved_errno;
    if (rc == 0)
        *out = v;
    return rc;
}

static void rep_copy(const redisReply *r, char *dst, size_t cap)
{
    size_t n = r->len < cap - 1 ? r->len : cap - 1;
    memcpy(dst, r->str, n);
    dst[n] = '\0';
}

/* One message from MSG_FIELDS consecutive elements. */
static int parse_msg(redisReply **e, zq_message *m, int with_body, zq_err *err)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < MSG_FIELDS; i++)
        if (!is_str(e[i]))
            return bad_reply(err, "a message");
    long long ttl;
    if (e[0]->len == 0 || e[0]->len >= ZQ_ID_LEN || rep_ll(e[1], &m->marker) < 0 ||
        rep_ll(e[3], &ttl) < 0 || ttl < 0 || ttl > INT_MAX || rep_ll(e[4], &m->created_ms) < 0 ||
        rep_ll(e[7], &m->claim_expires_ms) < 0 || e[6]->len >= ZQ_ID_LEN)
        return bad_reply(err, "a message");
    rep_copy(e[0], m->id, sizeof m->id);
    m->ttl = (int)ttl;
    rep_copy(e[5], m->client_id, sizeof m->client_id);
    rep_copy(e[6], m->claim_id, sizeof m->claim_id);
    if (!m->claim_id[0])
        m->claim_expires_ms = 0;
    if (with_body) {
        json_error_t jerr;
        m->body = json_loadb(e[2]->str, e[2]->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!m->body) {
            errf(err, "redis: message %s has a corrupt body: %s", m->id, jerr.text);
            return ZQ_EBACKEND;
        }
    }
    return ZQ_OK;
}

/* Append the messages of a flat array reply to out; on error nothing is
 * appended. */
static int parse_msgs(const redisReply *arr, zq_msg_vec *out, zq_err *err)
{
    if (!arr || arr->type != REDIS_REPLY_ARRAY || arr->elements % MSG_FIELDS)
        return bad_reply(err, "a message list");
    size_t n0 = out->n;
    for (size_t i = 0; i < arr->elements; i += MSG_FIELDS) {
        zq_message m;
        int rc = parse_msg(arr->element + i, &m, 1, err);
        if (rc != ZQ_OK) {
            while (out->n > n0)
                zq_message_clear(&out->v[--out->n]);
            return rc;
        }
        zq_msg_vec_push(out, &m);
    }
    return ZQ_OK;
}

static void vec_truncate(zq_msg_vec *v, size_t n)
{
    while (v->n > n)
        zq_message_clear(&v->v[--v->n]);
}

/* ----------------------------------------------------------- operations */

/* JSON text in our own malloc'd buffer (json_dumps would use jansson's
 * allocator, which a program may have replaced). */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} dumpbuf;

static int dump_cb(const char *buf, size_t size, void *data)
{
    dumpbuf *d = data;
    if (d->n + size + 1 > d->cap) {
        size_t cap = d->cap ? d->cap : 256;
        while (cap < d->n + size + 1)
            cap *= 2;
        char *np = realloc(d->p, cap);
        if (!np) {
            d->oom = 1;
            return -1;
        }
        d->p = np;
        d->cap = cap;
    }
    memcpy(d->p + d->n, buf, size);
    d->n += size;
    d->p[d->n] = '\0';
    return 0;
}

#define STORE(st) ((redis_store *)(st))

static int rs_post(zq_store *st, const char *project, const char *queue,
                   const char *client_id, const zq_new_msg *msgs, size_t n,
                   char (*ids_out)[ZQ_ID_LEN], zq_err *err)
{
    redis_store *s = STORE(st);
    char pfx[PFX_MAX];
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    if (!client_id)
        client_id = "";
    if (strlen(client_id) >= ZQ_CLIENT_LEN) {
        errf(err, "client id too long");
        return ZQ_EINVAL;
    }
    if (n > 0 && (!msgs || !ids_out)) {
        errf(err, "no messages given");
        return ZQ_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].body || msgs[i].ttl < 1) {
            errf(err, "message %zu: %s", i, msgs[i].body ? "ttl must be >= 1" : "no body");
            return ZQ_EINVAL;
        }
    }
    if (n == 0)
        return ZQ_OK;

    args a;
    args_init(&a);
    args_addf(&a, "%sctr", pfx);
    args_addf(&a, "%smsgs", pfx);
    args_adds(&a, pfx);
    args_adds(&a, client_id);
    for (size_t i = 0; i < n; i++) {
        char id[33];
        zq_new_id(id);
        memcpy(ids_out[i], id, sizeof id);
        args_adds(&a, ids_out[i]);
        args_addf(&a, "%d", msgs[i].ttl);
        dumpbuf body = {0};
        if (json_dump_callback(msgs[i].body, dump_cb, &body, JSON_COMPACT | JSON_ENCODE_ANY) != 0 ||
            body.oom) {
            free(body.p);
            args_free(&a);
            if (body.oom) {
                errf(err, "redis: out of memory");
                return ZQ_EBACKEND;
            }
            errf(err, "message %zu: the body cannot be encoded as JSON", i);
            return ZQ_EINVAL;
        }
        args_own(&a, body.p, body.n);
    }
    redisReply *r = run_script(s, S_POST, &a, 2, err);
    args_free(&a);
    if (!r)
        return ZQ_EBACKEND;
    rc = r->type == REDIS_REPLY_INTEGER ? ZQ_OK : bad_reply(err, "post");
    freeReplyObject(r);
    return rc;
}

/* Drive a window script (list, claim, pop) until `limit` messages were
 * collected or the queue is exhausted.  keys/extra are appended as the
 * script expects.  partial_ok: keep what earlier windows got if a later one
 * fails (destructive scripts). */
static int scan_loop(redis_store *s, int sid, const char *pfx, const char *const *keys,
                     int nkeys, const char *const *extra, int nextra, long long cursor,
                     int limit, int partial_ok, zq_msg_vec *out, zq_err *err)
{
    size_t n0 = out->n;
    int need = limit;
    for (;;) {
        args a;
        args_init(&a);
        for (int i = 0; i < nkeys; i++)
            args_adds(&a, keys[i]);
        args_adds(&a, pfx);
        args_addf(&a, "%lld", cursor);
        args_addf(&a, "%d", SCAN_WINDOW);
        args_addf(&a, "%d", need);
        for (int i = 0; i < nextra; i++)
            args_adds(&a, extra[i]);
        redisReply *r = run_script(s, sid, &a, nkeys, err);
        args_free(&a);
        int rc = ZQ_OK;
        long long done = 1, last = cursor;
        if (!r)
            rc = ZQ_EBACKEND;
        else if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
                 rep_ll(r->element[1], &last) < 0 || rep_ll(r->element[2], &done) < 0)
            rc = bad_reply(err, script_name[sid]);
        else
            rc = parse_msgs(r->element[3], out, err);
        if (r)
            freeReplyObject(r);
        if (rc != ZQ_OK) {
            if (partial_ok && out->n > n0) {
                zq_log(ZQ_LOG_WARN, "redis store: returning a partial result",
                       "op=%s got=%zu error=\"%s\"", script_name[sid], out->n - n0,
                       err ? err->msg : "");
                return ZQ_OK;
            }
            vec_truncate(out, n0);
            return rc;
        }
        need = limit - (int)(out->n - n0);
        if (need <= 0 || done || last <= cursor)
            return ZQ_OK;
        cursor = last;
    }
}

static int rs_list(zq_store *st, const char *project, const char *queue,
                   const char *client_id, const zq_list_opts *opts, zq_msg_vec *out,
                   long long *next_marker, zq_err *err)
{
    redis_store *s = STORE(st);
    char pfx[PFX_MAX], kmsgs[PFX_MAX + 8];
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    if (!opts || opts->limit < 1) {
        errf(err, "limit must be >= 1");
        return ZQ_EINVAL;
    }
    snprintf(kmsgs, sizeof kmsgs, "%smsgs", pfx);
    const char *keys[] = {kmsgs};
    const char *extra[] = {client_id ? client_id : "", opts->echo ? "1" : "0",
                           opts->include_claimed ? "1" : "0"};
    size_t n0 = out->n;
    rc = scan_loop(s, S_LIST, pfx, keys, 1, extra, 3, opts->marker, opts->limit, 0, out, err);
    if (rc == ZQ_OK && next_marker)
        *next_marker = out->n > n0 ? out->v[out->n - 1].marker : opts->marker;
    return rc;
}

static int rs_get(zq_store *st, const char *project, const char *queue, const char *id,
                  zq_message *outm, zq_err *err)
{
    redis_store *s = STORE(st);
    char pfx[PFX_MAX];
    memset(outm, 0, sizeof *outm); /* body NULL: safe to clear on any result */
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    if (!valid_id(id))
        return ZQ_ENOENT;
    args a;
    args_init(&a);
    args_addf(&a, "%smsgs", pfx);
    args_adds(&a, pfx);
    args_adds(&a, id);
    redisReply *r = run_script(s, S_GET, &a, 1, err);
    args_free(&a);
    if (!r)
        return ZQ_EBACKEND;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_ARRAY ||
        (r->element[1]->elements != 0 && r->element[1]->elements != MSG_FIELDS))
        rc = bad_reply(err, "get");
    else if (r->element[1]->elements == 0)
        rc = ZQ_ENOENT;
    else
        rc = parse_msg(r->element[1]->element, outm, 1, err);
    freeReplyObject(r);
    return rc;
}

static int rs_del(zq_store *st, const char *project, const char *queue, const char *id,
                  const char *claim_id, zq_err *err)
{
    redis_store *s = STORE(st);
    char pfx[PFX_MAX];
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    if (!valid_id(id))
        return ZQ_ENOENT;
    args a;
    args_init(&a);
    args_addf(&a, "%smsgs", pfx);
    args_adds(&a, pfx);
    args_adds(&a, id);
    args_adds(&a, claim_id ? "1" : "0");
    args_adds(&a, claim_id ? claim_id : "");
    redisReply *r = run_script(s, S_DEL, &a, 1, err);
    args_free(&a);
    if (!r)
        return ZQ_EBACKEND;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = bad_reply(err, "delete");
    else if (r->integer == 0)
        rc = ZQ_OK;
    else if (r->integer == 1)
        rc = ZQ_ENOENT;
    else
        rc = ZQ_EFORBIDDEN;
    freeReplyObject(r);
    return rc;
}

static int rs_del_many(zq_store *st, const char *project, const char *queue,
                       const char *const *ids, size_t n, zq_err *err)
{
    redis_store *s = STORE(st);
    char pfx[PFX_MAX];
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    size_t i = 0;
    while (i < n) {
        args a;
        args_init(&a);
        args_addf(&a, "%smsgs", pfx);
        args_adds(&a, pfx);
        int added = 0;
        for (; i < n && added < DEL_MANY_CHUNK; i++) {
            if (valid_id(ids[i])) {
                args_adds(&a, ids[i]);
                added++;
            }
        }
        if (added == 0) {
            args_free(&a);
            break;
        }
        redisReply *r = run_script(s, S_DEL_MANY, &a, 1, err);
        args_free(&a);
        if (!r)
            return ZQ_EBACKEND;
        freeReplyObject(r);
    }
    return ZQ_OK;
}

static int rs_pop(zq_store *st, const char *project, const char *queue, int limit,
                  zq_msg_vec *out, zq_err *err)
{
    redis_store *s = STORE(st);
    char pfx[PFX_MAX], kmsgs[PFX_MAX + 8];
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    if (limit < 1) {
        errf(err, "limit must be >= 1");
        return ZQ_EINVAL;
    }
    snprintf(kmsgs, sizeof kmsgs, "%smsgs", pfx);
    const char *keys[] = {kmsgs};
    return scan_loop(s, S_POP, pfx, keys, 1, NULL, 0, 0, limit, 1, out, err);
}

/* Keys of a claim: msgs, cl, claim hash, claim members. */
typedef struct {
    char msgs[PFX_MAX + 8], cl[PFX_MAX + 8], hash[PFX_MAX + ZQ_ID_LEN + 8],
        members[PFX_MAX + ZQ_ID_LEN + 8];
} claim_keys;

static void mk_claim_keys(claim_keys *k, const char *pfx, const char *cid)
{
    snprintf(k->msgs, sizeof k->msgs, "%smsgs", pfx);
    snprintf(k->cl, sizeof k->cl, "%scl", pfx);
    snprintf(k->hash, sizeof k->hash, "%sc:%s", pfx, cid);
    snprintf(k->members, sizeof k->members, "%scm:%s", pfx, cid);
}

static int rs_claim(zq_store *st, const char *project, const char *queue,
                    const char *client_id, int ttl, int grace, int limit,
                    char claim_id_out[ZQ_ID_LEN], zq_msg_vec *out, zq_err *err)
{
    (void)client_id; /* claims do not record who made them */
    redis_store *s = STORE(st);
    char pfx[PFX_MAX];
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    if (ttl < 1 || grace < 0 || limit < 1) {
        errf(err, "claim: ttl and limit must be >= 1, grace >= 0");
        return ZQ_EINVAL;
    }
    char cid[33], sttl[16], sgrace[16];
    zq_new_id(cid);
    snprintf(sttl, sizeof sttl, "%d", ttl);
    snprintf(sgrace, sizeof sgrace, "%d", grace);
    claim_keys k;
    mk_claim_keys(&k, pfx, cid);
    const char *keys[] = {k.msgs, k.cl, k.hash, k.members};
    const char *extra[] = {cid, sttl, sgrace};
    rc = scan_loop(s, S_CLAIM, pfx, keys, 4, extra, 3, 0, limit, 1, out, err);
    if (rc == ZQ_OK)
        memcpy(claim_id_out, cid, sizeof cid);
    return rc;
}

static int rs_claim_get(zq_store *st, const char *project, const char *queue,
                        const char *claim_id, zq_claim_info *info, zq_msg_vec *out,
                        zq_err *err)
{
    redis_store *s = STORE(st);
    char pfx[PFX_MAX];
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    if (!valid_id(claim_id))
        return ZQ_ENOENT;
    claim_keys k;
    mk_claim_keys(&k, pfx, claim_id);
    args a;
    args_init(&a);
    args_adds(&a, k.msgs);
    args_adds(&a, k.hash);
    args_adds(&a, k.members);
    args_adds(&a, pfx);
    args_adds(&a, claim_id);
    redisReply *r = run_script(s, S_CLAIM_GET, &a, 3, err);
    args_free(&a);
    if (!r)
        return ZQ_EBACKEND;
    long long ttl = 0, created = 0, expires = 0;
    if (r->type != REDIS_REPLY_ARRAY || (r->elements != 1 && r->elements != 5))
        rc = bad_reply(err, "claim_get");
    else if (r->elements == 1)
        rc = ZQ_ENOENT;
    else if (rep_ll(r->element[1], &ttl) < 0 || ttl < 0 || ttl > INT_MAX ||
             rep_ll(r->element[2], &created) < 0 || rep_ll(r->element[3], &expires) < 0)
        rc = bad_reply(err, "claim_get");
    else if (out)
        rc = parse_msgs(r->element[4], out, err);
    if (rc == ZQ_OK && info) {
        info->ttl = (int)ttl;
        info->created_ms = created;
        info->expires_ms = expires;
    }
    freeReplyObject(r);
    return rc;
}

static int rs_claim_update(zq_store *st, const char *project, const char *queue,
                           const char *claim_id, int ttl, int grace, zq_err *err)
{
    redis_store *s = STORE(st);
    char pfx[PFX_MAX];
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    if (ttl < 1 || grace < 0) {
        errf(err, "claim update: ttl must be >= 1, grace >= 0");
        return ZQ_EINVAL;
    }
    if (!valid_id(claim_id))
        return ZQ_ENOENT;
    claim_keys k;
    mk_claim_keys(&k, pfx, claim_id);
    args a;
    args_init(&a);
    args_adds(&a, k.msgs);
    args_adds(&a, k.cl);
    args_adds(&a, k.hash);
    args_adds(&a, k.members);
    args_adds(&a, pfx);
    args_adds(&a, claim_id);
    args_addf(&a, "%d", ttl);
    args_addf(&a, "%d", grace);
    redisReply *r = run_script(s, S_CLAIM_UPDATE, &a, 4, err);
    args_free(&a);
    if (!r)
        return ZQ_EBACKEND;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = bad_reply(err, "claim_update");
    else
        rc = r->integer == 0 ? ZQ_OK : ZQ_ENOENT;
    freeReplyObject(r);
    return rc;
}

static int rs_claim_delete(zq_store *st, const char *project, const char *queue,
                           const char *claim_id, zq_err *err)
{
    redis_store *s = STORE(st);
    char pfx[PFX_MAX];
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    if (!valid_id(claim_id))
        return ZQ_OK;
    claim_keys k;
    mk_claim_keys(&k, pfx, claim_id);
    args a;
    args_init(&a);
    args_adds(&a, k.msgs);
    args_adds(&a, k.cl);
    args_adds(&a, k.hash);
    args_adds(&a, k.members);
    args_adds(&a, pfx);
    args_adds(&a, claim_id);
    redisReply *r = run_script(s, S_CLAIM_DELETE, &a, 4, err);
    args_free(&a);
    if (!r)
        return ZQ_EBACKEND;
    freeReplyObject(r);
    return ZQ_OK;
}

static int rs_stats(zq_store *st, const char *project, const char *queue, zq_stats *out,
                    zq_err *err)
{
    redis_store *s = STORE(st);
    char pfx[PFX_MAX], kmsgs[PFX_MAX + 8];
    memset(out, 0, sizeof *out);
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    snprintf(kmsgs, sizeof kmsgs, "%smsgs", pfx);
    zq_stats acc;
    memset(&acc, 0, sizeof acc);
    long long cursor = 0;
    for (;;) {
        args a;
        args_init(&a);
        args_adds(&a, kmsgs);
        args_adds(&a, pfx);
        args_addf(&a, "%lld", cursor);
        args_addf(&a, "%d", SCAN_WINDOW);
        args_adds(&a, "0");
        redisReply *r = run_script(s, S_STATS, &a, 1, err);
        args_free(&a);
        if (!r)
            return ZQ_EBACKEND;
        long long last, done, nfree, nclaimed;
        redisReply **e = r->element;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 7 || rep_ll(e[1], &last) < 0 ||
            rep_ll(e[2], &done) < 0 || rep_ll(e[3], &nfree) < 0 || rep_ll(e[4], &nclaimed) < 0 ||
            e[5]->type != REDIS_REPLY_ARRAY || e[6]->type != REDIS_REPLY_ARRAY ||
            e[5]->elements != e[6]->elements ||
            (e[5]->elements != 0 && e[5]->elements != MSG_FIELDS)) {
            freeReplyObject(r);
            return bad_reply(err, "stats");
        }
        if (e[5]->elements) {
            zq_message first, newest;
            if ((rc = parse_msg(e[5]->element, &first, 0, err)) != ZQ_OK ||
                (rc = parse_msg(e[6]->element, &newest, 0, err)) != ZQ_OK) {
                freeReplyObject(r);
                return rc;
            }
            if (acc.total == 0)
                acc.oldest = first;
            acc.newest = newest;
        }
        acc.free += nfree;
        acc.claimed += nclaimed;
        acc.total = acc.free + acc.claimed;
        freeReplyObject(r);
        if (done || last <= cursor)
            break;
        cursor = last;
    }
    *out = acc;
    return ZQ_OK;
}

static int rs_purge(zq_store *st, const char *project, const char *queue, zq_err *err)
{
    redis_store *s = STORE(st);
    char pfx[PFX_MAX];
    int rc = mkprefix(project, queue, pfx, err);
    if (rc != ZQ_OK)
        return rc;
    for (;;) {
        args a;
        args_init(&a);
        args_addf(&a, "%smsgs", pfx);
        args_addf(&a, "%scl", pfx);
        args_addf(&a, "%sctr", pfx);
        args_adds(&a, pfx);
        args_addf(&a, "%d", PURGE_BATCH);
        redisReply *r = run_script(s, S_PURGE, &a, 3, err);
        args_free(&a);
        if (!r)
            return ZQ_EBACKEND;
        if (r->type != REDIS_REPLY_INTEGER) {
            freeReplyObject(r);
            return bad_reply(err, "purge");
        }
        long long more = r->integer;
        freeReplyObject(r);
        if (!more)
            return ZQ_OK;
    }
}

static int rs_ping(zq_store *st, zq_err *err)
{
    redis_store *s = STORE(st);
    redisContext *c = pool_get(s, err);
    if (!c)
        return ZQ_EBACKEND;
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    redisReply *r = rcmd(c, 1, argv, lens);
    int rc = ZQ_OK;
    if (!r) {
        errf(err, "redis %s:%d: PING: %s", s->host, s->port,
             c->errstr[0] ? c->errstr : "no reply");
        rc = ZQ_EBACKEND;
    } else if (r->type != REDIS_REPLY_STATUS) {
        errf(err, "redis %s:%d: PING: %.*s", s->host, s->port,
             r->type == REDIS_REPLY_ERROR ? (int)r->len : 16,
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        rc = ZQ_EBACKEND;
    }
    if (r)
        freeReplyObject(r);
    pool_put(s, c);
    return rc;
}

static void rs_free(redis_store *s)
{
    free(s->host);
    free(s->user);
    if (s->password) {
        explicit_bzero(s->password, strlen(s->password));
        free(s->password);
    }
    free(s);
}

static void rs_destroy(zq_store *st)
{
    redis_store *s = STORE(st);
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nidle; i++)
        redisFree(s->idle[i]);
    int busy = s->nopen - s->nidle;
    s->nidle = s->nopen = 0;
    pthread_mutex_unlock(&s->mu);
    if (busy)
        zq_log(ZQ_LOG_WARN, "redis store destroyed with connections in use", "pool=%s busy=%d",
               s->base.name, busy);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    rs_free(s);
}

static const zq_store_ops redis_ops = {
    .kind = "redis",
    .post = rs_post,
    .list = rs_list,
    .get = rs_get,
    .del = rs_del,
    .del_many = rs_del_many,
    .pop = rs_pop,
    .claim = rs_claim,
    .claim_get = rs_claim_get,
    .claim_update = rs_claim_update,
    .claim_delete = rs_claim_delete,
    .stats = rs_stats,
    .purge = rs_purge,
    .ping = rs_ping,
    .destroy = rs_destroy,
};

zq_store *zq_store_redis_new(const char *pool_name, const char *uri, zq_err *err)
{
    redis_store *s = calloc(1, sizeof *s);
    if (!s) {
        errf(err, "out of memory");
        return NULL;
    }
    if (parse_uri(s, uri, err) < 0) {
        rs_free(s);
        return NULL;
    }
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        errf(err, "pthread_condattr_init failed");
        rs_free(s);
        return NULL;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int crc = pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (crc != 0 || pthread_mutex_init(&s->mu, NULL) != 0) {
        if (crc == 0)
            pthread_cond_destroy(&s->cv);
        errf(err, "cannot initialise the connection pool");
        rs_free(s);
        return NULL;
    }
    s->base.ops = &redis_ops;
    snprintf(s->base.name, sizeof s->base.name, "%s", pool_name ? pool_name : "");
    return &s->base;
}
