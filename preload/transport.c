/*
 * preload/transport.c - flusher thread and collector socket (see transport.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "real.h"
#include "tls.h"
#include "transport.h"

#define PR_FMT "transport"

/*
 * xport_lock guards sock_fd (its value and every use of it: connect, send,
 * evacuation) and last_try_ns.  Lock order: after buffer.c's list_lock, never
 * together with a buffer lock.  Held only around non-blocking calls.
 */
static pthread_mutex_t xport_lock = PTHREAD_MUTEX_INITIALIZER;
static int sock_fd = -1;     /* collector socket; read without the lock by owns_fd() */
static uint64_t last_try_ns; /* last connection attempt (monotonic) */
static int connected_once;

enum { FLUSHER_NONE = 0, FLUSHER_RUNNING, FLUSHER_STOPPING, FLUSHER_FAILED };
static int flusher_state; /* atomic */
static uint32_t wake_word; /* futex word, bumped by kicks */
static pthread_t flusher_th; /* valid once flusher_joinable is set */
static int flusher_joinable; /* atomic */

static uint8_t proc_block[LDPROF_PROC_MAX];
static size_t proc_len;
static uint32_t my_pid;
static uint64_t dropped_reported; /* last dropped count a datagram carried */
static uint64_t close_attempts;   /* host close() calls on our fd */
static int fd_base = 3;           /* lowest number we move our socket to */
static uint64_t final_deadline_ns; /* destructor: no waiting past this */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void ldprof_xport_init(void)
{
    char host[256] = "", exe[1024] = "";
    struct rlimit rl;
    ssize_t n;

    gethostname(host, sizeof(host) - 1);
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    proc_len = ldprof_proc_block(proc_block, sizeof(proc_block), host, ldprof_cfg.service,
                                 ldprof_cfg.project, exe);
    my_pid = (uint32_t)getpid();
    /* Keep our socket away from the low numbers a host expects open() or
     * dup2() to hand out (0-2 after a daemon closed stdio, 3.. for its own
     * files): the middle of the fd limit, at most 512. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t b = rl.rlim_cur / 2;
        fd_base = b > 512 ? 512 : b < 3 ? 3 : (int)b;
    } else {
        fd_base = 512;
    }
}

/* Under xport_lock. */
static void drop_socket(void)
{
    if (sock_fd >= 0) {
        ldprof_raw_close(sock_fd);
        __atomic_store_n(&sock_fd, -1, __ATOMIC_RELEASE);
    }
}

/* Under xport_lock: connect if not connected and the last try is > 1 s old. */
static void try_connect(void)
{
    struct sockaddr_un sa;
    uint64_t now = mono_ns();
    int fd, nfd;

    if (sock_fd >= 0)
        return;
    if (last_try_ns != 0 && now - last_try_ns < LDPROF_RECONNECT_MS * 1000000ull)
        return;
    last_try_ns = now;

    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        pr_warn_once("cannot create the collector socket: %s", strerror(errno));
        return;
    }
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, fd_base);
    if (nfd >= 0) {
        ldprof_raw_close(fd);
        fd = nfd;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", ldprof_cfg.collector);
    if (real_connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (!connected_once)
            pr_info("no collector at %s (%s): spans are dropped until it appears",
                    ldprof_cfg.collector, strerror(errno));
        ldprof_raw_close(fd);
        return;
    }
    if (!connected_once)
        pr_info("connected to the collector at %s", ldprof_cfg.collector);
    connected_once = 1;
    __atomic_store_n(&sock_fd, fd, __ATOMIC_RELEASE);
}

