/*
 * hooks/libc_socket.c - the libc socket, fd and exec wrappers.
 *
 * Every wrapper has the same three layers (style item 2):
 *
 *   exported read()       pass-through test: ldprof off, or an fd we do not
 *                         follow -> one call to real_read, nothing else.
 *                         For the read/write family the test is the gate
 *                         of preload/real.h (ldprof_pass_fd: about eight
 *                         instructions, no frame, a tail call); the rest
 *                         of the old exported body is read_full() etc.,
 *                         not inlined: with the gate open, a followed fd
 *                         at depth 0 runs ldprof_read() inlined there;
 *                         anything else (depth > 0, gate closed,
 *                         trace_socket) goes on to read_slow(), the full
 *                         path, out of line with the other cold code
 *   static ldprof_read()  the real call, then the bookkeeping (HTTP stream
 *                         state), under the reentrancy guard
 *   real_read             libc's function (preload/real.h)
 *
 * Contract of every wrapper: the return value and errno are exactly the
 * real function's (errno is saved right after the real call and restored
 * after the bookkeeping); nothing allocates or blocks; only the bytes the
 * real call actually moved are looked at.
 *
 * The collector socket is protected: close() on it returns 0 without
 * closing it, dup2()/dup3() onto its number move it out of the way first,
 * close_range()/closefrom() skip it.
 *
 * `net` spans (trace_socket, off by default; docs/formats.md "`net` spans").
 * With the option on, connect and the read/write families (read, readv,
 * recv, recvfrom, recvmsg, write, writev, send, sendto, sendmsg and the
 * _chk variants) on a SOCKET open one span per call when the calling thread
 * has a current span and is at reentrancy depth 0 - so never inside a
 * driver call (redis/db/mongodb spans hold the depth) nor inside ldprof.
 * Not recorded: fds that are not sockets (S_ISSOCK, cached per fd below),
 * the collector's socket, an accepted connection followed as HTTP (its
 * wsgi span covers it), a client connection while an outbound `http` span
 * is open on it (including the write that opens it), and a call that
 * would block (EAGAIN/EWOULDBLOCK).  The span is "detached" (a child of
 * the current span that never becomes current), so an http span opened by
 * the same write is never its child and it can be dropped afterwards.
 * With the option off the only cost is one test of the flag, after the
 * existing checks.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ldprof/ldprof.h"
#include "preload/config.h"
#include "preload/exec.h"
#include "preload/http.h"
#include "preload/init.h"
#include "preload/real.h"
#include "preload/span.h"
#include "preload/tls.h"
#include "preload/transport.h"

extern char **environ;

/* Is this call one we have bookkeeping for?  (ldprof on, fd followed.) */
static inline int follow(int fd)
{
    return ldprof_recording() && ldprof_http_tracked(fd);
}

/*
 * Is the read/write gate of preload/real.h open?  Then every read/write
 * symbol is resolved and trace_socket is off, and a call that reached a
 * wrapper's *_full function was not passed by the gate: its fd is in the
 * table and followed, and the thread is at depth 0 (the depth is the
 * thread's own, the gate read it).  The *_full functions test this and
 * follow(fd) (the fd may have stopped being followed since) and then run
 * the bookkeeping inline: what the full path would do, without its
 * other tests, frames and calls.
 */
static inline int gate_open(void)
{
    return __builtin_expect(ldprof_pass.kinds != NULL, 1);
}

/* After a call that delivered @r bytes read from @fd into @buf.  @asked is
 * the size requested (a 0-byte read returning 0 is not end of stream). */
static inline __attribute__((always_inline)) void
after_recv(int fd, const void *buf, ssize_t r, size_t asked)
{
    int saved = errno;

    if (ldprof_enter()) {
        if (__builtin_expect(r > 0, 1))
            ldprof_http_on_recv(fd, buf, (size_t)r);
        else if (r == 0 && asked > 0)
            ldprof_http_on_eof(fd);
    }
    ldprof_leave();
    errno = saved;
}

static inline __attribute__((always_inline)) void
after_recv_iov(int fd, const struct iovec *iov, size_t iovcnt, ssize_t r)
{
    int saved = errno;

    if (ldprof_enter()) {
        if (r > 0) {
            ldprof_http_on_recv_iov(fd, iov, iovcnt, (size_t)r);
        } else if (r == 0) {
            size_t asked = 0; /* a 0-byte read returning 0 is not end of stream */
            for (size_t i = 0; i < iovcnt; i++)
                asked += iov[i].iov_len;
            if (asked > 0)
                ldprof_http_on_eof(fd);
        }
    }
    ldprof_leave();
    errno = saved;
}

static inline __attribute__((always_inline)) void after_send(int fd, const void *buf, ssize_t r)
{
    int saved = errno;

    if (r > 0) {
        if (ldprof_enter())
            ldprof_http_on_send(fd, buf, (size_t)r);
        ldprof_leave();
    }
    errno = saved;
}

static inline __attribute__((always_inline)) void
after_send_iov(int fd, const struct iovec *iov, size_t iovcnt, ssize_t r)
{
    int saved = errno;

    if (r > 0) {
        if (ldprof_enter())
            ldprof_http_on_send_iov(fd, iov, iovcnt, (size_t)r);
        ldprof_leave();
    }
    errno = saved;
}

/* The real send used for outbound requests that get trace headers. */
static ssize_t send_real(int fd, const void *buf, size_t len, const struct iovec *iov,
                         size_t iovcnt, int flags)
{
    struct iovec one = {(void *)buf, len};
    struct msghdr m;

    memset(&m, 0, sizeof(m));
    m.msg_iov = buf ? &one : (struct iovec *)iov;
    m.msg_iovlen = buf ? 1 : iovcnt;
    return real_sendmsg(fd, &m, flags);
}

/*
 * A write on a client (outbound) connection: http.c may insert trace
 * headers.  Returns LDPROF_HTTP_PASS (errno untouched) when the wrapper
 * makes its own real call, else the result for the caller.  The kind test
 * is inlined into the wrappers (a server connection - the common case -
 * costs that test only); client_send is the rest.
 */
