/*
 * hooks/hiredis.c - `redis` spans for hiredis (0.14 API).
 *
 * Hooked (exported here, the real functions found with dlsym(RTLD_NEXT) on
 * the first call of any of them - the library never links hiredis):
 *
 *   blocking       redisCommand, redisvCommand, redisCommandArgv
 *   pipelined      redisAppendCommand, redisvAppendCommand,
 *                  redisAppendCommandArgv ... redisGetReply
 *   async          redisAsyncCommand, redisvAsyncCommand, redisAsyncCommandArgv
 *   bookkeeping    redisFree (pending pipelined spans of a freed context)
 *
 * Not hooked (no span): redisAppendFormattedCommand and
 * redisAsyncFormattedCommand (a preformatted buffer), redisBufferRead/Write,
 * the connect functions.
 *
 * Layering (style items 6 and 7).  hiredis calls its own exported functions
 * through the PLT (redisCommand -> redisvCommand -> redisvAppendCommand +
 * redisGetReply, redisAsyncFree -> redisFree), so every one of those inner
 * calls lands in a wrapper here.  A wrapper that records holds the thread's
 * reentrancy depth for the duration of the real call: the inner hiredis
 * calls and the libc socket I/O under it see depth > 0 and go straight to
 * the real function.  One driver call = one span.  A thread with no trace
 * context (and no pipelined span pending anywhere) holds nothing: every
 * wrapper, nested or not, tail-calls the real function at its first test
 * (hr_idle() below says why that is the same).
 *
 * Span shapes.
 *   - A blocking command: one span around the call (ldprof_span_begin, so it
 *     is the thread's current span while it runs).
 *   - A pipelined command: the span opens at the append and closes when
 *     redisGetReply returns its reply.  Such a span must not become the
 *     thread's current span (the program goes on doing other work before
 *     the reply), so it is opened "detached": a child of the current span
 *     that does not change the thread context.  Spans wait in a per-context
 *     FIFO (see PIPE_* below).
 *   - An async command: the span opens at redisAsyncCommand* (detached too)
 *     and closes in a trampoline callback that then calls the program's
 *     callback with the program's privdata.  The trampoline state lives in
 *     a fixed preallocated slot pool (ASYNC_SLOTS); when it is exhausted
 *     the command passes through untraced and the drop is counted.
 *     SUBSCRIBE/PSUBSCRIBE/UNSUBSCRIBE/PUNSUBSCRIBE/MONITOR, anything sent
 *     while the context is subscribed or monitoring, and commands whose
 *     name cannot be read from the format pass through untraced: hiredis
 *     calls those callbacks any number of times.
 *
 * Info (docs/formats.md, "redis"):
 *   start  redis.command     first argument, upper-cased ("EVALSHA")
 *          redis.subcommand  second argument of SCRIPT, CONFIG, CLIENT, ...
 *          redis.key         the first key (argv[1]; for EVAL/EVALSHA the
 *                            first of KEYS when numkeys >= 1).  Key names are
 *                            recorded like OSProfiler records SQL text:
 *                            they are names, not values.  Never for AUTH,
 *                            HELLO and the other key-less commands.
 *          redis.script      EVALSHA: the script's SHA1
 *          redis.argc        number of arguments, command included
 *          redis.args        only with record_values: the arguments after
 *                            the key (each cut to 64 bytes, 256 in all);
 *                            never for AUTH, HELLO, MIGRATE, CONFIG, ACL
 *                            (they can carry passwords)
 *          redis.pipelined / redis.async  1 for those shapes
 *   stop   redis.reply_type  string, array, integer, nil, status, error
 *          redis.reply_len   bytes of a string, elements of an array
 *          etype/message     (ldprof_span_set_error) an error reply:
 *                            "RedisError" + the reply text; no reply:
 *                            "RedisIOError"/"RedisEOFError"/
 *                            "RedisProtocolError"/"RedisOOMError"/
 *                            "RedisError" + the context's errstr
 *
 * Format strings (redisCommand(c, "SET %s %b", ...)): the command name and
 * key come from the format's first tokens when they are literal words or
 * exactly "%s" / "%b" (then read from a va_copy of the arguments, before
 * any other conversion, so the position is certain).  The first token that
 * is any other conversion ("%d", "foo%s") ends the reading of the
 * arguments: later fields are left out.  argc is the number of
 * space-separated tokens, which is how hiredis splits a format.
 *
 * Contract of every wrapper: return value, errno, the reply out-parameter
 * and reply ownership are exactly the real function's; nothing allocates,
 * locks or calls stdio.
 */
#define PR_FMT "hiredis"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "ldprof/ldprof.h"
#include "preload/buffer.h"
#include "preload/config.h"
#include "preload/init.h"
#include "preload/log.h"
#include "preload/real.h"
#include "preload/span.h"
#include "preload/tls.h"

/* ------------------------------------------------------------ real table */

static __typeof__(redisvCommand) *real_redisvCommand;
static __typeof__(redisCommandArgv) *real_redisCommandArgv;
static __typeof__(redisvAppendCommand) *real_redisvAppendCommand;
static __typeof__(redisAppendCommandArgv) *real_redisAppendCommandArgv;
static __typeof__(redisGetReply) *real_redisGetReply;
static __typeof__(redisFree) *real_redisFree;
static __typeof__(redisvAsyncCommand) *real_redisvAsyncCommand;
static __typeof__(redisAsyncCommandArgv) *real_redisAsyncCommandArgv;

#define HR_SYM(sym) {(void **)&real_##sym, #sym}
static const struct ldprof_sym hr_syms[] = {
    HR_SYM(redisvCommand),      HR_SYM(redisCommandArgv),   HR_SYM(redisvAppendCommand),
    HR_SYM(redisAppendCommandArgv), HR_SYM(redisGetReply), HR_SYM(redisFree),
    HR_SYM(redisvAsyncCommand), HR_SYM(redisAsyncCommandArgv),
};

