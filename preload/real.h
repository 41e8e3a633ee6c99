/*
 * preload/real.h - the real libc functions behind ldprof's wrappers.
 *
 * Why the libc table lives in preload/ and not in hooks/libc_socket.c: the
 * preload core itself needs a few of the same functions unwrapped (the
 * flusher's connect/sendmsg/close, the config reader's read, the logger's
 * write), and the dependency rule is hooks/ -> preload/, never the other way.
 * Driver hooks (hiredis, libpq, mongoc) keep their own tables in their hook
 * file and resolve them lazily with ldprof_sym_resolve().
 *
 * Every pointer is resolved with dlsym(RTLD_NEXT, name) - never
 * dlopen("libc.so.6") - so ldprof stacks with ASan and other preloads.  The
 * constructor resolves the whole table (before the process becomes
 * multithreaded); every wrapper keeps a lazy fallback (LDPROF_REAL_NEED)
 * because another library's constructor may call us before ours has run.
 * The fallback needs no lock: resolving is idempotent and every store is an
 * atomic store of the same value.
 *
 * A symbol dlsym cannot find gets LDPROF_SYM_MISSING: its wrapper then fails
 * with ENOSYS (and logs once) instead of killing the host.
 */
#ifndef LDPROF_REAL_H
#define LDPROF_REAL_H

#include <dirent.h>
#include <errno.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tls.h"

/* glibc's fortified entry points (what read()/recv() become with
 * -D_FORTIFY_SOURCE when the buffer size is known, as in every Debian
 * package).  They call libc's internal __read/__recv, so without our own
 * wrappers a fortified server's reads would be invisible. */
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                       struct sockaddr *addr, socklen_t *alen);

/* X(name): every libc function ldprof calls unwrapped or wraps. */
#define LDPROF_LIBC_SYMBOLS(X)                                                           \
    X(accept) X(accept4) X(connect) X(shutdown)                                          \
    X(read) X(readv) X(recv) X(recvfrom) X(recvmsg)                                      \
    X(__read_chk) X(__recv_chk) X(__recvfrom_chk)                                        \
    X(write) X(writev) X(send) X(sendto) X(sendmsg) X(sendfile)                          \
    X(close) X(close_range) X(closefrom) X(dup) X(dup2) X(dup3)                          \
    X(execve) X(execvpe) X(posix_spawn) X(posix_spawnp)

#define LDPROF_REAL_DECL(sym) extern __typeof__(sym) *real_##sym __attribute__((visibility("hidden")));
LDPROF_LIBC_SYMBOLS(LDPROF_REAL_DECL)
#undef LDPROF_REAL_DECL

/* What a pointer holds when dlsym found nothing. */
#define LDPROF_SYM_MISSING ((void *)1)

/* One entry of a {pointer, "name"} table. */
struct ldprof_sym {
    void **ptr;
    const char *name;
};

/*
 * ldprof_sym_resolve - resolve a table with dlsym(RTLD_NEXT, name).
 * Entries already resolved are left alone; missing ones get
 * LDPROF_SYM_MISSING and are logged once each.  Returns the number missing.
 * Thread-safe without a lock (idempotent atomic stores).  Not signal-safe
 * (dlsym).
 */
int ldprof_sym_resolve(const struct ldprof_sym *tab, int n);

/* ldprof_real_init - resolve the libc table (constructor and lazy path). */
void ldprof_real_init(void);

/* ldprof_sym_missing_log - log once that `name` is missing (ENOSYS path). */
void ldprof_sym_missing_log(const char *name);

/*
 * ldprof_sym_ready - is the real pointer at @pp usable?  Runs @resolve once
 * when the pointer is still unresolved (NULL): the lazy path the hook files
 * share (libc: ldprof_real_init; a driver: its own table's resolver).
 */