static __attribute__((noinline)) ssize_t client_send(int fd, const struct iovec *iov,
                                                     size_t iovcnt, int flags)
{
    int saved = errno;
    ssize_t r = LDPROF_HTTP_PASS;

    if (ldprof_enter())
        r = ldprof_http_client_send(fd, iov, iovcnt, flags, send_real);
    ldprof_leave();
    if (r != -1)
        errno = saved;
    return r;
}

static inline __attribute__((always_inline)) ssize_t client_write(int fd, const struct iovec *iov,
                                                                  size_t iovcnt, int flags)
{
    if (ldprof_http_kind(fd) != LDPROF_FD_CLIENT)
        return LDPROF_HTTP_PASS;
    return client_send(fd, iov, iovcnt, flags);
}

/* Bytes received with MSG_PEEK stay in the socket: they are seen when read
 * for real.  MSG_TRUNC on a stream discards them unseen: the request side
 * of that connection cannot be followed any more (nor can a parser skip). */
static inline int recv_flags_ok(int flags)
{
    return __builtin_expect(!(flags & (MSG_PEEK | MSG_TRUNC)), 1);
}

/* ------------------------------------------------------------ net spans */

enum { NET_CONNECT, NET_SEND, NET_RECV };
static const char *const net_op_name[] = {"connect", "send", "recv"};

/* Is the fd a socket?  0 not known yet, 1 a socket, 2 something else.
 * Cleared when the number is closed, dup'ed onto, connected or accepted
 * (a number closed behind our back - fclose, a raw syscall - and reused
 * for a socket without connect/accept keeps a stale "not a socket" until
 * closed again: its I/O records nothing).  Numbers above the table are
 * checked with fstat on every traced call. */
#define NET_SOCK_CACHE 65536
static uint8_t net_sock[NET_SOCK_CACHE];

static inline void net_sock_forget(int fd)
{
    if (ldprof_cfg.trace_socket && (unsigned)fd < NET_SOCK_CACHE &&
        __atomic_load_n(&net_sock[fd], __ATOMIC_RELAXED) != 0)
        __atomic_store_n(&net_sock[fd], 0, __ATOMIC_RELAXED);
}

static int net_is_socket(int fd)
{
    struct stat st;
    uint8_t v = 0;

    if ((unsigned)fd < NET_SOCK_CACHE) {
        v = __atomic_load_n(&net_sock[fd], __ATOMIC_RELAXED);
        if (v != 0)
            return v == 1;
    }
    if (fstat(fd, &st) != 0)
        return 0; /* a bad fd: the real call reports it, no span */
    v = S_ISSOCK(st.st_mode) ? 1 : 2;
    if ((unsigned)fd < NET_SOCK_CACHE)
        __atomic_store_n(&net_sock[fd], v, __ATOMIC_RELAXED);
    return v == 1;
}

/* Decimal @v at @p; returns the end. */
static char *net_put_uint(char *p, unsigned v)
{
    char tmp[12];
    int n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

/* Numeric "address:port" ("[v6]:port", a unix path, "@abstract") of @sa
 * into @out (128 bytes); returns its length, 0 when unknown. */
static size_t net_fmt_addr(char *out, const struct sockaddr *sa, socklen_t alen)
{
    char *p = out;

    if (sa == NULL || alen < (socklen_t)sizeof(sa_family_t))
        return 0;
    if (sa->sa_family == AF_INET && alen >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        if (inet_ntop(AF_INET, &in->sin_addr, p, 64) == NULL)
            return 0;
        p += strlen(p);
        *p++ = ':';
        p = net_put_uint(p, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6 && alen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        *p++ = '[';
        if (inet_ntop(AF_INET6, &in6->sin6_addr, p, 64) == NULL)
            return 0;
        p += strlen(p);
        *p++ = ']';
        *p++ = ':';
        p = net_put_uint(p, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)(const void *)sa;
        size_t n = alen > (socklen_t)offsetof(struct sockaddr_un, sun_path)
                       ? (size_t)alen - offsetof(struct sockaddr_un, sun_path)
                       : 0;
        if (n > sizeof(un->sun_path))
            n = sizeof(un->sun_path);
        if (n == 0)
            return 0;
        if (un->sun_path[0] == '\0') { /* abstract */
            *p++ = '@';
            n = n - 1 > 100 ? 100 : n - 1;
            memcpy(p, un->sun_path + 1, n);
            p += n;
        } else {
            size_t k = strnlen(un->sun_path, n);
            if (k > 120)
                k = 120;
            memcpy(p, un->sun_path, k);
            p += k;
        }
    } else {
        return 0;
    }
    return (size_t)(p - out);
}

/*
 * net_begin - the `net` span for a call on @fd, or NULL (see the top of the
 * file for when).  @addr: the address the call names (connect, sendto),
 * else the peer is asked with getpeername.  errno unchanged.
 */
static struct ldprof_span *net_begin(int op, int fd, const struct sockaddr *addr, socklen_t alen)
{
    struct ldprof_span *s = NULL;
    struct ldprof_ctx *c;
    int saved;

    if (ldprof_tls.depth != 0 || !ldprof_recording())
        return NULL;
    saved = errno;
    if (ldprof_enter()) {
        c = ldprof_ctx_current();
        if (c != NULL && !ldprof_xport_owns_fd(fd) && net_is_socket(fd) &&
            !(ldprof_http_tracked(fd) && ldprof_http_covered(fd)))
            s = ldprof_span_open(LDPROF_KIND_NET, c->base_id, c->cur_id, c->key_idx);
        if (s != NULL) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            char peer[128];
            size_t plen;

            if (addr == NULL && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
                addr = (const struct sockaddr *)&ss;
                alen = sl;
            }
            plen = net_fmt_addr(peer, addr, alen);
            ldprof_span_add_str(s, LDPROF_FIELD_START, "net.op", net_op_name[op], -1);
            ldprof_span_add_int(s, LDPROF_FIELD_START, "net.fd", fd);
            if (plen > 0)
                ldprof_span_add_str(s, LDPROF_FIELD_START, "net.peer", peer, (long)plen);
        }
    }
    ldprof_leave();
    errno = saved;
    return s;
}

/* net_end - record @s for a call (NET_*) on @fd that returned @r (errno:
 * the call's, unchanged on return). */
static void net_end(struct ldprof_span *s, int op, int fd, ssize_t r)
{
    int saved = errno;

    if (s == NULL)
        return;
    ldprof_enter();
    if (r < 0 && (saved == EAGAIN || saved == EWOULDBLOCK)) {
        ldprof_span_discard(s); /* would block: not recorded */
    } else if (ldprof_http_tracked(fd) && ldprof_http_covered(fd)) {
        ldprof_span_discard(s); /* this write began an outbound http request */
    } else {
        if (r >= 0) {
            if (op != NET_CONNECT)
                ldprof_span_add_int(s, LDPROF_FIELD_STOP, "net.bytes", r);
        } else if (saved == EINPROGRESS) {
            ldprof_span_add_int(s, LDPROF_FIELD_STOP, "net.in_progress", 1);
        } else {
            const char *m = strerrordesc_np(saved);
            ldprof_span_set_error(s, "OSError", m != NULL ? m : "Unknown error");
        }
        ldprof_span_close(s, 0);
    }
    ldprof_leave();
    errno = saved;
}

/* In an exported wrapper, with trace_socket on: return @call's result,
 * inside a `net` span when one is wanted. */
#define NET_RETURN(op, fd, addr, alen, call)                                             \
    do {                                                                                 \
        struct ldprof_span *ns_ = net_begin(op, fd, addr, alen);                         \
        ssize_t nr_ = (call);                                                            \
        net_end(ns_, op, fd, nr_);                                                         \
        return nr_;                                                                      \
    } while (0)

/* ------------------------------------------------------------ accept */

static int ldprof_accept_common(int r)
{
    int saved = errno;

    if (r >= 0) {
        net_sock_forget(r);
        if (ldprof_enter())
            ldprof_http_on_accept(r);
        ldprof_leave();
    }
    errno = saved;
    return r;
}

static int ldprof_accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
    return ldprof_accept_common(real_accept(fd, addr, alen));
}