/*
 * The wrappers read hiredis structs (redisContext.err/errstr/flags,
 * redisReply) with the layout of the headers this file was compiled
 * against (Debian's 0.14).  hiredis 1.x changed both layouts (redisContext
 * starts with a `funcs` pointer, redisReply got `dval`), and only 1.x has
 * redisConnectWithOptions.  If the hiredis found at run time is of another
 * major version than the headers, the wrappers only pass through (no span,
 * no pipeline bookkeeping) and say so once.
 *   hr_abi: 0 not checked yet, 1 layouts match, -1 mismatch (atomic)
 */
static int hr_abi;

static void hr_abi_check(void)
{
    void *v1 = dlsym(RTLD_NEXT, "redisConnectWithOptions");
    int ok = (HIREDIS_MAJOR >= 1) == (v1 != NULL);

    if (!ok)
        pr_warn("run-time library is not the %d.%d ABI the hooks were built for: "
                "redis spans disabled", HIREDIS_MAJOR, HIREDIS_MINOR);
    __atomic_store_n(&hr_abi, ok ? 1 : -1, __ATOMIC_RELEASE);
}

/*
 * hr_need - make sure *pp (a real_* pointer of the table) is usable.
 * Resolves the whole table on the first call (lazy: hiredis may be loaded
 * after our constructor, or never).  Thread-safe: resolving is idempotent.
 * Returns 0 when the symbol is missing: the wrapper then fails the way the
 * function reports failure (NULL / REDIS_ERR), after a log line.
 */
static inline int hr_need(void **pp)
{
    void *p = __atomic_load_n(pp, __ATOMIC_ACQUIRE);

    if (__builtin_expect(p == NULL, 0)) {
        ldprof_sym_resolve(hr_syms, (int)(sizeof(hr_syms) / sizeof(hr_syms[0])));
        if (__atomic_load_n(&hr_abi, __ATOMIC_ACQUIRE) == 0)
            hr_abi_check();
        p = __atomic_load_n(pp, __ATOMIC_ACQUIRE);
    }
    return p != NULL && p != LDPROF_SYM_MISSING;
}
#define HR_NEED(sym) hr_need((void **)&real_##sym)

/* May this call record?  (ldprof on, not nested, hiredis ABI as built;
 * the trace_redis toggle is tested by the callers: with it off the
 * wrappers still hold the depth and keep the pipeline FIFO aligned.) */
static inline int hr_active(void)
{
    return ldprof_tls.depth == 0 && ldprof_recording() &&
           __atomic_load_n(&hr_abi, __ATOMIC_RELAXED) > 0;
}

/*
 * hr_idle - the thread has no trace context (ldprof_ctx_maybe() is 0: no
 * root, no profile mode) and no context has pipelined spans pending
 * (hr_pipes_used == 0).  Then no call can record anything, and the full
 * path would at most hold the depth around the real call.  The wrappers
 * call the real function WITHOUT holding it (a tail call, no frame), which
 * is the same for everything underneath:
 *   - the nested hiredis calls (redisvCommand -> redisvAppendCommand +
 *     redisGetReply) find the thread idle too and pass at their own first
 *     test; a context with a pipeline entry would have made hr_pipes_used
 *     non-zero before the call (entries are made by this thread's calls on
 *     its own context), so no FIFO is touched either way;
 *   - the socket I/O under them runs at depth 0 but with no trace context:
 *     no `net` span (trace_socket) and no outbound `http` span can begin.
 *     A TCP connection to the server is followed as a possible HTTP client
 *     connection from its connect() (libc_socket.c); its first request
 *     bytes (RESP, never an HTTP request line) make preload/http.c stop
 *     following it, after which the read/write gate of preload/real.h
 *     passes its I/O at once (kinds[fd] == 0), as for any other socket.
 * Traced threads, and trace_redis off on a traced thread, keep the old
 * path: the depth is held, so the driver's I/O never makes `net` spans.
 */
static int hr_pipes_used; /* pipeline entries claimed (atomic; the FIFO is below) */

static inline int hr_idle(void)
{
    /* !ldprof_ctx_maybe() && !hr_pipes_used, as one OR of the three words
     * and one branch (three tests would be three branches). */
    return (ldprof_ctx_word() | (unsigned)__atomic_load_n(&hr_pipes_used, __ATOMIC_RELAXED)) == 0;
}

/*
 * HR_PASS(sym) - the first test of a non-variadic exported wrapper: the
 * real pointer is resolved (not NULL, not missing) and the call is not
 * looked at (hr_idle() or !hr_active()).  The wrapper then tail-calls
 * real_<sym>, with no frame, no errno save; anything else goes to its full
 * path (*_full, the same code as before the gate, not inlined).  The
 * variadic wrappers (redisCommand, ...) make the same test after va_start
 * and call real_<vsym> or <vsym>_full with their va_list: no call before
 * the test, so the compiler keeps the arguments in their registers (no
 * callee-saved spills).
 */
