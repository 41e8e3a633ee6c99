/*
 * preload/real.c - resolve the real libc functions (see real.h).
 */
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "real.h"

#define PR_FMT "real"

#define LDPROF_REAL_DEF(sym) __typeof__(sym) *real_##sym;
LDPROF_LIBC_SYMBOLS(LDPROF_REAL_DEF)
#undef LDPROF_REAL_DEF

#define LDPROF_REAL_ENTRY(sym) {(void **)&real_##sym, #sym},
static const struct ldprof_sym libc_table[] = {LDPROF_LIBC_SYMBOLS(LDPROF_REAL_ENTRY)};
#undef LDPROF_REAL_ENTRY

int ldprof_sym_resolve(const struct ldprof_sym *tab, int n)
{
    int missing = 0;
    int saved = errno;

    for (int i = 0; i < n; i++) {
        if (__atomic_load_n(tab[i].ptr, __ATOMIC_ACQUIRE) != NULL)
            continue;
        void *p = dlsym(RTLD_NEXT, tab[i].name);
        if (p == NULL) {
            p = LDPROF_SYM_MISSING;
            missing++;
        }
        __atomic_store_n(tab[i].ptr, p, __ATOMIC_RELEASE);
    }
    errno = saved;
    return missing;
}

void ldprof_real_init(void)
{
    static int done;

    if (__atomic_load_n(&done, __ATOMIC_ACQUIRE))
        return;
    ldprof_sym_resolve(libc_table, (int)(sizeof(libc_table) / sizeof(libc_table[0])));
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
}

struct ldprof_pass ldprof_pass;

void ldprof_pass_setup(int enabled, int trace_socket, unsigned nfds, const uint8_t *kinds)
{
    /* The read/write family: the wrappers that test the gate. */
    void *hot[] = {(void *)real_read,       (void *)real_readv,     (void *)real_recv,
                   (void *)real_recvfrom,   (void *)real_recvmsg,   (void *)real___read_chk,
                   (void *)real___recv_chk, (void *)real___recvfrom_chk, (void *)real_write,
                   (void *)real_writev,     (void *)real_send,      (void *)real_sendto,
                   (void *)real_sendmsg};

    for (size_t i = 0; i < sizeof(hot) / sizeof(hot[0]); i++)
        if (hot[i] == NULL || hot[i] == LDPROF_SYM_MISSING)
            return; /* the full path reports ENOSYS */
    if (enabled && (trace_socket || kinds == NULL))
        return;
    static const uint8_t none[1];

    ldprof_pass.nfds = enabled ? nfds : 0;
    __atomic_store_n(&ldprof_pass.kinds, enabled ? kinds : none, __ATOMIC_RELEASE);
}

void ldprof_sym_missing_log(const char *name)
{
    /* Log each missing name once; a handful of slots is plenty (a libc
     * without, say, closefrom is the only realistic case). */
    static const char *logged[16];

    for (int i = 0; i < 16; i++) {
        const char *cur = __atomic_load_n(&logged[i], __ATOMIC_ACQUIRE);
        if (cur == name)
            return;
        if (cur == NULL) {
            const char *expected = NULL;
            if (__atomic_compare_exchange_n(&logged[i], &expected, name, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE)) {
                pr_warn("%s() not found in libc: the call fails with ENOSYS", name);
                return;
            }
            if (expected == name)
                return;
        }
    }
}

ssize_t ldprof_raw_write(int fd, const void *buf, size_t n)
{
    __typeof__(write) *w = __atomic_load_n(&real_write, __ATOMIC_ACQUIRE);
    if (w != NULL && (void *)w != LDPROF_SYM_MISSING)
        return w(fd, buf, n);
    return syscall(SYS_write, fd, buf, n);
}

ssize_t ldprof_raw_read(int fd, void *buf, size_t n)
{
    __typeof__(read) *r = __atomic_load_n(&real_read, __ATOMIC_ACQUIRE);
    if (r != NULL && (void *)r != LDPROF_SYM_MISSING)
        return r(fd, buf, n);
    return syscall(SYS_read, fd, buf, n);
}

int ldprof_raw_close(int fd)
{
    __typeof__(close) *c = __atomic_load_n(&real_close, __ATOMIC_ACQUIRE);
    if (c != NULL && (void *)c != LDPROF_SYM_MISSING)
        return c(fd);
    return (int)syscall(SYS_close, fd);
}