LDPROF_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
    LDPROF_REAL_NEED(accept, -1);
    if (!ldprof_recording())
        return real_accept(fd, addr, alen);
    return ldprof_accept(fd, addr, alen);
}

static int ldprof_accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
    return ldprof_accept_common(real_accept4(fd, addr, alen, flags));
}

LDPROF_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
    LDPROF_REAL_NEED(accept4, -1);
    if (!ldprof_recording())
        return real_accept4(fd, addr, alen, flags);
    return ldprof_accept4(fd, addr, alen, flags);
}

/* ------------------------------------------------------------ connect, shutdown */

static int ldprof_connect(int fd, const struct sockaddr *addr, socklen_t alen)
{
    int r = real_connect(fd, addr, alen);
    int saved = errno;

    /* Outbound TCP connections are followed (their HTTP requests may get
     * trace headers); everything else only loses any stale state. */
    if ((r == 0 || saved == EINPROGRESS) && addr != NULL) {
        int type = 0;
        socklen_t tl = sizeof(type);
        if (ldprof_enter()) {
            if ((addr->sa_family == AF_INET || addr->sa_family == AF_INET6) &&
                getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_STREAM)
                ldprof_http_on_connect(fd, addr);
            else if (ldprof_http_tracked(fd))
                ldprof_http_on_close(fd);
        }
        ldprof_leave();
    }
    errno = saved;
    return r;
}

LDPROF_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t alen)
{
    LDPROF_REAL_NEED(connect, -1);
    if (!ldprof_recording())
        return real_connect(fd, addr, alen);
    if (ldprof_cfg.trace_socket) {
        net_sock_forget(fd); /* the number may have been a file before */
        NET_RETURN(NET_CONNECT, fd, addr, alen, ldprof_connect(fd, addr, alen));
    }
    return ldprof_connect(fd, addr, alen);
}

static int ldprof_shutdown(int fd, int how)
{
    int r = real_shutdown(fd, how);
    int saved = errno;

    if (r == 0) {
        if (ldprof_enter())
            ldprof_http_on_shutdown(fd, how);
        ldprof_leave();
    }
    errno = saved;
    return r;
}

LDPROF_EXPORT int shutdown(int fd, int how)
{
    LDPROF_REAL_NEED(shutdown, -1);
    if (!follow(fd))
        return real_shutdown(fd, how);
    return ldprof_shutdown(fd, how);
}

/* ------------------------------------------------------------ reads */

static inline __attribute__((always_inline)) ssize_t ldprof_read(int fd, void *buf, size_t n)
{
    ssize_t r = real_read(fd, buf, n);
    after_recv(fd, buf, r, n);
    return r;
}

/* read() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_read (inlined), as the full path would; anything else takes
 * read_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t read_slow(int fd, void *buf, size_t n);
static __attribute__((noinline)) ssize_t read_full(int fd, void *buf, size_t n)
{
    if (__builtin_expect(gate_open() && follow(fd), 1))
        return ldprof_read(fd, buf, n);
    return read_slow(fd, buf, n);
}

/* read(): the full path. */
static __attribute__((noinline, cold)) ssize_t read_slow(int fd, void *buf, size_t n)
{
    LDPROF_REAL_NEED(read, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real_read(fd, buf, n);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real_read(fd, buf, n);
        NET_RETURN(NET_RECV, fd, NULL, 0, real_read(fd, buf, n));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_RECV, fd, NULL, 0, ldprof_read(fd, buf, n));
    return ldprof_read(fd, buf, n);
}

LDPROF_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    if (ldprof_pass_fd(fd))
        return real_read(fd, buf, n);
    return read_full(fd, buf, n);
}

static inline __attribute__((always_inline)) ssize_t
ldprof_read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    ssize_t r = real___read_chk(fd, buf, n, buflen);
    after_recv(fd, buf, r, n);
    return r;
}