static inline int ldprof_sym_ready(void **pp, void (*resolve)(void))
{
    void *p = __atomic_load_n(pp, __ATOMIC_ACQUIRE);

    if (__builtin_expect(p == NULL, 0)) {
        resolve();
        p = __atomic_load_n(pp, __ATOMIC_ACQUIRE);
    }
    return p != NULL && p != LDPROF_SYM_MISSING;
}

/*
 * LDPROF_SYM_NEED(sym, resolve, failret) - at the top of a wrapper: make
 * sure real_<sym> is usable (resolving with @resolve); if it cannot be
 * resolved, log once, set errno = ENOSYS and return failret from the
 * wrapper.  LDPROF_SYM_NEED_VOID(sym, resolve): the same for void wrappers
 * (errno untouched).
 */
#define LDPROF_SYM_NEED(sym, resolve, failret)                                           \
    do {                                                                                 \
        if (__builtin_expect(!ldprof_sym_ready((void **)&real_##sym, resolve), 0)) {     \
            ldprof_sym_missing_log(#sym);                                                \
            errno = ENOSYS;                                                              \
            return failret;                                                              \
        }                                                                                \
    } while (0)

#define LDPROF_SYM_NEED_VOID(sym, resolve)                                               \
    do {                                                                                 \
        if (__builtin_expect(!ldprof_sym_ready((void **)&real_##sym, resolve), 0)) {     \
            ldprof_sym_missing_log(#sym);                                                \
            return;                                                                      \
        }                                                                                \
    } while (0)

/* The libc wrappers' gates (closefrom is the void one). */
#define LDPROF_REAL_NEED(sym, failret) LDPROF_SYM_NEED(sym, ldprof_real_init, failret)
#define LDPROF_REAL_NEED_VOID(sym) LDPROF_SYM_NEED_VOID(sym, ldprof_real_init)

/*
 * The pass-through gate of the read/write wrappers (hooks/libc_socket.c):
 * their first test, a few loads and branches before anything else.
 *
 *   kinds  NULL: the gate is closed (every call takes the full path, as
 *          before the constructor).  Set by the constructor once every
 *          read/write symbol is resolved (none missing) and, when ldprof
 *          is enabled, trace_socket is off: preload/http.c's per-fd table
 *          (0 = LDPROF_FD_NONE, not followed), or a dummy when disabled.
 *   nfds   fd numbers below it are looked up in @kinds (an fd that is not
 *          followed passes); 0 when ldprof is disabled: every fd passes.
 *
 * A followed fd also passes at reentrancy depth > 0 (inside ldprof or a
 * driver call, where the full path records nothing either).
 *
 * ldprof_pass_fd(fd) true means: the wrapper's full path would call the
 * real function and do nothing else, so it may call real_* directly.  Set
 * once by the constructor (before ldprof_on), read-only afterwards.
 */
struct ldprof_pass {
    const uint8_t *kinds;
    unsigned nfds;
};
extern struct ldprof_pass ldprof_pass __attribute__((visibility("hidden")));

static inline int ldprof_pass_fd(int fd)
{
    const uint8_t *k = ldprof_pass.kinds;

    return __builtin_expect(k != NULL, 1) &&
           ((unsigned)fd >= ldprof_pass.nfds || k[(unsigned)fd] == 0 || ldprof_tls.depth != 0);
}

/* ldprof_pass_setup - open the gate (constructor, after ldprof_real_init
 * and, when @enabled, after the fd table exists). */
void ldprof_pass_setup(int enabled, int trace_socket, unsigned nfds, const uint8_t *kinds);

/*
 * Internal unwrapped I/O for the preload core.  They go to real_* when it
 * is resolved and to the raw system call otherwise (the logger may run
 * before the table is resolved).  errno is set as by the libc call.
 */
ssize_t ldprof_raw_write(int fd, const void *buf, size_t n);
ssize_t ldprof_raw_read(int fd, void *buf, size_t n);
int ldprof_raw_close(int fd);

#endif