#define HR_PASS(sym)                                                                     \
    __builtin_expect((uintptr_t)__atomic_load_n((void **)&real_##sym, __ATOMIC_ACQUIRE) > \
                             (uintptr_t)LDPROF_SYM_MISSING &&                            \
                         (hr_idle() || !hr_active()),                                    \
                     1)

/*
 * hr_quiet - certainly no span for a call on this thread now (trace_redis
 * off, or no trace context possible): the wrappers' quiet path then only
 * holds the depth around the real call, which is all their full path does
 * in that case (hr_wanted() would be 0), without its lookups and errno
 * saves.  Appends also need no pipeline entry in use (pipe_push of an
 * untraced command is then a no-op).
 */
static inline int hr_quiet(void)
{
    return !ldprof_cfg.trace_redis || !ldprof_ctx_maybe();
}

/* The real call @expr at depth + 1 (nested hiredis and libc calls pass). */
#define HR_HELD(expr)                                                                    \
    ({                                                                                   \
        ldprof_tls.depth++;                                                              \
        __typeof__(expr) r_ = (expr);                                                    \
        ldprof_tls.depth--;                                                              \
        r_;                                                                              \
    })

/* ------------------------------------------------------------ command view */

#define HR_VIEW_ARGS 8

/* What the wrapper could see of a command's arguments without formatting
 * it: the first HR_VIEW_ARGS arguments, each known (p != NULL) or not. */
struct hr_view {
    int argc;
    const char *p[HR_VIEW_ARGS];
    size_t len[HR_VIEW_ARGS];
};

static void view_argv(struct hr_view *v, int argc, const char **argv, const size_t *argvlen)
{
    memset(v, 0, sizeof(*v));
    v->argc = argc > 0 ? argc : 0;
    for (int i = 0; i < v->argc && i < HR_VIEW_ARGS; i++) {
        if (argv == NULL || argv[i] == NULL)
            continue;
        v->p[i] = argv[i];
        v->len[i] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
}

/* Split @fmt as hiredis does (on ' ') and read the arguments that can be
 * read safely (see the header comment). */
static void view_fmt(struct hr_view *v, const char *fmt, va_list ap)
{
    va_list cp;
    int in_sync = 1; /* cp still points at the next conversion's argument */
    const char *t = fmt;

    memset(v, 0, sizeof(*v));
    if (fmt == NULL)
        return;
    va_copy(cp, ap);
    for (;;) {
        const char *e;
        int i = v->argc, conv = 0, only_pct = 1;

        while (*t == ' ')
            t++;
        if (*t == '\0')
            break;
        for (e = t; *e != '\0' && *e != ' '; e++) {
            if (*e == '%') {
                if (e[1] == '%') {
                    e++;
                } else if (e[1] != '\0') {
                    conv++;
                    only_pct = 0;
                }
            }
        }
        v->argc++;
        if (i < HR_VIEW_ARGS) {
            size_t tl = (size_t)(e - t);
            if (conv == 0 && only_pct && memchr(t, '%', tl) == NULL) {
                v->p[i] = t;
                v->len[i] = tl;
            } else if (conv == 1 && tl == 2 && in_sync && t[1] == 's') {
                const char *s = va_arg(cp, const char *);
                if (s != NULL) {
                    v->p[i] = s;
                    v->len[i] = strlen(s);
                }
            } else if (conv == 1 && tl == 2 && in_sync && t[1] == 'b') {
                const char *s = va_arg(cp, const char *);
                size_t n = va_arg(cp, size_t);
                if (s != NULL) {
                    v->p[i] = s;
                    v->len[i] = n;
                }
            } else if (conv > 0) {
                in_sync = 0;
            }
        }
        t = e;
    }
    va_end(cp);
}

/*
 * name_is - is @name one of @list?  @first caches a mask of the list's
 * first letters (bit c & 31 for each first byte c, bit 31: computed), so
 * that a name whose first letter no entry has (EVALSHA, GET, HSET... for
 * most lists) costs one load and a test instead of a strcmp per entry,
 * each on a string of its own (cold cache lines on every request).  Two
 * letters sharing a bit only send the name on to the strcmp loop.
 */
static int name_is(const char *name, const char *const *list, uint32_t *first)
{
    uint32_t m = __atomic_load_n(first, __ATOMIC_RELAXED);

    if (__builtin_expect(m == 0, 0)) {
        m = 1u << 31;
        for (const char *const *l = list; *l != NULL; l++)
            m |= 1u << ((unsigned char)(*l)[0] & 31);
        __atomic_store_n(first, m, __ATOMIC_RELAXED);
    }
    if (!(m & (1u << ((unsigned char)name[0] & 31))))
        return 0;
    for (; *list != NULL; list++)
        if (strcmp(name, *list) == 0)
            return 1;
    return 0;
}
static uint32_t hr_first_subcmd, hr_first_keyless, hr_first_secret, hr_first_async_multi;

/* Commands whose second argument is not a key. */
static const char *const hr_keyless[] = {
    "AUTH", "HELLO", "PING", "ECHO", "SELECT", "INFO", "QUIT", "MULTI", "EXEC",
    "DISCARD", "DBSIZE", "FLUSHDB", "FLUSHALL", "TIME", "SAVE", "BGSAVE",
    "BGREWRITEAOF", "LASTSAVE", "SHUTDOWN", "WAIT", "READONLY", "READWRITE", "ROLE",
    "SWAPDB", "RANDOMKEY", "UNWATCH", "PUBLISH", "SUBSCRIBE", "PSUBSCRIBE",
    "UNSUBSCRIBE", "PUNSUBSCRIBE", "MONITOR", "SYNC", "PSYNC", "REPLICAOF", "SLAVEOF",
    NULL};
/* Commands whose second argument is a subcommand (and no key follows that
 * we would recognise). */
static const char *const hr_subcmd[] = {
    "SCRIPT", "CONFIG", "CLIENT", "CLUSTER", "COMMAND", "SLOWLOG", "LATENCY",
    "MODULE", "ACL", "PUBSUB", "DEBUG", "MEMORY", "FUNCTION", NULL};
/* Commands whose arguments are secrets: never recorded, not even with
 * record_values. */
static const char *const hr_secret[] = {"AUTH", "HELLO", "MIGRATE", "CONFIG", "ACL", NULL};
/* Async commands whose callback hiredis calls more than once (or never
 * through the replies queue): untraced. */
static const char *const hr_async_multi[] = {
    "SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SSUBSCRIBE", "MONITOR", NULL};

/* Upper-cased command name of @v into @out (cap 32); 0 when unknown. */
static size_t view_name(const struct hr_view *v, char out[32])
{
    size_t n;

    if (v->argc < 1 || v->p[0] == NULL || v->len[0] == 0)
        return 0;
    n = v->len[0] < 31 ? v->len[0] : 31;
    for (size_t i = 0; i < n; i++) {
        char ch = v->p[0][i];
        out[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
    }
    out[n] = '\0';
    return n;
}

#define HR_KEY_MAX 128
#define HR_ARG_MAX 64
#define HR_ARGS_MAX 256

/* add_start_fields' rare parts, out of line (their code lines stay off the
 * common path: EVALSHA, HGET, ... with record_values off). */
static __attribute__((noinline, cold)) void add_subcommand(struct ldprof_span *s,
                                                           const struct hr_view *v)
{
    char sub[32];
    struct hr_view one = *v;

    one.p[0] = v->p[1];
    one.len[0] = v->len[1];
    one.argc = v->argc - 1;
    if (view_name(&one, sub) > 0)
        ldprof_span_add_str(s, LDPROF_FIELD_START, "redis.subcommand", sub, -1);
}

static __attribute__((noinline, cold)) void add_args(struct ldprof_span *s,
                                                     const struct hr_view *v, int key_at)
{
    char buf[HR_ARGS_MAX];
    size_t o = 0;
    int from = key_at > 0 ? key_at + 1 : 1;

    for (int i = from; i < v->argc && i < HR_VIEW_ARGS; i++) {
        const char *p = v->p[i] ? v->p[i] : "?";
        size_t n = v->p[i] ? v->len[i] : 1;
        if (n > HR_ARG_MAX)
            n = HR_ARG_MAX;
        if (o + n + 1 > sizeof(buf))
            break;
        if (o)
            buf[o++] = ' ';
        memcpy(buf + o, p, n);
        o += n;
    }
    if (o > 0)
        ldprof_span_add_str(s, LDPROF_FIELD_START, "redis.args", buf, (long)o);
}

/* Add the start fields of @v to @s. */
static void add_start_fields(struct ldprof_span *s, const struct hr_view *v, const char *name)
{
    int key_at = -1;

    if (__builtin_expect(name[0] == '\0', 0)) {
        ldprof_span_add_str(s, LDPROF_FIELD_START, "redis.command", "?", -1);
        ldprof_span_add_int(s, LDPROF_FIELD_START, "redis.argc", v->argc);
        return;
    }
    ldprof_span_add_str(s, LDPROF_FIELD_START, "redis.command", name, -1);
    if (__builtin_expect(name_is(name, hr_subcmd, &hr_first_subcmd), 0)) {
        add_subcommand(s, v);
    } else if (name[0] == 'E' &&
               (strcmp(name, "EVALSHA") == 0 || strcmp(name, "EVAL") == 0 ||
                strcmp(name, "EVALSHA_RO") == 0 || strcmp(name, "EVAL_RO") == 0)) {
        if (name[4] == 'S' && v->argc > 1 && v->p[1] != NULL)
            ldprof_span_add_str(s, LDPROF_FIELD_START, "redis.script", v->p[1],
                                (long)(v->len[1] < 64 ? v->len[1] : 64));
        if (v->argc > 3 && v->p[2] != NULL && v->len[2] > 0 && v->len[2] < 10) {
            long nk = 0;
            for (size_t i = 0; i < v->len[2] && nk >= 0; i++)
                nk = v->p[2][i] >= '0' && v->p[2][i] <= '9' ? nk * 10 + (v->p[2][i] - '0') : -1;
            if (nk >= 1)
                key_at = 3;
        }
    } else if (!name_is(name, hr_keyless, &hr_first_keyless) && v->argc > 1) {
        key_at = 1;
    }
    if (key_at > 0 && key_at < HR_VIEW_ARGS && v->p[key_at] != NULL)
        ldprof_span_add_str(s, LDPROF_FIELD_START, "redis.key", v->p[key_at],
                            (long)(v->len[key_at] < HR_KEY_MAX ? v->len[key_at] : HR_KEY_MAX));
    ldprof_span_add_int(s, LDPROF_FIELD_START, "redis.argc", v->argc);

    if (__builtin_expect(ldprof_cfg.record_values, 0) &&
        !name_is(name, hr_secret, &hr_first_secret))
        add_args(s, v, key_at);
}

/* add_reply_fields without a reply: @c's error.  Out of line (rare). */
static __attribute__((noinline, cold)) void add_no_reply(struct ldprof_span *s,
                                                         const redisContext *c)
{
    const char *etype = "RedisError";

    if (c != NULL) {
        switch (c->err) {
        case REDIS_ERR_IO: etype = "RedisIOError"; break;
        case REDIS_ERR_EOF: etype = "RedisEOFError"; break;
        case REDIS_ERR_PROTOCOL: etype = "RedisProtocolError"; break;
        case REDIS_ERR_OOM: etype = "RedisOOMError"; break;
        default: break;
        }
    }
    ldprof_span_set_error(s, etype, c != NULL && c->errstr[0] ? c->errstr : "no reply");
}

/* Stop fields for a reply (NULL: none, then @c's error). */
static void add_reply_fields(struct ldprof_span *s, const redisReply *r, const redisContext *c)
{
    static const char *const types[] = {NULL, "string", "array", "integer", "nil", "status",
                                        "error"};

    if (s == NULL)
        return;
    if (__builtin_expect(r == NULL, 0)) {
        add_no_reply(s, c);
        return;
    }
    if (r->type >= 1 && r->type <= 6)
        ldprof_span_add_str(s, LDPROF_FIELD_STOP, "redis.reply_type", types[r->type], -1);
    if (r->type == REDIS_REPLY_STRING)
        ldprof_span_add_int(s, LDPROF_FIELD_STOP, "redis.reply_len", (int64_t)r->len);
    else if (r->type == REDIS_REPLY_ARRAY)
        ldprof_span_add_int(s, LDPROF_FIELD_STOP, "redis.reply_len", (int64_t)r->elements);
    else if (__builtin_expect(r->type == REDIS_REPLY_ERROR, 0))
        ldprof_span_set_error(s, "RedisError", r->str ? r->str : "");
}

/* ------------------------------------------------------------ spans */

/*
 * span_detached - open a `redis` span as a child of the thread's current
 * span WITHOUT making it current (pipelined and async commands: the thread
 * goes on with other work before the reply).  NULL when not traced.
 */
static struct ldprof_span *span_detached(void)
{
    struct ldprof_span *s = NULL;
    struct ldprof_ctx *c;

    if (ldprof_enter()) {
        c = ldprof_ctx_current();
        if (c != NULL)
            s = ldprof_span_open(LDPROF_KIND_REDIS, c->base_id, c->cur_id, c->key_idx);
    }
    ldprof_leave();
    return s;
}

/* span_detached_end - record a span from span_detached (any thread). */
static void span_detached_end(struct ldprof_span *s)
{
    if (s == NULL)
        return;
    ldprof_enter();
    ldprof_span_close(s, 0);
    ldprof_leave();
}

/* Is a redis span wanted for a call on this thread now?  (trace_redis on
 * and the thread inside a trace.)  Tested before the arguments are looked
 * at, so that an untraced call costs a few loads and branches. */
static int hr_wanted(void)
{
    int r = 0;

    if (!ldprof_cfg.trace_redis)
        return 0;
    if (ldprof_enter())
        r = ldprof_ctx_current() != NULL;
    ldprof_leave();
    return r;
}

/* Begin the span of a command seen through @v (NULL when not traced). */
static struct ldprof_span *span_for(const struct hr_view *v, int detached)
{
    struct ldprof_span *s;
    char name[32] = "";

    s = detached ? span_detached() : ldprof_span_begin(LDPROF_KIND_REDIS);
    if (s == NULL)
        return NULL;
    view_name(v, name);
    add_start_fields(s, v, name);
    return s;
}

/* ------------------------------------------------------------ pipelines */

/*
 * Pending pipelined spans, per redisContext: a fixed table of PIPE_CTXS
 * entries, each a FIFO of PIPE_DEPTH spans, claimed with a CAS on `ctx`
 * and given back when empty.  No malloc, no lock: a redisContext is used
 * by one thread at a time (hiredis's rule), so an entry's FIFO is too; the
 * hand-over between threads is ordered by the program's own locking.
 *
 * Limits (documented in docs/formats.md):
 *   - more than PIPE_DEPTH commands pending on one context: the extra ones
 *     are untraced (counted in `skip`, so later replies still match their
 *     spans: nothing is queued again until the skipped replies were read);
 *   - more than PIPE_CTXS contexts with pending commands at once: appends on
 *     further contexts are untraced.  If such a context later gets an
 *     entry while an untraced reply is still pending, its next span ends at
 *     the earlier reply (timing off by one reply; never a crash).
 *   - a redisCommand issued while appended replies are pending (hiredis
 *     returns the first pending reply to it) is not matched.
 */
#define PIPE_CTXS 128
#define PIPE_DEPTH 32

struct hr_pipe {
    redisContext *ctx; /* owner, NULL = free (atomic) */
    uint32_t head;     /* index of the oldest span */
    uint32_t count;    /* spans queued */
    uint32_t skip;     /* untraced commands pending after the queued ones */
    struct ldprof_span *q[PIPE_DEPTH];
};

static struct hr_pipe hr_pipes[PIPE_CTXS];
/* hr_pipes_used (above hr_idle): entries claimed (atomic), 0 = nothing to look up */

static struct hr_pipe *pipe_find(const redisContext *c)
{
    if (__atomic_load_n(&hr_pipes_used, __ATOMIC_ACQUIRE) == 0)
        return NULL;
    for (int i = 0; i < PIPE_CTXS; i++)
        if (__atomic_load_n(&hr_pipes[i].ctx, __ATOMIC_ACQUIRE) == c)
            return &hr_pipes[i];
    return NULL;
}

static struct hr_pipe *pipe_claim(redisContext *c)
{
    for (int i = 0; i < PIPE_CTXS; i++) {
        redisContext *expect = NULL;
        if (__atomic_load_n(&hr_pipes[i].ctx, __ATOMIC_RELAXED) != NULL)
            continue;
        if (__atomic_compare_exchange_n(&hr_pipes[i].ctx, &expect, c, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            hr_pipes[i].head = hr_pipes[i].count = hr_pipes[i].skip = 0;
            __atomic_add_fetch(&hr_pipes_used, 1, __ATOMIC_RELEASE);
            return &hr_pipes[i];
        }
    }
    return NULL;
}

static void pipe_release_if_empty(struct hr_pipe *p)
{
    if (p->count == 0 && p->skip == 0) {
        __atomic_store_n(&p->ctx, NULL, __ATOMIC_RELEASE);
        __atomic_sub_fetch(&hr_pipes_used, 1, __ATOMIC_RELEASE);
    }
}

/* After a successful append on @c: queue @s (may be NULL = an untraced
 * command, which must still be counted if the context has an entry). */
static void pipe_push(redisContext *c, struct ldprof_span *s)
{
    struct hr_pipe *p = pipe_find(c);

    if (s == NULL) {
        if (p != NULL)
            p->skip++;
        return;
    }
    if (p == NULL)
        p = pipe_claim(c);
    if (p == NULL) {
        ldprof_span_discard(s);
        ldprof_buf_count_drop(1);
        return;
    }
    if (p->skip > 0 || p->count == PIPE_DEPTH) {
        p->skip++;
        ldprof_span_discard(s);
        ldprof_buf_count_drop(1);
        return;
    }
    p->q[(p->head + p->count) % PIPE_DEPTH] = s;
    p->count++;
}

/* The next reply of @c arrived (@r; NULL when the reply pointer was not
 * asked for).  Ends the oldest pending span. */
static void pipe_pop(redisContext *c, const redisReply *r, int have_reply)
{
    struct hr_pipe *p = pipe_find(c);
    struct ldprof_span *s;

    if (p == NULL)
        return;
    if (p->count > 0) {
        s = p->q[p->head];
        p->head = (p->head + 1) % PIPE_DEPTH;
        p->count--;
        if (have_reply)
            add_reply_fields(s, r, c);
        span_detached_end(s);
    } else if (p->skip > 0) {
        p->skip--;
    }
    pipe_release_if_empty(p);
}

/* @c failed (redisGetReply error) or is being freed: end every pending span
 * with @c's error (or @why) and give the entry back. */
static void pipe_fail_all(redisContext *c, const char *why)
{
    struct hr_pipe *p = pipe_find(c);

    if (p == NULL)
        return;
    while (p->count > 0) {
        struct ldprof_span *s = p->q[p->head];
        p->head = (p->head + 1) % PIPE_DEPTH;
        p->count--;
        if (why != NULL)
            ldprof_span_set_error(s, "RedisError", why);
        else
            add_reply_fields(s, NULL, c);
        span_detached_end(s);
    }
    p->skip = 0;
    pipe_release_if_empty(p);
}

/* ------------------------------------------------------------ blocking */

static __attribute__((noinline)) void *ldprof_redisvCommand(redisContext *c, const char *fmt, va_list ap)
{
    struct ldprof_span *s = NULL;
    struct hr_view v;
    void *r;
    int saved;

    if (hr_wanted()) {
        view_fmt(&v, fmt, ap);
        s = span_for(&v, 0);
    }
    ldprof_tls.depth++;
    r = real_redisvCommand(c, fmt, ap);
    saved = errno;
    ldprof_tls.depth--;
    if (s != NULL) {
        add_reply_fields(s, r, c);
        ldprof_span_end(s);
    }
    errno = saved;
    return r;
}

static __attribute__((noinline)) void *redisvCommand_full(redisContext *c, const char *format, va_list ap)
{
    if (!HR_NEED(redisvCommand))
        return NULL;
    if (hr_idle() || !hr_active())
        return real_redisvCommand(c, format, ap);
    if (hr_quiet())
        return HR_HELD(real_redisvCommand(c, format, ap));
    return ldprof_redisvCommand(c, format, ap);
}

LDPROF_EXPORT void *redisvCommand(redisContext *c, const char *format, va_list ap)
{
    if (HR_PASS(redisvCommand))
        return real_redisvCommand(c, format, ap);
    return redisvCommand_full(c, format, ap);
}

LDPROF_EXPORT void *redisCommand(redisContext *c, const char *format, ...)
{
    va_list ap;
    void *r;

    va_start(ap, format);
    if (HR_PASS(redisvCommand))
        r = real_redisvCommand(c, format, ap);
    else
        r = redisvCommand_full(c, format, ap);
    va_end(ap);
    return r;
}

static __attribute__((noinline)) void *ldprof_redisCommandArgv(redisContext *c, int argc, const char **argv,
                                     const size_t *argvlen)
{
    struct ldprof_span *s = NULL;
    struct hr_view v;
    void *r;
    int saved;

    if (hr_wanted()) {
        view_argv(&v, argc, argv, argvlen);
        s = span_for(&v, 0);
    }
    ldprof_tls.depth++;
    r = real_redisCommandArgv(c, argc, argv, argvlen);
    saved = errno;
    ldprof_tls.depth--;
    if (s != NULL) {
        add_reply_fields(s, r, c);
        ldprof_span_end(s);
    }
    errno = saved;
    return r;
}

static __attribute__((noinline)) void *redisCommandArgv_full(redisContext *c, int argc, const char **argv,
                                     const size_t *argvlen)
{
    if (!HR_NEED(redisCommandArgv))
        return NULL;
    if (hr_idle() || !hr_active())
        return real_redisCommandArgv(c, argc, argv, argvlen);
    if (hr_quiet())
        return HR_HELD(real_redisCommandArgv(c, argc, argv, argvlen));
    return ldprof_redisCommandArgv(c, argc, argv, argvlen);
}

LDPROF_EXPORT void *redisCommandArgv(redisContext *c, int argc, const char **argv,
                                     const size_t *argvlen)
{
    if (HR_PASS(redisCommandArgv))
        return real_redisCommandArgv(c, argc, argv, argvlen);
    return redisCommandArgv_full(c, argc, argv, argvlen);
}

/* ------------------------------------------------------------ pipelined */

/* Common tail of the appends: the real call's result @rc decides. */
static int after_append(redisContext *c, struct ldprof_span *s, int rc)
{
    int saved = errno;

    if (rc == REDIS_OK) {
        pipe_push(c, s);
    } else if (s != NULL) {
        add_reply_fields(s, NULL, c);
        span_detached_end(s);
    }
    errno = saved;
    return rc;
}

static __attribute__((noinline)) int ldprof_redisvAppendCommand(redisContext *c, const char *fmt, va_list ap)
{
    struct ldprof_span *s = NULL;
    struct hr_view v;
    int rc;

    if (hr_wanted()) {
        view_fmt(&v, fmt, ap);
        s = span_for(&v, 1);
        ldprof_span_add_int(s, LDPROF_FIELD_START, "redis.pipelined", 1);
    }
    ldprof_tls.depth++;
    rc = real_redisvAppendCommand(c, fmt, ap);
    ldprof_tls.depth--;
    return after_append(c, s, rc);
}

static __attribute__((noinline)) int redisvAppendCommand_full(redisContext *c, const char *format, va_list ap)
{
    if (!HR_NEED(redisvAppendCommand))
        return REDIS_ERR;
    if (hr_idle() || !hr_active())
        return real_redisvAppendCommand(c, format, ap);
    if (hr_quiet() && __atomic_load_n(&hr_pipes_used, __ATOMIC_RELAXED) == 0)
        return HR_HELD(real_redisvAppendCommand(c, format, ap));
    return ldprof_redisvAppendCommand(c, format, ap);
}

LDPROF_EXPORT int redisvAppendCommand(redisContext *c, const char *format, va_list ap)
{
    if (HR_PASS(redisvAppendCommand))
        return real_redisvAppendCommand(c, format, ap);
    return redisvAppendCommand_full(c, format, ap);
}

LDPROF_EXPORT int redisAppendCommand(redisContext *c, const char *format, ...)
{
    va_list ap;
    int r;

    va_start(ap, format);
    if (HR_PASS(redisvAppendCommand))
        r = real_redisvAppendCommand(c, format, ap);
    else
        r = redisvAppendCommand_full(c, format, ap);
    va_end(ap);
    return r;
}

static __attribute__((noinline)) int ldprof_redisAppendCommandArgv(redisContext *c, int argc, const char **argv,
                                         const size_t *argvlen)
{
    struct ldprof_span *s = NULL;
    struct hr_view v;
    int rc;

    if (hr_wanted()) {
        view_argv(&v, argc, argv, argvlen);
        s = span_for(&v, 1);
        ldprof_span_add_int(s, LDPROF_FIELD_START, "redis.pipelined", 1);
    }
    ldprof_tls.depth++;
    rc = real_redisAppendCommandArgv(c, argc, argv, argvlen);
    ldprof_tls.depth--;
    return after_append(c, s, rc);
}

static __attribute__((noinline)) int redisAppendCommandArgv_full(redisContext *c, int argc, const char **argv,
                                         const size_t *argvlen)
{
    if (!HR_NEED(redisAppendCommandArgv))
        return REDIS_ERR;
    if (hr_idle() || !hr_active())
        return real_redisAppendCommandArgv(c, argc, argv, argvlen);
    if (hr_quiet() && __atomic_load_n(&hr_pipes_used, __ATOMIC_RELAXED) == 0)
        return HR_HELD(real_redisAppendCommandArgv(c, argc, argv, argvlen));
    return ldprof_redisAppendCommandArgv(c, argc, argv, argvlen);
}

LDPROF_EXPORT int redisAppendCommandArgv(redisContext *c, int argc, const char **argv,
                                         const size_t *argvlen)
{
    if (HR_PASS(redisAppendCommandArgv))
        return real_redisAppendCommandArgv(c, argc, argv, argvlen);
    return redisAppendCommandArgv_full(c, argc, argv, argvlen);
}

static __attribute__((noinline)) int ldprof_redisGetReply(redisContext *c, void **reply)
{
    int rc, saved;

    ldprof_tls.depth++;
    rc = real_redisGetReply(c, reply);
    saved = errno;
    ldprof_tls.depth--;
    if (rc == REDIS_OK) {
        /* No reply yet (nonblocking context): nothing arrived. */
        if (reply == NULL || *reply != NULL)
            pipe_pop(c, reply ? (const redisReply *)*reply : NULL, reply != NULL);
    } else {
        pipe_fail_all(c, NULL);
    }
    errno = saved;
    return rc;
}

/* Untraced replies cost one extra load: the FIFO is only looked up while
 * some context has pending pipelined spans (hr_pipes_used > 0).  The reply
 * of an untraced append (a thread without a trace) on a context that has
 * an entry pops its `skip` count, so later replies still match. */
static __attribute__((noinline)) int redisGetReply_full(redisContext *c, void **reply)
{
    if (!HR_NEED(redisGetReply))
        return REDIS_ERR;
    if (!hr_active() || __atomic_load_n(&hr_pipes_used, __ATOMIC_RELAXED) == 0)
        return real_redisGetReply(c, reply);
    return ldprof_redisGetReply(c, reply);
}

LDPROF_EXPORT int redisGetReply(redisContext *c, void **reply)
{
    if (__builtin_expect((uintptr_t)__atomic_load_n((void **)&real_redisGetReply, __ATOMIC_ACQUIRE) >
                             (uintptr_t)LDPROF_SYM_MISSING &&
                         (__atomic_load_n(&hr_pipes_used, __ATOMIC_RELAXED) == 0 || !hr_active()),
                     1))
        return real_redisGetReply(c, reply);
    return redisGetReply_full(c, reply);
}

/* redisFree: pending pipelined spans of @c end (their replies will never
 * be read) and the entry is given back before the address can be reused.
 * Done at any depth (redisAsyncFree calls redisFree from inside hiredis). */
static __attribute__((noinline)) void redisFree_full(redisContext *c)
{
    if (!HR_NEED(redisFree))
        return;
    if (c != NULL && ldprof_recording() &&
        __atomic_load_n(&hr_pipes_used, __ATOMIC_RELAXED) != 0) {
        int saved = errno;
        pipe_fail_all(c, "context freed before the reply was read");
        errno = saved;
    }
    real_redisFree(c);
}

LDPROF_EXPORT void redisFree(redisContext *c)
{
    if (__builtin_expect((uintptr_t)__atomic_load_n((void **)&real_redisFree, __ATOMIC_ACQUIRE) >
                             (uintptr_t)LDPROF_SYM_MISSING &&
                         __atomic_load_n(&hr_pipes_used, __ATOMIC_RELAXED) == 0,
                     1)) {
        real_redisFree(c);
        return;
    }
    redisFree_full(c);
}

/* ------------------------------------------------------------ async */

/*
 * Trampoline slots: one per traced async command in flight.  A slot is
 * claimed with a CAS on `busy` (scan from a rotating hint), filled, and
 * handed to hiredis as the privdata of hr_async_cb; the callback reads it,
 * frees it, ends the span and calls the program's callback.  Exhausted:
 * the command passes through untraced, counted as a dropped span.
 */
#define ASYNC_SLOTS 1024

struct hr_async {
    uint32_t busy; /* atomic */
    redisCallbackFn *fn;
    void *privdata;
    struct ldprof_span *s;
};

static struct hr_async hr_async_pool[ASYNC_SLOTS];
static uint32_t hr_async_hint; /* atomic */

static struct hr_async *async_claim(void)
{
    uint32_t start = __atomic_fetch_add(&hr_async_hint, 1, __ATOMIC_RELAXED);

    for (uint32_t k = 0; k < ASYNC_SLOTS; k++) {
        struct hr_async *a = &hr_async_pool[(start + k) % ASYNC_SLOTS];
        uint32_t expect = 0;
        if (__atomic_load_n(&a->busy, __ATOMIC_RELAXED) != 0)
            continue;
        if (__atomic_compare_exchange_n(&a->busy, &expect, 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            return a;
    }
    return NULL;
}

static void async_free(struct hr_async *a)
{
    __atomic_store_n(&a->busy, 0, __ATOMIC_RELEASE);
}

/* The callback hiredis calls (reply NULL: the context is going away). */
static void hr_async_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct hr_async *a = priv;
    redisCallbackFn *fn = a->fn;
    void *privdata = a->privdata;
    struct ldprof_span *s = a->s;
    int saved = errno;

    async_free(a);
    if (reply == NULL && ac != NULL && ac->c.err == 0)
        ldprof_span_set_error(s, "RedisError", "no reply: context disconnected or freed");
    else
        add_reply_fields(s, reply, ac != NULL ? &ac->c : NULL);
    span_detached_end(s);
    errno = saved;
    if (fn != NULL)
        fn(ac, reply, privdata);
}

/* Begin an async command's span and its slot; NULL = pass through. */
static struct hr_async *async_begin(redisAsyncContext *ac, const struct hr_view *v,
                                    redisCallbackFn *fn, void *privdata)
{
    char name[32] = "";
    struct ldprof_span *s;
    struct hr_async *a;

    if (ac == NULL || (ac->c.flags & (REDIS_SUBSCRIBED | REDIS_MONITORING)))
        return NULL;
    if (view_name(v, name) == 0 || name_is(name, hr_async_multi, &hr_first_async_multi))
        return NULL;
    s = span_detached();
    if (s == NULL)
        return NULL;
    a = async_claim();
    if (a == NULL) {
        ldprof_span_discard(s);
        ldprof_buf_count_drop(1);
        return NULL;
    }
    add_start_fields(s, v, name);
    ldprof_span_add_int(s, LDPROF_FIELD_START, "redis.async", 1);
    a->fn = fn;
    a->privdata = privdata;
    a->s = s;
    return a;
}

/* After the real async call (@rc): on failure the callback will never run. */
static int async_after(redisAsyncContext *ac, struct hr_async *a, int rc)
{
    int saved = errno;

    if (rc != REDIS_OK) {
        struct ldprof_span *s = a->s;
        async_free(a);
        ldprof_span_set_error(s, "RedisError",
                              ac->errstr && ac->errstr[0] ? ac->errstr : "command not queued");
        span_detached_end(s);
    }
    errno = saved;
    return rc;
}

static __attribute__((noinline)) int ldprof_redisvAsyncCommand(redisAsyncContext *ac, redisCallbackFn *fn, void *privdata,
                                     const char *fmt, va_list ap)
{
    struct hr_async *a = NULL;
    struct hr_view v;
    int rc;

    if (hr_wanted()) {
        view_fmt(&v, fmt, ap);
        a = async_begin(ac, &v, fn, privdata);
    }
    ldprof_tls.depth++;
    rc = a ? real_redisvAsyncCommand(ac, hr_async_cb, a, fmt, ap)
           : real_redisvAsyncCommand(ac, fn, privdata, fmt, ap);
    ldprof_tls.depth--;
    return a ? async_after(ac, a, rc) : rc;
}

static __attribute__((noinline)) int redisvAsyncCommand_full(redisAsyncContext *ac, redisCallbackFn *fn, void *privdata,
                                     const char *format, va_list ap)
{
    if (!HR_NEED(redisvAsyncCommand))
        return REDIS_ERR;
    if (hr_idle() || !hr_active())
        return real_redisvAsyncCommand(ac, fn, privdata, format, ap);
    if (hr_quiet())
        return HR_HELD(real_redisvAsyncCommand(ac, fn, privdata, format, ap));
    return ldprof_redisvAsyncCommand(ac, fn, privdata, format, ap);
}

LDPROF_EXPORT int redisvAsyncCommand(redisAsyncContext *ac, redisCallbackFn *fn, void *privdata,
                                     const char *format, va_list ap)
{
    if (HR_PASS(redisvAsyncCommand))
        return real_redisvAsyncCommand(ac, fn, privdata, format, ap);
    return redisvAsyncCommand_full(ac, fn, privdata, format, ap);
}

LDPROF_EXPORT int redisAsyncCommand(redisAsyncContext *ac, redisCallbackFn *fn, void *privdata,
                                    const char *format, ...)
{
    va_list ap;
    int r;

    va_start(ap, format);
    if (HR_PASS(redisvAsyncCommand))
        r = real_redisvAsyncCommand(ac, fn, privdata, format, ap);
    else
        r = redisvAsyncCommand_full(ac, fn, privdata, format, ap);
    va_end(ap);
    return r;
}

static __attribute__((noinline)) int ldprof_redisAsyncCommandArgv(redisAsyncContext *ac, redisCallbackFn *fn,
                                        void *privdata, int argc, const char **argv,
                                        const size_t *argvlen)
{
    struct hr_async *a = NULL;
    struct hr_view v;
    int rc;

    if (hr_wanted()) {
        view_argv(&v, argc, argv, argvlen);
        a = async_begin(ac, &v, fn, privdata);
    }
    ldprof_tls.depth++;
    rc = a ? real_redisAsyncCommandArgv(ac, hr_async_cb, a, argc, argv, argvlen)
           : real_redisAsyncCommandArgv(ac, fn, privdata, argc, argv, argvlen);
    ldprof_tls.depth--;
    return a ? async_after(ac, a, rc) : rc;
}

static __attribute__((noinline)) int redisAsyncCommandArgv_full(redisAsyncContext *ac, redisCallbackFn *fn,
                                        void *privdata, int argc, const char **argv,
                                        const size_t *argvlen)
{
    if (!HR_NEED(redisAsyncCommandArgv))
        return REDIS_ERR;
    if (hr_idle() || !hr_active())
        return real_redisAsyncCommandArgv(ac, fn, privdata, argc, argv, argvlen);
    if (hr_quiet())
        return HR_HELD(real_redisAsyncCommandArgv(ac, fn, privdata, argc, argv, argvlen));
    return ldprof_redisAsyncCommandArgv(ac, fn, privdata, argc, argv, argvlen);
}

LDPROF_EXPORT int redisAsyncCommandArgv(redisAsyncContext *ac, redisCallbackFn *fn,
                                        void *privdata, int argc, const char **argv,
                                        const size_t *argvlen)
{
    if (HR_PASS(redisAsyncCommandArgv))
        return real_redisAsyncCommandArgv(ac, fn, privdata, argc, argv, argvlen);
    return redisAsyncCommandArgv_full(ac, fn, privdata, argc, argv, argvlen);
}