/* __read_chk() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_read_chk (inlined), as the full path would; anything else takes
 * __read_chk_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t
__read_chk_slow(int fd, void *buf, size_t n, size_t buflen);
static __attribute__((noinline)) ssize_t __read_chk_full(int fd, void *buf, size_t n, size_t buflen)
{
    if (__builtin_expect(gate_open() && follow(fd), 1))
        return ldprof_read_chk(fd, buf, n, buflen);
    return __read_chk_slow(fd, buf, n, buflen);
}

/* __read_chk(): the full path. */
static __attribute__((noinline, cold)) ssize_t
__read_chk_slow(int fd, void *buf, size_t n, size_t buflen)
{
    LDPROF_REAL_NEED(__read_chk, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real___read_chk(fd, buf, n, buflen);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real___read_chk(fd, buf, n, buflen);
        NET_RETURN(NET_RECV, fd, NULL, 0, real___read_chk(fd, buf, n, buflen));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_RECV, fd, NULL, 0, ldprof_read_chk(fd, buf, n, buflen));
    return ldprof_read_chk(fd, buf, n, buflen);
}

LDPROF_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    if (ldprof_pass_fd(fd))
        return real___read_chk(fd, buf, n, buflen);
    return __read_chk_full(fd, buf, n, buflen);
}

static inline __attribute__((always_inline)) ssize_t
ldprof_readv(int fd, const struct iovec *iov, int iovcnt)
{
    ssize_t r = real_readv(fd, iov, iovcnt);
    after_recv_iov(fd, iov, iovcnt > 0 ? (size_t)iovcnt : 0, r);
    return r;
}

/* readv() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_readv (inlined), as the full path would; anything else takes
 * readv_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t
readv_slow(int fd, const struct iovec *iov, int iovcnt);
static __attribute__((noinline)) ssize_t readv_full(int fd, const struct iovec *iov, int iovcnt)
{
    if (__builtin_expect(gate_open() && follow(fd), 1))
        return ldprof_readv(fd, iov, iovcnt);
    return readv_slow(fd, iov, iovcnt);
}

/* readv(): the full path. */
static __attribute__((noinline, cold)) ssize_t
readv_slow(int fd, const struct iovec *iov, int iovcnt)
{
    LDPROF_REAL_NEED(readv, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real_readv(fd, iov, iovcnt);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real_readv(fd, iov, iovcnt);
        NET_RETURN(NET_RECV, fd, NULL, 0, real_readv(fd, iov, iovcnt));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_RECV, fd, NULL, 0, ldprof_readv(fd, iov, iovcnt));
    return ldprof_readv(fd, iov, iovcnt);
}

LDPROF_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
    if (ldprof_pass_fd(fd))
        return real_readv(fd, iov, iovcnt);
    return readv_full(fd, iov, iovcnt);
}

static inline __attribute__((always_inline)) ssize_t
ldprof_recv(int fd, void *buf, size_t n, int flags)
{
    ssize_t r = real_recv(fd, buf, n, flags);
    if (recv_flags_ok(flags))
        after_recv(fd, buf, r, n);
    return r;
}

/* recv() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_recv (inlined), as the full path would; anything else takes
 * recv_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t recv_slow(int fd, void *buf, size_t n, int flags);
static __attribute__((noinline)) ssize_t recv_full(int fd, void *buf, size_t n, int flags)
{
    if (__builtin_expect(gate_open() && follow(fd), 1))
        return ldprof_recv(fd, buf, n, flags);
    return recv_slow(fd, buf, n, flags);
}

/* recv(): the full path. */
static __attribute__((noinline, cold)) ssize_t recv_slow(int fd, void *buf, size_t n, int flags)
{
    LDPROF_REAL_NEED(recv, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real_recv(fd, buf, n, flags);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real_recv(fd, buf, n, flags);
        NET_RETURN(NET_RECV, fd, NULL, 0, real_recv(fd, buf, n, flags));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_RECV, fd, NULL, 0, ldprof_recv(fd, buf, n, flags));
    return ldprof_recv(fd, buf, n, flags);
}

LDPROF_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    if (ldprof_pass_fd(fd))
        return real_recv(fd, buf, n, flags);
    return recv_full(fd, buf, n, flags);
}

static inline __attribute__((always_inline)) ssize_t
ldprof_recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    ssize_t r = real___recv_chk(fd, buf, n, buflen, flags);
    if (recv_flags_ok(flags))
        after_recv(fd, buf, r, n);
    return r;
}

/* __recv_chk() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_recv_chk (inlined), as the full path would; anything else takes
 * __recv_chk_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t
__recv_chk_slow(int fd, void *buf, size_t n, size_t buflen, int flags);
static __attribute__((noinline)) ssize_t
__recv_chk_full(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    if (__builtin_expect(gate_open() && follow(fd), 1))
        return ldprof_recv_chk(fd, buf, n, buflen, flags);
    return __recv_chk_slow(fd, buf, n, buflen, flags);
}

/* __recv_chk(): the full path. */
static __attribute__((noinline, cold)) ssize_t
__recv_chk_slow(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    LDPROF_REAL_NEED(__recv_chk, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real___recv_chk(fd, buf, n, buflen, flags);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real___recv_chk(fd, buf, n, buflen, flags);
        NET_RETURN(NET_RECV, fd, NULL, 0, real___recv_chk(fd, buf, n, buflen, flags));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_RECV, fd, NULL, 0, ldprof_recv_chk(fd, buf, n, buflen, flags));
    return ldprof_recv_chk(fd, buf, n, buflen, flags);
}

LDPROF_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    if (ldprof_pass_fd(fd))
        return real___recv_chk(fd, buf, n, buflen, flags);
    return __recv_chk_full(fd, buf, n, buflen, flags);
}

static inline __attribute__((always_inline)) ssize_t
ldprof_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
    ssize_t r = real_recvfrom(fd, buf, n, flags, addr, alen);
    if (recv_flags_ok(flags))
        after_recv(fd, buf, r, n);
    return r;
}