/* Send one datagram; under no lock (takes xport_lock).  0 or -1. */
static int send_dgram(uint16_t type, const uint8_t *recs, size_t len, uint32_t nrec)
{
    struct ldprof_wire_hdr h;
    struct iovec iov[3];
    struct msghdr msg;
    uint64_t dropped = ldprof_buf_dropped();
    ssize_t r;
    int err;

    pthread_mutex_lock(&xport_lock);
    try_connect();
    if (sock_fd < 0) {
        pthread_mutex_unlock(&xport_lock);
        return -1;
    }
    ldprof_hdr_fill(&h, type, my_pid, nrec, proc_len, len, dropped);
    iov[0].iov_base = &h;
    iov[0].iov_len = sizeof(h);
    iov[1].iov_base = proc_block;
    iov[1].iov_len = proc_len;
    iov[2].iov_base = (void *)recs;
    iov[2].iov_len = len;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = len ? 3 : 2;
    for (int tries = 0;; tries++) {
        r = real_sendmsg(sock_fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r >= 0)
            break;
        if (errno == EINTR)
            continue;
        /* The collector's queue is full: this is the flusher (or the
         * destructor), never a host thread, so it may wait a little for
         * room - bounded, LDPROF_SEND_RETRIES x LDPROF_SEND_WAIT_MS. */
        if ((errno == EAGAIN || errno == EWOULDBLOCK) && tries < LDPROF_SEND_RETRIES &&
            (final_deadline_ns == 0 || mono_ns() < final_deadline_ns)) {
            struct pollfd pfd = {sock_fd, POLLOUT, 0};
            poll(&pfd, 1, LDPROF_SEND_WAIT_MS);
            continue;
        }
        break;
    }
    err = errno;
    if (r < 0 && err != EAGAIN && err != EWOULDBLOCK && err != ENOBUFS && err != EMSGSIZE) {
        /* The collector went away (ECONNREFUSED, ENOTCONN...): reconnect
         * later, at most once a second. */
        pr_dbg("send to collector failed: %s", strerror(err));
        drop_socket();
    } else if (r < 0) {
        pr_dbg("collector busy (%s): %u spans dropped", strerror(err), nrec);
    }
    if (r >= 0)
        dropped_reported = dropped;
    pthread_mutex_unlock(&xport_lock);
    return r < 0 ? -1 : 0;
}

static void send_batch(const uint8_t *recs, size_t len, uint32_t nrec, void *arg)
{
    int *sent = arg;

    if (send_dgram(LDPROF_MSG_SPANS, recs, len, nrec) != 0)
        ldprof_buf_count_drop(nrec);
    else
        (*sent)++;
}

/* One pass: drain every buffer; report a changed drop count alone if no
 * span datagram carried it.  Returns the number of records drained. */
static uint32_t flush_once(int timeout_ms)
{
    int sent = 0;
    uint32_t n = ldprof_buf_drain_all(send_batch, &sent, timeout_ms);

    if (n == (uint32_t)-1)
        return 0;
    if (ldprof_buf_dropped() != dropped_reported)
        send_dgram(LDPROF_MSG_STATS, NULL, 0, 0);
    return n;
}

static long futex_wait(uint32_t *addr, uint32_t val, long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    return syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
}

/*
 * Every LDPROF_FLUSH_MS, or when kicked.  After a pass that found nothing,
 * the next pass is made with the nap flag set (ldprof_buf_nap_begin); if it
 * finds nothing either, the flusher sleeps LDPROF_NAP_MS (the span clock's
 * refresh period) instead, until the next record of any thread kicks it.
 * A wake-up costs tens of microseconds of CPU on a VM even with nothing to
 * do: an idle process pays one a second instead of ten, and spans recorded
 * after a quiet period are sent at once instead of within LDPROF_FLUSH_MS.
 * Not while the span clock calibrates (it wants a pair every wake-up).
 */
static void *flusher_main(void *arg)
{
    int idle = 0;

    (void)arg;
    /* Everything this thread does passes through our wrappers untouched. */
    ldprof_tls.depth = 1;
    for (;;) {
        uint32_t seen = __atomic_load_n(&wake_word, __ATOMIC_ACQUIRE), n;
        int nap;

        if (__atomic_load_n(&flusher_state, __ATOMIC_ACQUIRE) != FLUSHER_RUNNING)
            break;
        nap = idle && ldprof_clock_state() != LDPROF_CLOCK_CALIBRATING;
        if (nap)
            ldprof_buf_nap_begin(); /* before the drain: see buffer.h */
        n = flush_once(-1);
        ldprof_clock_refresh(); /* the span clock's anchor (clock.h) */
        if (nap && n == 0) {
            futex_wait(&wake_word, seen, LDPROF_NAP_MS);
            ldprof_buf_nap_end();
            continue;
        }
        if (nap)
            ldprof_buf_nap_end();
        idle = n == 0;
        futex_wait(&wake_word, seen, LDPROF_FLUSH_MS);
    }
    return NULL;
}

