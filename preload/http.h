/*
 * preload/http.h - per-fd HTTP stream tracking.
 *
 * An fd-indexed table (one mmap at start, min(hard RLIMIT_NOFILE, 65536)
 * entries, pages touched only for fd numbers in use) holds the state of
 * every connection ldprof follows:
 *
 *   - server connections (returned by accept/accept4): the bytes the
 *     program reads go through an HTTP_REQUEST parser that finds request
 *     heads and captures X-Trace-Info / X-Trace-HMAC; the bytes it writes go
 *     through an HTTP_RESPONSE parser that finds where each response ends.
 *     A request whose head carries valid signed headers opens a `wsgi` span
 *     (parent and base from the header) that ends when its response is
 *     complete; it becomes the reading thread's context meanwhile.
 *
 * Every request, traced or not, takes a place in a small per-fd FIFO
 * (LDPROF_HTTP_QDEPTH) so that pipelined and keep-alive requests are matched
 * to their responses in order.  Common well-formed requests (with or
 * without plain X-Trace-Info / X-Trace-HMAC headers), and common responses
 * with a Content-Length, are framed by a short scan of their head instead
 * of the parser (http.c, "fast framing");
 * bodies are skipped by length without callbacks.  A connection that does not
 * speak HTTP/1.x is dropped from tracking at its first parse error.
 *
 * Concurrency: the request side and the response side each have a
 * try-lock (a second thread reading the same socket at the same time - a
 * program bug - makes ldprof stop following that connection rather than
 * wait); the FIFO between them is single-producer single-consumer.
 *
 * Everything here is called from wrappers with the reentrancy guard held
 * and errno saved by the caller; nothing allocates.
 */
#ifndef LDPROF_HTTP_H
#define LDPROF_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Per-connection limits. */
#define LDPROF_HTTP_QDEPTH 8     /* requests awaiting their response */
#define LDPROF_HTTP_URL_CAP 512  /* request-target bytes kept (longer: truncated) */
#define LDPROF_HTTP_INFO_CAP 256 /* X-Trace-Info bytes (longer: not traced) */
#define LDPROF_HTTP_HMAC_CAP 64  /* X-Trace-HMAC bytes (longer: not traced) */

enum ldprof_fd_kind {
    LDPROF_FD_NONE = 0, /* not followed */
    LDPROF_FD_SERVER,   /* accepted connection: we parse requests in, responses out */
    LDPROF_FD_CLIENT,   /* connected TCP socket: requests out, responses in (phase 2) */
};

/* ldprof_http_init - map the fd table (constructor; idempotent).  0 / -1. */
int ldprof_http_init(void);

/* The table size (fds at or above it are never followed). */
extern int ldprof_http_nfds __attribute__((visibility("hidden")));
extern uint8_t *ldprof_http_kinds __attribute__((visibility("hidden"))); /* kind per fd, the one byte wrappers test */

/* ldprof_http_tracked - is @fd followed?  One bounds check and one load. */
static inline int ldprof_http_tracked(int fd)
{
    return (unsigned)fd < (unsigned)ldprof_http_nfds &&
           __atomic_load_n(&ldprof_http_kinds[fd], __ATOMIC_RELAXED) != LDPROF_FD_NONE;
}

/* Events from the wrappers.  @n is what the real call returned (> 0). */
void ldprof_http_on_accept(int fd);
void ldprof_http_on_connect(int fd, const struct sockaddr *addr); /* TCP only */
void ldprof_http_on_recv(int fd, const void *buf, size_t n);
void ldprof_http_on_recv_iov(int fd, const struct iovec *iov, size_t iovcnt, size_t n);
void ldprof_http_on_send(int fd, const void *buf, size_t n);
void ldprof_http_on_send_iov(int fd, const struct iovec *iov, size_t iovcnt, size_t n);
/* @n bytes went out that we cannot see (sendfile): accepted as body bytes
 * when the current response has at least that many left, else the response
 * side is lost. */
void ldprof_http_on_send_opaque(int fd, size_t n);
void ldprof_http_on_eof(int fd);     /* a read returned 0 */
void ldprof_http_on_shutdown(int fd, int how);
void ldprof_http_on_close(int fd);   /* fd closed or its number about to be reused */

/*
 * Outbound requests (client connections).
 *
 * ldprof_http_client_send - called by the write-family wrappers INSTEAD of
 * the real call for a client fd.  When the calling thread is inside a trace
 * and the program starts writing an HTTP/1.x request, the signed
 * X-Trace-Info / X-Trace-HMAC header lines are inserted right after the
 * request line, an `http` span is opened (ended when its response has been
 * read completely), and the result is given in the caller's terms: the
 * number of the CALLER's bytes sent (injected bytes are never counted), or
 * -1 with errno.  Injected bytes that did not go out in one call are sent
 * before any further caller data.  Returns LDPROF_HTTP_PASS when the caller
 * should make its own real call and report it with ldprof_http_on_send*().
 * @flags: send flags (0 for write/writev).
 */
#define LDPROF_HTTP_PASS ((ssize_t)-2)
#define LDPROF_HTTP_MAX_IOV 64
/* @sendfn: how to send (the hook file's real sendmsg; a script in tests):
 * one buffer (@buf/@len) when @buf is not NULL, else an iovec. */
typedef ssize_t (*ldprof_http_sendmsg_t)(int fd, const void *buf, size_t len,
                                         const struct iovec *iov, size_t iovcnt, int flags);
ssize_t ldprof_http_client_send(int fd, const struct iovec *iov, size_t iovcnt, int flags,
                                ldprof_http_sendmsg_t sendfn);

/*
 * ldprof_http_covered - is I/O on @fd already inside a span of its own?
 * 1 for an accepted connection followed as HTTP (the wsgi span covers it)
 * and for a client connection with an outbound request whose `http` span
 * is open (awaiting its response) or whose injected headers are still
 * going out; 0 otherwise.  Used by the `net` spans (trace_socket).
 */
int ldprof_http_covered(int fd);

/* ldprof_http_kind - LDPROF_FD_* of a followed fd (call after tracked()). */
static inline int ldprof_http_kind(int fd)
{
    return __atomic_load_n(&ldprof_http_kinds[fd], __ATOMIC_RELAXED);
}

/* Fork: the parent marks every followed fd as shared (a connection a child
 * also holds is not failed when the parent merely closes its copy); the
 * child re-initialises the per-fd locks. */
void ldprof_http_fork_parent(void);
void ldprof_http_fork_child(void);

/* Statistics for tests and the debug log. */
struct ldprof_http_stats {
    uint64_t requests;   /* request heads seen */
    uint64_t traced;     /* of which opened a wsgi span */
    uint64_t responses;  /* response messages completed */
    uint64_t abandoned;  /* spans ended by connection close */
    uint64_t desync;     /* connections dropped from tracking */
    uint64_t parsed;     /* server connections: streams the fast path handed
                          * to http_parser (tests check it frames common heads) */
};
void ldprof_http_stats(struct ldprof_http_stats *out);

#endif