/* recvfrom() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_recvfrom (inlined), as the full path would; anything else takes
 * recvfrom_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t
recvfrom_slow(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen);
static __attribute__((noinline)) ssize_t
recvfrom_full(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
    if (__builtin_expect(gate_open() && follow(fd), 1))
        return ldprof_recvfrom(fd, buf, n, flags, addr, alen);
    return recvfrom_slow(fd, buf, n, flags, addr, alen);
}

/* recvfrom(): the full path. */
static __attribute__((noinline, cold)) ssize_t
recvfrom_slow(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
    LDPROF_REAL_NEED(recvfrom, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real_recvfrom(fd, buf, n, flags, addr, alen);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real_recvfrom(fd, buf, n, flags, addr, alen);
        NET_RETURN(NET_RECV, fd, NULL, 0, real_recvfrom(fd, buf, n, flags, addr, alen));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_RECV, fd, NULL, 0, ldprof_recvfrom(fd, buf, n, flags, addr, alen));
    return ldprof_recvfrom(fd, buf, n, flags, addr, alen);
}

LDPROF_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
                               socklen_t *alen)
{
    if (ldprof_pass_fd(fd))
        return real_recvfrom(fd, buf, n, flags, addr, alen);
    return recvfrom_full(fd, buf, n, flags, addr, alen);
}

static inline __attribute__((always_inline)) ssize_t
ldprof_recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
                    socklen_t *alen)
{
    ssize_t r = real___recvfrom_chk(fd, buf, n, buflen, flags, addr, alen);
    if (recv_flags_ok(flags))
        after_recv(fd, buf, r, n);
    return r;
}

/* __recvfrom_chk() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_recvfrom_chk (inlined), as the full path would; anything else takes
 * __recvfrom_chk_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t
__recvfrom_chk_slow(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
                    socklen_t *alen);
static __attribute__((noinline)) ssize_t
__recvfrom_chk_full(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
                    socklen_t *alen)
{
    if (__builtin_expect(gate_open() && follow(fd), 1))
        return ldprof_recvfrom_chk(fd, buf, n, buflen, flags, addr, alen);
    return __recvfrom_chk_slow(fd, buf, n, buflen, flags, addr, alen);
}

/* __recvfrom_chk(): the full path. */
static __attribute__((noinline, cold)) ssize_t
__recvfrom_chk_slow(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
                    socklen_t *alen)
{
    LDPROF_REAL_NEED(__recvfrom_chk, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real___recvfrom_chk(fd, buf, n, buflen, flags, addr, alen);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real___recvfrom_chk(fd, buf, n, buflen, flags, addr, alen);
        NET_RETURN(NET_RECV, fd, NULL, 0, real___recvfrom_chk(fd, buf, n, buflen, flags, addr, alen));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_RECV, fd, NULL, 0, ldprof_recvfrom_chk(fd, buf, n, buflen, flags, addr, alen));
    return ldprof_recvfrom_chk(fd, buf, n, buflen, flags, addr, alen);
}

LDPROF_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                                     struct sockaddr *addr, socklen_t *alen)
{
    if (ldprof_pass_fd(fd))
        return real___recvfrom_chk(fd, buf, n, buflen, flags, addr, alen);
    return __recvfrom_chk_full(fd, buf, n, buflen, flags, addr, alen);
}

static inline __attribute__((always_inline)) ssize_t
ldprof_recvmsg(int fd, struct msghdr *msg, int flags)
{
    ssize_t r = real_recvmsg(fd, msg, flags);
    if (recv_flags_ok(flags))
        after_recv_iov(fd, msg->msg_iov, msg->msg_iovlen, r);
    return r;
}

/* recvmsg() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_recvmsg (inlined), as the full path would; anything else takes
 * recvmsg_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t recvmsg_slow(int fd, struct msghdr *msg, int flags);
static __attribute__((noinline)) ssize_t recvmsg_full(int fd, struct msghdr *msg, int flags)
{
    if (__builtin_expect(gate_open() && msg != NULL && follow(fd), 1))
        return ldprof_recvmsg(fd, msg, flags);
    return recvmsg_slow(fd, msg, flags);
}

/* recvmsg(): the full path. */
static __attribute__((noinline, cold)) ssize_t recvmsg_slow(int fd, struct msghdr *msg, int flags)
{
    LDPROF_REAL_NEED(recvmsg, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real_recvmsg(fd, msg, flags);
    if (msg == NULL)
        return real_recvmsg(fd, msg, flags);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real_recvmsg(fd, msg, flags);
        NET_RETURN(NET_RECV, fd, NULL, 0, real_recvmsg(fd, msg, flags));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_RECV, fd, NULL, 0, ldprof_recvmsg(fd, msg, flags));
    return ldprof_recvmsg(fd, msg, flags);
}

LDPROF_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (ldprof_pass_fd(fd))
        return real_recvmsg(fd, msg, flags);
    return recvmsg_full(fd, msg, flags);
}

/* ------------------------------------------------------------ writes */

static inline __attribute__((always_inline)) ssize_t ldprof_write(int fd, const void *buf, size_t n)
{
    struct iovec iov = {(void *)buf, n};
    ssize_t r = client_write(fd, &iov, 1, 0);

    if (r != LDPROF_HTTP_PASS)
        return r;
    r = real_write(fd, buf, n);
    after_send(fd, buf, r);
    return r;
}

/* write() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_write (inlined), as the full path would; anything else takes
 * write_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t write_slow(int fd, const void *buf, size_t n);
static __attribute__((noinline)) ssize_t write_full(int fd, const void *buf, size_t n)
{
    if (__builtin_expect(gate_open() && follow(fd), 1))
        return ldprof_write(fd, buf, n);
    return write_slow(fd, buf, n);
}

/* write(): the full path. */
static __attribute__((noinline, cold)) ssize_t write_slow(int fd, const void *buf, size_t n)
{
    LDPROF_REAL_NEED(write, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real_write(fd, buf, n);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real_write(fd, buf, n);
        NET_RETURN(NET_SEND, fd, NULL, 0, real_write(fd, buf, n));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_SEND, fd, NULL, 0, ldprof_write(fd, buf, n));
    return ldprof_write(fd, buf, n);
}

LDPROF_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    if (ldprof_pass_fd(fd))
        return real_write(fd, buf, n);
    return write_full(fd, buf, n);
}