void ldprof_xport_ensure_started(void)
{
    int expect = FLUSHER_NONE;
    sigset_t all, old;
    pthread_attr_t attr;
    pthread_t th;
    int rc;

    if (__builtin_expect(__atomic_load_n(&flusher_state, __ATOMIC_ACQUIRE) != FLUSHER_NONE, 1))
        return;
    if (!__atomic_compare_exchange_n(&flusher_state, &expect, FLUSHER_RUNNING, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    /* The flusher must never run the host's signal handlers. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 128 * 1024);
    rc = pthread_create(&th, &attr, flusher_main, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        __atomic_store_n(&flusher_state, FLUSHER_FAILED, __ATOMIC_RELEASE);
        pr_warn("cannot start the flusher thread (%s): spans are sent at exit only", strerror(rc));
        return;
    }
    flusher_th = th;
    __atomic_store_n(&flusher_joinable, 1, __ATOMIC_RELEASE);
    pthread_setname_np(th, "ldprof-flush");
}

void ldprof_xport_kick(void)
{
    __atomic_add_fetch(&wake_word, 1, __ATOMIC_RELEASE);
    if (__atomic_load_n(&flusher_state, __ATOMIC_ACQUIRE) == FLUSHER_RUNNING)
        syscall(SYS_futex, &wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

int ldprof_xport_fd(void)
{
    return __atomic_load_n(&sock_fd, __ATOMIC_ACQUIRE);
}

int ldprof_xport_owns_fd(int fd)
{
    return fd >= 0 && fd == __atomic_load_n(&sock_fd, __ATOMIC_ACQUIRE);
}

int ldprof_xport_evacuate(int fd)
{
    pthread_mutex_lock(&xport_lock);
    if (sock_fd == fd && fd >= 0) {
        int nfd = fcntl(fd, F_DUPFD_CLOEXEC, fd_base > fd ? fd_base : fd + 1);
        if (nfd < 0)
            nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (nfd >= 0) {
            /* The old number is replaced by the host's dup2/dup3 right after:
             * no need (and no right) to close it here. */
            __atomic_store_n(&sock_fd, nfd, __ATOMIC_RELEASE);
            pr_dbg("host takes fd %d: collector socket moved to %d", fd, nfd);
        } else {
            /* Cannot move: give the number up and reconnect later. */
            __atomic_store_n(&sock_fd, -1, __ATOMIC_RELEASE);
            pr_dbg("host takes fd %d: collector socket given up", fd);
        }
    }
    pthread_mutex_unlock(&xport_lock);
    return 0;
}

void ldprof_xport_note_close_attempt(void)
{
    if (__atomic_add_fetch(&close_attempts, 1, __ATOMIC_RELAXED) == 1)
        pr_info("the program closed the collector socket: close() reported success, socket "
                "kept (logged once)");
}

void ldprof_xport_fini(void)
{
    int state = __atomic_exchange_n(&flusher_state, FLUSHER_STOPPING, __ATOMIC_ACQ_REL);

    struct timespec ts;
    uint64_t left;

    final_deadline_ns = mono_ns() + LDPROF_FINAL_FLUSH_MS * 1000000ull;
    __atomic_add_fetch(&wake_word, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    if (state == FLUSHER_RUNNING && __atomic_load_n(&flusher_joinable, __ATOMIC_ACQUIRE)) {
        /* Let the flusher finish its pass and exit (half the budget at
         * most), so that the final flush below is the only one. */
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += LDPROF_FINAL_FLUSH_MS / 2 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(flusher_th, NULL, &ts) != 0)
            pr_dbg("flusher did not stop in time");
    }
    left = final_deadline_ns > mono_ns() ? (final_deadline_ns - mono_ns()) / 1000000ull : 0;
    flush_once((int)left);
}

void ldprof_xport_flush_before_exec(void)
{
    /* In a vfork child (no fork handlers ran, so the pid differs) the
     * parent's threads share our memory and may hold our locks: skip. */
    if (flusher_state == FLUSHER_NONE || (uint32_t)getpid() != my_pid)
        return;
    final_deadline_ns = mono_ns() + LDPROF_EXEC_FLUSH_MS * 1000000ull;
    flush_once(LDPROF_EXEC_FLUSH_MS);
    final_deadline_ns = 0;
}

void ldprof_xport_fork_prepare(void)
{
    pthread_mutex_lock(&xport_lock);
}

void ldprof_xport_fork_parent(void)
{
    pthread_mutex_unlock(&xport_lock);
}

void ldprof_xport_fork_child(void)
{
    pthread_mutex_init(&xport_lock, NULL);
    /* The child gets a socket of its own (and a flusher, on its first span). */
    if (sock_fd >= 0) {
        ldprof_raw_close(sock_fd);
        sock_fd = -1;
    }
    last_try_ns = 0;
    dropped_reported = 0;
    wake_word = 0;
    /* No flusher thread exists in the child (and its handle is not ours). */
    flusher_joinable = 0;
    if (flusher_state != FLUSHER_STOPPING)
        flusher_state = FLUSHER_NONE;
    my_pid = (uint32_t)getpid();
}