static inline __attribute__((always_inline)) ssize_t
ldprof_writev(int fd, const struct iovec *iov, int iovcnt)
{
    ssize_t r = iovcnt > 0 ? client_write(fd, iov, (size_t)iovcnt, 0) : LDPROF_HTTP_PASS;

    if (r != LDPROF_HTTP_PASS)
        return r;
    r = real_writev(fd, iov, iovcnt);
    after_send_iov(fd, iov, iovcnt > 0 ? (size_t)iovcnt : 0, r);
    return r;
}

/* writev() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_writev (inlined), as the full path would; anything else takes
 * writev_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t
writev_slow(int fd, const struct iovec *iov, int iovcnt);
static __attribute__((noinline)) ssize_t writev_full(int fd, const struct iovec *iov, int iovcnt)
{
    if (__builtin_expect(gate_open() && follow(fd), 1))
        return ldprof_writev(fd, iov, iovcnt);
    return writev_slow(fd, iov, iovcnt);
}

/* writev(): the full path. */
static __attribute__((noinline, cold)) ssize_t
writev_slow(int fd, const struct iovec *iov, int iovcnt)
{
    LDPROF_REAL_NEED(writev, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real_writev(fd, iov, iovcnt);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real_writev(fd, iov, iovcnt);
        NET_RETURN(NET_SEND, fd, NULL, 0, real_writev(fd, iov, iovcnt));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_SEND, fd, NULL, 0, ldprof_writev(fd, iov, iovcnt));
    return ldprof_writev(fd, iov, iovcnt);
}

LDPROF_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (ldprof_pass_fd(fd))
        return real_writev(fd, iov, iovcnt);
    return writev_full(fd, iov, iovcnt);
}

static inline __attribute__((always_inline)) ssize_t
ldprof_send(int fd, const void *buf, size_t n, int flags)
{
    struct iovec iov = {(void *)buf, n};
    ssize_t r = client_write(fd, &iov, 1, flags);

    if (r != LDPROF_HTTP_PASS)
        return r;
    r = real_send(fd, buf, n, flags);
    after_send(fd, buf, r);
    return r;
}

/* send() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_send (inlined), as the full path would; anything else takes
 * send_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t
send_slow(int fd, const void *buf, size_t n, int flags);
static __attribute__((noinline)) ssize_t send_full(int fd, const void *buf, size_t n, int flags)
{
    if (__builtin_expect(gate_open() && follow(fd), 1))
        return ldprof_send(fd, buf, n, flags);
    return send_slow(fd, buf, n, flags);
}

/* send(): the full path. */
static __attribute__((noinline, cold)) ssize_t
send_slow(int fd, const void *buf, size_t n, int flags)
{
    LDPROF_REAL_NEED(send, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real_send(fd, buf, n, flags);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real_send(fd, buf, n, flags);
        NET_RETURN(NET_SEND, fd, NULL, 0, real_send(fd, buf, n, flags));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_SEND, fd, NULL, 0, ldprof_send(fd, buf, n, flags));
    return ldprof_send(fd, buf, n, flags);
}

LDPROF_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    if (ldprof_pass_fd(fd))
        return real_send(fd, buf, n, flags);
    return send_full(fd, buf, n, flags);
}

static inline __attribute__((always_inline)) ssize_t
ldprof_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
              socklen_t alen)
{
    struct iovec iov = {(void *)buf, n};
    /* (a connected TCP socket ignores the address) */
    ssize_t r = addr == NULL ? client_write(fd, &iov, 1, flags) : LDPROF_HTTP_PASS;

    if (r != LDPROF_HTTP_PASS)
        return r;
    r = real_sendto(fd, buf, n, flags, addr, alen);
    after_send(fd, buf, r);
    return r;
}

/* sendto() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_sendto (inlined), as the full path would; anything else takes
 * sendto_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t
sendto_slow(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
            socklen_t alen);
static __attribute__((noinline)) ssize_t sendto_full(int fd, const void *buf, size_t n, int flags,
                             const struct sockaddr *addr, socklen_t alen)
{
    if (__builtin_expect(gate_open() && follow(fd), 1))
        return ldprof_sendto(fd, buf, n, flags, addr, alen);
    return sendto_slow(fd, buf, n, flags, addr, alen);
}

/* sendto(): the full path. */
static __attribute__((noinline, cold)) ssize_t
sendto_slow(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
            socklen_t alen)
{
    LDPROF_REAL_NEED(sendto, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real_sendto(fd, buf, n, flags, addr, alen);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real_sendto(fd, buf, n, flags, addr, alen);
        NET_RETURN(NET_SEND, fd, addr, alen, real_sendto(fd, buf, n, flags, addr, alen));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_SEND, fd, addr, alen, ldprof_sendto(fd, buf, n, flags, addr, alen));
    return ldprof_sendto(fd, buf, n, flags, addr, alen);
}

LDPROF_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags,
                             const struct sockaddr *addr, socklen_t alen)
{
    if (ldprof_pass_fd(fd))
        return real_sendto(fd, buf, n, flags, addr, alen);
    return sendto_full(fd, buf, n, flags, addr, alen);
}

static inline __attribute__((always_inline)) ssize_t
ldprof_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    /* ancillary data or an address: leave the message alone */
    ssize_t r = msg->msg_controllen == 0 && msg->msg_name == NULL
                    ? client_write(fd, msg->msg_iov, msg->msg_iovlen, flags)
                    : LDPROF_HTTP_PASS;

    if (r != LDPROF_HTTP_PASS)
        return r;
    r = real_sendmsg(fd, msg, flags);
    after_send_iov(fd, msg->msg_iov, msg->msg_iovlen, r);
    return r;
}

/* sendmsg() when the gate did not let it through.  With the gate open (every
 * read/write symbol resolved, trace_socket off: see gate_open) the thread
 * is at depth 0, so a followed fd - the common case - goes straight to
 * ldprof_sendmsg (inlined), as the full path would; anything else takes
 * sendmsg_slow, the full path, out of line. */
static __attribute__((noinline, cold)) ssize_t
sendmsg_slow(int fd, const struct msghdr *msg, int flags);
static __attribute__((noinline)) ssize_t sendmsg_full(int fd, const struct msghdr *msg, int flags)
{
    if (__builtin_expect(gate_open() && msg != NULL && follow(fd), 1))
        return ldprof_sendmsg(fd, msg, flags);
    return sendmsg_slow(fd, msg, flags);
}

/* sendmsg(): the full path. */
static __attribute__((noinline, cold)) ssize_t
sendmsg_slow(int fd, const struct msghdr *msg, int flags)
{
    LDPROF_REAL_NEED(sendmsg, -1);
    if (ldprof_tls.depth != 0) /* inside ldprof or a driver call: nothing to record */
        return real_sendmsg(fd, msg, flags);
    if (msg == NULL)
        return real_sendmsg(fd, msg, flags);
    if (!follow(fd)) {
        if (__builtin_expect(!ldprof_cfg.trace_socket, 1))
            return real_sendmsg(fd, msg, flags);
        NET_RETURN(NET_SEND, fd, NULL, 0, real_sendmsg(fd, msg, flags));
    }
    if (ldprof_cfg.trace_socket)
        NET_RETURN(NET_SEND, fd, NULL, 0, ldprof_sendmsg(fd, msg, flags));
    return ldprof_sendmsg(fd, msg, flags);
}

LDPROF_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (ldprof_pass_fd(fd))
        return real_sendmsg(fd, msg, flags);
    return sendmsg_full(fd, msg, flags);
}

static ssize_t ldprof_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    ssize_t r = real_sendfile(out_fd, in_fd, offset, count);
    int saved = errno;

    /* The bytes come from a file we do not read: the response parser is
     * told how many body bytes went out (see ldprof_http_on_send_opaque). */
    if (r > 0) {
        if (ldprof_enter())
            ldprof_http_on_send_opaque(out_fd, (size_t)r);
        ldprof_leave();
    }
    errno = saved;
    return r;
}

LDPROF_EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    LDPROF_REAL_NEED(sendfile, -1);
    if (!follow(out_fd))
        return real_sendfile(out_fd, in_fd, offset, count);
    return ldprof_sendfile(out_fd, in_fd, offset, count);
}

/* Programs built with -D_FILE_OFFSET_BITS=64 call sendfile64.  On LP64 it
 * is the same libc function as sendfile (off_t is off64_t), so it shares
 * the real pointer and the wrapper. */
_Static_assert(sizeof(off_t) == 8, "sendfile64 is sendfile only where off_t is 64-bit");
LDPROF_EXPORT ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count)
{
    return sendfile(out_fd, in_fd, offset, count);
}

/* ------------------------------------------------------------ close, dup */

/* Forget the state of fd number @fd (closed, or about to be replaced). */
static void forget_fd(int fd)
{
    net_sock_forget(fd);
    if (ldprof_http_tracked(fd)) {
        if (ldprof_enter())
            ldprof_http_on_close(fd);
        ldprof_leave();
    }
}

static int ldprof_close(int fd)
{
    if (ldprof_xport_owns_fd(fd)) {
        /* The program closes every fd (a daemon's loop): keep ours and
         * report success, as if it had been closed. */
        ldprof_xport_note_close_attempt();
        return 0;
    }
    forget_fd(fd);
    return real_close(fd);
}

LDPROF_EXPORT int close(int fd)
{
    LDPROF_REAL_NEED(close, -1);
    if (!ldprof_recording())
        return real_close(fd);
    return ldprof_close(fd);
}

static int ldprof_dup(int oldfd)
{
    int r = real_dup(oldfd);
    int saved = errno;

    /* A number that was closed behind our back (fclose, a raw syscall)
     * must not keep its old state. */
    if (r >= 0)
        forget_fd(r);
    errno = saved;
    return r;
}

LDPROF_EXPORT int dup(int oldfd)
{
    LDPROF_REAL_NEED(dup, -1);
    if (!ldprof_recording())
        return real_dup(oldfd);
    return ldprof_dup(oldfd);
}

static int ldprof_dup3(int oldfd, int newfd, int flags, int is_dup2)
{
    if (oldfd != newfd && newfd >= 0) {
        if (ldprof_xport_owns_fd(newfd))
            ldprof_xport_evacuate(newfd);
        forget_fd(newfd);
    }
    return is_dup2 ? real_dup2(oldfd, newfd) : real_dup3(oldfd, newfd, flags);
}

LDPROF_EXPORT int dup2(int oldfd, int newfd)
{
    LDPROF_REAL_NEED(dup2, -1);
    if (!ldprof_recording())
        return real_dup2(oldfd, newfd);
    return ldprof_dup3(oldfd, newfd, 0, 1);
}

LDPROF_EXPORT int dup3(int oldfd, int newfd, int flags)
{
    LDPROF_REAL_NEED(dup3, -1);
    if (!ldprof_recording())
        return real_dup3(oldfd, newfd, flags);
    return ldprof_dup3(oldfd, newfd, flags, 0);
}

static int ldprof_close_range(unsigned first, unsigned last, int flags)
{
    int own;

    if (first > last || (flags & CLOSE_RANGE_CLOEXEC))
        return real_close_range(first, last, flags);
    for (unsigned fd = first; fd <= last && fd < (unsigned)ldprof_http_nfds; fd++)
        forget_fd((int)fd);
    own = ldprof_xport_fd();
    if (own < 0 || (unsigned)own < first || (unsigned)own > last)
        return real_close_range(first, last, flags);
    /* Our socket is in the range: close around it. */
    if ((unsigned)own > first && real_close_range(first, (unsigned)own - 1, flags) != 0)
        return -1;
    if ((unsigned)own < last && real_close_range((unsigned)own + 1, last, flags) != 0)
        return -1;
    ldprof_xport_note_close_attempt();
    return 0;
}

LDPROF_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
    LDPROF_REAL_NEED(close_range, -1);
    if (!ldprof_recording())
        return real_close_range(first, last, flags);
    return ldprof_close_range(first, last, flags);
}

LDPROF_EXPORT void closefrom(int lowfd)
{
    LDPROF_REAL_NEED_VOID(closefrom);
    if (!ldprof_recording() || lowfd < 0) {
        real_closefrom(lowfd);
        return;
    }
    /* closefrom() cannot fail; close_range() may (old kernel): fall back to
     * the real closefrom above our socket. */
    if (ldprof_close_range((unsigned)lowfd, ~0u, 0) != 0) {
        int s = ldprof_xport_fd();
        if (s >= lowfd) {
            for (int fd = lowfd; fd < s; fd++)
                ldprof_close(fd);
            real_closefrom(s + 1);
        } else {
            real_closefrom(lowfd);
        }
    }
}

/* ------------------------------------------------------------ exec, spawn */

/* Before an exec: buffered spans would be lost with the process image. */
static void before_exec(void)
{
    int saved = errno;

    if (ldprof_enter())
        ldprof_xport_flush_before_exec();
    ldprof_leave();
    errno = saved;
}

static int ldprof_execve(const char *path, char *const argv[], char *const envp[])
{
    struct ldprof_env_mem mem;
    char *const *env;
    int r;

    before_exec();
    env = ldprof_exec_env(envp, &mem);
    r = real_execve(path, argv, env);
    int saved = errno;

    ldprof_exec_env_free(&mem);
    errno = saved;
    return r;
}

LDPROF_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    LDPROF_REAL_NEED(execve, -1);
    if (!ldprof_recording())
        return real_execve(path, argv, envp);
    return ldprof_execve(path, argv, envp);
}

LDPROF_EXPORT int execv(const char *path, char *const argv[])
{
    LDPROF_REAL_NEED(execve, -1);
    if (!ldprof_recording())
        return real_execve(path, argv, environ);
    return ldprof_execve(path, argv, environ);
}

static int ldprof_execvpe(const char *file, char *const argv[], char *const envp[])
{
    struct ldprof_env_mem mem;
    char *const *env;
    int r;

    before_exec();
    env = ldprof_exec_env(envp, &mem);
    r = real_execvpe(file, argv, env);
    int saved = errno;

    ldprof_exec_env_free(&mem);
    errno = saved;
    return r;
}

LDPROF_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    LDPROF_REAL_NEED(execvpe, -1);
    if (!ldprof_recording())
        return real_execvpe(file, argv, envp);
    return ldprof_execvpe(file, argv, envp);
}

LDPROF_EXPORT int execvp(const char *file, char *const argv[])
{
    LDPROF_REAL_NEED(execvpe, -1);
    if (!ldprof_recording())
        return real_execvpe(file, argv, environ);
    return ldprof_execvpe(file, argv, environ);
}

/* The execl family: collect the arguments (on the stack, as glibc does) and
 * go through execve/execvpe, so that the environment is kept there too. */
#define COLLECT_ARGS(arg0, ap, argv)                                                     \
    size_t argc_ = 1;                                                                    \
    va_start(ap, arg0);                                                                  \
    while (va_arg(ap, const char *) != NULL)                                             \
        argc_++;                                                                         \
    va_end(ap);                                                                          \
    char *argv[argc_ + 1];                                                               \
    argv[0] = (char *)arg0;                                                              \
    va_start(ap, arg0);                                                                  \
    for (size_t i_ = 1; i_ <= argc_; i_++)                                               \
        argv[i_] = va_arg(ap, char *);

LDPROF_EXPORT int execl(const char *path, const char *arg, ...)
{
    va_list ap;
    COLLECT_ARGS(arg, ap, argv)
    va_end(ap);
    return execve(path, argv, environ);
}

LDPROF_EXPORT int execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    COLLECT_ARGS(arg, ap, argv)
    va_end(ap);
    return execvp(file, argv);
}

LDPROF_EXPORT int execle(const char *path, const char *arg, ...)
{
    va_list ap;
    char *const *envp;
    COLLECT_ARGS(arg, ap, argv)
    envp = va_arg(ap, char *const *); /* after the NULL that ends the arguments */
    va_end(ap);
    return execve(path, argv, envp);
}

static int ldprof_spawn(int use_path, pid_t *pid, const char *path,
                        const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
                        char *const argv[], char *const envp[])
{
    struct ldprof_env_mem mem;
    char *const *env = ldprof_exec_env(envp, &mem);
    int saved, r;

    r = use_path ? real_posix_spawnp(pid, path, fa, attr, argv, env)
                 : real_posix_spawn(pid, path, fa, attr, argv, env);
    saved = errno;
    ldprof_exec_env_free(&mem);
    errno = saved;
    return r;
}

/* posix_spawn reports errors in its return value, not errno. */
LDPROF_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                              const posix_spawnattr_t *attr, char *const argv[],
                              char *const envp[])
{
    void *p = __atomic_load_n((void **)&real_posix_spawn, __ATOMIC_ACQUIRE);
    if (p == NULL) {
        ldprof_real_init();
        p = __atomic_load_n((void **)&real_posix_spawn, __ATOMIC_ACQUIRE);
    }
    if (p == NULL || p == LDPROF_SYM_MISSING) {
        ldprof_sym_missing_log("posix_spawn");
        return ENOSYS;
    }
    if (!ldprof_recording())
        return real_posix_spawn(pid, path, fa, attr, argv, envp);
    return ldprof_spawn(0, pid, path, fa, attr, argv, envp);
}

LDPROF_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                               const posix_spawnattr_t *attr, char *const argv[],
                               char *const envp[])
{
    void *p = __atomic_load_n((void **)&real_posix_spawnp, __ATOMIC_ACQUIRE);
    if (p == NULL) {
        ldprof_real_init();
        p = __atomic_load_n((void **)&real_posix_spawnp, __ATOMIC_ACQUIRE);
    }
    if (p == NULL || p == LDPROF_SYM_MISSING) {
        ldprof_sym_missing_log("posix_spawnp");
        return ENOSYS;
    }
    if (!ldprof_recording())
        return real_posix_spawnp(pid, file, fa, attr, argv, envp);
    return ldprof_spawn(1, pid, file, fa, attr, argv, envp);
}
